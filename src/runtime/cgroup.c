#include "cgroup.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include "basic/alloc.h"
#include "basic/fileutil.h"
#include "basic/strutil.h"

#define CGROUP_ROOT "/sys/fs/cgroup"
#ifndef CGROUP2_SUPER_MAGIC
#    define CGROUP2_SUPER_MAGIC 0x63677270
#endif

static const char *const v1_controllers[] = { "cpu",   "cpuacct", "memory",  "pids",   "cpuset",
                                              "blkio", "devices", "freezer", "systemd" };

rt_cgroup_mode rt_cgroup_detect(void)
{
    struct statfs fs;
    if (statfs(CGROUP_ROOT, &fs) == 0 && fs.f_type == CGROUP2_SUPER_MAGIC)
        return RT_CGROUP_V2;
    return RT_CGROUP_V1;
}

static bool path_ok(const char *p)
{
    return p && p[0] == '/' && !strstr(p, "..") && strlen(p) < 512;
}

static int write_str(const char *dir, const char *file, const char *value)
{
    char *p = xasprintf("%s/%s", dir, file);
    int fd = open(p, O_WRONLY | O_CLOEXEC);
    free(p);
    if (fd < 0)
        return -errno;
    int r = write_all(fd, value, strlen(value));
    close(fd);
    return r;
}

static int read_str(const char *dir, const char *file, char **ret)
{
    char *p = xasprintf("%s/%s", dir, file);
    int r = read_full_file(p, 1 << 16, ret, NULL);
    free(p);
    return r;
}

/* cpuset needs cpus/mems populated before tasks can join a v1 child. */
static void v1_cpuset_inherit(const char *dir)
{
    char *parent = xstrdup(dir);
    char *slash = strrchr(parent, '/');
    if (slash)
        *slash = 0;
    const char *files[] = { "cpuset.cpus", "cpuset.mems" };
    for (size_t i = 0; i < ELEMENTSOF(files); i++) {
        char *v = NULL;
        if (read_str(dir, files[i], &v) == 0 && strlen(strstrip(v)) == 0) {
            free(v);
            v = NULL;
            if (read_str(parent, files[i], &v) == 0)
                write_str(dir, files[i], strstrip(v));
        }
        free(v);
    }
    free(parent);
}

static int mkdir_chain_v1_cpuset(const char *base, const char *path)
{
    /* Create each level so that cpuset values are inherited level by level. */
    char *cur = xstrdup(base);
    char *copy = xstrdup(path);
    int r = 0;
    for (char *tok = strtok(copy, "/"); tok; tok = strtok(NULL, "/")) {
        char *n = xasprintf("%s/%s", cur, tok);
        free(cur);
        cur = n;
        if (mkdir(cur, 0755) < 0 && errno != EEXIST) {
            r = -errno;
            break;
        }
        v1_cpuset_inherit(cur);
    }
    free(cur);
    free(copy);
    return r;
}

int rt_cgroup_task_create(const char *path, int64_t cpu_units, int64_t memory_mib, int64_t pids_max,
                          sk_err *err)
{
    if (!path_ok(path))
        return sk_err_set(err, SK_E_INVALID, "bad cgroup path '%s'", path ? path : "");
    char buf[64];
    if (rt_cgroup_detect() == RT_CGROUP_V2) {
        char *dir = xasprintf(CGROUP_ROOT "%s", path);
        int r = mkdir_p(dir, 0755);
        if (r < 0) {
            free(dir);
            return sk_err_sys(err, r, "create cgroup '%s'", path);
        }
        /* Enable controllers down the chain. */
        char *walk = xstrdup(path);
        for (char *s = walk + 1;; s++) {
            bool end = *s == 0;
            if (*s == '/' || end) {
                char saved = *s;
                *s = 0;
                char *parent =
                        xasprintf(CGROUP_ROOT "%.*s", (int) (strrchr(walk, '/') - walk), walk);
                write_str(parent, "cgroup.subtree_control", "+cpu +memory +pids");
                free(parent);
                *s = saved;
            }
            if (end)
                break;
        }
        free(walk);
        write_str(dir, "cgroup.subtree_control", "+cpu +memory +pids");
        if (cpu_units > 0) {
            snprintf(buf, sizeof(buf), "%lld 100000", (long long) (cpu_units * 100000 / 1024));
            write_str(dir, "cpu.max", buf);
        }
        if (memory_mib > 0) {
            snprintf(buf, sizeof(buf), "%lld", (long long) memory_mib * 1024 * 1024);
            write_str(dir, "memory.max", buf);
        }
        if (pids_max > 0) {
            snprintf(buf, sizeof(buf), "%lld", (long long) pids_max);
            write_str(dir, "pids.max", buf);
        }
        free(dir);
        return 0;
    }
    for (size_t i = 0; i < ELEMENTSOF(v1_controllers); i++) {
        char *base = xasprintf(CGROUP_ROOT "/%s", v1_controllers[i]);
        struct stat st;
        if (stat(base, &st) < 0) {
            free(base);
            continue;
        }
        int r;
        if (streq(v1_controllers[i], "cpuset"))
            r = mkdir_chain_v1_cpuset(base, path);
        else {
            char *dir = xasprintf("%s%s", base, path);
            r = mkdir_p(dir, 0755);
            free(dir);
        }
        free(base);
        if (r < 0)
            return sk_err_sys(err, r, "create cgroup '%s' (%s)", path, v1_controllers[i]);
    }
    char *cpu = xasprintf(CGROUP_ROOT "/cpu%s", path);
    char *mem = xasprintf(CGROUP_ROOT "/memory%s", path);
    char *pids = xasprintf(CGROUP_ROOT "/pids%s", path);
    int r = 0;
    if (cpu_units > 0) {
        write_str(cpu, "cpu.cfs_period_us", "100000");
        snprintf(buf, sizeof(buf), "%lld", (long long) (cpu_units * 100000 / 1024));
        r = write_str(cpu, "cpu.cfs_quota_us", buf);
    }
    if (r == 0 && memory_mib > 0) {
        snprintf(buf, sizeof(buf), "%lld", (long long) memory_mib * 1024 * 1024);
        r = write_str(mem, "memory.limit_in_bytes", buf);
    }
    if (r == 0 && pids_max > 0) {
        snprintf(buf, sizeof(buf), "%lld", (long long) pids_max);
        write_str(pids, "pids.max", buf);
    }
    free(cpu);
    free(mem);
    free(pids);
    if (r < 0)
        return sk_err_sys(err, r, "set limits on cgroup '%s'", path);
    return 0;
}

static void kill_procs(const char *dir)
{
    char *procs = NULL;
    if (read_str(dir, "cgroup.procs", &procs) < 0)
        return;
    for (char *tok = strtok(procs, "\n"); tok; tok = strtok(NULL, "\n")) {
        int pid;
        if (parse_int(tok, &pid) == 0 && pid > 1)
            kill(pid, SIGKILL);
    }
    free(procs);
}

/* Removes dir and its child cgroups, deepest first. */
static int remove_tree(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return errno == ENOENT ? 0 : -errno;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (de->d_type != DT_DIR || streq(de->d_name, ".") || streq(de->d_name, ".."))
            continue;
        char *sub = xasprintf("%s/%s", dir, de->d_name);
        remove_tree(sub);
        free(sub);
    }
    closedir(d);
    for (int attempt = 0; attempt < 50; attempt++) {
        if (rmdir(dir) == 0 || errno == ENOENT)
            return 0;
        if (errno != EBUSY)
            return -errno;
        kill_procs(dir);
        usleep(10000);
    }
    return -EBUSY;
}

int rt_cgroup_remove(const char *path, sk_err *err)
{
    if (!path_ok(path))
        return sk_err_set(err, SK_E_INVALID, "bad cgroup path '%s'", path ? path : "");
    int r = 0;
    if (rt_cgroup_detect() == RT_CGROUP_V2) {
        char *dir = xasprintf(CGROUP_ROOT "%s", path);
        r = remove_tree(dir);
        free(dir);
    } else {
        for (size_t i = 0; i < ELEMENTSOF(v1_controllers); i++) {
            char *dir = xasprintf(CGROUP_ROOT "/%s%s", v1_controllers[i], path);
            int q = remove_tree(dir);
            if (q < 0 && r == 0)
                r = q;
            free(dir);
        }
        /* cgroup2 is also mounted in hybrid setups; runc may create there too. */
        char *u = xasprintf(CGROUP_ROOT "/unified%s", path);
        remove_tree(u);
        free(u);
    }
    if (r < 0)
        return sk_err_sys(err, r, "remove cgroup '%s'", path);
    return 0;
}

static int64_t keyed_value(const char *text, const char *key)
{
    size_t kl = strlen(key);
    for (const char *p = text; p && *p;) {
        if (strncmp(p, key, kl) == 0 && p[kl] == ' ')
            return strtoll(p + kl + 1, NULL, 10);
        p = strchr(p, '\n');
        if (p)
            p++;
    }
    return -1;
}

bool rt_cgroup_oom_killed(const char *path)
{
    if (!path_ok(path))
        return false;
    char *text = NULL;
    bool v2 = rt_cgroup_detect() == RT_CGROUP_V2;
    char *dir = v2 ? xasprintf(CGROUP_ROOT "%s", path) : xasprintf(CGROUP_ROOT "/memory%s", path);
    int r = read_str(dir, v2 ? "memory.events" : "memory.oom_control", &text);
    free(dir);
    if (r < 0)
        return false;
    int64_t n = keyed_value(text, "oom_kill");
    free(text);
    return n > 0;
}

int64_t rt_cgroup_memory_usage(const char *path)
{
    if (!path_ok(path))
        return -1;
    char *text = NULL;
    bool v2 = rt_cgroup_detect() == RT_CGROUP_V2;
    char *dir = v2 ? xasprintf(CGROUP_ROOT "%s", path) : xasprintf(CGROUP_ROOT "/memory%s", path);
    int r = read_str(dir, v2 ? "memory.current" : "memory.usage_in_bytes", &text);
    free(dir);
    if (r < 0)
        return -1;
    int64_t v = strtoll(text, NULL, 10);
    free(text);
    return v;
}

bool rt_cgroup_exists(const char *path)
{
    if (!path_ok(path))
        return false;
    bool v2 = rt_cgroup_detect() == RT_CGROUP_V2;
    char *dir = v2 ? xasprintf(CGROUP_ROOT "%s", path) : xasprintf(CGROUP_ROOT "/memory%s", path);
    bool e = path_exists(dir);
    free(dir);
    return e;
}
