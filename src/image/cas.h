/* Content-addressed blob store ("sha256:<hex>" digests), shared by the node
 * agent's image store and the registry.
 *
 * Layout: DIR/blobs/sha256/<hex> (immutable, 0644) and DIR/tmp/ for uploads in
 * progress. A blob becomes visible only after its digest was verified: writers
 * stream into a temp file while hashing, and commit renames it into place
 * (fsync'd) only when the digest matches. Readers get plain fds, so callers
 * can sendfile() them. Deleting a blob never affects an open fd. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "basic/err.h"

#define CAS_DIGEST_MAX 72 /* "sha256:" + 64 hex + NUL, rounded */

typedef struct cas cas;
typedef struct cas_writer cas_writer;

int cas_open(const char *dir, cas **ret, sk_err *err);
void cas_close(cas *c);
const char *cas_dir(const cas *c);

/* True for "sha256:<64 lower-case hex>". Other algorithms are rejected. */
bool cas_digest_valid(const char *digest);

/* Opens a blob read-only (O_CLOEXEC); SK_E_NOT_FOUND when absent. */
int cas_open_blob(cas *c, const char *digest, int *ret_fd, uint64_t *ret_size, sk_err *err);
bool cas_has(cas *c, const char *digest);
int cas_stat(cas *c, const char *digest, uint64_t *ret_size, sk_err *err);
int cas_delete(cas *c, const char *digest, sk_err *err);
/* Path of a committed blob (for tools that need one); caller frees. */
char *cas_blob_path(const cas *c, const char *digest);

/* Streaming writer. Data may arrive in any chunk sizes; memory use is constant. */
int cas_writer_new(cas *c, cas_writer **ret, sk_err *err);
int cas_writer_write(cas_writer *w, const void *p, size_t n, sk_err *err);
uint64_t cas_writer_size(const cas_writer *w);
/* Digest of what was written so far ("sha256:..."), into out[CAS_DIGEST_MAX]. */
void cas_writer_digest(const cas_writer *w, char out[CAS_DIGEST_MAX]);
/* Verifies the content against expected (NULL: accept the computed digest),
 * then makes it visible. On mismatch: SK_E_INVALID with err->type
 * "DIGEST_INVALID" and nothing is stored. Frees w in every case; ret_digest
 * (optional) receives the digest. */
int cas_writer_commit(cas_writer *w, const char *expected, char ret_digest[CAS_DIGEST_MAX],
                      sk_err *err);
void cas_writer_abort(cas_writer *w);
/* Staged writes that outlive the process (registry upload sessions): name is
 * the writer's temp file under DIR/tmp/. cas_writer_close frees w but keeps
 * the file; cas_writer_resume reopens it, rehashing what it holds, so writing
 * continues where the file ends. Temp files untouched for a day are removed
 * by cas_open. */
const char *cas_writer_name(const cas_writer *w);
void cas_writer_close(cas_writer *w);
int cas_writer_resume(cas *c, const char *name, cas_writer **ret, sk_err *err);

/* Stores a whole buffer (manifests, configs). */
int cas_put(cas *c, const void *p, size_t n, const char *expected, char ret_digest[CAS_DIGEST_MAX],
            sk_err *err);
/* Reads a whole blob up to max bytes. */
int cas_get(cas *c, const char *digest, size_t max, char **ret, size_t *ret_len, sk_err *err);
