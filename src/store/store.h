/* The state store: a versioned key-value space with compare-and-swap
 * transactions, prefix ranges and watches (the etcd data model), kept fully
 * in memory for reads and made durable by a pluggable backend.
 *
 * Contract (see docs/ARCHITECTURE.md, "Store contract"):
 *  - Every key has create_rev and mod_rev. The store revision grows by one per
 *    committed transaction; all puts in a transaction share it.
 *  - store_txn_commit() checks its compares against the current state and
 *    applies all its operations atomically to memory, or none. Watchers run
 *    synchronously during the apply, in commit order.
 *  - A committed transaction is *visible* at once but *durable* only after the
 *    next store_flush(). Callers must not acknowledge a write to a client
 *    before store_dirty() turns false (the HTTP layer holds responses until
 *    then); store_attach() flushes once per event-loop iteration, so many
 *    transactions share one fsync (group commit).
 *  - Backends: "sqlite:PATH" (embedded, WAL, synchronous=FULL). An etcd
 *    backend maps txn compares to etcd Txn compares on mod_revision; see the
 *    architecture notes for how flush-time conflicts are surfaced.
 *
 * Not thread-safe: use from the event-loop thread. */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "basic/err.h"
#include "shared/event.h"

#define STORE_MAX_KEY   1024
#define STORE_MAX_VALUE (4u << 20)

typedef struct store store;
typedef struct store_txn store_txn;

typedef struct store_kv {
    const char *key;
    const char *value; /* NUL-terminated (len excludes it) */
    size_t len;
    uint64_t create_rev;
    uint64_t mod_rev;
} store_kv;

int store_open(const char *uri, store **ret, sk_err *err);
void store_close(store *s);
/* Registers a prepare hook that flushes after each loop iteration. A flush
 * failure is fatal: the loop is stopped with exit code 1 and no held
 * response is released. */
void store_attach(store *s, ev_loop *loop);

uint64_t store_revision(const store *s);
size_t store_count(const store *s);

/* Borrowed; valid until that key is next modified. */
const store_kv *store_get(const store *s, const char *key);
/* Parses the value as JSON (new reference) or returns NULL. */
json_t *store_get_json(const store *s, const char *key);

/* Calls fn for keys with the prefix in order, starting after start_after
 * (exclusive; NULL: from the start). fn returns false to stop. The store must
 * not be modified from fn. */
typedef bool (*store_range_fn)(const store_kv *kv, void *userdata);
void store_range(const store *s, const char *prefix, const char *start_after, store_range_fn fn,
                 void *userdata);

store_txn *store_txn_new(store *s);
void store_txn_free(store_txn *t);
/* Compare: key must have this mod_rev (0: must not exist). */
void store_txn_expect(store_txn *t, const char *key, uint64_t mod_rev);
void store_txn_put(store_txn *t, const char *key, const char *value, size_t len);
void store_txn_put_json(store_txn *t, const char *key, const json_t *v);
void store_txn_delete(store_txn *t, const char *key);
/* Applies and frees t. SK_E_CONFLICT when a compare fails; SK_E_INVALID for
 * oversized keys or values. */
int store_txn_commit(store_txn *t, sk_err *err);

/* Convenience single-operation transactions. */
int store_put(store *s, const char *key, const char *value, size_t len, sk_err *err);
int store_put_json(store *s, const char *key, const json_t *v, sk_err *err);
int store_delete(store *s, const char *key, sk_err *err);

bool store_dirty(const store *s);
int store_flush(store *s, sk_err *err);
/* Flush statistics: commits, fsync batches. */
void store_stats(const store *s, uint64_t *ret_txns, uint64_t *ret_flushes);

/* Watch: fn(old, new) for every change under prefix; old NULL on create,
 * new NULL on delete. */
typedef void (*store_watch_fn)(void *userdata, const store_kv *old, const store_kv *new);
void store_watch(store *s, const char *prefix, store_watch_fn fn, void *userdata);

/* JSON encoding used for stored values (compact, sorted keys). */
char *store_json_dump(const json_t *v, size_t *ret_len);
