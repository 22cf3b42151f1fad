/* Clusters and capacity providers. */
#include <string.h>
#include <strings.h>

#include "basic/alloc.h"
#include "basic/strutil.h"
#include "cp-internal.h"

static const char *const builtin_providers[] = { "FARGATE", "FARGATE_SPOT" };

static bool is_builtin_provider(const char *name)
{
    for (size_t i = 0; i < ELEMENTSOF(builtin_providers); i++)
        if (streq(name, builtin_providers[i]))
            return true;
    return false;
}

static json_t *default_settings(cp *c, const aws_ctx *ctx)
{
    /* containerInsights follows the account setting (default disabled). */
    _cleanup_free_ char *key = cp_key(ctx, "acctset", "_default/containerInsights");
    json_t *d = store_get_json(c->st, key);
    const char *v = d ? js_str_or(d, "value", "disabled") : "disabled";
    json_t *s = json_pack("[{s:s, s:s}]", "name", "containerInsights", "value", v);
    json_decref(d);
    return s;
}

static int validate_settings(const json_t *settings, sk_err *err)
{
    size_t i;
    json_t *s;
    json_array_foreach(settings, i, s) {
        const char *n = js_str(s, "name"), *v = js_str(s, "value");
        if (!n || !streq(n, "containerInsights"))
            return cp_err_invalid(err, "Invalid setting name '%s'.", n ? n : "");
        if (!v || !(streq(v, "enabled") || streq(v, "disabled") || streq(v, "enhanced")))
            return cp_err_invalid(
                    err,
                    "Invalid value for containerInsights: it must be 'enabled', 'enhanced' or 'disabled'.");
    }
    return 0;
}

static void merge_settings(json_t *dst, const json_t *src)
{
    size_t i;
    json_t *s;
    json_array_foreach(src, i, s) {
        bool found = false;
        size_t j;
        json_t *d;
        json_array_foreach(dst, j, d) {
            if (streq_ptr(js_str(d, "name"), js_str(s, "name"))) {
                json_array_set(dst, j, s);
                found = true;
            }
        }
        if (!found)
            json_array_append(dst, s);
    }
}

static json_t *capacity_provider_get(cp *c, const aws_ctx *ctx, const char *name)
{
    if (is_builtin_provider(name)) {
        _cleanup_free_ char *arn = cp_arn(ctx, "capacity-provider/%s", name);
        return json_pack("{s:s, s:s, s:s, s:[]}", "capacityProviderArn", arn, "name", name,
                         "status", "ACTIVE", "tags");
    }
    _cleanup_free_ char *key = cp_key(ctx, "cp", "%s", name);
    return store_get_json(c->st, key);
}

static char *provider_name_from(const char *name_or_arn)
{
    if (startswith(name_or_arn, "arn:")) {
        cp_arn_parts p;
        if (cp_arn_parse(name_or_arn, &p) < 0 || !streq(p.type, "capacity-provider"))
            return NULL;
        return xstrdup(p.rest);
    }
    return xstrdup(name_or_arn);
}

static int validate_strategy(cp *c, const aws_ctx *ctx, const json_t *strategy,
                             const json_t *providers, sk_err *err)
{
    size_t i;
    json_t *s;
    unsigned with_base = 0;
    json_array_foreach(strategy, i, s) {
        const char *p = js_str(s, "capacityProvider");
        if (!p)
            return cp_err_invalid(err, "capacityProvider must be specified.");
        if (providers && !js_array_has_str(providers, p))
            return cp_err_invalid(
                    err,
                    "The specified capacity provider strategy cannot contain a capacity provider that is not associated with the cluster. Associate the capacity provider with the cluster or specify a valid capacity provider and try again.");
        _cleanup_json_ json_t *doc = capacity_provider_get(c, ctx, p);
        if (!doc || !streq_ptr(js_str(doc, "status"), "ACTIVE"))
            return cp_err_invalid(err, "The specified capacity provider '%s' does not exist.", p);
        if (js_int(s, "base", 0) > 0)
            with_base++;
    }
    if (with_base > 1)
        return cp_err_invalid(
                err,
                "You can specify a base value for only one capacity provider in a capacity provider strategy.");
    return 0;
}

static int validate_providers(cp *c, const aws_ctx *ctx, const json_t *providers, sk_err *err)
{
    size_t i;
    json_t *p;
    json_array_foreach(providers, i, p) {
        const char *n = json_string_value(p);
        _cleanup_json_ json_t *doc = capacity_provider_get(c, ctx, n);
        if (!doc || !streq_ptr(js_str(doc, "status"), "ACTIVE"))
            return cp_err_invalid(err, "The specified capacity provider '%s' does not exist.", n);
    }
    return 0;
}

static json_t *statistics(cp *c, const aws_ctx *ctx, const char *cluster)
{
    unsigned run_ec2 = 0, run_fg = 0, pend_ec2 = 0, pend_fg = 0, run_ext = 0, pend_ext = 0;
    cp_cluster_idx *cl = cp_cluster_idx_get(c, ctx, cluster, false);
    if (cl) {
        for (sk_omap_node *n = sk_omap_seek(cl->tasks, NULL); n; n = sk_omap_next(n)) {
            cp_task_info *t = sk_omap_node_value(n);
            bool fg = t->launch_type && streq(t->launch_type, "FARGATE");
            bool ext = t->launch_type && streq(t->launch_type, "EXTERNAL");
            bool pend = t->last <= CP_TS_ACTIVATING;
            bool run = t->last >= CP_TS_RUNNING && t->last < CP_TS_STOPPED;
            unsigned *slot = NULL;
            if (pend)
                slot = fg ? &pend_fg : ext ? &pend_ext : &pend_ec2;
            else if (run)
                slot = fg ? &run_fg : ext ? &run_ext : &run_ec2;
            if (slot)
                (*slot)++;
        }
    }
    json_t *a = json_array();
#define STAT(n, v)                                                                \
    do {                                                                          \
        char b[24];                                                               \
        snprintf(b, sizeof(b), "%u", (v));                                        \
        json_array_append_new(a, json_pack("{s:s, s:s}", "name", n, "value", b)); \
    } while (0)
    STAT("runningEC2TasksCount", run_ec2);
    STAT("runningFargateTasksCount", run_fg);
    STAT("runningExternalTasksCount", run_ext);
    STAT("pendingEC2TasksCount", pend_ec2);
    STAT("pendingFargateTasksCount", pend_fg);
    STAT("pendingExternalTasksCount", pend_ext);
    STAT("activeEC2ServiceCount", cl ? cl->active_services : 0);
    STAT("drainingEC2ServiceCount", cl ? cl->draining_services : 0);
#undef STAT
    return a;
}

/* The cluster as DescribeClusters returns it: stored fields plus live counts. */
static json_t *cluster_view(cp *c, const aws_ctx *ctx, const json_t *doc, const json_t *include)
{
    json_t *o = cp_public(doc);
    const char *name = js_str(doc, "clusterName");
    cp_cluster_idx *cl = cp_cluster_idx_get(c, ctx, name, false);
    bool active = streq_ptr(js_str(doc, "status"), "ACTIVE");
    js_set_int(o, "registeredContainerInstancesCount", cl && active ? cl->registered_instances : 0);
    js_set_int(o, "runningTasksCount", cl ? cl->running_tasks : 0);
    js_set_int(o, "pendingTasksCount", cl ? cl->pending_tasks : 0);
    js_set_int(o, "activeServicesCount", cl ? cl->active_services : 0);
    bool want_stats = include && js_array_has_str(include, "STATISTICS");
    bool want_tags = include && js_array_has_str(include, "TAGS");
    bool want_settings = include && js_array_has_str(include, "SETTINGS");
    bool want_config = include && js_array_has_str(include, "CONFIGURATIONS");
    js_set(o, "statistics", want_stats ? statistics(c, ctx, name) : json_array());
    if (!want_tags)
        js_set(o, "tags", json_array());
    if (!want_settings && include)
        js_set(o, "settings", json_array());
    if (!want_config && include)
        js_set(o, "configuration", NULL);
    js_ensure_arr(o, "capacityProviders");
    js_ensure_arr(o, "defaultCapacityProviderStrategy");
    return o;
}

CP_HANDLER(create_cluster)
{
    cp *c = cp_of(call);
    const aws_ctx *ctx = aws_call_ctx(call);
    json_t *in = aws_call_input(call);
    sk_err err = { 0 };
    const char *name = js_str_or(in, "clusterName", "default");
    if (!cp_name_valid(name, 255)) {
        cp_err_invalid(
                &err,
                "Cluster name can only contain up to 255 letters (uppercase and lowercase), numbers, underscores, and hyphens.");
        return cp_fail(call, &err);
    }
    json_t *tags = js_arr(in, "tags");
    json_t *settings = js_arr(in, "settings");
    json_t *providers = js_arr(in, "capacityProviders");
    json_t *strategy = js_arr(in, "defaultCapacityProviderStrategy");
    if (cp_tags_validate(tags, &err) < 0 || (settings && validate_settings(settings, &err) < 0) ||
        (providers && validate_providers(c, ctx, providers, &err) < 0) ||
        (strategy &&
         validate_strategy(c, ctx, strategy, providers ? providers : json_array(), &err) < 0))
        return cp_fail(call, &err);
    _cleanup_free_ char *key = cp_key(ctx, "cluster", "%s", name);
    _cleanup_json_ json_t *existing = store_get_json(c->st, key);
    if (existing && streq_ptr(js_str(existing, "status"), "ACTIVE")) {
        /* CreateCluster is idempotent for an existing active cluster. */
        aws_reply(call, json_pack("{s:o}", "cluster", cluster_view(c, ctx, existing, NULL)));
        return;
    }
    _cleanup_free_ char *arn = cp_arn(ctx, "cluster/%s", name);
    json_t *doc = json_object();
    js_set_str(doc, "clusterArn", arn);
    js_set_str(doc, "clusterName", name);
    js_set_str(doc, "status", "ACTIVE");
    json_t *s = default_settings(c, ctx);
    if (settings)
        merge_settings(s, settings);
    js_set(doc, "settings", s);
    js_set(doc, "capacityProviders", providers ? json_deep_copy(providers) : json_array());
    js_set(doc, "defaultCapacityProviderStrategy",
           strategy ? json_deep_copy(strategy) : json_array());
    js_set(doc, "tags", tags ? json_deep_copy(tags) : json_array());
    if (js_obj(in, "configuration"))
        js_set(doc, "configuration", json_deep_copy(js_obj(in, "configuration")));
    if (js_obj(in, "serviceConnectDefaults")) {
        const char *ns = js_str(js_obj(in, "serviceConnectDefaults"), "namespace");
        if (ns)
            js_set(doc, "serviceConnectDefaults", json_pack("{s:s}", "namespace", ns));
    }
    json_t *internal = js_ensure_obj(doc, "_skiff");
    js_set_time(internal, "createdAt", now_realtime());
    if (store_put_json(c->st, key, doc, &err) < 0) {
        json_decref(doc);
        return cp_fail(call, &err);
    }
    aws_reply(call, json_pack("{s:o}", "cluster", cluster_view(c, ctx, doc, NULL)));
    json_decref(doc);
}

CP_HANDLER(describe_clusters)
{
    cp *c = cp_of(call);
    const aws_ctx *ctx = aws_call_ctx(call);
    json_t *in = aws_call_input(call);
    json_t *names = js_arr(in, "clusters");
    json_t *include = js_arr(in, "include");
    json_t *clusters = json_array(), *failures = json_array();
    _cleanup_json_ json_t *def = NULL;
    if (!names || json_array_size(names) == 0) {
        def = json_pack("[s]", "default");
        names = def;
    }
    if (json_array_size(names) > 100) {
        json_decref(clusters);
        json_decref(failures);
        return aws_reply_error(call, "InvalidParameterException",
                               "The number of clusters must be at most 100.");
    }
    size_t i;
    json_t *n;
    json_array_foreach(names, i, n) {
        const char *ref = json_string_value(n);
        json_t *doc = NULL;
        sk_err err = { 0 };
        if (cp_cluster_get(c, ctx, ref, false, NULL, &doc, &err) < 0) {
            sk_err_done(&err);
            _cleanup_free_ char *nm = cp_cluster_name_from(ref);
            _cleanup_free_ char *arn = startswith(ref, "arn:")
                                               ? xstrdup(ref)
                                               : cp_arn(ctx, "cluster/%s", nm ? nm : ref);
            json_array_append_new(failures, cp_failure(arn, "MISSING", NULL));
            continue;
        }
        json_array_append_new(clusters, cluster_view(c, ctx, doc, include));
        json_decref(doc);
    }
    aws_reply(call, json_pack("{s:o, s:o}", "clusters", clusters, "failures", failures));
}

typedef struct list_ctx {
    json_t *out;
    int limit;
    char *last;
    bool more;
    const char *status; /* filter */
} list_ctx;

static bool list_cluster_one(const store_kv *kv, void *userdata)
{
    list_ctx *l = userdata;
    json_t *d = json_loadb(kv->value, kv->len, 0, NULL);
    if (!d)
        return true;
    if (streq_ptr(js_str(d, "status"), "ACTIVE")) {
        if ((int) json_array_size(l->out) >= l->limit) {
            l->more = true;
            json_decref(d);
            return false;
        }
        json_array_append_new(l->out, json_string(js_str_or(d, "clusterArn", "")));
        free(l->last);
        l->last = xstrdup(kv->key);
    }
    json_decref(d);
    return true;
}

CP_HANDLER(list_clusters)
{
    cp *c = cp_of(call);
    const aws_ctx *ctx = aws_call_ctx(call);
    json_t *in = aws_call_input(call);
    sk_err err = { 0 };
    list_ctx l = { .out = json_array() };
    _cleanup_free_ char *start = NULL;
    if (cp_page_args(c, in, 100, 100, &l.limit, &start, &err) < 0) {
        json_decref(l.out);
        return cp_fail(call, &err);
    }
    _cleanup_free_ char *prefix = cp_key(ctx, "cluster", "%s", "");
    store_range(c->st, prefix, start, list_cluster_one, &l);
    json_t *out = json_pack("{s:o}", "clusterArns", l.out);
    if (l.more)
        cp_page_token(c, out, l.last);
    free(l.last);
    aws_reply(call, out);
}

CP_HANDLER(delete_cluster)
{
    cp *c = cp_of(call);
    const aws_ctx *ctx = aws_call_ctx(call);
    json_t *in = aws_call_input(call);
    sk_err err = { 0 };
    _cleanup_free_ char *name = NULL;
    _cleanup_json_ json_t *doc = NULL;
    const char *ref = js_str(in, "cluster");
    if (!ref) {
        cp_err_invalid(&err, "cluster must be specified.");
        return cp_fail(call, &err);
    }
    if (cp_cluster_get(c, ctx, ref, false, &name, &doc, &err) < 0)
        return cp_fail(call, &err);
    if (streq_ptr(js_str(doc, "status"), "ACTIVE")) {
        cp_cluster_idx *cl = cp_cluster_idx_get(c, ctx, name, false);
        if (cl && cl->registered_instances > 0) {
            sk_err_typed(
                    &err, SK_E_CONFLICT, "ClusterContainsContainerInstancesException",
                    "The Cluster cannot be deleted while Container Instances are active or draining.");
            return cp_fail(call, &err);
        }
        if (cl && cl->active_services + cl->draining_services > 0) {
            sk_err_typed(&err, SK_E_CONFLICT, "ClusterContainsServicesException",
                         "The Cluster cannot be deleted while Services are active.");
            return cp_fail(call, &err);
        }
        if (cl && cl->running_tasks + cl->pending_tasks > 0) {
            sk_err_typed(&err, SK_E_CONFLICT, "ClusterContainsTasksException",
                         "The Cluster cannot be deleted while Tasks are active.");
            return cp_fail(call, &err);
        }
        js_set_str(doc, "status", "INACTIVE");
        _cleanup_free_ char *key = cp_key(ctx, "cluster", "%s", name);
        if (store_put_json(c->st, key, doc, &err) < 0)
            return cp_fail(call, &err);
    }
    aws_reply(call, json_pack("{s:o}", "cluster", cluster_view(c, ctx, doc, NULL)));
}

static void update_cluster_common(aws_call *call, bool settings_only)
{
    cp *c = cp_of(call);
    const aws_ctx *ctx = aws_call_ctx(call);
    json_t *in = aws_call_input(call);
    sk_err err = { 0 };
    _cleanup_free_ char *name = NULL;
    _cleanup_json_ json_t *doc = NULL;
    if (cp_cluster_get(c, ctx, js_str(in, "cluster"), true, &name, &doc, &err) < 0)
        return cp_fail(call, &err);
    json_t *settings = js_arr(in, "settings");
    if (settings) {
        if (validate_settings(settings, &err) < 0)
            return cp_fail(call, &err);
        merge_settings(js_ensure_arr(doc, "settings"), settings);
    }
    if (!settings_only) {
        if (js_obj(in, "configuration"))
            js_set(doc, "configuration", json_deep_copy(js_obj(in, "configuration")));
        if (js_obj(in, "serviceConnectDefaults")) {
            const char *ns = js_str(js_obj(in, "serviceConnectDefaults"), "namespace");
            js_set(doc, "serviceConnectDefaults",
                   ns && *ns ? json_pack("{s:s}", "namespace", ns) : NULL);
        }
    }
    _cleanup_free_ char *key = cp_key(ctx, "cluster", "%s", name);
    if (store_put_json(c->st, key, doc, &err) < 0)
        return cp_fail(call, &err);
    json_t *inc = json_pack("[s,s]", "SETTINGS", "CONFIGURATIONS");
    aws_reply(call, json_pack("{s:o}", "cluster", cluster_view(c, ctx, doc, inc)));
    json_decref(inc);
}

CP_HANDLER(update_cluster)
{
    update_cluster_common(call, false);
}

CP_HANDLER(update_cluster_settings)
{
    update_cluster_common(call, true);
}

CP_HANDLER(put_cluster_capacity_providers)
{
    cp *c = cp_of(call);
    const aws_ctx *ctx = aws_call_ctx(call);
    json_t *in = aws_call_input(call);
    sk_err err = { 0 };
    _cleanup_free_ char *name = NULL;
    _cleanup_json_ json_t *doc = NULL;
    if (cp_cluster_get(c, ctx, js_str(in, "cluster"), true, &name, &doc, &err) < 0)
        return cp_fail(call, &err);
    json_t *providers = js_arr(in, "capacityProviders");
    json_t *strategy = js_arr(in, "defaultCapacityProviderStrategy");
    if (validate_providers(c, ctx, providers, &err) < 0 ||
        validate_strategy(c, ctx, strategy, providers, &err) < 0)
        return cp_fail(call, &err);
    js_set(doc, "capacityProviders", json_deep_copy(providers));
    js_set(doc, "defaultCapacityProviderStrategy", json_deep_copy(strategy));
    _cleanup_free_ char *key = cp_key(ctx, "cluster", "%s", name);
    if (store_put_json(c->st, key, doc, &err) < 0)
        return cp_fail(call, &err);
    aws_reply(call, json_pack("{s:o}", "cluster", cluster_view(c, ctx, doc, NULL)));
}

/* --- capacity providers --- */

static bool provider_name_ok(const char *n)
{
    if (!n || !*n || strlen(n) > 255)
        return false;
    for (const char *p = n; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '-' || *p == '_' || *p == '.'))
            return false;
    return true;
}

CP_HANDLER(create_capacity_provider)
{
    cp *c = cp_of(call);
    const aws_ctx *ctx = aws_call_ctx(call);
    json_t *in = aws_call_input(call);
    sk_err err = { 0 };
    const char *name = js_str(in, "name");
    if (!provider_name_ok(name)) {
        cp_err_client(
                &err,
                "The capacity provider name is invalid. Up to 255 characters are allowed, including letters (upper and lowercase), numbers, underscores, periods and hyphens.");
        return cp_fail(call, &err);
    }
    if (strncasecmp(name, "aws", 3) == 0 || strncasecmp(name, "ecs", 3) == 0 ||
        strncasecmp(name, "fargate", 7) == 0) {
        cp_err_client(&err,
                      "The capacity provider name cannot begin with 'aws', 'ecs', or 'fargate'.");
        return cp_fail(call, &err);
    }
    json_t *asg = js_obj(in, "autoScalingGroupProvider");
    json_t *mip = js_obj(in, "managedInstancesProvider");
    if (!asg && !mip) {
        cp_err_client(&err,
                      "An autoScalingGroupProvider or managedInstancesProvider must be specified.");
        return cp_fail(call, &err);
    }
    if (cp_tags_validate(js_arr(in, "tags"), &err) < 0)
        return cp_fail(call, &err);
    _cleanup_free_ char *key = cp_key(ctx, "cp", "%s", name);
    _cleanup_json_ json_t *existing = store_get_json(c->st, key);
    if (existing && streq_ptr(js_str(existing, "status"), "ACTIVE")) {
        cp_err_client(
                &err,
                "The specified capacity provider already exists. To change the configuration of an existing capacity provider, update the capacity provider.");
        return cp_fail(call, &err);
    }
    _cleanup_free_ char *arn = cp_arn(ctx, "capacity-provider/%s", name);
    json_t *doc = json_object();
    js_set_str(doc, "capacityProviderArn", arn);
    js_set_str(doc, "name", name);
    js_set_str(doc, "status", "ACTIVE");
    if (asg) {
        json_t *a = json_deep_copy(asg);
        json_t *ms = js_ensure_obj(a, "managedScaling");
        if (!js_has(ms, "status"))
            js_set_str(ms, "status", "DISABLED");
        if (!js_has(ms, "targetCapacity"))
            js_set_int(ms, "targetCapacity", 100);
        if (!js_has(ms, "minimumScalingStepSize"))
            js_set_int(ms, "minimumScalingStepSize", 1);
        if (!js_has(ms, "maximumScalingStepSize"))
            js_set_int(ms, "maximumScalingStepSize", 10000);
        if (!js_has(ms, "instanceWarmupPeriod"))
            js_set_int(ms, "instanceWarmupPeriod", 300);
        if (!js_has(a, "managedTerminationProtection"))
            js_set_str(a, "managedTerminationProtection", "DISABLED");
        if (!js_has(a, "managedDraining"))
            js_set_str(a, "managedDraining", "ENABLED");
        js_set(doc, "autoScalingGroupProvider", a);
        js_set_str(doc, "type", "EC2_AUTOSCALING");
    }
    if (mip) {
        js_set(doc, "managedInstancesProvider", json_deep_copy(mip));
        js_set_str(doc, "type", "MANAGED_INSTANCES");
    }
    js_set(doc, "tags", js_arr(in, "tags") ? json_deep_copy(js_arr(in, "tags")) : json_array());
    if (store_put_json(c->st, key, doc, &err) < 0) {
        json_decref(doc);
        return cp_fail(call, &err);
    }
    aws_reply(call, json_pack("{s:o}", "capacityProvider", doc));
}

typedef struct provider_use {
    const char *name;
    bool used;
} provider_use;

static bool cluster_uses_provider(const store_kv *kv, void *userdata)
{
    provider_use *u = userdata;
    json_t *d = json_loadb(kv->value, kv->len, 0, NULL);
    if (d && streq_ptr(js_str(d, "status"), "ACTIVE") &&
        js_array_has_str(js_arr(d, "capacityProviders"), u->name))
        u->used = true;
    json_decref(d);
    return !u->used;
}

CP_HANDLER(delete_capacity_provider)
{
    cp *c = cp_of(call);
    const aws_ctx *ctx = aws_call_ctx(call);
    json_t *in = aws_call_input(call);
    sk_err err = { 0 };
    _cleanup_free_ char *name = provider_name_from(js_str_or(in, "capacityProvider", ""));
    if (!name || is_builtin_provider(name)) {
        cp_err_client(&err, "The specified capacity provider cannot be deleted.");
        return cp_fail(call, &err);
    }
    _cleanup_free_ char *key = cp_key(ctx, "cp", "%s", name);
    _cleanup_json_ json_t *doc = store_get_json(c->st, key);
    if (!doc || !streq_ptr(js_str(doc, "status"), "ACTIVE")) {
        cp_err_client(
                &err,
                "The specified capacity provider does not exist. Specify a valid name or ARN and try again.");
        return cp_fail(call, &err);
    }
    provider_use u = { .name = name };
    _cleanup_free_ char *prefix = cp_key(ctx, "cluster", "%s", "");
    store_range(c->st, prefix, NULL, cluster_uses_provider, &u);
    if (u.used) {
        cp_err_client(&err, "The specified capacity provider is in use and cannot be removed.");
        return cp_fail(call, &err);
    }
    js_set_str(doc, "status", "INACTIVE");
    js_set_str(doc, "updateStatus", "DELETE_COMPLETE");
    if (store_put_json(c->st, key, doc, &err) < 0)
        return cp_fail(call, &err);
    aws_reply(call, json_pack("{s:O}", "capacityProvider", doc));
}

CP_HANDLER(update_capacity_provider)
{
    cp *c = cp_of(call);
    const aws_ctx *ctx = aws_call_ctx(call);
    json_t *in = aws_call_input(call);
    sk_err err = { 0 };
    _cleanup_free_ char *name = provider_name_from(js_str_or(in, "name", ""));
    if (!name || is_builtin_provider(name)) {
        cp_err_client(&err, "The specified capacity provider cannot be updated.");
        return cp_fail(call, &err);
    }
    _cleanup_free_ char *key = cp_key(ctx, "cp", "%s", name);
    _cleanup_json_ json_t *doc = store_get_json(c->st, key);
    if (!doc || !streq_ptr(js_str(doc, "status"), "ACTIVE")) {
        cp_err_client(
                &err,
                "The specified capacity provider does not exist. Specify a valid name or ARN and try again.");
        return cp_fail(call, &err);
    }
    json_t *upd = js_obj(in, "autoScalingGroupProvider");
    if (upd) {
        json_t *a = js_ensure_obj(doc, "autoScalingGroupProvider");
        json_t *ms = js_obj(upd, "managedScaling");
        if (ms)
            json_object_update(js_ensure_obj(a, "managedScaling"), ms);
        if (js_str(upd, "managedTerminationProtection"))
            js_set_str(a, "managedTerminationProtection",
                       js_str(upd, "managedTerminationProtection"));
        if (js_str(upd, "managedDraining"))
            js_set_str(a, "managedDraining", js_str(upd, "managedDraining"));
    }
    if (js_obj(in, "managedInstancesProvider"))
        json_object_update(js_ensure_obj(doc, "managedInstancesProvider"),
                           js_obj(in, "managedInstancesProvider"));
    js_set_str(doc, "updateStatus", "UPDATE_COMPLETE");
    if (store_put_json(c->st, key, doc, &err) < 0)
        return cp_fail(call, &err);
    aws_reply(call, json_pack("{s:O}", "capacityProvider", doc));
}

typedef struct provider_list {
    json_t *out;
    bool tags;
} provider_list;

static bool provider_list_one(const store_kv *kv, void *userdata)
{
    provider_list *l = userdata;
    json_t *d = json_loadb(kv->value, kv->len, 0, NULL);
    if (d && streq_ptr(js_str(d, "status"), "ACTIVE")) {
        if (!l->tags)
            js_set(d, "tags", NULL);
        json_array_append(l->out, d);
    }
    json_decref(d);
    return true;
}

CP_HANDLER(describe_capacity_providers)
{
    cp *c = cp_of(call);
    const aws_ctx *ctx = aws_call_ctx(call);
    json_t *in = aws_call_input(call);
    json_t *names = js_arr(in, "capacityProviders");
    bool tags = js_array_has_str(js_arr(in, "include"), "TAGS");
    json_t *out = json_array(), *failures = json_array();
    if (names && json_array_size(names) > 0) {
        size_t i;
        json_t *n;
        json_array_foreach(names, i, n) {
            const char *ref = json_string_value(n);
            _cleanup_free_ char *name = provider_name_from(ref);
            json_t *d = name ? capacity_provider_get(c, ctx, name) : NULL;
            if (!d) {
                json_array_append_new(failures, cp_failure(ref, "MISSING", NULL));
                continue;
            }
            if (!tags)
                js_set(d, "tags", NULL);
            json_array_append_new(out, d);
        }
    } else {
        for (size_t i = 0; i < ELEMENTSOF(builtin_providers); i++) {
            json_t *d = capacity_provider_get(c, ctx, builtin_providers[i]);
            if (!tags)
                js_set(d, "tags", NULL);
            json_array_append_new(out, d);
        }
        provider_list l = { out, tags };
        _cleanup_free_ char *prefix = cp_key(ctx, "cp", "%s", "");
        store_range(c->st, prefix, NULL, provider_list_one, &l);
    }
    aws_reply(call, json_pack("{s:o, s:o}", "capacityProviders", out, "failures", failures));
}
