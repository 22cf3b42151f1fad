/* Machine-readable AWS service models, compiled to C tables by
 * tools/gen-model.py from api/<service>.json, and the validator that checks a
 * JSON request against an operation's input shape.
 *
 * Validation covers JSON types, required members, enums, numeric ranges,
 * string lengths and list/map sizes. Unknown members are ignored, as AWS's
 * JSON protocol does. Type errors are reported as SerializationException, and
 * constraint violations with the service's validation error type, in AWS's
 * "1 validation error detected: ..." form. */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "basic/err.h"

#define MODEL_NONE 0xFFFF

typedef enum model_type {
    MODEL_STRUCT = 1,
    MODEL_LIST,
    MODEL_MAP,
    MODEL_STRING,
    MODEL_INTEGER,
    MODEL_LONG,
    MODEL_DOUBLE,
    MODEL_BOOLEAN,
    MODEL_TIMESTAMP,
    MODEL_BLOB,
    MODEL_DOCUMENT,
} model_type;

enum {
    MODEL_HAS_MIN = 1 << 0,
    MODEL_HAS_MAX = 1 << 1,
    MODEL_EXCEPTION = 1 << 2,
    MODEL_FAULT = 1 << 3,
};

typedef struct model_member {
    const char *name;
    uint16_t shape;
    bool required;
} model_member;

typedef struct model_shape {
    const char *name;
    uint8_t type;
    uint8_t flags;
    int64_t min, max;
    uint32_t member_off;
    uint16_t nmembers;
    uint16_t elem; /* list member or map value */
    uint16_t key;  /* map key */
    uint32_t enum_off;
    uint16_t nenum;
} model_shape;

typedef struct model_op {
    const char *name;
    uint16_t input;
    uint16_t output;
} model_op;

typedef struct model_service {
    const char *name;
    const char *target_prefix;
    const char *signing_name;
    const char *protocol;
    const char *api_version;
    const model_shape *shapes;
    size_t nshapes;
    const model_member *members;
    const char *const *enums;
    const model_op *ops;
    size_t nops;
} model_service;

extern const model_service model_ecs;
extern const model_service model_ecr;
extern const model_service model_logs;
extern const model_service model_sts;

const model_op *model_find_op(const model_service *svc, const char *name);
int model_find_shape(const model_service *svc, const char *name);
/* Validates v against shape; validation_type is the error type for constraint
 * violations (e.g. "InvalidParameterException"). */
int model_validate(const model_service *svc, uint16_t shape, const json_t *v,
                   const char *validation_type, sk_err *err);
bool model_enum_contains(const model_service *svc, uint16_t shape, const char *value);
