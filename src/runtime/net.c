/* Network namespaces and CNI plugin invocation (see net.h). */
#include "runtime/net.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/wait.h>

#include "basic/alloc.h"
#include "basic/buf.h"
#include "basic/fileutil.h"
#include "basic/strutil.h"
#include "basic/timeutil.h"
#include "runtime/monitor.h"
#include "shared/digest.h"
#include "shared/jsonutil.h"

#define CNI_VERSION       "1.0.0"
#define CNI_IFNAME        "eth0"
#define CNI_OUT_MAX       (1024 * 1024)
#define CNI_ERR_MAX       (16 * 1024)
#define CNI_TIMEOUT_MS    60000
#define CNI_CACHE_MAX     (4 * 1024 * 1024)
#define NET_PATH_MAX      512
#define NSFS_MAGIC_NUMBER 0x6e736673
#define DEFAULT_CNI_BIN   "/usr/lib/cni"
#define CHILD_PATH_ENV    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

/* ---- validation ---- */

static bool path_ok(const char *p)
{
    return p && p[0] == '/' && strnlen(p, NET_PATH_MAX) < NET_PATH_MAX && !strstr(p, "/../") &&
           !endswith(p, "/..");
}

static bool ifname_ok(const char *s)
{
    if (!s)
        return false;
    size_t n = strnlen(s, IFNAMSIZ);
    if (n < 1 || n >= IFNAMSIZ)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-' || c == '.'))
            return false;
    }
    return true;
}

int rt_parse_ipv4_cidr(const char *s, uint32_t *ret_addr, unsigned *ret_prefix)
{
    char a[INET_ADDRSTRLEN];
    if (!s)
        return -EINVAL;
    const char *slash = strchr(s, '/');
    if (!slash || (size_t) (slash - s) >= sizeof(a))
        return -EINVAL;
    memcpy(a, s, (size_t) (slash - s));
    a[slash - s] = '\0';
    struct in_addr in;
    if (inet_pton(AF_INET, a, &in) != 1)
        return -EINVAL;
    uint32_t prefix;
    if (slash[1] < '0' || slash[1] > '9' || parse_u32(slash + 1, &prefix) < 0 || prefix > 32)
        return -EINVAL;
    if (ret_addr)
        *ret_addr = ntohl(in.s_addr);
    if (ret_prefix)
        *ret_prefix = prefix;
    return 0;
}

/* A subnet we can hand to host-local: network address, /8../30. */
static int subnet_check(const char *s, sk_err *err)
{
    uint32_t addr;
    unsigned prefix;
    if (rt_parse_ipv4_cidr(s, &addr, &prefix) < 0)
        return sk_err_set(err, SK_E_INVALID, "subnet '%s' is not an IPv4 CIDR", s ? s : "");
    if (prefix < 8 || prefix > 30)
        return sk_err_set(err, SK_E_INVALID, "subnet '%s': prefix must be /8 to /30", s);
    uint32_t mask = prefix == 0 ? 0 : 0xffffffffu << (32 - prefix);
    if (addr & ~mask)
        return sk_err_set(err, SK_E_INVALID, "subnet '%s' has host bits set", s);
    return 0;
}

typedef struct net_sel {
    const char *kind;   /* "bridge" | "awsvpc" */
    const char *bridge; /* Linux bridge name */
    const char *subnet;
    bool portmap;
    char name[64]; /* CNI network name: "skiff-<kind>-<bridge>" */
    const char *bin_dir;
    const char *iptables;
} net_sel;

static int net_select(const rt_net_config *cfg, const char *network, const char *id, net_sel *ret,
                      sk_err *err)
{
    net_sel s = { 0 };
    if (!cfg || !path_ok(cfg->state_dir))
        return sk_err_set(err, SK_E_INVALID, "network state dir must be an absolute path");
    if (!rt_id_valid(id))
        return sk_err_set(err, SK_E_INVALID, "invalid attachment id '%s'", id ? id : "");
    if (streq_ptr(network, "bridge")) {
        s.kind = "bridge";
        s.bridge = cfg->bridge_name;
        s.subnet = cfg->bridge_subnet;
        s.portmap = true;
    } else if (streq_ptr(network, "awsvpc")) {
        s.kind = "awsvpc";
        s.bridge = cfg->awsvpc_bridge;
        s.subnet = cfg->awsvpc_subnet;
    } else
        return sk_err_set(err, SK_E_INVALID, "unknown network '%s'", network ? network : "");
    if (!ifname_ok(s.bridge))
        return sk_err_set(err, SK_E_INVALID, "%s bridge name '%s' is not a valid interface name",
                          s.kind, s.bridge ? s.bridge : "");
    if (subnet_check(s.subnet, err) < 0)
        return -1;
    s.bin_dir = cfg->cni_bin_dir ? cfg->cni_bin_dir : DEFAULT_CNI_BIN;
    if (!path_ok(s.bin_dir))
        return sk_err_set(err, SK_E_INVALID, "CNI plugin dir must be an absolute path");
    s.iptables = cfg->iptables_path ? cfg->iptables_path : "iptables";
    snprintf(s.name, sizeof(s.name), "skiff-%s-%s", s.kind, s.bridge);
    *ret = s;
    return 0;
}

static int ports_check(const rt_port_mapping *ports, size_t nports, sk_err *err)
{
    if (nports > RT_NET_MAX_PORTS)
        return sk_err_set(err, SK_E_LIMIT, "too many port mappings (%zu > %d)", nports,
                          RT_NET_MAX_PORTS);
    for (size_t i = 0; i < nports; i++) {
        const char *proto = ports[i].protocol ? ports[i].protocol : "tcp";
        if (!streq(proto, "tcp") && !streq(proto, "udp"))
            return sk_err_set(err, SK_E_INVALID, "port mapping %zu: protocol '%s'", i, proto);
        if (ports[i].host_port == 0 || ports[i].container_port == 0)
            return sk_err_set(err, SK_E_INVALID, "port mapping %zu: ports must be 1-65535", i);
        for (size_t k = 0; k < i; k++) {
            const char *pk = ports[k].protocol ? ports[k].protocol : "tcp";
            if (ports[k].host_port == ports[i].host_port && streq(pk, proto))
                return sk_err_set(err, SK_E_INVALID, "host port %u/%s mapped twice",
                                  ports[i].host_port, proto);
        }
    }
    return 0;
}

/* ---- network namespaces ---- */

typedef struct child_report {
    int step; /* 0 ok, else which step failed */
    int errnum;
} child_report;

static const char *const netns_steps[] = {
    "ok", "unshare(CLONE_NEWNET)", "socket", "bring up lo", "bind-mount the netns",
};

int rt_netns_create(const char *path, sk_err *err)
{
    if (!path_ok(path))
        return sk_err_set(err, SK_E_INVALID, "netns path must be an absolute path");
    _cleanup_free_ char *copy = xstrdup(path);
    int r = mkdir_p(dirname(copy), 0755);
    if (r < 0)
        return sk_err_sys(err, -r, "create '%s'", copy);

    int fd = open(path, O_RDONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOCTTY, 0444);
    if (fd < 0) {
        if (errno == EEXIST)
            return sk_err_set(err, SK_E_EXISTS, "netns '%s' already exists", path);
        return sk_err_sys(err, errno, "create '%s'", path);
    }
    close(fd);

    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0) {
        r = sk_err_sys(err, errno, "pipe");
        unlink(path);
        return r;
    }
    pid_t pid = fork();
    if (pid < 0) {
        r = sk_err_sys(err, errno, "fork");
        close(p[0]);
        close(p[1]);
        unlink(path);
        return r;
    }
    if (pid == 0) {
        /* The child owns the new namespace only long enough to pin it with a
         * bind mount in the (shared) mount namespace; then it exits. */
        child_report rep = { 0, 0 };
        struct ifreq ifr = { 0 };
        int s = -1;
        close(p[0]);
        if (unshare(CLONE_NEWNET) < 0)
            rep = (child_report){ 1, errno };
        else if ((s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0)) < 0)
            rep = (child_report){ 2, errno };
        else {
            memcpy(ifr.ifr_name, "lo", 3);
            if (ioctl(s, SIOCGIFFLAGS, &ifr) < 0)
                rep = (child_report){ 3, errno };
            else {
                ifr.ifr_flags |= IFF_UP;
                if (ioctl(s, SIOCSIFFLAGS, &ifr) < 0)
                    rep = (child_report){ 3, errno };
                else if (mount("/proc/self/ns/net", path, NULL, MS_BIND, NULL) < 0)
                    rep = (child_report){ 4, errno };
            }
        }
        (void) !write(p[1], &rep, sizeof(rep));
        _exit(rep.step ? 1 : 0);
    }
    close(p[1]);
    child_report rep = { 3, EIO };
    ssize_t k;
    while ((k = read(p[0], &rep, sizeof(rep))) < 0 && errno == EINTR)
        ;
    close(p[0]);
    int st;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
    if (k != (ssize_t) sizeof(rep)) {
        rep.step = 1;
        rep.errnum = EIO;
    }
    if (rep.step != 0) {
        const char *step = rep.step > 0 && (size_t) rep.step < ELEMENTSOF(netns_steps)
                                   ? netns_steps[rep.step]
                                   : "netns setup";
        r = sk_err_sys(err, rep.errnum, "create netns '%s': %s", path, step);
        (void) umount2(path, MNT_DETACH);
        unlink(path);
        return r;
    }
    return 0;
}

static bool is_netns_mount(const char *path)
{
    struct statfs sf;
    return statfs(path, &sf) == 0 && (unsigned long) sf.f_type == NSFS_MAGIC_NUMBER;
}

int rt_netns_delete(const char *path, sk_err *err)
{
    if (!path_ok(path))
        return sk_err_set(err, SK_E_INVALID, "netns path must be an absolute path");
    /* Detach: processes still inside keep the namespace alive; it goes away
     * with the last of them. Repeat in case it was mounted more than once. */
    for (int i = 0; i < 8; i++) {
        if (umount2(path, MNT_DETACH | UMOUNT_NOFOLLOW) < 0) {
            if (errno == EINVAL || errno == ENOENT)
                break;
            return sk_err_sys(err, errno, "unmount netns '%s'", path);
        }
    }
    if (unlink(path) < 0 && errno != ENOENT)
        return sk_err_sys(err, errno, "remove netns '%s'", path);
    return 0;
}

/* ---- running a plugin ---- */

/* Runs CNI plugin `type` with command and stdin conf. On success *ret_out is
 * its stdout (NUL-terminated, may be empty). On failure err holds the
 * plugin's error message ({"code","msg","details"} on stdout, per spec) or
 * its stderr. */
static int cni_exec(const net_sel *s, const char *type, const char *command, const char *id,
                    const char *netns, const char *conf, char **ret_out, sk_err *err)
{
    for (const char *c = type; *c; c++)
        if (!((*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') || *c == '-'))
            return sk_err_set(err, SK_E_INVALID, "bad CNI plugin type '%s'", type);
    _cleanup_free_ char *bin = path_join(s->bin_dir, type);
    _cleanup_free_ char *e_cmd = strjoin("CNI_COMMAND=", command);
    _cleanup_free_ char *e_id = strjoin("CNI_CONTAINERID=", id);
    _cleanup_free_ char *e_ns = strjoin("CNI_NETNS=", netns ? netns : "");
    _cleanup_free_ char *e_path = strjoin("CNI_PATH=", s->bin_dir);
    char *envp[] = {
        e_cmd, e_id, e_ns, (char *) "CNI_IFNAME=" CNI_IFNAME, e_path, (char *) CHILD_PATH_ENV, NULL
    };
    char *argv[] = { bin, NULL };

    /* stdin is a socket so that writing to a plugin that exits without
     * reading gives EPIPE (MSG_NOSIGNAL), not SIGPIPE in the agent. */
    int in[2] = { -1, -1 }, out[2] = { -1, -1 }, er[2] = { -1, -1 };
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, in) < 0 || pipe2(out, O_CLOEXEC) < 0 ||
        pipe2(er, O_CLOEXEC) < 0) {
        int r = sk_err_sys(err, errno, "pipe");
        for (int i = 0; i < 2; i++) {
            if (in[i] >= 0)
                close(in[i]);
            if (out[i] >= 0)
                close(out[i]);
        }
        return r;
    }
    pid_t pid = fork();
    if (pid < 0) {
        int r = sk_err_sys(err, errno, "fork");
        for (int i = 0; i < 2; i++) {
            close(in[i]);
            close(out[i]);
            close(er[i]);
        }
        return r;
    }
    if (pid == 0) {
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        signal(SIGPIPE, SIG_DFL);
        if (dup2(in[0], 0) < 0 || dup2(out[1], 1) < 0 || dup2(er[1], 2) < 0)
            _exit(127);
        execve(bin, argv, envp);
        _exit(127);
    }
    close(in[0]);
    close(out[1]);
    close(er[1]);
    _cleanup_close_ int fin = in[1], fout = out[0], ferr = er[0];
    fcntl(fout, F_SETFL, O_NONBLOCK);
    fcntl(ferr, F_SETFL, O_NONBLOCK);

    _cleanup_buf_ sk_buf ob = { 0 }, eb = { 0 };
    sk_buf_init(&ob, CNI_OUT_MAX);
    sk_buf_init(&eb, CNI_ERR_MAX);
    size_t conf_len = strlen(conf), written = 0;
    usec_t deadline = now_monotonic() + CNI_TIMEOUT_MS * USEC_PER_MSEC;
    const char *fail = NULL;
    if (conf_len == 0) {
        close(fin);
        fin = -EBADF;
    }
    while (fout >= 0 || ferr >= 0) {
        usec_t now = now_monotonic();
        if (now >= deadline) {
            fail = "timed out";
            break;
        }
        struct pollfd pfd[3] = {
            { .fd = fin, .events = POLLOUT },
            { .fd = fout, .events = POLLIN },
            { .fd = ferr, .events = POLLIN },
        };
        int pr = poll(pfd, 3, (int) ((deadline - now) / USEC_PER_MSEC) + 1);
        if (pr < 0 && errno != EINTR) {
            fail = "poll failed";
            break;
        }
        if (pr <= 0)
            continue;
        if (fin >= 0 && pfd[0].revents) {
            ssize_t k = send(fin, conf + written, conf_len - written, MSG_NOSIGNAL | MSG_DONTWAIT);
            if (k > 0)
                written += (size_t) k;
            if ((k < 0 && errno != EAGAIN && errno != EINTR) || written == conf_len) {
                (void) shutdown(fin, SHUT_WR);
                close(fin);
                fin = -EBADF;
            }
        }
        for (int i = 1; i <= 2; i++) {
            int *fd = i == 1 ? &fout : &ferr;
            sk_buf *b = i == 1 ? &ob : &eb;
            if (*fd < 0 || !pfd[i].revents)
                continue;
            char chunk[8192];
            ssize_t k = read(*fd, chunk, sizeof(chunk));
            if (k < 0 && (errno == EAGAIN || errno == EINTR))
                continue;
            if (k <= 0) {
                close(*fd);
                *fd = -EBADF;
                continue;
            }
            if (sk_buf_append(b, chunk, (size_t) k) < 0 && i == 1) {
                fail = "output too large";
                break;
            }
        }
        if (fail)
            break;
    }
    if (fail)
        kill(pid, SIGKILL);
    int st = 0;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
    if (fail)
        return sk_err_set(err, SK_E_SYSTEM, "CNI %s %s: %s", type, command, fail);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        json_error_t jerr;
        _cleanup_json_ json_t *j = ob.len ? json_loadb(ob.data, ob.len, 0, &jerr) : NULL;
        const char *msg = js_str(j, "msg"), *details = js_str(j, "details");
        if (msg)
            return sk_err_set(err, SK_E_SYSTEM, "CNI %s %s: %s%s%s", type, command, msg,
                              details && *details ? ": " : "", details ? details : "");
        if (eb.len)
            return sk_err_set(err, SK_E_SYSTEM, "CNI %s %s: %s", type, command, strstrip(eb.data));
        if (WIFEXITED(st) && WEXITSTATUS(st) == 127)
            return sk_err_set(err, SK_E_SYSTEM, "CNI %s %s: cannot execute '%s'", type, command,
                              bin);
        return sk_err_set(err, SK_E_SYSTEM, "CNI %s %s: plugin failed (status %d)", type, command,
                          WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
    }
    *ret_out = sk_buf_steal(&ob);
    return 0;
}

/* ---- configuration ---- */

static json_t *build_conflist(const rt_net_config *cfg, const net_sel *s)
{
    _cleanup_free_ char *ipam_dir = path_join(cfg->state_dir, "ipam");
    json_t *range = json_pack("[[{s:s}]]", "subnet", s->subnet);
    json_t *ipam = json_pack("{s:s, s:o, s:[{s:s}], s:s}", "type", "host-local", "ranges", range,
                             "routes", "dst", "0.0.0.0/0", "dataDir", ipam_dir);
    /* ipMasq off: one masquerade rule per subnet (masquerade_rule) replaces the
     * plugin's chain per container, which costs ~15 ms per ADD and ~40 ms per
     * DEL in iptables runs. */
    json_t *bridge =
            json_pack("{s:s, s:s, s:b, s:b, s:b, s:o}", "type", "bridge", "bridge", s->bridge,
                      "isGateway", 1, "ipMasq", 0, "hairpinMode", 1, "ipam", ipam);
    json_t *plugins = json_array();
    json_array_append_new(plugins, bridge);
    if (s->portmap)
        json_array_append_new(plugins, json_pack("{s:s, s:{s:b}, s:b}", "type", "portmap",
                                                 "capabilities", "portMappings", 1, "snat", 1));
    return json_pack("{s:s, s:s, s:o}", "cniVersion", CNI_VERSION, "name", s->name, "plugins",
                     plugins);
}

static json_t *ports_to_json(const rt_port_mapping *ports, size_t nports)
{
    json_t *a = json_array();
    for (size_t i = 0; i < nports; i++)
        json_array_append_new(a,
                              json_pack("{s:i, s:i, s:s}", "hostPort", (int) ports[i].host_port,
                                        "containerPort", (int) ports[i].container_port, "protocol",
                                        ports[i].protocol ? ports[i].protocol : "tcp"));
    return a;
}

/* The stdin of one plugin in the chain (CNI spec, "network configuration
 * list" execution): the plugin's own object plus cniVersion, name, the
 * runtimeConfig for the capabilities it declares, and prevResult. */
static char *plugin_conf(const json_t *conflist, const json_t *plugin, const json_t *prev,
                         const json_t *ports)
{
    _cleanup_json_ json_t *c = json_deep_copy(plugin);
    js_set_str(c, "cniVersion", js_str(conflist, "cniVersion"));
    js_set_str(c, "name", js_str(conflist, "name"));
    json_t *caps = js_obj(plugin, "capabilities");
    if (caps && js_bool(caps, "portMappings", false) && ports && json_array_size(ports) > 0)
        js_set(c, "runtimeConfig", json_pack("{s:O}", "portMappings", ports));
    if (prev)
        js_set(c, "prevResult", json_deep_copy(prev));
    return json_dumps(c, JSON_COMPACT);
}

/* ---- result parsing ---- */

static int copy_field(char *dst, size_t n, const char *src)
{
    if (!src || strlen(src) >= n)
        return -1;
    memcpy(dst, src, strlen(src) + 1);
    return 0;
}

int rt_cni_parse_result(const char *data, size_t len, rt_net_result *ret, sk_err *err)
{
    json_error_t jerr;
    if (len > CNI_OUT_MAX)
        return sk_err_set(err, SK_E_LIMIT, "CNI result too large");
    _cleanup_json_ json_t *j = json_loadb(data, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!j || !json_is_object(j))
        return sk_err_set(err, SK_E_INVALID, "CNI result is not a JSON object");
    return rt_cni_parse_result_json(j, ret, err);
}

int rt_cni_parse_result_json(const json_t *j, rt_net_result *ret, sk_err *err)
{
    const json_t *ifaces = js_arr(j, "interfaces"), *ips = js_arr(j, "ips");
    if (!ips || json_array_size(ips) == 0)
        return sk_err_set(err, SK_E_INVALID, "CNI result has no IP addresses");

    /* Prefer the IPv4 address on an interface inside the sandbox (eth0). */
    const json_t *best = NULL, *best_if = NULL;
    int best_rank = -1;
    size_t i;
    json_t *ipc;
    json_array_foreach(ips, i, ipc) {
        const char *addr = js_str(ipc, "address");
        uint32_t a;
        unsigned prefix;
        if (!addr || rt_parse_ipv4_cidr(addr, &a, &prefix) < 0)
            continue;
        const json_t *ifc = NULL;
        json_t *idx = json_object_get(ipc, "interface");
        if (json_is_integer(idx) && json_integer_value(idx) >= 0 && ifaces &&
            (size_t) json_integer_value(idx) < json_array_size(ifaces))
            ifc = json_array_get(ifaces, (size_t) json_integer_value(idx));
        if (ifc && !json_is_object(ifc))
            ifc = NULL;
        int rank = ifc && !strempty(js_str(ifc, "sandbox")) ? 2 : ifc ? 1 : 0;
        if (rank > best_rank) {
            best = ipc;
            best_if = ifc;
            best_rank = rank;
        }
    }
    if (!best)
        return sk_err_set(err, SK_E_INVALID, "CNI result has no IPv4 address");

    rt_net_result r = { 0 };
    const char *addr = js_str(best, "address");
    if (copy_field(r.cidr, sizeof(r.cidr), addr) < 0)
        return sk_err_set(err, SK_E_INVALID, "CNI result: bad address");
    size_t plen = strcspn(addr, "/");
    if (plen >= sizeof(r.ip))
        return sk_err_set(err, SK_E_INVALID, "CNI result: bad address");
    memcpy(r.ip, addr, plen);
    r.ip[plen] = '\0';
    const char *gw = js_str(best, "gateway");
    if (gw) {
        struct in_addr in;
        if (copy_field(r.gateway, sizeof(r.gateway), gw) < 0 || inet_pton(AF_INET, gw, &in) != 1)
            return sk_err_set(err, SK_E_INVALID, "CNI result: bad gateway");
    }
    if (best_if) {
        const char *mac = js_str(best_if, "mac"), *name = js_str(best_if, "name");
        if (mac && copy_field(r.mac, sizeof(r.mac), mac) < 0)
            return sk_err_set(err, SK_E_INVALID, "CNI result: bad MAC address");
        if (name && copy_field(r.ifname, sizeof(r.ifname), name) < 0)
            return sk_err_set(err, SK_E_INVALID, "CNI result: bad interface name");
    }
    if (!r.ifname[0])
        memcpy(r.ifname, CNI_IFNAME, sizeof(CNI_IFNAME));
    *ret = r;
    return 0;
}

/* ---- cache ---- */

static char *cache_path(const rt_net_config *cfg, const net_sel *s, const char *id)
{
    return xasprintf("%s/cni/%s-%s.json", cfg->state_dir, s->kind, id);
}

static int cache_write(const char *path, const json_t *cache, sk_err *err)
{
    _cleanup_free_ char *copy = xstrdup(path);
    int r = mkdir_p(dirname(copy), 0700);
    if (r < 0)
        return sk_err_sys(err, -r, "create '%s'", copy);
    _cleanup_free_ char *data = json_dumps(cache, JSON_COMPACT);
    if (!data)
        return sk_err_set(err, SK_E_INTERNAL, "serialise CNI cache");
    r = write_file_replace(path, data, strlen(data), 0600);
    if (r < 0)
        return sk_err_sys(err, -r, "write '%s'", path);
    return 0;
}

/* ---- ADD / DEL ---- */

/* Runs iptables with argv (argv[0] "iptables"), output discarded. Returns
 * its exit status, -1 when it could not run. */
static int run_iptables(const net_sel *s, const char *const *argv)
{
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        int nul = open("/dev/null", O_RDWR | O_CLOEXEC);
        if (nul >= 0) {
            dup2(nul, 0);
            dup2(nul, 1);
            dup2(nul, 2);
        }
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        char *envp[] = { (char *) CHILD_PATH_ENV, NULL };
        execvpe(s->iptables, (char *const *) argv, envp);
        _exit(127);
    }
    int st;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR)
            return -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* Removes the bridge plugin's ipMasq rules for (network, id, ip): the plugin
 * itself only does this when it can still find the address in the netns, so
 * a DEL after the namespace is gone would leak them. Mirrors TeardownIPMasq
 * of containernetworking/plugins (chain "CNI-" + sha512(name+id) hex, 28
 * chars; comment `name: "N" id: "ID"`). Best effort. */
static void ipmasq_cleanup(const net_sel *s, const char *id, const char *ip)
{
    char hex[SHA512_HEX_LEN + 1];
    _cleanup_free_ char *in = strjoin(s->name, id);
    sha512_hex(in, strlen(in), hex);
    char chain[29];
    memcpy(chain, "CNI-", 4);
    memcpy(chain + 4, hex, 24);
    chain[28] = '\0';
    _cleanup_free_ char *comment = xasprintf("name: \"%s\" id: \"%s\"", s->name, id);

    const char *const del[] = { "iptables",    "-w",      "-t",        "nat",   "-D",
                                "POSTROUTING", "-s",      ip,          "-j",    chain,
                                "-m",          "comment", "--comment", comment, NULL };
    const char *const flush[] = { "iptables", "-w", "-t", "nat", "-F", chain, NULL };
    const char *const remove[] = { "iptables", "-w", "-t", "nat", "-X", chain, NULL };
    (void) run_iptables(s, del);
    (void) run_iptables(s, flush);
    (void) run_iptables(s, remove);
}

/* Adds rule (NULL-terminated, without table and operation) to table with
 * add_op ("-I" or "-A") unless `iptables -C` finds it; false on failure. */
static bool iptables_ensure(const net_sel *s, const char *table, const char *add_op,
                            const char *const *rule)
{
    const char *argv[32] = { "iptables", "-w", "-t", table, "-C" };
    size_t n = 5;
    for (size_t i = 0; rule[i] && n < ELEMENTSOF(argv) - 1; i++)
        argv[n++] = rule[i];
    argv[n] = NULL;
    if (run_iptables(s, argv) == 0)
        return true;
    argv[4] = add_op;
    return run_iptables(s, argv) == 0;
}

/* portmap sets route_localnet on the bridge so that 127.0.0.1:HOSTPORT can be
 * DNATed to a container. That also lets anything on the bridge (a container
 * with CAP_NET_RAW or its own routes) reach services bound to the host's
 * 127.0.0.1 (CVE-2020-8558). As kube-proxy and ecs-init do, drop packets to
 * 127/8 arriving on the bridge unless they belong to a connection the host
 * made or DNATed. One rule per bridge, kept like the bridge itself. */
static int localnet_guard(const net_sel *s, sk_err *err)
{
    _cleanup_free_ char *comment = xasprintf("skiff: drop non-local 127/8 on %s", s->bridge);
    const char *const rule[] = {
        "INPUT", "-i",        s->bridge,   "-d",        "127.0.0.0/8",
        "-m",    "conntrack", "!",         "--ctstate", "RELATED,ESTABLISHED,DNAT",
        "-m",    "comment",   "--comment", comment,     "-j",
        "DROP",  NULL
    };
    if (!iptables_ensure(s, "filter", "-I", rule))
        return sk_err_set(err, SK_E_SYSTEM, "iptables: cannot add the 127/8 guard for '%s'",
                          s->bridge);
    return 0;
}

/* Outbound NAT for a network, as Docker does it: one rule per subnet,
 *   nat POSTROUTING -s SUBNET ! -d SUBNET -j MASQUERADE
 * (comment "skiff: masquerade SUBNET"), kept like the bridge itself. It is
 * checked on the first ADD of each subnet in this process (a process that
 * starts again checks again, as Docker does when it restarts). */
static int masquerade_rule(const net_sel *s, sk_err *err)
{
    static char ensured[4][32];
    for (size_t i = 0; i < ELEMENTSOF(ensured); i++)
        if (streq(ensured[i], s->subnet))
            return 0;
    _cleanup_free_ char *comment = xasprintf("skiff: masquerade %s", s->subnet);
    const char *const rule[] = { "POSTROUTING", "-s",         s->subnet, "!",         "-d",
                                 s->subnet,     "-m",         "comment", "--comment", comment,
                                 "-j",          "MASQUERADE", NULL };
    if (!iptables_ensure(s, "nat", "-A", rule))
        return sk_err_set(err, SK_E_SYSTEM, "iptables: cannot add the masquerade rule for %s",
                          s->subnet);
    for (size_t i = 0; i < ELEMENTSOF(ensured); i++)
        if (!ensured[i][0]) {
            strlcpy_s(ensured[i], s->subnet, sizeof(ensured[i]));
            break;
        }
    return 0;
}

static int chain_del(const net_sel *s, const json_t *conflist, const char *id, const char *netns,
                     const json_t *prev, const json_t *ports, sk_err *err)
{
    const json_t *plugins = js_arr(conflist, "plugins");
    int ret = 0;
    for (size_t i = json_array_size(plugins); i-- > 0;) {
        const json_t *pl = json_array_get(plugins, i);
        const char *type = js_str(pl, "type");
        if (!type)
            continue;
        _cleanup_free_ char *conf = plugin_conf(conflist, pl, prev, ports);
        _cleanup_free_ char *out = NULL;
        _cleanup_err_ sk_err e = { 0 };
        if (cni_exec(s, type, "DEL", id, netns, conf, &out, &e) < 0 && ret == 0) {
            sk_err_move(err, &e);
            ret = -1;
        }
    }
    return ret;
}

int rt_cni_add(const rt_net_config *cfg, const char *network, const char *id,
               const char *netns_path, const rt_port_mapping *ports, size_t nports,
               rt_net_result *ret, sk_err *err)
{
    net_sel s;
    if (net_select(cfg, network, id, &s, err) < 0)
        return -1;
    if (!path_ok(netns_path))
        return sk_err_set(err, SK_E_INVALID, "netns path must be an absolute path");
    if (!s.portmap && nports > 0)
        return sk_err_set(err, SK_E_INVALID, "network '%s' does not publish host ports", s.kind);
    if (ports_check(ports, nports, err) < 0)
        return -1;
    /* Nothing to publish: no portmap in the chain (and so no route_localnet on
     * the bridge, and no guard to check): two plugin runs fewer per attach.
     * The cached configuration records the shorter chain for DEL. */
    if (nports == 0)
        s.portmap = false;
    if (!is_netns_mount(netns_path))
        return sk_err_set(err, SK_E_NOT_FOUND, "'%s' is not a network namespace", netns_path);

    _cleanup_free_ char *cpath = cache_path(cfg, &s, id);
    if (path_exists(cpath))
        return sk_err_set(err, SK_E_EXISTS, "'%s' is already attached to %s", id, s.kind);

    _cleanup_json_ json_t *conflist = build_conflist(cfg, &s);
    _cleanup_json_ json_t *jports = ports_to_json(ports, nports);
    if (!conflist || !jports)
        return sk_err_set(err, SK_E_INTERNAL, "build CNI configuration");
    /* Written before ADD so that DEL can clean up after a crash mid-ADD. */
    _cleanup_json_ json_t *cache = json_pack("{s:O, s:s, s:O}", "config", conflist, "netns",
                                             netns_path, "portMappings", jports);
    if (cache_write(cpath, cache, err) < 0)
        return -1;

    if (masquerade_rule(&s, err) < 0) {
        unlink(cpath);
        return sk_err_wrap(err, "attach '%s' to %s", id, s.kind);
    }
    _cleanup_json_ json_t *prev = NULL;
    const json_t *plugins = js_arr(conflist, "plugins");
    for (size_t i = 0; i < json_array_size(plugins); i++) {
        const json_t *pl = json_array_get(plugins, i);
        _cleanup_free_ char *conf = plugin_conf(conflist, pl, prev, jports);
        _cleanup_free_ char *out = NULL;
        if (cni_exec(&s, js_str(pl, "type"), "ADD", id, netns_path, conf, &out, err) < 0)
            goto fail;
        json_error_t jerr;
        json_t *res = json_loads(out, 0, &jerr);
        if (!res || !json_is_object(res)) {
            json_decref(res);
            sk_err_set(err, SK_E_INVALID, "CNI %s ADD: result is not a JSON object",
                       js_str(pl, "type"));
            goto fail;
        }
        json_decref(prev);
        prev = res;
    }
    rt_net_result r;
    if (!prev || rt_cni_parse_result_json(prev, &r, err) < 0)
        goto fail;
    if (s.portmap && localnet_guard(&s, err) < 0)
        goto fail;
    js_set(cache, "result", json_incref(prev));
    if (cache_write(cpath, cache, err) < 0)
        goto fail;
    *ret = r;
    return 0;

fail:
    /* CNI spec: after a failed ADD the runtime calls DEL for the whole chain. */
    {
        _cleanup_err_ sk_err ignored = { 0 };
        (void) chain_del(&s, conflist, id, netns_path, prev, jports, &ignored);
        unlink(cpath);
    }
    return sk_err_wrap(err, "attach '%s' to %s", id, s.kind);
}

int rt_cni_del(const rt_net_config *cfg, const char *network, const char *id,
               const char *netns_path, sk_err *err)
{
    net_sel s;
    if (net_select(cfg, network, id, &s, err) < 0)
        return -1;
    if (netns_path && !path_ok(netns_path))
        return sk_err_set(err, SK_E_INVALID, "netns path must be an absolute path");

    _cleanup_free_ char *cpath = cache_path(cfg, &s, id);
    _cleanup_free_ char *data = NULL;
    _cleanup_json_ json_t *cache = NULL;
    size_t len;
    int r = read_full_file(cpath, CNI_CACHE_MAX, &data, &len);
    if (r >= 0) {
        json_error_t jerr;
        cache = json_loadb(data, len, 0, &jerr);
        if (cache && (!json_is_object(cache) || !js_obj(cache, "config"))) {
            json_decref(cache);
            cache = NULL;
        }
    } else if (r != -ENOENT)
        return sk_err_sys(err, -r, "read '%s'", cpath);

    _cleanup_json_ json_t *conflist = NULL;
    _cleanup_json_ json_t *jports = NULL;
    const json_t *prev = NULL;
    if (cache) {
        conflist = json_incref(js_obj(cache, "config"));
        jports = json_incref(js_arr(cache, "portMappings"));
        prev = js_obj(cache, "result");
    } else
        conflist = build_conflist(cfg, &s);
    if (!jports || json_array_size(jports) == 0) {
        /* portmap's DEL is a no-op without portMappings, even though its
         * teardown only needs the names: give it a placeholder so that a DEL
         * without the cache still removes the rules. */
        json_decref(jports);
        jports = json_pack("[{s:i, s:i, s:s}]", "hostPort", 1, "containerPort", 1, "protocol",
                           "tcp");
    }

    /* Without a live namespace the bridge plugin only releases the lease. */
    const char *ns = netns_path && is_netns_mount(netns_path) ? netns_path : "";
    if (chain_del(&s, conflist, id, ns, prev, jports, err) < 0)
        return sk_err_wrap(err, "detach '%s' from %s", id, s.kind);
    if (!*ns) {
        rt_net_result res;
        _cleanup_err_ sk_err ignored = { 0 };
        if (prev && rt_cni_parse_result_json(prev, &res, &ignored) >= 0)
            ipmasq_cleanup(&s, id, res.ip);
    }
    if (unlink(cpath) < 0 && errno != ENOENT)
        return sk_err_sys(err, errno, "remove '%s'", cpath);
    return 0;
}

/* ---- host ports ---- */

static char *claim_path(const char *dir, uint16_t port, const char *protocol)
{
    return xasprintf("%s/%s-%u", dir, streq_ptr(protocol, "udp") ? "udp" : "tcp", port);
}

int rt_port_claim(const char *dir, uint16_t port, const char *protocol)
{
    _cleanup_free_ char *path = claim_path(dir, port, protocol);
    for (int attempt = 0; attempt < 5; attempt++) {
        int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd < 0)
            return -errno;
        if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
            int e = errno;
            close(fd);
            return e == EWOULDBLOCK ? -EADDRINUSE : -e;
        }
        /* The holder may have unlinked it between our open and flock: the
         * lock only counts on the file that is still at path. */
        struct stat a, b;
        if (fstat(fd, &a) == 0 && stat(path, &b) == 0 && a.st_ino == b.st_ino &&
            a.st_dev == b.st_dev)
            return fd;
        close(fd);
    }
    return -EAGAIN;
}

void rt_port_unclaim(const char *dir, uint16_t port, const char *protocol, int fd)
{
    if (fd < 0)
        return;
    _cleanup_free_ char *path = claim_path(dir, port, protocol);
    (void) unlink(path); /* while still locked, so no one holds a lock on it */
    close(fd);
}

bool rt_port_free(uint16_t port, const char *protocol)
{
    bool udp = streq_ptr(protocol, "udp");
    if (port == 0 || (!udp && protocol && !streq(protocol, "tcp")))
        return false;
    int type = (udp ? SOCK_DGRAM : SOCK_STREAM) | SOCK_CLOEXEC;

    _cleanup_close_ int s4 = socket(AF_INET, type, 0);
    if (s4 < 0)
        return false;
    int one = 1;
    /* SO_REUSEADDR: a TCP port whose old connections linger in TIME_WAIT is
     * free for a new listener. */
    if (!udp)
        (void) setsockopt(s4, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_in a4 = { .sin_family = AF_INET, .sin_port = htons(port) };
    if (bind(s4, (struct sockaddr *) &a4, sizeof(a4)) < 0)
        return false;

    _cleanup_close_ int s6 = socket(AF_INET6, type, 0);
    if (s6 < 0)
        return true; /* no IPv6 on this host */
    if (!udp)
        (void) setsockopt(s6, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    (void) setsockopt(s6, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    struct sockaddr_in6 a6 = { .sin6_family = AF_INET6,
                               .sin6_port = htons(port),
                               .sin6_addr = IN6ADDR_ANY_INIT };
    if (bind(s6, (struct sockaddr *) &a6, sizeof(a6)) < 0)
        return errno == EADDRNOTAVAIL || errno == EAFNOSUPPORT;
    return true;
}
