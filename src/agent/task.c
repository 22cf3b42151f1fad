/* The task engine: drives each container through image pull → create →
 * running → stopped, honouring dependsOn, essential containers, stop timeouts
 * and health checks, and cleans up every process, mount, netns, IP lease and
 * cgroup it created. State is persisted per task (DATA/tasks/<id>/state.json)
 * so a restarted agent re-attaches to running containers through their
 * monitors. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "agent-internal.h"
#include "basic/alloc.h"
#include "basic/fileutil.h"
#include "basic/log.h"
#include "basic/rand.h"
#include "basic/strutil.h"
#include "runtime/bundle.h"
#include "runtime/cgroup.h"
#include "runtime/proc.h"
#include "runtime/runc.h"
#include "shared/jsonutil.h"

static void try_start(agent_task *t);
static void check_stop_progress(agent_task *t);
static void on_cleanup(ev_timer *tm, void *userdata);
static void on_stop_timeout(ev_timer *tm, void *userdata);
static void signal_container(agent_container *c);

/* How long task cleanup waits for unshipped awslogs output. */
#define LOG_DRAIN_MAX (2 * 60 * USEC_PER_SEC)
static void container_stopped(agent_container *c, int exit_code, bool has_exit, const char *reason);

static rt_runtime runtime_of(agent *a)
{
    return (rt_runtime){ .path = a->cfg.runtime_path, .root = a->runc_root };
}

static const char *cstate_name(cstate s)
{
    switch (s) {
    case CS_RUNNING:
        return "RUNNING";
    case CS_STOPPED:
        return "STOPPED";
    default:
        return "PENDING";
    }
}

static agent_container *find_container(agent_task *t, const char *name)
{
    for (size_t i = 0; i < t->ncontainers; i++)
        if (streq_ptr(t->containers[i]->name, name))
            return t->containers[i];
    return NULL;
}

/* The container definition with the task's override for it merged in. */
static json_t *merged_definition(const json_t *def, const json_t *overrides)
{
    json_t *c = json_deep_copy(def);
    size_t i;
    json_t *o;
    json_array_foreach(js_arr(overrides, "containerOverrides"), i, o) {
        if (!streq_ptr(js_str(o, "name"), js_str(c, "name")))
            continue;
        if (js_arr(o, "command"))
            js_set(c, "command", json_deep_copy(js_arr(o, "command")));
        const char *nums[] = { "cpu", "memory", "memoryReservation" };
        for (size_t k = 0; k < ELEMENTSOF(nums); k++)
            if (js_has(o, nums[k]))
                js_set(c, nums[k], json_incref(json_object_get(o, nums[k])));
        json_t *env = js_ensure_arr(c, "environment");
        size_t j;
        json_t *e;
        json_array_foreach(js_arr(o, "environment"), j, e) {
            bool replaced = false;
            size_t k;
            json_t *cur;
            json_array_foreach(env, k, cur) {
                if (streq_ptr(js_str(cur, "name"), js_str(e, "name"))) {
                    json_array_set(env, k, e);
                    replaced = true;
                }
            }
            if (!replaced)
                json_array_append(env, e);
        }
    }
    return c;
}

static char *runtime_id_for(const json_t *td, const char *name)
{
    char hex[21];
    random_hex(hex, 20);
    char *id = xasprintf("ecs-%s-%lld-%s-%s", js_str_or(td, "family", "task"),
                         (long long) js_int(td, "revision", 0), name, hex);
    for (char *p = id; *p; p++)
        if (!(*p == '-' || *p == '_' || *p == '.' || (*p >= 'a' && *p <= 'z') ||
              (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9')))
            *p = '_';
    return id;
}

static void container_free(agent_container *c)
{
    if (!c)
        return;
    ev_io_remove(c->monitor_io);
    if (c->monitor_pidfd > 0)
        close(c->monitor_pidfd);
    ev_io_remove(c->sync_io);
    if (c->sync_fd > 0)
        close(c->sync_fd);
    ev_timer_free(c->stop_timer);
    ev_timer_free(c->start_timer);
    ev_timer_free(c->health_timer);
    ev_timer_free(c->hc_timeout);
    ev_io_remove(c->hc_io);
    if (c->hc_pidfd > 0)
        close(c->hc_pidfd);
    if (c->hc_pid > 0) {
        kill(c->hc_pid, SIGKILL);
        rt_proc_reap(c->hc_pid, NULL);
    }
    sk_buf_done(&c->sync_buf);
    free(c->name);
    json_decref(c->def);
    free(c->image);
    free(c->runtime_id);
    free(c->dir);
    free(c->reason);
    free(c->image_digest);
    json_decref(c->bindings);
    json_decref(c->host_ports);
    free(c->netns);
    free(c->ip);
    free(c->stop_signal);
    free(c->health);
    free(c->log_driver);
    free(c->log_group);
    free(c->log_stream);
    json_decref(c->log_batch);
    free(c);
}

void agent_task_free(agent_task *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < t->ncontainers; i++)
        container_free(t->containers[i]);
    free(t->containers);
    ev_timer_free(t->report_timer);
    ev_timer_free(t->cleanup_timer);
    ev_timer_free(t->start_timer);
    free(t->arn);
    free(t->id);
    json_decref(t->task);
    json_decref(t->td);
    free(t->dir);
    free(t->cgroup);
    free(t->network_mode);
    free(t->netns);
    free(t->ip);
    free(t->mac);
    free(t->eni_id);
    free(t->attachment_id);
    free(t);
}

static void setup_logging(agent_container *c)
{
    json_t *lc = js_obj(c->def, "logConfiguration");
    const char *drv = js_str_or(lc, "logDriver", "json-file");
    c->log_driver = xstrdup(drv);
    if (streq(drv, "awslogs")) {
        json_t *o = js_obj(lc, "options");
        c->log_group = xstrdup(js_str_or(o, "awslogs-group", "default"));
        const char *prefix = js_str(o, "awslogs-stream-prefix");
        if (prefix)
            c->log_stream = xasprintf("%s/%s/%s", prefix, c->name, c->task->id);
        else
            c->log_stream = xstrdup(c->runtime_id);
        c->log_create_group = streq_ptr(js_str(o, "awslogs-create-group"), "true");
    }
}

static agent_task *task_alloc(agent *a, const json_t *task, const json_t *td)
{
    const char *arn = js_str(task, "taskArn");
    if (!arn || !strrchr(arn, '/'))
        return NULL;
    const char *id = strrchr(arn, '/') + 1;
    if (!*id || strlen(id) > 64 || strchr(id, '.'))
        return NULL;
    agent_task *t = xcalloc(1, sizeof(*t));
    t->agent = a;
    t->arn = xstrdup(arn);
    t->id = xstrdup(id);
    t->task = json_deep_copy(task);
    t->td = json_deep_copy(td);
    t->network_mode = xstrdup(js_str_or(td, "networkMode", "bridge"));
    t->fargate = streq_ptr(js_str(task, "launchType"), "FARGATE");
    char *tasks = agent_state_path(a, "tasks");
    t->dir = path_join(tasks, t->id);
    free(tasks);
    t->cgroup = xasprintf("%s/%s", a->cgroup_root, t->id);
    json_t *atts = js_arr(task, "attachments");
    if (json_array_size(atts))
        t->attachment_id = xstrdup(js_str_or(json_array_get(atts, 0), "id", ""));
    json_t *defs = js_arr(td, "containerDefinitions");
    t->ncontainers = json_array_size(defs);
    t->containers = xcalloc(t->ncontainers ? t->ncontainers : 1, sizeof(agent_container *));
    size_t i;
    json_t *d;
    json_array_foreach(defs, i, d) {
        agent_container *c = xcalloc(1, sizeof(*c));
        c->task = t;
        c->def = merged_definition(d, js_obj(task, "overrides"));
        c->name = xstrdup(js_str_or(c->def, "name", "container"));
        c->image = xstrdup(js_str_or(c->def, "image", ""));
        c->essential = js_bool(c->def, "essential", true);
        c->runtime_id = runtime_id_for(td, c->name);
        c->dir = xasprintf("%s/containers/%s", t->dir, c->name);
        c->monitor_pidfd = -1;
        c->sync_fd = -1;
        c->hc_pidfd = -1;
        c->host_ports = json_array();
        sk_buf_init(&c->sync_buf, 4096);
        t->containers[i] = c;
    }
    return t;
}

agent_task *agent_task_new(agent *a, const json_t *task, const json_t *td)
{
    agent_task *t = task_alloc(a, task, td);
    if (!t)
        return NULL;
    for (size_t i = 0; i < t->ncontainers; i++)
        setup_logging(t->containers[i]);
    int r = mkdir_p(t->dir, 0700);
    if (r < 0)
        log_error("task %s: create %s: %s", t->id, t->dir, strerror(-r));
    agent_persist_task(t);
    return t;
}

/* --- persistence --- */

static json_t *cursor_json(const rt_log_cursor *c)
{
    return json_pack("{s:I, s:I, s:I, s:I, s:I}", "seq", (json_int_t) c->seq, "offset",
                     (json_int_t) c->offset, "inode", (json_int_t) c->inode, "dropped",
                     (json_int_t) c->dropped, "fileSeq", (json_int_t) c->file_seq);
}

static void cursor_from(const json_t *o, rt_log_cursor *c)
{
    c->seq = (uint64_t) js_int(o, "seq", 0);
    c->offset = (uint64_t) js_int(o, "offset", 0);
    c->inode = (uint64_t) js_int(o, "inode", 0);
    c->dropped = (uint64_t) js_int(o, "dropped", 0);
    c->file_seq = (uint64_t) js_int(o, "fileSeq", 0);
}

json_t *agent_task_state_json(agent_task *t)
{
    json_t *s = json_object();
    js_set_str(s, "arn", t->arn);
    js_set(s, "task", json_incref(t->task));
    js_set(s, "taskDefinition", json_incref(t->td));
    js_set_bool(s, "desiredStopped", t->desired_stopped);
    js_set_int(s, "known", t->known);
    js_set_str(s, "netns", t->netns);
    js_set_str(s, "ip", t->ip);
    js_set_str(s, "mac", t->mac);
    js_set_str(s, "eniId", t->eni_id);
    js_set_bool(s, "netAttached", t->net_attached);
    js_set_bool(s, "cgroupReady", t->cgroup_ready);
    js_set(s, "pullStartedAt", json_real(t->pull_started_at));
    js_set(s, "pullStoppedAt", json_real(t->pull_stopped_at));
    js_set(s, "stoppedAt", json_real(t->stopped_at_epoch));
    js_set_bool(s, "reportedStopped", t->reported_stopped);
    json_t *cs = json_array();
    for (size_t i = 0; i < t->ncontainers; i++) {
        agent_container *c = t->containers[i];
        json_t *o = json_object();
        js_set_str(o, "name", c->name);
        js_set_str(o, "runtimeId", c->runtime_id);
        js_set_int(o, "state", c->state);
        js_set_bool(o, "everStarted", c->ever_started);
        js_set_bool(o, "hasExit", c->has_exit);
        js_set_int(o, "exitCode", c->exit_code);
        js_set_str(o, "reason", c->reason);
        js_set_str(o, "imageDigest", c->image_digest);
        js_set_int(o, "monitorPid", c->monitor_pid);
        js_set_int(o, "containerPid", c->container_pid);
        js_set(o, "bindings", c->bindings ? json_incref(c->bindings) : json_array());
        js_set(o, "hostPorts", json_incref(c->host_ports));
        js_set_str(o, "netns", c->netns);
        js_set_str(o, "ip", c->ip);
        js_set_bool(o, "netAttached", c->net_attached);
        js_set_str(o, "health", c->health);
        js_set_bool(o, "stopSignalled", c->stop_signalled);
        if (c->stop_deadline)
            js_set_int(o, "stopDeadline", (json_int_t) c->stop_deadline);
        js_set(o, "logCursor", cursor_json(&c->log_committed));
        js_set_int(o, "logDropped", (json_int_t) c->log_dropped);
        json_array_append_new(cs, o);
    }
    js_set(s, "containers", cs);
    return s;
}

/* A host-wide claim on one host port (rt_port_claim). */
typedef struct port_claim {
    char key[32]; /* "tcp/N" */
    char proto[4];
    uint16_t port;
    int fd;
} port_claim;

static bool claim_host_port(agent *a, const char *proto, uint16_t port)
{
    int fd = rt_port_claim(a->port_claim_dir, port, proto);
    if (fd < 0)
        return false;
    port_claim *pc = xcalloc(1, sizeof(*pc));
    snprintf(pc->key, sizeof(pc->key), "%s/%u", proto, port);
    snprintf(pc->proto, sizeof(pc->proto), "%s", proto);
    pc->port = port;
    pc->fd = fd;
    port_claim *old = sk_hmap_put(&a->port_claims, pc->key, pc);
    if (old) {
        rt_port_unclaim(a->port_claim_dir, old->port, old->proto, old->fd);
        free(old);
    }
    return true;
}

static void unclaim_host_port(agent *a, const char *key)
{
    port_claim *pc = sk_hmap_remove(&a->port_claims, key);
    if (!pc)
        return;
    rt_port_unclaim(a->port_claim_dir, pc->port, pc->proto, pc->fd);
    free(pc);
}

static void release_ports(agent *a, agent_container *c)
{
    size_t i;
    json_t *p;
    json_array_foreach(c->host_ports, i, p) {
        sk_hmap_remove(&a->ports, json_string_value(p));
        unclaim_host_port(a, json_string_value(p));
    }
}

static void on_monitor_exit(ev_io *io, int fd, uint32_t events, void *userdata);

static bool watch_monitor(agent_container *c)
{
    int pfd = (int) syscall(SYS_pidfd_open, c->monitor_pid, 0);
    if (pfd < 0)
        return false;
    /* A recycled pid would not be our monitor. */
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/cmdline", (int) c->monitor_pid);
    char *cmd = NULL;
    size_t len = 0;
    bool ours = false;
    if (read_full_file(path, 1 << 16, &cmd, &len) == 0) {
        for (size_t i = 0; i + strlen(c->runtime_id) <= len; i++)
            if (memcmp(cmd + i, c->runtime_id, strlen(c->runtime_id)) == 0) {
                ours = true;
                break;
            }
        free(cmd);
    }
    if (!ours) {
        close(pfd);
        return false;
    }
    c->monitor_pidfd = pfd;
    c->monitor_io = ev_io_add(c->task->agent->loop, pfd, EPOLLIN, on_monitor_exit, c);
    return true;
}

agent_task *agent_task_restore(agent *a, const char *dir)
{
    _cleanup_free_ char *path = path_join(dir, "state.json");
    char *data = NULL;
    if (read_full_file(path, 64 << 20, &data, NULL) < 0)
        return NULL;
    json_t *s = json_loads(data, 0, NULL);
    free(data);
    if (!s)
        return NULL;
    agent_task *t = task_alloc(a, js_obj(s, "task"), js_obj(s, "taskDefinition"));
    if (!t) {
        json_decref(s);
        return NULL;
    }
    t->desired_stopped = js_bool(s, "desiredStopped", false);
    t->known = (tstate) js_int(s, "known", 0);
    if (js_str(s, "netns"))
        t->netns = xstrdup(js_str(s, "netns"));
    if (js_str(s, "ip"))
        t->ip = xstrdup(js_str(s, "ip"));
    if (js_str(s, "mac"))
        t->mac = xstrdup(js_str(s, "mac"));
    if (js_str(s, "eniId"))
        t->eni_id = xstrdup(js_str(s, "eniId"));
    t->net_attached = js_bool(s, "netAttached", false);
    t->cgroup_ready = js_bool(s, "cgroupReady", false);
    t->pull_started_at = json_number_value(json_object_get(s, "pullStartedAt"));
    t->pull_stopped_at = json_number_value(json_object_get(s, "pullStoppedAt"));
    t->stopped_at_epoch = json_number_value(json_object_get(s, "stoppedAt"));
    t->reported_stopped = js_bool(s, "reportedStopped", false);
    size_t i;
    json_t *o;
    json_array_foreach(js_arr(s, "containers"), i, o) {
        agent_container *c = find_container(t, js_str_or(o, "name", ""));
        if (!c)
            continue;
        free(c->runtime_id);
        c->runtime_id = xstrdup(js_str_or(o, "runtimeId", "x"));
        c->state = (cstate) js_int(o, "state", 0);
        c->ever_started = js_bool(o, "everStarted", false);
        c->has_exit = js_bool(o, "hasExit", false);
        c->exit_code = (int) js_int(o, "exitCode", 0);
        if (js_str(o, "reason"))
            c->reason = xstrdup(js_str(o, "reason"));
        if (js_str(o, "imageDigest"))
            c->image_digest = xstrdup(js_str(o, "imageDigest"));
        c->monitor_pid = (pid_t) js_int(o, "monitorPid", 0);
        c->container_pid = (pid_t) js_int(o, "containerPid", 0);
        c->bindings = json_deep_copy(js_arr(o, "bindings"));
        json_decref(c->host_ports);
        c->host_ports =
                js_arr(o, "hostPorts") ? json_deep_copy(js_arr(o, "hostPorts")) : json_array();
        if (js_str(o, "netns"))
            c->netns = xstrdup(js_str(o, "netns"));
        if (js_str(o, "ip"))
            c->ip = xstrdup(js_str(o, "ip"));
        c->net_attached = js_bool(o, "netAttached", false);
        if (js_str(o, "health"))
            c->health = xstrdup(js_str(o, "health"));
        c->stop_signalled = js_bool(o, "stopSignalled", false);
        c->stop_deadline = (usec_t) js_int(o, "stopDeadline", 0);
        cursor_from(js_obj(o, "logCursor"), &c->log_committed);
        c->log_read = c->log_committed;
        c->log_dropped = (uint64_t) js_int(o, "logDropped", 0);
        size_t j;
        json_t *p;
        json_array_foreach(c->host_ports, j, p) {
            sk_hmap_put(&a->ports, json_string_value(p), c);
            /* Take the host-wide claim back (it died with the old process). */
            char proto[8];
            unsigned port;
            if (sscanf(json_string_value(p), "%7[a-z]/%u", proto, &port) == 2 && port <= 65535 &&
                !claim_host_port(a, proto, (uint16_t) port))
                log_warn("task %s: host port %s is now claimed by another agent", t->id,
                         json_string_value(p));
        }
        setup_logging(c);
        c->log_ready = false;
    }
    json_decref(s);
    /* Re-attach to live containers; pick up exits that happened meanwhile. */
    for (size_t k = 0; k < t->ncontainers; k++) {
        agent_container *c = t->containers[k];
        if (c->state != CS_CREATED && c->state != CS_RUNNING)
            continue;
        if (a->cfg.simulated) {
            c->state = CS_RUNNING;
            c->ever_started = true;
            continue;
        }
        if (!c->monitor_pid) {
            _cleanup_free_ char *mp = path_join(c->dir, "monitor/monitor.pid");
            char *txt = NULL;
            if (read_full_file(mp, 64, &txt, NULL) == 0) {
                int pid;
                if (parse_int(strstrip(txt), &pid) == 0)
                    c->monitor_pid = pid;
                free(txt);
            }
        }
        if (c->monitor_pid > 0 && watch_monitor(c)) {
            if (c->state == CS_CREATED) {
                c->state = CS_RUNNING;
                c->ever_started = true;
            }
            c->started_at = now_monotonic();
            continue;
        }
        /* The monitor is gone: the exit status tells what happened. */
        _cleanup_free_ char *mdir = path_join(c->dir, "monitor");
        rt_exit_status st;
        sk_err err = { 0 };
        if (rt_monitor_read_exit(mdir, &st, &err) == 0) {
            c->ever_started = true;
            c->state = CS_RUNNING; /* container_stopped moves it on */
            container_stopped(c, st.exit_code, true, NULL);
        } else {
            c->state = CS_RUNNING;
            container_stopped(
                    c, 0, false,
                    "ContainerVanishedError: the container's monitor exited without a status");
        }
        sk_err_done(&err);
    }
    return t;
}

/* --- reporting JSON --- */

json_t *agent_task_report_json(agent_task *t)
{
    json_t *b = json_object();
    js_set_str(b, "task", t->arn);
    bool all_done = true, any_running = false, all_started = true;
    json_t *cs = json_array();
    for (size_t i = 0; i < t->ncontainers; i++) {
        agent_container *c = t->containers[i];
        json_t *o = json_object();
        js_set_str(o, "containerName", c->name);
        if (c->ever_started)
            js_set_str(o, "runtimeId", c->runtime_id);
        js_set_str(o, "status", cstate_name(c->state));
        if (c->has_exit)
            js_set_int(o, "exitCode", c->exit_code);
        if (c->reason)
            js_set_str(o, "reason", c->reason);
        if (c->image_digest)
            js_set_str(o, "imageDigest", c->image_digest);
        if (c->bindings && json_array_size(c->bindings))
            js_set(o, "networkBindings", json_incref(c->bindings));
        if (c->health)
            js_set_str(o, "healthStatus", c->health);
        json_array_append_new(cs, o);
        if (c->state != CS_STOPPED)
            all_done = false;
        if (c->state == CS_RUNNING)
            any_running = true;
        if (c->state != CS_RUNNING && c->state != CS_STOPPED)
            all_started = false;
    }
    js_set(b, "containers", cs);
    if (all_done && t->known == TS_STOPPED)
        js_set_str(b, "status", "STOPPED");
    else if (all_started && any_running && t->known == TS_RUNNING)
        js_set_str(b, "status", "RUNNING");
    if (t->pull_started_at > 0)
        js_set(b, "pullStartedAt", json_real(t->pull_started_at));
    if (t->pull_stopped_at > 0)
        js_set(b, "pullStoppedAt", json_real(t->pull_stopped_at));
    if (t->stopped_at_epoch > 0)
        js_set(b, "executionStoppedAt", json_real(t->stopped_at_epoch));
    if (t->attachment_id && t->ip) {
        json_t *details =
                json_pack("[{s:s, s:s}, {s:s, s:s}, {s:s, s:s}]", "name", "networkInterfaceId",
                          "value", t->eni_id ? t->eni_id : "", "name", "privateIPv4Address",
                          "value", t->ip, "name", "macAddress", "value", t->mac ? t->mac : "");
        char dns[96];
        snprintf(dns, sizeof(dns), "ip-%s.ec2.internal", t->ip);
        for (char *p = dns; *p; p++)
            if (*p == '.' && p < dns + 3 + strlen(t->ip))
                *p = '-';
        json_array_append_new(details,
                              json_pack("{s:s, s:s}", "name", "privateDnsName", "value", dns));
        json_t *att =
                json_pack("{s:s, s:s, s:o}", "attachmentArn", t->attachment_id, "status",
                          t->known == TS_STOPPED ? "DELETED" : "ATTACHED", "details", details);
        js_set(b, "attachments", json_pack("[o]", att));
    }
    return b;
}

/* --- state transitions --- */

static void task_state_changed(agent_task *t)
{
    bool all_started = t->ncontainers > 0, any_running = false;
    for (size_t i = 0; i < t->ncontainers; i++) {
        agent_container *c = t->containers[i];
        if (c->state == CS_RUNNING)
            any_running = true;
        if (c->state != CS_RUNNING && c->state != CS_STOPPED)
            all_started = false;
    }
    if (t->known == TS_PENDING && all_started && any_running && !t->desired_stopped) {
        t->known = TS_RUNNING;
        log_info("task %s: RUNNING", t->id);
    }
    agent_persist_task(t);
    agent_task_report(t);
}

static void stop_health(agent_container *c)
{
    ev_timer_free(c->health_timer);
    c->health_timer = NULL;
    ev_timer_free(c->hc_timeout);
    c->hc_timeout = NULL;
    ev_io_remove(c->hc_io);
    c->hc_io = NULL;
    if (c->hc_pid > 0) {
        kill(c->hc_pid, SIGKILL);
        rt_proc_reap(c->hc_pid, NULL);
        c->hc_pid = 0;
    }
    if (c->hc_pidfd >= 0) {
        close(c->hc_pidfd);
        c->hc_pidfd = -1;
    }
}

static void detach_container_network(agent_container *c)
{
    agent *a = c->task->agent;
    if (c->net_attached) {
        sk_err err = { 0 };
        if (rt_cni_del(&a->net, "bridge", c->runtime_id, c->netns, &err) < 0)
            log_warn("container %s: network teardown: %s", c->name, sk_err_msg(&err));
        sk_err_done(&err);
        c->net_attached = false;
    }
    if (c->netns) {
        sk_err err = { 0 };
        rt_netns_delete(c->netns, &err);
        sk_err_done(&err);
        free(c->netns);
        c->netns = NULL;
    }
    free(c->ip);
    c->ip = NULL;
    release_ports(a, c);
    json_array_clear(c->host_ports);
}

static void detach_task_network(agent_task *t)
{
    agent *a = t->agent;
    if (t->net_attached) {
        _cleanup_free_ char *id = xasprintf("task-%s", t->id);
        sk_err err = { 0 };
        if (rt_cni_del(&a->net, "awsvpc", id, t->netns, &err) < 0)
            log_warn("task %s: network teardown: %s", t->id, sk_err_msg(&err));
        sk_err_done(&err);
        t->net_attached = false;
    }
    if (t->netns) {
        sk_err err = { 0 };
        rt_netns_delete(t->netns, &err);
        sk_err_done(&err);
        free(t->netns);
        t->netns = NULL;
    }
}

static void maybe_task_stopped(agent_task *t)
{
    for (size_t i = 0; i < t->ncontainers; i++)
        if (t->containers[i]->state != CS_STOPPED)
            return;
    if (t->known == TS_STOPPED)
        return;
    t->known = TS_STOPPED;
    t->desired_stopped = true;
    t->stopped_at_epoch = (double) now_realtime() / 1e6;
    detach_task_network(t);
    ev_timer_free(t->start_timer);
    t->start_timer = NULL;
    log_info("task %s: STOPPED", t->id);
    agent *a = t->agent;
    if (!t->cleanup_timer)
        t->cleanup_timer = ev_timer_new(a->loop, on_cleanup, t);
    ev_timer_arm_in(t->cleanup_timer, a->cfg.task_cleanup_wait);
    agent_persist_task(t);
    agent_task_report(t);
}

static void container_stopped(agent_container *c, int exit_code, bool has_exit, const char *reason)
{
    agent_task *t = c->task;
    agent *a = t->agent;
    if (c->state == CS_STOPPED)
        return;
    bool was_started = c->state == CS_RUNNING || c->state == CS_CREATED;
    c->state = CS_STOPPED;
    c->finished_at = now_monotonic();
    stop_health(c);
    ev_timer_free(c->stop_timer);
    c->stop_timer = NULL;
    ev_timer_free(c->start_timer);
    c->start_timer = NULL;
    if (has_exit) {
        c->has_exit = true;
        c->exit_code = exit_code;
    }
    if (reason && !c->reason)
        c->reason = xstrdup(reason);
    if (was_started && has_exit && exit_code == 137 && !c->reason) {
        /* The kill is counted where the limit was hit: the container's or the task's cgroup. */
        _cleanup_free_ char *ccg = xasprintf("%s/%s", t->cgroup, c->runtime_id);
        if (rt_cgroup_oom_killed(ccg) || rt_cgroup_oom_killed(t->cgroup))
            c->reason = xstrdup("OutOfMemoryError: Container killed due to memory usage");
    }
    if (c->monitor_io) {
        ev_io_remove(c->monitor_io);
        c->monitor_io = NULL;
    }
    if (c->monitor_pidfd >= 0) {
        close(c->monitor_pidfd);
        c->monitor_pidfd = -1;
    }
    detach_container_network(c);
    log_info("task %s: container %s stopped%s%s (exit %s%d)%s%s", t->id, c->name,
             c->essential ? " (essential)" : "", "", has_exit ? "" : "none ", exit_code,
             c->reason ? ": " : "", c->reason ? c->reason : "");
    if (c->essential && !t->desired_stopped)
        agent_task_stop(t, NULL);
    else if (!t->desired_stopped)
        try_start(t);
    check_stop_progress(t);
    maybe_task_stopped(t);
    if (t->known != TS_STOPPED)
        task_state_changed(t);
    (void) a;
}

static void on_monitor_exit(ev_io *io, int fd, uint32_t events, void *userdata)
{
    agent_container *c = userdata;
    _cleanup_free_ char *mdir = path_join(c->dir, "monitor");
    rt_exit_status st;
    sk_err err = { 0 };
    /* The monitor writes exit.json before exiting. */
    if (rt_monitor_read_exit(mdir, &st, &err) == 0)
        container_stopped(c, st.exit_code, true, NULL);
    else
        container_stopped(
                c, 0, false,
                "ContainerVanishedError: the container's monitor exited without a status");
    sk_err_done(&err);
}

/* --- health checks --- */

static void hc_schedule(agent_container *c, usec_t delay);

static void hc_finished(agent_container *c, bool ok)
{
    json_t *hc = js_obj(c->def, "healthCheck");
    int64_t retries = js_int(hc, "retries", 3);
    int64_t start = js_int(hc, "startPeriod", 0);
    const char *prev = c->health;
    const char *next = prev;
    if (ok) {
        c->health_failures = 0;
        c->hc_ever_healthy = true;
        next = "HEALTHY";
    } else {
        bool in_start = !c->hc_ever_healthy &&
                        now_monotonic() - c->health_started < (usec_t) start * USEC_PER_SEC;
        if (!in_start) {
            c->health_failures++;
            if ((int64_t) c->health_failures >= retries)
                next = "UNHEALTHY";
        }
    }
    if (!streq_ptr(prev, next)) {
        free(c->health);
        c->health = xstrdup(next);
        log_info("task %s: container %s is %s", c->task->id, c->name, next);
        try_start(c->task);
        task_state_changed(c->task);
    }
    hc_schedule(c, (usec_t) js_int(hc, "interval", 30) * USEC_PER_SEC);
}

static void on_hc_exit(ev_io *io, int fd, uint32_t events, void *userdata)
{
    agent_container *c = userdata;
    int status = 1;
    rt_proc_reap(c->hc_pid, &status);
    c->hc_pid = 0;
    ev_io_remove(c->hc_io);
    c->hc_io = NULL;
    close(c->hc_pidfd);
    c->hc_pidfd = -1;
    ev_timer_disarm(c->hc_timeout);
    hc_finished(c, status == 0);
}

static void on_hc_timeout(ev_timer *t, void *userdata)
{
    agent_container *c = userdata;
    if (c->hc_pid > 0)
        kill(c->hc_pid, SIGKILL); /* on_hc_exit reports the failure */
}

static void on_hc_timer(ev_timer *tm, void *userdata)
{
    agent_container *c = userdata;
    agent *a = c->task->agent;
    if (c->state != CS_RUNNING || c->hc_pid > 0)
        return;
    json_t *cmd = js_arr(js_obj(c->def, "healthCheck"), "command");
    const char *kind = json_string_value(json_array_get(cmd, 0));
    char *args[64];
    size_t n = 0;
    _cleanup_free_ char *joined = NULL;
    if (streq_ptr(kind, "CMD-SHELL")) {
        sk_buf b;
        sk_buf_init(&b, 1 << 16);
        for (size_t i = 1; i < json_array_size(cmd); i++) {
            if (i > 1)
                sk_buf_putc(&b, ' ');
            sk_buf_puts(&b, json_string_value(json_array_get(cmd, i)) ?: "");
        }
        joined = sk_buf_steal(&b);
        args[n++] = (char *) "/bin/sh";
        args[n++] = (char *) "-c";
        args[n++] = joined;
    } else {
        for (size_t i = 1; i < json_array_size(cmd) && n < ELEMENTSOF(args) - 1; i++)
            args[n++] = (char *) (json_string_value(json_array_get(cmd, i)) ?: "");
    }
    if (n == 0)
        return;
    rt_runtime rt = runtime_of(a);
    char **argv = rt_runtime_exec_argv(&rt, c->runtime_id, args, n);
    sk_err err = { 0 };
    pid_t pid;
    int pfd;
    int r = rt_proc_spawn(argv, NULL, -1, -1, &pid, &pfd, &err);
    rt_argv_free(argv);
    if (r < 0) {
        log_warn("health check of %s: %s", c->name, sk_err_msg(&err));
        sk_err_done(&err);
        hc_finished(c, false);
        return;
    }
    c->hc_pid = pid;
    c->hc_pidfd = pfd;
    c->hc_io = ev_io_add(a->loop, pfd, EPOLLIN, on_hc_exit, c);
    if (!c->hc_timeout)
        c->hc_timeout = ev_timer_new(a->loop, on_hc_timeout, c);
    ev_timer_arm_in(c->hc_timeout,
                    (usec_t) js_int(js_obj(c->def, "healthCheck"), "timeout", 5) * USEC_PER_SEC);
}

static void hc_schedule(agent_container *c, usec_t delay)
{
    if (c->state != CS_RUNNING)
        return;
    if (!c->health_timer)
        c->health_timer = ev_timer_new(c->task->agent->loop, on_hc_timer, c);
    ev_timer_arm_in(c->health_timer, delay);
}

static void start_health(agent_container *c)
{
    json_t *hc = js_obj(c->def, "healthCheck");
    json_t *cmd = js_arr(hc, "command");
    if (!hc || !json_array_size(cmd) ||
        streq_ptr(json_string_value(json_array_get(cmd, 0)), "NONE"))
        return;
    if (!c->health)
        c->health = xstrdup("UNKNOWN");
    c->health_started = now_monotonic();
    /* First probe soon after start so HEALTHY dependencies are not held a full interval. */
    hc_schedule(c, USEC_PER_SEC);
}

/* --- starting --- */

/* ECS_CONTAINER_START_TIMEOUT: the runtime did not start the container in
 * time. The monitor and the runtime are killed (one process group: the
 * monitor's session), a half-created container is deleted, and the container
 * fails to start. */
static void on_start_timeout(ev_timer *tm, void *userdata)
{
    agent_container *c = userdata;
    agent *a = c->task->agent;
    if (c->state != CS_CREATED || !c->sync_io)
        return;
    ev_io_remove(c->sync_io);
    c->sync_io = NULL;
    close(c->sync_fd);
    c->sync_fd = -1;
    _cleanup_free_ char *pidfile = path_join(c->dir, "monitor/monitor.pid");
    _cleanup_free_ char *pidtext = NULL;
    uint32_t mpid = 0;
    if (read_full_file(pidfile, 64, &pidtext, NULL) == 0 && pidtext &&
        parse_u32(strstrip(pidtext), &mpid) == 0 && mpid > 1) {
        pid_t pg = getpgid((pid_t) mpid);
        if (pg > 1)
            kill(-pg, SIGKILL);
        else
            kill((pid_t) mpid, SIGKILL);
    }
    rt_runtime rt = runtime_of(a);
    sk_err err = { 0 };
    (void) rt_runtime_delete(&rt, c->runtime_id, true, &err);
    sk_err_done(&err);
    _cleanup_free_ char *reason = xasprintf(
            "CannotStartContainerError: the runtime did not start the container within %.1fs",
            (double) a->cfg.start_timeout / USEC_PER_SEC);
    log_warn("task %s: container %s: %s", c->task->id, c->name, reason);
    container_stopped(c, 0, false, reason);
}

static void on_sync(ev_io *io, int fd, uint32_t events, void *userdata)
{
    agent_container *c = userdata;
    if (c->start_timer)
        ev_timer_disarm(c->start_timer);
    char buf[2048];
    ssize_t n = read(fd, buf, sizeof(buf));
    if (n > 0) {
        sk_buf_append(&c->sync_buf, buf, (size_t) n);
        if (!memchr(buf, '\n', (size_t) n))
            return;
    } else if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    ev_io_remove(c->sync_io);
    c->sync_io = NULL;
    close(c->sync_fd);
    c->sync_fd = -1;
    pid_t mpid = 0, cpid = 0;
    sk_err err = { 0 };
    const char *line = c->sync_buf.data ? c->sync_buf.data : "";
    if (rt_monitor_parse_sync(line, &mpid, &cpid, &err) < 0) {
        _cleanup_free_ char *reason = xasprintf("CannotStartContainerError: %s", sk_err_msg(&err));
        sk_err_done(&err);
        container_stopped(c, 0, false, reason);
        return;
    }
    c->monitor_pid = mpid;
    c->container_pid = cpid;
    c->state = CS_RUNNING;
    c->ever_started = true;
    c->started_at = now_monotonic();
    if (!watch_monitor(c)) {
        /* Exited already: the exit file has the status. */
        on_monitor_exit(NULL, -1, 0, c);
        return;
    }
    log_info("task %s: container %s running (pid %d)", c->task->id, c->name, (int) cpid);
    if (c->task->desired_stopped) {
        /* The stop came while the runtime was creating it and reached
         * nothing then: stop it now, keeping the deadline already set. */
        log_info("task %s: container %s started after its stop was requested", c->task->id,
                 c->name);
        if (c->killed || (c->stop_deadline && c->stop_deadline <= now_realtime()))
            on_stop_timeout(NULL, c);
        else {
            c->stop_signalled = false;
            signal_container(c);
        }
    }
    start_health(c);
    task_state_changed(c->task);
    try_start(c->task);
}

/* Takes host port p: not used by this agent, not claimed by another agent of
 * the host, and bindable (no host process holds it). */
static bool take_port(agent *a, const char *proto, uint16_t p)
{
    char key[32];
    snprintf(key, sizeof(key), "%s/%u", proto, p);
    if (sk_hmap_get(&a->ports, key) || !claim_host_port(a, proto, p))
        return false;
    if (!rt_port_free(p, proto)) {
        unclaim_host_port(a, key);
        return false;
    }
    return true;
}

static int alloc_dynamic_port(agent *a, const char *proto, uint16_t *ret)
{
    unsigned span = (unsigned) a->cfg.dyn_port_hi - a->cfg.dyn_port_lo + 1;
    unsigned start = (unsigned) (random_u64() % span);
    for (unsigned i = 0; i < span; i++) {
        uint16_t p = (uint16_t) (a->cfg.dyn_port_lo + (start + i) % span);
        if (!take_port(a, proto, p))
            continue;
        *ret = p;
        return 0;
    }
    return -EADDRINUSE;
}

static void claim_port(agent_container *c, const char *proto, uint16_t p)
{
    char key[32];
    snprintf(key, sizeof(key), "%s/%u", proto, p);
    json_array_append_new(c->host_ports, json_string(key));
    const char *stored =
            json_string_value(json_array_get(c->host_ports, json_array_size(c->host_ports) - 1));
    sk_hmap_put(&c->task->agent->ports, stored, c);
}

static int setup_container_network(agent_container *c, sk_err *err)
{
    agent_task *t = c->task;
    agent *a = t->agent;
    json_t *bindings = json_array();
    json_decref(c->bindings);
    c->bindings = bindings;
    if (streq(t->network_mode, "bridge")) {
        c->netns = xasprintf("%s/netns-%s", a->net_state_dir, c->runtime_id);
        if (rt_netns_create(c->netns, err) < 0)
            return -1;
        json_t *pms = js_arr(c->def, "portMappings");
        size_t n = json_array_size(pms);
        rt_port_mapping *ports = xcalloc(n ? n : 1, sizeof(*ports));
        size_t np = 0;
        size_t i;
        json_t *pm;
        json_array_foreach(pms, i, pm) {
            int64_t cport = js_int(pm, "containerPort", 0);
            if (cport <= 0)
                continue;
            const char *proto = js_str_or(pm, "protocol", "tcp");
            int64_t hp = js_int(pm, "hostPort", 0);
            uint16_t host;
            if (hp > 0) {
                if (hp > 65535 || !take_port(a, proto, (uint16_t) hp)) {
                    free(ports);
                    return sk_err_typed(err, SK_E_CONFLICT, "CannotStartContainerError",
                                        "host port %lld/%s is already in use", (long long) hp,
                                        proto);
                }
                host = (uint16_t) hp;
            } else if (alloc_dynamic_port(a, proto, &host) < 0) {
                free(ports);
                return sk_err_typed(err, SK_E_LIMIT, "CannotStartContainerError",
                                    "no free host port in the dynamic range %u-%u",
                                    a->cfg.dyn_port_lo, a->cfg.dyn_port_hi);
            }
            claim_port(c, proto, host);
            ports[np++] = (rt_port_mapping){ .host_port = host,
                                             .container_port = (uint16_t) cport,
                                             .protocol = streq(proto, "udp") ? "udp" : "tcp" };
            json_array_append_new(bindings,
                                  json_pack("{s:s, s:I, s:I, s:s}", "bindIP", "0.0.0.0",
                                            "containerPort", (json_int_t) cport, "hostPort",
                                            (json_int_t) host, "protocol", proto));
        }
        rt_net_result res;
        int r = rt_cni_add(&a->net, "bridge", c->runtime_id, c->netns, ports, np, &res, err);
        free(ports);
        if (r < 0)
            return -1;
        c->net_attached = true;
        free(c->ip);
        c->ip = res.ip[0] ? xstrdup(res.ip) : NULL;
        return 0;
    }
    if (streq(t->network_mode, "host")) {
        size_t i;
        json_t *pm;
        json_array_foreach(js_arr(c->def, "portMappings"), i, pm) {
            int64_t cport = js_int(pm, "containerPort", 0);
            if (cport > 0)
                json_array_append_new(bindings,
                                      json_pack("{s:s, s:I, s:I, s:s}", "bindIP", "0.0.0.0",
                                                "containerPort", (json_int_t) cport, "hostPort",
                                                (json_int_t) cport, "protocol",
                                                js_str_or(pm, "protocol", "tcp")));
        }
    }
    return 0;
}

static int setup_task_network(agent_task *t, sk_err *err)
{
    agent *a = t->agent;
    if (!streq(t->network_mode, "awsvpc") || t->net_attached)
        return 0;
    if (!t->netns)
        t->netns = xasprintf("%s/netns-task-%s", a->net_state_dir, t->id);
    if (rt_netns_create(t->netns, err) < 0)
        return -1;
    _cleanup_free_ char *id = xasprintf("task-%s", t->id);
    rt_net_result res;
    if (rt_cni_add(&a->net, "awsvpc", id, t->netns, NULL, 0, &res, err) < 0)
        return -1;
    t->net_attached = true;
    free(t->ip);
    t->ip = xstrdup(res.ip);
    free(t->mac);
    t->mac = xstrdup(res.mac);
    if (!t->eni_id) {
        char hex[18];
        random_hex(hex, 17);
        t->eni_id = xasprintf("eni-%s", hex);
    }
    if (!t->attachment_id) {
        char uuid[37];
        random_uuid(uuid);
        t->attachment_id = xstrdup(uuid);
    }
    agent_persist_task(t);
    return 0;
}

static char *host_resolv_conf(void)
{
    char *data = NULL;
    if (read_full_file("/etc/resolv.conf", 1 << 16, &data, NULL) < 0)
        return xstrdup("nameserver 8.8.8.8\n");
    if (strstr(data, "nameserver 127.")) {
        char *alt = NULL;
        if (read_full_file("/run/systemd/resolve/resolv.conf", 1 << 16, &alt, NULL) == 0) {
            free(data);
            return alt;
        }
    }
    return data;
}

static int write_etc_files(agent_container *c, const char *hostname, const char *ip, sk_err *err)
{
    sk_buf h;
    sk_buf_init(&h, 1 << 16);
    sk_buf_puts(&h, "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n");
    if (ip)
        sk_buf_printf(&h, "%s\t%s\n", ip, hostname);
    size_t i;
    json_t *e;
    json_array_foreach(js_arr(c->def, "extraHosts"), i, e) {
        if (js_str(e, "ipAddress") && js_str(e, "hostname"))
            sk_buf_printf(&h, "%s\t%s\n", js_str(e, "ipAddress"), js_str(e, "hostname"));
    }
    _cleanup_free_ char *hosts = path_join(c->dir, "hosts");
    _cleanup_free_ char *hn = path_join(c->dir, "hostname");
    _cleanup_free_ char *rc = path_join(c->dir, "resolv.conf");
    _cleanup_free_ char *resolv = host_resolv_conf();
    sk_buf r;
    sk_buf_init(&r, 1 << 16);
    json_t *dns = js_arr(c->def, "dnsServers");
    if (json_array_size(dns)) {
        json_array_foreach(dns, i, e)
            sk_buf_printf(&r, "nameserver %s\n", json_string_value(e) ?: "");
    } else
        sk_buf_puts(&r, resolv);
    json_t *search = js_arr(c->def, "dnsSearchDomains");
    if (json_array_size(search)) {
        sk_buf_puts(&r, "search");
        json_array_foreach(search, i, e)
            sk_buf_printf(&r, " %s", json_string_value(e) ?: "");
        sk_buf_putc(&r, '\n');
    }
    _cleanup_free_ char *hline = xasprintf("%s\n", hostname);
    int q;
    if ((q = write_file_replace(hosts, h.data, h.len, 0644)) < 0 ||
        (q = write_file_replace(hn, hline, strlen(hline), 0644)) < 0 ||
        (q = write_file_replace(rc, r.data, r.len, 0644)) < 0) {
        sk_buf_done(&h);
        sk_buf_done(&r);
        return sk_err_sys(err, q, "write /etc files for %s", c->name);
    }
    sk_buf_done(&h);
    sk_buf_done(&r);
    return 0;
}

/* Resolves the container's mountPoints and volumesFrom to host paths. */
static int collect_mounts(agent_container *c, sk_vec *out, int depth, sk_err *err)
{
    agent_task *t = c->task;
    agent *a = t->agent;
    if (depth > 10)
        return sk_err_typed(err, SK_E_INVALID, "CannotCreateContainerError",
                            "volumesFrom nesting is too deep");
    size_t i;
    json_t *mp;
    json_array_foreach(js_arr(c->def, "mountPoints"), i, mp) {
        const char *vol = js_str(mp, "sourceVolume"), *dst = js_str(mp, "containerPath");
        if (!vol || !dst)
            continue;
        json_t *v = NULL;
        size_t j;
        json_t *e;
        json_array_foreach(js_arr(t->td, "volumes"), j, e) {
            if (streq_ptr(js_str(e, "name"), vol))
                v = e;
        }
        if (!v)
            return sk_err_typed(err, SK_E_INVALID, "CannotCreateContainerError",
                                "unknown volume '%s'", vol);
        char *src;
        const char *hp = js_str(js_obj(v, "host"), "sourcePath");
        json_t *dvc = js_obj(v, "dockerVolumeConfiguration");
        if (hp)
            src = xstrdup(hp);
        else if (dvc && streq_ptr(js_str(dvc, "scope"), "shared"))
            src = xasprintf("%s/volumes/%s", a->cfg.data_dir, vol);
        else if (js_obj(v, "efsVolumeConfiguration") ||
                 js_obj(v, "fsxWindowsFileServerVolumeConfiguration"))
            return sk_err_typed(err, SK_E_INVALID, "CannotCreateVolumeError",
                                "volume '%s': EFS and FSx volumes are not supported by skiff", vol);
        else
            src = xasprintf("%s/volumes/%s", t->dir, vol);
        int r = mkdir_p(src, 0755);
        if (r < 0) {
            free(src);
            return sk_err_sys(err, r, "create volume '%s'", vol);
        }
        rt_mount_spec *m = xcalloc(1, sizeof(*m));
        m->source = src;
        m->destination = xstrdup(dst);
        m->readonly = js_bool(mp, "readOnly", false);
        sk_vec_push(out, m);
    }
    json_array_foreach(js_arr(c->def, "volumesFrom"), i, mp) {
        agent_container *src = find_container(t, js_str_or(mp, "sourceContainer", ""));
        if (!src || src == c)
            continue;
        size_t before = out->len;
        if (collect_mounts(src, out, depth + 1, err) < 0)
            return -1;
        if (js_bool(mp, "readOnly", false))
            for (size_t k = before; k < out->len; k++)
                ((rt_mount_spec *) out->items[k])->readonly = true;
    }
    return 0;
}

static void mount_spec_free(void *p)
{
    rt_mount_spec *m = p;
    free((char *) m->source);
    free((char *) m->destination);
    free((char *) m->options);
    free(m);
}

static void on_sim_started(ev_timer *tm, void *userdata)
{
    agent_container *c = userdata;
    ev_timer_free(tm);
    if (c->state != CS_CREATED)
        return;
    agent_sim_start(c);
    log_debug("task %s: container %s running (simulated)", c->task->id, c->name);
    task_state_changed(c->task);
    try_start(c->task);
}

static int create_container(agent_container *c, sk_err *err)
{
    agent_task *t = c->task;
    agent *a = t->agent;
    if (a->cfg.simulated) {
        c->state = CS_CREATED;
        ev_timer *tm = ev_timer_new(a->loop, on_sim_started, c);
        ev_timer_arm_in(tm, 0);
        return 0;
    }
    img_image *img = NULL;
    if (img_lookup(a->images, c->image, &img, err) < 0)
        return sk_err_wrap(err, "CannotCreateContainerError: image");
    img_touch(a->images, c->image);
    free(c->image_digest);
    c->image_digest = xstrdup(img->manifest_digest ? img->manifest_digest : "");
    if (!t->cgroup_ready) {
        int64_t cpu = 0, mem = 0;
        const char *ocpu = js_str(js_obj(t->task, "overrides"), "cpu");
        const char *omem = js_str(js_obj(t->task, "overrides"), "memory");
        const char *tc = ocpu ? ocpu : js_str(t->td, "cpu");
        const char *tm = omem ? omem : js_str(t->td, "memory");
        if (tc)
            parse_i64(tc, &cpu);
        if (tm)
            parse_i64(tm, &mem);
        if (rt_cgroup_task_create(t->cgroup, cpu, mem, a->cfg.task_pids_limit, err) < 0) {
            img_image_free(img);
            return sk_err_wrap(err, "CannotCreateContainerError");
        }
        t->cgroup_ready = true;
    }
    _cleanup_free_ char *bundle = path_join(c->dir, "bundle");
    _cleanup_free_ char *rootfs = path_join(c->dir, "rootfs");
    _cleanup_free_ char *upper = path_join(c->dir, "upper");
    _cleanup_free_ char *work = path_join(c->dir, "work");
    _cleanup_free_ char *mon = path_join(c->dir, "monitor");
    int r;
    if ((r = mkdir_p(bundle, 0700)) < 0 || (r = mkdir_p(rootfs, 0755)) < 0 ||
        (r = mkdir_p(upper, 0755)) < 0 || (r = mkdir_p(work, 0700)) < 0 ||
        (r = mkdir_p(mon, 0700)) < 0) {
        img_image_free(img);
        return sk_err_sys(err, r, "create container directories");
    }
    if (!rt_is_mountpoint(rootfs) &&
        rt_overlay_mount(img->layer_dirs, img->nlayers, upper, work, rootfs, err) < 0) {
        img_image_free(img);
        return sk_err_wrap(err, "CannotCreateContainerError");
    }
    if (setup_task_network(t, err) < 0 || setup_container_network(c, err) < 0) {
        img_image_free(img);
        if (!err->type)
            err->type = "CannotStartContainerError";
        return -1;
    }
    const char *hostname = js_str(c->def, "hostname");
    char hbuf[16];
    if (!hostname) {
        snprintf(hbuf, sizeof(hbuf), "%.12s", t->id);
        hostname = hbuf;
    }
    if (write_etc_files(c, hostname, t->ip, err) < 0) {
        img_image_free(img);
        return -1;
    }
    sk_vec mounts = { 0 };
    if (collect_mounts(c, &mounts, 0, err) < 0) {
        sk_vec_done(&mounts, mount_spec_free);
        img_image_free(img);
        return -1;
    }
    bool host_net = streq(t->network_mode, "host");
    const char *etc[3][2] = { { "hosts", "/etc/hosts" },
                              { "hostname", "/etc/hostname" },
                              { "resolv.conf", "/etc/resolv.conf" } };
    for (size_t i = 0; i < 3; i++) {
        rt_mount_spec *m = xcalloc(1, sizeof(*m));
        m->source = host_net && i != 1 ? xstrdup(etc[i][1]) : path_join(c->dir, etc[i][0]);
        m->destination = xstrdup(etc[i][1]);
        sk_vec_push(&mounts, m);
    }
    rt_mount_spec *flat = xcalloc(mounts.len ? mounts.len : 1, sizeof(rt_mount_spec));
    for (size_t i = 0; i < mounts.len; i++)
        flat[i] = *(rt_mount_spec *) mounts.items[i];
    _cleanup_free_ char *cg = xasprintf("%s/%s", t->cgroup, c->runtime_id);
    char *env[5] = { 0 };
    env[0] = xasprintf("AWS_EXECUTION_ENV=%s", t->fargate ? "AWS_ECS_FARGATE" : "AWS_ECS_EC2");
    env[1] = xasprintf("ECS_CONTAINER_NAME=%s", c->name);
    agent_tmds_env(c, &env[2], &env[3]);
    const char *pid_mode = js_str(t->td, "pidMode"), *ipc_mode = js_str(t->td, "ipcMode");
    rt_container_spec spec = {
        .container = c->def,
        .image_config = img->config,
        .rootfs = rootfs,
        .hostname = hostname,
        .cgroup_path = cg,
        .netns_path = streq(t->network_mode, "awsvpc") ? t->netns : c->netns,
        .host_network = host_net,
        .host_pid = streq_ptr(pid_mode, "host"),
        .host_ipc = streq_ptr(ipc_mode, "host"),
        .mounts = flat,
        .nmounts = mounts.len,
        .env = env,
        .seccomp_profile = a->seccomp_profile,
        .init_path = a->init_path,
        .pids_limit = a->cfg.task_pids_limit,
    };
    json_t *cfg = NULL;
    r = rt_bundle_config(&spec, &cfg, err);
    free(flat);
    sk_vec_done(&mounts, mount_spec_free);
    for (size_t i = 0; env[i]; i++)
        free(env[i]);
    const char *stopsig = js_str(img->config, "StopSignal");
    free(c->stop_signal);
    c->stop_signal = xstrdup(stopsig && *stopsig ? stopsig : "SIGTERM");
    img_image_free(img);
    if (r < 0)
        return -1;
    char *data = json_dumps(cfg, JSON_COMPACT);
    json_decref(cfg);
    _cleanup_free_ char *cfgpath = path_join(bundle, "config.json");
    r = write_file_replace(cfgpath, data, strlen(data), 0600);
    free(data);
    if (r < 0)
        return sk_err_sys(err, r, "write config.json");
    uint64_t max_size = 10 << 20;
    unsigned max_files = 3;
    json_t *lo = js_obj(js_obj(c->def, "logConfiguration"), "options");
    if (streq_ptr(c->log_driver, "json-file")) {
        uint64_t v;
        if (js_str(lo, "max-size") && parse_size(js_str(lo, "max-size"), &v) == 0 && v >= 4096)
            max_size = v;
        uint32_t f;
        if (js_str(lo, "max-file") && parse_u32(js_str(lo, "max-file"), &f) == 0 && f >= 1 &&
            f <= 100)
            max_files = f;
    } else if (streq_ptr(c->log_driver, "none")) {
        max_size = 1 << 20;
        max_files = 1;
    }
    rt_monitor_opts mo = {
        .monitor_path = a->cfg.monitor_path,
        .runtime_path = a->cfg.runtime_path,
        .runtime_root = a->runc_root,
        .bundle = bundle,
        .id = c->runtime_id,
        .dir = mon,
        .log_max_size = max_size,
        .log_max_files = max_files,
    };
    int sfd;
    if (rt_monitor_spawn(&mo, &sfd, err) < 0)
        return -1;
    c->sync_fd = sfd;
    c->sync_io = ev_io_add(a->loop, sfd, EPOLLIN, on_sync, c);
    c->state = CS_CREATED;
    if (!c->start_timer)
        c->start_timer = ev_timer_new(a->loop, on_start_timeout, c);
    ev_timer_arm_in(c->start_timer, a->cfg.start_timeout);
    agent_persist_task(t);
    return 0;
}

/* 1: satisfied, 0: wait, -1: can never be satisfied (reason set). */
static int deps_ready(agent_container *c, char **ret_reason)
{
    size_t i;
    json_t *d;
    json_array_foreach(js_arr(c->def, "dependsOn"), i, d) {
        agent_container *dep = find_container(c->task, js_str_or(d, "containerName", ""));
        const char *cond = js_str_or(d, "condition", "START");
        if (!dep)
            continue;
        if (streq(cond, "START")) {
            if (dep->ever_started)
                continue;
            if (dep->state == CS_STOPPED) {
                *ret_reason =
                        xasprintf("DependencyError: dependency '%s' never started", dep->name);
                return -1;
            }
            return 0;
        }
        if (streq(cond, "COMPLETE") || streq(cond, "SUCCESS")) {
            if (dep->state != CS_STOPPED) {
                int64_t st = js_int(dep->def, "startTimeout", 0);
                if (st > 0 && dep->ever_started && dep->started_at &&
                    now_monotonic() - dep->started_at > (usec_t) st * USEC_PER_SEC) {
                    *ret_reason = xasprintf(
                            "DependencyError: dependency '%s' did not complete within its startTimeout of %llds",
                            dep->name, (long long) st);
                    return -1;
                }
                return 0;
            }
            if (!dep->ever_started) {
                *ret_reason =
                        xasprintf("DependencyError: dependency '%s' never started", dep->name);
                return -1;
            }
            if (streq(cond, "SUCCESS") && dep->exit_code != 0) {
                *ret_reason = xasprintf(
                        "DependencyError: dependency '%s' exited with code %d (SUCCESS required)",
                        dep->name, dep->exit_code);
                return -1;
            }
            continue;
        }
        if (streq(cond, "HEALTHY")) {
            if (streq_ptr(dep->health, "HEALTHY"))
                continue;
            if (dep->state == CS_STOPPED || streq_ptr(dep->health, "UNHEALTHY")) {
                *ret_reason = xasprintf("DependencyError: dependency '%s' did not become healthy",
                                        dep->name);
                return -1;
            }
            int64_t st = js_int(dep->def, "startTimeout", 0);
            if (st > 0 && dep->ever_started && dep->started_at &&
                now_monotonic() - dep->started_at > (usec_t) st * USEC_PER_SEC) {
                *ret_reason = xasprintf(
                        "DependencyError: dependency '%s' did not become healthy within its startTimeout of %llds",
                        dep->name, (long long) st);
                return -1;
            }
            return 0;
        }
    }
    return 1;
}

static void on_start_timer(ev_timer *tm, void *userdata)
{
    try_start(userdata);
}

static void try_start(agent_task *t)
{
    if (t->desired_stopped)
        return;
    bool waiting = false;
    for (size_t i = 0; i < t->ncontainers; i++) {
        agent_container *c = t->containers[i];
        if (c->state != CS_PULLED)
            continue;
        char *reason = NULL;
        int d = deps_ready(c, &reason);
        if (d == 0) {
            waiting = true;
            continue;
        }
        if (d < 0) {
            container_stopped(c, 0, false, reason);
            free(reason);
            if (t->desired_stopped)
                return;
            continue;
        }
        sk_err err = { 0 };
        if (create_container(c, &err) < 0) {
            const char *msg = sk_err_msg(&err);
            _cleanup_free_ char *reason2 =
                    strchr(msg, ':') && (startswith(msg, "Cannot") || startswith(msg, "Container"))
                            ? xstrdup(msg)
                            : xasprintf("%s: %s",
                                        err.type ? err.type : "CannotCreateContainerError", msg);
            log_warn("task %s: container %s: %s", t->id, c->name, reason2);
            sk_err_done(&err);
            container_stopped(c, 0, false, reason2);
            if (t->desired_stopped)
                return;
        }
    }
    if (waiting) {
        if (!t->start_timer)
            t->start_timer = ev_timer_new(t->agent->loop, on_start_timer, t);
        if (!ev_timer_armed(t->start_timer))
            ev_timer_arm_in(t->start_timer, USEC_PER_SEC);
    }
}

void agent_task_image_ready(agent_container *c, const char *error)
{
    agent_task *t = c->task;
    if (t->pulls_pending)
        t->pulls_pending--;
    if (!t->pulls_pending)
        t->pull_stopped_at = (double) now_realtime() / 1e6;
    if (c->state != CS_NONE)
        return;
    if (error) {
        _cleanup_free_ char *reason = xasprintf("CannotPullContainerError: %s", error);
        log_warn("task %s: container %s: %s", t->id, c->name, reason);
        container_stopped(c, 0, false, reason);
        return;
    }
    c->state = CS_PULLED;
    if (t->desired_stopped) {
        container_stopped(c, 0, false, NULL);
        return;
    }
    try_start(t);
}

void agent_task_start(agent_task *t)
{
    agent *a = t->agent;
    if (t->known == TS_STOPPED) {
        if (!t->reported_stopped)
            agent_task_report(t);
        ev_timer_free(t->cleanup_timer);
        t->cleanup_timer = ev_timer_new(a->loop, on_cleanup, t);
        ev_timer_arm_in(t->cleanup_timer, a->cfg.task_cleanup_wait);
        return;
    }
    if (t->desired_stopped) {
        agent_task_stop(t, NULL);
        return;
    }
    for (size_t i = 0; i < t->ncontainers; i++) {
        agent_container *c = t->containers[i];
        if (c->state == CS_NONE) {
            if (!t->pull_started_at)
                t->pull_started_at = (double) now_realtime() / 1e6;
            t->pulls_pending++;
            agent_pull_request(a, c);
        } else if (c->state == CS_RUNNING && c->health)
            start_health(c);
    }
    try_start(t);
    task_state_changed(t);
}

/* --- stopping --- */

static void on_stop_timeout(ev_timer *tm, void *userdata)
{
    agent_container *c = userdata;
    agent *a = c->task->agent;
    if (c->state != CS_RUNNING && c->state != CS_CREATED)
        return;
    log_info("task %s: container %s did not stop in time, killing", c->task->id, c->name);
    rt_runtime rt = runtime_of(a);
    sk_err err = { 0 };
    if (rt_runtime_kill(&rt, c->runtime_id, "SIGKILL", &err) < 0) {
        log_warn("kill %s: %s", c->name, sk_err_msg(&err));
        if (c->container_pid > 0)
            kill(c->container_pid, SIGKILL);
    }
    sk_err_done(&err);
    c->killed = true;
}

static bool has_running_dependents(agent_container *c)
{
    agent_task *t = c->task;
    for (size_t i = 0; i < t->ncontainers; i++) {
        agent_container *o = t->containers[i];
        if (o == c || (o->state != CS_RUNNING && o->state != CS_CREATED))
            continue;
        size_t j;
        json_t *d;
        json_array_foreach(js_arr(o->def, "dependsOn"), j, d) {
            if (streq_ptr(js_str(d, "containerName"), c->name))
                return true;
        }
    }
    return false;
}

static void on_sim_stopped(ev_timer *tm, void *userdata)
{
    agent_container *c = userdata;
    container_stopped(c, 143, true, NULL);
}

static void signal_container(agent_container *c)
{
    agent *a = c->task->agent;
    if (c->stop_signalled) {
        /* Signalled before, perhaps by an earlier agent process: the SIGKILL
         * deadline still stands. */
        if (!a->cfg.simulated && !(c->stop_timer && ev_timer_armed(c->stop_timer))) {
            usec_t now = now_realtime();
            if (!c->stop_timer)
                c->stop_timer = ev_timer_new(a->loop, on_stop_timeout, c);
            ev_timer_arm_in(c->stop_timer, c->stop_deadline > now ? c->stop_deadline - now : 0);
        }
        return;
    }
    c->stop_signalled = true;
    if (a->cfg.simulated) {
        if (!c->stop_timer)
            c->stop_timer = ev_timer_new(a->loop, on_sim_stopped, c);
        ev_timer_arm_in(c->stop_timer, 0);
        return;
    }
    rt_runtime rt = runtime_of(a);
    sk_err err = { 0 };
    const char *sig = c->stop_signal ? c->stop_signal : "SIGTERM";
    if (rt_runtime_kill(&rt, c->runtime_id, sig, &err) < 0) {
        log_warn("stop %s: %s", c->name, sk_err_msg(&err));
        if (c->container_pid > 0)
            kill(c->container_pid, SIGTERM);
    }
    sk_err_done(&err);
    int64_t st = js_int(c->def, "stopTimeout", 0);
    usec_t timeout = st > 0 ? (usec_t) st * USEC_PER_SEC : a->cfg.stop_timeout;
    if (!c->stop_timer)
        c->stop_timer = ev_timer_new(a->loop, on_stop_timeout, c);
    ev_timer_arm_in(c->stop_timer, timeout);
    c->stop_deadline = now_realtime() + timeout;
    agent_persist_task(c->task);
}

static void check_stop_progress(agent_task *t)
{
    if (!t->desired_stopped)
        return;
    for (size_t i = 0; i < t->ncontainers; i++) {
        agent_container *c = t->containers[i];
        if (c->state == CS_NONE || c->state == CS_PULLED) {
            /* Never started: nothing to signal. */
            c->state = CS_STOPPED;
            continue;
        }
        if ((c->state == CS_RUNNING || c->state == CS_CREATED) && !has_running_dependents(c))
            signal_container(c);
    }
}

void agent_task_stop(agent_task *t, const char *why)
{
    if (t->desired_stopped && t->known == TS_STOPPED)
        return;
    t->desired_stopped = true;
    check_stop_progress(t);
    maybe_task_stopped(t);
    if (t->known != TS_STOPPED) {
        agent_persist_task(t);
        agent_task_report(t);
    }
}

/* --- cleanup --- */

void agent_task_cleanup(agent_task *t)
{
    agent *a = t->agent;
    if (a->cfg.simulated) {
        rm_rf(t->dir);
        return;
    }
    rt_runtime rt = runtime_of(a);
    for (size_t i = 0; i < t->ncontainers; i++) {
        agent_container *c = t->containers[i];
        sk_err err = { 0 };
        if (c->ever_started && rt_runtime_delete(&rt, c->runtime_id, true, &err) < 0)
            log_warn("delete container %s: %s", c->runtime_id, sk_err_msg(&err));
        sk_err_done(&err);
        _cleanup_free_ char *rootfs = path_join(c->dir, "rootfs");
        rt_umount(rootfs);
        detach_container_network(c);
    }
    detach_task_network(t);
    sk_err err = { 0 };
    if (rt_cgroup_remove(t->cgroup, &err) < 0)
        log_warn("task %s: %s", t->id, sk_err_msg(&err));
    sk_err_done(&err);
    int r = rm_rf(t->dir);
    if (r < 0)
        log_warn("task %s: remove %s: %s", t->id, t->dir, strerror(-r));
    log_info("task %s: cleaned up", t->id);
}

static void on_cleanup(ev_timer *tm, void *userdata)
{
    agent_task *t = userdata;
    agent *a = t->agent;
    /* The task must outlive every callback that refers to it: a report in
     * flight (report_done) and image pulls (agent_task_image_ready). */
    if (!t->reported_stopped || t->reporting || t->pulls_pending) {
        ev_timer_arm_in(tm, 5 * USEC_PER_SEC);
        return;
    }
    /* Ship the rest of the awslogs output first, but give up on a sink that
     * stays away (its lines are then lost, as when the log rotates). */
    if (!t->cleanup_deferred_since)
        t->cleanup_deferred_since = now_monotonic();
    bool give_up = now_monotonic() - t->cleanup_deferred_since > LOG_DRAIN_MAX;
    for (size_t i = 0; i < t->ncontainers; i++) {
        agent_container *c = t->containers[i];
        if (c->log_busy || (!give_up && (c->log_batch || agent_logs_pending(c)))) {
            ev_timer_arm_in(tm, USEC_PER_SEC);
            return;
        }
        if (agent_logs_pending(c))
            log_warn("task %s: container %s: cleaning up before its log was shipped", t->id,
                     c->name);
    }
    agent_task_cleanup(t);
    sk_omap_remove(a->tasks, t->arn);
    agent_task_free(t);
}
