/* A standalone CloudWatch Logs server for tests: the logs service on its own
 * event loop, HTTP server and AWS router, with one fixed access key. It takes
 * the same arguments as `skiff server` (the "server" word, --no-agent and
 * --advertise-url are accepted and ignored) and writes DIR/credentials, so the
 * integration tests can run against either binary:
 *
 *   test-logs-server [server] --listen HOST:PORT --data DIR
 *                    [--account-id 12DIGITS] [--region NAME] [--no-agent]
 *
 * The wiring mirrors what `skiff server` does: logs_new() before
 * http_server_new(), so the commit hook runs before held responses are
 * released, and a hold predicate over logs_dirty(). */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "basic/alloc.h"
#include "basic/fileutil.h"
#include "basic/log.h"
#include "basic/strutil.h"
#include "logs/logs.h"
#include "shared/aws.h"
#include "shared/event.h"
#include "shared/http.h"

#define ACCESS_KEY "AKIASKIFFLOGSTEST001"
#define SECRET_KEY "skiff-logs-test-secret-key-0000000000000"

typedef struct harness {
    const char *account;
} harness;

static int key_lookup(void *userdata, const char *access_key, const char **ret_secret,
                      const char **ret_account)
{
    harness *h = userdata;
    if (!streq(access_key, ACCESS_KEY))
        return -1;
    *ret_secret = SECRET_KEY;
    *ret_account = h->account;
    return 0;
}

static bool hold_responses(void *userdata)
{
    return logs_dirty(userdata);
}

static void on_term(ev_loop *loop, int signo, void *userdata)
{
    ev_loop_quit(loop, 0);
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        { "listen", required_argument, NULL, 'l' },
        { "data", required_argument, NULL, 'd' },
        { "account-id", required_argument, NULL, 'a' },
        { "region", required_argument, NULL, 'r' },
        { "advertise-url", required_argument, NULL, 'A' },
        { "no-agent", no_argument, NULL, 'n' },
        { 0 },
    };
    const char *listen = "127.0.0.1:4566", *data = NULL, *region = "us-east-1";
    harness h = { .account = "000000000000" };
    int ch;
    sk_log_setup("test-logs-server", getenv("SKIFF_DEBUG") ? SK_LOG_DEBUG : SK_LOG_INFO);
    while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (ch) {
        case 'l':
            listen = optarg;
            break;
        case 'd':
            data = optarg;
            break;
        case 'a':
            h.account = optarg;
            break;
        case 'r':
            region = optarg;
            break;
        case 'A':
        case 'n':
            break;
        default:
            return 2;
        }
    }
    if (optind < argc && streq(argv[optind], "server"))
        optind++;
    if (!data || optind < argc) {
        fprintf(stderr, "usage: %s [server] --listen HOST:PORT --data DIR\n", argv[0]);
        return 2;
    }
    int r = mkdir_p(data, 0700);
    if (r < 0) {
        log_error("create '%s': %s", data, strerror(-r));
        return 1;
    }
    _cleanup_free_ char *credpath = path_join(data, "credentials");
    _cleanup_free_ char *cred = xasprintf(
            "[default]\naws_access_key_id = %s\naws_secret_access_key = %s\nregion = %s\n",
            ACCESS_KEY, SECRET_KEY, region);
    r = write_file_atomic(credpath, cred, strlen(cred), 0600);
    if (r < 0) {
        log_error("write '%s': %s", credpath, strerror(-r));
        return 1;
    }
    signal(SIGPIPE, SIG_IGN);
    sk_err err = { 0 };
    ev_loop *loop = ev_loop_new();
    logs_service *logs = NULL;
    if (logs_new(loop, data, &logs, &err) < 0) {
        log_error("logs: %s", sk_err_msg(&err));
        sk_err_done(&err);
        ev_loop_free(loop);
        return 1;
    }
    aws_router *router = aws_router_new(key_lookup, &h);
    aws_router_add_service(router, logs_service_def(logs));
    http_server_config hc = { .listen = listen };
    http_server *hs = NULL;
    if (http_server_new(loop, &hc, aws_router_route, router, &hs, &err) < 0) {
        log_error("%s", sk_err_msg(&err));
        sk_err_done(&err);
        aws_router_free(router);
        logs_free(logs);
        ev_loop_free(loop);
        return 1;
    }
    http_server_set_hold(hs, hold_responses, logs);
    ev_signal_add(loop, SIGTERM, on_term, NULL);
    ev_signal_add(loop, SIGINT, on_term, NULL);
    aws_router_set_ready(router, true);
    log_info("test-logs-server listening on %s (data %s)", listen, data);
    int rc = ev_loop_run(loop);
    aws_router_set_ready(router, false);
    http_server_free(hs);
    if (logs_flush(logs, &err) < 0) {
        log_error("final flush: %s", sk_err_msg(&err));
        sk_err_done(&err);
        rc = 1;
    }
    aws_router_free(router);
    logs_free(logs);
    ev_loop_free(loop);
    return rc;
}
