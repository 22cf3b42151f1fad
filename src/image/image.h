/* The node agent's image store: pulls images from OCI / Docker registries
 * through the distribution API into the content store, unpacks every layer
 * once into a directory usable as an overlayfs lower dir, and garbage-collects
 * unused images.
 *
 * Layout under DIR: cas/ (see cas.h), layers/<diffid-hex>/ (unpacked; a
 * layer directory appears complete or not at all: it is extracted under tmp/,
 * synced, and renamed into place, so no marker file is needed and none pollutes
 * the container's root), images/<sha256(ref)>.json (the image record), tmp/,
 * lock (pulls hold it shared, the garbage collector's sweep exclusive).
 *
 * Pulls are synchronous and meant to run in a worker process (the agent forks
 * one per pull); they may use parallel transfers internally. Every other call
 * is cheap. Concurrent pulls of images sharing layers are safe: layer unpacking
 * is claimed through an atomic rename, and a shared layer is stored and
 * unpacked once. */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "basic/err.h"
#include "basic/timeutil.h"
#include "cas.h"

typedef struct img_store img_store;

/* A parsed image reference: [host[:port]/]repo[:tag][@digest].
 * Docker Hub names are normalised: "busybox" → registry-1.docker.io,
 * "library/busybox", tag "latest". */
typedef struct img_ref {
    char *registry; /* host[:port] to contact */
    char *repository;
    char *tag;    /* NULL when only a digest was given */
    char *digest; /* NULL when absent */
} img_ref;

int img_ref_parse(const char *s, img_ref *ret, sk_err *err);
void img_ref_done(img_ref *r);
/* Canonical string "registry/repository:tag" or "@digest". Caller frees. */
char *img_ref_string(const img_ref *r);

typedef struct img_pull_opts {
    const char *ref;
    /* Basic credentials, used directly (Basic auth) or to obtain a bearer
     * token when the registry answers with a Bearer challenge. May be NULL. */
    const char *username;
    const char *password;
    /* Plain HTTP is used for loopback registries and for registries listed
     * here (comma-separated host[:port]); HTTPS otherwise. */
    const char *insecure_registries;
    /* Maps a registry host to the address actually contacted (e.g. an ECR
     * host name to skiff's own registry). NULL: no mapping. */
    const char *(*rewrite_host)(void *userdata, const char *host);
    void *rewrite_userdata;
    unsigned parallel;      /* concurrent layer downloads; default 4 */
    const char *os, *arch;  /* platform for manifest lists; default linux/amd64 */
    uint64_t max_blob_size; /* default 8 GiB */
} img_pull_opts;

/* The record of a pulled image. */
typedef struct img_image {
    char *ref;             /* as requested */
    char *manifest_digest; /* of the platform manifest */
    char *config_digest;
    char **layer_dirs; /* absolute unpacked layer dirs, bottom → top */
    size_t nlayers;
    json_t *config;   /* the image config's "config" object (Env, Entrypoint,
                         Cmd, WorkingDir, User, StopSignal, Labels,
                         ExposedPorts, Healthcheck); never NULL */
    uint64_t size;    /* compressed bytes of all layers */
    usec_t pulled_at; /* realtime */
    usec_t last_used; /* realtime */
} img_image;

int img_store_open(const char *dir, img_store **ret, sk_err *err);
void img_store_close(img_store *s);
cas *img_store_cas(img_store *s);

/* Pulls (or refreshes) ref. Errors carry a message suitable after
 * "CannotPullContainerError: "; err->code is SK_E_INVALID (bad reference,
 * manifest or content; err->type "DIGEST_INVALID" for a digest mismatch),
 * SK_E_NOT_FOUND (manifest unknown), SK_E_AUTH (access denied),
 * SK_E_UNAVAILABLE (network, registry errors), SK_E_LIMIT or SK_E_SYSTEM.
 * A pull by digest whose record is already complete does no network I/O.
 *
 * img_pull() uses libcurl, whose resolver (Debian's build) runs lookups on
 * helper threads: call it only in a process that will not fork afterwards,
 * i.e. the per-pull worker process. */
int img_pull(img_store *s, const img_pull_opts *o, sk_err *err);
/* Looks up a previously pulled image by the same reference string.
 * SK_E_NOT_FOUND when it was never pulled, was collected, or one of its layer
 * directories is missing (pull it again). */
int img_lookup(img_store *s, const char *ref, img_image **ret, sk_err *err);
/* Updates last_used: 0, -ENOENT for an unknown ref, or another -errno. */
int img_touch(img_store *s, const char *ref);
void img_image_free(img_image *img);

/* Removes images not listed in in_use (refs), pulled and unused for at least
 * min_age, at most max_delete per call (0: no limit), least recently used
 * first, then layers and blobs no remaining image references. The sweep of
 * layers and blobs is skipped while a pull holds the store lock (it runs at
 * a later call). Returns the number of images removed. */
int img_gc(img_store *s, const char *const *in_use, size_t n_in_use, usec_t min_age,
           unsigned max_delete, sk_err *err);

/* Unpacks one layer (tar, optionally gzip/zstd/xz compressed) from fd into
 * dest, which must exist and be empty. Converts OCI whiteouts (.wh.NAME → 0:0
 * character device; .wh..wh..opq → trusted.overlay.opaque=y; other .wh..wh.*
 * names are dropped). Refuses and fails (SK_E_INVALID) on: absolute entry
 * names, ".." climbing above dest, writes through symlinks (absolute or
 * relative) that leave dest, hardlinks whose target is absolute, leaves dest
 * or does not exist, and device nodes / FIFOs other than whiteouts; SK_E_LIMIT
 * past IMG_UNPACK_MAX_ENTRIES entries or IMG_UNPACK_MAX_BYTES uncompressed
 * bytes. Symlinks themselves are created with any target (it is data, resolved
 * inside the container). Preserves mode, owner, times, user.* and
 * security.capability xattrs; other xattrs are dropped. Nothing is ever written
 * outside dest; on failure dest holds a partial tree the caller removes. */
int img_unpack_layer(int fd, const char *dest, sk_err *err);
/* As img_unpack_layer(), and checks that the uncompressed stream hashes to
 * expected_diffid (NULL: no check; on mismatch SK_E_INVALID with err->type
 * "DIGEST_INVALID"). ret_diffid (optional) receives the computed diff_id. */
int img_unpack_layer_verify(int fd, const char *dest, const char *expected_diffid,
                            char ret_diffid[CAS_DIGEST_MAX], sk_err *err);
