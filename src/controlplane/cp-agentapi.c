/* The calls the node agent makes: DiscoverPollEndpoint and the state-change
 * submissions that move tasks through their lifecycle. The control plane
 * decides stopCode/stoppedReason (e.g. an essential container exited); the
 * agent only reports what happened. */
#include <string.h>

#include "basic/alloc.h"
#include "basic/strutil.h"
#include "cp-internal.h"
#include "cp-task.h"

CP_HANDLER(discover_poll_endpoint)
{
    cp *c = cp_of(call);
    const aws_ctx *ctx = aws_call_ctx(call);
    json_t *in = aws_call_input(call);
    const char *ref = js_str(in, "containerInstance");
    if (ref) {
        _cleanup_free_ char *cluster = cp_cluster_name_from(js_str(in, "cluster"));
        const char *slash = strrchr(ref, '/');
        if (cluster)
            cp_instance_touch(c, ctx->account, ctx->region, cluster, slash ? slash + 1 : ref);
    }
    _cleanup_free_ char *acs = xasprintf("%s/acs", c->endpoint_url);
    _cleanup_free_ char *tcs = xasprintf("%s/tcs", c->endpoint_url);
    aws_reply(call, json_pack("{s:s, s:s, s:s}", "endpoint", acs, "telemetryEndpoint", tcs,
                              "serviceConnectEndpoint", acs));
}

static json_t *find_container(json_t *task, const char *name)
{
    size_t i;
    json_t *c;
    json_array_foreach(js_arr(task, "containers"), i, c) {
        if (streq_ptr(js_str(c, "name"), name))
            return c;
    }
    return NULL;
}

static void apply_container_change(json_t *ce, const json_t *ch)
{
    const char *st = js_str(ch, "status");
    if (st && (streq(st, "PENDING") || streq(st, "RUNNING") || streq(st, "STOPPED")) &&
        !streq_ptr(js_str(ce, "lastStatus"), "STOPPED"))
        js_set_str(ce, "lastStatus", st);
    if (js_has(ch, "exitCode"))
        js_set(ce, "exitCode", json_incref(json_object_get(ch, "exitCode")));
    if (js_str(ch, "reason")) {
        const char *r = js_str(ch, "reason");
        char buf[1025];
        snprintf(buf, sizeof(buf), "%s", r);
        js_set_str(ce, "reason", buf);
    }
    if (js_str(ch, "runtimeId"))
        js_set_str(ce, "runtimeId", js_str(ch, "runtimeId"));
    if (js_str(ch, "imageDigest"))
        js_set_str(ce, "imageDigest", js_str(ch, "imageDigest"));
    if (js_arr(ch, "networkBindings"))
        js_set(ce, "networkBindings", json_deep_copy(js_arr(ch, "networkBindings")));
    if (js_arr(ch, "networkInterfaces"))
        js_set(ce, "networkInterfaces", json_deep_copy(js_arr(ch, "networkInterfaces")));
    const char *hs = js_str(ch, "healthStatus");
    if (hs && (streq(hs, "HEALTHY") || streq(hs, "UNHEALTHY") || streq(hs, "UNKNOWN")))
        js_set_str(ce, "healthStatus", hs);
}

/* An ENI attachment with an address: every container lists it under
 * networkInterfaces, as ECS shows for awsvpc tasks. */
static void set_network_interfaces(json_t *task, const json_t *att)
{
    const char *ip = NULL;
    size_t i;
    json_t *d;
    json_array_foreach(js_arr(att, "details"), i, d)
        if (streq_ptr(js_str(d, "name"), "privateIPv4Address"))
            ip = js_str(d, "value");
    const char *id = js_str(att, "id");
    if (!ip || !*ip || !id || !streq_ptr(js_str(att, "type"), "ElasticNetworkInterface"))
        return;
    json_t *c;
    json_array_foreach(js_arr(task, "containers"), i, c)
        js_set(c, "networkInterfaces",
               json_pack("[{s:s, s:s}]", "attachmentId", id, "privateIpv4Address", ip));
}

/* Task health: the aggregate of essential containers (UNHEALTHY > UNKNOWN > HEALTHY). */
static void aggregate_health(json_t *task, const json_t *td)
{
    int worst = -1; /* 0 healthy, 1 unknown, 2 unhealthy */
    size_t i;
    json_t *ce;
    json_array_foreach(js_arr(task, "containers"), i, ce) {
        const char *name = js_str(ce, "name");
        bool essential = true, has_check = false;
        size_t j;
        json_t *cd;
        json_array_foreach(js_arr(td, "containerDefinitions"), j, cd) {
            if (streq_ptr(js_str(cd, "name"), name)) {
                essential = js_bool(cd, "essential", true);
                has_check = js_obj(cd, "healthCheck") != NULL;
            }
        }
        if (!essential || !has_check)
            continue;
        const char *hs = js_str_or(ce, "healthStatus", "UNKNOWN");
        int v = streq(hs, "HEALTHY") ? 0 : streq(hs, "UNHEALTHY") ? 2 : 1;
        if (v > worst)
            worst = v;
    }
    if (worst < 0)
        js_set_str(task, "healthStatus", "UNKNOWN");
    else
        js_set_str(task, "healthStatus",
                   worst == 0   ? "HEALTHY"
                   : worst == 1 ? "UNKNOWN"
                                : "UNHEALTHY");
}

static bool essential_stopped(const json_t *task, const json_t *td, bool *ret_any_ran)
{
    bool stopped = false;
    *ret_any_ran = false;
    size_t i;
    json_t *ce;
    json_array_foreach(js_arr(task, "containers"), i, ce) {
        if (js_has(ce, "exitCode"))
            *ret_any_ran = true;
        if (!streq_ptr(js_str(ce, "lastStatus"), "STOPPED"))
            continue;
        size_t j;
        json_t *cd;
        json_array_foreach(js_arr(td, "containerDefinitions"), j, cd) {
            if (streq_ptr(js_str(cd, "name"), js_str(ce, "name")) && js_bool(cd, "essential", true))
                stopped = true;
        }
    }
    return stopped;
}

static char *task_key_from(const aws_ctx *ctx, const char *cluster, const char *ref)
{
    if (!ref)
        return NULL;
    const char *id = ref;
    if (startswith(ref, "arn:")) {
        const char *slash = strrchr(ref, '/');
        if (!slash)
            return NULL;
        id = slash + 1;
    }
    if (!*id || strchr(id, '/') || strlen(id) > 64)
        return NULL;
    return cp_key(ctx, "task", "%s/%s", cluster, id);
}

/* Applies a batch of state changes to one task; task_status may be NULL. */
static int submit_changes(cp *c, const aws_ctx *ctx, const json_t *in, const json_t *containers,
                          const char *task_status, sk_err *err)
{
    _cleanup_free_ char *cluster = NULL;
    if (cp_cluster_get(c, ctx, js_str(in, "cluster"), false, &cluster, NULL, err) < 0)
        return -1;
    _cleanup_free_ char *key = task_key_from(ctx, cluster, js_str(in, "task"));
    _cleanup_json_ json_t *task = key ? store_get_json(c->st, key) : NULL;
    if (!task)
        return cp_err_invalid(err, "The referenced task was not found.");
    json_t *internal = js_obj(task, "_skiff");
    const char *iid = js_str(internal, "instanceId");
    if (iid)
        cp_instance_touch(c, ctx->account, ctx->region, cluster, iid);
    if (streq_ptr(js_str(task, "lastStatus"), "STOPPED"))
        return 0; /* terminal: late reports change nothing */
    _cleanup_json_ json_t *td = NULL;
    sk_err tderr = { 0 };
    if (cp_taskdef_resolve(c, ctx, js_str_or(task, "taskDefinitionArn", ""), false, &td, &tderr) <
        0)
        sk_err_done(&tderr);
    size_t i;
    json_t *ch;
    json_array_foreach(containers, i, ch) {
        json_t *ce = find_container(task, js_str_or(ch, "containerName", ""));
        if (ce)
            apply_container_change(ce, ch);
    }
    json_array_foreach(js_arr(in, "attachments"), i, ch) {
        const char *aarn = js_str(ch, "attachmentArn");
        size_t j;
        json_t *a;
        json_array_foreach(js_arr(task, "attachments"), j, a) {
            const char *aid = js_str(a, "id");
            if (aarn && aid && (streq(aarn, aid) || endswith(aarn, aid))) {
                if (js_str(ch, "status"))
                    js_set_str(a, "status", js_str(ch, "status"));
                /* Details merge by name (the agent reports the ENI's addresses). */
                json_t *cur = js_ensure_arr(a, "details");
                size_t k;
                json_t *d;
                json_array_foreach(js_arr(ch, "details"), k, d) {
                    const char *dn = js_str(d, "name");
                    bool found = false;
                    size_t m;
                    json_t *e;
                    json_array_foreach(cur, m, e) {
                        if (dn && streq_ptr(js_str(e, "name"), dn)) {
                            js_set(e, "value", json_incref(json_object_get(d, "value")));
                            found = true;
                        }
                    }
                    if (dn && !found)
                        json_array_append_new(cur, json_pack("{s:s, s:O}", "name", dn, "value",
                                                             json_object_get(d, "value")));
                }
                set_network_interfaces(task, a);
            }
        }
    }
    const char *ts[] = { "pullStartedAt", "pullStoppedAt", "executionStoppedAt" };
    for (size_t k = 0; k < ELEMENTSOF(ts); k++) {
        json_t *v = json_object_get(in, ts[k]);
        if (json_is_number(v))
            js_set(task, ts[k], json_incref(v));
        else if (json_is_string(v)) {
            usec_t u;
            if (parse_rfc3339(json_string_value(v), &u) == 0)
                js_set_time(task, ts[k], u);
        }
    }
    if (td)
        aggregate_health(task, td);
    usec_t now = now_realtime();
    bool any_ran = false;
    if (td && essential_stopped(task, td, &any_ran) &&
        !streq_ptr(js_str(task, "desiredStatus"), "STOPPED")) {
        js_set_str(task, "desiredStatus", "STOPPED");
        bool started = js_has(task, "startedAt");
        if (started || any_ran) {
            js_set_str(task, "stopCode", "EssentialContainerExited");
            js_set_str(task, "stoppedReason", "Essential container in task exited");
        } else {
            js_set_str(task, "stopCode", "TaskFailedToStart");
            const char *why = NULL;
            json_array_foreach(js_arr(task, "containers"), i, ch) {
                if (!why && js_str(ch, "reason"))
                    why = js_str(ch, "reason");
            }
            js_set_str(task, "stoppedReason",
                       why ? why : js_str_or(in, "reason", "Task failed to start"));
        }
        js_set_time(task, "stoppingAt", now);
    }
    store_txn *txn = store_txn_new(c->st);
    if (task_status && streq(task_status, "RUNNING")) {
        cp_task_status last = cp_task_status_from(js_str(task, "lastStatus"));
        if (last < CP_TS_RUNNING) {
            js_set_str(task, "lastStatus", "RUNNING");
            if (!js_has(task, "startedAt"))
                js_set_time(task, "startedAt", now);
        }
    } else if (task_status && streq(task_status, "STOPPED")) {
        const char *reason = js_str(in, "reason");
        if (reason && !js_str(task, "stoppedReason"))
            js_set_str(task, "stoppedReason", reason);
        bool started = js_has(task, "startedAt");
        cp_task_mark_stopped(c, ctx, txn, task, cluster,
                             started ? "Task stopped" : "Task failed to start",
                             started ? "EssentialContainerExited" : "TaskFailedToStart");
    } else if (task_status && streq(task_status, "PENDING")) {
        if (streq_ptr(js_str(task, "lastStatus"), "PROVISIONING"))
            js_set_str(task, "lastStatus", "PENDING");
    }
    js_set_int(task, "version", js_int(task, "version", 0) + 1);
    store_txn_put_json(txn, key, task);
    return store_txn_commit(txn, err);
}

CP_HANDLER(submit_task_state_change)
{
    cp *c = cp_of(call);
    json_t *in = aws_call_input(call);
    sk_err err = { 0 };
    const char *st = js_str(in, "status");
    if (st && !(streq(st, "RUNNING") || streq(st, "STOPPED") || streq(st, "PENDING"))) {
        cp_err_invalid(&err, "Invalid task status '%s'.", st);
        return cp_fail(call, &err);
    }
    if (submit_changes(c, aws_call_ctx(call), in, js_arr(in, "containers"), st, &err) < 0)
        return cp_fail(call, &err);
    aws_reply(call, json_pack("{s:s}", "acknowledgment", "true"));
}

CP_HANDLER(submit_container_state_change)
{
    cp *c = cp_of(call);
    json_t *in = aws_call_input(call);
    sk_err err = { 0 };
    json_t *one = json_array();
    json_t *ch = json_deep_copy(in);
    js_set(ch, "cluster", NULL);
    js_set(ch, "task", NULL);
    json_array_append_new(one, ch);
    int r = submit_changes(c, aws_call_ctx(call), in, one, NULL, &err);
    json_decref(one);
    if (r < 0)
        return cp_fail(call, &err);
    aws_reply(call, json_pack("{s:s}", "acknowledgment", "true"));
}

CP_HANDLER(submit_attachment_state_changes)
{
    cp *c = cp_of(call);
    const aws_ctx *ctx = aws_call_ctx(call);
    json_t *in = aws_call_input(call);
    sk_err err = { 0 };
    _cleanup_free_ char *cluster = NULL;
    if (cp_cluster_get(c, ctx, js_str(in, "cluster"), false, &cluster, NULL, &err) < 0)
        return cp_fail(call, &err);
    /* Attachments are task-scoped here: find the task owning each attachment id. */
    cp_cluster_idx *cl = cp_cluster_idx_get(c, ctx, cluster, false);
    store_txn *txn = store_txn_new(c->st);
    size_t i;
    json_t *ch;
    json_array_foreach(js_arr(in, "attachments"), i, ch) {
        const char *aarn = js_str(ch, "attachmentArn");
        if (!aarn || !cl)
            continue;
        for (sk_omap_node *n = sk_omap_seek(cl->tasks, NULL); n; n = sk_omap_next(n)) {
            cp_task_info *t = sk_omap_node_value(n);
            if (t->last == CP_TS_STOPPED)
                continue;
            const store_kv *kv = store_get(c->st, t->key);
            if (!kv || !strstr(kv->value, strrchr(aarn, '/') ? strrchr(aarn, '/') + 1 : aarn))
                continue;
            json_t *task = json_loadb(kv->value, kv->len, 0, NULL);
            size_t j;
            json_t *a;
            json_array_foreach(js_arr(task, "attachments"), j, a) {
                const char *aid = js_str(a, "id");
                if (aid && endswith(aarn, aid))
                    js_set_str(a, "status", js_str_or(ch, "status", "ATTACHED"));
            }
            js_set_int(task, "version", js_int(task, "version", 0) + 1);
            store_txn_put_json(txn, t->key, task);
            json_decref(task);
            break;
        }
    }
    if (store_txn_commit(txn, &err) < 0)
        return cp_fail(call, &err);
    aws_reply(call, json_pack("{s:s}", "acknowledgment", "true"));
}
