/* The agent process: setup, registration, the /acs/poll loop with
 * level-triggered reconciliation, state persistence and state reporting. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent-internal.h"
#include "agent.h"
#include "basic/alloc.h"
#include "basic/fileutil.h"
#include "basic/log.h"
#include "basic/strutil.h"
#include "config.h"
#include "runtime/cgroup.h"
#include "runtime/proc.h"
#include "shared/digest.h"
#include "shared/jsonutil.h"

#define ECS_TARGET(op) "AmazonEC2ContainerServiceV20141113." op
#define POLL_WAIT_SEC  20
#define CALL_TIMEOUT   (30 * USEC_PER_SEC)

static void poll_now(agent *a);
static void register_now(agent *a);

char *agent_state_path(agent *a, const char *name)
{
    return path_join(a->cfg.data_dir, name);
}

/* --- reporting --- */

static void report_done(void *userdata, long status, json_t *resp, const char *type,
                        const char *msg);

static void report_send(agent_task *t)
{
    agent *a = t->agent;
    if (t->reporting || !a->registered)
        return;
    t->reporting = true;
    t->reporting_stopped = t->known == TS_STOPPED;
    t->report_dirty = false;
    json_t *body = agent_task_report_json(t);
    js_set_str(body, "cluster", a->cfg.cluster);
    agent_api_call(a->api, "ecs", ECS_TARGET("SubmitTaskStateChange"), body, CALL_TIMEOUT,
                   report_done, t);
}

static void on_report_timer(ev_timer *tm, void *userdata)
{
    report_send(userdata);
}

static void report_done(void *userdata, long status, json_t *resp, const char *type,
                        const char *msg)
{
    agent_task *t = userdata;
    t->reporting = false;
    if (status == 200) {
        t->report_backoff = 0;
        /* Only the report that said STOPPED settles it: a success for an
         * older state sent before the task stopped does not. */
        if (t->reporting_stopped)
            t->reported_stopped = true;
        agent_persist_task(t);
        if (t->report_dirty)
            report_send(t);
        return;
    }
    if (status >= 400 && status < 500 && type &&
        (streq(type, "InvalidParameterException") || streq(type, "ClusterNotFoundException"))) {
        /* The server no longer knows the task: nothing to report to. */
        log_warn("task %s: state report rejected: %s: %s", t->id, type, msg ? msg : "");
        if (t->reporting_stopped)
            t->reported_stopped = true;
        else if (t->known == TS_STOPPED)
            agent_task_report(t);
        return;
    }
    t->report_dirty = true;
    t->report_backoff = t->report_backoff ? MIN(t->report_backoff * 2, 30u) : 1;
    log_debug("task %s: state report failed (%s), retrying in %us", t->id, type ? type : "?",
              t->report_backoff);
    if (!t->report_timer)
        t->report_timer = ev_timer_new(t->agent->loop, on_report_timer, t);
    ev_timer_arm_in(t->report_timer, (usec_t) t->report_backoff * USEC_PER_SEC);
}

void agent_task_report(agent_task *t)
{
    t->report_dirty = true;
    if (!t->reporting && !(t->report_timer && ev_timer_armed(t->report_timer)))
        report_send(t);
}

/* --- persistence --- */

void agent_persist_task(agent_task *t)
{
    if (!t->dir)
        return;
    json_t *s = agent_task_state_json(t);
    char *data = json_dumps(s, JSON_COMPACT | JSON_REAL_PRECISION(15));
    json_decref(s);
    char *path = path_join(t->dir, "state.json");
    int r = write_file_replace(path, data, strlen(data), 0600);
    if (r < 0)
        log_error("persist task %s: %s", t->id, strerror(-r));
    free(path);
    free(data);
}

static void persist_agent(agent *a)
{
    json_t *s = json_pack("{s:s, s:s}", "cluster", a->cfg.cluster, "containerInstanceArn",
                          a->instance_arn ? a->instance_arn : "");
    char *data = json_dumps(s, JSON_COMPACT);
    json_decref(s);
    _cleanup_free_ char *path = agent_state_path(a, "agent.json");
    int r = write_file_atomic(path, data, strlen(data), 0600);
    if (r < 0)
        log_error("persist agent state: %s", strerror(-r));
    free(data);
}

static void restore(agent *a)
{
    _cleanup_free_ char *path = agent_state_path(a, "agent.json");
    char *data = NULL;
    if (read_full_file(path, 1 << 20, &data, NULL) == 0) {
        json_t *s = json_loads(data, 0, NULL);
        const char *arn = js_str(s, "containerInstanceArn");
        if (arn && *arn && streq_ptr(js_str(s, "cluster"), a->cfg.cluster))
            a->instance_arn = xstrdup(arn);
        json_decref(s);
        free(data);
    }
    _cleanup_free_ char *tdir = agent_state_path(a, "tasks");
    DIR *d = opendir(tdir);
    if (!d)
        return;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.')
            continue;
        _cleanup_free_ char *dir = path_join(tdir, de->d_name);
        agent_task *t = agent_task_restore(a, dir);
        if (!t) {
            log_warn("discarding unreadable task state in %s", dir);
            continue;
        }
        sk_omap_put(a->tasks, t->arn, t);
        log_info("recovered task %s (%s)", t->id, t->known == TS_STOPPED ? "stopped" : "live");
    }
    closedir(d);
}

/* --- registration --- */

static void add_attr(json_t *attrs, const char *name, const char *value)
{
    json_t *o = json_pack("{s:s}", "name", name);
    if (value)
        js_set_str(o, "value", value);
    json_array_append_new(attrs, o);
}

static json_t *registration_body(agent *a)
{
    json_t *attrs = json_array();
    add_attr(attrs, "ecs.os-type", "linux");
    add_attr(attrs, "ecs.os-family", "LINUX");
    add_attr(attrs, "ecs.cpu-architecture", "x86_64");
    add_attr(attrs, "ecs.availability-zone", a->cfg.availability_zone);
    char itype[64];
    snprintf(itype, sizeof(itype), "%s",
             a->cfg.instance_type ? a->cfg.instance_type : "skiff.local");
    add_attr(attrs, "ecs.instance-type", itype);
    add_attr(attrs, "skiff.capacity", a->cfg.capacity);
    size_t i;
    json_t *d;
    json_array_foreach(a->cfg.logging_drivers, i, d) {
        char n[160];
        snprintf(n, sizeof(n), "com.amazonaws.ecs.capability.logging-driver.%s",
                 json_string_value(d));
        add_attr(attrs, n, NULL);
    }
    static const char *const caps[] = {
        "com.amazonaws.ecs.capability.privileged-container",
        "com.amazonaws.ecs.capability.task-iam-role",
        "com.amazonaws.ecs.capability.task-iam-role-network-host",
        "ecs.capability.task-eni",
        "ecs.capability.container-health-check",
        "ecs.capability.container-ordering",
        "ecs.capability.execution-role-awslogs",
        "ecs.capability.execution-role-ecr-pull",
        "ecs.capability.task-cpu-mem-limit",
        "ecs.capability.docker-plugin.local",
        "ecs.capability.full-sync",
        "ecs.capability.pid-ipc-namespace-sharing",
        "ecs.capability.container-port-range",
        "ecs.capability.external",
    };
    for (size_t k = 0; k < ELEMENTSOF(caps); k++)
        add_attr(attrs, caps[k], NULL);
    for (int v = 17; v <= 44; v++) {
        char n[96];
        snprintf(n, sizeof(n), "com.amazonaws.ecs.capability.docker-remote-api.1.%d", v);
        add_attr(attrs, n, NULL);
    }
    const char *k;
    json_t *v;
    json_object_foreach(a->cfg.instance_attributes, k, v) {
        if (json_is_string(v) && !streq(k, "ecs.availability-zone"))
            add_attr(attrs, k, json_string_value(v));
    }
    int64_t mem = (int64_t) a->memory_mib - (int64_t) a->cfg.reserved_memory_mib;
    if (mem < 0)
        mem = 0;
    json_t *res = json_pack("[{s:s, s:s, s:I}, {s:s, s:s, s:I}, {s:s, s:s, s:O}, {s:s, s:s, s:O}]",
                            "name", "CPU", "type", "INTEGER", "integerValue",
                            (json_int_t) a->cpus * 1024, "name", "MEMORY", "type", "INTEGER",
                            "integerValue", (json_int_t) mem, "name", "PORTS", "type", "STRINGSET",
                            "stringSetValue", a->cfg.reserved_ports, "name", "PORTS_UDP", "type",
                            "STRINGSET", "stringSetValue", a->cfg.reserved_ports_udp);
    _cleanup_free_ char *runc_version = NULL;
    char *argv[] = { a->cfg.runtime_path, (char *) "--version", NULL };
    rt_proc_result pr = { 0 };
    if (rt_proc_run(argv, NULL, NULL, 0, 4096, 5 * USEC_PER_SEC, &pr, NULL) == 0 && pr.out) {
        char *nl = strchr(pr.out, '\n');
        if (nl)
            *nl = 0;
        runc_version = xstrdup(pr.out);
    }
    rt_proc_result_done(&pr);
    json_t *body = json_pack("{s:s, s:o, s:o, s:{s:s, s:s, s:s}}", "cluster", a->cfg.cluster,
                             "totalResources", res, "attributes", attrs, "versionInfo",
                             "agentVersion", SKIFF_VERSION, "agentHash", "skiff", "dockerVersion",
                             runc_version ? runc_version : "runc");
    if (a->instance_arn)
        js_set_str(body, "containerInstanceArn", a->instance_arn);
    return body;
}

static void on_register_timer(ev_timer *t, void *userdata)
{
    register_now(userdata);
}

static void retry_register(agent *a, unsigned sec)
{
    if (!a->register_timer)
        a->register_timer = ev_timer_new(a->loop, on_register_timer, a);
    ev_timer_arm_in(a->register_timer, (usec_t) sec * USEC_PER_SEC);
}

static void registered(void *userdata, long status, json_t *resp, const char *type, const char *msg)
{
    agent *a = userdata;
    a->registering = false;
    if (status != 200) {
        log_warn("register container instance: %s: %s", type ? type : "error", msg ? msg : "");
        retry_register(a, 2);
        return;
    }
    const char *arn = js_str(js_obj(resp, "containerInstance"), "containerInstanceArn");
    if (!arn) {
        retry_register(a, 2);
        return;
    }
    bool same = streq_ptr(a->instance_arn, arn);
    free(a->instance_arn);
    a->instance_arn = xstrdup(arn);
    free(a->instance_id);
    const char *slash = strrchr(arn, '/');
    a->instance_id = xstrdup(slash ? slash + 1 : arn);
    a->registered = true;
    persist_agent(a);
    log_info("registered as %s%s", arn, same ? " (re-registered)" : "");
    /* Flush anything that changed while we were unregistered. */
    for (sk_omap_node *n = sk_omap_seek(a->tasks, NULL); n; n = sk_omap_next(n)) {
        agent_task *t = sk_omap_node_value(n);
        if (!t->reported_stopped)
            agent_task_report(t);
    }
    a->seq = 0;
    if (!a->polling)
        poll_now(a);
}

static void cluster_created(void *userdata, long status, json_t *resp, const char *type,
                            const char *msg)
{
    agent *a = userdata;
    if (status != 200)
        log_warn("create cluster %s: %s: %s", a->cfg.cluster, type ? type : "error",
                 msg ? msg : "");
    agent_api_call(a->api, "ecs", ECS_TARGET("RegisterContainerInstance"), registration_body(a),
                   CALL_TIMEOUT, registered, a);
}

static void register_now(agent *a)
{
    if (a->registering || a->stopping)
        return;
    a->registering = true;
    if (streq(a->cfg.cluster, "default"))
        agent_api_call(a->api, "ecs", ECS_TARGET("CreateCluster"),
                       json_pack("{s:s}", "clusterName", "default"), CALL_TIMEOUT, cluster_created,
                       a);
    else
        cluster_created(a, 200, NULL, NULL, NULL);
}

/* --- the poll loop --- */

static void reconcile(agent *a, const json_t *tasks)
{
    json_t *listed = json_object();
    size_t i;
    json_t *e;
    json_array_foreach(tasks, i, e) {
        const char *arn = js_str(e, "taskArn");
        if (!arn)
            continue;
        json_object_set_new(listed, arn, json_true());
        agent_task *t = sk_omap_get(a->tasks, arn);
        bool want_stop = streq_ptr(js_str(e, "desiredStatus"), "STOPPED");
        if (!t) {
            json_t *task = js_obj(e, "task"), *td = js_obj(e, "taskDefinition");
            if (!task || !td)
                continue; /* the next poll (without it in "have") brings it in full */
            if (want_stop)
                continue;
            t = agent_task_new(a, task, td);
            if (!t)
                continue;
            sk_omap_put(a->tasks, t->arn, t);
            log_info("task %s: assigned (%s)", t->id, js_str_or(td, "family", "?"));
            agent_task_start(t);
        } else if (want_stop && !t->desired_stopped) {
            log_info("task %s: stop requested", t->id);
            agent_task_stop(t, NULL);
        }
    }
    for (sk_omap_node *n = sk_omap_seek(a->tasks, NULL); n; n = sk_omap_next(n)) {
        agent_task *t = sk_omap_node_value(n);
        if (!json_object_get(listed, t->arn) && !t->desired_stopped && t->known != TS_STOPPED) {
            log_info("task %s: no longer assigned to this instance, stopping", t->id);
            agent_task_stop(t, NULL);
        }
    }
    json_decref(listed);
}

static void on_poll_timer(ev_timer *t, void *userdata)
{
    poll_now(userdata);
}

static void polled(void *userdata, long status, json_t *resp, const char *type, const char *msg)
{
    agent *a = userdata;
    a->polling = false;
    if (a->stopping)
        return;
    if (status == 200 && resp) {
        a->poll_backoff = 0;
        a->seq = (uint64_t) js_int(resp, "seq", 0);
        reconcile(a, js_arr(resp, "tasks"));
        poll_now(a);
        return;
    }
    if (type && (streq(type, "InactiveInstanceException"))) {
        log_error("this container instance was deregistered; retrying in 60 s");
        a->registered = false;
        ev_timer_arm_in(a->poll_timer, 60 * USEC_PER_SEC);
        return;
    }
    if (type &&
        (streq(type, "InvalidParameterException") || streq(type, "ClusterNotFoundException"))) {
        log_warn("poll: %s: %s; registering again", type, msg ? msg : "");
        a->registered = false;
        retry_register(a, 1);
        return;
    }
    a->poll_backoff = a->poll_backoff ? MIN(a->poll_backoff * 2, 30u) : 1;
    log_warn("poll: %s: %s (retry in %us)", type ? type : "error", msg ? msg : "", a->poll_backoff);
    if (status == 0 || status >= 500)
        a->registered = a->registered; /* transport trouble: keep identity, just retry */
    ev_timer_arm_in(a->poll_timer, (usec_t) a->poll_backoff * USEC_PER_SEC);
}

static void poll_now(agent *a)
{
    if (a->polling || !a->registered || a->stopping)
        return;
    a->polling = true;
    json_t *have = json_array();
    for (sk_omap_node *n = sk_omap_seek(a->tasks, NULL); n; n = sk_omap_next(n))
        json_array_append_new(have, json_string(sk_omap_node_key(n)));
    json_t *body = json_pack("{s:s, s:s, s:I, s:o, s:i}", "cluster", a->cfg.cluster,
                             "containerInstance", a->instance_arn, "seq", (json_int_t) a->seq,
                             "have", have, "waitSeconds", POLL_WAIT_SEC);
    agent_api_post(a->api, "/acs/poll", "ecs", body, (POLL_WAIT_SEC + 15) * USEC_PER_SEC, polled,
                   a);
}

/* --- periodic work --- */

static void on_log_timer(ev_timer *t, void *userdata)
{
    agent *a = userdata;
    agent_logs_tick(a);
    ev_timer_arm_in(t, USEC_PER_SEC);
}

static void on_gc_timer(ev_timer *t, void *userdata)
{
    agent *a = userdata;
    if (!a->cfg.image_cleanup_disabled) {
        sk_vec refs = { 0 };
        for (sk_omap_node *n = sk_omap_seek(a->tasks, NULL); n; n = sk_omap_next(n)) {
            agent_task *tk = sk_omap_node_value(n);
            for (size_t i = 0; i < tk->ncontainers; i++)
                sk_vec_push(&refs, tk->containers[i]->image);
        }
        sk_err err = { 0 };
        int r = img_gc(a->images, (const char *const *) refs.items, refs.len, a->cfg.image_min_age,
                       a->cfg.images_per_cleanup, &err);
        if (r < 0)
            log_warn("image cleanup: %s", sk_err_msg(&err));
        else if (r > 0)
            log_info("image cleanup removed %d image(s)", r);
        sk_err_done(&err);
        sk_vec_done(&refs, NULL);
    }
    usec_t iv = a->cfg.image_cleanup_interval;
    if (iv < 10 * 60 * USEC_PER_SEC && !getenv("SKIFF_AGENT_FAST_GC"))
        iv = 10 * 60 * USEC_PER_SEC; /* as ECS: intervals under 10 minutes are ignored */
    ev_timer_arm_in(t, iv);
}

static void on_sigchld(ev_loop *loop, int signo, void *userdata)
{
    /* Children are reaped through pidfds; this only drains stray zombies. */
}

static uint64_t host_memory_mib(void)
{
    char *m = NULL;
    uint64_t kb = 0;
    if (read_full_file("/proc/meminfo", 1 << 16, &m, NULL) == 0) {
        const char *p = strstr(m, "MemTotal:");
        if (p)
            kb = strtoull(p + 9, NULL, 10);
        free(m);
    }
    return kb / 1024;
}

static char *derive_subnet(const uint8_t *h, int base)
{
    return xasprintf("10.%d.%d.0/24", base + (h[0] % 60), h[1]);
}

static char *find_sibling(const char *self, const char *name)
{
    char *dir = xstrdup(self);
    char *slash = strrchr(dir, '/');
    if (slash)
        *slash = 0;
    char *p = xasprintf("%s/%s", dir, name);
    free(dir);
    if (access(p, X_OK) == 0)
        return p;
    free(p);
    return NULL;
}

static int setup(agent *a, sk_err *err)
{
    agent_config *c = &a->cfg;
    int r = mkdir_p(c->data_dir, 0700);
    if (r < 0)
        return sk_err_sys(err, r, "create data dir '%s'", c->data_dir);
    char *real = realpath(c->data_dir, NULL);
    uint8_t h[32];
    sha256(real ? real : c->data_dir, strlen(real ? real : c->data_dir), h);
    free(real);
    char hex[65];
    hex_encode(h, 32, hex);
    a->key = xstrndup(hex, 8);
    a->run_dir = xasprintf("/run/skiff/%s", a->key);
    a->runc_root = path_join(a->run_dir, "runc");
    a->net_state_dir = path_join(a->run_dir, "net");
    a->port_claim_dir = xstrdup("/run/skiff/ports");
    a->cgroup_root = xasprintf("/skiff/%s", a->key);
    _cleanup_free_ char *tasks = agent_state_path(a, "tasks");
    _cleanup_free_ char *imgs = agent_state_path(a, "images");
    if ((r = mkdir_p(tasks, 0700)) < 0 || (r = mkdir_p(a->runc_root, 0700)) < 0 ||
        (r = mkdir_p(a->net_state_dir, 0700)) < 0 || (r = mkdir_p(a->port_claim_dir, 0700)) < 0)
        return sk_err_sys(err, r, "create agent directories");
    if (!c->simulated && img_store_open(imgs, &a->images, err) < 0)
        return sk_err_wrap(err, "image store");
    a->bridge_name = xasprintf("skb%.8s", a->key);
    a->awsvpc_bridge = xasprintf("ska%.8s", a->key);
    if (!c->bridge_subnet)
        c->bridge_subnet = derive_subnet(h, 64);
    if (!c->awsvpc_subnet)
        c->awsvpc_subnet = derive_subnet(h + 2, 128);
    a->net = (rt_net_config){
        .cni_bin_dir = c->cni_path,
        .state_dir = a->net_state_dir,
        .bridge_name = a->bridge_name,
        .bridge_subnet = c->bridge_subnet,
        .awsvpc_bridge = a->awsvpc_bridge,
        .awsvpc_subnet = c->awsvpc_subnet,
    };
    a->self_exe = realpath("/proc/self/exe", NULL);
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    a->cpus = n > 0 ? (unsigned) n : 1;
    a->memory_mib = host_memory_mib();
    if (c->simulated) {
        /* Simulated capacity: sized by the environment, nothing on the host is touched. */
        const char *cpu = getenv("SKIFF_SIM_CPU"), *mem = getenv("SKIFF_SIM_MEMORY");
        uint32_t v;
        a->cpus = cpu && parse_u32(cpu, &v) == 0 && v >= 1024 ? v / 1024 : 4;
        uint64_t m;
        a->memory_mib = mem && parse_u64(mem, &m) == 0 ? m : 8192;
        return 0;
    }
    if (!c->monitor_path)
        c->monitor_path = find_sibling(a->self_exe ? a->self_exe : "", "skiff-monitor");
    if (!c->monitor_path) /* build tree: build/skiff and build/src/runtime/skiff-monitor */
        c->monitor_path = find_sibling(a->self_exe ? a->self_exe : "", "src/runtime/skiff-monitor");
    if (!c->monitor_path)
        return sk_err_set(err, SK_E_INVALID,
                          "cannot find skiff-monitor next to %s (set SKIFF_MONITOR)",
                          a->self_exe ? a->self_exe : "skiff");
    if (access(c->runtime_path, X_OK) < 0)
        return sk_err_set(err, SK_E_INVALID, "OCI runtime '%s' is not executable", c->runtime_path);
    static const char *const inits[] = { "/usr/bin/tini-static", "/usr/bin/catatonit",
                                         "/usr/libexec/podman/catatonit" };
    for (size_t i = 0; i < ELEMENTSOF(inits); i++)
        if (access(inits[i], X_OK) == 0) {
            a->init_path = xstrdup(inits[i]);
            break;
        }
    char *prof = NULL;
    if (read_full_file("/usr/share/containers/seccomp.json", 4 << 20, &prof, NULL) == 0) {
        a->seccomp_profile = json_loads(prof, 0, NULL);
        free(prof);
    }
    if (!a->seccomp_profile)
        log_warn(
                "no seccomp profile found (/usr/share/containers/seccomp.json); containers run without one");
    return 0;
}

static agent **all_agents;
static unsigned n_agents;

static void on_term_all(ev_loop *loop, int signo, void *userdata)
{
    log_info("signal %d: agent exiting (containers keep running)", signo);
    for (unsigned i = 0; i < n_agents; i++)
        all_agents[i]->stopping = true;
    ev_loop_quit(loop, 0);
}

static int agent_start(agent *a, ev_loop *loop, agent_api *api, sk_err *err)
{
    a->tasks = sk_omap_new();
    sk_hmap_init(&a->pulls);
    sk_hmap_init(&a->ports);
    sk_hmap_init(&a->port_claims);
    if (setup(a, err) < 0)
        return -1;
    a->loop = loop;
    a->api = api;
    if (agent_tmds_start(a, err) < 0)
        return -1;
    a->poll_timer = ev_timer_new(loop, on_poll_timer, a);
    a->log_timer = ev_timer_new(loop, on_log_timer, a);
    a->gc_timer = ev_timer_new(loop, on_gc_timer, a);
    restore(a);
    for (sk_omap_node *n = sk_omap_seek(a->tasks, NULL); n; n = sk_omap_next(n))
        agent_task_start(sk_omap_node_value(n));
    if (!a->cfg.simulated)
        log_info("agent for cluster %s (data %s, runtime %s, bridge %s %s, awsvpc %s %s)",
                 a->cfg.cluster, a->cfg.data_dir, a->cfg.runtime_path, a->bridge_name,
                 a->cfg.bridge_subnet, a->awsvpc_bridge, a->cfg.awsvpc_subnet);
    register_now(a);
    if (!a->cfg.simulated) {
        ev_timer_arm_in(a->log_timer, USEC_PER_SEC);
        ev_timer_arm_in(a->gc_timer, a->cfg.image_cleanup_interval);
    }
    return 0;
}

/* A copy of the configuration for simulated instance k. */
static void sim_config(const agent_config *base, unsigned k, agent_config *ret)
{
    *ret = *base;
    ret->data_dir = xasprintf("%s/sim-%05u", base->data_dir, k);
    ret->instance_attributes = json_deep_copy(base->instance_attributes);
    const char *zones = getenv("SKIFF_SIM_ZONES");
    if (zones && *zones) {
        /* Round-robin over the listed zones. */
        _cleanup_free_ char *copy = xstrdup(zones);
        size_t nz = 1;
        for (const char *p = copy; *p; p++)
            nz += *p == ',';
        size_t want = k % nz, i = 0;
        char *save = NULL;
        for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save), i++)
            if (i == want)
                ret->availability_zone = xstrdup(t);
    } else
        ret->availability_zone = xstrdup(base->availability_zone);
}

int agent_main(int argc, char **argv)
{
    agent_config cfg;
    sk_err err = { 0 };
    int r = agent_config_load(argc, argv, &cfg, &err);
    if (r > 0)
        return 0;
    if (r < 0) {
        log_error("%s", sk_err_msg(&err));
        sk_err_done(&err);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    /* Thousands of simulated instances each hold a long poll. */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    ev_loop *loop = ev_loop_new();
    agent_api_config ac = { .url = cfg.server_url,
                            .access_key = cfg.access_key,
                            .secret_key = cfg.secret_key,
                            .region = cfg.region,
                            .max_connections = cfg.instances + 8 };
    agent_api *api = NULL;
    if (agent_api_new(loop, &ac, &api, &err) < 0) {
        log_error("%s", sk_err_msg(&err));
        sk_err_done(&err);
        return 1;
    }
    n_agents = cfg.instances;
    all_agents = xcalloc(n_agents, sizeof(agent *));
    for (unsigned k = 0; k < n_agents; k++) {
        agent *a = xcalloc(1, sizeof(*a));
        if (cfg.instances > 1)
            sim_config(&cfg, k, &a->cfg);
        else
            a->cfg = cfg;
        a->sim_index = k;
        all_agents[k] = a;
        if (agent_start(a, loop, api, &err) < 0) {
            log_error("%s", sk_err_msg(&err));
            sk_err_done(&err);
            return 1;
        }
    }
    if (cfg.simulated)
        log_info("simulated agent: %u container instance(s) in cluster %s", n_agents, cfg.cluster);
    ev_signal_add(loop, SIGTERM, on_term_all, NULL);
    ev_signal_add(loop, SIGINT, on_term_all, NULL);
    ev_signal_add(loop, SIGCHLD, on_sigchld, NULL);
    int rc = ev_loop_run(loop);
    /* Containers are not ours to stop: persist and leave. */
    for (unsigned k = 0; k < n_agents; k++)
        for (sk_omap_node *n = sk_omap_seek(all_agents[k]->tasks, NULL); n; n = sk_omap_next(n))
            agent_persist_task(sk_omap_node_value(n));
    return rc;
}
