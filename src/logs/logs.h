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

int logs_new(ev_loop *loop, const char *dir, logs_service **ret, sk_err *err);
void logs_free(logs_service *l);
const aws_service_def *logs_service_def(logs_service *l);
/* Writes accepted but not yet durable. */
bool logs_dirty(const logs_service *l);
int logs_flush(logs_service *l, sk_err *err);
