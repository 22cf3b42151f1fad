/* CloudWatch Logs internals: the SQLite storage layer, pagination tokens, the
 * retention sweep (with an injected clock) and the group-commit hook. */
#include <inttypes.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>

#include "basic/alloc.h"
#include "basic/fileutil.h"
#include "basic/strutil.h"
#include "logs/logs-internal.h"
#include "shared/event.h"
#include "tap.h"

#define ACCT "123456789012"
#define REG  "eu-west-1"
#define DAY  86400000LL
#define NOW  1700000000000LL

static char *tmpdir(void)
{
    char tmpl[] = "/tmp/test-logs-XXXXXX";
    char *d = mkdtemp(tmpl);
    return d ? xstrdup(d) : NULL;
}

static void rmdirp(char **d)
{
    if (*d) {
        rm_rf(*d);
        free(*d);
    }
}
#define _cleanup_dir_ _cleanup_(rmdirp)

static logs_db *open_db(const char *dir)
{
    _cleanup_free_ char *p = path_join(dir, "logs.db");
    logs_db *db = NULL;
    _cleanup_err_ sk_err err = { 0 };
    if (logs_db_open(p, &db, &err) < 0) {
        printf("# open: %s\n", err.msg);
        return NULL;
    }
    return db;
}

static int64_t make_group(logs_db *db, const char *name)
{
    _cleanup_err_ sk_err err = { 0 };
    logs_group g = { .name = (char *) name,
                     .creation_time = NOW,
                     .log_class = (char *) "STANDARD" };
    if (logs_db_begin(db, &err) < 0)
        return -1;
    int r = logs_db_group_create(db, ACCT, REG, &g, &err);
    if (logs_db_end(db, r >= 0, &err) < 0 || r < 0)
        return -1;
    return g.id;
}

static int make_stream(logs_db *db, int64_t gid, const char *name, logs_stream *ret)
{
    _cleanup_err_ sk_err err = { 0 };
    if (logs_db_begin(db, &err) < 0)
        return -1;
    int r = logs_db_stream_create(db, gid, name, NOW, &err);
    if (logs_db_end(db, r >= 0, &err) < 0 || r < 0)
        return -1;
    return logs_db_stream_get(db, gid, name, ret, &err);
}

static int put(logs_db *db, const logs_stream *s, const int64_t *ts, size_t n, int64_t now)
{
    _cleanup_err_ sk_err err = { 0 };
    logs_new_event *evs = xcalloc(n, sizeof(*evs));
    char **msgs = xcalloc(n, sizeof(char *));
    for (size_t i = 0; i < n; i++) {
        msgs[i] = xasprintf("event %" PRId64, ts[i]);
        evs[i] = (logs_new_event){ ts[i], msgs[i], strlen(msgs[i]) };
    }
    int r = logs_db_begin(db, &err);
    if (r >= 0) {
        r = logs_db_put_events(db, s, evs, n, now, NULL, &err);
        if (logs_db_end(db, r >= 0, &err) < 0)
            r = -1;
    }
    for (size_t i = 0; i < n; i++)
        free(msgs[i]);
    free(msgs);
    free(evs);
    return r;
}

typedef struct collected {
    size_t n;
    int64_t ts[64];
    int64_t ids[64];
    char names[64][16];
    size_t stop_after;
} collected;

static int collect(void *userdata, const logs_event *ev)
{
    collected *c = userdata;
    if (c->n >= 64 || (c->stop_after && c->n >= c->stop_after))
        return 1;
    c->ts[c->n] = ev->ts;
    c->ids[c->n] = ev->id;
    snprintf(c->names[c->n], sizeof(c->names[0]), "%s", ev->stream_name ? ev->stream_name : "");
    c->n++;
    return 0;
}

TEST(db_schema_version)
{
    _cleanup_dir_ char *dir = tmpdir();
    ASSERT_NOT_NULL(dir);
    logs_db *db = open_db(dir);
    ASSERT_NOT_NULL(db);
    uint8_t key[LOGS_TOKEN_KEY_LEN];
    memcpy(key, logs_db_token_key(db), sizeof(key));
    logs_db_close(db);
    /* The token key persists across reopen. */
    db = open_db(dir);
    ASSERT_NOT_NULL(db);
    ASSERT_TRUE(memcmp(key, logs_db_token_key(db), sizeof(key)) == 0);
    logs_db_close(db);
    /* A newer schema is refused. */
    _cleanup_free_ char *p = path_join(dir, "logs.db");
    sqlite3 *raw = NULL;
    ASSERT_EQ(sqlite3_open(p, &raw), SQLITE_OK);
    ASSERT_EQ(sqlite3_exec(raw, "PRAGMA user_version = 99", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(raw);
    _cleanup_err_ sk_err err = { 0 };
    logs_db *db2 = NULL;
    ASSERT_FAIL(logs_db_open(p, &db2, &err));
    ASSERT_EQ(err.code, SK_E_INVALID);
    ASSERT_TRUE(strstr(err.msg, "newer") != NULL);
}

TEST(db_groups)
{
    _cleanup_dir_ char *dir = tmpdir();
    logs_db *db = open_db(dir);
    ASSERT_NOT_NULL(db);
    const char *names[] = { "/ecs/web", "/ecs/api", "/aws/lambda/x", "app", "/ecs/worker" };
    for (size_t i = 0; i < ELEMENTSOF(names); i++)
        ASSERT_TRUE(make_group(db, names[i]) > 0);
    ASSERT_EQ(make_group(db, "/ecs/web"), -1);
    _cleanup_err_ sk_err err = { 0 };
    logs_group dup = { .name = (char *) "app", .creation_time = NOW };
    ASSERT_OK(logs_db_begin(db, &err));
    ASSERT_FAIL(logs_db_group_create(db, ACCT, REG, &dup, &err));
    ASSERT_EQ(err.code, SK_E_EXISTS);
    ASSERT_STREQ(err.type, "ResourceAlreadyExistsException");
    ASSERT_OK(logs_db_end(db, false, NULL));
    sk_err_done(&err);
    /* Same name in another region is another group. */
    logs_group other = { .name = (char *) "app", .creation_time = NOW };
    ASSERT_OK(logs_db_begin(db, &err));
    ASSERT_OK_ERR(logs_db_group_create(db, ACCT, "us-west-2", &other, &err), &err);
    ASSERT_OK(logs_db_end(db, true, &err));

    logs_group g = { 0 };
    ASSERT_OK_ERR(logs_db_group_get(db, ACCT, REG, "/ecs/api", &g, &err), &err);
    ASSERT_STREQ(g.name, "/ecs/api");
    ASSERT_EQ(g.creation_time, NOW);
    ASSERT_EQ(g.retention_days, 0);
    ASSERT_STREQ(g.log_class, "STANDARD");
    ASSERT_EQ(json_object_size(g.tags), 0);
    logs_group_done(&g);
    ASSERT_FAIL(logs_db_group_get(db, ACCT, REG, "/nope", &g, &err));
    ASSERT_EQ(err.code, SK_E_NOT_FOUND);
    sk_err_done(&err);

    sk_vec v = { 0 };
    logs_group_query q = { .prefix = "/ecs/", .limit = 2 };
    ASSERT_OK(logs_db_group_list(db, ACCT, REG, &q, &v, &err));
    ASSERT_EQ(v.len, 2);
    ASSERT_STREQ(((logs_group *) v.items[0])->name, "/ecs/api");
    ASSERT_STREQ(((logs_group *) v.items[1])->name, "/ecs/web");
    sk_vec_done(&v, (void (*)(void *)) logs_group_free);
    q = (logs_group_query){ .prefix = "/ecs/", .after = "/ecs/web", .limit = 10 };
    ASSERT_OK(logs_db_group_list(db, ACCT, REG, &q, &v, &err));
    ASSERT_EQ(v.len, 1);
    ASSERT_STREQ(((logs_group *) v.items[0])->name, "/ecs/worker");
    sk_vec_done(&v, (void (*)(void *)) logs_group_free);
    q = (logs_group_query){ .pattern = "w", .limit = 10 };
    ASSERT_OK(logs_db_group_list(db, ACCT, REG, &q, &v, &err));
    ASSERT_EQ(v.len, 3); /* /aws/lambda/x, /ecs/web, /ecs/worker */
    sk_vec_done(&v, (void (*)(void *)) logs_group_free);
    q = (logs_group_query){ .limit = 50 };
    ASSERT_OK(logs_db_group_list(db, ACCT, REG, &q, &v, &err));
    ASSERT_EQ(v.len, 5);
    ASSERT_STREQ(((logs_group *) v.items[0])->name, "/aws/lambda/x");
    sk_vec_done(&v, (void (*)(void *)) logs_group_free);

    /* tags and retention round-trip */
    ASSERT_OK(logs_db_group_get(db, ACCT, REG, "app", &g, &err));
    json_t *tags = json_pack("{s:s}", "team", "infra");
    ASSERT_OK(logs_db_begin(db, &err));
    ASSERT_OK(logs_db_group_set_tags(db, g.id, tags, &err));
    ASSERT_OK(logs_db_group_set_retention(db, g.id, 7, &err));
    ASSERT_OK(logs_db_end(db, true, &err));
    json_decref(tags);
    int64_t gid = g.id;
    logs_group_done(&g);
    ASSERT_OK(logs_db_group_get(db, ACCT, REG, "app", &g, &err));
    ASSERT_STREQ(json_string_value(json_object_get(g.tags, "team")), "infra");
    ASSERT_EQ(g.retention_days, 7);
    logs_group_done(&g);
    ASSERT_OK(logs_db_begin(db, &err));
    ASSERT_OK(logs_db_group_delete(db, gid, &err));
    ASSERT_OK(logs_db_end(db, true, &err));
    ASSERT_FAIL(logs_db_group_get(db, ACCT, REG, "app", &g, &err));
    ASSERT_OK(logs_db_commit(db, &err));
    logs_db_close(db);
}

TEST(db_streams_and_events)
{
    _cleanup_dir_ char *dir = tmpdir();
    logs_db *db = open_db(dir);
    ASSERT_NOT_NULL(db);
    _cleanup_err_ sk_err err = { 0 };
    int64_t gid = make_group(db, "g");
    ASSERT_TRUE(gid > 0);
    logs_stream a = { 0 }, b = { 0 }, c = { 0 };
    ASSERT_OK(make_stream(db, gid, "b-stream", &b));
    ASSERT_OK(make_stream(db, gid, "a-stream", &a));
    ASSERT_OK(make_stream(db, gid, "c-stream", &c));
    ASSERT_EQ(a.first_event, -1);
    ASSERT_EQ(a.seq, 0);
    ASSERT_FAIL(make_stream(db, gid, "a-stream", &(logs_stream){ 0 }));

    int64_t ta[] = { 100, 200, 200, 300 };
    int64_t tb[] = { 150, 250 };
    ASSERT_OK(put(db, &a, ta, 4, NOW));
    ASSERT_OK(put(db, &b, tb, 2, NOW + 1));

    logs_stream s = { 0 };
    ASSERT_OK(logs_db_stream_get(db, gid, "a-stream", &s, &err));
    ASSERT_EQ(s.first_event, 100);
    ASSERT_EQ(s.last_event, 300);
    ASSERT_EQ(s.last_ingestion, NOW);
    ASSERT_EQ(s.seq, 1);
    logs_stream_done(&s);

    /* one stream, forward from the start */
    collected col = { 0 };
    logs_scan scan = {
        .stream_id = a.id, .start_time = INT64_MIN, .end_time = INT64_MAX, .from = LOGS_POS_MIN
    };
    ASSERT_OK(logs_db_scan(db, &scan, collect, &col, &err));
    ASSERT_EQ(col.n, 4);
    ASSERT_EQ(col.ts[0], 100);
    ASSERT_EQ(col.ts[3], 300);
    ASSERT_TRUE(col.ids[1] < col.ids[2]);
    /* strictly after (200, first id): only the second 200 and 300 */
    logs_pos mid = { 200, col.ids[1] };
    collected col2 = { 0 };
    scan.from = mid;
    ASSERT_OK(logs_db_scan(db, &scan, collect, &col2, &err));
    ASSERT_EQ(col2.n, 2);
    ASSERT_EQ(col2.ts[0], 200);
    ASSERT_EQ(col2.ts[1], 300);
    /* backward from the end, newest first, within [150, 300) */
    collected col3 = { 0 };
    scan = (logs_scan){ .stream_id = a.id,
                        .start_time = 150,
                        .end_time = 300,
                        .from = LOGS_POS_MAX,
                        .backward = true };
    ASSERT_OK(logs_db_scan(db, &scan, collect, &col3, &err));
    ASSERT_EQ(col3.n, 2);
    ASSERT_EQ(col3.ts[0], 200);
    ASSERT_EQ(col3.ids[0], col.ids[2]);
    ASSERT_EQ(col3.ts[1], 200);
    /* time bounds on a forward scan */
    collected col4 = { 0 };
    scan = (logs_scan){
        .stream_id = a.id, .start_time = 200, .end_time = 301, .from = LOGS_POS_MIN
    };
    ASSERT_OK(logs_db_scan(db, &scan, collect, &col4, &err));
    ASSERT_EQ(col4.n, 3);
    /* the whole group, interleaved, with stream names */
    collected all = { 0 };
    scan = (logs_scan){
        .group_id = gid, .start_time = INT64_MIN, .end_time = INT64_MAX, .from = LOGS_POS_MIN
    };
    ASSERT_OK(logs_db_scan(db, &scan, collect, &all, &err));
    ASSERT_EQ(all.n, 6);
    ASSERT_EQ(all.ts[1], 150);
    ASSERT_STREQ(all.names[1], "b-stream");
    ASSERT_STREQ(all.names[0], "a-stream");
    /* stopping early */
    collected two = { .stop_after = 2 };
    ASSERT_OK(logs_db_scan(db, &scan, collect, &two, &err));
    ASSERT_EQ(two.n, 2);

    /* stream listing */
    sk_vec v = { 0 };
    logs_stream_query q = { .limit = 10 };
    ASSERT_OK(logs_db_stream_list(db, gid, &q, &v, &err));
    ASSERT_EQ(v.len, 3);
    ASSERT_STREQ(((logs_stream *) v.items[0])->name, "a-stream");
    sk_vec_done(&v, (void (*)(void *)) logs_stream_free);
    q = (logs_stream_query){
        .descending = true, .has_after = true, .after_name = "c-stream", .limit = 10
    };
    ASSERT_OK(logs_db_stream_list(db, gid, &q, &v, &err));
    ASSERT_EQ(v.len, 2);
    ASSERT_STREQ(((logs_stream *) v.items[0])->name, "b-stream");
    sk_vec_done(&v, (void (*)(void *)) logs_stream_free);
    q = (logs_stream_query){ .prefix = "b", .limit = 10 };
    ASSERT_OK(logs_db_stream_list(db, gid, &q, &v, &err));
    ASSERT_EQ(v.len, 1);
    sk_vec_done(&v, (void (*)(void *)) logs_stream_free);
    q = (logs_stream_query){ .by_last_event = true, .descending = true, .limit = 10 };
    ASSERT_OK(logs_db_stream_list(db, gid, &q, &v, &err));
    ASSERT_EQ(v.len, 3);
    ASSERT_STREQ(((logs_stream *) v.items[0])->name, "a-stream"); /* last event 300 */
    ASSERT_STREQ(((logs_stream *) v.items[1])->name, "b-stream"); /* 250 */
    ASSERT_STREQ(((logs_stream *) v.items[2])->name, "c-stream"); /* none */
    sk_vec_done(&v, (void (*)(void *)) logs_stream_free);
    q = (logs_stream_query){ .by_last_event = true,
                             .has_after = true,
                             .after_time = 250,
                             .after_name = "b-stream",
                             .limit = 10 };
    ASSERT_OK(logs_db_stream_list(db, gid, &q, &v, &err));
    ASSERT_EQ(v.len, 1);
    ASSERT_STREQ(((logs_stream *) v.items[0])->name, "a-stream");
    sk_vec_done(&v, (void (*)(void *)) logs_stream_free);

    /* storedBytes follows puts and stream deletion */
    logs_group g = { 0 };
    ASSERT_OK(logs_db_group_get(db, ACCT, REG, "g", &g, &err));
    ASSERT_EQ(g.stored_bytes, 4 * 9 + 2 * 9); /* "event NNN" */
    ASSERT_EQ(g.stream_count, 3);
    logs_group_done(&g);
    ASSERT_OK(logs_db_begin(db, &err));
    ASSERT_OK(logs_db_stream_delete(db, &a, &err));
    ASSERT_OK(logs_db_end(db, true, &err));
    ASSERT_OK(logs_db_group_get(db, ACCT, REG, "g", &g, &err));
    ASSERT_EQ(g.stored_bytes, 2 * 9);
    ASSERT_EQ(g.stream_count, 2);
    logs_group_done(&g);
    collected rest = { 0 };
    scan = (logs_scan){
        .group_id = gid, .start_time = INT64_MIN, .end_time = INT64_MAX, .from = LOGS_POS_MIN
    };
    ASSERT_OK(logs_db_scan(db, &scan, collect, &rest, &err));
    ASSERT_EQ(rest.n, 2);
    logs_stream_done(&a);
    logs_stream_done(&b);
    logs_stream_done(&c);
    logs_db_close(db);
}

TEST(db_savepoints_and_commit)
{
    _cleanup_dir_ char *dir = tmpdir();
    logs_db *db = open_db(dir);
    ASSERT_NOT_NULL(db);
    _cleanup_err_ sk_err err = { 0 };
    ASSERT_FALSE(logs_db_in_txn(db));
    ASSERT_TRUE(make_group(db, "kept") > 0);
    ASSERT_TRUE(logs_db_in_txn(db));
    /* A failed operation is rolled back alone. */
    logs_group g = { .name = (char *) "dropped", .creation_time = NOW };
    ASSERT_OK(logs_db_begin(db, &err));
    ASSERT_OK(logs_db_group_create(db, ACCT, REG, &g, &err));
    ASSERT_OK(logs_db_end(db, false, &err));
    ASSERT_OK(logs_db_commit(db, &err));
    ASSERT_FALSE(logs_db_in_txn(db));
    logs_db_close(db);
    db = open_db(dir);
    ASSERT_NOT_NULL(db);
    logs_group out = { 0 };
    ASSERT_OK(logs_db_group_get(db, ACCT, REG, "kept", &out, &err));
    logs_group_done(&out);
    ASSERT_FAIL(logs_db_group_get(db, ACCT, REG, "dropped", &out, &err));
    /* Uncommitted work is lost on close. */
    sk_err_done(&err);
    ASSERT_TRUE(make_group(db, "uncommitted") > 0);
    logs_db_close(db);
    db = open_db(dir);
    ASSERT_FAIL(logs_db_group_get(db, ACCT, REG, "uncommitted", &out, &err));
    logs_db_close(db);
}

TEST(tokens)
{
    uint8_t key[LOGS_TOKEN_KEY_LEN], other[LOGS_TOKEN_KEY_LEN];
    memset(key, 7, sizeof(key));
    memset(other, 8, sizeof(other));
    _cleanup_free_ char *t = logs_token_encode(key, "f/", "42", "1700000000000:17");
    ASSERT_TRUE(startswith(t, "f/") != NULL);
    _cleanup_err_ sk_err err = { 0 };
    _cleanup_free_ char *pl = NULL;
    ASSERT_OK_ERR(logs_token_decode(key, t, "f/", "42", &pl, &err), &err);
    ASSERT_STREQ(pl, "1700000000000:17");
    /* deterministic: same input, same token (GetLogEvents relies on it) */
    _cleanup_free_ char *t2 = logs_token_encode(key, "f/", "42", "1700000000000:17");
    ASSERT_STREQ(t, t2);
    char *x = NULL;
    ASSERT_FAIL(logs_token_decode(key, t, "f/", "43", &x, &err)); /* other stream */
    ASSERT_STREQ(err.type, "InvalidParameterException");
    sk_err_done(&err);
    ASSERT_FAIL(logs_token_decode(key, t, "b/", "42", &x, &err)); /* other direction */
    sk_err_done(&err);
    ASSERT_FAIL(logs_token_decode(other, t, "f/", "42", &x, &err)); /* other key */
    sk_err_done(&err);
    /* tampering anywhere */
    for (size_t i = 0; t[i]; i++) {
        _cleanup_free_ char *bad = xstrdup(t);
        bad[i] = bad[i] == 'A' ? 'B' : 'A';
        ASSERT_FAIL(logs_token_decode(key, bad, "f/", "42", &x, &err));
        sk_err_done(&err);
    }
    const char *garbage[] = { "",
                              "f/",
                              "f/.",
                              "f/abc",
                              "f/====.0123456789abcdef0123456789abcdef",
                              "f/QQ==.zz23456789abcdef0123456789abcdef",
                              "b/x",
                              "\xff\xfe",
                              "f/AAAA.0123456789abcdef0123456789abcde" };
    for (size_t i = 0; i < ELEMENTSOF(garbage); i++) {
        ASSERT_FAIL(logs_token_decode(key, garbage[i], "f/", "42", &x, &err));
        sk_err_done(&err);
    }
    /* an overlong token */
    _cleanup_free_ char *big = xmalloc(LOGS_MAX_TOKEN + 10);
    memset(big, 'A', LOGS_MAX_TOKEN + 9);
    big[LOGS_MAX_TOKEN + 9] = 0;
    ASSERT_FAIL(logs_token_decode(key, big, "f/", "42", &x, &err));
    sk_err_done(&err);
    /* a payload with a NUL is refused even when correctly signed */
    logs_pos p;
    ASSERT_OK(logs_pos_parse("-5:9", &p));
    ASSERT_EQ(p.ts, -5);
    ASSERT_EQ(p.id, 9);
    _cleanup_free_ char *f = logs_pos_format(LOGS_POS_MIN);
    ASSERT_OK(logs_pos_parse(f, &p));
    ASSERT_TRUE(p.ts == INT64_MIN && p.id == INT64_MIN);
    ASSERT_FAIL(logs_pos_parse("12", &p));
    ASSERT_FAIL(logs_pos_parse("a:1", &p));
    ASSERT_FAIL(logs_pos_parse("1:", &p));
    ASSERT_FAIL(logs_pos_parse("99999999999999999999999:1", &p));
}

TEST(sweep_with_injected_time)
{
    _cleanup_dir_ char *dir = tmpdir();
    logs_db *db = open_db(dir);
    ASSERT_NOT_NULL(db);
    _cleanup_err_ sk_err err = { 0 };
    int64_t keep = make_group(db, "keep"), expire = make_group(db, "expire");
    logs_stream ks = { 0 }, es = { 0 };
    ASSERT_OK(make_stream(db, keep, "s", &ks));
    ASSERT_OK(make_stream(db, expire, "s", &es));
    int64_t ts[] = { NOW - 3 * DAY, NOW - 2 * DAY, NOW - DAY / 2, NOW };
    ASSERT_OK(put(db, &ks, ts, 4, NOW));
    ASSERT_OK(put(db, &es, ts, 4, NOW));
    ASSERT_OK(logs_db_begin(db, &err));
    ASSERT_OK(logs_db_group_set_retention(db, expire, 1, &err));
    ASSERT_OK(logs_db_end(db, true, &err));
    int64_t deleted = -1;
    bool more = true;
    ASSERT_OK(logs_db_begin(db, &err));
    ASSERT_OK_ERR(logs_db_sweep(db, NOW, &deleted, &more, &err), &err);
    ASSERT_OK(logs_db_end(db, true, &err));
    ASSERT_EQ(deleted, 2);
    ASSERT_FALSE(more);
    collected c = { 0 };
    logs_scan scan = {
        .stream_id = es.id, .start_time = INT64_MIN, .end_time = INT64_MAX, .from = LOGS_POS_MIN
    };
    ASSERT_OK(logs_db_scan(db, &scan, collect, &c, &err));
    ASSERT_EQ(c.n, 2);
    ASSERT_EQ(c.ts[0], NOW - DAY / 2);
    collected k = { 0 };
    scan.stream_id = ks.id;
    ASSERT_OK(logs_db_scan(db, &scan, collect, &k, &err));
    ASSERT_EQ(k.n, 4);
    logs_group g = { 0 };
    ASSERT_OK(logs_db_group_get(db, ACCT, REG, "expire", &g, &err));
    ASSERT_EQ(g.stored_bytes, 2 * (int64_t) strlen("event 1700000000000"));
    logs_group_done(&g);
    /* a day later the rest goes too */
    ASSERT_OK(logs_db_begin(db, &err));
    ASSERT_OK(logs_db_sweep(db, NOW + 2 * DAY, &deleted, &more, &err));
    ASSERT_OK(logs_db_end(db, true, &err));
    ASSERT_EQ(deleted, 2);

    /* big backlogs are deleted in batches */
    logs_stream bs = { 0 };
    ASSERT_OK(make_stream(db, expire, "big", &bs));
    size_t n = LOGS_SWEEP_BATCH + 5;
    int64_t *many = xcalloc(n, sizeof(*many));
    for (size_t i = 0; i < n; i++)
        many[i] = NOW - 2 * DAY + (int64_t) i;
    ASSERT_OK(put(db, &bs, many, n, NOW));
    free(many);
    ASSERT_OK(logs_db_begin(db, &err));
    ASSERT_OK(logs_db_sweep(db, NOW, &deleted, &more, &err));
    ASSERT_OK(logs_db_end(db, true, &err));
    ASSERT_EQ(deleted, LOGS_SWEEP_BATCH);
    ASSERT_TRUE(more);
    ASSERT_OK(logs_db_begin(db, &err));
    ASSERT_OK(logs_db_sweep(db, NOW, &deleted, &more, &err));
    ASSERT_OK(logs_db_end(db, true, &err));
    ASSERT_EQ(deleted, 5);
    ASSERT_FALSE(more);
    ASSERT_OK(logs_db_commit(db, &err));
    logs_stream_done(&ks);
    logs_stream_done(&es);
    logs_stream_done(&bs);
    logs_db_close(db);
}

static int64_t fake_clock(void *userdata)
{
    return *(int64_t *) userdata;
}

TEST(service_commit_hook_and_sweep_timer)
{
    _cleanup_dir_ char *dir = tmpdir();
    _cleanup_err_ sk_err err = { 0 };
    setenv("SKIFF_LOGS_SWEEP_SEC", "1", 1);
    ev_loop *loop = ev_loop_new();
    logs_service *l = NULL;
    ASSERT_OK_ERR(logs_new(loop, dir, &l, &err), &err);
    unsetenv("SKIFF_LOGS_SWEEP_SEC");
    int64_t now = NOW;
    logs_set_clock(l, fake_clock, &now);
    ASSERT_NOT_NULL(logs_service_def(l));
    ASSERT_EQ(logs_service_def(l)->nops, 17);
    logs_db *db = logs_get_db(l);
    ASSERT_FALSE(logs_dirty(l));
    int64_t gid = make_group(db, "svc");
    ASSERT_TRUE(gid > 0);
    logs_stream s = { 0 };
    ASSERT_OK(make_stream(db, gid, "s", &s));
    int64_t ts[] = { NOW - 2 * DAY, NOW };
    ASSERT_OK(put(db, &s, ts, 2, NOW));
    ASSERT_OK(logs_db_begin(db, &err));
    ASSERT_OK(logs_db_group_set_retention(db, gid, 1, &err));
    ASSERT_OK(logs_db_end(db, true, &err));
    ASSERT_TRUE(logs_dirty(l));
    /* One loop iteration: the prepare hook commits. */
    ASSERT_TRUE(ev_loop_run_once(loop, 0) >= 0);
    ASSERT_FALSE(logs_dirty(l));
    /* Visible to another connection, so durable. */
    logs_db *other = open_db(dir);
    ASSERT_NOT_NULL(other);
    logs_group g = { 0 };
    ASSERT_OK(logs_db_group_get(other, ACCT, REG, "svc", &g, &err));
    ASSERT_EQ(g.retention_days, 1);
    logs_group_done(&g);
    /* The timer (1 s) sweeps the expired event and the hook commits it. */
    collected c = { 0 };
    logs_scan scan = {
        .stream_id = s.id, .start_time = INT64_MIN, .end_time = INT64_MAX, .from = LOGS_POS_MIN
    };
    for (int i = 0; i < 20; i++) {
        ASSERT_TRUE(ev_loop_run_once(loop, 200) >= 0);
        c = (collected){ 0 };
        ASSERT_OK(logs_db_scan(other, &scan, collect, &c, &err));
        if (c.n == 1)
            break;
    }
    ASSERT_EQ(c.n, 1);
    ASSERT_EQ(c.ts[0], NOW);
    ASSERT_FALSE(logs_dirty(l));
    /* A direct sweep with the clock moved on. */
    now = NOW + 3 * DAY;
    ASSERT_OK(logs_sweep_run(l, &err));
    ASSERT_TRUE(logs_dirty(l));
    ASSERT_OK(logs_flush(l, &err));
    ASSERT_FALSE(logs_dirty(l));
    c = (collected){ 0 };
    ASSERT_OK(logs_db_scan(other, &scan, collect, &c, &err));
    ASSERT_EQ(c.n, 0);
    logs_db_close(other);
    logs_stream_done(&s);
    logs_free(l);
    ev_loop_free(loop);
}

TEST(service_failed_commit_stops_the_loop)
{
    _cleanup_dir_ char *dir = tmpdir();
    _cleanup_err_ sk_err err = { 0 };
    ev_loop *loop = ev_loop_new();
    logs_service *l = NULL;
    ASSERT_OK_ERR(logs_new(loop, dir, &l, &err), &err);
    logs_db *db = logs_get_db(l);
    ASSERT_TRUE(make_group(db, "lost") > 0);
    ASSERT_TRUE(logs_dirty(l));
    /* Fault injection: the transaction disappears behind the service's back,
     * as SQLite does on I/O errors and full disks. */
    ASSERT_EQ(sqlite3_exec(logs_db_handle(db), "ROLLBACK", NULL, NULL, NULL), SQLITE_OK);
    ASSERT_FALSE(ev_loop_quitting(loop));
    ASSERT_TRUE(ev_loop_run_once(loop, 0) >= 0);
    ASSERT_TRUE(ev_loop_quitting(loop));
    /* Held responses are never released, nothing more is accepted. */
    ASSERT_TRUE(logs_dirty(l));
    ASSERT_FAIL(logs_flush(l, &err));
    sk_err_done(&err);
    ASSERT_FAIL(logs_sweep_run(l, &err));
    ASSERT_EQ(err.code, SK_E_UNAVAILABLE);
    logs_free(l);
    ev_loop_free(loop);
}

TAP_MAIN()
