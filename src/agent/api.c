#include "api.h"

#include <curl/curl.h>
#include <netdb.h>
#include <string.h>

#include "basic/alloc.h"
#include "basic/buf.h"
#include "basic/log.h"
#include "basic/strutil.h"
#include "shared/digest.h"
#include "shared/sigv4.h"

#define MAX_RESPONSE (64u << 20)

struct agent_api {
    ev_loop *loop;
    CURLM *multi;
    ev_timer *timer;
    char *url;
    char *host; /* host[:port] as sent in the Host header */
    char *access_key, *secret_key, *region;
    struct curl_slist *resolve;
    unsigned inflight;
};

typedef struct request {
    agent_api *api;
    CURL *easy;
    struct curl_slist *headers;
    char *body;
    sk_buf resp;
    agent_api_cb cb;
    void *userdata;
} request;

typedef struct sockctx {
    ev_io *io;
} sockctx;

static void check_done(agent_api *a);

static void on_io(ev_io *io, int fd, uint32_t events, void *userdata)
{
    agent_api *a = userdata;
    int action = 0;
    if (events & EPOLLIN)
        action |= CURL_CSELECT_IN;
    if (events & EPOLLOUT)
        action |= CURL_CSELECT_OUT;
    if (events & (EPOLLERR | EPOLLHUP))
        action |= CURL_CSELECT_ERR;
    int running;
    curl_multi_socket_action(a->multi, fd, action, &running);
    check_done(a);
}

static int socket_cb(CURL *e, curl_socket_t s, int what, void *userp, void *socketp)
{
    agent_api *a = userp;
    sockctx *sc = socketp;
    if (what == CURL_POLL_REMOVE) {
        if (sc) {
            ev_io_remove(sc->io);
            free(sc);
            curl_multi_assign(a->multi, s, NULL);
        }
        return 0;
    }
    uint32_t ev = 0;
    if (what & CURL_POLL_IN)
        ev |= EPOLLIN;
    if (what & CURL_POLL_OUT)
        ev |= EPOLLOUT;
    if (!sc) {
        sc = xcalloc(1, sizeof(*sc));
        sc->io = ev_io_add(a->loop, s, ev, on_io, a);
        curl_multi_assign(a->multi, s, sc);
    } else
        ev_io_modify(sc->io, ev);
    return 0;
}

static void on_timer(ev_timer *t, void *userdata)
{
    agent_api *a = userdata;
    int running;
    curl_multi_socket_action(a->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    check_done(a);
}

static int timer_cb(CURLM *m, long timeout_ms, void *userp)
{
    agent_api *a = userp;
    if (timeout_ms < 0)
        ev_timer_disarm(a->timer);
    else
        ev_timer_arm_in(a->timer, (usec_t) timeout_ms * 1000);
    return 0;
}

static size_t write_cb(char *p, size_t size, size_t n, void *userdata)
{
    request *r = userdata;
    if (sk_buf_append(&r->resp, p, size * n) < 0)
        return 0;
    return size * n;
}

static void request_free(request *r)
{
    if (!r)
        return;
    if (r->easy)
        curl_easy_cleanup(r->easy);
    curl_slist_free_all(r->headers);
    free(r->body);
    sk_buf_done(&r->resp);
    free(r);
}

static void finish(request *r, CURLcode code)
{
    long status = 0;
    json_t *resp = NULL;
    const char *type = NULL;
    char *msg = NULL;
    if (code != CURLE_OK) {
        type = "TransportError";
        msg = xstrdup(curl_easy_strerror(code));
    } else {
        curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &status);
        if (r->resp.len)
            resp = json_loadb(r->resp.data, r->resp.len, 0, NULL);
        if (status >= 300) {
            const char *t = resp ? json_string_value(json_object_get(resp, "__type")) : NULL;
            if (t) {
                const char *hash = strrchr(t, '#');
                type = hash ? hash + 1 : t;
            } else
                type = status >= 500 ? "ServerException" : "ClientException";
            const char *m = resp ? json_string_value(json_object_get(resp, "message")) : NULL;
            if (!m && resp)
                m = json_string_value(json_object_get(resp, "Message"));
            msg = xstrdup(m ? m : "");
        }
    }
    char *type_copy = type ? xstrdup(type) : NULL;
    r->api->inflight--;
    r->cb(r->userdata, status, status >= 300 ? NULL : resp, type_copy, msg);
    if (status >= 300)
        json_decref(resp);
    else if (resp)
        json_decref(resp);
    free(type_copy);
    free(msg);
}

static void check_done(agent_api *a)
{
    CURLMsg *m;
    int left;
    while ((m = curl_multi_info_read(a->multi, &left))) {
        if (m->msg != CURLMSG_DONE)
            continue;
        request *r = NULL;
        curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **) &r);
        CURLcode code = m->data.result;
        curl_multi_remove_handle(a->multi, m->easy_handle);
        finish(r, code);
        request_free(r);
    }
}

static char *url_host(const char *url)
{
    const char *p = strstr(url, "://");
    p = p ? p + 3 : url;
    size_t n = strcspn(p, "/");
    return xstrndup(p, n);
}

int agent_api_new(ev_loop *loop, const agent_api_config *cfg, agent_api **ret, sk_err *err)
{
    if (!cfg->url || !startswith(cfg->url, "http"))
        return sk_err_set(err, SK_E_INVALID, "server URL '%s' must start with http:// or https://",
                          cfg->url ? cfg->url : "");
    if (!cfg->access_key || !cfg->secret_key)
        return sk_err_set(err, SK_E_INVALID, "no credentials for the agent");
    static bool global_init;
    if (!global_init) {
        curl_global_init(CURL_GLOBAL_DEFAULT);
        global_init = true;
    }
    agent_api *a = xcalloc(1, sizeof(*a));
    a->loop = loop;
    a->url = xstrdup(cfg->url);
    size_t ul = strlen(a->url);
    while (ul && a->url[ul - 1] == '/')
        a->url[--ul] = 0;
    a->host = url_host(a->url);
    a->access_key = xstrdup(cfg->access_key);
    a->secret_key = xstrdup(cfg->secret_key);
    a->region = xstrdup(cfg->region ? cfg->region : "us-east-1");
    /* Resolve the server once so libcurl never starts a resolver thread in
     * this process (it forks). */
    char hostonly[256], port[16] = "80";
    const char *h = a->host;
    if (h[0] == '[') {
        const char *rb = strchr(h, ']');
        snprintf(hostonly, sizeof(hostonly), "%.*s", rb ? (int) (rb - h - 1) : 0, h + 1);
        if (rb && rb[1] == ':')
            snprintf(port, sizeof(port), "%s", rb + 2);
    } else {
        const char *colon = strrchr(h, ':');
        snprintf(hostonly, sizeof(hostonly), "%.*s", colon ? (int) (colon - h) : (int) strlen(h),
                 h);
        if (colon)
            snprintf(port, sizeof(port), "%s", colon + 1);
        else if (startswith(a->url, "https"))
            strcpy(port, "443");
    }
    struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *res = NULL;
    if (getaddrinfo(hostonly, port, &hints, &res) == 0 && res) {
        char ip[64];
        if (getnameinfo(res->ai_addr, res->ai_addrlen, ip, sizeof(ip), NULL, 0, NI_NUMERICHOST) ==
            0) {
            char *entry =
                    xasprintf("%s:%s:%s%s%s", hostonly, port, res->ai_family == AF_INET6 ? "[" : "",
                              ip, res->ai_family == AF_INET6 ? "]" : "");
            a->resolve = curl_slist_append(NULL, entry);
            free(entry);
        }
        freeaddrinfo(res);
    }
    a->multi = curl_multi_init();
    a->timer = ev_timer_new(loop, on_timer, a);
    curl_multi_setopt(a->multi, CURLMOPT_SOCKETFUNCTION, socket_cb);
    curl_multi_setopt(a->multi, CURLMOPT_SOCKETDATA, a);
    curl_multi_setopt(a->multi, CURLMOPT_TIMERFUNCTION, timer_cb);
    curl_multi_setopt(a->multi, CURLMOPT_TIMERDATA, a);
    curl_multi_setopt(a->multi, CURLMOPT_MAX_HOST_CONNECTIONS,
                      (long) (cfg->max_connections ? cfg->max_connections : 8));
    *ret = a;
    return 0;
}

void agent_api_free(agent_api *a)
{
    if (!a)
        return;
    curl_multi_cleanup(a->multi);
    ev_timer_free(a->timer);
    curl_slist_free_all(a->resolve);
    free(a->url);
    free(a->host);
    explicit_bzero(a->secret_key, strlen(a->secret_key));
    free(a->access_key);
    free(a->secret_key);
    free(a->region);
    free(a);
}

unsigned agent_api_inflight(const agent_api *a)
{
    return a->inflight;
}

static void submit(agent_api *a, const char *path, const char *region, const char *service,
                   const char *target, json_t *body, usec_t timeout, agent_api_cb cb,
                   void *userdata)
{
    request *r = xcalloc(1, sizeof(*r));
    r->api = a;
    r->cb = cb;
    r->userdata = userdata;
    sk_buf_init(&r->resp, MAX_RESPONSE);
    r->body = json_dumps(body ? body : json_object(), JSON_COMPACT | JSON_REAL_PRECISION(15));
    json_decref(body);
    size_t blen = strlen(r->body);
    char amz_date[17];
    format_amz_date(time(NULL), amz_date);
    char hash[SHA256_HEX_LEN + 1];
    sha256_hex(r->body, blen, hash);
    sigv4_header hs[4] = {
        { "content-type", "application/x-amz-json-1.1" },
        { "host", a->host },
        { "x-amz-date", amz_date },
        { "x-amz-target", target ? target : "" },
    };
    sigv4_request sr = { .method = "POST",
                         .path = path,
                         .query = "",
                         .headers = hs,
                         .nheaders = target ? 4 : 3,
                         .payload_hash = hash };
    char *auth = sigv4_authorization(
            &sr, a->access_key, a->secret_key, region ? region : a->region, service, amz_date,
            target ? "content-type;host;x-amz-date;x-amz-target" : "content-type;host;x-amz-date");
    char *line;
    line = xasprintf("Authorization: %s", auth);
    r->headers = curl_slist_append(r->headers, line);
    free(line);
    free(auth);
    line = xasprintf("X-Amz-Date: %s", amz_date);
    r->headers = curl_slist_append(r->headers, line);
    free(line);
    line = xasprintf("Host: %s", a->host);
    r->headers = curl_slist_append(r->headers, line);
    free(line);
    r->headers = curl_slist_append(r->headers, "Content-Type: application/x-amz-json-1.1");
    if (target) {
        line = xasprintf("X-Amz-Target: %s", target);
        r->headers = curl_slist_append(r->headers, line);
        free(line);
    }
    r->headers = curl_slist_append(r->headers, "Expect:");
    char *url = xasprintf("%s%s", a->url, path);
    r->easy = curl_easy_init();
    curl_easy_setopt(r->easy, CURLOPT_URL, url);
    curl_easy_setopt(r->easy, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(r->easy, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    free(url);
    curl_easy_setopt(r->easy, CURLOPT_POST, 1L);
    curl_easy_setopt(r->easy, CURLOPT_POSTFIELDS, r->body);
    curl_easy_setopt(r->easy, CURLOPT_POSTFIELDSIZE, (long) blen);
    curl_easy_setopt(r->easy, CURLOPT_HTTPHEADER, r->headers);
    curl_easy_setopt(r->easy, CURLOPT_WRITEFUNCTION, write_cb);
    curl_easy_setopt(r->easy, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(r->easy, CURLOPT_PRIVATE, r);
    curl_easy_setopt(r->easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(r->easy, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
    curl_easy_setopt(r->easy, CURLOPT_TIMEOUT_MS, (long) (timeout / 1000));
    if (a->resolve)
        curl_easy_setopt(r->easy, CURLOPT_RESOLVE, a->resolve);
    a->inflight++;
    curl_multi_add_handle(a->multi, r->easy);
}

void agent_api_call(agent_api *a, const char *service, const char *target, json_t *body,
                    usec_t timeout, agent_api_cb cb, void *userdata)
{
    submit(a, "/", NULL, service, target, body, timeout, cb, userdata);
}

void agent_api_call_in(agent_api *a, const char *region, const char *service, const char *target,
                       json_t *body, usec_t timeout, agent_api_cb cb, void *userdata)
{
    submit(a, "/", region, service, target, body, timeout, cb, userdata);
}

const char *agent_api_host(const agent_api *a)
{
    return a->host;
}

bool agent_api_is_https(const agent_api *a)
{
    return startswith(a->url, "https://");
}

void agent_api_post(agent_api *a, const char *path, const char *service, json_t *body,
                    usec_t timeout, agent_api_cb cb, void *userdata)
{
    submit(a, path, NULL, service, NULL, body, timeout, cb, userdata);
}
