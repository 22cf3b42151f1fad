/* Internal interfaces of the image component, exposed for its unit tests and
 * fuzz targets. Everything here is pure (no I/O) unless stated otherwise. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "basic/err.h"
#include "image.h"

#define IMG_REF_MAX             1024
#define IMG_DOCKER_HUB_REGISTRY "registry-1.docker.io"
#define IMG_MANIFEST_MAX        (4 * 1024 * 1024)
#define IMG_CONFIG_MAX          (16 * 1024 * 1024)
#define IMG_TOKEN_MAX           (1024 * 1024)
#define IMG_AUTH_HEADER_MAX     8192
#define IMG_MAX_LAYERS          256
#define IMG_INDEX_MAX_ENTRIES   1024

#define IMG_MT_OCI_MANIFEST     "application/vnd.oci.image.manifest.v1+json"
#define IMG_MT_OCI_INDEX        "application/vnd.oci.image.index.v1+json"
#define IMG_MT_DOCKER_MANIFEST  "application/vnd.docker.distribution.manifest.v2+json"
#define IMG_MT_DOCKER_LIST      "application/vnd.docker.distribution.manifest.list.v2+json"

/* True for "host[:port]" per the reference grammar (host may be "[ipv6]"). */
bool img_domain_valid(const char *s, size_t n);

/* ---- WWW-Authenticate ---- */

typedef struct img_auth_challenge {
    char *scheme;                          /* lower-case: "bearer" or "basic" */
    char *realm, *service, *scope, *error; /* NULL when absent */
} img_auth_challenge;

/* Parses one WWW-Authenticate value of n bytes (NUL bytes allowed and
 * rejected), which may list several challenges, and returns the first Bearer
 * challenge, else the first Basic one. SK_E_INVALID when malformed or when
 * neither scheme is offered; SK_E_LIMIT past IMG_AUTH_HEADER_MAX bytes. */
int img_auth_parse(const char *s, size_t n, img_auth_challenge *ret, sk_err *err);
void img_auth_challenge_done(img_auth_challenge *c);

/* ---- manifests ---- */

typedef struct img_descriptor {
    char *media_type; /* may be NULL */
    char *digest;     /* always a valid "sha256:<hex>" */
    uint64_t size;
    char *os, *arch, *variant; /* index entries' platform; NULL when absent */
} img_descriptor;

typedef enum img_manifest_kind {
    IMG_MANIFEST_IMAGE,
    IMG_MANIFEST_INDEX,
} img_manifest_kind;

typedef struct img_manifest {
    img_manifest_kind kind;
    char *media_type;
    img_descriptor config; /* IMAGE */
    img_descriptor *layers;
    size_t nlayers;
    img_descriptor *manifests; /* INDEX */
    size_t nmanifests;
} img_manifest;

bool img_media_type_is_index(const char *mt);
bool img_media_type_is_manifest(const char *mt);

/* Parses an OCI image manifest or index, or a Docker schema 2 manifest or
 * manifest list. The kind comes from the document's mediaType, else from
 * content_type (may be NULL), else from its shape. Every digest is checked
 * with cas_digest_valid(); layer and config media types must be ones we can
 * run. */
int img_manifest_parse(const char *data, size_t len, const char *content_type, img_manifest **ret,
                       sk_err *err);
void img_manifest_free(img_manifest *m);

typedef struct img_platform {
    char os[32], arch[32], variant[32];
} img_platform;

/* Normalises aliases (x86_64 → amd64, aarch64 → arm64, "arm/v7" → arm + v7,
 * arm64's default variant v8 → ""). */
void img_platform_normalize(const char *os, const char *arch, const char *variant,
                            img_platform *ret);
/* Picks the index entry for os/arch (arch may carry "/variant"); NULL
 * defaults are linux/amd64. An exact variant match wins, then an entry
 * without variant, then any variant. NULL when nothing matches. */
const img_descriptor *img_manifest_select(const img_manifest *idx, const char *os,
                                          const char *arch);

typedef struct img_config {
    char **diff_ids; /* valid digests */
    size_t n_diff_ids;
    json_t *config; /* owned; never NULL after a successful parse */
    char *os, *arch;
} img_config;

int img_config_parse(const char *data, size_t len, img_config *ret, sk_err *err);
void img_config_done(img_config *c);

/* ---- registry client helpers ---- */

/* True when host[:port] must be contacted over plain HTTP: loopback hosts
 * (127.0.0.0/8, localhost, [::1]) and entries of the comma-separated list
 * (matched with or without the port). */
bool img_registry_insecure(const char *host, const char *insecure_list);

/* Peak number of blob transfers in flight during the last img_pull() in this
 * process (for tests). */
extern unsigned img_debug_peak_transfers;

/* ---- layers ---- */

/* Forces the component-by-component O_NOFOLLOW walk instead of openat2()
 * (for tests of the fallback). */
extern bool img_unpack_force_fallback;

#define IMG_UNPACK_MAX_ENTRIES (1u << 20)
#define IMG_UNPACK_MAX_BYTES   (64ULL << 30)
/* Caps on one layer's entries and uncompressed bytes; tests and fuzzers lower them. */
extern uint64_t img_unpack_max_entries;
extern uint64_t img_unpack_max_bytes;

/* ---- store internals shared by store.c and pull.c ---- */

struct img_store {
    char *dir; /* absolute */
    int dir_fd, layers_fd, images_fd, tmp_fd;
    cas *cas;
};

/* Takes the store lock (LOCK_SH or LOCK_EX, optionally | LOCK_NB); the
 * returned fd releases it when closed. -EWOULDBLOCK when busy with LOCK_NB. */
int img_store_lock(img_store *s, int op, int *ret_fd);
bool img_layer_present(img_store *s, const char *diff_id);
/* Unpacks the committed blob into layers/<diff_id hex>/ unless present;
 * safe against concurrent callers for the same layer. */
int img_layer_ensure(img_store *s, const char *blob_digest, const char *diff_id, sk_err *err);
/* Image records: JSON objects keyed by the requested reference string. */
int img_record_read(img_store *s, const char *ref, json_t **ret, sk_err *err);
int img_record_write(img_store *s, const char *ref, json_t *rec, sk_err *err);
