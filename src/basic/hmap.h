/* A string-keyed hash map with open addressing. Keys are borrowed: the caller
 * keeps each key alive while it is in the map (usually the key lives inside
 * the value). Iteration order is unspecified. Not thread-safe. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

typedef struct sk_hmap_slot {
    const char *key;
    void *value;
    unsigned hash;
} sk_hmap_slot;

typedef struct sk_hmap {
    sk_hmap_slot *slots;
    size_t nslots; /* power of two, or 0 */
    size_t count;
    size_t tombs;
} sk_hmap;

void sk_hmap_init(sk_hmap *m);
void sk_hmap_done(sk_hmap *m);
void *sk_hmap_get(const sk_hmap *m, const char *key);
/* Inserts or replaces; returns the previous value or NULL. */
void *sk_hmap_put(sk_hmap *m, const char *key, void *value);
/* Removes the key; returns its value or NULL. */
void *sk_hmap_remove(sk_hmap *m, const char *key);
static inline size_t sk_hmap_size(const sk_hmap *m)
{
    return m->count;
}
unsigned sk_hash_str(const char *s);

/* Iterate: for (size_t i = 0; sk_hmap_next(m, &i, &k, &v);) ... Safe against
 * removal of the current entry. */
bool sk_hmap_next(const sk_hmap *m, size_t *iter, const char **ret_key, void **ret_value);
