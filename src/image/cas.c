/* Content-addressed blob store. See cas.h for the contract.
 *
 * Every blob is written to DIR/tmp/<random> while it is hashed, and renamed to
 * DIR/blobs/sha256/<hex> only after the digest matched and the data and the
 * rename were fsync'd. A crash therefore leaves at most stale temp files,
 * which cas_open() removes once they are a day old (younger ones may belong to
 * a writer in another process). */
#include "cas.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "basic/alloc.h"
#include "basic/fileutil.h"
#include "basic/macro.h"
#include "basic/rand.h"
#include "basic/strutil.h"
#include "shared/digest.h"

#define CAS_STALE_SEC (24 * 3600)
#define CAS_TMP_NAME  24 /* "w-" + 16 hex + NUL, rounded */

struct cas {
    char *dir;
    int blobs_fd; /* DIR/blobs/sha256 */
    int tmp_fd;   /* DIR/tmp */
};

struct cas_writer {
    cas *c;
    int fd;
    char name[CAS_TMP_NAME];
    sk_sha256 *h;
    uint64_t size;
};

/* s is exactly n lower-case hex digits. */
static bool lower_hex(const char *s, size_t n)
{
    if (!s || strlen(s) != n)
        return false;
    for (const char *p = s; *p; p++)
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
            return false;
    return true;
}

bool cas_digest_valid(const char *digest)
{
    return lower_hex(digest ? startswith(digest, "sha256:") : NULL, SHA256_HEX_LEN);
}

static int open_dir_at(int at, const char *path, int *ret)
{
    int fd = openat(at, path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    *ret = fd;
    return 0;
}

/* Removes regular files in dir_fd whose mtime is older than CAS_STALE_SEC. */
static void remove_stale_files(int dir_fd)
{
    int fd = openat(dir_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return;
    DIR *d = fdopendir(fd);
    if (!d) {
        close(fd);
        return;
    }
    time_t cutoff = time(NULL) - CAS_STALE_SEC;
    struct dirent *de;
    while ((de = readdir(d))) {
        struct stat st;
        if (de->d_name[0] == '.')
            continue;
        if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
            continue;
        if (S_ISREG(st.st_mode) && st.st_mtime < cutoff)
            (void) unlinkat(dirfd(d), de->d_name, 0);
    }
    closedir(d);
}

int cas_open(const char *dir, cas **ret, sk_err *err)
{
    _cleanup_free_ char *blobs = path_join(dir, "blobs/sha256");
    _cleanup_free_ char *tmp = path_join(dir, "tmp");
    int r = mkdir_p(blobs, 0755);
    if (r < 0)
        return sk_err_sys(err, r, "create '%s'", blobs);
    r = mkdir_p(tmp, 0700);
    if (r < 0)
        return sk_err_sys(err, r, "create '%s'", tmp);

    cas *c = xcalloc(1, sizeof(*c));
    c->blobs_fd = c->tmp_fd = -EBADF;
    c->dir = xstrdup(dir);
    r = open_dir_at(AT_FDCWD, blobs, &c->blobs_fd);
    if (r >= 0)
        r = open_dir_at(AT_FDCWD, tmp, &c->tmp_fd);
    if (r < 0) {
        cas_close(c);
        return sk_err_sys(err, r, "open content store '%s'", dir);
    }
    remove_stale_files(c->tmp_fd);
    *ret = c;
    return 0;
}

void cas_close(cas *c)
{
    if (!c)
        return;
    closep(&c->blobs_fd);
    closep(&c->tmp_fd);
    free(c->dir);
    free(c);
}

const char *cas_dir(const cas *c)
{
    return c->dir;
}

static const char *hex_of(const char *digest)
{
    return digest + strlen("sha256:");
}

char *cas_blob_path(const cas *c, const char *digest)
{
    if (!cas_digest_valid(digest))
        return NULL;
    return xasprintf("%s/blobs/sha256/%s", c->dir, hex_of(digest));
}

int cas_open_blob(cas *c, const char *digest, int *ret_fd, uint64_t *ret_size, sk_err *err)
{
    if (!cas_digest_valid(digest))
        return sk_err_set(err, SK_E_INVALID, "invalid digest '%s'", digest ? digest : "");
    _cleanup_close_ int fd =
            openat(c->blobs_fd, hex_of(digest), O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        if (errno == ENOENT)
            return sk_err_set(err, SK_E_NOT_FOUND, "blob '%s' not found", digest);
        return sk_err_sys(err, errno, "open blob '%s'", digest);
    }
    struct stat st;
    if (fstat(fd, &st) < 0)
        return sk_err_sys(err, errno, "stat blob '%s'", digest);
    if (!S_ISREG(st.st_mode))
        return sk_err_set(err, SK_E_INTERNAL, "blob '%s' is not a regular file", digest);
    if (ret_size)
        *ret_size = (uint64_t) st.st_size;
    *ret_fd = TAKE_FD(fd);
    return 0;
}

bool cas_has(cas *c, const char *digest)
{
    struct stat st;
    if (!cas_digest_valid(digest))
        return false;
    return fstatat(c->blobs_fd, hex_of(digest), &st, AT_SYMLINK_NOFOLLOW) == 0 &&
           S_ISREG(st.st_mode);
}

int cas_stat(cas *c, const char *digest, uint64_t *ret_size, sk_err *err)
{
    struct stat st;
    if (!cas_digest_valid(digest))
        return sk_err_set(err, SK_E_INVALID, "invalid digest '%s'", digest ? digest : "");
    if (fstatat(c->blobs_fd, hex_of(digest), &st, AT_SYMLINK_NOFOLLOW) < 0) {
        if (errno == ENOENT)
            return sk_err_set(err, SK_E_NOT_FOUND, "blob '%s' not found", digest);
        return sk_err_sys(err, errno, "stat blob '%s'", digest);
    }
    if (ret_size)
        *ret_size = (uint64_t) st.st_size;
    return 0;
}

int cas_delete(cas *c, const char *digest, sk_err *err)
{
    if (!cas_digest_valid(digest))
        return sk_err_set(err, SK_E_INVALID, "invalid digest '%s'", digest ? digest : "");
    if (unlinkat(c->blobs_fd, hex_of(digest), 0) < 0) {
        if (errno == ENOENT)
            return sk_err_set(err, SK_E_NOT_FOUND, "blob '%s' not found", digest);
        return sk_err_sys(err, errno, "delete blob '%s'", digest);
    }
    return 0;
}

int cas_writer_new(cas *c, cas_writer **ret, sk_err *err)
{
    cas_writer *w = xcalloc(1, sizeof(*w));
    w->c = c;
    for (int attempt = 0;; attempt++) {
        char rnd[17];
        random_hex(rnd, 16);
        snprintf(w->name, sizeof(w->name), "w-%s", rnd);
        w->fd = openat(c->tmp_fd, w->name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOCTTY,
                       0644);
        if (w->fd >= 0)
            break;
        if (errno != EEXIST || attempt >= 8) {
            int e = errno;
            free(w);
            return sk_err_sys(err, e, "create temp file in '%s/tmp'", c->dir);
        }
    }
    w->h = sk_sha256_new();
    *ret = w;
    return 0;
}

int cas_writer_write(cas_writer *w, const void *p, size_t n, sk_err *err)
{
    if (n == 0)
        return 0;
    int r = write_all(w->fd, p, n);
    if (r < 0)
        return sk_err_sys(err, r, "write blob");
    sk_sha256_update(w->h, p, n);
    w->size += n;
    return 0;
}

uint64_t cas_writer_size(const cas_writer *w)
{
    return w->size;
}

/* The digest of the data so far, computed on a copy so that writing can go on. */
static void writer_digest(const cas_writer *w, char out[CAS_DIGEST_MAX])
{
    uint8_t d[SHA256_LEN];
    sk_sha256 *copy = sk_sha256_new();
    /* sk_sha256 has no copy primitive: rehashing the temp file keeps memory
     * constant and is only used by the rare mid-stream query. */
    int fd = openat(w->c->tmp_fd, w->name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd >= 0) {
        char buf[65536];
        ssize_t n;
        while ((n = read(fd, buf, sizeof(buf))) > 0)
            sk_sha256_update(copy, buf, (size_t) n);
        close(fd);
    }
    sk_sha256_final(copy, d);
    sk_sha256_free(copy);
    memcpy(out, "sha256:", 7);
    hex_encode(d, SHA256_LEN, out + 7);
}

void cas_writer_digest(const cas_writer *w, char out[CAS_DIGEST_MAX])
{
    writer_digest(w, out);
}

void cas_writer_abort(cas_writer *w)
{
    if (!w)
        return;
    closep(&w->fd);
    (void) unlinkat(w->c->tmp_fd, w->name, 0);
    sk_sha256_free(w->h);
    free(w);
}

const char *cas_writer_name(const cas_writer *w)
{
    return w->name;
}

void cas_writer_close(cas_writer *w)
{
    if (!w)
        return;
    closep(&w->fd);
    sk_sha256_free(w->h);
    free(w);
}

int cas_writer_resume(cas *c, const char *name, cas_writer **ret, sk_err *err)
{
    if (!name || !lower_hex(startswith(name, "w-"), 16))
        return sk_err_set(err, SK_E_INVALID, "invalid staged upload name '%.64s'",
                          name ? name : "");
    _cleanup_close_ int fd = openat(c->tmp_fd, name, O_RDWR | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY);
    if (fd < 0 && errno == ENOENT)
        return sk_err_set(err, SK_E_NOT_FOUND, "staged upload '%s' is gone", name);
    if (fd < 0) {
        int e = errno;
        return sk_err_sys(err, e, "open staged upload '%s'", name);
    }
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode))
        return sk_err_set(err, SK_E_INVALID, "staged upload '%s' is not a regular file", name);
    cas_writer *w = xcalloc(1, sizeof(*w));
    w->c = c;
    w->fd = -EBADF;
    strlcpy_s(w->name, name, sizeof(w->name));
    w->h = sk_sha256_new();
    char buf[65536];
    for (;;) {
        ssize_t n = read(fd, buf, sizeof(buf));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            int e = errno;
            cas_writer_close(w);
            return sk_err_sys(err, e, "read staged upload '%s'", name);
        }
        if (n == 0)
            break;
        sk_sha256_update(w->h, buf, (size_t) n);
        w->size += (uint64_t) n;
    }
    w->fd = TAKE_FD(fd);
    *ret = w;
    return 0;
}

int cas_writer_commit(cas_writer *w, const char *expected, char ret_digest[CAS_DIGEST_MAX],
                      sk_err *err)
{
    char digest[CAS_DIGEST_MAX];
    uint8_t d[SHA256_LEN];
    int r;

    sk_sha256_final(w->h, d);
    memcpy(digest, "sha256:", 7);
    hex_encode(d, SHA256_LEN, digest + 7);

    if (expected && !cas_digest_valid(expected)) {
        r = sk_err_set(err, SK_E_INVALID, "invalid digest '%s'", expected);
        goto fail;
    }
    if (expected && !streq(expected, digest)) {
        r = sk_err_typed(err, SK_E_INVALID, "DIGEST_INVALID",
                         "digest mismatch: expected '%s', got '%s'", expected, digest);
        goto fail;
    }

    struct stat st;
    if (fstatat(w->c->blobs_fd, digest + 7, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode)) {
        /* Already present (same content by definition). */
        cas_writer_abort(w);
        if (ret_digest)
            memcpy(ret_digest, digest, CAS_DIGEST_MAX);
        return 0;
    }
    if (fchmod(w->fd, 0644) < 0 || fsync(w->fd) < 0) {
        r = sk_err_sys(err, errno, "sync blob '%s'", digest);
        goto fail;
    }
    if (close(w->fd) < 0) {
        w->fd = -EBADF;
        r = sk_err_sys(err, errno, "close blob '%s'", digest);
        goto fail;
    }
    w->fd = -EBADF;
    if (renameat(w->c->tmp_fd, w->name, w->c->blobs_fd, digest + 7) < 0) {
        r = sk_err_sys(err, errno, "commit blob '%s'", digest);
        goto fail;
    }
    if (fsync(w->c->blobs_fd) < 0) {
        /* The rename happened; only its durability is in doubt. */
        r = sk_err_sys(err, errno, "sync blob directory");
        sk_sha256_free(w->h);
        free(w);
        return r;
    }
    sk_sha256_free(w->h);
    free(w);
    if (ret_digest)
        memcpy(ret_digest, digest, CAS_DIGEST_MAX);
    return 0;

fail:
    cas_writer_abort(w);
    return r;
}

int cas_put(cas *c, const void *p, size_t n, const char *expected, char ret_digest[CAS_DIGEST_MAX],
            sk_err *err)
{
    cas_writer *w = NULL;
    int r = cas_writer_new(c, &w, err);
    if (r < 0)
        return r;
    r = cas_writer_write(w, p, n, err);
    if (r < 0) {
        cas_writer_abort(w);
        return r;
    }
    return cas_writer_commit(w, expected, ret_digest, err);
}

int cas_get(cas *c, const char *digest, size_t max, char **ret, size_t *ret_len, sk_err *err)
{
    _cleanup_close_ int fd = -EBADF;
    uint64_t size = 0;
    int r = cas_open_blob(c, digest, &fd, &size, err);
    if (r < 0)
        return r;
    if (size > max)
        return sk_err_set(err, SK_E_LIMIT, "blob '%s' is larger than %zu bytes", digest, max);
    _cleanup_free_ char *data = NULL;
    size_t len = 0;
    r = read_full_fd(fd, max, &data, &len);
    if (r < 0)
        return r == -EFBIG ? sk_err_set(err, SK_E_LIMIT, "blob '%s' is larger than %zu bytes",
                                        digest, max)
                           : sk_err_sys(err, r, "read blob '%s'", digest);
    char hex[SHA256_HEX_LEN + 1];
    sha256_hex(data, len, hex);
    if (!streq(hex, hex_of(digest)))
        return sk_err_typed(err, SK_E_INVALID, "DIGEST_INVALID",
                            "blob '%s' is corrupt: content hashes to 'sha256:%s'", digest, hex);
    *ret = TAKE_PTR(data);
    if (ret_len)
        *ret_len = len;
    return 0;
}
