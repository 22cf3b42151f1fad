/* OCI bundles: config.json generation from an ECS container definition and
 * an image config, the root filesystem (overlayfs over unpacked layers), and
 * Docker's default security profile (capabilities, seccomp, masked paths).
 *
 * rt_bundle_config is a pure function of its inputs except for reading the
 * rootfs's /etc/passwd and /etc/group (confined to the rootfs) to resolve
 * user names. Errors are worded for the container's `reason`; err->type is
 * "CannotCreateContainerError" or "CannotStartContainerError". */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "basic/err.h"

typedef struct rt_mount_spec {
    const char *source;
    const char *destination;
    const char *type; /* "bind" (default) or "tmpfs" */
    bool readonly;
    const char *options; /* extra comma-separated options, e.g. "size=64m" */
} rt_mount_spec;

typedef struct rt_container_spec {
    const json_t *container;    /* ECS ContainerDefinition, overrides already merged */
    const json_t *image_config; /* OCI image config "config" object (may be NULL) */
    const char *rootfs;         /* absolute path of the mounted root filesystem */
    const char *hostname;
    const char *cgroup_path; /* cgroupfs-style path for linux.cgroupsPath */
    const char *netns_path;  /* join this netns; NULL: a new one (unless host_network) */
    bool host_network;
    const char *pid_ns_path; /* NULL: own pid namespace (unless host_pid) */
    bool host_pid;
    const char *ipc_ns_path;
    bool host_ipc;
    const rt_mount_spec *mounts; /* volumes, /etc/hosts, /etc/resolv.conf, ... */
    size_t nmounts;
    char *const *env;              /* "K=V" added last (agent-injected variables) */
    const json_t *seccomp_profile; /* Docker-format profile (containers-common), or NULL */
    const char *init_path;         /* tini binary for initProcessEnabled */
    int64_t pids_limit;            /* 0: none */
} rt_container_spec;

int rt_bundle_config(const rt_container_spec *s, json_t **ret, sk_err *err);

/* The process arguments Docker would run: entryPoint/command from the
 * definition merged with the image's Entrypoint/Cmd. */
json_t *rt_bundle_args(const json_t *container, const json_t *image_config);

/* Converts a Docker/containers-common seccomp profile into the OCI form for
 * a container with the given effective capabilities ("CAP_*" strings). */
json_t *rt_seccomp_convert(const json_t *profile, const json_t *caps);

/* The capability set Docker grants by default. */
json_t *rt_default_capabilities(void);

/* Mounts an overlay at target from lower dirs (bottom → top), upper, work. */
int rt_overlay_mount(char *const *lowers, size_t nlowers, const char *upper, const char *work,
                     const char *target, sk_err *err);
/* Lazily unmounts target; absent or not mounted is not an error. */
int rt_umount(const char *target);
/* Whether path is a mount point. */
bool rt_is_mountpoint(const char *path);
