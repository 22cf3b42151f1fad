/* Unprivileged tests of the runtime component: id and CIDR validation, the
 * monitor sync line, exit.json, the rotating log reader on synthetic files,
 * the CNI result parser, rt_port_free, and skiff-monitor itself driven by a
 * fake runtime (a shell script), which needs neither root nor runc. */
#include <arpa/inet.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "basic/alloc.h"
#include "basic/err.h"
#include "basic/fileutil.h"
#include "basic/strutil.h"
#include "basic/timeutil.h"
#include "runtime/monitor.h"
#include "runtime/net.h"
#include "tap.h"

static char *make_tmpdir(void)
{
    char tmpl[] = "/tmp/skiff-test-runtime-XXXXXX";
    char *d = mkdtemp(tmpl);
    return d ? xstrdup(d) : NULL;
}

static void write_str(const char *dir, const char *name, const char *content)
{
    _cleanup_free_ char *p = path_join(dir, name);
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        abort();
    if (write_all(fd, content, strlen(content)) < 0)
        abort();
    close(fd);
}

static void append_str(const char *dir, const char *name, const char *content)
{
    _cleanup_free_ char *p = path_join(dir, name);
    int fd = open(p, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0)
        abort();
    if (write_all(fd, content, strlen(content)) < 0)
        abort();
    close(fd);
}

static char *rec(uint64_t seq, const char *stream, const char *text)
{
    return xasprintf("{\"log\":\"%s\",\"stream\":\"%s\",\"time\":\"2024-01-02T03:04:05."
                     "500000000Z\",\"seq\":%" PRIu64 "}\n",
                     text, stream, seq);
}

static void append_rec(const char *dir, const char *name, uint64_t seq, const char *text)
{
    _cleanup_free_ char *r = rec(seq, seq % 2 ? "stdout" : "stderr", text);
    append_str(dir, name, r);
}

/* Collects records. */
typedef struct sink {
    uint64_t seqs[4096];
    size_t lens[4096];
    bool partials[4096];
    char last[128];
    size_t n;
    bool partial_seen;
    bool ordered;
    double time;
} sink;

static void sink_fn(void *userdata, const rt_log_record *r)
{
    sink *s = userdata;
    if (s->n > 0 && r->seq <= s->seqs[s->n - 1])
        s->ordered = false;
    if (s->n < ELEMENTSOF(s->seqs)) {
        s->seqs[s->n] = r->seq;
        s->lens[s->n] = r->len;
        s->partials[s->n] = r->partial;
    }
    s->n++;
    snprintf(s->last, sizeof(s->last), "%s:%.*s", r->stream, (int) MIN(r->len, (size_t) 100),
             r->line);
    s->partial_seen |= r->partial;
    s->time = r->time;
}

TEST(id_valid)
{
    ASSERT_TRUE(rt_id_valid("abc"));
    ASSERT_TRUE(rt_id_valid("A-b_c.9"));
    ASSERT_TRUE(rt_id_valid("0123456789012345678901234567890123456789012345678901234567890123"));
    ASSERT_FALSE(rt_id_valid("01234567890123456789012345678901234567890123456789012345678901234"));
    ASSERT_FALSE(rt_id_valid(""));
    ASSERT_FALSE(rt_id_valid(NULL));
    ASSERT_FALSE(rt_id_valid(".hidden"));
    ASSERT_FALSE(rt_id_valid("a/b"));
    ASSERT_FALSE(rt_id_valid("a b"));
    ASSERT_FALSE(rt_id_valid("a\nb"));
}

TEST(cidr)
{
    uint32_t a;
    unsigned p;
    ASSERT_OK(rt_parse_ipv4_cidr("10.250.0.0/24", &a, &p));
    ASSERT_EQ(a, 0x0afa0000u);
    ASSERT_EQ(p, 24);
    ASSERT_OK(rt_parse_ipv4_cidr("0.0.0.0/0", &a, &p));
    ASSERT_FAIL(rt_parse_ipv4_cidr("10.250.0.0", &a, &p));
    ASSERT_FAIL(rt_parse_ipv4_cidr("10.250.0.0/33", &a, &p));
    ASSERT_FAIL(rt_parse_ipv4_cidr("10.250.0/24", &a, &p));
    ASSERT_FAIL(rt_parse_ipv4_cidr("10.250.0.0/-1", &a, &p));
    ASSERT_FAIL(rt_parse_ipv4_cidr("10.250.0.0/+8", &a, &p));
    ASSERT_FAIL(rt_parse_ipv4_cidr("::1/64", &a, &p));
    ASSERT_FAIL(rt_parse_ipv4_cidr("10.250.0.0/24x", &a, &p));
}

TEST(parse_sync)
{
    pid_t m = 0, c = 0;
    _cleanup_err_ sk_err err = { 0 };
    ASSERT_OK(rt_monitor_parse_sync("ok 123 456\n", &m, &c, &err));
    ASSERT_EQ(m, 123);
    ASSERT_EQ(c, 456);
    ASSERT_OK(rt_monitor_parse_sync("ok 7 8", &m, &c, &err));
    ASSERT_FAIL(rt_monitor_parse_sync("ok 7 8 9\n", &m, &c, &err));
    sk_err_done(&err);
    ASSERT_FAIL(rt_monitor_parse_sync("ok 1 8\n", &m, &c, &err));
    sk_err_done(&err);
    ASSERT_FAIL(rt_monitor_parse_sync("ok x 8\n", &m, &c, &err));
    ASSERT_EQ(err.code, SK_E_INTERNAL);
    sk_err_done(&err);
    ASSERT_FAIL(rt_monitor_parse_sync("bogus", &m, &c, &err));
    sk_err_done(&err);
    ASSERT_FAIL(rt_monitor_parse_sync("error exec: \"x\": not found\n", &m, &c, &err));
    ASSERT_EQ(err.code, SK_E_INVALID);
    ASSERT_STREQ(err.msg, "exec: \"x\": not found");
}

TEST(read_exit)
{
    _cleanup_free_ char *d = make_tmpdir();
    ASSERT_NOT_NULL(d);
    rt_exit_status st;
    _cleanup_err_ sk_err err = { 0 };
    ASSERT_FAIL(rt_monitor_read_exit(d, &st, &err));
    ASSERT_EQ(err.code, SK_E_NOT_FOUND);
    sk_err_done(&err);

    write_str(d, "exit.json",
              "{\"exitCode\":137,\"signal\":9,\"finishedAt\":1700000000.250,\"logDropped\":4}\n");
    ASSERT_OK(rt_monitor_read_exit(d, &st, &err));
    ASSERT_EQ(st.exit_code, 137);
    ASSERT_EQ(st.signal, 9);
    ASSERT_EQ(st.log_dropped, 4);
    ASSERT_TRUE(st.finished_at > 1700000000.2 && st.finished_at < 1700000000.3);
    ASSERT_STREQ(st.error, "");

    write_str(d, "exit.json", "{\"exitCode\":-1,\"signal\":0,\"finishedAt\":1,\"error\":\"boom\"}");
    ASSERT_OK(rt_monitor_read_exit(d, &st, &err));
    ASSERT_EQ(st.exit_code, -1);
    ASSERT_STREQ(st.error, "boom");

    write_str(d, "exit.json", "{\"exitCode\":");
    ASSERT_FAIL(rt_monitor_read_exit(d, &st, &err));
    ASSERT_EQ(err.code, SK_E_INVALID);
    rm_rf(d);
}

TEST(log_read_basic)
{
    _cleanup_free_ char *d = make_tmpdir();
    ASSERT_NOT_NULL(d);
    rt_log_cursor cur = { 0 };
    sink s = { .ordered = true };
    _cleanup_err_ sk_err err = { 0 };

    /* No log yet: nothing, no error. */
    ASSERT_EQ(rt_log_read(d, &cur, 100, sink_fn, &s, &err), 0);
    _cleanup_free_ char *missing = path_join(d, "nope");
    ASSERT_EQ(rt_log_read(missing, &cur, 100, sink_fn, &s, &err), 0);

    for (uint64_t i = 1; i <= 5; i++)
        append_rec(d, "container.log", i, "hello\\n");
    /* A torn last line is left for later. */
    append_str(d, "container.log", "{\"log\":\"par");
    ASSERT_EQ(rt_log_read(d, &cur, 3, sink_fn, &s, &err), 3);
    ASSERT_EQ(cur.seq, 3);
    ASSERT_EQ(rt_log_read(d, &cur, 100, sink_fn, &s, &err), 2);
    ASSERT_EQ(cur.seq, 5);
    ASSERT_EQ(s.n, 5);
    ASSERT_TRUE(s.ordered);
    ASSERT_FALSE(s.partial_seen);
    ASSERT_STREQ(s.last, "stdout:hello");
    ASSERT_TRUE(s.time > 1704164645.4 && s.time < 1704164645.6);
    ASSERT_EQ(cur.dropped, 0);
    uint64_t off = cur.offset;
    ASSERT_EQ(rt_log_read(d, &cur, 100, sink_fn, &s, &err), 0);
    ASSERT_EQ(cur.offset, off);

    /* Completing the line delivers it (partial: no trailing newline). */
    append_str(d, "container.log",
               "tial\",\"stream\":\"stderr\",\"time\":\"2024-01-02T03:04:05Z\",\"seq\":6}\n");
    ASSERT_EQ(rt_log_read(d, &cur, 100, sink_fn, &s, &err), 1);
    ASSERT_STREQ(s.last, "stderr:partial");
    ASSERT_TRUE(s.partial_seen);

    /* Garbage, an unknown stream and a duplicate are skipped; a gap counts. */
    append_str(d, "container.log", "not json\n{}\n[1,2]\n");
    append_str(d, "container.log",
               "{\"log\":\"x\\n\",\"stream\":\"stdin\",\"time\":\"\",\"seq\":7}\n");
    append_rec(d, "container.log", 6, "dup\\n");
    append_rec(d, "container.log", 10, "ten\\n");
    ASSERT_EQ(rt_log_read(d, &cur, 100, sink_fn, &s, &err), 1);
    ASSERT_EQ(cur.seq, 10);
    ASSERT_EQ(cur.dropped, 3); /* 7 (unknown stream), 8, 9 */
    ASSERT_STREQ(s.last, "stderr:ten");
    rm_rf(d);
}

TEST(log_read_budget)
{
    _cleanup_free_ char *d = make_tmpdir();
    ASSERT_NOT_NULL(d);
    rt_log_cursor cur = { 0 };
    sink s = { .ordered = true };
    _cleanup_err_ sk_err err = { 0 };
    /* Records of 10 bytes ("0123456789") plus 5 per record: 15 each. */
    for (uint64_t i = 1; i <= 10; i++)
        append_rec(d, "container.log", i, "0123456789\\n");
    ASSERT_EQ(rt_log_read_budget(d, &cur, 100, 44, 5, sink_fn, &s, &err), 2);
    ASSERT_EQ(cur.seq, 2);
    /* The refused record was not consumed: the next call starts with it. */
    ASSERT_EQ(rt_log_read_budget(d, &cur, 100, 45, 5, sink_fn, &s, &err), 3);
    ASSERT_EQ(cur.seq, 5);
    /* Too small for even one record: nothing is consumed. */
    ASSERT_EQ(rt_log_read_budget(d, &cur, 100, 14, 5, sink_fn, &s, &err), 0);
    ASSERT_EQ(cur.seq, 5);
    ASSERT_EQ(rt_log_read(d, &cur, 100, sink_fn, &s, &err), 5);
    ASSERT_EQ(cur.seq, 10);
    ASSERT_EQ(s.n, 10);
    ASSERT_TRUE(s.ordered);
    ASSERT_EQ(cur.dropped, 0);
    rm_rf(d);
}

TEST(log_read_rotation)
{
    _cleanup_free_ char *d = make_tmpdir();
    ASSERT_NOT_NULL(d);
    rt_log_cursor cur = { 0 };
    sink s = { .ordered = true };
    _cleanup_err_ sk_err err = { 0 };

    /* Files as the monitor leaves them: .2 oldest, then .1, then the log. */
    for (uint64_t i = 4; i <= 6; i++)
        append_rec(d, "container.log.2", i, "a\\n");
    for (uint64_t i = 7; i <= 9; i++)
        append_rec(d, "container.log.1", i, "b\\n");
    for (uint64_t i = 10; i <= 11; i++)
        append_rec(d, "container.log", i, "c\\n");
    ASSERT_EQ(rt_log_read(d, &cur, 4, sink_fn, &s, &err), 4);
    ASSERT_EQ(cur.dropped, 3); /* 1..3 were rotated away before we looked */
    ASSERT_EQ(cur.seq, 7);

    /* Rotate twice (the monitor's renames): .2 and .1 content shifts. */
    _cleanup_free_ char *l = path_join(d, "container.log");
    _cleanup_free_ char *l1 = path_join(d, "container.log.1");
    _cleanup_free_ char *l2 = path_join(d, "container.log.2");
    ASSERT_OK(rename(l1, l2));
    ASSERT_OK(rename(l, l1));
    for (uint64_t i = 12; i <= 13; i++)
        append_rec(d, "container.log", i, "d\\n");
    /* Cursor inode (old .1, now .2) is still there: continue in place. */
    ASSERT_EQ(rt_log_read(d, &cur, 100, sink_fn, &s, &err), 6);
    ASSERT_EQ(cur.seq, 13);
    ASSERT_EQ(cur.dropped, 3);
    ASSERT_TRUE(s.ordered);

    /* Rotate so far that the cursor's file is gone: gaps are counted. */
    for (int k = 0; k < 3; k++) {
        ASSERT_OK(rename(l1, l2));
        ASSERT_OK(rename(l, l1));
        for (uint64_t i = 14 + 2 * (uint64_t) k; i < 16 + 2 * (uint64_t) k; i++)
            append_rec(d, "container.log", i, "e\\n");
    }
    /* Files now: .2 = 14,15  .1 = 16,17  log = 18,19. The cursor's file
     * (12,13) is gone and its inode number has likely been reused by one of
     * the new files: the first-record check must not be fooled. */
    ASSERT_EQ(rt_log_read(d, &cur, 100, sink_fn, &s, &err), 6);
    ASSERT_EQ(cur.seq, 19);
    ASSERT_EQ(cur.dropped, 3);
    ASSERT_TRUE(s.ordered);
    ASSERT_EQ(s.n, 16);

    /* Now lose records: two rotations with nobody reading. */
    for (int k = 0; k < 3; k++) {
        ASSERT_OK(rename(l1, l2));
        ASSERT_OK(rename(l, l1));
        for (uint64_t i = 20 + 2 * (uint64_t) k; i < 22 + 2 * (uint64_t) k; i++)
            append_rec(d, "container.log", i, "f\\n");
    }
    ASSERT_EQ(rt_log_read(d, &cur, 100, sink_fn, &s, &err), 6);
    ASSERT_EQ(cur.seq, 25);
    ASSERT_EQ(cur.dropped, 3);
    for (int k = 0; k < 4; k++) {
        ASSERT_OK(rename(l1, l2));
        ASSERT_OK(rename(l, l1));
        for (uint64_t i = 26 + 2 * (uint64_t) k; i < 28 + 2 * (uint64_t) k; i++)
            append_rec(d, "container.log", i, "g\\n");
    }
    ASSERT_EQ(rt_log_read(d, &cur, 100, sink_fn, &s, &err), 6);
    ASSERT_EQ(cur.seq, 33);
    ASSERT_EQ(cur.dropped, 5); /* 26, 27 */
    ASSERT_TRUE(s.ordered);
    rm_rf(d);
}

TEST(log_read_mid_rotation)
{
    /* The reader may look while the monitor is between its renames: .1 has
     * moved to .2 and the log not yet to .1. Nothing may be skipped. */
    _cleanup_free_ char *d = make_tmpdir();
    ASSERT_NOT_NULL(d);
    rt_log_cursor cur = { 0 };
    sink s = { .ordered = true };
    _cleanup_err_ sk_err err = { 0 };
    for (uint64_t i = 1; i <= 3; i++)
        append_rec(d, "container.log.2", i, "a\\n");
    for (uint64_t i = 4; i <= 5; i++)
        append_rec(d, "container.log", i, "b\\n");
    ASSERT_EQ(rt_log_read(d, &cur, 2, sink_fn, &s, &err), 2);
    ASSERT_EQ(rt_log_read(d, &cur, 100, sink_fn, &s, &err), 3);
    ASSERT_EQ(cur.seq, 5);
    ASSERT_EQ(cur.dropped, 0);
    /* ... and between the last rename and the new log's creation. */
    _cleanup_free_ char *l = path_join(d, "container.log");
    _cleanup_free_ char *l1 = path_join(d, "container.log.1");
    ASSERT_OK(rename(l, l1));
    append_rec(d, "container.log.1", 6, "c\\n");
    ASSERT_EQ(rt_log_read(d, &cur, 100, sink_fn, &s, &err), 1);
    ASSERT_EQ(cur.seq, 6);
    ASSERT_EQ(cur.dropped, 0);
    ASSERT_TRUE(s.ordered);
    rm_rf(d);
}

TEST(log_read_replaced_file)
{
    /* max_files=1: the log is deleted and recreated; the new file may get the
     * old inode number. The seq check notices and rescans. */
    _cleanup_free_ char *d = make_tmpdir();
    ASSERT_NOT_NULL(d);
    rt_log_cursor cur = { 0 };
    sink s = { .ordered = true };
    _cleanup_err_ sk_err err = { 0 };
    for (uint64_t i = 1; i <= 4; i++)
        append_rec(d, "container.log", i, "old line\\n");
    ASSERT_EQ(rt_log_read(d, &cur, 2, sink_fn, &s, &err), 2);
    /* Truncate in place (same inode) and write later records. */
    _cleanup_free_ char *l = path_join(d, "container.log");
    ASSERT_OK(truncate(l, 0));
    for (uint64_t i = 9; i <= 12; i++)
        append_rec(d, "container.log", i, "new line, longer than before\\n");
    ASSERT_EQ(rt_log_read(d, &cur, 100, sink_fn, &s, &err), 4);
    ASSERT_EQ(cur.seq, 12);
    ASSERT_EQ(cur.dropped, 6);
    ASSERT_TRUE(s.ordered);
    rm_rf(d);
}

TEST(log_read_long_line)
{
    _cleanup_free_ char *d = make_tmpdir();
    ASSERT_NOT_NULL(d);
    rt_log_cursor cur = { 0 };
    sink s = { .ordered = true };
    _cleanup_err_ sk_err err = { 0 };
    append_rec(d, "container.log", 1, "one\\n");
    /* An over-long line without structure is skipped, in pieces. */
    size_t n = RT_LOG_READ_LINE_MAX * 2 + 17;
    _cleanup_free_ char *big = xmalloc(n + 2);
    memset(big, 'x', n);
    big[n] = '\n';
    big[n + 1] = '\0';
    append_str(d, "container.log", big);
    append_rec(d, "container.log", 2, "two\\n");
    ASSERT_EQ(rt_log_read(d, &cur, 100, sink_fn, &s, &err), 2);
    ASSERT_EQ(cur.seq, 2);
    ASSERT_STREQ(s.last, "stderr:two");
    /* A long unterminated tail is not buffered beyond the cap. */
    big[n] = '\0';
    append_str(d, "container.log", big);
    ASSERT_EQ(rt_log_read(d, &cur, 100, sink_fn, &s, &err), 0);
    append_str(d, "container.log", "\n");
    append_rec(d, "container.log", 3, "three\\n");
    ASSERT_EQ(rt_log_read(d, &cur, 100, sink_fn, &s, &err), 1);
    ASSERT_EQ(cur.seq, 3);
    rm_rf(d);
}

static const char cni_result[] =
        "{\"cniVersion\":\"1.0.0\",\"interfaces\":[{\"name\":\"sktst0\",\"mac\":\"aa:bb:cc:dd:ee:"
        "01\"},{\"name\":\"veth1234\",\"mac\":\"aa:bb:cc:dd:ee:02\"},{\"name\":\"eth0\",\"mac\":"
        "\"aa:bb:cc:dd:ee:03\",\"sandbox\":\"/run/x/ns\"}],\"ips\":[{\"interface\":2,\"address\":"
        "\"10.250.0.5/24\",\"gateway\":\"10.250.0.1\"}],\"routes\":[{\"dst\":\"0.0.0.0/0\"}],"
        "\"dns\":{}}";

TEST(cni_parse_result)
{
    rt_net_result r;
    _cleanup_err_ sk_err err = { 0 };
    ASSERT_OK(rt_cni_parse_result(cni_result, strlen(cni_result), &r, &err));
    ASSERT_STREQ(r.ip, "10.250.0.5");
    ASSERT_STREQ(r.cidr, "10.250.0.5/24");
    ASSERT_STREQ(r.gateway, "10.250.0.1");
    ASSERT_STREQ(r.mac, "aa:bb:cc:dd:ee:03");
    ASSERT_STREQ(r.ifname, "eth0");

    const char *no_if = "{\"ips\":[{\"address\":\"fd00::2/64\"},{\"address\":\"10.1.2.3/16\"}]}";
    ASSERT_OK(rt_cni_parse_result(no_if, strlen(no_if), &r, &err));
    ASSERT_STREQ(r.ip, "10.1.2.3");
    ASSERT_STREQ(r.gateway, "");
    ASSERT_STREQ(r.ifname, "eth0");

    static const char *const bad[] = {
        "",
        "[]",
        "{}",
        "{\"ips\":[]}",
        "{\"ips\":[{\"address\":\"fd00::2/64\"}]}",
        "{\"ips\":[{\"address\":\"10.1.2.3\"}]}",
        "{\"ips\":[{\"address\":\"10.1.2.3/8\",\"gateway\":\"nope\"}]}",
        "{\"ips\":[{\"address\":\"10.1.2.3/8\",\"interface\":0}],\"interfaces\":[{\"name\":"
        "\"0123456789abcdefg\"}]}",
        "{\"ips\":[{\"address\":\"10.1.2.3/8\"}],\"ips\":[]}",
    };
    for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
        sk_err_done(&err);
        if (rt_cni_parse_result(bad[i], strlen(bad[i]), &r, &err) >= 0)
            TAP_FAIL("accepted bad result %zu: %s", i, bad[i]);
        ASSERT_TRUE(err.code == SK_E_INVALID);
    }
}

TEST(cni_validation)
{
    rt_net_config cfg = {
        .state_dir = "/tmp/skiff-test-runtime-never-created",
        .bridge_name = "sktstv0",
        .bridge_subnet = "10.250.9.0/24",
        .awsvpc_bridge = "sktstv1",
        .awsvpc_subnet = "10.250.10.0/24",
    };
    rt_net_result r;
    rt_port_mapping pm = { .host_port = 8080, .container_port = 80, .protocol = "sctp" };
    _cleanup_err_ sk_err err = { 0 };
#define EXPECT_INVALID(call)                   \
    do {                                       \
        sk_err_done(&err);                     \
        ASSERT_FAIL(call);                     \
        ASSERT_TRUE(err.code == SK_E_INVALID); \
    } while (0)
    EXPECT_INVALID(rt_cni_add(&cfg, "bridge", "../x", "/tmp/ns", NULL, 0, &r, &err));
    EXPECT_INVALID(rt_cni_add(&cfg, "host", "a", "/tmp/ns", NULL, 0, &r, &err));
    EXPECT_INVALID(rt_cni_add(&cfg, "bridge", "a", "relative", NULL, 0, &r, &err));
    EXPECT_INVALID(rt_cni_add(&cfg, "bridge", "a", "/tmp/ns", &pm, 1, &r, &err));
    pm.protocol = "tcp";
    EXPECT_INVALID(rt_cni_add(&cfg, "awsvpc", "a", "/tmp/ns", &pm, 1, &r, &err));
    rt_port_mapping two[2] = { pm, pm };
    EXPECT_INVALID(rt_cni_add(&cfg, "bridge", "a", "/tmp/ns", two, 2, &r, &err));
    cfg.bridge_subnet = "10.250.9.1/24";
    EXPECT_INVALID(rt_cni_add(&cfg, "bridge", "a", "/tmp/ns", NULL, 0, &r, &err));
    cfg.bridge_subnet = "10.250.9.0/31";
    EXPECT_INVALID(rt_cni_del(&cfg, "bridge", "a", "/tmp/ns", &err));
    cfg.bridge_subnet = "10.250.9.0/24";
    cfg.bridge_name = "this-name-is-too-long";
    EXPECT_INVALID(rt_cni_del(&cfg, "bridge", "a", "/tmp/ns", &err));
    cfg.bridge_name = "sktstv0";
    cfg.state_dir = "rel";
    EXPECT_INVALID(rt_cni_del(&cfg, "bridge", "a", "/tmp/ns", &err));
    EXPECT_INVALID(rt_netns_create("rel/ns", &err));
    ASSERT_FALSE(path_exists("/tmp/skiff-test-runtime-never-created"));
#undef EXPECT_INVALID
}

TEST(port_free)
{
    int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ASSERT_TRUE(s >= 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    ASSERT_OK(bind(s, (struct sockaddr *) &a, sizeof(a)));
    ASSERT_OK(listen(s, 1));
    socklen_t al = sizeof(a);
    ASSERT_OK(getsockname(s, (struct sockaddr *) &a, &al));
    uint16_t port = ntohs(a.sin_port);
    ASSERT_FALSE(rt_port_free(port, "tcp"));
    ASSERT_FALSE(rt_port_free(port, NULL));
    ASSERT_FALSE(rt_port_free(0, "tcp"));
    ASSERT_FALSE(rt_port_free(port, "sctp"));
    close(s);
    ASSERT_TRUE(rt_port_free(port, "tcp"));

    s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    ASSERT_OK(bind(s, (struct sockaddr *) &a, sizeof(a)));
    ASSERT_FALSE(rt_port_free(port, "udp"));
    close(s);
    ASSERT_TRUE(rt_port_free(port, "udp"));
}

/* ---- the CNI chain with fake plugins ---- */

/* One script serves as every plugin: it records its stdin and environment,
 * fails when asked to, and prints a canned result on ADD. */
static const char fake_plugin[] =
        "#!/bin/sh\n"
        "d=$(dirname \"$0\"); t=$(basename \"$0\")\n"
        "cat >\"$d/in-$t-$CNI_COMMAND.json\"\n"
        "echo \"$t $CNI_COMMAND $CNI_CONTAINERID $CNI_NETNS $CNI_IFNAME $CNI_PATH\" "
        ">>\"$d/calls.log\"\n"
        "if [ -e \"$d/fail-$t-$CNI_COMMAND\" ]; then\n"
        "  echo '{\"cniVersion\":\"1.0.0\",\"code\":7,\"msg\":\"fake failure\","
        "\"details\":\"for tests\"}'\n"
        "  exit 1\n"
        "fi\n"
        "if [ \"$CNI_COMMAND\" = ADD ]; then cat \"$d/result.json\"; fi\n";

static char *read_str(const char *dir, const char *name)
{
    _cleanup_free_ char *p = path_join(dir, name);
    char *data = NULL;
    if (read_full_file(p, 1 << 20, &data, NULL) < 0)
        return xstrdup("");
    return data;
}

TEST(cni_fake_chain)
{
    _cleanup_free_ char *d = make_tmpdir();
    ASSERT_NOT_NULL(d);
    _cleanup_free_ char *bin = path_join(d, "bin");
    _cleanup_free_ char *state = path_join(d, "state");
    ASSERT_OK(mkdir_p(bin, 0755));
    write_str(bin, "bridge", fake_plugin);
    write_str(bin, "portmap", fake_plugin);
    write_str(bin, "result.json", cni_result);
    /* iptables: logs its arguments; a check (-C) finds nothing. */
    write_str(bin, "iptables",
              "#!/bin/sh\necho \"$*\" >> \"$(dirname \"$0\")/iptables.log\"\n"
              "case \" $* \" in *\" -C \"*) exit 1;; esac\nexit 0\n");
    _cleanup_free_ char *pb = path_join(bin, "bridge"), *pp = path_join(bin, "portmap");
    _cleanup_free_ char *pi = path_join(bin, "iptables");
    ASSERT_OK(chmod(pb, 0755));
    ASSERT_OK(chmod(pp, 0755));
    ASSERT_OK(chmod(pi, 0755));
    rt_net_config cfg = {
        .cni_bin_dir = bin,
        .state_dir = state,
        .bridge_name = "skfake0",
        .bridge_subnet = "10.250.9.0/24",
        .awsvpc_bridge = "skfake1",
        .awsvpc_subnet = "10.250.10.0/24",
        .iptables_path = pi,
    };
    /* Any network namespace file will do for fake plugins. */
    const char *ns = "/proc/self/ns/net";
    rt_port_mapping pm[2] = {
        { .host_port = 18080, .container_port = 80, .protocol = "tcp" },
        { .host_port = 18081, .container_port = 81, .protocol = NULL },
    };
    rt_net_result r;
    _cleanup_err_ sk_err err = { 0 };
    ASSERT_OK_ERR(rt_cni_add(&cfg, "bridge", "c1", ns, pm, 2, &r, &err), &err);
    ASSERT_STREQ(r.ip, "10.250.0.5");
    ASSERT_STREQ(r.mac, "aa:bb:cc:dd:ee:03");

    _cleanup_free_ char *calls = read_str(bin, "calls.log");
    _cleanup_free_ char *want =
            xasprintf("bridge ADD c1 %s eth0 %s\nportmap ADD c1 %s eth0 %s\n", ns, bin, ns, bin);
    ASSERT_STREQ(calls, want);
    _cleanup_free_ char *in_b = read_str(bin, "in-bridge-ADD.json");
    _cleanup_free_ char *in_p = read_str(bin, "in-portmap-ADD.json");
    json_error_t jerr;
    _cleanup_(json_decrefp) json_t *jb = json_loads(in_b, 0, &jerr);
    _cleanup_(json_decrefp) json_t *jp = json_loads(in_p, 0, &jerr);
    ASSERT_NOT_NULL(jb);
    ASSERT_NOT_NULL(jp);
    ASSERT_STREQ(json_string_value(json_object_get(jb, "name")), "skiff-bridge-skfake0");
    ASSERT_STREQ(json_string_value(json_object_get(jb, "cniVersion")), "1.0.0");
    ASSERT_STREQ(json_string_value(json_object_get(jb, "bridge")), "skfake0");
    ASSERT_TRUE(json_is_true(json_object_get(jb, "isGateway")));
    ASSERT_TRUE(json_is_false(json_object_get(jb, "ipMasq")));
    ASSERT_TRUE(json_is_true(json_object_get(jb, "hairpinMode")));
    ASSERT_NULL(json_object_get(jb, "prevResult"));
    json_t *ipam = json_object_get(jb, "ipam");
    _cleanup_free_ char *ipam_dir = path_join(state, "ipam");
    ASSERT_STREQ(json_string_value(json_object_get(ipam, "dataDir")), ipam_dir);
    ASSERT_STREQ(json_string_value(json_object_get(ipam, "type")), "host-local");
    ASSERT_NOT_NULL(strstr(in_b, "\"subnet\":\"10.250.9.0/24\""));
    /* portmap: its capability's runtimeConfig and the bridge's result. */
    ASSERT_TRUE(json_is_true(json_object_get(jp, "snat")));
    ASSERT_STREQ(json_string_value(json_object_get(jp, "name")), "skiff-bridge-skfake0");
    ASSERT_NOT_NULL(json_object_get(jp, "prevResult"));
    ASSERT_NOT_NULL(strstr(in_p, "\"portMappings\":[{\"hostPort\":18080,\"containerPort\":80,"
                                 "\"protocol\":\"tcp\"},{\"hostPort\":18081,\"containerPort\":81,"
                                 "\"protocol\":\"tcp\"}]"));
    ASSERT_NULL(json_object_get(jb, "runtimeConfig"));
    _cleanup_free_ char *cache = path_join(state, "cni/bridge-c1.json");
    ASSERT_TRUE(path_exists(cache));
    /* One masquerade rule for the subnet instead of the plugin's ipMasq. */
    _cleanup_free_ char *ipt = read_str(bin, "iptables.log");
    ASSERT_NOT_NULL(strstr(ipt, "-w -t nat -C POSTROUTING -s 10.250.9.0/24 ! -d 10.250.9.0/24 -m "
                                "comment --comment skiff: masquerade 10.250.9.0/24 -j MASQUERADE"));
    ASSERT_NOT_NULL(strstr(ipt, "-w -t nat -A POSTROUTING -s 10.250.9.0/24 ! -d 10.250.9.0/24"));
    ASSERT_NOT_NULL(strstr(ipt, "-w -t filter -I INPUT -i skfake0 -d 127.0.0.0/8"));

    /* DEL: reverse order, cached result and mappings. */
    _cleanup_free_ char *callsp = path_join(bin, "calls.log");
    unlink(callsp);
    ASSERT_OK_ERR(rt_cni_del(&cfg, "bridge", "c1", ns, &err), &err);
    free(calls);
    calls = read_str(bin, "calls.log");
    free(want);
    want = xasprintf("portmap DEL c1 %s eth0 %s\nbridge DEL c1 %s eth0 %s\n", ns, bin, ns, bin);
    ASSERT_STREQ(calls, want);
    _cleanup_free_ char *del_p = read_str(bin, "in-portmap-DEL.json");
    ASSERT_NOT_NULL(strstr(del_p, "\"prevResult\""));
    ASSERT_NOT_NULL(strstr(del_p, "\"hostPort\":18081"));
    ASSERT_FALSE(path_exists(cache));

    /* A failing plugin: the error carries its message, the chain is rolled
     * back (DEL for both), nothing stays cached. */
    unlink(callsp);
    write_str(bin, "fail-portmap-ADD", "");
    ASSERT_FAIL(rt_cni_add(&cfg, "bridge", "c2", ns, pm, 1, &r, &err));
    ASSERT_EQ(err.code, SK_E_SYSTEM);
    ASSERT_NOT_NULL(strstr(err.msg, "fake failure: for tests"));
    free(calls);
    calls = read_str(bin, "calls.log");
    ASSERT_NOT_NULL(strstr(calls, "portmap DEL c2"));
    ASSERT_NOT_NULL(strstr(calls, "bridge DEL c2"));
    _cleanup_free_ char *cache2 = path_join(state, "cni/bridge-c2.json");
    ASSERT_FALSE(path_exists(cache2));

    /* DEL without a cache still gives portmap mappings (else it does
     * nothing) and tolerates a missing netns. */
    sk_err_done(&err);
    ASSERT_OK_ERR(rt_cni_del(&cfg, "bridge", "c3", "/nonexistent/ns", &err), &err);
    _cleanup_free_ char *del_p3 = read_str(bin, "in-portmap-DEL.json");
    ASSERT_NOT_NULL(strstr(del_p3, "\"portMappings\""));
    free(calls);
    calls = read_str(bin, "calls.log");
    ASSERT_NOT_NULL(strstr(calls, "bridge DEL c3  eth0"));

    /* awsvpc: one plugin, no portmap. */
    unlink(callsp);
    ASSERT_OK_ERR(rt_cni_add(&cfg, "awsvpc", "t1", ns, NULL, 0, &r, &err), &err);
    free(calls);
    calls = read_str(bin, "calls.log");
    free(want);
    want = xasprintf("bridge ADD t1 %s eth0 %s\n", ns, bin);
    ASSERT_STREQ(calls, want);
    _cleanup_free_ char *in_a = read_str(bin, "in-bridge-ADD.json");
    ASSERT_NOT_NULL(strstr(in_a, "\"bridge\":\"skfake1\""));
    ASSERT_NOT_NULL(strstr(in_a, "\"name\":\"skiff-awsvpc-skfake1\""));
    ASSERT_OK_ERR(rt_cni_del(&cfg, "awsvpc", "t1", ns, &err), &err);

    /* bridge without port mappings: no portmap, on ADD or on DEL, and so no
     * 127/8 guard (nothing sets route_localnet). */
    unlink(callsp);
    _cleanup_free_ char *iptlog = path_join(bin, "iptables.log");
    unlink(iptlog);
    ASSERT_OK_ERR(rt_cni_add(&cfg, "bridge", "c4", ns, NULL, 0, &r, &err), &err);
    ASSERT_OK_ERR(rt_cni_del(&cfg, "bridge", "c4", ns, &err), &err);
    free(calls);
    calls = read_str(bin, "calls.log");
    free(want);
    want = xasprintf("bridge ADD c4 %s eth0 %s\nbridge DEL c4 %s eth0 %s\n", ns, bin, ns, bin);
    ASSERT_STREQ(calls, want);
    /* No iptables run at all: the subnet's masquerade rule was ensured by
     * this process's first ADD. */
    _cleanup_free_ char *ipt4 = read_str(bin, "iptables.log");
    ASSERT_STREQ(ipt4, "");
    rm_rf(d);
}

/* A plugin that exits without reading its stdin must not kill the caller
 * with SIGPIPE (the caller need not ignore it). */
TEST(cni_plugin_exits_early)
{
    _cleanup_free_ char *d = make_tmpdir();
    ASSERT_NOT_NULL(d);
    write_str(d, "bridge", "#!/bin/sh\nexec 0<&-\nexit 3\n");
    _cleanup_free_ char *pb = path_join(d, "bridge");
    ASSERT_OK(chmod(pb, 0755));
    _cleanup_free_ char *state = path_join(d, "state");
    rt_net_config cfg = { .cni_bin_dir = d,
                          .state_dir = state,
                          .bridge_name = "skfake0",
                          .bridge_subnet = "10.250.9.0/24",
                          .awsvpc_bridge = "skfake1",
                          .awsvpc_subnet = "10.250.10.0/24",
                          .iptables_path = "/bin/true" };
    signal(SIGPIPE, SIG_DFL);
    for (int i = 0; i < 20; i++) {
        rt_net_result r;
        _cleanup_err_ sk_err err = { 0 };
        ASSERT_FAIL(rt_cni_add(&cfg, "awsvpc", "t1", "/proc/self/ns/net", NULL, 0, &r, &err));
        ASSERT_NOT_NULL(strstr(err.msg, "status 3"));
    }
    rm_rf(d);
}

/* ---- skiff-monitor with a fake runtime ---- */

/* A runtime stand-in: parses the arguments the monitor passes, starts the
 * "container" in the background (so that it is reparented to the monitor),
 * waits for its pid file and exits, like `runc run --detach`. The container
 * command comes from CMD in the bundle dir; FAIL makes it fail like runc. */
static const char fake_runtime[] =
        "#!/bin/sh\n"
        "while [ $# -gt 1 ]; do\n"
        "  case \"$1\" in\n"
        "    --bundle) bundle=$2; shift 2;;\n"
        "    --pid-file) pidfile=$2; shift 2;;\n"
        "    --log) log=$2; shift 2;;\n"
        "    *) shift;;\n"
        "  esac\n"
        "done\n"
        "if [ -e \"$bundle/FAIL\" ]; then\n"
        "  echo '{\"level\":\"warning\",\"msg\":\"meh\",\"time\":\"x\"}' >>\"$log\"\n"
        "  echo '{\"level\":\"error\",\"msg\":\"runc run failed: exec: \\\"nope\\\": "
        "not found\",\"time\":\"x\"}' >>\"$log\"\n"
        "  echo 'stderr noise' >&2\n"
        "  exit 1\n"
        "fi\n"
        /* setsid -f: the forking parent exits at once, so the container is
         * orphaned to the monitor and no shell ever reaps it (sh would). */
        "setsid -f sh -c 'echo $$ >\"$1.tmp\"; mv \"$1.tmp\" \"$1\"; exec sh \"$2\"' "
        "fake \"$pidfile\" \"$bundle/CMD\"\n"
        "while [ ! -e \"$pidfile\" ]; do sleep 0.01; done\n";

static const char *monitor_path(void)
{
    const char *p = getenv("SKIFF_MONITOR");
    return p && access(p, X_OK) == 0 ? p : NULL;
}

typedef struct fake {
    char *dir;
    char *runtime;
    char *bundle;
    char *mdir;
} fake;

static void fake_done(fake *f)
{
    if (f->dir)
        rm_rf(f->dir);
    free(f->dir);
    free(f->runtime);
    free(f->bundle);
    free(f->mdir);
}

static int fake_setup(fake *f, const char *cmd)
{
    f->dir = make_tmpdir();
    if (!f->dir)
        return -1;
    f->runtime = path_join(f->dir, "fake-runc");
    f->bundle = path_join(f->dir, "bundle");
    f->mdir = path_join(f->dir, "mon");
    write_str(f->dir, "fake-runc", fake_runtime);
    chmod(f->runtime, 0755);
    mkdir(f->bundle, 0755);
    write_str(f->bundle, "CMD", cmd);
    return 0;
}

static int fake_spawn(fake *f, uint64_t max_size, unsigned max_files, pid_t *mp, pid_t *cp,
                      sk_err *err)
{
    rt_monitor_opts o = {
        .monitor_path = monitor_path(),
        .runtime_path = f->runtime,
        .runtime_root = f->dir,
        .bundle = f->bundle,
        .id = "fake1",
        .dir = f->mdir,
        .log_max_size = max_size,
        .log_max_files = max_files,
    };
    int fd;
    if (rt_monitor_spawn(&o, &fd, err) < 0)
        return -1;
    return rt_monitor_wait_sync(fd, 10000, mp, cp, err);
}

static int wait_exit(const char *dir, rt_exit_status *st, int timeout_ms)
{
    for (int i = 0; i < timeout_ms / 10; i++) {
        _cleanup_err_ sk_err err = { 0 };
        if (rt_monitor_read_exit(dir, st, &err) >= 0)
            return 0;
        usleep(10000);
    }
    return -1;
}

static bool pid_gone(pid_t pid)
{
    for (int i = 0; i < 300; i++) {
        char path[64], buf[512];
        snprintf(path, sizeof(path), "/proc/%d/stat", (int) pid);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            return true;
        ssize_t n = read(fd, buf, sizeof(buf) - 1);
        close(fd);
        buf[n > 0 ? n : 0] = '\0';
        const char *p = strrchr(buf, ')');
        if (p && p[1] == ' ' && p[2] == 'Z')
            return true; /* exited; waiting for init to reap it */
        usleep(10000);
    }
    return false;
}

TEST(monitor_fake_runtime)
{
    if (!monitor_path())
        SKIP("SKIFF_MONITOR not set");
    _cleanup_(fake_done) fake f = { 0 };
    ASSERT_OK(fake_setup(&f, "echo out1\necho err1 >&2\nprintf 'a\\tb\"c\\\\\\001\\n'\n"
                             "printf '\\377\\303\\251\\n'\n"
                             "head -c 40000 /dev/zero | tr '\\0' y; echo\n"
                             "printf tail\nexit 3\n"));
    pid_t mp = 0, cp = 0;
    _cleanup_err_ sk_err err = { 0 };
    ASSERT_OK_ERR(fake_spawn(&f, 0, 0, &mp, &cp, &err), &err);
    ASSERT_TRUE(mp > 1 && cp > 1);
    rt_exit_status st;
    ASSERT_OK(wait_exit(f.mdir, &st, 10000));
    ASSERT_EQ(st.exit_code, 3);
    ASSERT_EQ(st.signal, 0);
    ASSERT_EQ(st.log_dropped, 0);
    ASSERT_TRUE(st.finished_at > 1.6e9);
    ASSERT_TRUE(pid_gone(mp));

    _cleanup_free_ char *pidf = path_join(f.mdir, "monitor.pid");
    _cleanup_free_ char *pids = NULL;
    ASSERT_OK(read_full_file(pidf, 64, &pids, NULL));
    ASSERT_EQ(atoi(pids), mp);

    _cleanup_free_ char *logp = path_join(f.mdir, "container.log");
    _cleanup_free_ char *log = NULL;
    ASSERT_OK(read_full_file(logp, 1 << 20, &log, NULL));
    ASSERT_NOT_NULL(strstr(log, "{\"log\":\"out1\\n\",\"stream\":\"stdout\",\"time\":\""));
    ASSERT_NOT_NULL(strstr(log, "{\"log\":\"err1\\n\",\"stream\":\"stderr\""));
    ASSERT_NOT_NULL(strstr(log, "{\"log\":\"a\\tb\\\"c\\\\\\u0001\\n\""));
    ASSERT_NOT_NULL(strstr(log, "{\"log\":\"\\ufffd\xc3\xa9\\n\""));
    ASSERT_NOT_NULL(strstr(log, "{\"log\":\"tail\",\"stream\":\"stdout\""));

    rt_log_cursor cur = { 0 };
    sink s = { .ordered = true };
    ASSERT_EQ(rt_log_read(f.mdir, &cur, 100, sink_fn, &s, &err), 8);
    ASSERT_TRUE(s.ordered);
    ASSERT_EQ(s.seqs[0], 1);
    ASSERT_EQ(s.seqs[7], 8);
    ASSERT_EQ(cur.dropped, 0);
    /* The 40000-byte line: split at RT_LOG_LINE_MAX, newline on the last. */
    ASSERT_EQ(s.lens[4], RT_LOG_LINE_MAX);
    ASSERT_TRUE(s.partials[4]);
    ASSERT_EQ(s.lens[5], RT_LOG_LINE_MAX);
    ASSERT_TRUE(s.partials[5]);
    ASSERT_EQ(s.lens[6], 40000 - 2 * RT_LOG_LINE_MAX);
    ASSERT_FALSE(s.partials[6]);
    ASSERT_EQ(s.lens[7], 4);
    ASSERT_TRUE(s.partials[7]); /* "tail", flushed at exit */
}

TEST(monitor_fake_signal)
{
    if (!monitor_path())
        SKIP("SKIFF_MONITOR not set");
    _cleanup_(fake_done) fake f = { 0 };
    ASSERT_OK(fake_setup(&f, "exec sleep 100\n"));
    pid_t mp = 0, cp = 0;
    _cleanup_err_ sk_err err = { 0 };
    ASSERT_OK_ERR(fake_spawn(&f, 0, 0, &mp, &cp, &err), &err);
    rt_exit_status st;
    _cleanup_err_ sk_err e2 = { 0 };
    ASSERT_FAIL(rt_monitor_read_exit(f.mdir, &st, &e2));
    ASSERT_EQ(e2.code, SK_E_NOT_FOUND);
    ASSERT_OK(kill(cp, SIGKILL));
    ASSERT_OK(wait_exit(f.mdir, &st, 10000));
    ASSERT_EQ(st.exit_code, 137);
    ASSERT_EQ(st.signal, 9);
}

TEST(monitor_fake_failure)
{
    if (!monitor_path())
        SKIP("SKIFF_MONITOR not set");
    _cleanup_(fake_done) fake f = { 0 };
    ASSERT_OK(fake_setup(&f, "exit 0\n"));
    write_str(f.bundle, "FAIL", "");
    pid_t mp = 0, cp = 0;
    _cleanup_err_ sk_err err = { 0 };
    ASSERT_FAIL(fake_spawn(&f, 0, 0, &mp, &cp, &err));
    ASSERT_EQ(err.code, SK_E_INVALID);
    ASSERT_STREQ(err.msg, "runc run failed: exec: \"nope\": not found");
    rt_exit_status st;
    ASSERT_OK(wait_exit(f.mdir, &st, 10000));
    ASSERT_EQ(st.exit_code, -1);
    ASSERT_STREQ(st.error, "runc run failed: exec: \"nope\": not found");

    /* A runtime that cannot be executed. */
    sk_err_done(&err);
    free(f.runtime);
    f.runtime = path_join(f.dir, "does-not-exist");
    ASSERT_FAIL(fake_spawn(&f, 0, 0, &mp, &cp, &err));
    ASSERT_NOT_NULL(strstr(err.msg, "does-not-exist"));

    /* A monitor that cannot be executed. */
    sk_err_done(&err);
    rt_monitor_opts o = { .monitor_path = "/nonexistent/skiff-monitor",
                          .runtime_path = "/bin/true",
                          .runtime_root = f.dir,
                          .bundle = f.bundle,
                          .id = "x",
                          .dir = f.mdir };
    int fd;
    ASSERT_OK(rt_monitor_spawn(&o, &fd, &err));
    ASSERT_FAIL(rt_monitor_wait_sync(fd, 5000, &mp, &cp, &err));
    ASSERT_NOT_NULL(strstr(err.msg, "exec monitor"));

    /* Options the agent helper rejects before forking. */
    sk_err_done(&err);
    o.id = "bad/id";
    ASSERT_FAIL(rt_monitor_spawn(&o, &fd, &err));
    ASSERT_EQ(err.code, SK_E_INVALID);
    sk_err_done(&err);
    o.id = "x";
    o.bundle = "relative";
    ASSERT_FAIL(rt_monitor_spawn(&o, &fd, &err));
    ASSERT_EQ(err.code, SK_E_INVALID);
}

/* Runs the monitor directly with bad arguments: it reports on the sync fd
 * and exits 2. */
static int run_monitor_args(const char *const *args, char *out, size_t outmax)
{
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0)
        return -1;
    pid_t pid = fork();
    if (pid == 0) {
        dup2(p[1], 5);
        int nul = open("/dev/null", O_WRONLY | O_CLOEXEC);
        dup2(nul, 2);
        char *argv[32];
        size_t n = 0;
        argv[n++] = (char *) "skiff-monitor";
        for (; args[n - 1] && n < 31; n++)
            argv[n] = (char *) args[n - 1];
        argv[n] = NULL;
        execv(monitor_path(), argv);
        _exit(127);
    }
    close(p[1]);
    ssize_t k = read(p[0], out, outmax - 1);
    out[k > 0 ? k : 0] = '\0';
    close(p[0]);
    int st;
    waitpid(pid, &st, 0);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

TEST(monitor_bad_args)
{
    if (!monitor_path())
        SKIP("SKIFF_MONITOR not set");
    char out[512];
    const char *a1[] = { "--sync-fd", "5", "--runtime", "/bin/true", NULL };
    ASSERT_EQ(run_monitor_args(a1, out, sizeof(out)), 2);
    ASSERT_NOT_NULL(startswith(out, "error monitor: "));
    const char *a2[] = { "--sync-fd", "5",        "--runtime", "/bin/true", "--root",
                         "/tmp",      "--bundle", "/tmp",      "--dir",     "/tmp",
                         "--id",      "a/b",      NULL };
    ASSERT_EQ(run_monitor_args(a2, out, sizeof(out)), 2);
    ASSERT_NOT_NULL(strstr(out, "--id"));
    const char *a3[] = { "--sync-fd", "5",        "--runtime",      "/bin/true", "--root",
                         "/tmp",      "--bundle", "/tmp",           "--dir",     "/tmp",
                         "--id",      "ab",       "--log-max-size", "12",        NULL };
    ASSERT_EQ(run_monitor_args(a3, out, sizeof(out)), 2);
    ASSERT_NOT_NULL(strstr(out, "--log-max-size"));
    const char *a4[] = { "--sync-fd", "5", "--bogus", NULL };
    ASSERT_EQ(run_monitor_args(a4, out, sizeof(out)), 2);
    ASSERT_NOT_NULL(startswith(out, "error monitor: "));
}

TEST(monitor_fake_rotation)
{
    if (!monitor_path())
        SKIP("SKIFF_MONITOR not set");
    _cleanup_(fake_done) fake f = { 0 };
    /* 2000 lines of 64 bytes through 20 kB files: most rotate away. The
     * first three records (a split 40000 byte line) are larger than 16 KiB
     * and get a file each. */
    ASSERT_OK(fake_setup(&f, "head -c 40000 /dev/zero | tr '\\0' y; echo\n"
                             "i=0; while [ $i -lt 2000 ]; do "
                             "echo \"line $i 0123456789012345678901234567890123456789012345\"; "
                             "i=$((i+1)); done\n"));
    pid_t mp = 0, cp = 0;
    _cleanup_err_ sk_err err = { 0 };
    ASSERT_OK_ERR(fake_spawn(&f, 20000, 3, &mp, &cp, &err), &err);

    /* Read concurrently, slowly: drops are counted, nothing is duplicated. */
    rt_log_cursor cur = { 0 };
    sink s = { .ordered = true };
    rt_exit_status st;
    bool done = false;
    while (!done) {
        _cleanup_err_ sk_err e = { 0 };
        done = rt_monitor_read_exit(f.mdir, &st, &e) >= 0;
        ASSERT_OK_ERR(rt_log_read(f.mdir, &cur, 50, sink_fn, &s, &err), &err);
        usleep(2000);
    }
    while (rt_log_read(f.mdir, &cur, 50, sink_fn, &s, &err) > 0)
        ;
    ASSERT_EQ(st.exit_code, 0);
    ASSERT_TRUE(s.ordered);
    ASSERT_EQ(cur.seq, 2003);
    ASSERT_EQ(s.n + cur.dropped, 2003);
    printf("# rotation: %zu records read, %" PRIu64 " dropped\n", s.n, cur.dropped);

    /* A fresh reader sees only what the 3 files still hold. */
    rt_log_cursor c2 = { 0 };
    sink s2 = { .ordered = true };
    int n = rt_log_read(f.mdir, &c2, 4096, sink_fn, &s2, &err);
    ASSERT_TRUE(n > 3 && n < 2003);
    ASSERT_EQ(c2.seq, 2003);
    ASSERT_EQ((uint64_t) n + c2.dropped, 2003);
    _cleanup_free_ char *l3 = path_join(f.mdir, "container.log.3");
    ASSERT_FALSE(path_exists(l3));
    for (int i = 0; i < 3; i++) {
        char name[32];
        snprintf(name, sizeof(name), i ? "container.log.%d" : "container.log", i);
        _cleanup_free_ char *p = path_join(f.mdir, name);
        struct stat sb;
        ASSERT_OK(stat(p, &sb));
        ASSERT_TRUE(sb.st_size <= 20000);
    }
}

TAP_MAIN()
