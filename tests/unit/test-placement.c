/* Table tests of the placement engine (src/scheduler/placement.h): every
 * strategy, every constraint, every failure reason, multi-task placement
 * updating the snapshot, and EC2 versus Fargate capacity. The snapshots are
 * built directly; memberOf expressions go through sched_query_parse. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "basic/alloc.h"
#include "basic/err.h"
#include "basic/strutil.h"
#include "basic/timeutil.h"
#include "scheduler/placement.h"
#include "scheduler/query.h"
#include "tap.h"

#define MAXI     16
#define MAXATTRS 12

/* What an instance's query target reads (userdata of sched_query_target). */
typedef struct fake {
    sched_attr attrs[MAXATTRS];
    size_t nattrs;
    const char *groups[4];
    size_t ngroups;
} fake;

/* A cluster snapshot. Never copied: instances point into their fake. */
typedef struct cluster {
    sched_instance in[MAXI];
    fake f[MAXI];
    size_t n;
} cluster;

static const char *fake_attribute(void *userdata, const char *name)
{
    const fake *f = userdata;
    for (size_t i = 0; i < f->nattrs; i++)
        if (streq(f->attrs[i].name, name))
            return f->attrs[i].value ? f->attrs[i].value : "";
    return NULL;
}

static bool fake_has_task_group(void *userdata, const char *group)
{
    const fake *f = userdata;
    for (size_t i = 0; i < f->ngroups; i++)
        if (streq(f->groups[i], group))
            return true;
    return false;
}

static usec_t date(const char *s)
{
    usec_t u;
    if (parse_rfc3339(s, &u) < 0) {
        printf("# bad date %s\n", s);
        abort();
    }
    return u;
}

/* Adds an ACTIVE, connected, EC2-capable instance in zone az. */
static size_t add(cluster *c, const char *id, int64_t cpu, int64_t memory, const char *az)
{
    if (c->n >= MAXI)
        abort();
    size_t i = c->n++;
    fake *f = &c->f[i];
    *f = (fake){ 0 };
    f->attrs[f->nattrs++] = (sched_attr){ "ecs.availability-zone", az };
    f->attrs[f->nattrs++] = (sched_attr){ "ecs.os-type", "linux" };
    c->in[i] = (sched_instance){
        .id = id,
        .arn = id,
        .active = true,
        .connected = true,
        .ec2_ok = true,
        .fargate_ok = false,
        .cpu = cpu,
        .memory = memory,
        .attrs = f->attrs,
        .nattrs = f->nattrs,
        .qt =
                (sched_query_target){
                        .attribute = fake_attribute,
                        .has_task_group = fake_has_task_group,
                        .userdata = f,
                        .agent_connected = true,
                        .agent_version = "1.70.0",
                        .ec2_instance_id = id,
                        .registered_at_usec = date("2024-01-01T00:00:00Z"),
                        .running_tasks_count = 0,
                },
    };
    return i;
}

static void set_attr(cluster *c, size_t i, const char *name, const char *value)
{
    fake *f = &c->f[i];
    for (size_t k = 0; k < f->nattrs; k++)
        if (streq(f->attrs[k].name, name)) {
            f->attrs[k].value = value;
            return;
        }
    if (f->nattrs >= MAXATTRS)
        abort();
    f->attrs[f->nattrs++] = (sched_attr){ name, value };
    c->in[i].nattrs = f->nattrs;
}

static void add_group(cluster *c, size_t i, const char *group)
{
    fake *f = &c->f[i];
    f->groups[f->ngroups++] = group;
}

static void cluster_done(cluster *c)
{
    for (size_t i = 0; i < c->n; i++)
        sched_instance_done(&c->in[i]);
    c->n = 0;
}

static sched_query *query(const char *expr)
{
    sk_err err = { 0 };
    sched_query *q = NULL;
    if (sched_query_parse(expr, &q, &err) < 0) {
        printf("# cannot parse \"%s\": %s\n", expr, err.msg ? err.msg : "?");
        abort();
    }
    return q;
}

static const char *az_of(const cluster *c, size_t i)
{
    return fake_attribute((void *) &c->f[i], "ecs.availability-zone");
}

static unsigned min3(const unsigned *v)
{
    unsigned m = v[0] < v[1] ? v[0] : v[1];
    return m < v[2] ? m : v[2];
}

static unsigned max3(const unsigned *v)
{
    unsigned m = v[0] > v[1] ? v[0] : v[1];
    return m > v[2] ? m : v[2];
}

/* Index of the instance with the given id, or -1. */
static int find(const cluster *c, const char *id)
{
    for (size_t i = 0; i < c->n; i++)
        if (streq(c->in[i].id, id))
            return (int) i;
    return -1;
}

/* --- helpers of the engine --- */

TEST(reason_strings)
{
    static const struct {
        sched_reason r;
        const char *s;
    } table[] = {
        { SCHED_OK, "" },
        { SCHED_F_INACTIVE, "INACTIVE" },
        { SCHED_F_AGENT, "AGENT" },
        { SCHED_F_LAUNCH_TYPE, "LAUNCH_TYPE" },
        { SCHED_F_ATTRIBUTE, "ATTRIBUTE" },
        { SCHED_F_MEMBER_OF, "MemberOf placement constraint unsatisfied." },
        { SCHED_F_CPU, "RESOURCE:CPU" },
        { SCHED_F_MEMORY, "RESOURCE:MEMORY" },
        { SCHED_F_PORTS, "RESOURCE:PORTS" },
        { SCHED_F_PORTS_UDP, "RESOURCE:PORTS_UDP" },
        { SCHED_F_DISTINCT, "DistinctInstance placement constraint unsatisfied." },
    };
    for (size_t i = 0; i < ELEMENTSOF(table); i++)
        ASSERT_STREQ(sched_reason_string(table[i].r), table[i].s);
    ASSERT_STREQ(sched_reason_string(_SCHED_F_MAX), "");
    ASSERT_STREQ(sched_reason_string((sched_reason) -1), "");
}

TEST(port_helpers)
{
    sched_instance in = { 0 };
    ASSERT_FALSE(sched_instance_has_port(&in, 80, false));
    for (uint16_t p = 8000; p < 8020; p++) /* grows past the initial capacity */
        sched_instance_add_port(&in, p, false);
    sched_instance_add_port(&in, 53, true);
    ASSERT_EQ(in.nports, 20);
    ASSERT_EQ(in.nports_udp, 1);
    ASSERT_TRUE(sched_instance_has_port(&in, 8000, false));
    ASSERT_TRUE(sched_instance_has_port(&in, 8019, false));
    ASSERT_FALSE(sched_instance_has_port(&in, 8020, false));
    ASSERT_FALSE(sched_instance_has_port(&in, 8000, true)); /* TCP and UDP are separate */
    ASSERT_TRUE(sched_instance_has_port(&in, 53, true));
    ASSERT_FALSE(sched_instance_has_port(&in, 53, false));
    sched_instance_done(&in);
    ASSERT_NULL(in.ports);
    ASSERT_NULL(in.ports_udp);
    ASSERT_EQ(in.nports + in.nports_udp, 0);
    ASSERT_FALSE(sched_instance_has_port(&in, 8000, false));
    sched_instance_done(&in); /* idempotent */
}

TEST(empty_cluster)
{
    sched_request req = { .cpu = 10, .memory = 10 };
    int chosen[3] = { 7, 7, 7 };
    ASSERT_EQ(sched_place(NULL, 0, &req, 3, chosen, NULL), 0);
    ASSERT_EQ(chosen[0], -1);
    ASSERT_EQ(chosen[1], -1);
    ASSERT_EQ(chosen[2], -1);
}

/* --- strategies --- */

TEST(binpack_cpu)
{
    cluster c = { 0 };
    add(&c, "i0", 1000, 4000, "a");
    add(&c, "i1", 500, 4000, "a");
    add(&c, "i2", 2000, 4000, "b");
    add(&c, "i3", 450, 4000, "b");
    sched_strategy st[] = { { SCHED_BINPACK_CPU, NULL } };
    sched_request req = { .cpu = 400, .memory = 100, .strategies = st, .nstrategies = 1 };
    int chosen[3];
    /* Least CPU left after placement: i3 (50), then i1 (100) once i3 is full, then i0. */
    ASSERT_EQ(sched_place(c.in, c.n, &req, 3, chosen, NULL), 3);
    ASSERT_EQ(chosen[0], 3);
    ASSERT_EQ(chosen[1], 1);
    ASSERT_EQ(chosen[2], 0);
    ASSERT_EQ(c.in[0].cpu, 600);
    ASSERT_EQ(c.in[1].cpu, 100);
    ASSERT_EQ(c.in[2].cpu, 2000);
    ASSERT_EQ(c.in[3].cpu, 50);
    ASSERT_EQ(c.in[0].memory, 3900);
    ASSERT_EQ(c.in[2].memory, 4000);
    cluster_done(&c);
}

TEST(binpack_memory)
{
    cluster c = { 0 };
    add(&c, "i0", 4096, 3000, "a");
    add(&c, "i1", 4096, 1100, "a");
    add(&c, "i2", 4096, 8000, "b");
    sched_strategy st[] = { { SCHED_BINPACK_MEMORY, NULL } };
    sched_request req = { .cpu = 10, .memory = 512, .strategies = st, .nstrategies = 1 };
    int chosen[5];
    ASSERT_EQ(sched_place(c.in, c.n, &req, 5, chosen, NULL), 5);
    /* i1 takes two (1100 → 76), then i0 (3000 → 2488 → 1976 → 1464). */
    ASSERT_EQ(chosen[0], 1);
    ASSERT_EQ(chosen[1], 1);
    ASSERT_EQ(chosen[2], 0);
    ASSERT_EQ(chosen[3], 0);
    ASSERT_EQ(chosen[4], 0);
    ASSERT_EQ(c.in[1].memory, 76);
    ASSERT_EQ(c.in[0].memory, 3000 - 3 * 512);
    ASSERT_EQ(c.in[2].memory, 8000);
    ASSERT_EQ(c.in[1].same_group, 2);
    ASSERT_EQ(c.in[0].same_group, 3);
    cluster_done(&c);
}

TEST(binpack_cpu_is_not_binpack_memory)
{
    cluster c = { 0 };
    add(&c, "lowcpu", 300, 9000, "a");
    add(&c, "lowmem", 3000, 600, "a");
    sched_strategy cpu[] = { { SCHED_BINPACK_CPU, NULL } };
    sched_strategy mem[] = { { SCHED_BINPACK_MEMORY, NULL } };
    sched_request req = { .cpu = 100, .memory = 100, .strategies = cpu, .nstrategies = 1 };
    int chosen[1];
    ASSERT_EQ(sched_place(c.in, c.n, &req, 1, chosen, NULL), 1);
    ASSERT_EQ(chosen[0], 0);
    req.strategies = mem;
    ASSERT_EQ(sched_place(c.in, c.n, &req, 1, chosen, NULL), 1);
    ASSERT_EQ(chosen[0], 1);
    cluster_done(&c);
}

/* Checks that every placement chose an instance whose group count was the
 * lowest among the eligible instances at that moment. */
TEST(spread_instance)
{
    cluster c = { 0 };
    add(&c, "i0", 4096, 4096, "a");
    add(&c, "i1", 4096, 4096, "a");
    add(&c, "i2", 4096, 4096, "b");
    add(&c, "i3", 4096, 4096, "c");
    size_t full = add(&c, "full", 10, 4096, "c"); /* never fits */
    c.in[0].same_group = 3;
    c.in[2].same_group = 1;
    unsigned counts[MAXI] = { 3, 0, 1, 0, 0 };
    sched_strategy st[] = { { SCHED_SPREAD_INSTANCE, NULL } };
    sched_request req = { .cpu = 100, .memory = 100, .strategies = st, .nstrategies = 1 };
    int chosen[6];
    ASSERT_EQ(sched_place(c.in, c.n, &req, 6, chosen, NULL), 6);
    for (int k = 0; k < 6; k++) {
        ASSERT_TRUE(chosen[k] >= 0 && chosen[k] != (int) full);
        unsigned min = ~0u;
        for (size_t i = 0; i < c.n; i++)
            if (i != full && counts[i] < min)
                min = counts[i];
        if (counts[chosen[k]] != min)
            TAP_FAIL("task %d went to %s with %u tasks while another had %u", k, c.in[chosen[k]].id,
                     counts[chosen[k]], min);
        counts[chosen[k]]++;
    }
    /* 4 existing + 6 new over the four usable instances, i0 already had 3. */
    ASSERT_EQ(c.in[0].same_group, 3);
    ASSERT_EQ(c.in[1].same_group, 3);
    ASSERT_EQ(c.in[2].same_group, 2);
    ASSERT_EQ(c.in[3].same_group, 2);
    ASSERT_EQ(c.in[full].same_group, 0);
    cluster_done(&c);
}

TEST(spread_availability_zone_then_instance)
{
    cluster c = { 0 };
    add(&c, "a1", 4096, 4096, "us-east-1a");
    add(&c, "a2", 4096, 4096, "us-east-1a");
    add(&c, "a3", 4096, 4096, "us-east-1a");
    add(&c, "b1", 4096, 4096, "us-east-1b");
    add(&c, "b2", 4096, 4096, "us-east-1b");
    add(&c, "c1", 4096, 4096, "us-east-1c");
    c.in[0].same_group = 1; /* one task already in us-east-1a, on a1 */
    sched_strategy st[] = { { SCHED_SPREAD_ATTRIBUTE, "ecs.availability-zone" },
                            { SCHED_SPREAD_INSTANCE, NULL } };
    sched_request req = { .cpu = 100, .memory = 100, .strategies = st, .nstrategies = 2 };
    int chosen[5];
    ASSERT_EQ(sched_place(c.in, c.n, &req, 5, chosen, NULL), 5);
    unsigned zone[3] = { 1, 0, 0 };
    unsigned inst[MAXI] = { 1 };
    for (int k = 0; k < 5; k++) {
        const char *az = az_of(&c, (size_t) chosen[k]);
        int z = az[strlen(az) - 1] - 'a';
        unsigned min = min3(zone);
        if (zone[z] != min)
            TAP_FAIL("task %d went to zone %s holding %u tasks; another zone held %u", k, az,
                     zone[z], min);
        /* Within the zone, the instance with the fewest tasks. */
        for (size_t i = 0; i < c.n; i++)
            if (streq(az_of(&c, i), az) && inst[i] < inst[chosen[k]])
                TAP_FAIL("task %d went to %s (%u tasks) although %s in the same zone had %u", k,
                         c.in[chosen[k]].id, inst[chosen[k]], c.in[i].id, inst[i]);
        zone[z]++;
        inst[chosen[k]]++;
    }
    ASSERT_EQ(zone[0], 2);
    ASSERT_EQ(zone[1], 2);
    ASSERT_EQ(zone[2], 2);
    ASSERT_EQ(c.in[find(&c, "a1")].same_group, 1); /* the second a-task avoided a1 */
    ASSERT_EQ(c.in[find(&c, "a2")].same_group + c.in[find(&c, "a3")].same_group, 1);
    ASSERT_EQ(c.in[find(&c, "b1")].same_group, 1);
    ASSERT_EQ(c.in[find(&c, "b2")].same_group, 1);
    ASSERT_EQ(c.in[find(&c, "c1")].same_group, 2);
    cluster_done(&c);
}

TEST(spread_attribute_custom)
{
    cluster c = { 0 };
    size_t r1 = add(&c, "r1", 4096, 4096, "a");
    size_t r2 = add(&c, "r2", 4096, 4096, "a");
    size_t r3 = add(&c, "r3", 4096, 4096, "a");
    set_attr(&c, r1, "rack", "x");
    set_attr(&c, r2, "rack", "x");
    set_attr(&c, r3, "rack", "y");
    sched_strategy st[] = { { SCHED_SPREAD_ATTRIBUTE, "rack" } };
    sched_request req = { .cpu = 1, .memory = 1, .strategies = st, .nstrategies = 1 };
    int chosen[4];
    ASSERT_EQ(sched_place(c.in, c.n, &req, 4, chosen, NULL), 4);
    unsigned x = 0, y = 0;
    for (int k = 0; k < 4; k++) {
        if (streq(fake_attribute(&c.f[chosen[k]], "rack"), "x"))
            x++;
        else
            y++;
    }
    ASSERT_EQ(x, 2);
    ASSERT_EQ(y, 2);
    ASSERT_EQ(c.in[r3].same_group, 2);
    cluster_done(&c);
}

static unsigned random_histogram(const sched_strategy *st, size_t nst, unsigned *hist, size_t nhist,
                                 int *bad)
{
    unsigned placed = 0;
    for (uint64_t seed = 1; seed <= 400; seed++) {
        cluster c = { 0 };
        add(&c, "i0", 4096, 4096, "a");
        add(&c, "i1", 4096, 4096, "b");
        size_t off = add(&c, "off", 4096, 4096, "b");
        c.in[off].connected = false;
        add(&c, "i3", 4096, 4096, "c");
        add(&c, "i4", 4096, 4096, "c");
        sched_request req = {
            .cpu = 1, .memory = 1, .strategies = st, .nstrategies = nst, .seed = seed
        };
        int chosen[1], again[1];
        placed += sched_place(c.in, c.n, &req, 1, chosen, NULL);
        if (chosen[0] < 0 || chosen[0] == (int) off)
            (*bad)++;
        else
            hist[chosen[0]]++;
        cluster_done(&c);
        /* The same seed on the same snapshot gives the same answer. */
        add(&c, "i0", 4096, 4096, "a");
        add(&c, "i1", 4096, 4096, "b");
        add(&c, "off", 4096, 4096, "b");
        c.in[off].connected = false;
        add(&c, "i3", 4096, 4096, "c");
        add(&c, "i4", 4096, 4096, "c");
        sched_place(c.in, c.n, &req, 1, again, NULL);
        if (again[0] != chosen[0])
            (*bad)++;
        cluster_done(&c);
    }
    (void) nhist;
    return placed;
}

TEST(random_is_the_default)
{
    unsigned hist[5] = { 0 };
    int bad = 0;
    ASSERT_EQ(random_histogram(NULL, 0, hist, 5, &bad), 400);
    ASSERT_EQ(bad, 0);
    ASSERT_EQ(hist[2], 0);
    /* Roughly uniform over the four eligible instances (100 each expected). */
    for (int i = 0; i < 5; i++)
        if (i != 2 && (hist[i] < 50 || hist[i] > 150))
            TAP_FAIL("instance %d chosen %u times out of 400", i, hist[i]);
}

TEST(random_strategy)
{
    sched_strategy st[] = { { SCHED_RANDOM, NULL } };
    unsigned hist[5] = { 0 };
    int bad = 0;
    ASSERT_EQ(random_histogram(st, 1, hist, 5, &bad), 400);
    ASSERT_EQ(bad, 0);
    for (int i = 0; i < 5; i++)
        if (i != 2 && (hist[i] < 50 || hist[i] > 150))
            TAP_FAIL("instance %d chosen %u times out of 400", i, hist[i]);
}

TEST(random_multi_task_varies_per_task)
{
    /* Ten tasks with one seed must not all land on one instance. */
    cluster c = { 0 };
    for (int i = 0; i < 5; i++)
        add(&c, "i", 100000, 100000, "a");
    sched_request req = { .cpu = 1, .memory = 1, .seed = 12345 };
    int chosen[10];
    ASSERT_EQ(sched_place(c.in, c.n, &req, 10, chosen, NULL), 10);
    unsigned used = 0;
    for (size_t i = 0; i < c.n; i++)
        used += c.in[i].same_group > 0;
    ASSERT_TRUE(used >= 2);
    cluster_done(&c);
}

TEST(chained_binpack_then_spread)
{
    cluster c = { 0 };
    add(&c, "big", 4096, 8000, "a");
    add(&c, "tight1", 4096, 2000, "a");
    add(&c, "tight2", 4096, 2000, "b");
    c.in[1].same_group = 2;
    /* binpack memory ties tight1/tight2; spread instanceId picks tight2. */
    sched_strategy st[] = { { SCHED_BINPACK_MEMORY, NULL }, { SCHED_SPREAD_INSTANCE, NULL } };
    sched_request req = { .cpu = 10, .memory = 500, .strategies = st, .nstrategies = 2 };
    int chosen[2];
    ASSERT_EQ(sched_place(c.in, c.n, &req, 2, chosen, NULL), 2);
    ASSERT_EQ(chosen[0], 2);
    /* Now tight2 has less memory left: binpack decides alone. */
    ASSERT_EQ(chosen[1], 2);
    cluster_done(&c);
}

TEST(chained_spread_then_binpack)
{
    cluster c = { 0 };
    add(&c, "a-roomy", 4000, 4000, "a");
    add(&c, "b-roomy", 4000, 4000, "b");
    add(&c, "b-tight", 600, 4000, "b");
    add(&c, "c-mid", 2000, 4000, "c");
    c.in[0].same_group = 1;
    c.in[3].same_group = 1;
    sched_strategy st[] = { { SCHED_SPREAD_ATTRIBUTE, "ecs.availability-zone" },
                            { SCHED_BINPACK_CPU, NULL } };
    sched_request req = { .cpu = 256, .memory = 10, .strategies = st, .nstrategies = 2 };
    int chosen[3];
    ASSERT_EQ(sched_place(c.in, c.n, &req, 3, chosen, NULL), 3);
    /* Zone b is empty: its tighter instance b-tight (600 → 344). Then all zones
     * hold one task and binpack prefers b-tight again (344 → 88). */
    ASSERT_EQ(chosen[0], 2);
    ASSERT_EQ(chosen[1], 2);
    /* Zone b now has 2; a and c have 1: c-mid is tighter than a-roomy. */
    ASSERT_EQ(chosen[2], 3);
    ASSERT_EQ(c.in[2].cpu, 600 - 512);
    cluster_done(&c);
}

TEST(chained_spread_then_random)
{
    /* Ties after spread are broken by random, different per seed. */
    unsigned hist[3] = { 0 };
    for (uint64_t seed = 1; seed <= 200; seed++) {
        cluster c = { 0 };
        add(&c, "x", 4096, 4096, "a");
        add(&c, "y", 4096, 4096, "a");
        add(&c, "busy", 4096, 4096, "a");
        c.in[2].same_group = 1;
        sched_strategy st[] = { { SCHED_SPREAD_INSTANCE, NULL }, { SCHED_RANDOM, NULL } };
        sched_request req = {
            .cpu = 1, .memory = 1, .strategies = st, .nstrategies = 2, .seed = seed
        };
        int chosen[1];
        ASSERT_EQ(sched_place(c.in, c.n, &req, 1, chosen, NULL), 1);
        hist[chosen[0]]++;
        cluster_done(&c);
    }
    ASSERT_EQ(hist[2], 0);
    ASSERT_TRUE(hist[0] > 50 && hist[1] > 50);
}

/* --- constraints --- */

TEST(distinct_instance)
{
    cluster c = { 0 };
    add(&c, "i0", 4096, 4096, "a");
    add(&c, "i1", 4096, 4096, "b");
    add(&c, "i2", 4096, 4096, "c");
    c.in[1].same_group = 1; /* a task of this group already runs there */
    sched_request req = { .cpu = 1, .memory = 1, .distinct_instance = true, .seed = 7 };
    int chosen[3];
    sched_reason reasons[3];
    ASSERT_EQ(sched_place(c.in, c.n, &req, 3, chosen, reasons), 2);
    ASSERT_TRUE(chosen[0] != chosen[1]);
    ASSERT_TRUE(chosen[0] != 1 && chosen[1] != 1);
    ASSERT_EQ(chosen[2], -1);
    for (int i = 0; i < 3; i++)
        ASSERT_EQ(reasons[i], SCHED_F_DISTINCT);
    cluster_done(&c);
}

typedef struct member_case {
    const char *expr;
    int want; /* instance index, -1: none */
} member_case;

static void build_member_cluster(cluster *c)
{
    size_t i0 = add(c, "i-aaaa", 4096, 4096, "us-east-1a");
    size_t i1 = add(c, "i-bbbb", 4096, 4096, "us-east-1b");
    size_t i2 = add(c, "i-cccc", 4096, 4096, "us-east-1c");
    set_attr(c, i0, "ecs.instance-type", "t2.small");
    set_attr(c, i1, "ecs.instance-type", "m5.large");
    set_attr(c, i2, "ecs.instance-type", "c5.xlarge");
    set_attr(c, i1, "stack", "prod");
    set_attr(c, i2, "gpu", NULL);
    c->in[i0].qt.agent_version = "1.14.5";
    c->in[i1].qt.agent_version = "1.70.0";
    c->in[i2].qt.agent_version = "1.50.2";
    c->in[i0].qt.registered_at_usec = date("2018-06-18T10:00:00Z");
    c->in[i1].qt.registered_at_usec = date("2023-01-01T00:00:00Z");
    c->in[i2].qt.registered_at_usec = date("2021-05-05T12:00:00Z");
    c->in[i0].qt.running_tasks_count = 0;
    c->in[i1].qt.running_tasks_count = 3;
    c->in[i2].qt.running_tasks_count = 1;
    add_group(c, i0, "service:db");
    add_group(c, i2, "family:web");
}

TEST(member_of_expressions)
{
    static const member_case cases[] = {
        { "attribute:ecs.instance-type =~ t2.*", 0 },
        { "attribute:ecs.instance-type == m5.large", 1 },
        { "attribute:ecs.availability-zone in [us-east-1b, us-east-1c] and "
          "attribute:ecs.instance-type != m5.large",
          2 },
        { "attribute:stack exists", 1 },
        { "attribute:gpu exists", 2 },
        { "attribute:stack == prod or attribute:gpu exists", -2 }, /* 1 or 2 */
        { "attribute:ecs.instance-type =~ g4.*", -1 },
        { "ec2InstanceId == i-bbbb", 1 },
        { "ec2InstanceId in ['i-cccc', 'i-zzzz']", 2 },
        { "ec2InstanceId in [i-zzzz]", -1 },
        { "task:group == service:db", 0 },
        { "not(task:group == service:db) and not(task:group == family:web)", 1 },
        { "task:group == service:nothing", -1 },
        { "runningTasksCount == 1", 2 },
        { "runningTasksCount > 2", 1 },
        { "runningTasksCount < 1", 0 },
        { "agentVersion < 1.20.0", 0 },
        { "agentVersion >= 1.60", 1 },
        { "agentVersion == 1.50.2", 2 },
        { "agentVersion > 2.0.0", -1 },
        { "registeredAt < 2019-01-01", 0 },
        { "registeredAt > 2022-12-31T00:00:00Z", 1 },
        { "registeredAt >= 2021-05-05 and registeredAt < 2022-01-01", 2 },
        { "agentConnected == true and attribute:ecs.os-type == linux and "
          "attribute:ecs.availability-zone == us-east-1c",
          2 },
    };
    int bad = 0;
    for (size_t k = 0; k < ELEMENTSOF(cases); k++) {
        cluster c = { 0 };
        build_member_cluster(&c);
        sched_query *q = query(cases[k].expr);
        const sched_query *mo[] = { q };
        sched_request req = { .cpu = 1, .memory = 1, .member_of = mo, .nmember_of = 1, .seed = k };
        int chosen[1];
        sched_reason reasons[3];
        unsigned placed = sched_place(c.in, c.n, &req, 1, chosen, reasons);
        bool ok;
        if (cases[k].want == -1) {
            ok = placed == 0 && chosen[0] == -1;
            for (int i = 0; i < 3 && ok; i++)
                ok = reasons[i] == SCHED_F_MEMBER_OF;
        } else if (cases[k].want == -2)
            ok = placed == 1 && (chosen[0] == 1 || chosen[0] == 2);
        else
            ok = placed == 1 && chosen[0] == cases[k].want;
        if (!ok) {
            printf("#   \"%s\": placed %u on %d (want %d)\n", cases[k].expr, placed, chosen[0],
                   cases[k].want);
            bad++;
        }
        sched_query_free(q);
        cluster_done(&c);
    }
    ASSERT_EQ(bad, 0);
}

TEST(member_of_constraints_are_anded)
{
    cluster c = { 0 };
    build_member_cluster(&c);
    sched_query *a = query("attribute:ecs.instance-type == t2.small");
    sched_query *b = query("attribute:stack exists");
    const sched_query *both[] = { a, b };
    sched_request req = { .cpu = 1, .memory = 1, .member_of = both, .nmember_of = 2 };
    int chosen[1];
    sched_reason reasons[3];
    ASSERT_EQ(sched_place(c.in, c.n, &req, 1, chosen, reasons), 0);
    ASSERT_EQ(reasons[0], SCHED_F_MEMBER_OF);
    ASSERT_EQ(reasons[1], SCHED_F_MEMBER_OF);
    ASSERT_EQ(reasons[2], SCHED_F_MEMBER_OF);
    /* With memberOf constraints, several tasks all land on matching instances. */
    const sched_query *one[] = { b };
    req.member_of = one;
    req.nmember_of = 1;
    int three[3];
    ASSERT_EQ(sched_place(c.in, c.n, &req, 3, three, reasons), 3);
    ASSERT_EQ(three[0], 1);
    ASSERT_EQ(three[1], 1);
    ASSERT_EQ(three[2], 1);
    sched_query_free(a);
    sched_query_free(b);
    cluster_done(&c);
}

TEST(required_attributes)
{
    cluster c = { 0 };
    size_t none = add(&c, "none", 4096, 4096, "a");
    size_t dev = add(&c, "dev", 4096, 4096, "a");
    size_t prod = add(&c, "prod", 4096, 4096, "a");
    set_attr(&c, dev, "stack", "dev");
    set_attr(&c, prod, "stack", "prod");
    set_attr(&c, dev, "com.amazonaws.ecs.capability.logging-driver.awslogs", NULL);
    set_attr(&c, prod, "com.amazonaws.ecs.capability.logging-driver.awslogs", NULL);
    sched_attr need[] = { { "com.amazonaws.ecs.capability.logging-driver.awslogs", NULL },
                          { "stack", "prod" } };
    sched_request req = { .cpu = 1, .memory = 1, .required = need, .nrequired = 2 };
    int chosen[2];
    sched_reason reasons[3];
    ASSERT_EQ(sched_place(c.in, c.n, &req, 2, chosen, reasons), 2);
    ASSERT_EQ(chosen[0], (int) prod);
    ASSERT_EQ(chosen[1], (int) prod);
    /* A value-less requirement is met by presence alone. */
    req.nrequired = 1;
    ASSERT_EQ(sched_place(c.in, c.n, &req, 1, chosen, reasons), 1);
    ASSERT_TRUE(chosen[0] == (int) dev || chosen[0] == (int) prod);
    /* An impossible requirement: ATTRIBUTE everywhere. */
    sched_attr impossible[] = { { "stack", "staging" } };
    req.required = impossible;
    ASSERT_EQ(sched_place(c.in, c.n, &req, 1, chosen, reasons), 0);
    ASSERT_EQ(reasons[none], SCHED_F_ATTRIBUTE);
    ASSERT_EQ(reasons[dev], SCHED_F_ATTRIBUTE);
    ASSERT_EQ(reasons[prod], SCHED_F_ATTRIBUTE);
    cluster_done(&c);
}

/* --- failure reasons --- */

TEST(every_failure_reason)
{
    cluster c = { 0 };
    static const struct {
        const char *id;
        sched_reason want;
    } table[] = {
        { "inactive", SCHED_F_INACTIVE },   { "agent", SCHED_F_AGENT },
        { "fargate", SCHED_F_LAUNCH_TYPE }, { "noattr", SCHED_F_ATTRIBUTE },
        { "memberof", SCHED_F_MEMBER_OF },  { "cpu", SCHED_F_CPU },
        { "memory", SCHED_F_MEMORY },       { "ports", SCHED_F_PORTS },
        { "udp", SCHED_F_PORTS_UDP },       { "distinct", SCHED_F_DISTINCT },
    };
    for (size_t i = 0; i < ELEMENTSOF(table); i++) {
        size_t k = add(&c, table[i].id, 1024, 1024, "a");
        set_attr(&c, k, "needed", NULL);
        set_attr(&c, k, "pool", "blue");
    }
    c.in[find(&c, "inactive")].active = false;
    c.in[find(&c, "agent")].connected = false;
    c.in[find(&c, "agent")].qt.agent_connected = false;
    c.in[find(&c, "fargate")].ec2_ok = false;
    c.in[find(&c, "fargate")].fargate_ok = true;
    c.f[find(&c, "noattr")].attrs[2].name = "other"; /* drops "needed" */
    set_attr(&c, (size_t) find(&c, "memberof"), "pool", "green");
    c.in[find(&c, "cpu")].cpu = 100;
    c.in[find(&c, "memory")].memory = 100;
    sched_instance_add_port(&c.in[find(&c, "ports")], 8080, false);
    sched_instance_add_port(&c.in[find(&c, "udp")], 5353, true);
    c.in[find(&c, "distinct")].same_group = 1;
    sched_query *q = query("attribute:pool == blue");
    const sched_query *mo[] = { q };
    sched_attr need[] = { { "needed", NULL } };
    uint16_t tcp[] = { 8080 }, udp[] = { 5353 };
    sched_request req = {
        .cpu = 512,
        .memory = 512,
        .ports = tcp,
        .nports = 1,
        .ports_udp = udp,
        .nports_udp = 1,
        .required = need,
        .nrequired = 1,
        .distinct_instance = true,
        .member_of = mo,
        .nmember_of = 1,
    };
    int chosen[1] = { 99 };
    sched_reason reasons[MAXI];
    ASSERT_EQ(sched_place(c.in, c.n, &req, 1, chosen, reasons), 0);
    ASSERT_EQ(chosen[0], -1);
    int bad = 0;
    for (size_t i = 0; i < ELEMENTSOF(table); i++)
        if (reasons[i] != table[i].want) {
            printf("#   %s: got %s, want %s\n", table[i].id, sched_reason_string(reasons[i]),
                   sched_reason_string(table[i].want));
            bad++;
        }
    ASSERT_EQ(bad, 0);
    /* One healthy instance makes the same request succeed, with reasons reset. */
    size_t good = add(&c, "good", 1024, 1024, "a");
    set_attr(&c, good, "needed", NULL);
    set_attr(&c, good, "pool", "blue");
    ASSERT_EQ(sched_place(c.in, c.n, &req, 1, chosen, reasons), 1);
    ASSERT_EQ(chosen[0], (int) good);
    for (size_t i = 0; i < c.n; i++)
        ASSERT_EQ(reasons[i], SCHED_OK);
    sched_query_free(q);
    cluster_done(&c);
}

/* The first failing check in the documented order is the one reported. */
TEST(failure_reason_precedence)
{
    static const struct {
        const char *what;
        bool inactive, disconnected, wrong_type, no_attr, member_fail;
        bool low_cpu, low_mem, port, udp, group;
        sched_reason want;
    } table[] = {
        { "inactive+agent+cpu", true, true, false, false, false, true, false, false, false, false,
          SCHED_F_INACTIVE },
        { "agent+type", false, true, true, false, false, false, false, false, false, false,
          SCHED_F_AGENT },
        { "type+attribute", false, false, true, true, false, false, false, false, false, false,
          SCHED_F_LAUNCH_TYPE },
        { "attribute+memberOf", false, false, false, true, true, false, false, false, false, false,
          SCHED_F_ATTRIBUTE },
        { "memberOf+cpu", false, false, false, false, true, true, false, false, false, false,
          SCHED_F_MEMBER_OF },
        { "cpu+memory", false, false, false, false, false, true, true, false, false, false,
          SCHED_F_CPU },
        { "memory+ports", false, false, false, false, false, false, true, true, false, false,
          SCHED_F_MEMORY },
        { "ports+udp", false, false, false, false, false, false, false, true, true, false,
          SCHED_F_PORTS },
        { "udp+distinct", false, false, false, false, false, false, false, false, true, true,
          SCHED_F_PORTS_UDP },
        { "distinct", false, false, false, false, false, false, false, false, false, true,
          SCHED_F_DISTINCT },
    };
    sched_query *q = query("attribute:pool == blue");
    const sched_query *mo[] = { q };
    sched_attr need[] = { { "needed", NULL } };
    uint16_t tcp[] = { 80 }, udp[] = { 53 };
    int bad = 0;
    for (size_t k = 0; k < ELEMENTSOF(table); k++) {
        cluster c = { 0 };
        size_t i = add(&c, table[k].what, 1024, 1024, "a");
        set_attr(&c, i, table[k].no_attr ? "unneeded" : "needed", NULL);
        set_attr(&c, i, "pool", table[k].member_fail ? "red" : "blue");
        c.in[i].active = !table[k].inactive;
        c.in[i].connected = !table[k].disconnected;
        c.in[i].ec2_ok = !table[k].wrong_type;
        if (table[k].low_cpu)
            c.in[i].cpu = 1;
        if (table[k].low_mem)
            c.in[i].memory = 1;
        if (table[k].port)
            sched_instance_add_port(&c.in[i], 80, false);
        if (table[k].udp)
            sched_instance_add_port(&c.in[i], 53, true);
        if (table[k].group)
            c.in[i].same_group = 2;
        sched_request req = { .cpu = 100,
                              .memory = 100,
                              .ports = tcp,
                              .nports = 1,
                              .ports_udp = udp,
                              .nports_udp = 1,
                              .required = need,
                              .nrequired = 1,
                              .distinct_instance = true,
                              .member_of = mo,
                              .nmember_of = 1 };
        int chosen[1];
        sched_reason reasons[1];
        unsigned placed = sched_place(c.in, c.n, &req, 1, chosen, reasons);
        if (placed != 0 || reasons[0] != table[k].want) {
            printf("#   %s: placed %u, reason %s, want %s\n", table[k].what, placed,
                   sched_reason_string(reasons[0]), sched_reason_string(table[k].want));
            bad++;
        }
        cluster_done(&c);
    }
    sched_query_free(q);
    ASSERT_EQ(bad, 0);
}

/* --- several tasks per call: the snapshot is updated as tasks land --- */

TEST(count_exhausts_cpu_then_reports_it)
{
    cluster c = { 0 };
    add(&c, "only", 1000, 10000, "a");
    size_t off = add(&c, "off", 8000, 10000, "a");
    c.in[off].active = false;
    sched_request req = { .cpu = 400, .memory = 10 };
    int chosen[4];
    sched_reason reasons[2] = { SCHED_F_DISTINCT, SCHED_F_DISTINCT };
    ASSERT_EQ(sched_place(c.in, c.n, &req, 4, chosen, reasons), 2);
    ASSERT_EQ(chosen[0], 0);
    ASSERT_EQ(chosen[1], 0);
    ASSERT_EQ(chosen[2], -1);
    ASSERT_EQ(chosen[3], -1);
    /* Reasons describe the first task that did not fit, on the updated snapshot. */
    ASSERT_EQ(reasons[0], SCHED_F_CPU);
    ASSERT_EQ(reasons[1], SCHED_F_INACTIVE);
    ASSERT_EQ(c.in[0].cpu, 200);
    ASSERT_EQ(c.in[0].memory, 9980);
    ASSERT_EQ(c.in[0].same_group, 2);
    ASSERT_EQ(c.in[off].cpu, 8000);
    /* A later call sees what the earlier one placed. */
    req.cpu = 201;
    ASSERT_EQ(sched_place(c.in, c.n, &req, 1, chosen, reasons), 0);
    ASSERT_EQ(reasons[0], SCHED_F_CPU);
    req.cpu = 200;
    ASSERT_EQ(sched_place(c.in, c.n, &req, 1, chosen, reasons), 1);
    ASSERT_EQ(c.in[0].cpu, 0);
    cluster_done(&c);
}

TEST(count_exhausts_memory)
{
    cluster c = { 0 };
    add(&c, "m", 10000, 1000, "a");
    sched_request req = { .cpu = 1, .memory = 300 };
    int chosen[4];
    sched_reason reasons[1];
    ASSERT_EQ(sched_place(c.in, c.n, &req, 4, chosen, reasons), 3);
    ASSERT_EQ(chosen[3], -1);
    ASSERT_EQ(reasons[0], SCHED_F_MEMORY);
    ASSERT_EQ(c.in[0].memory, 100);
    cluster_done(&c);
}

TEST(count_static_ports_one_per_instance)
{
    cluster c = { 0 };
    add(&c, "i0", 4096, 4096, "a");
    add(&c, "i1", 4096, 4096, "b");
    uint16_t tcp[] = { 8080, 9090 };
    sched_request req = { .cpu = 1, .memory = 1, .ports = tcp, .nports = 2, .seed = 3 };
    int chosen[3];
    sched_reason reasons[2];
    ASSERT_EQ(sched_place(c.in, c.n, &req, 3, chosen, reasons), 2);
    ASSERT_TRUE(chosen[0] != chosen[1]);
    ASSERT_EQ(chosen[2], -1);
    ASSERT_EQ(reasons[0], SCHED_F_PORTS);
    ASSERT_EQ(reasons[1], SCHED_F_PORTS);
    for (int i = 0; i < 2; i++) {
        ASSERT_TRUE(sched_instance_has_port(&c.in[i], 8080, false));
        ASSERT_TRUE(sched_instance_has_port(&c.in[i], 9090, false));
        ASSERT_FALSE(sched_instance_has_port(&c.in[i], 8080, true));
    }
    /* UDP on the same numbers is still free. */
    sched_request udp_req = { .cpu = 1, .memory = 1, .ports_udp = tcp, .nports_udp = 2 };
    ASSERT_EQ(sched_place(c.in, c.n, &udp_req, 3, chosen, reasons), 2);
    ASSERT_EQ(chosen[2], -1);
    ASSERT_EQ(reasons[0], SCHED_F_PORTS_UDP);
    ASSERT_EQ(reasons[1], SCHED_F_PORTS_UDP);
    cluster_done(&c);
}

TEST(count_updates_spread_between_tasks)
{
    /* Ten tasks over three zones with no prior tasks: 4/3/3 or a permutation,
     * never more than one apart at any point. */
    cluster c = { 0 };
    add(&c, "a", 100000, 100000, "us-east-1a");
    add(&c, "b", 100000, 100000, "us-east-1b");
    add(&c, "c", 100000, 100000, "us-east-1c");
    sched_strategy st[] = { { SCHED_SPREAD_ATTRIBUTE, "ecs.availability-zone" } };
    sched_request req = { .cpu = 1, .memory = 1, .strategies = st, .nstrategies = 1 };
    int chosen[10];
    ASSERT_EQ(sched_place(c.in, c.n, &req, 10, chosen, NULL), 10);
    unsigned z[3] = { 0 };
    for (int k = 0; k < 10; k++) {
        z[chosen[k]]++;
        unsigned mx = max3(z), mn = min3(z);
        ASSERT_TRUE(mx - mn <= 1);
    }
    ASSERT_EQ(c.in[0].same_group + c.in[1].same_group + c.in[2].same_group, 10);
    cluster_done(&c);
}

/* --- capacity type --- */

TEST(fargate_and_ec2_capacity)
{
    cluster c = { 0 };
    size_t ec2 = add(&c, "ec2", 4096, 4096, "a");
    size_t fg = add(&c, "fargate", 4096, 4096, "a");
    size_t both = add(&c, "both", 4096, 4096, "a");
    c.in[fg].ec2_ok = false;
    c.in[fg].fargate_ok = true;
    c.in[both].fargate_ok = true;
    int chosen[6];
    sched_reason reasons[3];
    for (uint64_t seed = 1; seed <= 50; seed++) {
        sched_request ec2_req = { .cpu = 1, .memory = 1, .fargate = false, .seed = seed };
        sched_request fg_req = { .cpu = 1, .memory = 1, .fargate = true, .seed = seed };
        ASSERT_EQ(sched_place(c.in, c.n, &ec2_req, 1, chosen, NULL), 1);
        ASSERT_TRUE(chosen[0] == (int) ec2 || chosen[0] == (int) both);
        ASSERT_EQ(sched_place(c.in, c.n, &fg_req, 1, chosen, NULL), 1);
        ASSERT_TRUE(chosen[0] == (int) fg || chosen[0] == (int) both);
    }
    /* Without Fargate capacity a Fargate task fails with LAUNCH_TYPE. */
    cluster e = { 0 };
    add(&e, "ec2-1", 4096, 4096, "a");
    add(&e, "ec2-2", 4096, 4096, "b");
    sched_request fg_req = { .cpu = 1, .memory = 1, .fargate = true };
    ASSERT_EQ(sched_place(e.in, e.n, &fg_req, 2, chosen, reasons), 0);
    ASSERT_EQ(reasons[0], SCHED_F_LAUNCH_TYPE);
    ASSERT_EQ(reasons[1], SCHED_F_LAUNCH_TYPE);
    cluster_done(&e);
    /* And an EC2 task on Fargate-only capacity likewise. */
    cluster f = { 0 };
    size_t only = add(&f, "fg", 4096, 4096, "a");
    f.in[only].ec2_ok = false;
    f.in[only].fargate_ok = true;
    sched_request ec2_req = { .cpu = 1, .memory = 1 };
    ASSERT_EQ(sched_place(f.in, f.n, &ec2_req, 1, chosen, reasons), 0);
    ASSERT_EQ(reasons[0], SCHED_F_LAUNCH_TYPE);
    cluster_done(&f);
    cluster_done(&c);
}

TAP_MAIN()
