/* loadgen: a small single-threaded HTTP/1.1 load generator for the skiff
 * control-plane benchmark (bench/controlplane.py builds it with gcc).
 *
 * It replays pre-built raw HTTP requests (already SigV4-signed) over a pool of
 * connections, keep-alive when the server allows it; when the server answers
 * "Connection: close" (moto/werkzeug does, always) the slot reconnects for the
 * next request and the connect time is part of that request's latency.
 *
 * Modes
 *   open loop  (-r RATE): request i is *scheduled* at t0 + i/RATE, whatever
 *              the server does. Latency is measured from the scheduled time
 *              (no coordinated omission): if every connection is busy the
 *              request waits in a queue inside loadgen and that wait counts.
 *              Requests still unanswered DRAIN seconds after the last one was
 *              scheduled are "incomplete" and count as +infinite latency.
 *   closed loop (no -r): each connection sends its next request as soon as
 *              the previous answer arrived, until -d seconds passed or -n
 *              requests were issued.
 *
 * Request file: records "<decimal byte length>\n<raw request bytes>", used
 * round-robin (request i uses record i % nrecords).
 *
 * Output: one JSON object on stdout.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#define NSEC 1000000000ULL

typedef struct {
    char *data;
    size_t len;
} request;

enum slot_state { S_DISC, S_CONNECTING, S_WRITING, S_READING, S_IDLE };

typedef struct {
    int fd;
    enum slot_state st;
    uint64_t req_no;  /* index of the request in flight */
    uint64_t t_sched; /* scheduled (open) or dispatch (closed) time */
    uint64_t t_disp;  /* when handed to this connection */
    const request *rq;
    size_t woff;
    char *rbuf;
    size_t rlen, rcap;
    bool reused; /* request sent on an already-used keep-alive connection */
} slot;

static struct sockaddr_in addr;
static request *reqs;
static size_t nreqs;
static int ep;
static slot *slots;
static int nslots;
static const char *match;
static size_t match_len;

/* results */
static uint64_t *lat, *svc; /* ns, per completed request */
static size_t ncomp, lat_cap;
static uint64_t n_ok, n_non2xx, n_mismatch, n_conn_err, n_connects, n_queued, n_in_window;
static uint64_t *lag; /* open loop: timer lag per scheduled request, ns */
static size_t nlag;
static int status_hist[6];

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t) ts.tv_sec * NSEC + (uint64_t) ts.tv_nsec;
}

static void die(const char *msg)
{
    fprintf(stderr, "loadgen: %s: %s\n", msg, strerror(errno));
    exit(2);
}

static void *xrealloc(void *p, size_t n)
{
    p = realloc(p, n ? n : 1);
    if (!p) {
        fprintf(stderr, "loadgen: out of memory\n");
        exit(2);
    }
    return p;
}

static void load_requests(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        die(path);
    size_t cap = 0;
    for (;;) {
        unsigned long len;
        int r = fscanf(f, "%lu", &len);
        if (r != 1)
            break;
        if (fgetc(f) != '\n') {
            fprintf(stderr, "loadgen: bad request file framing\n");
            exit(2);
        }
        if (nreqs == cap) {
            cap = cap ? cap * 2 : 16;
            reqs = xrealloc(reqs, cap * sizeof(*reqs));
        }
        reqs[nreqs].data = xrealloc(NULL, len);
        reqs[nreqs].len = len;
        if (fread(reqs[nreqs].data, 1, len, f) != len) {
            fprintf(stderr, "loadgen: truncated request file\n");
            exit(2);
        }
        nreqs++;
    }
    fclose(f);
    if (!nreqs) {
        fprintf(stderr, "loadgen: no requests in %s\n", path);
        exit(2);
    }
}

static void ep_set(slot *s, uint32_t events, bool add)
{
    struct epoll_event ev = { .events = events, .data.ptr = s };
    if (epoll_ctl(ep, add ? EPOLL_CTL_ADD : EPOLL_CTL_MOD, s->fd, &ev) < 0)
        die("epoll_ctl");
}

static void slot_close(slot *s)
{
    if (s->fd >= 0) {
        epoll_ctl(ep, EPOLL_CTL_DEL, s->fd, NULL);
        close(s->fd);
    }
    s->fd = -1;
    s->st = S_DISC;
    s->rlen = 0;
}

static void record(uint64_t latency, uint64_t service)
{
    if (ncomp == lat_cap) {
        lat_cap = lat_cap ? lat_cap * 2 : 65536;
        lat = xrealloc(lat, lat_cap * sizeof(*lat));
        svc = xrealloc(svc, lat_cap * sizeof(*svc));
    }
    lat[ncomp] = latency;
    svc[ncomp] = service;
    ncomp++;
}

static void finish(slot *s, uint64_t t_now, bool ok, int status, const char *body, size_t blen,
                   bool close_after);

static void try_write(slot *s)
{
    while (s->woff < s->rq->len) {
        ssize_t n = write(s->fd, s->rq->data + s->woff, s->rq->len - s->woff);
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR) {
                if (s->st != S_WRITING) {
                    s->st = S_WRITING;
                    ep_set(s, EPOLLOUT, false);
                }
                return;
            }
            n_conn_err++;
            finish(s, now_ns(), false, 0, NULL, 0, true);
            return;
        }
        s->woff += (size_t) n;
    }
    s->st = S_READING;
    s->rlen = 0;
    ep_set(s, EPOLLIN, false);
}

static void dispatch(slot *s, uint64_t req_no, uint64_t t_sched, uint64_t t_now)
{
    s->req_no = req_no;
    s->t_sched = t_sched;
    s->t_disp = t_now;
    s->rq = &reqs[req_no % nreqs];
    s->woff = 0;
    if (s->fd < 0) {
        s->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (s->fd < 0)
            die("socket");
        int one = 1;
        setsockopt(s->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        n_connects++;
        s->reused = false;
        if (connect(s->fd, (struct sockaddr *) &addr, sizeof(addr)) < 0) {
            if (errno != EINPROGRESS) {
                n_conn_err++;
                close(s->fd);
                s->fd = -1;
                finish(s, now_ns(), false, 0, NULL, 0, true);
                return;
            }
            s->st = S_CONNECTING;
            ep_set(s, EPOLLOUT, true);
            return;
        }
        s->st = S_WRITING;
        ep_set(s, EPOLLOUT, true);
        try_write(s);
        return;
    }
    s->reused = true;
    s->st = S_WRITING;
    try_write(s);
}

static bool memcasemem(const char *h, size_t hl, const char *needle)
{
    size_t nl = strlen(needle);
    for (size_t i = 0; i + nl <= hl; i++)
        if (strncasecmp(h + i, needle, nl) == 0)
            return true;
    return false;
}

/* Returns 1 when a full response is in rbuf, 0 when more is needed (or EOF
 * completes it: eof=true), -1 on a malformed response. */
static int parse_response(slot *s, bool eof, int *status, bool *close_after, size_t *body_off,
                          size_t *body_len)
{
    char *b = s->rbuf;
    size_t n = s->rlen;
    char *he = memmem(b, n, "\r\n\r\n", 4);
    if (!he)
        return eof ? -1 : 0;
    size_t hlen = (size_t) (he - b) + 4;
    if (n < 12 || strncmp(b, "HTTP/1.", 7) != 0)
        return -1;
    *status = atoi(b + 9);
    bool http10 = b[7] == '0';
    long long clen = -1;
    bool chunked = false, conn_close = http10, conn_keep = false;
    char *line = memchr(b, '\n', hlen) + 1;
    while (line < b + hlen - 2) {
        char *nl = memchr(line, '\n', (size_t) (b + hlen - line));
        if (!nl)
            break;
        size_t ll = (size_t) (nl - line);
        if (ll >= 15 && strncasecmp(line, "content-length:", 15) == 0)
            clen = atoll(line + 15);
        else if (ll >= 18 && strncasecmp(line, "transfer-encoding:", 18) == 0)
            chunked = memmem(line, ll, "chunked", 7) != NULL;
        else if (ll >= 11 && strncasecmp(line, "connection:", 11) == 0) {
            if (memcasemem(line, ll, "close"))
                conn_close = true;
            if (memcasemem(line, ll, "keep-alive"))
                conn_keep = true;
        }
        line = nl + 1;
    }
    if (http10 && conn_keep)
        conn_close = false;
    *close_after = conn_close;
    *body_off = hlen;
    if (chunked) {
        size_t p = hlen;
        for (;;) {
            char *crlf = memmem(b + p, n - p, "\r\n", 2);
            if (!crlf)
                return eof ? -1 : 0;
            unsigned long sz = strtoul(b + p, NULL, 16);
            p = (size_t) (crlf - b) + 2;
            if (sz == 0) {
                /* optional trailers, then CRLF */
                if (n - p >= 2 && b[p] == '\r' && b[p + 1] == '\n')
                    break;
                if (memmem(b + p, n - p, "\r\n\r\n", 4))
                    break;
                return eof ? -1 : 0;
            }
            if (n - p < sz + 2)
                return eof ? -1 : 0;
            p += sz + 2;
        }
        *body_len = n - hlen; /* raw chunked body; fine for substring matching */
        return 1;
    }
    if (clen >= 0) {
        if (n - hlen < (size_t) clen)
            return eof ? -1 : 0;
        *body_len = (size_t) clen;
        return 1;
    }
    if (*status == 204 || *status == 304 || (*status >= 100 && *status < 200)) {
        *body_len = 0;
        return 1;
    }
    /* delimited by EOF */
    if (!eof)
        return 0;
    *close_after = true;
    *body_len = n - hlen;
    return 1;
}

/* called when a response completed (ok) or the request failed (!ok) */
static void (*on_done)(slot *s, uint64_t t_now, bool ok);

static void finish(slot *s, uint64_t t_now, bool ok, int status, const char *body, size_t blen,
                   bool close_after)
{
    if (ok) {
        record(t_now - s->t_sched, t_now - s->t_disp);
        if (status >= 200 && status < 300) {
            n_ok++;
            if (match && !memmem(body, blen, match, match_len))
                n_mismatch++;
        } else
            n_non2xx++;
        int k = status / 100;
        if (k >= 0 && k < 6)
            status_hist[k]++;
    }
    if (close_after || !ok)
        slot_close(s);
    else {
        s->st = S_IDLE;
        s->rlen = 0;
    }
    on_done(s, t_now, ok);
}

static void on_readable(slot *s)
{
    for (;;) {
        if (s->rcap - s->rlen < 16384) {
            s->rcap = s->rcap ? s->rcap * 2 : 65536;
            s->rbuf = xrealloc(s->rbuf, s->rcap);
        }
        ssize_t n = read(s->fd, s->rbuf + s->rlen, s->rcap - s->rlen - 1);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN)
                break;
            n = 0; /* treat as EOF/reset */
            if (s->st != S_READING) {
                slot_close(s);
                return;
            }
            n_conn_err++;
            finish(s, now_ns(), false, 0, NULL, 0, true);
            return;
        }
        if (n == 0) {
            if (s->st != S_READING) { /* idle keep-alive connection closed by peer */
                slot_close(s);
                return;
            }
            int status;
            bool ca;
            size_t bo, bl;
            if (s->rlen > 0 && parse_response(s, true, &status, &ca, &bo, &bl) == 1) {
                finish(s, now_ns(), true, status, s->rbuf + bo, bl, true);
                return;
            }
            n_conn_err++;
            finish(s, now_ns(), false, 0, NULL, 0, true);
            return;
        }
        s->rlen += (size_t) n;
        if (s->st != S_READING) { /* unsolicited bytes on an idle connection */
            slot_close(s);
            return;
        }
        int status;
        bool ca;
        size_t bo, bl;
        int r = parse_response(s, false, &status, &ca, &bo, &bl);
        if (r < 0) {
            n_conn_err++;
            finish(s, now_ns(), false, 0, NULL, 0, true);
            return;
        }
        if (r == 1) {
            finish(s, now_ns(), true, status, s->rbuf + bo, bl, ca);
            return;
        }
    }
}

static void on_writable(slot *s)
{
    if (s->st == S_CONNECTING) {
        int e = 0;
        socklen_t el = sizeof(e);
        getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &e, &el);
        if (e) {
            n_conn_err++;
            finish(s, now_ns(), false, 0, NULL, 0, true);
            return;
        }
        s->st = S_WRITING;
    }
    if (s->st == S_WRITING)
        try_write(s);
}

/* ---------- open loop ---------- */
static uint64_t o_total, o_next, o_t0, o_rate, o_done_count;
static uint64_t *o_queue; /* scheduled request numbers waiting for a free connection */
static size_t o_qhead, o_qtail;
static slot **o_idle;
static int o_nidle;

static uint64_t sched_time(uint64_t i)
{
    return o_t0 + (uint64_t) ((__uint128_t) i * NSEC / o_rate);
}

static void open_done(slot *s, uint64_t t_now, bool ok)
{
    (void) ok;
    o_done_count++;
    if (o_qhead < o_qtail) {
        uint64_t i = o_queue[o_qhead++];
        dispatch(s, i, sched_time(i), t_now);
    } else
        o_idle[o_nidle++] = s;
}

static void run_open(double duration, uint64_t count, double drain)
{
    o_total = count ? count : (uint64_t) (duration * (double) o_rate + 0.5);
    o_queue = xrealloc(NULL, o_total * sizeof(*o_queue));
    lag = xrealloc(NULL, o_total * sizeof(*lag));
    o_idle = xrealloc(NULL, (size_t) nslots * sizeof(*o_idle));
    on_done = open_done;
    int tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (tfd < 0)
        die("timerfd_create");
    struct epoll_event tev = { .events = EPOLLIN, .data.ptr = NULL };
    if (epoll_ctl(ep, EPOLL_CTL_ADD, tfd, &tev) < 0)
        die("epoll_ctl timerfd");
    for (int i = 0; i < nslots; i++)
        o_idle[o_nidle++] = &slots[i];
    o_t0 = now_ns() + 20 * 1000000ULL; /* start in 20 ms */
    uint64_t last_sched = sched_time(o_total ? o_total - 1 : 0);
    uint64_t deadline = last_sched + (uint64_t) (drain * NSEC);
    struct epoll_event evs[256];
    while (o_done_count + 0 < o_total) {
        uint64_t t = now_ns();
        /* schedule everything that is due */
        while (o_next < o_total && sched_time(o_next) <= t) {
            uint64_t ts = sched_time(o_next);
            lag[nlag++] = t - ts;
            if (o_nidle > 0)
                dispatch(o_idle[--o_nidle], o_next, ts, t);
            else {
                o_queue[o_qtail++] = o_next;
                n_queued++;
            }
            o_next++;
        }
        if (t > deadline)
            break;
        if (o_next < o_total) {
            uint64_t nt = sched_time(o_next);
            struct itimerspec its = { .it_value = { .tv_sec = (time_t) (nt / NSEC),
                                                    .tv_nsec = (long) (nt % NSEC) } };
            timerfd_settime(tfd, TFD_TIMER_ABSTIME, &its, NULL);
        }
        int timeout_ms = o_next < o_total ? -1 : (int) ((deadline - t) / 1000000ULL) + 1;
        int n = epoll_wait(ep, evs, 256, timeout_ms);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            die("epoll_wait");
        }
        for (int k = 0; k < n; k++) {
            slot *s = evs[k].data.ptr;
            if (!s) {
                uint64_t x;
                if (read(tfd, &x, sizeof(x)) < 0) {
                }
                continue;
            }
            if (s->fd < 0)
                continue;
            if (evs[k].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
                if (s->st == S_CONNECTING || s->st == S_WRITING)
                    on_writable(s);
                else
                    on_readable(s);
            } else if (evs[k].events & EPOLLOUT)
                on_writable(s);
        }
    }
    close(tfd);
}

/* ---------- closed loop ---------- */
static uint64_t c_issued, c_limit, c_deadline, c_t0;
static bool c_stop;

static void closed_done(slot *s, uint64_t t_now, bool ok)
{
    if (ok && t_now <= c_deadline)
        n_in_window++;
    if (c_stop || t_now >= c_deadline || (c_limit && c_issued >= c_limit)) {
        c_stop = true;
        return;
    }
    dispatch(s, c_issued, t_now, t_now);
    c_issued++;
}

static void run_closed(double duration, uint64_t count, double drain)
{
    on_done = closed_done;
    c_limit = count;
    c_t0 = now_ns();
    c_deadline = duration > 0 ? c_t0 + (uint64_t) (duration * NSEC) : UINT64_MAX;
    for (int i = 0; i < nslots && (!c_limit || c_issued < c_limit); i++) {
        dispatch(&slots[i], c_issued, now_ns(), now_ns());
        c_issued++;
    }
    struct epoll_event evs[256];
    for (;;) {
        int busy = 0;
        for (int i = 0; i < nslots; i++)
            if (slots[i].st != S_DISC && slots[i].st != S_IDLE)
                busy++;
        if (busy == 0)
            break;
        uint64_t t = now_ns();
        uint64_t end =
                c_deadline == UINT64_MAX ? UINT64_MAX : c_deadline + (uint64_t) (drain * NSEC);
        if (t > end)
            break;
        int timeout_ms = 100;
        int n = epoll_wait(ep, evs, 256, timeout_ms);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            die("epoll_wait");
        }
        for (int k = 0; k < n; k++) {
            slot *s = evs[k].data.ptr;
            if (s->fd < 0)
                continue;
            if (evs[k].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
                if (s->st == S_CONNECTING || s->st == S_WRITING)
                    on_writable(s);
                else
                    on_readable(s);
            } else if (evs[k].events & EPOLLOUT)
                on_writable(s);
        }
    }
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *) a, y = *(const uint64_t *) b;
    return x < y ? -1 : x > y;
}

/* percentile over total samples where samples beyond n are +inf; -1 = inf */
static double pct(uint64_t *v, size_t n, size_t total, double p)
{
    if (total == 0)
        return -1;
    size_t idx = (size_t) (p * (double) total + 0.999999);
    if (idx == 0)
        idx = 1;
    if (idx > n)
        return -1;
    return (double) v[idx - 1] / 1000.0;
}

static void print_dist(const char *name, uint64_t *v, size_t n, size_t total, bool last)
{
    qsort(v, n, sizeof(*v), cmp_u64);
    double sum = 0;
    for (size_t i = 0; i < n; i++)
        sum += (double) v[i];
    printf("\"%s\":{\"n\":%zu,\"mean\":%.1f,\"p50\":%.1f,\"p90\":%.1f,\"p99\":%.1f,\"p999\":%.1f,"
           "\"max\":%.1f}%s",
           name, n, n ? sum / (double) n / 1000.0 : -1.0, pct(v, n, total, 0.50),
           pct(v, n, total, 0.90), pct(v, n, total, 0.99), pct(v, n, total, 0.999),
           n == total && n ? (double) v[n - 1] / 1000.0 : -1.0, last ? "" : ",");
}

static void usage(void)
{
    fprintf(stderr, "usage: loadgen -a HOST:PORT -f REQFILE [-c CONNS] [-d SECONDS] [-r RATE]\n"
                    "               [-n COUNT] [-m SUBSTRING] [-t DRAIN_SECONDS]\n"
                    "  -r RATE  open loop at RATE req/s (default: closed loop)\n"
                    "  -m STR   count 2xx responses whose body lacks STR as 'mismatch'\n");
    exit(2);
}

int main(int argc, char **argv)
{
    const char *target = NULL, *file = NULL;
    double duration = 0, drain = 10;
    uint64_t count = 0;
    int opt;
    nslots = 16;
    o_rate = 0;
    while ((opt = getopt(argc, argv, "a:f:c:d:r:n:m:t:")) != -1) {
        switch (opt) {
        case 'a':
            target = optarg;
            break;
        case 'f':
            file = optarg;
            break;
        case 'c':
            nslots = atoi(optarg);
            break;
        case 'd':
            duration = atof(optarg);
            break;
        case 'r':
            o_rate = strtoull(optarg, NULL, 10);
            break;
        case 'n':
            count = strtoull(optarg, NULL, 10);
            break;
        case 'm':
            match = optarg;
            match_len = strlen(optarg);
            break;
        case 't':
            drain = atof(optarg);
            break;
        default:
            usage();
        }
    }
    if (!target || !file || nslots < 1 || (duration <= 0 && count == 0))
        usage();
    const char *colon = strrchr(target, ':');
    if (!colon)
        usage();
    char host[64];
    snprintf(host, sizeof(host), "%.*s", (int) (colon - target), target);
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t) atoi(colon + 1));
    if (inet_pton(AF_INET, host, &addr.sin_addr) != 1) {
        fprintf(stderr, "loadgen: bad IPv4 address %s\n", host);
        return 2;
    }
    load_requests(file);
    ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0)
        die("epoll_create1");
    slots = calloc((size_t) nslots, sizeof(*slots));
    for (int i = 0; i < nslots; i++)
        slots[i].fd = -1;

    struct rusage ru0, ru1;
    getrusage(RUSAGE_SELF, &ru0);
    uint64_t t_start = now_ns();
    if (o_rate)
        run_open(duration, count, drain);
    else
        run_closed(duration, count, drain);
    uint64_t t_end = now_ns();
    getrusage(RUSAGE_SELF, &ru1);

    uint64_t scheduled = o_rate ? o_total : c_issued;
    uint64_t incomplete = scheduled > ncomp + n_conn_err ? scheduled - ncomp - n_conn_err : 0;
    double elapsed, tput;
    if (o_rate) {
        elapsed = (double) (t_end - o_t0) / 1e9;
        tput = (double) ncomp / elapsed;
    } else if (count && duration <= 0) {
        elapsed = (double) (t_end - c_t0) / 1e9;
        tput = (double) ncomp / elapsed;
    } else {
        elapsed = duration;
        tput = (double) n_in_window / duration;
    }
    double cpu_u = (double) (ru1.ru_utime.tv_sec - ru0.ru_utime.tv_sec) +
                   (double) (ru1.ru_utime.tv_usec - ru0.ru_utime.tv_usec) / 1e6;
    double cpu_s = (double) (ru1.ru_stime.tv_sec - ru0.ru_stime.tv_sec) +
                   (double) (ru1.ru_stime.tv_usec - ru0.ru_stime.tv_usec) / 1e6;
    printf("{\"mode\":\"%s\",\"conns\":%d,\"rate\":%" PRIu64 ",\"duration_s\":%.3f,"
           "\"requests_in_file\":%zu,\"scheduled\":%" PRIu64 ",\"completed\":%zu,\"ok\":%" PRIu64
           ",\"non2xx\":%" PRIu64 ",\"mismatch\":%" PRIu64 ",\"conn_errors\":%" PRIu64
           ",\"incomplete\":%" PRIu64 ",\"queued\":%" PRIu64 ",\"connects\":%" PRIu64
           ",\"elapsed_s\":%.3f,\"wall_s\":%.3f,\"throughput\":%.1f,"
           "\"status\":{\"1xx\":%d,\"2xx\":%d,\"3xx\":%d,\"4xx\":%d,\"5xx\":%d},"
           "\"cpu_user_s\":%.3f,\"cpu_sys_s\":%.3f,",
           o_rate ? "open" : "closed", nslots, o_rate, duration, nreqs, scheduled, ncomp, n_ok,
           n_non2xx, n_mismatch, n_conn_err, incomplete, n_queued, n_connects, elapsed,
           (double) (t_end - t_start) / 1e9, tput, status_hist[1], status_hist[2], status_hist[3],
           status_hist[4], status_hist[5], cpu_u, cpu_s);
    size_t total = o_rate ? (size_t) o_total : ncomp;
    print_dist("latency_us", lat, ncomp, total, false);
    print_dist("service_us", svc, ncomp, ncomp, !o_rate);
    if (o_rate)
        print_dist("timer_lag_us", lag, nlag, nlag, true);
    printf("}\n");
    return 0;
}
