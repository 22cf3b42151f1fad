/* A growable array of pointers. */
#pragma once

#include <stddef.h>

typedef struct sk_vec {
    void **items;
    size_t len;
    size_t alloc;
} sk_vec;

void sk_vec_push(sk_vec *v, void *p);
void *sk_vec_pop(sk_vec *v);
void sk_vec_remove_at(sk_vec *v, size_t i);
/* Frees the array; free_item (may be NULL) is called on each item. */
void sk_vec_done(sk_vec *v, void (*free_item)(void *));
void sk_vec_sort(sk_vec *v, int (*cmp)(const void *a, const void *b));

#define VEC_FOREACH(type, it, v)                                                           \
    for (size_t _i_##it = 0; _i_##it < (v)->len && ((it) = (type) (v)->items[_i_##it], 1); \
         _i_##it++)
