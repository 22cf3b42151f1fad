#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "basic/alloc.h"
#include "basic/err.h"
#include "basic/strutil.h"
#include "basic/timeutil.h"
#include "scheduler/query.h"
#include "tap.h"

/* A fake container instance. */
typedef struct fake {
    const char *const (*attrs)[2]; /* name, value; value NULL means "no value" */
    size_t n_attrs;
    const char *const *groups;
    size_t n_groups;
} fake;

static const char *fake_attribute(void *userdata, const char *name)
{
    const fake *f = userdata;
    for (size_t i = 0; i < f->n_attrs; i++)
        if (streq(f->attrs[i][0], name))
            return f->attrs[i][1] ? f->attrs[i][1] : "";
    return NULL;
}

static bool fake_has_task_group(void *userdata, const char *group)
{
    const fake *f = userdata;
    for (size_t i = 0; i < f->n_groups; i++)
        if (streq(f->groups[i], group))
            return true;
    return false;
}

static const char *const attrs[][2] = {
    { "ecs.instance-type", "t2.small" },
    { "ecs.availability-zone", "us-east-1a" },
    { "ecs.os-type", "linux" },
    { "stack", "prod" },
    { "cpu", "10" },
    { "mem", "9a" },
    { "ratio", "1.50" },
    { "neg", "-3" },
    { "zero", "-0.0" },
    { "empty", NULL },
    { "a", "1" },
    { "b", "2" },
    { "c", "3" },
    { "path/x_y", "has space, comma]" },
    { "quote", "it's" },
};

static const char *const groups[] = { "service:production", "family:web" };

static fake the_fake = {
    .attrs = attrs,
    .n_attrs = ELEMENTSOF(attrs),
    .groups = groups,
    .n_groups = ELEMENTSOF(groups),
};

static sched_query_target make_target(void)
{
    usec_t reg;
    if (parse_rfc3339("2018-06-18T12:00:00Z", &reg) < 0)
        abort();
    return (sched_query_target){
        .attribute = fake_attribute,
        .has_task_group = fake_has_task_group,
        .userdata = &the_fake,
        .agent_connected = true,
        .agent_version = "1.14.5",
        .ec2_instance_id = "i-abcd1234",
        .registered_at_usec = reg,
        .running_tasks_count = 1,
    };
}

typedef struct qcase {
    const char *expr;
    bool want;
} qcase;

/* Parses and evaluates every case against t; reports each mismatch and
 * returns how many there were. */
static int run_cases(const qcase *cases, size_t n, const sched_query_target *t)
{
    int bad = 0;
    for (size_t i = 0; i < n; i++) {
        sk_err err = { 0 };
        sched_query *q = NULL;
        if (sched_query_parse(cases[i].expr, &q, &err) < 0) {
            printf("#   parse of \"%s\" failed: %s\n", cases[i].expr, err.msg);
            sk_err_done(&err);
            bad++;
            continue;
        }
        bool got = sched_query_eval(q, t);
        if (got != cases[i].want) {
            printf("#   \"%s\" evaluated to %s\n", cases[i].expr, got ? "true" : "false");
            bad++;
        }
        sched_query_free(q);
    }
    return bad;
}

#define ASSERT_CASES(cases, t) ASSERT_EQ(run_cases(cases, ELEMENTSOF(cases), t), 0)

TEST(doc_examples)
{
    sched_query_target t = make_target();
    static const qcase cases[] = {
        { "attribute:ecs.instance-type =~ t2.*", true },
        { "attribute:ecs.instance-type =~ m5.*", false },
        { "attribute:ecs.availability-zone in [us-east-1a, us-east-1b]", true },
        { "attribute:ecs.availability-zone in [us-east-1c, us-east-1b]", false },
        { "task:group == service:production", true },
        { "task:group == service:staging", false },
        { "not(task:group == database)", true },
        { "not(task:group == service:production)", false },
        { "agentVersion < 1.14.5", false },
        { "agentVersion < 1.14.6", true },
        { "runningTasksCount == 1", true },
        { "ec2InstanceId in ['i-abcd1234', 'i-wxyx7890']", true },
        { "ec2InstanceId in ['i-0000', 'i-wxyx7890']", false },
        { "attribute:ecs.instance-type == t2.small && "
          "attribute:ecs.availability-zone != us-east-1d",
          true },
        { "attribute:ecs.instance-type == t2.small && "
          "attribute:ecs.availability-zone != us-east-1a",
          false },
        { "(attribute:a == 1 or attribute:b == 2) and not attribute:c exists", false },
        { "(attribute:a == 1 or attribute:b == 2) and not attribute:nope exists", true },
        { "attribute:stack exists", true },
        { "attribute:stack !exists", false },
        { "attribute:ecs.os-type == linux", true },
        { "agentConnected==false", false },
    };
    ASSERT_CASES(cases, &t);
}

TEST(operators)
{
    sched_query_target t = make_target();
    static const qcase cases[] = {
        { "attribute:stack == prod", true },
        { "attribute:stack equals prod", true },
        { "attribute:stack == dev", false },
        { "attribute:stack != dev", true },
        { "attribute:stack not_equals dev", true },
        { "attribute:stack != prod", false },
        { "attribute:cpu > 9", true },
        { "attribute:cpu > 10", false },
        { "attribute:cpu >= 10", true },
        { "attribute:cpu >= 11", false },
        { "attribute:cpu < 11", true },
        { "attribute:cpu < 10", false },
        { "attribute:cpu <= 10", true },
        { "attribute:cpu <= 9", false },
        { "attribute:stack exists", true },
        { "attribute:stack !exists", false },
        { "attribute:stack not_exists", false },
        { "attribute:nope not_exists", true },
        { "attribute:stack in [dev, prod]", true },
        { "attribute:stack in [dev]", false },
        { "attribute:stack !in [dev, test]", true },
        { "attribute:stack not_in [dev, prod]", false },
        { "attribute:stack =~ pr.d", true },
        { "attribute:stack matches p.*", true },
        { "attribute:stack =~ d.*", false },
        { "attribute:stack !~ d.*", true },
        { "attribute:stack not_matches p.*", false },
        /* Operators need no surrounding whitespace. */
        { "attribute:cpu>=10", true },
        { "attribute:stack!=dev", true },
        { "attribute:stack!in[dev]", true },
        { "attribute:stack in[prod]", true },
        { "attribute:stack=~prod", true },
        { "attribute:stack!~prod", false },
    };
    ASSERT_CASES(cases, &t);
}

TEST(subjects)
{
    sched_query_target t = make_target();
    static const qcase cases[] = {
        { "agentConnected == true", true },
        { "agentConnected == TRUE", true },
        { "agentConnected != true", false },
        { "agentConnected in [false]", false },
        { "agentConnected exists", true },
        { "agentConnected =~ tr.*", true },
        { "agentVersion == 1.14.5", true },
        { "agentVersion exists", true },
        { "agentVersion =~ 1\\.14\\..*", true },
        { "agentVersion in [1.13.0, 1.14.5]", true },
        { "ec2InstanceId == i-abcd1234", true },
        { "ec2InstanceId =~ i-[a-f0-9]+", true },
        { "ec2InstanceId != i-abcd1234", false },
        { "registeredAt == 2018-06-18T12:00:00Z", true },
        { "registeredAt =~ 2018-06-18T.*", true },
        { "runningTasksCount > 0", true },
        { "runningTasksCount >= 2", false },
        { "runningTasksCount != 1", false },
        { "runningTasksCount in [0, 1]", true },
        { "runningTasksCount > -1", true },
        { "runningTasksCount =~ [0-9]", true },
        { "task:group == family:web", true },
        { "task:group != family:web", false },
        { "task:group != family:db", true },
        { "task:group in [family:db, family:web]", true },
        { "task:group in [family:db, family:api]", false },
        { "task:group !in [family:db, family:api]", true },
        { "task:group not_in [family:db, service:production]", false },
        { "attribute:path/x_y exists", true },
    };
    ASSERT_CASES(cases, &t);
}

TEST(absent_subjects)
{
    sched_query_target t = make_target();
    t.agent_version = NULL;
    t.ec2_instance_id = NULL;
    static const qcase cases[] = {
        { "attribute:nope == x", false },
        { "attribute:nope != x", true },
        { "attribute:nope > 1", false },
        { "attribute:nope >= 1", false },
        { "attribute:nope < 1", false },
        { "attribute:nope <= 1", false },
        { "attribute:nope exists", false },
        { "attribute:nope !exists", true },
        { "attribute:nope in [x, y]", false },
        { "attribute:nope !in [x, y]", true },
        { "attribute:nope =~ .*", false },
        { "attribute:nope !~ .*", true },
        /* An attribute without a value is present and reads as "". */
        { "attribute:empty exists", true },
        { "attribute:empty == ''", true },
        { "attribute:empty =~ .*", true },
        { "attribute:empty =~ .+", false },
        { "agentVersion exists", false },
        { "agentVersion < 9.0.0", false },
        { "agentVersion != 1.0.0", true },
        { "ec2InstanceId exists", false },
        { "ec2InstanceId == i-abcd1234", false },
        { "ec2InstanceId !in [i-abcd1234]", true },
    };
    ASSERT_CASES(cases, &t);

    /* A target without callbacks has no attributes and no tasks. */
    sched_query_target bare = { .agent_connected = false };
    static const qcase bare_cases[] = {
        { "attribute:stack exists", false },           { "attribute:stack != prod", true },
        { "task:group == service:production", false }, { "task:group != service:production", true },
        { "agentConnected == false", true },           { "runningTasksCount == 0", true },
    };
    ASSERT_CASES(bare_cases, &bare);
}

TEST(precedence)
{
    sched_query_target t = make_target();
    static const qcase cases[] = {
        /* and binds tighter than or */
        { "attribute:a == 1 or attribute:a == 2 and attribute:b == 9", true },
        { "(attribute:a == 1 or attribute:a == 2) and attribute:b == 9", false },
        { "attribute:a == 9 and attribute:b == 2 or attribute:c == 3", true },
        { "attribute:a == 9 and (attribute:b == 2 or attribute:c == 3)", false },
        { "attribute:a == 9 && attribute:b == 2 || attribute:c == 3", true },
        { "attribute:a == 1 || attribute:x == 1 && attribute:y == 1", true },
        /* not binds tighter than and/or */
        { "not attribute:a == 1 or attribute:b == 2", true },
        { "not (attribute:a == 1 or attribute:b == 2)", false },
        { "! attribute:a == 1 and attribute:b == 2", false },
        { "!attribute:a == 2 && attribute:b == 2", true },
        { "!!attribute:a == 1", true },
        { "not not attribute:a == 1", true },
        { "not(not(attribute:a == 1))", true },
        { "!(attribute:a == 1)", false },
        /* Connectives need no surrounding whitespace. */
        { "attribute:a==1&&attribute:b==2", true },
        { "attribute:a==9||attribute:b==2", true },
        { "(attribute:a == 1)and(attribute:b == 2)", true },
        { "(attribute:a == 9)or(attribute:b == 2)", true },
        { "((((attribute:a == 1))))", true },
        { "  attribute:a == 1  ", true },
        { "\tattribute:a\n==\r1 ", true },
        { "attribute:a == 1 and attribute:b == 2 and attribute:c == 3 and attribute:stack exists",
          true },
        { "attribute:a == 9 or attribute:b == 9 or attribute:c == 9 or attribute:stack == x",
          false },
    };
    ASSERT_CASES(cases, &t);
}

TEST(quoting_and_lists)
{
    sched_query_target t = make_target();
    static const qcase cases[] = {
        { "attribute:stack == 'prod'", true },
        { "attribute:stack == \"prod\"", true },
        { "attribute:stack == 'pro'", false },
        { "attribute:path/x_y == 'has space, comma]'", true },
        { "attribute:path/x_y in ['x', \"has space, comma]\"]", true },
        { "attribute:quote == \"it's\"", true },
        { "attribute:stack in ['dev','prod']", true },
        { "attribute:stack in [ dev , prod ]", true },
        { "attribute:stack in [prod]", true },
        { "attribute:stack in ['']", false },
        { "attribute:stack == '&&'", false },
        { "attribute:stack == 'a || b' or attribute:stack == prod", true },
        { "(attribute:stack == prod)", true },
        { "(attribute:stack in [dev, prod])", true },
        { "attribute:ecs.instance-type in [t2.*, t2.small]", true },
    };
    ASSERT_CASES(cases, &t);
}

TEST(regex)
{
    sched_query_target t = make_target();
    static const qcase cases[] = {
        /* Anchored to the whole value. */
        { "attribute:ecs.instance-type =~ t2", false },
        { "attribute:ecs.instance-type =~ small", false },
        { "attribute:ecs.instance-type =~ .*small", true },
        { "attribute:ecs.instance-type =~ ^t2\\.small$", true },
        { "attribute:ecs.instance-type =~ t2\\.(micro|small)", true },
        { "attribute:ecs.instance-type =~ t2\\.(micro|large)", false },
        { "attribute:ecs.instance-type =~ t2|t2.small", true },
        { "attribute:ecs.instance-type =~ [a-z0-9]+\\.[a-z]+", true },
        { "attribute:ecs.instance-type =~ t[0-9]{1,2}\\.small", true },
        { "attribute:ecs.instance-type =~ 't2\\.sm.*'", true },
        { "(attribute:ecs.instance-type =~ (t2|m5)\\..*)", true },
        { "attribute:ecs.instance-type =~ T2.*", false },
        { "attribute:ecs.availability-zone =~ us-(east|west)-1[a-c] && attribute:stack == prod",
          true },
        { "attribute:empty =~ ''", true },
        /* Stacked repetitions are fine as long as no loop can match nothing. */
        { "attribute:ecs.instance-type =~ .*?", true },
        { "attribute:ecs.instance-type =~ (t2|[a-z]+)+*\\.small", true },
        { "attribute:ecs.instance-type =~ (t[0-9]?\\.)*small", true },
        { "attribute:ecs.instance-type =~ (a*b)*t2.small", true },
        { "attribute:ecs.instance-type =~ [a-z0-9.-]{1,100}", true },
        { "attribute:ecs.instance-type =~ t2.{6}", true },
        { "attribute:ecs.instance-type =~ (t2.{1,3}){1,3}all", true },
    };
    ASSERT_CASES(cases, &t);
}

TEST(versions)
{
    sched_query_target t = make_target();
    t.agent_version = "1.9.0";
    static const qcase cases[] = {
        { "agentVersion < 1.14.5", true },   { "agentVersion > 1.14.5", false },
        { "agentVersion >= 1.9", true },     { "agentVersion == 1.9", true },
        { "agentVersion == 1.9.0.0", true }, { "agentVersion == 01.09.00", true },
        { "agentVersion < 1.9.0.1", true },  { "agentVersion > 1.8.99999999999999999999", true },
        { "agentVersion < 2", true },        { "agentVersion in [1.9, 2.0]", true },
    };
    ASSERT_CASES(cases, &t);

    /* A version the agent reports that is not dotted numbers compares as a string. */
    t.agent_version = "1.14.5-dev";
    static const qcase odd[] = {
        { "agentVersion == 1.14.5", false },
        { "agentVersion > 1.14.5", true },
        { "agentVersion =~ 1\\.14\\.5-.*", true },
    };
    ASSERT_CASES(odd, &t);
}

TEST(dates)
{
    sched_query_target t = make_target();
    static const qcase cases[] = {
        { "registeredAt > 2018-06-18", true },
        { "registeredAt < 2018-06-19", true },
        { "registeredAt < 2018-06-18", false },
        { "registeredAt >= 2018-06-18T12:00:00Z", true },
        { "registeredAt > 2018-06-18T12:00:00Z", false },
        { "registeredAt < 2018-06-18T12:00:00.001Z", true },
        { "registeredAt == 2018-06-18T14:00:00+02:00", true },
        { "registeredAt > 2018-06-18T12:30:00+01:00", true },
        { "registeredAt in [2017-01-01, 2018-06-18T12:00:00Z]", true },
        { "registeredAt < 2018-06-18T23:59:59Z and registeredAt > 2018-06-17", true },
    };
    ASSERT_CASES(cases, &t);
}

TEST(numeric_vs_string)
{
    sched_query_target t = make_target();
    static const qcase cases[] = {
        /* "10" and "9" are numbers: 10 > 9, though "10" < "9" as strings. */
        { "attribute:cpu > 9", true },
        { "attribute:cpu < 9", false },
        { "attribute:cpu == 10.0", true },
        { "attribute:cpu == 010", true },
        { "attribute:cpu == +10", true },
        { "attribute:cpu > 9.99", true },
        { "attribute:cpu < 10.0001", true },
        { "attribute:cpu in [1, 10.00]", true },
        /* "9a" is not a number: string comparison. */
        { "attribute:mem > 10", true },
        { "attribute:mem < 9b", true },
        { "attribute:mem == 9", false },
        { "attribute:ratio == 1.5", true },
        { "attribute:ratio > 1.49", true },
        { "attribute:ratio < 1.500001", true },
        { "attribute:neg < 0", true },
        { "attribute:neg < -2.5", true },
        { "attribute:neg > -3.5", true },
        { "attribute:neg == -3", true },
        { "attribute:zero == 0", true },
        { "attribute:zero == +0", true },
        { "attribute:zero > -1", true },
        { "attribute:zero < 0.1", true },
        { "attribute:cpu > 99999999999999999999999999999", false },
        /* Strings order by strcmp. */
        { "attribute:stack > pro", true },
        { "attribute:stack < prp", true },
        { "ec2InstanceId > i-abcd", true },
        /* Exponents are not numbers: "10" < "1e1" as strings. */
        { "attribute:cpu > 1e1", false },
    };
    ASSERT_CASES(cases, &t);
}

/* Expressions that must not parse; each is paired with a fragment of the
 * expected error message, or NULL. */
TEST(malformed)
{
    static const struct {
        const char *expr;
        const char *msg;
    } cases[] = {
        { "", "empty expression" },
        { "   ", "empty expression" },
        { "(attribute:a == 1", "expected ')'" },
        { "attribute:a == 1)", "unexpected token ')' at position 17" },
        { "((attribute:a == 1)", "expected ')'" },
        { "()", "expected a subject" },
        { "attribute:a ==", "expected a value for '=='" },
        { "attribute:a == )", "expected a value" },
        { "attribute:a", "expected an operator" },
        { "attribute:a === 1", NULL },
        { "attribute:a ~= 1", "unknown operator '~='" },
        { "attribute:a like 1", "unknown operator 'like' at position 13" },
        { "attribute:a EQUALS 1", "unknown operator" },
        { "attribute:a ! exists", "unknown operator '!'" },
        { "foo == 1", "unknown subject 'foo' at position 1" },
        { "AgentVersion == 1.0", "unknown subject" },
        { "attribute: == 1", "missing attribute name" },
        { "attribute:a@b == 1", "invalid character '@' in attribute name at position 12" },
        { "task:groups == x", "unknown subject" },
        { "attribute:a in x", "expected a list" },
        { "attribute:a in [x", "expected ',' or ']'" },
        { "attribute:a in [x y]", "expected ',' or ']'" },
        { "attribute:a in []", "empty list" },
        { "attribute:a in [x,]", "expected a value" },
        { "attribute:a in [,x]", "expected a value" },
        { "attribute:a == [x]", "takes a single value" },
        { "attribute:a exists 1", "unexpected token '1'" },
        { "attribute:a == 1 attribute:b == 2", "unexpected token 'attribute:b'" },
        { "attribute:a == 1 and", "expected a subject but found end of expression" },
        { "attribute:a == 1 or or attribute:b exists", NULL },
        { "and attribute:a exists", "unknown subject 'and'" },
        { "attribute:a exists andattribute:b exists", "unexpected token" },
        { "not", "expected a subject" },
        { "attribute:a == 'x", "unterminated string starting at position 16" },
        { "attribute:a == 'x'y", "unexpected token 'y'" },
        { "attribute:a =~ '('", "invalid regular expression '(' at position 16" },
        { "attribute:a =~ a)(b", NULL },
        { "attribute:a =~ '*['", "invalid regular expression" },
        { "attribute:a =~ a{1,300}", "too complex" },
        { "attribute:a =~ (a{1,200}){1,200}", "too complex" },
        { "attribute:a =~ ((((((((((((((a+)+)+)+)+)+)+)+)+)+)+)+)+)+)+", "too complex" },
        { "attribute:a =~ a{256}", "too complex" },
        { "attribute:a =~ a{1,99999999999}", "too complex" },
        { "attribute:a =~ .{0,200}", "too complex" },
        { "attribute:a =~ (a|b|c){0,50}", "too complex" },
        { "attribute:a =~ (.{255}){9}", "too complex" },
        { "attribute:a =~ a**", "can match the empty string" },
        { "attribute:a =~ (a?){3}", "can match the empty string" },
        { "attribute:a =~ x(a?)*", "can match the empty string" },
        { "attribute:a =~ (a|)+", "can match the empty string" },
        { "attribute:a =~ (a{0,2}){3,}", "can match the empty string" },
        { "attribute:a =~ ()*", "can match the empty string" },
        { "attribute:a =~ (^)*", "can match the empty string" },
        { "attribute:a =~ (a)\\1", "back-references" },
        { "agentVersion < 1.x", "invalid version '1.x'" },
        { "agentVersion < v1.2", "invalid version" },
        { "agentVersion in [1.2, 1..2]", "invalid version '1..2' at position 23" },
        { "registeredAt > yesterday", "invalid date 'yesterday'" },
        { "registeredAt > 2018-13-01", "invalid date" },
        { "runningTasksCount > many", "invalid integer 'many'" },
        { "runningTasksCount == 1.5", "invalid integer" },
        { "agentConnected == yes", "agentConnected takes true or false" },
        { "agentConnected > false", "operator '>' is not supported for agentConnected" },
        { "task:group =~ web.*", "operator '=~' is not supported for task:group" },
        { "task:group exists", "not supported for task:group" },
        { "task:group < x", "not supported" },
        { "attribute:a == 1 \x01", "invalid character 0x01 at position 18" },
        { "attribute:a == 1 && && attribute:b == 2", "expected a subject" },
        { "attribute:a == 1 AND attribute:b == 2", "unexpected token 'AND'" },
        { "NOT attribute:a exists", "unknown subject 'NOT'" },
    };
    int bad = 0;
    for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
        sk_err err = { 0 };
        sched_query *q = (sched_query *) &bad; /* must be reset on failure */
        if (sched_query_parse(cases[i].expr, &q, &err) >= 0) {
            printf("#   \"%s\" unexpectedly parsed\n", cases[i].expr);
            sched_query_free(q);
            bad++;
            continue;
        }
        if (q != NULL || err.code != SK_E_INVALID || !err.msg ||
            (cases[i].msg && !strstr(err.msg, cases[i].msg))) {
            printf("#   \"%s\": code %d, message '%s'\n", cases[i].expr, (int) err.code,
                   err.msg ? err.msg : "(null)");
            bad++;
        }
        sk_err_done(&err);
    }
    ASSERT_EQ(bad, 0);
}

static char *repeat(const char *s, size_t n)
{
    size_t len = strlen(s);
    char *r = xmalloc(len * n + 1);
    for (size_t i = 0; i < n; i++)
        memcpy(r + i * len, s, len);
    r[len * n] = '\0';
    return r;
}

static int parse_ok(const char *expr)
{
    _cleanup_err_ sk_err err = { 0 };
    sched_query *q = NULL;
    int r = sched_query_parse(expr, &q, &err);
    sched_query_free(q);
    return r;
}

TEST(length_limit)
{
    /* Exactly SCHED_QUERY_MAX_LEN characters is allowed, one more is not. */
    const char *base = "attribute:a exists";
    size_t pad = SCHED_QUERY_MAX_LEN - strlen(base);
    _cleanup_free_ char *spaces = repeat(" ", pad);
    _cleanup_free_ char *ok = strjoin(base, spaces);
    ASSERT_EQ(strlen(ok), SCHED_QUERY_MAX_LEN);
    ASSERT_OK(parse_ok(ok));
    _cleanup_free_ char *long1 = strjoin(ok, " ");
    _cleanup_err_ sk_err err = { 0 };
    sched_query *q = NULL;
    ASSERT_FAIL(sched_query_parse(long1, &q, &err));
    ASSERT_TRUE(strstr(err.msg, "longer than 2000") != NULL);

    /* Many terms within the cap. */
    _cleanup_free_ char *many = repeat("attribute:a exists or ", 80);
    _cleanup_free_ char *full = strjoin(many, "attribute:z exists");
    ASSERT_OK(parse_ok(full));
    _cleanup_free_ char *ands = repeat("attribute:a exists && ", 80);
    _cleanup_free_ char *full_ands = strjoin(ands, "attribute:a == 1");
    sched_query_target t = make_target();
    ASSERT_OK(sched_query_parse(full_ands, &q, &err));
    ASSERT_TRUE(sched_query_eval(q, &t));
    sched_query_free(q);
}

TEST(depth_limit)
{
    char buf[512];
    /* SCHED_QUERY_MAX_DEPTH parentheses are fine, one more is not. */
    for (int extra = 0; extra <= 1; extra++) {
        int d = SCHED_QUERY_MAX_DEPTH + extra;
        _cleanup_free_ char *open = repeat("(", (size_t) d);
        _cleanup_free_ char *close = repeat(")", (size_t) d);
        snprintf(buf, sizeof(buf), "%sattribute:a == 1%s", open, close);
        if (extra)
            ASSERT_FAIL(parse_ok(buf));
        else
            ASSERT_OK(parse_ok(buf));
    }
    /* Negations count towards the depth too. */
    _cleanup_free_ char *nots = repeat("!", SCHED_QUERY_MAX_DEPTH);
    snprintf(buf, sizeof(buf), "%sattribute:a == 1", nots);
    ASSERT_OK(parse_ok(buf));
    snprintf(buf, sizeof(buf), "!%sattribute:a == 1", nots);
    _cleanup_err_ sk_err err = { 0 };
    sched_query *q = NULL;
    ASSERT_FAIL(sched_query_parse(buf, &q, &err));
    ASSERT_TRUE(strstr(err.msg, "nested deeper than 32") != NULL);
    _cleanup_free_ char *notp = repeat("not(", SCHED_QUERY_MAX_DEPTH / 2 + 1);
    _cleanup_free_ char *closep = repeat(")", SCHED_QUERY_MAX_DEPTH / 2 + 1);
    snprintf(buf, sizeof(buf), "%sattribute:a == 1%s", notp, closep);
    ASSERT_FAIL(parse_ok(buf));
    /* Even (32) nots cancel out. */
    snprintf(buf, sizeof(buf), "%sattribute:a == 1", nots);
    sched_query_target t = make_target();
    ASSERT_OK(sched_query_parse(buf, &q, &err));
    ASSERT_TRUE(sched_query_eval(q, &t));
    sched_query_free(q);
    /* Depth is restored after each parenthesised group. */
    _cleanup_free_ char *seq = repeat("(attribute:a == 1) and ", 60);
    _cleanup_free_ char *full = strjoin(seq, "attribute:a == 1");
    ASSERT_OK(parse_ok(full));
}

TEST(list_limit)
{
    char buf[1024];
    size_t n = (size_t) snprintf(buf, sizeof(buf), "attribute:a in [");
    for (int i = 0; i < 100; i++)
        n += (size_t) snprintf(buf + n, sizeof(buf) - n, "%s%d", i ? "," : "", i);
    snprintf(buf + n, sizeof(buf) - n, "]");
    _cleanup_err_ sk_err err = { 0 };
    sched_query *q = NULL;
    ASSERT_OK_ERR(sched_query_parse(buf, &q, &err), &err);
    sched_query_target t = make_target();
    ASSERT_TRUE(sched_query_eval(q, &t));
    sched_query_free(q);
    snprintf(buf + n, sizeof(buf) - n, ",100]");
    ASSERT_FAIL(sched_query_parse(buf, &q, &err));
    ASSERT_TRUE(strstr(err.msg, "more than 100 values") != NULL);
}

TEST(null_handling)
{
    sched_query_free(NULL);
    sched_query_target t = make_target();
    ASSERT_TRUE(sched_query_eval(NULL, &t));
    sched_query *q = NULL;
    ASSERT_FAIL(sched_query_parse(NULL, &q, NULL));
    ASSERT_FAIL(sched_query_parse("bogus", &q, NULL));
    ASSERT_NULL(q);
}

TEST(error_text_is_printable)
{
    _cleanup_err_ sk_err err = { 0 };
    sched_query *q = NULL;
    ASSERT_FAIL(sched_query_parse("attribute:a == 1 \xc3\xa9t\xff", &q, &err));
    ASSERT_STREQ(err.msg, "unexpected token '??t?' at position 18");
    ASSERT_FAIL(sched_query_parse("attribute:a == 1 aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
                                  &q, &err));
    ASSERT_STREQ(err.msg, "unexpected token 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa...' at position 18");
    /* Non-ASCII bytes are fine inside values. */
    sched_query_target t = make_target();
    ASSERT_OK(sched_query_parse("attribute:stack != \xc3\xa9t\xc3\xa9", &q, &err));
    ASSERT_TRUE(sched_query_eval(q, &t));
    sched_query_free(q);
}

TAP_MAIN()
