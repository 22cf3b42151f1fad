#include "http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "basic/alloc.h"
#include "basic/buf.h"
#include "basic/log.h"
#include "basic/macro.h"
#include "basic/strutil.h"
#include "basic/vec.h"

#define MAX_HEADERS 128

typedef struct kv {
    char *name;
    char *value;
} kv;

struct http_req {
    http_server *srv;
    http_req *prev, *next; /* all live requests of the server */
    struct MHD_Connection *conn;
    char *raw_uri;
    char *path;
    char *query;
    const char *method;
    kv headers[MAX_HEADERS];
    size_t nheaders;
    sk_vec qparams; /* kv* decoded, lazily */
    bool qparsed;
    bool headers_done;
    bool body_done;
    bool complete_called;
    bool too_large;
    sk_buf body;
    size_t body_cap;
    uint64_t content_length;
    char peer[64];
    const http_req_ops *ops;
    void *state;
    /* response */
    struct MHD_Response *resp;
    unsigned status;
    bool responded;
    bool queued;
    bool suspended;
    bool held;
    ev_io *hup_io; /* client hangup watch while suspended awaiting a response */
    kv *resp_headers;
    size_t nresp_headers;
};

struct http_server {
    ev_loop *loop;
    struct MHD_Daemon *d;
    ev_io *io;
    ev_timer *timer;
    http_route_fn route;
    void *userdata;
    bool (*must_hold)(void *);
    void *hold_ud;
    sk_vec held; /* http_req* waiting for the hold predicate */
    unsigned port;
    bool in_callback;
    http_req *reqs;  /* live requests */
    http_req *spare; /* freed requests kept for reuse (linked by next) */
    size_t nspare;
};

/* An http_req is a few KiB (the inline header table): reusing them keeps
 * per-request allocations small. Sanitizer builds free them instead, so a
 * stale pointer to a finished request still faults there. */
#define MAX_SPARE_REQS 64
#if defined(__SANITIZE_ADDRESS__)
#    define REUSE_REQS false
#else
#    define REUSE_REQS true
#endif

static void kv_free_all(kv *a, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(a[i].name);
        free(a[i].value);
    }
}

static void hangup_unwatch(http_req *r)
{
    if (r->hup_io) {
        ev_io_remove(r->hup_io);
        r->hup_io = NULL;
    }
}

static void on_hangup_io(ev_io *io, int fd, uint32_t events, void *userdata)
{
    http_req *r = userdata;
    hangup_unwatch(r);
    if (!r->responded && r->ops && r->ops->on_hangup)
        r->ops->on_hangup(r);
}

/* Watches for the client closing its end while the request is suspended
 * waiting for its response, for handlers that asked (ops->on_hangup). */
static void hangup_watch(http_req *r)
{
    if (r->hup_io || r->responded || !r->ops || !r->ops->on_hangup)
        return;
    const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (ci && ci->connect_fd >= 0)
        r->hup_io = ev_io_add(r->srv->loop, ci->connect_fd, EPOLLRDHUP, on_hangup_io, r);
}

static void req_resume(http_req *r)
{
    hangup_unwatch(r);
    if (r->suspended) {
        r->suspended = false;
        MHD_resume_connection(r->conn);
    }
}

static void req_free(http_req *r)
{
    if (!r)
        return;
    hangup_unwatch(r);
    if (r->prev)
        r->prev->next = r->next;
    else if (r->srv->reqs == r)
        r->srv->reqs = r->next;
    if (r->next)
        r->next->prev = r->prev;
    if (r->ops && r->ops->on_free)
        r->ops->on_free(r);
    kv_free_all(r->headers, r->nheaders);
    for (size_t i = 0; i < r->qparams.len; i++) {
        kv *p = r->qparams.items[i];
        free(p->name);
        free(p->value);
        free(p);
    }
    sk_vec_done(&r->qparams, NULL);
    if (r->resp_headers) {
        kv_free_all(r->resp_headers, r->nresp_headers);
        free(r->resp_headers);
    }
    if (r->resp)
        MHD_destroy_response(r->resp);
    if (r->held) {
        sk_vec *h = &r->srv->held;
        for (size_t i = 0; i < h->len; i++)
            if (h->items[i] == r) {
                sk_vec_remove_at(h, i);
                break;
            }
    }
    sk_buf_done(&r->body);
    free(r->raw_uri);
    free(r->path);
    free(r->query);
    http_server *s = r->srv;
    if (REUSE_REQS && s->nspare < MAX_SPARE_REQS) {
        r->next = s->spare;
        s->spare = r;
        s->nspare++;
        return;
    }
    free(r);
}

static void *on_uri(void *cls, const char *uri, struct MHD_Connection *conn)
{
    http_server *s = cls;
    http_req *r = s->spare;
    if (r) {
        s->spare = r->next;
        s->nspare--;
        memset(r, 0, sizeof(*r));
    } else
        r = xcalloc(1, sizeof(*r));
    r->srv = s;
    r->conn = conn;
    r->raw_uri = xstrdup(uri ? uri : "/");
    const char *q = strchr(r->raw_uri, '?');
    if (q) {
        r->path = xstrndup(r->raw_uri, (size_t) (q - r->raw_uri));
        r->query = xstrdup(q + 1);
    } else {
        r->path = xstrdup(r->raw_uri);
        r->query = xstrdup("");
    }
    r->body_cap = HTTP_DEFAULT_BODY_CAP;
    r->content_length = UINT64_MAX;
    sk_buf_init(&r->body, 0);
    r->next = s->reqs;
    if (s->reqs)
        s->reqs->prev = r;
    s->reqs = r;
    return r;
}

static size_t on_unescape(void *cls, struct MHD_Connection *c, char *s)
{
    /* Keep the URL raw: SigV4 and the registry decode it themselves. */
    return strlen(s);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    req_free(*con_cls);
    *con_cls = NULL;
}

static enum MHD_Result collect_header(void *cls, enum MHD_ValueKind kind, const char *key,
                                      const char *value)
{
    http_req *r = cls;
    if (r->nheaders >= MAX_HEADERS)
        return MHD_NO;
    r->headers[r->nheaders].name = xstrdup(key);
    r->headers[r->nheaders].value = xstrdup(value ? value : "");
    r->nheaders++;
    return MHD_YES;
}

static void build_response(http_req *r)
{
    for (size_t i = 0; i < r->nresp_headers; i++)
        MHD_add_response_header(r->resp, r->resp_headers[i].name, r->resp_headers[i].value);
}

static void set_response(http_req *r, unsigned status, struct MHD_Response *resp, const char *ctype)
{
    hangup_unwatch(r);
    if (r->responded) {
        MHD_destroy_response(resp);
        return;
    }
    r->responded = true;
    r->status = status;
    r->resp = resp;
    if (ctype)
        MHD_add_response_header(resp, "Content-Type", ctype);
    build_response(r);
    http_server *s = r->srv;
    if (s->must_hold && s->must_hold(s->hold_ud)) {
        r->held = true;
        sk_vec_push(&s->held, r);
        return;
    }
    req_resume(r);
}

void http_req_respond_take(http_req *r, unsigned status, const char *ctype, char *body, size_t len)
{
    struct MHD_Response *resp = MHD_create_response_from_buffer(
            len, body ? body : (char *) "", body ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
    if (!resp)
        oom();
    set_response(r, status, resp, ctype);
}

void http_req_respond(http_req *r, unsigned status, const char *ctype, const void *body, size_t len)
{
    char *copy = len ? xmemdup(body, len) : NULL;
    http_req_respond_take(r, status, ctype, copy, len);
}

void http_req_respond_fd(http_req *r, unsigned status, const char *ctype, int fd, uint64_t offset,
                         uint64_t len)
{
    struct MHD_Response *resp = MHD_create_response_from_fd_at_offset64(len, fd, offset);
    if (!resp)
        oom();
    set_response(r, status, resp, ctype);
}

void http_req_add_header(http_req *r, const char *name, const char *value)
{
    r->resp_headers = xrealloc(r->resp_headers, (r->nresp_headers + 1) * sizeof(kv));
    r->resp_headers[r->nresp_headers++] = (kv){ xstrdup(name), xstrdup(value) };
    if (r->resp)
        MHD_add_response_header(r->resp, name, value);
}

bool http_req_responded(const http_req *r)
{
    return r->responded;
}

static enum MHD_Result queue_or_suspend(http_req *r)
{
    if (r->responded && !r->held && !r->queued) {
        r->queued = true;
        return MHD_queue_response(r->conn, r->status, r->resp);
    }
    if (r->queued)
        return MHD_YES;
    if (!r->suspended) {
        r->suspended = true;
        MHD_suspend_connection(r->conn);
        hangup_watch(r);
    }
    return MHD_YES;
}

static enum MHD_Result on_access(void *cls, struct MHD_Connection *conn, const char *url,
                                 const char *method, const char *version, const char *upload_data,
                                 size_t *upload_data_size, void **con_cls)
{
    http_server *s = cls;
    http_req *r = *con_cls;
    if (!r)
        return MHD_NO;
    if (!r->headers_done) {
        r->headers_done = true;
        r->method = method;
        if (MHD_get_connection_values(conn, MHD_HEADER_KIND, collect_header, r) < 0)
            return MHD_NO;
        const char *cl = http_req_header(r, "content-length");
        uint64_t v;
        if (cl && parse_u64(cl, &v) == 0)
            r->content_length = v;
        const union MHD_ConnectionInfo *ci =
                MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
        if (ci && ci->client_addr) {
            const struct sockaddr *sa = ci->client_addr;
            if (sa->sa_family == AF_INET)
                inet_ntop(AF_INET, &((const struct sockaddr_in *) sa)->sin_addr, r->peer,
                          sizeof(r->peer));
            else if (sa->sa_family == AF_INET6)
                inet_ntop(AF_INET6, &((const struct sockaddr_in6 *) sa)->sin6_addr, r->peer,
                          sizeof(r->peer));
        }
        s->route(r, s->userdata);
        if (!r->ops && !r->responded) {
            http_req_respond(r, 404, "text/plain", "not found\n", 10);
        }
        if (r->responded)
            return queue_or_suspend(r);
        if (r->content_length != UINT64_MAX && !r->ops->on_body &&
            r->content_length > r->body_cap) {
            /* on_complete reports it (http_req_body_too_large()); default 413. */
            r->too_large = true;
            r->complete_called = true;
            if (r->ops->on_complete)
                r->ops->on_complete(r);
            if (!r->responded)
                http_req_respond(r, 413, "text/plain", "request body too large\n", 23);
            return queue_or_suspend(r);
        }
        return MHD_YES;
    }
    if (*upload_data_size > 0) {
        size_t n = *upload_data_size;
        *upload_data_size = 0;
        if (r->responded)
            return MHD_YES; /* discard */
        if (r->ops && r->ops->on_body) {
            if (r->ops->on_body(r, upload_data, n) < 0 && !r->responded)
                http_req_respond(r, 400, "text/plain", "bad request body\n", 17);
        } else if (r->too_large || r->body.len + n > r->body_cap) {
            r->too_large = true;
            sk_buf_done(&r->body);
        } else {
            /* One allocation for a declared length (capped above). */
            if (!r->body.data && r->content_length != UINT64_MAX &&
                r->content_length <= r->body_cap && r->content_length >= n)
                sk_buf_reserve(&r->body, (size_t) r->content_length);
            sk_buf_append(&r->body, upload_data, n);
        }
        return MHD_YES;
    }
    if (!r->complete_called && !r->responded) {
        r->complete_called = true;
        if (r->ops && r->ops->on_complete)
            r->ops->on_complete(r);
    }
    return queue_or_suspend(r);
}

static void run_mhd(http_server *s)
{
    MHD_run(s->d);
}

static void on_epoll(ev_io *io, int fd, uint32_t events, void *userdata)
{
    run_mhd(userdata);
}

static void on_timer(ev_timer *t, void *userdata)
{
    run_mhd(userdata);
}

static void on_prepare(ev_loop *loop, void *userdata)
{
    http_server *s = userdata;
    if (s->held.len && !(s->must_hold && s->must_hold(s->hold_ud))) {
        sk_vec held = s->held;
        s->held = (sk_vec){ 0 };
        for (size_t i = 0; i < held.len; i++) {
            http_req *r = held.items[i];
            r->held = false;
            req_resume(r);
        }
        sk_vec_done(&held, NULL);
        run_mhd(s);
    }
    MHD_UNSIGNED_LONG_LONG to;
    if (MHD_get_timeout(s->d, &to) == MHD_YES)
        ev_timer_arm_in(s->timer, (usec_t) to * 1000);
    else
        ev_timer_disarm(s->timer);
}

static int parse_listen(const char *listen, struct sockaddr_storage *ss, sk_err *err)
{
    memset(ss, 0, sizeof(*ss));
    const char *colon = strrchr(listen, ':');
    if (!colon)
        return sk_err_set(err, SK_E_INVALID, "listen address '%s' lacks a port", listen);
    uint32_t port;
    if (parse_u32(colon + 1, &port) < 0 || port > 65535)
        return sk_err_set(err, SK_E_INVALID, "bad port in '%s'", listen);
    char host[128];
    size_t hl = (size_t) (colon - listen);
    if (hl >= sizeof(host))
        return sk_err_set(err, SK_E_INVALID, "bad host in '%s'", listen);
    memcpy(host, listen, hl);
    host[hl] = 0;
    if (host[0] == '[' && hl > 2 && host[hl - 1] == ']') {
        host[hl - 1] = 0;
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *) ss;
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons((uint16_t) port);
        if (inet_pton(AF_INET6, host + 1, &s6->sin6_addr) != 1)
            return sk_err_set(err, SK_E_INVALID, "bad IPv6 address in '%s'", listen);
        return 0;
    }
    struct sockaddr_in *s4 = (struct sockaddr_in *) ss;
    s4->sin_family = AF_INET;
    s4->sin_port = htons((uint16_t) port);
    if (streq(host, "localhost"))
        strcpy(host, "127.0.0.1");
    if (hl == 0)
        strcpy(host, "127.0.0.1");
    if (inet_pton(AF_INET, host, &s4->sin_addr) != 1)
        return sk_err_set(err, SK_E_INVALID, "bad IPv4 address in '%s'", listen);
    return 0;
}

/* Per-connection buffer for the request line, headers and body chunks. Each
 * idle agent holds a long poll, so this is the per-instance cost in the
 * server; bodies stream through it and larger ones are copied out. */
#define HTTP_CONNECTION_POOL (16 * 1024)

/* Every open fd the process may still create beyond client sockets: the
 * store, logs, registry files, epoll and timer fds. */
#define HTTP_FD_HEADROOM 256

/* As many connections as RLIMIT_NOFILE leaves room for. */
static unsigned int default_connection_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur == RLIM_INFINITY)
        return 4096;
    if (rl.rlim_cur <= 2 * HTTP_FD_HEADROOM)
        return (unsigned int) (rl.rlim_cur / 2);
    return (unsigned int) MIN(rl.rlim_cur - HTTP_FD_HEADROOM, (rlim_t) 1000000);
}

static int listen_freebind(const struct sockaddr_in *sin, int *ret)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return -errno;
    int one = 1;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
        setsockopt(fd, SOL_IP, IP_FREEBIND, &one, sizeof(one)) < 0 ||
        bind(fd, (const struct sockaddr *) sin, sizeof(*sin)) < 0 || listen(fd, 1024) < 0) {
        int e = -errno;
        close(fd);
        return e;
    }
    *ret = fd;
    return 0;
}

int http_server_new(ev_loop *loop, const http_server_config *cfg, http_route_fn route,
                    void *userdata, http_server **ret, sk_err *err)
{
    struct sockaddr_storage ss;
    if (parse_listen(cfg->listen, &ss, err) < 0)
        return -1;
    /* SIGPIPE is ignored process-wide, which MHD_OPTION_SIGPIPE_HANDLED_BY_APP
     * tells MHD: only then does it send file responses (registry blobs) with
     * sendfile(2) instead of pread+send through the connection's pool. */
    signal(SIGPIPE, SIG_IGN);
    http_server *s = xcalloc(1, sizeof(*s));
    s->loop = loop;
    s->route = route;
    s->userdata = userdata;
    unsigned flags = MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_TURBO;
    if (ss.ss_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    int lfd = -1;
    if (cfg->freebind && ss.ss_family == AF_INET) {
        int r = listen_freebind((const struct sockaddr_in *) &ss, &lfd);
        if (r < 0) {
            free(s);
            return sk_err_sys(err, r, "cannot listen on %s", cfg->listen);
        }
    }
    /* MHD owns lfd from here (closed when the daemon stops). */
    struct MHD_OptionItem where[] = {
        lfd >= 0 ? (struct MHD_OptionItem){ MHD_OPTION_LISTEN_SOCKET, lfd, NULL }
                 : (struct MHD_OptionItem){ MHD_OPTION_SOCK_ADDR, 0, &ss },
        { MHD_OPTION_END, 0, NULL },
    };
    s->d = MHD_start_daemon(
            flags, 0, NULL, NULL, on_access, s, MHD_OPTION_ARRAY, where,
            MHD_OPTION_URI_LOG_CALLBACK, on_uri, s, MHD_OPTION_UNESCAPE_CALLBACK, on_unescape, s,
            MHD_OPTION_NOTIFY_COMPLETED, on_completed, s, MHD_OPTION_CONNECTION_TIMEOUT,
            (unsigned int) (cfg->connection_timeout_sec ? cfg->connection_timeout_sec : 120),
            MHD_OPTION_CONNECTION_LIMIT,
            cfg->max_connections ? cfg->max_connections : default_connection_limit(),
            MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t) HTTP_CONNECTION_POOL,
            MHD_OPTION_LISTEN_BACKLOG_SIZE, (unsigned int) 1024, MHD_OPTION_SIGPIPE_HANDLED_BY_APP,
            (int) 1, MHD_OPTION_END);
    if (!s->d) {
        free(s);
        return sk_err_set(err, SK_E_SYSTEM, "cannot listen on %s (in use, or no permission)",
                          cfg->listen);
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(s->d, MHD_DAEMON_INFO_EPOLL_FD);
    const union MHD_DaemonInfo *pi = MHD_get_daemon_info(s->d, MHD_DAEMON_INFO_BIND_PORT);
    s->port = pi ? pi->port : 0;
    s->io = ev_io_add(loop, di->epoll_fd, EPOLLIN, on_epoll, s);
    s->timer = ev_timer_new(loop, on_timer, s);
    ev_prepare_add(loop, on_prepare, s);
    *ret = s;
    return 0;
}

void http_server_free(http_server *s)
{
    if (!s)
        return;
    ev_io_remove(s->io);
    ev_timer_free(s->timer);
    /* MHD cannot stop with suspended connections: answer whatever still waits
     * (long polls) and release held responses, then let MHD send them. */
    s->must_hold = NULL;
    for (http_req *r = s->reqs; r; r = r->next) {
        if (!r->responded && r->suspended)
            http_req_respond(r, 503, "text/plain", "shutting down\n", 14);
        r->held = false;
        req_resume(r);
    }
    sk_vec_done(&s->held, NULL);
    for (int i = 0; i < 10; i++)
        MHD_run(s->d);
    MHD_stop_daemon(s->d);
    while (s->spare) {
        http_req *r = s->spare;
        s->spare = r->next;
        free(r);
    }
    free(s);
}

void http_server_set_hold(http_server *s, bool (*must_hold)(void *), void *userdata)
{
    s->must_hold = must_hold;
    s->hold_ud = userdata;
}

unsigned http_server_port(const http_server *s)
{
    return s->port;
}

void http_server_quiesce(http_server *s)
{
    int fd = MHD_quiesce_daemon(s->d);
    if (fd >= 0)
        close(fd);
}

const char *http_req_method(const http_req *r)
{
    return r->method;
}
const char *http_req_path(const http_req *r)
{
    return r->path;
}
const char *http_req_query(const http_req *r)
{
    return r->query;
}
const char *http_req_header(const http_req *r, const char *name)
{
    for (size_t i = 0; i < r->nheaders; i++)
        if (strcasecmp(r->headers[i].name, name) == 0)
            return r->headers[i].value;
    return NULL;
}
size_t http_req_header_count(const http_req *r)
{
    return r->nheaders;
}
void http_req_header_at(const http_req *r, size_t i, const char **ret_name, const char **ret_value)
{
    *ret_name = r->headers[i].name;
    *ret_value = r->headers[i].value;
}

const char *http_req_query_param(http_req *r, const char *name)
{
    if (!r->qparsed) {
        r->qparsed = true;
        const char *p = r->query;
        while (*p && r->qparams.len < 256) {
            size_t len = strcspn(p, "&");
            const char *eq = memchr(p, '=', len);
            size_t kl = eq ? (size_t) (eq - p) : len;
            char *k = NULL, *v = NULL;
            if (uri_decode(p, kl, true, &k, NULL) == 0 &&
                uri_decode(eq ? eq + 1 : p + len, eq ? len - kl - 1 : 0, true, &v, NULL) == 0) {
                kv *e = xmalloc(sizeof(*e));
                *e = (kv){ k, v };
                sk_vec_push(&r->qparams, e);
            } else {
                free(k);
                free(v);
            }
            p += len;
            if (*p == '&')
                p++;
        }
    }
    for (size_t i = 0; i < r->qparams.len; i++) {
        kv *e = r->qparams.items[i];
        if (streq(e->name, name))
            return e->value;
    }
    return NULL;
}

const char *http_req_body(const http_req *r, size_t *ret_len)
{
    if (ret_len)
        *ret_len = r->body.len;
    return r->body.data ? r->body.data : "";
}
const char *http_req_peer(const http_req *r)
{
    return r->peer;
}
uint64_t http_req_content_length(const http_req *r)
{
    return r->content_length;
}
http_server *http_req_server(const http_req *r)
{
    return r->srv;
}
void http_req_set_ops(http_req *r, const http_req_ops *ops, void *state)
{
    r->ops = ops;
    r->state = state;
}
void *http_req_state(const http_req *r)
{
    return r->state;
}
bool http_req_body_too_large(const http_req *r)
{
    return r->too_large;
}
void http_req_set_body_cap(http_req *r, size_t cap)
{
    r->body_cap = cap;
}
