/* The store contract (src/store/store.h) on the SQLite backend: revisions,
 * compare-and-swap transactions, ranges, watches, group commit and
 * durability across close/open. Each test works in its own temp directory. */
#include <jansson.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>

#include "basic/alloc.h"
#include "basic/err.h"
#include "basic/fileutil.h"
#include "basic/strutil.h"
#include "shared/jsonutil.h"
#include "store/store.h"
#include "tap.h"

typedef struct tmpdir {
    char path[64];
} tmpdir;

static bool tmpdir_make(tmpdir *t)
{
    const char *base = getenv("TMPDIR");
    snprintf(t->path, sizeof(t->path), "%s/skiff-store-XXXXXX", base && *base ? base : "/tmp");
    if (!mkdtemp(t->path)) {
        snprintf(t->path, sizeof(t->path), "/tmp/skiff-store-XXXXXX");
        if (!mkdtemp(t->path))
            return false;
    }
    return true;
}

static void tmpdir_done(tmpdir *t)
{
    if (t->path[0])
        rm_rf(t->path);
}

#define _cleanup_tmpdir_ _cleanup_(tmpdir_done)

static char *uri_of(const tmpdir *t)
{
    return xasprintf("sqlite:%s/s.db", t->path);
}

DEFINE_CLEANUP_FUNC(store, store_close)
#define _cleanup_store_ _cleanup_(store_closep)

static int put_s(store *s, const char *key, const char *value, sk_err *err)
{
    return store_put(s, key, value, strlen(value), err);
}

static const char *get_s(store *s, const char *key)
{
    const store_kv *kv = store_get(s, key);
    return kv ? kv->value : NULL;
}

/* Opens a fresh store in t; NULL on failure (after printing why). */
static store *open_fresh(tmpdir *t)
{
    if (!tmpdir_make(t)) {
        printf("# mkdtemp failed\n");
        return NULL;
    }
    _cleanup_free_ char *uri = uri_of(t);
    _cleanup_err_ sk_err err = { 0 };
    store *s = NULL;
    if (store_open(uri, &s, &err) < 0) {
        printf("# store_open %s: %s\n", uri, sk_err_msg(&err));
        return NULL;
    }
    return s;
}

static store *reopen(const tmpdir *t)
{
    _cleanup_free_ char *uri = uri_of(t);
    _cleanup_err_ sk_err err = { 0 };
    store *s = NULL;
    if (store_open(uri, &s, &err) < 0) {
        printf("# store_open %s: %s\n", uri, sk_err_msg(&err));
        return NULL;
    }
    return s;
}

TEST(put_get_delete)
{
    _cleanup_tmpdir_ tmpdir t = { 0 };
    _cleanup_store_ store *s = open_fresh(&t);
    ASSERT_NOT_NULL(s);
    _cleanup_err_ sk_err err = { 0 };
    ASSERT_EQ(store_revision(s), 0);
    ASSERT_EQ(store_count(s), 0);
    ASSERT_NULL(store_get(s, "a"));
    ASSERT_FALSE(store_dirty(s));

    ASSERT_OK_ERR(put_s(s, "a", "one", &err), &err);
    ASSERT_EQ(store_revision(s), 1);
    const store_kv *kv = store_get(s, "a");
    ASSERT_NOT_NULL(kv);
    ASSERT_STREQ(kv->key, "a");
    ASSERT_STREQ(kv->value, "one");
    ASSERT_EQ(kv->len, 3);
    ASSERT_EQ(kv->create_rev, 1);
    ASSERT_EQ(kv->mod_rev, 1);

    ASSERT_OK_ERR(put_s(s, "b", "two", &err), &err);
    ASSERT_OK_ERR(put_s(s, "a", "uno", &err), &err);
    kv = store_get(s, "a");
    ASSERT_STREQ(kv->value, "uno");
    ASSERT_EQ(kv->create_rev, 1);
    ASSERT_EQ(kv->mod_rev, 3);
    ASSERT_EQ(store_revision(s), 3);
    ASSERT_EQ(store_count(s), 2);

    ASSERT_OK_ERR(store_delete(s, "a", &err), &err);
    ASSERT_NULL(store_get(s, "a"));
    ASSERT_EQ(store_count(s), 1);
    ASSERT_TRUE(store_revision(s) == 4);
    /* Re-creating a deleted key starts a new create_rev. */
    ASSERT_OK_ERR(put_s(s, "a", "again", &err), &err);
    kv = store_get(s, "a");
    ASSERT_EQ(kv->create_rev, 5);
    ASSERT_EQ(kv->mod_rev, 5);
    /* Empty values are values. */
    ASSERT_OK_ERR(store_put(s, "empty", "", 0, &err), &err);
    kv = store_get(s, "empty");
    ASSERT_NOT_NULL(kv);
    ASSERT_EQ(kv->len, 0);
    ASSERT_STREQ(kv->value, "");
}

TEST(binary_values)
{
    _cleanup_tmpdir_ tmpdir t = { 0 };
    store *s = open_fresh(&t);
    ASSERT_NOT_NULL(s);
    _cleanup_err_ sk_err err = { 0 };
    static const char bin[] = { 'a', 0, 'b', (char) 0xff, 0 };
    ASSERT_OK_ERR(store_put(s, "bin", bin, sizeof(bin), &err), &err);
    const store_kv *kv = store_get(s, "bin");
    ASSERT_EQ(kv->len, sizeof(bin));
    ASSERT_TRUE(memcmp(kv->value, bin, sizeof(bin)) == 0);
    ASSERT_EQ(kv->value[kv->len], 0); /* still terminated */
    store_close(s);
    s = reopen(&t);
    ASSERT_NOT_NULL(s);
    kv = store_get(s, "bin");
    ASSERT_NOT_NULL(kv);
    ASSERT_EQ(kv->len, sizeof(bin));
    bool same = memcmp(kv->value, bin, sizeof(bin)) == 0;
    store_close(s);
    ASSERT_TRUE(same);
}

TEST(json_values)
{
    _cleanup_tmpdir_ tmpdir t = { 0 };
    _cleanup_store_ store *s = open_fresh(&t);
    ASSERT_NOT_NULL(s);
    _cleanup_err_ sk_err err = { 0 };
    _cleanup_json_ json_t *v =
            json_pack("{s:i, s:s, s:[i,i], s:f}", "b", 1, "a", "x", "c", 1, 2, "d", 0.1);
    ASSERT_OK_ERR(store_put_json(s, "j", v, &err), &err);
    _cleanup_json_ json_t *back = store_get_json(s, "j");
    ASSERT_NOT_NULL(back);
    ASSERT_TRUE(json_equal(v, back));
    ASSERT_NULL(store_get_json(s, "nope"));
    ASSERT_OK_ERR(put_s(s, "notjson", "{bad", &err), &err);
    ASSERT_NULL(store_get_json(s, "notjson"));
    /* The stored encoding is compact. */
    ASSERT_NULL(strchr(store_get(s, "j")->value, ' '));
}

TEST(json_dump_sorted_keys)
{
    /* store.h: "JSON encoding used for stored values (compact, sorted keys)". */
    _cleanup_json_ json_t *v =
            json_pack("{s:i, s:i, s:{s:i, s:i}}", "b", 1, "a", 2, "c", "z", 1, "y", 2);
    size_t len = 0;
    _cleanup_free_ char *s = store_json_dump(v, &len);
    ASSERT_STREQ(s, "{\"a\":2,\"b\":1,\"c\":{\"y\":2,\"z\":1}}");
    ASSERT_EQ(len, strlen(s));
}

typedef struct collected {
    char keys[16][32];
    size_t n;
    size_t stop_after;
} collected;

static bool collect(const store_kv *kv, void *userdata)
{
    collected *c = userdata;
    if (c->n < 16)
        strlcpy_s(c->keys[c->n], kv->key, sizeof(c->keys[0]));
    c->n++;
    return !c->stop_after || c->n < c->stop_after;
}

static const char *range_str(store *s, const char *prefix, const char *start_after,
                             size_t stop_after, char *buf, size_t bufsz)
{
    collected c = { .stop_after = stop_after };
    store_range(s, prefix, start_after, collect, &c);
    buf[0] = 0;
    for (size_t i = 0; i < c.n && i < 16; i++) {
        size_t l = strlen(buf);
        snprintf(buf + l, bufsz - l, "%s%s", i ? "," : "", c.keys[i]);
    }
    return buf;
}

TEST(ranges)
{
    _cleanup_tmpdir_ tmpdir t = { 0 };
    _cleanup_store_ store *s = open_fresh(&t);
    ASSERT_NOT_NULL(s);
    _cleanup_err_ sk_err err = { 0 };
    const char *keys[] = { "t/b/1", "t/a/2", "t/a/10", "u/1", "t/a/1", "t/", "t", "t/a" };
    for (size_t i = 0; i < ELEMENTSOF(keys); i++)
        ASSERT_OK_ERR(put_s(s, keys[i], "v", &err), &err);
    char buf[512];
    ASSERT_STREQ(range_str(s, "t/a/", NULL, 0, buf, sizeof(buf)), "t/a/1,t/a/10,t/a/2");
    ASSERT_STREQ(range_str(s, "t/a/", "t/a/1", 0, buf, sizeof(buf)), "t/a/10,t/a/2");
    ASSERT_STREQ(range_str(s, "t/a/", "t/a/10", 0, buf, sizeof(buf)), "t/a/2");
    ASSERT_STREQ(range_str(s, "t/a/", "t/a/2", 0, buf, sizeof(buf)), "");
    /* start_after need not exist, and may lie before or after the prefix. */
    ASSERT_STREQ(range_str(s, "t/a/", "t/a/15", 0, buf, sizeof(buf)), "t/a/2");
    ASSERT_STREQ(range_str(s, "t/a/", "a", 0, buf, sizeof(buf)), "t/a/1,t/a/10,t/a/2");
    ASSERT_STREQ(range_str(s, "t/a/", "z", 0, buf, sizeof(buf)), "");
    ASSERT_STREQ(range_str(s, "t/", NULL, 0, buf, sizeof(buf)), "t/,t/a,t/a/1,t/a/10,t/a/2,t/b/1");
    ASSERT_STREQ(range_str(s, "", NULL, 0, buf, sizeof(buf)),
                 "t,t/,t/a,t/a/1,t/a/10,t/a/2,t/b/1,u/1");
    ASSERT_STREQ(range_str(s, "v", NULL, 0, buf, sizeof(buf)), "");
    /* The callback stops the walk (pagination). */
    ASSERT_STREQ(range_str(s, "t/", NULL, 2, buf, sizeof(buf)), "t/,t/a");
    ASSERT_STREQ(range_str(s, "t/", "t/a", 2, buf, sizeof(buf)), "t/a/1,t/a/10");
    /* Deleted keys disappear from ranges. */
    ASSERT_OK_ERR(store_delete(s, "t/a/10", &err), &err);
    ASSERT_STREQ(range_str(s, "t/a/", NULL, 0, buf, sizeof(buf)), "t/a/1,t/a/2");
}

typedef struct watch_log {
    char lines[32][128];
    size_t n;
} watch_log;

static void on_watch(void *userdata, const store_kv *old, const store_kv *new)
{
    watch_log *w = userdata;
    if (w->n >= 32)
        return;
    snprintf(w->lines[w->n++], 128, "%s %s=%s@%llu/%llu -> %s=%s@%llu/%llu", old ? "upd" : "new",
             old ? old->key : "-", old ? old->value : "-",
             old ? (unsigned long long) old->create_rev : 0ULL,
             old ? (unsigned long long) old->mod_rev : 0ULL, new ? new->key : "-",
             new ? new->value : "-", new ? (unsigned long long) new->create_rev : 0ULL,
             new ? (unsigned long long) new->mod_rev : 0ULL);
}

TEST(transactions_and_watches)
{
    _cleanup_tmpdir_ tmpdir t = { 0 };
    _cleanup_store_ store *s = open_fresh(&t);
    ASSERT_NOT_NULL(s);
    _cleanup_err_ sk_err err = { 0 };
    watch_log w = { 0 }, all = { 0 };
    store_watch(s, "w/", on_watch, &w);
    store_watch(s, "", on_watch, &all);

    ASSERT_OK_ERR(put_s(s, "w/a", "1", &err), &err);
    ASSERT_OK_ERR(put_s(s, "x", "1", &err), &err);
    ASSERT_EQ(w.n, 1);
    ASSERT_EQ(all.n, 2);
    ASSERT_STREQ(w.lines[0], "new -=-@0/0 -> w/a=1@1/1");

    /* Several operations in one transaction share a revision and fire in order. */
    store_txn *tx = store_txn_new(s);
    store_txn_expect(tx, "w/a", 1); /* unchanged since rev 1 */
    store_txn_expect(tx, "w/b", 0); /* must not exist */
    store_txn_put(tx, "w/a", "2", 1);
    store_txn_put(tx, "w/b", "1", 1);
    store_txn_delete(tx, "x");
    ASSERT_OK_ERR(store_txn_commit(tx, &err), &err);
    ASSERT_EQ(store_revision(s), 3);
    ASSERT_EQ(store_get(s, "w/a")->mod_rev, 3);
    ASSERT_EQ(store_get(s, "w/a")->create_rev, 1);
    ASSERT_EQ(store_get(s, "w/b")->mod_rev, 3);
    ASSERT_EQ(store_get(s, "w/b")->create_rev, 3);
    ASSERT_NULL(store_get(s, "x"));
    ASSERT_EQ(w.n, 3);
    ASSERT_STREQ(w.lines[1], "upd w/a=1@1/1 -> w/a=2@1/3");
    ASSERT_STREQ(w.lines[2], "new -=-@0/0 -> w/b=1@3/3");
    ASSERT_EQ(all.n, 5);
    ASSERT_STREQ(all.lines[4], "upd x=1@2/2 -> -=-@0/0");

    /* A failing compare: SK_E_CONFLICT, nothing applied, no watch, same revision. */
    size_t wn = w.n, an = all.n;
    tx = store_txn_new(s);
    store_txn_put(tx, "w/c", "1", 1);
    store_txn_delete(tx, "w/b");
    store_txn_expect(tx, "w/a", 1); /* stale: w/a is at 3 */
    _cleanup_err_ sk_err cerr = { 0 };
    ASSERT_FAIL(store_txn_commit(tx, &cerr));
    ASSERT_EQ(cerr.code, SK_E_CONFLICT);
    ASSERT_EQ(store_revision(s), 3);
    ASSERT_NULL(store_get(s, "w/c"));
    ASSERT_NOT_NULL(store_get(s, "w/b"));
    ASSERT_EQ(w.n, wn);
    ASSERT_EQ(all.n, an);

    /* Expect 0 on an existing key conflicts (create-if-absent). */
    tx = store_txn_new(s);
    store_txn_expect(tx, "w/a", 0);
    store_txn_put(tx, "w/a", "clobber", 7);
    _cleanup_err_ sk_err cerr2 = { 0 };
    ASSERT_FAIL(store_txn_commit(tx, &cerr2));
    ASSERT_EQ(cerr2.code, SK_E_CONFLICT);
    ASSERT_STREQ(get_s(s, "w/a"), "2");

    /* Expecting a revision on a missing key conflicts too. */
    tx = store_txn_new(s);
    store_txn_expect(tx, "w/zzz", 3);
    store_txn_put(tx, "w/zzz", "1", 1);
    _cleanup_err_ sk_err cerr3 = { 0 };
    ASSERT_FAIL(store_txn_commit(tx, &cerr3));
    ASSERT_EQ(cerr3.code, SK_E_CONFLICT);
    ASSERT_NULL(store_get(s, "w/zzz"));

    /* Compare-only transactions succeed without a new revision. */
    tx = store_txn_new(s);
    store_txn_expect(tx, "w/a", 3);
    ASSERT_OK_ERR(store_txn_commit(tx, &err), &err);
    ASSERT_EQ(store_revision(s), 3);

    /* Abandoning a transaction applies nothing. */
    tx = store_txn_new(s);
    store_txn_put(tx, "w/never", "1", 1);
    store_txn_free(tx);
    ASSERT_NULL(store_get(s, "w/never"));
    ASSERT_EQ(store_revision(s), 3);

    /* Put then delete of one key in one transaction: the key ends up absent. */
    tx = store_txn_new(s);
    store_txn_put(tx, "w/tmp", "1", 1);
    store_txn_delete(tx, "w/tmp");
    ASSERT_OK_ERR(store_txn_commit(tx, &err), &err);
    ASSERT_NULL(store_get(s, "w/tmp"));
    ASSERT_EQ(store_revision(s), 4);
}

TEST(revisions_monotonic)
{
    _cleanup_tmpdir_ tmpdir t = { 0 };
    _cleanup_store_ store *s = open_fresh(&t);
    ASSERT_NOT_NULL(s);
    _cleanup_err_ sk_err err = { 0 };
    uint64_t last = store_revision(s);
    for (int i = 0; i < 200; i++) {
        char key[32];
        snprintf(key, sizeof(key), "k/%d", i % 17);
        if (i % 5 == 4)
            ASSERT_OK_ERR(store_delete(s, key, &err), &err);
        else
            ASSERT_OK_ERR(put_s(s, key, "v", &err), &err);
        ASSERT_TRUE(store_revision(s) > last);
        last = store_revision(s);
        const store_kv *kv = store_get(s, key);
        if (kv)
            ASSERT_TRUE(kv->mod_rev == last && kv->create_rev <= kv->mod_rev);
        if (i % 50 == 0)
            ASSERT_OK_ERR(store_flush(s, &err), &err);
    }
}

TEST(limits)
{
    _cleanup_tmpdir_ tmpdir t = { 0 };
    _cleanup_store_ store *s = open_fresh(&t);
    ASSERT_NOT_NULL(s);
    _cleanup_err_ sk_err e1 = { 0 }, e2 = { 0 }, e3 = { 0 }, e4 = { 0 }, ok = { 0 };
    char *key = xmalloc(STORE_MAX_KEY + 2);
    memset(key, 'k', STORE_MAX_KEY + 1);
    key[STORE_MAX_KEY + 1] = 0;
    int r1 = put_s(s, key, "v", &e1);
    key[STORE_MAX_KEY] = 0; /* exactly the maximum */
    int r2 = put_s(s, key, "v", &ok);
    free(key);
    ASSERT_FAIL(r1);
    ASSERT_EQ(e1.code, SK_E_INVALID);
    ASSERT_OK_ERR(r2, &ok);
    ASSERT_FAIL(put_s(s, "", "v", &e2));
    ASSERT_EQ(e2.code, SK_E_INVALID);

    char *big = xmalloc(STORE_MAX_VALUE + 1);
    memset(big, 'x', STORE_MAX_VALUE + 1);
    uint64_t rev = store_revision(s);
    int r3 = store_put(s, "big", big, STORE_MAX_VALUE + 1, &e3);
    /* An oversized op anywhere in a transaction rejects all of it. */
    store_txn *tx = store_txn_new(s);
    store_txn_put(tx, "small", "v", 1);
    store_txn_put(tx, "big", big, STORE_MAX_VALUE + 1);
    int r4 = store_txn_commit(tx, &e4);
    uint64_t rev_after = store_revision(s);
    _cleanup_err_ sk_err e5 = { 0 };
    int r5 = store_put(s, "max", big, STORE_MAX_VALUE, &e5);
    free(big);
    ASSERT_FAIL(r3);
    ASSERT_EQ(e3.code, SK_E_INVALID);
    ASSERT_FAIL(r4);
    ASSERT_EQ(e4.code, SK_E_INVALID);
    ASSERT_NULL(store_get(s, "small"));
    ASSERT_NULL(store_get(s, "big"));
    ASSERT_EQ(rev_after, rev);
    ASSERT_OK_ERR(r5, &e5);
    ASSERT_EQ(store_get(s, "max")->len, STORE_MAX_VALUE);
    _cleanup_err_ sk_err fe = { 0 };
    ASSERT_OK_ERR(store_flush(s, &fe), &fe);
}

TEST(dirty_flush_and_stats)
{
    _cleanup_tmpdir_ tmpdir t = { 0 };
    _cleanup_store_ store *s = open_fresh(&t);
    ASSERT_NOT_NULL(s);
    _cleanup_err_ sk_err err = { 0 };
    uint64_t txns, flushes;
    ASSERT_OK_ERR(store_flush(s, &err), &err); /* nothing to do */
    store_stats(s, &txns, &flushes);
    ASSERT_EQ(txns, 0);
    ASSERT_EQ(flushes, 0);
    ASSERT_OK_ERR(put_s(s, "a", "1", &err), &err);
    ASSERT_TRUE(store_dirty(s));
    ASSERT_OK_ERR(put_s(s, "a", "2", &err), &err);
    ASSERT_OK_ERR(put_s(s, "b", "1", &err), &err);
    ASSERT_OK_ERR(store_flush(s, &err), &err);
    ASSERT_FALSE(store_dirty(s));
    store_stats(s, &txns, &flushes);
    ASSERT_EQ(txns, 3);
    ASSERT_EQ(flushes, 1); /* group commit: one batch */
    /* A failed compare does not make the store dirty. */
    store_txn *tx = store_txn_new(s);
    store_txn_expect(tx, "a", 1);
    store_txn_put(tx, "a", "3", 1);
    _cleanup_err_ sk_err cerr = { 0 };
    ASSERT_FAIL(store_txn_commit(tx, &cerr));
    ASSERT_FALSE(store_dirty(s));
}

TEST(durability_across_reopen)
{
    _cleanup_tmpdir_ tmpdir t = { 0 };
    store *s = open_fresh(&t);
    ASSERT_NOT_NULL(s);
    _cleanup_err_ sk_err err = { 0 };
    for (int i = 0; i < 50; i++) {
        char key[32], val[32];
        snprintf(key, sizeof(key), "svc/%02d", i);
        snprintf(val, sizeof(val), "value-%d", i);
        ASSERT_OK_ERR(put_s(s, key, val, &err), &err);
        if (i % 10 == 0)
            ASSERT_OK_ERR(store_flush(s, &err), &err);
    }
    ASSERT_OK_ERR(put_s(s, "svc/07", "changed", &err), &err); /* rev 51 */
    ASSERT_OK_ERR(store_delete(s, "svc/13", &err), &err);     /* rev 52 */
    ASSERT_OK_ERR(store_flush(s, &err), &err);
    ASSERT_OK_ERR(put_s(s, "late", "unflushed", &err), &err); /* rev 53, flushed by close */
    uint64_t rev = store_revision(s);
    ASSERT_EQ(rev, 53);
    store_close(s);

    s = reopen(&t);
    ASSERT_NOT_NULL(s);
    bool ok = store_revision(s) == rev && store_count(s) == 50 && !store_dirty(s);
    const store_kv *kv = store_get(s, "svc/07");
    ok = ok && kv && streq(kv->value, "changed") && kv->create_rev == 8 && kv->mod_rev == 51;
    ok = ok && !store_get(s, "svc/13");
    kv = store_get(s, "svc/49");
    ok = ok && kv && streq(kv->value, "value-49") && kv->create_rev == 50 && kv->mod_rev == 50;
    kv = store_get(s, "late");
    ok = ok && kv && streq(kv->value, "unflushed") && kv->mod_rev == 53;
    /* The revision keeps growing after a reopen. */
    ok = ok && put_s(s, "after", "x", &err) >= 0 && store_revision(s) == rev + 1;
    store_close(s);
    ASSERT_TRUE(ok);

    /* The revision survives even when the newest keys were deleted. */
    s = reopen(&t);
    ASSERT_NOT_NULL(s);
    ok = store_revision(s) == rev + 1 && store_delete(s, "after", &err) >= 0 &&
         store_delete(s, "late", &err) >= 0;
    store_close(s);
    ASSERT_TRUE(ok);
    s = reopen(&t);
    ASSERT_NOT_NULL(s);
    ok = store_revision(s) == rev + 3 && !store_get(s, "late");
    store_close(s);
    ASSERT_TRUE(ok);
}

TEST(newer_schema_refused)
{
    _cleanup_tmpdir_ tmpdir t = { 0 };
    ASSERT_TRUE(tmpdir_make(&t));
    _cleanup_free_ char *path = xasprintf("%s/s.db", t.path);
    sqlite3 *db = NULL;
    ASSERT_EQ(sqlite3_open(path, &db), SQLITE_OK);
    int rc = sqlite3_exec(db, "PRAGMA user_version = 99", NULL, NULL, NULL);
    sqlite3_close(db);
    ASSERT_EQ(rc, SQLITE_OK);
    _cleanup_free_ char *uri = uri_of(&t);
    store *s = NULL;
    _cleanup_err_ sk_err err = { 0 };
    ASSERT_FAIL(store_open(uri, &s, &err));
    ASSERT_NULL(s);
    ASSERT_NOT_NULL(err.msg);
    ASSERT_TRUE(strstr(err.msg, "newer skiff") != NULL);
    ASSERT_TRUE(strstr(err.msg, "schema 99") != NULL);
    ASSERT_TRUE(strstr(err.msg, "refusing to open it") != NULL);
}

TEST(current_schema_version_written)
{
    _cleanup_tmpdir_ tmpdir t = { 0 };
    store *s = open_fresh(&t);
    ASSERT_NOT_NULL(s);
    store_close(s);
    _cleanup_free_ char *path = xasprintf("%s/s.db", t.path);
    sqlite3 *db = NULL;
    ASSERT_EQ(sqlite3_open(path, &db), SQLITE_OK);
    sqlite3_stmt *st = NULL;
    int v = -1;
    if (sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    ASSERT_EQ(v, 1);
}

TEST(bad_uris)
{
    store *s = NULL;
    _cleanup_err_ sk_err e1 = { 0 }, e2 = { 0 }, e3 = { 0 };
    ASSERT_FAIL(store_open("etcd://localhost:2379", &s, &e1));
    ASSERT_EQ(e1.code, SK_E_INVALID);
    ASSERT_FAIL(store_open("sqlite", &s, &e2));
    ASSERT_FAIL(store_open("sqlite:/nonexistent-dir-for-skiff-tests/x/s.db", &s, &e3));
    ASSERT_NULL(s);
}

TAP_MAIN()
