/* Task-definition rules: cpu/memory parsing, the Fargate size table
 * (ecs-semantics.md §2.7), normalisation defaults, computed
 * requiresAttributes/compatibilities, and a table of rejected definitions. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "basic/alloc.h"
#include "basic/buf.h"
#include "basic/err.h"
#include "basic/strutil.h"
#include "controlplane/taskdef.h"
#include "shared/jsonutil.h"
#include "tap.h"

TEST(parse_cpu)
{
    static const struct {
        const char *in;
        int64_t want;
    } ok[] = {
        { "1 vCpu", 1024 },  { "1 vCPU", 1024 },    { "1 vcpu", 1024 },  { "0.25 vcpu", 256 },
        { "0.5 vCPU", 512 }, { "2 vcpus", 2048 },   { "4 vCPU", 4096 },  { "16 vcpu", 16384 },
        { "512", 512 },      { "1024", 1024 },      { " 256 ", 256 },    { "1vcpu", 1024 },
        { "0", 0 },          { "0.125 vcpu", 128 }, { "1 vcpu ", 1024 }, { "8  vcpu", 8192 },
    };
    for (size_t i = 0; i < ELEMENTSOF(ok); i++) {
        int64_t v = -1;
        if (taskdef_parse_cpu(ok[i].in, &v) < 0)
            TAP_FAIL("'%s' rejected", ok[i].in);
        if (v != ok[i].want)
            TAP_FAIL("'%s' → %lld, want %lld", ok[i].in, (long long) v, (long long) ok[i].want);
    }
    static const char *const bad[] = {
        "1.5",      "x",       "",    " ",   "-1",  "-1 vcpu", "1 gb",        "1 vcpux", "vcpu",
        "0.1 vcpu", "1 v cpu", "nan", "inf", "1,5", "256MB",   "1 vcpu vcpu", "1e100",
    };
    for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
        int64_t v = 12345;
        if (taskdef_parse_cpu(bad[i], &v) >= 0)
            TAP_FAIL("'%s' accepted as %lld", bad[i], (long long) v);
        ASSERT_EQ(v, 12345); /* untouched on failure */
    }
    int64_t v;
    ASSERT_FAIL(taskdef_parse_cpu(NULL, &v));
}

TEST(parse_memory)
{
    static const struct {
        const char *in;
        int64_t want;
    } ok[] = {
        { "2 gb", 2048 },   { "2 GB", 2048 },     { "2GB", 2048 },    { "0.5gb", 512 },
        { "0.5 GiB", 512 }, { "512", 512 },       { "512 MiB", 512 }, { "512 mb", 512 },
        { "30 GB", 30720 }, { "120 gb", 122880 }, { "1.5 GB", 1536 }, { " 1024 ", 1024 },
    };
    for (size_t i = 0; i < ELEMENTSOF(ok); i++) {
        int64_t v = -1;
        if (taskdef_parse_memory(ok[i].in, &v) < 0)
            TAP_FAIL("'%s' rejected", ok[i].in);
        if (v != ok[i].want)
            TAP_FAIL("'%s' → %lld, want %lld", ok[i].in, (long long) v, (long long) ok[i].want);
    }
    static const char *const bad[] = { "1.5",    "x",      "",       "-512",    "2 tb",
                                       "1 vcpu", "0.3 gb", "512 kb", "512.5 mb" };
    for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
        int64_t v = 12345;
        if (taskdef_parse_memory(bad[i], &v) >= 0)
            TAP_FAIL("'%s' accepted as %lld", bad[i], (long long) v);
    }
}

/* The table from ecs-semantics.md §2.7, written out independently. */
static bool fargate_expected(int64_t cpu, int64_t mem)
{
    static const struct {
        int64_t cpu, lo, hi, step;
    } rows[] = {
        { 512, 1024, 4096, 1024 },   { 1024, 2048, 8192, 1024 },   { 2048, 4096, 16384, 1024 },
        { 4096, 8192, 30720, 1024 }, { 8192, 16384, 61440, 4096 }, { 16384, 32768, 122880, 8192 },
    };
    if (cpu == 256)
        return mem == 512 || mem == 1024 || mem == 2048;
    for (size_t i = 0; i < ELEMENTSOF(rows); i++)
        if (rows[i].cpu == cpu)
            return mem >= rows[i].lo && mem <= rows[i].hi && (mem - rows[i].lo) % rows[i].step == 0;
    return false;
}

TEST(fargate_sizes_table)
{
    static const int64_t cpus[] = { 0,    128,  255,  256,  257,  384,   512,   768,   1024, 1536,
                                    2048, 3072, 4096, 6144, 8192, 12288, 16384, 32768, -256 };
    size_t nvalid = 0;
    for (size_t c = 0; c < ELEMENTSOF(cpus); c++)
        for (int64_t mem = -512; mem <= 131072; mem += 256) {
            bool want = fargate_expected(cpus[c], mem);
            bool got = taskdef_fargate_size_valid(cpus[c], mem);
            if (want != got)
                TAP_FAIL("cpu %lld memory %lld: got %d, want %d", (long long) cpus[c],
                         (long long) mem, got, want);
            nvalid += want;
        }
    /* 3 + 4 + 7 + 13 + 23 + 12 + 12 combinations. */
    ASSERT_EQ(nvalid, 74);
    /* Spot checks straight from the table. */
    ASSERT_TRUE(taskdef_fargate_size_valid(256, 512));
    ASSERT_TRUE(taskdef_fargate_size_valid(256, 2048));
    ASSERT_FALSE(taskdef_fargate_size_valid(256, 3072));
    ASSERT_TRUE(taskdef_fargate_size_valid(512, 4096));
    ASSERT_FALSE(taskdef_fargate_size_valid(512, 512));
    ASSERT_TRUE(taskdef_fargate_size_valid(4096, 30720));
    ASSERT_FALSE(taskdef_fargate_size_valid(4096, 31744));
    ASSERT_TRUE(taskdef_fargate_size_valid(8192, 20480));
    ASSERT_FALSE(taskdef_fargate_size_valid(8192, 17408));
    ASSERT_TRUE(taskdef_fargate_size_valid(16384, 122880));
    ASSERT_FALSE(taskdef_fargate_size_valid(16384, 36864));
    ASSERT_FALSE(taskdef_fargate_size_valid(16384, 131072));
}

/* Normalises the JSON text; returns the result or NULL (error in err). */
static json_t *norm(const char *text, sk_err *err)
{
    json_error_t jerr;
    json_t *in = json_loads(text, 0, &jerr);
    if (!in) {
        printf("# bad test JSON: %s (%s)\n", text, jerr.text);
        sk_err_set(err, SK_E_INTERNAL, "bad test JSON");
        return NULL;
    }
    json_t *copy = json_deep_copy(in);
    json_t *out = NULL;
    int r = taskdef_normalize(in, &out, err);
    /* The input is never modified. */
    if (!json_equal(in, copy)) {
        printf("# taskdef_normalize modified its input\n");
        if (r >= 0)
            json_decref(out);
        out = NULL;
        r = -1;
        if (!err->msg)
            sk_err_set(err, SK_E_INTERNAL, "input modified");
    }
    json_decref(in);
    json_decref(copy);
    return r < 0 ? NULL : out;
}

static bool has_attr(const json_t *td, const char *name)
{
    size_t i;
    json_t *a;
    json_array_foreach(js_arr(td, "requiresAttributes"), i, a) {
        if (streq_ptr(js_str(a, "name"), name))
            return true;
    }
    return false;
}

static size_t count_attr(const json_t *td, const char *name)
{
    size_t i, n = 0;
    json_t *a;
    json_array_foreach(js_arr(td, "requiresAttributes"), i, a) {
        n += streq_ptr(js_str(a, "name"), name);
    }
    return n;
}

static char *compat_str(const json_t *td)
{
    sk_buf b;
    sk_buf_init(&b, 0);
    size_t i;
    json_t *c;
    json_array_foreach(js_arr(td, "compatibilities"), i, c) {
        sk_buf_printf(&b, "%s%s", i ? "," : "", json_string_value(c));
    }
    return sk_buf_steal(&b);
}

#define NORM_OK(var, text)                                                         \
    _cleanup_err_ sk_err var##_err = { 0 };                                        \
    _cleanup_json_ json_t *var = norm((text), &var##_err);                         \
    if (!var)                                                                      \
        TAP_FAIL("normalize failed: %s: %s", var##_err.type ? var##_err.type : "", \
                 var##_err.msg ? var##_err.msg : "");

TEST(normalize_defaults)
{
    NORM_OK(td,
            "{\"family\":\"web\",\"containerDefinitions\":[{\"name\":\"app\","
            "\"image\":\"nginx:1.25\",\"memory\":128,\"portMappings\":[{\"containerPort\":80}]},"
            "{\"name\":\"side\",\"image\":\"busybox\",\"memoryReservation\":64,"
            "\"essential\":false}]}");
    json_t *c0 = json_array_get(js_arr(td, "containerDefinitions"), 0);
    json_t *c1 = json_array_get(js_arr(td, "containerDefinitions"), 1);
    ASSERT_NOT_NULL(c0);
    ASSERT_NOT_NULL(c1);
    ASSERT_TRUE(json_is_true(json_object_get(c0, "essential")));
    ASSERT_TRUE(json_is_false(json_object_get(c1, "essential")));
    ASSERT_EQ(js_int(c0, "cpu", -1), 0);
    ASSERT_TRUE(json_is_integer(json_object_get(c0, "cpu")));
    ASSERT_EQ(js_int(c0, "memory", 0), 128);
    json_t *pm = json_array_get(js_arr(c0, "portMappings"), 0);
    ASSERT_STREQ(js_str(pm, "protocol"), "tcp");
    /* bridge mode: no hostPort means a dynamic host port. */
    ASSERT_FALSE(js_has(pm, "hostPort"));
    /* Empty lists are materialised, as DescribeTaskDefinition shows them. */
    const char *lists[] = { "portMappings", "environment", "mountPoints", "volumesFrom",
                            "systemControls" };
    for (size_t i = 0; i < ELEMENTSOF(lists); i++) {
        ASSERT_NOT_NULL(js_arr(c1, lists[i]));
        ASSERT_EQ(json_array_size(js_arr(c1, lists[i])), 0);
    }
    ASSERT_NOT_NULL(js_arr(td, "volumes"));
    ASSERT_NOT_NULL(js_arr(td, "placementConstraints"));
    ASSERT_NOT_NULL(js_arr(td, "requiresAttributes"));
    ASSERT_EQ(json_array_size(js_arr(td, "requiresAttributes")), 0);
    _cleanup_free_ char *compat = compat_str(td);
    ASSERT_STREQ(compat, "EC2,EXTERNAL");
    /* Registration fields are not the normaliser's business. */
    ASSERT_FALSE(js_has(td, "taskDefinitionArn"));
    ASSERT_FALSE(js_has(td, "revision"));
    ASSERT_FALSE(js_has(td, "status"));
    ASSERT_STREQ(js_str(td, "family"), "web");
    /* Unknown top-level input members are not copied. */
    NORM_OK(td2, "{\"family\":\"web\",\"tags\":[{\"key\":\"a\",\"value\":\"b\"}],\"bogus\":1,"
                 "\"containerDefinitions\":[{\"name\":\"app\",\"image\":\"nginx\","
                 "\"memory\":128}]}");
    ASSERT_FALSE(js_has(td2, "bogus"));
    ASSERT_FALSE(js_has(td2, "tags"));
}

TEST(normalize_awsvpc_and_fargate)
{
    NORM_OK(td, "{\"family\":\"api\",\"networkMode\":\"awsvpc\",\"cpu\":\"0.25 vCPU\","
                "\"memory\":\"0.5 GB\",\"requiresCompatibilities\":[\"FARGATE\"],"
                "\"containerDefinitions\":[{\"name\":\"app\",\"image\":\"nginx\","
                "\"portMappings\":[{\"containerPort\":8080},{\"containerPort\":53,"
                "\"protocol\":\"udp\"}]}]}");
    ASSERT_STREQ(js_str(td, "cpu"), "256");
    ASSERT_STREQ(js_str(td, "memory"), "512");
    json_t *c0 = json_array_get(js_arr(td, "containerDefinitions"), 0);
    json_t *pm0 = json_array_get(js_arr(c0, "portMappings"), 0);
    json_t *pm1 = json_array_get(js_arr(c0, "portMappings"), 1);
    /* awsvpc: hostPort defaults to containerPort. */
    ASSERT_EQ(js_int(pm0, "hostPort", -1), 8080);
    ASSERT_STREQ(js_str(pm0, "protocol"), "tcp");
    ASSERT_EQ(js_int(pm1, "hostPort", -1), 53);
    ASSERT_STREQ(js_str(pm1, "protocol"), "udp");
    ASSERT_TRUE(has_attr(td, "ecs.capability.task-eni"));
    _cleanup_free_ char *compat = compat_str(td);
    ASSERT_STREQ(compat, "EC2,EXTERNAL,FARGATE");

    /* host mode also pins hostPort to containerPort. */
    NORM_OK(td2, "{\"family\":\"h\",\"networkMode\":\"host\",\"containerDefinitions\":"
                 "[{\"name\":\"app\",\"image\":\"nginx\",\"memory\":64,\"portMappings\":"
                 "[{\"containerPort\":80,\"hostPort\":80}]}]}");
    json_t *pm = json_array_get(
            js_arr(json_array_get(js_arr(td2, "containerDefinitions"), 0), "portMappings"), 0);
    ASSERT_EQ(js_int(pm, "hostPort", -1), 80);
    _cleanup_free_ char *compat2 = compat_str(td2);
    ASSERT_STREQ(compat2, "EC2,EXTERNAL");

    /* FARGATE compatibility is computed even when not requested ... */
    NORM_OK(td3, "{\"family\":\"f\",\"networkMode\":\"awsvpc\",\"cpu\":\"1024\","
                 "\"memory\":\"2048\",\"containerDefinitions\":[{\"name\":\"a\","
                 "\"image\":\"nginx\"}]}");
    _cleanup_free_ char *compat3 = compat_str(td3);
    ASSERT_STREQ(compat3, "EC2,EXTERNAL,FARGATE");
    /* ... but not for sizes Fargate lacks, privileged containers or host volumes. */
    NORM_OK(td4, "{\"family\":\"f\",\"networkMode\":\"awsvpc\",\"cpu\":\"1024\","
                 "\"memory\":\"1024\",\"containerDefinitions\":[{\"name\":\"a\","
                 "\"image\":\"nginx\"}]}");
    _cleanup_free_ char *compat4 = compat_str(td4);
    ASSERT_STREQ(compat4, "EC2,EXTERNAL");
    NORM_OK(td5, "{\"family\":\"f\",\"networkMode\":\"awsvpc\",\"cpu\":\"1024\","
                 "\"memory\":\"2048\",\"containerDefinitions\":[{\"name\":\"a\","
                 "\"image\":\"nginx\",\"privileged\":true}]}");
    _cleanup_free_ char *compat5 = compat_str(td5);
    ASSERT_STREQ(compat5, "EC2,EXTERNAL");
    ASSERT_TRUE(has_attr(td5, "com.amazonaws.ecs.capability.privileged-container"));
    NORM_OK(td6, "{\"family\":\"f\",\"networkMode\":\"awsvpc\",\"cpu\":\"1024\","
                 "\"memory\":\"2048\",\"volumes\":[{\"name\":\"v\",\"host\":{\"sourcePath\":"
                 "\"/data\"}}],\"containerDefinitions\":[{\"name\":\"a\",\"image\":\"nginx\"}]}");
    _cleanup_free_ char *compat6 = compat_str(td6);
    ASSERT_STREQ(compat6, "EC2,EXTERNAL");
}

TEST(normalize_requires_attributes)
{
    NORM_OK(td,
            "{\"family\":\"web\",\"taskRoleArn\":\"arn:aws:iam::123456789012:role/t\","
            "\"executionRoleArn\":\"arn:aws:iam::123456789012:role/e\",\"containerDefinitions\":["
            "{\"name\":\"db\",\"image\":\"postgres\",\"memory\":256,\"healthCheck\":"
            "{\"command\":[\"CMD-SHELL\",\"pg_isready\"]},\"logConfiguration\":{\"logDriver\":"
            "\"awslogs\",\"options\":{\"awslogs-group\":\"/ecs/web\"}}},"
            "{\"name\":\"app\",\"image\":\"app\",\"memory\":256,\"dependsOn\":[{\"containerName\":"
            "\"db\",\"condition\":\"HEALTHY\"}],\"logConfiguration\":{\"logDriver\":\"awslogs\","
            "\"options\":{\"awslogs-group\":\"/ecs/web\"}},\"ulimits\":[{\"name\":\"nofile\","
            "\"softLimit\":1024,\"hardLimit\":4096}],\"secrets\":[{\"name\":\"S\",\"valueFrom\":"
            "\"arn:aws:secretsmanager:us-east-1:123456789012:secret:s\"}]}]}");
    const char *want[] = {
        "com.amazonaws.ecs.capability.logging-driver.awslogs",
        "com.amazonaws.ecs.capability.docker-remote-api.1.19",
        "ecs.capability.container-health-check",
        "com.amazonaws.ecs.capability.docker-remote-api.1.24",
        "ecs.capability.container-ordering",
        "com.amazonaws.ecs.capability.task-iam-role",
        "ecs.capability.execution-role-awslogs",
        "com.amazonaws.ecs.capability.docker-remote-api.1.18",
        "ecs.capability.secrets.asm.environment-variables",
    };
    for (size_t i = 0; i < ELEMENTSOF(want); i++) {
        if (count_attr(td, want[i]) != 1)
            TAP_FAIL("attribute %s appears %zu times", want[i], count_attr(td, want[i]));
    }
    ASSERT_FALSE(has_attr(td, "ecs.capability.task-eni"));
    /* Health-check defaults are filled in. */
    json_t *hc = js_obj(json_array_get(js_arr(td, "containerDefinitions"), 0), "healthCheck");
    ASSERT_EQ(js_int(hc, "interval", 0), 30);
    ASSERT_EQ(js_int(hc, "timeout", 0), 5);
    ASSERT_EQ(js_int(hc, "retries", 0), 3);
}

TEST(normalize_port_mapping_protocol_explicit)
{
    /* An explicit "protocol" together with a host port: the normaliser re-sets
     * the protocol member and then formats the duplicate-port tag from it. */
    NORM_OK(td, "{\"family\":\"web\",\"containerDefinitions\":[{\"name\":\"app\","
                "\"image\":\"nginx\",\"memory\":128,\"portMappings\":[{\"containerPort\":80,"
                "\"hostPort\":8080,\"protocol\":\"tcp\"},{\"containerPort\":53,\"hostPort\":8080,"
                "\"protocol\":\"udp\"}]}]}");
    json_t *pms = js_arr(json_array_get(js_arr(td, "containerDefinitions"), 0), "portMappings");
    ASSERT_STREQ(js_str(json_array_get(pms, 0), "protocol"), "tcp");
    ASSERT_STREQ(js_str(json_array_get(pms, 1), "protocol"), "udp");

    _cleanup_err_ sk_err err = { 0 };
    json_t *bad = norm("{\"family\":\"web\",\"containerDefinitions\":[{\"name\":\"a\","
                       "\"image\":\"nginx\",\"memory\":128,\"portMappings\":[{\"containerPort\":80,"
                       "\"hostPort\":8080,\"protocol\":\"tcp\"}]},{\"name\":\"b\",\"image\":"
                       "\"nginx\",\"memory\":128,\"portMappings\":[{\"containerPort\":81,"
                       "\"hostPort\":8080,\"protocol\":\"tcp\"}]}]}",
                       &err);
    ASSERT_NULL(bad);
    ASSERT_STREQ(err.type, "ClientException");
    ASSERT_STREQ(err.msg,
                 "Duplicate host port 8080/tcp in the port mappings of the task definition.");
}

typedef struct reject_case {
    const char *json;
    const char *needle;
} reject_case;

#define CD(extra)  "{\"name\":\"a\",\"image\":\"nginx\",\"memory\":128" extra "}"
#define TD(extra)  "{\"family\":\"web\",\"containerDefinitions\":[" CD("") "]" extra "}"
#define TDC(conts) "{\"family\":\"web\",\"containerDefinitions\":[" conts "]}"
#define FG(extra)                                                                 \
    "{\"family\":\"web\",\"networkMode\":\"awsvpc\",\"requiresCompatibilities\":" \
    "[\"FARGATE\"]" extra "}"

static const reject_case rejects[] = {
    { "{\"containerDefinitions\":[" CD("") "]}", "Family should not be null or empty." },
    { "{\"family\":\"\",\"containerDefinitions\":[" CD("") "]}", "Family should not be null" },
    { "{\"family\":\"bad name!\",\"containerDefinitions\":[" CD("") "]}",
      "Family contains invalid characters" },
    { "{\"family\":\"web\"}", "Container list cannot be empty." },
    { "{\"family\":\"web\",\"containerDefinitions\":[]}", "Container list cannot be empty." },
    { TDC("{\"image\":\"nginx\",\"memory\":128}"), "Container.name should not be null or empty." },
    { TDC("{\"name\":\"a b\",\"image\":\"nginx\",\"memory\":128}"), "Container name 'a b'" },
    { TDC(CD("") "," CD("")), "Duplicate container name 'a'" },
    { TDC("{\"name\":\"a\",\"memory\":128}"), "Container.image should not be null or empty." },
    { TDC("{\"name\":\"a\",\"image\":\"ng inx\",\"memory\":128}"), "Invalid image" },
    { TDC("{\"name\":\"a\",\"image\":\"nginx\"}"),
      "At least one of 'memory' or 'memoryReservation' must be specified." },
    { TDC("{\"name\":\"a\",\"image\":\"nginx\",\"memory\":4}"), "The minimum is 6 MiB." },
    { TDC("{\"name\":\"a\",\"image\":\"nginx\",\"memoryReservation\":5}"),
      "The minimum is 6 MiB." },
    { TDC(CD(",\"memoryReservation\":128")), "memory reservation must be less than" },
    { TDC(CD(",\"cpu\":-1")), "Invalid 'cpu' setting for container 'a'." },
    { "{\"family\":\"web\",\"requiresCompatibilities\":[\"FARGATE\"],\"cpu\":\"256\","
      "\"memory\":\"512\",\"containerDefinitions\":[" CD("") "]}",
      "Fargate only supports network mode 'awsvpc'." },
    { FG(",\"memory\":\"512\",\"containerDefinitions\":[" CD("") "]"),
      "Fargate requires that 'cpu' be defined at the task level." },
    { FG(",\"cpu\":\"256\",\"containerDefinitions\":[" CD("") "]"),
      "Fargate requires that 'memory' be defined at the task level." },
    { FG(",\"cpu\":\"256\",\"memory\":\"4096\",\"containerDefinitions\":[" CD("") "]"),
      "No Fargate configuration exists for given values: 256 CPU, 4096 memory." },
    { TD(",\"cpu\":\"1.5\""), "Invalid 'cpu' setting for task." },
    { TD(",\"cpu\":\"lots\""), "Invalid 'cpu' setting for task." },
    { TD(",\"cpu\":\"64\""), "Task CPU must be between 128 and 196608 units." },
    { TD(",\"cpu\":\"200000\""), "Task CPU must be between 128 and 196608 units." },
    { TD(",\"memory\":\"4\""), "Invalid 'memory' setting for task." },
    { TD(",\"memory\":\"1 TB\""), "Invalid 'memory' setting for task." },
    { "{\"family\":\"web\",\"networkMode\":\"none\",\"containerDefinitions\":[" CD(
              ",\"portMappings\":[{\"containerPort\":80}]") "]}",
      "Port mappings are not supported in 'none' network mode." },
    { TDC(CD(",\"portMappings\":[{\"containerPort\":0}]")), "Invalid 'containerPort' setting" },
    { TDC(CD(",\"portMappings\":[{\"containerPort\":70000}]")), "Invalid 'containerPort' setting" },
    { TDC(CD(",\"portMappings\":[{\"hostPort\":80}]")),
      "Container.portMappings.containerPort should not be null or empty" },
    { TDC(CD(",\"portMappings\":[{\"containerPort\":80,\"hostPort\":70000}]")),
      "Invalid 'hostPort' setting" },
    { TDC(CD(",\"portMappings\":[{\"containerPort\":80,\"protocol\":\"sctp\"}]")),
      "Invalid protocol 'sctp'" },
    { TDC(CD(",\"portMappings\":[{\"containerPort\":80,\"containerPortRange\":\"80-90\"}]")),
      "cannot specify both containerPort and containerPortRange" },
    { TDC(CD(",\"portMappings\":[{\"containerPortRange\":\"90-80\"}]")),
      "Invalid containerPortRange '90-80'" },
    { TDC(CD(",\"portMappings\":[{\"containerPortRange\":\"80-90x\"}]")),
      "Invalid containerPortRange" },
    { TDC(CD(",\"portMappings\":[{\"containerPortRange\":\"80-90\",\"hostPort\":80}]")),
      "cannot specify hostPort together with containerPortRange" },
    { "{\"family\":\"web\",\"networkMode\":\"awsvpc\",\"containerDefinitions\":[" CD(
              ",\"portMappings\":[{\"containerPort\":80,\"hostPort\":81}]") "]}",
      "When networkMode=awsvpc, the host ports and container ports in port mappings must match." },
    { "{\"family\":\"web\",\"networkMode\":\"host\",\"containerDefinitions\":[" CD(
              ",\"portMappings\":[{\"containerPort\":80,\"hostPort\":81}]") "]}",
      "When networkMode=host" },
    { TDC(CD(",\"portMappings\":[{\"containerPort\":80,\"hostPort\":8080},"
             "{\"containerPort\":81,\"hostPort\":8080}]")),
      "Duplicate host port 8080/tcp" },
    { "{\"family\":\"web\",\"networkMode\":\"awsvpc\",\"containerDefinitions\":[" CD(
              ",\"links\":[\"b\"]") "]}",
      "Links are only supported with the bridge network mode." },
    { TDC(CD(",\"environment\":[{\"value\":\"x\"}]")),
      "environment variable names must not be empty" },
    { TDC(CD(",\"mountPoints\":[{\"sourceVolume\":\"data\",\"containerPath\":\"/d\"}]")),
      "unknown volume 'data'" },
    { "{\"family\":\"web\",\"volumes\":[{\"name\":\"data\"}],\"containerDefinitions\":[" CD(
              ",\"mountPoints\":[{\"sourceVolume\":\"data\",\"containerPath\":\"d\"}]") "]}",
      "containerPath must be absolute" },
    { TDC(CD(",\"volumesFrom\":[{\"sourceContainer\":\"zz\"}]")), "unknown container 'zz'" },
    { TDC(CD(",\"volumesFrom\":[{\"sourceContainer\":\"a\"}]")), "unknown container 'a'" },
    { TDC(CD(",\"dependsOn\":[{\"containerName\":\"zz\",\"condition\":\"START\"}]")),
      "depends on unknown container 'zz'" },
    { TDC(CD(",\"dependsOn\":[{\"containerName\":\"a\",\"condition\":\"START\"}]")),
      "depends on unknown container 'a'" },
    { TDC(CD(",\"dependsOn\":[{\"containerName\":\"b\",\"condition\":\"COMPLETE\"}]") ",{\"name\":\"b\",\"image\":\"x\",\"memory\":64}"),
      "Dependency condition COMPLETE cannot be set on an essential container ('b')." },
    { TDC(CD(",\"dependsOn\":[{\"containerName\":\"b\",\"condition\":\"HEALTHY\"}]") ",{\"name\":\"b\",\"image\":\"x\",\"memory\":64}"),
      "but 'b' has no healthCheck" },
    { TDC(CD(",\"dependsOn\":[{\"containerName\":\"b\",\"condition\":\"START\"}]") ",{\"name\":\"b\",\"image\":\"x\",\"memory\":64,\"dependsOn\":[{\"containerName\":"
                                                                                   "\"a\",\"condition\":\"START\"}]}"),
      "The container dependencies in the task definition contain a cycle." },
    { TDC(CD(",\"healthCheck\":{\"command\":[]}")), "healthCheck.command should not be empty" },
    { TDC(CD(",\"healthCheck\":{\"command\":[\"curl\",\"localhost\"]}")),
      "healthCheck.command must start with CMD, CMD-SHELL or NONE" },
    { TDC(CD(",\"healthCheck\":{\"command\":[\"CMD\",\"true\"],\"interval\":4}")),
      "healthCheck.interval must be between 5 and 300 seconds" },
    { TDC(CD(",\"healthCheck\":{\"command\":[\"CMD\",\"true\"],\"timeout\":61}")),
      "healthCheck.timeout must be between 2 and 60 seconds" },
    { TDC(CD(",\"healthCheck\":{\"command\":[\"CMD\",\"true\"],\"retries\":11}")),
      "healthCheck.retries must be between 1 and 10" },
    { TDC(CD(",\"healthCheck\":{\"command\":[\"CMD\",\"true\"],\"startPeriod\":301}")),
      "healthCheck.startPeriod must be between 0 and 300 seconds" },
    { TDC(CD(",\"ulimits\":[{\"name\":\"nofile\",\"softLimit\":10,\"hardLimit\":5}]")),
      "ulimit 'nofile' has a soft limit above its hard limit" },
    { TDC(CD(",\"linuxParameters\":{\"capabilities\":{\"add\":[\"FOO\"]}}")),
      "invalid Linux capability 'FOO'" },
    { TDC(CD(",\"linuxParameters\":{\"capabilities\":{\"drop\":[\"net_admin\"]}}")),
      "invalid Linux capability 'net_admin'" },
    { FG(",\"cpu\":\"256\",\"memory\":\"512\",\"containerDefinitions\":["
         "{\"name\":\"a\",\"image\":\"x\",\"linuxParameters\":{\"capabilities\":"
         "{\"add\":[\"NET_ADMIN\"]}}}]"),
      "Fargate only supports adding the 'SYS_PTRACE' kernel capability." },
    { TDC(CD(",\"linuxParameters\":{\"sharedMemorySize\":0}")),
      "sharedMemorySize must be positive" },
    { TDC(CD(",\"linuxParameters\":{\"tmpfs\":[{\"containerPath\":\"/t\",\"size\":0}]}")),
      "tmpfs mounts need an absolute containerPath and a positive size" },
    { FG(",\"cpu\":\"256\",\"memory\":\"512\",\"containerDefinitions\":["
         "{\"name\":\"a\",\"image\":\"x\",\"linuxParameters\":{\"devices\":[]}}]"),
      "Fargate does not support sharedMemorySize, tmpfs or devices." },
    { FG(",\"cpu\":\"256\",\"memory\":\"512\",\"containerDefinitions\":["
         "{\"name\":\"a\",\"image\":\"x\",\"privileged\":true}]"),
      "Privileged containers are not supported on Fargate." },
    { TDC(CD(",\"logConfiguration\":{\"options\":{}}")),
      "logConfiguration.logDriver should not be null" },
    { TDC(CD(",\"logConfiguration\":{\"logDriver\":\"awslogs\",\"options\":{}}")),
      "the awslogs log driver requires the 'awslogs-group' option" },
    { FG(",\"cpu\":\"256\",\"memory\":\"512\",\"executionRoleArn\":\"arn:aws:iam::1:role/e\","
         "\"containerDefinitions\":[{\"name\":\"a\",\"image\":\"x\",\"logConfiguration\":"
         "{\"logDriver\":\"awslogs\",\"options\":{\"awslogs-group\":\"g\"}}}]"),
      "Fargate requires the 'awslogs-stream-prefix' option" },
    { FG(",\"cpu\":\"256\",\"memory\":\"512\",\"containerDefinitions\":[{\"name\":\"a\","
         "\"image\":\"x\",\"logConfiguration\":{\"logDriver\":\"awslogs\",\"options\":"
         "{\"awslogs-group\":\"g\",\"awslogs-stream-prefix\":\"p\"}}}]"),
      "Fargate requires task definition to have execution role ARN to support log driver "
      "awslogs." },
    { TDC(CD(",\"startTimeout\":0")), "startTimeout must be positive" },
    { TDC(CD(",\"stopTimeout\":0")), "stopTimeout is out of range" },
    { FG(",\"cpu\":\"256\",\"memory\":\"512\",\"containerDefinitions\":["
         "{\"name\":\"a\",\"image\":\"x\",\"stopTimeout\":121}]"),
      "stopTimeout is out of range" },
    { TDC(CD(",\"essential\":false")),
      "Task definition must have at least one essential container." },
    { "{\"family\":\"web\",\"cpu\":\"256\",\"containerDefinitions\":[" CD(
              ",\"cpu\":200") ","
                              "{\"name\":\"b\",\"image\":\"x\",\"memory\":64,\"cpu\":100}]}",
      "The sum of the container-level CPU (300) exceeds the task CPU (256)." },
    { "{\"family\":\"web\",\"memory\":\"512\",\"containerDefinitions\":["
      "{\"name\":\"a\",\"image\":\"x\",\"memory\":1024}]}",
      "Invalid 'memory' setting for container 'a'. The container memory must not exceed the task "
      "memory." },
    { "{\"family\":\"web\",\"memory\":\"512\",\"containerDefinitions\":["
      "{\"name\":\"a\",\"image\":\"x\",\"memoryReservation\":1024}]}",
      "container 'a'. The container memory must not exceed the task memory." },
    { TD(",\"placementConstraints\":[{\"type\":\"distinctInstance\"}]"),
      "placement constraints must be of type memberOf" },
    { TD(",\"placementConstraints\":[{\"type\":\"memberOf\"}]"),
      "placement constraints must be of type memberOf" },
    { TD(",\"ephemeralStorage\":{\"sizeInGiB\":20}"),
      "The ephemeral storage size must be between 21 and 200 GiB." },
    { TD(",\"ephemeralStorage\":{\"sizeInGiB\":201}"), "between 21 and 200 GiB" },
    { TD(",\"volumes\":[{\"name\":\"v\"},{\"name\":\"v\"}]"), "Duplicate volume name 'v'." },
    { TD(",\"volumes\":[{\"name\":\"bad name\"}]"), "Invalid volume name 'bad name'." },
    { TD(",\"volumes\":[{}]"), "Invalid volume name ''." },
    { TD(",\"volumes\":[{\"name\":\"v\",\"host\":{\"sourcePath\":\"rel/path\"}}]"),
      "Volume 'v': host.sourcePath must be an absolute path." },
    { FG(",\"cpu\":\"256\",\"memory\":\"512\",\"volumes\":[{\"name\":\"v\",\"host\":"
         "{\"sourcePath\":\"/data\"}}],\"containerDefinitions\":[{\"name\":\"a\",\"image\":\"x\"}]"),
      "Fargate does not support host volumes with a sourcePath." },
};

TEST(normalize_rejects)
{
    /* Every case runs; all mismatches are listed before the test fails. */
    size_t bad = 0;
    for (size_t i = 0; i < ELEMENTSOF(rejects); i++) {
        _cleanup_err_ sk_err err = { 0 };
        json_t *out = norm(rejects[i].json, &err);
        if (out) {
            json_decref(out);
            printf("#   case %zu accepted: %s\n", i, rejects[i].json);
            bad++;
        } else if (!err.type || !streq(err.type, "ClientException") || err.code != SK_E_INVALID) {
            printf("#   case %zu: type '%s' code %d (%s)\n", i, err.type ? err.type : "",
                   (int) err.code, err.msg ? err.msg : "");
            bad++;
        } else if (!err.msg || !strstr(err.msg, rejects[i].needle)) {
            printf("#   case %zu: message '%s' lacks '%s'\n", i, err.msg ? err.msg : "",
                   rejects[i].needle);
            bad++;
        }
    }
    if (bad)
        TAP_FAIL("%zu of %zu rejection cases wrong", bad, ELEMENTSOF(rejects));
}

TEST(normalize_too_many_containers)
{
    sk_buf b;
    sk_buf_init(&b, 0);
    sk_buf_puts(&b, "{\"family\":\"web\",\"containerDefinitions\":[");
    for (int i = 0; i < 11; i++)
        sk_buf_printf(&b, "%s{\"name\":\"c%d\",\"image\":\"x\",\"memory\":64}", i ? "," : "", i);
    sk_buf_puts(&b, "]}");
    _cleanup_free_ char *eleven = sk_buf_steal(&b);
    _cleanup_err_ sk_err err = { 0 };
    ASSERT_NULL(norm(eleven, &err));
    ASSERT_STREQ(err.type, "ClientException");
    ASSERT_TRUE(strstr(err.msg, "at most 10 containers") != NULL);
    /* Ten is fine, and eleven placement constraints are not. */
    char *ten = strstr(eleven, ",{\"name\":\"c10\"");
    ASSERT_NOT_NULL(ten);
    strcpy(ten, "]}");
    NORM_OK(td, eleven);
    ASSERT_EQ(json_array_size(js_arr(td, "containerDefinitions")), 10);

    sk_buf_init(&b, 0);
    sk_buf_puts(&b, "{\"family\":\"web\",\"containerDefinitions\":[" CD(
                            "") "],\"placementConstraints\":[");
    for (int i = 0; i < 11; i++)
        sk_buf_printf(&b, "%s{\"type\":\"memberOf\",\"expression\":\"attribute:x == %d\"}",
                      i ? "," : "", i);
    sk_buf_puts(&b, "]}");
    _cleanup_free_ char *pcs = sk_buf_steal(&b);
    _cleanup_err_ sk_err e2 = { 0 };
    ASSERT_NULL(norm(pcs, &e2));
    ASSERT_TRUE(strstr(e2.msg, "at most 10") != NULL);
}

TAP_MAIN()
