/* The awslogs driver: tails each container's monitor log and ships it to the
 * CloudWatch Logs API with PutLogEvents. The monitor never waits for us (it
 * writes to a rotating file), so a slow or absent sink cannot block a
 * container; what rotation overwrites before we read it is counted as
 * dropped. At most one batch per container is in flight and batches are
 * capped (1 MiB / 10,000 events), so agent memory stays bounded. Delivery is
 * at-least-once: the committed cursor advances only after a batch was
 * accepted. */
#include <string.h>

#include "agent-internal.h"
#include "basic/alloc.h"
#include "basic/fileutil.h"
#include "basic/log.h"
#include "basic/strutil.h"
#include "shared/jsonutil.h"

#define LOGS_TARGET(op)  "Logs_20140328." op
#define BATCH_MAX_EVENTS 10000
#define BATCH_MAX_BYTES  (1000 * 1000)
#define EVENT_OVERHEAD   26 /* bytes PutLogEvents counts per event */
#define EVENT_MAX_BYTES  (256 * 1024 - EVENT_OVERHEAD)
#define CALL_TIMEOUT     (30 * USEC_PER_SEC)

typedef struct batch_ctx {
    json_t *events;
    size_t bytes;
} batch_ctx;

static void add_record(void *userdata, const rt_log_record *rec)
{
    batch_ctx *b = userdata;
    size_t n = rec->len;
    /* One event per line, without the line terminator (as Docker's awslogs driver). */
    while (n && (rec->line[n - 1] == '\n' || rec->line[n - 1] == '\r'))
        n--;
    if (n > EVENT_MAX_BYTES)
        n = EVENT_MAX_BYTES;
    json_t *msg = json_stringn_nocheck(rec->line, n);
    json_array_append_new(b->events, json_pack("{s:I, s:o}", "timestamp",
                                               (json_int_t) (rec->time * 1000.0), "message", msg));
    b->bytes += n + EVENT_OVERHEAD;
}

static void put_done(void *userdata, long status, json_t *resp, const char *type, const char *msg)
{
    agent_container *c = userdata;
    c->log_busy = false;
    if (status == 200) {
        c->log_committed = c->log_read;
        json_decref(c->log_batch);
        c->log_batch = NULL;
        return;
    }
    if (type && streq(type, "ResourceNotFoundException")) {
        /* Group or stream went away: recreate before retrying. */
        c->log_ready = false;
        return;
    }
    if (type &&
        (streq(type, "InvalidParameterException") || streq(type, "SerializationException"))) {
        log_warn("container %s: log batch rejected (%s: %s), dropping %zu events", c->name, type,
                 msg ? msg : "", json_array_size(c->log_batch));
        c->log_dropped += json_array_size(c->log_batch);
        c->log_committed = c->log_read;
        json_decref(c->log_batch);
        c->log_batch = NULL;
    }
}

static void send_batch(agent_container *c)
{
    agent *a = c->task->agent;
    c->log_busy = true;
    json_t *body = json_pack("{s:s, s:s, s:O}", "logGroupName", c->log_group, "logStreamName",
                             c->log_stream, "logEvents", c->log_batch);
    agent_api_call(a->api, "logs", LOGS_TARGET("PutLogEvents"), body, CALL_TIMEOUT, put_done, c);
}

static void stream_done(void *userdata, long status, json_t *resp, const char *type,
                        const char *msg)
{
    agent_container *c = userdata;
    c->log_busy = false;
    if (status == 200 || (type && streq(type, "ResourceAlreadyExistsException")))
        c->log_ready = true;
    else
        log_warn("container %s: create log stream %s/%s: %s: %s", c->name, c->log_group,
                 c->log_stream, type ? type : "error", msg ? msg : "");
}

static void group_done(void *userdata, long status, json_t *resp, const char *type, const char *msg)
{
    agent_container *c = userdata;
    agent *a = c->task->agent;
    if (!(status == 200 || (type && streq(type, "ResourceAlreadyExistsException")))) {
        c->log_busy = false;
        log_warn("container %s: create log group %s: %s: %s", c->name, c->log_group,
                 type ? type : "error", msg ? msg : "");
        return;
    }
    agent_api_call(
            a->api, "logs", LOGS_TARGET("CreateLogStream"),
            json_pack("{s:s, s:s}", "logGroupName", c->log_group, "logStreamName", c->log_stream),
            CALL_TIMEOUT, stream_done, c);
}

static void ensure_stream(agent_container *c)
{
    agent *a = c->task->agent;
    c->log_busy = true;
    if (c->log_create_group)
        agent_api_call(a->api, "logs", LOGS_TARGET("CreateLogGroup"),
                       json_pack("{s:s}", "logGroupName", c->log_group), CALL_TIMEOUT, group_done,
                       c);
    else
        group_done(c, 200, NULL, NULL, NULL);
}

bool agent_logs_pending(const agent_container *c)
{
    /* Without a log stream (say, its group is missing and may not be
     * created) there is nothing to wait for. */
    return streq_ptr(c->log_driver, "awslogs") && c->ever_started && c->log_ready &&
           !c->log_drained;
}

static void tick_container(agent_container *c)
{
    if (!streq_ptr(c->log_driver, "awslogs") || !c->ever_started || c->log_busy || c->log_drained)
        return;
    if (!c->log_ready) {
        ensure_stream(c);
        return;
    }
    if (c->log_batch) {
        send_batch(c);
        return;
    }
    _cleanup_free_ char *dir = path_join(c->dir, "monitor");
    batch_ctx b = { .events = json_array() };
    uint64_t dropped_before = c->log_read.dropped;
    sk_err err = { 0 };
    for (;;) {
        size_t count = json_array_size(b.events);
        if (count >= BATCH_MAX_EVENTS ||
            b.bytes + RT_LOG_READ_LINE_MAX + EVENT_OVERHEAD > BATCH_MAX_BYTES)
            break;
        /* The budget keeps the batch under PutLogEvents' size limit; what
         * does not fit stays unread for the next batch. */
        int n = rt_log_read_budget(dir, &c->log_read,
                                   (unsigned) MIN(BATCH_MAX_EVENTS - count, (size_t) 500),
                                   BATCH_MAX_BYTES - b.bytes, EVENT_OVERHEAD, add_record, &b, &err);
        if (n <= 0)
            break;
    }
    if (err.code)
        log_debug("container %s: read log: %s", c->name, sk_err_msg(&err));
    sk_err_done(&err);
    if (c->log_read.dropped > dropped_before) {
        uint64_t d = c->log_read.dropped - dropped_before;
        c->log_dropped += d;
        log_warn(
                "container %s: %llu log line(s) dropped (the log rotated before they were shipped; %llu in total)",
                c->name, (unsigned long long) d, (unsigned long long) c->log_dropped);
    }
    if (json_array_size(b.events) == 0) {
        json_decref(b.events);
        c->log_committed = c->log_read;
        /* The monitor has written its last record once the container stopped. */
        if (c->state == CS_STOPPED)
            c->log_drained = true;
        return;
    }
    c->log_batch = b.events;
    send_batch(c);
}

void agent_logs_tick(agent *a)
{
    for (sk_omap_node *n = sk_omap_seek(a->tasks, NULL); n; n = sk_omap_next(n)) {
        agent_task *t = sk_omap_node_value(n);
        for (size_t i = 0; i < t->ncontainers; i++)
            tick_container(t->containers[i]);
    }
}
