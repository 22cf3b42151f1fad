#include "proc.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "basic/alloc.h"
#include "basic/buf.h"
#include "basic/macro.h"

extern char **environ;

void rt_proc_result_done(rt_proc_result *r)
{
    free(r->out);
    free(r->err);
    *r = (rt_proc_result){ 0 };
}

static int pidfd_open_(pid_t pid)
{
    return (int) syscall(SYS_pidfd_open, pid, 0);
}

static int status_code(int st)
{
    if (WIFEXITED(st))
        return WEXITSTATUS(st);
    if (WIFSIGNALED(st))
        return 128 + WTERMSIG(st);
    return 255;
}

int rt_proc_spawn(char *const argv[], char *const envp[], int out_fd, int err_fd, pid_t *ret_pid,
                  int *ret_pidfd, sk_err *err)
{
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    if (out_fd >= 0)
        posix_spawn_file_actions_adddup2(&fa, out_fd, 1);
    else
        posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    if (err_fd >= 0)
        posix_spawn_file_actions_adddup2(&fa, err_fd, 2);
    else
        posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
    posix_spawnattr_t at;
    posix_spawnattr_init(&at);
    sigset_t none, all;
    sigemptyset(&none);
    sigfillset(&all);
    posix_spawnattr_setsigmask(&at, &none);
    posix_spawnattr_setsigdefault(&at, &all);
    posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    pid_t pid;
    int r = posix_spawn(&pid, argv[0], &fa, &at, argv, envp ? envp : environ);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&at);
    if (r != 0)
        return sk_err_sys(err, r, "start '%s'", argv[0]);
    if (ret_pidfd) {
        int pfd = pidfd_open_(pid);
        if (pfd < 0) {
            int e = errno;
            kill(pid, SIGKILL);
            waitpid(pid, NULL, 0);
            return sk_err_sys(err, e, "pidfd_open");
        }
        *ret_pidfd = pfd;
    }
    *ret_pid = pid;
    return 0;
}

int rt_proc_reap(pid_t pid, int *ret_status)
{
    int st;
    for (;;) {
        pid_t r = waitpid(pid, &st, 0);
        if (r == pid)
            break;
        if (r < 0 && errno != EINTR)
            return -errno;
    }
    if (ret_status)
        *ret_status = status_code(st);
    return 0;
}

int rt_proc_run(char *const argv[], char *const envp[], const void *input, size_t input_len,
                size_t max_out, usec_t timeout, rt_proc_result *ret, sk_err *err)
{
    int inp[2] = { -1, -1 }, outp[2] = { -1, -1 }, errp[2] = { -1, -1 };
    if (pipe2(outp, O_CLOEXEC) < 0 || pipe2(errp, O_CLOEXEC) < 0 ||
        (input && pipe2(inp, O_CLOEXEC) < 0)) {
        int e = errno;
        for (int i = 0; i < 2; i++) {
            if (inp[i] >= 0)
                close(inp[i]);
            if (outp[i] >= 0)
                close(outp[i]);
            if (errp[i] >= 0)
                close(errp[i]);
        }
        return sk_err_sys(err, e, "pipe");
    }
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    if (input)
        posix_spawn_file_actions_adddup2(&fa, inp[0], 0);
    else
        posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&fa, outp[1], 1);
    posix_spawn_file_actions_adddup2(&fa, errp[1], 2);
    posix_spawnattr_t at;
    posix_spawnattr_init(&at);
    sigset_t none, all;
    sigemptyset(&none);
    sigfillset(&all);
    posix_spawnattr_setsigmask(&at, &none);
    posix_spawnattr_setsigdefault(&at, &all);
    posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    pid_t pid;
    int r = posix_spawn(&pid, argv[0], &fa, &at, argv, envp ? envp : environ);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&at);
    close(outp[1]);
    close(errp[1]);
    if (input)
        close(inp[0]);
    if (r != 0) {
        close(outp[0]);
        close(errp[0]);
        if (input)
            close(inp[1]);
        return sk_err_sys(err, r, "start '%s'", argv[0]);
    }
    sk_buf out, er;
    sk_buf_init(&out, 0);
    sk_buf_init(&er, 0);
    size_t written = 0;
    int wfd = input ? inp[1] : -1;
    if (wfd >= 0)
        fcntl(wfd, F_SETFL, O_NONBLOCK);
    usec_t deadline = timeout ? now_monotonic() + timeout : 0;
    bool timed_out = false;
    int open_fds = 2;
    while (open_fds > 0 || wfd >= 0) {
        struct pollfd pfd[3];
        int n = 0;
        int idx_out = -1, idx_err = -1, idx_in = -1;
        if (outp[0] >= 0) {
            idx_out = n;
            pfd[n++] = (struct pollfd){ .fd = outp[0], .events = POLLIN };
        }
        if (errp[0] >= 0) {
            idx_err = n;
            pfd[n++] = (struct pollfd){ .fd = errp[0], .events = POLLIN };
        }
        if (wfd >= 0) {
            idx_in = n;
            pfd[n++] = (struct pollfd){ .fd = wfd, .events = POLLOUT };
        }
        int ms = -1;
        if (deadline) {
            usec_t now = now_monotonic();
            if (now >= deadline) {
                timed_out = true;
                kill(pid, SIGKILL);
                break;
            }
            ms = (int) ((deadline - now) / 1000 + 1);
        }
        int pr = poll(pfd, (nfds_t) n, ms);
        if (pr < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        char buf[8192];
        int fdsl[2] = { idx_out, idx_err };
        int *fdv[2] = { &outp[0], &errp[0] };
        sk_buf *bufs[2] = { &out, &er };
        for (int k = 0; k < 2; k++) {
            if (fdsl[k] < 0 || !(pfd[fdsl[k]].revents & (POLLIN | POLLHUP | POLLERR)))
                continue;
            ssize_t rd = read(*fdv[k], buf, sizeof(buf));
            if (rd <= 0) {
                close(*fdv[k]);
                *fdv[k] = -1;
                open_fds--;
            } else if (bufs[k]->len < max_out)
                sk_buf_append(bufs[k], buf, MIN((size_t) rd, max_out - bufs[k]->len));
        }
        if (idx_in >= 0 && (pfd[idx_in].revents & (POLLOUT | POLLERR | POLLHUP))) {
            ssize_t w = write(wfd, (const char *) input + written, input_len - written);
            if (w > 0)
                written += (size_t) w;
            if (w < 0 && errno != EAGAIN && errno != EINTR)
                written = input_len;
            if (written >= input_len) {
                close(wfd);
                wfd = -1;
            }
        }
    }
    if (wfd >= 0)
        close(wfd);
    if (outp[0] >= 0)
        close(outp[0]);
    if (errp[0] >= 0)
        close(errp[0]);
    int status = 0;
    rt_proc_reap(pid, &status);
    *ret = (rt_proc_result){ .status = status, .timed_out = timed_out };
    ret->out_len = out.len;
    ret->out = sk_buf_steal(&out);
    ret->err_len = er.len;
    ret->err = sk_buf_steal(&er);
    return 0;
}
