/* libFuzzer target for the cluster query language: parse arbitrary input and,
 * when it parses, evaluate it against a fixed instance. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "basic/alloc.h"
#include "basic/err.h"
#include "basic/macro.h"
#include "basic/strutil.h"
#include "scheduler/query.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const attrs[][2] = {
    { "ecs.instance-type", "t2.small" },
    { "ecs.availability-zone", "us-east-1a" },
    { "ecs.os-type", "linux" },
    { "stack", "prod" },
    { "cpu", "10" },
    { "ratio", "-1.50" },
    { "empty", "" },
    /* Long enough for a slow regular expression to show up as a slow unit. */
    { "long",
      "i-0123456789abcdef/ecs.capability.docker-remote-api.1.17:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
      "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
      "bababababababababababababababababababababababababababababababababababababababa"
      "t2.small us-east-1a linux prod 10 -1.50 2018-06-18T12:00:00Z 1.14.5 family:web" },
};

static const char *const groups[] = { "service:production", "family:web" };

static const char *fuzz_attribute(void *userdata, const char *name)
{
    for (size_t i = 0; i < ELEMENTSOF(attrs); i++)
        if (streq(attrs[i][0], name))
            return attrs[i][1];
    return NULL;
}

static bool fuzz_has_task_group(void *userdata, const char *group)
{
    for (size_t i = 0; i < ELEMENTSOF(groups); i++)
        if (streq(groups[i], group))
            return true;
    return false;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* Inputs far past the length cap only exercise the length check. */
    if (size > 4 * SCHED_QUERY_MAX_LEN)
        return 0;
    _cleanup_free_ char *expr = xmalloc(size + 1);
    memcpy(expr, data, size);
    expr[size] = '\0';

    _cleanup_err_ sk_err err = { 0 };
    sched_query *q = NULL;
    if (sched_query_parse(expr, &q, &err) < 0) {
        if (err.code != SK_E_INVALID || !err.msg || q)
            abort();
        return 0;
    }
    const sched_query_target t = {
        .attribute = fuzz_attribute,
        .has_task_group = fuzz_has_task_group,
        .userdata = NULL,
        .agent_connected = true,
        .agent_version = "1.14.5",
        .ec2_instance_id = "i-abcd1234",
        .registered_at_usec = 1529323200ULL * USEC_PER_SEC,
        .running_tasks_count = 3,
    };
    (void) sched_query_eval(q, &t);
    const sched_query_target bare = { .agent_connected = false };
    (void) sched_query_eval(q, &bare);
    sched_query_free(q);
    return 0;
}
