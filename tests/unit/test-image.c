/* Unit tests of the image component: content store, reference parsing,
 * WWW-Authenticate parsing, manifest / index / config parsing and platform
 * selection, layer unpacking (including a malicious-layer suite run with
 * openat2 and with the fallback walk), and the store's records and GC. Layer
 * tarballs are built here with libarchive's writer. Tests that create
 * whiteout device nodes or set trusted.* xattrs skip unless run as root. */
#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>
#include <utime.h>

#include "basic/alloc.h"
#include "basic/err.h"
#include "basic/fileutil.h"
#include "basic/strutil.h"
#include "image/cas.h"
#include "image/image-internal.h"
#include "image/image.h"
#include "shared/digest.h"
#include "shared/jsonutil.h"
#include "tap.h"

static char *make_tmpdir(void)
{
    char t[] = "/tmp/skiff-test-image-XXXXXX";
    if (!mkdtemp(t))
        abort();
    return xstrdup(t);
}

static void rm_tmpdir(char **p)
{
    if (*p) {
        (void) rm_rf(*p);
        free(*p);
    }
}
#define _cleanup_tmpdir_ _cleanup_(rm_tmpdir)

static size_t count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    size_t n = 0;
    if (!d)
        return (size_t) -1;
    struct dirent *de;
    while ((de = readdir(d)))
        if (!streq(de->d_name, ".") && !streq(de->d_name, ".."))
            n++;
    closedir(d);
    return n;
}

/* ---- tar construction ---- */

typedef struct tent {
    const char *path;
    char type;        /* f file, d dir, l symlink, h hardlink, c chr, b blk, p fifo */
    const char *data; /* content (f) or target (l, h) */
    unsigned mode;
    unsigned uid, gid;
    const char *xattr_name, *xattr_value;
} tent;

static la_ssize_t tar_write_cb(struct archive *a, void *ud, const void *p, size_t n)
{
    int fd = *(int *) ud;
    return write_all(fd, p, n) < 0 ? -1 : (la_ssize_t) n;
}

/* Writes a pax tar of ents to a memfd (gzip/zstd compressed when asked) and
 * returns it rewound; ret_diffid gets the uncompressed stream's digest. */
static int make_tar(const tent *ents, size_t n, const char *compress, char *ret_diffid)
{
    int raw = memfd_create("tar", MFD_CLOEXEC);
    if (raw < 0)
        abort();
    struct archive *a = archive_write_new();
    archive_write_set_format_pax_restricted(a);
    archive_write_set_bytes_in_last_block(a, 1);
    archive_write_open(a, &raw, NULL, tar_write_cb, NULL);
    for (size_t i = 0; i < n; i++) {
        const tent *t = &ents[i];
        struct archive_entry *e = archive_entry_new();
        archive_entry_set_pathname(e, t->path);
        archive_entry_set_uid(e, t->uid);
        archive_entry_set_gid(e, t->gid);
        archive_entry_set_mtime(e, 1000000000 + (time_t) i, 0);
        unsigned mode = t->mode ? t->mode : (t->type == 'd' ? 0755 : 0644);
        switch (t->type) {
        case 'f':
            archive_entry_set_filetype(e, AE_IFREG);
            archive_entry_set_size(e, t->data ? (la_int64_t) strlen(t->data) : 0);
            break;
        case 'd':
            archive_entry_set_filetype(e, AE_IFDIR);
            break;
        case 'l':
            archive_entry_set_filetype(e, AE_IFLNK);
            archive_entry_set_symlink(e, t->data);
            mode = 0777;
            break;
        case 'h':
            archive_entry_set_filetype(e, AE_IFREG);
            archive_entry_set_hardlink(e, t->data);
            break;
        case 'c':
            archive_entry_set_filetype(e, AE_IFCHR);
            archive_entry_set_rdev(e, makedev(1, 3));
            break;
        case 'b':
            archive_entry_set_filetype(e, AE_IFBLK);
            archive_entry_set_rdev(e, makedev(8, 0));
            break;
        case 'p':
            archive_entry_set_filetype(e, AE_IFIFO);
            break;
        default:
            abort();
        }
        archive_entry_set_perm(e, mode);
        if (t->xattr_name)
            archive_entry_xattr_add_entry(e, t->xattr_name, t->xattr_value, strlen(t->xattr_value));
        if (archive_write_header(a, e) != ARCHIVE_OK)
            abort();
        if (t->type == 'f' && t->data)
            archive_write_data(a, t->data, strlen(t->data));
        archive_entry_free(e);
    }
    archive_write_close(a);
    archive_write_free(a);

    off_t size = lseek(raw, 0, SEEK_CUR);
    _cleanup_free_ char *buf = xmalloc((size_t) size + 1);
    if (pread(raw, buf, (size_t) size, 0) != size)
        abort();
    if (ret_diffid) {
        memcpy(ret_diffid, "sha256:", 7);
        sha256_hex(buf, (size_t) size, ret_diffid + 7);
    }
    if (!compress) {
        lseek(raw, 0, SEEK_SET);
        return raw;
    }
    int out = memfd_create("tarz", MFD_CLOEXEC);
    a = archive_write_new();
    archive_write_set_format_raw(a);
    if (streq(compress, "gzip"))
        archive_write_add_filter_gzip(a);
    else
        archive_write_add_filter_zstd(a);
    archive_write_set_bytes_in_last_block(a, 1);
    archive_write_open(a, &out, NULL, tar_write_cb, NULL);
    struct archive_entry *e = archive_entry_new();
    archive_entry_set_filetype(e, AE_IFREG);
    archive_entry_set_pathname(e, "x");
    archive_write_header(a, e);
    archive_write_data(a, buf, (size_t) size);
    archive_entry_free(e);
    archive_write_close(a);
    archive_write_free(a);
    close(raw);
    lseek(out, 0, SEEK_SET);
    return out;
}

/* Unpacks ents into P/dest of a fresh sentinel directory P that also holds
 * an "outside" directory with one file. Returns the unpack result; *ret_dir
 * gets P. */
static int unpack_ents(const tent *ents, size_t n, char **ret_dir, sk_err *err)
{
    char *p = make_tmpdir();
    _cleanup_free_ char *dest = path_join(p, "dest"), *out = path_join(p, "outside"),
                        *keep = path_join(p, "outside/keep");
    if (mkdir(dest, 0755) < 0 || mkdir(out, 0755) < 0 ||
        write_file_atomic(keep, "keep", 4, 0644) < 0)
        abort();
    int fd = make_tar(ents, n, NULL, NULL);
    int r = img_unpack_layer(fd, dest, err);
    close(fd);
    *ret_dir = p;
    return r;
}

/* Nothing but dest/ and outside/keep (unchanged) may exist in P. */
static bool sentinel_intact(const char *p)
{
    _cleanup_free_ char *out = path_join(p, "outside"), *keep = path_join(p, "outside/keep");
    _cleanup_free_ char *data = NULL;
    if (count_entries(p) != 2 || count_entries(out) != 1)
        return false;
    if (read_full_file(keep, 100, &data, NULL) < 0 || !streq(data, "keep"))
        return false;
    return true;
}

/* ---- cas ---- */

TEST(cas_write_commit_verify)
{
    _cleanup_tmpdir_ char *dir = make_tmpdir();
    _cleanup_err_ sk_err err = { 0 };
    cas *c = NULL;
    ASSERT_OK_ERR(cas_open(dir, &c, &err), &err);

    const char *data = "hello, content store";
    char expect[CAS_DIGEST_MAX] = "sha256:";
    sha256_hex(data, strlen(data), expect + 7);
    ASSERT_TRUE(cas_digest_valid(expect));
    ASSERT_FALSE(cas_has(c, expect));

    cas_writer *w = NULL;
    ASSERT_OK_ERR(cas_writer_new(c, &w, &err), &err);
    for (size_t i = 0; i < strlen(data); i += 3)
        ASSERT_OK(cas_writer_write(w, data + i, MIN((size_t) 3, strlen(data) - i), &err));
    char mid[CAS_DIGEST_MAX];
    cas_writer_digest(w, mid);
    ASSERT_STREQ(mid, expect);
    ASSERT_EQ(cas_writer_size(w), strlen(data));
    char got[CAS_DIGEST_MAX];
    ASSERT_OK_ERR(cas_writer_commit(w, expect, got, &err), &err);
    ASSERT_STREQ(got, expect);
    ASSERT_TRUE(cas_has(c, expect));

    uint64_t size = 0;
    ASSERT_OK(cas_stat(c, expect, &size, &err));
    ASSERT_EQ(size, strlen(data));
    int fd = -1;
    ASSERT_OK(cas_open_blob(c, expect, &fd, &size, &err));
    ASSERT_TRUE(fcntl(fd, F_GETFD) & FD_CLOEXEC);
    char buf[64] = { 0 };
    ASSERT_EQ(read(fd, buf, sizeof(buf)), (long) strlen(data));
    ASSERT_STREQ(buf, data);
    close(fd);

    char *back = NULL;
    size_t len = 0;
    ASSERT_OK(cas_get(c, expect, 1024, &back, &len, &err));
    ASSERT_EQ(len, strlen(data));
    free(back);
    ASSERT_FAIL(cas_get(c, expect, 4, &back, &len, &err));
    ASSERT_EQ(err.code, SK_E_LIMIT);

    /* Idempotent re-put. */
    ASSERT_OK(cas_put(c, data, strlen(data), expect, NULL, &err));
    _cleanup_free_ char *path = cas_blob_path(c, expect);
    ASSERT_TRUE(path && path_exists(path));

    ASSERT_OK(cas_delete(c, expect, &err));
    ASSERT_FALSE(cas_has(c, expect));
    ASSERT_FAIL(cas_delete(c, expect, &err));
    ASSERT_EQ(err.code, SK_E_NOT_FOUND);
    ASSERT_FAIL(cas_open_blob(c, expect, &fd, NULL, &err));
    ASSERT_EQ(err.code, SK_E_NOT_FOUND);
    cas_close(c);
}

TEST(cas_mismatch_and_invalid)
{
    _cleanup_tmpdir_ char *dir = make_tmpdir();
    _cleanup_err_ sk_err err = { 0 };
    cas *c = NULL;
    ASSERT_OK_ERR(cas_open(dir, &c, &err), &err);
    const char *wrong = "sha256:0000000000000000000000000000000000000000000000000000000000000000";
    ASSERT_FAIL(cas_put(c, "abc", 3, wrong, NULL, &err));
    ASSERT_EQ(err.code, SK_E_INVALID);
    ASSERT_STREQ(err.type, "DIGEST_INVALID");
    ASSERT_FALSE(cas_has(c, wrong));
    _cleanup_free_ char *tmp = path_join(dir, "tmp");
    ASSERT_EQ(count_entries(tmp), 0);
    _cleanup_free_ char *blobs = path_join(dir, "blobs/sha256");
    ASSERT_EQ(count_entries(blobs), 0);

    ASSERT_FALSE(cas_digest_valid("sha256:ABC"));
    ASSERT_FALSE(cas_digest_valid("sha512:00"));
    ASSERT_FALSE(cas_digest_valid(
            "sha256:000000000000000000000000000000000000000000000000000000000000000G"));
    ASSERT_FALSE(cas_digest_valid(
            "sha256:00000000000000000000000000000000000000000000000000000000000000"));
    ASSERT_FALSE(cas_digest_valid(NULL));
    ASSERT_FAIL(cas_put(c, "abc", 3, "sha256:../../etc", NULL, &err));
    ASSERT_FAIL(cas_open_blob(c, "sha256:../x", &(int){ 0 }, NULL, &err));
    ASSERT_NULL(cas_blob_path(c, "md5:x"));

    /* Aborted writers leave nothing. */
    cas_writer *w = NULL;
    ASSERT_OK(cas_writer_new(c, &w, &err));
    ASSERT_OK(cas_writer_write(w, "zzz", 3, &err));
    cas_writer_abort(w);
    ASSERT_EQ(count_entries(tmp), 0);
    cas_close(c);
}

TEST(cas_writer_close_and_resume)
{
    _cleanup_tmpdir_ char *dir = make_tmpdir();
    _cleanup_err_ sk_err err = { 0 };
    cas *c = NULL;
    ASSERT_OK_ERR(cas_open(dir, &c, &err), &err);
    const char *data = "first half|second half";
    char expect[CAS_DIGEST_MAX] = "sha256:";
    sha256_hex(data, strlen(data), expect + 7);

    cas_writer *w = NULL;
    ASSERT_OK(cas_writer_new(c, &w, &err));
    ASSERT_OK(cas_writer_write(w, data, 11, &err));
    _cleanup_free_ char *name = xstrdup(cas_writer_name(w));
    cas_writer_close(w);
    _cleanup_free_ char *tmp = path_join(dir, "tmp");
    ASSERT_EQ(count_entries(tmp), 1);

    /* A new process (here: a new cas) picks the file up where it ends. */
    cas_close(c);
    ASSERT_OK_ERR(cas_open(dir, &c, &err), &err);
    ASSERT_OK_ERR(cas_writer_resume(c, name, &w, &err), &err);
    ASSERT_EQ(cas_writer_size(w), 11);
    ASSERT_OK(cas_writer_write(w, data + 11, strlen(data) - 11, &err));
    char got[CAS_DIGEST_MAX];
    ASSERT_OK_ERR(cas_writer_commit(w, expect, got, &err), &err);
    ASSERT_STREQ(got, expect);
    ASSERT_EQ(count_entries(tmp), 0);

    /* Names outside the writer's pattern, and missing files, are refused. */
    const char *bad[] = { "../blobs/sha256/x", "w-0123456789abcdeg", "w-0123", "", "/etc/passwd" };
    for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
        ASSERT_FAIL(cas_writer_resume(c, bad[i], &w, &err));
        ASSERT_EQ(err.code, SK_E_INVALID);
        sk_err_done(&err);
    }
    ASSERT_FAIL(cas_writer_resume(c, NULL, &w, &err));
    sk_err_done(&err);
    ASSERT_FAIL(cas_writer_resume(c, "w-0123456789abcdef", &w, &err));
    ASSERT_EQ(err.code, SK_E_NOT_FOUND);
    cas_close(c);
}

TEST(cas_open_cleans_stale_tmp)
{
    _cleanup_tmpdir_ char *dir = make_tmpdir();
    _cleanup_err_ sk_err err = { 0 };
    cas *c = NULL;
    ASSERT_OK(cas_open(dir, &c, &err));
    cas_close(c);
    _cleanup_free_ char *old = path_join(dir, "tmp/w-old"), *young = path_join(dir, "tmp/w-young");
    ASSERT_OK(write_file_atomic(old, "x", 1, 0644));
    ASSERT_OK(write_file_atomic(young, "y", 1, 0644));
    struct utimbuf ut = { .actime = time(NULL) - 3 * 86400, .modtime = time(NULL) - 3 * 86400 };
    ASSERT_OK(utime(old, &ut));
    ASSERT_OK_ERR(cas_open(dir, &c, &err), &err);
    ASSERT_FALSE(path_exists(old));
    ASSERT_TRUE(path_exists(young));
    cas_close(c);
}

/* ---- references ---- */

TEST(ref_parse_table)
{
    static const struct {
        const char *in, *registry, *repo, *tag, *digest;
    } ok[] = {
        { "busybox", "registry-1.docker.io", "library/busybox", "latest", NULL },
        { "busybox:1.36", "registry-1.docker.io", "library/busybox", "1.36", NULL },
        { "docker.io/library/busybox:1", "registry-1.docker.io", "library/busybox", "1", NULL },
        { "index.docker.io/foo/bar", "registry-1.docker.io", "foo/bar", "latest", NULL },
        { "foo/bar/baz:v1.2-rc_3", "registry-1.docker.io", "foo/bar/baz", "v1.2-rc_3", NULL },
        { "localhost/foo", "localhost", "foo", "latest", NULL },
        { "localhost:5000/foo:t", "localhost:5000", "foo", "t", NULL },
        { "localhost:5000", "registry-1.docker.io", "library/localhost", "5000", NULL },
        { "127.0.0.1:5000/a/b", "127.0.0.1:5000", "a/b", "latest", NULL },
        { "[::1]:5000/img:x", "[::1]:5000", "img", "x", NULL },
        { "123456789012.dkr.ecr.us-east-1.amazonaws.com/my-app:prod",
          "123456789012.dkr.ecr.us-east-1.amazonaws.com", "my-app", "prod", NULL },
        { "Registry.Example/x", "Registry.Example", "x", "latest", NULL },
        { "a.b/c__d.e--f_g", "a.b", "c__d.e--f_g", "latest", NULL },
        { "busybox@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
          "registry-1.docker.io", "library/busybox", NULL,
          "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef" },
        { "r.io/x:t@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
          "r.io", "x", "t",
          "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef" },
    };
    for (size_t i = 0; i < ELEMENTSOF(ok); i++) {
        _cleanup_err_ sk_err err = { 0 };
        img_ref r;
        if (img_ref_parse(ok[i].in, &r, &err) < 0)
            TAP_FAIL("'%s' rejected: %s", ok[i].in, err.msg);
        ASSERT_STREQ(r.registry, ok[i].registry);
        ASSERT_STREQ(r.repository, ok[i].repo);
        if (ok[i].tag)
            ASSERT_STREQ(r.tag, ok[i].tag);
        else
            ASSERT_NULL(r.tag);
        if (ok[i].digest)
            ASSERT_STREQ(r.digest, ok[i].digest);
        else
            ASSERT_NULL(r.digest);
        img_ref_done(&r);
    }

    static const char *const bad[] = {
        "",
        "Busybox",
        "foo/Bar",
        "foo:",
        "foo:-x",
        ":tag",
        "/foo",
        "foo/",
        "foo//bar",
        "foo/.bar",
        "foo_",
        "foo..bar",
        "foo___bar",
        "foo@sha256:abc",
        "foo@md5:abc",
        "foo@sha512:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        "-host.io/x",
        "host-.io/x",
        "host.io:99999/x",
        "host.io:/x",
        "[zz]:1/x",
        "[]/x",
        "foo bar",
        "foo\tbar",
        "foo:t@",
        "foo@",
        "a.b/c:"
        "0123456789012345678901234567890123456789"
        "01234567890123456789012345678901234567890123456789012345678901234567890123456789"
        "012345678901234567890",
    };
    for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
        _cleanup_err_ sk_err err = { 0 };
        img_ref r;
        if (img_ref_parse(bad[i], &r, &err) >= 0) {
            img_ref_done(&r);
            TAP_FAIL("'%s' accepted", bad[i]);
        }
        ASSERT_EQ(err.code, SK_E_INVALID);
        ASSERT_TRUE(startswith(err.msg, "invalid reference format"));
    }

    _cleanup_free_ char *longref = xmalloc(2000);
    memset(longref, 'a', 1999);
    longref[1999] = 0;
    _cleanup_err_ sk_err err = { 0 };
    img_ref r;
    ASSERT_FAIL(img_ref_parse(longref, &r, &err));

    ASSERT_OK(img_ref_parse("busybox", &r, &err));
    _cleanup_free_ char *s = img_ref_string(&r);
    ASSERT_STREQ(s, "registry-1.docker.io/library/busybox:latest");
    img_ref_done(&r);
}

/* ---- WWW-Authenticate ---- */

TEST(auth_parse_table)
{
    static const struct {
        const char *in, *scheme, *realm, *service, *scope, *error;
    } ok[] = {
        { "Bearer realm=\"https://auth.docker.io/token\",service=\"registry.docker.io\"", "bearer",
          "https://auth.docker.io/token", "registry.docker.io", NULL, NULL },
        { "Bearer realm=\"https://a/t\",service=\"s\",scope=\"repository:library/busybox:pull\","
          "error=\"insufficient_scope\"",
          "bearer", "https://a/t", "s", "repository:library/busybox:pull", "insufficient_scope" },
        { "bearer  REALM = \"x\" , Service=y", "bearer", "x", "y", NULL, NULL },
        { "Basic realm=\"Registry Realm\"", "basic", "Registry Realm", NULL, NULL, NULL },
        { "Basic realm=\"b\", Bearer realm=\"t\"", "bearer", "t", NULL, NULL, NULL },
        { "Negotiate, Basic realm=\"b\"", "basic", "b", NULL, NULL, NULL },
        { "Negotiate abc==, Basic realm=\"b\"", "basic", "b", NULL, NULL, NULL },
        { "Bearer realm=\"a\\\"b\",scope=\"repository:x:pull,push\"", "bearer", "a\"b", NULL,
          "repository:x:pull,push", NULL },
        { "Bearer realm=https://unquoted/token,service=svc", "bearer", "https://unquoted/token",
          "svc", NULL, NULL },
        { "Bearer realm=\"first\",realm=\"second\"", "bearer", "first", NULL, NULL, NULL },
        { "Bearer", "bearer", NULL, NULL, NULL, NULL },
    };
    for (size_t i = 0; i < ELEMENTSOF(ok); i++) {
        _cleanup_err_ sk_err err = { 0 };
        img_auth_challenge ch = { 0 };
        if (img_auth_parse(ok[i].in, strlen(ok[i].in), &ch, &err) < 0)
            TAP_FAIL("'%s' rejected: %s", ok[i].in, err.msg);
        ASSERT_STREQ(ch.scheme, ok[i].scheme);
#define CHECK_FIELD(f)                   \
    do {                                 \
        if (ok[i].f)                     \
            ASSERT_STREQ(ch.f, ok[i].f); \
        else                             \
            ASSERT_NULL(ch.f);           \
    } while (0)
        CHECK_FIELD(realm);
        CHECK_FIELD(service);
        CHECK_FIELD(scope);
        CHECK_FIELD(error);
#undef CHECK_FIELD
        img_auth_challenge_done(&ch);
    }
    static const char *const bad[] = {
        "",   "Negotiate",         "Bearer realm=\"unterminated",     "Bearer realm=\"a\" \"b\"",
        "=x", "Bearer realm=a\"b", "Digest realm=\"x\", nonce=\"y\"",
    };
    for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
        _cleanup_err_ sk_err err = { 0 };
        img_auth_challenge ch = { 0 };
        if (img_auth_parse(bad[i], strlen(bad[i]), &ch, &err) >= 0) {
            img_auth_challenge_done(&ch);
            TAP_FAIL("'%s' accepted", bad[i]);
        }
    }
    /* Embedded NUL and oversize input. */
    _cleanup_err_ sk_err err = { 0 };
    img_auth_challenge ch = { 0 };
    ASSERT_FAIL(img_auth_parse("Bearer realm=a\0b", 16, &ch, &err));
    _cleanup_free_ char *big = xmalloc(IMG_AUTH_HEADER_MAX + 10);
    memset(big, 'a', IMG_AUTH_HEADER_MAX + 10);
    ASSERT_FAIL(img_auth_parse(big, IMG_AUTH_HEADER_MAX + 10, &ch, &err));
    ASSERT_EQ(err.code, SK_E_LIMIT);
}

TEST(registry_insecure)
{
    ASSERT_TRUE(img_registry_insecure("127.0.0.1:5000", NULL));
    ASSERT_TRUE(img_registry_insecure("127.1.2.3", NULL));
    ASSERT_TRUE(img_registry_insecure("localhost:5000", NULL));
    ASSERT_TRUE(img_registry_insecure("[::1]:443", NULL));
    ASSERT_FALSE(img_registry_insecure("128.0.0.1:5000", NULL));
    ASSERT_FALSE(img_registry_insecure("127.0.0.1.evil.com", NULL));
    ASSERT_FALSE(img_registry_insecure("localhost.evil.com", NULL));
    ASSERT_FALSE(img_registry_insecure("registry-1.docker.io", NULL));
    ASSERT_TRUE(img_registry_insecure("reg.local:5000", "a.b, reg.local ,c"));
    ASSERT_TRUE(img_registry_insecure("reg.local:5000", "reg.local:5000"));
    ASSERT_FALSE(img_registry_insecure("reg.local:5001", "reg.local:5000"));
    ASSERT_FALSE(img_registry_insecure("reg.localx", "reg.local"));
}

/* ---- manifests ---- */

#define D1 "sha256:1111111111111111111111111111111111111111111111111111111111111111"
#define D2 "sha256:2222222222222222222222222222222222222222222222222222222222222222"
#define D3 "sha256:3333333333333333333333333333333333333333333333333333333333333333"
#define D4 "sha256:4444444444444444444444444444444444444444444444444444444444444444"
#define D5 "sha256:5555555555555555555555555555555555555555555555555555555555555555"

TEST(manifest_parse_image)
{
    const char *json =
            "{\"schemaVersion\":2,\"mediaType\":\"" IMG_MT_DOCKER_MANIFEST "\","
            "\"config\":{\"mediaType\":\"application/vnd.docker.container.image.v1+json\","
            "\"digest\":\"" D1 "\",\"size\":100},"
            "\"layers\":[{\"mediaType\":\"application/vnd.docker.image.rootfs.diff.tar.gzip\","
            "\"digest\":\"" D2 "\",\"size\":5},"
            "{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar+zstd\",\"digest\":\"" D3
            "\",\"size\":7}]}";
    _cleanup_err_ sk_err err = { 0 };
    img_manifest *m = NULL;
    ASSERT_OK_ERR(img_manifest_parse(json, strlen(json), NULL, &m, &err), &err);
    ASSERT_EQ(m->kind, IMG_MANIFEST_IMAGE);
    ASSERT_STREQ(m->config.digest, D1);
    ASSERT_EQ(m->nlayers, 2);
    ASSERT_STREQ(m->layers[1].digest, D3);
    ASSERT_EQ(m->layers[1].size, 7);
    img_manifest_free(m);

    /* No mediaType: taken from Content-Type. */
    const char *bare = "{\"schemaVersion\":2,\"config\":{\"digest\":\"" D1 "\",\"size\":1},"
                       "\"layers\":[]}";
    ASSERT_OK(img_manifest_parse(bare, strlen(bare), IMG_MT_OCI_MANIFEST "; charset=utf-8", &m,
                                 &err));
    ASSERT_EQ(m->kind, IMG_MANIFEST_IMAGE);
    img_manifest_free(m);

    static const char *const bad[] = {
        "",
        "[]",
        "{\"schemaVersion\":1}",
        "{\"schemaVersion\":2}",
        "{\"schemaVersion\":2,\"mediaType\":\"text/html\"}",
        "{\"schemaVersion\":2,\"config\":{\"digest\":\"sha256:x\",\"size\":1},\"layers\":[]}",
        "{\"schemaVersion\":2,\"config\":{\"digest\":\"" D1 "\",\"size\":-1},\"layers\":[]}",
        "{\"schemaVersion\":2,\"config\":{\"digest\":\"" D1 "\",\"size\":1}}",
        "{\"schemaVersion\":2,\"config\":{\"digest\":\"" D1 "\",\"size\":1,\"mediaType\":"
        "\"application/vnd.cncf.helm.config.v1+json\"},\"layers\":[]}",
        "{\"schemaVersion\":2,\"config\":{\"digest\":\"" D1 "\",\"size\":1},\"layers\":[{"
        "\"mediaType\":\"application/vnd.oci.image.layer.v1.tar+gzip+encrypted\",\"digest\":\"" D2
        "\",\"size\":1}]}",
        "{\"schemaVersion\":2,\"schemaVersion\":2}",
    };
    for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
        if (img_manifest_parse(bad[i], strlen(bad[i]), NULL, &m, &err) >= 0) {
            img_manifest_free(m);
            TAP_FAIL("bad[%zu] accepted", i);
        }
    }
}

TEST(manifest_index_select)
{
    const char *json =
            "{\"schemaVersion\":2,\"mediaType\":\"" IMG_MT_OCI_INDEX "\",\"manifests\":["
            "{\"mediaType\":\"" IMG_MT_OCI_MANIFEST "\",\"digest\":\"" D1 "\",\"size\":1,"
            "\"platform\":{\"os\":\"linux\",\"architecture\":\"arm\",\"variant\":\"v6\"}},"
            "{\"mediaType\":\"" IMG_MT_OCI_MANIFEST "\",\"digest\":\"" D2 "\",\"size\":1,"
            "\"platform\":{\"os\":\"linux\",\"architecture\":\"arm\",\"variant\":\"v7\"}},"
            "{\"mediaType\":\"" IMG_MT_OCI_MANIFEST "\",\"digest\":\"" D3 "\",\"size\":1,"
            "\"platform\":{\"os\":\"linux\",\"architecture\":\"arm64\",\"variant\":\"v8\"}},"
            "{\"mediaType\":\"" IMG_MT_OCI_MANIFEST "\",\"digest\":\"" D4 "\",\"size\":1,"
            "\"platform\":{\"os\":\"unknown\",\"architecture\":\"unknown\"}},"
            "{\"mediaType\":\"" IMG_MT_OCI_MANIFEST "\",\"digest\":\"" D5 "\",\"size\":1,"
            "\"platform\":{\"os\":\"linux\",\"architecture\":\"amd64\"}}]}";
    _cleanup_err_ sk_err err = { 0 };
    img_manifest *m = NULL;
    ASSERT_OK_ERR(img_manifest_parse(json, strlen(json), NULL, &m, &err), &err);
    ASSERT_EQ(m->kind, IMG_MANIFEST_INDEX);
    ASSERT_EQ(m->nmanifests, 5);
    const img_descriptor *d = img_manifest_select(m, NULL, NULL);
    ASSERT_TRUE(d && streq(d->digest, D5));
    d = img_manifest_select(m, "linux", "x86_64");
    ASSERT_TRUE(d && streq(d->digest, D5));
    d = img_manifest_select(m, "linux", "arm64");
    ASSERT_TRUE(d && streq(d->digest, D3));
    d = img_manifest_select(m, "linux", "aarch64");
    ASSERT_TRUE(d && streq(d->digest, D3));
    d = img_manifest_select(m, "linux", "arm/v7");
    ASSERT_TRUE(d && streq(d->digest, D2));
    d = img_manifest_select(m, "linux", "arm/v6");
    ASSERT_TRUE(d && streq(d->digest, D1));
    d = img_manifest_select(m, "linux", "arm/v5"); /* loosely: some arm */
    ASSERT_TRUE(d != NULL);
    ASSERT_NULL(img_manifest_select(m, "windows", "amd64"));
    ASSERT_NULL(img_manifest_select(m, "linux", "s390x"));
    img_manifest_free(m);

    /* Docker manifest list, detected from Content-Type. */
    const char *list =
            "{\"schemaVersion\":2,\"manifests\":[{\"mediaType\":\"" IMG_MT_DOCKER_MANIFEST
            "\",\"digest\":\"" D1 "\",\"size\":3,\"platform\":{\"os\":\"linux\","
            "\"architecture\":\"amd64\"}}]}";
    ASSERT_OK(img_manifest_parse(list, strlen(list), IMG_MT_DOCKER_LIST, &m, &err));
    ASSERT_EQ(m->kind, IMG_MANIFEST_INDEX);
    ASSERT_STREQ(img_manifest_select(m, "linux", "amd64")->digest, D1);
    img_manifest_free(m);
}

TEST(config_parse)
{
    const char *json = "{\"architecture\":\"amd64\",\"os\":\"linux\",\"config\":{\"Env\":[\"A=1\"],"
                       "\"Cmd\":[\"sh\"]},\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[\"" D1
                       "\",\"" D2 "\"]}}";
    _cleanup_err_ sk_err err = { 0 };
    img_config c = { 0 };
    ASSERT_OK_ERR(img_config_parse(json, strlen(json), &c, &err), &err);
    ASSERT_EQ(c.n_diff_ids, 2);
    ASSERT_STREQ(c.diff_ids[1], D2);
    ASSERT_STREQ(json_string_value(json_array_get(js_arr(c.config, "Cmd"), 0)), "sh");
    ASSERT_TRUE(json_is_array(js_arr(c.config, "Env")));
    ASSERT_STREQ(c.arch, "amd64");
    img_config_done(&c);

    const char *noconf = "{\"rootfs\":{\"diff_ids\":[]}}";
    ASSERT_OK(img_config_parse(noconf, strlen(noconf), &c, &err));
    ASSERT_TRUE(json_is_object(c.config));
    img_config_done(&c);
    const char *bad = "{\"rootfs\":{\"diff_ids\":[\"sha256:zz\"]}}";
    ASSERT_FAIL(img_config_parse(bad, strlen(bad), &c, &err));
}

/* ---- unpacking ---- */

TEST(unpack_normal)
{
    const tent ents[] = {
        { "./", 'd', NULL, 0755, 0, 0, NULL, NULL },
        { "./bin/", 'd', NULL, 0755, 0, 0, NULL, NULL },
        { "./bin/tool", 'f', "#!/bin/sh\necho hi\n", 04755, 0, 0, NULL, NULL },
        { "./bin/alias", 'h', "bin/tool", 0, 0, 0, NULL, NULL },
        { "./bin/sh", 'l', "/bin/busybox", 0, 0, 0, NULL, NULL },
        { "./etc/", 'd', NULL, 0700, 1000, 1000, NULL, NULL },
        { "etc/conf", 'f', "k=v", 0600, 1000, 1001, "user.skiff", "yes" },
        { "etc/evil-xattr", 'f', "", 0644, 0, 0, "trusted.overlay.redirect", "/etc" },
        { "implicit/parent/file", 'f', "deep", 0644, 0, 0, NULL, NULL },
        { "a/../b", 'f', "lexical", 0644, 0, 0, NULL, NULL },
        { "rel", 'l', "../../../../etc/passwd", 0, 0, 0, NULL, NULL },
        { "replace", 'f', "old", 0644, 0, 0, NULL, NULL },
        { "replace", 'f', "new", 0644, 0, 0, NULL, NULL },
        { "./sticky/", 'd', NULL, 01777, 0, 0, NULL, NULL },
    };
    _cleanup_tmpdir_ char *p = NULL;
    _cleanup_err_ sk_err err = { 0 };
    ASSERT_OK_ERR(unpack_ents(ents, ELEMENTSOF(ents), &p, &err), &err);
    ASSERT_TRUE(sentinel_intact(p));
    char path[512];
    struct stat st;

    snprintf(path, sizeof(path), "%s/dest/bin/tool", p);
    ASSERT_OK(lstat(path, &st));
    ASSERT_EQ(st.st_mode & 07777, 04755);
    ASSERT_EQ(st.st_nlink, 2);
    ASSERT_EQ(st.st_mtime, 1000000002);
    ino_t ino = st.st_ino;
    snprintf(path, sizeof(path), "%s/dest/bin/alias", p);
    ASSERT_OK(lstat(path, &st));
    ASSERT_EQ(st.st_ino, ino);

    snprintf(path, sizeof(path), "%s/dest/bin/sh", p);
    ASSERT_OK(lstat(path, &st));
    ASSERT_TRUE(S_ISLNK(st.st_mode));
    char target[256] = { 0 };
    ASSERT_TRUE(readlink(path, target, sizeof(target) - 1) > 0);
    ASSERT_STREQ(target, "/bin/busybox");

    snprintf(path, sizeof(path), "%s/dest/etc", p);
    ASSERT_OK(lstat(path, &st));
    ASSERT_EQ(st.st_mode & 07777, 0700);
    ASSERT_EQ(st.st_mtime, 1000000005); /* restored after children were created */
    if (geteuid() == 0)
        ASSERT_EQ(st.st_uid, 1000);
    snprintf(path, sizeof(path), "%s/dest/etc/conf", p);
    ASSERT_OK(lstat(path, &st));
    ASSERT_EQ(st.st_mode & 07777, 0600);
    if (geteuid() == 0)
        ASSERT_EQ(st.st_gid, 1001);
    char xv[16] = { 0 };
    ssize_t xn = lgetxattr(path, "user.skiff", xv, sizeof(xv));
    if (xn >= 0)
        ASSERT_STREQ(xv, "yes");
    else
        ASSERT_TRUE(errno == ENOTSUP);
    snprintf(path, sizeof(path), "%s/dest/etc/evil-xattr", p);
    ASSERT_TRUE(lgetxattr(path, "trusted.overlay.redirect", xv, sizeof(xv)) < 0);

    _cleanup_free_ char *data = NULL;
    snprintf(path, sizeof(path), "%s/dest/implicit/parent/file", p);
    ASSERT_OK(read_full_file(path, 100, &data, NULL));
    ASSERT_STREQ(data, "deep");
    free(data);
    data = NULL;
    snprintf(path, sizeof(path), "%s/dest/b", p);
    ASSERT_OK(read_full_file(path, 100, &data, NULL));
    ASSERT_STREQ(data, "lexical");
    free(data);
    data = NULL;
    snprintf(path, sizeof(path), "%s/dest/replace", p);
    ASSERT_OK(read_full_file(path, 100, &data, NULL));
    ASSERT_STREQ(data, "new");
    snprintf(path, sizeof(path), "%s/dest/sticky", p);
    ASSERT_OK(lstat(path, &st));
    ASSERT_EQ(st.st_mode & 07777, 01777);
    snprintf(path, sizeof(path), "%s/dest", p);
    ASSERT_OK(lstat(path, &st));
    ASSERT_EQ(st.st_mode & 07777, 0755);
}

TEST(unpack_whiteouts)
{
    if (geteuid() != 0)
        SKIP("whiteout device nodes and trusted.* xattrs need root");
    const tent ents[] = {
        { "etc/", 'd', NULL, 0755, 0, 0, NULL, NULL },
        { "etc/.wh.hello", 'f', "", 0644, 0, 0, NULL, NULL },
        { "data/", 'd', NULL, 0755, 0, 0, NULL, NULL },
        { "data/.wh..wh..opq", 'f', "", 0644, 0, 0, NULL, NULL },
        { "data/new", 'f', "n", 0644, 0, 0, NULL, NULL },
        { ".wh..wh.plnk", 'd', NULL, 0700, 0, 0, NULL, NULL },
        { "gone", 'f', "x", 0644, 0, 0, NULL, NULL },
        { ".wh.gone", 'f', "", 0644, 0, 0, NULL, NULL },
        { "implicit/.wh..wh..opq", 'f', "", 0644, 0, 0, NULL, NULL },
    };
    _cleanup_tmpdir_ char *p = NULL;
    _cleanup_err_ sk_err err = { 0 };
    ASSERT_OK_ERR(unpack_ents(ents, ELEMENTSOF(ents), &p, &err), &err);
    ASSERT_TRUE(sentinel_intact(p));
    char path[512];
    struct stat st;
    snprintf(path, sizeof(path), "%s/dest/etc/hello", p);
    ASSERT_OK(lstat(path, &st));
    ASSERT_TRUE(S_ISCHR(st.st_mode));
    ASSERT_EQ(st.st_rdev, makedev(0, 0));
    snprintf(path, sizeof(path), "%s/dest/etc/.wh.hello", p);
    ASSERT_FALSE(path_exists(path));
    snprintf(path, sizeof(path), "%s/dest/gone", p);
    ASSERT_OK(lstat(path, &st));
    ASSERT_TRUE(S_ISCHR(st.st_mode));
    char v[4] = { 0 };
    snprintf(path, sizeof(path), "%s/dest/data", p);
    ASSERT_EQ(lgetxattr(path, "trusted.overlay.opaque", v, sizeof(v)), 1);
    ASSERT_EQ(v[0], 'y');
    snprintf(path, sizeof(path), "%s/dest/implicit", p);
    ASSERT_EQ(lgetxattr(path, "trusted.overlay.opaque", v, sizeof(v)), 1);
    snprintf(path, sizeof(path), "%s/dest/data/.wh..wh..opq", p);
    ASSERT_FALSE(path_exists(path));
    snprintf(path, sizeof(path), "%s/dest/.wh..wh.plnk", p);
    ASSERT_FALSE(path_exists(path));
}

typedef struct evil_case {
    const char *name;
    tent ents[4];
    size_t n;
} evil_case;

/* Each case must fail and leave the sentinel untouched. "@" in a path or
 * target is replaced with the sentinel's outside/ directory. */
static const evil_case evil_cases[] = {
    { "dotdot", { { "../../escape", 'f', "pwned", 0, 0, 0, NULL, NULL } }, 1 },
    { "dotdot-mid", { { "a/../../escape", 'f', "pwned", 0, 0, 0, NULL, NULL } }, 1 },
    { "dotdot-dir", { { "../", 'd', NULL, 0, 0, 0, NULL, NULL } }, 1 },
    { "absolute", { { "/abs/escape", 'f', "pwned", 0, 0, 0, NULL, NULL } }, 1 },
    { "abs-symlink-parent",
      { { "evil", 'l', "@", 0, 0, 0, NULL, NULL },
        { "evil/pwned", 'f', "x", 0, 0, 0, NULL, NULL } },
      2 },
    { "rel-symlink-parent",
      { { "up", 'l', "../../..", 0, 0, 0, NULL, NULL },
        { "up/pwned", 'f', "x", 0, 0, 0, NULL, NULL } },
      2 },
    { "rel-symlink-one-up",
      { { "up", 'l', "../outside", 0, 0, 0, NULL, NULL },
        { "up/pwned", 'f', "x", 0, 0, 0, NULL, NULL } },
      2 },
    { "nested-symlink-parent",
      { { "a/", 'd', NULL, 0, 0, 0, NULL, NULL },
        { "a/b", 'l', "../../outside", 0, 0, 0, NULL, NULL },
        { "a/b/c/pwned", 'f', "x", 0, 0, 0, NULL, NULL } },
      3 },
    { "symlink-parent-dir",
      { { "evil", 'l', "@", 0, 0, 0, NULL, NULL },
        { "evil/sub/", 'd', NULL, 0, 0, 0, NULL, NULL } },
      2 },
    { "symlink-parent-symlink",
      { { "evil", 'l', "@", 0, 0, 0, NULL, NULL },
        { "evil/lnk", 'l', "/etc/passwd", 0, 0, 0, NULL, NULL } },
      2 },
    { "hardlink-abs", { { "pw", 'h', "/etc/passwd", 0, 0, 0, NULL, NULL } }, 1 },
    { "hardlink-dotdot", { { "x", 'h', "../../x", 0, 0, 0, NULL, NULL } }, 1 },
    { "hardlink-dotdot-keep", { { "x", 'h', "../outside/keep", 0, 0, 0, NULL, NULL } }, 1 },
    { "hardlink-through-symlink",
      { { "evil", 'l', "@", 0, 0, 0, NULL, NULL }, { "x", 'h', "evil/keep", 0, 0, 0, NULL, NULL } },
      2 },
    { "hardlink-missing", { { "x", 'h', "nope", 0, 0, 0, NULL, NULL } }, 1 },
    { "hardlink-into-symlinked-dir",
      { { "f", 'f', "data", 0, 0, 0, NULL, NULL },
        { "evil", 'l', "@", 0, 0, 0, NULL, NULL },
        { "evil/linked", 'h', "f", 0, 0, 0, NULL, NULL } },
      3 },
    { "chardev", { { "null", 'c', NULL, 0666, 0, 0, NULL, NULL } }, 1 },
    { "blockdev", { { "sda", 'b', NULL, 0660, 0, 0, NULL, NULL } }, 1 },
    { "fifo", { { "pipe", 'p', NULL, 0644, 0, 0, NULL, NULL } }, 1 },
    { "whiteout-dotdot", { { ".wh..", 'f', "", 0, 0, 0, NULL, NULL } }, 1 },
    { "whiteout-through-symlink",
      { { "evil", 'l', "@", 0, 0, 0, NULL, NULL },
        { "evil/.wh.keep", 'f', "", 0, 0, 0, NULL, NULL } },
      2 },
    { "opaque-through-symlink",
      { { "evil", 'l', "@", 0, 0, 0, NULL, NULL },
        { "evil/.wh..wh..opq", 'f', "", 0, 0, 0, NULL, NULL } },
      2 },
    { "root-as-file", { { "./", 'f', "x", 0, 0, 0, NULL, NULL } }, 1 },
};

static void run_evil_suite(bool fallback)
{
    img_unpack_force_fallback = fallback;
    for (size_t i = 0; i < ELEMENTSOF(evil_cases); i++) {
        const evil_case *c = &evil_cases[i];
        char *p = make_tmpdir();
        _cleanup_free_ char *dest = path_join(p, "dest"), *out = path_join(p, "outside"),
                            *keep = path_join(p, "outside/keep");
        if (mkdir(dest, 0755) < 0 || mkdir(out, 0755) < 0 ||
            write_file_atomic(keep, "keep", 4, 0644) < 0)
            abort();
        tent ents[4];
        char bufs[4][2][512];
        for (size_t j = 0; j < c->n; j++) {
            ents[j] = c->ents[j];
            if (ents[j].data && streq(ents[j].data, "@")) {
                snprintf(bufs[j][0], sizeof(bufs[j][0]), "%s", out);
                ents[j].data = bufs[j][0];
            }
        }
        int fd = make_tar(ents, c->n, NULL, NULL);
        _cleanup_err_ sk_err err = { 0 };
        int r = img_unpack_layer(fd, dest, &err);
        close(fd);
        bool intact = sentinel_intact(p);
        (void) rm_rf(p);
        free(p);
        img_unpack_force_fallback = false;
        if (r >= 0)
            TAP_FAIL("%s (%s): malicious layer accepted", c->name,
                     fallback ? "fallback" : "openat2");
        if (!intact)
            TAP_FAIL("%s (%s): wrote outside dest", c->name, fallback ? "fallback" : "openat2");
        if (err.code != SK_E_INVALID || !err.msg)
            TAP_FAIL("%s: unexpected error %d %s", c->name, err.code, err.msg ? err.msg : "");
        printf("#   %s: %s\n", c->name, err.msg);
        img_unpack_force_fallback = fallback;
    }
    img_unpack_force_fallback = false;
}

TEST(unpack_malicious_openat2)
{
    run_evil_suite(false);
}

TEST(unpack_malicious_fallback)
{
    run_evil_suite(true);
}

/* Writes must replace, never follow, what earlier entries left at a name. */
TEST(unpack_replace_never_follows)
{
    for (int fb = 0; fb < 2; fb++) {
        img_unpack_force_fallback = fb;
        _cleanup_tmpdir_ char *p = make_tmpdir();
        _cleanup_free_ char *dest = path_join(p, "dest"), *out = path_join(p, "outside"),
                            *keep = path_join(p, "outside/keep");
        ASSERT_OK(mkdir(dest, 0755));
        ASSERT_OK(mkdir(out, 0755));
        ASSERT_OK(write_file_atomic(keep, "keep", 4, 0644));
        const tent ents[] = {
            { "lnk", 'l', keep, 0, 0, 0, NULL, NULL },
            { "lnk", 'f', "overwritten", 0600, 0, 0, NULL, NULL },
            { "dirlnk", 'l', out, 0, 0, 0, NULL, NULL },
            { "dirlnk", 'd', NULL, 0700, 0, 0, NULL, NULL },
            { "orig", 'f', "original", 0644, 0, 0, NULL, NULL },
            { "hl", 'h', "orig", 0, 0, 0, NULL, NULL },
            { "hl", 'f', "changed", 0644, 0, 0, NULL, NULL },
            { "meta", 'l', keep, 0, 0, 0, NULL, NULL },
            { "meta", 'd', NULL, 0777, 0, 0, NULL, NULL },
        };
        int fd = make_tar(ents, ELEMENTSOF(ents), NULL, NULL);
        _cleanup_err_ sk_err err = { 0 };
        int r = img_unpack_layer(fd, dest, &err);
        close(fd);
        img_unpack_force_fallback = false;
        ASSERT_OK_ERR(r, &err);
        ASSERT_TRUE(sentinel_intact(p));
        struct stat st;
        ASSERT_OK(stat(keep, &st));
        ASSERT_EQ(st.st_mode & 07777, 0644);
        _cleanup_free_ char *orig = path_join(dest, "orig"), *data = NULL;
        ASSERT_OK(read_full_file(orig, 100, &data, NULL));
        ASSERT_STREQ(data, "original");
        _cleanup_free_ char *dl = path_join(dest, "dirlnk");
        ASSERT_OK(lstat(dl, &st));
        ASSERT_TRUE(S_ISDIR(st.st_mode));
    }
}

TEST(unpack_compressed_and_diffid)
{
    const tent ents[] = {
        { "hello", 'f', "world", 0644, 0, 0, NULL, NULL },
        { "dir/", 'd', NULL, 0755, 0, 0, NULL, NULL },
    };
    const char *const kinds[] = { NULL, "gzip", "zstd" };
    for (size_t k = 0; k < ELEMENTSOF(kinds); k++) {
        char diffid[CAS_DIGEST_MAX], got[CAS_DIGEST_MAX];
        _cleanup_tmpdir_ char *dir = make_tmpdir();
        _cleanup_err_ sk_err err = { 0 };
        int fd = make_tar(ents, ELEMENTSOF(ents), kinds[k], diffid);
        ASSERT_OK_ERR(img_unpack_layer_verify(fd, dir, diffid, got, &err), &err);
        close(fd);
        ASSERT_STREQ(got, diffid);
        _cleanup_free_ char *h = path_join(dir, "hello"), *data = NULL;
        ASSERT_OK(read_full_file(h, 100, &data, NULL));
        ASSERT_STREQ(data, "world");

        _cleanup_tmpdir_ char *dir2 = make_tmpdir();
        fd = make_tar(ents, ELEMENTSOF(ents), kinds[k], NULL);
        ASSERT_FAIL(img_unpack_layer_verify(fd, dir2, D1, NULL, &err));
        close(fd);
        ASSERT_STREQ(err.type, "DIGEST_INVALID");
    }
}

TEST(unpack_rejects_garbage_and_limits)
{
    _cleanup_err_ sk_err err = { 0 };
    _cleanup_tmpdir_ char *dir = make_tmpdir();
    int fd = memfd_create("junk", MFD_CLOEXEC);
    ASSERT_OK(write_all(fd, "this is not a tar archive at all, not even close", 48));
    lseek(fd, 0, SEEK_SET);
    ASSERT_FAIL(img_unpack_layer(fd, dir, &err));
    close(fd);

    /* Destination must be empty. */
    _cleanup_tmpdir_ char *full = make_tmpdir();
    _cleanup_free_ char *f = path_join(full, "x");
    ASSERT_OK(write_file_atomic(f, "", 0, 0644));
    const tent one[] = { { "a", 'f', "a", 0644, 0, 0, NULL, NULL } };
    fd = make_tar(one, 1, NULL, NULL);
    ASSERT_FAIL(img_unpack_layer(fd, full, &err));
    close(fd);

    const tent many[] = {
        { "a", 'f', "a", 0644, 0, 0, NULL, NULL },
        { "b", 'f', "b", 0644, 0, 0, NULL, NULL },
        { "c", 'f', "c", 0644, 0, 0, NULL, NULL },
        { "d", 'f', "d", 0644, 0, 0, NULL, NULL },
    };
    _cleanup_tmpdir_ char *d2 = make_tmpdir();
    img_unpack_max_entries = 3;
    fd = make_tar(many, ELEMENTSOF(many), NULL, NULL);
    int r = img_unpack_layer(fd, d2, &err);
    close(fd);
    img_unpack_max_entries = IMG_UNPACK_MAX_ENTRIES;
    ASSERT_FAIL(r);
    ASSERT_EQ(err.code, SK_E_LIMIT);

    _cleanup_free_ char *bigdata = xmalloc(8193);
    memset(bigdata, 'x', 8192);
    bigdata[8192] = 0;
    const tent big[] = { { "big", 'f', bigdata, 0644, 0, 0, NULL, NULL } };
    _cleanup_tmpdir_ char *d3 = make_tmpdir();
    img_unpack_max_bytes = 4096;
    fd = make_tar(big, 1, NULL, NULL);
    r = img_unpack_layer(fd, d3, &err);
    close(fd);
    img_unpack_max_bytes = IMG_UNPACK_MAX_BYTES;
    ASSERT_FAIL(r);
    ASSERT_EQ(err.code, SK_E_LIMIT);
}

/* ---- store: records, layers, gc ---- */

/* Stores a one-file layer blob and returns its digest and diff_id. */
static void put_layer(img_store *s, const char *name, char digest[CAS_DIGEST_MAX],
                      char diffid[CAS_DIGEST_MAX])
{
    const tent ents[] = { { name, 'f', name, 0644, 0, 0, NULL, NULL } };
    int fd = make_tar(ents, 1, "gzip", diffid);
    _cleanup_free_ char *data = NULL;
    size_t len = 0;
    if (read_full_fd(fd, 1 << 20, &data, &len) < 0)
        abort();
    close(fd);
    if (cas_put(img_store_cas(s), data, len, NULL, digest, NULL) < 0)
        abort();
}

static void write_record(img_store *s, const char *ref, const char *layers[][2], size_t n,
                         usec_t when)
{
    char cfg[CAS_DIGEST_MAX], man[CAS_DIGEST_MAX];
    _cleanup_free_ char *cfgdata = xasprintf("{\"ref\":\"%s\"}", ref);
    _cleanup_free_ char *mandata = xasprintf("{\"manifest\":\"%s\"}", ref);
    if (cas_put(img_store_cas(s), cfgdata, strlen(cfgdata), NULL, cfg, NULL) < 0 ||
        cas_put(img_store_cas(s), mandata, strlen(mandata), NULL, man, NULL) < 0)
        abort();
    json_t *rec = json_object();
    js_set_str(rec, "ref", ref);
    js_set_str(rec, "manifest_digest", man);
    js_set_str(rec, "config_digest", cfg);
    json_t *arr = js_ensure_arr(rec, "layers");
    for (size_t i = 0; i < n; i++) {
        json_t *l = json_object();
        js_set_str(l, "digest", layers[i][0]);
        js_set_str(l, "diff_id", layers[i][1]);
        json_array_append_new(arr, l);
    }
    json_t *c = json_object();
    js_set_str(c, "WorkingDir", "/w");
    js_set(rec, "config", c);
    js_set_int(rec, "pulled_at", (int64_t) when);
    js_set_int(rec, "last_used", (int64_t) when);
    if (img_record_write(s, ref, rec, NULL) < 0)
        abort();
    json_decref(rec);
}

TEST(store_layers_records_gc)
{
    _cleanup_tmpdir_ char *dir = make_tmpdir();
    _cleanup_err_ sk_err err = { 0 };
    img_store *s = NULL;
    ASSERT_OK_ERR(img_store_open(dir, &s, &err), &err);

    char shared_d[CAS_DIGEST_MAX], shared_id[CAS_DIGEST_MAX], a_d[CAS_DIGEST_MAX],
            a_id[CAS_DIGEST_MAX], b_d[CAS_DIGEST_MAX], b_id[CAS_DIGEST_MAX];
    put_layer(s, "shared", shared_d, shared_id);
    put_layer(s, "only-a", a_d, a_id);
    put_layer(s, "only-b", b_d, b_id);
    ASSERT_OK_ERR(img_layer_ensure(s, shared_d, shared_id, &err), &err);
    ASSERT_OK_ERR(img_layer_ensure(s, shared_d, shared_id, &err), &err); /* once */
    ASSERT_OK_ERR(img_layer_ensure(s, a_d, a_id, &err), &err);
    ASSERT_OK_ERR(img_layer_ensure(s, b_d, b_id, &err), &err);
    ASSERT_FAIL(img_layer_ensure(s, a_d, D1, &err)); /* diff_id mismatch */
    ASSERT_STREQ(err.type, "DIGEST_INVALID");
    _cleanup_free_ char *layers = path_join(dir, "layers"), *tmp = path_join(dir, "tmp");
    ASSERT_EQ(count_entries(layers), 3);
    ASSERT_EQ(count_entries(tmp), 0);

    usec_t old = now_realtime() - 7200 * USEC_PER_SEC;
    const char *la[][2] = { { shared_d, shared_id }, { a_d, a_id } };
    const char *lb[][2] = { { shared_d, shared_id }, { b_d, b_id } };
    write_record(s, "example.com/a:1", la, 2, old);
    write_record(s, "example.com/b:1", lb, 2, old);

    img_image *img = NULL;
    ASSERT_OK_ERR(img_lookup(s, "example.com/a:1", &img, &err), &err);
    ASSERT_EQ(img->nlayers, 2);
    _cleanup_free_ char *want0 = xasprintf("%s/layers/%s", dir, shared_id + 7);
    ASSERT_STREQ(img->layer_dirs[0], want0);
    ASSERT_STREQ(js_str(img->config, "WorkingDir"), "/w");
    ASSERT_EQ(img->pulled_at, old);
    img_image_free(img);
    ASSERT_FAIL(img_lookup(s, "example.com/none:1", &img, &err));
    ASSERT_EQ(err.code, SK_E_NOT_FOUND);

    ASSERT_OK(img_touch(s, "example.com/b:1"));
    ASSERT_EQ(img_touch(s, "example.com/none:1"), -ENOENT);

    /* b was just used, a is in use: nothing goes. */
    const char *in_use[] = { "example.com/a:1" };
    ASSERT_EQ(img_gc(s, in_use, 1, 3600 * USEC_PER_SEC, 0, &err), 0);
    /* a idle and not in use: removed with its unique layer and blobs; the
     * shared layer stays for b. */
    ASSERT_EQ(img_gc(s, NULL, 0, 3600 * USEC_PER_SEC, 0, &err), 1);
    ASSERT_FAIL(img_lookup(s, "example.com/a:1", &img, &err));
    ASSERT_EQ(count_entries(layers), 2);
    ASSERT_TRUE(img_layer_present(s, shared_id));
    ASSERT_FALSE(img_layer_present(s, a_id));
    ASSERT_FALSE(cas_has(img_store_cas(s), a_d));
    ASSERT_TRUE(cas_has(img_store_cas(s), shared_d));
    ASSERT_OK_ERR(img_lookup(s, "example.com/b:1", &img, &err), &err);
    img_image_free(img);

    /* While a pull holds the lock, records go but the sweep waits. */
    int lock = -1;
    ASSERT_OK(img_store_lock(s, LOCK_SH, &lock));
    ASSERT_EQ(img_gc(s, NULL, 0, 0, 0, &err), 1);
    ASSERT_EQ(count_entries(layers), 2);
    close(lock);
    ASSERT_EQ(img_gc(s, NULL, 0, 0, 0, &err), 0);
    ASSERT_EQ(count_entries(layers), 0);
    _cleanup_free_ char *blobs = path_join(dir, "cas/blobs/sha256");
    ASSERT_EQ(count_entries(blobs), 0);
    img_store_close(s);
}

TEST(store_gc_max_delete_lru)
{
    _cleanup_tmpdir_ char *dir = make_tmpdir();
    _cleanup_err_ sk_err err = { 0 };
    img_store *s = NULL;
    ASSERT_OK(img_store_open(dir, &s, &err));
    char d[CAS_DIGEST_MAX], id[CAS_DIGEST_MAX];
    put_layer(s, "l", d, id);
    ASSERT_OK(img_layer_ensure(s, d, id, &err));
    const char *l[][2] = { { d, id } };
    usec_t now = now_realtime();
    write_record(s, "r/old", l, 1, now - 3000 * USEC_PER_SEC);
    write_record(s, "r/older", l, 1, now - 4000 * USEC_PER_SEC);
    write_record(s, "r/new", l, 1, now);
    ASSERT_EQ(img_gc(s, NULL, 0, 1000 * USEC_PER_SEC, 1, &err), 1);
    img_image *img = NULL;
    ASSERT_FAIL(img_lookup(s, "r/older", &img, &err));
    ASSERT_OK(img_lookup(s, "r/old", &img, &err));
    img_image_free(img);
    ASSERT_TRUE(img_layer_present(s, id));
    img_store_close(s);
}

TEST(pull_rejects_bad_input_offline)
{
    _cleanup_tmpdir_ char *dir = make_tmpdir();
    _cleanup_err_ sk_err err = { 0 };
    img_store *s = NULL;
    ASSERT_OK(img_store_open(dir, &s, &err));
    img_pull_opts o = { .ref = "Not A Ref" };
    ASSERT_FAIL(img_pull(s, &o, &err));
    ASSERT_EQ(err.code, SK_E_INVALID);
    ASSERT_TRUE(startswith(err.msg, "invalid reference format"));
    /* A closed loopback port: the message names the reference. */
    o.ref = "127.0.0.1:1/nothing:here";
    ASSERT_FAIL(img_pull(s, &o, &err));
    ASSERT_TRUE(startswith(err.msg, "failed to resolve reference \"127.0.0.1:1/nothing:here\""));
    img_store_close(s);
}

TAP_MAIN()
