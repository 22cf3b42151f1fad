#include "omap.h"

#include <stdint.h>
#include <string.h>

#include "alloc.h"

#define MAX_LEVEL 24

struct sk_omap_node {
    char *key;
    void *value;
    int level;
    sk_omap_node *next[];
};

struct sk_omap {
    sk_omap_node *head;
    size_t count;
    int level;
    uint64_t rng;
};

static sk_omap_node *node_new(const char *key, void *value, int level)
{
    sk_omap_node *n = xcalloc(1, sizeof(*n) + (size_t) level * sizeof(sk_omap_node *));
    n->key = key ? xstrdup(key) : NULL;
    n->value = value;
    n->level = level;
    return n;
}

sk_omap *sk_omap_new(void)
{
    sk_omap *m = xcalloc(1, sizeof(*m));
    m->head = node_new(NULL, NULL, MAX_LEVEL);
    m->level = 1;
    m->rng = 0x9e3779b97f4a7c15ULL ^ (uint64_t) (uintptr_t) m;
    return m;
}

void sk_omap_free(sk_omap *m, void (*free_value)(void *))
{
    if (!m)
        return;
    sk_omap_node *n = m->head->next[0];
    while (n) {
        sk_omap_node *nx = n->next[0];
        if (free_value)
            free_value(n->value);
        free(n->key);
        free(n);
        n = nx;
    }
    free(m->head);
    free(m);
}

size_t sk_omap_size(const sk_omap *m)
{
    return m->count;
}

static int random_level(sk_omap *m)
{
    /* xorshift64; a new level with probability 1/4 per step. */
    m->rng ^= m->rng << 13;
    m->rng ^= m->rng >> 7;
    m->rng ^= m->rng << 17;
    uint64_t r = m->rng;
    int lvl = 1;
    while (lvl < MAX_LEVEL && (r & 3) == 0) {
        lvl++;
        r >>= 2;
    }
    return lvl;
}

/* Fills update[] with the rightmost node before key at each level. */
static sk_omap_node *find_ge(const sk_omap *m, const char *key, sk_omap_node **update)
{
    sk_omap_node *x = m->head;
    for (int i = m->level - 1; i >= 0; i--) {
        while (x->next[i] && strcmp(x->next[i]->key, key) < 0)
            x = x->next[i];
        if (update)
            update[i] = x;
    }
    return x->next[0];
}

void *sk_omap_get(const sk_omap *m, const char *key)
{
    sk_omap_node *n = find_ge(m, key, NULL);
    if (n && strcmp(n->key, key) == 0)
        return n->value;
    return NULL;
}

void *sk_omap_put(sk_omap *m, const char *key, void *value)
{
    sk_omap_node *update[MAX_LEVEL];
    sk_omap_node *n = find_ge(m, key, update);
    if (n && strcmp(n->key, key) == 0) {
        void *old = n->value;
        n->value = value;
        return old;
    }
    int lvl = random_level(m);
    if (lvl > m->level) {
        for (int i = m->level; i < lvl; i++)
            update[i] = m->head;
        m->level = lvl;
    }
    n = node_new(key, value, lvl);
    for (int i = 0; i < lvl; i++) {
        n->next[i] = update[i]->next[i];
        update[i]->next[i] = n;
    }
    m->count++;
    return NULL;
}

void *sk_omap_remove(sk_omap *m, const char *key)
{
    sk_omap_node *update[MAX_LEVEL];
    sk_omap_node *n = find_ge(m, key, update);
    if (!n || strcmp(n->key, key) != 0)
        return NULL;
    for (int i = 0; i < n->level; i++)
        if (update[i]->next[i] == n)
            update[i]->next[i] = n->next[i];
    while (m->level > 1 && !m->head->next[m->level - 1])
        m->level--;
    void *v = n->value;
    free(n->key);
    free(n);
    m->count--;
    return v;
}

sk_omap_node *sk_omap_seek(const sk_omap *m, const char *key)
{
    if (!key)
        return m->head->next[0];
    return find_ge(m, key, NULL);
}

sk_omap_node *sk_omap_next(const sk_omap_node *n)
{
    return n->next[0];
}

const char *sk_omap_node_key(const sk_omap_node *n)
{
    return n->key;
}

void *sk_omap_node_value(const sk_omap_node *n)
{
    return n->value;
}

void sk_omap_node_set_value(sk_omap_node *n, void *value)
{
    n->value = value;
}
