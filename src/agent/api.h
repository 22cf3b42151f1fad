/* The agent's client for skiff's APIs: libcurl multi driven by the agent's
 * ev_loop, every request SigV4-signed with the agent's credentials. Calls are
 * asynchronous; the callback runs exactly once from the loop. */
#pragma once

#include <jansson.h>
#include <stdbool.h>

#include "basic/err.h"
#include "basic/timeutil.h"
#include "shared/event.h"

typedef struct agent_api agent_api;

typedef struct agent_api_config {
    const char *url; /* "http://127.0.0.1:4566" */
    const char *access_key;
    const char *secret_key;
    const char *region;
    unsigned max_connections; /* to the server; 0: 8 */
} agent_api_config;

/* status: HTTP status (0 when the request did not complete; err_type then
 * names the transport error). For JSON errors, err_type is the AWS __type. */
typedef void (*agent_api_cb)(void *userdata, long status, json_t *response, const char *err_type,
                             const char *err_msg);

int agent_api_new(ev_loop *loop, const agent_api_config *cfg, agent_api **ret, sk_err *err);
void agent_api_free(agent_api *a);

/* AWS JSON 1.1 call: target like "AmazonEC2ContainerServiceV20141113.RunTask",
 * signing service "ecs" or "logs". body is stolen. */
void agent_api_call(agent_api *a, const char *service, const char *target, json_t *body,
                    usec_t timeout, agent_api_cb cb, void *userdata);
/* The same, signed for another region (ECR tokens are per region). */
void agent_api_call_in(agent_api *a, const char *region, const char *service, const char *target,
                       json_t *body, usec_t timeout, agent_api_cb cb, void *userdata);
/* "host:port" of the server, as in its URL. */
const char *agent_api_host(const agent_api *a);
bool agent_api_is_https(const agent_api *a);

/* POST to another path (the /acs/poll channel) with a signed JSON body. */
void agent_api_post(agent_api *a, const char *path, const char *service, json_t *body,
                    usec_t timeout, agent_api_cb cb, void *userdata);
/* Number of requests in flight. */
unsigned agent_api_inflight(const agent_api *a);
