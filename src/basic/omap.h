/* An ordered string-keyed map (a skip list). The map owns a copy of each key;
 * values are opaque and owned by the caller. Supports ordered iteration from
 * any key, which the store uses for prefix ranges. Not thread-safe. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

typedef struct sk_omap_node sk_omap_node;
typedef struct sk_omap sk_omap;

sk_omap *sk_omap_new(void);
/* Frees the map; free_value (may be NULL) is called on every value. */
void sk_omap_free(sk_omap *m, void (*free_value)(void *));
size_t sk_omap_size(const sk_omap *m);
void *sk_omap_get(const sk_omap *m, const char *key);
/* Inserts or replaces; returns the previous value (or NULL). */
void *sk_omap_put(sk_omap *m, const char *key, void *value);
/* Removes; returns the value (or NULL when absent). */
void *sk_omap_remove(sk_omap *m, const char *key);

/* First node with key >= key (key NULL: first node). NULL at the end. */
sk_omap_node *sk_omap_seek(const sk_omap *m, const char *key);
sk_omap_node *sk_omap_next(const sk_omap_node *n);
const char *sk_omap_node_key(const sk_omap_node *n);
void *sk_omap_node_value(const sk_omap_node *n);
void sk_omap_node_set_value(sk_omap_node *n, void *value);
