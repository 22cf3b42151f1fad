/* CloudWatch Logs handlers over logs_db, the group-commit hook and the
 * retention sweep. */
#include "logs.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "basic/alloc.h"
#include "basic/fileutil.h"
#include "basic/hmap.h"
#include "basic/log.h"
#include "basic/strutil.h"
#include "basic/timeutil.h"
#include "logs-internal.h"
#include "shared/jsonutil.h"

#define DEFAULT_SWEEP_SEC 60
#define SWEEP_AGAIN_USEC  (50 * USEC_PER_MSEC)

struct logs_service {
    ev_loop *loop;
    logs_db *db;
    aws_service_def def;
    ev_timer *sweep_timer;
    usec_t sweep_interval;
    logs_clock_fn clock;
    void *clock_ud;
    bool failed; /* a commit failed: nothing more is acknowledged */
};

#define LOGS_HANDLER(name) static void logs_##name(aws_call *call)

LOGS_HANDLER(create_log_group);
LOGS_HANDLER(create_log_stream);
LOGS_HANDLER(delete_log_group);
LOGS_HANDLER(delete_log_stream);
LOGS_HANDLER(delete_retention_policy);
LOGS_HANDLER(describe_log_groups);
LOGS_HANDLER(describe_log_streams);
LOGS_HANDLER(filter_log_events);
LOGS_HANDLER(get_log_events);
LOGS_HANDLER(list_tags_for_resource);
LOGS_HANDLER(list_tags_log_group);
LOGS_HANDLER(put_log_events);
LOGS_HANDLER(put_retention_policy);
LOGS_HANDLER(tag_log_group);
LOGS_HANDLER(tag_resource);
LOGS_HANDLER(untag_log_group);
LOGS_HANDLER(untag_resource);

static const aws_op_binding logs_ops[] = {
    /* sorted by name */
    { "CreateLogGroup", logs_create_log_group },
    { "CreateLogStream", logs_create_log_stream },
    { "DeleteLogGroup", logs_delete_log_group },
    { "DeleteLogStream", logs_delete_log_stream },
    { "DeleteRetentionPolicy", logs_delete_retention_policy },
    { "DescribeLogGroups", logs_describe_log_groups },
    { "DescribeLogStreams", logs_describe_log_streams },
    { "FilterLogEvents", logs_filter_log_events },
    { "GetLogEvents", logs_get_log_events },
    { "ListTagsForResource", logs_list_tags_for_resource },
    { "ListTagsLogGroup", logs_list_tags_log_group },
    { "PutLogEvents", logs_put_log_events },
    { "PutRetentionPolicy", logs_put_retention_policy },
    { "TagLogGroup", logs_tag_log_group },
    { "TagResource", logs_tag_resource },
    { "UntagLogGroup", logs_untag_log_group },
    { "UntagResource", logs_untag_resource },
};

static const int retention_days[] = {
    1,   3,   5,   7,   14,   30,   60,   90,   120,  150,  180,
    365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653
};

/* --- helpers --- */

static int64_t now_ms(const logs_service *l)
{
    if (l->clock)
        return l->clock(l->clock_ud);
    return (int64_t) (now_realtime() / USEC_PER_MSEC);
}

static logs_service *svc_of(aws_call *call)
{
    return aws_call_userdata(call);
}

static void fail(aws_call *call, sk_err *err)
{
    aws_reply_err(call, err);
    sk_err_done(err);
}

static int invalid(sk_err *err, const char *fmt, ...) _printf_(2, 3);
static int invalid(sk_err *err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    sk_err_vset(err, SK_E_INVALID, "InvalidParameterException", fmt, ap);
    va_end(ap);
    return -1;
}

static void fail_invalid(aws_call *call, const char *fmt, ...) _printf_(2, 3);
static void fail_invalid(aws_call *call, const char *fmt, ...)
{
    sk_err err = { 0 };
    va_list ap;
    va_start(ap, fmt);
    sk_err_vset(&err, SK_E_INVALID, "InvalidParameterException", fmt, ap);
    va_end(ap);
    fail(call, &err);
}

static int group_not_found(sk_err *err)
{
    return sk_err_typed(err, SK_E_NOT_FOUND, "ResourceNotFoundException",
                        "The specified log group does not exist.");
}

static int unavailable(sk_err *err)
{
    return sk_err_typed(err, SK_E_UNAVAILABLE, "ServiceUnavailableException",
                        "The service cannot complete the request.");
}

static void fatal(logs_service *l, const sk_err *err)
{
    log_error("logs: %s; stopping so that no undurable write is acknowledged", sk_err_msg(err));
    l->failed = true;
    ev_loop_quit(l->loop, 1);
}

static int write_begin(logs_service *l, sk_err *err)
{
    if (l->failed)
        return unavailable(err);
    if (logs_db_begin(l->db, err) < 0) {
        fatal(l, err);
        sk_err_done(err);
        return unavailable(err);
    }
    return 0;
}

/* Ends the operation's savepoint; returns r, or an error when ending failed. */
static int write_end(logs_service *l, int r, sk_err *err)
{
    _cleanup_err_ sk_err e = { 0 };
    if (logs_db_end(l->db, r >= 0, &e) < 0) {
        fatal(l, &e);
        if (r >= 0)
            return unavailable(err);
    }
    return r;
}

/* The byte length of at most max bytes of s that does not end inside a UTF-8
 * sequence: user input echoed in an error message must stay valid UTF-8, or
 * the JSON encoder refuses the message. */
static int clip(const char *s, size_t max)
{
    size_t n = strnlen(s, max);
    if (n == max && s[n])
        while (n > 0 && ((unsigned char) s[n] & 0xC0) == 0x80)
            n--;
    return (int) n;
}

static bool group_name_valid(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > LOGS_MAX_NAME)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '-' || c == '_' || c == '/' || c == '#'))
            return false;
    }
    return true;
}

static int check_group_name(const char *field, const char *s, sk_err *err)
{
    if (group_name_valid(s))
        return 0;
    return invalid(
            err,
            "1 validation error detected: Value '%.*s' at '%s' failed to satisfy constraint: Member must satisfy regular expression pattern: [\\.\\-_/#A-Za-z0-9]+",
            clip(s ? s : "", 64), s ? s : "", field);
}

static int check_stream_name(const char *s, sk_err *err)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > LOGS_MAX_NAME || strpbrk(s, ":*"))
        return invalid(
                err,
                "1 validation error detected: Value '%.*s' at 'logStreamName' failed to satisfy constraint: Member must satisfy regular expression pattern: [^:*]*",
                clip(s ? s : "", 64), s ? s : "");
    return 0;
}

static char *group_arn(const aws_ctx *ctx, const char *name)
{
    return xasprintf("arn:aws:logs:%s:%s:log-group:%s", ctx->region, ctx->account, name);
}

/* Accepts arn:PARTITION:logs:REGION:ACCOUNT:log-group:NAME[:*]; returns the
 * name (malloc'd) or NULL when s is not such an ARN. *ret_foreign is set when
 * the ARN names another account or region. */
static char *group_name_from_arn(const aws_ctx *ctx, const char *s, bool *ret_foreign)
{
    const char *p = startswith(s, "arn:");
    if (!p)
        return NULL;
    const char *f[5];
    size_t len[5];
    for (int i = 0; i < 5; i++) {
        const char *colon = strchr(p, ':');
        if (!colon)
            return NULL;
        f[i] = p;
        len[i] = (size_t) (colon - p);
        p = colon + 1;
    }
    /* f: partition, service, region, account, resource type */
    if (len[1] != 4 || strncmp(f[1], "logs", 4) != 0 || len[4] != 9 ||
        strncmp(f[4], "log-group", 9) != 0)
        return NULL;
    const char *colon = strchr(p, ':');
    size_t nl = colon ? (size_t) (colon - p) : strlen(p);
    if (colon && !streq(colon, ":*"))
        return NULL;
    *ret_foreign = len[2] != strlen(ctx->region) || strncmp(f[2], ctx->region, len[2]) != 0 ||
                   len[3] != strlen(ctx->account) || strncmp(f[3], ctx->account, len[3]) != 0;
    return xstrndup(p, nl);
}

/* Loads the group named by logGroupName, or (when allow_identifier) by
 * logGroupIdentifier (a name or an ARN). */
static int resolve_group(logs_service *l, aws_call *call, bool allow_identifier, logs_group *ret,
                         sk_err *err)
{
    const aws_ctx *ctx = aws_call_ctx(call);
    json_t *in = aws_call_input(call);
    const char *name = js_str(in, "logGroupName");
    const char *ident = allow_identifier ? js_str(in, "logGroupIdentifier") : NULL;
    _cleanup_free_ char *from_arn = NULL;
    if (name && ident)
        return invalid(err, "LogGroup name and LogGroup ARN are mutually exclusive parameters.");
    if (ident) {
        bool foreign = false;
        if (startswith(ident, "arn:")) {
            from_arn = group_name_from_arn(ctx, ident, &foreign);
            if (!from_arn)
                return invalid(err, "Invalid logGroupIdentifier: '%.*s'.", clip(ident, 128), ident);
            if (foreign)
                return group_not_found(err);
            name = from_arn;
        } else
            name = ident;
    }
    if (!name)
        return invalid(err, "Either logGroupName or logGroupIdentifier must be specified.");
    if (check_group_name(ident ? "logGroupIdentifier" : "logGroupName", name, err) < 0)
        return -1;
    return logs_db_group_get(l->db, ctx->account, ctx->region, name, ret, err);
}

static json_t *group_view(const aws_ctx *ctx, const logs_group *g)
{
    _cleanup_free_ char *arn = group_arn(ctx, g->name);
    _cleanup_free_ char *arn_star = xasprintf("%s:*", arn);
    json_t *o = json_object();
    js_set_str(o, "logGroupName", g->name);
    js_set_int(o, "creationTime", g->creation_time);
    if (g->retention_days > 0)
        js_set_int(o, "retentionInDays", g->retention_days);
    js_set_int(o, "metricFilterCount", 0);
    js_set_str(o, "arn", arn_star);
    js_set_int(o, "storedBytes", g->stored_bytes);
    if (g->kms_key_id)
        js_set_str(o, "kmsKeyId", g->kms_key_id);
    js_set_str(o, "logGroupClass", g->log_class ? g->log_class : "STANDARD");
    js_set_str(o, "logGroupArn", arn);
    return o;
}

static char *seq_token(int64_t seq)
{
    return xasprintf("%" PRId64, seq);
}

static json_t *stream_view(const aws_ctx *ctx, const char *group, const logs_stream *s)
{
    json_t *o = json_object();
    js_set_str(o, "logStreamName", s->name);
    js_set_int(o, "creationTime", s->creation_time);
    if (s->first_event >= 0)
        js_set_int(o, "firstEventTimestamp", s->first_event);
    if (s->last_event >= 0)
        js_set_int(o, "lastEventTimestamp", s->last_event);
    if (s->last_ingestion >= 0)
        js_set_int(o, "lastIngestionTime", s->last_ingestion);
    if (s->seq > 0) {
        _cleanup_free_ char *tok = seq_token(s->seq + 1);
        js_set_str(o, "uploadSequenceToken", tok);
    }
    _cleanup_free_ char *arn = xasprintf("arn:aws:logs:%s:%s:log-group:%s:log-stream:%s",
                                         ctx->region, ctx->account, group, s->name);
    js_set_str(o, "arn", arn);
    /* Deprecated by AWS for streams and always reported as zero. */
    js_set_int(o, "storedBytes", 0);
    return o;
}

/* Tag keys and values: letters (any non-ASCII byte is taken as part of a
 * letter), digits, spaces and _.:/=+-@. */
static bool tag_chars_valid(const char *s)
{
    for (; *s; s++) {
        unsigned char c = (unsigned char) *s;
        if (c >= 0x80 || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
            (c >= '0' && c <= '9') || strchr(" _.:/=+-@", c))
            continue;
        return false;
    }
    return true;
}

static int check_tags(const json_t *tags, sk_err *err)
{
    if (json_object_size(tags) > LOGS_MAX_TAGS)
        return sk_err_typed(err, SK_E_LIMIT, "TooManyTagsException",
                            "A resource can have no more than %d tags.", LOGS_MAX_TAGS);
    const char *k;
    json_t *v;
    json_object_foreach((json_t *) tags, k, v) {
        const char *s = json_string_value(v);
        if (!*k || strlen(k) > 128 || !tag_chars_valid(k))
            return invalid(err, "Invalid tag key: '%.*s'.", clip(k, 128), k);
        if (strncasecmp(k, "aws:", 4) == 0)
            return invalid(err, "Tag keys starting with 'aws:' are reserved.");
        if (!s || strlen(s) > 256 || !tag_chars_valid(s))
            return invalid(err, "Invalid tag value for key '%.*s'.", clip(k, 128), k);
    }
    return 0;
}

/* Merges add into g's tags (or removes the keys of the array del) and stores them. */
static int update_tags(logs_service *l, logs_group *g, const json_t *add, const json_t *del,
                       const char *too_many_type, sk_err *err)
{
    _cleanup_json_ json_t *tags = json_deep_copy(g->tags);
    if (add) {
        if (check_tags(add, err) < 0)
            return -1;
        json_object_update(tags, (json_t *) add);
        if (json_object_size(tags) > LOGS_MAX_TAGS)
            return sk_err_typed(err, SK_E_LIMIT, too_many_type,
                                "A resource can have no more than %d tags.", LOGS_MAX_TAGS);
    }
    size_t i;
    json_t *k;
    json_array_foreach(del, i, k) {
        if (json_is_string(k))
            json_object_del(tags, json_string_value(k));
    }
    if (write_begin(l, err) < 0)
        return -1;
    int r = logs_db_group_set_tags(l->db, g->id, tags, err);
    return write_end(l, r, err);
}

/* Resolves a resourceArn naming a log group. */
static int resolve_arn(logs_service *l, aws_call *call, logs_group *ret, sk_err *err)
{
    const aws_ctx *ctx = aws_call_ctx(call);
    const char *arn = js_str(aws_call_input(call), "resourceArn");
    bool foreign = false;
    _cleanup_free_ char *name = arn ? group_name_from_arn(ctx, arn, &foreign) : NULL;
    if (!name || !group_name_valid(name))
        return invalid(err, "Invalid resourceArn: only log group ARNs are supported: '%.*s'.",
                       clip(arn ? arn : "", 128), arn ? arn : "");
    if (foreign)
        return group_not_found(err);
    return logs_db_group_get(l->db, ctx->account, ctx->region, name, ret, err);
}

/* --- groups --- */

LOGS_HANDLER(create_log_group)
{
    logs_service *l = svc_of(call);
    const aws_ctx *ctx = aws_call_ctx(call);
    json_t *in = aws_call_input(call);
    sk_err err = { 0 };
    const char *name = js_str(in, "logGroupName");
    json_t *tags = js_obj(in, "tags");
    if (check_group_name("logGroupName", name, &err) < 0 || (tags && check_tags(tags, &err) < 0))
        return fail(call, &err);
    logs_group g = {
        .name = (char *) name,
        .creation_time = now_ms(l),
        .kms_key_id = (char *) js_str(in, "kmsKeyId"),
        .log_class = (char *) js_str_or(in, "logGroupClass", "STANDARD"),
        .tags = tags,
    };
    if (write_begin(l, &err) < 0)
        return fail(call, &err);
    int r = logs_db_group_create(l->db, ctx->account, ctx->region, &g, &err);
    if (write_end(l, r, &err) < 0)
        return fail(call, &err);
    aws_reply(call, NULL);
}

LOGS_HANDLER(delete_log_group)
{
    logs_service *l = svc_of(call);
    sk_err err = { 0 };
    logs_group g = { 0 };
    if (resolve_group(l, call, false, &g, &err) < 0)
        return fail(call, &err);
    int r = write_begin(l, &err);
    if (r >= 0)
        r = write_end(l, logs_db_group_delete(l->db, g.id, &err), &err);
    logs_group_done(&g);
    if (r < 0)
        return fail(call, &err);
    aws_reply(call, NULL);
}

static void free_group_void(void *p)
{
    logs_group_free(p);
}

static int cmp_group_name(const void *a, const void *b)
{
    const logs_group *x = *(logs_group *const *) a, *y = *(logs_group *const *) b;
    return strcmp(x->name, y->name);
}

/* DescribeLogGroups with logGroupIdentifiers: exactly those groups, no paging. */
static int describe_identified_groups(logs_service *l, const aws_ctx *ctx, const json_t *ids,
                                      sk_vec *out, sk_err *err)
{
    size_t i;
    json_t *v;
    json_array_foreach(ids, i, v) {
        const char *id = json_string_value(v);
        _cleanup_free_ char *name = NULL;
        if (id && startswith(id, "arn:")) {
            bool foreign = false;
            name = group_name_from_arn(ctx, id, &foreign);
            if (!name)
                return invalid(err, "Invalid logGroupIdentifier: '%.*s'.", clip(id, 128), id);
            if (foreign)
                continue;
        } else
            name = xstrdup(id ? id : "");
        if (!group_name_valid(name))
            continue;
        logs_group *g = xcalloc(1, sizeof(*g));
        _cleanup_err_ sk_err e = { 0 };
        if (logs_db_group_get(l->db, ctx->account, ctx->region, name, g, &e) < 0) {
            logs_group_free(g);
            if (e.code == SK_E_NOT_FOUND)
                continue;
            sk_err_move(err, &e);
            return -1;
        }
        bool dup = false;
        logs_group *o;
        VEC_FOREACH(logs_group *, o, out)
            if (o->id == g->id)
                dup = true;
        if (dup)
            logs_group_free(g);
        else
            sk_vec_push(out, g);
    }
    sk_vec_sort(out, cmp_group_name);
    return 0;
}

LOGS_HANDLER(describe_log_groups)
{
    logs_service *l = svc_of(call);
    const aws_ctx *ctx = aws_call_ctx(call);
    json_t *in = aws_call_input(call);
    sk_err err = { 0 };
    const char *prefix = js_str(in, "logGroupNamePrefix");
    const char *pattern = js_str(in, "logGroupNamePattern");
    json_t *ids = js_arr(in, "logGroupIdentifiers");
    const char *tok = js_str(in, "nextToken");
    int64_t limit = js_int(in, "limit", LOGS_MAX_DESCRIBE);
    if (limit < 1 || limit > LOGS_MAX_DESCRIBE)
        limit = LOGS_MAX_DESCRIBE;
    if ((prefix != NULL) + (pattern != NULL) + (ids != NULL) > 1)
        return fail_invalid(
                call,
                "logGroupNamePrefix, logGroupNamePattern and logGroupIdentifiers are mutually exclusive parameters.");
    if (prefix && check_group_name("logGroupNamePrefix", prefix, &err) < 0)
        return fail(call, &err);
    if (pattern && *pattern && check_group_name("logGroupNamePattern", pattern, &err) < 0)
        return fail(call, &err);
    _cleanup_free_ char *scope = xasprintf("%s/%s", ctx->account, ctx->region);
    _cleanup_free_ char *after = NULL;
    if (tok && logs_token_decode(logs_db_token_key(l->db), tok, "g/", scope, &after, &err) < 0)
        return fail(call, &err);
    sk_vec groups = { 0 };
    int r;
    if (ids)
        r = describe_identified_groups(l, ctx, ids, &groups, &err);
    else {
        logs_group_query q = {
            .after = after,
            .prefix = prefix,
            .pattern = pattern,
            .log_class = js_str(in, "logGroupClass"),
            .limit = (size_t) limit + 1,
        };
        r = logs_db_group_list(l->db, ctx->account, ctx->region, &q, &groups, &err);
    }
    if (r < 0) {
        sk_vec_done(&groups, free_group_void);
        return fail(call, &err);
    }
    json_t *out = json_object();
    json_t *arr = json_array();
    size_t n = ids ? groups.len : MIN(groups.len, (size_t) limit);
    for (size_t i = 0; i < n; i++)
        json_array_append_new(arr, group_view(ctx, groups.items[i]));
    js_set(out, "logGroups", arr);
    if (!ids && groups.len > (size_t) limit) {
        const logs_group *last = groups.items[n - 1];
        _cleanup_free_ char *t =
                logs_token_encode(logs_db_token_key(l->db), "g/", scope, last->name);
        js_set_str(out, "nextToken", t);
    }
    sk_vec_done(&groups, free_group_void);
    aws_reply(call, out);
}

/* --- streams --- */

LOGS_HANDLER(create_log_stream)
{
    logs_service *l = svc_of(call);
    json_t *in = aws_call_input(call);
    sk_err err = { 0 };
    const char *stream = js_str(in, "logStreamName");
    logs_group g = { 0 };
    if (check_stream_name(stream, &err) < 0 || resolve_group(l, call, false, &g, &err) < 0)
        return fail(call, &err);
    int r = write_begin(l, &err);
    if (r >= 0)
        r = write_end(l, logs_db_stream_create(l->db, g.id, stream, now_ms(l), &err), &err);
    logs_group_done(&g);
    if (r < 0)
        return fail(call, &err);
    aws_reply(call, NULL);
}

LOGS_HANDLER(delete_log_stream)
{
    logs_service *l = svc_of(call);
    json_t *in = aws_call_input(call);
    sk_err err = { 0 };
    const char *stream = js_str(in, "logStreamName");
    logs_group g = { 0 };
    logs_stream s = { 0 };
    int r = check_stream_name(stream, &err);
    if (r >= 0)
        r = resolve_group(l, call, false, &g, &err);
    if (r >= 0)
        r = logs_db_stream_get(l->db, g.id, stream, &s, &err);
    if (r >= 0)
        r = write_begin(l, &err);
    if (r >= 0)
        r = write_end(l, logs_db_stream_delete(l->db, &s, &err), &err);
    logs_group_done(&g);
    logs_stream_done(&s);
    if (r < 0)
        return fail(call, &err);
    aws_reply(call, NULL);
}

static void free_stream_void(void *p)
{
    logs_stream_free(p);
}

LOGS_HANDLER(describe_log_streams)
{
    logs_service *l = svc_of(call);
    const aws_ctx *ctx = aws_call_ctx(call);
    json_t *in = aws_call_input(call);
    sk_err err = { 0 };
    const char *prefix = js_str(in, "logStreamNamePrefix");
    const char *order = js_str_or(in, "orderBy", "LogStreamName");
    bool by_time = streq(order, "LastEventTime");
    bool desc = js_bool(in, "descending", false);
    int64_t limit = js_int(in, "limit", LOGS_MAX_DESCRIBE);
    if (limit < 1 || limit > LOGS_MAX_DESCRIBE)
        limit = LOGS_MAX_DESCRIBE;
    if (by_time && prefix)
        return fail_invalid(call, "Cannot order by LastEventTime with a logStreamNamePrefix.");
    logs_group g = { 0 };
    if (resolve_group(l, call, true, &g, &err) < 0)
        return fail(call, &err);
    _cleanup_free_ char *scope = xasprintf("%" PRId64 "/%s/%d", g.id, order, desc);
    _cleanup_free_ char *payload = NULL;
    const char *tok = js_str(in, "nextToken");
    logs_stream_query q = {
        .prefix = prefix,
        .by_last_event = by_time,
        .descending = desc,
        .limit = (size_t) limit + 1,
    };
    if (tok) {
        if (logs_token_decode(logs_db_token_key(l->db), tok, "s/", scope, &payload, &err) < 0) {
            logs_group_done(&g);
            return fail(call, &err);
        }
        q.has_after = true;
        q.after_name = payload;
        if (by_time) {
            char *colon = strchr(payload, ':');
            if (!colon) {
                logs_group_done(&g);
                return fail_invalid(call, "The specified nextToken is invalid.");
            }
            *colon = 0;
            if (parse_i64(payload, &q.after_time) < 0) {
                logs_group_done(&g);
                return fail_invalid(call, "The specified nextToken is invalid.");
            }
            q.after_name = colon + 1;
        }
    }
    sk_vec streams = { 0 };
    if (logs_db_stream_list(l->db, g.id, &q, &streams, &err) < 0) {
        sk_vec_done(&streams, free_stream_void);
        logs_group_done(&g);
        return fail(call, &err);
    }
    json_t *out = json_object();
    json_t *arr = json_array();
    size_t n = MIN(streams.len, (size_t) limit);
    for (size_t i = 0; i < n; i++)
        json_array_append_new(arr, stream_view(ctx, g.name, streams.items[i]));
    js_set(out, "logStreams", arr);
    if (streams.len > (size_t) limit) {
        const logs_stream *last = streams.items[n - 1];
        _cleanup_free_ char *pl =
                by_time ? xasprintf("%" PRId64 ":%s", last->last_event, last->name)
                        : xstrdup(last->name);
        _cleanup_free_ char *t = logs_token_encode(logs_db_token_key(l->db), "s/", scope, pl);
        js_set_str(out, "nextToken", t);
    }
    sk_vec_done(&streams, free_stream_void);
    logs_group_done(&g);
    aws_reply(call, out);
}

/* --- retention --- */

LOGS_HANDLER(put_retention_policy)
{
    logs_service *l = svc_of(call);
    json_t *in = aws_call_input(call);
    sk_err err = { 0 };
    int64_t days = js_int(in, "retentionInDays", 0);
    bool ok = false;
    for (size_t i = 0; i < ELEMENTSOF(retention_days); i++)
        ok |= days == retention_days[i];
    if (!ok)
        return fail_invalid(
                call,
                "1 validation error detected: Value '%" PRId64
                "' at 'retentionInDays' failed to satisfy constraint: Member must satisfy enum value set: [1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653]",
                days);
    logs_group g = { 0 };
    if (resolve_group(l, call, false, &g, &err) < 0)
        return fail(call, &err);
    int r = write_begin(l, &err);
    if (r >= 0)
        r = write_end(l, logs_db_group_set_retention(l->db, g.id, (int) days, &err), &err);
    logs_group_done(&g);
    if (r < 0)
        return fail(call, &err);
    aws_reply(call, NULL);
}

LOGS_HANDLER(delete_retention_policy)
{
    logs_service *l = svc_of(call);
    sk_err err = { 0 };
    logs_group g = { 0 };
    if (resolve_group(l, call, false, &g, &err) < 0)
        return fail(call, &err);
    int r = write_begin(l, &err);
    if (r >= 0)
        r = write_end(l, logs_db_group_set_retention(l->db, g.id, 0, &err), &err);
    logs_group_done(&g);
    if (r < 0)
        return fail(call, &err);
    aws_reply(call, NULL);
}

/* --- tags --- */

static void tag_op(aws_call *call, bool by_arn, const char *add_key, const char *del_key,
                   const char *too_many_type)
{
    logs_service *l = svc_of(call);
    json_t *in = aws_call_input(call);
    sk_err err = { 0 };
    logs_group g = { 0 };
    int r = by_arn ? resolve_arn(l, call, &g, &err) : resolve_group(l, call, false, &g, &err);
    if (r >= 0)
        r = update_tags(l, &g, add_key ? js_obj(in, add_key) : NULL,
                        del_key ? js_arr(in, del_key) : NULL, too_many_type, &err);
    logs_group_done(&g);
    if (r < 0)
        return fail(call, &err);
    aws_reply(call, NULL);
}

static void list_tags_op(aws_call *call, bool by_arn)
{
    logs_service *l = svc_of(call);
    sk_err err = { 0 };
    logs_group g = { 0 };
    int r = by_arn ? resolve_arn(l, call, &g, &err) : resolve_group(l, call, false, &g, &err);
    if (r < 0)
        return fail(call, &err);
    json_t *out = json_object();
    js_set(out, "tags", json_incref(g.tags));
    logs_group_done(&g);
    aws_reply(call, out);
}

LOGS_HANDLER(tag_log_group)
{
    tag_op(call, false, "tags", NULL, "InvalidParameterException");
}

LOGS_HANDLER(untag_log_group)
{
    tag_op(call, false, NULL, "tags", "InvalidParameterException");
}

LOGS_HANDLER(tag_resource)
{
    tag_op(call, true, "tags", NULL, "TooManyTagsException");
}

LOGS_HANDLER(untag_resource)
{
    tag_op(call, true, NULL, "tagKeys", "TooManyTagsException");
}

LOGS_HANDLER(list_tags_log_group)
{
    list_tags_op(call, false);
}

LOGS_HANDLER(list_tags_for_resource)
{
    list_tags_op(call, true);
}

/* --- events --- */

LOGS_HANDLER(put_log_events)
{
    logs_service *l = svc_of(call);
    json_t *in = aws_call_input(call);
    sk_err err = { 0 };
    const char *stream = js_str(in, "logStreamName");
    json_t *events = js_arr(in, "logEvents");
    size_t n = json_array_size(events);
    if (n == 0 || n > LOGS_MAX_BATCH_EVENTS)
        return fail_invalid(call, "The batch must contain between 1 and %d log events.",
                            LOGS_MAX_BATCH_EVENTS);
    if (check_stream_name(stream, &err) < 0)
        return fail(call, &err);
    _cleanup_free_ logs_new_event *evs = xcalloc(n, sizeof(*evs));
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        json_t *e = json_array_get(events, i);
        json_t *m = json_object_get(e, "message");
        json_t *t = json_object_get(e, "timestamp");
        if (!json_is_string(m) || !json_is_integer(t))
            return fail_invalid(call, "logEvents[%zu] needs a timestamp and a message.", i);
        evs[i] = (logs_new_event){ json_integer_value(t), json_string_value(m),
                                   json_string_length(m) };
        size_t sz = evs[i].len + LOGS_EVENT_OVERHEAD;
        if (sz > LOGS_MAX_EVENT_BYTES)
            return fail_invalid(call, "Log event too large: %zu bytes exceeds limit of %d.", sz,
                                LOGS_MAX_EVENT_BYTES);
        total += sz;
        if (i > 0 && evs[i].ts < evs[i - 1].ts)
            return fail_invalid(
                    call,
                    "Log events in a single PutLogEvents request must be in chronological order.");
    }
    if (total > LOGS_MAX_BATCH_BYTES)
        return fail_invalid(call, "Upload too large: %zu bytes exceeds limit of %d", total,
                            LOGS_MAX_BATCH_BYTES);
    logs_group g = { 0 };
    logs_stream s = { 0 };
    int r = resolve_group(l, call, false, &g, &err);
    if (r >= 0)
        r = logs_db_stream_get(l->db, g.id, stream, &s, &err);
    if (r < 0) {
        logs_group_done(&g);
        return fail(call, &err);
    }
    /* Events are sorted, so the rejected ones form a prefix (too old, then
     * expired) and a suffix (too new). */
    int64_t now = now_ms(l);
    int64_t too_old = now - LOGS_MAX_PAST_MS, too_new = now + LOGS_MAX_FUTURE_MS;
    int64_t expired =
            g.retention_days > 0 ? now - (int64_t) g.retention_days * 86400000 : INT64_MIN;
    ssize_t old_end = -1, expired_end = -1, new_start = -1;
    for (size_t i = 0; i < n; i++) {
        if (evs[i].ts < too_old)
            old_end = (ssize_t) i + 1;
        else if (evs[i].ts < expired)
            expired_end = (ssize_t) i + 1;
        else if (evs[i].ts > too_new) {
            new_start = (ssize_t) i;
            break;
        }
    }
    ssize_t rejected_end = MAX(old_end, expired_end);
    size_t lo = rejected_end > 0 ? (size_t) rejected_end : 0;
    size_t hi = new_start >= 0 ? (size_t) new_start : n;
    if (hi > lo && evs[hi - 1].ts - evs[lo].ts > LOGS_MAX_SPAN_MS) {
        logs_group_done(&g);
        logs_stream_done(&s);
        return fail_invalid(
                call,
                "The batch of log events in a single PutLogEvents request cannot span more than 24 hours.");
    }
    int64_t seq = 0;
    r = write_begin(l, &err);
    if (r >= 0)
        r = write_end(
                l, logs_db_put_events(l->db, &s, evs + lo, hi > lo ? hi - lo : 0, now, &seq, &err),
                &err);
    logs_group_done(&g);
    logs_stream_done(&s);
    if (r < 0)
        return fail(call, &err);
    json_t *out = json_object();
    _cleanup_free_ char *next = seq_token(seq + 1);
    js_set_str(out, "nextSequenceToken", next);
    if (old_end >= 0 || expired_end >= 0 || new_start >= 0) {
        json_t *rej = json_object();
        if (old_end >= 0)
            js_set_int(rej, "tooOldLogEventEndIndex", old_end);
        if (expired_end >= 0)
            js_set_int(rej, "expiredLogEventEndIndex", expired_end);
        if (new_start >= 0)
            js_set_int(rej, "tooNewLogEventStartIndex", new_start);
        js_set(out, "rejectedLogEventsInfo", rej);
    }
    aws_reply(call, out);
}

static int time_range(json_t *in, int64_t *ret_start, int64_t *ret_end, sk_err *err)
{
    *ret_start = js_has(in, "startTime") ? js_int(in, "startTime", 0) : INT64_MIN;
    *ret_end = js_has(in, "endTime") ? js_int(in, "endTime", 0) : INT64_MAX;
    return 0;
}

static json_t *json_message(const logs_event *ev)
{
    json_t *m = json_stringn(ev->message, ev->len);
    return m ? m : json_string("");
}

typedef struct get_state {
    size_t limit;
    size_t bytes;
    size_t n;
    json_t **evs; /* in scan order */
    logs_pos first, last;
} get_state;

static int get_collect(void *userdata, const logs_event *ev)
{
    get_state *s = userdata;
    size_t sz = ev->len + LOGS_EVENT_OVERHEAD;
    if (s->n >= s->limit || (s->n > 0 && s->bytes + sz > LOGS_MAX_RESPONSE_BYTES))
        return 1;
    json_t *o = json_object();
    js_set_int(o, "timestamp", ev->ts);
    js_set(o, "message", json_message(ev));
    js_set_int(o, "ingestionTime", ev->ingestion);
    s->evs[s->n++] = o;
    s->bytes += sz;
    logs_pos p = { ev->ts, ev->id };
    if (s->n == 1)
        s->first = p;
    s->last = p;
    return 0;
}

static char *pos_token(logs_service *l, const char *prefix, const char *scope, logs_pos p)
{
    _cleanup_free_ char *pl = logs_pos_format(p);
    return logs_token_encode(logs_db_token_key(l->db), prefix, scope, pl);
}

LOGS_HANDLER(get_log_events)
{
    logs_service *l = svc_of(call);
    json_t *in = aws_call_input(call);
    sk_err err = { 0 };
    const char *stream = js_str(in, "logStreamName");
    const char *tok = js_str(in, "nextToken");
    logs_group g = { 0 };
    logs_stream s = { 0 };
    int r = check_stream_name(stream, &err);
    if (r >= 0)
        r = resolve_group(l, call, true, &g, &err);
    if (r >= 0)
        r = logs_db_stream_get(l->db, g.id, stream, &s, &err);
    logs_group_done(&g);
    if (r < 0) {
        logs_stream_done(&s);
        return fail(call, &err);
    }
    logs_scan scan = { .stream_id = s.id };
    _cleanup_free_ char *scope = xasprintf("%" PRId64, s.id);
    logs_stream_done(&s);
    time_range(in, &scan.start_time, &scan.end_time, &err);
    if (tok) {
        _cleanup_free_ char *pl = NULL;
        const char *prefix = startswith(tok, "b/") ? "b/" : "f/";
        if (logs_token_decode(logs_db_token_key(l->db), tok, prefix, scope, &pl, &err) < 0)
            return fail(call, &err);
        if (logs_pos_parse(pl, &scan.from) < 0)
            return fail_invalid(call, "The specified nextToken is invalid.");
        scan.backward = prefix[0] == 'b';
    } else if (js_bool(in, "startFromHead", false))
        scan.from = LOGS_POS_MIN;
    else {
        scan.from = LOGS_POS_MAX;
        scan.backward = true;
    }
    int64_t limit = js_int(in, "limit", LOGS_MAX_PAGE_EVENTS);
    get_state st = { .limit = (size_t) CLAMP(limit, (int64_t) 1, (int64_t) LOGS_MAX_PAGE_EVENTS) };
    st.evs = xcalloc(st.limit, sizeof(json_t *));
    r = logs_db_scan(l->db, &scan, get_collect, &st, &err);
    if (r < 0) {
        for (size_t i = 0; i < st.n; i++)
            json_decref(st.evs[i]);
        free(st.evs);
        return fail(call, &err);
    }
    json_t *arr = json_array();
    for (size_t i = 0; i < st.n; i++)
        json_array_append_new(arr, st.evs[scan.backward ? st.n - 1 - i : i]);
    free(st.evs);
    json_t *out = json_object();
    js_set(out, "events", arr);
    /* Positions in ascending order: oldest and newest returned event. */
    logs_pos oldest = scan.backward ? st.last : st.first;
    logs_pos newest = scan.backward ? st.first : st.last;
    _cleanup_free_ char *fwd = NULL, *bwd = NULL;
    if (st.n > 0) {
        fwd = pos_token(l, "f/", scope, newest);
        bwd = pos_token(l, "b/", scope, oldest);
    } else if (tok) {
        /* Nothing more in that direction: the same token again. */
        fwd = scan.backward ? pos_token(l, "f/", scope, scan.from) : xstrdup(tok);
        bwd = scan.backward ? xstrdup(tok) : pos_token(l, "b/", scope, scan.from);
    } else {
        fwd = pos_token(l, "f/", scope, LOGS_POS_MIN);
        bwd = pos_token(l, "b/", scope, LOGS_POS_MIN);
    }
    js_set_str(out, "nextForwardToken", fwd);
    js_set_str(out, "nextBackwardToken", bwd);
    aws_reply(call, out);
}

typedef struct filter_state {
    const logs_filter *filter;
    const sk_hmap *names; /* logStreamNames, or NULL */
    const char *prefix;   /* logStreamNamePrefix, or NULL */
    size_t limit;
    size_t n;
    size_t bytes;
    size_t scanned;
    bool more;
    logs_pos last; /* last examined event */
    json_t *events;
} filter_state;

static int filter_collect(void *userdata, const logs_event *ev)
{
    filter_state *s = userdata;
    size_t sz = ev->len + LOGS_EVENT_OVERHEAD;
    if (s->n >= s->limit || s->scanned >= LOGS_FILTER_SCAN_BUDGET ||
        (s->n > 0 && s->bytes + sz > LOGS_MAX_RESPONSE_BYTES)) {
        s->more = true;
        return 1;
    }
    s->scanned++;
    s->last = (logs_pos){ ev->ts, ev->id };
    const char *name = ev->stream_name ? ev->stream_name : "";
    if (s->names && !sk_hmap_get(s->names, name))
        return 0;
    if (s->prefix && !startswith(name, s->prefix))
        return 0;
    if (!logs_filter_match(s->filter, ev->message, ev->len))
        return 0;
    /* AWS's eventIds are 56 decimal digits; here the event's timestamp and its
     * unique row id, so they are unique and order like the events. */
    char id[64];
    snprintf(id, sizeof(id), "%020" PRIu64 "%036" PRIu64, (uint64_t) MAX(ev->ts, 0),
             (uint64_t) ev->id);
    json_t *o = json_object();
    js_set_str(o, "logStreamName", name);
    js_set_int(o, "timestamp", ev->ts);
    js_set(o, "message", json_message(ev));
    js_set_int(o, "ingestionTime", ev->ingestion);
    js_set_str(o, "eventId", id);
    json_array_append_new(s->events, o);
    s->n++;
    s->bytes += sz;
    return 0;
}

LOGS_HANDLER(filter_log_events)
{
    logs_service *l = svc_of(call);
    json_t *in = aws_call_input(call);
    sk_err err = { 0 };
    json_t *names = js_arr(in, "logStreamNames");
    const char *prefix = js_str(in, "logStreamNamePrefix");
    const char *tok = js_str(in, "nextToken");
    if (names && prefix)
        return fail_invalid(
                call, "logStreamNames and logStreamNamePrefix are mutually exclusive parameters.");
    logs_filter *filter = NULL;
    if (logs_filter_parse(js_str_or(in, "filterPattern", ""), &filter, &err) < 0)
        return fail(call, &err);
    logs_group g = { 0 };
    if (resolve_group(l, call, true, &g, &err) < 0) {
        logs_filter_free(filter);
        return fail(call, &err);
    }
    _cleanup_free_ char *scope = xasprintf("%" PRId64, g.id);
    logs_scan scan = { .group_id = g.id, .from = LOGS_POS_MIN };
    logs_group_done(&g);
    time_range(in, &scan.start_time, &scan.end_time, &err);
    if (tok) {
        _cleanup_free_ char *pl = NULL;
        int r = logs_token_decode(logs_db_token_key(l->db), tok, "e/", scope, &pl, &err);
        if (r >= 0 && logs_pos_parse(pl, &scan.from) < 0)
            r = invalid(&err, "The specified nextToken is invalid.");
        if (r < 0) {
            logs_filter_free(filter);
            return fail(call, &err);
        }
    }
    sk_hmap set;
    sk_hmap_init(&set);
    size_t i;
    json_t *v;
    json_array_foreach(names, i, v) {
        if (json_is_string(v))
            sk_hmap_put(&set, json_string_value(v), v);
    }
    int64_t limit = js_int(in, "limit", LOGS_MAX_PAGE_EVENTS);
    filter_state st = {
        .filter = filter,
        .names = names ? &set : NULL,
        .prefix = prefix,
        .limit = (size_t) CLAMP(limit, (int64_t) 1, (int64_t) LOGS_MAX_PAGE_EVENTS),
        .events = json_array(),
    };
    int r = logs_db_scan(l->db, &scan, filter_collect, &st, &err);
    sk_hmap_done(&set);
    logs_filter_free(filter);
    if (r < 0) {
        json_decref(st.events);
        return fail(call, &err);
    }
    json_t *out = json_object();
    js_set(out, "events", st.events);
    /* Deprecated by AWS, which always returns it empty. */
    js_set(out, "searchedLogStreams", json_array());
    if (st.more) {
        _cleanup_free_ char *t = pos_token(l, "e/", scope, st.last);
        js_set_str(out, "nextToken", t);
    }
    aws_reply(call, out);
}

/* --- life cycle --- */

static void on_prepare(ev_loop *loop, void *userdata)
{
    logs_service *l = userdata;
    if (l->failed || !logs_db_in_txn(l->db))
        return;
    _cleanup_err_ sk_err err = { 0 };
    if (logs_db_commit(l->db, &err) < 0)
        fatal(l, &err);
}

int logs_sweep_run(logs_service *l, sk_err *err)
{
    if (l->failed)
        return unavailable(err);
    if (write_begin(l, err) < 0)
        return -1;
    int64_t deleted = 0;
    bool more = false;
    int r = write_end(l, logs_db_sweep(l->db, now_ms(l), &deleted, &more, err), err);
    if (r < 0)
        return r;
    if (deleted)
        log_debug("logs: retention removed %" PRId64 " events", deleted);
    return more ? 1 : 0;
}

static void on_sweep(ev_timer *t, void *userdata)
{
    logs_service *l = userdata;
    _cleanup_err_ sk_err err = { 0 };
    int r = logs_sweep_run(l, &err);
    if (r < 0 && !l->failed)
        log_error("logs: retention sweep: %s", sk_err_msg(&err));
    if (!l->failed)
        ev_timer_arm_in(t, r > 0 ? SWEEP_AGAIN_USEC : l->sweep_interval);
}

static usec_t sweep_interval_from_env(void)
{
    const char *e = getenv("SKIFF_LOGS_SWEEP_SEC");
    uint32_t sec;
    if (e && *e) {
        if (parse_u32(e, &sec) == 0 && sec >= 1 && sec <= 86400)
            return sec * USEC_PER_SEC;
        log_warn("SKIFF_LOGS_SWEEP_SEC='%s' is not a number of seconds in 1..86400; using %d", e,
                 DEFAULT_SWEEP_SEC);
    }
    return DEFAULT_SWEEP_SEC * USEC_PER_SEC;
}

int logs_new(ev_loop *loop, const char *dir, logs_service **ret, sk_err *err)
{
    for (size_t i = 1; i < ELEMENTSOF(logs_ops); i++)
        if (strcmp(logs_ops[i - 1].name, logs_ops[i].name) >= 0)
            return sk_err_set(err, SK_E_INTERNAL, "logs: op table not sorted at '%s'",
                              logs_ops[i].name);
    _cleanup_free_ char *path = path_join(dir, "logs.db");
    logs_db *db = NULL;
    if (logs_db_open(path, &db, err) < 0)
        return -1;
    logs_service *l = xcalloc(1, sizeof(*l));
    l->loop = loop;
    l->db = db;
    l->sweep_interval = sweep_interval_from_env();
    l->def = (aws_service_def){
        .model = &model_logs,
        .protocol = AWS_PROTO_JSON,
        .validation_error = "InvalidParameterException",
        .fault_error = "ServiceUnavailableException",
        .client_error = "InvalidParameterException",
        /* A 1 MiB batch needs room for JSON framing and escapes. */
        .body_cap = 8u << 20,
        .ops = logs_ops,
        .nops = ELEMENTSOF(logs_ops),
        .userdata = l,
    };
    ev_prepare_add(loop, on_prepare, l);
    l->sweep_timer = ev_timer_new(loop, on_sweep, l);
    ev_timer_arm_in(l->sweep_timer, l->sweep_interval);
    *ret = l;
    return 0;
}

void logs_free(logs_service *l)
{
    if (!l)
        return;
    ev_timer_free(l->sweep_timer);
    logs_db_close(l->db);
    free(l);
}

const aws_service_def *logs_service_def(logs_service *l)
{
    return &l->def;
}

bool logs_dirty(const logs_service *l)
{
    return l->failed || logs_db_in_txn(l->db);
}

int logs_flush(logs_service *l, sk_err *err)
{
    if (l->failed)
        return sk_err_set(err, SK_E_SYSTEM, "logs: an earlier commit failed");
    if (logs_db_commit(l->db, err) < 0) {
        l->failed = true;
        return -1;
    }
    return 0;
}

void logs_set_clock(logs_service *l, logs_clock_fn fn, void *userdata)
{
    l->clock = fn;
    l->clock_ud = userdata;
}

logs_db *logs_get_db(logs_service *l)
{
    return l->db;
}
