/* CloudWatch Logs (Logs_20140328, AWS JSON 1.1) on skiff's own listener: the
 * sink of the awslogs driver and what `aws logs get-log-events` / `aws logs
 * tail` read.
 *
 * Log groups, streams and events live in their own SQLite database
 * (DIR/logs.db, WAL, synchronous=FULL) rather than in the in-memory state
 * store, since event volume is unbounded. Writes are group-committed once per
 * event-loop iteration like the state store: logs_dirty() tells the HTTP layer
 * to hold responses until then, so an acknowledged PutLogEvents survives
 * kill -9. Retention (PutRetentionPolicy) is enforced by a periodic sweep.
 *
 * Implemented operations: CreateLogGroup, DeleteLogGroup, DescribeLogGroups,
 * CreateLogStream, DeleteLogStream, DescribeLogStreams, PutLogEvents,
 * GetLogEvents, FilterLogEvents, PutRetentionPolicy, DeleteRetentionPolicy,
 * TagLogGroup, UntagLogGroup, ListTagsLogGroup, TagResource, UntagResource,
 * ListTagsForResource. Others answer NotImplementedException. */
#pragma once

#include <stdbool.h>

#include "basic/err.h"
#include "shared/aws.h"
#include "shared/event.h"

typedef struct logs_service logs_service;

/* Opens (creating or migrating) DIR/logs.db and registers, on loop, the
 * prepare hook that commits each iteration's writes and the retention sweep
 * timer (every SKIFF_LOGS_SWEEP_SEC seconds, 1..86400, default 60).
 *
 * Call it BEFORE http_server_new(): prepare hooks run in registration order,
 * and the commit must run before the HTTP server's hook releases held
 * responses. The HTTP server's hold predicate must include logs_dirty().
 *
 * Fails with SK_E_INVALID when logs.db was written by a newer schema, and
 * SK_E_SYSTEM when it cannot be opened. When a commit fails later the service
 * logs it, calls ev_loop_quit(loop, 1) and stays dirty for good, so nothing
 * written since the last durable commit is ever acknowledged. */
int logs_new(ev_loop *loop, const char *dir, logs_service **ret, sk_err *err);
/* Frees the service; uncommitted writes are rolled back (call logs_flush first). */
void logs_free(logs_service *l);
/* The Logs_20140328 service for aws_router_add_service(); borrowed from l. */
const aws_service_def *logs_service_def(logs_service *l);
/* Writes accepted but not yet durable (or a commit failed): responses must be held. */
bool logs_dirty(const logs_service *l);
/* Commits pending writes now (at shutdown). Fails after an earlier failed commit. */
int logs_flush(logs_service *l, sk_err *err);
