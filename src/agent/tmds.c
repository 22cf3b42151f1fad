/* The task metadata endpoint (TMDS), versions 3 and 4, as containers see it
 * through ECS_CONTAINER_METADATA_URI_V4 / ECS_CONTAINER_METADATA_URI:
 *
 *   GET BASE/v4/TOKEN              the container's metadata
 *   GET BASE/v4/TOKEN/task         the task's metadata with all its containers
 *   GET BASE/v4/TOKEN/stats        the container's resource usage (cgroup)
 *   GET BASE/v4/TOKEN/task/stats   the same for every container, by DockerId
 *
 * BASE is reachable from the container's network: the gateway address of the
 * agent's bridge (bridge mode) or awsvpc bridge (awsvpc mode), and loopback
 * for host mode, on SKIFF_TMDS_PORT (default 51679; 0 disables the endpoint).
 * Sockets are bound with IP_FREEBIND, so the gateways work before CNI creates
 * the bridges, and without SO_REUSEPORT, so agents never share one. Each container's TOKEN is
 * HMAC-SHA256(agent key, task ARN "\n" container name) in hex: unguessable by other containers and
 * the same after an agent restart (the key is DATA/tmds.key, 0600). Containers started in network
 * mode "none" get no endpoint. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "agent-internal.h"
#include "basic/alloc.h"
#include "basic/fileutil.h"
#include "basic/log.h"
#include "basic/rand.h"
#include "basic/strutil.h"
#include "runtime/cgroup.h"
#include "shared/digest.h"
#include "shared/http.h"
#include "shared/jsonutil.h"

#define TMDS_PORT_DEFAULT 51679
#define TMDS_KEY_LEN      32

/* "10.64.3.0/24" → "10.64.3.1" (the bridge's address with host-local IPAM). */
static bool gateway_of(const char *subnet, char out[INET_ADDRSTRLEN])
{
    char net[INET_ADDRSTRLEN];
    const char *slash = subnet ? strchr(subnet, '/') : NULL;
    if (!slash || (size_t) (slash - subnet) >= sizeof(net))
        return false;
    memcpy(net, subnet, (size_t) (slash - subnet));
    net[slash - subnet] = 0;
    struct in_addr a;
    if (inet_pton(AF_INET, net, &a) != 1)
        return false;
    a.s_addr = htonl(ntohl(a.s_addr) + 1);
    return inet_ntop(AF_INET, &a, out, INET_ADDRSTRLEN) != NULL;
}

static int load_key(agent *a, sk_err *err)
{
    _cleanup_free_ char *path = agent_state_path(a, "tmds.key");
    _cleanup_free_ char *data = NULL;
    size_t len = 0;
    if (read_full_file(path, 4096, &data, &len) == 0 && len == TMDS_KEY_LEN) {
        memcpy(a->tmds_key, data, TMDS_KEY_LEN);
        return 0;
    }
    random_bytes(a->tmds_key, TMDS_KEY_LEN);
    int r = write_file_atomic(path, a->tmds_key, TMDS_KEY_LEN, 0600);
    if (r < 0)
        return sk_err_sys(err, r, "write '%s'", path);
    return 0;
}

const char *agent_tmds_token(agent_container *c)
{
    if (!c->tmds_token[0]) {
        agent *a = c->task->agent;
        _cleanup_free_ char *msg = xasprintf("%s\n%s", c->task->arn, c->name);
        uint8_t mac[SHA256_LEN];
        hmac_sha256(a->tmds_key, TMDS_KEY_LEN, msg, strlen(msg), mac);
        char hex[2 * SHA256_LEN + 1];
        hex_encode(mac, SHA256_LEN, hex);
        memcpy(c->tmds_token, hex, sizeof(c->tmds_token) - 1);
        c->tmds_token[sizeof(c->tmds_token) - 1] = 0;
    }
    return c->tmds_token;
}

bool agent_tmds_env(agent_container *c, char **ret_v4, char **ret_v3)
{
    agent *a = c->task->agent;
    const char *mode = c->task->network_mode;
    const char *host = NULL;
    unsigned port = a->tmds_port;
    if (streq(mode, "bridge"))
        host = a->tmds_bridge_ip;
    else if (streq(mode, "awsvpc"))
        host = a->tmds_awsvpc_ip;
    else if (streq(mode, "host") && a->tmds_loopback_port) {
        host = "127.0.0.1";
        port = a->tmds_loopback_port;
    }
    if (!host || !*host || !port)
        return false;
    const char *tok = agent_tmds_token(c);
    *ret_v4 = xasprintf("ECS_CONTAINER_METADATA_URI_V4=http://%s:%u/v4/%s", host, port, tok);
    *ret_v3 = xasprintf("ECS_CONTAINER_METADATA_URI=http://%s:%u/v3/%s", host, port, tok);
    return true;
}

static agent_container *find_container(agent *a, const char *token, size_t len)
{
    for (sk_omap_node *n = sk_omap_seek(a->tasks, NULL); n; n = sk_omap_next(n)) {
        agent_task *t = sk_omap_node_value(n);
        for (size_t i = 0; i < t->ncontainers; i++) {
            const char *tok = agent_tmds_token(t->containers[i]);
            if (strlen(tok) == len && mem_equal_ct(tok, token, len))
                return t->containers[i];
        }
    }
    return NULL;
}

static const char *container_status(const agent_container *c)
{
    switch (c->state) {
    case CS_RUNNING:
        return "RUNNING";
    case CS_STOPPED:
        return "STOPPED";
    case CS_CREATED:
        return "CREATED";
    default:
        return c->state >= CS_PULLED ? "PULLED" : "NONE";
    }
}

static const char *task_status(const agent_task *t)
{
    return t->known == TS_RUNNING ? "RUNNING" : t->known == TS_STOPPED ? "STOPPED" : "PENDING";
}

/* A monotonic timestamp of this process as RFC 3339 wall-clock time. */
static void set_time(json_t *o, const char *key, usec_t mono)
{
    if (!mono)
        return;
    usec_t now_m = now_monotonic(), now_r = now_realtime();
    usec_t t = now_r - (now_m > mono ? now_m - mono : 0);
    char buf[32];
    format_rfc3339(t, buf);
    js_set_str(o, key, buf);
}

static json_t *task_container_doc(const agent_task *t, const char *name)
{
    size_t i;
    json_t *c;
    json_array_foreach(js_arr(t->task, "containers"), i, c) {
        if (streq_ptr(js_str(c, "name"), name))
            return c;
    }
    return NULL;
}

static json_t *container_json(agent_container *c)
{
    agent_task *t = c->task;
    json_t *tc = task_container_doc(t, c->name);
    json_t *o = json_object();
    js_set_str(o, "DockerId", c->runtime_id ? c->runtime_id : "");
    js_set_str(o, "Name", c->name);
    js_set_str(o, "DockerName", c->runtime_id ? c->runtime_id : c->name);
    js_set_str(o, "Image", c->image);
    if (c->image_digest)
        js_set_str(o, "ImageID", c->image_digest);
    json_t *labels = json_object();
    js_set_str(labels, "com.amazonaws.ecs.cluster", js_str_or(t->task, "clusterArn", ""));
    js_set_str(labels, "com.amazonaws.ecs.container-name", c->name);
    js_set_str(labels, "com.amazonaws.ecs.task-arn", t->arn);
    js_set_str(labels, "com.amazonaws.ecs.task-definition-family", js_str_or(t->td, "family", ""));
    js_set(labels, "com.amazonaws.ecs.task-definition-version",
           json_sprintf("%lld", (long long) js_int(t->td, "revision", 0)));
    const char *k;
    json_t *v;
    json_object_foreach(js_obj(c->def, "dockerLabels"), k, v) {
        if (json_is_string(v))
            js_set_str(labels, k, json_string_value(v));
    }
    js_set(o, "Labels", labels);
    js_set_str(o, "DesiredStatus", t->desired_stopped ? "STOPPED" : "RUNNING");
    js_set_str(o, "KnownStatus", container_status(c));
    if (c->has_exit)
        js_set_int(o, "ExitCode", c->exit_code);
    js_set(o, "Limits",
           json_pack("{s:I, s:I}", "CPU", (json_int_t) js_int(c->def, "cpu", 0), "Memory",
                     (json_int_t) js_int(c->def, "memory", 0)));
    set_time(o, "StartedAt", c->started_at);
    set_time(o, "FinishedAt", c->finished_at);
    js_set_str(o, "Type", "NORMAL");
    if (tc && js_str(tc, "containerArn"))
        js_set_str(o, "ContainerARN", js_str(tc, "containerArn"));
    if (c->log_driver) {
        js_set_str(o, "LogDriver", c->log_driver);
        json_t *lo = js_obj(js_obj(c->def, "logConfiguration"), "options");
        if (lo)
            js_set(o, "LogOptions", json_deep_copy(lo));
    }
    json_t *net = json_object();
    js_set_str(net, "NetworkMode", t->network_mode);
    const char *ip = c->ip ? c->ip : t->ip;
    if (ip)
        js_set(net, "IPv4Addresses", json_pack("[s]", ip));
    js_set(o, "Networks", json_pack("[o]", net));
    json_t *ports = json_array();
    size_t i;
    json_array_foreach(c->bindings, i, v) {
        json_array_append_new(ports, json_pack("{s:I, s:s, s:I, s:s}", "ContainerPort",
                                               (json_int_t) js_int(v, "containerPort", 0),
                                               "Protocol", js_str_or(v, "protocol", "tcp"),
                                               "HostPort", (json_int_t) js_int(v, "hostPort", 0),
                                               "HostIp", js_str_or(v, "bindIP", "0.0.0.0")));
    }
    if (json_array_size(ports))
        js_set(o, "Ports", ports);
    else
        json_decref(ports);
    return o;
}

static json_t *task_json(agent_task *t)
{
    json_t *o = json_object();
    js_set_str(o, "Cluster", js_str_or(t->task, "clusterArn", ""));
    js_set_str(o, "TaskARN", t->arn);
    js_set_str(o, "Family", js_str_or(t->td, "family", ""));
    js_set(o, "Revision", json_sprintf("%lld", (long long) js_int(t->td, "revision", 0)));
    js_set_str(o, "DesiredStatus", t->desired_stopped ? "STOPPED" : "RUNNING");
    js_set_str(o, "KnownStatus", task_status(t));
    json_t *lim = json_object();
    uint64_t v;
    const char *cpu = js_str(t->task, "cpu"), *mem = js_str(t->task, "memory");
    if (cpu && parse_u64(cpu, &v) == 0)
        js_set(lim, "CPU", json_real((double) v / 1024.0));
    if (mem && parse_u64(mem, &v) == 0)
        js_set_int(lim, "Memory", (json_int_t) v);
    js_set(o, "Limits", lim);
    json_t *containers = json_array();
    for (size_t i = 0; i < t->ncontainers; i++)
        json_array_append_new(containers, container_json(t->containers[i]));
    js_set(o, "Containers", containers);
    char buf[32];
    if (t->pull_started_at > 0) {
        format_rfc3339((usec_t) (t->pull_started_at * USEC_PER_SEC), buf);
        js_set_str(o, "PullStartedAt", buf);
    }
    if (t->pull_stopped_at > 0) {
        format_rfc3339((usec_t) (t->pull_stopped_at * USEC_PER_SEC), buf);
        js_set_str(o, "PullStoppedAt", buf);
    }
    js_set_str(o, "AvailabilityZone",
               js_str_or(t->task, "availabilityZone", t->agent->cfg.availability_zone));
    js_set_str(o, "LaunchType", t->fargate ? "FARGATE" : "EC2");
    const char *group = js_str(t->task, "group");
    const char *svc = group ? startswith(group, "service:") : NULL;
    if (svc)
        js_set_str(o, "ServiceName", svc);
    return o;
}

/* Docker-style stats, from what the cgroup offers. */
static json_t *stats_json(agent_container *c)
{
    agent_task *t = c->task;
    json_t *o = json_object();
    char buf[32];
    format_rfc3339(now_realtime(), buf);
    js_set_str(o, "read", buf);
    js_set_str(o, "name", c->name);
    js_set_str(o, "id", c->runtime_id ? c->runtime_id : "");
    _cleanup_free_ char *cg = xasprintf("%s/%s", t->cgroup ? t->cgroup : "", c->runtime_id);
    int64_t usage = c->runtime_id ? rt_cgroup_memory_usage(cg) : -1;
    json_t *mem = json_object();
    if (usage >= 0)
        js_set_int(mem, "usage", usage);
    int64_t limit = js_int(c->def, "memory", 0);
    if (limit > 0)
        js_set_int(mem, "limit", limit << 20);
    js_set(o, "memory_stats", mem);
    return o;
}

static void reply(http_req *req, unsigned status, json_t *doc)
{
    size_t len;
    char *body = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    len = strlen(body);
    http_req_respond_take(req, status, "application/json", body, len);
}

static void route(http_req *req, void *userdata)
{
    agent *a = userdata;
    const char *path = http_req_path(req);
    const char *rest = startswith(path, "/v4/");
    if (!rest)
        rest = startswith(path, "/v3/");
    if (!rest) {
        reply(req, 404, json_pack("{s:s}", "message", "not found"));
        return;
    }
    if (!streq(http_req_method(req), "GET")) {
        reply(req, 405, json_pack("{s:s}", "message", "method not allowed"));
        return;
    }
    size_t toklen = strcspn(rest, "/");
    const char *sub = rest + toklen;
    agent_container *c = toklen ? find_container(a, rest, toklen) : NULL;
    if (!c) {
        reply(req, 404, json_pack("{s:s}", "message", "unknown container"));
        return;
    }
    if (!*sub || streq(sub, "/"))
        reply(req, 200, container_json(c));
    else if (streq(sub, "/task"))
        reply(req, 200, task_json(c->task));
    else if (streq(sub, "/stats"))
        reply(req, 200, stats_json(c));
    else if (streq(sub, "/task/stats")) {
        json_t *all = json_object();
        for (size_t i = 0; i < c->task->ncontainers; i++) {
            agent_container *x = c->task->containers[i];
            if (x->runtime_id)
                js_set(all, x->runtime_id, stats_json(x));
        }
        reply(req, 200, all);
    } else
        reply(req, 404, json_pack("{s:s}", "message", "not found"));
}

static http_server *listen_on(agent *a, const char *ip, unsigned port, bool quiet)
{
    _cleanup_free_ char *addr = xasprintf("%s:%u", ip, port);
    http_server_config hc = { .listen = addr, .freebind = true, .max_connections = 256 };
    http_server *s = NULL;
    _cleanup_err_ sk_err err = { 0 };
    if (http_server_new(a->loop, &hc, route, a, &s, &err) < 0) {
        if (!quiet)
            log_warn("task metadata endpoint on %s: %s", addr, sk_err_msg(&err));
        return NULL;
    }
    return s;
}

/* Host-mode tasks reach the agent on loopback, which the host's agents share:
 * each keeps the port it got first (DATA/tmds.port), so containers keep a
 * working URI across agent restarts; the default port if free, else any. */
static void listen_loopback(agent *a)
{
    _cleanup_free_ char *path = agent_state_path(a, "tmds.port");
    _cleanup_free_ char *saved = NULL;
    uint32_t want = 0;
    if (read_full_file(path, 64, &saved, NULL) == 0)
        (void) parse_u32(strstrip(saved), &want);
    unsigned tries[] = { want, a->tmds_port, 0 };
    for (size_t i = 0; i < ELEMENTSOF(tries) && !a->tmds_servers[2]; i++)
        if (tries[i] || i == ELEMENTSOF(tries) - 1)
            a->tmds_servers[2] = listen_on(a, "127.0.0.1", tries[i], i + 1 < ELEMENTSOF(tries));
    if (!a->tmds_servers[2])
        return;
    a->tmds_loopback_port = (uint16_t) http_server_port(a->tmds_servers[2]);
    if (a->tmds_loopback_port != want) {
        _cleanup_free_ char *txt = xasprintf("%u\n", a->tmds_loopback_port);
        int r = write_file_atomic(path, txt, strlen(txt), 0600);
        if (r < 0)
            log_warn("write '%s': %s", path, strerror(-r));
    }
}

int agent_tmds_start(agent *a, sk_err *err)
{
    if (a->cfg.simulated)
        return 0;
    const char *p = getenv("SKIFF_TMDS_PORT");
    uint32_t port = TMDS_PORT_DEFAULT;
    if (p && *p && (parse_u32(p, &port) < 0 || port > 65535))
        return sk_err_set(err, SK_E_INVALID, "SKIFF_TMDS_PORT '%s' is not a port", p);
    a->tmds_port = (uint16_t) port;
    if (!port)
        return 0; /* disabled */
    if (load_key(a, err) < 0)
        return -1;
    char ip[INET_ADDRSTRLEN];
    if (gateway_of(a->cfg.bridge_subnet, ip) &&
        (a->tmds_servers[0] = listen_on(a, ip, a->tmds_port, false)))
        a->tmds_bridge_ip = xstrdup(ip);
    if (gateway_of(a->cfg.awsvpc_subnet, ip) &&
        (a->tmds_servers[1] = listen_on(a, ip, a->tmds_port, false)))
        a->tmds_awsvpc_ip = xstrdup(ip);
    listen_loopback(a);
    return 0;
}
