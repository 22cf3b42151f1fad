/* Image pulls: one worker process (`skiff image-pull`) per image reference,
 * shared by every container waiting for it, following
 * ECS_IMAGE_PULL_BEHAVIOR. The worker is a fresh exec, so the agent never
 * runs libcurl's resolver threads in a process that forks. */
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent-internal.h"
#include "agent.h"
#include "basic/alloc.h"
#include "basic/fileutil.h"
#include "basic/log.h"
#include "basic/rand.h"
#include "basic/strutil.h"
#include "runtime/proc.h"

static bool cached(agent *a, const char *ref)
{
    img_image *img = NULL;
    sk_err err = { 0 };
    bool ok = img_lookup(a->images, ref, &img, &err) == 0;
    img_image_free(img);
    sk_err_done(&err);
    return ok;
}

static void job_free(pull_job *j)
{
    ev_io_remove(j->io);
    if (j->pidfd >= 0)
        close(j->pidfd);
    if (j->errfile) {
        unlink(j->errfile);
        free(j->errfile);
    }
    sk_vec_done(&j->waiters, NULL);
    free(j->ref);
    free(j);
}

static char *last_line(const char *path)
{
    char *data = NULL;
    if (read_full_file(path, 1 << 20, &data, NULL) < 0)
        return xstrdup("image pull failed");
    strstrip(data);
    char *nl = strrchr(data, '\n');
    char *line = xstrdup(nl ? nl + 1 : data);
    free(data);
    const char *p = startswith(line, "skiff-image-pull: ");
    if (p) {
        char *s = xstrdup(p);
        free(line);
        line = s;
    }
    if (!*line) {
        free(line);
        return xstrdup("image pull failed");
    }
    return line;
}

static void on_pull_exit(ev_io *io, int fd, uint32_t events, void *userdata)
{
    pull_job *j = userdata;
    agent *a = j->agent;
    int status = 1;
    rt_proc_reap(j->pid, &status);
    sk_hmap_remove(&a->pulls, j->ref);
    _cleanup_free_ char *error = NULL;
    if (status != 0) {
        error = last_line(j->errfile);
        if (a->cfg.pull_behavior == PULL_DEFAULT && cached(a, j->ref)) {
            log_warn("pull %s failed (%s); using the cached image", j->ref, error);
            free(error);
            error = NULL;
        }
    } else
        log_info("pulled %s", j->ref);
    sk_vec waiters = j->waiters;
    j->waiters = (sk_vec){ 0 };
    job_free(j);
    for (size_t i = 0; i < waiters.len; i++)
        agent_task_image_ready(waiters.items[i], error);
    sk_vec_done(&waiters, NULL);
}

void agent_pull_request(agent *a, agent_container *c)
{
    if (a->cfg.simulated) {
        agent_sim_pull(c);
        return;
    }
    const char *ref = c->image;
    if ((a->cfg.pull_behavior == PULL_ONCE || a->cfg.pull_behavior == PULL_PREFER_CACHED) &&
        cached(a, ref)) {
        agent_task_image_ready(c, NULL);
        return;
    }
    pull_job *j = sk_hmap_get(&a->pulls, ref);
    if (j) {
        sk_vec_push(&j->waiters, c);
        return;
    }
    j = xcalloc(1, sizeof(*j));
    j->agent = a;
    j->ref = xstrdup(ref);
    j->pidfd = -1;
    char hex[17];
    random_hex(hex, 16);
    _cleanup_free_ char *tmp = agent_state_path(a, "tmp");
    mkdir_p(tmp, 0700);
    j->errfile = xasprintf("%s/pull-%s.err", tmp, hex);
    int efd = open(j->errfile, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    _cleanup_free_ char *store = agent_state_path(a, "images");
    char *argv[] = { a->self_exe,
                     (char *) "image-pull",
                     (char *) "--store",
                     store,
                     (char *) "--ref",
                     j->ref,
                     (char *) "--insecure",
                     a->cfg.insecure_registries ? a->cfg.insecure_registries : (char *) "",
                     NULL };
    sk_err err = { 0 };
    int r = rt_proc_spawn(argv, NULL, -1, efd, &j->pid, &j->pidfd, &err);
    if (efd >= 0)
        close(efd);
    if (r < 0) {
        _cleanup_free_ char *msg = xstrdup(sk_err_msg(&err));
        sk_err_done(&err);
        job_free(j);
        agent_task_image_ready(c, msg);
        return;
    }
    sk_vec_push(&j->waiters, c);
    sk_hmap_put(&a->pulls, j->ref, j);
    j->io = ev_io_add(a->loop, j->pidfd, EPOLLIN, on_pull_exit, j);
    log_info("pulling %s", j->ref);
}

int agent_image_pull_main(int argc, char **argv)
{
    static const struct option longopts[] = {
        { "store", required_argument, NULL, 's' },
        { "ref", required_argument, NULL, 'r' },
        { "insecure", required_argument, NULL, 'i' },
        { 0 },
    };
    const char *store = NULL, *ref = NULL, *insecure = NULL;
    int ch;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (ch) {
        case 's':
            store = optarg;
            break;
        case 'r':
            ref = optarg;
            break;
        case 'i':
            insecure = optarg;
            break;
        default:
            fprintf(stderr, "skiff-image-pull: bad arguments\n");
            return 2;
        }
    }
    if (!store || !ref) {
        fprintf(stderr, "skiff-image-pull: --store and --ref are required\n");
        return 2;
    }
    img_store *s = NULL;
    sk_err err = { 0 };
    if (img_store_open(store, &s, &err) < 0) {
        fprintf(stderr, "skiff-image-pull: %s\n", sk_err_msg(&err));
        return 1;
    }
    img_pull_opts o = {
        .ref = ref,
        .username = getenv("SKIFF_PULL_USERNAME"),
        .password = getenv("SKIFF_PULL_PASSWORD"),
        .insecure_registries = insecure && *insecure ? insecure : NULL,
        .parallel = 4,
    };
    int r = img_pull(s, &o, &err);
    if (r < 0)
        fprintf(stderr, "skiff-image-pull: %s\n", sk_err_msg(&err));
    sk_err_done(&err);
    img_store_close(s);
    return r < 0 ? 1 : 0;
}
