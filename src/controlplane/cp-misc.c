/* Tags on any ECS resource, account settings, and periodic maintenance. */
#include <string.h>

#include "basic/alloc.h"
#include "basic/log.h"
#include "basic/strutil.h"
#include "cp-internal.h"

/* Maps a resource ARN to its store key and the JSON path holding its tags
 * (task definitions keep tags beside the definition). */
static int resource_key(cp *c, const aws_ctx *ctx, const char *arn, char **ret_key, sk_err *err)
{
    cp_arn_parts p;
    if (!arn || cp_arn_parse(arn, &p) < 0 || !streq(p.service, "ecs"))
        return cp_err_invalid(err, "Invalid resource ARN '%s'.", arn ? arn : "");
    if (!streq(p.region, ctx->region) || !streq(p.account, ctx->account))
        return sk_err_typed(err, SK_E_NOT_FOUND, "ResourceNotFoundException",
                            "The specified resource could not be found.");
    char *key = NULL;
    if (streq(p.type, "cluster"))
        key = cp_key(ctx, "cluster", "%s", p.rest);
    else if (streq(p.type, "task") || streq(p.type, "container-instance") ||
             streq(p.type, "service")) {
        const char *slash = strchr(p.rest, '/');
        if (!slash)
            return cp_err_invalid(err, "Long ARN format is required for '%s'.", arn);
        const char *kind = streq(p.type, "task") ? "task" : streq(p.type, "service") ? "svc" : "ci";
        key = cp_key(ctx, kind, "%s", p.rest);
    } else if (streq(p.type, "task-definition")) {
        const char *colon = strrchr(p.rest, ':');
        int64_t rev;
        if (!colon || parse_i64(colon + 1, &rev) < 0)
            return cp_err_invalid(err, "Invalid task definition ARN '%s'.", arn);
        _cleanup_free_ char *fam = xstrndup(p.rest, (size_t) (colon - p.rest));
        key = cp_td_key(ctx, fam, rev);
    } else if (streq(p.type, "capacity-provider"))
        key = cp_key(ctx, "cp", "%s", p.rest);
    else
        return cp_err_invalid(err, "Unsupported resource type '%s'.", p.type);
    if (!store_get(c->st, key)) {
        bool cluster = streq(p.type, "cluster");
        free(key);
        if (cluster)
            return cp_err_cluster_not_found(err);
        return sk_err_typed(err, SK_E_NOT_FOUND, "ResourceNotFoundException",
                            "The specified resource could not be found.");
    }
    *ret_key = key;
    return 0;
}

CP_HANDLER(tag_resource)
{
    cp *c = cp_of(call);
    const aws_ctx *ctx = aws_call_ctx(call);
    json_t *in = aws_call_input(call);
    sk_err err = { 0 };
    _cleanup_free_ char *key = NULL;
    json_t *tags = js_arr(in, "tags");
    if (resource_key(c, ctx, js_str(in, "resourceArn"), &key, &err) < 0 ||
        cp_tags_validate(tags, &err) < 0)
        return cp_fail(call, &err);
    _cleanup_json_ json_t *doc = store_get_json(c->st, key);
    json_t *cur = js_ensure_arr(doc, "tags");
    cp_tags_merge(cur, tags);
    if (json_array_size(cur) > CP_MAX_TAGS) {
        sk_err_typed(&err, SK_E_LIMIT, "InvalidParameterException",
                     "The number of tags on the resource exceeds the limit of %d.", CP_MAX_TAGS);
        return cp_fail(call, &err);
    }
    if (store_put_json(c->st, key, doc, &err) < 0)
        return cp_fail(call, &err);
    aws_reply(call, NULL);
}

CP_HANDLER(untag_resource)
{
    cp *c = cp_of(call);
    const aws_ctx *ctx = aws_call_ctx(call);
    json_t *in = aws_call_input(call);
    sk_err err = { 0 };
    _cleanup_free_ char *key = NULL;
    if (resource_key(c, ctx, js_str(in, "resourceArn"), &key, &err) < 0)
        return cp_fail(call, &err);
    _cleanup_json_ json_t *doc = store_get_json(c->st, key);
    json_t *cur = js_ensure_arr(doc, "tags");
    json_t *keys = js_arr(in, "tagKeys");
    for (size_t i = json_array_size(cur); i-- > 0;) {
        if (js_array_has_str(keys, js_str_or(json_array_get(cur, i), "key", "")))
            json_array_remove(cur, i);
    }
    if (store_put_json(c->st, key, doc, &err) < 0)
        return cp_fail(call, &err);
    aws_reply(call, NULL);
}

CP_HANDLER(list_tags_for_resource)
{
    cp *c = cp_of(call);
    const aws_ctx *ctx = aws_call_ctx(call);
    json_t *in = aws_call_input(call);
    sk_err err = { 0 };
    _cleanup_free_ char *key = NULL;
    if (resource_key(c, ctx, js_str(in, "resourceArn"), &key, &err) < 0)
        return cp_fail(call, &err);
    _cleanup_json_ json_t *doc = store_get_json(c->st, key);
    json_t *tags = js_arr(doc, "tags");
    aws_reply(call, json_pack("{s:O}", "tags", tags ? tags : json_array()));
}

/* --- account settings --- */

typedef struct setting_def {
    const char *name;
    const char *def;
    const char *const *values;
} setting_def;

static const char *const on_off[] = { "enabled", "disabled", NULL };
static const char *const insights[] = { "enabled", "disabled", "enhanced", NULL };
static const char *const tag_auth[] = { "on", "off", NULL };
static const char *const retire[] = { "0", "7", "14", NULL };
static const char *const log_mode[] = { "blocking", "non-blocking", NULL };

static const setting_def settings[] = {
    { "serviceLongArnFormat", "enabled", on_off },
    { "taskLongArnFormat", "enabled", on_off },
    { "containerInstanceLongArnFormat", "enabled", on_off },
    { "awsvpcTrunking", "disabled", on_off },
    { "containerInsights", "disabled", insights },
    { "dualStackIPv6", "disabled", on_off },
    { "fargateFIPSMode", "disabled", on_off },
    { "tagResourceAuthorization", "on", tag_auth },
    { "fargateTaskRetirementWaitPeriod", "7", retire },
    { "guardDutyActivate", "off", tag_auth },
    { "defaultLogDriverMode", "non-blocking", log_mode },
    { "fargateEventWindows", "disabled", on_off },
};

static const setting_def *setting_find(const char *name)
{
    for (size_t i = 0; i < ELEMENTSOF(settings); i++)
        if (name && streq(settings[i].name, name))
            return &settings[i];
    return NULL;
}

static int setting_check(const char *name, const char *value, sk_err *err)
{
    const setting_def *d = setting_find(name);
    if (!d)
        return cp_err_invalid(err, "Invalid account setting name '%s'.", name ? name : "");
    for (const char *const *v = d->values; *v; v++)
        if (value && streq(*v, value))
            return 0;
    return cp_err_invalid(err, "Invalid value '%s' for account setting %s.", value ? value : "",
                          name);
}

static char *principal_of(const aws_ctx *ctx, const json_t *in)
{
    const char *p = js_str(in, "principalArn");
    return p ? xstrdup(p) : cp_principal_arn(ctx);
}

static json_t *setting_json(const char *name, const char *value, const char *principal,
                            const char *type)
{
    return json_pack("{s:s, s:s, s:s, s:s}", "name", name, "value", value, "principalArn",
                     principal, "type", type);
}

static void put_setting(aws_call *call, bool is_default)
{
    cp *c = cp_of(call);
    const aws_ctx *ctx = aws_call_ctx(call);
    json_t *in = aws_call_input(call);
    sk_err err = { 0 };
    const char *name = js_str(in, "name"), *value = js_str(in, "value");
    if (setting_check(name, value, &err) < 0)
        return cp_fail(call, &err);
    _cleanup_free_ char *principal = is_default ? cp_principal_arn(ctx) : principal_of(ctx, in);
    _cleanup_free_ char *key = is_default ? cp_key(ctx, "acctset", "_default/%s", name)
                                          : cp_key(ctx, "acctset", "%s/%s", principal, name);
    json_t *s = setting_json(name, value, principal, "user");
    if (store_put_json(c->st, key, s, &err) < 0) {
        json_decref(s);
        return cp_fail(call, &err);
    }
    aws_reply(call, json_pack("{s:o}", "setting", s));
}

CP_HANDLER(put_account_setting)
{
    put_setting(call, false);
}

CP_HANDLER(put_account_setting_default)
{
    put_setting(call, true);
}

CP_HANDLER(delete_account_setting)
{
    cp *c = cp_of(call);
    const aws_ctx *ctx = aws_call_ctx(call);
    json_t *in = aws_call_input(call);
    sk_err err = { 0 };
    const char *name = js_str(in, "name");
    if (!setting_find(name)) {
        cp_err_invalid(&err, "Invalid account setting name '%s'.", name ? name : "");
        return cp_fail(call, &err);
    }
    _cleanup_free_ char *principal = principal_of(ctx, in);
    _cleanup_free_ char *key = cp_key(ctx, "acctset", "%s/%s", principal, name);
    _cleanup_json_ json_t *s = store_get_json(c->st, key);
    if (!s) {
        /* Deleting an unset setting returns the effective default. */
        _cleanup_free_ char *dkey = cp_key(ctx, "acctset", "_default/%s", name);
        _cleanup_json_ json_t *d = store_get_json(c->st, dkey);
        const char *v = d ? js_str(d, "value") : setting_find(name)->def;
        aws_reply(call, json_pack("{s:o}", "setting", setting_json(name, v, principal, "user")));
        return;
    }
    if (store_delete(c->st, key, &err) < 0)
        return cp_fail(call, &err);
    aws_reply(call, json_pack("{s:O}", "setting", s));
}

CP_HANDLER(list_account_settings)
{
    cp *c = cp_of(call);
    const aws_ctx *ctx = aws_call_ctx(call);
    json_t *in = aws_call_input(call);
    sk_err err = { 0 };
    const char *fname = js_str(in, "name"), *fvalue = js_str(in, "value");
    bool effective = js_bool(in, "effectiveSettings", false);
    _cleanup_free_ char *principal = principal_of(ctx, in);
    int limit;
    _cleanup_free_ char *start = NULL;
    if (cp_page_args(c, in, 10, 10, &limit, &start, &err) < 0)
        return cp_fail(call, &err);
    json_t *all = json_array();
    for (size_t i = 0; i < ELEMENTSOF(settings); i++) {
        const char *name = settings[i].name;
        if (fname && !streq(fname, name))
            continue;
        _cleanup_free_ char *ukey = cp_key(ctx, "acctset", "%s/%s", principal, name);
        _cleanup_free_ char *dkey = cp_key(ctx, "acctset", "_default/%s", name);
        _cleanup_json_ json_t *u = store_get_json(c->st, ukey);
        _cleanup_json_ json_t *d = store_get_json(c->st, dkey);
        json_t *s = NULL;
        if (u)
            s = json_incref(u);
        else if (effective)
            s = setting_json(name, d ? js_str_or(d, "value", settings[i].def) : settings[i].def,
                             principal, d ? "user" : "aws_managed");
        if (!s)
            continue;
        if (fvalue && !streq_ptr(js_str(s, "value"), fvalue)) {
            json_decref(s);
            continue;
        }
        json_array_append_new(all, s);
    }
    json_t *out = json_array();
    json_t *res = json_object();
    size_t i;
    json_t *s;
    const char *last = NULL;
    json_array_foreach(all, i, s) {
        const char *nm = js_str(s, "name");
        if (start && strcmp(nm, start) <= 0)
            continue;
        if ((int) json_array_size(out) >= limit) {
            cp_page_token(c, res, last);
            break;
        }
        json_array_append(out, s);
        last = nm;
    }
    /* settings are iterated in table order; make pagination follow name order */
    js_set(res, "settings", out);
    json_decref(all);
    aws_reply(call, res);
}

/* --- maintenance --- */

typedef struct gc_ctx {
    cp *c;
    usec_t now;
    sk_vec doomed;
} gc_ctx;

static bool gc_one(const store_kv *kv, void *userdata)
{
    gc_ctx *g = userdata;
    const char *k = kv->key;
    bool task = strstr(k, "/task/") != NULL;
    bool ci = strstr(k, "/ci/") != NULL;
    if (strstr(k, "/token/")) {
        /* RunTask client tokens are remembered for a day. */
        json_t *d = json_loadb(kv->value, kv->len, 0, NULL);
        double t = json_number_value(json_object_get(d, "createdAt"));
        if (t > 0 && (double) g->now / 1e6 - t > 86400)
            sk_vec_push(&g->doomed, xstrdup(k));
        json_decref(d);
        return true;
    }
    if (!task && !ci)
        return true;
    if (task && !strstr(kv->value, "\"lastStatus\":\"STOPPED\""))
        return true;
    if (ci && !strstr(kv->value, "\"status\":\"INACTIVE\""))
        return true;
    json_t *d = json_loadb(kv->value, kv->len, 0, NULL);
    double t = task ? json_number_value(json_object_get(d, "stoppedAt"))
                    : json_number_value(json_object_get(js_obj(d, "_skiff"), "deregisteredAt"));
    if (t > 0 && (double) g->now / 1e6 - t > g->c->cfg.stopped_task_retention_sec)
        sk_vec_push(&g->doomed, xstrdup(k));
    json_decref(d);
    return true;
}

void cp_gc_run(cp *c)
{
    gc_ctx g = { .c = c, .now = now_realtime() };
    store_range(c->st, "ecs/", NULL, gc_one, &g);
    if (g.doomed.len) {
        store_txn *t = store_txn_new(c->st);
        for (size_t i = 0; i < g.doomed.len; i++)
            store_txn_delete(t, g.doomed.items[i]);
        sk_err err = { 0 };
        if (store_txn_commit(t, &err) < 0)
            log_warn("gc: %s", sk_err_msg(&err));
        sk_err_done(&err);
        log_debug("gc: removed %zu expired records", g.doomed.len);
    }
    sk_vec_done(&g.doomed, free);
    cp_taskdef_gc(c);
}
