/* libFuzzer target for RegisterTaskDefinition: the input is decoded as the
 * router does, validated against RegisterTaskDefinitionRequest (the contract
 * of taskdef_normalize is a model-validated input) and normalised.
 *
 * Properties checked beyond memory safety:
 *  - a rejection is a ClientException with a message;
 *  - normalisation is a fixpoint: re-registering a normalised definition (what
 *    `aws ecs describe-task-definition` → `register-task-definition` does)
 *    succeeds and yields the same document. */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "basic/err.h"
#include "controlplane/taskdef.h"
#include "shared/jsonutil.h"
#include "shared/model.h"
#include "store/store.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint16_t input_shape(void)
{
    static int shape = -1;
    if (shape < 0) {
        const model_op *op = model_find_op(&model_ecs, "RegisterTaskDefinition");
        if (!op)
            abort();
        shape = op->input;
    }
    return (uint16_t) shape;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > (1u << 20))
        return 0;
    json_error_t jerr;
    json_t *in = json_loadb((const char *) data, size, JSON_REJECT_DUPLICATES, &jerr);
    if (!in || !json_is_object(in)) {
        json_decref(in);
        return 0;
    }
    sk_err err = { 0 };
    if (model_validate(&model_ecs, input_shape(), in, "ClientException", &err) < 0) {
        sk_err_done(&err);
        json_decref(in);
        return 0;
    }
    json_t *td = NULL;
    if (taskdef_normalize(in, &td, &err) < 0) {
        if (err.code != SK_E_INVALID || !err.type || strcmp(err.type, "ClientException") != 0 ||
            !err.msg || td)
            abort();
        sk_err_done(&err);
        json_decref(in);
        return 0;
    }
    if (!td || !json_is_object(td) || !js_str(td, "family") ||
        !js_arr(td, "containerDefinitions") || !js_arr(td, "requiresAttributes") ||
        !js_arr(td, "compatibilities"))
        abort();
    size_t len;
    char *dump = store_json_dump(td, &len);
    if (!dump || len == 0)
        abort();
    free(dump);

    json_t *again = NULL;
    if (taskdef_normalize(td, &again, &err) < 0)
        abort(); /* a normalised definition no longer registers */
    if (!json_equal(td, again))
        abort(); /* normalisation is not idempotent */
    json_decref(again);
    json_decref(td);
    json_decref(in);
    return 0;
}
