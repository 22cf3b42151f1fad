/* The container registry: an OCI Distribution Spec v1.1 data plane under
 * /v2/ and the Amazon ECR API (AWS JSON 1.1, model_ecr), over one store.
 *
 * Storage:
 *  - metadata in the store under "ecr/<account>/<region>/..." (see
 *    reg-internal.h for the key layout): repositories, image manifests with
 *    their tags, tag → digest, per-repository blob links, referrers,
 *    repository and lifecycle policies;
 *  - blob and manifest bytes in a content-addressed store (image/cas.h) in
 *    cfg->data_dir; every digest is verified before a blob becomes visible.
 *
 * Authentication on /v2/ is ECR's: HTTP Basic with user "AWS" and the
 * password from GetAuthorizationToken, an HMAC-signed token (key kept in the
 * store at "meta/ecr-token-key") scoped to one account and region and valid
 * for 12 hours. The account and region of the token select the namespace;
 * a request whose Host names ACCOUNT.dkr.ecr.REGION.amazonaws.com must match
 * them. Blob GETs also accept the signed query of GetDownloadUrlForLayer.
 *
 * Everything runs on the server's event loop; request bodies stream into the
 * CAS and blobs are sent with sendfile, so memory does not grow with blob
 * size. Two timers run: the lifecycle-policy evaluator (SKIFF_ECR_LIFECYCLE_SEC,
 * default 3600) and the blob garbage collector (SKIFF_ECR_GC_SEC, default
 * 3600), which never removes a blob that a manifest references or that was
 * linked or written less than SKIFF_ECR_GC_GRACE_SEC (default 3600) ago.
 * Upload sessions idle for SKIFF_ECR_UPLOAD_IDLE_SEC (default 3600) are
 * dropped. */
#pragma once

#include "basic/err.h"
#include "shared/aws.h"
#include "shared/event.h"
#include "store/store.h"

typedef struct reg_registry reg_registry;

typedef struct reg_config {
    const char *data_dir;   /* CAS directory, e.g. DATA/registry (created) */
    const char *host;       /* registry host:port for repositoryUri/proxyEndpoint */
    const char *account_id; /* default account (12 digits) */
    const char *region;     /* default region */
    const char *scheme;     /* "http" (default) or "https", for URLs handed out */
} reg_config;

int reg_new(ev_loop *loop, store *st, const reg_config *cfg, reg_registry **ret, sk_err *err);
void reg_free(reg_registry *r);

/* The ECR service definition (AWS JSON 1.1); valid until reg_free(). */
const aws_service_def *reg_ecr_service(reg_registry *r);
/* Claims "/v2/" on the router. */
void reg_attach_router(reg_registry *r, aws_router *router);

/* Runs one garbage-collection pass now; returns the number of blobs removed. */
int reg_gc_run(reg_registry *r, sk_err *err);
/* Runs the lifecycle evaluator over every repository with a policy now;
 * returns the number of images expired. */
int reg_lifecycle_run(reg_registry *r, sk_err *err);
