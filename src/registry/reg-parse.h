/* Pure parsers of the registry: names, references, routes, ranges,
 * manifests, auth tokens and lifecycle policies. No I/O, no globals: unit
 * tested in tests/unit/test-registry.c and fuzzed by fuzz/fuzz-registry-*.c.
 * Private to src/registry/. */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "basic/err.h"

#define REG_NAME_MAX           256
#define REG_TAG_MAX            128
#define REG_DIGEST_MAX         72
#define REG_REF_MAX            160
#define REG_MANIFEST_MAX       (4u << 20)
#define REG_TOKEN_TTL_SEC      (12 * 3600)
#define REG_ACCOUNT_LEN        12
#define REG_REGION_MAX         63
#define REG_LC_MAX_RULES       64
#define REG_LC_MAX_PREFIX      32

#define REG_MT_OCI_MANIFEST    "application/vnd.oci.image.manifest.v1+json"
#define REG_MT_OCI_INDEX       "application/vnd.oci.image.index.v1+json"
#define REG_MT_DOCKER_MANIFEST "application/vnd.docker.distribution.manifest.v2+json"
#define REG_MT_DOCKER_LIST     "application/vnd.docker.distribution.manifest.list.v2+json"

/* ECR repository names: [a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*,
 * 2-256 characters. */
bool reg_repo_name_valid(const char *s);
/* OCI tags: [a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}. */
bool reg_tag_valid(const char *s);
/* "sha256:<64 lower-case hex>" (the only algorithm skiff stores). */
bool reg_digest_valid(const char *s);
/* Syntactically a digest ("alg:encoded" per the OCI grammar), whatever the algorithm. */
bool reg_digest_syntax(const char *s);

typedef enum reg_route_kind {
    REG_ROUTE_BASE = 1,   /* /v2/ */
    REG_ROUTE_CATALOG,    /* /v2/_catalog */
    REG_ROUTE_TAGS,       /* /v2/<name>/tags/list */
    REG_ROUTE_MANIFEST,   /* /v2/<name>/manifests/<ref> */
    REG_ROUTE_BLOB,       /* /v2/<name>/blobs/<digest> */
    REG_ROUTE_UPLOAD_NEW, /* /v2/<name>/blobs/uploads/ */
    REG_ROUTE_UPLOAD,     /* /v2/<name>/blobs/uploads/<id> */
    REG_ROUTE_REFERRERS,  /* /v2/<name>/referrers/<digest> */
} reg_route_kind;

typedef struct reg_route {
    reg_route_kind kind;
    char name[REG_NAME_MAX + 1];
    char ref[REG_REF_MAX + 1]; /* tag, digest or upload id */
} reg_route;

/* Parses a raw (percent-encoded) request path starting with "/v2".
 * -ENOENT: not a registry route; -EINVAL: the repository name is invalid
 * (NAME_INVALID); -E2BIG: a component is too long. The name and ref are
 * decoded but not otherwise validated except the name. */
int reg_route_parse(const char *path, reg_route *ret);

/* Content-Range of a PATCH: "<start>-<end>", optionally "bytes " or "bytes="
 * before and "/<total>" or "/(star)" after. start <= end. -EINVAL when malformed. */
int reg_content_range_parse(const char *s, uint64_t *ret_start, uint64_t *ret_end);

/* A single-range "Range: bytes=a-b | a- | -n" against a blob of the given
 * size: the offset and length to send. -EINVAL when malformed (serve the
 * whole blob), -ERANGE when unsatisfiable (416). */
int reg_range_parse(const char *s, uint64_t size, uint64_t *ret_off, uint64_t *ret_len);

/* --- manifests --- */

typedef enum reg_manifest_kind {
    REG_MANIFEST_IMAGE = 1, /* OCI image manifest / Docker schema2 */
    REG_MANIFEST_INDEX,     /* OCI index / Docker manifest list */
} reg_manifest_kind;

typedef struct reg_desc {
    const char *media_type; /* borrowed from the parsed JSON; may be NULL */
    const char *digest;
    int64_t size;
    const char *artifact_type;
    const char *platform_os;
    const char *platform_arch;
    bool has_urls;       /* foreign layer: not required to exist */
    json_t *annotations; /* borrowed, may be NULL */
} reg_desc;

typedef struct reg_manifest {
    json_t *root;
    reg_manifest_kind kind;
    const char *media_type; /* effective media type */
    reg_desc config;        /* image manifests */
    reg_desc *descs;        /* layers or child manifests */
    size_t ndescs;
    bool has_subject;
    reg_desc subject;
    const char *artifact_type; /* artifactType, else config.mediaType (images) */
    json_t *annotations;       /* borrowed */
} reg_manifest;

/* Parses and validates a manifest. content_type is the declared media type
 * (Content-Type or imageManifestMediaType; NULL/"" to take the document's
 * mediaType). Errors carry err->type "MANIFEST_INVALID" (or "UNSUPPORTED"
 * for unknown media types, e.g. schema1). */
int reg_manifest_parse(const char *data, size_t len, const char *content_type, reg_manifest *ret,
                       sk_err *err);
void reg_manifest_done(reg_manifest *m);
bool reg_media_type_is_index(const char *mt);
bool reg_media_type_known(const char *mt);
/* True when an Accept header value lists mt (or a wildcard, or is empty). */
bool reg_accept_allows(const char *accept, const char *mt);

/* --- auth tokens --- */

typedef struct reg_token_claims {
    char account[REG_ACCOUNT_LEN + 1];
    char region[REG_REGION_MAX + 1];
    uint64_t expires; /* epoch seconds */
} reg_token_claims;

/* The registry password for (account, region) valid until `expires`
 * (malloc'd; base64 of "1:ACCOUNT:REGION:EXPIRES:NONCE:HMAC"). */
char *reg_token_make(const uint8_t *key, size_t keylen, const char *account, const char *region,
                     uint64_t expires);
/* Verifies signature and expiry (against now, epoch seconds). -EACCES when
 * the signature or format is wrong, -ETIMEDOUT when expired. */
int reg_token_verify(const uint8_t *key, size_t keylen, const char *password, uint64_t now,
                     reg_token_claims *ret);
/* "Basic base64(user:pass)" → user and password (malloc'd). -EINVAL otherwise. */
int reg_basic_auth_parse(const char *header, char **ret_user, char **ret_pass);
/* HMAC (hex, 64 chars + NUL) over a download URL's scope. */
void reg_url_sign(const uint8_t *key, size_t keylen, const char *account, const char *region,
                  const char *repo, const char *digest, uint64_t expires, char out[65]);
/* "ACCOUNT.dkr.ecr.REGION.amazonaws.com[:port]" → account and region; -EINVAL otherwise. */
int reg_host_parse(const char *host, char account[REG_ACCOUNT_LEN + 1],
                   char region[REG_REGION_MAX + 1]);

/* --- lifecycle policies --- */

typedef enum reg_lc_tag_status {
    REG_LC_TAGGED = 1,
    REG_LC_UNTAGGED,
    REG_LC_ANY,
} reg_lc_tag_status;

typedef enum reg_lc_count_type {
    REG_LC_COUNT_MORE_THAN = 1, /* imageCountMoreThan */
    REG_LC_SINCE_PUSHED,        /* sinceImagePushed (days) */
} reg_lc_count_type;

typedef struct reg_lc_rule {
    int64_t priority;
    reg_lc_tag_status tag_status;
    char *prefixes[REG_LC_MAX_PREFIX]; /* tagPrefixList */
    size_t nprefixes;
    char *patterns[REG_LC_MAX_PREFIX]; /* tagPatternList ('*' wildcards) */
    size_t npatterns;
    reg_lc_count_type count_type;
    int64_t count_number;
} reg_lc_rule;

typedef struct reg_lc_policy {
    reg_lc_rule rules[REG_LC_MAX_RULES]; /* sorted by priority */
    size_t nrules;
} reg_lc_policy;

typedef struct reg_lc_image {
    const char *digest;
    const char *const *tags;
    size_t ntags;
    uint64_t pushed_at; /* usec since the epoch */
    int64_t expired_by; /* out: rulePriority that expires it, 0 = kept */
} reg_lc_image;

/* Parses and validates a lifecycle policy; errors are SK_E_INVALID with
 * messages in ECR's words. */
int reg_lc_parse(const char *text, reg_lc_policy *ret, sk_err *err);
void reg_lc_done(reg_lc_policy *p);
/* ECR's evaluation: rules by ascending priority; an image matched by a
 * rule's selection cannot be expired by a later rule; an image is expired by
 * at most one rule; count rules still count images that an earlier rule
 * expired. Sets expired_by on each image. */
void reg_lc_eval(const reg_lc_policy *p, reg_lc_image *imgs, size_t n, uint64_t now_usec);
/* Glob with '*' only (ECR tag patterns). */
bool reg_wildcard_match(const char *pattern, const char *s);
