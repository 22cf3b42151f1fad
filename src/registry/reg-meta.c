/* Registry metadata in the store: repositories, images, tags, blob links and
 * referrers (key layout in reg-internal.h). Every multi-key change is one
 * store transaction, so /v2/ and the ECR API always see a consistent view. */
#include <stdarg.h>
#include <string.h>

#include "basic/alloc.h"
#include "basic/strutil.h"
#include "basic/timeutil.h"
#include "reg-internal.h"
#include "shared/digest.h"

char *reg_key(const reg_ns *ns, const char *kind, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    _cleanup_free_ char *suffix = xvasprintf(fmt, ap);
    va_end(ap);
    return xasprintf("ecr/%s/%s/%s/%s", ns->account, ns->region, kind, suffix);
}

const char *reg_key_split(const char *key, const char *kind, reg_ns *ret_ns)
{
    const char *p = startswith(key, "ecr/");
    const char *s1 = p ? strchr(p, '/') : NULL;
    const char *s2 = s1 ? strchr(s1 + 1, '/') : NULL;
    const char *k = s2 ? startswith(s2 + 1, kind) : NULL;
    const char *rest = k && *k == '/' ? k + 1 : NULL;
    if (!rest || (size_t) (s1 - p) != REG_ACCOUNT_LEN || (size_t) (s2 - s1 - 1) > REG_REGION_MAX)
        return NULL;
    *ret_ns = (reg_ns){ 0 };
    memcpy(ret_ns->account, p, REG_ACCOUNT_LEN);
    memcpy(ret_ns->region, s1 + 1, (size_t) (s2 - s1 - 1));
    return rest;
}

json_t *reg_repo_get(reg_registry *r, const reg_ns *ns, const char *repo)
{
    _cleanup_free_ char *k = reg_key(ns, "repo", "%s", repo);
    return store_get_json(r->st, k);
}

bool reg_blob_linked(reg_registry *r, const reg_ns *ns, const char *repo, const char *digest,
                     uint64_t *ret_size)
{
    _cleanup_free_ char *k = reg_key(ns, "blob", "%s@%s", repo, digest);
    const store_kv *kv = store_get(r->st, k);
    if (!kv)
        return false;
    if (ret_size) {
        _cleanup_json_ json_t *v = json_loadb(kv->value, kv->len, 0, NULL);
        *ret_size = (uint64_t) js_int(v, "size", 0);
    }
    return true;
}

int reg_blob_link(reg_registry *r, const reg_ns *ns, const char *repo, const char *digest,
                  uint64_t size, sk_err *err)
{
    _cleanup_free_ char *k = reg_key(ns, "blob", "%s@%s", repo, digest);
    _cleanup_json_ json_t *v =
            json_pack("{s:I, s:I}", "size", (json_int_t) size, "at", (json_int_t) now_realtime());
    return store_put_json(r->st, k, v, err);
}

json_t *reg_image_get(reg_registry *r, const reg_ns *ns, const char *repo, const char *digest)
{
    _cleanup_free_ char *k = reg_key(ns, "img", "%s@%s", repo, digest);
    return store_get_json(r->st, k);
}

char *reg_tag_resolve(reg_registry *r, const reg_ns *ns, const char *repo, const char *tag)
{
    _cleanup_free_ char *k = reg_key(ns, "tag", "%s@%s", repo, tag);
    _cleanup_json_ json_t *v = store_get_json(r->st, k);
    const char *d = js_str(v, "digest");
    return d ? xstrdup(d) : NULL;
}

bool reg_tag_immutable(const json_t *repo_doc, const char *tag)
{
    const char *m = js_str_or(repo_doc, "imageTagMutability", "MUTABLE");
    bool base_immutable = startswith(m, "IMMUTABLE") != NULL;
    if (!endswith(m, "_WITH_EXCLUSION"))
        return base_immutable;
    json_t *filters = js_arr(repo_doc, "imageTagMutabilityExclusionFilters");
    size_t i;
    json_t *f;
    json_array_foreach(filters, i, f) {
        const char *pat = js_str(f, "filter");
        if (pat && reg_wildcard_match(pat, tag))
            return !base_immutable;
    }
    return base_immutable;
}

static json_t *str_array_without(const json_t *a, const char *s)
{
    json_t *out = json_array();
    size_t i;
    json_t *e;
    json_array_foreach(a, i, e) {
        if (json_is_string(e) && !streq(json_string_value(e), s))
            json_array_append(out, e);
    }
    return out;
}

static int cmp_json_str(const void *a, const void *b)
{
    return strcmp(json_string_value(*(json_t *const *) a), json_string_value(*(json_t *const *) b));
}

static void sort_str_array(json_t *a)
{
    size_t n = json_array_size(a);
    if (n < 2)
        return;
    json_t **items = xcalloc(n, sizeof(json_t *));
    for (size_t i = 0; i < n; i++)
        items[i] = json_incref(json_array_get(a, i));
    qsort(items, n, sizeof(json_t *), cmp_json_str);
    json_array_clear(a);
    for (size_t i = 0; i < n; i++)
        json_array_append_new(a, items[i]);
    free(items);
}

int reg_image_put(reg_registry *r, const reg_ns *ns, const json_t *repo_doc, const char *repo,
                  const char *data, size_t len, const char *media_type, const char *tag,
                  const char *expect_digest, reg_put_result *ret, sk_err *err)
{
    memset(ret, 0, sizeof(*ret));
    if (tag && !reg_tag_valid(tag))
        return sk_err_typed(err, SK_E_INVALID, "TAG_INVALID", "invalid tag '%.200s'", tag);
    char hex[SHA256_HEX_LEN + 1];
    sha256_hex(data, len, hex);
    char digest[CAS_DIGEST_MAX];
    snprintf(digest, sizeof(digest), "sha256:%s", hex);
    if (expect_digest) {
        if (!reg_digest_syntax(expect_digest))
            return sk_err_typed(err, SK_E_INVALID, "DIGEST_INVALID", "invalid digest '%.200s'",
                                expect_digest);
        if (!startswith(expect_digest, "sha256:"))
            return sk_err_typed(err, SK_E_INVALID, "DIGEST_INVALID",
                                "digest algorithm of '%.200s' is not supported", expect_digest);
        if (!streq(expect_digest, digest))
            return sk_err_typed(err, SK_E_INVALID, "DIGEST_INVALID",
                                "manifest digest '%s' does not match '%.200s'", digest,
                                expect_digest);
    }
    reg_manifest m;
    if (reg_manifest_parse(data, len, media_type, &m, err) < 0)
        return -1;
    int ret_code = -1;
    _cleanup_json_ json_t *refs = json_array();
    _cleanup_free_ char *old_digest = NULL, *ik = NULL;
    _cleanup_json_ json_t *img = NULL;
    uint64_t image_size = 0;
    if (m.kind == REG_MANIFEST_IMAGE) {
        uint64_t sz;
        if (!reg_blob_linked(r, ns, repo, m.config.digest, &sz)) {
            sk_err_typed(err, SK_E_NOT_FOUND, "MANIFEST_BLOB_UNKNOWN",
                         "config blob '%.200s' is unknown to repository '%s'", m.config.digest,
                         repo);
            goto out;
        }
        if ((int64_t) sz != m.config.size) {
            sk_err_typed(err, SK_E_INVALID, "MANIFEST_INVALID",
                         "config size %lld does not match blob '%s' of %llu bytes",
                         (long long) m.config.size, m.config.digest, (unsigned long long) sz);
            goto out;
        }
        json_array_append_new(refs, json_string(m.config.digest));
        image_size += sz;
        for (size_t i = 0; i < m.ndescs; i++) {
            const reg_desc *d = &m.descs[i];
            if (d->has_urls) {
                image_size += (uint64_t) d->size;
                continue;
            }
            if (!reg_blob_linked(r, ns, repo, d->digest, &sz)) {
                sk_err_typed(err, SK_E_NOT_FOUND, "MANIFEST_BLOB_UNKNOWN",
                             "layer blob '%.200s' is unknown to repository '%s'", d->digest, repo);
                goto out;
            }
            if ((int64_t) sz != d->size) {
                sk_err_typed(err, SK_E_INVALID, "MANIFEST_INVALID",
                             "layers[%zu].size %lld does not match blob '%s' of %llu bytes", i,
                             (long long) d->size, d->digest, (unsigned long long) sz);
                goto out;
            }
            if (!js_array_has_str(refs, d->digest))
                json_array_append_new(refs, json_string(d->digest));
            image_size += sz;
        }
    } else {
        for (size_t i = 0; i < m.ndescs; i++) {
            const reg_desc *d = &m.descs[i];
            _cleanup_json_ json_t *child = reg_image_get(r, ns, repo, d->digest);
            if (!child) {
                sk_err_typed(err, SK_E_NOT_FOUND, "REFERENCED_MANIFEST_UNKNOWN",
                             "manifest '%.200s' referenced by the index is unknown to "
                             "repository '%s'",
                             d->digest, repo);
                goto out;
            }
            if (!js_array_has_str(refs, d->digest))
                json_array_append_new(refs, json_string(d->digest));
            image_size += (uint64_t) js_int(child, "imageSize", 0);
        }
    }
    old_digest = tag ? reg_tag_resolve(r, ns, repo, tag) : NULL;
    if (old_digest && !streq(old_digest, digest) && reg_tag_immutable(repo_doc, tag)) {
        sk_err_typed(err, SK_E_EXISTS, "TAG_IMMUTABLE",
                     "The image tag '%s' already exists in the '%s' repository and cannot be "
                     "overwritten because the repository is immutable.",
                     tag, repo);
        goto out;
    }
    if (cas_put(r->cas, data, len, digest, NULL, err) < 0)
        goto out;

    ik = reg_key(ns, "img", "%s@%s", repo, digest);
    img = store_get_json(r->st, ik);
    ret->image_existed = img != NULL;
    ret->tag_unchanged = old_digest && streq(old_digest, digest);
    usec_t now = now_realtime();
    if (!img) {
        img = json_object();
        js_set_str(img, "digest", digest);
        js_set_int(img, "pushedAt", (int64_t) now);
        js_set(img, "tags", json_array());
    }
    js_set_str(img, "mediaType", m.media_type);
    js_set_str(img, "artifactType", m.artifact_type);
    if (m.kind == REG_MANIFEST_IMAGE)
        js_set_str(img, "configMediaType", m.config.media_type);
    js_set_int(img, "size", (int64_t) len);
    js_set_int(img, "imageSize", (int64_t) image_size);
    js_set(img, "refs", json_incref(refs));
    if (m.has_subject)
        js_set_str(img, "subject", m.subject.digest);
    store_txn *t = store_txn_new(r->st);
    if (tag && !ret->tag_unchanged) {
        json_t *tags = js_ensure_arr(img, "tags");
        if (!js_array_has_str(tags, tag))
            json_array_append_new(tags, json_string(tag));
        sort_str_array(tags);
        if (old_digest) {
            _cleanup_free_ char *ok = reg_key(ns, "img", "%s@%s", repo, old_digest);
            _cleanup_json_ json_t *old = store_get_json(r->st, ok);
            if (old) {
                js_set(old, "tags", str_array_without(js_arr(old, "tags"), tag));
                store_txn_put_json(t, ok, old);
            }
        }
        _cleanup_free_ char *tk = reg_key(ns, "tag", "%s@%s", repo, tag);
        _cleanup_json_ json_t *tv =
                json_pack("{s:s, s:I}", "digest", digest, "at", (json_int_t) now);
        store_txn_put_json(t, tk, tv);
    }
    store_txn_put_json(t, ik, img);
    if (m.has_subject) {
        _cleanup_free_ char *rk =
                reg_key(ns, "referrer", "%s@%s@%s", repo, m.subject.digest, digest);
        json_t *rv = json_pack("{s:s, s:I}", "mediaType", m.media_type, "size", (json_int_t) len);
        if (m.artifact_type)
            js_set_str(rv, "artifactType", m.artifact_type);
        if (m.annotations)
            js_set(rv, "annotations", json_deep_copy(m.annotations));
        store_txn_put_json(t, rk, rv);
        json_decref(rv);
    }
    if (store_txn_commit(t, err) < 0)
        goto out;
    memcpy(ret->digest, digest, sizeof(digest));
    ret_code = 0;
out:
    reg_manifest_done(&m);
    return ret_code;
}

int reg_image_delete(reg_registry *r, const reg_ns *ns, const char *repo, const char *digest,
                     sk_err *err)
{
    _cleanup_free_ char *ik = reg_key(ns, "img", "%s@%s", repo, digest);
    _cleanup_json_ json_t *img = store_get_json(r->st, ik);
    if (!img)
        return sk_err_typed(err, SK_E_NOT_FOUND, "MANIFEST_UNKNOWN", "manifest '%s' not found",
                            digest);
    store_txn *t = store_txn_new(r->st);
    store_txn_delete(t, ik);
    size_t i;
    json_t *e;
    json_array_foreach(js_arr(img, "tags"), i, e) {
        if (!json_is_string(e))
            continue;
        _cleanup_free_ char *tk = reg_key(ns, "tag", "%s@%s", repo, json_string_value(e));
        _cleanup_free_ char *cur = reg_tag_resolve(r, ns, repo, json_string_value(e));
        if (cur && streq(cur, digest))
            store_txn_delete(t, tk);
    }
    const char *subj = js_str(img, "subject");
    if (subj) {
        _cleanup_free_ char *rk = reg_key(ns, "referrer", "%s@%s@%s", repo, subj, digest);
        if (store_get(r->st, rk))
            store_txn_delete(t, rk);
    }
    return store_txn_commit(t, err);
}

int reg_tag_delete(reg_registry *r, const reg_ns *ns, const char *repo, const char *tag,
                   sk_err *err)
{
    _cleanup_free_ char *digest = reg_tag_resolve(r, ns, repo, tag);
    if (!digest)
        return sk_err_typed(err, SK_E_NOT_FOUND, "MANIFEST_UNKNOWN", "tag '%s' not found", tag);
    _cleanup_free_ char *tk = reg_key(ns, "tag", "%s@%s", repo, tag);
    _cleanup_free_ char *ik = reg_key(ns, "img", "%s@%s", repo, digest);
    _cleanup_json_ json_t *img = store_get_json(r->st, ik);
    store_txn *t = store_txn_new(r->st);
    store_txn_delete(t, tk);
    if (img) {
        js_set(img, "tags", str_array_without(js_arr(img, "tags"), tag));
        store_txn_put_json(t, ik, img);
    }
    return store_txn_commit(t, err);
}

typedef struct collect_ctx {
    sk_vec *keys;
    size_t prefix_len;
    bool suffix_only;
    size_t max;
} collect_ctx;

static bool collect_key(const store_kv *kv, void *userdata)
{
    collect_ctx *c = userdata;
    sk_vec_push(c->keys, xstrdup(c->suffix_only ? kv->key + c->prefix_len : kv->key));
    return c->max == 0 || c->keys->len < c->max;
}

int reg_repo_delete_all(reg_registry *r, const reg_ns *ns, const char *repo, sk_err *err)
{
    static const char *const kinds[] = { "img", "tag", "blob", "referrer" };
    sk_vec keys = { 0 };
    for (size_t i = 0; i < ELEMENTSOF(kinds); i++) {
        _cleanup_free_ char *prefix = reg_key(ns, kinds[i], "%s@", repo);
        collect_ctx c = { .keys = &keys };
        store_range(r->st, prefix, NULL, collect_key, &c);
    }
    static const char *const single[] = { "policy", "lifecycle", "lcpreview", "repo" };
    for (size_t i = 0; i < ELEMENTSOF(single); i++) {
        char *k = reg_key(ns, single[i], "%s", repo);
        if (store_get(r->st, k))
            sk_vec_push(&keys, k);
        else
            free(k);
    }
    store_txn *t = store_txn_new(r->st);
    for (size_t i = 0; i < keys.len; i++)
        store_txn_delete(t, keys.items[i]);
    sk_vec_done(&keys, free);
    return store_txn_commit(t, err);
}

void reg_repo_images(reg_registry *r, const reg_ns *ns, const char *repo, sk_vec *ret)
{
    _cleanup_free_ char *prefix = reg_key(ns, "img", "%s@", repo);
    collect_ctx c = { .keys = ret, .prefix_len = strlen(prefix), .suffix_only = true };
    store_range(r->st, prefix, NULL, collect_key, &c);
}

bool reg_repo_has_images(reg_registry *r, const reg_ns *ns, const char *repo)
{
    sk_vec v = { 0 };
    _cleanup_free_ char *prefix = reg_key(ns, "img", "%s@", repo);
    collect_ctx c = { .keys = &v, .prefix_len = strlen(prefix), .suffix_only = true, .max = 1 };
    store_range(r->st, prefix, NULL, collect_key, &c);
    bool has = v.len > 0;
    sk_vec_done(&v, free);
    return has;
}
