/* Internals of the CloudWatch Logs service, shared by its sources and unit
 * tests: the SQLite storage layer (logs_db_*), pagination tokens
 * (logs_token_*), the filter-pattern matcher (logs_filter_*) and test seams on
 * the service (injected clock, sweep trigger).
 *
 * Everything here runs on the server's event loop thread. */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "basic/err.h"
#include "basic/vec.h"
#include "logs.h"

/* --- limits (AWS's where AWS has one) --- */
#define LOGS_EVENT_OVERHEAD     26           /* bytes AWS adds per event */
#define LOGS_MAX_EVENT_BYTES    (256 * 1024) /* message + overhead */
#define LOGS_MAX_BATCH_BYTES    1048576      /* sum(message + overhead) */
#define LOGS_MAX_BATCH_EVENTS   10000
#define LOGS_MAX_RESPONSE_BYTES 1048576 /* events in one Get/Filter page */
#define LOGS_MAX_PAGE_EVENTS    10000   /* Get/FilterLogEvents limit */
#define LOGS_MAX_DESCRIBE       50      /* DescribeLogGroups/Streams limit */
#define LOGS_MAX_NAME           512     /* group and stream names */
#define LOGS_MAX_TAGS           50
#define LOGS_MAX_PATTERN        1024              /* filterPattern bytes */
#define LOGS_MAX_TOKEN          4096              /* nextToken bytes */
#define LOGS_MAX_GROUPS         100000            /* per account and region */
#define LOGS_MAX_STREAMS        1000000           /* per group */
#define LOGS_FILTER_SCAN_BUDGET 100000            /* rows examined per FilterLogEvents */
#define LOGS_MAX_PAST_MS        (14LL * 86400000) /* PutLogEvents: not older than 14 days */
#define LOGS_MAX_FUTURE_MS      (2LL * 3600000)   /* ... nor more than 2 h ahead */
#define LOGS_MAX_SPAN_MS        (24LL * 3600000)  /* a batch spans at most 24 h */
#define LOGS_SWEEP_BATCH        20000             /* rows deleted per group per sweep pass */
#define LOGS_TOKEN_KEY_LEN      32

/* --- storage (logs-db.c) --- */

typedef struct logs_db logs_db;

typedef struct logs_group {
    int64_t id;
    char *name;
    int64_t creation_time; /* epoch ms */
    int retention_days;    /* 0: never expire */
    char *kms_key_id;      /* NULL when unset */
    char *log_class;       /* "STANDARD", ... */
    json_t *tags;          /* object name → value; never NULL once loaded */
    int64_t stored_bytes;
    int64_t stream_count;
} logs_group;

typedef struct logs_stream {
    int64_t id;
    int64_t group_id;
    char *name;
    int64_t creation_time;
    int64_t first_event;    /* -1 when the stream never had events */
    int64_t last_event;     /* -1 likewise */
    int64_t last_ingestion; /* -1 likewise */
    int64_t seq;            /* PutLogEvents calls so far */
} logs_stream;

typedef struct logs_event {
    int64_t id; /* global, increasing with ingestion; also the eventId */
    int64_t stream_id;
    int64_t ts;
    int64_t ingestion;
    const char *message; /* borrowed for the duration of a scan callback */
    size_t len;
    const char *stream_name; /* only set by group scans */
} logs_event;

/* A point in the (timestamp, id) order of events. */
typedef struct logs_pos {
    int64_t ts;
    int64_t id;
} logs_pos;

#define LOGS_POS_MIN ((logs_pos){ INT64_MIN, INT64_MIN })
#define LOGS_POS_MAX ((logs_pos){ INT64_MAX, INT64_MAX })

typedef struct logs_scan {
    int64_t stream_id;  /* scan one stream, or */
    int64_t group_id;   /* (stream_id 0) every stream of a group, stream_name set */
    int64_t start_time; /* inclusive; INT64_MIN for none */
    int64_t end_time;   /* exclusive; INT64_MAX for none */
    logs_pos from;      /* forward: events strictly after; backward: strictly before */
    bool backward;      /* newest first */
} logs_scan;

/* Returns < 0 to abort the scan with that value, > 0 to stop, 0 to continue. */
typedef int (*logs_event_fn)(void *userdata, const logs_event *ev);

typedef struct logs_new_event {
    int64_t ts;
    const char *message;
    size_t len;
} logs_new_event;

/* Opens (creating and migrating) the database at path. Fails with SK_E_INVALID
 * when it was written by a newer schema. */
int logs_db_open(const char *path, logs_db **ret, sk_err *err);
void logs_db_close(logs_db *db);
/* The key that authenticates pagination tokens (persistent, random). */
const uint8_t *logs_db_token_key(const logs_db *db);

/* Group commit. Every mutation runs between logs_db_begin() and
 * logs_db_end(): begin opens the iteration's transaction if none is open and a
 * savepoint for the operation; end releases it (ok) or rolls the operation
 * back alone. logs_db_commit() makes everything durable. An error from end or
 * commit means earlier acknowledged-pending work may be lost: the caller must
 * treat it as fatal. */
int logs_db_begin(logs_db *db, sk_err *err);
int logs_db_end(logs_db *db, bool ok, sk_err *err);
int logs_db_commit(logs_db *db, sk_err *err);
bool logs_db_in_txn(const logs_db *db);
/* Test seam: the raw connection, for fault injection. */
struct sqlite3 *logs_db_handle(logs_db *db);

void logs_group_done(logs_group *g);
void logs_group_free(logs_group *g);
void logs_stream_done(logs_stream *s);
void logs_stream_free(logs_stream *s);

/* Creates g (name, creation_time, kms_key_id, log_class, tags; retention
 * ignored) and sets g->id. SK_E_EXISTS / SK_E_LIMIT. */
int logs_db_group_create(logs_db *db, const char *account, const char *region, logs_group *g,
                         sk_err *err);
/* SK_E_NOT_FOUND when absent. */
int logs_db_group_get(logs_db *db, const char *account, const char *region, const char *name,
                      logs_group *ret, sk_err *err);
int logs_db_group_delete(logs_db *db, int64_t group_id, sk_err *err);
int logs_db_group_set_retention(logs_db *db, int64_t group_id, int days, sk_err *err);
int logs_db_group_set_tags(logs_db *db, int64_t group_id, const json_t *tags, sk_err *err);

typedef struct logs_group_query {
    const char *after;   /* names strictly greater, or NULL */
    const char *prefix;  /* or NULL */
    const char *pattern; /* case-sensitive substring, or NULL */
    const char *log_class;
    size_t limit;
} logs_group_query;
/* Appends matching groups (logs_group*, owned by the vector) in name order. */
int logs_db_group_list(logs_db *db, const char *account, const char *region,
                       const logs_group_query *q, sk_vec *ret, sk_err *err);

/* SK_E_EXISTS / SK_E_LIMIT. */
int logs_db_stream_create(logs_db *db, int64_t group_id, const char *name, int64_t now_ms,
                          sk_err *err);
int logs_db_stream_get(logs_db *db, int64_t group_id, const char *name, logs_stream *ret,
                       sk_err *err);
int logs_db_stream_delete(logs_db *db, const logs_stream *s, sk_err *err);

typedef struct logs_stream_query {
    const char *prefix; /* or NULL */
    bool by_last_event; /* order by (lastEventTimestamp, name), else name */
    bool descending;
    bool has_after;     /* the cursor below is set */
    int64_t after_time; /* by_last_event: -1 for streams without events */
    const char *after_name;
    size_t limit;
} logs_stream_query;
int logs_db_stream_list(logs_db *db, int64_t group_id, const logs_stream_query *q, sk_vec *ret,
                        sk_err *err);

/* Appends events (already validated and in order) to a stream, updating the
 * stream's and group's statistics; bumps the stream's sequence number, which is
 * returned in ret_seq. */
int logs_db_put_events(logs_db *db, const logs_stream *s, const logs_new_event *evs, size_t n,
                       int64_t now_ms, int64_t *ret_seq, sk_err *err);
int logs_db_scan(logs_db *db, const logs_scan *scan, logs_event_fn fn, void *userdata, sk_err *err);
/* Deletes events older than each group's retention at now_ms, at most
 * LOGS_SWEEP_BATCH per group; *ret_more tells whether some remain. */
int logs_db_sweep(logs_db *db, int64_t now_ms, int64_t *ret_deleted, bool *ret_more, sk_err *err);

/* --- tokens (logs-token.c) --- */

/* prefix + base64(payload) + "." + 32 hex digits of HMAC-SHA256(key, prefix
 * NUL scope NUL payload). The scope (a group or stream id, the listing's
 * order...) is not in the token, so a token replayed against another scope
 * fails verification. */
char *logs_token_encode(const uint8_t key[LOGS_TOKEN_KEY_LEN], const char *prefix,
                        const char *scope, const char *payload);
/* Returns the payload (malloc'd), or fails with SK_E_INVALID. */
int logs_token_decode(const uint8_t key[LOGS_TOKEN_KEY_LEN], const char *token, const char *prefix,
                      const char *scope, char **ret_payload, sk_err *err);
/* Positions as token payloads: "TS:ID". */
char *logs_pos_format(logs_pos p);
int logs_pos_parse(const char *s, logs_pos *ret);

/* --- filter patterns (logs-filter.c) ---
 *
 * Supported syntax (a subset of CloudWatch Logs filter patterns):
 *   ""                      empty or blank: every event matches
 *   ERROR Exception         every term must appear (case-sensitive substring)
 *   "connection reset"      a quoted term is matched as one phrase (\" and \\
 *                           escape inside quotes)
 *   ?ERROR ?WARN            at least one ?-term must appear
 *   ERROR -DEBUG            a -term must not appear
 *   (terms of all three kinds may be combined: required AND any-of-optional
 *    AND none-of-excluded)
 *   { $.level = "error" }   JSON: the message must be a JSON value and the
 *                           selector ($.a.b, $.list[0], $["key"] not supported)
 *                           must resolve. Operators: = and != on strings
 *                           (quoted, or a bare word; '*' is a wildcard) and
 *                           numbers; < <= > >= on numbers; IS TRUE, IS FALSE,
 *                           IS NULL, NOT EXISTS; && and || with parentheses.
 * Not supported (rejected with InvalidParameterException): space-delimited
 * patterns "[a, b, ...]", regular expressions "%...%", JSON array wildcards
 * "[*]". */

typedef struct logs_filter logs_filter;

int logs_filter_parse(const char *pattern, logs_filter **ret, sk_err *err);
bool logs_filter_match(const logs_filter *f, const char *msg, size_t len);
void logs_filter_free(logs_filter *f);

/* --- service test seams (logs.c) --- */

typedef int64_t (*logs_clock_fn)(void *userdata); /* epoch ms */

void logs_set_clock(logs_service *l, logs_clock_fn fn, void *userdata);
logs_db *logs_get_db(logs_service *l);
/* Runs one retention sweep now (as the timer would). */
int logs_sweep_run(logs_service *l, sk_err *err);
