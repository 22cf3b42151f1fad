/* Helpers for the privileged runtime tests: a busybox root filesystem, OCI
 * bundles generated from `runc spec`, and running runc. Header-only (static
 * functions) so each test program stays a single file. */
#pragma once

#include <dirent.h>
#include <fcntl.h>
#include <jansson.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "basic/alloc.h"
#include "basic/fileutil.h"
#include "basic/strutil.h"
#include "shared/jsonutil.h"

#define OCI_RUNC    "/usr/sbin/runc"
#define OCI_BUSYBOX "/bin/busybox"

/* Runs argv with stdout/stderr to /dev/null (or into out, up to outmax-1
 * bytes, when out is set); returns the exit status, -1 if it did not exit. */
static inline int oci_run(const char *const *argv, char *out, size_t outmax)
{
    int p[2] = { -1, -1 };
    if (out && pipe2(p, O_CLOEXEC) < 0)
        return -1;
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        int nul = open("/dev/null", O_RDWR | O_CLOEXEC);
        dup2(nul, 0);
        dup2(out ? p[1] : nul, 1);
        dup2(out ? p[1] : nul, 2);
        execvp(argv[0], (char *const *) argv);
        _exit(127);
    }
    if (out) {
        close(p[1]);
        size_t n = 0;
        ssize_t k;
        while (n + 1 < outmax && (k = read(p[0], out + n, outmax - 1 - n)) > 0)
            n += (size_t) k;
        out[n] = '\0';
        char sink[4096];
        while (read(p[0], sink, sizeof(sink)) > 0)
            ;
        close(p[0]);
    }
    int st;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR)
            return -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static inline bool oci_available(const char **why)
{
    if (geteuid() != 0) {
        *why = "needs root";
        return false;
    }
    if (access(OCI_RUNC, X_OK) != 0) {
        *why = "needs runc";
        return false;
    }
    if (access(OCI_BUSYBOX, X_OK) != 0) {
        *why = "needs busybox-static";
        return false;
    }
    return true;
}

/* dir/bin/busybox plus applet symlinks, and empty mount points. */
static inline int oci_rootfs_create(const char *dir)
{
    static const char *const subdirs[] = { "bin", "proc", "sys", "dev", "tmp", "etc", "www" };
    static const char *const applets[] = { "sh",   "echo",  "sleep",  "cat",     "head",
                                           "tr",   "httpd", "nc",     "yes",     "seq",
                                           "true", "false", "printf", "ls",      "wget",
                                           "kill", "env",   "ip",     "ifconfig" };
    if (mkdir_p(dir, 0755) < 0)
        return -1;
    for (size_t i = 0; i < ELEMENTSOF(subdirs); i++) {
        _cleanup_free_ char *p = path_join(dir, subdirs[i]);
        if (mkdir_p(p, 0755) < 0)
            return -1;
    }
    _cleanup_free_ char *data = NULL;
    size_t len = 0;
    if (read_full_file(OCI_BUSYBOX, 64 << 20, &data, &len) < 0)
        return -1;
    _cleanup_free_ char *bb = path_join(dir, "bin/busybox");
    int fd = open(bb, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0755);
    if (fd < 0 || write_all(fd, data, len) < 0) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    close(fd);
    for (size_t i = 0; i < ELEMENTSOF(applets); i++) {
        _cleanup_free_ char *ln = xasprintf("%s/bin/%s", dir, applets[i]);
        if (symlink("busybox", ln) < 0 && errno != EEXIST)
            return -1;
    }
    return 0;
}

/* Writes bundle/config.json: `runc spec` defaults, read-only rootfs at
 * rootfs (absolute), no terminal, args, and when netns is set, that network
 * namespace instead of a new one. */
static inline int oci_bundle_create(const char *bundle, const char *rootfs, const char *const *args,
                                    const char *netns)
{
    if (mkdir_p(bundle, 0755) < 0)
        return -1;
    _cleanup_free_ char *cfg = path_join(bundle, "config.json");
    unlink(cfg);
    const char *spec[] = { OCI_RUNC, "spec", "--bundle", bundle, NULL };
    if (oci_run(spec, NULL, 0) != 0)
        return -1;
    json_error_t jerr;
    _cleanup_json_ json_t *j = json_load_file(cfg, 0, &jerr);
    if (!j)
        return -1;
    json_t *proc = js_obj(j, "process");
    json_t *root = js_obj(j, "root");
    json_t *linux_ = js_obj(j, "linux");
    if (!proc || !root || !linux_)
        return -1;
    js_set_bool(proc, "terminal", false);
    json_t *a = json_array();
    for (size_t i = 0; args[i]; i++)
        json_array_append_new(a, json_string(args[i]));
    js_set(proc, "args", a);
    js_set_str(root, "path", rootfs);
    js_set_bool(root, "readonly", true);
    json_t *nss = js_arr(linux_, "namespaces");
    size_t i;
    json_t *ns;
    json_array_foreach(nss, i, ns) {
        if (streq_ptr(js_str(ns, "type"), "network") && netns)
            js_set_str(ns, "path", netns);
    }
    return json_dump_file(j, cfg, JSON_INDENT(2)) == 0 ? 0 : -1;
}

/* `runc delete --force`, ignoring errors. */
static inline void oci_delete(const char *root, const char *id)
{
    const char *argv[] = { OCI_RUNC, "--root", root, "delete", "--force", id, NULL };
    (void) oci_run(argv, NULL, 0);
}
