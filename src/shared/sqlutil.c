#include "sqlutil.h"

#include <stdio.h>
#include <sys/stat.h>

int sql_err(sqlite3 *db, sk_err *err, const char *what)
{
    return sk_err_set(err, SK_E_SYSTEM, "%s: %s", what, db ? sqlite3_errmsg(db) : "no database");
}

int sql_exec(sqlite3 *db, const char *sql, sk_err *err)
{
    char *msg = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        int r = sk_err_set(err, SK_E_SYSTEM, "sqlite '%.40s': %s", sql, msg ? msg : "?");
        sqlite3_free(msg);
        return r;
    }
    return 0;
}

static int user_version(sqlite3 *db, int *ret, sk_err *err)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, NULL) != SQLITE_OK)
        return sql_err(db, err, "read schema version");
    int r = sqlite3_step(st);
    *ret = r == SQLITE_ROW ? sqlite3_column_int(st, 0) : 0;
    sqlite3_finalize(st);
    return 0;
}

static int migrate(sqlite3 *db, const char *what, const char *const *migrations, int n, sk_err *err)
{
    int v = 0;
    if (user_version(db, &v, err) < 0)
        return -1;
    if (v > n)
        return sk_err_set(err, SK_E_INVALID,
                          "%s was written by a newer skiff (schema %d; this build understands up "
                          "to %d); refusing to open it",
                          what, v, n);
    for (; v < n; v++) {
        if (sql_exec(db, "BEGIN IMMEDIATE", err) < 0)
            return -1;
        char pragma[64];
        snprintf(pragma, sizeof(pragma), "PRAGMA user_version = %d", v + 1);
        if (sql_exec(db, migrations[v], err) < 0 || sql_exec(db, pragma, err) < 0) {
            sql_exec(db, "ROLLBACK", NULL);
            return sk_err_wrap(err, "migrate %s schema %d → %d", what, v, v + 1);
        }
        if (sql_exec(db, "COMMIT", err) < 0)
            return -1;
    }
    return 0;
}

int sql_open_durable(const char *path, const char *what, const char *const *migrations, int n,
                     sqlite3 **ret, sk_err *err)
{
    sqlite3 *db = NULL;
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX;
    mode_t old = umask(077);
    int r = sqlite3_open_v2(path, &db, flags, NULL);
    umask(old);
    if (r != SQLITE_OK) {
        sql_err(db, err, "open");
        sqlite3_close(db);
        return sk_err_wrap(err, "open %s '%s'", what, path);
    }
    chmod(path, 0600); /* files from before umask was set */
    sqlite3_busy_timeout(db, 5000);
    if (sql_exec(db, "PRAGMA journal_mode=WAL", err) < 0 ||
        sql_exec(db, "PRAGMA synchronous=FULL", err) < 0 ||
        sql_exec(db, "PRAGMA foreign_keys=OFF", err) < 0 ||
        migrate(db, what, migrations, n, err) < 0) {
        sqlite3_close(db);
        return sk_err_wrap(err, "open %s '%s'", what, path);
    }
    *ret = db;
    return 0;
}
