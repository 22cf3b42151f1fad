#!/usr/bin/python3
"""Node-agent benchmark: skiff's agent (real runc containers) next to bare
runc and skopeo, in one run. See bench/README-agent-scheduler.md.

Phases (--phases, default all):
  startup  RunTask -> RUNNING with a cached image, N sequential tasks per
           network mode (none, host, bridge), interleaved round-robin with
           `runc run -d` of an equivalent bundle (N each). p50/p99 of
           startedAt - createdAt (server-side) and of the client-observed wall
           time (RunTask sent -> DescribeTasks shows RUNNING, polled every 2 ms),
           ratios skiff/runc.
  density  D concurrently running busybox-sleep tasks (networkMode none):
           agent RSS/PSS before and at D, the sum over the per-container
           monitors, the per-container overhead.
  pull     a multi-layer ~200 MB image on Debian's docker-registry: the skiff
           agent pulling it (RunTask, ECS_IMAGE_PULL_BEHAVIOR=always, from
           pullStartedAt/pullStoppedAt), the `skiff image-pull` worker run
           directly, and `skopeo copy docker://... oci:DIR`, interleaved.

Must run as root (runc, cgroups, overlayfs, CNI). Everything it starts
(server, agents, docker-registry, containers, mounts, cgroups, the CNI bridge)
is stopped and removed at exit, also on Ctrl-C."""
import argparse
import atexit
import glob
import hashlib
import json
import os
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

import benchlib as bl
from benchlib import log, pct

sys.path.insert(0, os.path.join(bl.ROOT, "tests", "integration"))
import oci_images  # noqa: E402

RUNC = "/usr/sbin/runc"
MiB = 1024.0


# --------------------------------------------------------------------------
# docker-registry (our own instance; config path avoids the word "skiff")

class Registry:
    def __init__(self, tmp):
        self.dir = os.path.join(tmp, "registry")
        os.makedirs(self.dir)
        self.port = bl.free_port()
        self.host = "127.0.0.1:%d" % self.port
        cfg = os.path.join(self.dir, "config.yml")
        with open(cfg, "w") as f:
            f.write("version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\n"
                    "storage:\n  filesystem:\n    rootdirectory: %s/data\n"
                    "  delete:\n    enabled: true\nhttp:\n  addr: %s\n" % (self.dir, self.host))
        self.proc = bl.spawn(["/usr/bin/docker-registry", "serve", cfg],
                             os.path.join(self.dir, "registry.log"))
        deadline = time.time() + 20
        while time.time() < deadline:
            try:
                urllib.request.urlopen("http://%s/v2/" % self.host, timeout=1)
                return
            except urllib.error.HTTPError:
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("docker-registry did not start")

    def push(self, layout, repo, tag="latest"):
        subprocess.run(["skopeo", "copy", "--quiet", "--dest-tls-verify=false",
                        "oci:%s:latest" % layout, "docker://%s/%s:%s" % (self.host, repo, tag)],
                       check=True, capture_output=True)
        return "%s/%s:%s" % (self.host, repo, tag)

    def stop(self):
        bl.stop_proc(self.proc)


# --------------------------------------------------------------------------
# agent handling

def agent_key(data_dir):
    """The agent's per-data-dir key (agent.c setup(): sha256(realpath)[:8]):
    runc root /run/skiff/KEY/runc, cgroups /skiff/KEY, bridge skbKEY."""
    real = os.path.realpath(data_dir)
    return hashlib.sha256(real.encode()).hexdigest()[:8]


class Agent:
    def __init__(self, ctx, name, cluster, extra_env=None):
        self.ctx = ctx
        self.name = name
        self.cluster = cluster
        self.data = os.path.join(ctx.tmp, name + "-data")
        os.makedirs(self.data, exist_ok=True)
        self.key = agent_key(self.data)
        self.logpath = os.path.join(ctx.tmp, name + ".log")
        env = {"SKIFF_MONITOR": ctx.mon,
               "SKIFF_INSECURE_REGISTRIES": ctx.registry.host,
               "ECS_IMAGE_PULL_BEHAVIOR": "prefer-cached",
               "ECS_ENGINE_TASK_CLEANUP_WAIT_DURATION": "1s",
               "ECS_CONTAINER_STOP_TIMEOUT": "1s",
               "ECS_RESERVED_MEMORY": "0",
               "ECS_DISABLE_IMAGE_CLEANUP": "true"}
        env.update(extra_env or {})
        self.env = bl.agent_env(ctx.server, env)
        self.proc = None
        self.instance_arn = None
        ctx.agents.append(self)

    @property
    def pid(self):
        return self.proc.pid

    @property
    def runc_root(self):
        return "/run/skiff/%s/runc" % self.key

    def start(self):
        c = self.ctx.client
        c.call("CreateCluster", {"clusterName": self.cluster})
        self.proc = bl.spawn([self.ctx.exe, "agent", "--server", self.ctx.server.url,
                              "--cluster", self.cluster, "--data", self.data],
                             self.logpath, env=self.env)
        deadline = time.time() + 30
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("agent %s exited:\n%s" % (self.name, self.log_tail()))
            arns = c.call("ListContainerInstances", {"cluster": self.cluster}).get(
                "containerInstanceArns", [])
            if arns:
                self.instance_arn = arns[0]
                return self
            time.sleep(0.05)
        raise RuntimeError("agent %s did not register" % self.name)

    def log_tail(self, n=30):
        try:
            with open(self.logpath, "rb") as f:
                return "\n".join(f.read().decode("utf-8", "replace").splitlines()[-n:])
        except OSError:
            return ""

    def task_dir(self, task_id):
        return os.path.join(self.data, "tasks", task_id)

    def stop_all_tasks(self, timeout=120):
        """Stops every task of the cluster through the API and waits until the
        agent has cleaned each one up (its task directory is gone)."""
        c = self.ctx.client
        arns = list_all(c, self.cluster, "RUNNING")
        for a in arns:
            c.call("StopTask", {"cluster": self.cluster, "task": a, "reason": "bench cleanup"},
                   check=False)
        deadline = time.time() + timeout
        while time.time() < deadline:
            left = [d for d in glob.glob(os.path.join(self.data, "tasks", "*"))]
            if not left and not list_all(c, self.cluster, "RUNNING"):
                return True
            self.check_alive()
            time.sleep(0.2)
        log("agent %s: tasks not cleaned up after %ds" % (self.name, timeout))
        return False

    def check_alive(self):
        """Raises if the agent process exited (it should never exit on its own)."""
        if self.proc is not None and self.proc.poll() is not None:
            rc = self.proc.returncode
            self.proc = None
            raise RuntimeError("agent %s exited unexpectedly (%s); log tail:\n%s" % (
                self.name, "signal %d" % -rc if rc < 0 else "status %d" % rc,
                self.log_tail(15)))

    def stop(self):
        if self.proc is not None:
            bl.stop_proc(self.proc)
            self.proc = None

    def force_cleanup(self):
        """Fallback when the agent could not clean up: kill and delete every
        container under this agent's runc root, unmount, remove cgroups, netns
        files, the CNI bridges and /run/skiff/KEY. Only this agent's key."""
        leftovers = []
        root = self.runc_root
        if os.path.isdir(root):
            ids = subprocess.run([RUNC, "--root", root, "list", "-q"], capture_output=True,
                                 text=True).stdout.split()
            for cid in ids:
                leftovers.append("container " + cid)
                subprocess.run([RUNC, "--root", root, "kill", cid, "KILL"], capture_output=True)
            time.sleep(0.5 if ids else 0)
            for cid in ids:
                subprocess.run([RUNC, "--root", root, "delete", "-f", cid], capture_output=True)
        for mnt in mounts_under(self.data) + mounts_under("/run/skiff/%s" % self.key):
            leftovers.append("mount " + mnt)
            subprocess.run(["umount", "-l", mnt], capture_output=True)
        for cg in sorted(glob.glob("/sys/fs/cgroup/*/skiff/%s" % self.key)):
            rmdir_tree(cg)
        for link in ("skb" + self.key, "ska" + self.key):
            if os.path.exists("/sys/class/net/" + link):
                subprocess.run(["ip", "link", "del", link], capture_output=True)
        shutil.rmtree("/run/skiff/%s" % self.key, ignore_errors=True)
        subnet = self.bridge_subnet()
        if subnet:
            rules = subprocess.run(["iptables-save"], capture_output=True,
                                   text=True).stdout.splitlines()
            net = subnet.rsplit(".", 1)[0] + "."
            # The subnet's masquerade rule stays by design, like the bridge
            # (removed above): remove it quietly too.
            for r in rules:
                if net in r and "skiff: masquerade" in r and r.startswith("-A "):
                    subprocess.run(["iptables", "-t", "nat", "-D"] + shlex.split(r[3:]),
                                   capture_output=True)
            n = sum(1 for r in rules if net in r and "skiff: masquerade" not in r)
            if n:
                leftovers.append("%d iptables rule(s) mentioning %s (not removed)" % (n, subnet))
        return leftovers

    def bridge_subnet(self):
        try:
            with open(self.logpath, errors="replace") as f:
                m = re.search(r"bridge skb\w+ (\d+\.\d+\.\d+\.\d+/\d+)", f.read())
            return m.group(1) if m else None
        except OSError:
            return None


def mounts_under(prefix):
    prefix = os.path.realpath(prefix)
    out = []
    try:
        with open("/proc/self/mounts") as f:
            for line in f:
                mp = line.split()[1].replace("\\040", " ")
                if mp == prefix or mp.startswith(prefix + "/"):
                    out.append(mp)
    except OSError:
        pass
    return sorted(out, key=len, reverse=True)


def rmdir_tree(path):
    for dirpath, dirnames, _ in sorted(os.walk(path), key=lambda x: -len(x[0])):
        try:
            os.rmdir(dirpath)
        except OSError:
            pass


def list_all(c, cluster, status):
    arns, token = [], None
    while True:
        body = {"cluster": cluster, "desiredStatus": status, "maxResults": 100}
        if token:
            body["nextToken"] = token
        d = c.call("ListTasks", body)
        arns += d.get("taskArns", [])
        token = d.get("nextToken")
        if not token:
            return arns


def describe(c, cluster, arns):
    out = []
    for i in range(0, len(arns), 100):
        out += c.call("DescribeTasks", {"cluster": cluster, "tasks": arns[i:i + 100]})["tasks"]
    return out


def register_td(c, family, image, mode, extra=None):
    cd = {"name": "c", "image": image, "essential": True, "memoryReservation": 6, "cpu": 0}
    cd.update(extra or {})
    c.call("RegisterTaskDefinition", {"family": family, "networkMode": mode,
                                      "containerDefinitions": [cd]})


def task_id(arn):
    return arn.rsplit("/", 1)[1]


def wait_task(c, cluster, arn, want=("RUNNING",), timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        t = c.call("DescribeTasks", {"cluster": cluster, "tasks": [arn]})["tasks"][0]
        if t["lastStatus"] in want:
            return t
        if t["lastStatus"] == "STOPPED":
            raise RuntimeError("task stopped: %s %s" % (
                t.get("stoppedReason"), [x.get("reason") for x in t.get("containers", [])]))
        time.sleep(0.02)
    raise RuntimeError("task %s not %s after %ds" % (arn, want, timeout))


def stop_and_wait_clean(ctx, agent, arn, timeout=60):
    c = ctx.client
    c.call("StopTask", {"cluster": agent.cluster, "task": arn, "reason": "bench"})
    tdir = agent.task_dir(task_id(arn))
    deadline = time.time() + timeout
    while time.time() < deadline:
        t = c.call("DescribeTasks", {"cluster": agent.cluster, "tasks": [arn]})["tasks"][0]
        if t["lastStatus"] == "STOPPED" and not os.path.exists(tdir):
            return
        agent.check_alive()
        time.sleep(0.05)
    raise RuntimeError("task %s not stopped and cleaned up after %ds" % (arn, timeout))


# --------------------------------------------------------------------------
# phase 1: startup latency

def skiff_start_once(ctx, agent, family, poll_s=0.002):
    """RunTask, then poll DescribeTasks every poll_s until RUNNING. Returns the
    sample dict; the task is stopped and cleaned up before returning."""
    c = ctx.client
    cluster = agent.cluster
    run_req = c.sign("RunTask", {"cluster": cluster, "taskDefinition": family,
                                 "startedBy": "agbench"})
    t0 = time.perf_counter()
    st, body = c.send_signed(run_req)
    t_run = time.perf_counter()
    doc = json.loads(body)
    if st != 200 or not doc.get("tasks"):
        raise RuntimeError("RunTask: %d %s" % (st, body[:300]))
    arn = doc["tasks"][0]["taskArn"]
    desc_req = c.sign("DescribeTasks", {"cluster": cluster, "tasks": [arn]})
    polls = 0
    next_t = time.perf_counter()
    while True:
        st, body = c.send_signed(desc_req)
        polls += 1
        now = time.perf_counter()
        t = json.loads(body)["tasks"][0]
        if t["lastStatus"] == "RUNNING":
            t1 = now
            break
        if t["lastStatus"] == "STOPPED" or now - t0 > 120:
            raise RuntimeError("task did not start: %s %s" % (
                t.get("stoppedReason"), [x.get("reason") for x in t.get("containers", [])]))
        next_t += poll_s
        d = next_t - time.perf_counter()
        if d > 0:
            time.sleep(d)
        else:
            next_t = time.perf_counter()
    sample = {"wall_ms": (t1 - t0) * 1000, "runtask_ms": (t_run - t0) * 1000,
              "server_ms": (t["startedAt"] - t["createdAt"]) * 1000, "polls": polls,
              "task": task_id(arn), "createdAt": t["createdAt"], "startedAt": t["startedAt"]}
    stop_and_wait_clean(ctx, agent, arn)
    return sample


LOG_RE = re.compile(r"^(\S+)Z \S+ info: task ([0-9a-f]+): (assigned|RUNNING)")


def agent_log_times(path):
    """{task_id: {'assigned': epoch, 'RUNNING': epoch}} from the agent log
    (millisecond timestamps, same clock as the server's)."""
    import calendar
    out = {}
    with open(path, errors="replace") as f:
        for line in f:
            m = LOG_RE.match(line)
            if not m:
                continue
            ts, ms = m.group(1).split(".")
            epoch = calendar.timegm(time.strptime(ts, "%Y-%m-%dT%H:%M:%S")) + int(ms) / 1000.0
            out.setdefault(m.group(2), {})[m.group(3)] = epoch
    return out


class RuncBaseline:
    """`runc run -d` of an equivalent bundle. The config.json is the one the
    agent generated for a networkMode=none container (same namespaces,
    seccomp profile, capabilities, mounts, rlimits, process), with the rootfs,
    the cgroup path and the /etc files redirected to our own copies. The
    rootfs is the image's overlay, mounted once."""

    def __init__(self, ctx, agent, task_id_, variant):
        self.ctx = ctx
        self.variant = variant  # "skiffcfg" | "skiffcfg+overlay" | "runcspec"
        self.dir = os.path.join(ctx.tmp, "runc-" + variant)
        os.makedirs(self.dir)
        self.root = ctx.runc_root
        self.n = 0
        cdir = os.path.join(agent.data, "tasks", task_id_, "containers", "c")
        with open(os.path.join(cdir, "bundle", "config.json")) as f:
            cfg = json.load(f)
        rootfs_src = cfg["root"]["path"]
        self.lowerdir = overlay_lowerdir(rootfs_src)
        if not self.lowerdir:
            raise RuntimeError("cannot find the overlay lowerdir of %s" % rootfs_src)
        for name in ("hosts", "hostname", "resolv.conf"):
            shutil.copy2(os.path.join(cdir, name), os.path.join(self.dir, name))
        self.rootfs = os.path.join(self.dir, "rootfs")
        os.makedirs(self.rootfs)
        if variant == "runcspec":
            subprocess.run([RUNC, "spec", "--bundle", self.dir], check=True)
            with open(os.path.join(self.dir, "config.json")) as f:
                spec = json.load(f)
            spec["process"]["terminal"] = False
            spec["process"]["args"] = cfg["process"]["args"]
            spec["root"] = {"path": self.rootfs, "readonly": False}
            spec["linux"]["cgroupsPath"] = "/agbench-%d/%s" % (os.getpid(), variant)
            cfg = spec
        else:
            cfg["root"]["path"] = self.rootfs
            cfg["linux"]["cgroupsPath"] = "/agbench-%d/%s" % (os.getpid(), variant)
            for m in cfg.get("mounts", []):
                src = m.get("source", "")
                if src.startswith(cdir + "/"):
                    m["source"] = os.path.join(self.dir, os.path.basename(src))
            if agent.data in json.dumps(cfg):
                log("note: runc baseline config still mentions the agent's paths")
        self.cfg = cfg
        with open(os.path.join(self.dir, "config.json"), "w") as f:
            json.dump(cfg, f)
        self.per_run_overlay = variant == "skiffcfg+overlay"
        if not self.per_run_overlay:
            self.mount_overlay(0)
        ctx.runc_baselines.append(self)

    def mount_overlay(self, i):
        up = os.path.join(self.dir, "upper-%d" % i)
        wk = os.path.join(self.dir, "work-%d" % i)
        os.makedirs(up, exist_ok=True)
        os.makedirs(wk, exist_ok=True)
        subprocess.run(["mount", "-t", "overlay", "overlay", "-o",
                        "lowerdir=%s,upperdir=%s,workdir=%s" % (self.lowerdir, up, wk),
                        self.rootfs], check=True)

    def run_once(self):
        self.n += 1
        cid = "agb-%s-%d-%d" % (self.variant.replace("+", "-"), os.getpid(), self.n)
        t0 = time.perf_counter()
        if self.per_run_overlay:
            mount_call(self.lowerdir, self.dir, self.n, self.rootfs)
        # The container inherits runc's stdio: no pipes (a pipe would never see EOF).
        p = subprocess.run([RUNC, "--root", self.root, "run", "-d", "--bundle", self.dir, cid],
                           stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
        t1 = time.perf_counter()
        if p.returncode != 0:
            err = subprocess.run([RUNC, "--root", self.root, "run", "-d", "--bundle", self.dir,
                                  cid + "-diag"], stdin=subprocess.DEVNULL,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=30)
            raise RuntimeError("runc run failed (%d): %s" % (p.returncode,
                                                             err.stderr.decode()[-500:]))
        subprocess.run([RUNC, "--root", self.root, "kill", cid, "KILL"], capture_output=True)
        subprocess.run([RUNC, "--root", self.root, "delete", "-f", cid], capture_output=True)
        if self.per_run_overlay:
            subprocess.run(["umount", self.rootfs], check=True)
            shutil.rmtree(os.path.join(self.dir, "upper-%d" % self.n), ignore_errors=True)
            shutil.rmtree(os.path.join(self.dir, "work-%d" % self.n), ignore_errors=True)
        return {"wall_ms": (t1 - t0) * 1000}

    def cleanup(self):
        for m in mounts_under(self.dir):
            subprocess.run(["umount", "-l", m], capture_output=True)


_libc = None


def mount_call(lowerdir, d, i, target):
    """mkdir upper/work + mount(2) of a fresh overlay, as the agent does (no exec)."""
    global _libc
    import ctypes
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    up, wk = os.path.join(d, "upper-%d" % i), os.path.join(d, "work-%d" % i)
    os.mkdir(up)
    os.mkdir(wk)
    opts = ("lowerdir=%s,upperdir=%s,workdir=%s" % (lowerdir, up, wk)).encode()
    if _libc.mount(b"overlay", target.encode(), b"overlay", 0, opts) != 0:
        raise OSError(ctypes.get_errno(), "mount overlay on %s" % target)


def overlay_lowerdir(mountpoint):
    with open("/proc/self/mounts") as f:
        for line in f:
            parts = line.split()
            if parts[1] == mountpoint and parts[2] == "overlay":
                for opt in parts[3].split(","):
                    if opt.startswith("lowerdir="):
                        return opt[len("lowerdir="):]
    return None


def summarize(samples, key):
    v = [s[key] for s in samples]
    return {"n": len(v), "p50": pct(v, 50), "p90": pct(v, 90), "p99": pct(v, 99),
            "min": min(v), "max": max(v), "mean": statistics.mean(v)}


def phase_startup(ctx, res):
    c = ctx.client
    agent = Agent(ctx, "ag-start", "agb-start").start()
    modes = ctx.args.modes
    for m in modes:
        register_td(c, "agb-" + m, ctx.image_ref, m)
    # Warm-up: the first task pulls the image; one per mode, not counted.
    log("startup: warm-up (pull + one task per mode)")
    warm = {}
    for m in modes:
        r = c.call("RunTask", {"cluster": agent.cluster, "taskDefinition": "agb-" + m})
        arn = r["tasks"][0]["taskArn"]
        wait_task(c, agent.cluster, arn)
        warm[m] = arn
    # The baselines copy the none-mode container's config while it runs.
    base_mode = "none" if "none" in modes else modes[0]
    tid = task_id(warm[base_mode])
    baselines = [RuncBaseline(ctx, agent, tid, v) for v in ctx.args.runc_variants]
    for arn in warm.values():
        stop_and_wait_clean(ctx, agent, arn)
    for b in baselines:  # warm runc's binary and the page cache too
        b.run_once()
    samples = {("skiff", m): [] for m in modes}
    samples.update({("runc", b.variant): [] for b in baselines})
    n = ctx.args.tasks
    la0 = bl.loadavg()
    busy0, t_start = bl.system_busy_s(), time.time()
    agcpu0, srvcpu0 = bl.proc_cpu_s(agent.pid), bl.proc_cpu_s(ctx.server.pid)
    for i in range(n):
        if i % 10 == 0:
            log("startup: round %d/%d (load %s)" % (i + 1, n, bl.loadavg()))
        for m in modes:
            samples[("skiff", m)].append(skiff_start_once(ctx, agent, "agb-" + m))
        for b in baselines:
            samples[("runc", b.variant)].append(b.run_once())
    wall = time.time() - t_start
    busy = bl.system_busy_s() - busy0
    ntasks = n * len(modes)
    agent_cpu_ms = (bl.proc_cpu_s(agent.pid) - agcpu0) * 1000 / ntasks
    server_cpu_ms = (bl.proc_cpu_s(ctx.server.pid) - srvcpu0) * 1000 / ntasks
    # agent-side breakdown from the agent log (ms resolution)
    times = agent_log_times(agent.logpath)
    for m in modes:
        for s in samples[("skiff", m)]:
            t = times.get(s["task"], {})
            if "assigned" in t and "RUNNING" in t:
                s["to_agent_ms"] = (t["assigned"] - s["createdAt"]) * 1000
                s["agent_ms"] = (t["RUNNING"] - t["assigned"]) * 1000
                s["report_ms"] = (s["startedAt"] - t["RUNNING"]) * 1000
    out = {"n": n, "load_before": la0, "load_after": bl.loadavg(), "wall_s": wall,
           "agent_cpu_ms_per_task": agent_cpu_ms, "server_cpu_ms_per_task": server_cpu_ms,
           "host_busy_cores": busy / wall if wall else 0, "rows": {}}
    for (kind, v), ss in samples.items():
        row = {"wall": summarize(ss, "wall_ms")}
        if kind == "skiff":
            row["server"] = summarize(ss, "server_ms")
            row["runtask"] = summarize(ss, "runtask_ms")
            row["polls_mean"] = statistics.mean(s["polls"] for s in ss)
            for k in ("to_agent_ms", "agent_ms", "report_ms"):
                vals = [s for s in ss if k in s]
                if vals:
                    row[k] = summarize(vals, k)
        row["samples"] = ss
        out["rows"]["%s/%s" % (kind, v)] = row
    out["runc_config"] = {b.variant: {"seccomp": "seccomp" in b.cfg.get("linux", {}),
                                      "namespaces": [x["type"] for x in
                                                     b.cfg["linux"].get("namespaces", [])],
                                      "mounts": len(b.cfg.get("mounts", []))}
                          for b in baselines}
    res["startup"] = out
    agent.stop_all_tasks()
    for b in baselines:
        b.cleanup()


# --------------------------------------------------------------------------
# phase 2: density

def monitor_pids(mon_exe):
    target = os.path.realpath(mon_exe)
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            if os.readlink("/proc/%s/exe" % d) == target:
                out.append(int(d))
        except OSError:
            pass
    return out


def mem_of(pid):
    s = bl.smaps_rollup(pid)
    return {"rss_kib": s.get("Rss"), "pss_kib": s.get("Pss"),
            "anon_kib": s.get("Anonymous"), "vmrss_kib": bl.proc_status_kib(pid, "VmRSS")}


def phase_density(ctx, res):
    c = ctx.client
    n = ctx.args.density
    agent = Agent(ctx, "ag-dens", "agb-dens").start()
    register_td(c, "agb-dens", ctx.image_ref, "none")
    time.sleep(1.0)
    idle = mem_of(agent.pid)
    log("density: warm-up task (pull), then %d tasks" % n)
    r = c.call("RunTask", {"cluster": agent.cluster, "taskDefinition": "agb-dens"})
    arn = r["tasks"][0]["taskArn"]
    wait_task(c, agent.cluster, arn)
    stop_and_wait_clean(ctx, agent, arn)
    time.sleep(1.0)
    before = mem_of(agent.pid)
    la0 = bl.loadavg()
    t0 = time.time()
    arns = []
    left = n
    while left > 0:
        k = min(10, left)
        r = c.call("RunTask", {"cluster": agent.cluster, "taskDefinition": "agb-dens", "count": k})
        if r.get("failures"):
            raise RuntimeError("RunTask failures: %s" % r["failures"])
        arns += [t["taskArn"] for t in r["tasks"]]
        left -= k
    t_calls = time.time() - t0
    deadline = time.time() + 600
    while time.time() < deadline:
        d = c.call("DescribeClusters", {"clusters": [agent.cluster]})["clusters"][0]
        if d["runningTasksCount"] >= n:
            break
        agent.check_alive()
        time.sleep(0.1)
    else:
        raise RuntimeError("only %d of %d tasks RUNNING" % (d["runningTasksCount"], n))
    t_all = time.time() - t0
    time.sleep(2.0)  # let in-flight reports and page faults settle
    at = mem_of(agent.pid)
    mons = monitor_pids(ctx.mon)
    mon_mem = [mem_of(p) for p in mons]
    containers = subprocess.run([RUNC, "--root", agent.runc_root, "list", "-q"],
                                capture_output=True, text=True).stdout.split()
    # sanity: every task RUNNING according to the API
    running = sum(1 for t in describe(c, agent.cluster, arns) if t["lastStatus"] == "RUNNING")
    mon_rss = sum(m["rss_kib"] or 0 for m in mon_mem)
    mon_pss = sum(m["pss_kib"] or 0 for m in mon_mem)
    out = {"n": n, "load_before": la0, "load_at": bl.loadavg(),
           "runtask_calls_s": t_calls, "all_running_s": t_all,
           "agent_idle": idle, "agent_before": before, "agent_at": at,
           "monitors": len(mons), "containers": len(containers), "running_api": running,
           "monitor_rss_kib": mon_rss, "monitor_pss_kib": mon_pss,
           "monitor_rss_each_kib": statistics.mean(m["rss_kib"] or 0 for m in mon_mem)
           if mon_mem else None,
           "monitor_pss_each_kib": statistics.mean(m["pss_kib"] or 0 for m in mon_mem)
           if mon_mem else None}
    for k in ("rss", "pss"):
        delta = (at[k + "_kib"] or 0) - (before[k + "_kib"] or 0)
        out["agent_%s_delta_kib" % k] = delta
        out["per_container_%s_kib" % k] = (delta + out["monitor_%s_kib" % k]) / n
    log("density: %d RUNNING in %.1f s; stopping them" % (n, t_all))
    res["density"] = out
    t1 = time.time()
    agent.stop_all_tasks(timeout=600)
    out["stop_all_s"] = time.time() - t1
    time.sleep(1.0)
    out["agent_after_stop"] = mem_of(agent.pid)
    # Leak check: more rounds of n tasks up and down; the agent's RSS after each
    # round should stay flat (glibc keeps freed heap, so it need not drop).
    out["rounds_after_stop"] = []
    for k in range(1, ctx.args.density_rounds):
        log("density: leak check, round %d: %d tasks up and down" % (k + 1, n))
        left = n
        while left > 0:
            r = c.call("RunTask", {"cluster": agent.cluster, "taskDefinition": "agb-dens",
                                   "count": min(10, left)})
            left -= len(r["tasks"])
            if r.get("failures"):
                raise RuntimeError("RunTask failures: %s" % r["failures"])
        deadline = time.time() + 600
        while c.call("DescribeClusters", {"clusters": [agent.cluster]})["clusters"][0][
                "runningTasksCount"] < n:
            agent.check_alive()
            if time.time() > deadline:
                raise RuntimeError("leak check: tasks did not start")
            time.sleep(0.2)
        at_k = mem_of(agent.pid)
        agent.stop_all_tasks(timeout=600)
        time.sleep(1.0)
        out["rounds_after_stop"].append({"at": at_k, "after": mem_of(agent.pid)})


# --------------------------------------------------------------------------
# phase 3: image pull

def build_big_image(ctx):
    a = ctx.args
    layout = os.path.join(ctx.tmp, "big-img")
    per = a.pull_mb * 1000 * 1000 // a.pull_layers
    log("pull: building a %d MB image (%d random layers + busybox, %s)" % (
        a.pull_mb, a.pull_layers, "gzip" if a.pull_gzip else "uncompressed tar"))
    layers = [oci_images.busybox_layer()]
    for i in range(a.pull_layers):
        layers.append(oci_images.file_layer({"data/l%d.bin" % i: os.urandom(per)}))
    oci_images.build_layout(layout, layers, config={"Cmd": ["sleep", "3600"], "Env": ["PATH=/bin"]},
                            gzip_layers=a.pull_gzip)
    del layers
    with open(os.path.join(layout, "index.json")) as f:
        mdig = json.load(f)["manifests"][0]["digest"].split(":")[1]
    with open(os.path.join(layout, "blobs", "sha256", mdig)) as f:
        man = json.load(f)
    size = sum(l["size"] for l in man["layers"]) + man["config"]["size"]
    ref = ctx.registry.push(layout, "agb-big")
    shutil.rmtree(layout, ignore_errors=True)
    return ref, size, len(man["layers"])


def timed(cmd, tmp):
    """Runs cmd under /usr/bin/time; returns (wall seconds, peak RSS KiB of cmd).
    (os.wait4's ru_maxrss would report the forking Python's size.)"""
    out = os.path.join(tmp, "time.out")
    t0 = time.perf_counter()
    p = subprocess.run(["/usr/bin/time", "-f", "%M", "-o", out] + cmd,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        raise RuntimeError("%s failed: %s" % (cmd[0], p.stderr.decode(errors="replace")[-500:]))
    with open(out) as f:
        rss = int(f.read().split()[-1])
    return wall, rss


def dir_bytes(path):
    total = 0
    for dp, dn, fn in os.walk(path):
        for f in fn:
            try:
                total += os.lstat(os.path.join(dp, f)).st_blocks * 512
            except OSError:
                pass
    return total


def phase_pull(ctx, res):
    c = ctx.client
    ref, size, nlayers = build_big_image(ctx)
    host = ctx.registry.host
    trials = {"skopeo": [], "worker": [], "agent": []}
    for i in range(ctx.args.pull_trials):
        log("pull: trial %d/%d (load %s)" % (i + 1, ctx.args.pull_trials, bl.loadavg()))
        d = os.path.join(ctx.tmp, "skopeo-%d" % i)
        w, rss = timed(["skopeo", "copy", "--quiet", "--src-tls-verify=false",
                        "docker://" + ref, "oci:%s:latest" % d], ctx.tmp)
        trials["skopeo"].append({"s": w, "peak_rss_kib": rss, "disk_bytes": dir_bytes(d)})
        shutil.rmtree(d, ignore_errors=True)
        st = os.path.join(ctx.tmp, "worker-store-%d" % i)
        w, rss = timed([ctx.exe, "image-pull", "--store", st, "--ref", ref, "--insecure", host],
                       ctx.tmp)
        trials["worker"].append({"s": w, "peak_rss_kib": rss, "disk_bytes": dir_bytes(st)})
        shutil.rmtree(st, ignore_errors=True)
        # the agent path: a fresh agent (empty image store) per trial
        ag = Agent(ctx, "ag-pull-%d" % i, "agb-pull-%d" % i,
                   {"ECS_IMAGE_PULL_BEHAVIOR": "always"}).start()
        register_td(c, "agb-big", ref, "none")
        t0 = time.perf_counter()
        r = c.call("RunTask", {"cluster": ag.cluster, "taskDefinition": "agb-big"})
        arn = r["tasks"][0]["taskArn"]
        t = wait_task(c, ag.cluster, arn, timeout=600)
        wall = time.perf_counter() - t0
        trials["agent"].append({"s": t["pullStoppedAt"] - t["pullStartedAt"],
                                "runtask_to_running_s": wall,
                                "pullStartedAt": t["pullStartedAt"],
                                "pullStoppedAt": t["pullStoppedAt"]})
        stop_and_wait_clean(ctx, ag, arn)
        ag.stop()
        shutil.rmtree(os.path.join(ag.data, "images"), ignore_errors=True)
    out = {"ref": ref, "bytes": size, "layers": nlayers, "gzip": ctx.args.pull_gzip,
           "trials": trials}
    for k, v in trials.items():
        med = statistics.median(x["s"] for x in v)
        out[k] = {"median_s": med, "MBps": size / 1e6 / med,
                  "min_s": min(x["s"] for x in v), "max_s": max(x["s"] for x in v)}
    res["pull"] = out


# --------------------------------------------------------------------------
# report

def fmt(v, f="%.1f"):
    return "-" if v is None else f % v


def report(ctx, res):
    a = ctx.args
    L = []
    L.append("skiff node-agent benchmark  (%s)" % res["env"]["header"])
    L.append("binary %s sha256 %s" % (res["env"]["skiff"], res["env"]["sha256"][:16]))
    L.append("")
    st = res.get("startup")
    if st:
        L.append("1. RunTask -> RUNNING, cached image, %d sequential tasks per row, interleaved "
                 "(load %s -> %s; host busy %.2f of %d cores)" % (
                     st["n"], st["load_before"], st["load_after"], st["host_busy_cores"],
                     os.cpu_count()))
        L.append("   %-38s %9s %9s %9s %9s" % ("", "p50 ms", "p99 ms", "min", "max"))
        base = st["rows"].get("runc/skiffcfg") or next(
            (v for k, v in st["rows"].items() if k.startswith("runc/")), None)
        for k, row in st["rows"].items():
            kind, v = k.split("/", 1)
            if kind == "skiff":
                w, s = row["wall"], row["server"]
                L.append("   %-38s %9.1f %9.1f %9.1f %9.1f" % (
                    "skiff %-6s wall (client, 2 ms poll)" % v, w["p50"], w["p99"], w["min"],
                    w["max"]))
                L.append("   %-38s %9.1f %9.1f %9.1f %9.1f" % (
                    "skiff %-6s startedAt - createdAt" % v, s["p50"], s["p99"], s["min"],
                    s["max"]))
            else:
                w = row["wall"]
                label = {"skiffcfg": "runc run -d (same config.json)",
                         "skiffcfg+overlay": "runc run -d + overlay mount each",
                         "runcspec": "runc run -d (`runc spec` config)"}.get(v, v)
                L.append("   %-38s %9.1f %9.1f %9.1f %9.1f" % (label, w["p50"], w["p99"],
                                                                w["min"], w["max"]))
        if base:
            L.append("   ratios skiff / runc run -d (same config.json), goal p50 <= 1.3x, "
                     "p99 <= 2x:")
            for k, row in st["rows"].items():
                if not k.startswith("skiff/"):
                    continue
                bw = base["wall"]
                L.append("     %-8s wall  p50 %5.2fx  p99 %5.2fx   server-side  p50 %5.2fx  "
                         "p99 %5.2fx" % (
                             k.split("/")[1], row["wall"]["p50"] / bw["p50"],
                             row["wall"]["p99"] / bw["p99"], row["server"]["p50"] / bw["p50"],
                             row["server"]["p99"] / bw["p99"]))
        L.append("   CPU per skiff task (start + stop + cleanup, all modes): agent process %.1f ms "
                 "(children such as runc, CNI, monitors not included), server %.1f ms (includes "
                 "serving the bench's 2 ms / 50 ms DescribeTasks polling)" % (
                     st["agent_cpu_ms_per_task"], st["server_cpu_ms_per_task"]))
        L.append("   where the time goes (p50, ms, from agent log timestamps, 1 ms resolution):")
        for k, row in st["rows"].items():
            if k.startswith("skiff/") and "agent_ms" in row:
                L.append("     %-8s createdAt->agent has task %5.1f | agent: task -> RUNNING "
                         "%5.1f | RUNNING -> startedAt %4.1f | RunTask call %4.1f" % (
                             k.split("/")[1], row["to_agent_ms"]["p50"], row["agent_ms"]["p50"],
                             row["report_ms"]["p50"], row["runtask"]["p50"]))
        L.append("")
    de = res.get("density")
    if de:
        n = de["n"]
        L.append("2. Density: %d running busybox-sleep tasks (networkMode none, memoryReservation "
                 "6 MiB, cpu 0), load %s -> %s" % (n, de["load_before"], de["load_at"]))
        L.append("   all %d RUNNING %.1f s after the first RunTask (RunTask calls took %.1f s); "
                 "monitors found %d, runc containers %d, RUNNING per API %d" % (
                     n, de["all_running_s"], de["runtask_calls_s"], de["monitors"],
                     de["containers"], de["running_api"]))
        L.append("   %-44s %10s %10s" % ("", "RSS MiB", "PSS MiB"))
        for lab, key in (("agent idle after registration", "agent_idle"),
                         ("agent before (after 1 warm-up task)", "agent_before"),
                         ("agent at %d tasks" % n, "agent_at"),
                         ("agent after stopping all", "agent_after_stop")):
            m = de.get(key)
            if not m or m.get("rss_kib") is None:
                L.append("   %-44s %10s %10s" % (lab, "-", "-"))
                continue
            L.append("   %-44s %10.2f %10.2f" % (lab, (m["rss_kib"] or 0) / MiB,
                                                 (m["pss_kib"] or 0) / MiB))
        L.append("   %-44s %10.2f %10.2f" % ("monitors, sum over %d" % de["monitors"],
                                             de["monitor_rss_kib"] / MiB,
                                             de["monitor_pss_kib"] / MiB))
        L.append("   %-44s %10.1f %10.1f" % ("monitor, each (KiB)", de["monitor_rss_each_kib"] or 0,
                                             de["monitor_pss_each_kib"] or 0))
        L.append("   %-44s %10.1f %10.1f" % ("agent delta (KiB)", de["agent_rss_delta_kib"],
                                             de["agent_pss_delta_kib"]))
        L.append("   %-44s %10.1f %10.1f" % ("per container (agent delta + monitors)/%d KiB" % n,
                                             de["per_container_rss_kib"],
                                             de["per_container_pss_kib"]))
        tot = (de["agent_at"]["rss_kib"] + de["monitor_rss_kib"]) / MiB
        L.append("   goal: agent RSS <= 10 MiB + <= 256 KiB per container incl. monitors: "
                 "agent %.2f MiB (%s), per container %.0f KiB RSS / %.0f KiB PSS (%s); "
                 "total %.1f MiB vs budget %.1f MiB" % (
                     de["agent_before"]["rss_kib"] / MiB,
                     "ok" if de["agent_before"]["rss_kib"] <= 10 * 1024 else "MISSED",
                     de["per_container_rss_kib"], de["per_container_pss_kib"],
                     "ok" if de["per_container_rss_kib"] <= 256 else "MISSED",
                     tot, 10 + n * 0.25))
        for k, rd in enumerate(de.get("rounds_after_stop") or []):
            L.append("   %-44s %10.2f %10.2f   (at %d: %.2f / %.2f)" % (
                "agent after round %d (leak check)" % (k + 2), (rd["after"]["rss_kib"] or 0) / MiB,
                (rd["after"]["pss_kib"] or 0) / MiB, n, (rd["at"]["rss_kib"] or 0) / MiB,
                (rd["at"]["pss_kib"] or 0) / MiB))
        if de.get("stop_all_s") is not None:
            L.append("   StopTask x %d -> all stopped and cleaned up (runc delete, umount, cgroups) "
                     "in %.1f s (ECS_CONTAINER_STOP_TIMEOUT=1s: busybox sleep as PID 1 ignores "
                     "SIGTERM)" % (n, de["stop_all_s"]))
        L.append("   reference (cited, not run): containerd-shim-runc-v2 costs 5-10 MB RSS per "
                 "container")
        L.append("")
    pu = res.get("pull")
    if pu:
        L.append("3. Image pull: %.1f MB in %d layers (%s) from docker-registry on loopback, "
                 "median of %d" % (pu["bytes"] / 1e6, pu["layers"],
                                   "gzip" if pu["gzip"] else "uncompressed tar",
                                   len(pu["trials"]["skopeo"])))
        L.append("   %-52s %9s %9s %9s" % ("", "median s", "MB/s", "vs skopeo"))
        sk = pu["skopeo"]["MBps"]
        for k, lab in (("agent", "skiff agent (RunTask, pull=always; pullStopped-Started)"),
                       ("worker", "skiff image-pull worker run directly (pull+unpack)"),
                       ("skopeo", "skopeo copy docker:// oci: (download only)")):
            L.append("   %-52s %9.2f %9.1f %8.2fx" % (lab, pu[k]["median_s"], pu[k]["MBps"],
                                                      pu[k]["MBps"] / sk))
        pk = pu["trials"]
        L.append("   peak RSS: worker %.1f MiB, skopeo %.1f MiB; on disk after pull: worker %.0f "
                 "MB (unpacked layers + blobs), skopeo %.0f MB" % (
                     statistics.median(x["peak_rss_kib"] for x in pk["worker"]) / MiB,
                     statistics.median(x["peak_rss_kib"] for x in pk["skopeo"]) / MiB,
                     statistics.median(x["disk_bytes"] for x in pk["worker"]) / 1e6,
                     statistics.median(x["disk_bytes"] for x in pk["skopeo"]) / 1e6))
        L.append("")
    if res.get("problems"):
        L.append("Problems:")
        for p in res["problems"]:
            L.append("   " + p)
    L.append("load average at end: %s" % bl.loadavg())
    return "\n".join(L)


class Ctx:
    pass


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--skiff", default=os.path.join(bl.ROOT, "build", "skiff"))
    ap.add_argument("--phases", default="startup,density,pull")
    ap.add_argument("--tasks", type=int, default=50, help="startup samples per row (50)")
    ap.add_argument("--modes", default="none,host,bridge")
    ap.add_argument("--runc-variants", default="skiffcfg,skiffcfg+overlay,runcspec")
    ap.add_argument("--density", type=int, default=200)
    ap.add_argument("--density-rounds", type=int, default=3,
                    help="rounds of D tasks up and down; rounds after the first are a leak check")
    ap.add_argument("--pull-mb", type=int, default=200)
    ap.add_argument("--pull-layers", type=int, default=5)
    ap.add_argument("--pull-trials", type=int, default=3)
    ap.add_argument("--pull-gzip", action="store_true", help="gzip the layers (default: plain tar)")
    ap.add_argument("--tmpdir", default="/var/tmp")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    ap.add_argument("--quick", action="store_true",
                    help="smoke test: 5 tasks per row, 20 for density, 40 MB pull, 1 trial")
    args = ap.parse_args()
    args.modes = [m for m in args.modes.split(",") if m]
    args.runc_variants = [v for v in args.runc_variants.split(",") if v]
    if args.quick:
        args.tasks, args.density, args.pull_mb, args.pull_trials = 5, 20, 40, 1
    phases = args.phases.split(",")
    if os.geteuid() != 0:
        sys.exit("bench/agent.py: must run as root (runc, cgroups, overlayfs, CNI)")
    for tool in (RUNC, "/usr/bin/skopeo", "/usr/bin/docker-registry"):
        if not os.access(tool, os.X_OK):
            sys.exit("bench/agent.py: %s is required" % tool)

    ctx = Ctx()
    ctx.args = args
    ctx.agents = []
    ctx.runc_baselines = []
    ctx.tmp = tempfile.mkdtemp(prefix="agbench-", dir=args.tmpdir)
    ctx.runc_root = "/run/agbench-%d" % os.getpid()
    res = {"env": {"header": bl.host_header(), "skiff": args.skiff,
                   "sha256": bl.binary_sha256(args.skiff), "args": vars(args)},
           "problems": []}

    def final_cleanup():
        # 1. every agent stops its own tasks (API path, so CNI DEL, umounts, cgroups run)
        for ag in ctx.agents:
            if ag.proc is not None and ag.proc.poll() is None and ctx.server.alive():
                try:
                    ag.stop_all_tasks(timeout=120)
                except Exception as e:
                    res["problems"].append("cleanup of %s: %r" % (ag.name, e))
            ag.stop()
        # 2. anything left: by hand, only under our own keys and directories
        for ag in ctx.agents:
            left = ag.force_cleanup()
            if left:
                res["problems"].append("agent %s left %s (removed by the bench)" % (
                    ag.name, ", ".join(left[:5])))
        if os.path.isdir(ctx.runc_root):
            for cid in subprocess.run([RUNC, "--root", ctx.runc_root, "list", "-q"],
                                      capture_output=True, text=True).stdout.split():
                subprocess.run([RUNC, "--root", ctx.runc_root, "delete", "-f", cid],
                               capture_output=True)
            shutil.rmtree(ctx.runc_root, ignore_errors=True)
        for b in ctx.runc_baselines:
            b.cleanup()
        for m in mounts_under(ctx.tmp):
            subprocess.run(["umount", "-l", m], capture_output=True)
        for cg in glob.glob("/sys/fs/cgroup/*/agbench-%d" % os.getpid()):
            rmdir_tree(cg)
        if getattr(ctx, "server", None):
            ctx.server.stop()
        if getattr(ctx, "registry", None):
            ctx.registry.stop()
        if not args.keep:
            shutil.rmtree(ctx.tmp, ignore_errors=True)
        else:
            log("kept %s" % ctx.tmp)

    bl.CLEANUPS.append(final_cleanup)
    atexit.register(bl.cleanup_all)
    bl.install_signal_handlers()

    rc = 0
    try:
        ctx.exe, ctx.mon = bl.copy_binaries(args.skiff, ctx.tmp)
        if not ctx.mon:
            sys.exit("skiff-monitor not found next to %s" % args.skiff)
        log("tmp %s; starting docker-registry and skiff server (load %s)" % (ctx.tmp,
                                                                              bl.loadavg()))
        ctx.registry = Registry(ctx.tmp)
        layout = os.path.join(ctx.tmp, "bb-img")
        oci_images.build_layout(layout, [oci_images.busybox_layer()],
                                config={"Cmd": ["sleep", "3600"], "Env": ["PATH=/bin"]})
        ctx.image_ref = ctx.registry.push(layout, "agb-busybox")
        ctx.server = bl.SkiffServer(ctx.exe, ctx.tmp).start()
        ctx.client = ctx.server.client()
        for ph, fn in (("startup", phase_startup), ("density", phase_density),
                       ("pull", phase_pull)):
            if ph in phases:
                log("phase %s" % ph)
                try:
                    fn(ctx, res)
                except Exception as e:
                    import traceback
                    traceback.print_exc()
                    res["problems"].append("phase %s failed: %r" % (ph, e))
                    rc = 1
                if not ctx.server.alive():
                    res["problems"].append("server died:\n" + ctx.server.log_tail())
                    rc = 1
                    break
    finally:
        bl.cleanup_all()
    text = report(ctx, res)
    print(text)
    path = bl.save_report("agent", text, res)
    log("saved %s" % path)
    return rc


if __name__ == "__main__":
    sys.exit(main())
