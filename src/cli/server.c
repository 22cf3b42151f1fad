/* `skiff server`: the control plane on the event loop, with the embedded
 * store and (unless --no-agent) an embedded node agent process. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "basic/alloc.h"
#include "basic/fileutil.h"
#include "basic/log.h"
#include "basic/strutil.h"
#include "cli.h"
#include "controlplane/cp.h"
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
               "  --no-agent     do not run the embedded node agent\n");
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

static void on_term(ev_loop *loop, int signo, void *userdata)
{
    log_info("signal %d: shutting down", signo);
    ev_loop_quit(loop, 0);
}

static bool hold_responses(void *userdata)
{
    return store_dirty(userdata);
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
    _cleanup_free_ char *advertise =
            o.advertise ? xstrdup(o.advertise) : xasprintf("http://%s", o.listen);
    cp_config cc = { .account_id = o.account_id, .region = o.region, .endpoint_url = advertise };
    cp *c = NULL;
    if (cp_new(loop, st, &cc, &c, &err) < 0) {
        log_error("control plane: %s", sk_err_msg(&err));
        sk_err_done(&err);
        ev_loop_free(loop);
        store_close(st);
        return 1;
    }
    aws_router *router = aws_router_new(cp_key_lookup, st);
    aws_router_add_service(router, cp_ecs_service(c));
    aws_router_add_service(router, cp_sts_service(c));
    cp_attach_router(c, router);
    http_server_config hc = { .listen = o.listen };
    http_server *hs = NULL;
    if (http_server_new(loop, &hc, aws_router_route, router, &hs, &err) < 0) {
        log_error("%s", sk_err_msg(&err));
        sk_err_done(&err);
        aws_router_free(router);
        cp_free(c);
        ev_loop_free(loop);
        store_close(st);
        return 1;
    }
    http_server_set_hold(hs, hold_responses, st);
    ev_signal_add(loop, SIGTERM, on_term, NULL);
    ev_signal_add(loop, SIGINT, on_term, NULL);
    aws_router_set_ready(router, true);
    log_info("skiff server listening on %s (data %s, account %s, region %s)", o.listen, data,
             o.account_id, o.region);
    log_info("credentials: %s", credpath);
    if (!o.no_agent)
        log_info("embedded agent: not available in this build");
    int rc = ev_loop_run(loop);
    aws_router_set_ready(router, false);
    http_server_free(hs);
    if (store_flush(st, &err) < 0) {
        log_error("final flush: %s", sk_err_msg(&err));
        sk_err_done(&err);
        rc = 1;
    }
    aws_router_free(router);
    cp_free(c);
    ev_loop_free(loop);
    store_close(st);
    log_info("stopped");
    return rc;
}
