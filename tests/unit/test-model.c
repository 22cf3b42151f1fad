/* Request validation against the generated service models: JSON type errors
 * (SerializationException), required members, enums, lengths, ranges, lists,
 * maps and blobs (InvalidParameterException / the service's validation type). */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "basic/alloc.h"
#include "basic/buf.h"
#include "basic/err.h"
#include "basic/strutil.h"
#include "shared/model.h"
#include "tap.h"

#define T_SER   "SerializationException"
#define T_PARAM "InvalidParameterException"

/* Validates the JSON text against the input shape of svc.op. Returns the
 * validator's result; a JSON syntax error or unknown op is reported as -100. */
static int check(const model_service *svc, const char *op, const char *json, sk_err *err)
{
    const model_op *o = model_find_op(svc, op);
    if (!o) {
        printf("# unknown operation %s\n", op);
        return -100;
    }
    json_error_t jerr;
    json_t *v = json_loads(json, JSON_DECODE_ANY, &jerr);
    if (!v) {
        printf("# bad test JSON: %s: %s\n", json, jerr.text);
        return -100;
    }
    int r = model_validate(svc, o->input, v, T_PARAM, err);
    json_decref(v);
    return r;
}

static int ecs(const char *op, const char *json, sk_err *err)
{
    return check(&model_ecs, op, json, err);
}

static bool msg_has(const char *msg, const char *needle)
{
    return !needle || (msg && strstr(msg, needle));
}

#define ASSERT_VALID(svc, op, json)                                                   \
    do {                                                                              \
        _cleanup_err_ sk_err _e = { 0 };                                              \
        int _r = check((svc), (op), (json), &_e);                                     \
        if (_r < 0)                                                                   \
            TAP_FAIL("%s %s rejected: %s: %s", (op), (json), _e.type ? _e.type : "-", \
                     _e.msg ? _e.msg : "-");                                          \
    } while (0)

static const char *needle_or_any(const char *n)
{
    return n ? n : "(any)";
}

/* Expects a failure of the given type whose message contains needle (NULL: any). */
#define ASSERT_INVALID(svc, op, json, type_, needle)                                        \
    do {                                                                                    \
        _cleanup_err_ sk_err _e = { 0 };                                                    \
        int _r = check((svc), (op), (json), &_e);                                           \
        if (_r == -100)                                                                     \
            TAP_FAIL("bad test input");                                                     \
        if (_r >= 0)                                                                        \
            TAP_FAIL("%s %s accepted", (op), (json));                                       \
        if (!_e.type || strcmp(_e.type, (type_)) != 0)                                      \
            TAP_FAIL("%s %s: type '%s' != '%s' (%s)", (op), (json), _e.type ? _e.type : "", \
                     (type_), _e.msg ? _e.msg : "");                                        \
        if (_e.code != SK_E_INVALID)                                                        \
            TAP_FAIL("code %d != SK_E_INVALID", (int) _e.code);                             \
        if (!msg_has(_e.msg, (needle)))                                                     \
            TAP_FAIL("%s %s: message '%s' lacks '%s'", (op), (json), _e.msg ? _e.msg : "",  \
                     needle_or_any(needle));                                                \
    } while (0)

#define MINIMAL_TD \
    "{\"family\":\"web\",\"containerDefinitions\":[{\"name\":\"a\",\"image\":\"nginx\"}]"

TEST(find_op)
{
    const model_op *o = model_find_op(&model_ecs, "RunTask");
    ASSERT_NOT_NULL(o);
    ASSERT_STREQ(o->name, "RunTask");
    ASSERT_TRUE(o->input != MODEL_NONE);
    ASSERT_STREQ(model_ecs.shapes[o->input].name, "RunTaskRequest");
    ASSERT_NOT_NULL(model_find_op(&model_ecs, "RegisterTaskDefinition"));
    ASSERT_NOT_NULL(model_find_op(&model_ecs, "ListClusters"));
    ASSERT_NOT_NULL(model_find_op(&model_ecr, "UploadLayerPart"));
    ASSERT_NOT_NULL(model_find_op(&model_logs, "PutLogEvents"));
    ASSERT_NOT_NULL(model_find_op(&model_sts, "GetCallerIdentity"));
    ASSERT_NULL(model_find_op(&model_ecs, "runTask"));
    ASSERT_NULL(model_find_op(&model_ecs, "RunTasks"));
    ASSERT_NULL(model_find_op(&model_ecs, ""));
    ASSERT_NULL(model_find_op(&model_ecs, "GetCallerIdentity"));
    ASSERT_STREQ(model_ecs.target_prefix, "AmazonEC2ContainerServiceV20141113");
    ASSERT_STREQ(model_ecs.signing_name, "ecs");
    ASSERT_STREQ(model_ecr.target_prefix, "AmazonEC2ContainerRegistry_V20150921");
    ASSERT_STREQ(model_logs.target_prefix, "Logs_20140328");
}

TEST(tables_sorted_for_bsearch)
{
    const model_service *svcs[] = { &model_ecs, &model_ecr, &model_logs, &model_sts };
    for (size_t s = 0; s < ELEMENTSOF(svcs); s++) {
        const model_service *svc = svcs[s];
        ASSERT_TRUE(svc->nops > 0);
        for (size_t i = 0; i < svc->nops; i++) {
            if (i && strcmp(svc->ops[i - 1].name, svc->ops[i].name) >= 0)
                TAP_FAIL("%s ops not sorted at %s", svc->name, svc->ops[i].name);
            if (model_find_op(svc, svc->ops[i].name) != &svc->ops[i])
                TAP_FAIL("%s: cannot find op %s", svc->name, svc->ops[i].name);
        }
        for (size_t i = 0; i < svc->nshapes; i++)
            if (model_find_shape(svc, svc->shapes[i].name) != (int) i)
                TAP_FAIL("%s: cannot find shape %s", svc->name, svc->shapes[i].name);
    }
    ASSERT_TRUE(model_ecs.nops >= 77);
    ASSERT_EQ(model_find_shape(&model_ecs, "NoSuchShape"), -1);
}

TEST(enum_contains)
{
    int nm = model_find_shape(&model_ecs, "NetworkMode");
    ASSERT_TRUE(nm >= 0);
    ASSERT_TRUE(model_enum_contains(&model_ecs, (uint16_t) nm, "awsvpc"));
    ASSERT_FALSE(model_enum_contains(&model_ecs, (uint16_t) nm, "AWSVPC"));
    ASSERT_FALSE(model_enum_contains(&model_ecs, (uint16_t) nm, ""));
    /* A shape without an enum accepts anything. */
    int str = model_find_shape(&model_ecs, "String");
    ASSERT_TRUE(str >= 0);
    ASSERT_TRUE(model_enum_contains(&model_ecs, (uint16_t) str, "anything"));
}

TEST(no_input_shape)
{
    _cleanup_err_ sk_err err = { 0 };
    json_t *v = json_object();
    ASSERT_OK(model_validate(&model_ecs, MODEL_NONE, v, T_PARAM, &err));
    json_decref(v);
}

TEST(list_clusters)
{
    ASSERT_VALID(&model_ecs, "ListClusters", "{}");
    ASSERT_VALID(&model_ecs, "ListClusters", "{\"maxResults\":10,\"nextToken\":\"abc\"}");
    /* null members are treated as absent; unknown members are ignored. */
    ASSERT_VALID(&model_ecs, "ListClusters", "{\"maxResults\":null,\"bogus\":[1,{}]}");
    ASSERT_INVALID(&model_ecs, "ListClusters", "{\"maxResults\":\"10\"}", T_SER,
                   "STRING_VALUE can not be converted to Integer");
    ASSERT_INVALID(&model_ecs, "ListClusters", "{\"maxResults\":1.5}", T_SER,
                   "NUMBER_VALUE can not be converted to Integer");
    ASSERT_INVALID(&model_ecs, "ListClusters", "{\"maxResults\":true}", T_SER,
                   "VALUE_TRUE can not be converted to Integer");
    ASSERT_INVALID(&model_ecs, "ListClusters", "{\"maxResults\":2147483648}", T_SER, "Integer");
    ASSERT_INVALID(&model_ecs, "ListClusters", "{\"maxResults\":-2147483649}", T_SER, "Integer");
    ASSERT_VALID(&model_ecs, "ListClusters", "{\"maxResults\":2147483647}");
    ASSERT_INVALID(&model_ecs, "ListClusters", "{\"nextToken\":5}", T_SER,
                   "NUMBER_VALUE can not be converted to String");
    ASSERT_INVALID(&model_ecs, "ListClusters", "{\"nextToken\":{}}", T_SER,
                   "Start of structure or map found where not expected.");
    ASSERT_INVALID(&model_ecs, "ListClusters", "{\"nextToken\":[]}", T_SER,
                   "Start of list found where not expected");
    /* The body itself must be an object. */
    ASSERT_INVALID(&model_ecs, "ListClusters", "[]", T_SER, NULL);
    ASSERT_INVALID(&model_ecs, "ListClusters", "\"x\"", T_SER, NULL);
}

TEST(register_task_definition_required)
{
    ASSERT_VALID(&model_ecs, "RegisterTaskDefinition", MINIMAL_TD "}");
    ASSERT_INVALID(&model_ecs, "RegisterTaskDefinition", "{}", T_PARAM,
                   "2 validation errors detected: ");
    ASSERT_INVALID(&model_ecs, "RegisterTaskDefinition", "{}", T_PARAM,
                   "Value null at 'family' failed to satisfy constraint: Member must not be null");
    ASSERT_INVALID(
            &model_ecs, "RegisterTaskDefinition", "{}", T_PARAM,
            "Value null at 'containerDefinitions' failed to satisfy constraint: Member must not be null");
    ASSERT_INVALID(&model_ecs, "RegisterTaskDefinition",
                   "{\"family\":null,\"containerDefinitions\":[]}", T_PARAM,
                   "1 validation error detected: Value null at 'family'");
    /* A required member of a nested structure (HealthCheck.command). */
    ASSERT_INVALID(&model_ecs, "RegisterTaskDefinition",
                   "{\"family\":\"web\",\"containerDefinitions\":[{\"name\":\"a\","
                   "\"healthCheck\":{\"interval\":5}}]}",
                   T_PARAM, "Member must not be null");
    /* ContainerDependency requires containerName and condition. */
    ASSERT_INVALID(&model_ecs, "RegisterTaskDefinition",
                   "{\"family\":\"web\",\"containerDefinitions\":[{\"name\":\"a\","
                   "\"dependsOn\":[{}]}]}",
                   T_PARAM, "2 validation errors detected");
}

TEST(register_task_definition_types)
{
    ASSERT_INVALID(&model_ecs, "RegisterTaskDefinition",
                   "{\"family\":5,\"containerDefinitions\":[]}", T_SER,
                   "NUMBER_VALUE can not be converted to String");
    ASSERT_INVALID(&model_ecs, "RegisterTaskDefinition",
                   "{\"family\":\"x\",\"containerDefinitions\":{}}", T_SER,
                   "Start of structure or map found where not expected.");
    ASSERT_INVALID(&model_ecs, "RegisterTaskDefinition",
                   "{\"family\":\"x\",\"containerDefinitions\":\"nginx\"}", T_SER,
                   "STRING_VALUE can not be converted to List");
    ASSERT_INVALID(&model_ecs, "RegisterTaskDefinition",
                   "{\"family\":\"x\",\"containerDefinitions\":[\"nginx\"]}", T_SER,
                   "STRING_VALUE can not be converted to Structure");
    /* Container cpu is an Integer; task cpu is a String. */
    ASSERT_INVALID(&model_ecs, "RegisterTaskDefinition",
                   "{\"family\":\"x\",\"containerDefinitions\":[{\"cpu\":\"256\"}]}", T_SER,
                   "STRING_VALUE can not be converted to Integer");
    ASSERT_INVALID(&model_ecs, "RegisterTaskDefinition", MINIMAL_TD ",\"cpu\":256}", T_SER,
                   "NUMBER_VALUE can not be converted to String");
    ASSERT_VALID(&model_ecs, "RegisterTaskDefinition", MINIMAL_TD ",\"cpu\":\"256\"}");
    ASSERT_INVALID(&model_ecs, "RegisterTaskDefinition",
                   "{\"family\":\"x\",\"containerDefinitions\":[{\"essential\":\"yes\"}]}", T_SER,
                   "STRING_VALUE can not be converted to Boolean");
    ASSERT_INVALID(&model_ecs, "RegisterTaskDefinition",
                   "{\"family\":\"x\",\"containerDefinitions\":[{\"essential\":null,"
                   "\"memory\":false}]}",
                   T_SER, "VALUE_FALSE can not be converted to Integer");
    /* Null list elements are rejected: handlers may rely on every element being set. */
    ASSERT_INVALID(&model_ecs, "RegisterTaskDefinition",
                   "{\"family\":\"x\",\"containerDefinitions\":[null,{\"name\":\"a\"}]}", T_PARAM,
                   "Member must not be null");
    /* A serialization error wins over constraint errors found before it. */
    ASSERT_INVALID(&model_ecs, "RegisterTaskDefinition",
                   "{\"containerDefinitions\":[{\"cpu\":\"1\"}],\"networkMode\":\"bad\"}", T_SER,
                   NULL);
}

TEST(register_task_definition_enums_and_lists)
{
    ASSERT_INVALID(&model_ecs, "RegisterTaskDefinition", MINIMAL_TD ",\"networkMode\":\"bridgee\"}",
                   T_PARAM,
                   "Value 'bridgee' at 'networkMode' failed to satisfy constraint: Member must "
                   "satisfy enum value set: [bridge, host, awsvpc, none]");
    ASSERT_VALID(&model_ecs, "RegisterTaskDefinition", MINIMAL_TD ",\"networkMode\":\"awsvpc\"}");
    /* Enum matching is case-sensitive. */
    ASSERT_INVALID(&model_ecs, "RegisterTaskDefinition", MINIMAL_TD ",\"networkMode\":\"AWSVPC\"}",
                   T_PARAM, "enum value set");
    /* Enum inside a list element. */
    ASSERT_INVALID(&model_ecs, "RegisterTaskDefinition",
                   MINIMAL_TD ",\"requiresCompatibilities\":[\"EC2\",\"FARGATE\",\"LAMBDA\"]}",
                   T_PARAM, "LAMBDA");
    ASSERT_INVALID(&model_ecs, "RegisterTaskDefinition",
                   MINIMAL_TD ",\"requiresCompatibilities\":[\"EC2\",\"FARGATE\",\"LAMBDA\"]}",
                   T_PARAM, "enum value set: [EC2, FARGATE, EXTERNAL, MANAGED_INSTANCES]");
    ASSERT_VALID(&model_ecs, "RegisterTaskDefinition",
                 MINIMAL_TD ",\"requiresCompatibilities\":[\"EC2\",\"FARGATE\"]}");
    /* Enum deep inside: containerDefinitions[].portMappings[].protocol. */
    ASSERT_INVALID(&model_ecs, "RegisterTaskDefinition",
                   "{\"family\":\"x\",\"containerDefinitions\":[{\"name\":\"a\",\"portMappings\":"
                   "[{\"containerPort\":80,\"protocol\":\"sctp\"}]}]}",
                   T_PARAM, "Member must satisfy enum value set: [tcp, udp]");
    /* Tags: list max 50, key length 1..128, value length 0..256. */
    sk_buf b;
    sk_buf_init(&b, 0);
    sk_buf_puts(&b, MINIMAL_TD ",\"tags\":[");
    for (int i = 0; i < 51; i++)
        sk_buf_printf(&b, "%s{\"key\":\"k%d\",\"value\":\"v\"}", i ? "," : "", i);
    sk_buf_puts(&b, "]}");
    _cleanup_free_ char *tags51 = sk_buf_steal(&b);
    ASSERT_INVALID(&model_ecs, "RegisterTaskDefinition", tags51, T_PARAM,
                   "at 'tags' failed to satisfy constraint: Member must have length less than or "
                   "equal to 50");
    ASSERT_INVALID(&model_ecs, "RegisterTaskDefinition",
                   MINIMAL_TD ",\"tags\":[{\"key\":\"\",\"value\":\"v\"}]}", T_PARAM,
                   "Member must have length greater than or equal to 1");
    char key129[130];
    memset(key129, 'k', 129);
    key129[129] = 0;
    _cleanup_free_ char *long_key =
            xasprintf(MINIMAL_TD ",\"tags\":[{\"key\":\"%s\",\"value\":\"\"}]}", key129);
    ASSERT_INVALID(&model_ecs, "RegisterTaskDefinition", long_key, T_PARAM,
                   "Member must have length less than or equal to 128");
    /* Length counts characters, not bytes: 128 two-byte characters fit. */
    sk_buf_init(&b, 0);
    sk_buf_puts(&b, MINIMAL_TD ",\"tags\":[{\"key\":\"");
    for (int i = 0; i < 128; i++)
        sk_buf_puts(&b, "\xc3\xa9");
    sk_buf_puts(&b, "\",\"value\":\"\"}]}");
    _cleanup_free_ char *utf8_key = sk_buf_steal(&b);
    ASSERT_VALID(&model_ecs, "RegisterTaskDefinition", utf8_key);
}

TEST(run_task)
{
    ASSERT_VALID(&model_ecs, "RunTask", "{\"taskDefinition\":\"web:1\"}");
    ASSERT_VALID(&model_ecs, "RunTask",
                 "{\"taskDefinition\":\"web\",\"cluster\":\"default\",\"count\":2,"
                 "\"launchType\":\"FARGATE\",\"enableECSManagedTags\":true,"
                 "\"networkConfiguration\":{\"awsvpcConfiguration\":{\"subnets\":[\"s-1\"],"
                 "\"assignPublicIp\":\"ENABLED\"}},"
                 "\"overrides\":{\"containerOverrides\":[{\"name\":\"a\",\"command\":[\"sh\"],"
                 "\"environment\":[{\"name\":\"K\",\"value\":\"V\"}]}]},"
                 "\"capacityProviderStrategy\":[{\"capacityProvider\":\"FARGATE\",\"weight\":1,"
                 "\"base\":0}]}");
    ASSERT_INVALID(&model_ecs, "RunTask", "{}", T_PARAM,
                   "1 validation error detected: Value null at 'taskDefinition' failed to "
                   "satisfy constraint: Member must not be null");
    ASSERT_INVALID(&model_ecs, "RunTask", "{\"taskDefinition\":\"t\",\"launchType\":\"LAMBDA\"}",
                   T_PARAM,
                   "Value 'LAMBDA' at 'launchType' failed to satisfy constraint: Member must "
                   "satisfy enum value set: [EC2, FARGATE, EXTERNAL, MANAGED_INSTANCES]");
    ASSERT_INVALID(&model_ecs, "RunTask", "{\"taskDefinition\":\"t\",\"count\":\"2\"}", T_SER,
                   "STRING_VALUE can not be converted to Integer");
    ASSERT_INVALID(&model_ecs, "RunTask",
                   "{\"taskDefinition\":\"t\",\"enableECSManagedTags\":\"true\"}", T_SER,
                   "STRING_VALUE can not be converted to Boolean");
    /* Integer ranges: weight 0..1000, base 0..100000. */
    ASSERT_INVALID(&model_ecs, "RunTask",
                   "{\"taskDefinition\":\"t\",\"capacityProviderStrategy\":[{\"capacityProvider\":"
                   "\"p\",\"weight\":1001}]}",
                   T_PARAM, "Member must have value less than or equal to 1000");
    ASSERT_INVALID(&model_ecs, "RunTask",
                   "{\"taskDefinition\":\"t\",\"capacityProviderStrategy\":[{\"capacityProvider\":"
                   "\"p\",\"base\":-1}]}",
                   T_PARAM, "Member must have value greater than or equal to 0");
    ASSERT_VALID(&model_ecs, "RunTask",
                 "{\"taskDefinition\":\"t\",\"capacityProviderStrategy\":[{\"capacityProvider\":"
                 "\"p\",\"weight\":1000,\"base\":100000}]}");
    /* Required member of a nested structure: awsvpcConfiguration.subnets. */
    ASSERT_INVALID(&model_ecs, "RunTask",
                   "{\"taskDefinition\":\"t\",\"networkConfiguration\":{\"awsvpcConfiguration\":"
                   "{}}}",
                   T_PARAM, "Member must not be null");
}

TEST(error_count_and_cap)
{
    /* Twelve violations: all are counted, at most ten are spelled out. */
    sk_buf b;
    sk_buf_init(&b, 0);
    sk_buf_puts(&b, "{\"taskDefinition\":\"t\",\"capacityProviderStrategy\":[");
    for (int i = 0; i < 12; i++)
        sk_buf_printf(&b, "%s{\"capacityProvider\":\"p\",\"weight\":%d}", i ? "," : "", 2000 + i);
    sk_buf_puts(&b, "]}");
    _cleanup_free_ char *json = sk_buf_steal(&b);
    _cleanup_err_ sk_err err = { 0 };
    ASSERT_FAIL(ecs("RunTask", json, &err));
    ASSERT_STREQ(err.type, T_PARAM);
    ASSERT_TRUE(startswith(err.msg, "12 validation errors detected: "));
    size_t listed = 0;
    for (const char *p = err.msg; (p = strstr(p, "failed to satisfy constraint")); p++)
        listed++;
    ASSERT_EQ(listed, 10);
    /* Long string values are shortened in the message. */
    char big[300];
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = 0;
    _cleanup_free_ char *j2 = xasprintf("{\"taskDefinition\":\"t\",\"launchType\":\"%s\"}", big);
    _cleanup_err_ sk_err e2 = { 0 };
    ASSERT_FAIL(ecs("RunTask", j2, &e2));
    ASSERT_TRUE(strstr(e2.msg, "...'") != NULL);
    ASSERT_TRUE(strlen(e2.msg) < 400);
}

TEST(maps)
{
    /* ECS dockerLabels: map<String,String> without constraints. */
    ASSERT_INVALID(&model_ecs, "RegisterTaskDefinition",
                   "{\"family\":\"x\",\"containerDefinitions\":[{\"name\":\"a\",\"dockerLabels\":"
                   "{\"a\":\"1\",\"b\":null}}]}",
                   T_PARAM, "Member must not be null");
    ASSERT_INVALID(&model_ecs, "RegisterTaskDefinition",
                   "{\"family\":\"x\",\"containerDefinitions\":[{\"dockerLabels\":{\"a\":1}}]}",
                   T_SER, "NUMBER_VALUE can not be converted to String");
    ASSERT_INVALID(&model_ecs, "RegisterTaskDefinition",
                   "{\"family\":\"x\",\"containerDefinitions\":[{\"dockerLabels\":[\"a\"]}]}",
                   T_SER, "Start of list found where not expected");
    /* CloudWatch Logs tags: map of 1..50 entries, keys 1..128, values 0..256. */
    ASSERT_VALID(&model_logs, "CreateLogGroup",
                 "{\"logGroupName\":\"/ecs/web\",\"tags\":{\"team\":\"a\",\"x\":\"\"}}");
    ASSERT_INVALID(&model_logs, "CreateLogGroup", "{\"logGroupName\":\"/ecs/web\",\"tags\":{}}",
                   T_PARAM,
                   "at 'tags' failed to satisfy constraint: Member must have length greater "
                   "than or equal to 1");
    ASSERT_INVALID(&model_logs, "CreateLogGroup",
                   "{\"logGroupName\":\"/ecs/web\",\"tags\":{\"\":\"v\"}}", T_PARAM,
                   "Member must have length greater than or equal to 1");
    char val257[258];
    memset(val257, 'v', 257);
    val257[257] = 0;
    _cleanup_free_ char *long_val =
            xasprintf("{\"logGroupName\":\"g\",\"tags\":{\"k\":\"%s\"}}", val257);
    ASSERT_INVALID(&model_logs, "CreateLogGroup", long_val, T_PARAM,
                   "Member must have length less than or equal to 256");
    sk_buf b;
    sk_buf_init(&b, 0);
    sk_buf_puts(&b, "{\"logGroupName\":\"g\",\"tags\":{");
    for (int i = 0; i < 51; i++)
        sk_buf_printf(&b, "%s\"k%d\":\"v\"", i ? "," : "", i);
    sk_buf_puts(&b, "}}");
    _cleanup_free_ char *tags51 = sk_buf_steal(&b);
    ASSERT_INVALID(&model_logs, "CreateLogGroup", tags51, T_PARAM,
                   "Member must have length less than or equal to 50");
    ASSERT_INVALID(&model_logs, "CreateLogGroup", "{\"logGroupName\":\"g\",\"tags\":{\"k\":[]}}",
                   T_SER, NULL);
    /* String lengths on a Logs name: 1..512. */
    ASSERT_INVALID(&model_logs, "CreateLogGroup", "{\"logGroupName\":\"\"}", T_PARAM,
                   "Value '' at 'logGroupName' failed to satisfy constraint: Member must have "
                   "length greater than or equal to 1");
    /* Lists with both bounds and required members inside: PutLogEvents. */
    ASSERT_VALID(&model_logs, "PutLogEvents",
                 "{\"logGroupName\":\"g\",\"logStreamName\":\"s\",\"logEvents\":"
                 "[{\"timestamp\":1700000000000,\"message\":\"hi\"}]}");
    ASSERT_INVALID(&model_logs, "PutLogEvents",
                   "{\"logGroupName\":\"g\",\"logStreamName\":\"s\",\"logEvents\":[]}", T_PARAM,
                   "Member must have length greater than or equal to 1");
    ASSERT_INVALID(&model_logs, "PutLogEvents",
                   "{\"logGroupName\":\"g\",\"logStreamName\":\"s\",\"logEvents\":"
                   "[{\"message\":\"hi\"}]}",
                   T_PARAM, "Member must not be null");
    ASSERT_INVALID(&model_logs, "PutLogEvents",
                   "{\"logGroupName\":\"g\",\"logStreamName\":\"s\",\"logEvents\":"
                   "[{\"timestamp\":-1,\"message\":\"hi\"}]}",
                   T_PARAM, "Member must have value greater than or equal to 0");
}

TEST(blobs)
{
    const char *base = "{\"repositoryName\":\"web\",\"uploadId\":\"u\",\"partFirstByte\":0,"
                       "\"partLastByte\":4,\"layerPartBlob\":";
    _cleanup_free_ char *ok = xasprintf("%s\"aGVsbG8=\"}", base);
    _cleanup_free_ char *ok2 = xasprintf("%s\"\"}", base);
    _cleanup_free_ char *ok3 = xasprintf("%s\"aGk=\"}", base);
    _cleanup_free_ char *bad_chars = xasprintf("%s\"not base64!\"}", base);
    _cleanup_free_ char *bad_len = xasprintf("%s\"aGVsbG8\"}", base);
    _cleanup_free_ char *bad_pad = xasprintf("%s\"a===\"}", base);
    _cleanup_free_ char *bad_mid = xasprintf("%s\"aG=sbG8=\"}", base);
    _cleanup_free_ char *bad_type = xasprintf("%s12}", base);
    _cleanup_free_ char *missing = xstrdup("{\"repositoryName\":\"web\",\"uploadId\":\"u\","
                                           "\"partFirstByte\":0,\"partLastByte\":4}");
    ASSERT_VALID(&model_ecr, "UploadLayerPart", ok);
    ASSERT_VALID(&model_ecr, "UploadLayerPart", ok2);
    ASSERT_VALID(&model_ecr, "UploadLayerPart", ok3);
    ASSERT_INVALID(&model_ecr, "UploadLayerPart", bad_chars, T_SER,
                   "Base64 encoded value is malformed.");
    ASSERT_INVALID(&model_ecr, "UploadLayerPart", bad_len, T_SER, "Base64");
    ASSERT_INVALID(&model_ecr, "UploadLayerPart", bad_pad, T_SER, "Base64");
    ASSERT_INVALID(&model_ecr, "UploadLayerPart", bad_mid, T_SER, "Base64");
    ASSERT_INVALID(&model_ecr, "UploadLayerPart", bad_type, T_SER,
                   "NUMBER_VALUE can not be converted to Blob");
    ASSERT_INVALID(&model_ecr, "UploadLayerPart", missing, T_PARAM,
                   "Value null at 'layerPartBlob' failed to satisfy constraint: Member must not "
                   "be null");
    /* ECR string and long constraints in the same request. */
    _cleanup_free_ char *short_repo =
            xasprintf("{\"repositoryName\":\"w\",\"uploadId\":\"u\",\"partFirstByte\":-1,"
                      "\"partLastByte\":4,\"layerPartBlob\":\"\"}");
    ASSERT_INVALID(&model_ecr, "UploadLayerPart", short_repo, T_PARAM,
                   "2 validation errors detected");
}

TEST(validation_type_is_the_callers)
{
    _cleanup_err_ sk_err err = { 0 };
    json_t *v = json_object();
    const model_op *o = model_find_op(&model_ecs, "RunTask");
    ASSERT_NOT_NULL(o);
    ASSERT_FAIL(model_validate(&model_ecs, o->input, v, "ValidationException", &err));
    json_decref(v);
    ASSERT_STREQ(err.type, "ValidationException");
}

TAP_MAIN()
