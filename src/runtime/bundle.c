#include "bundle.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "basic/alloc.h"
#include "basic/buf.h"
#include "basic/fileutil.h"
#include "basic/strutil.h"
#include "shared/jsonutil.h"

#define DEFAULT_PATH   "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#define DEFAULT_NOFILE 65536

static const char *const docker_caps[] = {
    "CAP_CHOWN",   "CAP_DAC_OVERRIDE", "CAP_FSETID",           "CAP_FOWNER",
    "CAP_MKNOD",   "CAP_NET_RAW",      "CAP_SETGID",           "CAP_SETUID",
    "CAP_SETFCAP", "CAP_SETPCAP",      "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT",
    "CAP_KILL",    "CAP_AUDIT_WRITE",
};

static const char *const all_caps[] = {
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
};

static const char *const masked_paths[] = {
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
};

static const char *const readonly_paths[] = {
    "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger",
};

static const struct {
    const char *name;
    int resource;
} rlimit_names[] = {
    { "core", RLIMIT_CORE },         { "cpu", RLIMIT_CPU },
    { "data", RLIMIT_DATA },         { "fsize", RLIMIT_FSIZE },
    { "locks", RLIMIT_LOCKS },       { "memlock", RLIMIT_MEMLOCK },
    { "msgqueue", RLIMIT_MSGQUEUE }, { "nice", RLIMIT_NICE },
    { "nofile", RLIMIT_NOFILE },     { "nproc", RLIMIT_NPROC },
    { "rss", RLIMIT_RSS },           { "rtprio", RLIMIT_RTPRIO },
    { "rttime", RLIMIT_RTTIME },     { "sigpending", RLIMIT_SIGPENDING },
    { "stack", RLIMIT_STACK },
};

json_t *rt_default_capabilities(void)
{
    json_t *a = json_array();
    for (size_t i = 0; i < ELEMENTSOF(docker_caps); i++)
        json_array_append_new(a, json_string(docker_caps[i]));
    return a;
}

static void caps_remove(json_t *caps, const char *cap)
{
    for (size_t i = json_array_size(caps); i-- > 0;)
        if (streq_ptr(json_string_value(json_array_get(caps, i)), cap))
            json_array_remove(caps, i);
}

/* Appends every capability in this process's bounding set: "all" for a
 * privileged container means all the host can grant, as with Docker, since
 * runc fails to apply a capability outside the bounding set. all_caps is
 * indexed by capability number. */
static void append_host_caps(json_t *caps)
{
    for (size_t i = 0; i < ELEMENTSOF(all_caps); i++)
        if (prctl(PR_CAPBSET_READ, (unsigned long) i, 0, 0, 0) == 1 &&
            !js_array_has_str(caps, all_caps[i]))
            json_array_append_new(caps, json_string(all_caps[i]));
}

static json_t *effective_caps(const json_t *container, bool privileged)
{
    json_t *caps;
    if (privileged) {
        caps = json_array();
        append_host_caps(caps);
        return caps;
    }
    caps = rt_default_capabilities();
    json_t *lc = js_obj(js_obj(container, "linuxParameters"), "capabilities");
    size_t i;
    json_t *c;
    json_array_foreach(js_arr(lc, "drop"), i, c) {
        const char *n = json_string_value(c);
        if (!n)
            continue;
        if (streq(n, "ALL")) {
            json_array_clear(caps);
            continue;
        }
        char *full = xasprintf("CAP_%s", n);
        caps_remove(caps, full);
        free(full);
    }
    json_array_foreach(js_arr(lc, "add"), i, c) {
        const char *n = json_string_value(c);
        if (!n)
            continue;
        if (streq(n, "ALL")) {
            append_host_caps(caps);
            continue;
        }
        char *full = xasprintf("CAP_%s", n);
        if (!js_array_has_str(caps, full))
            json_array_append_new(caps, json_string(full));
        free(full);
    }
    return caps;
}

json_t *rt_bundle_args(const json_t *container, const json_t *image_config)
{
    json_t *ep = js_arr(container, "entryPoint");
    json_t *cmd = js_arr(container, "command");
    json_t *args = json_array();
    if (ep && json_array_size(ep)) {
        json_array_extend(args, ep);
        if (cmd)
            json_array_extend(args, cmd);
    } else {
        json_t *iep = js_arr(image_config, "Entrypoint");
        if (iep)
            json_array_extend(args, iep);
        if (cmd && json_array_size(cmd))
            json_array_extend(args, cmd);
        else if (js_arr(image_config, "Cmd"))
            json_array_extend(args, js_arr(image_config, "Cmd"));
    }
    return args;
}

/* Environment: image Env, then the definition's environment (overrides are
 * merged into it by the caller), then agent-injected variables. */
static json_t *build_env(const json_t *container, const json_t *image_config, char *const *extra)
{
    json_t *env = json_array();
    json_t *img = js_arr(image_config, "Env");
    size_t i;
    json_t *e;
    json_array_foreach(img, i, e) {
        if (json_is_string(e))
            json_array_append(env, e);
    }
    bool has_path = false;
    json_array_foreach(env, i, e) {
        if (startswith(json_string_value(e), "PATH="))
            has_path = true;
    }
    if (!has_path)
        json_array_insert_new(env, 0, json_string(DEFAULT_PATH));
    /* set(name, value): replace an existing entry or append */
    json_t *defs = js_arr(container, "environment");
    json_t *pairs = json_array();
    json_array_foreach(defs, i, e) {
        const char *n = js_str(e, "name");
        if (!n || !*n || strchr(n, '='))
            continue;
        json_array_append_new(pairs, json_pack("[s,s]", n, js_str_or(e, "value", "")));
    }
    for (char *const *x = extra; x && *x; x++) {
        const char *eq = strchr(*x, '=');
        if (!eq)
            continue;
        char *n = xstrndup(*x, (size_t) (eq - *x));
        json_array_append_new(pairs, json_pack("[s,s]", n, eq + 1));
        free(n);
    }
    json_t *p;
    json_array_foreach(pairs, i, p) {
        const char *n = json_string_value(json_array_get(p, 0));
        const char *v = json_string_value(json_array_get(p, 1));
        char *kv = xasprintf("%s=%s", n, v);
        size_t nl = strlen(n);
        bool replaced = false;
        size_t j;
        json_t *cur;
        json_array_foreach(env, j, cur) {
            const char *s = json_string_value(cur);
            if (s && strncmp(s, n, nl) == 0 && s[nl] == '=') {
                json_array_set_new(env, j, json_string(kv));
                replaced = true;
                break;
            }
        }
        if (!replaced)
            json_array_append_new(env, json_string(kv));
        free(kv);
    }
    json_decref(pairs);
    return env;
}

/* Reads a file inside the rootfs without letting symlinks escape it. */
static char *read_in_root(const char *rootfs, const char *path)
{
    int root = open(rootfs, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (root < 0)
        return NULL;
    struct open_how how = { .flags = O_RDONLY | O_CLOEXEC,
                            .resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS };
    int fd = (int) syscall(SYS_openat2, root, path, &how, sizeof(how));
    close(root);
    if (fd < 0)
        return NULL;
    char *data = NULL;
    if (read_full_fd(fd, 4 << 20, &data, NULL) < 0)
        data = NULL;
    close(fd);
    return data;
}

/* Looks up name (or numeric id) in a passwd/group style file. field 2 is the
 * id; for passwd field 3 is the primary gid. */
static bool lookup_db(const char *db, const char *name, long *ret_id, long *ret_gid)
{
    if (!db)
        return false;
    const char *p = db;
    while (*p) {
        const char *eol = strchr(p, '\n');
        size_t len = eol ? (size_t) (eol - p) : strlen(p);
        char line[1024];
        if (len < sizeof(line)) {
            memcpy(line, p, len);
            line[len] = 0;
            char *fields[8] = { 0 };
            int nf = 0;
            char *s = line;
            while (nf < 8) {
                fields[nf++] = s;
                char *c = strchr(s, ':');
                if (!c)
                    break;
                *c = 0;
                s = c + 1;
            }
            if (nf >= 3 && streq(fields[0], name)) {
                *ret_id = strtol(fields[2], NULL, 10);
                if (ret_gid)
                    *ret_gid = nf >= 4 ? strtol(fields[3], NULL, 10) : *ret_id;
                return true;
            }
        }
        p += len;
        if (*p == '\n')
            p++;
    }
    return false;
}

static json_t *supplementary_groups(const char *group_db, const char *user, long gid)
{
    json_t *gids = json_array();
    if (!group_db || !user)
        return gids;
    const char *p = group_db;
    while (*p) {
        const char *eol = strchr(p, '\n');
        size_t len = eol ? (size_t) (eol - p) : strlen(p);
        char line[4096];
        if (len < sizeof(line)) {
            memcpy(line, p, len);
            line[len] = 0;
            char *f[4] = { 0 };
            int nf = 0;
            char *s = line;
            while (nf < 4) {
                f[nf++] = s;
                char *c = strchr(s, ':');
                if (!c)
                    break;
                *c = 0;
                s = c + 1;
            }
            if (nf == 4) {
                long g = strtol(f[2], NULL, 10);
                char *save = NULL;
                for (char *m = strtok_r(f[3], ",", &save); m; m = strtok_r(NULL, ",", &save))
                    if (streq(m, user) && g != gid)
                        json_array_append_new(gids, json_integer(g));
            }
        }
        p += len;
        if (*p == '\n')
            p++;
    }
    return gids;
}

static bool all_digits(const char *s)
{
    if (!s || !*s)
        return false;
    for (; *s; s++)
        if (*s < '0' || *s > '9')
            return false;
    return true;
}

static int resolve_user(const char *rootfs, const char *spec, json_t **ret, sk_err *err)
{
    json_t *u = json_object();
    if (!spec || !*spec) {
        js_set_int(u, "uid", 0);
        js_set_int(u, "gid", 0);
        *ret = u;
        return 0;
    }
    char *copy = xstrdup(spec);
    char *colon = strchr(copy, ':');
    const char *group = NULL;
    if (colon) {
        *colon = 0;
        group = colon + 1;
    }
    const char *user = copy;
    _cleanup_free_ char *passwd = read_in_root(rootfs, "/etc/passwd");
    _cleanup_free_ char *groups = read_in_root(rootfs, "/etc/group");
    long uid = 0, gid = 0;
    bool named = false;
    if (all_digits(user)) {
        uid = strtol(user, NULL, 10);
        long pg;
        /* A numeric uid listed in passwd takes its primary group. */
        gid = 0;
        if (passwd) {
            const char *p = passwd;
            while (*p) {
                const char *eol = strchr(p, '\n');
                size_t len = eol ? (size_t) (eol - p) : strlen(p);
                char line[1024];
                if (len < sizeof(line)) {
                    memcpy(line, p, len);
                    line[len] = 0;
                    char *f1 = strchr(line, ':');
                    char *f2 = f1 ? strchr(f1 + 1, ':') : NULL;
                    char *f3 = f2 ? strchr(f2 + 1, ':') : NULL;
                    if (f3 && strtol(f2 + 1, NULL, 10) == uid) {
                        pg = strtol(f3 + 1, NULL, 10);
                        gid = pg;
                        break;
                    }
                }
                p += len;
                if (*p == '\n')
                    p++;
            }
        }
    } else {
        if (!lookup_db(passwd, user, &uid, &gid)) {
            json_decref(u);
            int r = sk_err_typed(err, SK_E_INVALID, "CannotStartContainerError",
                                 "unable to find user %s: no matching entries in passwd file",
                                 user);
            free(copy);
            return r;
        }
        named = true;
    }
    if (group && *group) {
        if (all_digits(group))
            gid = strtol(group, NULL, 10);
        else if (!lookup_db(groups, group, &gid, NULL)) {
            json_decref(u);
            int r = sk_err_typed(err, SK_E_INVALID, "CannotStartContainerError",
                                 "unable to find group %s: no matching entries in group file",
                                 group);
            free(copy);
            return r;
        }
    }
    if (uid < 0 || gid < 0 || uid > 0x7fffffff || gid > 0x7fffffff) {
        json_decref(u);
        free(copy);
        return sk_err_typed(err, SK_E_INVALID, "CannotStartContainerError", "invalid user '%s'",
                            spec);
    }
    js_set_int(u, "uid", uid);
    js_set_int(u, "gid", gid);
    json_t *extra = supplementary_groups(groups, named ? user : NULL, gid);
    if (json_array_size(extra))
        js_set(u, "additionalGids", extra);
    else
        json_decref(extra);
    free(copy);
    *ret = u;
    return 0;
}

static int add_rlimits(json_t *process, const json_t *container, sk_err *err)
{
    json_t *rl = json_array();
    bool have_nofile = false;
    size_t i;
    json_t *u;
    json_array_foreach(js_arr(container, "ulimits"), i, u) {
        const char *name = js_str(u, "name");
        int res = -1;
        for (size_t k = 0; k < ELEMENTSOF(rlimit_names); k++)
            if (name && streq(name, rlimit_names[k].name))
                res = rlimit_names[k].resource;
        if (res < 0) {
            json_decref(rl);
            return sk_err_typed(err, SK_E_INVALID, "CannotStartContainerError",
                                "invalid ulimit name '%s'", name ? name : "");
        }
        int64_t soft = js_int(u, "softLimit", 0), hard = js_int(u, "hardLimit", 0);
        struct rlimit host;
        if (getrlimit(res, &host) == 0 && host.rlim_max != RLIM_INFINITY &&
            (uint64_t) hard > host.rlim_max) {
            json_decref(rl);
            return sk_err_typed(
                    err, SK_E_INVALID, "CannotStartContainerError",
                    "failed to set ulimit %s: hard limit %lld exceeds the host's hard limit %llu (raising it needs CAP_SYS_RESOURCE)",
                    name, (long long) hard, (unsigned long long) host.rlim_max);
        }
        char type[32];
        snprintf(type, sizeof(type), "RLIMIT_%s", name);
        for (char *c = type; *c; c++)
            if (*c >= 'a' && *c <= 'z')
                *c = (char) (*c - 32);
        json_array_append_new(rl, json_pack("{s:s, s:I, s:I}", "type", type, "hard",
                                            (json_int_t) hard, "soft", (json_int_t) soft));
        if (res == RLIMIT_NOFILE)
            have_nofile = true;
    }
    if (!have_nofile) {
        struct rlimit host;
        uint64_t v = DEFAULT_NOFILE;
        if (getrlimit(RLIMIT_NOFILE, &host) == 0 && host.rlim_max != RLIM_INFINITY &&
            host.rlim_max < v)
            v = host.rlim_max;
        json_array_append_new(rl, json_pack("{s:s, s:I, s:I}", "type", "RLIMIT_NOFILE", "hard",
                                            (json_int_t) v, "soft", (json_int_t) v));
    }
    js_set(process, "rlimits", rl);
    return 0;
}

static json_t *mount_json(const char *dst, const char *type, const char *src, const char *opts)
{
    json_t *o = json_pack("{s:s, s:s, s:s}", "destination", dst, "type", type, "source", src);
    json_t *a = json_array();
    char *copy = xstrdup(opts);
    char *save = NULL;
    for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save))
        json_array_append_new(a, json_string(t));
    free(copy);
    js_set(o, "options", a);
    return o;
}

static bool arch_matches(const json_t *arches)
{
    if (!arches || !json_array_size(arches))
        return true;
    return js_array_has_str(arches, "amd64") || js_array_has_str(arches, "x86_64");
}

static bool caps_match_all(const json_t *need, const json_t *caps)
{
    size_t i;
    json_t *c;
    json_array_foreach(need, i, c) {
        if (!js_array_has_str(caps, json_string_value(c)))
            return false;
    }
    return true;
}

static bool caps_match_any(const json_t *need, const json_t *caps)
{
    size_t i;
    json_t *c;
    json_array_foreach(need, i, c) {
        if (js_array_has_str(caps, json_string_value(c)))
            return true;
    }
    return false;
}

json_t *rt_seccomp_convert(const json_t *profile, const json_t *caps)
{
    if (!profile)
        return NULL;
    json_t *out = json_object();
    js_set_str(out, "defaultAction", js_str_or(profile, "defaultAction", "SCMP_ACT_ERRNO"));
    if (js_has(profile, "defaultErrnoRet"))
        js_set(out, "defaultErrnoRet", json_incref(json_object_get(profile, "defaultErrnoRet")));
    json_t *arches = json_array();
    size_t i;
    json_t *m;
    json_array_foreach(js_arr(profile, "archMap"), i, m) {
        if (!streq_ptr(js_str(m, "architecture"), "SCMP_ARCH_X86_64"))
            continue;
        json_array_append_new(arches, json_string("SCMP_ARCH_X86_64"));
        size_t j;
        json_t *s;
        json_array_foreach(js_arr(m, "subArchitectures"), j, s)
            json_array_append(arches, s);
    }
    if (!json_array_size(arches)) {
        json_array_append_new(arches, json_string("SCMP_ARCH_X86_64"));
        json_array_append_new(arches, json_string("SCMP_ARCH_X86"));
        json_array_append_new(arches, json_string("SCMP_ARCH_X32"));
    }
    js_set(out, "architectures", arches);
    json_t *rules = json_array();
    json_t *r;
    json_array_foreach(js_arr(profile, "syscalls"), i, r) {
        json_t *inc = js_obj(r, "includes"), *exc = js_obj(r, "excludes");
        if (inc) {
            if (js_arr(inc, "caps") && !caps_match_all(js_arr(inc, "caps"), caps))
                continue;
            if (js_arr(inc, "arches") && !arch_matches(js_arr(inc, "arches")))
                continue;
        }
        if (exc) {
            if (js_arr(exc, "caps") && caps_match_any(js_arr(exc, "caps"), caps))
                continue;
            if (js_arr(exc, "arches") && json_array_size(js_arr(exc, "arches")) &&
                arch_matches(js_arr(exc, "arches")))
                continue;
        }
        json_t *rule = json_object();
        json_t *names = js_arr(r, "names");
        if (!names && js_str(r, "name"))
            names = json_pack("[s]", js_str(r, "name"));
        else
            json_incref(names);
        if (!names) {
            json_decref(rule);
            continue;
        }
        js_set(rule, "names", names);
        js_set_str(rule, "action", js_str_or(r, "action", "SCMP_ACT_ALLOW"));
        if (js_has(r, "errnoRet"))
            js_set(rule, "errnoRet", json_incref(json_object_get(r, "errnoRet")));
        if (js_arr(r, "args") && json_array_size(js_arr(r, "args")))
            js_set(rule, "args", json_deep_copy(js_arr(r, "args")));
        json_array_append_new(rules, rule);
    }
    js_set(out, "syscalls", rules);
    return out;
}

int rt_bundle_config(const rt_container_spec *s, json_t **ret, sk_err *err)
{
    const json_t *c = s->container;
    bool privileged = js_bool(c, "privileged", false);
    json_t *lp = js_obj(c, "linuxParameters");
    json_t *args = rt_bundle_args(c, s->image_config);
    if (json_array_size(args) == 0) {
        json_decref(args);
        return sk_err_typed(err, SK_E_INVALID, "CannotCreateContainerError",
                            "no command specified");
    }
    if (js_bool(lp, "initProcessEnabled", false)) {
        if (!s->init_path)
            return json_decref(args),
                   sk_err_typed(err, SK_E_INVALID, "CannotCreateContainerError",
                                "initProcessEnabled needs tini or catatonit on the host");
        json_array_insert_new(args, 0, json_string("--"));
        json_array_insert_new(args, 0, json_string("/sbin/docker-init"));
    }
    json_t *cfg = json_object();
    js_set_str(cfg, "ociVersion", "1.0.2");
    json_t *process = json_object();
    js_set_bool(process, "terminal", false);
    json_t *user = NULL;
    const char *uspec = js_str(c, "user");
    if (!uspec)
        uspec = js_str(s->image_config, "User");
    if (resolve_user(s->rootfs, uspec, &user, err) < 0) {
        json_decref(args);
        json_decref(process);
        json_decref(cfg);
        return -1;
    }
    js_set(process, "user", user);
    js_set(process, "args", args);
    js_set(process, "env", build_env(c, s->image_config, s->env));
    const char *cwd = js_str(c, "workingDirectory");
    if (!cwd || !*cwd)
        cwd = js_str(s->image_config, "WorkingDir");
    js_set_str(process, "cwd", cwd && cwd[0] == '/' ? cwd : "/");
    json_t *caps = effective_caps(c, privileged);
    json_t *capobj = json_object();
    const char *sets[] = { "bounding", "effective", "permitted" };
    for (size_t i = 0; i < ELEMENTSOF(sets); i++)
        js_set(capobj, sets[i], json_deep_copy(caps));
    js_set(process, "capabilities", capobj);
    js_set_bool(process, "noNewPrivileges", !privileged);
    if (add_rlimits(process, c, err) < 0) {
        json_decref(caps);
        json_decref(process);
        json_decref(cfg);
        return -1;
    }
    js_set(cfg, "process", process);
    js_set(cfg, "root",
           json_pack("{s:s, s:b}", "path", s->rootfs, "readonly",
                     js_bool(c, "readonlyRootFilesystem", false)));
    js_set_str(cfg, "hostname", s->hostname ? s->hostname : "localhost");

    json_t *mounts = json_array();
    json_array_append_new(mounts, mount_json("/proc", "proc", "proc", "nosuid,noexec,nodev"));
    json_array_append_new(mounts, mount_json("/dev", "tmpfs", "tmpfs",
                                             "nosuid,strictatime,mode=755,size=65536k"));
    json_array_append_new(mounts,
                          mount_json("/dev/pts", "devpts", "devpts",
                                     "nosuid,noexec,newinstance,ptmxmode=0666,mode=0620,gid=5"));
    int64_t shm = js_int(lp, "sharedMemorySize", 64);
    char shmopts[96];
    snprintf(shmopts, sizeof(shmopts), "nosuid,noexec,nodev,mode=1777,size=%lldm", (long long) shm);
    if (!s->ipc_ns_path && !s->host_ipc)
        json_array_append_new(mounts, mount_json("/dev/shm", "tmpfs", "shm", shmopts));
    json_array_append_new(mounts,
                          mount_json("/dev/mqueue", "mqueue", "mqueue", "nosuid,noexec,nodev"));
    json_array_append_new(
            mounts, mount_json("/sys", "sysfs", "sysfs",
                               privileged ? "nosuid,noexec,nodev" : "nosuid,noexec,nodev,ro"));
    json_array_append_new(mounts, mount_json("/sys/fs/cgroup", "cgroup", "cgroup",
                                             privileged ? "nosuid,noexec,nodev,relatime"
                                                        : "nosuid,noexec,nodev,relatime,ro"));
    for (size_t i = 0; i < s->nmounts; i++) {
        const rt_mount_spec *m = &s->mounts[i];
        bool tmpfs = m->type && streq(m->type, "tmpfs");
        sk_buf o;
        sk_buf_init(&o, 4096);
        sk_buf_puts(&o, tmpfs ? "nosuid,nodev" : "rbind,rprivate");
        sk_buf_puts(&o, m->readonly ? ",ro" : ",rw");
        if (m->options && *m->options) {
            sk_buf_putc(&o, ',');
            sk_buf_puts(&o, m->options);
        }
        json_array_append_new(mounts, mount_json(m->destination, tmpfs ? "tmpfs" : "bind",
                                                 tmpfs ? "tmpfs" : m->source, o.data));
        sk_buf_done(&o);
    }
    size_t i;
    json_t *t;
    json_array_foreach(js_arr(lp, "tmpfs"), i, t) {
        const char *path = js_str(t, "containerPath");
        if (!path || path[0] != '/')
            continue;
        sk_buf o;
        sk_buf_init(&o, 4096);
        sk_buf_printf(&o, "nosuid,nodev,size=%lldm", (long long) js_int(t, "size", 64));
        size_t j;
        json_t *mo;
        json_array_foreach(js_arr(t, "mountOptions"), j, mo) {
            if (json_is_string(mo) && !strchr(json_string_value(mo), ','))
                sk_buf_printf(&o, ",%s", json_string_value(mo));
        }
        json_array_append_new(mounts, mount_json(path, "tmpfs", "tmpfs", o.data));
        sk_buf_done(&o);
    }
    if (js_bool(lp, "initProcessEnabled", false))
        json_array_append_new(mounts,
                              mount_json("/sbin/docker-init", "bind", s->init_path, "rbind,ro"));
    js_set(cfg, "mounts", mounts);

    json_t *lnx = json_object();
    json_t *ns = json_array();
    json_array_append_new(ns, json_pack("{s:s}", "type", "mount"));
    json_array_append_new(ns, json_pack("{s:s}", "type", "uts"));
    if (!s->host_pid) {
        json_t *p = json_pack("{s:s}", "type", "pid");
        if (s->pid_ns_path)
            js_set_str(p, "path", s->pid_ns_path);
        json_array_append_new(ns, p);
    }
    if (!s->host_ipc) {
        json_t *p = json_pack("{s:s}", "type", "ipc");
        if (s->ipc_ns_path)
            js_set_str(p, "path", s->ipc_ns_path);
        json_array_append_new(ns, p);
    }
    if (!s->host_network) {
        json_t *p = json_pack("{s:s}", "type", "network");
        if (s->netns_path)
            js_set_str(p, "path", s->netns_path);
        json_array_append_new(ns, p);
    }
    js_set(lnx, "namespaces", ns);
    if (s->cgroup_path)
        js_set_str(lnx, "cgroupsPath", s->cgroup_path);
    json_t *res = json_object();
    int64_t cpu = js_int(c, "cpu", 0);
    int64_t shares = cpu < 2 ? 2 : cpu > 262144 ? 262144 : cpu;
    js_set(res, "cpu", json_pack("{s:I}", "shares", (json_int_t) shares));
    json_t *mem = json_object();
    if (js_int(c, "memory", 0) > 0)
        js_set_int(mem, "limit", js_int(c, "memory", 0) * 1024 * 1024);
    if (js_int(c, "memoryReservation", 0) > 0)
        js_set_int(mem, "reservation", js_int(c, "memoryReservation", 0) * 1024 * 1024);
    if (js_has(lp, "swappiness"))
        js_set_int(mem, "swappiness", js_int(lp, "swappiness", 60));
    if (json_object_size(mem))
        js_set(res, "memory", mem);
    else
        json_decref(mem);
    if (s->pids_limit > 0)
        js_set(res, "pids", json_pack("{s:I}", "limit", (json_int_t) s->pids_limit));
    json_t *devices = json_array();
    if (privileged)
        json_array_append_new(devices, json_pack("{s:b, s:s}", "allow", true, "access", "rwm"));
    else {
        json_array_append_new(devices, json_pack("{s:b, s:s}", "allow", false, "access", "rwm"));
        /* runc adds the standard devices (null, zero, full, random, urandom, tty, ptmx) itself. */
    }
    json_t *devs = json_array();
    json_array_foreach(js_arr(lp, "devices"), i, t) {
        const char *hp = js_str(t, "hostPath");
        const char *cp = js_str_or(t, "containerPath", hp);
        struct stat st;
        if (!hp || stat(hp, &st) < 0 || !(S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode)))
            continue;
        unsigned maj = major(st.st_rdev), min = minor(st.st_rdev);
        json_array_append_new(devs, json_pack("{s:s, s:s, s:I, s:I, s:i}", "path", cp, "type",
                                              S_ISCHR(st.st_mode) ? "c" : "b", "major",
                                              (json_int_t) maj, "minor", (json_int_t) min,
                                              "fileMode", (int) (st.st_mode & 0777)));
        json_array_append_new(devices,
                              json_pack("{s:b, s:s, s:I, s:I, s:s}", "allow", true, "type",
                                        S_ISCHR(st.st_mode) ? "c" : "b", "major", (json_int_t) maj,
                                        "minor", (json_int_t) min, "access", "rwm"));
    }
    js_set(res, "devices", devices);
    js_set(lnx, "resources", res);
    if (json_array_size(devs))
        js_set(lnx, "devices", devs);
    else
        json_decref(devs);
    json_t *sysctl = json_object();
    json_array_foreach(js_arr(c, "systemControls"), i, t) {
        const char *n = js_str(t, "namespace"), *v = js_str(t, "value");
        if (n && v)
            js_set_str(sysctl, n, v);
    }
    if (json_object_size(sysctl))
        js_set(lnx, "sysctl", sysctl);
    else
        json_decref(sysctl);
    if (!privileged) {
        json_t *mp = json_array(), *rp = json_array();
        for (size_t k = 0; k < ELEMENTSOF(masked_paths); k++)
            json_array_append_new(mp, json_string(masked_paths[k]));
        for (size_t k = 0; k < ELEMENTSOF(readonly_paths); k++)
            json_array_append_new(rp, json_string(readonly_paths[k]));
        js_set(lnx, "maskedPaths", mp);
        js_set(lnx, "readonlyPaths", rp);
        json_t *sc = rt_seccomp_convert(s->seccomp_profile, caps);
        if (sc)
            js_set(lnx, "seccomp", sc);
    }
    json_decref(caps);
    js_set(cfg, "linux", lnx);
    json_t *labels = js_obj(c, "dockerLabels");
    if (labels && json_object_size(labels))
        js_set(cfg, "annotations", json_deep_copy(labels));
    *ret = cfg;
    return 0;
}

int rt_overlay_mount(char *const *lowers, size_t nlowers, const char *upper, const char *work,
                     const char *target, sk_err *err)
{
    if (nlowers == 0)
        return sk_err_set(err, SK_E_INVALID, "overlay needs at least one lower dir");
    sk_buf o;
    sk_buf_init(&o, 4095);
    sk_buf_puts(&o, "lowerdir=");
    /* overlayfs lists lowerdirs top-most first. */
    for (size_t i = nlowers; i-- > 0;) {
        if (strchr(lowers[i], ',') || strchr(lowers[i], ':')) {
            sk_buf_done(&o);
            return sk_err_set(err, SK_E_INVALID, "layer path '%s' cannot be used with overlayfs",
                              lowers[i]);
        }
        sk_buf_puts(&o, lowers[i]);
        if (i)
            sk_buf_putc(&o, ':');
    }
    if (sk_buf_printf(&o, ",upperdir=%s,workdir=%s", upper, work) < 0) {
        sk_buf_done(&o);
        return sk_err_set(err, SK_E_LIMIT, "too many layers for one overlay mount");
    }
    int r = mount("overlay", target, "overlay", 0, o.data);
    sk_buf_done(&o);
    if (r < 0)
        return sk_err_sys(err, errno, "mount overlay on '%s'", target);
    return 0;
}

int rt_umount(const char *target)
{
    if (umount2(target, MNT_DETACH) < 0 && errno != EINVAL && errno != ENOENT)
        return -errno;
    return 0;
}

bool rt_is_mountpoint(const char *path)
{
    struct stat a, b;
    if (stat(path, &a) < 0)
        return false;
    char *parent = xasprintf("%s/..", path);
    int r = stat(parent, &b);
    free(parent);
    if (r < 0)
        return false;
    return a.st_dev != b.st_dev || a.st_ino == b.st_ino;
}
