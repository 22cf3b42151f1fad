/* End-to-end pulls against a real registry: Debian's docker-registry
 * (distribution 2.8) on loopback, populated by skopeo, started by
 * tests/data/layers/registry-fixture.py (path in $SKIFF_REGISTRY_FIXTURE,
 * interpreter in $SKIFF_PYTHON). Covers a multi-layer image with whiteouts
 * pulled by tag and by digest with parallel layer fetches, manifest index
 * platform selection, a layer shared by two images stored once, a tampered
 * blob, truncated blob bodies, htpasswd Basic auth, bearer-token auth against
 * a token server, rewrite_host, and GC. Every test skips when the fixture
 * reports missing tools (docker-registry, skopeo, openssl, busybox), and when
 * not run as root (layers with whiteouts need mknod). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "basic/alloc.h"
#include "basic/err.h"
#include "basic/fileutil.h"
#include "basic/strutil.h"
#include "image/image-internal.h"
#include "image/image.h"
#include "shared/jsonutil.h"
#include "tap.h"

static json_t *fx;          /* the fixture's description, or NULL */
static const char *fx_skip; /* why tests skip */
static char *fx_work;
static pid_t fx_pid = -1;
static int fx_stdin = -1;

static void fixture_stop(void)
{
    if (fx_stdin >= 0)
        close(fx_stdin);
    if (fx_pid > 0) {
        int st;
        waitpid(fx_pid, &st, 0);
    }
    if (fx_work)
        (void) rm_rf(fx_work);
    json_decref(fx);
}

static void fixture_start(void)
{
    static bool started;
    if (started)
        return;
    started = true;
    const char *script = getenv("SKIFF_REGISTRY_FIXTURE");
    const char *python = getenv("SKIFF_PYTHON");
    if (!python)
        python = "python3";
    if (!script) {
        fx_skip = "SKIFF_REGISTRY_FIXTURE not set";
        return;
    }
    char t[] = "/tmp/skiff-test-registry-XXXXXX";
    if (!mkdtemp(t))
        abort();
    fx_work = xstrdup(t);
    int in[2], out[2];
    if (pipe2(in, O_CLOEXEC) < 0 || pipe2(out, O_CLOEXEC) < 0)
        abort();
    fx_pid = fork();
    if (fx_pid < 0)
        abort();
    if (fx_pid == 0) {
        dup2(in[0], 0);
        dup2(out[1], 1);
        execlp(python, python, script, fx_work, (char *) NULL);
        _exit(127);
    }
    close(in[0]);
    close(out[1]);
    fx_stdin = in[1];
    atexit(fixture_stop);

    char line[65536];
    size_t len = 0;
    usec_t deadline = now_monotonic() + 300 * USEC_PER_SEC;
    while (len < sizeof(line) - 1 && (len == 0 || line[len - 1] != '\n')) {
        struct pollfd p = { .fd = out[0], .events = POLLIN };
        usec_t now = now_monotonic();
        if (now >= deadline || poll(&p, 1, (int) ((deadline - now) / 1000)) <= 0)
            break;
        ssize_t n = read(out[0], line + len, sizeof(line) - 1 - len);
        if (n <= 0)
            break;
        len += (size_t) n;
    }
    close(out[0]);
    line[len] = 0;
    fx = json_loads(line, 0, NULL);
    if (!fx) {
        fx_skip = NULL;
        printf("# fixture produced no description: '%s'\n", line);
        return;
    }
    if (js_str(fx, "skip"))
        fx_skip = js_str(fx, "skip");
    else if (js_str(fx, "error")) {
        printf("# fixture failed: %s\n", js_str(fx, "error"));
        json_decref(fx);
        fx = NULL;
    } else {
        const json_t *sk = js_arr(fx, "skipped");
        for (size_t i = 0; i < json_array_size(sk); i++)
            printf("# fixture skipped %s\n", json_string_value(json_array_get(sk, i)));
    }
}

#define NEED_FIXTURE()                                  \
    do {                                                \
        if (geteuid() != 0)                             \
            SKIP("pulls create whiteout device nodes"); \
        fixture_start();                                \
        if (fx_skip)                                    \
            SKIP(fx_skip);                              \
        if (!fx)                                        \
            TAP_FAIL("registry fixture unavailable");   \
    } while (0)

static char *make_store_dir(void)
{
    char t[] = "/tmp/skiff-test-store-XXXXXX";
    if (!mkdtemp(t))
        abort();
    return xstrdup(t);
}

static void rm_dirp(char **p)
{
    if (*p) {
        (void) rm_rf(*p);
        free(*p);
    }
}
#define _cleanup_dir_ _cleanup_(rm_dirp)

static void storep(img_store **s)
{
    img_store_close(*s);
}
#define _cleanup_store_ _cleanup_(storep)

static char *ref_on(const char *which, const char *name)
{
    return xasprintf("%s/%s", js_str(fx, which), name);
}

static size_t count_entries(const char *dir)
{
    size_t n = 0;
    DIR *d = opendir(dir);
    if (!d)
        return (size_t) -1;
    struct dirent *de;
    while ((de = readdir(d)))
        if (!streq(de->d_name, ".") && !streq(de->d_name, ".."))
            n++;
    closedir(d);
    return n;
}

static bool file_is(const char *dir, const char *rel, const char *content)
{
    _cleanup_free_ char *p = path_join(dir, rel), *data = NULL;
    return read_full_file(p, 1 << 20, &data, NULL) >= 0 && streq(data, content);
}

static int pull(img_store *s, const char *ref, img_pull_opts *o, sk_err *err)
{
    img_pull_opts def = { 0 };
    if (!o)
        o = &def;
    o->ref = ref;
    int r = img_pull(s, o, err);
    if (r < 0)
        printf("#   pull %s: %s\n", ref, err->msg);
    return r;
}

TEST(pull_by_tag_multilayer_parallel)
{
    NEED_FIXTURE();
    _cleanup_dir_ char *dir = make_store_dir();
    _cleanup_err_ sk_err err = { 0 };
    _cleanup_store_ img_store *s = NULL;
    ASSERT_OK_ERR(img_store_open(dir, &s, &err), &err);
    _cleanup_free_ char *ref = ref_on("plain", "busybox:multi");
    img_pull_opts o = { .parallel = 4 };
    ASSERT_OK_ERR(pull(s, ref, &o, &err), &err);
    ASSERT_TRUE(img_debug_peak_transfers >= 2);
    printf("#   peak parallel transfers: %u\n", img_debug_peak_transfers);

    img_image *img = NULL;
    ASSERT_OK_ERR(img_lookup(s, ref, &img, &err), &err);
    ASSERT_EQ(img->nlayers, 3);
    ASSERT_STREQ(img->manifest_digest, js_str(js_obj(fx, "digests"), "busybox:multi"));
    ASSERT_STREQ(json_string_value(json_array_get(js_arr(img->config, "Cmd"), 0)), "sh");
    ASSERT_STREQ(js_str(img->config, "WorkingDir"), "/app");
    ASSERT_TRUE(img->size > 0);
    ASSERT_TRUE(img->pulled_at > 0);

    const char *l0 = img->layer_dirs[0], *l1 = img->layer_dirs[1], *l2 = img->layer_dirs[2];
    ASSERT_TRUE(file_is(l0, "etc/hello", "hello\n"));
    struct stat st, st2;
    _cleanup_free_ char *bb = path_join(l0, "bin/busybox"), *cat = path_join(l0, "bin/cat"),
                        *sh = path_join(l0, "bin/sh");
    ASSERT_OK(lstat(bb, &st));
    ASSERT_EQ(st.st_mode & 07777, 0755);
    ASSERT_OK(lstat(cat, &st2));
    ASSERT_EQ(st.st_ino, st2.st_ino);
    ASSERT_OK(lstat(sh, &st));
    ASSERT_TRUE(S_ISLNK(st.st_mode));
    /* Whiteouts in the upper layer. */
    _cleanup_free_ char *wh = path_join(l1, "etc/hello"), *opq = path_join(l1, "data");
    ASSERT_OK(lstat(wh, &st));
    ASSERT_TRUE(S_ISCHR(st.st_mode) && st.st_rdev == makedev(0, 0));
    char v[2] = { 0 };
    ASSERT_EQ(lgetxattr(opq, "trusted.overlay.opaque", v, sizeof(v)), 1);
    ASSERT_TRUE(file_is(l1, "data/c", "c\n"));
    ASSERT_TRUE(file_is(l2, "app/config", "v1\n"));
    img_image_free(img);

    /* Pulling again refreshes without new downloads of present layers. */
    ASSERT_OK_ERR(pull(s, ref, &o, &err), &err);
    ASSERT_EQ(img_debug_peak_transfers, 0);
    _cleanup_free_ char *tmp = path_join(dir, "tmp");
    ASSERT_EQ(count_entries(tmp), 0);
}

TEST(overlay_mount_runs_busybox)
{
    NEED_FIXTURE();
    if (geteuid() != 0)
        SKIP("overlay mounts need root");
    _cleanup_dir_ char *dir = make_store_dir();
    _cleanup_err_ sk_err err = { 0 };
    _cleanup_store_ img_store *s = NULL;
    ASSERT_OK(img_store_open(dir, &s, &err));
    _cleanup_free_ char *ref = ref_on("plain", "busybox:multi");
    ASSERT_OK_ERR(pull(s, ref, NULL, &err), &err);
    img_image *img = NULL;
    ASSERT_OK_ERR(img_lookup(s, ref, &img, &err), &err);
    _cleanup_free_ char *mnt = path_join(dir, "mnt"), *upper = path_join(dir, "upper"),
                        *work = path_join(dir, "work");
    ASSERT_OK(mkdir(mnt, 0755));
    ASSERT_OK(mkdir(upper, 0755));
    ASSERT_OK(mkdir(work, 0755));
    _cleanup_free_ char *opts =
            xasprintf("lowerdir=%s:%s:%s,upperdir=%s,workdir=%s", img->layer_dirs[2],
                      img->layer_dirs[1], img->layer_dirs[0], upper, work);
    img_image_free(img);
    if (mount("overlay", mnt, "overlay", 0, opts) < 0) {
        if (errno == EPERM || errno == ENODEV || errno == EINVAL)
            SKIP("cannot mount overlayfs here");
        TAP_FAIL("mount overlay: %m");
    }
    _cleanup_free_ char *hello = path_join(mnt, "etc/hello");
    bool hello_gone = !path_exists(hello);
    _cleanup_free_ char *a = path_join(mnt, "data/a");
    bool a_gone = !path_exists(a);
    bool c_there = file_is(mnt, "data/c", "c\n");
    bool issue = file_is(mnt, "etc/issue", "skiff\n");

    int pfd[2];
    ASSERT_OK(pipe2(pfd, O_CLOEXEC));
    pid_t pid = fork();
    if (pid == 0) {
        dup2(pfd[1], 1);
        if (chroot(mnt) < 0 || chdir("/") < 0)
            _exit(126);
        execl("/bin/cat", "cat", "/etc/issue", (char *) NULL);
        _exit(127);
    }
    close(pfd[1]);
    char buf[64] = { 0 };
    ssize_t n = 0, k;
    while (n < (ssize_t) sizeof(buf) - 1 &&
           (k = read(pfd[0], buf + n, sizeof(buf) - 1 - (size_t) n)) > 0)
        n += k;
    close(pfd[0]);
    int st = 0;
    waitpid(pid, &st, 0);
    umount2(mnt, MNT_DETACH);
    ASSERT_TRUE(hello_gone);
    ASSERT_TRUE(a_gone);
    ASSERT_TRUE(c_there);
    ASSERT_TRUE(issue);
    ASSERT_TRUE(n > 0);
    ASSERT_STREQ(buf, "skiff\n");
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
        TAP_FAIL("cat in the container root: wait status 0x%x", st);
}

TEST(pull_by_digest)
{
    NEED_FIXTURE();
    _cleanup_dir_ char *dir = make_store_dir();
    _cleanup_err_ sk_err err = { 0 };
    _cleanup_store_ img_store *s = NULL;
    ASSERT_OK(img_store_open(dir, &s, &err));
    const char *digest = js_str(js_obj(fx, "digests"), "busybox:multi");
    _cleanup_free_ char *name = xasprintf("busybox@%s", digest);
    _cleanup_free_ char *ref = ref_on("plain", name);
    ASSERT_OK_ERR(pull(s, ref, NULL, &err), &err);
    img_image *img = NULL;
    ASSERT_OK_ERR(img_lookup(s, ref, &img, &err), &err);
    ASSERT_STREQ(img->manifest_digest, digest);
    img_image_free(img);
    /* Complete by-digest records need no network. */
    img_pull_opts o = { .rewrite_host = NULL };
    ASSERT_OK_ERR(pull(s, ref, &o, &err), &err);

    /* Tag plus digest: the digest wins and is verified. */
    _cleanup_free_ char *both = xasprintf("%s/busybox:whatever@%s", js_str(fx, "plain"), digest);
    ASSERT_OK_ERR(pull(s, both, NULL, &err), &err);

    _cleanup_free_ char *unknown = ref_on(
            "plain",
            "busybox@sha256:0000000000000000000000000000000000000000000000000000000000000000");
    ASSERT_FAIL(pull(s, unknown, NULL, &err));
    ASSERT_EQ(err.code, SK_E_NOT_FOUND);
    _cleanup_free_ char *want = xasprintf("manifest for %s not found: manifest unknown", unknown);
    ASSERT_TRUE(startswith(err.msg, want));
}

TEST(manifest_index_platforms)
{
    NEED_FIXTURE();
    _cleanup_dir_ char *dir = make_store_dir();
    _cleanup_err_ sk_err err = { 0 };
    _cleanup_store_ img_store *s = NULL;
    ASSERT_OK(img_store_open(dir, &s, &err));
    _cleanup_free_ char *ref = ref_on("plain", "multiarch:latest");
    ASSERT_OK_ERR(pull(s, ref, NULL, &err), &err);
    img_image *img = NULL;
    ASSERT_OK_ERR(img_lookup(s, ref, &img, &err), &err);
    ASSERT_EQ(img->nlayers, 2);
    ASSERT_TRUE(file_is(img->layer_dirs[1], "arch", "amd64\n"));
    ASSERT_TRUE(!streq(img->manifest_digest, js_str(js_obj(fx, "digests"), "multiarch:latest")));
    img_image_free(img);

    _cleanup_dir_ char *dir2 = make_store_dir();
    _cleanup_store_ img_store *s2 = NULL;
    ASSERT_OK(img_store_open(dir2, &s2, &err));
    img_pull_opts o = { .os = "linux", .arch = "aarch64" };
    ASSERT_OK_ERR(pull(s2, ref, &o, &err), &err);
    ASSERT_OK_ERR(img_lookup(s2, ref, &img, &err), &err);
    ASSERT_TRUE(file_is(img->layer_dirs[1], "arch", "arm64\n"));
    img_image_free(img);

    img_pull_opts o2 = { .arch = "s390x" };
    ASSERT_FAIL(pull(s2, ref, &o2, &err));
    ASSERT_EQ(err.code, SK_E_NOT_FOUND);
    ASSERT_TRUE(strstr(err.msg, "no matching manifest for linux/s390x") != NULL);

    /* By the index digest. */
    _cleanup_free_ char *name =
            xasprintf("multiarch@%s", js_str(js_obj(fx, "digests"), "multiarch:latest"));
    _cleanup_free_ char *bydigest = ref_on("plain", name);
    ASSERT_OK_ERR(pull(s2, bydigest, NULL, &err), &err);
}

TEST(shared_layer_stored_once)
{
    NEED_FIXTURE();
    _cleanup_dir_ char *dir = make_store_dir();
    _cleanup_err_ sk_err err = { 0 };
    _cleanup_store_ img_store *s = NULL;
    ASSERT_OK(img_store_open(dir, &s, &err));
    _cleanup_free_ char *a = ref_on("plain", "busybox:multi"), *b = ref_on("plain", "other:1"),
                        *c = ref_on("plain", "multiarch:latest");
    ASSERT_OK_ERR(pull(s, a, NULL, &err), &err);
    ASSERT_OK_ERR(pull(s, b, NULL, &err), &err);
    ASSERT_EQ(img_debug_peak_transfers, 1); /* only other's own layer */
    ASSERT_OK_ERR(pull(s, c, NULL, &err), &err);
    img_image *ia = NULL, *ib = NULL, *ic = NULL;
    ASSERT_OK(img_lookup(s, a, &ia, &err));
    ASSERT_OK(img_lookup(s, b, &ib, &err));
    ASSERT_OK(img_lookup(s, c, &ic, &err));
    bool same = streq(ia->layer_dirs[0], ib->layer_dirs[0]) &&
                streq(ia->layer_dirs[0], ic->layer_dirs[0]);
    img_image_free(ia);
    img_image_free(ib);
    img_image_free(ic);
    ASSERT_TRUE(same);
    _cleanup_free_ char *layers = path_join(dir, "layers");
    ASSERT_EQ(count_entries(layers), 5); /* base, upper, app, other, amd64 */

    /* GC: keep a in use; b and c go, and with them their own layers only. */
    const char *in_use[] = { a };
    ASSERT_EQ(img_gc(s, in_use, 1, 0, 0, &err), 2);
    ASSERT_EQ(count_entries(layers), 3);
    ASSERT_OK_ERR(img_lookup(s, a, &ia, &err), &err);
    img_image_free(ia);
}

TEST(tampered_blob_rejected)
{
    NEED_FIXTURE();
    _cleanup_dir_ char *dir = make_store_dir();
    _cleanup_err_ sk_err err = { 0 };
    _cleanup_store_ img_store *s = NULL;
    ASSERT_OK(img_store_open(dir, &s, &err));
    _cleanup_free_ char *ref = ref_on("plain", "tampered:1");
    ASSERT_FAIL(pull(s, ref, NULL, &err));
    ASSERT_EQ(err.code, SK_E_INVALID);
    ASSERT_STREQ(err.type, "DIGEST_INVALID");
    ASSERT_TRUE(strstr(err.msg, js_str(fx, "tampered_layer")) != NULL);
    ASSERT_FALSE(cas_has(img_store_cas(s), js_str(fx, "tampered_layer")));
    img_image *img = NULL;
    ASSERT_FAIL(img_lookup(s, ref, &img, &err));
    _cleanup_free_ char *layers = path_join(dir, "layers"), *tmp = path_join(dir, "tmp"),
                        *ctmp = path_join(dir, "cas/tmp");
    ASSERT_EQ(count_entries(layers), 0);
    ASSERT_EQ(count_entries(tmp), 0);
    ASSERT_EQ(count_entries(ctmp), 0);
}

TEST(truncated_blob_unexpected_eof)
{
    NEED_FIXTURE();
    _cleanup_dir_ char *dir = make_store_dir();
    _cleanup_err_ sk_err err = { 0 };
    _cleanup_store_ img_store *s = NULL;
    ASSERT_OK(img_store_open(dir, &s, &err));
    _cleanup_free_ char *ref = ref_on("flaky", "other:1");
    ASSERT_FAIL(pull(s, ref, NULL, &err));
    ASSERT_EQ(err.code, SK_E_UNAVAILABLE);
    ASSERT_TRUE(strstr(err.msg, "unexpected EOF") != NULL);
    _cleanup_free_ char *ctmp = path_join(dir, "cas/tmp");
    ASSERT_EQ(count_entries(ctmp), 0);
}

TEST(errors_name_the_reference)
{
    NEED_FIXTURE();
    _cleanup_dir_ char *dir = make_store_dir();
    _cleanup_err_ sk_err err = { 0 };
    _cleanup_store_ img_store *s = NULL;
    ASSERT_OK(img_store_open(dir, &s, &err));
    _cleanup_free_ char *ref = ref_on("plain", "busybox:nope");
    ASSERT_FAIL(pull(s, ref, NULL, &err));
    ASSERT_EQ(err.code, SK_E_NOT_FOUND);
    _cleanup_free_ char *want = xasprintf("manifest for %s not found: manifest unknown", ref);
    ASSERT_TRUE(startswith(err.msg, want));

    _cleanup_free_ char *norepo = ref_on("plain", "does/not/exist:1");
    ASSERT_FAIL(pull(s, norepo, NULL, &err));
    ASSERT_EQ(err.code, SK_E_NOT_FOUND);

    img_pull_opts o = { .max_blob_size = 100 };
    _cleanup_free_ char *bb = ref_on("plain", "busybox:multi");
    ASSERT_FAIL(pull(s, bb, &o, &err));
    ASSERT_EQ(err.code, SK_E_LIMIT);
}

TEST(htpasswd_basic_auth)
{
    NEED_FIXTURE();
    if (!js_str(fx, "htpasswd"))
        SKIP("no bcrypt implementation for the htpasswd file");
    _cleanup_dir_ char *dir = make_store_dir();
    _cleanup_err_ sk_err err = { 0 };
    _cleanup_store_ img_store *s = NULL;
    ASSERT_OK(img_store_open(dir, &s, &err));
    _cleanup_free_ char *ref = ref_on("htpasswd", "busybox:multi");
    ASSERT_FAIL(pull(s, ref, NULL, &err));
    ASSERT_EQ(err.code, SK_E_AUTH);
    _cleanup_free_ char *want = xasprintf("pull access denied for %s/busybox, repository does not "
                                          "exist or may require authorization",
                                          js_str(fx, "htpasswd"));
    ASSERT_TRUE(startswith(err.msg, want));

    img_pull_opts bad = { .username = js_str(fx, "user"), .password = "wrong" };
    ASSERT_FAIL(pull(s, ref, &bad, &err));
    ASSERT_EQ(err.code, SK_E_AUTH);

    img_pull_opts good = { .username = js_str(fx, "user"), .password = js_str(fx, "password") };
    ASSERT_OK_ERR(pull(s, ref, &good, &err), &err);
    img_image *img = NULL;
    ASSERT_OK(img_lookup(s, ref, &img, &err));
    ASSERT_EQ(img->nlayers, 3);
    img_image_free(img);
}

TEST(bearer_token_auth)
{
    NEED_FIXTURE();
    _cleanup_dir_ char *dir = make_store_dir();
    _cleanup_err_ sk_err err = { 0 };
    _cleanup_store_ img_store *s = NULL;
    ASSERT_OK(img_store_open(dir, &s, &err));
    /* Anonymous tokens grant pull on busybox only. */
    _cleanup_free_ char *pub = ref_on("token", "busybox:multi");
    ASSERT_OK_ERR(pull(s, pub, NULL, &err), &err);
    _cleanup_free_ char *priv = ref_on("token", "other:1");
    ASSERT_FAIL(pull(s, priv, NULL, &err));
    ASSERT_EQ(err.code, SK_E_AUTH);
    ASSERT_TRUE(strstr(err.msg, "pull access denied for") != NULL);

    img_pull_opts bad = { .username = js_str(fx, "user"), .password = "wrong" };
    ASSERT_FAIL(pull(s, priv, &bad, &err));
    ASSERT_EQ(err.code, SK_E_AUTH);

    img_pull_opts good = { .username = js_str(fx, "user"), .password = js_str(fx, "password") };
    ASSERT_OK_ERR(pull(s, priv, &good, &err), &err);
    img_image *img = NULL;
    ASSERT_OK(img_lookup(s, priv, &img, &err));
    ASSERT_EQ(img->nlayers, 2);
    img_image_free(img);
}

static const char *rewrite(void *ud, const char *host)
{
    return streq(host, "123456789012.dkr.ecr.us-east-1.amazonaws.com") ? ud : NULL;
}

TEST(rewrite_host_hook)
{
    NEED_FIXTURE();
    _cleanup_dir_ char *dir = make_store_dir();
    _cleanup_err_ sk_err err = { 0 };
    _cleanup_store_ img_store *s = NULL;
    ASSERT_OK(img_store_open(dir, &s, &err));
    img_pull_opts o = { .rewrite_host = rewrite, .rewrite_userdata = (void *) js_str(fx, "plain") };
    const char *ref = "123456789012.dkr.ecr.us-east-1.amazonaws.com/busybox:multi";
    ASSERT_OK_ERR(pull(s, ref, &o, &err), &err);
    img_image *img = NULL;
    ASSERT_OK(img_lookup(s, ref, &img, &err));
    ASSERT_EQ(img->nlayers, 3);
    img_image_free(img);
}

TAP_MAIN()
