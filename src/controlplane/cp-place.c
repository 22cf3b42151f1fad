/* Glue between the control plane and the placement engine: builds the
 * engine's snapshot from the typed index, and parses placementConstraints /
 * placementStrategy as ECS validates them. */
#include <string.h>

#include "basic/alloc.h"
#include "basic/rand.h"
#include "basic/strutil.h"
#include "cp-place.h"
#include "cp-query.h"

#define MAX_CONSTRAINTS 10
#define MAX_STRATEGIES  5

void cp_place_spec_done(cp_place_spec *s)
{
    for (size_t i = 0; i < s->nmember_of; i++)
        sched_query_free((sched_query *) s->member_of[i]);
    free(s->member_of);
    free(s->strategies);
    free(s->required);
    *s = (cp_place_spec){ 0 };
}

int cp_place_spec_parse(const json_t *td, const json_t *constraints, const json_t *strategies,
                        bool service_defaults, cp_place_spec *ret, sk_err *err)
{
    cp_place_spec s = { 0 };
    json_t *tdc = js_arr(td, "placementConstraints");
    size_t total = json_array_size(tdc) + json_array_size(constraints);
    if (total > MAX_CONSTRAINTS)
        return cp_err_invalid(
                err,
                "A task can have at most %d placement constraints (task definition and request combined).",
                MAX_CONSTRAINTS);
    s.member_of = xcalloc(total + 1, sizeof(sched_query *));
    const json_t *lists[2] = { tdc, constraints };
    for (int l = 0; l < 2; l++) {
        size_t i;
        json_t *c;
        json_array_foreach(lists[l], i, c) {
            const char *type = js_str(c, "type");
            const char *expr = js_str(c, "expression");
            if (streq_ptr(type, "distinctInstance")) {
                if (expr && *expr) {
                    cp_place_spec_done(&s);
                    return cp_err_invalid(
                            err,
                            "The distinctInstance placement constraint does not take an expression.");
                }
                if (l == 0) {
                    cp_place_spec_done(&s);
                    return cp_err_invalid(
                            err, "Task definitions support only memberOf placement constraints.");
                }
                s.distinct_instance = true;
            } else if (streq_ptr(type, "memberOf")) {
                if (!expr || !*expr) {
                    cp_place_spec_done(&s);
                    return cp_err_invalid(
                            err, "The memberOf placement constraint requires an expression.");
                }
                sched_query *q = NULL;
                if (sched_query_parse(expr, &q, err) < 0) {
                    cp_place_spec_done(&s);
                    sk_err_wrap(err, "Invalid memberOf expression '%.100s'", expr);
                    err->type = "InvalidParameterException";
                    err->code = SK_E_INVALID;
                    return -1;
                }
                s.member_of[s.nmember_of++] = q;
            } else {
                cp_place_spec_done(&s);
                return cp_err_invalid(err, "Invalid placement constraint type '%s'.",
                                      type ? type : "");
            }
        }
    }
    size_t ns = json_array_size(strategies);
    if (ns > MAX_STRATEGIES) {
        cp_place_spec_done(&s);
        return cp_err_invalid(err, "At most %d placement strategies can be specified.",
                              MAX_STRATEGIES);
    }
    s.strategies = xcalloc(ns + 2, sizeof(sched_strategy));
    size_t i;
    json_t *st;
    json_array_foreach(strategies, i, st) {
        const char *type = js_str(st, "type"), *field = js_str(st, "field");
        sched_strategy x = { 0 };
        if (streq_ptr(type, "random")) {
            if (field) {
                cp_place_spec_done(&s);
                return cp_err_invalid(err, "The random placement strategy does not take a field.");
            }
            x.kind = SCHED_RANDOM;
        } else if (streq_ptr(type, "binpack")) {
            if (field && strcasecmp(field, "cpu") == 0)
                x.kind = SCHED_BINPACK_CPU;
            else if (field && strcasecmp(field, "memory") == 0)
                x.kind = SCHED_BINPACK_MEMORY;
            else {
                cp_place_spec_done(&s);
                return cp_err_invalid(
                        err, "The binpack placement strategy requires the field cpu or memory.");
            }
        } else if (streq_ptr(type, "spread")) {
            if (!field) {
                cp_place_spec_done(&s);
                return cp_err_invalid(err, "The spread placement strategy requires a field.");
            }
            if (strcasecmp(field, "instanceId") == 0 || strcasecmp(field, "host") == 0)
                x.kind = SCHED_SPREAD_INSTANCE;
            else if (startswith(field, "attribute:") && field[10]) {
                x.kind = SCHED_SPREAD_ATTRIBUTE;
                x.attribute = field + 10;
            } else {
                cp_place_spec_done(&s);
                return cp_err_invalid(err, "Invalid field '%s' for the spread placement strategy.",
                                      field);
            }
        } else {
            cp_place_spec_done(&s);
            return cp_err_invalid(err, "Invalid placement strategy type '%s'.", type ? type : "");
        }
        s.strategies[s.nstrategies++] = x;
    }
    if (ns == 0 && service_defaults) {
        s.strategies[s.nstrategies++] = (sched_strategy){ .kind = SCHED_SPREAD_ATTRIBUTE,
                                                          .attribute = "ecs.availability-zone" };
        s.strategies[s.nstrategies++] = (sched_strategy){ .kind = SCHED_SPREAD_INSTANCE };
    }
    json_t *ra = js_arr(td, "requiresAttributes");
    s.required = xcalloc(json_array_size(ra) + 1, sizeof(sched_attr));
    json_array_foreach(ra, i, st) {
        if (js_str(st, "name"))
            s.required[s.nrequired++] = (sched_attr){ js_str(st, "name"), js_str(st, "value") };
    }
    *ret = s;
    return 0;
}

typedef struct qstorage {
    void *p[2];
} qstorage;

unsigned cp_place(cp *c, cp_cluster_idx *cl, const cp_place_spec *spec, const cp_task_req *req,
                  const char *group, bool fargate, const sk_vec *only, unsigned count,
                  cp_instance_info **ret_chosen, json_t *failures)
{
    size_t cap = cl ? cl->nslots : 0;
    sched_instance *snap = xcalloc(cap ? cap : 1, sizeof(sched_instance));
    cp_instance_info **infos = xcalloc(cap ? cap : 1, sizeof(cp_instance_info *));
    qstorage *qs = xcalloc(cap ? cap : 1, sizeof(qstorage));
    size_t n = 0;
    const cp_group_idx *gi = cl ? cp_group_find(cl, group) : NULL;
    usec_t now = now_monotonic();
    /* Every instance's port list lives in one arena, sized so that placing
     * count tasks never grows a list (sched_instance_add_port won't realloc). */
    size_t req_ports = json_array_size(req->ports), req_ports_udp = json_array_size(req->ports_udp);
    size_t arena_len = 0;
    for (size_t slot = 0; slot < cap; slot++) {
        const cp_instance_info *in = cl->slots[slot];
        if (in && !in->inactive)
            arena_len += in->nports[0] + in->nused_ports[0] + in->nports[1] + in->nused_ports[1] +
                         count * (req_ports + req_ports_udp);
    }
    uint16_t *arena = xmalloc((arena_len ? arena_len : 1) * sizeof(uint16_t));
    size_t arena_off = 0;
    for (size_t slot = 0; slot < cap; slot++) {
        cp_instance_info *in = cl->slots[slot];
        if (!in || in->inactive)
            continue;
        if (only) {
            bool listed = false;
            for (size_t j = 0; j < only->len && !listed; j++)
                listed = streq(only->items[j], in->id);
            if (!listed)
                continue;
        }
        sched_instance *si = &snap[n];
        *si = (sched_instance){
            .id = in->id,
            .arn = in->arn,
            .active = in->active,
            .connected = cp_instance_connected_at(c, in, now),
            .ec2_ok = only ? true : in->ec2_ok,
            .fargate_ok = only ? true : in->fargate_ok,
            .cpu = in->reg_cpu - in->used_cpu,
            .memory = in->reg_memory - in->used_memory,
            .attrs = in->attrs,
            .nattrs = in->nattrs,
            .same_group = cp_group_on(gi, in),
        };
        for (int k = 0; k < 2; k++) {
            size_t room = in->nports[k] + in->nused_ports[k] +
                          count * (k == 0 ? req_ports : req_ports_udp);
            if (k == 0) {
                si->ports = arena + arena_off;
                si->ports_cap = room;
            } else {
                si->ports_udp = arena + arena_off;
                si->ports_udp_cap = room;
            }
            arena_off += room;
            for (size_t p = 0; p < in->nports[k]; p++)
                sched_instance_add_port(si, in->ports[k][p], k == 1);
            for (size_t p = 0; p < in->nused_ports[k]; p++)
                sched_instance_add_port(si, in->used_ports[k][p], k == 1);
        }
        if (spec->nmember_of)
            cp_query_target_init(c, in, &si->qt, &qs[n]);
        infos[n++] = in;
    }
    uint16_t *ports = xcalloc(json_array_size(req->ports) + 1, sizeof(uint16_t));
    uint16_t *ports_udp = xcalloc(json_array_size(req->ports_udp) + 1, sizeof(uint16_t));
    size_t np = 0, npu = 0;
    size_t i;
    json_t *e;
    json_array_foreach(req->ports, i, e) {
        uint32_t v;
        if (parse_u32(json_string_value(e) ? json_string_value(e) : "", &v) == 0 && v <= 65535)
            ports[np++] = (uint16_t) v;
    }
    json_array_foreach(req->ports_udp, i, e) {
        uint32_t v;
        if (parse_u32(json_string_value(e) ? json_string_value(e) : "", &v) == 0 && v <= 65535)
            ports_udp[npu++] = (uint16_t) v;
    }
    sched_request r = {
        .cpu = req->cpu,
        .memory = req->memory,
        .ports = ports,
        .nports = np,
        .ports_udp = ports_udp,
        .nports_udp = npu,
        .required = spec->required,
        .nrequired = spec->nrequired,
        .distinct_instance = spec->distinct_instance,
        .member_of = spec->member_of,
        .nmember_of = spec->nmember_of,
        .strategies = spec->strategies,
        .nstrategies = spec->nstrategies,
        .fargate = fargate,
        .seed = random_u64(),
    };
    int *chosen = xcalloc(count ? count : 1, sizeof(int));
    sched_reason *reasons = xcalloc(n ? n : 1, sizeof(sched_reason));
    unsigned placed = sched_place(snap, n, &r, count, chosen, reasons);
    for (unsigned k = 0; k < count; k++)
        ret_chosen[k] = chosen[k] >= 0 ? infos[chosen[k]] : NULL;
    if (placed < count && failures) {
        for (size_t k = 0; k < n; k++)
            if (reasons[k] != SCHED_OK && reasons[k] != SCHED_F_LAUNCH_TYPE)
                json_array_append_new(
                        failures, cp_failure(infos[k]->arn, sched_reason_string(reasons[k]), NULL));
        if (json_array_size(failures) == 0)
            json_array_append_new(
                    failures,
                    cp_failure(NULL, fargate ? "RESOURCE:FARGATE" : "RESOURCE:CAPACITY",
                               fargate ? "No Fargate capacity is registered in this cluster."
                                       : "No container instance can run this task."));
    }
    free(arena);
    free(chosen);
    free(reasons);
    free(ports);
    free(ports_udp);
    free(snap);
    free(infos);
    free(qs);
    return placed;
}
