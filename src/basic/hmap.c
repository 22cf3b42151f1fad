#include "hmap.h"

#include <string.h>

#include "alloc.h"

#define TOMB ((const char *) 1)

unsigned sk_hash_str(const char *s)
{
    /* FNV-1a, 32 bit. */
    unsigned h = 2166136261u;
    for (; *s; s++) {
        h ^= (unsigned char) *s;
        h *= 16777619u;
    }
    return h;
}

void sk_hmap_init(sk_hmap *m)
{
    *m = (sk_hmap){ 0 };
}

void sk_hmap_done(sk_hmap *m)
{
    free(m->slots);
    *m = (sk_hmap){ 0 };
}

static sk_hmap_slot *find(const sk_hmap *m, const char *key, unsigned h)
{
    if (!m->nslots)
        return NULL;
    size_t mask = m->nslots - 1;
    for (size_t i = h & mask;; i = (i + 1) & mask) {
        sk_hmap_slot *s = &m->slots[i];
        if (!s->key)
            return NULL;
        if (s->key != TOMB && s->hash == h && strcmp(s->key, key) == 0)
            return s;
    }
}

static void rehash(sk_hmap *m, size_t n)
{
    sk_hmap_slot *old = m->slots;
    size_t oldn = m->nslots;
    m->slots = xcalloc(n, sizeof(sk_hmap_slot));
    m->nslots = n;
    m->tombs = 0;
    size_t mask = n - 1;
    for (size_t i = 0; i < oldn; i++) {
        if (!old[i].key || old[i].key == TOMB)
            continue;
        size_t j = old[i].hash & mask;
        while (m->slots[j].key)
            j = (j + 1) & mask;
        m->slots[j] = old[i];
    }
    free(old);
}

void *sk_hmap_get(const sk_hmap *m, const char *key)
{
    sk_hmap_slot *s = find(m, key, sk_hash_str(key));
    return s ? s->value : NULL;
}

void *sk_hmap_put(sk_hmap *m, const char *key, void *value)
{
    unsigned h = sk_hash_str(key);
    sk_hmap_slot *s = find(m, key, h);
    if (s) {
        void *prev = s->value;
        s->key = key;
        s->value = value;
        return prev;
    }
    if ((m->count + m->tombs + 1) * 4 >= m->nslots * 3) {
        size_t n = m->nslots ? m->nslots : 16;
        while ((m->count + 1) * 2 >= n)
            n *= 2;
        rehash(m, n);
    }
    size_t mask = m->nslots - 1;
    size_t i = h & mask;
    while (m->slots[i].key && m->slots[i].key != TOMB)
        i = (i + 1) & mask;
    if (m->slots[i].key == TOMB)
        m->tombs--;
    m->slots[i] = (sk_hmap_slot){ .key = key, .value = value, .hash = h };
    m->count++;
    return NULL;
}

void *sk_hmap_remove(sk_hmap *m, const char *key)
{
    sk_hmap_slot *s = find(m, key, sk_hash_str(key));
    if (!s)
        return NULL;
    void *v = s->value;
    s->key = TOMB;
    s->value = NULL;
    m->count--;
    m->tombs++;
    return v;
}

bool sk_hmap_next(const sk_hmap *m, size_t *iter, const char **ret_key, void **ret_value)
{
    for (; *iter < m->nslots; (*iter)++) {
        sk_hmap_slot *s = &m->slots[*iter];
        if (s->key && s->key != TOMB) {
            if (ret_key)
                *ret_key = s->key;
            if (ret_value)
                *ret_value = s->value;
            (*iter)++;
            return true;
        }
    }
    return false;
}
