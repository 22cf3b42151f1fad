/* Agent configuration: command line, /etc/ecs/ecs.config-style file
 * (KEY=VALUE lines), ECS_* environment variables (which win over the file,
 * as when ecs-init passes the file through the environment), and credentials
 * from the environment or an AWS shared-credentials file. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent-internal.h"
#include "basic/alloc.h"
#include "basic/fileutil.h"
#include "basic/log.h"
#include "basic/strutil.h"
#include "shared/jsonutil.h"

#define ECS_CONFIG_MAX (1u << 20)

static const char *const keys[] = {
    "ECS_CLUSTER",
    "ECS_RESERVED_MEMORY",
    "ECS_RESERVED_PORTS",
    "ECS_RESERVED_PORTS_UDP",
    "ECS_AVAILABLE_LOGGING_DRIVERS",
    "ECS_CONTAINER_STOP_TIMEOUT",
    "ECS_CONTAINER_START_TIMEOUT",
    "ECS_IMAGE_PULL_BEHAVIOR",
    "ECS_IMAGE_CLEANUP_INTERVAL",
    "ECS_IMAGE_MINIMUM_CLEANUP_AGE",
    "ECS_NUM_IMAGES_DELETE_PER_CYCLE",
    "ECS_DISABLE_IMAGE_CLEANUP",
    "ECS_ENGINE_TASK_CLEANUP_WAIT_DURATION",
    "ECS_DYNAMIC_HOST_PORT_RANGE",
    "ECS_INSTANCE_ATTRIBUTES",
    "ECS_DATADIR",
    "ECS_TASK_PIDS_LIMIT",
    "AWS_DEFAULT_REGION",
    "ECS_BACKEND_HOST",
    "SKIFF_RUNTIME",
    "SKIFF_MONITOR",
    "SKIFF_CNI_PATH",
    "SKIFF_BRIDGE_SUBNET",
    "SKIFF_AWSVPC_SUBNET",
    "SKIFF_CAPACITY",
    "SKIFF_INSECURE_REGISTRIES",
    "SKIFF_AVAILABILITY_ZONE",
    "SKIFF_INSTANCE_TYPE",
};

static int set_key(agent_config *c, const char *k, const char *v, sk_err *err);

static json_t *parse_string_list(const char *v)
{
    /* Accepts JSON arrays ["a","b"] / [22, 80] and comma lists. */
    json_t *arr = json_loads(v, JSON_DECODE_ANY, NULL);
    json_t *out = json_array();
    if (json_is_array(arr)) {
        size_t i;
        json_t *e;
        json_array_foreach(arr, i, e) {
            if (json_is_string(e))
                json_array_append(out, e);
            else if (json_is_integer(e)) {
                char b[24];
                snprintf(b, sizeof(b), "%lld", (long long) json_integer_value(e));
                json_array_append_new(out, json_string(b));
            }
        }
        json_decref(arr);
        return out;
    }
    json_decref(arr);
    char *copy = xstrdup(v);
    char *save = NULL;
    for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        strstrip(t);
        if (*t)
            json_array_append_new(out, json_string(t));
    }
    free(copy);
    return out;
}

static int duration(const char *k, const char *v, usec_t *ret, sk_err *err)
{
    uint64_t u;
    if (parse_duration_usec(v, &u) < 0)
        return sk_err_set(err, SK_E_INVALID, "%s: invalid duration '%s'", k, v);
    *ret = u;
    return 0;
}

static void replace(char **dst, const char *v)
{
    free(*dst);
    *dst = xstrdup(v);
}

static int set_key(agent_config *c, const char *k, const char *v, sk_err *err)
{
    if (streq(k, "ECS_CLUSTER"))
        replace(&c->cluster, v);
    else if (streq(k, "ECS_RESERVED_MEMORY")) {
        if (parse_u64(v, &c->reserved_memory_mib) < 0)
            return sk_err_set(err, SK_E_INVALID, "ECS_RESERVED_MEMORY: '%s' is not a number", v);
    } else if (streq(k, "ECS_RESERVED_PORTS")) {
        json_decref(c->reserved_ports);
        c->reserved_ports = parse_string_list(v);
    } else if (streq(k, "ECS_RESERVED_PORTS_UDP")) {
        json_decref(c->reserved_ports_udp);
        c->reserved_ports_udp = parse_string_list(v);
    } else if (streq(k, "ECS_AVAILABLE_LOGGING_DRIVERS")) {
        json_decref(c->logging_drivers);
        c->logging_drivers = parse_string_list(v);
    } else if (streq(k, "ECS_CONTAINER_STOP_TIMEOUT")) {
        if (duration(k, v, &c->stop_timeout, err) < 0)
            return -1;
        if (c->stop_timeout < USEC_PER_SEC)
            c->stop_timeout = USEC_PER_SEC;
    } else if (streq(k, "ECS_CONTAINER_START_TIMEOUT"))
        return duration(k, v, &c->start_timeout, err);
    else if (streq(k, "ECS_IMAGE_PULL_BEHAVIOR")) {
        if (streq(v, "default"))
            c->pull_behavior = PULL_DEFAULT;
        else if (streq(v, "always"))
            c->pull_behavior = PULL_ALWAYS;
        else if (streq(v, "once"))
            c->pull_behavior = PULL_ONCE;
        else if (streq(v, "prefer-cached"))
            c->pull_behavior = PULL_PREFER_CACHED;
        else
            return sk_err_set(
                    err, SK_E_INVALID,
                    "ECS_IMAGE_PULL_BEHAVIOR must be default, always, once or prefer-cached");
    } else if (streq(k, "ECS_IMAGE_CLEANUP_INTERVAL")) {
        if (duration(k, v, &c->image_cleanup_interval, err) < 0)
            return -1;
    } else if (streq(k, "ECS_IMAGE_MINIMUM_CLEANUP_AGE"))
        return duration(k, v, &c->image_min_age, err);
    else if (streq(k, "ECS_NUM_IMAGES_DELETE_PER_CYCLE")) {
        if (parse_u32(v, &c->images_per_cleanup) < 0)
            return sk_err_set(err, SK_E_INVALID, "%s: '%s' is not a number", k, v);
    } else if (streq(k, "ECS_DISABLE_IMAGE_CLEANUP")) {
        if (parse_bool(v, &c->image_cleanup_disabled) < 0)
            return sk_err_set(err, SK_E_INVALID, "%s: '%s' is not a boolean", k, v);
    } else if (streq(k, "ECS_ENGINE_TASK_CLEANUP_WAIT_DURATION"))
        return duration(k, v, &c->task_cleanup_wait, err);
    else if (streq(k, "ECS_DYNAMIC_HOST_PORT_RANGE")) {
        unsigned lo, hi;
        char tail;
        if (sscanf(v, "%u-%u%c", &lo, &hi, &tail) != 2 || lo < 1 || hi > 65535 || lo > hi)
            return sk_err_set(err, SK_E_INVALID,
                              "ECS_DYNAMIC_HOST_PORT_RANGE: expected LOW-HIGH, got '%s'", v);
        c->dyn_port_lo = (uint16_t) lo;
        c->dyn_port_hi = (uint16_t) hi;
    } else if (streq(k, "ECS_INSTANCE_ATTRIBUTES")) {
        json_t *o = json_loads(v, 0, NULL);
        if (!json_is_object(o)) {
            json_decref(o);
            return sk_err_set(err, SK_E_INVALID, "ECS_INSTANCE_ATTRIBUTES must be a JSON object");
        }
        json_decref(c->instance_attributes);
        c->instance_attributes = o;
    } else if (streq(k, "ECS_DATADIR"))
        replace(&c->data_dir, v);
    else if (streq(k, "ECS_TASK_PIDS_LIMIT")) {
        uint64_t n;
        if (parse_u64(v, &n) < 0)
            return sk_err_set(err, SK_E_INVALID, "%s: '%s' is not a number", k, v);
        c->task_pids_limit = (int64_t) n;
    } else if (streq(k, "AWS_DEFAULT_REGION"))
        replace(&c->region, v);
    else if (streq(k, "ECS_BACKEND_HOST"))
        replace(&c->server_url, v);
    else if (streq(k, "SKIFF_RUNTIME")) {
        if (streq(v, "simulated"))
            c->simulated = true;
        else
            replace(&c->runtime_path, streq(v, "runc")   ? "/usr/sbin/runc"
                                      : streq(v, "crun") ? "/usr/bin/crun"
                                                         : v);
    } else if (streq(k, "SKIFF_MONITOR"))
        replace(&c->monitor_path, v);
    else if (streq(k, "SKIFF_CNI_PATH"))
        replace(&c->cni_path, v);
    else if (streq(k, "SKIFF_BRIDGE_SUBNET"))
        replace(&c->bridge_subnet, v);
    else if (streq(k, "SKIFF_AWSVPC_SUBNET"))
        replace(&c->awsvpc_subnet, v);
    else if (streq(k, "SKIFF_CAPACITY"))
        replace(&c->capacity, v);
    else if (streq(k, "SKIFF_INSECURE_REGISTRIES"))
        replace(&c->insecure_registries, v);
    else if (streq(k, "SKIFF_AVAILABILITY_ZONE"))
        replace(&c->availability_zone, v);
    else if (streq(k, "SKIFF_INSTANCE_TYPE"))
        replace(&c->instance_type, v);
    return 0;
}

int agent_config_parse_file(agent_config *cfg, const char *path, sk_err *err)
{
    char *data = NULL;
    int r = read_full_file(path, ECS_CONFIG_MAX, &data, NULL);
    if (r < 0)
        return sk_err_sys(err, r, "read config '%s'", path);
    int lineno = 0;
    char *save = NULL;
    for (char *line = strtok_r(data, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        lineno++;
        strstrip(line);
        if (!*line || line[0] == '#')
            continue;
        char *eq = strchr(line, '=');
        if (!eq) {
            free(data);
            return sk_err_set(err, SK_E_INVALID, "%s:%d: expected KEY=VALUE", path, lineno);
        }
        *eq = 0;
        char *k = strstrip(line), *v = strstrip(eq + 1);
        size_t vl = strlen(v);
        if (vl >= 2 && ((v[0] == '"' && v[vl - 1] == '"') || (v[0] == '\'' && v[vl - 1] == '\''))) {
            v[vl - 1] = 0;
            v++;
        }
        if (set_key(cfg, k, v, err) < 0) {
            sk_err_wrap(err, "%s:%d", path, lineno);
            free(data);
            return -1;
        }
    }
    free(data);
    return 0;
}

/* [profile] sections of an AWS shared-credentials file. */
static void load_shared_credentials(agent_config *c)
{
    const char *path = getenv("AWS_SHARED_CREDENTIALS_FILE");
    _cleanup_free_ char *def = NULL;
    if (!path) {
        const char *home = getenv("HOME");
        def = xasprintf("%s/.aws/credentials", home ? home : "/root");
        path = def;
    }
    const char *profile = getenv("AWS_PROFILE");
    if (!profile)
        profile = "default";
    char *data = NULL;
    if (read_full_file(path, 1 << 20, &data, NULL) < 0)
        return;
    bool in = false;
    char *save = NULL;
    for (char *line = strtok_r(data, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        strstrip(line);
        if (line[0] == '[') {
            char *rb = strchr(line, ']');
            if (rb)
                *rb = 0;
            in = streq(strstrip(line + 1), profile);
            continue;
        }
        if (!in)
            continue;
        char *eq = strchr(line, '=');
        if (!eq)
            continue;
        *eq = 0;
        char *k = strstrip(line), *v = strstrip(eq + 1);
        if (streq(k, "aws_access_key_id") && !c->access_key)
            c->access_key = xstrdup(v);
        else if (streq(k, "aws_secret_access_key") && !c->secret_key)
            c->secret_key = xstrdup(v);
        else if (streq(k, "region") && !c->region)
            c->region = xstrdup(v);
    }
    explicit_bzero(data, strlen(data));
    free(data);
}

static void usage(FILE *f)
{
    fprintf(f, "usage: skiff agent --server URL [--cluster NAME] [--data DIR] [--config FILE]\n"
               "                   [--region NAME] [--runtime runc|crun|PATH|simulated]\n"
               "                   [--instances N (simulated only)]\n"
               "\n"
               "Credentials come from AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or the AWS\n"
               "shared-credentials file (AWS_SHARED_CREDENTIALS_FILE, AWS_PROFILE).\n"
               "The config file uses /etc/ecs/ecs.config syntax (ECS_CLUSTER=..., ...).\n");
}

int agent_config_load(int argc, char **argv, agent_config *c, sk_err *err)
{
    static const struct option longopts[] = {
        { "server", required_argument, NULL, 's' },
        { "cluster", required_argument, NULL, 'c' },
        { "data", required_argument, NULL, 'd' },
        { "config", required_argument, NULL, 'f' },
        { "region", required_argument, NULL, 'r' },
        { "help", no_argument, NULL, 'h' },
        { "runtime", required_argument, NULL, 'R' },
        { "instances", required_argument, NULL, 'n' },
        { 0 },
    };
    *c = (agent_config){ 0 };
    c->stop_timeout = 30 * USEC_PER_SEC;
    c->start_timeout = 3 * 60 * USEC_PER_SEC;
    c->image_cleanup_interval = 30 * 60 * USEC_PER_SEC;
    c->image_min_age = 60 * 60 * USEC_PER_SEC;
    c->images_per_cleanup = 5;
    c->task_cleanup_wait = 3 * 3600 * USEC_PER_SEC;
    c->dyn_port_lo = 49153;
    c->dyn_port_hi = 65535;
    c->reserved_ports = json_pack("[s,s,s,s,s]", "22", "2375", "2376", "51678", "51679");
    c->reserved_ports_udp = json_array();
    c->logging_drivers = json_pack("[s,s,s]", "json-file", "none", "awslogs");
    c->instance_attributes = json_object();
    const char *server = NULL, *cluster = NULL, *data = NULL, *config = NULL, *region = NULL;
    const char *runtime = NULL;
    uint32_t instances = 1;
    int ch;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (ch) {
        case 's':
            server = optarg;
            break;
        case 'c':
            cluster = optarg;
            break;
        case 'd':
            data = optarg;
            break;
        case 'f':
            config = optarg;
            break;
        case 'r':
            region = optarg;
            break;
        case 'R':
            runtime = optarg;
            break;
        case 'n':
            if (parse_u32(optarg, &instances) < 0 || instances < 1 || instances > 20000)
                return sk_err_set(err, SK_E_INVALID, "--instances must be between 1 and 20000");
            break;
        case 'h':
            usage(stdout);
            return 1;
        default:
            usage(stderr);
            return sk_err_set(err, SK_E_INVALID, "bad arguments");
        }
    }
    /* The dynamic port range defaults to the kernel's ephemeral range. */
    char *pr = NULL;
    if (read_full_file("/proc/sys/net/ipv4/ip_local_port_range", 64, &pr, NULL) == 0) {
        unsigned lo, hi;
        if (sscanf(pr, "%u %u", &lo, &hi) == 2 && lo >= 1 && hi <= 65535 && lo < hi) {
            c->dyn_port_lo = (uint16_t) lo;
            c->dyn_port_hi = (uint16_t) hi;
        }
        free(pr);
    }
    if (config && agent_config_parse_file(c, config, err) < 0)
        return -1;
    for (size_t i = 0; i < ELEMENTSOF(keys); i++) {
        const char *v = getenv(keys[i]);
        if (v && set_key(c, keys[i], v, err) < 0)
            return sk_err_wrap(err, "environment");
    }
    if (server)
        replace(&c->server_url, server);
    if (cluster)
        replace(&c->cluster, cluster);
    if (data)
        replace(&c->data_dir, data);
    if (region)
        replace(&c->region, region);
    const char *ak = getenv("AWS_ACCESS_KEY_ID"), *sk = getenv("AWS_SECRET_ACCESS_KEY");
    if (ak && sk) {
        c->access_key = xstrdup(ak);
        c->secret_key = xstrdup(sk);
    }
    if (!c->region && getenv("AWS_REGION"))
        c->region = xstrdup(getenv("AWS_REGION"));
    load_shared_credentials(c);
    if (!c->server_url)
        return sk_err_set(err, SK_E_INVALID, "--server URL is required (or ECS_BACKEND_HOST)");
    if (!c->access_key || !c->secret_key)
        return sk_err_set(
                err, SK_E_INVALID,
                "no credentials: set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_SHARED_CREDENTIALS_FILE");
    if (!c->cluster)
        c->cluster = xstrdup("default");
    if (!c->data_dir)
        c->data_dir = xstrdup("/var/lib/skiff-agent");
    if (!c->region)
        c->region = xstrdup("us-east-1");
    if (runtime) {
        if (streq(runtime, "simulated"))
            c->simulated = true;
        else if (streq(runtime, "runc"))
            replace(&c->runtime_path, "/usr/sbin/runc");
        else if (streq(runtime, "crun"))
            replace(&c->runtime_path, "/usr/bin/crun");
        else
            replace(&c->runtime_path, runtime);
    }
    if (instances > 1 && !c->simulated)
        return sk_err_set(err, SK_E_INVALID, "--instances needs --runtime=simulated");
    c->instances = instances;
    if (!c->runtime_path)
        c->runtime_path = xstrdup("/usr/sbin/runc");
    if (!c->cni_path)
        c->cni_path = xstrdup("/usr/lib/cni");
    if (!c->capacity)
        c->capacity = xstrdup("EC2");
    if (!c->availability_zone) {
        const char *az = js_str(c->instance_attributes, "ecs.availability-zone");
        c->availability_zone = xasprintf("%s", az ? az : "local-1a");
    }
    return 0;
}

void agent_config_done(agent_config *c)
{
    free(c->server_url);
    free(c->cluster);
    free(c->data_dir);
    free(c->region);
    free(c->access_key);
    if (c->secret_key)
        explicit_bzero(c->secret_key, strlen(c->secret_key));
    free(c->secret_key);
    json_decref(c->reserved_ports);
    json_decref(c->reserved_ports_udp);
    json_decref(c->logging_drivers);
    json_decref(c->instance_attributes);
    free(c->availability_zone);
    free(c->runtime_path);
    free(c->monitor_path);
    free(c->cni_path);
    free(c->bridge_subnet);
    free(c->awsvpc_subnet);
    free(c->capacity);
    free(c->insecure_registries);
    free(c->instance_type);
    *c = (agent_config){ 0 };
}
