#include "vec.h"

#include <stdlib.h>
#include <string.h>

#include "alloc.h"

void sk_vec_push(sk_vec *v, void *p)
{
    if (v->len == v->alloc) {
        v->alloc = v->alloc ? v->alloc * 2 : 8;
        v->items = xrealloc(v->items, v->alloc * sizeof(void *));
    }
    v->items[v->len++] = p;
}

void *sk_vec_pop(sk_vec *v)
{
    return v->len ? v->items[--v->len] : NULL;
}

void sk_vec_remove_at(sk_vec *v, size_t i)
{
    if (i >= v->len)
        return;
    memmove(v->items + i, v->items + i + 1, (v->len - i - 1) * sizeof(void *));
    v->len--;
}

void sk_vec_done(sk_vec *v, void (*free_item)(void *))
{
    if (free_item)
        for (size_t i = 0; i < v->len; i++)
            free_item(v->items[i]);
    free(v->items);
    *v = (sk_vec){ 0 };
}

void sk_vec_sort(sk_vec *v, int (*cmp)(const void *a, const void *b))
{
    if (v->len > 1)
        qsort(v->items, v->len, sizeof(void *), cmp);
}
