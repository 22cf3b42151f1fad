/* `skiff server`: the control plane on the event loop, with the embedded
 * store and (unless --no-agent) an embedded node agent process. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "basic/alloc.h"
#include "basic/fileutil.h"
#include "basic/log.h"
#include "basic/strutil.h"
#include "cli.h"
#include "controlplane/cp.h"
#include "logs/logs.h"
#include "registry/registry.h"
#include "runtime/proc.h"
#include "shared/aws.h"
#include "shared/event.h"
#include "shared/http.h"
#include "store/store.h"

typedef struct server_opts {
    const char *listen;
    const char *data;
    const char *account_id;
    const char *region;
    const char *advertise;
    const char *registry_host;
    bool no_agent;
} server_opts;

static void usage(FILE *f)
{
    fprintf(f, "usage: skiff server [--listen HOST:PORT] [--data DIR] [--account-id 12DIGITS]\n"
               "                    [--region NAME] [--advertise-url URL] [--no-agent]\n"
               "\n"
               "  --listen       address to serve the AWS APIs on (default 127.0.0.1:4566)\n"
               "  --data         state directory (default: $SKIFF_DATA, else /var/lib/skiff as\n"
               "                 root, else $XDG_DATA_HOME/skiff or ~/.local/share/skiff)\n"
               "  --account-id   AWS account id used in ARNs (default 000000000000)\n"
               "  --region       default region (default us-east-1)\n"
               "  --advertise-url URL agents use to reach this server (default http://LISTEN)\n"
               "  --no-agent     do not run the embedded node agent\n"
               "  --registry-host HOST:PORT  registry host for repositoryUri and proxyEndpoint\n"
               "                 (default: $SKIFF_REGISTRY_HOST, else the --listen address)\n");
}

char *skiff_default_data_dir(void)
{
    const char *e = getenv("SKIFF_DATA");
    if (e && *e)
        return xstrdup(e);
    if (geteuid() == 0)
        return xstrdup("/var/lib/skiff");
    const char *x = getenv("XDG_DATA_HOME");
    if (x && *x)
        return xasprintf("%s/skiff", x);
    const char *h = getenv("HOME");
    return xasprintf("%s/.local/share/skiff", h ? h : "/tmp");
}

static bool account_ok(const char *s)
{
    if (strlen(s) != 12)
        return false;
    for (const char *p = s; *p; p++)
        if (*p < '0' || *p > '9')
            return false;
    return true;
}

/* The embedded node agent: a child process speaking the same signed API as a
 * remote agent, restarted with backoff if it exits. */
typedef struct embedded_agent {
    ev_loop *loop;
    char *exe;
    char *url;
    char *data;
    char *region;
    char *access_key;
    char *secret;
    pid_t pid;
    int pidfd;
    ev_io *io;
    ev_timer *restart;
    unsigned backoff;
    usec_t started;
    bool stopping;
} embedded_agent;

static void agent_spawn(embedded_agent *ea);

static void on_agent_exit(ev_io *io, int fd, uint32_t events, void *userdata)
{
    embedded_agent *ea = userdata;
    int status = 0;
    rt_proc_reap(ea->pid, &status);
    ev_io_remove(ea->io);
    ea->io = NULL;
    close(ea->pidfd);
    ea->pidfd = -1;
    ea->pid = 0;
    if (ea->stopping)
        return;
    if (now_monotonic() - ea->started > 60 * USEC_PER_SEC)
        ea->backoff = 0;
    ea->backoff = ea->backoff ? MIN(ea->backoff * 2, 30u) : 1;
    log_warn("embedded agent exited with status %d; restarting in %us", status, ea->backoff);
    ev_timer_arm_in(ea->restart, (usec_t) ea->backoff * USEC_PER_SEC);
}

static void on_agent_restart(ev_timer *t, void *userdata)
{
    agent_spawn(userdata);
}

static void agent_spawn(embedded_agent *ea)
{
    extern char **environ;
    size_t n = 0;
    while (environ[n])
        n++;
    char **envp = xcalloc(n + 8, sizeof(char *));
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (!startswith(environ[i], "AWS_ACCESS_KEY_ID=") &&
            !startswith(environ[i], "AWS_SECRET_ACCESS_KEY=") &&
            !startswith(environ[i], "AWS_SESSION_TOKEN=") &&
            !startswith(environ[i], "AWS_PROFILE="))
            envp[k++] = environ[i];
    char *e1 = xasprintf("AWS_ACCESS_KEY_ID=%s", ea->access_key);
    char *e2 = xasprintf("AWS_SECRET_ACCESS_KEY=%s", ea->secret);
    char *e3 = xasprintf("AWS_DEFAULT_REGION=%s", ea->region);
    envp[k++] = e1;
    envp[k++] = e2;
    envp[k++] = e3;
    if (!getenv("SKIFF_CAPACITY"))
        envp[k++] = (char *) "SKIFF_CAPACITY=EC2,FARGATE";
    envp[k] = NULL;
    char *argv[] = { ea->exe,
                     (char *) "agent",
                     (char *) "--server",
                     ea->url,
                     (char *) "--cluster",
                     (char *) "default",
                     (char *) "--data",
                     ea->data,
                     NULL };
    sk_err err = { 0 };
    int r = rt_proc_spawn(argv, envp, STDERR_FILENO, STDERR_FILENO, &ea->pid, &ea->pidfd, &err);
    explicit_bzero(e2, strlen(e2));
    free(e1);
    free(e2);
    free(e3);
    free(envp);
    if (r < 0) {
        log_error("start embedded agent: %s", sk_err_msg(&err));
        sk_err_done(&err);
        ev_timer_arm_in(ea->restart, 5 * USEC_PER_SEC);
        return;
    }
    ea->started = now_monotonic();
    ea->io = ev_io_add(ea->loop, ea->pidfd, EPOLLIN, on_agent_exit, ea);
}

static void agent_stop(embedded_agent *ea)
{
    ea->stopping = true;
    ev_timer_free(ea->restart);
    ea->restart = NULL;
    if (ea->pid > 0) {
        kill(ea->pid, SIGTERM);
        struct pollfd pfd = { .fd = ea->pidfd, .events = POLLIN };
        if (poll(&pfd, 1, 10000) <= 0)
            kill(ea->pid, SIGKILL);
        rt_proc_reap(ea->pid, NULL);
        ea->pid = 0;
    }
    ev_io_remove(ea->io);
    if (ea->pidfd >= 0)
        close(ea->pidfd);
    free(ea->exe);
    free(ea->url);
    free(ea->data);
    free(ea->region);
    free(ea->access_key);
    if (ea->secret)
        explicit_bzero(ea->secret, strlen(ea->secret));
    free(ea->secret);
}

static void on_term(ev_loop *loop, int signo, void *userdata)
{
    log_info("signal %d: shutting down", signo);
    ev_loop_quit(loop, 0);
}

typedef struct server_hold {
    store *st;
    logs_service *logs;
} server_hold;

/* Responses wait until every write of the iteration is durable. */
static bool hold_responses(void *userdata)
{
    server_hold *h = userdata;
    return store_dirty(h->st) || (h->logs && logs_dirty(h->logs));
}

int skiff_server_main(int argc, char **argv)
{
    static const struct option longopts[] = {
        { "listen", required_argument, NULL, 'l' },
        { "data", required_argument, NULL, 'd' },
        { "account-id", required_argument, NULL, 'a' },
        { "region", required_argument, NULL, 'r' },
        { "advertise-url", required_argument, NULL, 'A' },
        { "no-agent", no_argument, NULL, 'n' },
        { "registry-host", required_argument, NULL, 'R' },
        { "help", no_argument, NULL, 'h' },
        { 0 },
    };
    server_opts o = { .listen = "127.0.0.1:4566",
                      .account_id = "000000000000",
                      .region = "us-east-1" };
    int ch;
    while ((ch = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (ch) {
        case 'l':
            o.listen = optarg;
            break;
        case 'd':
            o.data = optarg;
            break;
        case 'a':
            o.account_id = optarg;
            break;
        case 'r':
            o.region = optarg;
            break;
        case 'A':
            o.advertise = optarg;
            break;
        case 'n':
            o.no_agent = true;
            break;
        case 'R':
            o.registry_host = optarg;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        usage(stderr);
        return 2;
    }
    if (!account_ok(o.account_id)) {
        log_error("--account-id must be 12 digits");
        return 2;
    }
    _cleanup_free_ char *data = o.data ? xstrdup(o.data) : skiff_default_data_dir();
    int r = mkdir_p(data, 0700);
    if (r < 0) {
        log_error("create data dir '%s': %s", data, strerror(-r));
        return 1;
    }
    _cleanup_free_ char *lockpath = path_join(data, "server.lock");
    _cleanup_close_ int lockfd = open(lockpath, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (lockfd < 0 || flock(lockfd, LOCK_EX | LOCK_NB) < 0) {
        log_error("data dir '%s' is in use by another skiff server", data);
        return 1;
    }
    signal(SIGPIPE, SIG_IGN);
    /* Agents hold long polls: allow as many connections as the hard limit permits. */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    sk_err err = { 0 };
    _cleanup_free_ char *dbpath = path_join(data, "state.db");
    _cleanup_free_ char *uri = xasprintf("sqlite:%s", dbpath);
    store *st = NULL;
    if (store_open(uri, &st, &err) < 0) {
        log_error("%s", sk_err_msg(&err));
        sk_err_done(&err);
        return 1;
    }
    _cleanup_free_ char *credpath = path_join(data, "credentials");
    if (cp_credentials_init(st, o.account_id, o.region, credpath, &err) < 0) {
        log_error("credentials: %s", sk_err_msg(&err));
        sk_err_done(&err);
        store_close(st);
        return 1;
    }
    ev_loop *loop = ev_loop_new();
    store_attach(st, loop); /* before the HTTP server: commit precedes releasing responses */
    logs_service *logs = NULL;
    if (logs_new(loop, data, &logs, &err) < 0) {
        log_error("logs: %s", sk_err_msg(&err));
        sk_err_done(&err);
        ev_loop_free(loop);
        store_close(st);
        return 1;
    }
    _cleanup_free_ char *advertise =
            o.advertise ? xstrdup(o.advertise) : xasprintf("http://%s", o.listen);
    cp_config cc = { .account_id = o.account_id, .region = o.region, .endpoint_url = advertise };
    cp *c = NULL;
    if (cp_new(loop, st, &cc, &c, &err) < 0) {
        log_error("control plane: %s", sk_err_msg(&err));
        sk_err_done(&err);
        logs_free(logs);
        ev_loop_free(loop);
        store_close(st);
        return 1;
    }
    _cleanup_free_ char *regdir = path_join(data, "registry");
    const char *reghost = o.registry_host ? o.registry_host : getenv("SKIFF_REGISTRY_HOST");
    /* repositoryUri must be reachable: a wildcard listen address becomes loopback. */
    _cleanup_free_ char *reglisten = startswith(o.listen, "0.0.0.0:")
                                             ? xasprintf("127.0.0.1:%s", o.listen + 8)
                                             : xstrdup(o.listen);
    reg_config rcfg = { .data_dir = regdir,
                        .host = reghost && *reghost ? reghost : reglisten,
                        .account_id = o.account_id,
                        .region = o.region };
    reg_registry *reg = NULL;
    if (reg_new(loop, st, &rcfg, &reg, &err) < 0) {
        log_error("registry: %s", sk_err_msg(&err));
        sk_err_done(&err);
        cp_free(c);
        logs_free(logs);
        ev_loop_free(loop);
        store_close(st);
        return 1;
    }
    aws_router *router = aws_router_new(cp_key_lookup, st);
    aws_router_add_service(router, cp_ecs_service(c));
    aws_router_add_service(router, cp_sts_service(c));
    aws_router_add_service(router, logs_service_def(logs));
    aws_router_add_service(router, reg_ecr_service(reg));
    cp_attach_router(c, router);
    reg_attach_router(reg, router);
    http_server_config hc = { .listen = o.listen };
    http_server *hs = NULL;
    if (http_server_new(loop, &hc, aws_router_route, router, &hs, &err) < 0) {
        log_error("%s", sk_err_msg(&err));
        sk_err_done(&err);
        aws_router_free(router);
        reg_free(reg);
        cp_free(c);
        logs_free(logs);
        ev_loop_free(loop);
        store_close(st);
        return 1;
    }
    server_hold hold = { st, logs };
    http_server_set_hold(hs, hold_responses, &hold);
    ev_signal_add(loop, SIGTERM, on_term, NULL);
    ev_signal_add(loop, SIGINT, on_term, NULL);
    aws_router_set_ready(router, true);
    log_info("skiff server listening on %s (data %s, account %s, region %s)", o.listen, data,
             o.account_id, o.region);
    log_info("credentials: %s", credpath);
    embedded_agent ea = { .loop = loop, .pidfd = -1 };
    if (!o.no_agent) {
        ea.exe = realpath("/proc/self/exe", NULL);
        const char *host = o.listen;
        _cleanup_free_ char *local = NULL;
        if (startswith(o.listen, "0.0.0.0:")) {
            local = xasprintf("127.0.0.1:%s", o.listen + 8);
            host = local;
        }
        ea.url = xasprintf("http://%s", host);
        ea.data = path_join(data, "agent");
        ea.region = xstrdup(o.region);
        ea.restart = ev_timer_new(loop, on_agent_restart, &ea);
        if (cp_root_credentials(st, &ea.access_key, &ea.secret, &err) < 0) {
            log_error("embedded agent: %s", sk_err_msg(&err));
            sk_err_done(&err);
        } else
            agent_spawn(&ea);
    }
    int rc = ev_loop_run(loop);
    if (!o.no_agent)
        agent_stop(&ea);
    aws_router_set_ready(router, false);
    http_server_free(hs);
    if (store_flush(st, &err) < 0) {
        log_error("final flush: %s", sk_err_msg(&err));
        sk_err_done(&err);
        rc = 1;
    }
    if (logs_flush(logs, &err) < 0) {
        log_error("final logs flush: %s", sk_err_msg(&err));
        sk_err_done(&err);
        rc = 1;
    }
    aws_router_free(router);
    reg_free(reg);
    cp_free(c);
    logs_free(logs);
    ev_loop_free(loop);
    store_close(st);
    log_info("stopped");
    return rc;
}
