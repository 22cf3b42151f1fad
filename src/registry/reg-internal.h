/* Registry internals shared by the /v2/ front end (reg-v2.c), the ECR API
 * (reg-ecr.c), metadata access (reg-meta.c) and the timers (registry.c).
 *
 * Store key layout ("NS" = "ecr/<account>/<region>"; repository names
 * cannot contain '@', so "<repo>@" prefixes never match another repository):
 *
 *   NS/repo/<repo>                  Repository JSON (+ "_tags": [{Key,Value}])
 *   NS/img/<repo>@<digest>          image: {digest, mediaType, artifactType,
 *                                   size, imageSize, pushedAt (usec), tags[],
 *                                   refs[] (config, layers, children), subject}
 *   NS/tag/<repo>@<tag>             {digest, at}
 *   NS/blob/<repo>@<digest>         blob link {size, at}
 *   NS/referrer/<repo>@<subject>@<digest>   {mediaType, artifactType, size, annotations}
 *   NS/policy/<repo>                {text}
 *   NS/lifecycle/<repo>             {text, lastEvaluatedAt}
 *   NS/lcpreview/<repo>             {text, results[], at}
 *   meta/ecr-token-key              {key: hex}
 *
 * Manifest bytes live in the CAS next to blobs (keyed by their digest). */
#pragma once

#include "basic/hmap.h"
#include "basic/vec.h"
#include "image/cas.h"
#include "reg-parse.h"
#include "registry.h"
#include "shared/jsonutil.h"

typedef struct reg_ns {
    char account[REG_ACCOUNT_LEN + 1];
    char region[REG_REGION_MAX + 1];
} reg_ns;

typedef struct reg_upload {
    char id[37];
    reg_ns ns;
    char repo[REG_NAME_MAX + 1];
    cas_writer *w;
    usec_t last_active; /* monotonic */
    bool busy;          /* a request is streaming into it */
    bool via_api;       /* InitiateLayerUpload */
    bool small_part;    /* API: a part < 5 MiB was followed by another part */
    uint64_t last_part_len;
} reg_upload;

struct reg_registry {
    ev_loop *loop;
    store *st;
    cas *cas;
    char *host;
    char *scheme;
    char *account;
    char *region;
    uint8_t token_key[32];
    aws_service_def ecr_def;
    aws_op_binding *ops;
    sk_hmap uploads;      /* id → reg_upload* */
    sk_vec stale_uploads; /* while loading: keys of records that cannot resume */
    ev_timer *lc_timer;
    ev_timer *gc_timer;
    ev_timer *upload_timer;
    usec_t lc_interval;
    usec_t gc_interval;
    usec_t gc_grace;
    usec_t upload_idle;
    size_t max_uploads;
};

#define REG_TOO_MANY_UPLOADS 10000

/* --- keys and metadata (reg-meta.c) --- */
char *reg_key(const reg_ns *ns, const char *kind, const char *fmt, ...) _printf_(3, 4);
/* The inverse of reg_key for one kind: the suffix after
 * "ecr/<account>/<region>/<kind>/", filling ns; NULL for other keys. */
const char *reg_key_split(const char *key, const char *kind, reg_ns *ret_ns);
json_t *reg_repo_get(reg_registry *r, const reg_ns *ns, const char *repo);
bool reg_blob_linked(reg_registry *r, const reg_ns *ns, const char *repo, const char *digest,
                     uint64_t *ret_size);
/* Links a committed blob into a repository (one transaction). */
int reg_blob_link(reg_registry *r, const reg_ns *ns, const char *repo, const char *digest,
                  uint64_t size, sk_err *err);
json_t *reg_image_get(reg_registry *r, const reg_ns *ns, const char *repo, const char *digest);
/* Tag → digest (malloc'd) or NULL. */
char *reg_tag_resolve(reg_registry *r, const reg_ns *ns, const char *repo, const char *tag);
bool reg_tag_immutable(const json_t *repo_doc, const char *tag);

typedef struct reg_put_result {
    char digest[CAS_DIGEST_MAX];
    bool image_existed;
    bool tag_unchanged; /* the tag already pointed at this digest */
} reg_put_result;

/* Stores a manifest (already size-capped) as an image of repo, optionally
 * tagging it. expect_digest (optional) must match. Errors carry err->type:
 * MANIFEST_INVALID, DIGEST_INVALID, MANIFEST_BLOB_UNKNOWN (missing blob),
 * "REFERENCED_MANIFEST_UNKNOWN" (missing child manifest), "TAG_IMMUTABLE". */
int reg_image_put(reg_registry *r, const reg_ns *ns, const json_t *repo_doc, const char *repo,
                  const char *data, size_t len, const char *media_type, const char *tag,
                  const char *expect_digest, reg_put_result *ret, sk_err *err);
/* Deletes an image and its tags and referrer entries. */
int reg_image_delete(reg_registry *r, const reg_ns *ns, const char *repo, const char *digest,
                     sk_err *err);
/* Removes one tag (the image stays). */
int reg_tag_delete(reg_registry *r, const reg_ns *ns, const char *repo, const char *tag,
                   sk_err *err);
/* Deletes the repository and everything under it. */
int reg_repo_delete_all(reg_registry *r, const reg_ns *ns, const char *repo, sk_err *err);
/* Digests of every image in repo (sk_vec of malloc'd strings), key order. */
void reg_repo_images(reg_registry *r, const reg_ns *ns, const char *repo, sk_vec *ret);
bool reg_repo_has_images(reg_registry *r, const reg_ns *ns, const char *repo);

/* --- front ends --- */
void reg_v2_route(http_req *req, void *userdata);
void reg_ecr_init(reg_registry *r);
void reg_uploads_free(reg_registry *r);
/* Upload sessions are durable (store record + staged file) and survive
 * restarts; reg_uploads_free keeps them, reg_upload_drop ends one. */
reg_upload *reg_upload_new(reg_registry *r, const reg_ns *ns, const char *repo, bool via_api,
                           sk_err *err);
/* Records the session's part bookkeeping (after an API part). */
int reg_upload_save(reg_registry *r, const reg_upload *u, sk_err *err);
void reg_uploads_load(reg_registry *r);
reg_upload *reg_upload_find(reg_registry *r, const reg_ns *ns, const char *repo, const char *id);
void reg_upload_drop(reg_registry *r, reg_upload *u);

/* Expire images of one repository per its lifecycle policy (or a preview
 * only, when dry_run): returns the number of images (to be) expired and
 * fills ret_results (optional) with ECR previewResults. */
int reg_lifecycle_apply(reg_registry *r, const reg_ns *ns, const char *repo, const char *text,
                        bool dry_run, json_t **ret_results, sk_err *err);
