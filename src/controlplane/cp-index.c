/* The typed in-memory index over ECS documents in the store: per-cluster task
 * and container-instance maps and the counters DescribeClusters and
 * DescribeContainerInstances report. It is maintained only from store
 * watches, so it stays true whatever path modified the store. */
#include <string.h>

#include "basic/alloc.h"
#include "basic/log.h"
#include "basic/strutil.h"
#include "cp-internal.h"

typedef struct key_parts {
    char scope[128]; /* acct/region */
    char kind[16];
    char cluster[256];
    char id[256];
} key_parts;

static int parse_key(const char *key, key_parts *kp)
{
    /* ecs/ACCT/REGION/KIND/REST */
    memset(kp, 0, sizeof(*kp));
    const char *p = startswith(key, "ecs/");
    if (!p)
        return -1;
    const char *s1 = strchr(p, '/');
    if (!s1)
        return -1;
    const char *s2 = strchr(s1 + 1, '/');
    if (!s2 || (size_t) (s2 - p) >= sizeof(kp->scope))
        return -1;
    memcpy(kp->scope, p, (size_t) (s2 - p));
    const char *s3 = strchr(s2 + 1, '/');
    if (!s3 || (size_t) (s3 - s2 - 1) >= sizeof(kp->kind))
        return -1;
    memcpy(kp->kind, s2 + 1, (size_t) (s3 - s2 - 1));
    const char *rest = s3 + 1;
    const char *s4 = strchr(rest, '/');
    if (!s4) {
        if (strlen(rest) >= sizeof(kp->cluster))
            return -1;
        strcpy(kp->cluster, rest);
        return 0;
    }
    if ((size_t) (s4 - rest) >= sizeof(kp->cluster) || strlen(s4 + 1) >= sizeof(kp->id))
        return -1;
    memcpy(kp->cluster, rest, (size_t) (s4 - rest));
    strcpy(kp->id, s4 + 1);
    return 0;
}

static cp_cluster_idx *cluster_idx(cp *c, const char *scope, const char *cluster, bool create)
{
    char k[512];
    snprintf(k, sizeof(k), "%s/%s", scope, cluster);
    cp_cluster_idx *ci = sk_hmap_get(&c->clusters, k);
    if (ci || !create)
        return ci;
    ci = xcalloc(1, sizeof(*ci));
    ci->scope_cluster = xstrdup(k);
    ci->tasks = sk_omap_new();
    ci->instances = sk_omap_new();
    sk_hmap_init(&ci->groups);
    sk_hmap_put(&c->clusters, ci->scope_cluster, ci);
    return ci;
}

cp_cluster_idx *cp_cluster_idx_get(cp *c, const aws_ctx *ctx, const char *cluster, bool create)
{
    char scope[128];
    snprintf(scope, sizeof(scope), "%s/%s", ctx->account, ctx->region);
    return cluster_idx(c, scope, cluster, create);
}

static void task_info_free(cp_task_info *t)
{
    if (!t)
        return;
    free(t->key);
    free(t->id);
    free(t->arn);
    free(t->family);
    free(t->td_arn);
    free(t->instance_id);
    free(t->started_by);
    free(t->group);
    free(t->service_name);
    free(t->launch_type);
    free(t->rsv_ports[0]);
    free(t->rsv_ports[1]);
    free(t);
}

static void group_idx_free(cp_group_idx *g)
{
    free(g->group);
    free(g->counts);
    free(g);
}

const cp_group_idx *cp_group_find(const cp_cluster_idx *cl, const char *group)
{
    return group ? sk_hmap_get(&cl->groups, group) : NULL;
}

static void group_add(cp_cluster_idx *cl, cp_instance_info *in, const char *group, int delta)
{
    if (!group)
        return;
    cp_group_idx *g = sk_hmap_get(&cl->groups, group);
    if (!g) {
        if (delta < 0)
            return;
        g = xcalloc(1, sizeof(*g));
        g->group = xstrdup(group);
        sk_hmap_put(&cl->groups, g->group, g);
    }
    if (in->slot >= g->cap) {
        size_t cap = MAX(in->slot + 1, g->cap * 2);
        g->counts = xrealloc(g->counts, cap * sizeof(unsigned));
        memset(g->counts + g->cap, 0, (cap - g->cap) * sizeof(unsigned));
        g->cap = cap;
    }
    if (delta > 0) {
        g->counts[in->slot]++;
        g->total++;
    } else if (g->counts[in->slot] > 0) {
        g->counts[in->slot]--;
        g->total--;
    }
    if (g->total == 0) {
        sk_hmap_remove(&cl->groups, g->group);
        group_idx_free(g);
    }
}

static size_t slot_alloc(cp_cluster_idx *cl, cp_instance_info *in)
{
    size_t slot;
    if (cl->nfree) {
        slot = cl->free_slots[--cl->nfree];
    } else {
        if (cl->nslots == cl->slots_cap) {
            cl->slots_cap = cl->slots_cap ? cl->slots_cap * 2 : 16;
            cl->slots = xrealloc(cl->slots, cl->slots_cap * sizeof(*cl->slots));
        }
        slot = cl->nslots++;
    }
    cl->slots[slot] = in;
    return slot;
}

/* Frees the slot of a removed instance; its group counts go with it. */
static void slot_release(cp_cluster_idx *cl, size_t slot)
{
    const char *k;
    void *v;
    for (size_t it = 0; sk_hmap_next(&cl->groups, &it, &k, &v);) {
        cp_group_idx *g = v;
        if (slot >= g->cap || !g->counts[slot])
            continue;
        g->total -= g->counts[slot];
        g->counts[slot] = 0;
        if (g->total == 0) {
            sk_hmap_remove(&cl->groups, g->group);
            group_idx_free(g);
        }
    }
    cl->slots[slot] = NULL;
    if (cl->nfree == cl->free_cap) {
        cl->free_cap = cl->free_cap ? cl->free_cap * 2 : 16;
        cl->free_slots = xrealloc(cl->free_slots, cl->free_cap * sizeof(size_t));
    }
    cl->free_slots[cl->nfree++] = slot;
}

unsigned cp_instance_group_count(const cp_instance_info *in, const char *group)
{
    return cp_group_on(cp_group_find(in->cluster, group), in);
}

static void instance_info_free(cp_instance_info *i)
{
    if (!i)
        return;
    for (int k = 0; k < 2; k++) {
        free(i->ports[k]);
        free(i->used_ports[k]);
    }
    free(i->attrs);
    sk_vec_done(&i->tasks, NULL);
    free(i->key);
    free(i->id);
    free(i->arn);
    free(i->status);
    free(i->ec2_instance_id);
    json_decref(i->doc);
    free(i);
}

static bool is_pending(cp_task_status s)
{
    return s == CP_TS_PROVISIONING || s == CP_TS_PENDING || s == CP_TS_ACTIVATING;
}

static bool is_running(cp_task_status s)
{
    return s == CP_TS_RUNNING || s == CP_TS_DEACTIVATING || s == CP_TS_STOPPING ||
           s == CP_TS_DEPROVISIONING;
}

/* Adds (delta > 0) or removes the task's reservation on the instance. */
static void reservation_add(cp_instance_info *in, const cp_task_info *t, int delta)
{
    if (!t->reserves)
        return;
    in->used_cpu += delta * t->rsv_cpu;
    in->used_memory += delta * t->rsv_memory;
    for (int k = 0; k < 2; k++) {
        for (size_t j = 0; j < t->rsv_nports[k]; j++) {
            uint16_t port = t->rsv_ports[k][j];
            if (delta > 0) {
                if (in->nused_ports[k] == in->capused_ports[k]) {
                    in->capused_ports[k] = in->capused_ports[k] ? in->capused_ports[k] * 2 : 8;
                    in->used_ports[k] =
                            xrealloc(in->used_ports[k], in->capused_ports[k] * sizeof(uint16_t));
                }
                in->used_ports[k][in->nused_ports[k]++] = port;
                continue;
            }
            for (size_t u = 0; u < in->nused_ports[k]; u++) {
                if (in->used_ports[k][u] == port) {
                    in->used_ports[k][u] = in->used_ports[k][--in->nused_ports[k]];
                    break;
                }
            }
        }
    }
}

static json_t *ports_json(json_t *set, const uint16_t *ports, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char buf[8];
        snprintf(buf, sizeof(buf), "%u", ports[i]);
        if (!js_array_has_str(set, buf))
            json_array_append_new(set, json_string(buf));
    }
    return set;
}

json_t *cp_instance_remaining(const cp_instance_info *in)
{
    json_t *rem = json_deep_copy(js_arr(in->doc, "registeredResources"));
    if (!rem)
        return json_array();
    json_t *r;
    if ((r = cp_resource_find(rem, "CPU")))
        js_set_int(r, "integerValue", in->reg_cpu - in->used_cpu);
    if ((r = cp_resource_find(rem, "MEMORY")))
        js_set_int(r, "integerValue", in->reg_memory - in->used_memory);
    const char *names[2] = { "PORTS", "PORTS_UDP" };
    for (int k = 0; k < 2; k++) {
        if ((r = cp_resource_find(rem, names[k])))
            ports_json(js_ensure_arr(r, "stringSetValue"), in->used_ports[k], in->nused_ports[k]);
    }
    return rem;
}

static void task_count(cp_cluster_idx *cl, cp_task_info *t, int delta)
{
    if (is_pending(t->last))
        cl->pending_tasks += (unsigned) delta;
    else if (is_running(t->last))
        cl->running_tasks += (unsigned) delta;
    if (delta > 0) {
        t->counted_on_instance = false;
        if (t->instance_id) {
            cp_instance_info *in = sk_omap_get(cl->instances, t->instance_id);
            if (in) {
                if (is_pending(t->last))
                    in->pending_tasks++;
                else if (is_running(t->last))
                    in->running_tasks++;
                if (t->last != CP_TS_STOPPED) {
                    group_add(cl, in, t->group, +1);
                    sk_vec_push(&in->tasks, t);
                }
                reservation_add(in, t, +1);
                t->counted_on_instance = true;
            }
        }
    } else if (t->counted_on_instance && t->instance_id) {
        cp_instance_info *in = sk_omap_get(cl->instances, t->instance_id);
        if (in) {
            if (is_pending(t->last) && in->pending_tasks)
                in->pending_tasks--;
            else if (is_running(t->last) && in->running_tasks)
                in->running_tasks--;
            if (t->last != CP_TS_STOPPED) {
                group_add(cl, in, t->group, -1);
                for (size_t i = 0; i < in->tasks.len; i++)
                    if (in->tasks.items[i] == t) {
                        sk_vec_remove_at(&in->tasks, i);
                        break;
                    }
            }
            reservation_add(in, t, -1);
        }
        t->counted_on_instance = false;
    }
}

static char *dup_or_null(const char *s)
{
    return s ? xstrdup(s) : NULL;
}

static void note_outcome(cp *c, const key_parts *kp, const cp_task_info *prev,
                         const cp_task_info *t)
{
    if (c->loading || !t || !t->service_name || !t->started_by)
        return;
    bool started = t->last == CP_TS_RUNNING && (!prev || prev->last < CP_TS_RUNNING);
    bool failed =
            t->last == CP_TS_STOPPED && !t->started_at && (!prev || prev->last != CP_TS_STOPPED);
    bool stopped = t->last == CP_TS_STOPPED && (!prev || prev->last != CP_TS_STOPPED);
    if (!started && !failed && !stopped)
        return;
    cp_sched_note *n = xcalloc(1, sizeof(*n));
    char scope_acct[64], scope_region[64];
    const char *slash = strchr(kp->scope, '/');
    snprintf(scope_acct, sizeof(scope_acct), "%.*s", slash ? (int) (slash - kp->scope) : 0,
             kp->scope);
    snprintf(scope_region, sizeof(scope_region), "%s", slash ? slash + 1 : "");
    n->svc_key = xasprintf("ecs/%s/%s/svc/%s/%s", scope_acct, scope_region, kp->cluster,
                           t->service_name);
    n->deployment = xstrdup(t->started_by);
    n->started = started;
    n->failed_to_start = failed;
    n->created_at = t->created_at;
    sk_vec_push(&c->sched_notes, n);
    cp_sched_kick(c);
}

/* Port numbers of a JSON string set (entries that are not ports are skipped). */
static uint16_t *parse_ports(const json_t *set, size_t *ret_n)
{
    size_t np = json_array_size(set), m = 0;
    uint16_t *arr = np ? xcalloc(np, sizeof(uint16_t)) : NULL;
    size_t j;
    json_t *e;
    json_array_foreach(set, j, e) {
        uint32_t v;
        if (json_is_string(e) && parse_u32(json_string_value(e), &v) == 0 && v <= 65535)
            arr[m++] = (uint16_t) v;
    }
    *ret_n = m;
    return arr;
}

static void on_task(cp *c, const key_parts *kp, const store_kv *old, const store_kv *new)
{
    cp_cluster_idx *cl = cluster_idx(c, kp->scope, kp->cluster, true);
    cp_task_info *prev = sk_omap_remove(cl->tasks, kp->id);
    cp_task_info saved_prev = prev ? *prev : (cp_task_info){ 0 };
    if (prev) {
        if (prev->instance_id)
            cp_acs_instance_changed(c, kp->scope, kp->cluster, prev->instance_id);
        task_count(cl, prev, -1);
        saved_prev.started_by = saved_prev.service_name = NULL;
        task_info_free(prev);
    }
    if (!new)
        return;
    json_t *doc = json_loadb(new->value, new->len, 0, NULL);
    if (!doc)
        return;
    cp_task_info *t = xcalloc(1, sizeof(*t));
    t->key = xstrdup(new->key);
    t->id = xstrdup(kp->id);
    t->arn = dup_or_null(js_str(doc, "taskArn"));
    t->td_arn = dup_or_null(js_str(doc, "taskDefinitionArn"));
    json_t *internal = js_obj(doc, "_skiff");
    t->family = dup_or_null(js_str(internal, "family"));
    t->instance_id = dup_or_null(js_str(internal, "instanceId"));
    t->started_by = dup_or_null(js_str(doc, "startedBy"));
    t->group = dup_or_null(js_str(doc, "group"));
    const char *g = t->group ? startswith(t->group, "service:") : NULL;
    t->service_name = dup_or_null(g);
    t->launch_type = dup_or_null(js_str(doc, "launchType"));
    t->desired = cp_task_status_from(js_str(doc, "desiredStatus"));
    t->last = cp_task_status_from(js_str(doc, "lastStatus"));
    t->created_at = (usec_t) (json_number_value(json_object_get(doc, "createdAt")) * 1e6);
    t->started_at = (usec_t) (json_number_value(json_object_get(doc, "startedAt")) * 1e6);
    bool has_check = false;
    size_t ci;
    json_t *ce;
    json_array_foreach(js_arr(doc, "containers"), ci, ce) {
        if (js_has(ce, "healthStatus"))
            has_check = true;
    }
    if (has_check) {
        const char *hs = js_str_or(doc, "healthStatus", "UNKNOWN");
        t->health = streq(hs, "HEALTHY") ? 'H' : streq(hs, "UNHEALTHY") ? 'U' : '?';
    }
    json_t *prot = js_obj(js_obj(doc, "_skiff"), "protection");
    t->protected_ = js_bool(prot, "enabled", false) &&
                    json_number_value(json_object_get(prot, "expirationDate")) * 1e6 >
                            (double) now_realtime();
    t->stopped_at = (usec_t) (json_number_value(json_object_get(doc, "stoppedAt")) * 1e6);
    json_t *rsv = js_obj(internal, "reserved");
    if (t->instance_id && rsv && !js_bool(internal, "released", false)) {
        t->reserves = true;
        t->rsv_cpu = js_int(rsv, "cpu", 0);
        t->rsv_memory = js_int(rsv, "memory", 0);
        t->rsv_ports[0] = parse_ports(js_arr(rsv, "ports"), &t->rsv_nports[0]);
        t->rsv_ports[1] = parse_ports(js_arr(rsv, "portsUdp"), &t->rsv_nports[1]);
    }
    t->cluster = cl;
    json_decref(doc);
    sk_omap_put(cl->tasks, kp->id, t);
    task_count(cl, t, +1);
    if (t->instance_id)
        cp_acs_instance_changed(c, kp->scope, kp->cluster, t->instance_id);
    note_outcome(c, kp, prev ? &saved_prev : NULL, t);
}

static bool instance_registered(const char *status)
{
    return status && (streq(status, "ACTIVE") || streq(status, "DRAINING"));
}

static void on_instance(cp *c, const key_parts *kp, const store_kv *old, const store_kv *new)
{
    cp_cluster_idx *cl = cluster_idx(c, kp->scope, kp->cluster, true);
    cp_acs_instance_changed(c, kp->scope, kp->cluster, kp->id);
    cp_instance_info *prev = sk_omap_remove(cl->instances, kp->id);
    unsigned running = 0, pending = 0;
    usec_t last_seen = 0, prev_watched = 0;
    unsigned polls_held = 0;
    sk_vec tasks = { 0 };
    size_t slot = SIZE_MAX;
    int64_t used_cpu = 0, used_memory = 0;
    uint16_t *used_ports[2] = { NULL, NULL };
    size_t nused[2] = { 0, 0 }, capused[2] = { 0, 0 };
    if (prev) {
        prev_watched = prev->watched_since;
        if (instance_registered(prev->status) && !prev->managed)
            cl->registered_instances--;
        running = prev->running_tasks;
        pending = prev->pending_tasks;
        last_seen = prev->last_seen;
        polls_held = prev->polls_held;
        slot = prev->slot;
        tasks = prev->tasks;
        prev->tasks = (sk_vec){ 0 };
        used_cpu = prev->used_cpu;
        used_memory = prev->used_memory;
        for (int k = 0; k < 2; k++) {
            used_ports[k] = prev->used_ports[k];
            nused[k] = prev->nused_ports[k];
            capused[k] = prev->capused_ports[k];
            prev->used_ports[k] = NULL;
        }
        instance_info_free(prev);
    }
    json_t *doc = new ? json_loadb(new->value, new->len, 0, NULL) : NULL;
    if (!doc) {
        if (slot != SIZE_MAX)
            slot_release(cl, slot);
        sk_vec_done(&tasks, NULL);
        free(used_ports[0]);
        free(used_ports[1]);
        return;
    }
    cp_instance_info *in = xcalloc(1, sizeof(*in));
    in->key = xstrdup(new->key);
    in->id = xstrdup(kp->id);
    in->arn = dup_or_null(js_str(doc, "containerInstanceArn"));
    in->status = xstrdup(js_str_or(doc, "status", "ACTIVE"));
    in->ec2_instance_id = dup_or_null(js_str(doc, "ec2InstanceId"));
    in->managed = js_bool(js_obj(doc, "_skiff"), "managed", false);
    in->fargate_ok = js_bool(js_obj(doc, "_skiff"), "fargate", in->managed);
    in->ec2_ok = !in->managed;
    in->running_tasks = running;
    in->pending_tasks = pending;
    in->last_seen = last_seen;
    in->polls_held = polls_held;
    in->watched_since = prev_watched ? prev_watched : now_monotonic();
    in->active = streq(in->status, "ACTIVE");
    in->inactive = streq(in->status, "INACTIVE");
    in->tasks = tasks;
    in->used_cpu = used_cpu;
    in->used_memory = used_memory;
    for (int k = 0; k < 2; k++) {
        in->used_ports[k] = used_ports[k];
        in->nused_ports[k] = nused[k];
        in->capused_ports[k] = capused[k];
    }
    in->doc = doc;
    in->cluster = cl;
    json_t *reg = js_arr(doc, "registeredResources");
    in->reg_cpu = js_int(cp_resource_find(reg, "CPU"), "integerValue", 0);
    in->reg_memory = js_int(cp_resource_find(reg, "MEMORY"), "integerValue", 0);
    in->ports[0] =
            parse_ports(js_arr(cp_resource_find(reg, "PORTS"), "stringSetValue"), &in->nports[0]);
    in->ports[1] = parse_ports(js_arr(cp_resource_find(reg, "PORTS_UDP"), "stringSetValue"),
                               &in->nports[1]);
    json_t *attrs = js_arr(doc, "attributes");
    in->attrs = xcalloc(json_array_size(attrs) + 1, sizeof(sched_attr));
    size_t j;
    json_t *a;
    json_array_foreach(attrs, j, a) {
        if (!js_str(a, "name"))
            continue;
        in->attrs[in->nattrs++] = (sched_attr){ js_str(a, "name"), js_str(a, "value") };
    }
    in->registered_at = (usec_t) (json_number_value(json_object_get(doc, "registeredAt")) * 1e6);
    in->agent_version = js_str(js_obj(doc, "versionInfo"), "agentVersion");
    sk_omap_put(cl->instances, kp->id, in);
    if (slot == SIZE_MAX)
        in->slot = slot_alloc(cl, in);
    else {
        in->slot = slot;
        cl->slots[slot] = in;
    }
    if (instance_registered(in->status) && !in->managed)
        cl->registered_instances++;
}

static void on_service(cp *c, const key_parts *kp, const store_kv *old, const store_kv *new)
{
    cp_sched_kick(c);
    cp_cluster_idx *cl = cluster_idx(c, kp->scope, kp->cluster, true);
    if (old) {
        json_t *d = json_loadb(old->value, old->len, 0, NULL);
        const char *st = js_str(d, "status");
        if (st && streq(st, "ACTIVE"))
            cl->active_services--;
        else if (st && streq(st, "DRAINING"))
            cl->draining_services--;
        json_decref(d);
    }
    if (new) {
        json_t *d = json_loadb(new->value, new->len, 0, NULL);
        const char *st = js_str(d, "status");
        if (st && streq(st, "ACTIVE"))
            cl->active_services++;
        else if (st && streq(st, "DRAINING"))
            cl->draining_services++;
        json_decref(d);
    }
}

static void on_taskdef(cp *c, const key_parts *kp, const store_kv *old, const store_kv *new);

static void on_change(void *userdata, const store_kv *old, const store_kv *new)
{
    cp *c = userdata;
    const char *key = new ? new->key : old->key;
    key_parts kp;
    if (parse_key(key, &kp) < 0)
        return;
    if (streq(kp.kind, "task") && kp.id[0])
        on_task(c, &kp, old, new);
    else if (streq(kp.kind, "ci") && kp.id[0])
        on_instance(c, &kp, old, new);
    else if (streq(kp.kind, "svc") && kp.id[0])
        on_service(c, &kp, old, new);
    else if (streq(kp.kind, "td") && !kp.id[0])
        on_taskdef(c, &kp, old, new);
}

static cp_family_idx *family_idx(cp *c, const char *scope, const char *family, bool create)
{
    char k[512];
    snprintf(k, sizeof(k), "%s/%s", scope, family);
    cp_family_idx *f = sk_hmap_get(&c->families, k);
    if (f || !create)
        return f;
    f = xcalloc(1, sizeof(*f));
    f->key = xstrdup(k);
    sk_hmap_put(&c->families, f->key, f);
    return f;
}

static void family_set(cp_family_idx *f, int64_t rev, bool active)
{
    /* Revisions mostly arrive in increasing order: search from the end. */
    size_t i = f->n;
    while (i > 0 && f->active[i - 1] > rev)
        i--;
    bool present = i > 0 && f->active[i - 1] == rev;
    if (active && !present) {
        if (f->n == f->cap) {
            f->cap = f->cap ? f->cap * 2 : 8;
            f->active = xrealloc(f->active, f->cap * sizeof(int64_t));
        }
        memmove(f->active + i + 1, f->active + i, (f->n - i) * sizeof(int64_t));
        f->active[i] = rev;
        f->n++;
    } else if (!active && present) {
        memmove(f->active + i - 1, f->active + i, (f->n - i) * sizeof(int64_t));
        f->n--;
    }
}

static void on_taskdef(cp *c, const key_parts *kp, const store_kv *old, const store_kv *new)
{
    /* kp->cluster holds "FAMILY!REV" */
    const char *bang = strrchr(kp->cluster, '!');
    int64_t rev;
    if (!bang || parse_i64(bang + 1, &rev) < 0)
        return;
    char family[256];
    snprintf(family, sizeof(family), "%.*s", (int) (bang - kp->cluster), kp->cluster);
    bool active = false;
    if (new) {
        /* Records carry a copy of the status as their first member (keys are
         * stored sorted); older records are parsed. */
        static const char head[] = "{\"status\":\"";
        if (strncmp(new->value, head, sizeof(head) - 1) == 0)
            active = strncmp(new->value + sizeof(head) - 1, "ACTIVE\"", 7) == 0;
        else if (strstr(new->value, "\"ACTIVE\"")) {
            json_t *d = json_loadb(new->value, new->len, 0, NULL);
            active = streq_ptr(js_str(js_obj(d, "taskDefinition"), "status"), "ACTIVE");
            json_decref(d);
        }
    }
    cp_family_idx *f = family_idx(c, kp->scope, family, active);
    if (f)
        family_set(f, rev, active);
}

int64_t cp_td_latest_active(cp *c, const aws_ctx *ctx, const char *family)
{
    char scope[128];
    snprintf(scope, sizeof(scope), "%s/%s", ctx->account, ctx->region);
    cp_family_idx *f = family_idx(c, scope, family, false);
    return f && f->n ? f->active[f->n - 1] : 0;
}

static bool load_one(const store_kv *kv, void *userdata)
{
    on_change(userdata, NULL, kv);
    return true;
}

void cp_index_init(cp *c)
{
    sk_hmap_init(&c->clusters);
    sk_hmap_init(&c->families);
    c->loading = true;
    store_range(c->st, "ecs/", NULL, load_one, c);
    c->loading = false;
    store_watch(c->st, "ecs/", on_change, c);
}

static void free_task_v(void *p)
{
    task_info_free(p);
}

static void free_instance_v(void *p)
{
    instance_info_free(p);
}

void cp_index_done(cp *c)
{
    size_t it = 0;
    void *v;
    while (sk_hmap_next(&c->clusters, &it, NULL, &v)) {
        cp_cluster_idx *cl = v;
        sk_omap_free(cl->tasks, free_task_v);
        sk_omap_free(cl->instances, free_instance_v);
        const char *gk;
        void *gv;
        for (size_t git = 0; sk_hmap_next(&cl->groups, &git, &gk, &gv);)
            group_idx_free(gv);
        sk_hmap_done(&cl->groups);
        free(cl->slots);
        free(cl->free_slots);
        free(cl->scope_cluster);
        free(cl);
    }
    sk_hmap_done(&c->clusters);
    it = 0;
    while (sk_hmap_next(&c->families, &it, NULL, &v)) {
        cp_family_idx *f = v;
        free(f->active);
        free(f->key);
        free(f);
    }
    sk_hmap_done(&c->families);
}

cp_task_info *cp_task_find(cp *c, const aws_ctx *ctx, const char *cluster, const char *id)
{
    cp_cluster_idx *cl = cp_cluster_idx_get(c, ctx, cluster, false);
    return cl ? sk_omap_get(cl->tasks, id) : NULL;
}

cp_instance_info *cp_instance_find(cp *c, const aws_ctx *ctx, const char *cluster, const char *id)
{
    cp_cluster_idx *cl = cp_cluster_idx_get(c, ctx, cluster, false);
    return cl ? sk_omap_get(cl->instances, id) : NULL;
}

bool cp_instance_connected_at(cp *c, const cp_instance_info *ci, usec_t now)
{
    if (ci->polls_held)
        return true;
    if (!ci->last_seen)
        return false;
    return now - ci->last_seen < (usec_t) c->cfg.agent_timeout_sec * USEC_PER_SEC;
}

bool cp_instance_connected(cp *c, const cp_instance_info *ci)
{
    return cp_instance_connected_at(c, ci, now_monotonic());
}

static cp_instance_info *instance_lookup(cp *c, const char *account, const char *region,
                                         const char *cluster, const char *instance_id)
{
    char scope[128];
    snprintf(scope, sizeof(scope), "%s/%s", account, region);
    cp_cluster_idx *cl = cluster_idx(c, scope, cluster, false);
    return cl ? sk_omap_get(cl->instances, instance_id) : NULL;
}

void cp_instance_touch(cp *c, const char *account, const char *region, const char *cluster,
                       const char *instance_id)
{
    cp_instance_info *in = instance_lookup(c, account, region, cluster, instance_id);
    if (in)
        in->last_seen = now_monotonic();
}

void cp_instance_poll_held(cp *c, const char *account, const char *region, const char *cluster,
                           const char *instance_id, bool held)
{
    cp_instance_info *in = instance_lookup(c, account, region, cluster, instance_id);
    if (!in)
        return;
    in->last_seen = now_monotonic();
    if (held)
        in->polls_held++;
    else if (in->polls_held)
        in->polls_held--;
}
