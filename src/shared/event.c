#include "event.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "basic/alloc.h"
#include "basic/log.h"
#include "basic/vec.h"

struct ev_io {
    ev_loop *loop;
    int fd;
    uint32_t events;
    ev_io_fn fn;
    void *userdata;
    bool dead;
};

struct ev_timer {
    ev_loop *loop;
    usec_t when;
    ev_timer_fn fn;
    void *userdata;
    size_t heap_idx; /* SIZE_MAX when not armed */
};

typedef struct sig_handler {
    int signo;
    ev_signal_fn fn;
    void *userdata;
} sig_handler;

typedef struct hook {
    ev_hook_fn fn;
    void *userdata;
} hook;

struct ev_loop {
    int epfd;
    int sigfd;
    ev_io *sig_io;
    sigset_t sigmask;
    sk_vec timers_heap; /* min-heap of ev_timer* by when */
    sk_vec signals;
    sk_vec hooks;
    sk_vec dead_ios;
    bool quit;
    int exit_code;
};

ev_loop *ev_loop_new(void)
{
    ev_loop *l = xcalloc(1, sizeof(*l));
    l->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (l->epfd < 0) {
        free(l);
        return NULL;
    }
    l->sigfd = -1;
    sigemptyset(&l->sigmask);
    return l;
}

static void free_dead(ev_loop *l)
{
    sk_vec_done(&l->dead_ios, free);
}

void ev_loop_free(ev_loop *l)
{
    if (!l)
        return;
    if (l->sig_io)
        ev_io_remove(l->sig_io);
    free_dead(l);
    if (l->sigfd >= 0)
        close(l->sigfd);
    close(l->epfd);
    for (size_t i = 0; i < l->timers_heap.len; i++)
        ((ev_timer *) l->timers_heap.items[i])->heap_idx = SIZE_MAX;
    sk_vec_done(&l->timers_heap, NULL);
    sk_vec_done(&l->signals, free);
    sk_vec_done(&l->hooks, free);
    free(l);
}

ev_io *ev_io_add(ev_loop *l, int fd, uint32_t events, ev_io_fn fn, void *userdata)
{
    ev_io *io = xcalloc(1, sizeof(*io));
    *io = (ev_io){ .loop = l, .fd = fd, .events = events, .fn = fn, .userdata = userdata };
    struct epoll_event ee = { .events = events, .data.ptr = io };
    if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, fd, &ee) < 0) {
        free(io);
        return NULL;
    }
    return io;
}

int ev_io_modify(ev_io *io, uint32_t events)
{
    struct epoll_event ee = { .events = events, .data.ptr = io };
    if (epoll_ctl(io->loop->epfd, EPOLL_CTL_MOD, io->fd, &ee) < 0)
        return -errno;
    io->events = events;
    return 0;
}

void ev_io_remove(ev_io *io)
{
    if (!io || io->dead)
        return;
    epoll_ctl(io->loop->epfd, EPOLL_CTL_DEL, io->fd, NULL);
    io->dead = true;
    sk_vec_push(&io->loop->dead_ios, io);
}

/* --- timers: binary min-heap --- */

static ev_timer *heap_at(ev_loop *l, size_t i)
{
    return l->timers_heap.items[i];
}

static void heap_swap(ev_loop *l, size_t a, size_t b)
{
    void *t = l->timers_heap.items[a];
    l->timers_heap.items[a] = l->timers_heap.items[b];
    l->timers_heap.items[b] = t;
    heap_at(l, a)->heap_idx = a;
    heap_at(l, b)->heap_idx = b;
}

static void heap_up(ev_loop *l, size_t i)
{
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (heap_at(l, p)->when <= heap_at(l, i)->when)
            break;
        heap_swap(l, p, i);
        i = p;
    }
}

static void heap_down(ev_loop *l, size_t i)
{
    size_t n = l->timers_heap.len;
    for (;;) {
        size_t a = 2 * i + 1, b = a + 1, m = i;
        if (a < n && heap_at(l, a)->when < heap_at(l, m)->when)
            m = a;
        if (b < n && heap_at(l, b)->when < heap_at(l, m)->when)
            m = b;
        if (m == i)
            break;
        heap_swap(l, i, m);
        i = m;
    }
}

static void heap_remove(ev_loop *l, ev_timer *t)
{
    size_t i = t->heap_idx, last = l->timers_heap.len - 1;
    if (i != last) {
        heap_swap(l, i, last);
    }
    l->timers_heap.len--;
    t->heap_idx = SIZE_MAX;
    if (i < l->timers_heap.len) {
        heap_up(l, i);
        heap_down(l, i);
    }
}

ev_timer *ev_timer_new(ev_loop *l, ev_timer_fn fn, void *userdata)
{
    ev_timer *t = xcalloc(1, sizeof(*t));
    *t = (ev_timer){ .loop = l, .fn = fn, .userdata = userdata, .heap_idx = SIZE_MAX };
    return t;
}

void ev_timer_arm_at(ev_timer *t, usec_t when)
{
    if (t->heap_idx != SIZE_MAX)
        heap_remove(t->loop, t);
    t->when = when;
    sk_vec_push(&t->loop->timers_heap, t);
    t->heap_idx = t->loop->timers_heap.len - 1;
    heap_up(t->loop, t->heap_idx);
}

void ev_timer_arm_in(ev_timer *t, usec_t delay)
{
    ev_timer_arm_at(t, now_monotonic() + delay);
}

void ev_timer_disarm(ev_timer *t)
{
    if (t && t->heap_idx != SIZE_MAX)
        heap_remove(t->loop, t);
}

bool ev_timer_armed(const ev_timer *t)
{
    return t->heap_idx != SIZE_MAX;
}

void ev_timer_free(ev_timer *t)
{
    if (!t)
        return;
    ev_timer_disarm(t);
    free(t);
}

/* --- signals --- */

static void on_signalfd(ev_io *io, int fd, uint32_t events, void *userdata)
{
    ev_loop *l = userdata;
    struct signalfd_siginfo si;
    while (read(fd, &si, sizeof(si)) == (ssize_t) sizeof(si)) {
        for (size_t i = 0; i < l->signals.len; i++) {
            sig_handler *h = l->signals.items[i];
            if (h->signo == (int) si.ssi_signo)
                h->fn(l, h->signo, h->userdata);
        }
    }
}

int ev_signal_add(ev_loop *l, int signo, ev_signal_fn fn, void *userdata)
{
    sigaddset(&l->sigmask, signo);
    if (sigprocmask(SIG_BLOCK, &l->sigmask, NULL) < 0)
        return -errno;
    int fd = signalfd(l->sigfd, &l->sigmask, SFD_NONBLOCK | SFD_CLOEXEC);
    if (fd < 0)
        return -errno;
    if (l->sigfd < 0) {
        l->sigfd = fd;
        l->sig_io = ev_io_add(l, fd, EPOLLIN, on_signalfd, l);
    }
    sig_handler *h = xmalloc(sizeof(*h));
    *h = (sig_handler){ signo, fn, userdata };
    sk_vec_push(&l->signals, h);
    return 0;
}

void ev_prepare_add(ev_loop *l, ev_hook_fn fn, void *userdata)
{
    hook *h = xmalloc(sizeof(*h));
    *h = (hook){ fn, userdata };
    sk_vec_push(&l->hooks, h);
}

/* --- running --- */

static void run_timers(ev_loop *l)
{
    usec_t now = now_monotonic();
    while (l->timers_heap.len > 0) {
        ev_timer *t = heap_at(l, 0);
        if (t->when > now)
            break;
        heap_remove(l, t);
        t->fn(t, t->userdata);
    }
}

static void run_hooks(ev_loop *l)
{
    for (size_t i = 0; i < l->hooks.len; i++) {
        hook *h = l->hooks.items[i];
        h->fn(l, h->userdata);
    }
}

int ev_loop_run_once(ev_loop *l, int timeout_ms)
{
    struct epoll_event evs[64];
    if (l->timers_heap.len > 0) {
        usec_t now = now_monotonic(), when = heap_at(l, 0)->when;
        int t = when <= now ? 0 : (int) MIN((when - now + 999) / 1000, (usec_t) 60000);
        if (timeout_ms < 0 || t < timeout_ms)
            timeout_ms = t;
    }
    int n = epoll_wait(l->epfd, evs, (int) ELEMENTSOF(evs), timeout_ms);
    if (n < 0) {
        if (errno != EINTR)
            return -errno;
        n = 0;
    }
    for (int i = 0; i < n; i++) {
        ev_io *io = evs[i].data.ptr;
        if (io->dead)
            continue;
        io->fn(io, io->fd, evs[i].events, io->userdata);
    }
    run_timers(l);
    run_hooks(l);
    free_dead(l);
    return n;
}

int ev_loop_run(ev_loop *l)
{
    while (!l->quit) {
        int r = ev_loop_run_once(l, -1);
        if (r < 0) {
            log_error("event loop: %s", strerror(-r));
            return 1;
        }
    }
    return l->exit_code;
}

void ev_loop_quit(ev_loop *l, int code)
{
    l->quit = true;
    l->exit_code = code;
}

bool ev_loop_quitting(const ev_loop *l)
{
    return l->quit;
}
