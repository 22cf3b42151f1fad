/* The node agent's image store: pulls images from OCI / Docker registries
 * through the distribution API into the content store, unpacks every layer
 * once into a directory usable as an overlayfs lower dir, and garbage-collects
 * unused images.
 *
 * Layout under DIR: cas/ (see cas.h), layers/<diffid-hex>/ (unpacked,
 * read-only once complete; a ".complete" marker is written last),
 * images/<sha256(ref)>.json (the image record), tmp/.
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
    unsigned parallel;          /* concurrent layer downloads; default 4 */
    const char *os, *arch;      /* platform for manifest lists; default linux/amd64 */
    uint64_t max_blob_size;     /* default 8 GiB */
} img_pull_opts;

/* The record of a pulled image. */
typedef struct img_image {
    char *ref;              /* as requested */
    char *manifest_digest;  /* of the platform manifest */
    char *config_digest;
    char **layer_dirs;      /* absolute unpacked layer dirs, bottom → top */
    size_t nlayers;
    json_t *config;         /* the image config's "config" object (Env, Entrypoint,
                               Cmd, WorkingDir, User, StopSignal, Labels,
                               ExposedPorts, Healthcheck); never NULL */
    uint64_t size;          /* compressed bytes of all layers */
    usec_t pulled_at;       /* realtime */
    usec_t last_used;       /* realtime */
} img_image;

int img_store_open(const char *dir, img_store **ret, sk_err *err);
void img_store_close(img_store *s);
cas *img_store_cas(img_store *s);

/* Pulls (or refreshes) ref. Errors carry a message suitable after
 * "CannotPullContainerError: ". */
int img_pull(img_store *s, const img_pull_opts *o, sk_err *err);
/* Looks up a previously pulled image by the same reference string. */
int img_lookup(img_store *s, const char *ref, img_image **ret, sk_err *err);
int img_touch(img_store *s, const char *ref); /* updates last_used */
void img_image_free(img_image *img);

/* Removes images not listed in in_use (refs), pulled and unused for at least
 * min_age, at most max_delete per call, then layers and blobs no remaining
 * image references. Returns the number of images removed. */
int img_gc(img_store *s, const char *const *in_use, size_t n_in_use, usec_t min_age,
           unsigned max_delete, sk_err *err);

/* Unpacks one layer (tar, optionally gzip/zstd compressed) from fd into dest,
 * which must exist and be empty. Converts OCI whiteouts (.wh.NAME → 0:0
 * character device; .wh..wh..opq → trusted.overlay.opaque=y). Refuses and
 * fails on: absolute paths or ".." escaping dest, writes through symlinks
 * (absolute or relative) that leave dest, hardlinks whose target leaves dest,
 * and device nodes / FIFOs other than whiteouts. Nothing is ever written
 * outside dest. */
int img_unpack_layer(int fd, const char *dest, sk_err *err);
