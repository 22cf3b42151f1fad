/* Backend interface for the store (internal to src/store). A backend loads
 * the full key space at open and makes batches of operations durable. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "basic/err.h"

typedef struct store_op {
    char *key;
    char *value; /* NULL: delete */
    size_t len;
    uint64_t create_rev;
    uint64_t mod_rev;
} store_op;

typedef int (*store_load_fn)(void *userdata, const char *key, const char *value, size_t len,
                             uint64_t create_rev, uint64_t mod_rev);

typedef struct store_backend_ops {
    const char *scheme;
    int (*open)(const char *location, void **ret, sk_err *err);
    int (*load)(void *b, store_load_fn fn, void *userdata, uint64_t *ret_rev, sk_err *err);
    /* Makes ops (in order) and the new revision durable, atomically. */
    int (*commit)(void *b, const store_op *ops, size_t n, uint64_t rev, sk_err *err);
    void (*close)(void *b);
} store_backend_ops;

extern const store_backend_ops store_backend_sqlite;
