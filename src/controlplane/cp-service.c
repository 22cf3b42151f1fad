/* Services: the ECS service API and the service scheduler.
 *
 * The scheduler is a reconciliation pass (cp_sched_run) over every service,
 * run on a short debounce after any relevant change and once a second. Per
 * REPLICA service it keeps desiredCount tasks of the PRIMARY deployment,
 * replaces stopped, unhealthy and draining tasks, and rolls deployments
 * within the bounds floor(desired × maximumPercent / 100) for all live tasks
 * and ceil(desired × minimumHealthyPercent / 100) for healthy ones. DAEMON
 * services run one task per eligible instance. It also applies the
 * deployment circuit breaker (threshold clamp(ceil(0.5 × desired), 10, 200),
 * rollback to the last completed deployment), throttles services whose tasks
 * keep failing to start (backoff up to 15 minutes), and stops the tasks of
 * instances whose agent has been silent too long (host lost).
 *
 * Running and pending counts are computed from the task index when a service
 * is described; the service document changes only when a deployment or an
 * event does. */
#include <math.h>
#include <stdarg.h>
#include <string.h>

#include "basic/alloc.h"
#include "basic/buf.h"
#include "basic/log.h"
#include "basic/rand.h"
#include "basic/strutil.h"
#include "cp-internal.h"
#include "cp-place.h"
#include "cp-query.h"
#include "cp-task.h"

#define SCHED_DEBOUNCE         (50 * USEC_PER_MSEC)
#define SCHED_INTERVAL         (1 * USEC_PER_SEC)
#define MAX_EVENTS             100
#define EVENT_DEDUP_USEC       (6ULL * 3600 * USEC_PER_SEC)
#define MAX_THROTTLE_USEC      (15ULL * 60 * USEC_PER_SEC)
#define INACTIVE_RETENTION_SEC 3600

/* --- small helpers --- */

static char *deployment_id(void)
{
    char d[20];
    uint64_t v = random_u64() % 9000000000000000000ULL + 1000000000000000000ULL;
    snprintf(d, sizeof(d), "%llu", (unsigned long long) v);
    return xasprintf("ecs-svc/%s", d);
}

static char *svc_key(const aws_ctx *ctx, const char *cluster, const char *name)
{
    return cp_key(ctx, "svc", "%s/%s", cluster, name);
}

static void add_event_v(json_t *svc, bool force, const char *fmt, va_list ap) _printf_(3, 0);
static void add_event_v(json_t *svc, bool force, const char *fmt, va_list ap)
{
    char *msg = xvasprintf(fmt, ap);
    json_t *events = js_ensure_arr(svc, "events");
    /* The same message is not repeated within 6 hours. */
    usec_t now = now_realtime();
    size_t i;
    json_t *e;
    json_array_foreach(events, i, e) {
        if (force)
            break;
        if (streq_ptr(js_str(e, "message"), msg) &&
            (double) now / 1e6 - json_number_value(json_object_get(e, "createdAt")) <
                    EVENT_DEDUP_USEC / 1e6) {
            free(msg);
            return;
        }
    }
    char uuid[37];
    random_uuid(uuid);
    json_t *ev = json_pack("{s:s, s:s}", "id", uuid, "message", msg);
    js_set_time(ev, "createdAt", now);
    json_array_insert_new(events, 0, ev);
    while (json_array_size(events) > MAX_EVENTS)
        json_array_remove(events, json_array_size(events) - 1);
    free(msg);
}

/* Appends an event unless the same message was recorded in the last 6 hours. */
static void add_event(json_t *svc, const char *fmt, ...) _printf_(2, 3);
static void add_event(json_t *svc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    add_event_v(svc, false, fmt, ap);
    va_end(ap);
}

/* Appends an event for a state transition, even if it repeats an earlier one. */
static void add_event_forced(json_t *svc, const char *fmt, ...) _printf_(2, 3);
static void add_event_forced(json_t *svc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    add_event_v(svc, true, fmt, ap);
    va_end(ap);
}

static const char *svc_name_of(const json_t *svc)
{
    return js_str_or(svc, "serviceName", "");
}

static json_t *primary(json_t *svc)
{
    size_t i;
    json_t *d;
    json_array_foreach(js_arr(svc, "deployments"), i, d) {
        if (streq_ptr(js_str(d, "status"), "PRIMARY"))
            return d;
    }
    return NULL;
}

static json_t *find_deployment(json_t *svc, const char *id)
{
    size_t i;
    json_t *d;
    json_array_foreach(js_arr(svc, "deployments"), i, d) {
        if (streq_ptr(js_str(d, "id"), id))
            return d;
    }
    return NULL;
}

/* Live counts for one service (and per deployment). */
typedef struct svc_counts {
    unsigned running, pending;
} svc_counts;

static void count_tasks(cp_cluster_idx *cl, const char *name, const char *deployment,
                        svc_counts *ret)
{
    *ret = (svc_counts){ 0 };
    for (sk_omap_node *n = cl ? sk_omap_seek(cl->tasks, NULL) : NULL; n; n = sk_omap_next(n)) {
        cp_task_info *t = sk_omap_node_value(n);
        if (!t->service_name || !streq(t->service_name, name))
            continue;
        if (deployment && !streq_ptr(t->started_by, deployment))
            continue;
        if (t->last == CP_TS_STOPPED || t->desired == CP_TS_STOPPED)
            continue;
        if (t->last >= CP_TS_RUNNING)
            ret->running++;
        else
            ret->pending++;
    }
}

static json_t *service_view(cp *c, const aws_ctx *ctx, const char *cluster, const json_t *svc,
                            bool tags)
{
    json_t *o = cp_public(svc);
    cp_cluster_idx *cl = cp_cluster_idx_get(c, ctx, cluster, false);
    svc_counts all;
    count_tasks(cl, svc_name_of(svc), NULL, &all);
    js_set_int(o, "runningCount", all.running);
    js_set_int(o, "pendingCount", all.pending);
    size_t i;
    json_t *d;
    json_array_foreach(js_arr(o, "deployments"), i, d) {
        svc_counts dc;
        count_tasks(cl, svc_name_of(svc), js_str(d, "id"), &dc);
        js_set_int(d, "runningCount", dc.running);
        js_set_int(d, "pendingCount", dc.pending);
    }
    if (!tags)
        js_set(o, "tags", NULL);
    return o;
}

static char *service_name_from(const char *ref, const char *cluster)
{
    if (!ref || !*ref)
        return NULL;
    if (startswith(ref, "arn:")) {
        cp_arn_parts p;
        if (cp_arn_parse(ref, &p) < 0 || !streq(p.type, "service"))
            return NULL;
        const char *slash = strrchr(p.rest, '/');
        return xstrdup(slash ? slash + 1 : p.rest);
    }
    return xstrdup(ref);
}

/* --- deployments --- */

static json_t *new_deployment(const json_t *svc, const char *td_arn, const char *reason_fmt)
{
    _cleanup_free_ char *id = deployment_id();
    json_t *d = json_object();
    js_set_str(d, "id", id);
    js_set_str(d, "status", "PRIMARY");
    js_set_str(d, "taskDefinition", td_arn);
    js_set_int(d, "desiredCount", js_int(svc, "desiredCount", 0));
    js_set_int(d, "pendingCount", 0);
    js_set_int(d, "runningCount", 0);
    js_set_int(d, "failedTasks", 0);
    usec_t now = now_realtime();
    js_set_time(d, "createdAt", now);
    js_set_time(d, "updatedAt", now);
    const char *copy[] = { "launchType", "capacityProviderStrategy", "platformVersion",
                           "platformFamily", "networkConfiguration" };
    for (size_t i = 0; i < ELEMENTSOF(copy); i++) {
        json_t *v = json_object_get(svc, copy[i]);
        if (v && !json_is_null(v))
            js_set(d, copy[i], json_deep_copy(v));
    }
    js_set_str(d, "rolloutState", "IN_PROGRESS");
    char *reason = reason_fmt ? xasprintf(reason_fmt, id)
                              : xasprintf("ECS deployment %s in progress.", id);
    js_set_str(d, "rolloutStateReason", reason);
    free(reason);
    return d;
}

/* Makes d the PRIMARY deployment; earlier ones become ACTIVE. */
static void push_deployment(json_t *svc, json_t *d)
{
    json_t *deps = js_ensure_arr(svc, "deployments");
    size_t i;
    json_t *e;
    json_array_foreach(deps, i, e) {
        if (streq_ptr(js_str(e, "status"), "PRIMARY"))
            js_set_str(e, "status", "ACTIVE");
    }
    json_array_insert_new(deps, 0, d);
    js_set_str(svc, "taskDefinition", js_str(d, "taskDefinition"));
    cp_svc_history_start(svc, d);
    json_t *internal = js_ensure_obj(svc, "_skiff");
    js_set_int(internal, "throttleFailures", 0);
    js_set(internal, "throttleUntil", NULL);
}

/* Replaces the failing deployment dep with one of the last completed revision;
 * the rollback is recorded in dep's history entry. */
static void start_rollback(json_t *svc, const json_t *dep, const json_t *last, const char *reason)
{
    json_t *nd = new_deployment(svc, js_str(last, "taskDefinition"), NULL);
    js_set_str(nd, "rolloutStateReason", reason);
    push_deployment(svc, nd);
    cp_svc_history_rollback(svc, js_str(dep, "id"), js_str(nd, "id"), js_str(last, "id"), reason);
    add_event(svc, "(service %s) (deployment %s) deployment started: %s", svc_name_of(svc),
              js_str(nd, "id"), reason);
}

/* --- validation shared by create and update --- */

static int validate_deployment_config(json_t *dc, bool daemon, sk_err *err)
{
    int64_t maxp = js_int(dc, "maximumPercent", daemon ? 100 : 200);
    int64_t minp = js_int(dc, "minimumHealthyPercent", daemon ? 0 : 100);
    if (maxp < 100 || maxp > 10000)
        return cp_err_invalid(err, "maximumPercent must be between 100 and 10000.");
    if (minp < 0 || minp > 100)
        return cp_err_invalid(err, "minimumHealthyPercent must be between 0 and 100.");
    if (daemon && maxp != 100 && js_has(dc, "maximumPercent"))
        return cp_err_invalid(
                err, "The daemon scheduling strategy supports a maximumPercent of 100 only.");
    js_set_int(dc, "maximumPercent", maxp);
    js_set_int(dc, "minimumHealthyPercent", minp);
    json_t *cb = js_ensure_obj(dc, "deploymentCircuitBreaker");
    js_set_bool(cb, "enable", js_bool(cb, "enable", false));
    js_set_bool(cb, "rollback", js_bool(cb, "rollback", false));
    if (!js_str(dc, "strategy"))
        js_set_str(dc, "strategy", "ROLLING");
    return 0;
}

static int validate_load_balancers(const json_t *lbs, const json_t *td, sk_err *err)
{
    size_t i;
    json_t *lb;
    json_array_foreach(lbs, i, lb) {
        const char *cn = js_str(lb, "containerName");
        int64_t port = js_int(lb, "containerPort", 0);
        if (!js_str(lb, "targetGroupArn") && !js_str(lb, "loadBalancerName"))
            return cp_err_invalid(err,
                                  "A load balancer needs a targetGroupArn or a loadBalancerName.");
        if (!cn || port <= 0)
            return cp_err_invalid(err, "A load balancer needs containerName and containerPort.");
        bool found = false;
        size_t j;
        json_t *c;
        json_array_foreach(js_arr(td, "containerDefinitions"), j, c) {
            if (!streq_ptr(js_str(c, "name"), cn))
                continue;
            size_t k;
            json_t *pm;
            json_array_foreach(js_arr(c, "portMappings"), k, pm) {
                if (js_int(pm, "containerPort", 0) == port)
                    found = true;
            }
        }
        if (!found)
            return cp_err_invalid(err,
                                  "The container %s did not have a container port %lld defined.",
                                  cn, (long long) port);
    }
    return 0;
}

/* --- API --- */

CP_HANDLER(create_service)
{
    cp *c = cp_of(call);
    const aws_ctx *ctx = aws_call_ctx(call);
    json_t *in = aws_call_input(call);
    sk_err err = { 0 };
    _cleanup_free_ char *cluster = NULL;
    _cleanup_json_ json_t *cdoc = NULL;
    if (cp_cluster_get(c, ctx, js_str(in, "cluster"), true, &cluster, &cdoc, &err) < 0)
        return cp_fail(call, &err);
    const char *name = js_str(in, "serviceName");
    if (!cp_name_valid(name, 255)) {
        cp_err_invalid(
                &err,
                "Service name can only contain up to 255 letters (uppercase and lowercase), numbers, underscores, and hyphens.");
        return cp_fail(call, &err);
    }
    const char *strategy = js_str_or(in, "schedulingStrategy", "REPLICA");
    bool daemon = streq(strategy, "DAEMON");
    json_t *ctrl = js_obj(in, "deploymentController");
    const char *ctrl_type = js_str_or(ctrl, "type", "ECS");
    if (!streq(ctrl_type, "ECS")) {
        sk_err_typed(&err, SK_E_INVALID, "UnsupportedFeatureException",
                     "skiff supports only the ECS deployment controller.");
        return cp_fail(call, &err);
    }
    if (!daemon && !js_has(in, "desiredCount")) {
        cp_err_invalid(
                &err,
                "desiredCount is required for services with the REPLICA scheduling strategy.");
        return cp_fail(call, &err);
    }
    if (daemon && js_arr(in, "placementStrategy") &&
        json_array_size(js_arr(in, "placementStrategy"))) {
        cp_err_invalid(
                &err,
                "Placement strategies are not supported with the daemon scheduling strategy.");
        return cp_fail(call, &err);
    }
    int64_t desired = js_int(in, "desiredCount", 0);
    if (desired < 0) {
        cp_err_invalid(&err, "desiredCount must not be negative.");
        return cp_fail(call, &err);
    }
    _cleanup_json_ json_t *td = NULL;
    if (cp_taskdef_resolve(c, ctx, js_str_or(in, "taskDefinition", ""), true, &td, &err) < 0)
        return cp_fail(call, &err);
    const char *lt = js_str(in, "launchType");
    json_t *cps = js_arr(in, "capacityProviderStrategy");
    if (lt && cps && json_array_size(cps)) {
        cp_err_invalid(
                &err,
                "Specifying both a launch type and capacity provider strategy is not supported. Remove one and try again.");
        return cp_fail(call, &err);
    }
    if (!lt && !(cps && json_array_size(cps))) {
        json_t *def = js_arr(cdoc, "defaultCapacityProviderStrategy");
        if (def && json_array_size(def))
            cps = def;
        else
            lt = "EC2";
    }
    bool fargate = streq_ptr(lt, "FARGATE");
    if (cps && !lt) {
        const char *p0 = js_str(json_array_get(cps, 0), "capacityProvider");
        fargate = p0 && startswith(p0, "FARGATE");
    }
    if (daemon && fargate) {
        cp_err_invalid(
                &err,
                "The daemon scheduling strategy is not supported with the Fargate launch type.");
        return cp_fail(call, &err);
    }
    if (fargate && !js_array_has_str(js_arr(td, "compatibilities"), "FARGATE")) {
        cp_err_invalid(&err, "Task definition does not support launch_type FARGATE.");
        return cp_fail(call, &err);
    }
    bool awsvpc = streq_ptr(js_str(td, "networkMode"), "awsvpc");
    if (awsvpc && !js_obj(js_obj(in, "networkConfiguration"), "awsvpcConfiguration")) {
        cp_err_invalid(
                &err,
                "Network Configuration must be provided when networkMode 'awsvpc' is specified.");
        return cp_fail(call, &err);
    }
    json_t *dc = js_obj(in, "deploymentConfiguration")
                         ? json_deep_copy(js_obj(in, "deploymentConfiguration"))
                         : json_object();
    cp_place_spec spec = { 0 };
    if (validate_deployment_config(dc, daemon, &err) < 0 ||
        validate_load_balancers(js_arr(in, "loadBalancers"), td, &err) < 0 ||
        cp_tags_validate(js_arr(in, "tags"), &err) < 0 ||
        cp_place_spec_parse(td, js_arr(in, "placementConstraints"), js_arr(in, "placementStrategy"),
                            !daemon, &spec, &err) < 0) {
        json_decref(dc);
        return cp_fail(call, &err);
    }
    cp_place_spec_done(&spec);
    int64_t grace = js_int(in, "healthCheckGracePeriodSeconds", 0);
    if (grace < 0 || grace > 2147483647) {
        json_decref(dc);
        cp_err_invalid(&err, "healthCheckGracePeriodSeconds is out of range.");
        return cp_fail(call, &err);
    }
    _cleanup_free_ char *key = svc_key(ctx, cluster, name);
    _cleanup_json_ json_t *existing = store_get_json(c->st, key);
    if (existing && !streq_ptr(js_str(existing, "status"), "INACTIVE")) {
        json_decref(dc);
        if (streq_ptr(js_str(existing, "status"), "ACTIVE") &&
            streq_ptr(js_str(existing, "taskDefinition"), js_str(td, "taskDefinitionArn")) &&
            js_int(existing, "desiredCount", -1) == desired) {
            aws_reply(call,
                      json_pack("{s:o}", "service", service_view(c, ctx, cluster, existing, true)));
            return;
        }
        cp_err_invalid(&err, "Creation of service was not idempotent.");
        return cp_fail(call, &err);
    }
    _cleanup_free_ char *arn = cp_arn(ctx, "service/%s/%s", cluster, name);
    _cleanup_free_ char *cluster_arn = cp_arn(ctx, "cluster/%s", cluster);
    _cleanup_free_ char *principal = cp_principal_arn(ctx);
    json_t *svc = json_object();
    js_set_str(svc, "serviceArn", arn);
    js_set_str(svc, "serviceName", name);
    js_set_str(svc, "clusterArn", cluster_arn);
    js_set(svc, "loadBalancers",
           js_arr(in, "loadBalancers") ? json_deep_copy(js_arr(in, "loadBalancers"))
                                       : json_array());
    js_set(svc, "serviceRegistries",
           js_arr(in, "serviceRegistries") ? json_deep_copy(js_arr(in, "serviceRegistries"))
                                           : json_array());
    js_set_str(svc, "status", "ACTIVE");
    js_set_int(svc, "desiredCount", desired);
    if (lt)
        js_set_str(svc, "launchType", lt);
    if (cps && !lt)
        js_set(svc, "capacityProviderStrategy", json_deep_copy(cps));
    if (fargate) {
        js_set_str(svc, "platformVersion", js_str_or(in, "platformVersion", "LATEST"));
        js_set_str(svc, "platformFamily", "Linux");
    }
    js_set_str(svc, "taskDefinition", js_str(td, "taskDefinitionArn"));
    js_set(svc, "deploymentConfiguration", dc);
    js_set(svc, "placementConstraints",
           js_arr(in, "placementConstraints") ? json_deep_copy(js_arr(in, "placementConstraints"))
                                              : json_array());
    js_set(svc, "placementStrategy",
           js_arr(in, "placementStrategy") ? json_deep_copy(js_arr(in, "placementStrategy"))
                                           : json_array());
    if (js_obj(in, "networkConfiguration"))
        js_set(svc, "networkConfiguration", json_deep_copy(js_obj(in, "networkConfiguration")));
    if (js_has(in, "healthCheckGracePeriodSeconds"))
        js_set_int(svc, "healthCheckGracePeriodSeconds", grace);
    js_set_str(svc, "schedulingStrategy", strategy);
    js_set(svc, "deploymentController", json_pack("{s:s}", "type", "ECS"));
    js_set(svc, "tags", js_arr(in, "tags") ? json_deep_copy(js_arr(in, "tags")) : json_array());
    js_set_str(svc, "createdBy", principal);
    js_set_bool(svc, "enableECSManagedTags", js_bool(in, "enableECSManagedTags", false));
    js_set_str(svc, "propagateTags", js_str_or(in, "propagateTags", "NONE"));
    js_set_bool(svc, "enableExecuteCommand", js_bool(in, "enableExecuteCommand", false));
    if (js_str(in, "role"))
        js_set_str(svc, "roleArn", js_str(in, "role"));
    js_set_time(svc, "createdAt", now_realtime());
    js_set(svc, "events", json_array());
    js_set(svc, "deployments", json_array());
    push_deployment(svc, new_deployment(svc, js_str(td, "taskDefinitionArn"), NULL));
    if (store_put_json(c->st, key, svc, &err) < 0) {
        json_decref(svc);
        return cp_fail(call, &err);
    }
    cp_sched_kick(c);
    aws_reply(call, json_pack("{s:o}", "service", service_view(c, ctx, cluster, svc, true)));
    json_decref(svc);
}

int cp_service_load(cp *c, const aws_ctx *ctx, const json_t *in, char **ret_cluster, char **ret_key,
                    json_t **ret_svc, sk_err *err)
{
    _cleanup_free_ char *cluster = NULL;
    if (cp_cluster_get(c, ctx, js_str(in, "cluster"), false, &cluster, NULL, err) < 0)
        return -1;
    _cleanup_free_ char *name = service_name_from(js_str(in, "service"), cluster);
    _cleanup_free_ char *key =
            name && cp_name_valid(name, 255) ? svc_key(ctx, cluster, name) : NULL;
    json_t *svc = key ? store_get_json(c->st, key) : NULL;
    if (!svc)
        return sk_err_typed(err, SK_E_NOT_FOUND, "ServiceNotFoundException", "Service not found.");
    *ret_cluster = TAKE_PTR(cluster);
    *ret_key = TAKE_PTR(key);
    *ret_svc = svc;
    return 0;
}

CP_HANDLER(update_service)
{
    cp *c = cp_of(call);
    const aws_ctx *ctx = aws_call_ctx(call);
    json_t *in = aws_call_input(call);
    sk_err err = { 0 };
    _cleanup_free_ char *cluster = NULL, *key = NULL;
    _cleanup_json_ json_t *svc = NULL;
    if (cp_service_load(c, ctx, in, &cluster, &key, &svc, &err) < 0)
        return cp_fail(call, &err);
    if (!streq_ptr(js_str(svc, "status"), "ACTIVE")) {
        sk_err_typed(&err, SK_E_INVALID, "ServiceNotActiveException", "Service was not ACTIVE.");
        return cp_fail(call, &err);
    }
    bool daemon = streq_ptr(js_str(svc, "schedulingStrategy"), "DAEMON");
    bool redeploy = js_bool(in, "forceNewDeployment", false);
    const char *td_arn = js_str(svc, "taskDefinition");
    _cleanup_json_ json_t *td = NULL;
    if (js_str(in, "taskDefinition")) {
        if (cp_taskdef_resolve(c, ctx, js_str(in, "taskDefinition"), true, &td, &err) < 0)
            return cp_fail(call, &err);
        if (!streq_ptr(js_str(td, "taskDefinitionArn"), td_arn))
            redeploy = true;
        td_arn = js_str(td, "taskDefinitionArn");
    } else if (cp_taskdef_resolve(c, ctx, td_arn, false, &td, &err) < 0)
        return cp_fail(call, &err);
    if (js_has(in, "desiredCount")) {
        if (daemon) {
            cp_err_invalid(&err,
                           "The daemon scheduling strategy does not support a desired count.");
            return cp_fail(call, &err);
        }
        int64_t d = js_int(in, "desiredCount", 0);
        if (d < 0) {
            cp_err_invalid(&err, "desiredCount must not be negative.");
            return cp_fail(call, &err);
        }
        js_set_int(svc, "desiredCount", d);
        json_t *p = primary(svc);
        if (p)
            js_set_int(p, "desiredCount", d);
    }
    if (js_obj(in, "deploymentConfiguration")) {
        json_t *dc = json_deep_copy(js_obj(svc, "deploymentConfiguration"));
        json_object_update(dc, js_obj(in, "deploymentConfiguration"));
        if (validate_deployment_config(dc, daemon, &err) < 0) {
            json_decref(dc);
            return cp_fail(call, &err);
        }
        js_set(svc, "deploymentConfiguration", dc);
    }
    const char *changers[] = { "networkConfiguration", "placementConstraints",
                               "placementStrategy",    "capacityProviderStrategy",
                               "loadBalancers",        "serviceRegistries" };
    for (size_t i = 0; i < ELEMENTSOF(changers); i++) {
        json_t *v = json_object_get(in, changers[i]);
        if (!v || json_is_null(v))
            continue;
        if (!json_equal(v, json_object_get(svc, changers[i])))
            redeploy = true;
        js_set(svc, changers[i], json_deep_copy(v));
    }
    if (js_str(in, "platformVersion")) {
        if (!streq_ptr(js_str(in, "platformVersion"), js_str(svc, "platformVersion")))
            redeploy = true;
        js_set_str(svc, "platformVersion", js_str(in, "platformVersion"));
    }
    if (js_has(in, "healthCheckGracePeriodSeconds"))
        js_set_int(svc, "healthCheckGracePeriodSeconds",
                   js_int(in, "healthCheckGracePeriodSeconds", 0));
    if (js_has(in, "enableExecuteCommand"))
        js_set_bool(svc, "enableExecuteCommand", js_bool(in, "enableExecuteCommand", false));
    if (js_str(in, "propagateTags"))
        js_set_str(svc, "propagateTags", js_str(in, "propagateTags"));
    cp_place_spec spec = { 0 };
    if (validate_load_balancers(js_arr(svc, "loadBalancers"), td, &err) < 0 ||
        cp_place_spec_parse(td, js_arr(svc, "placementConstraints"),
                            js_arr(svc, "placementStrategy"), !daemon, &spec, &err) < 0)
        return cp_fail(call, &err);
    cp_place_spec_done(&spec);
    if (redeploy)
        push_deployment(svc, new_deployment(svc, td_arn, NULL));
    if (store_put_json(c->st, key, svc, &err) < 0)
        return cp_fail(call, &err);
    cp_sched_kick(c);
    aws_reply(call, json_pack("{s:o}", "service", service_view(c, ctx, cluster, svc, true)));
}

/* StopServiceDeployment. ROLLBACK (the default, and the only stop type the
 * model documents) replaces the deployment in progress with one of the last
 * completed revision, recorded as that deployment's rollback, as the circuit
 * breaker does. */
CP_HANDLER(stop_service_deployment)
{
    cp *c = cp_of(call);
    const aws_ctx *ctx = aws_call_ctx(call);
    json_t *in = aws_call_input(call);
    sk_err err = { 0 };
    const char *arn = js_str_or(in, "serviceDeploymentArn", "");
    const char *stop = js_str_or(in, "stopType", "ROLLBACK");
    if (!streq(stop, "ROLLBACK")) {
        cp_err_invalid(&err, "The stop type %s is not supported. The valid value is ROLLBACK.",
                       stop);
        return cp_fail(call, &err);
    }
    char id[CP_SVC_CHILD_ID_MAX];
    _cleanup_free_ char *key = NULL;
    _cleanup_json_ json_t *svc = cp_svc_child_load(c, ctx, arn, "service-deployment", &key, id);
    const char *status = svc ? cp_svc_history_status(svc, id) : NULL;
    if (!status) {
        sk_err_typed(&err, SK_E_NOT_FOUND, "ServiceDeploymentNotFoundException",
                     "The service deployment %s does not exist.", arn);
        return cp_fail(call, &err);
    }
    json_t *dep = primary(svc);
    const char *dep_id = js_str(dep, "id");
    const char *dep_num = dep_id ? startswith(dep_id, "ecs-svc/") : NULL;
    if (!streq(status, "IN_PROGRESS") || !streq_ptr(dep_num, id)) {
        sk_err_typed(&err, SK_E_CONFLICT, "ConflictException",
                     "The service deployment is %s; only a deployment in progress can be stopped.",
                     status);
        return cp_fail(call, &err);
    }
    json_t *last = js_obj(js_obj(svc, "_skiff"), "lastCompleted");
    if (!js_str(last, "taskDefinition") || streq_ptr(js_str(last, "id"), dep_id)) {
        sk_err_typed(&err, SK_E_CONFLICT, "ConflictException",
                     "The service has no completed deployment to roll back to.");
        return cp_fail(call, &err);
    }
    char reason[160];
    snprintf(reason, sizeof(reason), "Service deployment stopped: rolling back to deploymentId %s.",
             js_str_or(last, "id", "?"));
    js_set_str(dep, "rolloutState", "FAILED");
    js_set_str(dep, "rolloutStateReason", "Service deployment stopped.");
    start_rollback(svc, dep, last, reason);
    if (store_put_json(c->st, key, svc, &err) < 0)
        return cp_fail(call, &err);
    cp_sched_kick(c);
    aws_reply(call, json_pack("{s:s}", "serviceDeploymentArn", arn));
}

CP_HANDLER(delete_service)
{
    cp *c = cp_of(call);
    const aws_ctx *ctx = aws_call_ctx(call);
    json_t *in = aws_call_input(call);
    sk_err err = { 0 };
    _cleanup_free_ char *cluster = NULL, *key = NULL;
    _cleanup_json_ json_t *svc = NULL;
    if (cp_service_load(c, ctx, in, &cluster, &key, &svc, &err) < 0)
        return cp_fail(call, &err);
    const char *st = js_str_or(svc, "status", "");
    if (streq(st, "INACTIVE")) {
        sk_err_typed(&err, SK_E_INVALID, "ServiceNotActiveException", "Service was not ACTIVE.");
        return cp_fail(call, &err);
    }
    bool daemon = streq_ptr(js_str(svc, "schedulingStrategy"), "DAEMON");
    if (streq(st, "ACTIVE")) {
        if (!daemon && js_int(svc, "desiredCount", 0) > 0 && !js_bool(in, "force", false)) {
            cp_err_invalid(&err, "The service cannot be stopped while it is scaled above 0.");
            return cp_fail(call, &err);
        }
        js_set_int(svc, "desiredCount", 0);
        cp_svc_history_stop_all(svc, "The service was deleted.");
        js_set_str(svc, "status", "DRAINING");
        json_t *p = primary(svc);
        if (p)
            js_set_int(p, "desiredCount", 0);
        if (store_put_json(c->st, key, svc, &err) < 0)
            return cp_fail(call, &err);
        cp_sched_kick(c);
    }
    aws_reply(call, json_pack("{s:o}", "service", service_view(c, ctx, cluster, svc, false)));
}

CP_HANDLER(describe_services)
{
    cp *c = cp_of(call);
    const aws_ctx *ctx = aws_call_ctx(call);
    json_t *in = aws_call_input(call);
    _cleanup_free_ char *cluster = NULL;
    json_t *refs;
    if (cp_cluster_list_arg(call, "services", 10, "services", &cluster, &refs) < 0)
        return;
    bool tags = js_array_has_str(js_arr(in, "include"), "TAGS");
    json_t *out = json_array(), *failures = json_array();
    size_t i;
    json_t *r;
    json_array_foreach(refs, i, r) {
        const char *ref = json_string_value(r);
        _cleanup_free_ char *name = service_name_from(ref, cluster);
        _cleanup_free_ char *key =
                name && cp_name_valid(name, 255) ? svc_key(ctx, cluster, name) : NULL;
        _cleanup_json_ json_t *svc = key ? store_get_json(c->st, key) : NULL;
        if (!svc) {
            _cleanup_free_ char *arn = name && !startswith(ref, "arn:")
                                               ? cp_arn(ctx, "service/%s/%s", cluster, name)
                                               : xstrdup(ref ? ref : "");
            json_array_append_new(failures, cp_failure(arn, "MISSING", NULL));
            continue;
        }
        json_array_append_new(out, service_view(c, ctx, cluster, svc, tags));
    }
    aws_reply(call, json_pack("{s:o, s:o}", "services", out, "failures", failures));
}

typedef struct svc_list {
    json_t *out;
    int limit;
    const char *launch_type, *strategy, *namespace_;
    char *last;
    bool more;
} svc_list;

static bool svc_list_one(const store_kv *kv, void *userdata)
{
    svc_list *l = userdata;
    json_t *d = json_loadb(kv->value, kv->len, 0, NULL);
    if (!d)
        return true;
    bool match = streq_ptr(js_str(d, "status"), "ACTIVE") &&
                 (!l->launch_type || streq_ptr(js_str(d, "launchType"), l->launch_type)) &&
                 (!l->strategy || streq_ptr(js_str(d, "schedulingStrategy"), l->strategy));
    if (match && l->namespace_)
        match = streq_ptr(js_str(js_obj(d, "serviceConnectConfiguration"), "namespace"),
                          l->namespace_);
    if (match) {
        if ((int) json_array_size(l->out) >= l->limit) {
            l->more = true;
            json_decref(d);
            return false;
        }
        json_array_append_new(l->out, json_string(js_str_or(d, "serviceArn", "")));
        free(l->last);
        l->last = xstrdup(kv->key);
    }
    json_decref(d);
    return true;
}

static void list_common(aws_call *call, bool by_namespace)
{
    cp *c = cp_of(call);
    const aws_ctx *ctx = aws_call_ctx(call);
    json_t *in = aws_call_input(call);
    sk_err err = { 0 };
    svc_list l = { .out = json_array(),
                   .launch_type = js_str(in, "launchType"),
                   .strategy = js_str(in, "schedulingStrategy"),
                   .namespace_ = by_namespace ? js_str(in, "namespace") : NULL };
    _cleanup_free_ char *start = NULL;
    _cleanup_free_ char *cluster = NULL;
    if (cp_page_args(c, in, by_namespace ? 100 : 10, 100, &l.limit, &start, &err) < 0 ||
        (!by_namespace &&
         cp_cluster_get(c, ctx, js_str(in, "cluster"), false, &cluster, NULL, &err) < 0)) {
        json_decref(l.out);
        return cp_fail(call, &err);
    }
    _cleanup_free_ char *prefix =
            by_namespace ? cp_key(ctx, "svc", "%s", "") : cp_key(ctx, "svc", "%s/", cluster);
    store_range(c->st, prefix, start, svc_list_one, &l);
    json_t *out = json_pack("{s:o}", "serviceArns", l.out);
    if (l.more)
        cp_page_token(c, out, l.last);
    free(l.last);
    aws_reply(call, out);
}

CP_HANDLER(list_services)
{
    list_common(call, false);
}

CP_HANDLER(list_services_by_namespace)
{
    list_common(call, true);
}

/* --- the scheduler --- */

typedef struct sched_ctx {
    cp *c;
    aws_ctx ctx;
    char *cluster;
    cp_cluster_idx *cl;
    char *key;
    json_t *svc;
    bool changed; /* svc needs writing */
    store_txn *txn;
    usec_t now; /* realtime */
} sched_ctx;

static bool task_healthy(sched_ctx *s, const cp_task_info *t)
{
    if (t->last != CP_TS_RUNNING || t->desired == CP_TS_STOPPED)
        return false;
    if (t->health)
        return t->health == 'H';
    return t->started_at && s->now >= t->started_at + s->c->healthy_delay;
}

/* Whether a task counts towards minimumHealthyPercent. A task of the primary
 * deployment must prove itself first (its health check, or running for the
 * healthy delay); a RUNNING task of an older deployment counts unless a
 * health check says otherwise, as ECS counts a RUNNING task without health
 * check as healthy. So old tasks are not stopped below the floor while the
 * new ones settle. */
static bool floor_healthy(sched_ctx *s, const cp_task_info *t, bool primary)
{
    if (task_healthy(s, t))
        return true;
    return !primary && t->last == CP_TS_RUNNING && t->desired != CP_TS_STOPPED && !t->health;
}

static bool task_unhealthy(sched_ctx *s, const cp_task_info *t)
{
    if (t->health != 'U' || t->desired == CP_TS_STOPPED || !t->started_at)
        return false;
    int64_t grace = js_int(s->svc, "healthCheckGracePeriodSeconds", 0);
    return s->now >= t->started_at + (usec_t) grace * USEC_PER_SEC;
}

static bool on_draining(sched_ctx *s, const cp_task_info *t)
{
    if (!t->instance_id)
        return false;
    cp_instance_info *in = sk_omap_get(s->cl->instances, t->instance_id);
    return in && !streq(in->status, "ACTIVE");
}

/* Marks a task for stopping inside the pass's transaction. */
static void stop_task(sched_ctx *s, cp_task_info *t, const char *reason)
{
    json_t *doc = store_get_json(s->c->st, t->key);
    if (!doc)
        return;
    js_set_str(doc, "desiredStatus", "STOPPED");
    if (!js_str(doc, "stoppedReason"))
        js_set_str(doc, "stoppedReason", reason);
    js_set_str(doc, "stopCode", "ServiceSchedulerInitiated");
    js_set_time(doc, "stoppingAt", now_realtime());
    js_set_int(doc, "version", js_int(doc, "version", 0) + 1);
    /* A task the agent never got (or whose instance is gone) stops at once. */
    cp_instance_info *in = t->instance_id ? sk_omap_get(s->cl->instances, t->instance_id) : NULL;
    if (!in || streq(in->status, "INACTIVE"))
        cp_task_mark_stopped(s->c, &s->ctx, s->txn, doc, s->cluster, reason,
                             "ServiceSchedulerInitiated");
    store_txn_put_json(s->txn, t->key, doc);
    json_decref(doc);
}

static void format_task_ids(sk_buf *b, json_t *ids)
{
    size_t i;
    json_t *e;
    json_array_foreach(ids, i, e) {
        if (i)
            sk_buf_putc(b, ' ');
        sk_buf_printf(b, "(task %s)", json_string_value(e));
    }
}

/* Starts n tasks of deployment dep; returns how many were placed. */
static unsigned start_tasks(sched_ctx *s, json_t *dep, unsigned n, const sk_vec *only)
{
    cp *c = s->c;
    const char *name = svc_name_of(s->svc);
    _cleanup_json_ json_t *td = NULL;
    sk_err err = { 0 };
    if (cp_taskdef_resolve(c, &s->ctx, js_str_or(dep, "taskDefinition", ""), false, &td, &err) <
        0) {
        add_event(s->svc, "(service %s) failed to launch a task: %s", name, sk_err_msg(&err));
        sk_err_done(&err);
        s->changed = true;
        return 0;
    }
    bool daemon = streq_ptr(js_str(s->svc, "schedulingStrategy"), "DAEMON");
    cp_place_spec spec = { 0 };
    if (cp_place_spec_parse(td, js_arr(s->svc, "placementConstraints"),
                            js_arr(s->svc, "placementStrategy"), !daemon, &spec, &err) < 0) {
        add_event(s->svc, "(service %s) failed to launch a task: %s", name, sk_err_msg(&err));
        sk_err_done(&err);
        s->changed = true;
        return 0;
    }
    const char *lt = js_str(dep, "launchType");
    const char *provider = NULL;
    json_t *cps = js_arr(dep, "capacityProviderStrategy");
    if (!lt && json_array_size(cps)) {
        provider = js_str(json_array_get(cps, 0), "capacityProvider");
        lt = provider && startswith(provider, "FARGATE") ? "FARGATE" : "EC2";
    }
    if (!lt)
        lt = "EC2";
    char group[300];
    snprintf(group, sizeof(group), "service:%s", name);
    json_t *tags = json_array();
    if (streq_ptr(js_str(s->svc, "propagateTags"), "SERVICE"))
        json_array_extend(tags, js_arr(s->svc, "tags"));
    cp_task_params p = {
        .started_by = js_str(dep, "id"),
        .group = group,
        .launch_type = lt,
        .capacity_provider = provider,
        .platform_version = js_str(dep, "platformVersion"),
        .network_configuration = js_obj(dep, "networkConfiguration"),
        .tags = tags,
        .enable_execute_command = js_bool(s->svc, "enableExecuteCommand", false),
    };
    cp_task_req req;
    cp_task_requirements(td, NULL, &req);
    cp_instance_info **chosen = xcalloc(n ? n : 1, sizeof(cp_instance_info *));
    json_t *failures = json_array();
    unsigned placed =
            cp_place(c, s->cl, &spec, &req, group, streq(lt, "FARGATE"), only, n, chosen, failures);
    json_t *ids = json_array();
    for (unsigned k = 0; k < placed; k++) {
        cp_instance_info *in = chosen[k];
        json_t *t = cp_task_build(c, &s->ctx, s->cluster, td, &p, in, &req);
        const char *tarn = js_str(t, "taskArn");
        const char *tid = strrchr(tarn, '/') + 1;
        _cleanup_free_ char *tkey = cp_key(&s->ctx, "task", "%s/%s", s->cluster, tid);
        store_txn_put_json(s->txn, tkey, t);
        json_array_append_new(ids, json_string(tid));
        json_decref(t);
    }
    if (placed) {
        sk_buf b;
        sk_buf_init(&b, 1 << 20);
        format_task_ids(&b, ids);
        add_event(s->svc, "(service %s) has started %u tasks: %s.", name, placed,
                  b.data ? b.data : "");
        sk_buf_done(&b);
        s->changed = true;
    }
    if (placed < n) {
        const char *why = NULL, *inst = NULL;
        size_t i;
        json_t *f;
        json_array_foreach(failures, i, f) {
            if (!why) {
                why = js_str(f, "reason");
                inst = js_str(f, "arn");
            }
        }
        const char *short_id = inst && strrchr(inst, '/') ? strrchr(inst, '/') + 1 : inst;
        if (why && short_id && streq(why, "RESOURCE:CPU"))
            add_event(
                    s->svc,
                    "(service %s) was unable to place a task because no container instance met all of its requirements. The closest matching (container-instance %s) has insufficient CPU units available. For more information, see the Troubleshooting section.",
                    name, short_id);
        else if (why && short_id && streq(why, "RESOURCE:MEMORY"))
            add_event(
                    s->svc,
                    "(service %s) was unable to place a task because no container instance met all of its requirements. The closest matching (container-instance %s) has insufficient memory available. For more information, see the Troubleshooting section.",
                    name, short_id);
        else if (why && short_id &&
                 (streq(why, "RESOURCE:PORTS") || streq(why, "RESOURCE:PORTS_UDP")))
            add_event(
                    s->svc,
                    "(service %s) was unable to place a task because no container instance met all of its requirements. The closest matching (container-instance %s) is already using a port required by your task. For more information, see the Troubleshooting section.",
                    name, short_id);
        else if (why && short_id)
            add_event(
                    s->svc,
                    "(service %s) was unable to place a task because no container instance met all of its requirements. The closest matching (container-instance %s) encountered error \"%s\". For more information, see the Troubleshooting section.",
                    name, short_id, why);
        else
            add_event(
                    s->svc,
                    "(service %s) was unable to place a task because no container instance met all of its requirements. Reason: No Container Instances were found in your cluster. For more information, see the Troubleshooting section.",
                    name);
        s->changed = true;
    }
    json_decref(ids);
    json_decref(failures);
    json_decref(tags);
    free(chosen);
    cp_task_req_done(&req);
    cp_place_spec_done(&spec);
    return placed;
}

static int64_t circuit_threshold(int64_t desired)
{
    int64_t t = (int64_t) ceil(0.5 * (double) desired);
    return CLAMP(t, (int64_t) 10, (int64_t) 200);
}

/* Applies noted task outcomes (failures for the breaker and the throttle). */
static void apply_notes(sched_ctx *s, const sk_vec *notes)
{
    for (size_t i = 0; i < notes->len; i++) {
        cp_sched_note *n = notes->items[i];
        if (!n || !streq(n->svc_key, s->key))
            continue;
        json_t *dep = find_deployment(s->svc, n->deployment);
        json_t *internal = js_ensure_obj(s->svc, "_skiff");
        if (n->started) {
            if (dep)
                js_set_bool(js_ensure_obj(dep, "_skiff"), "everRunning", true);
            if (js_int(internal, "throttleFailures", 0)) {
                js_set_int(internal, "throttleFailures", 0);
                js_set(internal, "throttleUntil", NULL);
                js_set(internal, "throttleCountedAt", NULL);
            }
            s->changed = true;
        } else if (n->failed_to_start) {
            /* The throttle counts launch attempts, not tasks: a failure
             * counts only for a task created after the last counted one, so
             * a batch that fails together counts once. */
            double counted = json_number_value(json_object_get(internal, "throttleCountedAt"));
            bool new_attempt = (double) n->created_at / 1e6 > counted;
            int64_t f = js_int(internal, "throttleFailures", 0) + (new_attempt ? 1 : 0);
            if (new_attempt) {
                js_set_int(internal, "throttleFailures", f);
                js_set_time(internal, "throttleCountedAt", s->now);
            }
            if (new_attempt && f > 3) {
                usec_t delay = (usec_t) 10 * USEC_PER_SEC << MIN(f - 4, (int64_t) 10);
                if (delay > MAX_THROTTLE_USEC)
                    delay = MAX_THROTTLE_USEC;
                js_set_time(internal, "throttleUntil", s->now + delay);
                add_event(
                        s->svc,
                        "(service %s) is unable to consistently start tasks successfully. For more information, see the Troubleshooting section.",
                        svc_name_of(s->svc));
            }
            if (dep) {
                js_set_int(dep, "failedTasks", js_int(dep, "failedTasks", 0) + 1);
                json_t *cb = js_obj(js_obj(s->svc, "deploymentConfiguration"),
                                    "deploymentCircuitBreaker");
                bool ever = js_bool(js_obj(dep, "_skiff"), "everRunning", false);
                if (js_bool(cb, "enable", false) && !ever &&
                    streq_ptr(js_str(dep, "status"), "PRIMARY") &&
                    streq_ptr(js_str(dep, "rolloutState"), "IN_PROGRESS") &&
                    js_int(dep, "failedTasks", 0) >=
                            circuit_threshold(js_int(s->svc, "desiredCount", 0))) {
                    js_set_str(dep, "rolloutState", "FAILED");
                    js_set_str(dep, "rolloutStateReason",
                               "ECS deployment circuit breaker: task failed to start.");
                    add_event(
                            s->svc,
                            "(service %s) (deployment %s) deployment failed: tasks failed to start.",
                            svc_name_of(s->svc), js_str(dep, "id"));
                    json_t *last = js_obj(internal, "lastCompleted");
                    bool rollback = js_bool(cb, "rollback", false) && last &&
                                    js_str(last, "taskDefinition");
                    if (!rollback)
                        cp_svc_history_end(s->svc, js_str(dep, "id"), false,
                                           "ECS deployment circuit breaker: task failed to start.");
                    if (rollback) {
                        char reason[160];
                        snprintf(reason, sizeof(reason),
                                 "ECS deployment circuit breaker: rolling back to deploymentId %s.",
                                 js_str_or(last, "id", "?"));
                        start_rollback(s->svc, dep, last, reason);
                    }
                }
            }
            s->changed = true;
        }
    }
}

static bool throttled(sched_ctx *s)
{
    double until = json_number_value(json_object_get(js_obj(s->svc, "_skiff"), "throttleUntil"));
    return until > 0 && (double) s->now / 1e6 < until;
}

typedef struct stop_cand {
    cp_task_info *t;
    int prio; /* lower stops first */
    unsigned per_instance;
    bool scale_in; /* picked by pick_scale_in */
} stop_cand;

static int cand_cmp(const void *a, const void *b)
{
    const stop_cand *x = *(const stop_cand *const *) a, *y = *(const stop_cand *const *) b;
    if (x->prio != y->prio)
        return x->prio - y->prio;
    if (x->per_instance != y->per_instance)
        return x->per_instance > y->per_instance ? -1 : 1;
    return strcmp(x->t->id, y->t->id);
}

static const char *instance_zone(const cp_instance_info *in)
{
    for (size_t i = 0; in && i < in->nattrs; i++)
        if (streq(in->attrs[i].name, "ecs.availability-zone"))
            return in->attrs[i].value;
    return NULL;
}

static unsigned *count_slot(sk_hmap *m, const char *key)
{
    unsigned *n = sk_hmap_get(m, key ? key : "");
    if (!n) {
        n = xcalloc(1, sizeof(*n));
        sk_hmap_put(m, key ? key : "", n);
    }
    return n;
}

/* Picks n tasks to stop for scale-in from cands (primary tasks that may be
 * stopped) as ECS does: each pick comes from the Availability Zone with the
 * most of these tasks, then from the instance with the most of them in that
 * zone; ties go to tasks not yet running, then by task id. The picks are
 * marked scale_in. */
static void pick_scale_in(sched_ctx *s, sk_vec *cands, int64_t n)
{
    sk_hmap zones, insts;
    sk_hmap_init(&zones);
    sk_hmap_init(&insts);
    const char **zone = xcalloc(cands->len + 1, sizeof(*zone));
    for (size_t i = 0; i < cands->len; i++) {
        cp_task_info *t = ((stop_cand *) cands->items[i])->t;
        cp_instance_info *in =
                t->instance_id ? sk_omap_get(s->cl->instances, t->instance_id) : NULL;
        zone[i] = instance_zone(in);
        (*count_slot(&zones, zone[i]))++;
        (*count_slot(&insts, t->instance_id))++;
    }
    bool *gone = xcalloc(cands->len + 1, sizeof(*gone));
    for (; n > 0; n--) {
        ssize_t best = -1;
        unsigned bz = 0, bi = 0;
        for (size_t i = 0; i < cands->len; i++) {
            if (gone[i])
                continue;
            cp_task_info *t = ((stop_cand *) cands->items[i])->t;
            unsigned z = *count_slot(&zones, zone[i]), k = *count_slot(&insts, t->instance_id);
            cp_task_info *b = best >= 0 ? ((stop_cand *) cands->items[best])->t : NULL;
            bool better = !b || z > bz || (z == bz && k > bi) ||
                          (z == bz && k == bi &&
                           ((t->last < CP_TS_RUNNING) > (b->last < CP_TS_RUNNING) ||
                            ((t->last < CP_TS_RUNNING) == (b->last < CP_TS_RUNNING) &&
                             strcmp(t->id, b->id) < 0)));
            if (better) {
                best = (ssize_t) i;
                bz = z;
                bi = k;
            }
        }
        if (best < 0)
            break;
        gone[best] = true;
        cp_task_info *t = ((stop_cand *) cands->items[best])->t;
        (*count_slot(&zones, zone[best]))--;
        (*count_slot(&insts, t->instance_id))--;
        ((stop_cand *) cands->items[best])->scale_in = true;
    }
    free(gone);
    free(zone);
    size_t it = 0;
    const char *k;
    void *v;
    while (sk_hmap_next(&zones, &it, &k, &v))
        free(v);
    it = 0;
    while (sk_hmap_next(&insts, &it, &k, &v))
        free(v);
    sk_hmap_done(&zones);
    sk_hmap_done(&insts);
}

static void stopped_event(sched_ctx *s, json_t *ids)
{
    if (!json_array_size(ids))
        return;
    sk_buf b;
    sk_buf_init(&b, 1 << 20);
    format_task_ids(&b, ids);
    add_event(s->svc, "(service %s) has stopped %zu running tasks: %s.", svc_name_of(s->svc),
              json_array_size(ids), b.data ? b.data : "");
    sk_buf_done(&b);
    s->changed = true;
}

static void reconcile_replica(sched_ctx *s)
{
    json_t *svc = s->svc;
    const char *name = svc_name_of(svc);
    json_t *p = primary(svc);
    int64_t desired = js_int(svc, "desiredCount", 0);
    bool draining_svc = streq_ptr(js_str(svc, "status"), "DRAINING");
    json_t *dc = js_obj(svc, "deploymentConfiguration");
    int64_t maxp = js_int(dc, "maximumPercent", 200),
            minp = js_int(dc, "minimumHealthyPercent", 100);
    int64_t max_total = (int64_t) floor((double) desired * (double) maxp / 100.0);
    int64_t min_healthy = (int64_t) ceil((double) desired * (double) minp / 100.0);
    if (max_total < desired)
        max_total = desired;
    const char *pid = p ? js_str(p, "id") : NULL;
    int64_t total_live = 0, healthy = 0, p_live = 0, p_healthy = 0, old_live = 0;
    sk_vec cands = { 0 };
    json_t *stopped = json_array();
    for (sk_omap_node *n = sk_omap_seek(s->cl->tasks, NULL); n; n = sk_omap_next(n)) {
        cp_task_info *t = sk_omap_node_value(n);
        if (!t->service_name || !streq(t->service_name, name) || t->last == CP_TS_STOPPED)
            continue;
        total_live++;
        if (t->desired == CP_TS_STOPPED)
            continue; /* already stopping */
        bool is_p = pid && streq_ptr(t->started_by, pid);
        bool h = floor_healthy(s, t, is_p);
        bool drain = on_draining(s, t);
        if (task_unhealthy(s, t)) {
            stop_task(s, t, "Task failed container health checks");
            json_array_append_new(stopped, json_string(t->id));
            continue;
        }
        if (drain && t->last < CP_TS_RUNNING) {
            stop_task(s, t, "Container instance is draining");
            json_array_append_new(stopped, json_string(t->id));
            continue;
        }
        if (h)
            healthy++;
        if (is_p && !drain) {
            p_live++;
            if (h)
                p_healthy++;
        } else if (!is_p)
            old_live++;
        stop_cand *sc = xcalloc(1, sizeof(*sc));
        sc->t = t;
        sc->prio = draining_svc ? 0
                   : !is_p      ? (t->last < CP_TS_RUNNING ? 0
                                   : h                     ? 2
                                                           : 1)
                   : drain      ? 3
                                : 4;
        cp_instance_info *in =
                t->instance_id ? sk_omap_get(s->cl->instances, t->instance_id) : NULL;
        sc->per_instance = in ? cp_instance_group_count(in, t->group) : 0;
        sk_vec_push(&cands, sc);
    }
    /* Start tasks of the primary deployment. */
    bool failed = p && streq_ptr(js_str(p, "rolloutState"), "FAILED");
    unsigned started = 0;
    if (p && !draining_svc && !failed && p_live < desired && !throttled(s)) {
        int64_t room = max_total - total_live;
        int64_t want = desired - p_live;
        int64_t nstart = MIN(want, room);
        if (nstart > 0)
            started = start_tasks(s, p, (unsigned) MIN(nstart, (int64_t) 1000), NULL);
    }
    /* Stop tasks: old deployments, draining instances, scale-in, service deletion. */
    sk_vec_sort(&cands, cand_cmp);
    int64_t excess_p = p_live - desired;
    unsigned nstopped_planned = 0;
    sk_vec scale_in = { 0 };
    for (size_t i = 0; i < cands.len; i++) {
        stop_cand *sc = cands.items[i];
        cp_task_info *t = sc->t;
        bool is_p = pid && streq_ptr(t->started_by, pid);
        if (!draining_svc && is_p && !on_draining(s, t) && !t->protected_)
            sk_vec_push(&scale_in, sc);
    }
    if (!draining_svc && excess_p > 0)
        pick_scale_in(s, &scale_in, excess_p);
    for (size_t i = 0; i < cands.len; i++) {
        stop_cand *sc = cands.items[i];
        cp_task_info *t = sc->t;
        bool is_p = pid && streq_ptr(t->started_by, pid);
        bool drain = on_draining(s, t);
        bool h = floor_healthy(s, t, is_p);
        bool stop = false;
        if (draining_svc)
            stop = true;
        else if (!is_p || drain) {
            /* Replace old or draining tasks within the healthy floor. */
            if (!h)
                stop = !drain || p_healthy + (healthy - p_healthy) > min_healthy ||
                       t->last < CP_TS_RUNNING;
            else
                stop = healthy - 1 >= min_healthy && !t->protected_;
        } else
            stop = sc->scale_in;
        if (!stop)
            continue;
        if (h)
            healthy--;
        char reason[128];
        snprintf(reason, sizeof(reason), "Scaling activity initiated by (deployment %s)",
                 pid ? pid : "none");
        stop_task(s, t, reason);
        json_array_append_new(stopped, json_string(t->id));
        nstopped_planned++;
    }
    stopped_event(s, stopped);
    json_decref(stopped);
    sk_vec_done(&scale_in, NULL);
    sk_vec_done(&cands, free);
    /* Neither start nor stop possible while a deployment is stuck between the bounds. */
    if (!started && !nstopped_planned && old_live > 0 && !draining_svc && total_live >= max_total &&
        healthy - 1 < min_healthy && p_live == p_healthy)
        add_event(
                svc,
                "(service %s) was unable to stop or start tasks during a deployment because of the service deployment configuration. Update the minimumHealthyPercent or maximumPercent value and try again.",
                name);
}

static void reconcile_daemon(sched_ctx *s)
{
    json_t *svc = s->svc;
    const char *name = svc_name_of(svc);
    json_t *p = primary(svc);
    const char *pid = p ? js_str(p, "id") : NULL;
    bool draining_svc = streq_ptr(js_str(svc, "status"), "DRAINING");
    json_t *stopped = json_array();
    unsigned eligible = 0;
    _cleanup_json_ json_t *td = NULL;
    sk_err err = { 0 };
    cp_place_spec spec = { 0 };
    bool have_spec = p &&
                     cp_taskdef_resolve(s->c, &s->ctx, js_str_or(p, "taskDefinition", ""), false,
                                        &td, &err) == 0 &&
                     cp_place_spec_parse(td, js_arr(svc, "placementConstraints"), NULL, false,
                                         &spec, &err) == 0;
    sk_err_done(&err);
    char group[300];
    snprintf(group, sizeof(group), "service:%s", name);
    for (sk_omap_node *n = sk_omap_seek(s->cl->instances, NULL); n; n = sk_omap_next(n)) {
        cp_instance_info *in = sk_omap_node_value(n);
        if (streq(in->status, "INACTIVE"))
            continue;
        bool ok = !draining_svc && have_spec && streq(in->status, "ACTIVE") && in->ec2_ok;
        if (ok) {
            /* Constraints decide eligibility, as for any placement. */
            sched_query_target qt;
            void *storage[2];
            cp_query_target_init(s->c, in, &qt, storage);
            for (size_t q = 0; q < spec.nmember_of && ok; q++)
                ok = sched_query_eval(spec.member_of[q], &qt);
        }
        bool has_p = false, has_old = false;
        /* stop_task only stages writes, so in->tasks is stable here. */
        for (size_t ti = 0; ti < in->tasks.len; ti++) {
            cp_task_info *t = in->tasks.items[ti];
            if (!t->service_name || !streq(t->service_name, name))
                continue;
            if (t->desired == CP_TS_STOPPED) {
                has_old = true; /* still stopping: wait */
                continue;
            }
            bool is_p = pid && streq_ptr(t->started_by, pid);
            if (!ok || !is_p) {
                char reason[128];
                snprintf(reason, sizeof(reason), "Scaling activity initiated by (deployment %s)",
                         pid ? pid : "none");
                stop_task(s, t, reason);
                json_array_append_new(stopped, json_string(t->id));
                has_old = true;
            } else
                has_p = true;
        }
        if (!ok)
            continue;
        eligible++;
        if (!has_p && !has_old && cp_instance_connected(s->c, in) &&
            !streq_ptr(js_str(p, "rolloutState"), "FAILED") && !throttled(s)) {
            sk_vec only = { 0 };
            sk_vec_push(&only, in->id);
            start_tasks(s, p, 1, &only);
            sk_vec_done(&only, NULL);
        }
    }
    if (have_spec)
        cp_place_spec_done(&spec);
    stopped_event(s, stopped);
    json_decref(stopped);
    if (!draining_svc && js_int(svc, "desiredCount", -1) != eligible) {
        js_set_int(svc, "desiredCount", eligible);
        if (p)
            js_set_int(p, "desiredCount", eligible);
        s->changed = true;
    }
}

/* Deployment bookkeeping: drained deployments leave, the primary completes. */
static void finish_deployments(sched_ctx *s)
{
    json_t *svc = s->svc;
    const char *name = svc_name_of(svc);
    json_t *deps = js_arr(svc, "deployments");
    for (size_t i = json_array_size(deps); i-- > 0;) {
        json_t *d = json_array_get(deps, i);
        if (streq_ptr(js_str(d, "status"), "PRIMARY"))
            continue;
        svc_counts dc;
        count_tasks(s->cl, name, js_str(d, "id"), &dc);
        bool stopping = false;
        for (sk_omap_node *n = sk_omap_seek(s->cl->tasks, NULL); n && !stopping;
             n = sk_omap_next(n)) {
            cp_task_info *t = sk_omap_node_value(n);
            if (t->service_name && streq(t->service_name, name) &&
                streq_ptr(t->started_by, js_str(d, "id")) && t->last != CP_TS_STOPPED)
                stopping = true;
        }
        if (!stopping) {
            json_array_remove(deps, i);
            s->changed = true;
        }
    }
    json_t *p = primary(svc);
    if (streq_ptr(js_str(svc, "status"), "DRAINING")) {
        bool any = false;
        for (sk_omap_node *n = sk_omap_seek(s->cl->tasks, NULL); n && !any; n = sk_omap_next(n)) {
            cp_task_info *t = sk_omap_node_value(n);
            if (t->service_name && streq(t->service_name, name) && t->last != CP_TS_STOPPED)
                any = true;
        }
        if (!any) {
            js_set_str(svc, "status", "INACTIVE");
            js_set(svc, "deployments", json_array());
            js_set_time(js_ensure_obj(svc, "_skiff"), "inactiveAt", s->now);
            s->changed = true;
        }
        return;
    }
    if (!p)
        return;
    int64_t desired = js_int(svc, "desiredCount", 0);
    unsigned p_healthy = 0, p_live = 0;
    for (sk_omap_node *n = sk_omap_seek(s->cl->tasks, NULL); n; n = sk_omap_next(n)) {
        cp_task_info *t = sk_omap_node_value(n);
        if (!t->service_name || !streq(t->service_name, name) || t->last == CP_TS_STOPPED ||
            t->desired == CP_TS_STOPPED || !streq_ptr(t->started_by, js_str(p, "id")))
            continue;
        p_live++;
        if (task_healthy(s, t))
            p_healthy++;
    }
    bool steady = json_array_size(deps) == 1 && p_healthy == desired && p_live == desired;
    json_t *internal = js_ensure_obj(svc, "_skiff");
    if (steady && streq_ptr(js_str(p, "rolloutState"), "IN_PROGRESS")) {
        js_set_str(p, "rolloutState", "COMPLETED");
        char reason[128];
        snprintf(reason, sizeof(reason), "ECS deployment %s completed.", js_str_or(p, "id", ""));
        js_set_str(p, "rolloutStateReason", reason);
        js_set_time(p, "updatedAt", s->now);
        js_set(internal, "lastCompleted",
               json_pack("{s:s, s:s}", "id", js_str_or(p, "id", ""), "taskDefinition",
                         js_str_or(p, "taskDefinition", "")));
        add_event(svc, "(service %s) (deployment %s) deployment completed.", name,
                  js_str_or(p, "id", ""));
        cp_svc_history_end(svc, js_str(p, "id"), true, reason);
        s->changed = true;
    }
    bool was_steady = js_bool(internal, "steady", false);
    if (steady != was_steady) {
        js_set_bool(internal, "steady", steady);
        if (steady)
            add_event_forced(svc, "(service %s) has reached a steady state.", name);
        s->changed = true;
    }
}

typedef struct svc_scan {
    sk_vec keys;
} svc_scan;

static bool scan_one(const store_kv *kv, void *userdata)
{
    svc_scan *sc = userdata;
    if (strstr(kv->key, "/svc/"))
        sk_vec_push(&sc->keys, xstrdup(kv->key));
    return true;
}

static void host_lost_pass(cp *c)
{
    size_t it = 0;
    void *v;
    usec_t now = now_monotonic();
    sk_vec doomed = { 0 };
    while (sk_hmap_next(&c->clusters, &it, NULL, &v)) {
        cp_cluster_idx *cl = v;
        for (sk_omap_node *n = sk_omap_seek(cl->instances, NULL); n; n = sk_omap_next(n)) {
            cp_instance_info *in = sk_omap_node_value(n);
            if (streq(in->status, "INACTIVE") || (in->running_tasks + in->pending_tasks) == 0)
                continue;
            usec_t seen = MAX(in->last_seen, in->watched_since);
            if (in->polls_held || now - seen < c->host_lost_after)
                continue;
            for (size_t i = 0; i < in->tasks.len; i++) {
                const cp_task_info *t = in->tasks.items[i];
                sk_vec_push(&doomed, xasprintf("%s|%s", t->key,
                                               in->ec2_instance_id ? in->ec2_instance_id : in->id));
            }
        }
    }
    if (!doomed.len) {
        sk_vec_done(&doomed, free);
        return;
    }
    store_txn *txn = store_txn_new(c->st);
    for (size_t i = 0; i < doomed.len; i++) {
        char *entry = doomed.items[i];
        char *bar = strchr(entry, '|');
        *bar = 0;
        json_t *doc = store_get_json(c->st, entry);
        if (!doc)
            continue;
        /* key: ecs/ACCT/REGION/task/CLUSTER/ID */
        char acct[16] = "", region[64] = "", cluster[256] = "";
        sscanf(entry, "ecs/%15[^/]/%63[^/]/task/%255[^/]/", acct, region, cluster);
        aws_ctx ctx = { 0 };
        strlcpy_s(ctx.account, acct, sizeof(ctx.account));
        strlcpy_s(ctx.region, region, sizeof(ctx.region));
        char reason[200];
        snprintf(
                reason, sizeof(reason),
                "Host EC2 (instance %s) is unreachable: its agent has not been heard from for %llu seconds.",
                bar + 1, (unsigned long long) (c->host_lost_after / USEC_PER_SEC));
        js_set_str(doc, "stoppedReason", reason);
        cp_task_mark_stopped(c, &ctx, txn, doc, cluster, reason, NULL);
        store_txn_put_json(txn, entry, doc);
        json_decref(doc);
        log_warn("%s", reason);
    }
    sk_err err = { 0 };
    if (store_txn_commit(txn, &err) < 0)
        log_warn("host lost: %s", sk_err_msg(&err));
    sk_err_done(&err);
    sk_vec_done(&doomed, free);
}

static void run_service(cp *c, const char *key, const sk_vec *notes)
{
    /* ecs/ACCT/REGION/svc/CLUSTER/NAME */
    char acct[16] = "", region[64] = "", cluster[256] = "";
    if (sscanf(key, "ecs/%15[^/]/%63[^/]/svc/%255[^/]/", acct, region, cluster) != 3)
        return;
    sched_ctx s = { .c = c, .now = now_realtime() };
    strlcpy_s(s.ctx.account, acct, sizeof(s.ctx.account));
    strlcpy_s(s.ctx.region, region, sizeof(s.ctx.region));
    s.cluster = cluster;
    s.key = (char *) key;
    s.svc = store_get_json(c->st, key);
    if (!s.svc)
        return;
    const char *st = js_str_or(s.svc, "status", "");
    if (streq(st, "INACTIVE")) {
        double at = json_number_value(json_object_get(js_obj(s.svc, "_skiff"), "inactiveAt"));
        if (at > 0 && (double) s.now / 1e6 - at > INACTIVE_RETENTION_SEC) {
            sk_err err = { 0 };
            store_delete(c->st, key, &err);
            sk_err_done(&err);
        }
        json_decref(s.svc);
        return;
    }
    s.cl = cp_cluster_idx_get(c, &s.ctx, cluster, true);
    s.txn = store_txn_new(c->st);
    apply_notes(&s, notes);
    if (streq_ptr(js_str(s.svc, "schedulingStrategy"), "DAEMON"))
        reconcile_daemon(&s);
    else
        reconcile_replica(&s);
    finish_deployments(&s);
    if (s.changed)
        store_txn_put_json(s.txn, key, s.svc);
    sk_err err = { 0 };
    if (store_txn_commit(s.txn, &err) < 0)
        log_warn("service %s: %s", key, sk_err_msg(&err));
    sk_err_done(&err);
    json_decref(s.svc);
}

static void note_free(void *p)
{
    cp_sched_note *n = p;
    if (!n)
        return;
    free(n->svc_key);
    free(n->deployment);
    free(n);
}

static void sched_run(cp *c)
{
    svc_scan sc = { 0 };
    store_range(c->st, "ecs/", NULL, scan_one, &sc);
    /* This pass consumes the notes raised so far; notes raised by its own
     * writes go to the next pass. */
    sk_vec notes = c->sched_notes;
    c->sched_notes = (sk_vec){ 0 };
    for (size_t i = 0; i < sc.keys.len; i++)
        run_service(c, sc.keys.items[i], &notes);
    sk_vec_done(&notes, note_free);
    sk_vec_done(&sc.keys, free);
    host_lost_pass(c);
}

static void on_sched_timer(ev_timer *t, void *userdata)
{
    cp *c = userdata;
    sched_run(c);
    if (!ev_timer_armed(t))
        ev_timer_arm_in(t, SCHED_INTERVAL);
}

void cp_sched_kick(cp *c)
{
    if (!c->sched_timer)
        return;
    usec_t when = now_monotonic() + SCHED_DEBOUNCE;
    /* Only move the timer earlier. */
    if (!ev_timer_armed(c->sched_timer) || c->sched_due > when) {
        c->sched_due = when;
        ev_timer_arm_at(c->sched_timer, when);
    }
}

void cp_sched_init(cp *c)
{
    const char *hd = getenv("SKIFF_SERVICE_HEALTHY_DELAY");
    uint64_t v;
    c->healthy_delay = hd && parse_duration_usec(hd, &v) == 0 ? v : 40 * USEC_PER_SEC;
    const char *hl = getenv("SKIFF_HOST_LOST_AFTER");
    c->host_lost_after = hl && parse_duration_usec(hl, &v) == 0 ? v : 5 * 60 * USEC_PER_SEC;
    c->sched_timer = ev_timer_new(c->loop, on_sched_timer, c);
    c->sched_due = now_monotonic() + SCHED_INTERVAL;
    ev_timer_arm_at(c->sched_timer, c->sched_due);
}

void cp_sched_done(cp *c)
{
    ev_timer_free(c->sched_timer);
    c->sched_timer = NULL;
    sk_vec_done(&c->sched_notes, note_free);
}
