#include "taskdef.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "basic/alloc.h"
#include "basic/buf.h"
#include "basic/strutil.h"
#include "shared/jsonutil.h"

#define MAX_CONTAINERS 10

static int client(sk_err *err, const char *fmt, ...) _printf_(2, 3);
static int client(sk_err *err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    sk_err_vset(err, SK_E_INVALID, "ClientException", fmt, ap);
    va_end(ap);
    return -1;
}

/* Parses "<number> <unit>" where unit is matched case-insensitively against
 * the list; returns value * multiplier of the matched unit. */
static int parse_units(const char *s, const char *const *units, const double *mults, size_t n,
                       double bare_mult, int64_t *ret)
{
    if (!s)
        return -EINVAL;
    while (isspace((unsigned char) *s))
        s++;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || errno || !isfinite(v) || v < 0 || v > 1e9)
        return -EINVAL;
    while (isspace((unsigned char) *end))
        end++;
    double mult = bare_mult;
    if (*end) {
        size_t ul = strlen(end);
        while (ul && isspace((unsigned char) end[ul - 1]))
            ul--;
        bool found = false;
        for (size_t i = 0; i < n; i++)
            if (strlen(units[i]) == ul && strncasecmp(end, units[i], ul) == 0) {
                mult = mults[i];
                found = true;
                break;
            }
        if (!found)
            return -EINVAL;
    } else {
        /* A bare number must be an integer. */
        if (v != floor(v))
            return -EINVAL;
    }
    double r = v * mult;
    if (r != floor(r))
        return -EINVAL;
    *ret = (int64_t) r;
    return 0;
}

int taskdef_parse_cpu(const char *s, int64_t *ret)
{
    static const char *const units[] = { "vcpu", "vcpus" };
    static const double mults[] = { 1024, 1024 };
    return parse_units(s, units, mults, ELEMENTSOF(units), 1, ret);
}

int taskdef_parse_memory(const char *s, int64_t *ret)
{
    static const char *const units[] = { "gb", "gib", "mb", "mib" };
    static const double mults[] = { 1024, 1024, 1, 1 };
    return parse_units(s, units, mults, ELEMENTSOF(units), 1, ret);
}

bool taskdef_fargate_size_valid(int64_t cpu, int64_t mem)
{
    switch (cpu) {
    case 256:
        return mem == 512 || mem == 1024 || mem == 2048;
    case 512:
        return mem >= 1024 && mem <= 4096 && mem % 1024 == 0;
    case 1024:
        return mem >= 2048 && mem <= 8192 && mem % 1024 == 0;
    case 2048:
        return mem >= 4096 && mem <= 16384 && mem % 1024 == 0;
    case 4096:
        return mem >= 8192 && mem <= 30720 && mem % 1024 == 0;
    case 8192:
        return mem >= 16384 && mem <= 61440 && mem % 4096 == 0;
    case 16384:
        return mem >= 32768 && mem <= 122880 && mem % 8192 == 0;
    default:
        return false;
    }
}

static bool name_ok(const char *s, size_t max)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > max)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!(isalnum((unsigned char) s[i]) || s[i] == '-' || s[i] == '_'))
            return false;
    return true;
}

static json_t *find_container(const json_t *defs, const char *name)
{
    size_t i;
    json_t *c;
    json_array_foreach(defs, i, c) {
        if (streq_ptr(js_str(c, "name"), name))
            return c;
    }
    return NULL;
}

static bool has_volume(const json_t *volumes, const char *name)
{
    size_t i;
    json_t *v;
    json_array_foreach(volumes, i, v) {
        if (streq_ptr(js_str(v, "name"), name))
            return true;
    }
    return false;
}

/* Depth-first cycle check over dependsOn. state: 0 new, 1 on stack, 2 done. */
static bool dep_cycle(const json_t *defs, size_t idx, int *state)
{
    if (state[idx] == 1)
        return true;
    if (state[idx] == 2)
        return false;
    state[idx] = 1;
    json_t *c = json_array_get(defs, idx);
    size_t i;
    json_t *d;
    json_array_foreach(js_arr(c, "dependsOn"), i, d) {
        const char *n = js_str(d, "containerName");
        size_t j;
        json_t *o;
        json_array_foreach(defs, j, o) {
            if (streq_ptr(js_str(o, "name"), n) && dep_cycle(defs, j, state))
                return true;
        }
    }
    state[idx] = 2;
    return false;
}

static void add_attr(json_t *attrs, const char *name)
{
    size_t i;
    json_t *a;
    json_array_foreach(attrs, i, a) {
        if (streq_ptr(js_str(a, "name"), name))
            return;
    }
    json_array_append_new(attrs, json_pack("{s:s}", "name", name));
}

static const char *const valid_caps[] = {
    "ALL",        "AUDIT_CONTROL",   "AUDIT_WRITE",      "BLOCK_SUSPEND",
    "CHOWN",      "DAC_OVERRIDE",    "DAC_READ_SEARCH",  "FOWNER",
    "FSETID",     "IPC_LOCK",        "IPC_OWNER",        "KILL",
    "LEASE",      "LINUX_IMMUTABLE", "MAC_ADMIN",        "MAC_OVERRIDE",
    "MKNOD",      "NET_ADMIN",       "NET_BIND_SERVICE", "NET_BROADCAST",
    "NET_RAW",    "SETFCAP",         "SETGID",           "SETPCAP",
    "SETUID",     "SYS_ADMIN",       "SYS_BOOT",         "SYS_CHROOT",
    "SYS_MODULE", "SYS_NICE",        "SYS_PACCT",        "SYS_PTRACE",
    "SYS_RAWIO",  "SYS_RESOURCE",    "SYS_TIME",         "SYS_TTY_CONFIG",
    "SYSLOG",     "WAKE_ALARM",
};

static bool cap_ok(const char *c)
{
    for (size_t i = 0; i < ELEMENTSOF(valid_caps); i++)
        if (streq(c, valid_caps[i]))
            return true;
    return false;
}

static int check_port_mappings(json_t *c, const char *cname, const char *mode, sk_buf *seen,
                               sk_err *err)
{
    json_t *pms = js_arr(c, "portMappings");
    if (!pms) {
        js_set(c, "portMappings", json_array());
        return 0;
    }
    if (json_array_size(pms) && streq(mode, "none"))
        return client(err, "Port mappings are not supported in 'none' network mode.");
    size_t i;
    json_t *pm;
    json_array_foreach(pms, i, pm) {
        bool has_cp = js_has(pm, "containerPort");
        const char *range = js_str(pm, "containerPortRange");
        int64_t cport = js_int(pm, "containerPort", 0);
        if (!has_cp && !range)
            return client(
                    err,
                    "Container.portMappings.containerPort should not be null or empty for container '%s'.",
                    cname);
        if (has_cp && range)
            return client(
                    err, "Container '%s' cannot specify both containerPort and containerPortRange.",
                    cname);
        if (has_cp && (cport < 1 || cport > 65535))
            return client(err, "Invalid 'containerPort' setting for container '%s'.", cname);
        if (range) {
            int lo, hi;
            char tail;
            if (sscanf(range, "%d-%d%c", &lo, &hi, &tail) != 2 || lo < 1 || hi > 65535 || lo >= hi)
                return client(err, "Invalid containerPortRange '%s' for container '%s'.", range,
                              cname);
            if (js_has(pm, "hostPort"))
                return client(
                        err,
                        "Container '%s' cannot specify hostPort together with containerPortRange.",
                        cname);
        }
        const char *given = js_str_or(pm, "protocol", "tcp");
        if (!streq(given, "tcp") && !streq(given, "udp"))
            return client(err, "Invalid protocol '%s' for container '%s'.", given, cname);
        /* A static string: setting the member frees the old one. */
        const char *proto = streq(given, "udp") ? "udp" : "tcp";
        js_set_str(pm, "protocol", proto);
        if (js_has(pm, "hostPort")) {
            int64_t hp = js_int(pm, "hostPort", 0);
            if (hp < 0 || hp > 65535)
                return client(err, "Invalid 'hostPort' setting for container '%s'.", cname);
            if ((streq(mode, "awsvpc") || streq(mode, "host")) && hp != 0 && hp != cport)
                return client(
                        err,
                        "When networkMode=%s, the host ports and container ports in port mappings must match.",
                        mode);
        }
        if (has_cp && (streq(mode, "awsvpc") || streq(mode, "host")))
            js_set_int(pm, "hostPort", cport);
        int64_t hp = js_int(pm, "hostPort", 0);
        if (hp > 0) {
            char tag[32];
            snprintf(tag, sizeof(tag), ",%lld/%s,", (long long) hp, proto);
            if (seen->data && strstr(seen->data, tag))
                return client(
                        err,
                        "Duplicate host port %lld/%s in the port mappings of the task definition.",
                        (long long) hp, proto);
            sk_buf_puts(seen, tag);
        }
    }
    return 0;
}

static int check_health(json_t *hc, const char *cname, sk_err *err)
{
    json_t *cmd = js_arr(hc, "command");
    if (!cmd || json_array_size(cmd) == 0)
        return client(err, "Container '%s': healthCheck.command should not be empty.", cname);
    const char *first = json_string_value(json_array_get(cmd, 0));
    if (!first || !(streq(first, "CMD") || streq(first, "CMD-SHELL") || streq(first, "NONE")))
        return client(err,
                      "Container '%s': healthCheck.command must start with CMD, CMD-SHELL or NONE.",
                      cname);
    int64_t interval = js_int(hc, "interval", 30), timeout = js_int(hc, "timeout", 5),
            retries = js_int(hc, "retries", 3), start = js_int(hc, "startPeriod", 0);
    if (interval < 5 || interval > 300)
        return client(err,
                      "Container '%s': healthCheck.interval must be between 5 and 300 seconds.",
                      cname);
    if (timeout < 2 || timeout > 60)
        return client(err, "Container '%s': healthCheck.timeout must be between 2 and 60 seconds.",
                      cname);
    if (retries < 1 || retries > 10)
        return client(err, "Container '%s': healthCheck.retries must be between 1 and 10.", cname);
    if (start < 0 || start > 300)
        return client(err,
                      "Container '%s': healthCheck.startPeriod must be between 0 and 300 seconds.",
                      cname);
    js_set_int(hc, "interval", interval);
    js_set_int(hc, "timeout", timeout);
    js_set_int(hc, "retries", retries);
    return 0;
}

static int check_container(json_t *c, const json_t *defs, const json_t *volumes, const char *mode,
                           bool fargate, bool task_mem, sk_buf *ports, json_t *attrs, sk_err *err)
{
    const char *name = js_str(c, "name");
    if (!name || !*name)
        return client(err, "Container.name should not be null or empty.");
    if (!name_ok(name, 255))
        return client(
                err,
                "Container name '%.64s' is invalid. Up to 255 letters (uppercase and lowercase), numbers, hyphens, and underscores are allowed.",
                name);
    const char *image = js_str(c, "image");
    if (!image || !*image)
        return client(err, "Container.image should not be null or empty.");
    if (strlen(image) > 1024 || !str_is_printable(image, strlen(image)) || strchr(image, ' '))
        return client(err, "Invalid image '%.64s' for container '%s'.", image, name);
    if (!js_has(c, "essential"))
        js_set_bool(c, "essential", true);
    if (!js_has(c, "cpu"))
        js_set_int(c, "cpu", 0);
    if (js_int(c, "cpu", 0) < 0)
        return client(err, "Invalid 'cpu' setting for container '%s'.", name);
    bool has_mem = js_has(c, "memory"), has_res = js_has(c, "memoryReservation");
    int64_t mem = js_int(c, "memory", 0), res = js_int(c, "memoryReservation", 0);
    if (!fargate && !task_mem && !has_mem && !has_res)
        return client(
                err,
                "Invalid setting for container '%s'. At least one of 'memory' or 'memoryReservation' must be specified.",
                name);
    if (has_mem && mem < 6)
        return client(err, "Invalid 'memory' setting for container '%s'. The minimum is 6 MiB.",
                      name);
    if (has_res && res < 6)
        return client(
                err,
                "Invalid 'memoryReservation' setting for container '%s'. The minimum is 6 MiB.",
                name);
    if (has_mem && has_res && mem <= res)
        return client(
                err,
                "Invalid 'memory' setting for container '%s'. The memory reservation must be less than the memory limit.",
                name);
    if (check_port_mappings(c, name, mode, ports, err) < 0)
        return -1;
    if (js_arr(c, "links") && json_array_size(js_arr(c, "links")) && !streq(mode, "bridge"))
        return client(err, "Links are only supported with the bridge network mode.");
    js_ensure_arr(c, "environment");
    js_ensure_arr(c, "mountPoints");
    js_ensure_arr(c, "volumesFrom");
    size_t i;
    json_t *e;
    json_array_foreach(js_arr(c, "environment"), i, e) {
        const char *k = js_str(e, "name");
        if (!k || !*k)
            return client(err, "Container '%s': environment variable names must not be empty.",
                          name);
    }
    json_array_foreach(js_arr(c, "mountPoints"), i, e) {
        const char *src = js_str(e, "sourceVolume");
        const char *path = js_str(e, "containerPath");
        if (!src || !has_volume(volumes, src))
            return client(err,
                          "Invalid 'mountPoints' setting for container '%s': unknown volume '%s'.",
                          name, src ? src : "");
        if (!path || path[0] != '/')
            return client(
                    err,
                    "Invalid 'mountPoints' setting for container '%s': containerPath must be absolute.",
                    name);
    }
    json_array_foreach(js_arr(c, "volumesFrom"), i, e) {
        const char *src = js_str(e, "sourceContainer");
        if (!src || !find_container(defs, src) || streq(src, name))
            return client(
                    err,
                    "Invalid 'volumesFrom' setting for container '%s': unknown container '%s'.",
                    name, src ? src : "");
    }
    json_array_foreach(js_arr(c, "dependsOn"), i, e) {
        const char *dep = js_str(e, "containerName");
        const char *cond = js_str(e, "condition");
        json_t *target = dep ? find_container(defs, dep) : NULL;
        if (!target || streq(dep, name))
            return client(err, "Container '%s' depends on unknown container '%s'.", name,
                          dep ? dep : "");
        if (cond && (streq(cond, "COMPLETE") || streq(cond, "SUCCESS")) &&
            js_bool(target, "essential", true))
            return client(err,
                          "Dependency condition %s cannot be set on an essential container ('%s').",
                          cond, dep);
        if (cond && streq(cond, "HEALTHY") && !js_obj(target, "healthCheck"))
            return client(
                    err,
                    "Container '%s' depends on '%s' being HEALTHY, but '%s' has no healthCheck.",
                    name, dep, dep);
        add_attr(attrs, "ecs.capability.container-ordering");
    }
    json_t *hc = js_obj(c, "healthCheck");
    if (hc) {
        if (check_health(hc, name, err) < 0)
            return -1;
        add_attr(attrs, "ecs.capability.container-health-check");
        add_attr(attrs, "com.amazonaws.ecs.capability.docker-remote-api.1.24");
    }
    json_array_foreach(js_arr(c, "ulimits"), i, e) {
        if (js_int(e, "softLimit", 0) > js_int(e, "hardLimit", 0))
            return client(err, "Container '%s': ulimit '%s' has a soft limit above its hard limit.",
                          name, js_str_or(e, "name", ""));
        add_attr(attrs, "com.amazonaws.ecs.capability.docker-remote-api.1.18");
    }
    json_t *lp = js_obj(c, "linuxParameters");
    if (lp) {
        json_t *caps = js_obj(lp, "capabilities");
        const char *lists[] = { "add", "drop" };
        for (size_t l = 0; l < 2; l++) {
            size_t j;
            json_t *cap;
            json_array_foreach(js_arr(caps, lists[l]), j, cap) {
                const char *cn = json_string_value(cap);
                if (!cn || !cap_ok(cn))
                    return client(err, "Container '%s': invalid Linux capability '%s'.", name,
                                  cn ? cn : "");
                if (fargate && l == 0 && !streq(cn, "SYS_PTRACE"))
                    return client(
                            err,
                            "Fargate only supports adding the 'SYS_PTRACE' kernel capability.");
            }
        }
        if (js_has(lp, "sharedMemorySize") && js_int(lp, "sharedMemorySize", 0) < 1)
            return client(err, "Container '%s': sharedMemorySize must be positive.", name);
        size_t j;
        json_array_foreach(js_arr(lp, "tmpfs"), j, e) {
            const char *p = js_str(e, "containerPath");
            if (!p || p[0] != '/' || js_int(e, "size", 0) < 1)
                return client(
                        err,
                        "Container '%s': tmpfs mounts need an absolute containerPath and a positive size.",
                        name);
        }
        if (fargate &&
            (js_has(lp, "sharedMemorySize") || js_arr(lp, "tmpfs") || js_arr(lp, "devices")))
            return client(err, "Fargate does not support sharedMemorySize, tmpfs or devices.");
        if (js_bool(lp, "initProcessEnabled", false))
            add_attr(attrs, "com.amazonaws.ecs.capability.docker-remote-api.1.25");
    }
    if (js_bool(c, "privileged", false)) {
        if (fargate)
            return client(err, "Privileged containers are not supported on Fargate.");
        add_attr(attrs, "com.amazonaws.ecs.capability.privileged-container");
    }
    json_t *lc = js_obj(c, "logConfiguration");
    if (lc) {
        const char *drv = js_str(lc, "logDriver");
        if (!drv)
            return client(err,
                          "Container '%s': logConfiguration.logDriver should not be null or empty.",
                          name);
        char attr[128];
        snprintf(attr, sizeof(attr), "com.amazonaws.ecs.capability.logging-driver.%s", drv);
        add_attr(attrs, attr);
        add_attr(attrs, "com.amazonaws.ecs.capability.docker-remote-api.1.19");
        if (streq(drv, "awslogs")) {
            json_t *opts = js_obj(lc, "options");
            if (!js_str(opts, "awslogs-group"))
                return client(
                        err,
                        "Container '%s': the awslogs log driver requires the 'awslogs-group' option.",
                        name);
            if (fargate && !js_str(opts, "awslogs-stream-prefix"))
                return client(
                        err,
                        "Container '%s': Fargate requires the 'awslogs-stream-prefix' option for the awslogs log driver.",
                        name);
        }
    }
    json_array_foreach(js_arr(c, "secrets"), i, e) {
        const char *vf = js_str(e, "valueFrom");
        if (vf && strstr(vf, ":secretsmanager:"))
            add_attr(attrs, "ecs.capability.secrets.asm.environment-variables");
        else
            add_attr(attrs, "ecs.capability.secrets.ssm.environment-variables");
    }
    if (js_obj(c, "dockerLabels"))
        add_attr(attrs, "com.amazonaws.ecs.capability.docker-remote-api.1.18");
    if (js_arr(c, "systemControls") && json_array_size(js_arr(c, "systemControls")))
        add_attr(attrs, "com.amazonaws.ecs.capability.docker-remote-api.1.24");
    else
        js_set(c, "systemControls", json_array());
    if (js_has(c, "startTimeout") && (js_int(c, "startTimeout", 0) < 1))
        return client(err, "Container '%s': startTimeout must be positive.", name);
    if (js_has(c, "stopTimeout") &&
        (js_int(c, "stopTimeout", 0) < 1 || (fargate && js_int(c, "stopTimeout", 0) > 120)))
        return client(err, "Container '%s': stopTimeout is out of range.", name);
    return 0;
}

static const char *const td_fields[] = {
    "family",
    "taskRoleArn",
    "executionRoleArn",
    "networkMode",
    "containerDefinitions",
    "volumes",
    "placementConstraints",
    "requiresCompatibilities",
    "cpu",
    "memory",
    "pidMode",
    "ipcMode",
    "proxyConfiguration",
    "inferenceAccelerators",
    "ephemeralStorage",
    "runtimePlatform",
    "enableFaultInjection",
};

int taskdef_normalize(const json_t *in, json_t **ret, sk_err *err)
{
    const char *family = js_str(in, "family");
    if (!family || !*family)
        return client(err, "Family should not be null or empty.");
    if (!name_ok(family, 255))
        return client(
                err,
                "Family contains invalid characters. Up to 255 letters (uppercase and lowercase), numbers, hyphens, and underscores are allowed.");
    json_t *defs_in = js_arr(in, "containerDefinitions");
    if (!defs_in || json_array_size(defs_in) == 0)
        return client(err, "Container list cannot be empty.");
    if (json_array_size(defs_in) > MAX_CONTAINERS)
        return client(err,
                      "Too many containers. A task definition can contain at most %d containers.",
                      MAX_CONTAINERS);
    json_t *td = json_object();
    for (size_t i = 0; i < ELEMENTSOF(td_fields); i++) {
        json_t *v = json_object_get(in, td_fields[i]);
        if (v && !json_is_null(v))
            json_object_set_new(td, td_fields[i], json_deep_copy(v));
    }
    json_t *defs = js_arr(td, "containerDefinitions");
    json_t *compat_req = js_arr(td, "requiresCompatibilities");
    bool fargate = js_array_has_str(compat_req, "FARGATE");
    const char *mode = js_str(td, "networkMode");
    if (fargate && (!mode || !streq(mode, "awsvpc"))) {
        json_decref(td);
        return client(err, "Fargate only supports network mode 'awsvpc'.");
    }
    if (!mode)
        mode = "bridge";
    int64_t tcpu = -1, tmem = -1;
    if (js_has(td, "cpu")) {
        const char *s = js_str(td, "cpu");
        if (!s || taskdef_parse_cpu(s, &tcpu) < 0 || tcpu < 1) {
            json_decref(td);
            return client(err, "Invalid 'cpu' setting for task.");
        }
        char b[24];
        snprintf(b, sizeof(b), "%lld", (long long) tcpu);
        js_set_str(td, "cpu", b);
    }
    if (js_has(td, "memory")) {
        const char *s = js_str(td, "memory");
        if (!s || taskdef_parse_memory(s, &tmem) < 0 || tmem < 6) {
            json_decref(td);
            return client(err, "Invalid 'memory' setting for task.");
        }
        char b[24];
        snprintf(b, sizeof(b), "%lld", (long long) tmem);
        js_set_str(td, "memory", b);
    }
    if (fargate) {
        if (tcpu < 0) {
            json_decref(td);
            return client(err, "Fargate requires that 'cpu' be defined at the task level.");
        }
        if (tmem < 0) {
            json_decref(td);
            return client(err, "Fargate requires that 'memory' be defined at the task level.");
        }
        if (!taskdef_fargate_size_valid(tcpu, tmem)) {
            json_decref(td);
            return client(
                    err,
                    "No Fargate configuration exists for given values: %lld CPU, %lld memory. See the Amazon ECS documentation for the valid values.",
                    (long long) tcpu, (long long) tmem);
        }
    } else if (tcpu >= 0 && (tcpu < 128 || tcpu > 196608)) {
        json_decref(td);
        return client(
                err,
                "Invalid 'cpu' setting for task. Task CPU must be between 128 and 196608 units.");
    }
    json_t *volumes = js_ensure_arr(td, "volumes");
    size_t i, j;
    json_t *v, *w;
    json_array_foreach(volumes, i, v) {
        const char *n = js_str(v, "name");
        if (!name_ok(n, 255)) {
            int r = client(err, "Invalid volume name '%s'.", n ? n : "");
            json_decref(td);
            return r;
        }
        json_array_foreach(volumes, j, w) {
            if (j < i && streq_ptr(js_str(w, "name"), n)) {
                int r = client(err, "Duplicate volume name '%s'.", n);
                json_decref(td);
                return r;
            }
        }
        json_t *host = js_obj(v, "host");
        const char *sp = host ? js_str(host, "sourcePath") : NULL;
        if (sp && sp[0] != '/') {
            int r = client(err, "Volume '%s': host.sourcePath must be an absolute path.", n);
            json_decref(td);
            return r;
        }
        if (fargate && sp) {
            json_decref(td);
            return client(err, "Fargate does not support host volumes with a sourcePath.");
        }
    }
    json_t *attrs = json_array();
    sk_buf ports;
    sk_buf_init(&ports, 1 << 16);
    bool any_essential = false;
    int64_t cpu_sum = 0;
    json_t *c;
    json_array_foreach(defs, i, c) {
        if (!json_is_object(c)) {
            json_decref(td);
            json_decref(attrs);
            sk_buf_done(&ports);
            return client(err, "Container definitions must be objects.");
        }
        json_array_foreach(defs, j, w) {
            if (j < i && streq_ptr(js_str(w, "name"), js_str(c, "name"))) {
                int r = client(
                        err,
                        "Duplicate container name '%s'. Container names must be unique within a task definition.",
                        js_str(c, "name"));
                json_decref(td);
                json_decref(attrs);
                sk_buf_done(&ports);
                return r;
            }
        }
        if (check_container(c, defs, volumes, mode, fargate, tmem >= 0, &ports, attrs, err) < 0) {
            json_decref(td);
            json_decref(attrs);
            sk_buf_done(&ports);
            return -1;
        }
        if (js_bool(c, "essential", true))
            any_essential = true;
        cpu_sum += js_int(c, "cpu", 0);
        if (tmem >= 0 &&
            (js_int(c, "memory", 0) > tmem || js_int(c, "memoryReservation", 0) > tmem)) {
            int r = client(
                    err,
                    "Invalid 'memory' setting for container '%s'. The container memory must not exceed the task memory.",
                    js_str(c, "name"));
            json_decref(td);
            json_decref(attrs);
            sk_buf_done(&ports);
            return r;
        }
    }
    sk_buf_done(&ports);
    if (!any_essential) {
        json_decref(td);
        json_decref(attrs);
        return client(err, "Task definition must have at least one essential container.");
    }
    if (tcpu >= 0 && cpu_sum > tcpu) {
        json_decref(td);
        json_decref(attrs);
        return client(
                err,
                "Invalid 'cpu' setting for task. The sum of the container-level CPU (%lld) exceeds the task CPU (%lld).",
                (long long) cpu_sum, (long long) tcpu);
    }
    size_t n = json_array_size(defs);
    int *state = xcalloc(n, sizeof(int));
    for (size_t k = 0; k < n; k++)
        if (dep_cycle(defs, k, state)) {
            free(state);
            json_decref(td);
            json_decref(attrs);
            return client(err,
                          "The container dependencies in the task definition contain a cycle.");
        }
    free(state);
    json_t *pcs = js_ensure_arr(td, "placementConstraints");
    if (json_array_size(pcs) > 10) {
        json_decref(td);
        json_decref(attrs);
        return client(err,
                      "Too many placement constraints. A task definition can have at most 10.");
    }
    json_array_foreach(pcs, i, v) {
        if (!streq_ptr(js_str(v, "type"), "memberOf") || !js_str(v, "expression") ||
            strlen(js_str(v, "expression")) > 2000) {
            json_decref(td);
            json_decref(attrs);
            return client(
                    err,
                    "Task definition placement constraints must be of type memberOf with an expression of at most 2000 characters.");
        }
    }
    json_t *eph = js_obj(td, "ephemeralStorage");
    if (eph) {
        int64_t g = js_int(eph, "sizeInGiB", 0);
        if (g < 21 || g > 200) {
            json_decref(td);
            json_decref(attrs);
            return client(err, "The ephemeral storage size must be between 21 and 200 GiB.");
        }
    }
    if (streq(mode, "awsvpc"))
        add_attr(attrs, "ecs.capability.task-eni");
    if (js_str(td, "taskRoleArn"))
        add_attr(attrs, "com.amazonaws.ecs.capability.task-iam-role");
    if (js_str(td, "executionRoleArn")) {
        json_array_foreach(defs, i, c) {
            if (streq_ptr(js_str(js_obj(c, "logConfiguration"), "logDriver"), "awslogs"))
                add_attr(attrs, "ecs.capability.execution-role-awslogs");
        }
    }
    if (fargate) {
        json_array_foreach(defs, i, c) {
            if (streq_ptr(js_str(js_obj(c, "logConfiguration"), "logDriver"), "awslogs") &&
                !js_str(td, "executionRoleArn")) {
                json_decref(td);
                json_decref(attrs);
                return client(
                        err,
                        "Fargate requires task definition to have execution role ARN to support log driver awslogs.");
            }
        }
    }
    js_set(td, "requiresAttributes", attrs);
    /* compatibilities: EC2 and EXTERNAL always; FARGATE when it would validate for it. */
    json_t *compat = json_pack("[s,s]", "EC2", "EXTERNAL");
    bool fg_ok = streq(mode, "awsvpc") && tcpu >= 0 && tmem >= 0 &&
                 taskdef_fargate_size_valid(tcpu, tmem);
    if (fg_ok) {
        json_array_foreach(defs, i, c) {
            if (js_bool(c, "privileged", false))
                fg_ok = false;
        }
        json_array_foreach(volumes, i, v) {
            if (js_str(js_obj(v, "host"), "sourcePath"))
                fg_ok = false;
        }
    }
    if (fg_ok)
        json_array_append_new(compat, json_string("FARGATE"));
    js_set(td, "compatibilities", compat);
    *ret = td;
    return 0;
}
