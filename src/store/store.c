#include "store.h"

#include <string.h>

#include "basic/alloc.h"
#include "basic/log.h"
#include "basic/omap.h"
#include "basic/strutil.h"
#include "basic/vec.h"
#include "store-backend.h"

typedef struct entry {
    store_kv kv; /* kv.key points into the omap node's key */
    char *value;
} entry;

typedef struct watcher {
    char *prefix;
    size_t plen;
    store_watch_fn fn;
    void *userdata;
} watcher;

struct store {
    const store_backend_ops *ops;
    void *backend;
    sk_omap *map;
    uint64_t rev;
    uint64_t durable_rev;
    sk_vec pending; /* store_op* not yet durable */
    sk_vec watchers;
    uint64_t n_txns, n_flushes;
    ev_loop *loop;
};

typedef struct txn_cmp {
    char *key;
    uint64_t mod_rev;
} txn_cmp;

struct store_txn {
    store *s;
    sk_vec cmps; /* txn_cmp* */
    sk_vec ops;  /* store_op* */
};

static const store_backend_ops *const backends[] = { &store_backend_sqlite };

static void entry_free(void *p)
{
    entry *e = p;
    if (!e)
        return;
    free(e->value);
    free(e);
}

static void op_free(void *p)
{
    store_op *o = p;
    if (!o)
        return;
    free(o->key);
    free(o->value);
    free(o);
}

static void watcher_free(void *p)
{
    watcher *w = p;
    free(w->prefix);
    free(w);
}

static void map_set(store *s, const char *key, char *value, size_t len, uint64_t crev,
                    uint64_t mrev)
{
    entry *e = xcalloc(1, sizeof(*e));
    e->value = value;
    e->kv = (store_kv){ .value = value, .len = len, .create_rev = crev, .mod_rev = mrev };
    entry *old = sk_omap_put(s->map, key, e);
    entry_free(old);
    /* Point kv.key at the map's own copy of the key. */
    sk_omap_node *n = sk_omap_seek(s->map, key);
    e->kv.key = sk_omap_node_key(n);
}

static int load_one(void *userdata, const char *key, const char *value, size_t len, uint64_t crev,
                    uint64_t mrev)
{
    store *s = userdata;
    char *v = xmalloc(len + 1);
    memcpy(v, value, len);
    v[len] = 0;
    map_set(s, key, v, len, crev, mrev);
    return 0;
}

int store_open(const char *uri, store **ret, sk_err *err)
{
    const store_backend_ops *ops = NULL;
    const char *loc = NULL;
    for (size_t i = 0; i < ELEMENTSOF(backends); i++) {
        const char *p = startswith(uri, backends[i]->scheme);
        if (p && *p == ':') {
            ops = backends[i];
            loc = p + 1;
        }
    }
    if (!ops)
        return sk_err_set(err, SK_E_INVALID, "unknown store backend in '%s'", uri);
    store *s = xcalloc(1, sizeof(*s));
    s->ops = ops;
    s->map = sk_omap_new();
    if (ops->open(loc, &s->backend, err) < 0) {
        sk_omap_free(s->map, NULL);
        free(s);
        return sk_err_wrap(err, "open store '%s'", uri);
    }
    if (ops->load(s->backend, load_one, s, &s->rev, err) < 0) {
        ops->close(s->backend);
        sk_omap_free(s->map, entry_free);
        free(s);
        return sk_err_wrap(err, "load store '%s'", uri);
    }
    s->durable_rev = s->rev;
    *ret = s;
    return 0;
}

void store_close(store *s)
{
    if (!s)
        return;
    if (s->pending.len) {
        _cleanup_err_ sk_err err = { 0 };
        if (store_flush(s, &err) < 0)
            log_error("store: final flush: %s", sk_err_msg(&err));
    }
    s->ops->close(s->backend);
    sk_omap_free(s->map, entry_free);
    sk_vec_done(&s->pending, op_free);
    sk_vec_done(&s->watchers, watcher_free);
    free(s);
}

static void on_prepare(ev_loop *loop, void *userdata)
{
    store *s = userdata;
    if (!s->pending.len)
        return;
    _cleanup_err_ sk_err err = { 0 };
    if (store_flush(s, &err) < 0) {
        log_error("store: cannot make writes durable, stopping: %s", sk_err_msg(&err));
        ev_loop_quit(loop, 1);
    }
}

void store_attach(store *s, ev_loop *loop)
{
    s->loop = loop;
    ev_prepare_add(loop, on_prepare, s);
}

uint64_t store_revision(const store *s)
{
    return s->rev;
}

size_t store_count(const store *s)
{
    return sk_omap_size(s->map);
}

const store_kv *store_get(const store *s, const char *key)
{
    entry *e = sk_omap_get(s->map, key);
    return e ? &e->kv : NULL;
}

json_t *store_get_json(const store *s, const char *key)
{
    const store_kv *kv = store_get(s, key);
    if (!kv)
        return NULL;
    return json_loadb(kv->value, kv->len, 0, NULL);
}

void store_range(const store *s, const char *prefix, const char *start_after, store_range_fn fn,
                 void *userdata)
{
    size_t plen = strlen(prefix);
    sk_omap_node *n = sk_omap_seek(
            s->map, start_after && strcmp(start_after, prefix) > 0 ? start_after : prefix);
    for (; n; n = sk_omap_next(n)) {
        const char *k = sk_omap_node_key(n);
        if (strncmp(k, prefix, plen) != 0)
            break;
        if (start_after && strcmp(k, start_after) <= 0)
            continue;
        entry *e = sk_omap_node_value(n);
        if (!fn(&e->kv, userdata))
            break;
    }
}

store_txn *store_txn_new(store *s)
{
    store_txn *t = xcalloc(1, sizeof(*t));
    t->s = s;
    return t;
}

static void cmp_free(void *p)
{
    txn_cmp *c = p;
    free(c->key);
    free(c);
}

void store_txn_free(store_txn *t)
{
    if (!t)
        return;
    sk_vec_done(&t->cmps, cmp_free);
    sk_vec_done(&t->ops, op_free);
    free(t);
}

void store_txn_expect(store_txn *t, const char *key, uint64_t mod_rev)
{
    txn_cmp *c = xmalloc(sizeof(*c));
    *c = (txn_cmp){ xstrdup(key), mod_rev };
    sk_vec_push(&t->cmps, c);
}

void store_txn_put(store_txn *t, const char *key, const char *value, size_t len)
{
    store_op *o = xcalloc(1, sizeof(*o));
    o->key = xstrdup(key);
    o->value = xmalloc(len + 1);
    memcpy(o->value, value, len);
    o->value[len] = 0;
    o->len = len;
    sk_vec_push(&t->ops, o);
}

char *store_json_dump(const json_t *v, size_t *ret_len)
{
    char *s = json_dumps(v,
                         JSON_COMPACT | JSON_SORT_KEYS | JSON_REAL_PRECISION(15) | JSON_ENCODE_ANY);
    if (!s)
        oom();
    if (ret_len)
        *ret_len = strlen(s);
    return s;
}

void store_txn_put_json(store_txn *t, const char *key, const json_t *v)
{
    size_t len;
    char *s = store_json_dump(v, &len);
    store_op *o = xcalloc(1, sizeof(*o));
    o->key = xstrdup(key);
    o->value = s;
    o->len = len;
    sk_vec_push(&t->ops, o);
}

void store_txn_delete(store_txn *t, const char *key)
{
    store_op *o = xcalloc(1, sizeof(*o));
    o->key = xstrdup(key);
    sk_vec_push(&t->ops, o);
}

static void notify(store *s, const char *key, const store_kv *old, const store_kv *new)
{
    for (size_t i = 0; i < s->watchers.len; i++) {
        watcher *w = s->watchers.items[i];
        if (strncmp(key, w->prefix, w->plen) == 0)
            w->fn(w->userdata, old, new);
    }
}

int store_txn_commit(store_txn *t, sk_err *err)
{
    store *s = t->s;
    for (size_t i = 0; i < t->cmps.len; i++) {
        txn_cmp *c = t->cmps.items[i];
        const store_kv *kv = store_get(s, c->key);
        uint64_t have = kv ? kv->mod_rev : 0;
        if (have != c->mod_rev) {
            int r = sk_err_set(err, SK_E_CONFLICT,
                               "key '%s' changed (revision %llu, expected %llu)", c->key,
                               (unsigned long long) have, (unsigned long long) c->mod_rev);
            store_txn_free(t);
            return r;
        }
    }
    for (size_t i = 0; i < t->ops.len; i++) {
        store_op *o = t->ops.items[i];
        size_t kl = strlen(o->key);
        if (kl == 0 || kl > STORE_MAX_KEY || (o->value && o->len > STORE_MAX_VALUE)) {
            int r = sk_err_set(err, SK_E_INVALID, "store key or value too large ('%.64s')", o->key);
            store_txn_free(t);
            return r;
        }
    }
    if (t->ops.len == 0) {
        store_txn_free(t);
        return 0;
    }
    uint64_t rev = ++s->rev;
    s->n_txns++;
    for (size_t i = 0; i < t->ops.len; i++) {
        store_op *o = t->ops.items[i];
        entry *old = sk_omap_get(s->map, o->key);
        store_kv oldkv = { 0 };
        char *oldval = NULL;
        if (old) {
            oldkv = old->kv;
            /* Keep the old value alive for the watchers. */
            oldval = TAKE_PTR(old->value);
            oldkv.value = oldval;
            oldkv.key = o->key;
        }
        if (o->value) {
            o->create_rev = old ? old->kv.create_rev : rev;
            o->mod_rev = rev;
            map_set(s, o->key, xmemdup(o->value, o->len + 1), o->len, o->create_rev, rev);
            const store_kv *nkv = store_get(s, o->key);
            notify(s, o->key, old ? &oldkv : NULL, nkv);
        } else if (old) {
            entry_free(sk_omap_remove(s->map, o->key));
            notify(s, o->key, &oldkv, NULL);
        }
        free(oldval);
        sk_vec_push(&s->pending, o);
        t->ops.items[i] = NULL;
    }
    t->ops.len = 0;
    store_txn_free(t);
    return 0;
}

int store_put(store *s, const char *key, const char *value, size_t len, sk_err *err)
{
    store_txn *t = store_txn_new(s);
    store_txn_put(t, key, value, len);
    return store_txn_commit(t, err);
}

int store_put_json(store *s, const char *key, const json_t *v, sk_err *err)
{
    store_txn *t = store_txn_new(s);
    store_txn_put_json(t, key, v);
    return store_txn_commit(t, err);
}

int store_delete(store *s, const char *key, sk_err *err)
{
    store_txn *t = store_txn_new(s);
    store_txn_delete(t, key);
    return store_txn_commit(t, err);
}

bool store_dirty(const store *s)
{
    return s->pending.len > 0;
}

int store_flush(store *s, sk_err *err)
{
    if (!s->pending.len)
        return 0;
    /* Only the last operation per key matters within one batch. */
    sk_omap *last = sk_omap_new();
    for (size_t i = 0; i < s->pending.len; i++) {
        store_op *o = s->pending.items[i];
        sk_omap_put(last, o->key, o);
    }
    size_t n = sk_omap_size(last);
    store_op *ops = xcalloc(n ? n : 1, sizeof(store_op));
    size_t j = 0;
    for (sk_omap_node *nd = sk_omap_seek(last, NULL); nd; nd = sk_omap_next(nd))
        ops[j++] = *(store_op *) sk_omap_node_value(nd);
    int r = s->ops->commit(s->backend, ops, n, s->rev, err);
    free(ops);
    sk_omap_free(last, NULL);
    if (r < 0)
        return sk_err_wrap(err, "commit %zu operations", s->pending.len);
    sk_vec_done(&s->pending, op_free);
    s->durable_rev = s->rev;
    s->n_flushes++;
    return 0;
}

void store_stats(const store *s, uint64_t *ret_txns, uint64_t *ret_flushes)
{
    *ret_txns = s->n_txns;
    *ret_flushes = s->n_flushes;
}

void store_watch(store *s, const char *prefix, store_watch_fn fn, void *userdata)
{
    watcher *w = xmalloc(sizeof(*w));
    *w = (watcher){ xstrdup(prefix), strlen(prefix), fn, userdata };
    sk_vec_push(&s->watchers, w);
}
