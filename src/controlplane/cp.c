#include <stdarg.h>
#include <string.h>

#include "basic/alloc.h"
#include "basic/log.h"
#include "basic/rand.h"
#include "basic/strutil.h"
#include "cp-internal.h"
#include "shared/digest.h"

#define GC_INTERVAL_USEC (30 * USEC_PER_SEC)

static const aws_op_binding ecs_ops[] = {
    /* sorted by name */
    { "CreateCapacityProvider", cp_create_capacity_provider },
    { "CreateCluster", cp_create_cluster },
    { "CreateService", cp_create_service },
    { "DeleteAccountSetting", cp_delete_account_setting },
    { "DeleteAttributes", cp_delete_attributes },
    { "DeleteCapacityProvider", cp_delete_capacity_provider },
    { "DeleteCluster", cp_delete_cluster },
    { "DeleteService", cp_delete_service },
    { "DeleteTaskDefinitions", cp_delete_task_definitions },
    { "DeregisterContainerInstance", cp_deregister_container_instance },
    { "DeregisterTaskDefinition", cp_deregister_task_definition },
    { "DescribeCapacityProviders", cp_describe_capacity_providers },
    { "DescribeClusters", cp_describe_clusters },
    { "DescribeContainerInstances", cp_describe_container_instances },
    { "DescribeServiceDeployments", cp_describe_service_deployments },
    { "DescribeServiceRevisions", cp_describe_service_revisions },
    { "DescribeServices", cp_describe_services },
    { "DescribeTaskDefinition", cp_describe_task_definition },
    { "DescribeTasks", cp_describe_tasks },
    { "DiscoverPollEndpoint", cp_discover_poll_endpoint },
    { "GetTaskProtection", cp_get_task_protection },
    { "ListAccountSettings", cp_list_account_settings },
    { "ListAttributes", cp_list_attributes },
    { "ListClusters", cp_list_clusters },
    { "ListContainerInstances", cp_list_container_instances },
    { "ListServiceDeployments", cp_list_service_deployments },
    { "ListServices", cp_list_services },
    { "ListServicesByNamespace", cp_list_services_by_namespace },
    { "ListTagsForResource", cp_list_tags_for_resource },
    { "ListTaskDefinitionFamilies", cp_list_task_definition_families },
    { "ListTaskDefinitions", cp_list_task_definitions },
    { "ListTasks", cp_list_tasks },
    { "PutAccountSetting", cp_put_account_setting },
    { "PutAccountSettingDefault", cp_put_account_setting_default },
    { "PutAttributes", cp_put_attributes },
    { "PutClusterCapacityProviders", cp_put_cluster_capacity_providers },
    { "RegisterContainerInstance", cp_register_container_instance },
    { "RegisterTaskDefinition", cp_register_task_definition },
    { "RunTask", cp_run_task },
    { "StartTask", cp_start_task },
    { "StopServiceDeployment", cp_stop_service_deployment },
    { "StopTask", cp_stop_task },
    { "SubmitAttachmentStateChanges", cp_submit_attachment_state_changes },
    { "SubmitContainerStateChange", cp_submit_container_state_change },
    { "SubmitTaskStateChange", cp_submit_task_state_change },
    { "TagResource", cp_tag_resource },
    { "UntagResource", cp_untag_resource },
    { "UpdateCapacityProvider", cp_update_capacity_provider },
    { "UpdateCluster", cp_update_cluster },
    { "UpdateClusterSettings", cp_update_cluster_settings },
    { "UpdateContainerInstancesState", cp_update_container_instances_state },
    { "UpdateService", cp_update_service },
    { "UpdateTaskProtection", cp_update_task_protection },
};

static const aws_op_binding sts_ops[] = {
    { "GetCallerIdentity", cp_sts_get_caller_identity },
};

static const char *const task_status_names[_CP_TS_MAX] = {
    [CP_TS_PROVISIONING] = "PROVISIONING",
    [CP_TS_PENDING] = "PENDING",
    [CP_TS_ACTIVATING] = "ACTIVATING",
    [CP_TS_RUNNING] = "RUNNING",
    [CP_TS_DEACTIVATING] = "DEACTIVATING",
    [CP_TS_STOPPING] = "STOPPING",
    [CP_TS_DEPROVISIONING] = "DEPROVISIONING",
    [CP_TS_STOPPED] = "STOPPED",
    [CP_TS_DELETED] = "DELETED",
};

const char *cp_task_status_name(cp_task_status s)
{
    if (s < 0 || s >= _CP_TS_MAX)
        return "PENDING";
    return task_status_names[s];
}

cp_task_status cp_task_status_from(const char *s)
{
    if (!s)
        return _CP_TS_INVALID;
    for (int i = 0; i < _CP_TS_MAX; i++)
        if (streq(s, task_status_names[i]))
            return (cp_task_status) i;
    return _CP_TS_INVALID;
}

char *cp_key(const aws_ctx *ctx, const char *kind, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *suffix = xvasprintf(fmt, ap);
    va_end(ap);
    char *k = xasprintf("ecs/%s/%s/%s/%s", ctx->account, ctx->region, kind, suffix);
    free(suffix);
    return k;
}

char *cp_td_key(const aws_ctx *ctx, const char *family, int64_t rev)
{
    return cp_key(ctx, "td", "%s!%010lld", family, (long long) rev);
}

char *cp_td_family_prefix(const aws_ctx *ctx, const char *family)
{
    return cp_key(ctx, "td", "%s!", family);
}

char *cp_arn(const aws_ctx *ctx, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *res = xvasprintf(fmt, ap);
    va_end(ap);
    char *a = xasprintf("arn:aws:ecs:%s:%s:%s", ctx->region, ctx->account, res);
    free(res);
    return a;
}

char *cp_principal_arn(const aws_ctx *ctx)
{
    return xasprintf("arn:aws:iam::%s:root", ctx->account);
}

int cp_arn_parse(const char *arn, cp_arn_parts *ret)
{
    /* arn:aws:SERVICE:REGION:ACCOUNT:TYPE/REST */
    memset(ret, 0, sizeof(*ret));
    const char *p = startswith(arn, "arn:aws:");
    if (!p)
        return -EINVAL;
    const char *fields[3];
    size_t lens[3];
    for (int i = 0; i < 3; i++) {
        const char *colon = strchr(p, ':');
        if (!colon)
            return -EINVAL;
        fields[i] = p;
        lens[i] = (size_t) (colon - p);
        p = colon + 1;
    }
    if (lens[0] >= sizeof(ret->service) || lens[1] >= sizeof(ret->region) ||
        lens[2] >= sizeof(ret->account))
        return -EINVAL;
    memcpy(ret->service, fields[0], lens[0]);
    memcpy(ret->region, fields[1], lens[1]);
    memcpy(ret->account, fields[2], lens[2]);
    const char *slash = strchr(p, '/');
    size_t tl = slash ? (size_t) (slash - p) : strlen(p);
    if (tl == 0 || tl >= sizeof(ret->type))
        return -EINVAL;
    memcpy(ret->type, p, tl);
    if (slash) {
        if (strlen(slash + 1) >= sizeof(ret->rest))
            return -EINVAL;
        strcpy(ret->rest, slash + 1);
    }
    return 0;
}

bool cp_name_valid(const char *s, size_t max)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > max)
        return false;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '-' || ch == '_'))
            return false;
    }
    return true;
}

void cp_fail(aws_call *call, sk_err *err)
{
    aws_reply_err(call, err);
    sk_err_done(err);
}

int cp_err_cluster_not_found(sk_err *err)
{
    return sk_err_typed(err, SK_E_NOT_FOUND, "ClusterNotFoundException", "Cluster not found.");
}

int cp_err_invalid(sk_err *err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    sk_err_vset(err, SK_E_INVALID, "InvalidParameterException", fmt, ap);
    va_end(ap);
    return -1;
}

int cp_err_client(sk_err *err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    sk_err_vset(err, SK_E_INVALID, "ClientException", fmt, ap);
    va_end(ap);
    return -1;
}

char *cp_cluster_name_from(const char *name_or_arn)
{
    if (!name_or_arn || !*name_or_arn)
        return xstrdup("default");
    if (startswith(name_or_arn, "arn:")) {
        cp_arn_parts p;
        if (cp_arn_parse(name_or_arn, &p) < 0 || !streq(p.type, "cluster"))
            return NULL;
        return xstrdup(p.rest);
    }
    return xstrdup(name_or_arn);
}

int cp_cluster_get(cp *c, const aws_ctx *ctx, const char *name_or_arn, bool require_active,
                   char **ret_name, json_t **ret_doc, sk_err *err)
{
    if (name_or_arn && startswith(name_or_arn, "arn:")) {
        cp_arn_parts p;
        if (cp_arn_parse(name_or_arn, &p) < 0 || !streq(p.type, "cluster") ||
            !streq(p.service, "ecs"))
            return cp_err_invalid(err, "Invalid cluster ARN: '%s'.", name_or_arn);
        if (!streq(p.region, ctx->region) || !streq(p.account, ctx->account))
            return cp_err_cluster_not_found(err);
    }
    _cleanup_free_ char *name = cp_cluster_name_from(name_or_arn);
    if (!name || !cp_name_valid(name, 255))
        return cp_err_cluster_not_found(err);
    _cleanup_free_ char *key = cp_key(ctx, "cluster", "%s", name);
    json_t *doc = store_get_json(c->st, key);
    if (!doc)
        return cp_err_cluster_not_found(err);
    if (require_active && !streq(js_str_or(doc, "status", ""), "ACTIVE")) {
        json_decref(doc);
        return cp_err_cluster_not_found(err);
    }
    if (ret_name)
        *ret_name = TAKE_PTR(name);
    if (ret_doc)
        *ret_doc = doc;
    else
        json_decref(doc);
    return 0;
}

/* Tokens: base64(position) "." hex(hmac(position))[0:32]. */
char *cp_token_make(cp *c, const char *position)
{
    uint8_t mac[32];
    hmac_sha256(c->token_key, sizeof(c->token_key), position, strlen(position), mac);
    char hex[65];
    hex_encode(mac, 16, hex);
    _cleanup_free_ char *b = base64_encode(position, strlen(position));
    return xasprintf("%s.%s", b, hex);
}

int cp_token_parse(cp *c, const char *token, char **ret_position, sk_err *err)
{
    const char *dot = token ? strrchr(token, '.') : NULL;
    if (!dot || strlen(dot + 1) != 32 || strlen(token) > 4096)
        return cp_err_invalid(err, "Invalid nextToken.");
    uint8_t *pos = NULL;
    size_t len;
    if (base64_decode(token, (size_t) (dot - token), &pos, &len) < 0)
        return cp_err_invalid(err, "Invalid nextToken.");
    uint8_t mac[32];
    hmac_sha256(c->token_key, sizeof(c->token_key), pos, len, mac);
    char hex[65];
    hex_encode(mac, 16, hex);
    if (!mem_equal_ct(hex, dot + 1, 32) || memchr(pos, 0, len)) {
        free(pos);
        return cp_err_invalid(err, "Invalid nextToken.");
    }
    *ret_position = (char *) pos;
    return 0;
}

int cp_max_results(const json_t *in, int def, int max, int *ret, sk_err *err)
{
    json_t *v = json_object_get(in, "maxResults");
    if (!v || json_is_null(v)) {
        *ret = def;
        return 0;
    }
    json_int_t n = json_integer_value(v);
    if (n < 1 || n > max)
        return cp_err_invalid(err, "maxResults must be between 1 and %d.", max);
    *ret = (int) n;
    return 0;
}

int cp_page_args(cp *c, const json_t *in, int def, int max, int *ret_limit, char **ret_start,
                 sk_err *err)
{
    const char *tok = js_str(in, "nextToken");
    *ret_start = NULL;
    if (cp_max_results(in, def, max, ret_limit, err) < 0)
        return -1;
    return tok ? cp_token_parse(c, tok, ret_start, err) : 0;
}

void cp_page_token(cp *c, json_t *out, const char *position)
{
    if (!position)
        return;
    _cleanup_free_ char *tok = cp_token_make(c, position);
    js_set_str(out, "nextToken", tok);
}

int cp_cluster_list_arg(aws_call *call, const char *member, size_t max, const char *what,
                        char **ret_cluster, json_t **ret_list)
{
    json_t *in = aws_call_input(call);
    sk_err err = { 0 };
    if (cp_cluster_get(cp_of(call), aws_call_ctx(call), js_str(in, "cluster"), false, ret_cluster,
                       NULL, &err) < 0) {
        cp_fail(call, &err);
        return -1;
    }
    *ret_list = js_arr(in, member);
    if (json_array_size(*ret_list) > max) {
        cp_err_invalid(&err, "The number of %s must be at most %zu.", what, max);
        cp_fail(call, &err);
        return -1;
    }
    return 0;
}

int cp_tags_validate(const json_t *tags, sk_err *err)
{
    if (!tags)
        return 0;
    if (json_array_size(tags) > CP_MAX_TAGS)
        return cp_err_invalid(err, "The number of tags exceeds the limit of %d.", CP_MAX_TAGS);
    size_t i;
    json_t *t;
    json_array_foreach(tags, i, t) {
        const char *k = js_str(t, "key"), *v = js_str(t, "value");
        if (!k || !*k)
            return cp_err_invalid(err, "Tag keys must not be empty.");
        if (strncasecmp(k, "aws:", 4) == 0)
            return cp_err_invalid(err, "Tag keys with the 'aws:' prefix are reserved.");
        if (strlen(k) > 128 || (v && strlen(v) > 256))
            return cp_err_invalid(err, "Tag key or value is too long.");
    }
    return 0;
}

void cp_tags_merge(json_t *dst, const json_t *add)
{
    size_t i;
    json_t *t;
    json_array_foreach(add, i, t) {
        const char *k = js_str(t, "key");
        if (!k)
            continue;
        bool replaced = false;
        size_t j;
        json_t *e;
        json_array_foreach(dst, j, e) {
            if (streq_ptr(js_str(e, "key"), k)) {
                json_array_set(dst, j, t);
                replaced = true;
                break;
            }
        }
        if (!replaced)
            json_array_append(dst, t);
    }
}

json_t *cp_public(const json_t *doc)
{
    return js_public_copy(doc);
}

json_t *cp_failure(const char *arn, const char *reason, const char *detail)
{
    json_t *f = json_object();
    if (arn)
        js_set_str(f, "arn", arn);
    js_set_str(f, "reason", reason);
    if (detail)
        js_set_str(f, "detail", detail);
    return f;
}

static void on_gc(ev_timer *t, void *userdata)
{
    cp *c = userdata;
    cp_gc_run(c);
    ev_timer_arm_in(t, GC_INTERVAL_USEC);
}

int cp_new(ev_loop *loop, store *st, const cp_config *cfg, cp **ret, sk_err *err)
{
    cp *c = xcalloc(1, sizeof(*c));
    c->loop = loop;
    c->st = st;
    c->cfg = *cfg;
    c->account_id = xstrdup(cfg->account_id);
    c->region = xstrdup(cfg->region);
    c->endpoint_url = xstrdup(cfg->endpoint_url);
    c->cfg.account_id = c->account_id;
    c->cfg.region = c->region;
    c->cfg.endpoint_url = c->endpoint_url;
    if (!c->cfg.stopped_task_retention_sec)
        c->cfg.stopped_task_retention_sec = 3600;
    if (!c->cfg.agent_timeout_sec) {
        /* SKIFF_AGENT_TIMEOUT (a duration) shortens it for tests. */
        const char *e = getenv("SKIFF_AGENT_TIMEOUT");
        uint64_t v;
        c->cfg.agent_timeout_sec = e && parse_duration_usec(e, &v) == 0 && v >= USEC_PER_SEC
                                           ? (unsigned) (v / USEC_PER_SEC)
                                           : 60;
    }
    /* The token key lives in the store so tokens survive restarts. */
    const store_kv *kv = store_get(st, "meta/token-key");
    if (kv && kv->len == 64 && hex_decode(kv->value, c->token_key, 32) == 0) {
    } else {
        random_bytes(c->token_key, sizeof(c->token_key));
        char hex[65];
        hex_encode(c->token_key, 32, hex);
        if (store_put(st, "meta/token-key", hex, 64, err) < 0) {
            cp_free(c);
            return -1;
        }
    }
    cp_acs_init(c);
    cp_index_init(c);
    cp_sched_init(c);
    c->ecs_def = (aws_service_def){
        .model = &model_ecs,
        .protocol = AWS_PROTO_JSON,
        .validation_error = "InvalidParameterException",
        .fault_error = "ServerException",
        .client_error = "ClientException",
        .body_cap = 64 * 1024,
        .ops = ecs_ops,
        .nops = ELEMENTSOF(ecs_ops),
        .userdata = c,
    };
    c->sts_def = (aws_service_def){
        .model = &model_sts,
        .protocol = AWS_PROTO_QUERY,
        .validation_error = "ValidationError",
        .fault_error = "InternalFailure",
        .client_error = "ValidationError",
        .body_cap = 64 * 1024,
        .ops = sts_ops,
        .nops = ELEMENTSOF(sts_ops),
        .userdata = c,
    };
    c->gc_timer = ev_timer_new(loop, on_gc, c);
    ev_timer_arm_in(c->gc_timer, GC_INTERVAL_USEC);
    *ret = c;
    return 0;
}

void cp_free(cp *c)
{
    if (!c)
        return;
    ev_timer_free(c->gc_timer);
    cp_sched_done(c);
    cp_td_cache_done(c);
    cp_index_done(c);
    cp_acs_done(c);
    free(c->account_id);
    free(c->region);
    free(c->endpoint_url);
    free(c);
}

const aws_service_def *cp_ecs_service(cp *c)
{
    return &c->ecs_def;
}

const aws_service_def *cp_sts_service(cp *c)
{
    return &c->sts_def;
}

CP_HANDLER(sts_get_caller_identity)
{
    const aws_ctx *ctx = aws_call_ctx(call);
    json_t *out = json_object();
    js_set_str(out, "UserId", ctx->account);
    js_set_str(out, "Account", ctx->account);
    js_set(out, "Arn", json_string_nocheck(""));
    _cleanup_free_ char *arn = cp_principal_arn(ctx);
    js_set_str(out, "Arn", arn);
    aws_reply(call, out);
}
