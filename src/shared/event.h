/* A single-threaded epoll event loop with fd watchers, timers, signals and
 * per-iteration hooks.
 *
 * Contract: every callback runs on the thread that calls ev_loop_run(). Timers
 * are one-shot; re-arm from the callback to repeat. "prepare" hooks run once
 * per iteration after all ready events were dispatched and before the loop
 * sleeps; the store uses one to group-commit, the HTTP server one to release
 * held responses (hooks run in registration order). */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/epoll.h>

#include "basic/timeutil.h"

typedef struct ev_loop ev_loop;
typedef struct ev_io ev_io;
typedef struct ev_timer ev_timer;

typedef void (*ev_io_fn)(ev_io *io, int fd, uint32_t events, void *userdata);
typedef void (*ev_timer_fn)(ev_timer *t, void *userdata);
typedef void (*ev_signal_fn)(ev_loop *loop, int signo, void *userdata);
typedef void (*ev_hook_fn)(ev_loop *loop, void *userdata);

ev_loop *ev_loop_new(void);
void ev_loop_free(ev_loop *loop);
/* Runs until ev_loop_quit(); returns the exit code passed to quit. */
int ev_loop_run(ev_loop *loop);
/* Runs one iteration, waiting at most timeout_ms (-1: until an event). */
int ev_loop_run_once(ev_loop *loop, int timeout_ms);
void ev_loop_quit(ev_loop *loop, int code);
bool ev_loop_quitting(const ev_loop *loop);

ev_io *ev_io_add(ev_loop *loop, int fd, uint32_t events, ev_io_fn fn, void *userdata);
int ev_io_modify(ev_io *io, uint32_t events);
/* Removes the watcher (does not close the fd). Safe to call from its callback. */
void ev_io_remove(ev_io *io);

ev_timer *ev_timer_new(ev_loop *loop, ev_timer_fn fn, void *userdata);
/* Arms the timer to fire at the given CLOCK_MONOTONIC time (usec). */
void ev_timer_arm_at(ev_timer *t, usec_t when);
void ev_timer_arm_in(ev_timer *t, usec_t delay);
void ev_timer_disarm(ev_timer *t);
bool ev_timer_armed(const ev_timer *t);
void ev_timer_free(ev_timer *t);

/* Blocks signo and delivers it through a signalfd. */
int ev_signal_add(ev_loop *loop, int signo, ev_signal_fn fn, void *userdata);
void ev_prepare_add(ev_loop *loop, ev_hook_fn fn, void *userdata);
