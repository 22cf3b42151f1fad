/* libFuzzer target for the AWS JSON request decoding path: the first byte
 * picks an operation, the rest is the request body. It is decoded as
 * aws_router does (JSON_REJECT_DUPLICATES, object required) and validated
 * against the operation's input shape. */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "basic/err.h"
#include "basic/macro.h"
#include "shared/model.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct fuzz_op {
    const model_service *svc;
    const char *name;
} fuzz_op;

/* Indexed by the first input byte modulo the count: keep the order stable,
 * the corpus depends on it. */
static const fuzz_op ops[] = {
    { &model_ecs, "RegisterTaskDefinition" },
    { &model_ecs, "RunTask" },
    { &model_ecs, "CreateService" },
    { &model_ecs, "UpdateService" },
    { &model_ecs, "StartTask" },
    { &model_ecs, "ListClusters" },
    { &model_ecs, "DescribeTasks" },
    { &model_ecs, "ListTasks" },
    { &model_ecs, "CreateCluster" },
    { &model_ecs, "PutAttributes" },
    { &model_ecs, "TagResource" },
    { &model_ecs, "SubmitTaskStateChange" },
    { &model_ecs, "RegisterContainerInstance" },
    { &model_ecs, "CreateCapacityProvider" },
    { &model_ecs, "DescribeServices" },
    { &model_ecs, "UpdateContainerInstancesState" },
    { &model_ecr, "UploadLayerPart" },
    { &model_ecr, "PutImage" },
    { &model_ecr, "BatchGetImage" },
    { &model_logs, "CreateLogGroup" },
    { &model_logs, "PutLogEvents" },
    { &model_logs, "GetLogEvents" },
    { &model_ecs, "CreateTaskSet" },
    { &model_ecs, "PutClusterCapacityProviders" },
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > (1u << 20))
        return 0;
    const fuzz_op *fo = &ops[data[0] % ELEMENTSOF(ops)];
    const model_op *op = model_find_op(fo->svc, fo->name);
    if (!op)
        abort(); /* the table above names a missing operation */
    json_error_t jerr;
    json_t *v = json_loadb((const char *) data + 1, size - 1, JSON_REJECT_DUPLICATES, &jerr);
    if (!v || !json_is_object(v)) {
        json_decref(v);
        return 0;
    }
    sk_err err = { 0 };
    int r = model_validate(fo->svc, op->input, v, "InvalidParameterException", &err);
    if (r < 0) {
        /* Every failure is a client error with a wire type and a message. */
        if (err.code != SK_E_INVALID || !err.type || !err.msg || !*err.msg)
            abort();
        if (strcmp(err.type, "SerializationException") != 0 &&
            strcmp(err.type, "InvalidParameterException") != 0)
            abort();
    } else if (err.msg || err.type || err.code != SK_E_NONE)
        abort(); /* success must not touch err */
    /* Validation is a pure function of its input. */
    sk_err err2 = { 0 };
    int r2 = model_validate(fo->svc, op->input, v, "InvalidParameterException", &err2);
    if ((r < 0) != (r2 < 0) || (r < 0 && strcmp(err.msg, err2.msg) != 0))
        abort();
    sk_err_done(&err);
    sk_err_done(&err2);
    json_decref(v);
    return 0;
}
