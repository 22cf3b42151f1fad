"""Helpers for the node-agent suite (tests/integration/test_agent_*.py).

These tests run real containers: a skiff server with its embedded node agent
(NodeServer) or separate `skiff agent` processes (Agent), images built from
busybox-static as OCI layouts and pushed to Debian's docker-registry on
loopback (TestRegistry), driven through boto3 and the aws CLI.

Host resources of one agent derive from its data dir (see src/agent/agent.c):
key = sha256(realpath(data dir))[:8]; runc root /run/skiff/<key>/runc, netns
and CNI state /run/skiff/<key>/net, cgroups /skiff/<key>/<task>/<container>,
bridges skb<key> / ska<key>. Everything here works only on resources of the
agents these tests started (other suites may run concurrently on the host):
scratch dirs are /tmp/skiff-agent-it-*, and cleanup touches only our keys.

Leftovers found when a node is torn down are recorded in LEAKS (and then
removed); test_agent_zz_leaks.py asserts that the list stayed empty.
"""
import contextlib
import hashlib
import json
import os
import pathlib
import re
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import uuid

import pytest

import oci_images
from conftest import SKIFF_BIN, Server
from ports import free_port

ACCOUNT = "000000000000"
CLUSTER = "default"
CG_ROOT = pathlib.Path("/sys/fs/cgroup")
CG_CONTROLLERS = ("memory", "cpu", "cpuacct", "pids", "cpuset", "blkio", "devices", "freezer",
                  "systemd")
TMP_PREFIX = "skiff-agent-it-"

# Leftovers found at teardown, across the whole session: (what, detail).
LEAKS = []
# Every agent data dir the suite created (for the final leak check).
ALL_AGENT_DATA = []

# `slow` marks the soak parts: they run by default, `-m "not slow"` skips them.
try:  # registered here so the suite needs no change to conftest.py / pytest.ini
    if pytest.mark._config is not None:
        pytest.mark._config.addinivalue_line(
            "markers", "slow: soak / long-running agent tests (deselect with -m 'not slow')")
except Exception:  # pragma: no cover - older/newer pytest internals
    pass


def new_base(name="t"):
    """A fresh scratch dir /tmp/skiff-agent-it-<name>-XXXX."""
    return pathlib.Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{name}-", dir="/tmp"))


def uniq(prefix="t"):
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def agent_key(data_dir):
    real = os.path.realpath(str(data_dir))
    return hashlib.sha256(real.encode()).hexdigest()[:8]


def derived_subnet(data_dir, awsvpc=False):
    """The subnet the agent derives when SKIFF_*_SUBNET is not set."""
    h = hashlib.sha256(os.path.realpath(str(data_dir)).encode()).digest()
    if awsvpc:
        h = h[2:]
    return f"10.{(128 if awsvpc else 64) + h[0] % 60}.{h[1]}.0/24"



def wait_until(pred, timeout=20.0, interval=0.1, what="condition"):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = pred()
        if last:
            return last
        time.sleep(interval)
    last = pred()
    if last:
        return last
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def sh(cmd, check=False, timeout=60):
    p = subprocess.run(cmd, shell=isinstance(cmd, str), capture_output=True, text=True,
                       timeout=timeout)
    if check:
        assert p.returncode == 0, f"{cmd} failed: {p.stderr}"
    return p


# --- host state probes ---------------------------------------------------------


def mounts_under(path):
    """Mount points (from /proc/self/mountinfo) at or below path."""
    path = os.path.realpath(str(path))
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            mp = line.split()[4].replace("\\040", " ")
            if mp == path or mp.startswith(path + "/"):
                out.append(mp)
    return out


def cgroup_dirs(key):
    """Cgroup directories below /skiff/<key> in every hierarchy (excluding the root)."""
    found = []
    for ctl in CG_CONTROLLERS:
        root = CG_ROOT / ctl / "skiff" / key
        if not root.is_dir():
            continue
        for dirpath, dirnames, _ in os.walk(root):
            for d in dirnames:
                found.append(os.path.join(dirpath, d))
    return found


def netns_files(key):
    d = pathlib.Path(f"/run/skiff/{key}/net")
    if not d.is_dir():
        return []
    return sorted(str(p) for p in d.iterdir() if p.name.startswith("netns"))


def ipam_leases(key):
    """host-local IPAM lease files (one per IP in use) of an agent."""
    d = pathlib.Path(f"/run/skiff/{key}/net/ipam")
    out = []
    if d.is_dir():
        for p in d.rglob("*"):
            if p.is_file() and re.match(r"^\d+\.\d+\.\d+\.\d+$", p.name):
                out.append(str(p))
    return sorted(out)


def bridge_ports(bridge):
    """Interfaces enslaved to bridge (veths of containers)."""
    p = sh(["ip", "-o", "link", "show", "master", bridge])
    if p.returncode != 0:
        return []
    return [l.split(":")[1].strip().split("@")[0] for l in p.stdout.splitlines() if ":" in l]


def link_exists(name):
    return sh(["ip", "link", "show", name]).returncode == 0


def nat_rules():
    return sh(["iptables-save", "-t", "nat"]).stdout.splitlines()


def proc_cmdline(pid):
    try:
        return pathlib.Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return []


def all_pids():
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def monitor_pids(key):
    """skiff-monitor processes serving containers of the agent with this key."""
    root = f"/run/skiff/{key}/runc".encode()
    out = []
    for pid in all_pids():
        cl = proc_cmdline(pid)
        if cl and cl[0].endswith(b"skiff-monitor") and root in cl:
            out.append(pid)
    return out


def runc_containers(key):
    root = f"/run/skiff/{key}/runc"
    if not os.path.isdir(root):
        return []
    p = sh(["runc", "--root", root, "list", "-q"])
    return [l for l in p.stdout.split() if l]


def pid_alive(pid):
    try:
        st = pathlib.Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return st.rsplit(")", 1)[1].split()[0] != "Z"


def fd_count(pid, sockets=True):
    n = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        if not sockets:
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:"):
                    continue
            except OSError:
                continue
        n += 1
    return n


def host_leftovers(key, data_dirs=()):
    """What an agent left on the host: mounts, cgroups, netns files, veths,
    IP leases, monitors and runc containers. Empty dict when clean."""
    left = {}
    m = []
    for d in list(data_dirs) + [f"/run/skiff/{key}"]:
        m += mounts_under(d)
    if m:
        left["mounts"] = m
    if cgroup_dirs(key):
        left["cgroups"] = cgroup_dirs(key)
    if netns_files(key):
        left["netns"] = netns_files(key)
    v = bridge_ports(f"skb{key}") + bridge_ports(f"ska{key}")
    if v:
        left["veths"] = v
    if ipam_leases(key):
        left["ipam"] = ipam_leases(key)
    if monitor_pids(key):
        left["monitors"] = monitor_pids(key)
    if runc_containers(key):
        left["runc"] = runc_containers(key)
    return left


def force_cleanup(key, data_dirs=()):
    """Removes whatever an agent of ours left behind (only its own key)."""
    root = f"/run/skiff/{key}/runc"
    for cid in runc_containers(key):
        sh(["runc", "--root", root, "kill", cid, "KILL"])
        time.sleep(0.2)
        sh(["runc", "--root", root, "delete", "--force", cid])
    for pid in monitor_pids(key):
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    for d in list(data_dirs) + [f"/run/skiff/{key}"]:
        for mp in sorted(mounts_under(d), key=len, reverse=True):
            sh(["umount", "-l", mp])
    for ctl in CG_CONTROLLERS:
        base = CG_ROOT / ctl / "skiff" / key
        if not base.is_dir():
            continue
        for dirpath, dirnames, _ in sorted(os.walk(base), key=lambda x: -len(x[0])):
            with contextlib.suppress(OSError):
                os.rmdir(dirpath)
    # iptables rules referencing our bridges, then the bridges themselves
    for table in ("nat", "filter"):
        for line in sh(["iptables-save", "-t", table]).stdout.splitlines():
            if line.startswith("-A ") and (f"skb{key}" in line or f"ska{key}" in line):
                args = ["iptables", "-t", table, "-D"] + _split_rule(line[3:])
                sh(args)
    for br in (f"skb{key}", f"ska{key}"):
        if link_exists(br):
            sh(["ip", "link", "del", br])
    shutil.rmtree(f"/run/skiff/{key}", ignore_errors=True)


def _split_rule(s):
    return shlex.split(s)


def safe_rmtree(path):
    """rm -rf of one of our scratch dirs, after unmounting anything below it."""
    path = str(path)
    if not os.path.basename(path).startswith(TMP_PREFIX) and "/" + TMP_PREFIX not in path:
        return
    for mp in sorted(mounts_under(path), key=len, reverse=True):
        sh(["umount", "-l", mp])
    if mounts_under(path):
        return
    shutil.rmtree(path, ignore_errors=True)


# --- servers and agents ------------------------------------------------------------

DEFAULT_NODE_ENV = {
    "ECS_ENGINE_TASK_CLEANUP_WAIT_DURATION": "3s",
    "ECS_CONTAINER_STOP_TIMEOUT": "3s",
}


class NodeServer(Server):
    """A skiff server with its embedded node agent (no --no-agent). The agent
    takes its configuration from the server's environment (env=)."""

    def argv(self):
        return [a for a in super().argv() if a != "--no-agent"]

    @property
    def agent_data(self):
        return self.data_dir / "agent"

    @property
    def key(self):
        return agent_key(self.agent_data)

    @property
    def bridge(self):
        return f"skb{self.key}"

    @property
    def awsvpc_bridge(self):
        return f"ska{self.key}"

    def agent_pid(self):
        """pid of the embedded `skiff agent` (a child of the server)."""
        if not self.proc:
            return None
        for pid in all_pids():
            try:
                stat = pathlib.Path(f"/proc/{pid}/stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            if ppid == self.proc.pid and pid_alive(pid):
                cl = proc_cmdline(pid)
                if len(cl) > 1 and cl[1] == b"agent":
                    return pid
        return None

    def instance_arn(self):
        try:
            return json.loads((self.agent_data / "agent.json").read_text())["containerInstanceArn"]
        except (OSError, ValueError, KeyError):
            return None

    def wait_agent(self, timeout=30, cluster=CLUSTER):
        ecs = self.client("ecs")

        def ready():
            arns = ecs.list_container_instances(cluster=cluster).get("containerInstanceArns", [])
            if not arns:
                return None
            ci = ecs.describe_container_instances(cluster=cluster,
                                                  containerInstances=arns)["containerInstances"]
            return [c for c in ci if c.get("agentConnected") and c["status"] == "ACTIVE"]

        try:
            wait_until(ready, timeout, 0.1, "the embedded agent to register")
        except AssertionError:
            raise AssertionError("agent did not register:\n" + self.log()[-4000:])
        return self

    def agent_log(self):
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def teardown(self, cleanup_timeout=25):
        """Stops every task through the API, waits for the agent's cleanup,
        records leftovers, stops the server and removes anything left."""
        key = self.key
        try:
            if self.alive():
                ecs = self.client("ecs")
                stop_all_tasks(ecs)
                tdir = self.agent_data / "tasks"
                try:
                    wait_until(lambda: not tdir.exists() or not any(tdir.iterdir()),
                               cleanup_timeout, 0.25, "the agent to clean up every task")
                except AssertionError:
                    LEAKS.append((f"node {self.data_dir}", "task dirs not cleaned up: " +
                                  ", ".join(p.name for p in tdir.iterdir())))
                left = host_leftovers(key, [self.data_dir])
                if left:
                    LEAKS.append((f"node {self.data_dir}", left))
        finally:
            try:
                if self.alive():
                    self.stop(timeout=30)
            except Exception:
                self.kill9()
            force_cleanup(key, [self.data_dir])


def stop_all_tasks(ecs, timeout=30):
    arns_all = []
    for cl in ecs.list_clusters().get("clusterArns", []):
        arns = []
        for status in ("RUNNING", "PENDING"):
            with contextlib.suppress(Exception):
                arns += ecs.list_tasks(cluster=cl, desiredStatus=status)["taskArns"]
        # tasks already told to stop but still not STOPPED
        with contextlib.suppress(Exception):
            arns += ecs.list_tasks(cluster=cl, desiredStatus="STOPPED")["taskArns"]
        for a in set(arns):
            t = ecs.describe_tasks(cluster=cl, tasks=[a])["tasks"]
            if t and t[0]["lastStatus"] != "STOPPED":
                with contextlib.suppress(Exception):
                    ecs.stop_task(cluster=cl, task=a, reason="test teardown")
                arns_all.append((cl, a))
    deadline = time.monotonic() + timeout
    for cl, a in arns_all:
        while time.monotonic() < deadline:
            t = ecs.describe_tasks(cluster=cl, tasks=[a])["tasks"]
            if not t or t[0]["lastStatus"] == "STOPPED":
                break
            time.sleep(0.25)


def start_node(name="node", env=None, extra_args=(), wait=True):
    base = new_base(name)
    full_env = dict(DEFAULT_NODE_ENV)
    full_env.update(env or {})
    s = NodeServer(base, name=name, env=full_env, extra_args=extra_args)
    s.scratch = base
    ALL_AGENT_DATA.append(str(s.agent_data))
    s.start()
    if wait:
        s.wait_agent()
    return s


LOG_KEEP_DIR = pathlib.Path(tempfile.gettempdir()) / f"{TMP_PREFIX}logs"


def keep_log(path, name):
    """Copies a server/agent log to /tmp/skiff-agent-it-logs/ for post-mortems."""
    with contextlib.suppress(OSError):
        LOG_KEEP_DIR.mkdir(exist_ok=True)
        shutil.copy(str(path), str(LOG_KEEP_DIR / f"{name}-{os.getpid()}-{uuid.uuid4().hex[:6]}.log"))


def stop_node(s):
    try:
        s.teardown()
    finally:
        crash = r"exited with status (?:134|139|6|11)\b|AddressSanitizer|runtime error"
        if s.log_path.exists() and re.search(crash, s.log_path.read_text(errors="replace")):
            keep_log(s.log_path, s.scratch.name)
        safe_rmtree(s.scratch)


@contextlib.contextmanager
def node_ctx(name="node", env=None, **kw):
    s = start_node(name, env, **kw)
    try:
        yield s
    finally:
        stop_node(s)


def node_fixture(env=None, scope="module", name="node"):
    """A fixture running one NodeServer for the module (or function)."""

    @pytest.fixture(scope=scope)
    def _node():
        with node_ctx(name, env) as s:
            yield s

    return _node


@contextlib.contextmanager
def server_ctx(name="srv", env=None, extra_args=()):
    """A plain --no-agent server in a scratch dir of ours, for separate agents."""
    base = new_base(name)
    s = Server(base, name=name, env=env, extra_args=extra_args)
    s.scratch = base
    try:
        yield s.start()
    finally:
        try:
            if s.alive():
                s.stop(timeout=30)
        except Exception:  # noqa: BLE001
            s.kill9()
        safe_rmtree(base)


@contextlib.contextmanager
def agents_ctx(server, *agents):
    """Starts agents; at exit stops every task, waits for the agents' cleanup,
    records leftovers and stops them."""
    try:
        for a in agents:
            if a.proc is None:
                a.start()
        yield agents
    finally:
        ecs = server.client("ecs") if server.alive() else None
        if ecs is not None:
            with contextlib.suppress(Exception):
                stop_all_tasks(ecs)
        for a in agents:
            a.teardown(ecs)


class Agent:
    """A separate `skiff agent` process for a (usually --no-agent) server."""

    def __init__(self, server, base_dir, name="agent", cluster=None, config=None, env=None,
                 runtime=None, config_arg=True):
        self.server = server
        self.base = pathlib.Path(base_dir)
        self.name = name
        self.data_dir = self.base / f"{name}-data"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.cluster = cluster
        self.config_path = None
        if config is not None:
            self.config_path = self.base / f"{name}-ecs.config"
            self.config_path.write_text("".join(f"{k}={v}\n" for k, v in config.items()))
        self.env = dict(env or {})
        self.runtime = runtime
        self.log_path = self.base / f"{name}.log"
        self.proc = None
        ALL_AGENT_DATA.append(str(self.data_dir))

    @property
    def key(self):
        return agent_key(self.data_dir)

    @property
    def bridge(self):
        return f"skb{self.key}"

    @property
    def awsvpc_bridge(self):
        return f"ska{self.key}"

    @property
    def pid(self):
        return self.proc.pid if self.proc and self.proc.poll() is None else None

    data_arg = True  # False: no --data (ECS_DATADIR in env/config names the dir)

    def argv(self):
        a = [SKIFF_BIN, "agent", "--server", self.server.endpoint]
        if self.data_arg:
            a += ["--data", str(self.data_dir)]
        if self.cluster:
            a += ["--cluster", self.cluster]
        if self.config_path:
            a += ["--config", str(self.config_path)]
        if self.runtime:
            a += ["--runtime", self.runtime]
        return a

    def start(self, wait=True, timeout=30):
        env = {k: v for k, v in os.environ.items()
               if not (k.startswith("ECS_") or k.startswith("SKIFF_") or k.startswith("AWS_"))}
        env["AWS_SHARED_CREDENTIALS_FILE"] = str(self.server.credentials_path)
        env.update(self.env)
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.argv(), stdout=self._log, stderr=subprocess.STDOUT,
                                     env=env, start_new_session=True)
        if wait:
            self.wait_registered(timeout)
        return self

    def instance_arn(self):
        try:
            return json.loads((self.data_dir / "agent.json").read_text())["containerInstanceArn"]
        except (OSError, ValueError, KeyError):
            return None

    def wait_registered(self, timeout=30):
        start = len(self.log())

        def done():
            if self.proc.poll() is not None:
                raise AssertionError(f"agent exited {self.proc.returncode}:\n{self.log()[-3000:]}")
            return "registered as " in self.log()[start:] or None

        wait_until(done, timeout, 0.05, "agent registration")
        return self.instance_arn()

    def log(self):
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def kill9(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
        self._close()

    def stop(self, timeout=20):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._close()

    def _close(self):
        if getattr(self, "_log", None):
            self._log.close()
            self._log = None

    def teardown(self, ecs=None, cleanup_timeout=25):
        """Call after the tasks on this agent were stopped (stop_all_tasks)."""
        try:
            if ecs is not None and self.pid:
                tdir = self.data_dir / "tasks"
                try:
                    wait_until(lambda: not tdir.exists() or not any(tdir.iterdir()),
                               cleanup_timeout, 0.25, "agent cleanup")
                except AssertionError:
                    LEAKS.append((f"agent {self.data_dir}", "task dirs not cleaned up"))
                left = host_leftovers(self.key, [self.data_dir])
                if left:
                    LEAKS.append((f"agent {self.data_dir}", left))
        finally:
            self.stop()
            force_cleanup(self.key, [self.data_dir])


# --- images and registries --------------------------------------------------------


class TestRegistry:
    """Debian's docker-registry on loopback that can be halted and resumed on
    the same port and storage, with an access log to count requests."""

    __test__ = False

    def __init__(self, base=None):
        self.dir = str(base or new_base("registry"))
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.cfg = os.path.join(self.dir, "config.yml")
        self.access_log = os.path.join(self.dir, "access.log")
        with open(self.cfg, "w") as f:
            f.write(f"version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: false\n"
                    f"storage:\n  filesystem:\n    rootdirectory: {self.dir}/data\n"
                    f"  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{self.port}\n")
        self.proc = None
        self.resume()

    def resume(self):
        assert self.proc is None
        self._out = open(self.access_log, "ab")
        self.proc = subprocess.Popen(["/usr/bin/docker-registry", "serve", self.cfg],
                                     stdout=self._out, stderr=subprocess.DEVNULL)
        deadline = time.time() + 20
        while time.time() < deadline:
            try:
                urllib.request.urlopen(f"http://{self.host}/v2/", timeout=1)
                return
            except urllib.error.HTTPError:
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("docker-registry did not start")

    def halt(self):
        if self.proc:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None
            self._out.close()

    def push(self, layout, tag, repo, dest_tag=None):
        dest = f"{self.host}/{repo}:{dest_tag or tag}"
        p = subprocess.run(["skopeo", "copy", "--quiet", "--dest-tls-verify=false",
                            f"oci:{layout}:{tag}", f"docker://{dest}"],
                           capture_output=True, text=True, timeout=120)
        assert p.returncode == 0, f"skopeo push failed: {p.stderr}"
        return dest

    def requests(self, pattern=""):
        """Access-log request lines (e.g. 'GET /v2/repo/manifests/')."""
        try:
            data = pathlib.Path(self.access_log).read_text(errors="replace")
        except OSError:
            return []
        return [l for l in data.splitlines() if pattern in l and '"' in l]

    def stop(self):
        self.halt()
        safe_rmtree(self.dir)


# A shell tail that idles until SIGTERM, then exits 0 at once (a plain `sleep`
# as pid 1 ignores SIGTERM and would wait for the stop timeout's SIGKILL).
IDLE = "trap 'exit 0' TERM; sleep 600 & wait"

RECORD_SH = b"""#!/bin/sh
# records how it was invoked: argv, one per line
n=${ECS_CONTAINER_NAME:-x}
{ echo "$0"; for a in "$@"; do echo "$a"; done; } > /out/args.$n
pwd > /out/pwd.$n
"""

STOP_SH = b"""#!/bin/sh
trap 'echo USR1 > /out/signal; exit 0' USR1
trap 'echo TERM > /out/signal; exit 7' TERM
echo ready > /out/ready
while :; do sleep 0.1; done
"""


def build_images(base, reg):
    """Builds the suite's images and pushes them to reg; returns {name: ref}."""
    base = pathlib.Path(base)
    bb = oci_images.busybox_layer()
    tools = oci_images._tar_bytes([
        oci_images._file("record.sh", RECORD_SH, 0o755),
        oci_images._file("stop.sh", STOP_SH, 0o755),
        oci_images._dir("mnt"), oci_images._dir("out", 0o777), oci_images._dir("scratch"),
        oci_images._dir("data"), oci_images._file("etc/marker", b"image-marker\n"),
    ])
    specs = {
        "base": ([bb, tools], {"Cmd": ["/bin/sh"], "Env": ["PATH=/bin"]}),
        "epcmd": ([bb, tools], {
            "Entrypoint": ["/record.sh", "ep-image"], "Cmd": ["cmd-image-1", "cmd-image-2"],
            "Env": ["PATH=/bin", "IMG_ONLY=img", "OVER_TD=img", "OVER_RUN=img",
                    "SPACED=a b"],
            "WorkingDir": "/home/app"}),
        "stopsig": ([bb, tools], {"Cmd": ["/stop.sh"], "Env": ["PATH=/bin"],
                                  "StopSignal": "SIGUSR1"}),
        "userimg": ([bb, tools], {"Cmd": ["/bin/sh"], "Env": ["PATH=/bin"], "User": "app"}),
    }
    refs = {}
    for name, (layers, cfg) in specs.items():
        lay = str(base / f"layout-{name}")
        oci_images.build_layout(lay, layers, config=cfg)
        refs[name] = reg.push(lay, "latest", f"it/{name}")
    return refs


def unique_image(base, reg, name, marker=None, config=None, extra_files=None, repo=None):
    """An image with its own layer (so it shares no unique layer with others)."""
    base = pathlib.Path(base)
    bb = oci_images.busybox_layer()
    files = {"etc/marker": (marker or uuid.uuid4().hex).encode() + b"\n"}
    files.update(extra_files or {})
    lay = str(base / f"layout-{name}")
    oci_images.build_layout(lay, [bb, oci_images.file_layer(files)],
                            config=config or {"Cmd": ["/bin/sh"], "Env": ["PATH=/bin"]})
    return reg.push(lay, "latest", repo or f"it/{name}"), lay


# --- task definitions and tasks -----------------------------------------------------


class Out:
    """A host dir bind-mounted at /out in containers, for their results."""

    def __init__(self, base, name="out"):
        self.path = pathlib.Path(tempfile.mkdtemp(prefix="out-", dir=str(base)))
        os.chmod(self.path, 0o777)
        self.name = name

    @property
    def volume(self):
        return {"name": self.name, "host": {"sourcePath": str(self.path)}}

    @property
    def mount(self):
        return {"sourceVolume": self.name, "containerPath": "/out"}

    def read(self, fname, default=None):
        try:
            return (self.path / fname).read_text()
        except OSError:
            return default

    def wait(self, fname, timeout=20):
        """Waits for the file to exist (and, unless it is empty, to be complete
        as far as a reader can tell: a trailing newline); returns its text."""
        def ready():
            t = self.read(fname)
            return t is not None and (t == "" or t.endswith("\n"))
        wait_until(ready, timeout, 0.05, f"/out/{fname}")
        return self.read(fname)

    def touch(self, fname, data=""):
        (self.path / fname).write_text(data)


def container(name, image, command=None, memory=64, essential=True, out=None, **kw):
    """A container definition; command is passed as is (a list)."""
    c = {"name": name, "image": image, "essential": essential}
    if memory is not None:
        c["memory"] = memory
    if command is not None:
        c["command"] = list(command)
    c.update(kw)
    if out is not None:
        c["mountPoints"] = list(c.get("mountPoints", [])) + [out.mount]
    return c


def shell(name, image, script, **kw):
    """A container running `sh -c script` (entryPoint /bin/sh -c)."""
    c = container(name, image, **kw)
    c["entryPoint"] = ["/bin/sh", "-c"]
    c["command"] = [script]
    return c


def register(ecs, containers, family=None, volumes=(), network_mode=None, **kw):
    family = family or uniq("fam")
    args = dict(family=family, containerDefinitions=containers)
    if volumes:
        args["volumes"] = list(volumes)
    if network_mode:
        args["networkMode"] = network_mode
    args.update(kw)
    return ecs.register_task_definition(**args)["taskDefinition"]["taskDefinitionArn"]


def run(ecs, containers, cluster=CLUSTER, volumes=(), out=None, network_mode=None,
        overrides=None, launch_type=None, network_configuration=None, td_kw=None, **run_kw):
    """Registers a task definition and runs one task; returns its ARN."""
    vols = list(volumes)
    if out is not None:
        vols.append(out.volume)
    td = register(ecs, containers, volumes=vols, network_mode=network_mode, **(td_kw or {}))
    args = dict(cluster=cluster, taskDefinition=td)
    if overrides:
        args["overrides"] = overrides
    if launch_type:
        args["launchType"] = launch_type
    if network_configuration:
        args["networkConfiguration"] = network_configuration
    elif network_mode == "awsvpc":
        args["networkConfiguration"] = {"awsvpcConfiguration": {"subnets": ["subnet-skiff"]}}
    args.update(run_kw)
    r = ecs.run_task(**args)
    assert not r.get("failures"), r["failures"]
    assert len(r["tasks"]) == 1
    return r["tasks"][0]["taskArn"]


def describe(ecs, arn, cluster=CLUSTER):
    out = ecs.describe_tasks(cluster=cluster, tasks=[arn])
    assert out["tasks"], out.get("failures")
    return out["tasks"][0]


def wait_task(ecs, arn, status="RUNNING", timeout=30, cluster=CLUSTER):
    """Waits for lastStatus == status (RUNNING also accepts nothing else: a task
    that stops instead fails the wait with its description)."""
    order = {"PROVISIONING": 0, "PENDING": 1, "ACTIVATING": 2, "RUNNING": 3, "DEACTIVATING": 4,
             "STOPPING": 5, "DEPROVISIONING": 6, "STOPPED": 7}
    deadline = time.monotonic() + timeout
    t = None
    while time.monotonic() < deadline:
        t = describe(ecs, arn, cluster)
        if t["lastStatus"] == status:
            return t
        if order.get(t["lastStatus"], 0) > order.get(status, 0):
            raise AssertionError(f"task reached {t['lastStatus']} while waiting for {status}: "
                                 f"{summary(t)}")
        time.sleep(0.1)
    raise AssertionError(f"task not {status} after {timeout}s: {summary(t)}")


def wait_tasks(ecs, arns, status="STOPPED", timeout=60, cluster=CLUSTER):
    out = {}
    deadline = time.monotonic() + timeout
    pending = list(arns)
    while pending and time.monotonic() < deadline:
        for i in range(0, len(pending), 100):
            for t in ecs.describe_tasks(cluster=cluster, tasks=pending[i:i + 100])["tasks"]:
                if t["lastStatus"] == status:
                    out[t["taskArn"]] = t
        pending = [a for a in pending if a not in out]
        if pending:
            time.sleep(0.2)
    if pending:
        ts = ecs.describe_tasks(cluster=cluster, tasks=pending[:5])["tasks"]
        raise AssertionError(f"{len(pending)} task(s) not {status} after {timeout}s: "
                             + "; ".join(summary(t) for t in ts))
    return [out[a] for a in arns]


def stop_and_wait(ecs, arn, timeout=30, cluster=CLUSTER, reason=None):
    kw = dict(cluster=cluster, task=arn)
    if reason:
        kw["reason"] = reason
    ecs.stop_task(**kw)
    return wait_task(ecs, arn, "STOPPED", timeout, cluster)


def summary(t):
    if not t:
        return "None"
    cs = ", ".join(f"{c['name']}:{c.get('lastStatus')}/exit={c.get('exitCode')}"
                   f"/reason={c.get('reason')!r}" for c in t.get("containers", []))
    return (f"{t['taskArn'].rsplit('/', 1)[1]} last={t['lastStatus']} desired="
            f"{t['desiredStatus']} stopCode={t.get('stopCode')} "
            f"stoppedReason={t.get('stoppedReason')!r} [{cs}]")


def cmap(task):
    return {c["name"]: c for c in task["containers"]}


def task_id(arn):
    return arn.rsplit("/", 1)[1]


def container_dir(node_or_agent_data, arn, name):
    data = getattr(node_or_agent_data, "agent_data", None) or getattr(
        node_or_agent_data, "data_dir", node_or_agent_data)
    return pathlib.Path(data) / "tasks" / task_id(arn) / "containers" / name


def container_pid(data_dir, arn, name):
    p = container_dir(data_dir, arn, name) / "monitor" / "container.pid"
    try:
        return int(p.read_text().strip())
    except (OSError, ValueError):
        return None


# --- fixtures shared by the test_agent_* modules -----------------------------------


@pytest.fixture(scope="session")
def registry():
    reg = TestRegistry()
    yield reg
    reg.stop()


@pytest.fixture(scope="session")
def images(registry):
    base = new_base("images")
    refs = build_images(base, registry)
    refs["_base"] = base
    refs["_registry"] = registry
    yield refs
    safe_rmtree(base)


@pytest.fixture
def scratch():
    base = new_base("scratch")
    yield base
    safe_rmtree(base)


@pytest.fixture
def out(scratch):
    return Out(scratch)
