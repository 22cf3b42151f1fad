/* Storage of log groups, streams and events in SQLite (WAL, synchronous=FULL).
 *
 * Events carry a global INTEGER PRIMARY KEY (their eventId and the tie-break
 * of the (timestamp, id) order that every page walks) and are indexed by
 * stream and by group, each on (ts, id). Writes happen inside one transaction
 * per event-loop iteration (see logs_db_begin), with a savepoint per
 * operation so that a failed operation never leaves half its rows behind. */
#include <sqlite3.h>
#include <string.h>
#include <sys/stat.h>

#include "basic/alloc.h"
#include "basic/buf.h"
#include "basic/macro.h"
#include "basic/rand.h"
#include "basic/strutil.h"
#include "logs-internal.h"
#include "shared/sqlutil.h"

struct logs_db {
    sqlite3 *db;
    bool in_txn;
    unsigned depth; /* open operation savepoints */
    uint8_t token_key[LOGS_TOKEN_KEY_LEN];
};

/* migrations[i] takes the schema from version i to i+1; a change of the
 * on-disk layout adds a step (see sql_open_durable). */
static const char *const migrations[] = {
    [0] = "CREATE TABLE meta (k TEXT PRIMARY KEY, v BLOB NOT NULL) WITHOUT ROWID;"
          "CREATE TABLE groups ("
          " id INTEGER PRIMARY KEY,"
          " account TEXT NOT NULL, region TEXT NOT NULL, name TEXT NOT NULL,"
          " creation_time INTEGER NOT NULL,"
          " retention_days INTEGER,"
          " kms_key_id TEXT,"
          " log_class TEXT NOT NULL,"
          " tags TEXT NOT NULL DEFAULT '{}',"
          " stored_bytes INTEGER NOT NULL DEFAULT 0,"
          " stream_count INTEGER NOT NULL DEFAULT 0,"
          " UNIQUE (account, region, name));"
          "CREATE INDEX groups_by_retention ON groups (retention_days)"
          " WHERE retention_days IS NOT NULL;"
          "CREATE TABLE streams ("
          " id INTEGER PRIMARY KEY,"
          " group_id INTEGER NOT NULL,"
          " name TEXT NOT NULL,"
          " creation_time INTEGER NOT NULL,"
          " first_event INTEGER, last_event INTEGER, last_ingestion INTEGER,"
          " seq INTEGER NOT NULL DEFAULT 0,"
          " UNIQUE (group_id, name));"
          "CREATE INDEX streams_by_last_event ON streams (group_id, IFNULL(last_event, -1), name);"
          "CREATE TABLE events ("
          " id INTEGER PRIMARY KEY,"
          " group_id INTEGER NOT NULL,"
          " stream_id INTEGER NOT NULL,"
          " ts INTEGER NOT NULL,"
          " ingestion INTEGER NOT NULL,"
          " size INTEGER NOT NULL,"
          " message TEXT NOT NULL);"
          "CREATE INDEX events_by_stream ON events (stream_id, ts, id);"
          "CREATE INDEX events_by_group ON events (group_id, ts, id);",
};

static void finalizep(sqlite3_stmt **st)
{
    sqlite3_finalize(*st);
}
#define _cleanup_stmt_ _cleanup_(finalizep)

static int prepare(logs_db *db, const char *sql, sqlite3_stmt **ret, sk_err *err)
{
    if (sqlite3_prepare_v2(db->db, sql, -1, ret, NULL) != SQLITE_OK) {
        *ret = NULL;
        return sql_err(db->db, err, "prepare");
    }
    return 0;
}

/* Runs a statement that returns no rows. */
static int step_done(logs_db *db, sqlite3_stmt *st, const char *what, sk_err *err)
{
    int r = sqlite3_step(st);
    if (r != SQLITE_DONE && r != SQLITE_ROW)
        return sql_err(db->db, err, what);
    return 0;
}

static void bind_str(sqlite3_stmt *st, int i, const char *s)
{
    if (s)
        sqlite3_bind_text(st, i, s, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(st, i);
}

static char *col_str(sqlite3_stmt *st, int i)
{
    const unsigned char *s = sqlite3_column_text(st, i);
    return s ? xstrdup((const char *) s) : NULL;
}

static int64_t col_i64_or(sqlite3_stmt *st, int i, int64_t def)
{
    return sqlite3_column_type(st, i) == SQLITE_NULL ? def : sqlite3_column_int64(st, i);
}

static int load_token_key(logs_db *db, sk_err *err)
{
    _cleanup_stmt_ sqlite3_stmt *st = NULL;
    if (prepare(db, "SELECT v FROM meta WHERE k = 'token-key'", &st, err) < 0)
        return -1;
    if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_bytes(st, 0) == LOGS_TOKEN_KEY_LEN) {
        memcpy(db->token_key, sqlite3_column_blob(st, 0), LOGS_TOKEN_KEY_LEN);
        return 0;
    }
    random_bytes(db->token_key, sizeof(db->token_key));
    _cleanup_stmt_ sqlite3_stmt *ins = NULL;
    if (prepare(db, "INSERT OR REPLACE INTO meta (k, v) VALUES ('token-key', ?)", &ins, err) < 0)
        return -1;
    sqlite3_bind_blob(ins, 1, db->token_key, LOGS_TOKEN_KEY_LEN, SQLITE_STATIC);
    return step_done(db, ins, "store token key", err);
}

void logs_db_close(logs_db *db)
{
    if (!db)
        return;
    if (db->in_txn)
        sql_exec(db->db, "ROLLBACK", NULL);
    sqlite3_close(db->db);
    free(db);
}

int logs_db_open(const char *path, logs_db **ret, sk_err *err)
{
    logs_db *db = xcalloc(1, sizeof(*db));
    if (sql_open_durable(path, "logs database", migrations, (int) ELEMENTSOF(migrations), &db->db,
                         err) < 0) {
        free(db);
        return -1;
    }
    if (load_token_key(db, err) < 0) {
        logs_db_close(db);
        return sk_err_wrap(err, "open '%s'", path);
    }
    *ret = db;
    return 0;
}

const uint8_t *logs_db_token_key(const logs_db *db)
{
    return db->token_key;
}

/* --- transactions --- */

bool logs_db_in_txn(const logs_db *db)
{
    return db->in_txn;
}

sqlite3 *logs_db_handle(logs_db *db)
{
    return db->db;
}

int logs_db_begin(logs_db *db, sk_err *err)
{
    if (!db->in_txn) {
        if (sql_exec(db->db, "BEGIN IMMEDIATE", err) < 0)
            return -1;
        db->in_txn = true;
    }
    if (sql_exec(db->db, "SAVEPOINT op", err) < 0)
        return -1;
    db->depth++;
    return 0;
}

int logs_db_end(logs_db *db, bool ok, sk_err *err)
{
    if (!db->depth)
        return sk_err_set(err, SK_E_INTERNAL, "logs db: end without begin");
    db->depth--;
    /* Some errors (I/O, full disk, out of memory) make SQLite roll back the
     * whole transaction, taking other operations' pending writes with it. */
    if (sqlite3_get_autocommit(db->db)) {
        db->in_txn = false;
        db->depth = 0;
        return sk_err_set(err, SK_E_SYSTEM, "logs db: transaction was rolled back by sqlite");
    }
    if (!ok && sql_exec(db->db, "ROLLBACK TO op", err) < 0)
        return -1;
    return sql_exec(db->db, "RELEASE op", err);
}

int logs_db_commit(logs_db *db, sk_err *err)
{
    if (!db->in_txn)
        return 0;
    if (sqlite3_get_autocommit(db->db)) {
        db->in_txn = false;
        db->depth = 0;
        return sk_err_set(err, SK_E_SYSTEM, "logs db: transaction was rolled back by sqlite");
    }
    if (sql_exec(db->db, "COMMIT", err) < 0) {
        sql_exec(db->db, "ROLLBACK", NULL);
        db->in_txn = false;
        db->depth = 0;
        return -1;
    }
    db->in_txn = false;
    db->depth = 0;
    return 0;
}

/* --- groups --- */

void logs_group_done(logs_group *g)
{
    if (!g)
        return;
    free(g->name);
    free(g->kms_key_id);
    free(g->log_class);
    json_decref(g->tags);
    *g = (logs_group){ 0 };
}

void logs_group_free(logs_group *g)
{
    logs_group_done(g);
    free(g);
}

#define GROUP_COLS                                                                        \
    "id, name, creation_time, retention_days, kms_key_id, log_class, tags, stored_bytes," \
    " stream_count"

static void group_from_row(sqlite3_stmt *st, logs_group *g)
{
    g->id = sqlite3_column_int64(st, 0);
    g->name = col_str(st, 1);
    g->creation_time = sqlite3_column_int64(st, 2);
    g->retention_days = (int) col_i64_or(st, 3, 0);
    g->kms_key_id = col_str(st, 4);
    g->log_class = col_str(st, 5);
    const char *tags = (const char *) sqlite3_column_text(st, 6);
    g->tags = tags ? json_loads(tags, 0, NULL) : NULL;
    if (!json_is_object(g->tags)) {
        json_decref(g->tags);
        g->tags = json_object();
    }
    g->stored_bytes = sqlite3_column_int64(st, 7);
    g->stream_count = sqlite3_column_int64(st, 8);
}

static char *tags_dump(const json_t *tags)
{
    char *s = tags ? json_dumps(tags, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    return s ? s : xstrdup("{}");
}

int logs_db_group_create(logs_db *db, const char *account, const char *region, logs_group *g,
                         sk_err *err)
{
    _cleanup_stmt_ sqlite3_stmt *cnt = NULL;
    if (prepare(db, "SELECT COUNT(*) FROM groups WHERE account = ? AND region = ?", &cnt, err) < 0)
        return -1;
    sqlite3_bind_text(cnt, 1, account, -1, SQLITE_STATIC);
    sqlite3_bind_text(cnt, 2, region, -1, SQLITE_STATIC);
    if (sqlite3_step(cnt) != SQLITE_ROW)
        return sql_err(db->db, err, "count log groups");
    if (sqlite3_column_int64(cnt, 0) >= LOGS_MAX_GROUPS)
        return sk_err_typed(err, SK_E_LIMIT, "LimitExceededException", "Resource limit exceeded.");
    _cleanup_stmt_ sqlite3_stmt *st = NULL;
    if (prepare(db,
                "INSERT INTO groups (account, region, name, creation_time, kms_key_id, log_class,"
                " tags) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                &st, err) < 0)
        return -1;
    _cleanup_free_ char *tags = tags_dump(g->tags);
    sqlite3_bind_text(st, 1, account, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, region, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, g->name, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 4, g->creation_time);
    bind_str(st, 5, g->kms_key_id);
    bind_str(st, 6, g->log_class ? g->log_class : "STANDARD");
    sqlite3_bind_text(st, 7, tags, -1, SQLITE_STATIC);
    if (step_done(db, st, "create log group", err) < 0)
        return -1;
    if (sqlite3_changes(db->db) == 0)
        return sk_err_typed(err, SK_E_EXISTS, "ResourceAlreadyExistsException",
                            "The specified log group already exists");
    g->id = sqlite3_last_insert_rowid(db->db);
    return 0;
}

int logs_db_group_get(logs_db *db, const char *account, const char *region, const char *name,
                      logs_group *ret, sk_err *err)
{
    _cleanup_stmt_ sqlite3_stmt *st = NULL;
    if (prepare(db,
                "SELECT " GROUP_COLS " FROM groups WHERE account = ? AND region = ? AND name = ?",
                &st, err) < 0)
        return -1;
    sqlite3_bind_text(st, 1, account, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, region, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, name, -1, SQLITE_STATIC);
    int r = sqlite3_step(st);
    if (r == SQLITE_DONE)
        return sk_err_typed(err, SK_E_NOT_FOUND, "ResourceNotFoundException",
                            "The specified log group does not exist.");
    if (r != SQLITE_ROW)
        return sql_err(db->db, err, "read log group");
    group_from_row(st, ret);
    return 0;
}

static int exec_id(logs_db *db, const char *sql, int64_t id, sk_err *err)
{
    _cleanup_stmt_ sqlite3_stmt *st = NULL;
    if (prepare(db, sql, &st, err) < 0)
        return -1;
    sqlite3_bind_int64(st, 1, id);
    return step_done(db, st, "delete", err);
}

int logs_db_group_delete(logs_db *db, int64_t group_id, sk_err *err)
{
    if (exec_id(db, "DELETE FROM events WHERE group_id = ?", group_id, err) < 0 ||
        exec_id(db, "DELETE FROM streams WHERE group_id = ?", group_id, err) < 0 ||
        exec_id(db, "DELETE FROM groups WHERE id = ?", group_id, err) < 0)
        return -1;
    return 0;
}

int logs_db_group_set_retention(logs_db *db, int64_t group_id, int days, sk_err *err)
{
    _cleanup_stmt_ sqlite3_stmt *st = NULL;
    if (prepare(db, "UPDATE groups SET retention_days = ? WHERE id = ?", &st, err) < 0)
        return -1;
    if (days > 0)
        sqlite3_bind_int(st, 1, days);
    else
        sqlite3_bind_null(st, 1);
    sqlite3_bind_int64(st, 2, group_id);
    return step_done(db, st, "set retention", err);
}

int logs_db_group_set_tags(logs_db *db, int64_t group_id, const json_t *tags, sk_err *err)
{
    _cleanup_stmt_ sqlite3_stmt *st = NULL;
    if (prepare(db, "UPDATE groups SET tags = ? WHERE id = ?", &st, err) < 0)
        return -1;
    _cleanup_free_ char *s = tags_dump(tags);
    sqlite3_bind_text(st, 1, s, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, group_id);
    return step_done(db, st, "set tags", err);
}

/* The smallest string greater than every string starting with prefix, or NULL
 * when there is none (all bytes 0xFF). Compared bytewise, like SQLite's
 * BINARY collation. */
static char *prefix_upper(const char *prefix)
{
    size_t n = strlen(prefix);
    while (n > 0 && (unsigned char) prefix[n - 1] == 0xFF)
        n--;
    if (n == 0)
        return NULL;
    char *u = xstrndup(prefix, n);
    u[n - 1] = (char) ((unsigned char) u[n - 1] + 1);
    return u;
}

int logs_db_group_list(logs_db *db, const char *account, const char *region,
                       const logs_group_query *q, sk_vec *ret, sk_err *err)
{
    _cleanup_buf_ sk_buf sql;
    sk_buf_init(&sql, 0);
    sk_buf_puts(&sql, "SELECT " GROUP_COLS " FROM groups WHERE account = ?1 AND region = ?2");
    _cleanup_free_ char *upper = q->prefix ? prefix_upper(q->prefix) : NULL;
    if (q->after)
        sk_buf_puts(&sql, " AND name > ?3");
    if (q->prefix)
        sk_buf_puts(&sql, " AND name >= ?4");
    if (upper)
        sk_buf_puts(&sql, " AND name < ?5");
    if (q->pattern && *q->pattern)
        sk_buf_puts(&sql, " AND instr(name, ?6) > 0");
    if (q->log_class)
        sk_buf_puts(&sql, " AND log_class = ?7");
    sk_buf_puts(&sql, " ORDER BY name LIMIT ?8");
    _cleanup_stmt_ sqlite3_stmt *st = NULL;
    if (prepare(db, sql.data, &st, err) < 0)
        return -1;
    sqlite3_bind_text(st, 1, account, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, region, -1, SQLITE_STATIC);
    if (q->after)
        sqlite3_bind_text(st, 3, q->after, -1, SQLITE_STATIC);
    if (q->prefix)
        sqlite3_bind_text(st, 4, q->prefix, -1, SQLITE_STATIC);
    if (upper)
        sqlite3_bind_text(st, 5, upper, -1, SQLITE_STATIC);
    if (q->pattern && *q->pattern)
        sqlite3_bind_text(st, 6, q->pattern, -1, SQLITE_STATIC);
    if (q->log_class)
        sqlite3_bind_text(st, 7, q->log_class, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 8, (sqlite3_int64) q->limit);
    int r;
    while ((r = sqlite3_step(st)) == SQLITE_ROW) {
        logs_group *g = xcalloc(1, sizeof(*g));
        group_from_row(st, g);
        sk_vec_push(ret, g);
    }
    if (r != SQLITE_DONE)
        return sql_err(db->db, err, "list log groups");
    return 0;
}

/* --- streams --- */

void logs_stream_done(logs_stream *s)
{
    if (!s)
        return;
    free(s->name);
    *s = (logs_stream){ 0 };
}

void logs_stream_free(logs_stream *s)
{
    logs_stream_done(s);
    free(s);
}

#define STREAM_COLS \
    "id, group_id, name, creation_time, first_event, last_event, last_ingestion, seq"

static void stream_from_row(sqlite3_stmt *st, logs_stream *s)
{
    s->id = sqlite3_column_int64(st, 0);
    s->group_id = sqlite3_column_int64(st, 1);
    s->name = col_str(st, 2);
    s->creation_time = sqlite3_column_int64(st, 3);
    s->first_event = col_i64_or(st, 4, -1);
    s->last_event = col_i64_or(st, 5, -1);
    s->last_ingestion = col_i64_or(st, 6, -1);
    s->seq = sqlite3_column_int64(st, 7);
}

int logs_db_stream_create(logs_db *db, int64_t group_id, const char *name, int64_t now_ms,
                          sk_err *err)
{
    _cleanup_stmt_ sqlite3_stmt *cnt = NULL;
    if (prepare(db, "SELECT stream_count FROM groups WHERE id = ?", &cnt, err) < 0)
        return -1;
    sqlite3_bind_int64(cnt, 1, group_id);
    if (sqlite3_step(cnt) == SQLITE_ROW && sqlite3_column_int64(cnt, 0) >= LOGS_MAX_STREAMS)
        return sk_err_typed(err, SK_E_LIMIT, "LimitExceededException", "Resource limit exceeded.");
    _cleanup_stmt_ sqlite3_stmt *st = NULL;
    if (prepare(db,
                "INSERT INTO streams (group_id, name, creation_time) VALUES (?, ?, ?)"
                " ON CONFLICT DO NOTHING",
                &st, err) < 0)
        return -1;
    sqlite3_bind_int64(st, 1, group_id);
    sqlite3_bind_text(st, 2, name, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, now_ms);
    if (step_done(db, st, "create log stream", err) < 0)
        return -1;
    if (sqlite3_changes(db->db) == 0)
        return sk_err_typed(err, SK_E_EXISTS, "ResourceAlreadyExistsException",
                            "The specified log stream already exists");
    return exec_id(db, "UPDATE groups SET stream_count = stream_count + 1 WHERE id = ?", group_id,
                   err);
}

int logs_db_stream_get(logs_db *db, int64_t group_id, const char *name, logs_stream *ret,
                       sk_err *err)
{
    _cleanup_stmt_ sqlite3_stmt *st = NULL;
    if (prepare(db, "SELECT " STREAM_COLS " FROM streams WHERE group_id = ? AND name = ?", &st,
                err) < 0)
        return -1;
    sqlite3_bind_int64(st, 1, group_id);
    sqlite3_bind_text(st, 2, name, -1, SQLITE_STATIC);
    int r = sqlite3_step(st);
    if (r == SQLITE_DONE)
        return sk_err_typed(err, SK_E_NOT_FOUND, "ResourceNotFoundException",
                            "The specified log stream does not exist.");
    if (r != SQLITE_ROW)
        return sql_err(db->db, err, "read log stream");
    stream_from_row(st, ret);
    return 0;
}

int logs_db_stream_delete(logs_db *db, const logs_stream *s, sk_err *err)
{
    _cleanup_stmt_ sqlite3_stmt *sum = NULL;
    if (prepare(db, "SELECT IFNULL(SUM(size), 0) FROM events WHERE stream_id = ?", &sum, err) < 0)
        return -1;
    sqlite3_bind_int64(sum, 1, s->id);
    if (sqlite3_step(sum) != SQLITE_ROW)
        return sql_err(db->db, err, "sum stream size");
    int64_t bytes = sqlite3_column_int64(sum, 0);
    _cleanup_stmt_ sqlite3_stmt *upd = NULL;
    if (prepare(db,
                "UPDATE groups SET stored_bytes = MAX(stored_bytes - ?, 0),"
                " stream_count = MAX(stream_count - 1, 0) WHERE id = ?",
                &upd, err) < 0)
        return -1;
    sqlite3_bind_int64(upd, 1, bytes);
    sqlite3_bind_int64(upd, 2, s->group_id);
    if (step_done(db, upd, "update group", err) < 0 ||
        exec_id(db, "DELETE FROM events WHERE stream_id = ?", s->id, err) < 0 ||
        exec_id(db, "DELETE FROM streams WHERE id = ?", s->id, err) < 0)
        return -1;
    return 0;
}

int logs_db_stream_list(logs_db *db, int64_t group_id, const logs_stream_query *q, sk_vec *ret,
                        sk_err *err)
{
    _cleanup_buf_ sk_buf sql;
    sk_buf_init(&sql, 0);
    const char *dir = q->descending ? "DESC" : "ASC";
    const char *cmp = q->descending ? "<" : ">";
    sk_buf_puts(&sql, "SELECT " STREAM_COLS " FROM streams WHERE group_id = ?1");
    _cleanup_free_ char *upper = q->prefix ? prefix_upper(q->prefix) : NULL;
    if (q->by_last_event) {
        if (q->has_after)
            sk_buf_printf(&sql, " AND (IFNULL(last_event, -1), name) %s (?2, ?3)", cmp);
        sk_buf_printf(&sql, " ORDER BY IFNULL(last_event, -1) %s, name %s", dir, dir);
    } else {
        if (q->has_after)
            sk_buf_printf(&sql, " AND name %s ?3", cmp);
        if (q->prefix)
            sk_buf_puts(&sql, " AND name >= ?4");
        if (upper)
            sk_buf_puts(&sql, " AND name < ?5");
        sk_buf_printf(&sql, " ORDER BY name %s", dir);
    }
    sk_buf_puts(&sql, " LIMIT ?6");
    _cleanup_stmt_ sqlite3_stmt *st = NULL;
    if (prepare(db, sql.data, &st, err) < 0)
        return -1;
    sqlite3_bind_int64(st, 1, group_id);
    if (q->has_after) {
        sqlite3_bind_int64(st, 2, q->after_time);
        sqlite3_bind_text(st, 3, q->after_name ? q->after_name : "", -1, SQLITE_STATIC);
    }
    if (!q->by_last_event && q->prefix)
        sqlite3_bind_text(st, 4, q->prefix, -1, SQLITE_STATIC);
    if (!q->by_last_event && upper)
        sqlite3_bind_text(st, 5, upper, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 6, (sqlite3_int64) q->limit);
    int r;
    while ((r = sqlite3_step(st)) == SQLITE_ROW) {
        logs_stream *s = xcalloc(1, sizeof(*s));
        stream_from_row(st, s);
        sk_vec_push(ret, s);
    }
    if (r != SQLITE_DONE)
        return sql_err(db->db, err, "list log streams");
    return 0;
}

/* --- events --- */

int logs_db_put_events(logs_db *db, const logs_stream *s, const logs_new_event *evs, size_t n,
                       int64_t now_ms, int64_t *ret_seq, sk_err *err)
{
    _cleanup_stmt_ sqlite3_stmt *ins = NULL;
    if (prepare(db,
                "INSERT INTO events (group_id, stream_id, ts, ingestion, size, message)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                &ins, err) < 0)
        return -1;
    int64_t bytes = 0, first = INT64_MAX, last = INT64_MIN;
    for (size_t i = 0; i < n; i++) {
        sqlite3_reset(ins);
        sqlite3_bind_int64(ins, 1, s->group_id);
        sqlite3_bind_int64(ins, 2, s->id);
        sqlite3_bind_int64(ins, 3, evs[i].ts);
        sqlite3_bind_int64(ins, 4, now_ms);
        sqlite3_bind_int64(ins, 5, (sqlite3_int64) evs[i].len);
        sqlite3_bind_text(ins, 6, evs[i].message, (int) evs[i].len, SQLITE_STATIC);
        if (step_done(db, ins, "insert event", err) < 0)
            return -1;
        bytes += (int64_t) evs[i].len;
        first = MIN(first, evs[i].ts);
        last = MAX(last, evs[i].ts);
    }
    _cleanup_stmt_ sqlite3_stmt *upd = NULL;
    if (prepare(db,
                "UPDATE streams SET seq = seq + 1,"
                " first_event = CASE WHEN ?2 THEN MIN(IFNULL(first_event, ?3), ?3)"
                "  ELSE first_event END,"
                " last_event = CASE WHEN ?2 THEN MAX(IFNULL(last_event, ?4), ?4)"
                "  ELSE last_event END,"
                " last_ingestion = CASE WHEN ?2 THEN ?5 ELSE last_ingestion END"
                " WHERE id = ?1 RETURNING seq",
                &upd, err) < 0)
        return -1;
    sqlite3_bind_int64(upd, 1, s->id);
    sqlite3_bind_int(upd, 2, n > 0);
    sqlite3_bind_int64(upd, 3, n ? first : 0);
    sqlite3_bind_int64(upd, 4, n ? last : 0);
    sqlite3_bind_int64(upd, 5, now_ms);
    if (sqlite3_step(upd) != SQLITE_ROW)
        return sql_err(db->db, err, "update stream");
    int64_t seq = sqlite3_column_int64(upd, 0);
    if (n) {
        _cleanup_stmt_ sqlite3_stmt *g = NULL;
        if (prepare(db, "UPDATE groups SET stored_bytes = stored_bytes + ? WHERE id = ?", &g, err) <
            0)
            return -1;
        sqlite3_bind_int64(g, 1, bytes);
        sqlite3_bind_int64(g, 2, s->group_id);
        if (step_done(db, g, "update group", err) < 0)
            return -1;
    }
    if (ret_seq)
        *ret_seq = seq;
    return 0;
}

int logs_db_scan(logs_db *db, const logs_scan *scan, logs_event_fn fn, void *userdata, sk_err *err)
{
    /* Fold the time range into the cursor so that one row-value comparison
     * bounds the index range on that side. */
    logs_pos from = scan->from;
    if (!scan->backward && scan->start_time != INT64_MIN && from.ts < scan->start_time)
        from = (logs_pos){ scan->start_time - 1, INT64_MAX };
    if (scan->backward && scan->end_time != INT64_MAX && from.ts >= scan->end_time)
        from = (logs_pos){ scan->end_time, INT64_MIN };
    bool by_group = scan->stream_id == 0;
    _cleanup_buf_ sk_buf sql;
    sk_buf_init(&sql, 0);
    if (by_group)
        sk_buf_puts(&sql, "SELECT e.id, e.stream_id, e.ts, e.ingestion, e.message, s.name"
                          " FROM events e JOIN streams s ON s.id = e.stream_id"
                          " WHERE e.group_id = ?1");
    else
        sk_buf_puts(&sql, "SELECT e.id, e.stream_id, e.ts, e.ingestion, e.message"
                          " FROM events e WHERE e.stream_id = ?1");
    if (scan->backward)
        sk_buf_puts(&sql, " AND (e.ts, e.id) < (?2, ?3) AND e.ts >= ?4"
                          " ORDER BY e.ts DESC, e.id DESC");
    else
        sk_buf_puts(&sql, " AND (e.ts, e.id) > (?2, ?3) AND e.ts < ?5 ORDER BY e.ts, e.id");
    _cleanup_stmt_ sqlite3_stmt *st = NULL;
    if (prepare(db, sql.data, &st, err) < 0)
        return -1;
    sqlite3_bind_int64(st, 1, by_group ? scan->group_id : scan->stream_id);
    sqlite3_bind_int64(st, 2, from.ts);
    sqlite3_bind_int64(st, 3, from.id);
    if (scan->backward)
        sqlite3_bind_int64(st, 4, scan->start_time);
    else
        sqlite3_bind_int64(st, 5, scan->end_time);
    int r;
    while ((r = sqlite3_step(st)) == SQLITE_ROW) {
        logs_event ev = {
            .id = sqlite3_column_int64(st, 0),
            .stream_id = sqlite3_column_int64(st, 1),
            .ts = sqlite3_column_int64(st, 2),
            .ingestion = sqlite3_column_int64(st, 3),
            .message = (const char *) sqlite3_column_text(st, 4),
            .len = (size_t) sqlite3_column_bytes(st, 4),
            .stream_name = by_group ? (const char *) sqlite3_column_text(st, 5) : NULL,
        };
        if (!ev.message)
            ev.message = "";
        int k = fn(userdata, &ev);
        if (k != 0)
            return k < 0 ? k : 0;
    }
    if (r != SQLITE_DONE)
        return sql_err(db->db, err, "scan events");
    return 0;
}

int logs_db_sweep(logs_db *db, int64_t now_ms, int64_t *ret_deleted, bool *ret_more, sk_err *err)
{
    _cleanup_stmt_ sqlite3_stmt *groups = NULL;
    if (prepare(db, "SELECT id, retention_days FROM groups WHERE retention_days IS NOT NULL",
                &groups, err) < 0)
        return -1;
    _cleanup_stmt_ sqlite3_stmt *del = NULL;
    if (prepare(db,
                "DELETE FROM events WHERE id IN (SELECT id FROM events WHERE group_id = ?1"
                " AND ts < ?2 ORDER BY ts LIMIT ?3) RETURNING size",
                &del, err) < 0)
        return -1;
    _cleanup_stmt_ sqlite3_stmt *upd = NULL;
    if (prepare(db, "UPDATE groups SET stored_bytes = MAX(stored_bytes - ?, 0) WHERE id = ?", &upd,
                err) < 0)
        return -1;
    /* Collect first: the group cursor must not stay open across the writes. */
    size_t n = 0, alloc = 0;
    _cleanup_free_ int64_t *ids = NULL;
    _cleanup_free_ int *days = NULL;
    int r;
    while ((r = sqlite3_step(groups)) == SQLITE_ROW) {
        if (n == alloc) {
            alloc = alloc ? 2 * alloc : 16;
            ids = xrealloc(ids, alloc * sizeof(*ids));
            days = xrealloc(days, alloc * sizeof(*days));
        }
        ids[n] = sqlite3_column_int64(groups, 0);
        days[n] = sqlite3_column_int(groups, 1);
        n++;
    }
    if (r != SQLITE_DONE)
        return sql_err(db->db, err, "list retention");
    int64_t deleted = 0;
    bool more = false;
    for (size_t i = 0; i < n; i++) {
        if (days[i] <= 0)
            continue;
        int64_t cutoff = now_ms - (int64_t) days[i] * 86400000;
        sqlite3_reset(del);
        sqlite3_bind_int64(del, 1, ids[i]);
        sqlite3_bind_int64(del, 2, cutoff);
        sqlite3_bind_int(del, 3, LOGS_SWEEP_BATCH);
        int64_t rows = 0, bytes = 0;
        while ((r = sqlite3_step(del)) == SQLITE_ROW) {
            rows++;
            bytes += sqlite3_column_int64(del, 0);
        }
        if (r != SQLITE_DONE)
            return sql_err(db->db, err, "expire events");
        sqlite3_reset(del);
        if (rows == 0)
            continue;
        deleted += rows;
        if (rows >= LOGS_SWEEP_BATCH)
            more = true;
        sqlite3_reset(upd);
        sqlite3_bind_int64(upd, 1, bytes);
        sqlite3_bind_int64(upd, 2, ids[i]);
        if (step_done(db, upd, "update group", err) < 0)
            return -1;
    }
    if (ret_deleted)
        *ret_deleted = deleted;
    if (ret_more)
        *ret_more = more;
    return 0;
}
