/* Privileged tests: skiff-monitor running busybox containers under real runc.
 * Needs root, runc and busybox-static; skips otherwise. */
#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "basic/alloc.h"
#include "basic/err.h"
#include "basic/fileutil.h"
#include "basic/strutil.h"
#include "runtime/monitor.h"
#include "tap.h"
#include "test-runtime-oci.h"

#define MAX_CONTAINERS 16

static struct {
    bool ready;
    const char *skip;
    char *dir;
    char *rootfs;
    char *runc_root;
    char *ids[MAX_CONTAINERS];
    pid_t container_pids[MAX_CONTAINERS];
    size_t n;
} fx;

static bool fixture(void)
{
    if (fx.ready)
        return true;
    if (fx.skip)
        return false;
    if (!oci_available(&fx.skip))
        return false;
    const char *mon = getenv("SKIFF_MONITOR");
    if (!mon || access(mon, X_OK) != 0) {
        fx.skip = "SKIFF_MONITOR not set";
        return false;
    }
    char tmpl[] = "/tmp/skiff-test-monitor-XXXXXX";
    if (!mkdtemp(tmpl)) {
        fx.skip = "mkdtemp failed";
        return false;
    }
    fx.dir = xstrdup(tmpl);
    fx.rootfs = path_join(fx.dir, "rootfs");
    fx.runc_root = path_join(fx.dir, "runc");
    if (oci_rootfs_create(fx.rootfs) < 0) {
        fx.skip = "cannot build the busybox rootfs";
        return false;
    }
    fx.ready = true;
    return true;
}

typedef struct ctr {
    char *id;
    char *mdir;
    pid_t monitor_pid;
    pid_t container_pid;
} ctr;

static void ctr_done(ctr *c)
{
    free(c->id);
    free(c->mdir);
}

/* Creates a bundle for args and spawns its monitor; returns the sync fd. */
static int ctr_spawn(ctr *c, const char *const *args, uint64_t max_size, unsigned max_files,
                     int *ret_fd, sk_err *err)
{
    if (fx.n >= MAX_CONTAINERS)
        return sk_err_set(err, SK_E_LIMIT, "too many test containers");
    c->id = xasprintf("sktst-%d-%zu", (int) getpid(), fx.n);
    fx.ids[fx.n++] = xstrdup(c->id);
    _cleanup_free_ char *base = path_join(fx.dir, c->id);
    _cleanup_free_ char *bundle = path_join(base, "bundle");
    c->mdir = path_join(base, "mon");
    if (oci_bundle_create(bundle, fx.rootfs, args, NULL) < 0)
        return sk_err_set(err, SK_E_SYSTEM, "create bundle");
    rt_monitor_opts o = {
        .monitor_path = getenv("SKIFF_MONITOR"),
        .runtime_path = OCI_RUNC,
        .runtime_root = fx.runc_root,
        .bundle = bundle,
        .id = c->id,
        .dir = c->mdir,
        .log_max_size = max_size,
        .log_max_files = max_files,
    };
    return rt_monitor_spawn(&o, ret_fd, err);
}

static int ctr_start(ctr *c, const char *const *args, uint64_t max_size, unsigned max_files,
                     sk_err *err)
{
    int fd;
    if (ctr_spawn(c, args, max_size, max_files, &fd, err) < 0)
        return -1;
    if (rt_monitor_wait_sync(fd, 20000, &c->monitor_pid, &c->container_pid, err) < 0)
        return -1;
    fx.container_pids[fx.n - 1] = c->container_pid;
    return 0;
}

static int wait_exit(const char *dir, rt_exit_status *st, int timeout_ms)
{
    for (int i = 0; i < timeout_ms / 10; i++) {
        _cleanup_err_ sk_err err = { 0 };
        if (rt_monitor_read_exit(dir, st, &err) >= 0)
            return 0;
        usleep(10000);
    }
    return -1;
}

/* Alive and not a zombie. */
static bool pid_running(pid_t pid)
{
    char path[64], buf[512];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int) pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    buf[n > 0 ? n : 0] = '\0';
    const char *p = strrchr(buf, ')');
    return p && p[1] == ' ' && p[2] != 'Z' && p[2] != 'X';
}

static void kill_container(pid_t *pid)
{
    if (*pid > 0)
        (void) kill(*pid, SIGKILL);
}

static bool pid_gone(pid_t pid)
{
    for (int i = 0; i < 500 && pid_running(pid); i++)
        usleep(10000);
    return !pid_running(pid);
}

typedef struct sink {
    size_t n;
    uint64_t last_seq;
    bool ordered;
    char text[8][64];
    char stream[8][8];
} sink;

static void sink_fn(void *userdata, const rt_log_record *r)
{
    sink *s = userdata;
    if (r->seq <= s->last_seq)
        s->ordered = false;
    s->last_seq = r->seq;
    if (s->n < 8) {
        snprintf(s->text[s->n], sizeof(s->text[0]), "%.*s", (int) MIN(r->len, (size_t) 60),
                 r->line);
        snprintf(s->stream[s->n], sizeof(s->stream[0]), "%s", r->stream);
    }
    s->n++;
}

/* "Rss:" etc. from /proc/PID/smaps_rollup, in kB; -1 when missing. */
static long smaps_kb(pid_t pid, const char *key)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/smaps_rollup", (int) pid);
    _cleanup_free_ char *data = NULL;
    if (read_full_file(path, 1 << 16, &data, NULL) < 0)
        return -1;
    _cleanup_free_ char *k = xasprintf("\n%s:", key);
    const char *p = strstr(data, k);
    return p ? strtol(p + strlen(k), NULL, 10) : -1;
}

TEST(exit_code_and_logs)
{
    if (!fixture())
        SKIP(fx.skip);
    _cleanup_(ctr_done) ctr c = { 0 };
    _cleanup_err_ sk_err err = { 0 };
    const char *args[] = { "sh", "-c", "echo out1; echo err1 >&2; echo out2; exit 3", NULL };
    ASSERT_OK_ERR(ctr_start(&c, args, 0, 0, &err), &err);
    rt_exit_status st;
    ASSERT_OK(wait_exit(c.mdir, &st, 20000));
    ASSERT_EQ(st.exit_code, 3);
    ASSERT_EQ(st.signal, 0);
    ASSERT_STREQ(st.error, "");
    ASSERT_TRUE(pid_gone(c.monitor_pid));

    rt_log_cursor cur = { 0 };
    sink s = { .ordered = true };
    ASSERT_EQ(rt_log_read(c.mdir, &cur, 100, sink_fn, &s, &err), 3);
    ASSERT_TRUE(s.ordered);
    ASSERT_EQ(cur.seq, 3);
    ASSERT_EQ(cur.dropped, 0);
    /* stdout and stderr are separate pipes: order is kept within each. */
    int o1 = -1, o2 = -1, e1 = -1;
    for (int i = 0; i < 3; i++) {
        if (streq(s.text[i], "out1") && streq(s.stream[i], "stdout"))
            o1 = i;
        if (streq(s.text[i], "out2") && streq(s.stream[i], "stdout"))
            o2 = i;
        if (streq(s.text[i], "err1") && streq(s.stream[i], "stderr"))
            e1 = i;
    }
    ASSERT_TRUE(o1 >= 0 && o2 > o1 && e1 >= 0);
}

TEST(sigkill_137_memory_and_fds)
{
    if (!fixture())
        SKIP(fx.skip);
    _cleanup_(ctr_done) ctr c = { 0 };
    _cleanup_err_ sk_err err = { 0 };
    /* Deliberately not O_CLOEXEC: the monitor must close it anyway. */
    _cleanup_free_ char *marker = path_join(fx.dir, "agent-private-file");
    int mfd = open(marker, O_RDWR | O_CREAT, 0600);
    ASSERT_TRUE(mfd >= 0);
    const char *args[] = { "sh", "-c", "echo ready; exec sleep 100", NULL };
    int r = ctr_start(&c, args, 0, 0, &err);
    close(mfd);
    ASSERT_OK_ERR(r, &err);
    /* Whatever fails below, the container must not outlive the test. */
    _cleanup_(kill_container) pid_t victim = c.container_pid;

    /* Detached: not our child, in another session. */
    ASSERT_TRUE(getsid(c.monitor_pid) != getsid(0));
    ASSERT_TRUE(waitpid(c.monitor_pid, NULL, WNOHANG) < 0 && errno == ECHILD);

    /* Only its own fds: stdio on /dev/null, pipes, signalfd, dir, log. */
    char fddir[64];
    snprintf(fddir, sizeof(fddir), "/proc/%d/fd", (int) c.monitor_pid);
    DIR *d = opendir(fddir);
    ASSERT_NOT_NULL(d);
    struct dirent *de;
    int nfds = 0;
    bool leaked = false;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.')
            continue;
        char lp[384], target[512];
        snprintf(lp, sizeof(lp), "%s/%s", fddir, de->d_name);
        ssize_t n = readlink(lp, target, sizeof(target) - 1);
        target[n > 0 ? n : 0] = '\0';
        printf("#   monitor fd %s -> %s\n", de->d_name, target);
        nfds++;
        if (strstr(target, "agent-private-file"))
            leaked = true;
        if (atoi(de->d_name) <= 2 && !streq(target, "/dev/null"))
            leaked = true;
    }
    closedir(d);
    ASSERT_FALSE(leaked);
    /* 0-2, dir, signalfd, 2 pipes, log, and the sync pipe if the monitor has
     * not closed it yet (it writes the line first). */
    ASSERT_TRUE(nfds <= 9);

    usleep(200000);
    long rss = smaps_kb(c.monitor_pid, "Rss"), pss = smaps_kb(c.monitor_pid, "Pss");
    long priv = smaps_kb(c.monitor_pid, "Private_Dirty");
    long anon = smaps_kb(c.monitor_pid, "Anonymous");
    printf("# monitor (%s): Rss %ld kB, Pss %ld kB, Private_Dirty %ld kB, Anonymous %ld kB\n",
           getenv("SKIFF_MONITOR_LIBC") ? getenv("SKIFF_MONITOR_LIBC") : "?", rss, pss, priv, anon);
    ASSERT_TRUE(rss > 0);
    if (streq_ptr(getenv("SKIFF_MONITOR_LIBC"), "musl"))
        ASSERT_TRUE(pss <= 256);

    ASSERT_OK(kill(c.container_pid, SIGKILL));
    victim = 0;
    rt_exit_status st;
    ASSERT_OK(wait_exit(c.mdir, &st, 20000));
    ASSERT_EQ(st.exit_code, 137);
    ASSERT_EQ(st.signal, 9);
    ASSERT_TRUE(pid_gone(c.monitor_pid));
}

TEST(survives_spawner_kill)
{
    if (!fixture())
        SKIP(fx.skip);
    _cleanup_(ctr_done) ctr c = { 0 };
    _cleanup_err_ sk_err err = { 0 };
    const char *args[] = { "sh", "-c", "echo started; sleep 1; echo done; exit 7", NULL };
    /* The bundle is made here; a forked "agent" spawns the monitor, reports
     * the pids and is then SIGKILLed while the container runs. */
    int fd;
    int p[2];
    ASSERT_OK(pipe2(p, O_CLOEXEC));
    pid_t agent = fork();
    ASSERT_TRUE(agent >= 0);
    if (agent == 0) {
        pid_t pids[2] = { 0, 0 };
        sk_err e = { 0 };
        if (ctr_spawn(&c, args, 0, 0, &fd, &e) < 0 ||
            rt_monitor_wait_sync(fd, 20000, &pids[0], &pids[1], &e) < 0)
            pids[0] = pids[1] = 0;
        (void) !write(p[1], pids, sizeof(pids));
        for (;;)
            pause();
    }
    close(p[1]);
    pid_t pids[2] = { 0, 0 };
    ssize_t n = read(p[0], pids, sizeof(pids));
    close(p[0]);
    ASSERT_OK(kill(agent, SIGKILL));
    ASSERT_EQ(waitpid(agent, NULL, 0), agent);
    ASSERT_EQ(n, (ssize_t) sizeof(pids));
    ASSERT_TRUE(pids[0] > 0 && pids[1] > 0);
    /* The child registered the id in its own copy of fx: redo it here. */
    c.id = xasprintf("sktst-%d-%zu", (int) agent, fx.n);
    fx.ids[fx.n] = xstrdup(c.id);
    fx.container_pids[fx.n++] = pids[1];
    _cleanup_free_ char *base = path_join(fx.dir, c.id);
    c.mdir = path_join(base, "mon");

    ASSERT_TRUE(pid_running(pids[0]));
    ASSERT_TRUE(pid_running(pids[1]));
    rt_exit_status st;
    ASSERT_OK(wait_exit(c.mdir, &st, 20000));
    ASSERT_EQ(st.exit_code, 7);
    rt_log_cursor cur = { 0 };
    sink s = { .ordered = true };
    ASSERT_EQ(rt_log_read(c.mdir, &cur, 100, sink_fn, &s, &err), 2);
    ASSERT_STREQ(s.text[0], "started");
    ASSERT_STREQ(s.text[1], "done");
    ASSERT_TRUE(pid_gone(pids[0]));
}

TEST(rotation_chatty)
{
    if (!fixture())
        SKIP(fx.skip);
    _cleanup_(ctr_done) ctr c = { 0 };
    _cleanup_err_ sk_err err = { 0 };
    const char *args[] = { "sh", "-c",
                           "i=0; while [ $i -lt 5000 ]; do echo \"line $i "
                           "abcdefghijklmnopqrstuvwxyz0123456789\"; i=$((i+1)); done",
                           NULL };
    ASSERT_OK_ERR(ctr_start(&c, args, 16384, 3, &err), &err);
    rt_log_cursor cur = { 0 };
    sink s = { .ordered = true };
    rt_exit_status st;
    for (bool done = false; !done;) {
        _cleanup_err_ sk_err e = { 0 };
        done = rt_monitor_read_exit(c.mdir, &st, &e) >= 0;
        ASSERT_OK_ERR(rt_log_read(c.mdir, &cur, 40, sink_fn, &s, &err), &err);
        usleep(1000);
    }
    while (rt_log_read(c.mdir, &cur, 100, sink_fn, &s, &err) > 0)
        ;
    ASSERT_EQ(st.exit_code, 0);
    ASSERT_EQ(st.log_dropped, 0);
    ASSERT_TRUE(s.ordered);
    ASSERT_EQ(cur.seq, 5000);
    ASSERT_EQ(s.n + cur.dropped, 5000);
    printf("# chatty: %zu records read while running, %" PRIu64 " lost to rotation\n", s.n,
           cur.dropped);

    rt_log_cursor c2 = { 0 };
    sink s2 = { .ordered = true };
    int n = rt_log_read(c.mdir, &c2, 10000, sink_fn, &s2, &err);
    ASSERT_TRUE(n > 100 && n < 5000);
    ASSERT_EQ(c2.seq, 5000);
    ASSERT_EQ((uint64_t) n + c2.dropped, 5000);
    _cleanup_free_ char *l3 = path_join(c.mdir, "container.log.3");
    ASSERT_FALSE(path_exists(l3));
}

TEST(runtime_failure)
{
    if (!fixture())
        SKIP(fx.skip);
    _cleanup_(ctr_done) ctr c = { 0 };
    _cleanup_err_ sk_err err = { 0 };
    const char *args[] = { "/nonexistent-binary", NULL };
    ASSERT_FAIL(ctr_start(&c, args, 0, 0, &err));
    printf("# runc error: %s\n", err.msg);
    ASSERT_EQ(err.code, SK_E_INVALID);
    ASSERT_NOT_NULL(strstr(err.msg, "nonexistent-binary"));
    rt_exit_status st;
    ASSERT_OK(wait_exit(c.mdir, &st, 20000));
    ASSERT_EQ(st.exit_code, -1);
    ASSERT_NOT_NULL(strstr(st.error, "nonexistent-binary"));

    /* A bundle without config.json. */
    _cleanup_(ctr_done) ctr c2 = { 0 };
    sk_err_done(&err);
    int fd;
    const char *a2[] = { "true", NULL };
    ASSERT_OK(ctr_spawn(&c2, a2, 0, 0, &fd, &err));
    _cleanup_free_ char *cfg = xasprintf("%s/%s/bundle/config.json", fx.dir, c2.id);
    ASSERT_OK(unlink(cfg));
    ASSERT_FAIL(rt_monitor_wait_sync(fd, 20000, NULL, NULL, &err));
    printf("# runc error: %s\n", err.msg);
    ASSERT_NOT_NULL(strstr(err.msg, "config.json"));
}

/* Last: every container stopped, every monitor gone, nothing left behind.
 * Containers are force-deleted first so that a failed test above cannot
 * leave one running. */
TEST(no_leaks)
{
    if (!fixture())
        SKIP(fx.skip);
    int running = 0;
    for (size_t i = 0; i < fx.n; i++) {
        if (fx.container_pids[i] > 0 && !pid_gone(fx.container_pids[i]))
            running++;
        const char *argv[] = { OCI_RUNC, "--root", fx.runc_root, "state", fx.ids[i], NULL };
        char out[4096];
        if (oci_run(argv, out, sizeof(out)) == 0 && !strstr(out, "\"status\": \"stopped\""))
            running++;
        oci_delete(fx.runc_root, fx.ids[i]);
    }
    ASSERT_EQ(running, 0);
    /* No process of ours is left: monitors carry the tmp dir on their
     * command line (one may still be finishing its exit). */
    DIR *d = opendir("/proc");
    ASSERT_NOT_NULL(d);
    struct dirent *de;
    int left = 0;
    while ((de = readdir(d))) {
        int pid = atoi(de->d_name);
        if (pid <= 1 || pid == getpid())
            continue;
        char path[64];
        snprintf(path, sizeof(path), "/proc/%d/cmdline", pid);
        _cleanup_free_ char *cmd = NULL;
        size_t len = 0;
        if (read_full_file(path, 1 << 16, &cmd, &len) < 0)
            continue;
        for (size_t i = 0; i + 1 < len; i++)
            if (cmd[i] == '\0')
                cmd[i] = ' ';
        if (strstr(cmd, fx.dir) && !pid_gone(pid)) {
            printf("# leftover process %d: %s\n", pid, cmd);
            kill(pid, SIGKILL);
            left++;
        }
    }
    closedir(d);
    ASSERT_EQ(left, 0);
    rm_rf(fx.dir);
}

TAP_MAIN()
