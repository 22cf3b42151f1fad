/* Task-definition validation and normalisation as ECS does it, as a pure
 * function over the RegisterTaskDefinition input (already model-validated for
 * JSON types). Produces the TaskDefinition document without the registration
 * fields (ARN, revision, status, registeredAt/By). Errors are ClientException
 * with ECS's wording where known. */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "basic/err.h"

int taskdef_normalize(const json_t *in, json_t **ret, sk_err *err);

/* "1 vCPU" → 1024, "512" → 512, "0.25 vcpu" → 256. */
int taskdef_parse_cpu(const char *s, int64_t *ret);
/* "2 GB" → 2048, "512" → 512, "0.5gb" → 512 (MiB). */
int taskdef_parse_memory(const char *s, int64_t *ret);
/* Whether (cpu units, memory MiB) is a valid Fargate size. */
bool taskdef_fargate_size_valid(int64_t cpu, int64_t memory);
