/* Privileged tests: network namespaces and the CNI bridge/portmap chain with
 * the real plugins, busybox httpd as the workload (under runc and
 * skiff-monitor for the bridge network, directly in the netns for awsvpc).
 * Uses bridges sktstb0/sktsta0 on 10.250.0.0/24 and 10.250.1.0/24 and
 * removes everything, also when a test fails (atexit). */
#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include "basic/alloc.h"
#include "basic/err.h"
#include "basic/fileutil.h"
#include "basic/rand.h"
#include "basic/strutil.h"
#include "runtime/monitor.h"
#include "runtime/net.h"
#include "shared/digest.h"
#include "tap.h"
#include "test-runtime-oci.h"

#define BRIDGE     "sktstb0"
#define AWSVPC     "sktsta0"
#define MARKER     "skiff-net-test-marker"
#define MAX_ATTACH 16
#define GUARD_RULE                                                                   \
    "INPUT", "-i", BRIDGE, "-d", "127.0.0.0/8", "-m", "conntrack", "!", "--ctstate", \
            "RELATED,ESTABLISHED,DNAT", "-m", "comment", "--comment",                \
            "skiff: drop non-local 127/8 on " BRIDGE, "-j", "DROP"

typedef struct attachment {
    const char *network;
    char *id;
    char *netns;
} attachment;

static struct {
    bool ready;
    const char *skip;
    char *dir;
    char *state;
    char *rootfs;
    char *runc_root;
    char *www;
    rt_net_config cfg;
    attachment att[MAX_ATTACH];
    size_t natt;
    pid_t servers[8];
    size_t nservers;
    char *containers[4];
    size_t ncontainers;
} fx;

static void cleanup(void)
{
    if (!fx.ready)
        return;
    for (size_t i = 0; i < fx.nservers; i++)
        if (fx.servers[i] > 0) {
            kill(fx.servers[i], SIGKILL);
            waitpid(fx.servers[i], NULL, 0);
        }
    for (size_t i = 0; i < fx.ncontainers; i++)
        oci_delete(fx.runc_root, fx.containers[i]);
    for (size_t i = 0; i < fx.natt; i++) {
        sk_err err = { 0 };
        (void) rt_cni_del(&fx.cfg, fx.att[i].network, fx.att[i].id, fx.att[i].netns, &err);
        sk_err_done(&err);
        (void) rt_netns_delete(fx.att[i].netns, &err);
        sk_err_done(&err);
    }
    const char *g[] = { "iptables", "-w", "-D", GUARD_RULE, NULL };
    oci_run(g, NULL, 0);
    const char *d1[] = { "ip", "link", "del", BRIDGE, NULL };
    const char *d2[] = { "ip", "link", "del", AWSVPC, NULL };
    oci_run(d1, NULL, 0);
    oci_run(d2, NULL, 0);
    rm_rf(fx.dir);
    fx.ready = false;
}

static bool fixture(void)
{
    if (fx.ready)
        return true;
    if (fx.skip)
        return false;
    if (!oci_available(&fx.skip))
        return false;
    static const char *const plugins[] = { "/usr/lib/cni/bridge", "/usr/lib/cni/host-local",
                                           "/usr/lib/cni/portmap" };
    for (size_t i = 0; i < ELEMENTSOF(plugins); i++)
        if (access(plugins[i], X_OK) != 0) {
            fx.skip = "needs containernetworking-plugins";
            return false;
        }
    const char *ipt[] = { "iptables-save", NULL };
    if (oci_run(ipt, NULL, 0) != 0) {
        fx.skip = "needs iptables";
        return false;
    }
    const char *mon = getenv("SKIFF_MONITOR");
    if (!mon || access(mon, X_OK) != 0) {
        fx.skip = "SKIFF_MONITOR not set";
        return false;
    }
    char tmpl[] = "/tmp/skiff-test-net-XXXXXX";
    if (!mkdtemp(tmpl)) {
        fx.skip = "mkdtemp failed";
        return false;
    }
    fx.dir = xstrdup(tmpl);
    fx.state = path_join(fx.dir, "state");
    fx.rootfs = path_join(fx.dir, "rootfs");
    fx.runc_root = path_join(fx.dir, "runc");
    fx.www = path_join(fx.dir, "www");
    fx.cfg = (rt_net_config){
        .state_dir = fx.state,
        .bridge_name = BRIDGE,
        .bridge_subnet = "10.250.0.0/24",
        .awsvpc_bridge = AWSVPC,
        .awsvpc_subnet = "10.250.1.0/24",
    };
    _cleanup_free_ char *index = path_join(fx.rootfs, "www/index.html");
    _cleanup_free_ char *index2 = path_join(fx.www, "index.html");
    if (oci_rootfs_create(fx.rootfs) < 0 || mkdir_p(fx.www, 0755) < 0 ||
        write_file_atomic(index, MARKER "\n", strlen(MARKER) + 1, 0644) < 0 ||
        write_file_atomic(index2, MARKER "\n", strlen(MARKER) + 1, 0644) < 0) {
        fx.skip = "cannot prepare files";
        return false;
    }
    fx.ready = true;
    atexit(cleanup);
    return true;
}

static attachment *attach_new(const char *network, const char *id)
{
    if (fx.natt >= MAX_ATTACH)
        abort();
    attachment *a = &fx.att[fx.natt++];
    a->network = network;
    a->id = xstrdup(id);
    a->netns = xasprintf("%s/netns/%s", fx.state, id);
    return a;
}

/* A TCP connect + HTTP GET with timeouts; 0 when the body has MARKER. */
static int http_get(const char *ip, uint16_t port)
{
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port) };
    if (inet_pton(AF_INET, ip, &a.sin_addr) != 1)
        return -1;
    _cleanup_close_ int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (s < 0)
        return -1;
    if (connect(s, (struct sockaddr *) &a, sizeof(a)) < 0 && errno != EINPROGRESS)
        return -1;
    struct pollfd p = { .fd = s, .events = POLLOUT };
    if (poll(&p, 1, 2000) != 1)
        return -1;
    int soerr = 0;
    socklen_t sl = sizeof(soerr);
    if (getsockopt(s, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0 || soerr != 0)
        return -1;
    const char req[] = "GET /index.html HTTP/1.0\r\n\r\n";
    if (write(s, req, sizeof(req) - 1) != (ssize_t) sizeof(req) - 1)
        return -1;
    char buf[4096];
    size_t n = 0;
    for (;;) {
        p = (struct pollfd){ .fd = s, .events = POLLIN };
        if (poll(&p, 1, 2000) != 1)
            return -1;
        ssize_t k = read(s, buf + n, sizeof(buf) - 1 - n);
        if (k <= 0)
            break;
        n += (size_t) k;
        if (n == sizeof(buf) - 1)
            break;
    }
    buf[n] = '\0';
    return strstr(buf, MARKER) ? 0 : -1;
}

/* Retries for up to 5 s (servers take a moment to start). */
static int http_get_retry(const char *ip, uint16_t port)
{
    for (int i = 0; i < 50; i++) {
        if (http_get(ip, port) == 0)
            return 0;
        usleep(100000);
    }
    return -1;
}

/* http_get_retry from inside a network namespace (a forked child). */
static int http_get_in(const char *netns, const char *ip, uint16_t port)
{
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        int fd = open(netns, O_RDONLY | O_CLOEXEC);
        if (fd < 0 || setns(fd, CLONE_NEWNET) < 0)
            _exit(2);
        _exit(http_get_retry(ip, port) == 0 ? 0 : 1);
    }
    int st;
    waitpid(pid, &st, 0);
    return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -1;
}

/* Whether a TCP connect to ip:port from inside netns succeeds within 1 s. */
static bool connect_in(const char *netns, const char *ip, uint16_t port)
{
    pid_t pid = fork();
    if (pid < 0)
        return false;
    if (pid == 0) {
        int fd = open(netns, O_RDONLY | O_CLOEXEC);
        if (fd < 0 || setns(fd, CLONE_NEWNET) < 0)
            _exit(2);
        struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port) };
        inet_pton(AF_INET, ip, &a.sin_addr);
        int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (connect(s, (struct sockaddr *) &a, sizeof(a)) < 0 && errno != EINPROGRESS)
            _exit(1);
        struct pollfd p = { .fd = s, .events = POLLOUT };
        int soerr = 1;
        socklen_t sl = sizeof(soerr);
        if (poll(&p, 1, 1000) != 1 || getsockopt(s, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0)
            _exit(1);
        _exit(soerr == 0 ? 0 : 1);
    }
    int st;
    waitpid(pid, &st, 0);
    return WIFEXITED(st) && WEXITSTATUS(st) == 0;
}

/* busybox httpd on port inside netns, serving fx.www. */
static pid_t httpd_in(const char *netns, uint16_t port)
{
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        int fd = open(netns, O_RDONLY | O_CLOEXEC);
        if (fd < 0 || setns(fd, CLONE_NEWNET) < 0)
            _exit(2);
        char p[8];
        snprintf(p, sizeof(p), "%u", port);
        int nul = open("/dev/null", O_RDWR | O_CLOEXEC);
        dup2(nul, 0);
        dup2(nul, 1);
        dup2(nul, 2);
        execl(OCI_BUSYBOX, "httpd", "-f", "-p", p, "-h", fx.www, (char *) NULL);
        _exit(127);
    }
    fx.servers[fx.nservers++] = pid;
    return pid;
}

static int count_lines(const char *text, const char *needle)
{
    int n = 0;
    for (const char *l = text; l && *l;) {
        const char *nl = strchr(l, '\n');
        size_t len = nl ? (size_t) (nl - l) : strlen(l);
        _cleanup_free_ char *line = xstrndup(l, len);
        if (strstr(line, needle))
            n++;
        l = nl ? nl + 1 : NULL;
    }
    return n;
}

static char *iptables_save(void)
{
    char *out = xmalloc(1 << 20);
    const char *argv[] = { "iptables-save", NULL };
    if (oci_run(argv, out, 1 << 20) != 0)
        out[0] = '\0';
    return out;
}

/* iptables-save lines that belong to attachment id of CNI network name:
 * rules commented with the id, and the per-attachment chains CNI-<hash>
 * (bridge ipMasq) and CNI-DN-<hash> (portmap), hash = sha512(name + id). */
static int id_rules(const char *network, const char *id)
{
    _cleanup_free_ char *rules = iptables_save();
    _cleanup_free_ char *name =
            xasprintf("skiff-%s-%s", network, streq(network, "bridge") ? BRIDGE : AWSVPC);
    _cleanup_free_ char *in = strjoin(name, id);
    char hex[SHA512_HEX_LEN + 1];
    sha512_hex(in, strlen(in), hex);
    _cleanup_free_ char *masq = xasprintf("CNI-%.24s", hex);
    _cleanup_free_ char *dn = xasprintf("CNI-DN-%.21s", hex);
    _cleanup_free_ char *comment = xasprintf("id: \\\"%s\\\"", id);
    return count_lines(rules, comment) + count_lines(rules, masq) + count_lines(rules, dn);
}

static int cni_lines(void)
{
    _cleanup_free_ char *rules = iptables_save();
    return count_lines(rules, "CNI");
}

/* Leases host-local holds in STATE/ipam/NAME (files named after IPs). */
static int leases(const char *name)
{
    _cleanup_free_ char *p = xasprintf("%s/ipam/%s", fx.state, name);
    DIR *d = opendir(p);
    if (!d)
        return 0;
    struct dirent *de;
    int n = 0;
    while ((de = readdir(d))) {
        struct in_addr a;
        if (inet_pton(AF_INET, de->d_name, &a) == 1)
            n++;
    }
    closedir(d);
    return n;
}

/* Interfaces enslaved to a bridge (host ends of veths). */
static int bridge_ports(const char *bridge)
{
    _cleanup_free_ char *p = xasprintf("/sys/class/net/%s/brif", bridge);
    DIR *d = opendir(p);
    if (!d)
        return 0;
    struct dirent *de;
    int n = 0;
    while ((de = readdir(d)))
        if (de->d_name[0] != '.')
            n++;
    closedir(d);
    return n;
}

static bool is_nsfs(const char *path)
{
    struct statfs sf;
    return statfs(path, &sf) == 0 && (unsigned long) sf.f_type == 0x6e736673;
}

static uint16_t pick_port(void)
{
    uint16_t base = (uint16_t) (20000 + random_u64() % 20000);
    for (uint16_t p = base; p < base + 1000; p++)
        if (rt_port_free(p, "tcp"))
            return p;
    return 0;
}

TEST(netns_create_delete)
{
    if (!fixture())
        SKIP(fx.skip);
    _cleanup_err_ sk_err err = { 0 };
    _cleanup_free_ char *ns = path_join(fx.state, "netns/plain");
    ASSERT_OK_ERR(rt_netns_create(ns, &err), &err);
    ASSERT_TRUE(is_nsfs(ns));
    ASSERT_FAIL(rt_netns_create(ns, &err));
    ASSERT_EQ(err.code, SK_E_EXISTS);
    sk_err_done(&err);
    /* Loopback is up inside. */
    char out[2048];
    _cleanup_free_ char *arg = xasprintf("--net=%s", ns);
    const char *ipargv[] = { "nsenter", arg, "ip", "-o", "link", "show", "lo", NULL };
    ASSERT_EQ(oci_run(ipargv, out, sizeof(out)), 0);
    ASSERT_NOT_NULL(strstr(out, "UP"));
    ASSERT_OK_ERR(rt_netns_delete(ns, &err), &err);
    ASSERT_FALSE(path_exists(ns));
    ASSERT_OK_ERR(rt_netns_delete(ns, &err), &err);
}

TEST(bridge_portmap_end_to_end)
{
    if (!fixture())
        SKIP(fx.skip);
    _cleanup_err_ sk_err err = { 0 };
    rt_net_result r;

    /* Warm-up so that portmap's shared top-level chains exist: the baseline
     * then only differs by per-attachment rules. */
    attachment *w = attach_new("bridge", "tst-warm");
    uint16_t wport = pick_port();
    rt_port_mapping wpm = { .host_port = wport, .container_port = 1, .protocol = "tcp" };
    ASSERT_OK_ERR(rt_netns_create(w->netns, &err), &err);
    ASSERT_OK_ERR(rt_cni_add(&fx.cfg, "bridge", w->id, w->netns, &wpm, 1, &r, &err), &err);
    ASSERT_OK_ERR(rt_cni_del(&fx.cfg, "bridge", w->id, w->netns, &err), &err);
    ASSERT_OK_ERR(rt_netns_delete(w->netns, &err), &err);
    int baseline = cni_lines();
    int baseline_ports = bridge_ports(BRIDGE);

    /* Container A: busybox httpd under runc + skiff-monitor, in netns A,
     * published on HOSTPORT -> 8080. */
    attachment *a = attach_new("bridge", "tst-a");
    ASSERT_OK_ERR(rt_netns_create(a->netns, &err), &err);
    uint16_t hport = pick_port();
    ASSERT_TRUE(hport > 0);
    rt_port_mapping pm = { .host_port = hport, .container_port = 8080, .protocol = "tcp" };
    ASSERT_OK_ERR(rt_cni_add(&fx.cfg, "bridge", a->id, a->netns, &pm, 1, &r, &err), &err);
    printf("# A: ip %s cidr %s gw %s mac %s if %s, host port %u\n", r.ip, r.cidr, r.gateway, r.mac,
           r.ifname, hport);
    ASSERT_TRUE(startswith(r.ip, "10.250.0.") != NULL);
    ASSERT_STREQ(r.gateway, "10.250.0.1");
    ASSERT_STREQ(r.ifname, "eth0");
    ASSERT_EQ(strlen(r.mac), 17);
    ASSERT_TRUE(id_rules("bridge", a->id) > 0);
    ASSERT_EQ(leases("skiff-bridge-" BRIDGE), 1);
    ASSERT_EQ(bridge_ports(BRIDGE), baseline_ports + 1);
    _cleanup_free_ char *cache = xasprintf("%s/cni/bridge-%s.json", fx.state, a->id);
    ASSERT_TRUE(path_exists(cache));
    /* A second ADD of the same id is refused. */
    rt_net_result r2;
    ASSERT_FAIL(rt_cni_add(&fx.cfg, "bridge", a->id, a->netns, &pm, 1, &r2, &err));
    ASSERT_EQ(err.code, SK_E_EXISTS);
    sk_err_done(&err);

    char id[64];
    snprintf(id, sizeof(id), "sktst-net-%d", (int) getpid());
    fx.containers[fx.ncontainers++] = xstrdup(id);
    _cleanup_free_ char *bundle = path_join(fx.dir, "bundle-a");
    _cleanup_free_ char *mdir = path_join(fx.dir, "mon-a");
    const char *args[] = { "httpd", "-f", "-p", "8080", "-h", "/www", NULL };
    ASSERT_OK(oci_bundle_create(bundle, fx.rootfs, args, a->netns));
    rt_monitor_opts o = { .monitor_path = getenv("SKIFF_MONITOR"),
                          .runtime_path = OCI_RUNC,
                          .runtime_root = fx.runc_root,
                          .bundle = bundle,
                          .id = id,
                          .dir = mdir };
    int sfd;
    pid_t mp, cp;
    ASSERT_OK_ERR(rt_monitor_spawn(&o, &sfd, &err), &err);
    ASSERT_OK_ERR(rt_monitor_wait_sync(sfd, 20000, &mp, &cp, &err), &err);

    /* From the host: the container IP, 127.0.0.1:HOSTPORT (OUTPUT DNAT +
     * route_localnet) and the bridge address:HOSTPORT. */
    ASSERT_OK(http_get_retry(r.ip, 8080));
    ASSERT_OK(http_get_retry("127.0.0.1", hport));
    ASSERT_OK(http_get_retry(r.gateway, hport));
    /* Published ports are DNAT rules, not sockets (see net.h). */
    ASSERT_TRUE(rt_port_free(hport, "tcp"));

    /* From container B on the same bridge: direct, and hairpin through the
     * published port; and A reaching itself through its published port. */
    attachment *b = attach_new("bridge", "tst-b");
    ASSERT_OK_ERR(rt_netns_create(b->netns, &err), &err);
    rt_net_result rb;
    ASSERT_OK_ERR(rt_cni_add(&fx.cfg, "bridge", b->id, b->netns, NULL, 0, &rb, &err), &err);
    ASSERT_FALSE(streq(rb.ip, r.ip));
    ASSERT_OK(http_get_in(b->netns, r.ip, 8080));
    ASSERT_OK(http_get_in(b->netns, r.gateway, hport));
    ASSERT_OK(http_get_in(a->netns, r.gateway, hport));

    /* route_localnet (set by portmap) must not expose the host's loopback
     * services to the bridge: B routes 127.0.0.1 to the host. */
    _cleanup_close_ int ls = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in la = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t lal = sizeof(la);
    ASSERT_OK(bind(ls, (struct sockaddr *) &la, sizeof(la)));
    ASSERT_OK(listen(ls, 8));
    ASSERT_OK(getsockname(ls, (struct sockaddr *) &la, &lal));
    _cleanup_free_ char *nsarg = xasprintf("--net=%s", b->netns);
    _cleanup_free_ char *script = xasprintf("ip link set lo down && ip addr flush dev lo && "
                                            "sysctl -qw net.ipv4.conf.eth0.route_localnet=1 && "
                                            "ip route add 127.0.0.1/32 via %s dev eth0",
                                            rb.gateway);
    const char *attack[] = { "nsenter", nsarg, "sh", "-c", script, NULL };
    ASSERT_EQ(oci_run(attack, NULL, 0), 0);
    ASSERT_FALSE(connect_in(b->netns, "127.0.0.1", ntohs(la.sin_port)));
    /* The check is meaningful: without the guard the connection succeeds. */
    const char *unguard[] = { "iptables", "-w", "-D", GUARD_RULE, NULL };
    const char *reguard[] = { "iptables", "-w", "-I", GUARD_RULE, NULL };
    ASSERT_EQ(oci_run(unguard, NULL, 0), 0);
    bool open_without_guard = connect_in(b->netns, "127.0.0.1", ntohs(la.sin_port));
    ASSERT_EQ(oci_run(reguard, NULL, 0), 0);
    ASSERT_TRUE(open_without_guard);

    /* Stop the container, detach both, remove the namespaces. */
    ASSERT_OK(kill(cp, SIGKILL));
    for (int i = 0; i < 500; i++) {
        rt_exit_status st;
        _cleanup_err_ sk_err e = { 0 };
        if (rt_monitor_read_exit(mdir, &st, &e) >= 0)
            break;
        usleep(10000);
    }
    oci_delete(fx.runc_root, id);
    ASSERT_OK_ERR(rt_cni_del(&fx.cfg, "bridge", b->id, b->netns, &err), &err);
    ASSERT_OK_ERR(rt_cni_del(&fx.cfg, "bridge", a->id, a->netns, &err), &err);
    ASSERT_OK_ERR(rt_netns_delete(a->netns, &err), &err);
    ASSERT_OK_ERR(rt_netns_delete(b->netns, &err), &err);

    ASSERT_EQ(id_rules("bridge", a->id), 0);
    ASSERT_EQ(id_rules("bridge", b->id), 0);
    /* Other agents on this host may change their own rules meanwhile, so
     * the global count is reported; the assertions above are per id. */
    int after = cni_lines();
    printf("# iptables-save | grep -c CNI: %d before, %d after\n", baseline, after);
    ASSERT_EQ(leases("skiff-bridge-" BRIDGE), 0);
    ASSERT_EQ(bridge_ports(BRIDGE), baseline_ports);
    ASSERT_FALSE(path_exists(cache));
    ASSERT_FALSE(path_exists(a->netns));
    ASSERT_TRUE(http_get("127.0.0.1", hport) < 0);

    /* DEL is idempotent, also without any cached state. */
    ASSERT_OK_ERR(rt_cni_del(&fx.cfg, "bridge", a->id, a->netns, &err), &err);
    ASSERT_OK_ERR(rt_cni_del(&fx.cfg, "bridge", "never-added", NULL, &err), &err);
    ASSERT_EQ(id_rules("bridge", a->id), 0);
}

TEST(del_after_netns_gone)
{
    if (!fixture())
        SKIP(fx.skip);
    _cleanup_err_ sk_err err = { 0 };
    rt_net_result r;
    attachment *e = attach_new("bridge", "tst-e");
    ASSERT_OK_ERR(rt_netns_create(e->netns, &err), &err);
    uint16_t port = pick_port();
    rt_port_mapping pm = { .host_port = port, .container_port = 80, .protocol = "udp" };
    ASSERT_OK_ERR(rt_cni_add(&fx.cfg, "bridge", e->id, e->netns, &pm, 1, &r, &err), &err);
    ASSERT_TRUE(id_rules("bridge", e->id) > 0);
    /* The namespace goes first (e.g. after a crash): the bridge plugin can
     * no longer see the address, rt_cni_del removes the masquerade rules. */
    ASSERT_OK_ERR(rt_netns_delete(e->netns, &err), &err);
    ASSERT_OK_ERR(rt_cni_del(&fx.cfg, "bridge", e->id, e->netns, &err), &err);
    ASSERT_EQ(id_rules("bridge", e->id), 0);
    ASSERT_EQ(leases("skiff-bridge-" BRIDGE), 0);
    ASSERT_EQ(bridge_ports(BRIDGE), 0);
}

TEST(awsvpc_two_tasks)
{
    if (!fixture())
        SKIP(fx.skip);
    _cleanup_err_ sk_err err = { 0 };
    attachment *c = attach_new("awsvpc", "tst-c");
    attachment *d = attach_new("awsvpc", "tst-d");
    rt_net_result rc, rd;
    ASSERT_OK_ERR(rt_netns_create(c->netns, &err), &err);
    ASSERT_OK_ERR(rt_netns_create(d->netns, &err), &err);
    rt_port_mapping pm = { .host_port = 8080, .container_port = 8080, .protocol = "tcp" };
    ASSERT_FAIL(rt_cni_add(&fx.cfg, "awsvpc", c->id, c->netns, &pm, 1, &rc, &err));
    ASSERT_EQ(err.code, SK_E_INVALID);
    sk_err_done(&err);
    ASSERT_OK_ERR(rt_cni_add(&fx.cfg, "awsvpc", c->id, c->netns, NULL, 0, &rc, &err), &err);
    ASSERT_OK_ERR(rt_cni_add(&fx.cfg, "awsvpc", d->id, d->netns, NULL, 0, &rd, &err), &err);
    printf("# awsvpc: %s (%s) and %s (%s)\n", rc.cidr, rc.mac, rd.cidr, rd.mac);
    ASSERT_TRUE(startswith(rc.ip, "10.250.1.") != NULL);
    ASSERT_TRUE(startswith(rd.ip, "10.250.1.") != NULL);
    ASSERT_STREQ(rc.gateway, "10.250.1.1");
    ASSERT_EQ(strlen(rc.mac), 17);
    ASSERT_EQ(bridge_ports(AWSVPC), 2);

    pid_t srv = httpd_in(d->netns, 80);
    ASSERT_TRUE(srv > 0);
    ASSERT_OK(http_get_in(c->netns, rd.ip, 80));
    ASSERT_OK(http_get_retry(rd.ip, 80)); /* and from the host */
    kill(srv, SIGKILL);
    waitpid(srv, NULL, 0);
    fx.nservers--;

    ASSERT_OK_ERR(rt_cni_del(&fx.cfg, "awsvpc", c->id, c->netns, &err), &err);
    ASSERT_OK_ERR(rt_cni_del(&fx.cfg, "awsvpc", d->id, d->netns, &err), &err);
    ASSERT_OK_ERR(rt_netns_delete(c->netns, &err), &err);
    ASSERT_OK_ERR(rt_netns_delete(d->netns, &err), &err);
    ASSERT_EQ(bridge_ports(AWSVPC), 0);
    ASSERT_EQ(leases("skiff-awsvpc-" AWSVPC), 0);
    ASSERT_EQ(id_rules("awsvpc", c->id), 0);
    ASSERT_EQ(id_rules("awsvpc", d->id), 0);
}

TEST(plugin_failure_rolls_back)
{
    if (!fixture())
        SKIP(fx.skip);
    _cleanup_err_ sk_err err = { 0 };
    rt_net_result r;
    /* Plugins that cannot run: the ADD fails cleanly, nothing is cached. */
    rt_net_config bad = fx.cfg;
    bad.cni_bin_dir = "/nonexistent-cni";
    attachment *f = attach_new("bridge", "tst-f");
    ASSERT_OK_ERR(rt_netns_create(f->netns, &err), &err);
    ASSERT_FAIL(rt_cni_add(&bad, "bridge", f->id, f->netns, NULL, 0, &r, &err));
    printf("# plugin failure: %s\n", err.msg);
    ASSERT_EQ(err.code, SK_E_SYSTEM);
    _cleanup_free_ char *cache = xasprintf("%s/cni/bridge-%s.json", fx.state, f->id);
    ASSERT_FALSE(path_exists(cache));
    /* Not a namespace. */
    sk_err_done(&err);
    _cleanup_free_ char *plain = path_join(fx.dir, "plain-file");
    ASSERT_OK(write_file_atomic(plain, "x", 1, 0644));
    ASSERT_FAIL(rt_cni_add(&fx.cfg, "bridge", f->id, plain, NULL, 0, &r, &err));
    ASSERT_EQ(err.code, SK_E_NOT_FOUND);
    ASSERT_OK_ERR(rt_netns_delete(f->netns, &err), &err);
}

TEST(zz_cleanup)
{
    if (!fixture())
        SKIP(fx.skip);
    cleanup();
    ASSERT_FALSE(path_exists("/sys/class/net/" BRIDGE));
    ASSERT_FALSE(path_exists("/sys/class/net/" AWSVPC));
}

TAP_MAIN()
