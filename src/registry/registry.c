/* Registry life cycle: the CAS, the token key, the ECR service definition
 * and three timers (lifecycle policies, blob GC, idle upload expiry). */
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "basic/alloc.h"
#include "basic/fileutil.h"
#include "basic/log.h"
#include "basic/rand.h"
#include "basic/strutil.h"
#include "basic/timeutil.h"
#include "reg-internal.h"
#include "shared/digest.h"

#define TOKEN_KEY "meta/ecr-token-key"

static usec_t env_usec(const char *name, usec_t def)
{
    const char *e = getenv(name);
    uint64_t v;
    if (e && *e && parse_duration_usec(e, &v) == 0 && v > 0)
        return v;
    return def;
}

static int load_token_key(reg_registry *r, sk_err *err)
{
    _cleanup_json_ json_t *v = store_get_json(r->st, TOKEN_KEY);
    const char *hex = js_str(v, "key");
    if (hex && strlen(hex) == 2 * sizeof(r->token_key) &&
        hex_decode(hex, r->token_key, sizeof(r->token_key)) == 0)
        return 0;
    random_bytes(r->token_key, sizeof(r->token_key));
    char out[2 * sizeof(r->token_key) + 1];
    hex_encode(r->token_key, sizeof(r->token_key), out);
    _cleanup_json_ json_t *nv = json_pack("{s:s}", "key", out);
    explicit_bzero(out, sizeof(out));
    if (store_put_json(r->st, TOKEN_KEY, nv, err) < 0 || store_flush(r->st, err) < 0)
        return sk_err_wrap(err, "store the registry token key");
    return 0;
}

/* --- lifecycle --- */

int reg_lifecycle_apply(reg_registry *r, const reg_ns *ns, const char *repo, const char *text,
                        bool dry_run, json_t **ret_results, sk_err *err)
{
    reg_lc_policy p;
    if (reg_lc_parse(text, &p, err) < 0)
        return -1;
    sk_vec digests = { 0 };
    reg_repo_images(r, ns, repo, &digests);
    size_t n = digests.len;
    json_t **recs = xcalloc(n ? n : 1, sizeof(json_t *));
    reg_lc_image *imgs = xcalloc(n ? n : 1, sizeof(reg_lc_image));
    const char ***tagv = xcalloc(n ? n : 1, sizeof(const char **));
    _cleanup_json_ json_t *children = json_array();
    for (size_t i = 0; i < n; i++) {
        recs[i] = reg_image_get(r, ns, repo, digests.items[i]);
        if (recs[i] && reg_media_type_is_index(js_str(recs[i], "mediaType"))) {
            size_t j;
            json_t *d;
            json_array_foreach(js_arr(recs[i], "refs"), j, d)
                json_array_append(children, d);
        }
    }
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        /* Images that belong to an index are evaluated through their index. */
        if (!recs[i] || js_array_has_str(children, digests.items[i]))
            continue;
        json_t *tags = js_arr(recs[i], "tags");
        size_t nt = json_array_size(tags);
        tagv[m] = xcalloc(nt ? nt : 1, sizeof(char *));
        for (size_t t = 0; t < nt; t++)
            tagv[m][t] = json_string_value(json_array_get(tags, t));
        imgs[m] = (reg_lc_image){ .digest = digests.items[i],
                                  .tags = tagv[m],
                                  .ntags = nt,
                                  .pushed_at = (uint64_t) js_int(recs[i], "pushedAt", 0) };
        m++;
    }
    reg_lc_eval(&p, imgs, m, now_realtime());
    json_t *results = ret_results ? json_array() : NULL;
    int count = 0, rc = 0;
    for (size_t i = 0; i < m; i++) {
        if (!imgs[i].expired_by)
            continue;
        count++;
        if (results) {
            json_t *tags = json_array();
            for (size_t t = 0; t < imgs[i].ntags; t++)
                json_array_append_new(tags, json_string(imgs[i].tags[t]));
            json_t *e = json_pack("{s:s, s:o, s:{s:s}, s:I}", "imageDigest", imgs[i].digest,
                                  "imageTags", tags, "action", "type", "EXPIRE",
                                  "appliedRulePriority", (json_int_t) imgs[i].expired_by);
            js_set_time(e, "imagePushedAt", imgs[i].pushed_at);
            json_array_append_new(results, e);
        }
        if (!dry_run && rc == 0) {
            rc = reg_image_delete(r, ns, repo, imgs[i].digest, err);
            if (rc == 0)
                log_info("ecr lifecycle: expired %s@%s (rule %lld)", repo, imgs[i].digest,
                         (long long) imgs[i].expired_by);
        }
    }
    for (size_t i = 0; i < n; i++)
        json_decref(recs[i]);
    for (size_t i = 0; i < m; i++)
        free(tagv[i]);
    free(tagv);
    free(recs);
    free(imgs);
    sk_vec_done(&digests, free);
    reg_lc_done(&p);
    if (rc < 0) {
        json_decref(results);
        return rc;
    }
    if (ret_results)
        *ret_results = results;
    return count;
}

typedef struct lc_job {
    reg_ns ns;
    char *repo;
    char *key;
    char *text;
} lc_job;

static bool collect_lc(const store_kv *kv, void *userdata)
{
    sk_vec *jobs = userdata;
    reg_ns ns;
    const char *repo = reg_key_split(kv->key, "lifecycle", &ns);
    if (!repo)
        return true;
    _cleanup_json_ json_t *v = json_loadb(kv->value, kv->len, 0, NULL);
    if (!js_str(v, "text"))
        return true;
    lc_job *j = xcalloc(1, sizeof(*j));
    j->ns = ns;
    j->repo = xstrdup(repo);
    j->key = xstrdup(kv->key);
    j->text = xstrdup(js_str(v, "text"));
    sk_vec_push(jobs, j);
    return true;
}

static void lc_job_free(void *p)
{
    lc_job *j = p;
    free(j->repo);
    free(j->key);
    free(j->text);
    free(j);
}

int reg_lifecycle_run(reg_registry *r, sk_err *err)
{
    sk_vec jobs = { 0 };
    store_range(r->st, "ecr/", NULL, collect_lc, &jobs);
    int total = 0;
    for (size_t i = 0; i < jobs.len; i++) {
        lc_job *j = jobs.items[i];
        _cleanup_err_ sk_err e = { 0 };
        int n = reg_lifecycle_apply(r, &j->ns, j->repo, j->text, false, NULL, &e);
        if (n < 0) {
            log_warn("ecr lifecycle %s: %s", j->repo, sk_err_msg(&e));
            continue;
        }
        total += n;
        _cleanup_json_ json_t *v = json_pack("{s:s, s:I}", "text", j->text, "lastEvaluatedAt",
                                             (json_int_t) now_realtime());
        if (store_put_json(r->st, j->key, v, &e) < 0)
            log_warn("ecr lifecycle %s: %s", j->repo, sk_err_msg(&e));
    }
    sk_vec_done(&jobs, lc_job_free);
    return total;
}

/* --- garbage collection --- */

typedef struct gc_ent {
    char digest[CAS_DIGEST_MAX];
    bool referenced;
    usec_t newest_link;
    sk_vec link_keys;
} gc_ent;

typedef struct gc_ctx {
    sk_hmap ents;
} gc_ctx;

static gc_ent *gc_get(gc_ctx *g, const char *digest)
{
    gc_ent *e = sk_hmap_get(&g->ents, digest);
    if (!e && reg_digest_valid(digest)) {
        e = xcalloc(1, sizeof(*e));
        strlcpy_s(e->digest, digest, sizeof(e->digest));
        sk_hmap_put(&g->ents, e->digest, e);
    }
    return e;
}

static bool gc_scan(const store_kv *kv, void *userdata)
{
    gc_ctx *g = userdata;
    const char *p = kv->key + 4;
    const char *s1 = strchr(p, '/');
    const char *s2 = s1 ? strchr(s1 + 1, '/') : NULL;
    if (!s2)
        return true;
    const char *kind = s2 + 1;
    if (startswith(kind, "img/")) {
        _cleanup_json_ json_t *v = json_loadb(kv->value, kv->len, 0, NULL);
        gc_ent *e = gc_get(g, js_str_or(v, "digest", ""));
        if (e)
            e->referenced = true;
        size_t i;
        json_t *d;
        json_array_foreach(js_arr(v, "refs"), i, d) {
            e = gc_get(g, json_string_value(d) ? json_string_value(d) : "");
            if (e)
                e->referenced = true;
        }
    } else if (startswith(kind, "blob/")) {
        const char *at = strrchr(kind, '@');
        gc_ent *e = at ? gc_get(g, at + 1) : NULL;
        if (!e)
            return true;
        _cleanup_json_ json_t *v = json_loadb(kv->value, kv->len, 0, NULL);
        usec_t t = (usec_t) js_int(v, "at", 0);
        if (t > e->newest_link)
            e->newest_link = t;
        sk_vec_push(&e->link_keys, xstrdup(kv->key));
    }
    return true;
}

int reg_gc_run(reg_registry *r, sk_err *err)
{
    gc_ctx g;
    sk_hmap_init(&g.ents);
    store_range(r->st, "ecr/", NULL, gc_scan, &g);
    usec_t now = now_realtime();
    usec_t cutoff = now > r->gc_grace ? now - r->gc_grace : 0;
    _cleanup_free_ char *dir = path_join(cas_dir(r->cas), "blobs/sha256");
    int removed = 0;
    store_txn *t = store_txn_new(r->st);
    size_t ndel = 0;
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    if (!d) {
        if (fd >= 0)
            close(fd);
        store_txn_free(t);
        const char *k;
        void *v;
        for (size_t it = 0; sk_hmap_next(&g.ents, &it, &k, &v);) {
            sk_vec_done(&((gc_ent *) v)->link_keys, free);
            free(v);
        }
        sk_hmap_done(&g.ents);
        return sk_err_sys(err, errno, "open '%s'", dir);
    }
    struct dirent *de;
    while ((de = readdir(d))) {
        if (strlen(de->d_name) != SHA256_HEX_LEN || !is_hex(de->d_name, SHA256_HEX_LEN))
            continue;
        char digest[CAS_DIGEST_MAX];
        memcpy(digest, "sha256:", 7);
        memcpy(digest + 7, de->d_name, SHA256_HEX_LEN + 1);
        gc_ent *e = sk_hmap_get(&g.ents, digest);
        if (e && e->referenced)
            continue;
        if (e && e->newest_link > cutoff)
            continue;
        struct stat st;
        if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
            continue;
        usec_t mtime =
                (usec_t) st.st_mtim.tv_sec * USEC_PER_SEC + (usec_t) st.st_mtim.tv_nsec / 1000;
        if (mtime > cutoff)
            continue;
        /* In-progress uploads write to the CAS temp directory, never here; a
         * blob being committed right now is younger than the grace period. */
        _cleanup_err_ sk_err e2 = { 0 };
        if (cas_delete(r->cas, digest, &e2) < 0) {
            log_warn("ecr gc: %s", sk_err_msg(&e2));
            continue;
        }
        removed++;
        log_debug("ecr gc: removed %s", digest);
        if (e)
            for (size_t i = 0; i < e->link_keys.len; i++, ndel++)
                store_txn_delete(t, e->link_keys.items[i]);
    }
    closedir(d);
    const char *k;
    void *v;
    for (size_t it = 0; sk_hmap_next(&g.ents, &it, &k, &v);) {
        gc_ent *e = v;
        sk_vec_done(&e->link_keys, free);
        free(e);
    }
    sk_hmap_done(&g.ents);
    if (ndel == 0) {
        store_txn_free(t);
        return removed;
    }
    if (store_txn_commit(t, err) < 0)
        return -1;
    return removed;
}

/* --- timers --- */

static void on_lc_timer(ev_timer *t, void *userdata)
{
    reg_registry *r = userdata;
    _cleanup_err_ sk_err err = { 0 };
    int n = reg_lifecycle_run(r, &err);
    if (n < 0)
        log_warn("ecr lifecycle: %s", sk_err_msg(&err));
    ev_timer_arm_in(t, r->lc_interval);
}

static void on_gc_timer(ev_timer *t, void *userdata)
{
    reg_registry *r = userdata;
    _cleanup_err_ sk_err err = { 0 };
    int n = reg_gc_run(r, &err);
    if (n < 0)
        log_warn("ecr gc: %s", sk_err_msg(&err));
    else if (n > 0)
        log_info("ecr gc: removed %d unreferenced blobs", n);
    ev_timer_arm_in(t, r->gc_interval);
}

static void on_upload_timer(ev_timer *t, void *userdata)
{
    reg_registry *r = userdata;
    usec_t now = now_monotonic();
    const char *k;
    void *v;
    for (size_t it = 0; sk_hmap_next(&r->uploads, &it, &k, &v);) {
        reg_upload *u = v;
        if (!u->busy && now - u->last_active > r->upload_idle) {
            log_debug("ecr: dropping idle upload %s", u->id);
            reg_upload_drop(r, u);
        }
    }
    usec_t every = r->upload_idle / 4;
    ev_timer_arm_in(t, CLAMP(every, (usec_t) USEC_PER_SEC, (usec_t) 60 * USEC_PER_SEC));
}

int reg_new(ev_loop *loop, store *st, const reg_config *cfg, reg_registry **ret, sk_err *err)
{
    reg_registry *r = xcalloc(1, sizeof(*r));
    r->loop = loop;
    r->st = st;
    r->host = xstrdup(cfg->host ? cfg->host : "127.0.0.1:4566");
    r->scheme = xstrdup(cfg->scheme ? cfg->scheme : "http");
    r->account = xstrdup(cfg->account_id ? cfg->account_id : "000000000000");
    r->region = xstrdup(cfg->region ? cfg->region : "us-east-1");
    r->max_uploads = REG_TOO_MANY_UPLOADS;
    sk_hmap_init(&r->uploads);
    r->lc_interval = env_usec("SKIFF_ECR_LIFECYCLE_SEC", 3600 * USEC_PER_SEC);
    r->gc_interval = env_usec("SKIFF_ECR_GC_SEC", 3600 * USEC_PER_SEC);
    r->gc_grace = env_usec("SKIFF_ECR_GC_GRACE_SEC", 3600 * USEC_PER_SEC);
    r->upload_idle = env_usec("SKIFF_ECR_UPLOAD_IDLE_SEC", 3600 * USEC_PER_SEC);
    if (cas_open(cfg->data_dir, &r->cas, err) < 0 || load_token_key(r, err) < 0) {
        reg_free(r);
        return -1;
    }
    reg_ecr_init(r);
    reg_uploads_load(r);
    r->lc_timer = ev_timer_new(loop, on_lc_timer, r);
    r->gc_timer = ev_timer_new(loop, on_gc_timer, r);
    r->upload_timer = ev_timer_new(loop, on_upload_timer, r);
    ev_timer_arm_in(r->lc_timer, r->lc_interval);
    ev_timer_arm_in(r->gc_timer, r->gc_interval);
    ev_timer_arm_in(r->upload_timer,
                    CLAMP(r->upload_idle / 4, (usec_t) USEC_PER_SEC, (usec_t) 60 * USEC_PER_SEC));
    *ret = r;
    return 0;
}

void reg_free(reg_registry *r)
{
    if (!r)
        return;
    ev_timer_free(r->lc_timer);
    ev_timer_free(r->gc_timer);
    ev_timer_free(r->upload_timer);
    reg_uploads_free(r);
    cas_close(r->cas);
    explicit_bzero(r->token_key, sizeof(r->token_key));
    free(r->ops);
    free(r->host);
    free(r->scheme);
    free(r->account);
    free(r->region);
    free(r);
}

const aws_service_def *reg_ecr_service(reg_registry *r)
{
    return &r->ecr_def;
}

void reg_attach_router(reg_registry *r, aws_router *router)
{
    aws_router_add_path(router, "/v2/", reg_v2_route, r);
}
