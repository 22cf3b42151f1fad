/* HTTP/1.1 server on libmicrohttpd, driven by the ev_loop (no threads).
 *
 * Request life cycle:
 *   1. headers complete → the server's route function runs. It may respond
 *      at once (the body is then discarded), or install per-request ops and a
 *      body policy: buffered up to a cap (default HTTP_DEFAULT_BODY_CAP), or
 *      streamed to ops->on_body.
 *   2. body complete → ops->on_complete (buffered body in http_req_body()).
 *   3. http_req_respond*() may be called then or later from any loop callback;
 *      the connection is suspended meanwhile (long-poll, group commit).
 *   4. the request is freed after the response was sent or the client went
 *      away; ops->on_free runs first.
 *
 * Response holding: when a hold predicate is installed and returns true at
 * response time, the response is held and released by the server's prepare
 * hook once the predicate turns false. The control plane uses this so that no
 * client sees a result before the store made it durable. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "basic/err.h"
#include "event.h"

#define HTTP_DEFAULT_BODY_CAP (1u << 20)

typedef struct http_server http_server;
typedef struct http_req http_req;

typedef struct http_req_ops {
    /* Streaming body chunk; return < 0 to abort (the handler must have responded). */
    int (*on_body)(http_req *req, const char *data, size_t n);
    void (*on_complete)(http_req *req);
    /* Optional: the client closed its end while the request waited for a
     * response (a long poll); the handler should stop waiting and respond
     * (the response is discarded). Not called once a response was given. */
    void (*on_hangup)(http_req *req);
    void (*on_free)(http_req *req);
} http_req_ops;

typedef void (*http_route_fn)(http_req *req, void *userdata);

typedef struct http_server_config {
    const char *listen; /* "HOST:PORT", "[V6]:PORT" */
    unsigned connection_timeout_sec;
    unsigned max_connections;
    bool freebind; /* IPv4: bind even if the address is not (yet) on an interface */
} http_server_config;

int http_server_new(ev_loop *loop, const http_server_config *cfg, http_route_fn route,
                    void *userdata, http_server **ret, sk_err *err);
void http_server_free(http_server *s);
void http_server_set_hold(http_server *s, bool (*must_hold)(void *), void *userdata);
/* The port actually bound (useful with port 0). */
unsigned http_server_port(const http_server *s);
/* Stop accepting; in-flight requests continue. */
void http_server_quiesce(http_server *s);

/* --- request accessors (valid until on_free) --- */
const char *http_req_method(const http_req *r);
const char *http_req_path(const http_req *r);                     /* raw, percent-encoded */
const char *http_req_query(const http_req *r);                    /* raw, without '?', or "" */
const char *http_req_header(const http_req *r, const char *name); /* case-insensitive */
size_t http_req_header_count(const http_req *r);
void http_req_header_at(const http_req *r, size_t i, const char **ret_name, const char **ret_value);
/* Decoded query parameter (first occurrence) or NULL; owned by the request. */
const char *http_req_query_param(http_req *r, const char *name);
const char *http_req_body(const http_req *r, size_t *ret_len);
const char *http_req_peer(const http_req *r);        /* "ip" */
uint64_t http_req_content_length(const http_req *r); /* UINT64_MAX when absent */
http_server *http_req_server(const http_req *r);

void http_req_set_ops(http_req *r, const http_req_ops *ops, void *state);
void *http_req_state(const http_req *r);
void http_req_set_body_cap(http_req *r, size_t cap);
/* True when the buffered body exceeded its cap; on_complete then runs with an
 * empty body and must respond with an error. */
bool http_req_body_too_large(const http_req *r);

/* --- responding (exactly once) --- */
void http_req_add_header(http_req *r, const char *name, const char *value);
void http_req_respond(http_req *r, unsigned status, const char *content_type, const void *body,
                      size_t len);
/* Takes ownership of body (malloc'd). */
void http_req_respond_take(http_req *r, unsigned status, const char *content_type, char *body,
                           size_t len);
/* Takes ownership of fd; sends len bytes from offset (sendfile). */
void http_req_respond_fd(http_req *r, unsigned status, const char *content_type, int fd,
                         uint64_t offset, uint64_t len);
bool http_req_responded(const http_req *r);
