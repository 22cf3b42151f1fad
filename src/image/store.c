/* The image store: directory layout, image records, layer directories and
 * garbage collection. Pulling lives in pull.c.
 *
 * A record (images/<sha256(ref)>.json) is written atomically after every
 * blob and layer it names is in place, so a record never names missing
 * content unless someone removed it by hand (img_lookup checks). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "basic/alloc.h"
#include "basic/fileutil.h"
#include "basic/hmap.h"
#include "basic/macro.h"
#include "basic/rand.h"
#include "basic/strutil.h"
#include "image-internal.h"
#include "image.h"
#include "shared/digest.h"
#include "shared/jsonutil.h"

#define STALE_SEC     (24 * 3600)
#define RECORD_MAX    (32 * 1024 * 1024)
#define RECORD_SUFFIX ".json"

static int open_subdir(int dir_fd, const char *name, mode_t mode, int *ret)
{
    if (mkdirat(dir_fd, name, mode) < 0 && errno != EEXIST)
        return -errno;
    int fd = openat(dir_fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    *ret = fd;
    return 0;
}

/* Removes entries of dir_fd older than STALE_SEC whose name passes keep(). */
static void remove_stale(img_store *s, int dir_fd, const char *dir, bool (*match)(const char *))
{
    int fd = openat(dir_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return;
    DIR *d = fdopendir(fd);
    if (!d) {
        close(fd);
        return;
    }
    time_t cutoff = time(NULL) - STALE_SEC;
    struct dirent *de;
    while ((de = readdir(d))) {
        struct stat st;
        if (streq(de->d_name, ".") || streq(de->d_name, "..") || !match(de->d_name))
            continue;
        if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 || st.st_mtime >= cutoff)
            continue;
        _cleanup_free_ char *sub = xasprintf("%s/%s/%s", s->dir, dir, de->d_name);
        (void) rm_rf(sub);
    }
    closedir(d);
}

static bool any_name(const char *name)
{
    return true;
}

static bool temp_record_name(const char *name)
{
    return strstr(name, ".tmp-") != NULL;
}

void img_store_close(img_store *s)
{
    if (!s)
        return;
    closep(&s->dir_fd);
    closep(&s->layers_fd);
    closep(&s->images_fd);
    closep(&s->tmp_fd);
    cas_close(s->cas);
    free(s->dir);
    free(s);
}

int img_store_open(const char *dir, img_store **ret, sk_err *err)
{
    int r = mkdir_p(dir, 0700);
    if (r < 0)
        return sk_err_sys(err, r, "create image store '%s'", dir);
    char abs[PATH_MAX];
    if (!realpath(dir, abs))
        return sk_err_sys(err, errno, "resolve image store '%s'", dir);

    _cleanup_free_ char *casdir = path_join(abs, "cas");
    img_store *s = xcalloc(1, sizeof(*s));
    s->dir_fd = s->layers_fd = s->images_fd = s->tmp_fd = -EBADF;
    s->dir = xstrdup(abs);
    s->dir_fd = open(abs, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (s->dir_fd < 0) {
        r = sk_err_sys(err, errno, "open image store '%s'", abs);
        goto fail;
    }
    if ((r = open_subdir(s->dir_fd, "layers", 0700, &s->layers_fd)) < 0 ||
        (r = open_subdir(s->dir_fd, "images", 0700, &s->images_fd)) < 0 ||
        (r = open_subdir(s->dir_fd, "tmp", 0700, &s->tmp_fd)) < 0) {
        r = sk_err_sys(err, r, "create image store layout in '%s'", abs);
        goto fail;
    }
    r = cas_open(casdir, &s->cas, err);
    if (r < 0)
        goto fail;
    remove_stale(s, s->tmp_fd, "tmp", any_name);
    remove_stale(s, s->images_fd, "images", temp_record_name);
    *ret = s;
    return 0;
fail:
    img_store_close(s);
    return r;
}

cas *img_store_cas(img_store *s)
{
    return s->cas;
}

int img_store_lock(img_store *s, int op, int *ret_fd)
{
    int fd = openat(s->dir_fd, "lock", O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0)
        return -errno;
    while (flock(fd, op) < 0) {
        if (errno == EINTR)
            continue;
        int e = errno;
        close(fd);
        return -e;
    }
    *ret_fd = fd;
    return 0;
}

/* ---- layers ---- */

bool img_layer_present(img_store *s, const char *diff_id)
{
    struct stat st;
    if (!cas_digest_valid(diff_id))
        return false;
    return fstatat(s->layers_fd, diff_id + 7, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode);
}

int img_layer_ensure(img_store *s, const char *blob_digest, const char *diff_id, sk_err *err)
{
    if (!cas_digest_valid(diff_id))
        return sk_err_set(err, SK_E_INVALID, "invalid diff_id '%s'", diff_id);
    if (img_layer_present(s, diff_id))
        return 0;

    _cleanup_close_ int blob_fd = -EBADF;
    int r = cas_open_blob(s->cas, blob_digest, &blob_fd, NULL, err);
    if (r < 0)
        return r;

    char rnd[17], name[64];
    random_hex(rnd, 16);
    snprintf(name, sizeof(name), "layer-%.12s-%s", diff_id + 7, rnd);
    if (mkdirat(s->tmp_fd, name, 0755) < 0)
        return sk_err_sys(err, errno, "create layer temp directory");
    _cleanup_free_ char *tmp = xasprintf("%s/tmp/%s", s->dir, name);
    _cleanup_close_ int tfd =
            openat(s->tmp_fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (tfd < 0 || fchmod(tfd, 0755) < 0) {
        r = sk_err_sys(err, errno, "open layer temp directory");
        (void) rm_rf(tmp);
        return r;
    }
    /* An uncompressed layer's diff_id is its blob digest, which the content
     * store verified when the blob was written. */
    r = img_unpack_layer_verify(blob_fd, tmp, streq(diff_id, blob_digest) ? NULL : diff_id, NULL,
                                err);
    if (r < 0) {
        (void) rm_rf(tmp);
        return sk_err_wrap(err, "unpack layer %s", blob_digest);
    }
    if (syncfs(tfd) < 0) {
        r = sk_err_sys(err, errno, "sync layer %s", diff_id);
        (void) rm_rf(tmp);
        return r;
    }
    if (renameat2(s->tmp_fd, name, s->layers_fd, diff_id + 7, RENAME_NOREPLACE) < 0) {
        int e = errno;
        (void) rm_rf(tmp);
        if (e == EEXIST || e == ENOTEMPTY)
            return 0; /* a concurrent pull unpacked it first */
        return sk_err_sys(err, e, "move layer %s into place", diff_id);
    }
    (void) fsync(s->layers_fd);
    return 0;
}

/* ---- records ---- */

static void record_name(const char *ref, char out[SHA256_HEX_LEN + sizeof(RECORD_SUFFIX)])
{
    sha256_hex(ref, strlen(ref), out);
    memcpy(out + SHA256_HEX_LEN, RECORD_SUFFIX, sizeof(RECORD_SUFFIX));
}

static int record_load_at(img_store *s, const char *name, json_t **ret)
{
    _cleanup_close_ int fd = openat(s->images_fd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    _cleanup_free_ char *data = NULL;
    size_t len;
    int r = read_full_fd(fd, RECORD_MAX, &data, &len);
    if (r < 0)
        return r;
    json_t *j = json_loadb(data, len, 0, NULL);
    if (!json_is_object(j) || !js_str(j, "ref")) {
        json_decref(j);
        return -EBADMSG;
    }
    *ret = j;
    return 0;
}

int img_record_read(img_store *s, const char *ref, json_t **ret, sk_err *err)
{
    char name[SHA256_HEX_LEN + sizeof(RECORD_SUFFIX)];
    record_name(ref, name);
    json_t *j = NULL;
    int r = record_load_at(s, name, &j);
    if (r == -ENOENT)
        return sk_err_set(err, SK_E_NOT_FOUND, "image '%s' not found", ref);
    if (r < 0)
        return sk_err_sys(err, r, "read image record for '%s'", ref);
    if (!streq(js_str(j, "ref"), ref)) {
        json_decref(j);
        return sk_err_set(err, SK_E_NOT_FOUND, "image '%s' not found", ref);
    }
    *ret = j;
    return 0;
}

int img_record_write(img_store *s, const char *ref, json_t *rec, sk_err *err)
{
    char name[SHA256_HEX_LEN + sizeof(RECORD_SUFFIX)];
    record_name(ref, name);
    _cleanup_free_ char *data = json_dumps(rec, JSON_COMPACT | JSON_SORT_KEYS);
    if (!data)
        oom();
    _cleanup_free_ char *path = xasprintf("%s/images/%s", s->dir, name);
    int r = write_file_atomic(path, data, strlen(data), 0600);
    if (r < 0)
        return sk_err_sys(err, r, "write image record for '%s'", ref);
    return 0;
}

void img_image_free(img_image *img)
{
    if (!img)
        return;
    free(img->ref);
    free(img->manifest_digest);
    free(img->config_digest);
    for (size_t i = 0; i < img->nlayers; i++)
        free(img->layer_dirs[i]);
    free(img->layer_dirs);
    json_decref(img->config);
    free(img);
}

int img_lookup(img_store *s, const char *ref, img_image **ret, sk_err *err)
{
    _cleanup_json_ json_t *rec = NULL;
    int r = img_record_read(s, ref, &rec, err);
    if (r < 0)
        return r;
    const json_t *layers = js_arr(rec, "layers");
    if (!layers || !cas_digest_valid(js_str(rec, "manifest_digest")) ||
        !cas_digest_valid(js_str(rec, "config_digest")))
        return sk_err_set(err, SK_E_INTERNAL, "image record for '%s' is corrupt", ref);

    img_image *img = xcalloc(1, sizeof(*img));
    img->ref = xstrdup(ref);
    img->manifest_digest = xstrdup(js_str(rec, "manifest_digest"));
    img->config_digest = xstrdup(js_str(rec, "config_digest"));
    img->layer_dirs = xcalloc(json_array_size(layers) + 1, sizeof(char *));
    for (size_t i = 0; i < json_array_size(layers); i++) {
        const char *diff_id = js_str(json_array_get(layers, i), "diff_id");
        if (!cas_digest_valid(diff_id)) {
            img_image_free(img);
            return sk_err_set(err, SK_E_INTERNAL, "image record for '%s' is corrupt", ref);
        }
        if (!img_layer_present(s, diff_id)) {
            img_image_free(img);
            return sk_err_set(err, SK_E_NOT_FOUND, "image '%s' is incomplete: layer %s is missing",
                              ref, diff_id);
        }
        img->layer_dirs[img->nlayers++] = xasprintf("%s/layers/%s", s->dir, diff_id + 7);
    }
    json_t *cfg = js_obj(rec, "config");
    img->config = cfg ? json_incref(cfg) : json_object();
    img->size = (uint64_t) js_int(rec, "size", 0);
    img->pulled_at = (usec_t) js_int(rec, "pulled_at", 0);
    img->last_used = (usec_t) js_int(rec, "last_used", 0);
    *ret = img;
    return 0;
}

int img_touch(img_store *s, const char *ref)
{
    _cleanup_err_ sk_err err = { 0 };
    _cleanup_json_ json_t *rec = NULL;
    int r = img_record_read(s, ref, &rec, &err);
    if (r < 0)
        return err.code == SK_E_NOT_FOUND ? -ENOENT : -EIO;
    /* last_used only orders image cleanup (minutes apart): rewriting the
     * record once a minute at most keeps task starts off the disk. */
    int64_t now = (int64_t) now_realtime();
    if (now - js_int(rec, "last_used", 0) < 60 * (int64_t) USEC_PER_SEC)
        return 0;
    js_set_int(rec, "last_used", now);
    r = img_record_write(s, ref, rec, &err);
    return r < 0 ? (err.sys_errno ? -err.sys_errno : -EIO) : 0;
}

/* ---- garbage collection ---- */

typedef struct gc_candidate {
    char name[SHA256_HEX_LEN + sizeof(RECORD_SUFFIX)];
    usec_t last;
} gc_candidate;

static int cmp_candidate(const void *a, const void *b)
{
    const gc_candidate *x = a, *y = b;
    return x->last < y->last ? -1 : x->last > y->last;
}

static bool is_record_name(const char *name)
{
    return strlen(name) == SHA256_HEX_LEN + strlen(RECORD_SUFFIX) &&
           endswith(name, RECORD_SUFFIX) && is_hex(name, SHA256_HEX_LEN);
}

/* Calls fn for every parseable record. */
static int foreach_record(img_store *s, void (*fn)(void *ud, const char *name, json_t *rec),
                          void *ud)
{
    int fd = openat(s->images_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    DIR *d = fdopendir(fd);
    if (!d) {
        int e = -errno;
        close(fd);
        return e;
    }
    struct dirent *de;
    while ((de = readdir(d))) {
        if (!is_record_name(de->d_name))
            continue;
        json_t *rec = NULL;
        if (record_load_at(s, de->d_name, &rec) < 0)
            continue;
        fn(ud, de->d_name, rec);
        json_decref(rec);
    }
    closedir(d);
    return 0;
}

typedef struct gc_scan {
    const char *const *in_use;
    size_t n_in_use;
    usec_t cutoff_age, now;
    gc_candidate *cands;
    size_t ncands, acands;
} gc_scan;

static void collect_candidate(void *ud, const char *name, json_t *rec)
{
    gc_scan *g = ud;
    const char *ref = js_str(rec, "ref");
    for (size_t i = 0; i < g->n_in_use; i++)
        if (g->in_use[i] && streq(g->in_use[i], ref))
            return;
    usec_t last = MAX((usec_t) js_int(rec, "pulled_at", 0), (usec_t) js_int(rec, "last_used", 0));
    if (g->now < last || g->now - last < g->cutoff_age)
        return;
    if (g->ncands == g->acands) {
        g->acands = g->acands ? g->acands * 2 : 16;
        g->cands = xrealloc(g->cands, g->acands * sizeof(gc_candidate));
    }
    gc_candidate *c = &g->cands[g->ncands++];
    memcpy(c->name, name, sizeof(c->name));
    c->last = last;
}

typedef struct gc_refs {
    sk_hmap blobs, layers; /* keys and values are owned strings */
} gc_refs;

static void ref_add(sk_hmap *m, const char *s)
{
    if (!s || sk_hmap_get(m, s))
        return;
    char *k = xstrdup(s);
    sk_hmap_put(m, k, k);
}

static void collect_refs(void *ud, const char *name, json_t *rec)
{
    gc_refs *g = ud;
    ref_add(&g->blobs, js_str(rec, "index_digest"));
    ref_add(&g->blobs, js_str(rec, "manifest_digest"));
    ref_add(&g->blobs, js_str(rec, "config_digest"));
    const json_t *layers = js_arr(rec, "layers");
    for (size_t i = 0; i < json_array_size(layers); i++) {
        const json_t *l = json_array_get(layers, i);
        ref_add(&g->blobs, js_str(l, "digest"));
        const char *diff_id = js_str(l, "diff_id");
        if (cas_digest_valid(diff_id))
            ref_add(&g->layers, diff_id + 7);
    }
}

static void free_map(sk_hmap *m)
{
    size_t it = 0;
    const char *k;
    void *v;
    while (sk_hmap_next(m, &it, &k, &v))
        free(v);
    sk_hmap_done(m);
}

/* Removes unreferenced entries of dir_fd (named by hex) with remove(). */
static void sweep_dir(img_store *s, int dir_fd, const char *prefix, const sk_hmap *keep,
                      bool is_layer)
{
    int fd = openat(dir_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return;
    DIR *d = fdopendir(fd);
    if (!d) {
        close(fd);
        return;
    }
    struct dirent *de;
    while ((de = readdir(d))) {
        if (strlen(de->d_name) != SHA256_HEX_LEN || !is_hex(de->d_name, SHA256_HEX_LEN))
            continue;
        char key[CAS_DIGEST_MAX];
        size_t pl = strlen(prefix); /* "" or "sha256:" */
        memcpy(key, prefix, pl);
        memcpy(key + pl, de->d_name, SHA256_HEX_LEN + 1);
        if (sk_hmap_get(keep, key))
            continue;
        if (is_layer) {
            _cleanup_free_ char *path = xasprintf("%s/layers/%s", s->dir, de->d_name);
            (void) rm_rf(path);
        } else
            (void) cas_delete(s->cas, key, NULL);
    }
    closedir(d);
}

int img_gc(img_store *s, const char *const *in_use, size_t n_in_use, usec_t min_age,
           unsigned max_delete, sk_err *err)
{
    gc_scan g = {
        .in_use = in_use, .n_in_use = n_in_use, .cutoff_age = min_age, .now = now_realtime()
    };
    int r = foreach_record(s, collect_candidate, &g);
    if (r < 0) {
        free(g.cands);
        return sk_err_sys(err, r, "list images in '%s'", s->dir);
    }
    if (g.ncands > 1)
        qsort(g.cands, g.ncands, sizeof(gc_candidate), cmp_candidate);
    int removed = 0;
    for (size_t i = 0; i < g.ncands; i++) {
        if (max_delete && (unsigned) removed >= max_delete)
            break;
        if (unlinkat(s->images_fd, g.cands[i].name, 0) == 0)
            removed++;
    }
    free(g.cands);
    if (removed > 0)
        (void) fsync(s->images_fd);

    /* Sweep only when no pull is running: a pull's blobs and layers are not
     * referenced by any record until it finishes. */
    _cleanup_close_ int lock_fd = -EBADF;
    r = img_store_lock(s, LOCK_EX | LOCK_NB, &lock_fd);
    if (r == -EWOULDBLOCK)
        return removed;
    if (r < 0)
        return sk_err_sys(err, r, "lock image store");

    gc_refs refs;
    sk_hmap_init(&refs.blobs);
    sk_hmap_init(&refs.layers);
    r = foreach_record(s, collect_refs, &refs);
    if (r >= 0) {
        sweep_dir(s, s->layers_fd, "", &refs.layers, true);
        _cleanup_free_ char *blobs = path_join(cas_dir(s->cas), "blobs/sha256");
        _cleanup_close_ int bfd = open(blobs, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (bfd >= 0)
            sweep_dir(s, bfd, "sha256:", &refs.blobs, false);
    }
    free_map(&refs.blobs);
    free_map(&refs.layers);
    if (r < 0)
        return sk_err_sys(err, r, "list images in '%s'", s->dir);
    return removed;
}
