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
#include "shared/digest.h"
#include "shared/jsonutil.h"

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

/* ACCOUNT.dkr.ecr.REGION.amazonaws.com[:port] → region. */
static bool ecr_host(const char *host, char *region, size_t n)
{
    size_t i = 0;
    while (host[i] >= '0' && host[i] <= '9')
        i++;
    if (i != 12)
        return false;
    const char *p = startswith(host + 12, ".dkr.ecr.");
    if (!p)
        return false;
    const char *end = strstr(p, ".amazonaws.com");
    if (!end || end == p || (size_t) (end - p) >= n)
        return false;
    memcpy(region, p, (size_t) (end - p));
    region[end - p] = 0;
    return true;
}

static void spawn_pull(agent *a, agent_container *c, const char *password, const char *rewrite);

static ecr_token *token_for(agent *a, const char *region)
{
    for (size_t i = 0; i < a->ecr_tokens.len; i++) {
        ecr_token *t = a->ecr_tokens.items[i];
        if (streq(t->region, region))
            return t;
    }
    ecr_token *t = xcalloc(1, sizeof(*t));
    t->region = xstrdup(region);
    sk_vec_push(&a->ecr_tokens, t);
    return t;
}

typedef struct token_req {
    agent *a;
    ecr_token *t;
} token_req;

static void token_done(void *userdata, long status, json_t *resp, const char *type, const char *msg)
{
    token_req *tr = userdata;
    agent *a = tr->a;
    ecr_token *t = tr->t;
    free(tr);
    t->fetching = false;
    _cleanup_free_ char *error = NULL;
    json_t *ad = json_array_get(js_arr(resp, "authorizationData"), 0);
    const char *b64 = js_str(ad, "authorizationToken");
    uint8_t *raw = NULL;
    size_t rlen = 0;
    if (status != 200 || !b64 || base64_decode(b64, strlen(b64), &raw, &rlen) < 0 ||
        !startswith((char *) raw, "AWS:"))
        error = xasprintf("could not get an ECR authorization token: %s: %s", type ? type : "error",
                          msg ? msg : "bad response");
    else {
        free(t->password);
        t->password = xstrdup((char *) raw + 4);
        double exp = json_number_value(json_object_get(ad, "expiresAt"));
        t->expires = exp > 0 ? (usec_t) (exp * 1e6) : now_realtime() + 3600 * USEC_PER_SEC;
    }
    if (raw)
        explicit_bzero(raw, rlen);
    free(raw);
    sk_vec waiters = t->waiters;
    t->waiters = (sk_vec){ 0 };
    for (size_t i = 0; i < waiters.len; i++) {
        agent_container *c = waiters.items[i];
        if (error)
            agent_task_image_ready(c, error);
        else
            agent_pull_request(a, c);
    }
    sk_vec_done(&waiters, NULL);
}

void agent_pull_request(agent *a, agent_container *c)
{
    if (a->cfg.simulated) {
        agent_sim_pull(c);
        return;
    }
    /* Images from ECR (or from skiff's own registry) authenticate with an ECR
     * token and are fetched from the server that issued it. */
    img_ref parts;
    sk_err perr = { 0 };
    if (img_ref_parse(c->image, &parts, &perr) < 0) {
        sk_err_done(&perr);
        spawn_pull(a, c, NULL, NULL);
        return;
    }
    char region[64] = "";
    bool ecr = ecr_host(parts.registry, region, sizeof(region));
    bool own = streq(parts.registry, agent_api_host(a->api));
    if (own)
        snprintf(region, sizeof(region), "%s", a->cfg.region);
    _cleanup_free_ char *rewrite =
            ecr ? xasprintf("%s=%s", parts.registry, agent_api_host(a->api)) : NULL;
    img_ref_done(&parts);
    if (!ecr && !own) {
        spawn_pull(a, c, NULL, NULL);
        return;
    }
    ecr_token *t = token_for(a, region);
    if (t->password && t->expires > now_realtime() + 5 * 60 * USEC_PER_SEC) {
        spawn_pull(a, c, t->password, rewrite);
        return;
    }
    sk_vec_push(&t->waiters, c);
    if (t->fetching)
        return;
    t->fetching = true;
    token_req *tr = xcalloc(1, sizeof(*tr));
    *tr = (token_req){ a, t };
    agent_api_call_in(a->api, region, "ecr",
                      "AmazonEC2ContainerRegistry_V20150921.GetAuthorizationToken", json_object(),
                      30 * USEC_PER_SEC, token_done, tr);
}

static void spawn_pull(agent *a, agent_container *c, const char *password, const char *rewrite)
{
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
    /* skiff's own registry is served over the server's (plain HTTP) listener. */
    _cleanup_free_ char *insecure =
            xasprintf("%s%s%s", a->cfg.insecure_registries ? a->cfg.insecure_registries : "",
                      a->cfg.insecure_registries ? "," : "",
                      agent_api_is_https(a->api) ? "" : agent_api_host(a->api));
    char *argv[] = { a->self_exe,
                     (char *) "image-pull",
                     (char *) "--store",
                     store,
                     (char *) "--ref",
                     j->ref,
                     (char *) "--insecure",
                     insecure,
                     (char *) "--rewrite",
                     (char *) (rewrite ? rewrite : ""),
                     NULL };
    /* Credentials travel in the environment, never on the command line. */
    extern char **environ;
    size_t ne = 0;
    while (environ[ne])
        ne++;
    char **envp = xcalloc(ne + 3, sizeof(char *));
    size_t k = 0;
    for (size_t i = 0; i < ne; i++)
        if (!startswith(environ[i], "SKIFF_PULL_"))
            envp[k++] = environ[i];
    char *e1 = password ? xstrdup("SKIFF_PULL_USERNAME=AWS") : NULL;
    char *e2 = password ? xasprintf("SKIFF_PULL_PASSWORD=%s", password) : NULL;
    if (password) {
        envp[k++] = e1;
        envp[k++] = e2;
    }
    envp[k] = NULL;
    sk_err err = { 0 };
    int r = rt_proc_spawn(argv, envp, -1, efd, &j->pid, &j->pidfd, &err);
    free(envp);
    free(e1);
    if (e2)
        explicit_bzero(e2, strlen(e2));
    free(e2);
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

static const char *rewrite_pair[2];

static const char *rewrite_cb(void *userdata, const char *host)
{
    const char *const *pair = userdata;
    return pair[0] && streq(host, pair[0]) ? pair[1] : NULL;
}

int agent_image_pull_main(int argc, char **argv)
{
    static const struct option longopts[] = {
        { "store", required_argument, NULL, 's' },
        { "ref", required_argument, NULL, 'r' },
        { "insecure", required_argument, NULL, 'i' },
        { "rewrite", required_argument, NULL, 'w' },
        { 0 },
    };
    const char *store = NULL, *ref = NULL, *insecure = NULL, *rewrite = NULL;
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
        case 'w':
            rewrite = optarg;
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
    /* --rewrite FROM=TO: fetch FROM's images from TO (ECR hosts → the server). */
    _cleanup_free_ char *from = NULL;
    if (rewrite && strchr(rewrite, '=')) {
        const char *eq = strchr(rewrite, '=');
        from = xstrndup(rewrite, (size_t) (eq - rewrite));
        rewrite_pair[0] = from;
        rewrite_pair[1] = eq + 1;
        o.rewrite_host = rewrite_cb;
        o.rewrite_userdata = rewrite_pair;
    }
    int r = img_pull(s, &o, &err);
    if (r < 0)
        fprintf(stderr, "skiff-image-pull: %s\n", sk_err_msg(&err));
    sk_err_done(&err);
    img_store_close(s);
    return r < 0 ? 1 : 0;
}
