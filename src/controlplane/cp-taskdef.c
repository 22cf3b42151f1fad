/* Task definitions: registration with ECS's validation and normalisation,
 * immutable numbered revisions per family, deregistration and deletion. */
#include <ctype.h>
#include <math.h>
#include <string.h>
#include <strings.h>

#include "basic/alloc.h"
#include "basic/buf.h"
#include "basic/strutil.h"
#include "cp-internal.h"
#include "taskdef.h"

static char *td_key(const aws_ctx *ctx, const char *family, int64_t rev)
{
    return cp_td_key(ctx, family, rev);
}

static char *fam_key(const aws_ctx *ctx, const char *family)
{
    return cp_key(ctx, "tdfam", "%s", family);
}

/* Parses "family", "family:rev" or a task-definition ARN. rev 0 = latest. */
static int parse_td_ref(const aws_ctx *ctx, const char *ref, char **ret_family, int64_t *ret_rev,
                        sk_err *err)
{
    const char *fr = ref;
    if (startswith(ref, "arn:")) {
        cp_arn_parts p;
        if (cp_arn_parse(ref, &p) < 0 || !streq(p.type, "task-definition") ||
            !streq(p.service, "ecs"))
            return cp_err_client(err, "Invalid revision number. Number: %s", ref);
        if (!streq(p.region, ctx->region) || !streq(p.account, ctx->account))
            return cp_err_client(err, "Unable to describe task definition.");
        fr = ref + strlen(ref) - strlen(p.rest);
    }
    const char *colon = strchr(fr, ':');
    _cleanup_free_ char *fam = colon ? xstrndup(fr, (size_t) (colon - fr)) : xstrdup(fr);
    int64_t rev = 0;
    if (colon) {
        if (parse_i64(colon + 1, &rev) < 0 || rev < 1)
            return cp_err_client(err, "Invalid revision number. Number: %s", colon + 1);
    }
    if (!cp_name_valid(fam, 255))
        return cp_err_client(err, "Unable to describe task definition.");
    *ret_family = TAKE_PTR(fam);
    *ret_rev = rev;
    return 0;
}

/* The store key of the record a reference names (family → latest ACTIVE). */
static int td_ref_key(cp *c, const aws_ctx *ctx, const char *ref, char **ret_key, sk_err *err)
{
    _cleanup_free_ char *family = NULL;
    int64_t rev;
    if (parse_td_ref(ctx, ref, &family, &rev, err) < 0)
        return -1;
    if (rev == 0) {
        rev = cp_td_latest_active(c, ctx, family);
        if (rev == 0)
            return cp_err_client(err, "Unable to describe task definition.");
    }
    *ret_key = td_key(ctx, family, rev);
    return 0;
}

/* Loads the stored record {"taskDefinition":..., "tags":[...]}. */
static int td_load(cp *c, const aws_ctx *ctx, const char *ref, json_t **ret, sk_err *err)
{
    _cleanup_free_ char *key = NULL;
    if (td_ref_key(c, ctx, ref, &key, err) < 0)
        return -1;
    json_t *rec = store_get_json(c->st, key);
    if (!rec)
        return cp_err_client(err, "Unable to describe task definition.");
    *ret = rec;
    return 0;
}

int cp_taskdef_resolve(cp *c, const aws_ctx *ctx, const char *ref, bool require_active,
                       json_t **ret_td, sk_err *err)
{
    json_t *rec = NULL;
    if (td_load(c, ctx, ref, &rec, err) < 0)
        return -1;
    json_t *td = json_incref(js_obj(rec, "taskDefinition"));
    json_decref(rec);
    if (!td)
        return cp_err_client(err, "Unable to describe task definition.");
    if (require_active && !streq_ptr(js_str(td, "status"), "ACTIVE")) {
        json_decref(td);
        return cp_err_client(err, "TaskDefinition is inactive");
    }
    *ret_td = td;
    return 0;
}

CP_HANDLER(register_task_definition)
{
    cp *c = cp_of(call);
    const aws_ctx *ctx = aws_call_ctx(call);
    json_t *in = aws_call_input(call);
    sk_err err = { 0 };
    if (cp_tags_validate(js_arr(in, "tags"), &err) < 0)
        return cp_fail(call, &err);
    _cleanup_json_ json_t *td = NULL;
    if (taskdef_normalize(in, &td, &err) < 0)
        return cp_fail(call, &err);
    const char *family = js_str(td, "family");
    _cleanup_free_ char *fkey = fam_key(ctx, family);
    _cleanup_json_ json_t *fam = store_get_json(c->st, fkey);
    const store_kv *fkv = store_get(c->st, fkey);
    int64_t rev = (fam ? js_int(fam, "lastRevision", 0) : 0) + 1;
    if (!fam)
        fam = json_pack("{s:s}", "family", family);
    js_set_int(fam, "lastRevision", rev);
    _cleanup_free_ char *arn = cp_arn(ctx, "task-definition/%s:%lld", family, (long long) rev);
    _cleanup_free_ char *principal = cp_principal_arn(ctx);
    js_set_str(td, "taskDefinitionArn", arn);
    js_set_int(td, "revision", rev);
    js_set_str(td, "status", "ACTIVE");
    js_set_time(td, "registeredAt", now_realtime());
    js_set_str(td, "registeredBy", principal);
    json_t *rec = json_object();
    js_set_str(rec, "status", "ACTIVE"); /* mirrors taskDefinition.status (cp-index.c) */
    js_set(rec, "taskDefinition", json_incref(td));
    js_set(rec, "tags", js_arr(in, "tags") ? json_deep_copy(js_arr(in, "tags")) : json_array());
    _cleanup_free_ char *key = td_key(ctx, family, rev);
    store_txn *t = store_txn_new(c->st);
    store_txn_expect(t, fkey, fkv ? fkv->mod_rev : 0);
    store_txn_put_json(t, fkey, fam);
    store_txn_put_json(t, key, rec);
    if (store_txn_commit(t, &err) < 0) {
        json_decref(rec);
        return cp_fail(call, &err);
    }
    json_t *out = json_object();
    js_set(out, "taskDefinition", json_incref(td));
    js_set(out, "tags", json_incref(js_arr(rec, "tags")));
    json_decref(rec);
    aws_reply(call, out);
}

/* Serialised DescribeTaskDefinition answers, keyed by record and revision:
 * records only change status, which bumps their mod_rev. */
#define TD_CACHE_MAX 512

typedef struct td_cached {
    char *key; /* store key + "|T" when tags are included */
    uint64_t mod_rev;
    char *body;
    size_t len;
} td_cached;

static void td_cache_put(cp *c, const char *key, uint64_t mod_rev, const char *body, size_t len)
{
    td_cached *e = sk_hmap_get(&c->td_cache, key);
    if (!e) {
        if (c->td_cache_order.len >= TD_CACHE_MAX) {
            td_cached *old = c->td_cache_order.items[0];
            sk_vec_remove_at(&c->td_cache_order, 0);
            sk_hmap_remove(&c->td_cache, old->key);
            free(old->key);
            free(old->body);
            free(old);
        }
        e = xcalloc(1, sizeof(*e));
        e->key = xstrdup(key);
        sk_hmap_put(&c->td_cache, e->key, e);
        sk_vec_push(&c->td_cache_order, e);
    }
    free(e->body);
    e->body = xmemdup(body, len + 1);
    e->len = len;
    e->mod_rev = mod_rev;
}

void cp_td_cache_done(cp *c)
{
    for (size_t i = 0; i < c->td_cache_order.len; i++) {
        td_cached *e = c->td_cache_order.items[i];
        free(e->key);
        free(e->body);
        free(e);
    }
    sk_vec_done(&c->td_cache_order, NULL);
    sk_hmap_done(&c->td_cache);
}

CP_HANDLER(describe_task_definition)
{
    cp *c = cp_of(call);
    const aws_ctx *ctx = aws_call_ctx(call);
    json_t *in = aws_call_input(call);
    sk_err err = { 0 };
    _cleanup_free_ char *key = NULL;
    if (td_ref_key(c, ctx, js_str_or(in, "taskDefinition", ""), &key, &err) < 0)
        return cp_fail(call, &err);
    const store_kv *kv = store_get(c->st, key);
    if (!kv) {
        cp_err_client(&err, "Unable to describe task definition.");
        return cp_fail(call, &err);
    }
    bool tags = js_array_has_str(js_arr(in, "include"), "TAGS");
    _cleanup_free_ char *ckey = xasprintf("%s|%c", key, tags ? 'T' : '-');
    td_cached *e = sk_hmap_get(&c->td_cache, ckey);
    if (e && e->mod_rev == kv->mod_rev) {
        aws_reply_raw(call, xmemdup(e->body, e->len + 1), e->len);
        return;
    }
    json_t *rec = json_loadb(kv->value, kv->len, 0, NULL);
    if (!rec) {
        sk_err_set(&err, SK_E_INTERNAL, "corrupt task definition record %s", key);
        return cp_fail(call, &err);
    }
    js_set(rec, "status", NULL); /* the record's index copy, not part of the answer */
    if (!tags)
        js_set(rec, "tags", NULL);
    size_t len;
    char *body = aws_json_dump(rec, &len);
    json_decref(rec);
    td_cache_put(c, ckey, kv->mod_rev, body, len);
    aws_reply_raw(call, body, len);
}

typedef struct td_list {
    cp *c;
    json_t *out;
    const char *status;
    const char *family_prefix;
    int limit;
    char *last;
    bool more;
    bool collect_all; /* for DESC sorting */
    sk_vec keys;
} td_list;

static bool td_list_one(const store_kv *kv, void *userdata)
{
    td_list *l = userdata;
    json_t *d = json_loadb(kv->value, kv->len, 0, NULL);
    if (!d)
        return true;
    json_t *td = js_obj(d, "taskDefinition");
    const char *fam = js_str(td, "family");
    /* For ListTaskDefinitions, familyPrefix names the whole family. */
    bool match = streq_ptr(js_str(td, "status"), l->status) &&
                 (!l->family_prefix || streq_ptr(fam, l->family_prefix));
    if (match) {
        if (l->collect_all) {
            sk_vec_push(&l->keys, xstrdup(kv->key));
            sk_vec_push(&l->keys, xstrdup(js_str_or(td, "taskDefinitionArn", "")));
        } else {
            if ((int) json_array_size(l->out) >= l->limit) {
                l->more = true;
                json_decref(d);
                return false;
            }
            json_array_append_new(l->out, json_string(js_str_or(td, "taskDefinitionArn", "")));
            free(l->last);
            l->last = xstrdup(kv->key);
        }
    }
    json_decref(d);
    return true;
}

CP_HANDLER(list_task_definitions)
{
    cp *c = cp_of(call);
    const aws_ctx *ctx = aws_call_ctx(call);
    json_t *in = aws_call_input(call);
    sk_err err = { 0 };
    td_list l = { .c = c,
                  .out = json_array(),
                  .status = js_str_or(in, "status", "ACTIVE"),
                  .family_prefix = js_str(in, "familyPrefix") };
    _cleanup_free_ char *start = NULL;
    if (cp_page_args(c, in, 100, 100, &l.limit, &start, &err) < 0) {
        json_decref(l.out);
        return cp_fail(call, &err);
    }
    bool desc = streq_ptr(js_str(in, "sort"), "DESC");
    _cleanup_free_ char *prefix = cp_key(ctx, "td", "%s", "");
    json_t *out = json_object();
    if (!desc) {
        store_range(c->st, prefix, start, td_list_one, &l);
        if (l.more)
            cp_page_token(c, out, l.last);
    } else {
        l.collect_all = true;
        store_range(c->st, prefix, NULL, td_list_one, &l);
        /* keys are pairs (key, arn) in ascending order; walk backwards. */
        size_t n = l.keys.len / 2;
        for (size_t i = n; i-- > 0;) {
            const char *k = l.keys.items[2 * i];
            if (start && strcmp(k, start) >= 0)
                continue;
            if ((int) json_array_size(l.out) >= l.limit) {
                cp_page_token(c, out, l.last);
                break;
            }
            json_array_append_new(l.out, json_string(l.keys.items[2 * i + 1]));
            free(l.last);
            l.last = xstrdup(k);
        }
        sk_vec_done(&l.keys, free);
    }
    free(l.last);
    js_set(out, "taskDefinitionArns", l.out);
    aws_reply(call, out);
}

typedef struct fam_list {
    cp *c;
    const aws_ctx *ctx;
    json_t *out;
    const char *status;
    const char *prefix;
    int limit;
    char *last;
    bool more;
} fam_list;

typedef struct fam_active {
    bool any_active;
} fam_active;

static bool fam_list_one(const store_kv *kv, void *userdata)
{
    fam_list *l = userdata;
    json_t *d = json_loadb(kv->value, kv->len, 0, NULL);
    if (!d)
        return true;
    const char *fam = js_str(d, "family");
    if (fam && (!l->prefix || startswith(fam, l->prefix))) {
        bool match = true;
        if (!streq(l->status, "ALL")) {
            fam_active fa = { false };
            fa.any_active = cp_td_latest_active(l->c, l->ctx, fam) > 0;
            match = streq(l->status, "ACTIVE") ? fa.any_active : !fa.any_active;
        }
        if (match) {
            if ((int) json_array_size(l->out) >= l->limit) {
                l->more = true;
                json_decref(d);
                return false;
            }
            json_array_append_new(l->out, json_string(fam));
            free(l->last);
            l->last = xstrdup(kv->key);
        }
    }
    json_decref(d);
    return true;
}

CP_HANDLER(list_task_definition_families)
{
    cp *c = cp_of(call);
    const aws_ctx *ctx = aws_call_ctx(call);
    json_t *in = aws_call_input(call);
    sk_err err = { 0 };
    fam_list l = { .c = c,
                   .ctx = ctx,
                   .out = json_array(),
                   .status = js_str_or(in, "status", "ALL"),
                   .prefix = js_str(in, "familyPrefix") };
    _cleanup_free_ char *start = NULL;
    if (cp_page_args(c, in, 100, 100, &l.limit, &start, &err) < 0) {
        json_decref(l.out);
        return cp_fail(call, &err);
    }
    _cleanup_free_ char *prefix = cp_key(ctx, "tdfam", "%s", "");
    store_range(c->st, prefix, start, fam_list_one, &l);
    json_t *out = json_pack("{s:o}", "families", l.out);
    if (l.more)
        cp_page_token(c, out, l.last);
    free(l.last);
    aws_reply(call, out);
}

CP_HANDLER(deregister_task_definition)
{
    cp *c = cp_of(call);
    const aws_ctx *ctx = aws_call_ctx(call);
    json_t *in = aws_call_input(call);
    sk_err err = { 0 };
    const char *ref = js_str_or(in, "taskDefinition", "");
    _cleanup_free_ char *family = NULL;
    int64_t rev;
    if (parse_td_ref(ctx, ref, &family, &rev, &err) < 0)
        return cp_fail(call, &err);
    if (rev == 0) {
        cp_err_client(&err, "Invalid revision number. Number: %s", ref);
        return cp_fail(call, &err);
    }
    _cleanup_free_ char *key = td_key(ctx, family, rev);
    _cleanup_json_ json_t *rec = store_get_json(c->st, key);
    json_t *td = js_obj(rec, "taskDefinition");
    if (!td || streq_ptr(js_str(td, "status"), "DELETE_IN_PROGRESS")) {
        cp_err_client(&err, "The specified task definition does not exist.");
        return cp_fail(call, &err);
    }
    if (streq_ptr(js_str(td, "status"), "ACTIVE")) {
        js_set_str(td, "status", "INACTIVE");
        js_set_str(rec, "status", "INACTIVE");
        js_set_time(td, "deregisteredAt", now_realtime());
        if (store_put_json(c->st, key, rec, &err) < 0)
            return cp_fail(call, &err);
    }
    aws_reply(call, json_pack("{s:O}", "taskDefinition", td));
}

CP_HANDLER(delete_task_definitions)
{
    cp *c = cp_of(call);
    const aws_ctx *ctx = aws_call_ctx(call);
    json_t *in = aws_call_input(call);
    json_t *refs = js_arr(in, "taskDefinitions");
    if (json_array_size(refs) < 1 || json_array_size(refs) > 10)
        return aws_reply_error(call, "InvalidParameterException",
                               "You must specify between 1 and 10 task definitions.");
    json_t *out = json_array(), *failures = json_array();
    size_t i;
    json_t *r;
    json_array_foreach(refs, i, r) {
        const char *ref = json_string_value(r);
        sk_err err = { 0 };
        _cleanup_free_ char *family = NULL;
        int64_t rev = 0;
        if (parse_td_ref(ctx, ref, &family, &rev, &err) < 0 || rev == 0) {
            sk_err_done(&err);
            json_array_append_new(
                    failures,
                    cp_failure(
                            ref,
                            "The specified task definition identifier is invalid. Specify a valid name or a valid ARN and try again.",
                            NULL));
            continue;
        }
        _cleanup_free_ char *key = td_key(ctx, family, rev);
        _cleanup_json_ json_t *rec = store_get_json(c->st, key);
        json_t *td = js_obj(rec, "taskDefinition");
        if (!td) {
            json_array_append_new(
                    failures,
                    cp_failure(
                            ref,
                            "The specified task definition does not exist. Specify a valid name or a valid ARN and try again.",
                            NULL));
            continue;
        }
        const char *st = js_str(td, "status");
        if (streq_ptr(st, "ACTIVE")) {
            json_array_append_new(
                    failures,
                    cp_failure(
                            js_str(td, "taskDefinitionArn"),
                            "The specified task definition is still in ACTIVE status. Please deregister the target and try again.",
                            NULL));
            continue;
        }
        if (streq_ptr(st, "INACTIVE")) {
            js_set_str(td, "status", "DELETE_IN_PROGRESS");
            js_set_str(rec, "status", "DELETE_IN_PROGRESS");
            js_set_time(td, "deleteRequestedAt", now_realtime());
            if (store_put_json(c->st, key, rec, &err) < 0) {
                json_array_append_new(failures, cp_failure(ref, sk_err_msg(&err), NULL));
                sk_err_done(&err);
                continue;
            }
        }
        json_array_append(out, td);
    }
    aws_reply(call, json_pack("{s:o, s:o}", "taskDefinitions", out, "failures", failures));
}

/* Deletion completes once no unstopped task uses the revision. */
typedef struct td_gc {
    cp *c;
    sk_vec doomed;
} td_gc;

static bool td_gc_one(const store_kv *kv, void *userdata)
{
    td_gc *g = userdata;
    if (!strstr(kv->value, "\"DELETE_IN_PROGRESS\""))
        return true;
    json_t *d = json_loadb(kv->value, kv->len, 0, NULL);
    json_t *td = js_obj(d, "taskDefinition");
    if (streq_ptr(js_str(td, "status"), "DELETE_IN_PROGRESS")) {
        const char *arn = js_str(td, "taskDefinitionArn");
        bool in_use = false;
        size_t it = 0;
        void *v;
        while (!in_use && sk_hmap_next(&g->c->clusters, &it, NULL, &v)) {
            cp_cluster_idx *cl = v;
            for (sk_omap_node *n = sk_omap_seek(cl->tasks, NULL); n; n = sk_omap_next(n)) {
                cp_task_info *t = sk_omap_node_value(n);
                if (t->last != CP_TS_STOPPED && streq_ptr(t->td_arn, arn)) {
                    in_use = true;
                    break;
                }
            }
        }
        if (!in_use)
            sk_vec_push(&g->doomed, xstrdup(kv->key));
    }
    json_decref(d);
    return true;
}

void cp_taskdef_gc(cp *c)
{
    td_gc g = { .c = c };
    store_range(c->st, "ecs/", NULL, td_gc_one, &g);
    for (size_t i = 0; i < g.doomed.len; i++) {
        const char *k = g.doomed.items[i];
        if (!strstr(k, "/td/"))
            continue;
        sk_err err = { 0 };
        store_delete(c->st, k, &err);
        sk_err_done(&err);
    }
    sk_vec_done(&g.doomed, free);
}
