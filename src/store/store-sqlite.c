/* SQLite backend: one table of versioned keys in WAL mode with
 * synchronous=FULL, so a returned commit survives power loss and kill -9. */
#include <sqlite3.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "basic/alloc.h"
#include "basic/macro.h"
#include "basic/strutil.h"
#include "shared/sqlutil.h"
#include "store-backend.h"

typedef struct sqlite_backend {
    sqlite3 *db;
    sqlite3_stmt *put;
    sqlite3_stmt *del;
    sqlite3_stmt *setrev;
} sqlite_backend;

/* migrations[i] takes the schema from version i to i+1; a change of the
 * on-disk layout adds a step (see sql_open_durable). */
static const char *const migrations[] = {
    [0] = "CREATE TABLE kv (key TEXT PRIMARY KEY, value BLOB NOT NULL,"
          " create_rev INTEGER NOT NULL, mod_rev INTEGER NOT NULL) WITHOUT ROWID;"
          "CREATE TABLE meta (k TEXT PRIMARY KEY, v INTEGER NOT NULL) WITHOUT ROWID;"
          "INSERT INTO meta VALUES ('revision', 0);",
};

static void sb_close(void *p)
{
    sqlite_backend *b = p;
    if (!b)
        return;
    sqlite3_finalize(b->put);
    sqlite3_finalize(b->del);
    sqlite3_finalize(b->setrev);
    sqlite3_close(b->db);
    free(b);
}

static int sb_open(const char *location, void **ret, sk_err *err)
{
    sqlite_backend *b = xcalloc(1, sizeof(*b));
    if (sql_open_durable(location, "the data dir's state.db", migrations,
                         (int) ELEMENTSOF(migrations), &b->db, err) < 0) {
        sb_close(b);
        return -1;
    }
    if (sqlite3_prepare_v2(
                b->db,
                "INSERT OR REPLACE INTO kv (key, value, create_rev, mod_rev) VALUES (?, ?, ?, ?)",
                -1, &b->put, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(b->db, "DELETE FROM kv WHERE key = ?", -1, &b->del, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(b->db, "UPDATE meta SET v = ? WHERE k = 'revision'", -1, &b->setrev,
                           NULL) != SQLITE_OK) {
        sql_err(b->db, err, "prepare");
        sb_close(b);
        return -1;
    }
    *ret = b;
    return 0;
}

static int sb_load(void *p, store_load_fn fn, void *userdata, uint64_t *ret_rev, sk_err *err)
{
    sqlite_backend *b = p;
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(b->db, "SELECT key, value, create_rev, mod_rev FROM kv", -1, &st,
                           NULL) != SQLITE_OK)
        return sql_err(b->db, err, "load");
    int r;
    uint64_t maxrev = 0;
    while ((r = sqlite3_step(st)) == SQLITE_ROW) {
        const char *k = (const char *) sqlite3_column_text(st, 0);
        const char *v = sqlite3_column_blob(st, 1);
        size_t len = (size_t) sqlite3_column_bytes(st, 1);
        uint64_t crev = (uint64_t) sqlite3_column_int64(st, 2);
        uint64_t mrev = (uint64_t) sqlite3_column_int64(st, 3);
        if (mrev > maxrev)
            maxrev = mrev;
        if (fn(userdata, k, v ? v : "", len, crev, mrev) < 0) {
            sqlite3_finalize(st);
            return sk_err_set(err, SK_E_INTERNAL, "load callback failed");
        }
    }
    sqlite3_finalize(st);
    if (r != SQLITE_DONE)
        return sql_err(b->db, err, "load");
    uint64_t rev = 0;
    if (sqlite3_prepare_v2(b->db, "SELECT v FROM meta WHERE k = 'revision'", -1, &st, NULL) ==
        SQLITE_OK) {
        if (sqlite3_step(st) == SQLITE_ROW)
            rev = (uint64_t) sqlite3_column_int64(st, 0);
        sqlite3_finalize(st);
    }
    *ret_rev = rev > maxrev ? rev : maxrev;
    return 0;
}

static int sb_commit(void *p, const store_op *ops, size_t n, uint64_t rev, sk_err *err)
{
    sqlite_backend *b = p;
    if (sql_exec(b->db, "BEGIN IMMEDIATE", err) < 0)
        return -1;
    for (size_t i = 0; i < n; i++) {
        const store_op *o = &ops[i];
        sqlite3_stmt *st = o->value ? b->put : b->del;
        sqlite3_reset(st);
        sqlite3_bind_text(st, 1, o->key, -1, SQLITE_STATIC);
        if (o->value) {
            sqlite3_bind_blob(st, 2, o->value, (int) o->len, SQLITE_STATIC);
            sqlite3_bind_int64(st, 3, (sqlite3_int64) o->create_rev);
            sqlite3_bind_int64(st, 4, (sqlite3_int64) o->mod_rev);
        }
        if (sqlite3_step(st) != SQLITE_DONE) {
            sql_err(b->db, err, "write");
            sqlite3_reset(st);
            sql_exec(b->db, "ROLLBACK", NULL);
            return -1;
        }
        sqlite3_reset(st);
    }
    sqlite3_reset(b->setrev);
    sqlite3_bind_int64(b->setrev, 1, (sqlite3_int64) rev);
    if (sqlite3_step(b->setrev) != SQLITE_DONE) {
        sql_err(b->db, err, "write revision");
        sqlite3_reset(b->setrev);
        sql_exec(b->db, "ROLLBACK", NULL);
        return -1;
    }
    sqlite3_reset(b->setrev);
    return sql_exec(b->db, "COMMIT", err);
}

const store_backend_ops store_backend_sqlite = {
    .scheme = "sqlite",
    .open = sb_open,
    .load = sb_load,
    .commit = sb_commit,
    .close = sb_close,
};
