/* Container instances: registration (by agents), description, listing with
 * the cluster query language, state changes and custom attributes. */
#include <ctype.h>
#include <string.h>

#include "basic/alloc.h"
#include "basic/rand.h"
#include "basic/strutil.h"
#include "cp-internal.h"
#include "cp-query.h"
#include "scheduler/query.h"

#define MAX_CUSTOM_ATTRIBUTES 10

static const char *const default_reserved_ports[] = { "22", "2375", "2376", "51678", "51679" };

bool cp_attribute_builtin(const char *name)
{
    return startswith(name, "ecs.") || startswith(name, "com.amazonaws.ecs.") ||
           startswith(name, "skiff.");
}

static bool attr_name_ok(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > 128)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!(isalnum((unsigned char) s[i]) || strchr("-_/.", s[i])))
            return false;
    return true;
}

static bool attr_value_ok(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > 128)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!(isalnum((unsigned char) s[i]) || strchr("-_.@/:, ", s[i])))
            return false;
    return true;
}

static json_t *resource_int(const char *name, int64_t v)
{
    return json_pack("{s:s, s:s, s:f, s:i, s:I}", "name", name, "type", "INTEGER", "doubleValue",
                     0.0, "longValue", 0, "integerValue", (json_int_t) v);
}

static json_t *resource_set(const char *name, json_t *set)
{
    return json_pack("{s:s, s:s, s:f, s:i, s:i, s:o}", "name", name, "type", "STRINGSET",
                     "doubleValue", 0.0, "longValue", 0, "integerValue", 0, "stringSetValue", set);
}

json_t *cp_resource_find(json_t *resources, const char *name)
{
    size_t i;
    json_t *r;
    json_array_foreach(resources, i, r) {
        if (streq_ptr(js_str(r, "name"), name))
            return r;
    }
    return NULL;
}

/* Normalises the agent's totalResources into AWS's shape. */
static int normalize_resources(const json_t *in, json_t **ret, sk_err *err)
{
    int64_t cpu = 0, mem = 0;
    json_t *ports = NULL, *ports_udp = NULL, *extra = json_array();
    size_t i;
    json_t *r;
    json_array_foreach(in, i, r) {
        const char *n = js_str(r, "name");
        if (!n) {
            json_decref(extra);
            json_decref(ports);
            json_decref(ports_udp);
            return cp_err_invalid(err, "Resource names must be specified.");
        }
        if (streq(n, "CPU"))
            cpu = js_int(r, "integerValue", 0);
        else if (streq(n, "MEMORY"))
            mem = js_int(r, "integerValue", 0);
        else if (streq(n, "PORTS") || streq(n, "PORTS_UDP")) {
            json_t *set = json_array();
            size_t j;
            json_t *p;
            json_array_foreach(js_arr(r, "stringSetValue"), j, p) {
                uint32_t v;
                if (!json_is_string(p) || parse_u32(json_string_value(p), &v) < 0 || v > 65535) {
                    json_decref(set);
                    json_decref(extra);
                    json_decref(ports);
                    json_decref(ports_udp);
                    return cp_err_invalid(err, "Invalid port in %s resource.", n);
                }
                if (!js_array_has_str(set, json_string_value(p)))
                    json_array_append(set, p);
            }
            if (streq(n, "PORTS")) {
                json_decref(ports);
                ports = set;
            } else {
                json_decref(ports_udp);
                ports_udp = set;
            }
        } else
            json_array_append_new(extra, json_deep_copy(r));
    }
    if (cpu < 0 || mem < 0) {
        json_decref(extra);
        json_decref(ports);
        json_decref(ports_udp);
        return cp_err_invalid(err, "CPU and MEMORY resources must not be negative.");
    }
    if (!ports) {
        ports = json_array();
        for (size_t k = 0; k < ELEMENTSOF(default_reserved_ports); k++)
            json_array_append_new(ports, json_string(default_reserved_ports[k]));
    }
    json_t *out = json_array();
    json_array_append_new(out, resource_int("CPU", cpu));
    json_array_append_new(out, resource_int("MEMORY", mem));
    json_array_append_new(out, resource_set("PORTS", ports));
    json_array_append_new(out, resource_set("PORTS_UDP", ports_udp ? ports_udp : json_array()));
    json_array_extend(out, extra);
    json_decref(extra);
    *ret = out;
    return 0;
}

static void merge_attributes(json_t *dst, const json_t *add)
{
    size_t i;
    json_t *a;
    json_array_foreach(add, i, a) {
        const char *n = js_str(a, "name");
        bool found = false;
        size_t j;
        json_t *d;
        json_array_foreach(dst, j, d) {
            if (streq_ptr(js_str(d, "name"), n)) {
                js_set(d, "value", json_incref(json_object_get(a, "value")));
                found = true;
                break;
            }
        }
        if (!found) {
            json_t *copy = json_object();
            js_set_str(copy, "name", n);
            if (js_str(a, "value"))
                js_set_str(copy, "value", js_str(a, "value"));
            json_array_append_new(dst, copy);
        }
    }
}

static unsigned custom_attribute_count(const json_t *attrs)
{
    unsigned n = 0;
    size_t i;
    json_t *a;
    json_array_foreach(attrs, i, a) {
        if (!cp_attribute_builtin(js_str_or(a, "name", "")))
            n++;
    }
    return n;
}

/* The view DescribeContainerInstances returns. */
json_t *cp_instance_view(cp *c, cp_instance_info *in, const json_t *doc, bool tags)
{
    json_t *o = cp_public(doc);
    js_set_bool(o, "agentConnected", in ? cp_instance_connected(c, in) : false);
    js_set_int(o, "runningTasksCount", in ? in->running_tasks : 0);
    js_set_int(o, "pendingTasksCount", in ? in->pending_tasks : 0);
    js_set(o, "remainingResources",
           in ? cp_instance_remaining(in) : json_deep_copy(js_arr(doc, "registeredResources")));
    if (!tags)
        js_set(o, "tags", json_array());
    return o;
}

static char *instance_id_from(const char *ref, const char *cluster)
{
    if (!ref)
        return NULL;
    if (startswith(ref, "arn:")) {
        cp_arn_parts p;
        if (cp_arn_parse(ref, &p) < 0 || !streq(p.type, "container-instance"))
            return NULL;
        const char *slash = strrchr(p.rest, '/');
        if (slash) {
            if (cluster && strncmp(p.rest, cluster, (size_t) (slash - p.rest)) != 0)
                return NULL;
            return xstrdup(slash + 1);
        }
        return xstrdup(p.rest);
    }
    if (strchr(ref, '/'))
        return NULL;
    return xstrdup(ref);
}

char *cp_instance_id_from(const char *ref, const char *cluster)
{
    return instance_id_from(ref, cluster);
}

CP_HANDLER(register_container_instance)
{
    cp *c = cp_of(call);
    const aws_ctx *ctx = aws_call_ctx(call);
    json_t *in = aws_call_input(call);
    sk_err err = { 0 };
    _cleanup_free_ char *cluster = NULL;
    _cleanup_json_ json_t *cdoc = NULL;
    if (cp_cluster_get(c, ctx, js_str(in, "cluster"), true, &cluster, &cdoc, &err) < 0)
        return cp_fail(call, &err);
    json_t *attrs_in = js_arr(in, "attributes");
    size_t i;
    json_t *a;
    json_array_foreach(attrs_in, i, a) {
        if (!attr_name_ok(js_str(a, "name")) ||
            (js_has(a, "value") && !attr_value_ok(js_str(a, "value")))) {
            cp_err_invalid(
                    &err,
                    "Attribute names and values must be 1-128 characters of letters, numbers and -_/. (values also @:, space).");
            return cp_fail(call, &err);
        }
    }
    if (custom_attribute_count(attrs_in) > MAX_CUSTOM_ATTRIBUTES) {
        sk_err_typed(&err, SK_E_LIMIT, "AttributeLimitExceededException",
                     "You can have a maximum of %d custom attributes per resource.",
                     MAX_CUSTOM_ATTRIBUTES);
        return cp_fail(call, &err);
    }
    if (cp_tags_validate(js_arr(in, "tags"), &err) < 0)
        return cp_fail(call, &err);
    _cleanup_json_ json_t *resources = NULL;
    if (normalize_resources(js_arr(in, "totalResources"), &resources, &err) < 0)
        return cp_fail(call, &err);

    /* Re-registration keeps the identity of a known instance. */
    _cleanup_free_ char *id = NULL;
    _cleanup_json_ json_t *doc = NULL;
    const char *prev_ref = js_str(in, "containerInstanceArn");
    if (prev_ref) {
        id = instance_id_from(prev_ref, cluster);
        if (id) {
            _cleanup_free_ char *k = cp_key(ctx, "ci", "%s/%s", cluster, id);
            doc = store_get_json(c->st, k);
            if (doc && streq_ptr(js_str(doc, "status"), "INACTIVE")) {
                json_decref(doc);
                doc = NULL;
            }
        }
        if (!doc) {
            free(id);
            id = NULL;
        }
    }
    bool fresh = !doc;
    if (fresh) {
        char hex[33];
        random_hex(hex, 32);
        id = xstrdup(hex);
        doc = json_object();
        _cleanup_free_ char *arn = cp_arn(ctx, "container-instance/%s/%s", cluster, id);
        js_set_str(doc, "containerInstanceArn", arn);
        js_set_time(doc, "registeredAt", now_realtime());
        js_set_int(doc, "version", 0);
    }
    const char *iid_doc = js_str(in, "instanceIdentityDocument");
    _cleanup_json_ json_t *iid = iid_doc ? json_loads(iid_doc, 0, NULL) : NULL;
    if (js_str(iid, "instanceId"))
        js_set_str(doc, "ec2InstanceId", js_str(iid, "instanceId"));
    else if (!js_str(doc, "ec2InstanceId")) {
        char buf[20];
        snprintf(buf, sizeof(buf), "i-%.17s", id);
        js_set_str(doc, "ec2InstanceId", buf);
    }
    js_set_str(doc, "status", "ACTIVE");
    js_set(doc, "statusReason", NULL);
    js_set(doc, "registeredResources", json_deep_copy(resources));
    /* remainingResources is derived from the tasks (cp_instance_remaining). */
    js_set(doc, "remainingResources", NULL);
    if (js_obj(in, "versionInfo"))
        js_set(doc, "versionInfo", json_deep_copy(js_obj(in, "versionInfo")));
    else if (!js_obj(doc, "versionInfo"))
        js_set(doc, "versionInfo", json_object());
    json_t *attrs = fresh ? json_array() : json_incref(js_ensure_arr(doc, "attributes"));
    /* Builtin attributes are replaced wholesale by what the agent reports now. */
    json_t *kept = json_array();
    json_array_foreach(attrs, i, a) {
        if (!cp_attribute_builtin(js_str_or(a, "name", "")))
            json_array_append(kept, a);
    }
    json_decref(attrs);
    merge_attributes(kept, attrs_in);
    if (custom_attribute_count(kept) > MAX_CUSTOM_ATTRIBUTES) {
        json_decref(kept);
        sk_err_typed(&err, SK_E_LIMIT, "AttributeLimitExceededException",
                     "You can have a maximum of %d custom attributes per resource.",
                     MAX_CUSTOM_ATTRIBUTES);
        return cp_fail(call, &err);
    }
    js_set(doc, "attributes", kept);
    if (js_arr(in, "tags")) {
        json_t *tags = js_ensure_arr(doc, "tags");
        cp_tags_merge(tags, js_arr(in, "tags"));
    } else
        js_ensure_arr(doc, "tags");
    js_ensure_arr(doc, "attachments");
    js_set_int(doc, "version", js_int(doc, "version", 0) + 1);
    json_t *internal = js_ensure_obj(doc, "_skiff");
    /* skiff.capacity: "EC2" (default), "FARGATE" (managed capacity, hidden from
     * ListContainerInstances) or both ("EC2,FARGATE", a single-node setup). */
    bool cap_ec2 = true, cap_fargate = false;
    json_array_foreach(attrs_in, i, a) {
        if (!streq_ptr(js_str(a, "name"), "skiff.capacity"))
            continue;
        const char *v = js_str_or(a, "value", "");
        cap_fargate = strstr(v, "FARGATE") != NULL;
        cap_ec2 = strstr(v, "EC2") != NULL || !cap_fargate;
    }
    bool managed = cap_fargate && !cap_ec2;
    js_set_bool(internal, "managed", managed);
    js_set_bool(internal, "fargate", cap_fargate);
    if (managed)
        js_set_str(doc, "capacityProviderName", "FARGATE");
    _cleanup_free_ char *key = cp_key(ctx, "ci", "%s/%s", cluster, id);
    if (store_put_json(c->st, key, doc, &err) < 0)
        return cp_fail(call, &err);
    cp_instance_touch(c, ctx->account, ctx->region, cluster, id);
    cp_instance_info *info = cp_instance_find(c, ctx, cluster, id);
    aws_reply(call, json_pack("{s:o}", "containerInstance", cp_instance_view(c, info, doc, true)));
}

CP_HANDLER(deregister_container_instance)
{
    cp *c = cp_of(call);
    const aws_ctx *ctx = aws_call_ctx(call);
    json_t *in = aws_call_input(call);
    sk_err err = { 0 };
    _cleanup_free_ char *cluster = NULL;
    if (cp_cluster_get(c, ctx, js_str(in, "cluster"), false, &cluster, NULL, &err) < 0)
        return cp_fail(call, &err);
    _cleanup_free_ char *id = instance_id_from(js_str(in, "containerInstance"), cluster);
    _cleanup_free_ char *key = id ? cp_key(ctx, "ci", "%s/%s", cluster, id) : NULL;
    _cleanup_json_ json_t *doc = key ? store_get_json(c->st, key) : NULL;
    if (!doc) {
        cp_err_invalid(&err, "The referenced container instance %s was not found.",
                       js_str_or(in, "containerInstance", ""));
        return cp_fail(call, &err);
    }
    cp_instance_info *info = cp_instance_find(c, ctx, cluster, id);
    bool force = js_bool(in, "force", false);
    if (info && info->running_tasks + info->pending_tasks > 0 && !force) {
        cp_err_invalid(
                &err,
                "Found running tasks on the instance. Set force to true to deregister the instance anyway.");
        return cp_fail(call, &err);
    }
    if (force)
        cp_tasks_stop_on_instance(c, ctx, cluster, id,
                                  "Container instance deregistration forced by user", false);
    js_set_str(doc, "status", "INACTIVE");
    js_set_int(doc, "version", js_int(doc, "version", 0) + 1);
    js_set_time(js_ensure_obj(doc, "_skiff"), "deregisteredAt", now_realtime());
    if (store_put_json(c->st, key, doc, &err) < 0)
        return cp_fail(call, &err);
    info = cp_instance_find(c, ctx, cluster, id);
    aws_reply(call, json_pack("{s:o}", "containerInstance", cp_instance_view(c, info, doc, false)));
}

CP_HANDLER(describe_container_instances)
{
    cp *c = cp_of(call);
    const aws_ctx *ctx = aws_call_ctx(call);
    json_t *in = aws_call_input(call);
    _cleanup_free_ char *cluster = NULL;
    json_t *refs;
    if (cp_cluster_list_arg(call, "containerInstances", 100, "container instances", &cluster,
                            &refs) < 0)
        return;
    bool tags = js_array_has_str(js_arr(in, "include"), "TAGS");
    json_t *out = json_array(), *failures = json_array();
    size_t i;
    json_t *r;
    json_array_foreach(refs, i, r) {
        const char *ref = json_string_value(r);
        _cleanup_free_ char *id = instance_id_from(ref, cluster);
        _cleanup_free_ char *key = id ? cp_key(ctx, "ci", "%s/%s", cluster, id) : NULL;
        _cleanup_json_ json_t *doc = key ? store_get_json(c->st, key) : NULL;
        if (!doc) {
            _cleanup_free_ char *arn =
                    id && !startswith(ref, "arn:")
                            ? cp_arn(ctx, "container-instance/%s/%s", cluster, id)
                            : xstrdup(ref);
            json_array_append_new(failures, cp_failure(arn, "MISSING", NULL));
            continue;
        }
        json_array_append_new(
                out, cp_instance_view(c, cp_instance_find(c, ctx, cluster, id), doc, tags));
    }
    aws_reply(call, json_pack("{s:o, s:o}", "containerInstances", out, "failures", failures));
}

/* Query-language view of an instance. */
typedef struct qtarget {
    cp *c;
    cp_instance_info *in;
} qtarget;

static const char *q_attribute(void *ud, const char *name)
{
    qtarget *t = ud;
    for (size_t i = 0; i < t->in->nattrs; i++)
        if (streq(t->in->attrs[i].name, name))
            return t->in->attrs[i].value ? t->in->attrs[i].value : "";
    return NULL;
}

static bool q_has_task_group(void *ud, const char *group)
{
    qtarget *t = ud;
    return cp_instance_group_count(t->in, group) > 0;
}

void cp_query_target_init(cp *c, cp_instance_info *in, sched_query_target *qt, void *storage)
{
    qtarget *t = storage;
    t->c = c;
    t->in = in;
    *qt = (sched_query_target){
        .attribute = q_attribute,
        .has_task_group = q_has_task_group,
        .userdata = t,
        .agent_connected = cp_instance_connected(c, in),
        .agent_version = in->agent_version,
        .ec2_instance_id = in->ec2_instance_id,
        .registered_at_usec = in->registered_at,
        .running_tasks_count = in->running_tasks,
    };
}

CP_HANDLER(list_container_instances)
{
    cp *c = cp_of(call);
    const aws_ctx *ctx = aws_call_ctx(call);
    json_t *in = aws_call_input(call);
    sk_err err = { 0 };
    _cleanup_free_ char *cluster = NULL;
    if (cp_cluster_get(c, ctx, js_str(in, "cluster"), false, &cluster, NULL, &err) < 0)
        return cp_fail(call, &err);
    int limit;
    _cleanup_free_ char *start = NULL;
    if (cp_page_args(c, in, 100, 100, &limit, &start, &err) < 0)
        return cp_fail(call, &err);
    sched_query *q = NULL;
    if (js_str(in, "filter") && sched_query_parse(js_str(in, "filter"), &q, &err) < 0) {
        sk_err_wrap(&err, "Invalid filter");
        err.type = "InvalidParameterException";
        err.code = SK_E_INVALID;
        return cp_fail(call, &err);
    }
    const char *status = js_str(in, "status");
    json_t *arns = json_array();
    json_t *out = json_object();
    cp_cluster_idx *cl = cp_cluster_idx_get(c, ctx, cluster, false);
    for (sk_omap_node *n = cl ? sk_omap_seek(cl->instances, start) : NULL; n; n = sk_omap_next(n)) {
        cp_instance_info *ci = sk_omap_node_value(n);
        if (start && strcmp(ci->id, start) <= 0)
            continue;
        if (ci->managed)
            continue;
        if (status ? !streq(ci->status, status)
                   : !(streq(ci->status, "ACTIVE") || streq(ci->status, "DRAINING")))
            continue;
        if (q) {
            sched_query_target qt;
            qtarget storage;
            cp_query_target_init(c, ci, &qt, &storage);
            if (!sched_query_eval(q, &qt))
                continue;
        }
        if ((int) json_array_size(arns) >= limit) {
            /* position is exclusive: resume after the last returned id */
            const char *last = json_string_value(json_array_get(arns, json_array_size(arns) - 1));
            const char *slash = last ? strrchr(last, '/') : NULL;
            cp_page_token(c, out, slash ? slash + 1 : "");
            break;
        }
        json_array_append_new(arns, json_string(ci->arn ? ci->arn : ""));
    }
    sched_query_free(q);
    js_set(out, "containerInstanceArns", arns);
    aws_reply(call, out);
}

CP_HANDLER(update_container_instances_state)
{
    cp *c = cp_of(call);
    const aws_ctx *ctx = aws_call_ctx(call);
    json_t *in = aws_call_input(call);
    sk_err err = { 0 };
    _cleanup_free_ char *cluster = NULL;
    if (cp_cluster_get(c, ctx, js_str(in, "cluster"), false, &cluster, NULL, &err) < 0)
        return cp_fail(call, &err);
    const char *status = js_str_or(in, "status", "");
    if (!streq(status, "ACTIVE") && !streq(status, "DRAINING")) {
        cp_err_invalid(&err, "Container instance status must be ACTIVE or DRAINING.");
        return cp_fail(call, &err);
    }
    json_t *refs = js_arr(in, "containerInstances");
    if (json_array_size(refs) > 10) {
        cp_err_invalid(&err, "The number of container instances must be at most 10.");
        return cp_fail(call, &err);
    }
    json_t *out = json_array(), *failures = json_array();
    size_t i;
    json_t *r;
    json_array_foreach(refs, i, r) {
        const char *ref = json_string_value(r);
        _cleanup_free_ char *id = instance_id_from(ref, cluster);
        _cleanup_free_ char *key = id ? cp_key(ctx, "ci", "%s/%s", cluster, id) : NULL;
        _cleanup_json_ json_t *doc = key ? store_get_json(c->st, key) : NULL;
        if (!doc || streq_ptr(js_str(doc, "status"), "INACTIVE")) {
            json_array_append_new(failures, cp_failure(ref, "MISSING", NULL));
            continue;
        }
        if (!streq_ptr(js_str(doc, "status"), status)) {
            js_set_str(doc, "status", status);
            js_set_int(doc, "version", js_int(doc, "version", 0) + 1);
            if (store_put_json(c->st, key, doc, &err) < 0) {
                json_array_append_new(failures, cp_failure(ref, sk_err_msg(&err), NULL));
                sk_err_done(&err);
                continue;
            }
        }
        json_array_append_new(
                out, cp_instance_view(c, cp_instance_find(c, ctx, cluster, id), doc, false));
    }
    aws_reply(call, json_pack("{s:o, s:o}", "containerInstances", out, "failures", failures));
}

/* --- attributes --- */

static int attr_target(cp *c, const aws_ctx *ctx, const char *cluster, const json_t *attr,
                       char **ret_key, json_t **ret_doc, sk_err *err)
{
    const char *tt = js_str_or(attr, "targetType", "container-instance");
    if (!streq(tt, "container-instance"))
        return cp_err_invalid(err, "Invalid targetType '%s'.", tt);
    const char *tid = js_str(attr, "targetId");
    if (!tid)
        return cp_err_invalid(err, "targetId must be specified.");
    _cleanup_free_ char *id = instance_id_from(tid, cluster);
    _cleanup_free_ char *key = id ? cp_key(ctx, "ci", "%s/%s", cluster, id) : NULL;
    json_t *doc = key ? store_get_json(c->st, key) : NULL;
    if (!doc)
        return sk_err_typed(err, SK_E_NOT_FOUND, "TargetNotFoundException", "Could not find %s.",
                            tid);
    *ret_key = TAKE_PTR(key);
    *ret_doc = doc;
    return 0;
}

CP_HANDLER(put_attributes)
{
    cp *c = cp_of(call);
    const aws_ctx *ctx = aws_call_ctx(call);
    json_t *in = aws_call_input(call);
    sk_err err = { 0 };
    _cleanup_free_ char *cluster = NULL;
    if (cp_cluster_get(c, ctx, js_str(in, "cluster"), false, &cluster, NULL, &err) < 0)
        return cp_fail(call, &err);
    json_t *attrs = js_arr(in, "attributes");
    if (json_array_size(attrs) > 10) {
        cp_err_invalid(&err, "You can specify at most 10 attributes.");
        return cp_fail(call, &err);
    }
    store_txn *t = store_txn_new(c->st);
    json_t *docs = json_object(); /* key -> doc, so several attributes on one target combine */
    size_t i;
    json_t *a;
    json_array_foreach(attrs, i, a) {
        if (!attr_name_ok(js_str(a, "name")) ||
            (js_has(a, "value") && !attr_value_ok(js_str(a, "value")))) {
            cp_err_invalid(&err, "Invalid attribute name or value.");
            goto fail;
        }
        _cleanup_free_ char *key = NULL;
        json_t *doc = NULL;
        if (attr_target(c, ctx, cluster, a, &key, &doc, &err) < 0)
            goto fail;
        json_t *held = json_object_get(docs, key);
        if (held)
            json_decref(doc);
        else {
            json_object_set_new(docs, key, doc);
            held = doc;
        }
        json_t *one = json_array();
        json_array_append_new(one, json_pack("{s:s}", "name", js_str(a, "name")));
        if (js_str(a, "value"))
            js_set_str(json_array_get(one, 0), "value", js_str(a, "value"));
        merge_attributes(js_ensure_arr(held, "attributes"), one);
        json_decref(one);
        if (custom_attribute_count(js_arr(held, "attributes")) > MAX_CUSTOM_ATTRIBUTES) {
            sk_err_typed(&err, SK_E_LIMIT, "AttributeLimitExceededException",
                         "You can have a maximum of %d custom attributes per resource.",
                         MAX_CUSTOM_ATTRIBUTES);
            goto fail;
        }
    }
    const char *k;
    json_t *d;
    json_object_foreach(docs, k, d) {
        js_set_int(d, "version", js_int(d, "version", 0) + 1);
        store_txn_put_json(t, k, d);
    }
    json_decref(docs);
    if (store_txn_commit(t, &err) < 0)
        return cp_fail(call, &err);
    aws_reply(call, json_pack("{s:O}", "attributes", attrs));
    return;
fail:
    json_decref(docs);
    store_txn_free(t);
    cp_fail(call, &err);
}

CP_HANDLER(delete_attributes)
{
    cp *c = cp_of(call);
    const aws_ctx *ctx = aws_call_ctx(call);
    json_t *in = aws_call_input(call);
    sk_err err = { 0 };
    _cleanup_free_ char *cluster = NULL;
    if (cp_cluster_get(c, ctx, js_str(in, "cluster"), false, &cluster, NULL, &err) < 0)
        return cp_fail(call, &err);
    json_t *attrs = js_arr(in, "attributes");
    store_txn *t = store_txn_new(c->st);
    json_t *docs = json_object();
    size_t i;
    json_t *a;
    json_array_foreach(attrs, i, a) {
        _cleanup_free_ char *key = NULL;
        json_t *doc = NULL;
        if (attr_target(c, ctx, cluster, a, &key, &doc, &err) < 0) {
            json_decref(docs);
            store_txn_free(t);
            return cp_fail(call, &err);
        }
        json_t *held = json_object_get(docs, key);
        if (held)
            json_decref(doc);
        else {
            json_object_set_new(docs, key, doc);
            held = doc;
        }
        json_t *list = js_ensure_arr(held, "attributes");
        size_t j;
        json_t *e;
        json_array_foreach(list, j, e) {
            if (streq_ptr(js_str(e, "name"), js_str(a, "name"))) {
                json_array_remove(list, j);
                break;
            }
        }
    }
    const char *k;
    json_t *d;
    json_object_foreach(docs, k, d) {
        js_set_int(d, "version", js_int(d, "version", 0) + 1);
        store_txn_put_json(t, k, d);
    }
    json_decref(docs);
    if (store_txn_commit(t, &err) < 0)
        return cp_fail(call, &err);
    aws_reply(call, json_pack("{s:O}", "attributes", attrs));
}

CP_HANDLER(list_attributes)
{
    cp *c = cp_of(call);
    const aws_ctx *ctx = aws_call_ctx(call);
    json_t *in = aws_call_input(call);
    sk_err err = { 0 };
    _cleanup_free_ char *cluster = NULL;
    if (cp_cluster_get(c, ctx, js_str(in, "cluster"), false, &cluster, NULL, &err) < 0)
        return cp_fail(call, &err);
    if (!streq_ptr(js_str(in, "targetType"), "container-instance")) {
        cp_err_invalid(&err, "targetType must be container-instance.");
        return cp_fail(call, &err);
    }
    const char *aname = js_str(in, "attributeName"), *avalue = js_str(in, "attributeValue");
    if (avalue && !aname) {
        cp_err_invalid(&err, "attributeValue can only be specified together with attributeName.");
        return cp_fail(call, &err);
    }
    int limit;
    _cleanup_free_ char *start = NULL;
    if (cp_page_args(c, in, 100, 100, &limit, &start, &err) < 0)
        return cp_fail(call, &err);
    json_t *out = json_array();
    json_t *res = json_object();
    cp_cluster_idx *cl = cp_cluster_idx_get(c, ctx, cluster, false);
    for (sk_omap_node *n = cl ? sk_omap_seek(cl->instances, NULL) : NULL; n; n = sk_omap_next(n)) {
        cp_instance_info *ci = sk_omap_node_value(n);
        if (streq(ci->status, "INACTIVE"))
            continue;
        size_t i;
        json_t *a;
        /* Pages resume by (instance, attribute name): walk names in order. */
        json_t *sorted = json_deep_copy(
                js_arr(ci->doc, "attributes") ? js_arr(ci->doc, "attributes") : json_array());
        size_t na = json_array_size(sorted);
        for (size_t x = 1; x < na; x++)
            for (size_t y = x; y > 0; y--) {
                json_t *pa = json_array_get(sorted, y - 1), *pb = json_array_get(sorted, y);
                if (strcmp(js_str_or(pa, "name", ""), js_str_or(pb, "name", "")) <= 0)
                    break;
                json_incref(pa);
                json_array_set(sorted, y - 1, pb);
                json_array_set_new(sorted, y, pa);
            }
        json_array_foreach(sorted, i, a) {
            const char *nm = js_str(a, "name"), *vl = js_str(a, "value");
            if (aname && !streq_ptr(nm, aname))
                continue;
            if (avalue && !streq_ptr(vl, avalue))
                continue;
            char pos[600];
            snprintf(pos, sizeof(pos), "%s/%s", ci->id, nm ? nm : "");
            if (start && strcmp(pos, start) <= 0)
                continue;
            if ((int) json_array_size(out) >= limit) {
                json_t *lastA = json_array_get(out, json_array_size(out) - 1);
                char lpos[600];
                const char *tid = js_str(lastA, "targetId");
                const char *slash = tid ? strrchr(tid, '/') : NULL;
                snprintf(lpos, sizeof(lpos), "%s/%s", slash ? slash + 1 : "",
                         js_str_or(lastA, "name", ""));
                cp_page_token(c, res, lpos);
                json_decref(sorted);
                goto done;
            }
            json_t *e = json_pack("{s:s, s:s, s:s}", "name", nm ? nm : "", "targetType",
                                  "container-instance", "targetId", ci->arn ? ci->arn : "");
            if (vl)
                js_set_str(e, "value", vl);
            json_array_append_new(out, e);
        }
        json_decref(sorted);
    }
done:
    js_set(res, "attributes", out);
    aws_reply(call, res);
}
