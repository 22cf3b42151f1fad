/* The control plane: Amazon ECS API handlers over the store, plus the
 * identity pieces every service needs (root credentials, STS).
 *
 * Runs on the server's event loop. Resources are namespaced by account and
 * region ("ecs/<account>/<region>/..."); the region comes from each request's
 * SigV4 scope. */
#pragma once

#include "basic/err.h"
#include "shared/aws.h"
#include "shared/event.h"
#include "store/store.h"

typedef struct cp cp;

typedef struct cp_config {
    const char *account_id;   /* 12 digits */
    const char *region;       /* default region */
    const char *endpoint_url; /* how agents reach this server, e.g. http://127.0.0.1:4566 */
    unsigned stopped_task_retention_sec; /* default 3600 */
    unsigned agent_timeout_sec;          /* agentConnected turns false after this; default 60 */
} cp_config;

int cp_new(ev_loop *loop, store *st, const cp_config *cfg, cp **ret, sk_err *err);
void cp_free(cp *c);
const aws_service_def *cp_ecs_service(cp *c);
const aws_service_def *cp_sts_service(cp *c);
/* Serves the agent channel (/acs/) on the router; call once after creating it. */
void cp_attach_router(cp *c, aws_router *router);

/* Records that the agent of a container instance was heard from (poll,
 * heartbeat, state change). */
void cp_instance_touch(cp *c, const char *account, const char *region, const char *cluster,
                       const char *instance_id);

/* --- credentials (iam.c) --- */

/* Ensures root credentials exist in the store (from the environment
 * SKIFF_ROOT_ACCESS_KEY_ID / SKIFF_ROOT_SECRET_ACCESS_KEY on first start, else
 * generated) and writes them to cred_path (mode 0600) in the AWS
 * shared-credentials format. */
int cp_credentials_init(store *st, const char *account_id, const char *region,
                        const char *cred_path, sk_err *err);
/* The root key pair (malloc'd copies). */
int cp_root_credentials(store *st, char **ret_access_key, char **ret_secret, sk_err *err);
/* aws_key_lookup_fn over the store (userdata: store*). */
int cp_key_lookup(void *userdata, const char *access_key, const char **ret_secret,
                  const char **ret_account);
