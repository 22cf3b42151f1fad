/* The AWS wire protocols on top of the HTTP server: request routing by
 * X-Amz-Target (JSON 1.0/1.1) or by SigV4 scope + Action (query protocol),
 * SigV4 authentication, model validation, and AWS-shaped errors.
 *
 * A service is an aws_service_def: a model, an operation→handler table and
 * per-service error names. Adding a service (ECR, CloudWatch Logs, STS, ...)
 * means adding a definition; the router does not change. Paths other than "/"
 * can be claimed with aws_router_add_path (the registry's /v2/, the agent
 * channel), and "/healthz" is answered here without authentication.
 *
 * Handlers receive a validated JSON input and reply exactly once, either
 * synchronously or later from the event loop. */
#pragma once

#include <jansson.h>

#include "basic/err.h"
#include "http.h"
#include "model.h"

typedef struct aws_ctx {
    char account[13];
    char region[64];
    char access_key[129];
    char request_id[37];
    char service[64];
} aws_ctx;

typedef struct aws_call aws_call;
typedef void (*aws_op_fn)(aws_call *call);

typedef struct aws_op_binding {
    const char *name;
    aws_op_fn fn;
} aws_op_binding;

typedef enum aws_protocol {
    AWS_PROTO_JSON,
    AWS_PROTO_QUERY,
} aws_protocol;

typedef struct aws_service_def {
    const model_service *model;
    aws_protocol protocol;
    const char *validation_error; /* e.g. "InvalidParameterException" */
    const char *fault_error;      /* e.g. "ServerException" */
    const char *client_error;     /* generic client error, e.g. "ClientException" */
    size_t body_cap;
    const aws_op_binding *ops; /* sorted by name */
    size_t nops;
    void *userdata;
} aws_service_def;

/* Looks up a secret for an access key; returns < 0 when unknown. The strings
 * must stay valid until the next call. */
typedef int (*aws_key_lookup_fn)(void *userdata, const char *access_key, const char **ret_secret,
                                 const char **ret_account);

typedef struct aws_router aws_router;

aws_router *aws_router_new(aws_key_lookup_fn lookup, void *userdata);
void aws_router_free(aws_router *r);
void aws_router_add_service(aws_router *r, const aws_service_def *def);
/* Requests whose path starts with prefix go to fn (which authenticates them itself). */
void aws_router_add_path(aws_router *r, const char *prefix, http_route_fn fn, void *userdata);
/* Health: /healthz answers 200 only while ready is set. */
void aws_router_set_ready(aws_router *r, bool ready);
/* The http_route_fn to give to http_server_new (userdata: the router). */
void aws_router_route(http_req *req, void *router);

/* SigV4-authenticates req with its (complete) body for the given signing
 * service (NULL: any). Fills ctx. */
int aws_authenticate(aws_router *r, http_req *req, const void *body, size_t len,
                     const char *service, aws_ctx *ctx, sk_err *err);

/* --- handler side --- */
const aws_ctx *aws_call_ctx(const aws_call *c);
json_t *aws_call_input(const aws_call *c); /* borrowed */
const char *aws_call_op(const aws_call *c);
void *aws_call_userdata(const aws_call *c);
http_req *aws_call_http(const aws_call *c);
const aws_service_def *aws_call_service(const aws_call *c);

/* Replies 200 with out (reference stolen; NULL means {}). */
void aws_reply(aws_call *c, json_t *out);
/* Replies with a pre-serialised JSON body (taken). */
void aws_reply_raw(aws_call *c, char *body, size_t len);
/* Replies with the error; SK_E_* codes map to the service's error names
 * unless err->type is set. */
void aws_reply_err(aws_call *c, const sk_err *err);
void aws_reply_error(aws_call *c, const char *type, const char *fmt, ...) _printf_(3, 4);

/* Renders an AWS JSON error directly on an HTTP request. */
void aws_http_error(http_req *req, unsigned status, const char *type, const char *message,
                    const char *request_id);
unsigned aws_error_status(const char *type, sk_errc code);

/* JSON encoding used for every response: compact, 15 significant digits for reals. */
char *aws_json_dump(const json_t *v, size_t *ret_len);
