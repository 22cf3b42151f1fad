/* The agent channel: a signed long-poll through which the control plane
 * pushes work to node agents (the role ECS's ACS websocket plays).
 *
 *   POST /acs/poll  (SigV4, service "ecs", JSON body)
 *     {"cluster": NAME|ARN, "containerInstance": ARN|ID, "seq": N,
 *      "have": [taskArn...], "waitSeconds": 1..30}
 *   → {"seq": N', "instanceStatus": "ACTIVE", "tasks": [
 *        {"taskArn", "desiredStatus", "version",
 *         "task": {...}, "taskDefinition": {...}}   (full only if not in "have")]}
 *
 * The answer is level-triggered: it lists every task assigned to the instance
 * that has not reached STOPPED, so an agent that lost state (restart, network
 * blip, server restart) converges by applying the latest answer; tasks it runs
 * that are not listed must be stopped. A poll whose seq equals the instance's
 * current generation waits until something changes or waitSeconds pass
 * (a heartbeat); the poll itself keeps agentConnected true. Sending the
 * previous answer's seq acknowledges it. */
#include <string.h>

#include "basic/alloc.h"
#include "basic/log.h"
#include "basic/rand.h"
#include "basic/strutil.h"
#include "cp-internal.h"

#define ACS_BODY_CAP     (256 * 1024)
#define ACS_MAX_HAVE     4096
#define ACS_DEFAULT_WAIT 20

typedef struct acs_slot {
    char *key;
    uint64_t gen;
    bool dirty;
    sk_vec waiters; /* acs_waiter* */
} acs_slot;

typedef struct acs_waiter {
    cp *c;
    http_req *req;
    acs_slot *slot;
    ev_timer *timer;
    aws_ctx ctx;
    char *cluster;
    char *instance_id;
    json_t *have;
    bool answered;
    bool holding; /* counted in the instance's polls_held */
} acs_waiter;

typedef struct acs_call {
    cp *c;
    acs_waiter *w; /* set while waiting */
} acs_call;

static char *slot_key(const char *scope, const char *cluster, const char *id)
{
    return xasprintf("%s/%s/%s", scope, cluster, id);
}

static acs_slot *slot_get(cp *c, const char *key, bool create)
{
    acs_slot *s = sk_hmap_get(&c->acs_slots, key);
    if (s || !create)
        return s;
    s = xcalloc(1, sizeof(*s));
    s->key = xstrdup(key);
    s->gen = store_revision(c->st);
    sk_hmap_put(&c->acs_slots, s->key, s);
    return s;
}

void cp_acs_instance_changed(cp *c, const char *scope, const char *cluster, const char *id)
{
    _cleanup_free_ char *key = slot_key(scope, cluster, id);
    acs_slot *s = slot_get(c, key, true);
    s->gen = store_revision(c->st);
    if (!s->dirty && s->waiters.len) {
        s->dirty = true;
        sk_vec_push(&c->acs_dirty, s);
    }
}

static json_t *build_answer(cp *c, const aws_ctx *ctx, const char *cluster, const char *id,
                            const json_t *have, uint64_t gen)
{
    json_t *tasks = json_array();
    cp_cluster_idx *cl = cp_cluster_idx_get(c, ctx, cluster, false);
    cp_instance_info *in = cl ? sk_omap_get(cl->instances, id) : NULL;
    for (size_t i = 0; in && i < in->tasks.len; i++) {
        const cp_task_info *t = in->tasks.items[i];
        const store_kv *kv = store_get(c->st, t->key);
        _cleanup_json_ json_t *doc = kv ? json_loadb(kv->value, kv->len, 0, NULL) : NULL;
        if (!doc)
            continue;
        json_t *e = json_object();
        js_set_str(e, "taskArn", t->arn);
        js_set_str(e, "desiredStatus", js_str_or(doc, "desiredStatus", "RUNNING"));
        js_set_int(e, "version", js_int(doc, "version", 0));
        if (!js_array_has_str(have, t->arn)) {
            json_t *td = NULL;
            sk_err err = { 0 };
            if (cp_taskdef_resolve(c, ctx, js_str_or(doc, "taskDefinitionArn", ""), false, &td,
                                   &err) < 0) {
                sk_err_done(&err);
                json_decref(e);
                continue;
            }
            json_t *pub = cp_public(doc);
            json_t *internal = js_obj(doc, "_skiff");
            if (js_obj(internal, "networkConfiguration"))
                js_set(pub, "networkConfiguration",
                       json_deep_copy(js_obj(internal, "networkConfiguration")));
            js_set(e, "task", pub);
            js_set(e, "taskDefinition", td);
        }
        json_array_append_new(tasks, e);
    }
    json_t *out = json_object();
    js_set_int(out, "seq", (json_int_t) gen);
    js_set_str(out, "instanceStatus", in ? in->status : "INACTIVE");
    js_set(out, "tasks", tasks);
    return out;
}

static void answer(acs_waiter *w)
{
    if (w->answered)
        return;
    w->answered = true;
    ev_timer_disarm(w->timer);
    json_t *out = build_answer(w->c, &w->ctx, w->cluster, w->instance_id, w->have, w->slot->gen);
    size_t len;
    char *body = aws_json_dump(out, &len);
    json_decref(out);
    http_req_add_header(w->req, "x-amzn-RequestId", w->ctx.request_id);
    http_req_respond_take(w->req, 200, "application/x-amz-json-1.1", body, len);
}

static void slot_remove_waiter(acs_slot *s, acs_waiter *w)
{
    for (size_t i = 0; i < s->waiters.len; i++)
        if (s->waiters.items[i] == w) {
            sk_vec_remove_at(&s->waiters, i);
            return;
        }
}

/* The poll stops waiting: while it waited the agent counted as connected;
 * its last sign of life is now. */
static void waiter_release(acs_waiter *w)
{
    if (!w->holding)
        return;
    w->holding = false;
    cp_instance_poll_held(w->c, w->ctx.account, w->ctx.region, w->cluster, w->instance_id, false);
}

static void on_timeout(ev_timer *t, void *userdata)
{
    acs_waiter *w = userdata;
    slot_remove_waiter(w->slot, w);
    waiter_release(w);
    answer(w);
}

static void on_prepare(ev_loop *loop, void *userdata)
{
    cp *c = userdata;
    if (!c->acs_dirty.len)
        return;
    sk_vec dirty = c->acs_dirty;
    c->acs_dirty = (sk_vec){ 0 };
    for (size_t i = 0; i < dirty.len; i++) {
        acs_slot *s = dirty.items[i];
        s->dirty = false;
        sk_vec waiters = s->waiters;
        s->waiters = (sk_vec){ 0 };
        for (size_t j = 0; j < waiters.len; j++) {
            waiter_release(waiters.items[j]);
            answer(waiters.items[j]);
        }
        sk_vec_done(&waiters, NULL);
    }
    sk_vec_done(&dirty, NULL);
}

static void waiter_free(acs_waiter *w)
{
    if (!w)
        return;
    if (w->slot)
        slot_remove_waiter(w->slot, w);
    waiter_release(w);
    ev_timer_free(w->timer);
    free(w->cluster);
    free(w->instance_id);
    json_decref(w->have);
    free(w);
}

/* The agent closed the connection (it died or gave up): stop counting it as
 * connected from now on, rather than when the poll would have timed out. */
static void on_hangup(http_req *req)
{
    acs_call *ac = http_req_state(req);
    acs_waiter *w = ac ? ac->w : NULL;
    if (!w || w->answered)
        return;
    slot_remove_waiter(w->slot, w);
    waiter_release(w);
    answer(w);
}

static void on_free(http_req *req)
{
    acs_call *ac = http_req_state(req);
    if (!ac)
        return;
    waiter_free(ac->w);
    free(ac);
}

static void fail(http_req *req, const char *type, const char *msg, const char *rid)
{
    aws_http_error(req, 400, type, msg, rid);
}

static void on_complete(http_req *req)
{
    acs_call *ac = http_req_state(req);
    cp *c = ac->c;
    size_t len;
    const char *body = http_req_body(req, &len);
    aws_ctx ctx = { 0 };
    char rid[37];
    random_uuid(rid);
    memcpy(ctx.request_id, rid, sizeof(rid));
    if (http_req_body_too_large(req))
        return fail(req, "ClientException", "Request body too large.", rid);
    sk_err err = { 0 };
    if (aws_authenticate(c->router, req, body, len, "ecs", &ctx, &err) < 0) {
        const char *type = err.type ? err.type : "AccessDeniedException";
        aws_http_error(req, aws_error_status(type, err.code), type, sk_err_msg(&err), rid);
        sk_err_done(&err);
        return;
    }
    memcpy(ctx.request_id, rid, sizeof(rid));
    if (!streq(http_req_path(req), "/acs/poll") || !streq(http_req_method(req), "POST"))
        return fail(req, "UnknownOperationException", "Unknown agent channel operation.", rid);
    json_error_t jerr;
    _cleanup_json_ json_t *in = json_loadb(body, len, 0, &jerr);
    if (!json_is_object(in))
        return fail(req, "SerializationException", "Malformed JSON request body.", rid);
    _cleanup_free_ char *cluster = NULL;
    if (cp_cluster_get(c, &ctx, js_str(in, "cluster"), false, &cluster, NULL, &err) < 0) {
        aws_http_error(req, 400, err.type ? err.type : "ClusterNotFoundException", sk_err_msg(&err),
                       rid);
        sk_err_done(&err);
        return;
    }
    _cleanup_free_ char *id = cp_instance_id_from(js_str(in, "containerInstance"), cluster);
    cp_instance_info *inst = id ? cp_instance_find(c, &ctx, cluster, id) : NULL;
    if (!inst)
        return fail(req, "InvalidParameterException",
                    "The referenced container instance was not found.", rid);
    if (streq(inst->status, "INACTIVE"))
        return fail(req, "InactiveInstanceException",
                    "The container instance has been deregistered.", rid);
    json_t *have = js_arr(in, "have");
    if (json_array_size(have) > ACS_MAX_HAVE)
        return fail(req, "InvalidParameterException", "Too many entries in 'have'.", rid);
    cp_instance_touch(c, ctx.account, ctx.region, cluster, id);
    char scope[128];
    snprintf(scope, sizeof(scope), "%s/%s", ctx.account, ctx.region);
    _cleanup_free_ char *key = slot_key(scope, cluster, id);
    acs_slot *s = slot_get(c, key, true);
    int64_t wait = js_int(in, "waitSeconds", ACS_DEFAULT_WAIT);
    wait = CLAMP(wait, (int64_t) 0, (int64_t) 30);
    acs_waiter *w = xcalloc(1, sizeof(*w));
    w->c = c;
    w->req = req;
    w->slot = NULL;
    w->ctx = ctx;
    w->cluster = TAKE_PTR(cluster);
    w->instance_id = TAKE_PTR(id);
    w->have = have ? json_incref(have) : json_array();
    ac->w = w;
    json_t *seqv = json_object_get(in, "seq");
    bool current = json_is_integer(seqv) && (uint64_t) json_integer_value(seqv) == s->gen;
    w->slot = s;
    if (!current || wait == 0) {
        answer(w);
        return;
    }
    w->timer = ev_timer_new(c->loop, on_timeout, w);
    ev_timer_arm_in(w->timer, (usec_t) wait * USEC_PER_SEC);
    sk_vec_push(&s->waiters, w);
    w->holding = true;
    cp_instance_poll_held(c, ctx.account, ctx.region, w->cluster, w->instance_id, true);
}

static const http_req_ops acs_ops = {
    .on_complete = on_complete,
    .on_hangup = on_hangup,
    .on_free = on_free,
};

static void route(http_req *req, void *userdata)
{
    cp *c = userdata;
    acs_call *ac = xcalloc(1, sizeof(*ac));
    ac->c = c;
    http_req_set_ops(req, &acs_ops, ac);
    http_req_set_body_cap(req, ACS_BODY_CAP);
}

void cp_acs_init(cp *c)
{
    sk_hmap_init(&c->acs_slots);
    ev_prepare_add(c->loop, on_prepare, c);
}

void cp_attach_router(cp *c, aws_router *router)
{
    c->router = router;
    aws_router_add_path(router, "/acs/", route, c);
}

void cp_acs_done(cp *c)
{
    size_t it = 0;
    void *v;
    while (sk_hmap_next(&c->acs_slots, &it, NULL, &v)) {
        acs_slot *s = v;
        for (size_t i = 0; i < s->waiters.len; i++)
            ((acs_waiter *) s->waiters.items[i])->slot = NULL;
        sk_vec_done(&s->waiters, NULL);
        free(s->key);
        free(s);
    }
    sk_hmap_done(&c->acs_slots);
    sk_vec_done(&c->acs_dirty, NULL);
}
