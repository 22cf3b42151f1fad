#include "runc.h"

#include <string.h>

#include "basic/alloc.h"
#include "basic/strutil.h"
#include "proc.h"

#define RUNTIME_TIMEOUT (30 * USEC_PER_SEC)

static bool gone(const char *msg)
{
    return msg && (strstr(msg, "does not exist") || strstr(msg, "not found") ||
                   strstr(msg, "no such file") || strstr(msg, "container not running") ||
                   strstr(msg, "process already finished"));
}

static int run(const rt_runtime *rt, char **argv, sk_err *err)
{
    rt_proc_result res = { 0 };
    if (rt_proc_run(argv, NULL, NULL, 0, 64 * 1024, RUNTIME_TIMEOUT, &res, err) < 0)
        return -1;
    int r = 0;
    if (res.status != 0 && !gone(res.err)) {
        char *msg = res.err ? strstrip(res.err) : NULL;
        r = sk_err_set(err, SK_E_SYSTEM, "%s %s: %s", rt->path, argv[3],
                       msg && *msg ? msg : "failed");
    }
    rt_proc_result_done(&res);
    return r;
}

int rt_runtime_kill(const rt_runtime *rt, const char *id, const char *signal, sk_err *err)
{
    char *argv[] = { (char *) rt->path,
                     (char *) "--root",
                     (char *) rt->root,
                     (char *) "kill",
                     (char *) id,
                     (char *) signal,
                     NULL };
    return run(rt, argv, err);
}

int rt_runtime_delete(const rt_runtime *rt, const char *id, bool force, sk_err *err)
{
    char *argv[] = { (char *) rt->path,
                     (char *) "--root",
                     (char *) rt->root,
                     (char *) "delete",
                     force ? (char *) "--force" : (char *) id,
                     force ? (char *) id : NULL,
                     NULL };
    return run(rt, argv, err);
}

bool rt_runtime_exists(const rt_runtime *rt, const char *id)
{
    char *argv[] = { (char *) rt->path, (char *) "--root", (char *) rt->root,
                     (char *) "state",  (char *) id,       NULL };
    rt_proc_result res = { 0 };
    if (rt_proc_run(argv, NULL, NULL, 0, 64 * 1024, RUNTIME_TIMEOUT, &res, NULL) < 0)
        return false;
    bool ok = res.status == 0;
    rt_proc_result_done(&res);
    return ok;
}

char **rt_runtime_exec_argv(const rt_runtime *rt, const char *id, char *const *cmd, size_t ncmd)
{
    char **argv = xcalloc(ncmd + 6, sizeof(char *));
    size_t n = 0;
    argv[n++] = xstrdup(rt->path);
    argv[n++] = xstrdup("--root");
    argv[n++] = xstrdup(rt->root);
    argv[n++] = xstrdup("exec");
    argv[n++] = xstrdup(id);
    for (size_t i = 0; i < ncmd; i++)
        argv[n++] = xstrdup(cmd[i]);
    argv[n] = NULL;
    return argv;
}

void rt_argv_free(char **argv)
{
    if (!argv)
        return;
    for (char **p = argv; *p; p++)
        free(*p);
    free(argv);
}
