/* The ECS cluster query language, as used by memberOf placement constraints
 * and ListContainerInstances --filter.
 *
 *   expression := term (("&&" | "and" | "||" | "or") term)*      (and binds tighter)
 *   term       := ("!" | "not") term | "(" expression ")" | predicate
 *   predicate  := subject operator [argument]
 *   subject    := agentConnected | agentVersion | attribute:<name> | ec2InstanceId
 *               | registeredAt | runningTasksCount | task:group
 *   operator   := == equals != not_equals > >= < <= exists !exists not_exists
 *               | in !in not_in =~ matches !~ not_matches
 *   argument   := value | "[" value ("," value)* "]"   (values may be quoted '…' or "…")
 *
 * Comparisons are numeric when both sides parse as numbers, versions compare
 * component-wise for agentVersion, dates for registeredAt (YYYY-MM-DD or ISO
 * 8601), and strings otherwise. =~ uses POSIX extended regular expressions
 * (anchored to the whole value), the closest libc has to Java's regex.
 * Expressions are capped at 2000 characters and a bounded nesting depth. */
#pragma once

#include <stdbool.h>

#include "basic/err.h"
#include "basic/timeutil.h"

#define SCHED_QUERY_MAX_LEN   2000
#define SCHED_QUERY_MAX_DEPTH 32

typedef struct sched_query sched_query;

/* What an expression is evaluated against: one container instance. */
typedef struct sched_query_target {
    /* Value of attribute name, or NULL when the instance lacks it. An attribute
     * without a value reads as "". */
    const char *(*attribute)(void *userdata, const char *name);
    /* Whether a live task of the given group runs on the instance. */
    bool (*has_task_group)(void *userdata, const char *group);
    void *userdata;
    bool agent_connected;
    const char *agent_version; /* may be NULL */
    const char *ec2_instance_id;
    usec_t registered_at_usec; /* realtime */
    unsigned running_tasks_count;
} sched_query_target;

/* Parses expr; SK_E_INVALID with a message pointing at the offending token. */
int sched_query_parse(const char *expr, sched_query **ret, sk_err *err);
void sched_query_free(sched_query *q);
bool sched_query_eval(const sched_query *q, const sched_query_target *t);
