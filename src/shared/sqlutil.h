/* The SQLite conventions shared by every skiff database: durable settings,
 * versioned schemas, errors as sk_err. */
#pragma once

#include <sqlite3.h>

#include "basic/err.h"

/* Sets err from the connection's last error: "<what>: <sqlite message>". */
int sql_err(sqlite3 *db, sk_err *err, const char *what);

/* Runs SQL that returns no rows. */
int sql_exec(sqlite3 *db, const char *sql, sk_err *err);

/* Opens (creating) the database at path with mode 0600, WAL journal,
 * synchronous=FULL (a committed transaction survives power loss) and a 5 s
 * busy timeout, then brings its schema to version n: migrations[i] takes it
 * from version i to i+1, each step in its own transaction, recorded in
 * PRAGMA user_version. A database from a newer schema is refused; `what`
 * names it in errors. On failure nothing is left open. */
int sql_open_durable(const char *path, const char *what, const char *const *migrations, int n,
                     sqlite3 **ret, sk_err *err);
