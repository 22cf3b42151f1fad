/* Tasks: RunTask/StartTask with resource accounting, StopTask, DescribeTasks,
 * ListTasks, task protection, and the agent-facing state-change calls that
 * drive a task through PENDING → RUNNING → STOPPED. */
#include <string.h>

#include "basic/alloc.h"
#include "basic/rand.h"
#include "basic/strutil.h"
#include "cp-internal.h"
#include "cp-place.h"
#include "cp-task.h"
#include "shared/digest.h"

static char *task_id_from(const char *ref, const char *cluster)
{
    if (!ref || !*ref)
        return NULL;
    if (startswith(ref, "arn:")) {
        cp_arn_parts p;
        if (cp_arn_parse(ref, &p) < 0 || !streq(p.type, "task"))
            return NULL;
        const char *slash = strrchr(p.rest, '/');
        if (slash) {
            if (cluster && (size_t) (slash - p.rest) != strlen(cluster))
                return NULL;
            if (cluster && strncmp(p.rest, cluster, (size_t) (slash - p.rest)) != 0)
                return NULL;
            return xstrdup(slash + 1);
        }
        return xstrdup(p.rest);
    }
    if (strchr(ref, '/') || strlen(ref) > 64)
        return NULL;
    return xstrdup(ref);
}

/* Container definition merged with its override. */
static json_t *container_override(const json_t *overrides, const char *name)
{
    size_t i;
    json_t *o;
    json_array_foreach(js_arr(overrides, "containerOverrides"), i, o) {
        if (streq_ptr(js_str(o, "name"), name))
            return o;
    }
    return NULL;
}

void cp_task_requirements(const json_t *td, const json_t *overrides, cp_task_req *req)
{
    memset(req, 0, sizeof(*req));
    req->ports = json_array();
    req->ports_udp = json_array();
    int64_t v;
    const char *cpu = js_str(overrides, "cpu") ? js_str(overrides, "cpu") : js_str(td, "cpu");
    const char *mem =
            js_str(overrides, "memory") ? js_str(overrides, "memory") : js_str(td, "memory");
    bool task_cpu = cpu && parse_i64(cpu, &v) == 0;
    if (task_cpu)
        req->cpu = v;
    bool task_mem = mem && parse_i64(mem, &v) == 0;
    if (task_mem)
        req->memory = v;
    const char *mode = js_str_or(td, "networkMode", "bridge");
    bool host_ports = streq(mode, "bridge") || streq(mode, "host");
    size_t i;
    json_t *c;
    json_array_foreach(js_arr(td, "containerDefinitions"), i, c) {
        json_t *o = container_override(overrides, js_str_or(c, "name", ""));
        if (!task_cpu)
            req->cpu += js_has(o, "cpu") ? js_int(o, "cpu", 0) : js_int(c, "cpu", 0);
        if (!task_mem) {
            int64_t res = js_has(o, "memoryReservation") ? js_int(o, "memoryReservation", 0)
                                                         : js_int(c, "memoryReservation", 0);
            int64_t hard = js_has(o, "memory") ? js_int(o, "memory", 0) : js_int(c, "memory", 0);
            req->memory += res ? res : hard;
        }
        if (!host_ports)
            continue;
        size_t j;
        json_t *pm;
        json_array_foreach(js_arr(c, "portMappings"), j, pm) {
            int64_t hp = js_int(pm, "hostPort", 0);
            if (streq(mode, "host") && hp == 0)
                hp = js_int(pm, "containerPort", 0);
            if (hp <= 0)
                continue;
            char b[24];
            snprintf(b, sizeof(b), "%lld", (long long) hp);
            json_t *set = streq_ptr(js_str(pm, "protocol"), "udp") ? req->ports_udp : req->ports;
            if (!js_array_has_str(set, b))
                json_array_append_new(set, json_string(b));
        }
    }
}

void cp_task_req_done(cp_task_req *req)
{
    json_decref(req->ports);
    json_decref(req->ports_udp);
}

static json_t *reserved_json(const cp_task_req *req)
{
    return json_pack("{s:I, s:I, s:O, s:O}", "cpu", (json_int_t) req->cpu, "memory",
                     (json_int_t) req->memory, "ports", req->ports, "portsUdp", req->ports_udp);
}

static const char *instance_attribute(const json_t *doc, const char *name)
{
    size_t i;
    json_t *a;
    json_array_foreach(js_arr(doc, "attributes"), i, a) {
        if (streq_ptr(js_str(a, "name"), name))
            return js_str(a, "value");
    }
    return NULL;
}

json_t *cp_task_build(cp *c, const aws_ctx *ctx, const char *cluster, const json_t *td,
                      const cp_task_params *p, const cp_instance_info *in, const cp_task_req *req)
{
    char id[33];
    random_hex(id, 32);
    _cleanup_free_ char *arn = cp_arn(ctx, "task/%s/%s", cluster, id);
    _cleanup_free_ char *cluster_arn = cp_arn(ctx, "cluster/%s", cluster);
    usec_t now = now_realtime();
    const char *mode = js_str_or(td, "networkMode", "bridge");
    bool awsvpc = streq(mode, "awsvpc");
    json_t *t = json_object();
    js_set_str(t, "taskArn", arn);
    js_set_str(t, "clusterArn", cluster_arn);
    js_set_str(t, "taskDefinitionArn", js_str(td, "taskDefinitionArn"));
    if (in)
        js_set_str(t, "containerInstanceArn", in->arn);
    json_t *ov = p->overrides ? json_deep_copy(p->overrides) : json_object();
    js_ensure_arr(ov, "containerOverrides");
    js_ensure_arr(ov, "inferenceAcceleratorOverrides");
    js_set(t, "overrides", ov);
    js_set_str(t, "lastStatus", awsvpc ? "PROVISIONING" : "PENDING");
    js_set_str(t, "desiredStatus", "RUNNING");
    char b[24];
    snprintf(b, sizeof(b), "%lld", (long long) req->cpu);
    js_set_str(t, "cpu", b);
    snprintf(b, sizeof(b), "%lld", (long long) req->memory);
    js_set_str(t, "memory", b);
    json_t *containers = json_array();
    size_t i;
    json_t *cd;
    json_array_foreach(js_arr(td, "containerDefinitions"), i, cd) {
        char uuid[37];
        random_uuid(uuid);
        _cleanup_free_ char *carn = cp_arn(ctx, "container/%s/%s/%s", cluster, id, uuid);
        const char *name = js_str_or(cd, "name", "");
        json_t *o = container_override(p->overrides, name);
        json_t *ce = json_object();
        js_set_str(ce, "containerArn", carn);
        js_set_str(ce, "taskArn", arn);
        js_set_str(ce, "name", name);
        js_set_str(ce, "image", js_str(cd, "image"));
        js_set_str(ce, "lastStatus", "PENDING");
        js_set(ce, "networkInterfaces", json_array());
        snprintf(b, sizeof(b), "%lld",
                 (long long) (js_has(o, "cpu") ? js_int(o, "cpu", 0) : js_int(cd, "cpu", 0)));
        js_set_str(ce, "cpu", b);
        int64_t m = js_has(o, "memory") ? js_int(o, "memory", 0) : js_int(cd, "memory", 0);
        if (m) {
            snprintf(b, sizeof(b), "%lld", (long long) m);
            js_set_str(ce, "memory", b);
        }
        int64_t mr = js_has(o, "memoryReservation") ? js_int(o, "memoryReservation", 0)
                                                    : js_int(cd, "memoryReservation", 0);
        if (mr) {
            snprintf(b, sizeof(b), "%lld", (long long) mr);
            js_set_str(ce, "memoryReservation", b);
        }
        if (js_obj(cd, "healthCheck"))
            js_set_str(ce, "healthStatus", "UNKNOWN");
        json_array_append_new(containers, ce);
    }
    js_set(t, "containers", containers);
    if (p->started_by)
        js_set_str(t, "startedBy", p->started_by);
    js_set_int(t, "version", 1);
    js_set_time(t, "createdAt", now);
    char group[300];
    if (p->group)
        snprintf(group, sizeof(group), "%s", p->group);
    else
        snprintf(group, sizeof(group), "family:%s", js_str_or(td, "family", ""));
    js_set_str(t, "group", group);
    js_set_str(t, "launchType", p->launch_type ? p->launch_type : "EC2");
    if (p->capacity_provider)
        js_set_str(t, "capacityProviderName", p->capacity_provider);
    if (p->launch_type && streq(p->launch_type, "FARGATE")) {
        js_set_str(t, "platformVersion", p->platform_version ? p->platform_version : "1.4.0");
        js_set_str(t, "platformFamily", "Linux");
        js_set(t, "ephemeralStorage", json_pack("{s:i}", "sizeInGiB", 20));
    }
    js_set_str(t, "connectivity", "CONNECTED");
    js_set_time(t, "connectivityAt", now);
    json_t *atts = json_array();
    if (awsvpc) {
        char uuid[37];
        random_uuid(uuid);
        json_t *details = json_array();
        json_t *vpc = js_obj(js_obj(p->network_configuration, "awsvpcConfiguration"), NULL);
        (void) vpc;
        json_t *subnets =
                js_arr(js_obj(p->network_configuration, "awsvpcConfiguration"), "subnets");
        if (json_array_size(subnets))
            json_array_append_new(details,
                                  json_pack("{s:s, s:s}", "name", "subnetId", "value",
                                            json_string_value(json_array_get(subnets, 0))));
        json_array_append_new(atts, json_pack("{s:s, s:s, s:s, s:o}", "id", uuid, "type",
                                              "ElasticNetworkInterface", "status", "PRECREATED",
                                              "details", details));
    }
    js_set(t, "attachments", atts);
    js_set(t, "tags", p->tags ? json_deep_copy(p->tags) : json_array());
    const char *az = in ? instance_attribute(in->doc, "ecs.availability-zone") : NULL;
    if (az)
        js_set_str(t, "availabilityZone", az);
    js_set_bool(t, "enableExecuteCommand", p->enable_execute_command);
    const char *arch = in ? instance_attribute(in->doc, "ecs.cpu-architecture") : NULL;
    js_set(t, "attributes",
           json_pack("[{s:s, s:s}]", "name", "ecs.cpu-architecture", "value",
                     arch ? arch : "x86_64"));
    json_t *internal = js_ensure_obj(t, "_skiff");
    js_set_str(internal, "family", js_str(td, "family"));
    js_set_int(internal, "revision", js_int(td, "revision", 0));
    js_set_str(internal, "cluster", cluster);
    if (in)
        js_set_str(internal, "instanceId", in->id);
    js_set(internal, "reserved", reserved_json(req));
    if (p->network_configuration)
        js_set(internal, "networkConfiguration", json_deep_copy(p->network_configuration));
    return t;
}

static int check_overrides(const json_t *td, const json_t *overrides, sk_err *err)
{
    size_t i;
    json_t *o;
    json_array_foreach(js_arr(overrides, "containerOverrides"), i, o) {
        const char *n = js_str(o, "name");
        bool found = false;
        size_t j;
        json_t *cd;
        json_array_foreach(js_arr(td, "containerDefinitions"), j, cd) {
            if (streq_ptr(js_str(cd, "name"), n))
                found = true;
        }
        if (!found)
            return cp_err_invalid(
                    err,
                    "Override for container named %s is not a container in the TaskDefinition.",
                    n ? n : "");
    }
    const char *cpu = js_str(overrides, "cpu"), *mem = js_str(overrides, "memory");
    int64_t v;
    if (cpu && (parse_i64(cpu, &v) < 0 || v < 1))
        return cp_err_invalid(err, "Invalid 'cpu' override.");
    if (mem && (parse_i64(mem, &v) < 0 || v < 6))
        return cp_err_invalid(err, "Invalid 'memory' override.");
    return 0;
}

/* Resolves launch type / capacity provider from the request and cluster. */
static int resolve_launch(const json_t *in, const json_t *cluster_doc, const json_t *td,
                          const char **ret_launch, const char **ret_provider, sk_err *err)
{
    const char *lt = js_str(in, "launchType");
    json_t *strategy = js_arr(in, "capacityProviderStrategy");
    if (lt && strategy && json_array_size(strategy))
        return cp_err_invalid(
                err,
                "Specifying both a launch type and capacity provider strategy is not supported. Remove one and try again.");
    const char *provider = NULL;
    if (!lt) {
        json_t *s = strategy && json_array_size(strategy)
                            ? strategy
                            : js_arr(cluster_doc, "defaultCapacityProviderStrategy");
        if (s && json_array_size(s)) {
            /* Weighted choice is the placement engine's job; take the first with weight or base. */
            size_t i;
            json_t *e;
            json_array_foreach(s, i, e) {
                if (js_int(e, "weight", 0) > 0 || js_int(e, "base", 0) > 0) {
                    provider = js_str(e, "capacityProvider");
                    break;
                }
            }
            if (!provider)
                provider = js_str(json_array_get(s, 0), "capacityProvider");
            if (strategy && json_array_size(strategy) &&
                !js_array_has_str(js_arr(cluster_doc, "capacityProviders"), provider))
                return cp_err_invalid(
                        err,
                        "The specified capacity provider strategy cannot contain a capacity provider that is not associated with the cluster. Associate the capacity provider with the cluster or specify a valid capacity provider and try again.");
            lt = provider && (streq(provider, "FARGATE") || streq(provider, "FARGATE_SPOT"))
                         ? "FARGATE"
                         : "EC2";
        } else
            lt = "EC2";
    }
    if (streq(lt, "FARGATE") && !js_array_has_str(js_arr(td, "compatibilities"), "FARGATE"))
        return cp_err_invalid(err, "Task definition does not support launch_type FARGATE.");
    const char *mode = js_str_or(td, "networkMode", "bridge");
    if (streq(mode, "awsvpc")) {
        json_t *vpc = js_obj(js_obj(in, "networkConfiguration"), "awsvpcConfiguration");
        if (!vpc)
            return cp_err_invalid(
                    err,
                    "Network Configuration must be provided when networkMode 'awsvpc' is specified.");
    } else if (js_obj(in, "networkConfiguration")) {
        return cp_err_invalid(
                err,
                "Network Configuration is not valid for the given networkMode of this task definition.");
    }
    *ret_launch = lt;
    *ret_provider = provider;
    return 0;
}

/* Places count tasks with the placement engine and stages the task documents
 * in txn. Each task document records what it reserves on its instance; the
 * index derives the instance's remaining resources from those. */
static void place(cp *c, const aws_ctx *ctx, const char *cluster, const json_t *td,
                  const cp_task_params *p, const cp_task_req *req, const cp_place_spec *spec,
                  int count, const sk_vec *only, json_t *tasks, json_t *failures, store_txn *txn)
{
    cp_cluster_idx *cl = cp_cluster_idx_get(c, ctx, cluster, false);
    bool fargate = p->launch_type && streq(p->launch_type, "FARGATE");
    char group[300];
    if (p->group)
        snprintf(group, sizeof(group), "%s", p->group);
    else
        snprintf(group, sizeof(group), "family:%s", js_str_or(td, "family", ""));
    cp_instance_info **chosen =
            xcalloc((size_t) (count > 0 ? count : 1), sizeof(cp_instance_info *));
    unsigned placed =
            cp_place(c, cl, spec, req, group, fargate, only, (unsigned) count, chosen, failures);
    for (unsigned k = 0; k < placed; k++) {
        cp_instance_info *in = chosen[k];
        json_t *t = cp_task_build(c, ctx, cluster, td, p, in, req);
        const char *tarn = js_str(t, "taskArn");
        _cleanup_free_ char *tkey = cp_key(ctx, "task", "%s/%s", cluster, strrchr(tarn, '/') + 1);
        store_txn_put_json(txn, tkey, t);
        json_array_append_new(tasks, t);
    }
    free(chosen);
}

static json_t *task_view(const json_t *doc, bool tags)
{
    json_t *o = cp_public(doc);
    if (!tags)
        js_set(o, "tags", NULL);
    return o;
}

static void run_or_start(aws_call *call, bool start)
{
    cp *c = cp_of(call);
    const aws_ctx *ctx = aws_call_ctx(call);
    json_t *in = aws_call_input(call);
    sk_err err = { 0 };
    _cleanup_free_ char *cluster = NULL;
    _cleanup_json_ json_t *cdoc = NULL;
    _cleanup_json_ json_t *td = NULL;
    if (cp_cluster_get(c, ctx, js_str(in, "cluster"), true, &cluster, &cdoc, &err) < 0 ||
        cp_taskdef_resolve(c, ctx, js_str_or(in, "taskDefinition", ""), true, &td, &err) < 0)
        return cp_fail(call, &err);
    /* RunTask is idempotent per clientToken: the same request answers with the
     * same tasks; the token with different parameters is a conflict. */
    const char *token = start ? NULL : js_str(in, "clientToken");
    _cleanup_free_ char *token_key = NULL;
    char req_hash[SHA256_HEX_LEN + 1] = "";
    if (token) {
        if (strlen(token) > 64) {
            cp_err_invalid(&err, "clientToken must be at most 64 characters.");
            return cp_fail(call, &err);
        }
        char th[SHA256_HEX_LEN + 1];
        sha256_hex(token, strlen(token), th);
        token_key = cp_key(ctx, "token", "%s/%s", cluster, th);
        json_t *canon = json_deep_copy(in);
        js_set(canon, "clientToken", NULL);
        size_t clen;
        char *cs = store_json_dump(canon, &clen);
        sha256_hex(cs, clen, req_hash);
        free(cs);
        json_decref(canon);
        _cleanup_json_ json_t *prev = store_get_json(c->st, token_key);
        if (prev) {
            if (!streq_ptr(js_str(prev, "requestHash"), req_hash)) {
                sk_err_typed(
                        &err, SK_E_CONFLICT, "ConflictException",
                        "The specified client token has already been used in a request with different parameters.");
                return cp_fail(call, &err);
            }
            json_t *views = json_array();
            size_t ti;
            json_t *ta;
            json_array_foreach(js_arr(prev, "taskArns"), ti, ta) {
                const char *arn = json_string_value(ta);
                const char *slash = arn ? strrchr(arn, '/') : NULL;
                if (!slash)
                    continue;
                _cleanup_free_ char *tk = cp_key(ctx, "task", "%s/%s", cluster, slash + 1);
                _cleanup_json_ json_t *tdoc = store_get_json(c->st, tk);
                if (tdoc)
                    json_array_append_new(views, task_view(tdoc, true));
            }
            aws_reply(call, json_pack("{s:o, s:[]}", "tasks", views, "failures"));
            return;
        }
    }
    int64_t count = js_int(in, "count", 1);
    if (!start && (count < 1 || count > CP_MAX_TASKS_PER_RUN)) {
        cp_err_invalid(&err, "Count must be between 1 and %d.", CP_MAX_TASKS_PER_RUN);
        return cp_fail(call, &err);
    }
    const char *group = js_str(in, "group");
    if (group && (strlen(group) > 255 || !*group)) {
        cp_err_invalid(&err, "Task group must be between 1 and 255 characters.");
        return cp_fail(call, &err);
    }
    const char *started_by = js_str(in, "startedBy");
    if (started_by && strlen(started_by) > 128) {
        cp_err_invalid(&err, "startedBy must be at most 128 characters.");
        return cp_fail(call, &err);
    }
    json_t *overrides = js_obj(in, "overrides");
    if (cp_tags_validate(js_arr(in, "tags"), &err) < 0 || check_overrides(td, overrides, &err) < 0)
        return cp_fail(call, &err);
    const char *lt = "EC2", *provider = NULL;
    if (!start && resolve_launch(in, cdoc, td, &lt, &provider, &err) < 0)
        return cp_fail(call, &err);
    if (start) {
        const char *mode = js_str_or(td, "networkMode", "bridge");
        if (streq(mode, "awsvpc") &&
            !js_obj(js_obj(in, "networkConfiguration"), "awsvpcConfiguration")) {
            cp_err_invalid(
                    &err,
                    "Network Configuration must be provided when networkMode 'awsvpc' is specified.");
            return cp_fail(call, &err);
        }
    }
    json_t *tags = js_arr(in, "tags") ? json_deep_copy(js_arr(in, "tags")) : json_array();
    const char *prop = js_str(in, "propagateTags");
    if (prop && streq(prop, "TASK_DEFINITION")) {
        _cleanup_free_ char *tdkey =
                cp_td_key(ctx, js_str_or(td, "family", ""), js_int(td, "revision", 0));
        _cleanup_json_ json_t *rec = store_get_json(c->st, tdkey);
        json_t *tdtags = js_arr(rec, "tags");
        json_t *merged = json_deep_copy(tdtags ? tdtags : json_array());
        cp_tags_merge(merged, tags);
        json_decref(tags);
        tags = merged;
    }
    cp_task_params p = {
        .overrides = overrides,
        .started_by = started_by,
        .group = group,
        .launch_type = lt,
        .capacity_provider = provider,
        .platform_version = js_str(in, "platformVersion"),
        .network_configuration = js_obj(in, "networkConfiguration"),
        .tags = tags,
        .enable_execute_command = js_bool(in, "enableExecuteCommand", false),
    };
    cp_place_spec spec = { 0 };
    if (cp_place_spec_parse(td, start ? NULL : js_arr(in, "placementConstraints"),
                            start ? NULL : js_arr(in, "placementStrategy"), false, &spec,
                            &err) < 0) {
        json_decref(tags);
        return cp_fail(call, &err);
    }
    cp_task_req req;
    cp_task_requirements(td, overrides, &req);
    json_t *tasks = json_array(), *failures = json_array();
    store_txn *txn = store_txn_new(c->st);
    sk_vec only = { 0 };
    if (start) {
        json_t *refs = js_arr(in, "containerInstances");
        if (json_array_size(refs) < 1 || json_array_size(refs) > 10) {
            store_txn_free(txn);
            cp_task_req_done(&req);
            cp_place_spec_done(&spec);
            json_decref(tasks);
            json_decref(failures);
            json_decref(tags);
            cp_err_invalid(&err, "You must specify between 1 and 10 container instances.");
            return cp_fail(call, &err);
        }
        size_t i;
        json_t *r;
        json_array_foreach(refs, i, r) {
            char *id = cp_instance_id_from(json_string_value(r), cluster);
            if (!id || !cp_instance_find(c, ctx, cluster, id)) {
                json_array_append_new(failures, cp_failure(json_string_value(r), "MISSING", NULL));
                free(id);
                continue;
            }
            sk_vec only1 = { 0 };
            sk_vec_push(&only1, id);
            place(c, ctx, cluster, td, &p, &req, &spec, 1, &only1, tasks, failures, txn);
            sk_vec_done(&only1, free);
        }
    } else {
        cp_cluster_idx *cl = cp_cluster_idx_get(c, ctx, cluster, false);
        bool fargate = streq(lt, "FARGATE");
        bool any = false;
        for (sk_omap_node *n = cl ? sk_omap_seek(cl->instances, NULL) : NULL; n;
             n = sk_omap_next(n)) {
            cp_instance_info *ci = sk_omap_node_value(n);
            if ((fargate ? ci->fargate_ok : ci->ec2_ok) && !ci->inactive) {
                any = true;
                break;
            }
        }
        if (!any && !fargate) {
            store_txn_free(txn);
            cp_task_req_done(&req);
            cp_place_spec_done(&spec);
            json_decref(tasks);
            json_decref(failures);
            json_decref(tags);
            cp_err_invalid(&err, "No Container Instances were found in your cluster.");
            return cp_fail(call, &err);
        }
        place(c, ctx, cluster, td, &p, &req, &spec, (int) count, NULL, tasks, failures, txn);
    }
    sk_vec_done(&only, free);
    cp_place_spec_done(&spec);
    cp_task_req_done(&req);
    json_decref(tags);
    if (token_key && json_array_size(tasks)) {
        json_t *arns = json_array();
        size_t ti;
        json_t *tt;
        json_array_foreach(tasks, ti, tt)
            json_array_append_new(arns, json_string(js_str_or(tt, "taskArn", "")));
        json_t *rec = json_pack("{s:s, s:o}", "requestHash", req_hash, "taskArns", arns);
        js_set_time(rec, "createdAt", now_realtime());
        store_txn_put_json(txn, token_key, rec);
        json_decref(rec);
    }
    if (store_txn_commit(txn, &err) < 0) {
        json_decref(tasks);
        json_decref(failures);
        return cp_fail(call, &err);
    }
    json_t *views = json_array();
    size_t i;
    json_t *t;
    json_array_foreach(tasks, i, t)
        json_array_append_new(views, task_view(t, true));
    json_decref(tasks);
    aws_reply(call, json_pack("{s:o, s:o}", "tasks", views, "failures", failures));
}

CP_HANDLER(run_task)
{
    run_or_start(call, false);
}

CP_HANDLER(start_task)
{
    run_or_start(call, true);
}

/* Moves a task document to STOPPED (containers included) and releases it. */
void cp_task_mark_stopped(cp *c, const aws_ctx *ctx, store_txn *txn, json_t *task,
                          const char *cluster, const char *default_reason, const char *stop_code)
{
    usec_t now = now_realtime();
    js_set_str(task, "lastStatus", "STOPPED");
    js_set_str(task, "desiredStatus", "STOPPED");
    if (!js_str(task, "stoppedReason") && default_reason)
        js_set_str(task, "stoppedReason", default_reason);
    if (!js_str(task, "stopCode") && stop_code)
        js_set_str(task, "stopCode", stop_code);
    if (!js_has(task, "stoppingAt"))
        js_set_time(task, "stoppingAt", now);
    if (!js_has(task, "executionStoppedAt"))
        js_set_time(task, "executionStoppedAt", now);
    js_set_time(task, "stoppedAt", now);
    size_t i;
    json_t *ce;
    json_array_foreach(js_arr(task, "containers"), i, ce)
        js_set_str(ce, "lastStatus", "STOPPED");
    json_array_foreach(js_arr(task, "attachments"), i, ce)
        js_set_str(ce, "status", "DELETED");
    js_set_bool(js_ensure_obj(task, "_skiff"), "released", true);
    js_set_int(task, "version", js_int(task, "version", 0) + 1);
}

void cp_tasks_stop_on_instance(cp *c, const aws_ctx *ctx, const char *cluster, const char *id,
                               const char *reason, bool force_stopped)
{
    cp_instance_info *in = cp_instance_find(c, ctx, cluster, id);
    if (!in)
        return;
    sk_vec keys = { 0 };
    for (size_t i = 0; i < in->tasks.len; i++)
        sk_vec_push(&keys, xstrdup(((cp_task_info *) in->tasks.items[i])->key));
    store_txn *txn = store_txn_new(c->st);
    for (size_t i = 0; i < keys.len; i++) {
        json_t *doc = store_get_json(c->st, keys.items[i]);
        if (!doc)
            continue;
        if (!streq_ptr(js_str(doc, "desiredStatus"), "STOPPED")) {
            js_set_str(doc, "desiredStatus", "STOPPED");
            js_set_str(doc, "stoppedReason", reason);
            js_set_str(doc, "stopCode", "ServiceSchedulerInitiated");
            js_set_time(doc, "stoppingAt", now_realtime());
            js_set_int(doc, "version", js_int(doc, "version", 0) + 1);
        }
        if (force_stopped)
            cp_task_mark_stopped(c, ctx, txn, doc, cluster, reason, "ServiceSchedulerInitiated");
        store_txn_put_json(txn, keys.items[i], doc);
        json_decref(doc);
    }
    sk_err err = { 0 };
    store_txn_commit(txn, &err);
    sk_err_done(&err);
    sk_vec_done(&keys, free);
}

CP_HANDLER(stop_task)
{
    cp *c = cp_of(call);
    const aws_ctx *ctx = aws_call_ctx(call);
    json_t *in = aws_call_input(call);
    sk_err err = { 0 };
    _cleanup_free_ char *cluster = NULL;
    if (cp_cluster_get(c, ctx, js_str(in, "cluster"), false, &cluster, NULL, &err) < 0)
        return cp_fail(call, &err);
    const char *reason = js_str(in, "reason");
    if (reason && strlen(reason) > 255) {
        cp_err_invalid(&err, "The reason must be at most 255 characters.");
        return cp_fail(call, &err);
    }
    _cleanup_free_ char *id = task_id_from(js_str(in, "task"), cluster);
    _cleanup_free_ char *key = id ? cp_key(ctx, "task", "%s/%s", cluster, id) : NULL;
    _cleanup_json_ json_t *doc = key ? store_get_json(c->st, key) : NULL;
    if (!doc) {
        cp_err_invalid(&err, "The referenced task was not found.");
        return cp_fail(call, &err);
    }
    if (!streq_ptr(js_str(doc, "desiredStatus"), "STOPPED")) {
        js_set_str(doc, "desiredStatus", "STOPPED");
        js_set_str(doc, "stoppedReason", reason ? reason : "Task stopped by user");
        js_set_str(doc, "stopCode", "UserInitiated");
        js_set_time(doc, "stoppingAt", now_realtime());
        js_set_int(doc, "version", js_int(doc, "version", 0) + 1);
        store_txn *txn = store_txn_new(c->st);
        /* Without an instance (or with a deregistered one) nobody else will stop it. */
        const char *iid = js_str(js_obj(doc, "_skiff"), "instanceId");
        cp_instance_info *inst = iid ? cp_instance_find(c, ctx, cluster, iid) : NULL;
        if (!inst || streq(inst->status, "INACTIVE"))
            cp_task_mark_stopped(c, ctx, txn, doc, cluster, "Task stopped by user",
                                 "UserInitiated");
        store_txn_put_json(txn, key, doc);
        if (store_txn_commit(txn, &err) < 0)
            return cp_fail(call, &err);
    }
    aws_reply(call, json_pack("{s:o}", "task", task_view(doc, true)));
}

CP_HANDLER(describe_tasks)
{
    cp *c = cp_of(call);
    const aws_ctx *ctx = aws_call_ctx(call);
    json_t *in = aws_call_input(call);
    _cleanup_free_ char *cluster = NULL;
    json_t *refs;
    if (cp_cluster_list_arg(call, "tasks", 100, "tasks", &cluster, &refs) < 0)
        return;
    bool tags = js_array_has_str(js_arr(in, "include"), "TAGS");
    json_t *out = json_array(), *failures = json_array();
    size_t i;
    json_t *r;
    json_array_foreach(refs, i, r) {
        const char *ref = json_string_value(r);
        _cleanup_free_ char *id = task_id_from(ref, cluster);
        _cleanup_free_ char *key = id ? cp_key(ctx, "task", "%s/%s", cluster, id) : NULL;
        const store_kv *kv = key ? store_get(c->st, key) : NULL;
        _cleanup_json_ json_t *doc = kv ? json_loadb(kv->value, kv->len, 0, NULL) : NULL;
        if (!doc) {
            _cleanup_free_ char *arn = id && !startswith(ref, "arn:")
                                               ? cp_arn(ctx, "task/%s/%s", cluster, id)
                                               : xstrdup(ref ? ref : "");
            json_array_append_new(failures, cp_failure(arn, "MISSING", NULL));
            continue;
        }
        json_array_append_new(out, task_view(doc, tags));
    }
    aws_reply(call, json_pack("{s:o, s:o}", "tasks", out, "failures", failures));
}

CP_HANDLER(list_tasks)
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
    const char *family = js_str(in, "family"), *started_by = js_str(in, "startedBy"),
               *service = js_str(in, "serviceName"), *lt = js_str(in, "launchType");
    const char *desired = js_str_or(in, "desiredStatus", "RUNNING");
    _cleanup_free_ char *inst = NULL;
    if (js_str(in, "containerInstance")) {
        inst = cp_instance_id_from(js_str(in, "containerInstance"), cluster);
        if (!inst) {
            cp_err_invalid(&err, "Invalid containerInstance.");
            return cp_fail(call, &err);
        }
    }
    cp_task_status want = cp_task_status_from(desired);
    json_t *arns = json_array();
    json_t *out = json_object();
    cp_cluster_idx *cl = cp_cluster_idx_get(c, ctx, cluster, false);
    const char *last_id = NULL;
    for (sk_omap_node *n = cl ? sk_omap_seek(cl->tasks, start) : NULL; n; n = sk_omap_next(n)) {
        cp_task_info *t = sk_omap_node_value(n);
        if (start && strcmp(t->id, start) <= 0)
            continue;
        bool match;
        if (want == CP_TS_STOPPED)
            match = t->desired == CP_TS_STOPPED;
        else if (want == CP_TS_PENDING)
            match = t->desired != CP_TS_STOPPED && t->last <= CP_TS_ACTIVATING;
        else
            match = t->desired != CP_TS_STOPPED;
        if (!match)
            continue;
        if (family && !streq_ptr(t->family, family))
            continue;
        if (started_by && !streq_ptr(t->started_by, started_by))
            continue;
        if (service && !streq_ptr(t->service_name, service))
            continue;
        if (lt && !streq_ptr(t->launch_type, lt))
            continue;
        if (inst && !streq_ptr(t->instance_id, inst))
            continue;
        if ((int) json_array_size(arns) >= limit) {
            cp_page_token(c, out, last_id);
            break;
        }
        json_array_append_new(arns, json_string(t->arn ? t->arn : ""));
        last_id = t->id;
    }
    js_set(out, "taskArns", arns);
    aws_reply(call, out);
}

/* --- task protection --- */

static json_t *protection_view(const json_t *doc)
{
    json_t *prot = js_obj(js_obj(doc, "_skiff"), "protection");
    bool enabled = js_bool(prot, "enabled", false);
    double exp = json_number_value(json_object_get(prot, "expirationDate"));
    if (enabled && exp > 0 && exp * 1e6 < (double) now_realtime())
        enabled = false;
    json_t *o = json_pack("{s:s, s:b}", "taskArn", js_str_or(doc, "taskArn", ""),
                          "protectionEnabled", enabled);
    if (enabled && exp > 0)
        js_set(o, "expirationDate", json_real(exp));
    return o;
}

static void protection_common(aws_call *call, bool update)
{
    cp *c = cp_of(call);
    const aws_ctx *ctx = aws_call_ctx(call);
    json_t *in = aws_call_input(call);
    sk_err err = { 0 };
    _cleanup_free_ char *cluster = NULL;
    json_t *refs;
    if (cp_cluster_list_arg(call, "tasks", 10, "tasks", &cluster, &refs) < 0)
        return;
    bool enable = js_bool(in, "protectionEnabled", false);
    int64_t minutes = js_int(in, "expiresInMinutes", 120);
    if (update && enable && (minutes < 1 || minutes > 2880)) {
        cp_err_invalid(&err, "expiresInMinutes must be between 1 and 2880.");
        return cp_fail(call, &err);
    }
    json_t *out = json_array(), *failures = json_array();
    store_txn *txn = update ? store_txn_new(c->st) : NULL;
    size_t i;
    json_t *r;
    json_array_foreach(refs, i, r) {
        const char *ref = json_string_value(r);
        _cleanup_free_ char *id = task_id_from(ref, cluster);
        _cleanup_free_ char *key = id ? cp_key(ctx, "task", "%s/%s", cluster, id) : NULL;
        _cleanup_json_ json_t *doc = key ? store_get_json(c->st, key) : NULL;
        if (!doc) {
            json_array_append_new(failures, cp_failure(ref, "MISSING", NULL));
            continue;
        }
        if (!startswith(js_str_or(doc, "group", ""), "service:")) {
            json_array_append_new(failures, cp_failure(js_str(doc, "taskArn"), "TASK_NOT_VALID",
                                                       "The task is not part of a service."));
            continue;
        }
        if (update) {
            if (streq_ptr(js_str(doc, "lastStatus"), "STOPPED")) {
                json_array_append_new(failures, cp_failure(js_str(doc, "taskArn"), "TASK_NOT_VALID",
                                                           "The task is stopped."));
                continue;
            }
            json_t *prot = json_object();
            js_set_bool(prot, "enabled", enable);
            if (enable)
                js_set_time(prot, "expirationDate",
                            now_realtime() + (usec_t) minutes * 60 * USEC_PER_SEC);
            js_set(js_ensure_obj(doc, "_skiff"), "protection", prot);
            js_set_int(doc, "version", js_int(doc, "version", 0) + 1);
            store_txn_put_json(txn, key, doc);
        }
        json_array_append_new(out, protection_view(doc));
    }
    if (txn && store_txn_commit(txn, &err) < 0) {
        json_decref(out);
        json_decref(failures);
        return cp_fail(call, &err);
    }
    aws_reply(call, json_pack("{s:o, s:o}", "protectedTasks", out, "failures", failures));
}

CP_HANDLER(get_task_protection)
{
    protection_common(call, false);
}

CP_HANDLER(update_task_protection)
{
    protection_common(call, true);
}
