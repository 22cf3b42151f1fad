/* Service deployments and service revisions (ListServiceDeployments,
 * DescribeServiceDeployments, DescribeServiceRevisions).
 *
 * Every deployment the scheduler starts is recorded in the service document
 * (_skiff.history, newest first, at most HISTORY_MAX entries) together with
 * the service revision it deploys: the task definition and the settings that
 * shape its tasks at that moment. A deployment is IN_PROGRESS until its
 * rollout completes (SUCCESSFUL), a newer deployment replaces it (STOPPED),
 * or the circuit breaker fails it (STOPPED, or ROLLBACK_IN_PROGRESS and then
 * ROLLBACK_SUCCESSFUL when the rollback deployment completes). A rollback is
 * part of the failed deployment's record, as in ECS, not a record of its own.
 *
 * ARNs: arn:aws:ecs:REGION:ACCOUNT:service-deployment/CLUSTER/SERVICE/ID and
 * .../service-revision/CLUSTER/SERVICE/ID, where ID is the numeric part of
 * the deployment's "ecs-svc/ID". */
#include <string.h>

#include "basic/alloc.h"
#include "basic/strutil.h"
#include "cp-internal.h"

#define HISTORY_MAX  20
#define DESCRIBE_MAX 20

static const char *numeric_id(const char *dep_id)
{
    const char *p = dep_id ? startswith(dep_id, "ecs-svc/") : NULL;
    return p ? p : dep_id;
}

static json_t *history(json_t *svc)
{
    return js_ensure_arr(js_ensure_obj(svc, "_skiff"), "history");
}

static json_t *entry_find(json_t *svc, const char *id)
{
    size_t i;
    json_t *e;
    json_array_foreach(history(svc), i, e) {
        if (streq_ptr(js_str(e, "id"), id))
            return e;
    }
    return NULL;
}

const char *cp_svc_history_status(json_t *svc, const char *dep_id)
{
    return js_str(entry_find(svc, numeric_id(dep_id)), "status");
}

static void entry_end(json_t *e, const char *status, const char *reason, usec_t now)
{
    js_set_str(e, "status", status);
    if (reason)
        js_set_str(e, "statusReason", reason);
    js_set_time(e, "updatedAt", now);
    if (streq(status, "STOPPED"))
        js_set_time(e, "stoppedAt", now);
    else
        js_set_time(e, "finishedAt", now);
}

static bool in_progress(const json_t *e)
{
    const char *st = js_str(e, "status");
    return streq_ptr(st, "IN_PROGRESS") || streq_ptr(st, "ROLLBACK_IN_PROGRESS");
}

void cp_svc_history_start(json_t *svc, const json_t *dep)
{
    usec_t now = now_realtime();
    json_t *h = history(svc);
    json_t *sources = json_array();
    size_t i;
    json_t *e;
    json_array_foreach(h, i, e) {
        if (in_progress(e))
            entry_end(e, "STOPPED", "A newer deployment of the service started.", now);
    }
    json_array_foreach(js_arr(svc, "deployments"), i, e) {
        const char *id = numeric_id(js_str(e, "id"));
        if (!id || streq_ptr(js_str(e, "id"), js_str(dep, "id")))
            continue;
        json_array_append_new(sources,
                              json_pack("{s:s, s:I, s:I}", "id", id, "runningTasks",
                                        (json_int_t) js_int(e, "runningCount", 0), "pendingTasks",
                                        (json_int_t) js_int(e, "pendingCount", 0)));
    }
    json_t *rev = json_object();
    js_set_str(rev, "taskDefinition", js_str(dep, "taskDefinition"));
    const char *copy[] = { "launchType",          "capacityProviderStrategy",
                           "platformVersion",     "platformFamily",
                           "loadBalancers",       "serviceRegistries",
                           "networkConfiguration" };
    for (size_t k = 0; k < ELEMENTSOF(copy); k++) {
        json_t *v = json_object_get(svc, copy[k]);
        if (v && !json_is_null(v))
            js_set(rev, copy[k], json_deep_copy(v));
    }
    js_set_time(rev, "createdAt", now);
    json_t *rec = json_object();
    js_set_str(rec, "id", numeric_id(js_str(dep, "id")));
    js_set_str(rec, "status", "IN_PROGRESS");
    js_set_time(rec, "createdAt", now);
    js_set_time(rec, "startedAt", now);
    js_set_time(rec, "updatedAt", now);
    js_set(rec, "sourceRevisions", sources);
    js_set(rec, "revision", rev);
    json_t *dc = json_object_get(svc, "deploymentConfiguration");
    if (dc)
        js_set(rec, "deploymentConfiguration", json_deep_copy(dc));
    json_array_insert_new(h, 0, rec);
    while (json_array_size(h) > HISTORY_MAX)
        json_array_remove(h, json_array_size(h) - 1);
}

void cp_svc_history_rollback(json_t *svc, const char *failed_dep, const char *rollback_dep,
                             const char *target_dep, const char *reason)
{
    usec_t now = now_realtime();
    json_t *h = history(svc);
    /* The rollback deployment belongs to the failed deployment's record. */
    size_t i;
    json_t *e;
    json_array_foreach(h, i, e) {
        if (streq_ptr(js_str(e, "id"), numeric_id(rollback_dep))) {
            json_array_remove(h, i);
            break;
        }
    }
    json_t *f = entry_find(svc, numeric_id(failed_dep));
    if (!f)
        return;
    js_set_str(f, "status", "ROLLBACK_IN_PROGRESS");
    js_set_str(f, "statusReason", reason);
    js_set(f, "stoppedAt", NULL);
    js_set_time(f, "updatedAt", now);
    js_set(f, "rollback",
           json_pack("{s:s, s:f, s:s}", "reason", reason, "startedAt", (double) now / 1e6,
                     "revision", numeric_id(target_dep)));
    js_set_str(f, "rollbackDeployment", numeric_id(rollback_dep));
}

void cp_svc_history_end(json_t *svc, const char *dep, bool success, const char *reason)
{
    usec_t now = now_realtime();
    const char *id = numeric_id(dep);
    size_t i;
    json_t *e;
    json_array_foreach(history(svc), i, e) {
        if (!in_progress(e))
            continue;
        if (streq_ptr(js_str(e, "rollbackDeployment"), id)) {
            entry_end(e, success ? "ROLLBACK_SUCCESSFUL" : "ROLLBACK_FAILED", reason, now);
            return;
        }
        if (streq_ptr(js_str(e, "id"), id)) {
            entry_end(e, success ? "SUCCESSFUL" : "STOPPED", reason, now);
            return;
        }
    }
}

void cp_svc_history_stop_all(json_t *svc, const char *reason)
{
    usec_t now = now_realtime();
    size_t i;
    json_t *e;
    json_array_foreach(history(svc), i, e) {
        if (in_progress(e))
            entry_end(e, "STOPPED", reason, now);
    }
}

/* --- views --- */

/* "arn:...:service/CLUSTER/NAME" -> "arn:...:KIND/CLUSTER/NAME/ID" */
static char *child_arn(const json_t *svc, const char *kind, const char *id)
{
    const char *sarn = js_str_or(svc, "serviceArn", "");
    const char *p = strstr(sarn, ":service/");
    if (!p)
        return xstrdup("");
    return xasprintf("%.*s:%s/%s/%s", (int) (p - sarn), sarn, kind, p + strlen(":service/"), id);
}

static void copy_time(json_t *dst, const char *dk, const json_t *src, const char *sk)
{
    json_t *v = json_object_get(src, sk);
    if (json_is_number(v))
        js_set(dst, dk, json_copy(v));
}

/* The members ListServiceDeployments and DescribeServiceDeployments share;
 * ret_revision_arn gets the target revision's ARN. */
static json_t *deployment_base(const json_t *svc, const json_t *e, char **ret_revision_arn)
{
    json_t *o = json_object();
    _cleanup_free_ char *arn = child_arn(svc, "service-deployment", js_str_or(e, "id", ""));
    js_set_str(o, "serviceDeploymentArn", arn);
    js_set_str(o, "serviceArn", js_str_or(svc, "serviceArn", ""));
    js_set_str(o, "clusterArn", js_str_or(svc, "clusterArn", ""));
    copy_time(o, "createdAt", e, "createdAt");
    copy_time(o, "startedAt", e, "startedAt");
    copy_time(o, "finishedAt", e, "finishedAt");
    js_set_str(o, "status", js_str_or(e, "status", "IN_PROGRESS"));
    if (js_str(e, "statusReason"))
        js_set_str(o, "statusReason", js_str(e, "statusReason"));
    *ret_revision_arn = child_arn(svc, "service-revision", js_str_or(e, "id", ""));
    return o;
}

static json_t *brief_view(const json_t *svc, const json_t *e)
{
    _cleanup_free_ char *rarn = NULL;
    json_t *o = deployment_base(svc, e, &rarn);
    js_set_str(o, "targetServiceRevisionArn", rarn);
    return o;
}

/* The service's live deployment for history entry e, if it is still listed. */
static const json_t *live_deployment(const json_t *svc, const json_t *e)
{
    size_t i;
    json_t *d;
    json_array_foreach(js_arr(svc, "deployments"), i, d) {
        if (streq_ptr(numeric_id(js_str(d, "id")), js_str(e, "id")))
            return d;
    }
    return NULL;
}

static json_t *full_view(const json_t *svc, const json_t *e)
{
    _cleanup_free_ char *rarn = NULL;
    json_t *o = deployment_base(svc, e, &rarn);
    copy_time(o, "stoppedAt", e, "stoppedAt");
    copy_time(o, "updatedAt", e, "updatedAt");
    json_t *sources = json_array();
    size_t i;
    json_t *s;
    json_array_foreach(js_arr(e, "sourceRevisions"), i, s) {
        _cleanup_free_ char *sarn = child_arn(svc, "service-revision", js_str_or(s, "id", ""));
        json_array_append_new(sources, json_pack("{s:s, s:I, s:I}", "arn", sarn, "runningTaskCount",
                                                 (json_int_t) js_int(s, "runningTasks", 0),
                                                 "pendingTaskCount",
                                                 (json_int_t) js_int(s, "pendingTasks", 0)));
    }
    js_set(o, "sourceServiceRevisions", sources);
    /* Task counts only while the deployment is live (in DescribeServices). */
    const json_t *live = live_deployment(svc, e);
    json_t *target = json_pack("{s:s}", "arn", rarn);
    if (live) {
        js_set_int(target, "requestedTaskCount", js_int(live, "desiredCount", 0));
        js_set_int(target, "runningTaskCount", js_int(live, "runningCount", 0));
        js_set_int(target, "pendingTaskCount", js_int(live, "pendingCount", 0));
    }
    js_set(o, "targetServiceRevision", target);
    json_t *dc = js_obj(e, "deploymentConfiguration");
    if (dc) {
        js_set(o, "deploymentConfiguration", json_deep_copy(dc));
        json_t *cb = js_obj(dc, "deploymentCircuitBreaker");
        if (js_bool(cb, "enable", false)) {
            const char *st = js_str_or(e, "status", "");
            json_t *v = json_pack("{s:s}", "status",
                                  streq(st, "IN_PROGRESS") ? "MONITORING"
                                  : strstr(st, "ROLLBACK") ? "TRIGGERED"
                                                           : "MONITORING_COMPLETE");
            if (live)
                js_set_int(v, "failureCount", js_int(live, "failedTasks", 0));
            js_set(o, "deploymentCircuitBreaker", v);
        }
    }
    json_t *rb = js_obj(e, "rollback");
    if (rb) {
        _cleanup_free_ char *tarn =
                child_arn(svc, "service-revision", js_str_or(rb, "revision", ""));
        json_t *r = json_object();
        js_set_str(r, "reason", js_str_or(rb, "reason", ""));
        copy_time(r, "startedAt", rb, "startedAt");
        js_set_str(r, "serviceRevisionArn", tarn);
        js_set(o, "rollback", r);
    }
    return o;
}

static json_t *revision_view(const json_t *svc, const json_t *e)
{
    const json_t *rev = js_obj(e, "revision");
    json_t *o = json_deep_copy(rev);
    if (!o)
        o = json_object();
    _cleanup_free_ char *rarn = child_arn(svc, "service-revision", js_str_or(e, "id", ""));
    js_set_str(o, "serviceRevisionArn", rarn);
    js_set_str(o, "serviceArn", js_str_or(svc, "serviceArn", ""));
    js_set_str(o, "clusterArn", js_str_or(svc, "clusterArn", ""));
    return o;
}

/* --- handlers --- */

CP_HANDLER(list_service_deployments)
{
    cp *c = cp_of(call);
    json_t *in = aws_call_input(call);
    sk_err err = { 0 };
    _cleanup_free_ char *cluster = NULL, *key = NULL;
    _cleanup_json_ json_t *svc = NULL;
    if (cp_service_load(c, aws_call_ctx(call), in, &cluster, &key, &svc, &err) < 0)
        return cp_fail(call, &err);
    int limit;
    _cleanup_free_ char *start = NULL;
    if (cp_page_args(c, in, 20, 100, &limit, &start, &err) < 0)
        return cp_fail(call, &err);
    json_t *statuses = js_arr(in, "status");
    json_t *created = js_obj(in, "createdAt");
    double before = json_number_value(json_object_get(created, "before"));
    double after = json_number_value(json_object_get(created, "after"));
    json_t *out = json_object(), *list = json_array();
    bool skipping = start != NULL;
    const char *last = NULL;
    size_t i;
    json_t *e;
    json_array_foreach(history(svc), i, e) {
        const char *id = js_str_or(e, "id", "");
        if (skipping) {
            skipping = !streq(id, start);
            continue;
        }
        if (json_array_size(statuses) && !js_array_has_str(statuses, js_str_or(e, "status", "")))
            continue;
        double at = json_number_value(json_object_get(e, "createdAt"));
        if ((before > 0 && at >= before) || (after > 0 && at <= after))
            continue;
        if ((int) json_array_size(list) >= limit) {
            cp_page_token(c, out, last);
            break;
        }
        json_array_append_new(list, brief_view(svc, e));
        last = id;
    }
    js_set(out, "serviceDeployments", list);
    aws_reply(call, out);
}

json_t *cp_svc_child_load(cp *c, const aws_ctx *ctx, const char *arn, const char *kind,
                          char **ret_key, char ret_id[CP_SVC_CHILD_ID_MAX])
{
    cp_arn_parts p;
    char cluster[256], name[256];
    if (!arn || cp_arn_parse(arn, &p) < 0 || !streq(p.type, kind) ||
        !streq(p.account, ctx->account) || !streq(p.region, ctx->region) ||
        sscanf(p.rest, "%255[^/]/%255[^/]/%63[^/]", cluster, name, ret_id) != 3 ||
        !cp_name_valid(cluster, 255) || !cp_name_valid(name, 255))
        return NULL;
    char *key = cp_key(ctx, "svc", "%s/%s", cluster, name);
    json_t *doc = store_get_json(c->st, key);
    if (doc && ret_key)
        *ret_key = key;
    else
        free(key);
    return doc;
}

/* Resolves ARNs of the given kind to (service document, history entry). */
static void describe_children(aws_call *call, const char *member, const char *kind,
                              const char *out_member,
                              json_t *(*view)(const json_t *, const json_t *) )
{
    cp *c = cp_of(call);
    const aws_ctx *ctx = aws_call_ctx(call);
    json_t *arns = js_arr(aws_call_input(call), member);
    sk_err err = { 0 };
    if (json_array_size(arns) > DESCRIBE_MAX) {
        cp_err_invalid(&err, "The number of %s must be at most %d.", member, DESCRIBE_MAX);
        return cp_fail(call, &err);
    }
    json_t *found = json_array(), *failures = json_array();
    size_t i;
    json_t *a;
    json_array_foreach(arns, i, a) {
        const char *arn = json_string_value(a);
        char id[CP_SVC_CHILD_ID_MAX];
        json_t *doc = cp_svc_child_load(c, ctx, arn, kind, NULL, id);
        json_t *e = doc ? entry_find(doc, id) : NULL;
        if (e)
            json_array_append_new(found, view(doc, e));
        else
            json_array_append_new(failures, cp_failure(arn ? arn : "", "MISSING", NULL));
        json_decref(doc);
    }
    aws_reply(call, json_pack("{s:o, s:o}", out_member, found, "failures", failures));
}

CP_HANDLER(describe_service_deployments)
{
    describe_children(call, "serviceDeploymentArns", "service-deployment", "serviceDeployments",
                      full_view);
}

CP_HANDLER(describe_service_revisions)
{
    describe_children(call, "serviceRevisionArns", "service-revision", "serviceRevisions",
                      revision_view);
}
