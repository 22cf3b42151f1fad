#include "placement.h"

#include <stdlib.h>
#include <string.h>

#include "basic/alloc.h"
#include "basic/strutil.h"

static const char *const reason_strings[_SCHED_F_MAX] = {
    [SCHED_OK] = "",
    [SCHED_F_INACTIVE] = "INACTIVE",
    [SCHED_F_AGENT] = "AGENT",
    [SCHED_F_LAUNCH_TYPE] = "LAUNCH_TYPE",
    [SCHED_F_ATTRIBUTE] = "ATTRIBUTE",
    [SCHED_F_MEMBER_OF] = "MemberOf placement constraint unsatisfied.",
    [SCHED_F_CPU] = "RESOURCE:CPU",
    [SCHED_F_MEMORY] = "RESOURCE:MEMORY",
    [SCHED_F_PORTS] = "RESOURCE:PORTS",
    [SCHED_F_PORTS_UDP] = "RESOURCE:PORTS_UDP",
    [SCHED_F_DISTINCT] = "DistinctInstance placement constraint unsatisfied.",
};

const char *sched_reason_string(sched_reason r)
{
    if ((int) r < 0 || r >= _SCHED_F_MAX)
        return "";
    return reason_strings[r];
}

bool sched_instance_has_port(const sched_instance *in, uint16_t port, bool udp)
{
    const uint16_t *p = udp ? in->ports_udp : in->ports;
    size_t n = udp ? in->nports_udp : in->nports;
    for (size_t i = 0; i < n; i++)
        if (p[i] == port)
            return true;
    return false;
}

void sched_instance_add_port(sched_instance *in, uint16_t port, bool udp)
{
    uint16_t **p = udp ? &in->ports_udp : &in->ports;
    size_t *n = udp ? &in->nports_udp : &in->nports;
    size_t *cap = udp ? &in->ports_udp_cap : &in->ports_cap;
    if (*n == *cap) {
        *cap = *cap ? *cap * 2 : 8;
        *p = xrealloc(*p, *cap * sizeof(uint16_t));
    }
    (*p)[(*n)++] = port;
}

void sched_instance_done(sched_instance *in)
{
    free(in->ports);
    free(in->ports_udp);
    in->ports = in->ports_udp = NULL;
    in->nports = in->nports_udp = in->ports_cap = in->ports_udp_cap = 0;
}

static const char *attr_value(const sched_instance *in, const char *name, bool *present)
{
    for (size_t i = 0; i < in->nattrs; i++)
        if (streq(in->attrs[i].name, name)) {
            *present = true;
            return in->attrs[i].value;
        }
    *present = false;
    return NULL;
}

/* Checks that do not change while placing: status, agent, type, attributes,
 * and memberOf, whose targets (task:group included) describe the cluster as
 * it was before this call. */
static sched_reason static_check(const sched_instance *in, const sched_request *req)
{
    if (!in->active)
        return SCHED_F_INACTIVE;
    if (!in->connected)
        return SCHED_F_AGENT;
    if (req->fargate ? !in->fargate_ok : !in->ec2_ok)
        return SCHED_F_LAUNCH_TYPE;
    for (size_t i = 0; i < req->nrequired; i++) {
        bool present;
        const char *v = attr_value(in, req->required[i].name, &present);
        if (!present || (req->required[i].value && !streq_ptr(v, req->required[i].value)))
            return SCHED_F_ATTRIBUTE;
    }
    for (size_t i = 0; i < req->nmember_of; i++)
        if (!sched_query_eval(req->member_of[i], &in->qt))
            return SCHED_F_MEMBER_OF;
    return SCHED_OK;
}

static sched_reason dynamic_check(const sched_instance *in, const sched_request *req)
{
    if (in->cpu < req->cpu)
        return SCHED_F_CPU;
    if (in->memory < req->memory)
        return SCHED_F_MEMORY;
    for (size_t i = 0; i < req->nports; i++)
        if (sched_instance_has_port(in, req->ports[i], false))
            return SCHED_F_PORTS;
    for (size_t i = 0; i < req->nports_udp; i++)
        if (sched_instance_has_port(in, req->ports_udp[i], true))
            return SCHED_F_PORTS_UDP;
    if (req->distinct_instance && in->same_group > 0)
        return SCHED_F_DISTINCT;
    return SCHED_OK;
}

/* Per spread-by-attribute strategy: the group count per attribute value. */
typedef struct bucket {
    const char *value; /* NULL: instances without the attribute */
    unsigned count;
} bucket;

typedef struct spread_state {
    bucket *buckets;
    size_t n;
    size_t *of; /* instance index → bucket index */
} spread_state;

static size_t bucket_of(spread_state *s, const char *value)
{
    for (size_t i = 0; i < s->n; i++)
        if (streq_ptr(s->buckets[i].value, value))
            return i;
    s->buckets[s->n] = (bucket){ value, 0 };
    return s->n++;
}

static uint64_t mix(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    x ^= x >> 33;
    return x;
}

/* Key of instance i under strategy k: smaller is better. */
static int64_t strategy_key(const sched_instance *in, size_t i, const sched_request *req, size_t k,
                            const spread_state *sp, unsigned task_no)
{
    const sched_strategy *s = &req->strategies[k];
    switch (s->kind) {
    case SCHED_BINPACK_CPU:
        return in->cpu - req->cpu;
    case SCHED_BINPACK_MEMORY:
        return in->memory - req->memory;
    case SCHED_SPREAD_INSTANCE:
        return in->same_group;
    case SCHED_SPREAD_ATTRIBUTE:
        return sp[k].buckets[sp[k].of[i]].count;
    case SCHED_RANDOM:
    default:
        return (int64_t) (mix(req->seed ^ mix(i + 1) ^ ((uint64_t) task_no << 40)) >> 1);
    }
}

unsigned sched_place(sched_instance *instances, size_t n, const sched_request *req, unsigned count,
                     int *ret_chosen, sched_reason *ret_reasons)
{
    static const sched_strategy random_strategy = { .kind = SCHED_RANDOM };
    sched_request r = *req;
    if (r.nstrategies == 0) {
        r.strategies = &random_strategy;
        r.nstrategies = 1;
    }
    sched_reason *stat = xcalloc(n ? n : 1, sizeof(sched_reason));
    for (size_t i = 0; i < n; i++)
        stat[i] = static_check(&instances[i], &r);
    spread_state *sp = xcalloc(r.nstrategies, sizeof(spread_state));
    for (size_t k = 0; k < r.nstrategies; k++) {
        if (r.strategies[k].kind != SCHED_SPREAD_ATTRIBUTE)
            continue;
        sp[k].buckets = xcalloc(n + 1, sizeof(bucket));
        sp[k].of = xcalloc(n ? n : 1, sizeof(size_t));
        for (size_t i = 0; i < n; i++) {
            bool present;
            const char *v = attr_value(&instances[i], r.strategies[k].attribute, &present);
            if (present && !v)
                v = "";
            size_t b = bucket_of(&sp[k], present ? v : NULL);
            sp[k].of[i] = b;
            /* Only eligible instances count towards the spread. */
            if (stat[i] == SCHED_OK)
                sp[k].buckets[b].count += instances[i].same_group;
        }
    }
    unsigned placed = 0;
    for (unsigned t = 0; t < count; t++) {
        ssize_t best = -1;
        for (size_t i = 0; i < n; i++) {
            if (stat[i] != SCHED_OK)
                continue;
            if (dynamic_check(&instances[i], &r) != SCHED_OK)
                continue;
            if (best < 0) {
                best = (ssize_t) i;
                continue;
            }
            for (size_t k = 0; k < r.nstrategies; k++) {
                int64_t a = strategy_key(&instances[i], i, &r, k, sp, t);
                int64_t b = strategy_key(&instances[best], (size_t) best, &r, k, sp, t);
                if (a < b) {
                    best = (ssize_t) i;
                    break;
                }
                if (a > b)
                    break;
            }
        }
        if (best < 0) {
            if (ret_reasons)
                for (size_t i = 0; i < n; i++)
                    ret_reasons[i] =
                            stat[i] != SCHED_OK ? stat[i] : dynamic_check(&instances[i], &r);
            for (unsigned u = t; u < count; u++)
                ret_chosen[u] = -1;
            break;
        }
        sched_instance *in = &instances[best];
        in->cpu -= r.cpu;
        in->memory -= r.memory;
        for (size_t p = 0; p < r.nports; p++)
            sched_instance_add_port(in, r.ports[p], false);
        for (size_t p = 0; p < r.nports_udp; p++)
            sched_instance_add_port(in, r.ports_udp[p], true);
        in->same_group++;
        for (size_t k = 0; k < r.nstrategies; k++)
            if (r.strategies[k].kind == SCHED_SPREAD_ATTRIBUTE)
                sp[k].buckets[sp[k].of[best]].count++;
        ret_chosen[t] = (int) best;
        placed++;
    }
    if (ret_reasons && placed == count)
        for (size_t i = 0; i < n; i++)
            ret_reasons[i] = SCHED_OK;
    for (size_t k = 0; k < r.nstrategies; k++) {
        free(sp[k].buckets);
        free(sp[k].of);
    }
    free(sp);
    free(stat);
    return placed;
}
