/* The Amazon ECR API (AWS JSON 1.1) over the registry's store and CAS. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "basic/alloc.h"
#include "basic/log.h"
#include "basic/strutil.h"
#include "basic/timeutil.h"
#include "reg-internal.h"
#include "shared/digest.h"

#define ECR_MAX_TAGS        50
#define ECR_PART_MAX        (20u << 20)
#define ECR_PART_MIN        (5u << 20)
#define ECR_DOWNLOAD_TTL    3600
#define ECR_BODY_CAP        (30u << 20)
#define ECR_DEFAULT_RESULTS 100
#define ECR_LAYER_MT        "application/vnd.docker.container.image.rootfs.diff+tar.gzip"

static reg_registry *R(aws_call *c)
{
    return aws_call_userdata(c);
}

static void ns_of(aws_call *c, reg_ns *ns)
{
    const aws_ctx *ctx = aws_call_ctx(c);
    strlcpy_s(ns->account, ctx->account, sizeof(ns->account));
    strlcpy_s(ns->region, ctx->region, sizeof(ns->region));
}

static void fail(aws_call *c, sk_err *err)
{
    aws_reply_err(c, err);
    sk_err_done(err);
}

static int err_type(sk_err *err, const char *type, const char *fmt, ...) _printf_(3, 4);
static int err_type(sk_err *err, const char *type, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    sk_err_vset(err, SK_E_INVALID, type, fmt, ap);
    va_end(ap);
    return -1;
}

static int repo_not_found(sk_err *err, const reg_ns *ns, const char *name)
{
    return err_type(err, "RepositoryNotFoundException",
                    "The repository with name '%s' does not exist in the registry with id '%s'",
                    name, ns->account);
}

/* Checks registryId and the name, and loads the repository document. */
static json_t *load_repo(aws_call *c, reg_ns *ns, sk_err *err)
{
    json_t *in = aws_call_input(c);
    ns_of(c, ns);
    const char *rid = js_str(in, "registryId");
    const char *name = js_str(in, "repositoryName");
    if (!name || !reg_repo_name_valid(name)) {
        err_type(err, "InvalidParameterException",
                 "Invalid parameter at 'repositoryName' failed to satisfy constraint: 'must "
                 "satisfy regular expression "
                 "'(?:[a-z0-9]+(?:[._-][a-z0-9]+)*/)*[a-z0-9]+(?:[._-][a-z0-9]+)*''");
        return NULL;
    }
    if (rid && !streq(rid, ns->account)) {
        repo_not_found(err, ns, name);
        return NULL;
    }
    json_t *repo = reg_repo_get(R(c), ns, name);
    if (!repo)
        repo_not_found(err, ns, name);
    return repo;
}

/* load_repo, replying with the error when the repository cannot be used. */
static json_t *load_repo_or_reply(aws_call *c, reg_ns *ns)
{
    _cleanup_err_ sk_err err = { 0 };
    json_t *repo = load_repo(c, ns, &err);
    if (!repo)
        fail(c, &err);
    return repo;
}

static const char *repo_name(aws_call *c)
{
    return js_str(aws_call_input(c), "repositoryName");
}

static json_t *repo_public(const json_t *repo)
{
    return js_public_copy(repo);
}

/* --- pagination tokens: "<offset>.<mac>" --- */

static char *token_make(reg_registry *r, size_t off)
{
    char msg[64];
    snprintf(msg, sizeof(msg), "pg:%zu", off);
    uint8_t mac[SHA256_LEN];
    hmac_sha256(r->token_key, sizeof(r->token_key), msg, strlen(msg), mac);
    char hex[17];
    hex_encode(mac, 8, hex);
    return xasprintf("%zu.%s", off, hex);
}

static int token_parse(reg_registry *r, const char *tok, size_t *ret, sk_err *err)
{
    *ret = 0;
    if (!tok)
        return 0;
    const char *dot = strchr(tok, '.');
    if (dot && (size_t) (dot - tok) < 20) {
        char num[24];
        memcpy(num, tok, (size_t) (dot - tok));
        num[dot - tok] = 0;
        uint64_t v;
        if (parse_u64(num, &v) == 0) {
            _cleanup_free_ char *want = token_make(r, (size_t) v);
            if (streq(want, tok)) {
                *ret = (size_t) v;
                return 0;
            }
        }
    }
    return err_type(err, "InvalidParameterException",
                    "Invalid parameter at 'nextToken' failed "
                    "to satisfy constraint: 'invalid token'");
}

/* Slices arr (stolen) per maxResults/nextToken into out[key]; sets nextToken. */
static int paginate(aws_call *c, json_t *arr, json_t *out, const char *key, sk_err *err)
{
    json_t *in = aws_call_input(c);
    size_t off;
    if (token_parse(R(c), js_str(in, "nextToken"), &off, err) < 0) {
        json_decref(arr);
        return -1;
    }
    /* AWS: without maxResults, up to 100 results and a nextToken. */
    int64_t max = js_int(in, "maxResults", 0);
    size_t n = json_array_size(arr);
    size_t limit = max > 0 ? (size_t) max : ECR_DEFAULT_RESULTS;
    json_t *page = json_array();
    for (size_t i = off; i < n && json_array_size(page) < limit; i++)
        json_array_append(page, json_array_get(arr, i));
    if (off + json_array_size(page) < n) {
        _cleanup_free_ char *tok = token_make(R(c), off + json_array_size(page));
        js_set_str(out, "nextToken", tok);
    }
    js_set(out, key, page);
    json_decref(arr);
    return 0;
}

/* --- image identifiers --- */

typedef struct resolved {
    char *digest;
    const char *fcode;
    char *freason;
} resolved;

static void resolved_done(resolved *x)
{
    free(x->digest);
    free(x->freason);
}

static bool resolve_id(reg_registry *r, const reg_ns *ns, const char *repo, const json_t *id,
                       resolved *ret)
{
    memset(ret, 0, sizeof(*ret));
    const char *d = js_str(id, "imageDigest");
    const char *t = js_str(id, "imageTag");
    if (!d && !t) {
        ret->fcode = "MissingDigestAndTag";
        ret->freason = xstrdup("Invalid request parameters: both tag and digest cannot be null");
        return false;
    }
    if (d && !reg_digest_valid(d)) {
        ret->fcode = "InvalidImageDigest";
        ret->freason = xstrdup("Invalid request parameters: image digest should satisfy the "
                               "regex '[a-zA-Z0-9-_+.]+:[a-fA-F0-9]+'");
        return false;
    }
    if (t && !reg_tag_valid(t)) {
        ret->fcode = "InvalidImageTag";
        ret->freason = xstrdup("Invalid request parameters: image tag is invalid");
        return false;
    }
    char *digest = t ? reg_tag_resolve(r, ns, repo, t) : xstrdup(d);
    if (digest && t && d && !streq(digest, d)) {
        free(digest);
        ret->fcode = "ImageTagDoesNotMatchDigest";
        ret->freason = xasprintf("Invalid request parameters: given tag %s does not match "
                                 "given digest",
                                 t);
        return false;
    }
    _cleanup_json_ json_t *img = digest ? reg_image_get(r, ns, repo, digest) : NULL;
    if (!img) {
        free(digest);
        ret->fcode = "ImageNotFound";
        ret->freason = xstrdup("Requested image not found");
        return false;
    }
    ret->digest = digest;
    return true;
}

static json_t *failure(const json_t *id, const resolved *x)
{
    return json_pack("{s:O, s:s, s:s}", "imageId", id, "failureCode", x->fcode, "failureReason",
                     x->freason);
}

static json_t *image_detail(const reg_ns *ns, const char *repo, const json_t *img)
{
    json_t *o = json_pack("{s:s, s:s, s:s, s:I}", "registryId", ns->account, "repositoryName", repo,
                          "imageDigest", js_str_or(img, "digest", ""), "imageSizeInBytes",
                          (json_int_t) js_int(img, "imageSize", 0));
    json_t *tags = js_arr(img, "tags");
    if (json_array_size(tags) > 0)
        js_set(o, "imageTags", json_incref(tags));
    js_set_time(o, "imagePushedAt", (uint64_t) js_int(img, "pushedAt", 0));
    js_set_str(o, "imageManifestMediaType", js_str(img, "mediaType"));
    js_set_str(o, "artifactMediaType", js_str(img, "artifactType"));
    js_set_str(o, "subjectManifestDigest", js_str(img, "subject"));
    js_set_str(o, "imageStatus", "ACTIVE");
    return o;
}

/* Images of repo as (digest, record) in key order. */
typedef struct img_list {
    sk_vec digests;
    json_t *records; /* array */
} img_list;

static void img_list_load(reg_registry *r, const reg_ns *ns, const char *repo, img_list *l)
{
    memset(l, 0, sizeof(*l));
    reg_repo_images(r, ns, repo, &l->digests);
    l->records = json_array();
    for (size_t i = 0; i < l->digests.len; i++) {
        json_t *img = reg_image_get(r, ns, repo, l->digests.items[i]);
        json_array_append_new(l->records, img ? img : json_object());
    }
}

static void img_list_done(img_list *l)
{
    sk_vec_done(&l->digests, free);
    json_decref(l->records);
}

static bool tag_status_ok(const char *ts, const json_t *img)
{
    bool tagged = json_array_size(js_arr(img, "tags")) > 0;
    if (!ts || streq(ts, "ANY"))
        return true;
    return streq(ts, "TAGGED") ? tagged : !tagged;
}

/* --- repositories --- */

static bool tag_key_ok(const char *k)
{
    return k && *k && !startswith(k, "aws:");
}

static int merge_tags(json_t *repo, const json_t *tags, sk_err *err)
{
    json_t *cur = js_ensure_arr(repo, "_tags");
    size_t i;
    json_t *t;
    json_array_foreach(tags, i, t) {
        const char *k = js_str(t, "Key");
        const char *v = js_str_or(t, "Value", "");
        if (!tag_key_ok(k))
            return err_type(err, "InvalidTagParameterException",
                            "The tag key '%s' is invalid: keys must not be empty or begin with "
                            "'aws:'",
                            k ? k : "");
        bool found = false;
        size_t j;
        json_t *e;
        json_array_foreach(cur, j, e) {
            if (streq_ptr(js_str(e, "Key"), k)) {
                js_set_str(e, "Value", v);
                found = true;
            }
        }
        if (!found)
            json_array_append_new(cur, json_pack("{s:s, s:s}", "Key", k, "Value", v));
    }
    if (json_array_size(cur) > ECR_MAX_TAGS)
        return err_type(err, "TooManyTagsException",
                        "The list of tags on the repository is over the limit. The maximum "
                        "number of tags that can be applied to a repository is %d",
                        ECR_MAX_TAGS);
    return 0;
}

static void create_repository(aws_call *c)
{
    reg_registry *r = R(c);
    json_t *in = aws_call_input(c);
    _cleanup_err_ sk_err err = { 0 };
    reg_ns ns;
    ns_of(c, &ns);
    const char *name = repo_name(c);
    if (!reg_repo_name_valid(name)) {
        aws_reply_error(c, "InvalidParameterException",
                        "Invalid parameter at 'repositoryName' failed to satisfy constraint: "
                        "'must satisfy regular expression "
                        "'(?:[a-z0-9]+(?:[._-][a-z0-9]+)*/)*[a-z0-9]+(?:[._-][a-z0-9]+)*''");
        return;
    }
    const char *rid = js_str(in, "registryId");
    if (rid && !streq(rid, ns.account)) {
        aws_reply_error(c, "InvalidParameterException",
                        "Invalid parameter at 'registryId': repositories can only be created in "
                        "the caller's registry");
        return;
    }
    _cleanup_json_ json_t *existing = reg_repo_get(r, &ns, name);
    if (existing) {
        aws_reply_error(c, "RepositoryAlreadyExistsException",
                        "The repository with name '%s' already exists in the registry with id "
                        "'%s'",
                        name, ns.account);
        return;
    }
    _cleanup_json_ json_t *repo = json_object();
    _cleanup_free_ char *arn =
            xasprintf("arn:aws:ecr:%s:%s:repository/%s", ns.region, ns.account, name);
    _cleanup_free_ char *uri = xasprintf("%s/%s", r->host, name);
    js_set_str(repo, "repositoryArn", arn);
    js_set_str(repo, "registryId", ns.account);
    js_set_str(repo, "repositoryName", name);
    js_set_str(repo, "repositoryUri", uri);
    js_set_time(repo, "createdAt", now_realtime());
    js_set_str(repo, "imageTagMutability", js_str_or(in, "imageTagMutability", "MUTABLE"));
    json_t *ex = js_arr(in, "imageTagMutabilityExclusionFilters");
    if (ex)
        js_set(repo, "imageTagMutabilityExclusionFilters", json_incref(ex));
    json_t *scan = js_obj(in, "imageScanningConfiguration");
    js_set(repo, "imageScanningConfiguration",
           scan ? json_pack("{s:b}", "scanOnPush", js_bool(scan, "scanOnPush", false))
                : json_pack("{s:b}", "scanOnPush", 0));
    json_t *enc = js_obj(in, "encryptionConfiguration");
    js_set(repo, "encryptionConfiguration",
           enc ? json_deep_copy(enc) : json_pack("{s:s}", "encryptionType", "AES256"));
    json_t *tags = js_arr(in, "tags");
    if (tags && merge_tags(repo, tags, &err) < 0) {
        fail(c, &err);
        return;
    }
    _cleanup_free_ char *k = reg_key(&ns, "repo", "%s", name);
    store_txn *t = store_txn_new(r->st);
    store_txn_expect(t, k, 0);
    store_txn_put_json(t, k, repo);
    if (store_txn_commit(t, &err) < 0) {
        fail(c, &err);
        return;
    }
    aws_reply(c, json_pack("{s:o}", "repository", repo_public(repo)));
}

typedef struct repo_range {
    json_t *out;
} repo_range;

static bool collect_repo(const store_kv *kv, void *userdata)
{
    repo_range *x = userdata;
    json_t *v = json_loadb(kv->value, kv->len, 0, NULL);
    if (v) {
        json_array_append_new(x->out, js_public_copy(v));
        json_decref(v);
    }
    return true;
}

static void describe_repositories(aws_call *c)
{
    reg_registry *r = R(c);
    json_t *in = aws_call_input(c);
    _cleanup_err_ sk_err err = { 0 };
    reg_ns ns;
    ns_of(c, &ns);
    const char *rid = js_str(in, "registryId");
    json_t *names = js_arr(in, "repositoryNames");
    json_t *all = json_array();
    if (names) {
        size_t i;
        json_t *n;
        json_array_foreach(names, i, n) {
            const char *name = json_string_value(n);
            json_t *repo = name && reg_repo_name_valid(name) && (!rid || streq(rid, ns.account))
                                   ? reg_repo_get(r, &ns, name)
                                   : NULL;
            if (!repo) {
                json_decref(all);
                repo_not_found(&err, &ns, name ? name : "");
                fail(c, &err);
                return;
            }
            json_array_append_new(all, repo_public(repo));
            json_decref(repo);
        }
    } else if (!rid || streq(rid, ns.account)) {
        _cleanup_free_ char *prefix = reg_key(&ns, "repo", "%s", "");
        repo_range x = { all };
        store_range(r->st, prefix, NULL, collect_repo, &x);
    }
    json_t *out = json_object();
    if (paginate(c, all, out, "repositories", &err) < 0) {
        json_decref(out);
        fail(c, &err);
        return;
    }
    aws_reply(c, out);
}

static void delete_repository(aws_call *c)
{
    reg_registry *r = R(c);
    _cleanup_err_ sk_err err = { 0 };
    reg_ns ns;
    _cleanup_json_ json_t *repo = load_repo_or_reply(c, &ns);
    if (!repo)
        return;
    const char *name = repo_name(c);
    bool force = js_bool(aws_call_input(c), "force", false);
    if (!force && reg_repo_has_images(r, &ns, name)) {
        aws_reply_error(c, "RepositoryNotEmptyException",
                        "The repository with name '%s' in registry with id '%s' cannot be "
                        "deleted because it still contains images",
                        name, ns.account);
        return;
    }
    if (reg_repo_delete_all(r, &ns, name, &err) < 0) {
        fail(c, &err);
        return;
    }
    aws_reply(c, json_pack("{s:o}", "repository", repo_public(repo)));
}

static void describe_registry(aws_call *c)
{
    reg_ns ns;
    ns_of(c, &ns);
    aws_reply(c, json_pack("{s:s, s:{s:[]}}", "registryId", ns.account, "replicationConfiguration",
                           "rules"));
}

static int update_repo(aws_call *c, const reg_ns *ns, json_t *repo, sk_err *err)
{
    _cleanup_free_ char *k = reg_key(ns, "repo", "%s", repo_name(c));
    return store_put_json(R(c)->st, k, repo, err);
}

static void put_image_tag_mutability(aws_call *c)
{
    json_t *in = aws_call_input(c);
    _cleanup_err_ sk_err err = { 0 };
    reg_ns ns;
    _cleanup_json_ json_t *repo = load_repo_or_reply(c, &ns);
    if (!repo)
        return;
    const char *m = js_str(in, "imageTagMutability");
    json_t *ex = js_arr(in, "imageTagMutabilityExclusionFilters");
    if (endswith(m, "_WITH_EXCLUSION") && json_array_size(ex) == 0) {
        aws_reply_error(c, "InvalidParameterException",
                        "imageTagMutabilityExclusionFilters are required with %s", m);
        return;
    }
    js_set_str(repo, "imageTagMutability", m);
    js_set(repo, "imageTagMutabilityExclusionFilters", ex ? json_incref(ex) : NULL);
    if (update_repo(c, &ns, repo, &err) < 0) {
        fail(c, &err);
        return;
    }
    json_t *out = json_pack("{s:s, s:s, s:s}", "registryId", ns.account, "repositoryName",
                            repo_name(c), "imageTagMutability", m);
    if (ex)
        js_set(out, "imageTagMutabilityExclusionFilters", json_incref(ex));
    aws_reply(c, out);
}

static void put_image_scanning_configuration(aws_call *c)
{
    json_t *in = aws_call_input(c);
    _cleanup_err_ sk_err err = { 0 };
    reg_ns ns;
    _cleanup_json_ json_t *repo = load_repo_or_reply(c, &ns);
    if (!repo)
        return;
    json_t *scan = js_obj(in, "imageScanningConfiguration");
    json_t *cfg = json_pack("{s:b}", "scanOnPush", js_bool(scan, "scanOnPush", false));
    js_set(repo, "imageScanningConfiguration", json_incref(cfg));
    if (update_repo(c, &ns, repo, &err) < 0) {
        json_decref(cfg);
        fail(c, &err);
        return;
    }
    aws_reply(c, json_pack("{s:s, s:s, s:o}", "registryId", ns.account, "repositoryName",
                           repo_name(c), "imageScanningConfiguration", cfg));
}

/* --- images --- */

static void describe_images(aws_call *c)
{
    reg_registry *r = R(c);
    json_t *in = aws_call_input(c);
    _cleanup_err_ sk_err err = { 0 };
    reg_ns ns;
    _cleanup_json_ json_t *repo = load_repo_or_reply(c, &ns);
    if (!repo)
        return;
    const char *name = repo_name(c);
    json_t *ids = js_arr(in, "imageIds");
    const char *ts = js_str(js_obj(in, "filter"), "tagStatus");
    json_t *all = json_array();
    if (ids) {
        size_t i;
        json_t *id;
        json_array_foreach(ids, i, id) {
            resolved x;
            if (!resolve_id(r, &ns, name, id, &x)) {
                json_decref(all);
                if (streq(x.fcode, "ImageNotFound") || streq(x.fcode, "ImageTagDoesNotMatchDigest"))
                    aws_reply_error(c, "ImageNotFoundException",
                                    "The image with imageId {imageDigest:'%s', imageTag:'%s'} "
                                    "does not exist within the repository with name '%s' in "
                                    "the registry with id '%s'",
                                    js_str_or(id, "imageDigest", "null"),
                                    js_str_or(id, "imageTag", "null"), name, ns.account);
                else
                    aws_reply_error(c, "InvalidParameterException", "%s", x.freason);
                resolved_done(&x);
                return;
            }
            _cleanup_json_ json_t *img = reg_image_get(r, &ns, name, x.digest);
            bool dup = false;
            size_t j;
            json_t *e;
            json_array_foreach(all, j, e)
                dup |= streq_ptr(js_str(e, "imageDigest"), x.digest);
            if (!dup && tag_status_ok(ts, img))
                json_array_append_new(all, image_detail(&ns, name, img));
            resolved_done(&x);
        }
    } else {
        img_list l;
        img_list_load(r, &ns, name, &l);
        size_t i;
        json_t *img;
        json_array_foreach(l.records, i, img) {
            if (tag_status_ok(ts, img))
                json_array_append_new(all, image_detail(&ns, name, img));
        }
        img_list_done(&l);
    }
    json_t *out = json_object();
    if (paginate(c, all, out, "imageDetails", &err) < 0) {
        json_decref(out);
        fail(c, &err);
        return;
    }
    aws_reply(c, out);
}

static void list_images(aws_call *c)
{
    reg_registry *r = R(c);
    json_t *in = aws_call_input(c);
    _cleanup_err_ sk_err err = { 0 };
    reg_ns ns;
    _cleanup_json_ json_t *repo = load_repo_or_reply(c, &ns);
    if (!repo)
        return;
    const char *ts = js_str(js_obj(in, "filter"), "tagStatus");
    json_t *all = json_array();
    img_list l;
    img_list_load(r, &ns, repo_name(c), &l);
    size_t i;
    json_t *img;
    json_array_foreach(l.records, i, img) {
        const char *d = js_str_or(img, "digest", "");
        json_t *tags = js_arr(img, "tags");
        if (json_array_size(tags) == 0) {
            if (!ts || !streq(ts, "TAGGED"))
                json_array_append_new(all, json_pack("{s:s}", "imageDigest", d));
        } else if (!ts || !streq(ts, "UNTAGGED")) {
            size_t j;
            json_t *t;
            json_array_foreach(tags, j, t)
                json_array_append_new(all,
                                      json_pack("{s:s, s:O}", "imageDigest", d, "imageTag", t));
        }
    }
    img_list_done(&l);
    json_t *out = json_object();
    if (paginate(c, all, out, "imageIds", &err) < 0) {
        json_decref(out);
        fail(c, &err);
        return;
    }
    aws_reply(c, out);
}

static void batch_get_image(aws_call *c)
{
    reg_registry *r = R(c);
    json_t *in = aws_call_input(c);
    _cleanup_err_ sk_err err = { 0 };
    reg_ns ns;
    _cleanup_json_ json_t *repo = load_repo_or_reply(c, &ns);
    if (!repo)
        return;
    const char *name = repo_name(c);
    json_t *accepted = js_arr(in, "acceptedMediaTypes");
    json_t *images = json_array(), *failures = json_array();
    size_t i;
    json_t *id;
    json_array_foreach(js_arr(in, "imageIds"), i, id) {
        resolved x;
        if (!resolve_id(r, &ns, name, id, &x)) {
            json_array_append_new(failures, failure(id, &x));
            resolved_done(&x);
            continue;
        }
        _cleanup_json_ json_t *img = reg_image_get(r, &ns, name, x.digest);
        const char *mt = js_str_or(img, "mediaType", REG_MT_OCI_MANIFEST);
        if (json_array_size(accepted) > 0 && !js_array_has_str(accepted, mt)) {
            x.fcode = "ImageNotFound";
            x.freason = xasprintf("The image's manifest media type '%s' is not in "
                                  "acceptedMediaTypes",
                                  mt);
            json_array_append_new(failures, failure(id, &x));
            resolved_done(&x);
            continue;
        }
        _cleanup_free_ char *data = NULL;
        size_t len;
        if (cas_get(r->cas, x.digest, REG_MANIFEST_MAX, &data, &len, &err) < 0) {
            resolved_done(&x);
            json_decref(images);
            json_decref(failures);
            fail(c, &err);
            return;
        }
        json_t *iid = json_pack("{s:s}", "imageDigest", x.digest);
        js_set_str(iid, "imageTag", js_str(id, "imageTag"));
        json_array_append_new(images,
                              json_pack("{s:s, s:s, s:o, s:s%, s:s}", "registryId", ns.account,
                                        "repositoryName", name, "imageId", iid, "imageManifest",
                                        data, len, "imageManifestMediaType", mt));
        resolved_done(&x);
    }
    aws_reply(c, json_pack("{s:o, s:o}", "images", images, "failures", failures));
}

static bool referenced_by_index(reg_registry *r, const reg_ns *ns, const char *repo,
                                const char *digest)
{
    img_list l;
    img_list_load(r, ns, repo, &l);
    bool found = false;
    size_t i;
    json_t *img;
    json_array_foreach(l.records, i, img) {
        if (reg_media_type_is_index(js_str(img, "mediaType")) &&
            js_array_has_str(js_arr(img, "refs"), digest) &&
            !streq_ptr(js_str(img, "digest"), digest)) {
            found = true;
            break;
        }
    }
    img_list_done(&l);
    return found;
}

static void batch_delete_image(aws_call *c)
{
    reg_registry *r = R(c);
    json_t *in = aws_call_input(c);
    _cleanup_err_ sk_err err = { 0 };
    reg_ns ns;
    _cleanup_json_ json_t *repo = load_repo_or_reply(c, &ns);
    if (!repo)
        return;
    const char *name = repo_name(c);
    json_t *deleted = json_array(), *failures = json_array();
    size_t i;
    json_t *id;
    json_array_foreach(js_arr(in, "imageIds"), i, id) {
        resolved x;
        if (!resolve_id(r, &ns, name, id, &x)) {
            json_array_append_new(failures, failure(id, &x));
            resolved_done(&x);
            continue;
        }
        const char *tag = js_str(id, "imageTag");
        int k;
        if (tag) {
            k = reg_tag_delete(r, &ns, name, tag, &err);
            _cleanup_json_ json_t *img = reg_image_get(r, &ns, name, x.digest);
            if (k >= 0 && img && json_array_size(js_arr(img, "tags")) == 0 &&
                !referenced_by_index(r, &ns, name, x.digest))
                k = reg_image_delete(r, &ns, name, x.digest, &err);
            if (k >= 0)
                json_array_append_new(
                        deleted, json_pack("{s:s, s:s}", "imageDigest", x.digest, "imageTag", tag));
        } else {
            if (referenced_by_index(r, &ns, name, x.digest)) {
                x.fcode = "ImageReferencedByManifestList";
                x.freason = xstrdup("Requested image is referenced by a manifest list");
                json_array_append_new(failures, failure(id, &x));
                resolved_done(&x);
                continue;
            }
            _cleanup_json_ json_t *img = reg_image_get(r, &ns, name, x.digest);
            k = reg_image_delete(r, &ns, name, x.digest, &err);
            if (k >= 0) {
                json_t *tags = js_arr(img, "tags");
                if (json_array_size(tags) == 0)
                    json_array_append_new(deleted, json_pack("{s:s}", "imageDigest", x.digest));
                size_t j;
                json_t *t;
                json_array_foreach(tags, j, t)
                    json_array_append_new(deleted, json_pack("{s:s, s:O}", "imageDigest", x.digest,
                                                             "imageTag", t));
            }
        }
        resolved_done(&x);
        if (k < 0) {
            json_decref(deleted);
            json_decref(failures);
            fail(c, &err);
            return;
        }
    }
    aws_reply(c, json_pack("{s:o, s:o}", "imageIds", deleted, "failures", failures));
}

static void put_image(aws_call *c)
{
    reg_registry *r = R(c);
    json_t *in = aws_call_input(c);
    _cleanup_err_ sk_err err = { 0 };
    reg_ns ns;
    _cleanup_json_ json_t *repo = load_repo_or_reply(c, &ns);
    if (!repo)
        return;
    const char *name = repo_name(c);
    const char *manifest = js_str(in, "imageManifest");
    size_t len = json_string_length(json_object_get(in, "imageManifest"));
    const char *tag = js_str(in, "imageTag");
    const char *want = js_str(in, "imageDigest");
    const char *mt = js_str(in, "imageManifestMediaType");
    if (len > REG_MANIFEST_MAX) {
        aws_reply_error(c, "InvalidParameterException",
                        "Invalid parameter at 'imageManifest' failed to satisfy constraint: "
                        "'Member must have length less than or equal to %u'",
                        REG_MANIFEST_MAX);
        return;
    }
    char hex[SHA256_HEX_LEN + 1];
    sha256_hex(manifest, len, hex);
    char digest[CAS_DIGEST_MAX];
    snprintf(digest, sizeof(digest), "sha256:%s", hex);
    if (want && !streq(want, digest)) {
        aws_reply_error(c, "ImageDigestDoesNotMatchException",
                        "Invalid parameter at 'imageDigest' failed to satisfy constraint: "
                        "'provided digest %s does not match the manifest digest %s'",
                        want, digest);
        return;
    }
    if (tag && !reg_tag_valid(tag)) {
        aws_reply_error(c, "InvalidParameterException",
                        "Invalid parameter at 'imageTag' failed to satisfy constraint: 'invalid "
                        "tag'");
        return;
    }
    _cleanup_free_ char *cur = tag ? reg_tag_resolve(r, &ns, name, tag) : NULL;
    _cleanup_json_ json_t *existing = reg_image_get(r, &ns, name, digest);
    if ((tag && cur && streq(cur, digest)) || (!tag && existing)) {
        aws_reply_error(c, "ImageAlreadyExistsException",
                        "Image with digest '%s'%s%s%s already exists in the repository with name "
                        "'%s' in registry with id '%s'",
                        digest, tag ? " and tag '" : "", tag ? tag : "", tag ? "'" : "", name,
                        ns.account);
        return;
    }
    reg_put_result res;
    if (reg_image_put(r, &ns, repo, name, manifest, len, mt, tag, NULL, &res, &err) < 0) {
        const char *t = err.type ? err.type : "";
        if (streq(t, "MANIFEST_BLOB_UNKNOWN"))
            aws_reply_error(c, "LayersNotFoundException", "%s", err.msg);
        else if (streq(t, "REFERENCED_MANIFEST_UNKNOWN"))
            aws_reply_error(c, "ReferencedImagesNotFoundException", "%s", err.msg);
        else if (streq(t, "TAG_IMMUTABLE"))
            aws_reply_error(c, "ImageTagAlreadyExistsException", "%s", err.msg);
        else if (streq(t, "MANIFEST_INVALID") || streq(t, "TAG_INVALID") ||
                 streq(t, "DIGEST_INVALID"))
            aws_reply_error(c, "InvalidParameterException",
                            "Invalid parameter at 'ImageManifest' failed to satisfy constraint: "
                            "'%s'",
                            err.msg);
        else
            aws_reply_err(c, &err);
        return;
    }
    _cleanup_json_ json_t *img = reg_image_get(r, &ns, name, res.digest);
    json_t *iid = json_pack("{s:s}", "imageDigest", res.digest);
    js_set_str(iid, "imageTag", tag);
    aws_reply(c, json_pack("{s:{s:s, s:s, s:o, s:s%, s:s}}", "image", "registryId", ns.account,
                           "repositoryName", name, "imageId", iid, "imageManifest", manifest, len,
                           "imageManifestMediaType", js_str_or(img, "mediaType", "")));
}

/* --- layers --- */

static void batch_check_layer_availability(aws_call *c)
{
    reg_registry *r = R(c);
    reg_ns ns;
    _cleanup_json_ json_t *repo = load_repo_or_reply(c, &ns);
    if (!repo)
        return;
    json_t *layers = json_array(), *failures = json_array();
    size_t i;
    json_t *d;
    json_array_foreach(js_arr(aws_call_input(c), "layerDigests"), i, d) {
        const char *dg = json_string_value(d);
        uint64_t size;
        if (!dg || !reg_digest_valid(dg))
            json_array_append_new(failures,
                                  json_pack("{s:s, s:s, s:s}", "layerDigest", dg ? dg : "",
                                            "failureCode", "InvalidLayerDigest", "failureReason",
                                            "Invalid layer digest"));
        else if (!reg_blob_linked(r, &ns, repo_name(c), dg, &size))
            json_array_append_new(failures, json_pack("{s:s, s:s, s:s}", "layerDigest", dg,
                                                      "failureCode", "MissingLayerDigest",
                                                      "failureReason", "Layer not found"));
        else
            json_array_append_new(layers, json_pack("{s:s, s:s, s:I, s:s}", "layerDigest", dg,
                                                    "layerAvailability", "AVAILABLE", "layerSize",
                                                    (json_int_t) size, "mediaType", ECR_LAYER_MT));
    }
    aws_reply(c, json_pack("{s:o, s:o}", "layers", layers, "failures", failures));
}

static void initiate_layer_upload(aws_call *c)
{
    reg_registry *r = R(c);
    _cleanup_err_ sk_err err = { 0 };
    reg_ns ns;
    _cleanup_json_ json_t *repo = load_repo_or_reply(c, &ns);
    if (!repo)
        return;
    reg_upload *u = reg_upload_new(r, &ns, repo_name(c), true, &err);
    if (!u) {
        if (err.type && streq(err.type, "TOOMANYREQUESTS"))
            err.type = "LimitExceededException";
        fail(c, &err);
        return;
    }
    aws_reply(c, json_pack("{s:s, s:I}", "uploadId", u->id, "partSize", (json_int_t) ECR_PART_MAX));
}

static reg_upload *find_api_upload(aws_call *c, const reg_ns *ns)
{
    const char *id = js_str(aws_call_input(c), "uploadId");
    reg_upload *u = id ? reg_upload_find(R(c), ns, repo_name(c), id) : NULL;
    if (!u || !u->via_api) {
        aws_reply_error(c, "UploadNotFoundException",
                        "The upload with id '%s' does not exist in the repository with name "
                        "'%s' in the registry with id '%s'",
                        id ? id : "", repo_name(c), ns->account);
        return NULL;
    }
    return u;
}

static void invalid_part(aws_call *c, const reg_ns *ns, reg_upload *u, const char *msg)
{
    uint64_t sz = cas_writer_size(u->w);
    json_t *o =
            json_pack("{s:s, s:s, s:s, s:s, s:s, s:I}", "__type", "InvalidLayerPartException",
                      "message", msg, "registryId", ns->account, "repositoryName", u->repo,
                      "uploadId", u->id, "lastValidByteReceived", (json_int_t) (sz ? sz - 1 : 0));
    size_t len;
    char *body = aws_json_dump(o, &len);
    json_decref(o);
    http_req *req = aws_call_http(c);
    http_req_add_header(req, "x-amzn-RequestId", aws_call_ctx(c)->request_id);
    http_req_add_header(req, "x-amzn-ErrorType", "InvalidLayerPartException:");
    http_req_respond_take(req, 400, "application/x-amz-json-1.1", body, len);
}

static void upload_layer_part(aws_call *c)
{
    json_t *in = aws_call_input(c);
    _cleanup_err_ sk_err err = { 0 };
    reg_ns ns;
    _cleanup_json_ json_t *repo = load_repo_or_reply(c, &ns);
    if (!repo)
        return;
    reg_upload *u = find_api_upload(c, &ns);
    if (!u)
        return;
    const char *b64 = js_str(in, "layerPartBlob");
    _cleanup_free_ uint8_t *data = NULL;
    size_t len = 0;
    if (!b64 || base64_decode(b64, strlen(b64), &data, &len) < 0) {
        aws_reply_error(c, "InvalidParameterException", "layerPartBlob is not valid base64");
        return;
    }
    if (len > ECR_PART_MAX) {
        aws_reply_error(c, "InvalidParameterException",
                        "Invalid parameter at 'layerPartBlob' failed to satisfy constraint: "
                        "'Member must have length less than or equal to %u'",
                        ECR_PART_MAX);
        return;
    }
    int64_t first = js_int(in, "partFirstByte", -1), last = js_int(in, "partLastByte", -1);
    uint64_t size = cas_writer_size(u->w);
    if (first < 0 || (uint64_t) first != size) {
        invalid_part(c, &ns, u, "The part's first byte does not follow the last byte received");
        return;
    }
    if (len == 0 || last < first || (uint64_t) (last - first + 1) != len) {
        invalid_part(c, &ns, u, "partLastByte does not match the length of layerPartBlob");
        return;
    }
    if (size > 0 && u->last_part_len < ECR_PART_MIN)
        u->small_part = true;
    if (cas_writer_write(u->w, data, len, &err) < 0) {
        fail(c, &err);
        return;
    }
    u->last_part_len = len;
    u->last_active = now_monotonic();
    if (reg_upload_save(R(c), u, &err) < 0) {
        fail(c, &err);
        return;
    }
    aws_reply(c, json_pack("{s:s, s:s, s:s, s:I}", "registryId", ns.account, "repositoryName",
                           u->repo, "uploadId", u->id, "lastByteReceived", (json_int_t) last));
}

static void complete_layer_upload(aws_call *c)
{
    reg_registry *r = R(c);
    json_t *in = aws_call_input(c);
    _cleanup_err_ sk_err err = { 0 };
    reg_ns ns;
    _cleanup_json_ json_t *repo = load_repo_or_reply(c, &ns);
    if (!repo)
        return;
    reg_upload *u = find_api_upload(c, &ns);
    if (!u)
        return;
    json_t *digests = js_arr(in, "layerDigests");
    const char *want = json_string_value(json_array_get(digests, 0));
    if (json_array_size(digests) != 1 || !want || !reg_digest_valid(want)) {
        aws_reply_error(c, "InvalidLayerException",
                        "exactly one valid sha256 layer digest is required");
        return;
    }
    if (u->busy) {
        aws_reply_error(c, "InvalidParameterException", "the upload is in progress");
        return;
    }
    uint64_t size = cas_writer_size(u->w);
    if (size == 0) {
        aws_reply_error(c, "EmptyUploadException", "The upload with id '%s' is empty", u->id);
        return;
    }
    if (reg_blob_linked(r, &ns, u->repo, want, NULL)) {
        reg_upload_drop(r, u);
        aws_reply_error(c, "LayerAlreadyExistsException",
                        "The layer with digest '%s' already exists in the repository with name "
                        "'%s' in the registry with id '%s'",
                        want, repo_name(c), ns.account);
        return;
    }
    if (u->small_part) {
        reg_upload_drop(r, u);
        aws_reply_error(c, "LayerPartTooSmallException",
                        "Layer parts must be at least %u bytes, except the last part",
                        ECR_PART_MIN);
        return;
    }
    char id[37];
    memcpy(id, u->id, sizeof(id));
    cas_writer *w = TAKE_PTR(u->w);
    reg_upload_drop(r, u);
    char digest[CAS_DIGEST_MAX];
    if (cas_writer_commit(w, want, digest, &err) < 0) {
        if (err.type && streq(err.type, "DIGEST_INVALID"))
            aws_reply_error(c, "InvalidLayerException", "Invalid layer digest: %s", err.msg);
        else
            aws_reply_err(c, &err);
        return;
    }
    if (reg_blob_link(r, &ns, repo_name(c), digest, size, &err) < 0) {
        fail(c, &err);
        return;
    }
    aws_reply(c, json_pack("{s:s, s:s, s:s, s:s}", "registryId", ns.account, "repositoryName",
                           repo_name(c), "uploadId", id, "layerDigest", digest));
}

static void get_download_url_for_layer(aws_call *c)
{
    reg_registry *r = R(c);
    reg_ns ns;
    _cleanup_json_ json_t *repo = load_repo_or_reply(c, &ns);
    if (!repo)
        return;
    const char *d = js_str(aws_call_input(c), "layerDigest");
    if (!reg_digest_valid(d)) {
        aws_reply_error(c, "InvalidParameterException",
                        "Invalid parameter at 'layerDigest' failed to satisfy constraint: 'must be "
                        "a sha256 digest'");
        return;
    }
    if (!reg_blob_linked(r, &ns, repo_name(c), d, NULL)) {
        aws_reply_error(c, "LayersNotFoundException",
                        "The specified layer '%s' does not exist in the repository with name "
                        "'%s'",
                        d, repo_name(c));
        return;
    }
    uint64_t exp = (uint64_t) time(NULL) + ECR_DOWNLOAD_TTL;
    char sig[65];
    reg_url_sign(r->token_key, sizeof(r->token_key), ns.account, ns.region, repo_name(c), d, exp,
                 sig);
    _cleanup_free_ char *url = xasprintf(
            "%s://%s/v2/%s/blobs/%s?X-Skiff-Account=%s&X-Skiff-Region=%s&X-Skiff-Expires=%llu&"
            "X-Skiff-Signature=%s",
            r->scheme, r->host, repo_name(c), d, ns.account, ns.region, (unsigned long long) exp,
            sig);
    aws_reply(c, json_pack("{s:s, s:s}", "downloadUrl", url, "layerDigest", d));
}

/* --- auth --- */

static void get_authorization_token(aws_call *c)
{
    reg_registry *r = R(c);
    reg_ns ns;
    ns_of(c, &ns);
    uint64_t exp = (uint64_t) time(NULL) + REG_TOKEN_TTL_SEC;
    _cleanup_free_ char *pass =
            reg_token_make(r->token_key, sizeof(r->token_key), ns.account, ns.region, exp);
    _cleanup_free_ char *plain = xasprintf("AWS:%s", pass);
    _cleanup_free_ char *tok = base64_encode(plain, strlen(plain));
    _cleanup_free_ char *endpoint = xasprintf("%s://%s", r->scheme, r->host);
    json_t *ad = json_pack("{s:s, s:s}", "authorizationToken", tok, "proxyEndpoint", endpoint);
    js_set_time(ad, "expiresAt", exp * USEC_PER_SEC);
    aws_reply(c, json_pack("{s:[o]}", "authorizationData", ad));
}

/* --- policies --- */

static void set_repository_policy(aws_call *c)
{
    json_t *in = aws_call_input(c);
    _cleanup_err_ sk_err err = { 0 };
    reg_ns ns;
    _cleanup_json_ json_t *repo = load_repo_or_reply(c, &ns);
    if (!repo)
        return;
    const char *text = js_str(in, "policyText");
    _cleanup_json_ json_t *p = text ? json_loads(text, JSON_REJECT_DUPLICATES, NULL) : NULL;
    json_t *st = js_has(p, "Statement") ? json_object_get(p, "Statement") : NULL;
    if (!json_is_object(p) || !json_is_string(json_object_get(p, "Version")) ||
        !(json_is_array(st) || json_is_object(st))) {
        aws_reply_error(c, "InvalidParameterException",
                        "Invalid parameter at 'PolicyText' failed to satisfy constraint: 'Invalid "
                        "repository policy provided'");
        return;
    }
    _cleanup_free_ char *k = reg_key(&ns, "policy", "%s", repo_name(c));
    _cleanup_json_ json_t *v = json_pack("{s:s}", "text", text);
    if (store_put_json(R(c)->st, k, v, &err) < 0) {
        fail(c, &err);
        return;
    }
    aws_reply(c, json_pack("{s:s, s:s, s:s}", "registryId", ns.account, "repositoryName",
                           repo_name(c), "policyText", text));
}

static void get_or_delete_policy(aws_call *c, bool del)
{
    _cleanup_err_ sk_err err = { 0 };
    reg_ns ns;
    _cleanup_json_ json_t *repo = load_repo_or_reply(c, &ns);
    if (!repo)
        return;
    _cleanup_free_ char *k = reg_key(&ns, "policy", "%s", repo_name(c));
    _cleanup_json_ json_t *v = store_get_json(R(c)->st, k);
    if (!v) {
        aws_reply_error(c, "RepositoryPolicyNotFoundException",
                        "Repository policy does not exist for the repository with name '%s' in "
                        "the registry with id '%s'",
                        repo_name(c), ns.account);
        return;
    }
    if (del && store_delete(R(c)->st, k, &err) < 0) {
        fail(c, &err);
        return;
    }
    aws_reply(c, json_pack("{s:s, s:s, s:s}", "registryId", ns.account, "repositoryName",
                           repo_name(c), "policyText", js_str_or(v, "text", "")));
}

static void get_repository_policy(aws_call *c)
{
    get_or_delete_policy(c, false);
}

static void delete_repository_policy(aws_call *c)
{
    get_or_delete_policy(c, true);
}

/* --- lifecycle --- */

static void put_lifecycle_policy(aws_call *c)
{
    json_t *in = aws_call_input(c);
    _cleanup_err_ sk_err err = { 0 };
    reg_ns ns;
    _cleanup_json_ json_t *repo = load_repo_or_reply(c, &ns);
    if (!repo)
        return;
    const char *text = js_str(in, "lifecyclePolicyText");
    reg_lc_policy p;
    if (reg_lc_parse(text, &p, &err) < 0) {
        fail(c, &err);
        return;
    }
    reg_lc_done(&p);
    _cleanup_free_ char *k = reg_key(&ns, "lifecycle", "%s", repo_name(c));
    _cleanup_json_ json_t *v = json_pack("{s:s}", "text", text);
    if (store_put_json(R(c)->st, k, v, &err) < 0) {
        fail(c, &err);
        return;
    }
    aws_reply(c, json_pack("{s:s, s:s, s:s}", "registryId", ns.account, "repositoryName",
                           repo_name(c), "lifecyclePolicyText", text));
}

static void lifecycle_not_found(aws_call *c, const reg_ns *ns)
{
    aws_reply_error(c, "LifecyclePolicyNotFoundException",
                    "Lifecycle policy does not exist for the repository with name '%s' in the "
                    "registry with id '%s'",
                    repo_name(c), ns->account);
}

static void get_or_delete_lifecycle(aws_call *c, bool del)
{
    _cleanup_err_ sk_err err = { 0 };
    reg_ns ns;
    _cleanup_json_ json_t *repo = load_repo_or_reply(c, &ns);
    if (!repo)
        return;
    _cleanup_free_ char *k = reg_key(&ns, "lifecycle", "%s", repo_name(c));
    _cleanup_json_ json_t *v = store_get_json(R(c)->st, k);
    if (!v) {
        lifecycle_not_found(c, &ns);
        return;
    }
    if (del && store_delete(R(c)->st, k, &err) < 0) {
        fail(c, &err);
        return;
    }
    json_t *out = json_pack("{s:s, s:s, s:s}", "registryId", ns.account, "repositoryName",
                            repo_name(c), "lifecyclePolicyText", js_str_or(v, "text", ""));
    if (js_has(v, "lastEvaluatedAt"))
        js_set_time(out, "lastEvaluatedAt", (uint64_t) js_int(v, "lastEvaluatedAt", 0));
    aws_reply(c, out);
}

static void get_lifecycle_policy(aws_call *c)
{
    get_or_delete_lifecycle(c, false);
}

static void delete_lifecycle_policy(aws_call *c)
{
    get_or_delete_lifecycle(c, true);
}

static void start_lifecycle_policy_preview(aws_call *c)
{
    json_t *in = aws_call_input(c);
    _cleanup_err_ sk_err err = { 0 };
    reg_ns ns;
    _cleanup_json_ json_t *repo = load_repo_or_reply(c, &ns);
    if (!repo)
        return;
    const char *text = js_str(in, "lifecyclePolicyText");
    _cleanup_json_ json_t *stored = NULL;
    if (!text) {
        _cleanup_free_ char *k = reg_key(&ns, "lifecycle", "%s", repo_name(c));
        stored = store_get_json(R(c)->st, k);
        text = js_str(stored, "text");
        if (!text) {
            lifecycle_not_found(c, &ns);
            return;
        }
    }
    json_t *results = NULL;
    if (reg_lifecycle_apply(R(c), &ns, repo_name(c), text, true, &results, &err) < 0) {
        fail(c, &err);
        return;
    }
    _cleanup_free_ char *pk = reg_key(&ns, "lcpreview", "%s", repo_name(c));
    _cleanup_json_ json_t *pv = json_pack("{s:s, s:o}", "text", text, "results", results);
    if (store_put_json(R(c)->st, pk, pv, &err) < 0) {
        fail(c, &err);
        return;
    }
    aws_reply(c, json_pack("{s:s, s:s, s:s, s:s}", "registryId", ns.account, "repositoryName",
                           repo_name(c), "lifecyclePolicyText", text, "status", "IN_PROGRESS"));
}

static void get_lifecycle_policy_preview(aws_call *c)
{
    json_t *in = aws_call_input(c);
    _cleanup_err_ sk_err err = { 0 };
    reg_ns ns;
    _cleanup_json_ json_t *repo = load_repo_or_reply(c, &ns);
    if (!repo)
        return;
    _cleanup_free_ char *pk = reg_key(&ns, "lcpreview", "%s", repo_name(c));
    _cleanup_json_ json_t *pv = store_get_json(R(c)->st, pk);
    if (!pv) {
        aws_reply_error(c, "LifecyclePolicyPreviewNotFoundException",
                        "There is no dry run for this repository with name '%s' in the registry "
                        "with id '%s'",
                        repo_name(c), ns.account);
        return;
    }
    const char *ts = js_str(js_obj(in, "filter"), "tagStatus");
    json_t *ids = js_arr(in, "imageIds");
    json_t *all = json_array();
    size_t i;
    json_t *e;
    json_array_foreach(js_arr(pv, "results"), i, e) {
        bool tagged = json_array_size(js_arr(e, "imageTags")) > 0;
        if (ts && !streq(ts, "ANY") && (streq(ts, "TAGGED") != tagged))
            continue;
        if (ids) {
            bool match = false;
            size_t j;
            json_t *id;
            json_array_foreach(ids, j, id) {
                if (streq_ptr(js_str(id, "imageDigest"), js_str(e, "imageDigest")) ||
                    (js_str(id, "imageTag") &&
                     js_array_has_str(js_arr(e, "imageTags"), js_str(id, "imageTag"))))
                    match = true;
            }
            if (!match)
                continue;
        }
        json_array_append(all, e);
    }
    size_t total = json_array_size(js_arr(pv, "results"));
    json_t *out =
            json_pack("{s:s, s:s, s:s, s:s, s:{s:I}}", "registryId", ns.account, "repositoryName",
                      repo_name(c), "lifecyclePolicyText", js_str_or(pv, "text", ""), "status",
                      "COMPLETE", "summary", "expiringImageTotalCount", (json_int_t) total);
    if (paginate(c, all, out, "previewResults", &err) < 0) {
        json_decref(out);
        fail(c, &err);
        return;
    }
    aws_reply(c, out);
}

/* --- resource tags --- */

static json_t *repo_from_arn(aws_call *c, reg_ns *ns, char **ret_name, sk_err *err)
{
    const char *arn = js_str(aws_call_input(c), "resourceArn");
    ns_of(c, ns);
    const char *p = arn ? startswith(arn, "arn:aws:ecr:") : NULL;
    char region[REG_REGION_MAX + 1], acct[REG_ACCOUNT_LEN + 1];
    const char *c1 = p ? strchr(p, ':') : NULL;
    const char *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
    const char *name = c2 ? startswith(c2 + 1, "repository/") : NULL;
    if (!name || (size_t) (c1 - p) > REG_REGION_MAX || (size_t) (c2 - c1 - 1) != REG_ACCOUNT_LEN) {
        err_type(err, "InvalidParameterException",
                 "Invalid parameter at 'resourceArn' failed to satisfy constraint: 'Invalid ARN'");
        return NULL;
    }
    memcpy(region, p, (size_t) (c1 - p));
    region[c1 - p] = 0;
    memcpy(acct, c1 + 1, REG_ACCOUNT_LEN);
    acct[REG_ACCOUNT_LEN] = 0;
    if (!streq(acct, ns->account) || !reg_repo_name_valid(name)) {
        err_type(err, "InvalidParameterException",
                 "Invalid parameter at 'resourceArn' failed to satisfy constraint: 'Invalid ARN'");
        return NULL;
    }
    strlcpy_s(ns->region, region, sizeof(ns->region));
    json_t *repo = reg_repo_get(R(c), ns, name);
    if (!repo) {
        repo_not_found(err, ns, name);
        return NULL;
    }
    *ret_name = xstrdup(name);
    return repo;
}

static int save_repo(aws_call *c, const reg_ns *ns, const char *name, json_t *repo, sk_err *err)
{
    _cleanup_free_ char *k = reg_key(ns, "repo", "%s", name);
    return store_put_json(R(c)->st, k, repo, err);
}

static void tag_resource(aws_call *c)
{
    _cleanup_err_ sk_err err = { 0 };
    reg_ns ns;
    _cleanup_free_ char *name = NULL;
    _cleanup_json_ json_t *repo = repo_from_arn(c, &ns, &name, &err);
    if (!repo || merge_tags(repo, js_arr(aws_call_input(c), "tags"), &err) < 0 ||
        save_repo(c, &ns, name, repo, &err) < 0) {
        fail(c, &err);
        return;
    }
    aws_reply(c, NULL);
}

static void untag_resource(aws_call *c)
{
    _cleanup_err_ sk_err err = { 0 };
    reg_ns ns;
    _cleanup_free_ char *name = NULL;
    _cleanup_json_ json_t *repo = repo_from_arn(c, &ns, &name, &err);
    if (!repo) {
        fail(c, &err);
        return;
    }
    json_t *keys = js_arr(aws_call_input(c), "tagKeys");
    json_t *kept = json_array();
    size_t i;
    json_t *t;
    json_array_foreach(js_arr(repo, "_tags"), i, t) {
        if (!js_array_has_str(keys, js_str_or(t, "Key", "")))
            json_array_append(kept, t);
    }
    js_set(repo, "_tags", kept);
    if (save_repo(c, &ns, name, repo, &err) < 0) {
        fail(c, &err);
        return;
    }
    aws_reply(c, NULL);
}

static void list_tags_for_resource(aws_call *c)
{
    _cleanup_err_ sk_err err = { 0 };
    reg_ns ns;
    _cleanup_free_ char *name = NULL;
    _cleanup_json_ json_t *repo = repo_from_arn(c, &ns, &name, &err);
    if (!repo) {
        fail(c, &err);
        return;
    }
    json_t *tags = js_arr(repo, "_tags");
    aws_reply(c, json_pack("{s:o}", "tags", tags ? json_incref(tags) : json_array()));
}

static const aws_op_binding ecr_ops[] = {
    { "BatchCheckLayerAvailability", batch_check_layer_availability },
    { "BatchDeleteImage", batch_delete_image },
    { "BatchGetImage", batch_get_image },
    { "CompleteLayerUpload", complete_layer_upload },
    { "CreateRepository", create_repository },
    { "DeleteLifecyclePolicy", delete_lifecycle_policy },
    { "DeleteRepository", delete_repository },
    { "DeleteRepositoryPolicy", delete_repository_policy },
    { "DescribeImages", describe_images },
    { "DescribeRegistry", describe_registry },
    { "DescribeRepositories", describe_repositories },
    { "GetAuthorizationToken", get_authorization_token },
    { "GetDownloadUrlForLayer", get_download_url_for_layer },
    { "GetLifecyclePolicy", get_lifecycle_policy },
    { "GetLifecyclePolicyPreview", get_lifecycle_policy_preview },
    { "GetRepositoryPolicy", get_repository_policy },
    { "InitiateLayerUpload", initiate_layer_upload },
    { "ListImages", list_images },
    { "ListTagsForResource", list_tags_for_resource },
    { "PutImage", put_image },
    { "PutImageScanningConfiguration", put_image_scanning_configuration },
    { "PutImageTagMutability", put_image_tag_mutability },
    { "PutLifecyclePolicy", put_lifecycle_policy },
    { "SetRepositoryPolicy", set_repository_policy },
    { "StartLifecyclePolicyPreview", start_lifecycle_policy_preview },
    { "TagResource", tag_resource },
    { "UntagResource", untag_resource },
    { "UploadLayerPart", upload_layer_part },
};

static int cmp_op(const void *a, const void *b)
{
    return strcmp(((const aws_op_binding *) a)->name, ((const aws_op_binding *) b)->name);
}

void reg_ecr_init(reg_registry *r)
{
    r->ops = xmemdup(ecr_ops, sizeof(ecr_ops));
    qsort(r->ops, ELEMENTSOF(ecr_ops), sizeof(aws_op_binding), cmp_op);
    r->ecr_def = (aws_service_def){
        .model = &model_ecr,
        .protocol = AWS_PROTO_JSON,
        .validation_error = "InvalidParameterException",
        .fault_error = "ServerException",
        .client_error = "InvalidParameterException",
        .body_cap = ECR_BODY_CAP,
        .ops = r->ops,
        .nops = ELEMENTSOF(ecr_ops),
        .userdata = r,
    };
}
