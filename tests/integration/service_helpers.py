"""Helpers for the service-scheduler and placement tests: a skiff server run
with --no-agent plus `skiff agent` processes started by the test (real runc
agents, one per availability zone, or simulated ones), busybox images served
by a loopback docker-registry, polling helpers, and the cleanup of everything
an agent can leave on the host (containers, mounts, cgroups, bridges,
/run/skiff/<key>).

Only agents created here are ever stopped or cleaned: an agent's host state is
found through its key (the first 8 hex digits of sha256(realpath(data dir))),
exactly as the agent derives it."""
import hashlib
import json
import math
import os
import pathlib
import re
import shutil
import signal
import subprocess
import time
import warnings

import pytest

from conftest import SKIFF_BIN
from ecs_helpers import unique, wait_for  # noqa: F401 (re-exported to the service tests)

REGION = "us-east-1"
ZONES = ("us-east-1a", "us-east-1b", "us-east-1c", "us-east-1d")
RUNC = "/usr/sbin/runc"
CGROUP_ROOT = "/sys/fs/cgroup"

# A container that exits at once on SIGTERM (busybox sh as PID 1 would ignore
# it and wait for the stop timeout).
SLEEP_CMD = ["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"]
# Same, but ignores SIGTERM: it stops only when the stop timeout's SIGKILL comes.
STUBBORN_CMD = ["sh", "-c", "trap '' TERM; while true; do sleep 1; done"]

HEALTHY_DELAY = 1.0  # SKIFF_SERVICE_HEALTHY_DELAY given to every server here


def short_id(arn):
    return arn.rsplit("/", 1)[-1]


def min_healthy(desired, min_percent):
    return math.ceil(desired * min_percent / 100)


def max_total(desired, max_percent):
    return math.floor(desired * max_percent / 100)


def circuit_breaker_threshold(desired):
    return min(max(math.ceil(0.5 * desired), 10), 200)


# --- host requirements --------------------------------------------------------


def real_agents_unavailable():
    """Why real (runc) agents cannot run here, or None."""
    if os.geteuid() != 0:
        return "real agents need root"
    for p in (RUNC, "/usr/bin/docker-registry", "/usr/bin/skopeo", "/bin/busybox"):
        if not os.access(p, os.X_OK):
            return f"{p} is missing"
    monitor = pathlib.Path(SKIFF_BIN).resolve().parent / "src" / "runtime" / "skiff-monitor"
    sibling = pathlib.Path(SKIFF_BIN).resolve().parent / "skiff-monitor"
    if not (monitor.exists() or sibling.exists() or os.environ.get("SKIFF_MONITOR")):
        return "skiff-monitor not found next to the skiff binary"
    return None


# --- images -------------------------------------------------------------------


class Images:
    """busybox images in a loopback registry: .good (tag 1), .good2 (tag 2, a
    different image config so that it is a different digest) and .missing."""

    def __init__(self, base_dir):
        import oci_images
        self.registry = oci_images.Registry()
        layout = os.path.join(base_dir, "busybox-layout")
        base = oci_images.busybox_layer()
        oci_images.build_layout(layout, [base], config={"Cmd": ["sh"], "Env": ["PATH=/bin"]},
                                tag="1")
        oci_images.build_layout(layout, [base], config={"Cmd": ["sh"],
                                                        "Env": ["PATH=/bin", "REV=2"]}, tag="2")
        self.good = self.registry.push(layout, "1", "skiff-test/busybox")
        self.good2 = self.registry.push(layout, "2", "skiff-test/busybox")
        self.missing = f"{self.registry.host}/does-not-exist:1"
        self.host = self.registry.host

    def stop(self):
        self.registry.stop()


# --- agents -------------------------------------------------------------------


def agent_key(data_dir):
    real = os.path.realpath(data_dir)
    return hashlib.sha256(real.encode()).hexdigest()[:8]


class Agent:
    """One `skiff agent` process (one real instance, or N simulated ones)."""

    def __init__(self, base_dir, name, server, cluster, az=None, capacity=None,
                 attributes=None, simulated=False, instances=1, config=None, env=None,
                 insecure_registry=None):
        self.name = name
        self.dir = pathlib.Path(base_dir) / f"agent-{name}"
        self.data_dir = self.dir / "data"
        self.config_path = self.dir / "ecs.config"
        self.log_path = self.dir / "agent.log"
        self.server = server
        self.cluster = cluster
        self.az = az
        self.simulated = simulated
        self.instances = instances
        self.proc = None
        self._log = None
        self.dir.mkdir(parents=True, exist_ok=True)
        self.data_dir.mkdir(exist_ok=True)
        cfg = {
            "ECS_CLUSTER": cluster,
            "ECS_ENGINE_TASK_CLEANUP_WAIT_DURATION": "5s",
            "ECS_CONTAINER_STOP_TIMEOUT": "2s",
        }
        if insecure_registry:
            cfg["SKIFF_INSECURE_REGISTRIES"] = insecure_registry
        if capacity:
            cfg["SKIFF_CAPACITY"] = capacity
        attrs = dict(attributes or {})
        if az:
            attrs["ecs.availability-zone"] = az
        if attrs:
            cfg["ECS_INSTANCE_ATTRIBUTES"] = json.dumps(attrs)
        cfg.update(config or {})
        self.config_path.write_text("".join(f"{k}={v}\n" for k, v in cfg.items()))
        self.env = dict(env or {})

    def argv(self):
        a = [SKIFF_BIN, "agent", "--server", self.server.endpoint, "--cluster", self.cluster,
             "--data", str(self.data_dir), "--config", str(self.config_path)]
        if self.simulated:
            a += ["--runtime=simulated", "--instances", str(self.instances)]
        return a

    def start(self):
        assert not self.alive()
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("AWS_", "SKIFF_", "ECS_"))}
        env["AWS_SHARED_CREDENTIALS_FILE"] = str(self.server.credentials_path)
        env.update(self.env)
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.argv(), stdout=self._log, stderr=subprocess.STDOUT,
                                     env=env, start_new_session=True)
        return self

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def kill9(self):
        if self.alive():
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
        self._close()

    def stop(self, timeout=20):
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._close()

    def _close(self):
        if self._log:
            self._log.close()
            self._log = None

    def log(self, tail=6000):
        try:
            return self.log_path.read_text(errors="replace")[-tail:]
        except OSError:
            return ""

    def registered_arns(self):
        """Container-instance ARNs this agent registered (from its log)."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return []
        seen = []
        for m in re.finditer(r"registered as (arn:\S+)", text):
            if m.group(1) not in seen:
                seen.append(m.group(1))
        return seen

    @property
    def arn(self):
        arns = self.registered_arns()
        assert arns, f"agent {self.name} has not registered:\n{self.log()}"
        return arns[0]

    def instance_data_dirs(self):
        if self.simulated and self.instances > 1:
            return [self.data_dir / f"sim-{k:05d}" for k in range(self.instances)]
        return [self.data_dir]

    def keys(self):
        return [agent_key(d) for d in self.instance_data_dirs() if d.exists()]

    def live_task_dirs(self):
        """Task state dirs the agent still keeps (removed by its cleanup)."""
        out = []
        for d in self.instance_data_dirs():
            t = d / "tasks"
            if t.is_dir():
                out += [p for p in t.iterdir()]
        return out

    def runc_state(self, runtime_id):
        """`runc state` of a container of this (real) agent."""
        root = f"/run/skiff/{agent_key(self.data_dir)}/runc"
        p = subprocess.run([RUNC, "--root", root, "state", runtime_id], capture_output=True,
                           text=True, timeout=20)
        assert p.returncode == 0, f"runc state {runtime_id}: {p.stderr}"
        return json.loads(p.stdout)


def _mounts_under(prefixes):
    out = []
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                mp = line.split()[4].replace("\\040", " ")
                if any(mp == p or mp.startswith(p.rstrip("/") + "/") for p in prefixes):
                    out.append(mp)
    except OSError:
        pass
    return sorted(out, key=len, reverse=True)


def force_cleanup_host(key, data_dir):
    """Removes whatever an agent (key, data_dir) left behind. Returns a list of
    the leftovers found (containers, mounts, cgroups), for reporting."""
    leftovers = []
    run_dir = f"/run/skiff/{key}"
    root = f"{run_dir}/runc"
    if os.path.isdir(root) and os.access(RUNC, os.X_OK):
        p = subprocess.run([RUNC, "--root", root, "list", "-q"], capture_output=True, text=True,
                           timeout=30)
        for cid in p.stdout.split():
            leftovers.append(f"container {cid}")
            subprocess.run([RUNC, "--root", root, "kill", cid, "KILL"], capture_output=True,
                           timeout=30)
            for _ in range(50):
                r = subprocess.run([RUNC, "--root", root, "delete", "--force", cid],
                                   capture_output=True, timeout=30)
                if r.returncode == 0:
                    break
                time.sleep(0.1)
    for mp in _mounts_under([str(data_dir), run_dir]):
        leftovers.append(f"mount {mp}")
        subprocess.run(["umount", "-l", mp], capture_output=True, timeout=30)
    try:
        controllers = os.listdir(CGROUP_ROOT)
    except OSError:
        controllers = []
    cg_dirs = [os.path.join(CGROUP_ROOT, "skiff", key)]
    cg_dirs += [os.path.join(CGROUP_ROOT, c, "skiff", key) for c in controllers]
    for cg in cg_dirs:
        if not os.path.isdir(cg):
            continue
        for dirpath, dirnames, _ in os.walk(cg, topdown=False):
            for d in dirnames:
                sub = os.path.join(dirpath, d)
                try:
                    os.rmdir(sub)
                    leftovers.append(f"cgroup {sub}")
                except OSError:
                    pass
        try:
            os.rmdir(cg)
        except OSError:
            pass
    for br in (f"skb{key}", f"ska{key}"):
        if os.path.exists(f"/sys/class/net/{br}"):
            subprocess.run(["ip", "link", "del", br], capture_output=True, timeout=30)
    shutil.rmtree(run_dir, ignore_errors=True)
    return leftovers


# --- a cluster of agents ------------------------------------------------------


class Fleet:
    """A server (started by the caller with --no-agent) plus agents it owns."""

    def __init__(self, server, base_dir, images=None):
        self.server = server
        self.base_dir = pathlib.Path(base_dir)
        self.images = images
        self.ecs = server.client("ecs")
        self.agents = []
        self.clusters = set()

    def create_cluster(self, name=None, **kw):
        name = name or unique("cl")
        self.ecs.create_cluster(clusterName=name, **kw)
        self.clusters.add(name)
        return name

    def add_agent(self, cluster, name=None, az=None, wait=True, **kw):
        name = name or f"a{len(self.agents)}"
        self.clusters.add(cluster)
        a = Agent(self.base_dir, name, self.server, cluster, az=az,
                  insecure_registry=self.images.host if self.images else None, **kw)
        self.agents.append(a)
        a.start()
        if wait:
            self.wait_registered(a)
        return a

    def wait_registered(self, agent, timeout=30):
        n = agent.instances if agent.simulated else 1
        wait_for(lambda: len(agent.registered_arns()) >= n or None, timeout, 0.05,
                 f"agent {agent.name} to register {n} instance(s)")
        return agent

    def agent_of(self, instance_arn):
        for a in self.agents:
            if instance_arn in a.registered_arns():
                return a
        raise KeyError(instance_arn)

    # --- teardown ---

    def teardown(self):
        """Stops every service and task, lets the agents clean up their
        containers, stops the agents, and removes what is left on the host."""
        problems = []
        if self.server.alive():
            for attempt in range(3):
                for a in self.agents:
                    if not a.alive():
                        if a.proc is not None and a.proc.returncode not in (None, 0, -9):
                            problems.append(f"agent {a.name} had died with exit "
                                            f"{a.proc.returncode}")
                        # A dead agent restarts to reconcile: the server tells
                        # it which of its tasks stopped, and it cleans them up.
                        a.start()
                try:
                    self._stop_everything()
                    break
                except Exception as e:  # keep going: the host must be cleaned
                    problems.append(f"stopping tasks: {e!r}")
                    if all(a.alive() for a in self.agents):
                        break  # retrying only helps when an agent died meanwhile
            if any(not a.simulated for a in self.agents):
                deadline = time.monotonic() + 20
                while time.monotonic() < deadline:
                    if not any(a.live_task_dirs() for a in self.agents if not a.simulated):
                        break
                    time.sleep(0.2)
        for a in self.agents:
            a.stop()
        for a in self.agents:
            for d in a.instance_data_dirs():
                if not d.exists():
                    continue
                left = force_cleanup_host(agent_key(d), d)
                if left and not a.simulated:
                    problems.append(f"agent {a.name}: left behind {left}")
        if problems:
            warnings.warn("fleet teardown: " + "; ".join(problems))
        return problems

    def _stop_everything(self):
        ecs = self.ecs
        for cl in self.clusters:
            try:
                arns = []
                token = None
                while True:
                    kw = {"cluster": cl, "maxResults": 100}
                    if token:
                        kw["nextToken"] = token
                    out = ecs.list_services(**kw)
                    arns += out["serviceArns"]
                    token = out.get("nextToken")
                    if not token:
                        break
                for s in arns:
                    ecs.delete_service(cluster=cl, service=s, force=True)
            except ecs.exceptions.ClusterNotFoundException:
                continue
            for t in list_task_arns(ecs, cl, desiredStatus="RUNNING"):
                try:
                    ecs.stop_task(cluster=cl, task=t, reason="test teardown")
                except Exception:
                    pass
        for cl in self.clusters:
            def all_stopped():
                live = []
                for arns in chunks(list_task_arns(ecs, cl, desiredStatus="RUNNING") +
                                   list_task_arns(ecs, cl, desiredStatus="STOPPED"), 100):
                    for t in ecs.describe_tasks(cluster=cl, tasks=arns)["tasks"]:
                        if t["lastStatus"] != "STOPPED":
                            live.append(t["taskArn"])
                        elif t["desiredStatus"] != "STOPPED":
                            live.append(t["taskArn"])
                for t in list_task_arns(ecs, cl, desiredStatus="RUNNING"):
                    try:
                        ecs.stop_task(cluster=cl, task=t, reason="test teardown")
                    except Exception:
                        pass
                return not live
            try:
                wait_for(all_stopped, 40, 0.3, f"every task of {cl} to stop")
            except ecs.exceptions.ClusterNotFoundException:
                pass


def chunks(seq, n):
    for i in range(0, len(seq), n):
        yield seq[i:i + n]


# --- API helpers ----------------------------------------------------------------


def list_task_arns(ecs, cluster, **kw):
    out, token = [], None
    while True:
        args = dict(cluster=cluster, maxResults=100, **kw)
        if token:
            args["nextToken"] = token
        r = ecs.list_tasks(**args)
        out += r["taskArns"]
        token = r.get("nextToken")
        if not token:
            return out


def describe_tasks(ecs, cluster, arns):
    tasks = []
    for c in chunks(list(arns), 100):
        r = ecs.describe_tasks(cluster=cluster, tasks=c)
        tasks += r["tasks"]
    return tasks


def service_tasks(ecs, cluster, service, include_stopped=True):
    """Every task of a service that ListTasks still returns, described."""
    arns = list_task_arns(ecs, cluster, serviceName=service, desiredStatus="RUNNING")
    if include_stopped:
        arns += [a for a in list_task_arns(ecs, cluster, serviceName=service,
                                           desiredStatus="STOPPED") if a not in arns]
    return describe_tasks(ecs, cluster, arns)


def describe_service(ecs, cluster, service):
    out = ecs.describe_services(cluster=cluster, services=[service])
    assert out["failures"] == [], out["failures"]
    return out["services"][0]


def events(svc):
    """Event messages, oldest first."""
    return [e["message"] for e in reversed(svc.get("events", []))]


def has_event(ecs, cluster, service, pattern):
    msgs = events(describe_service(ecs, cluster, service))
    rx = re.compile(pattern)
    return [m for m in msgs if rx.search(m)]


def is_steady(svc, desired=None):
    desired = svc["desiredCount"] if desired is None else desired
    return (len(svc["deployments"]) == 1 and svc["runningCount"] == desired and
            svc["pendingCount"] == 0 and svc["desiredCount"] == desired and
            svc["deployments"][0].get("rolloutState") in (None, "COMPLETED"))


def wait_steady(ecs, cluster, service, desired=None, timeout=60, interval=0.2):
    def check():
        s = describe_service(ecs, cluster, service)
        return s if is_steady(s, desired) else None
    try:
        return wait_for(check, timeout, interval, f"service {service} to reach a steady state")
    except AssertionError:
        s = describe_service(ecs, cluster, service)
        raise AssertionError(
            f"service {service} not steady after {timeout}s: desired={s['desiredCount']} "
            f"running={s['runningCount']} pending={s['pendingCount']} deployments="
            f"{[(d['status'], d.get('rolloutState'), d['runningCount'], d['pendingCount'], d.get('failedTasks')) for d in s['deployments']]}"
            f"\nevents (oldest first):\n" + "\n".join(events(s)[-15:]))


def register_td(ecs, image, family=None, cpu=64, memory=64, command=None, host_port=None,
                stop_timeout=None, network_mode=None, **kw):
    family = family or unique("fam")
    c = {"name": "app", "image": image, "cpu": cpu, "memory": memory, "essential": True,
         "command": command or SLEEP_CMD}
    if host_port is not None:
        c["portMappings"] = [{"containerPort": 8080, "hostPort": host_port, "protocol": "tcp"}]
    if stop_timeout is not None:
        c["stopTimeout"] = stop_timeout
    if "container" in kw:
        c.update(kw.pop("container"))
    args = dict(family=family, containerDefinitions=[c])
    if network_mode:
        args["networkMode"] = network_mode
    args.update(kw)
    return ecs.register_task_definition(**args)["taskDefinition"]


def instances_by_arn(ecs, cluster):
    arns = ecs.list_container_instances(cluster=cluster, maxResults=100)["containerInstanceArns"]
    if not arns:
        return {}
    out = ecs.describe_container_instances(cluster=cluster, containerInstances=arns)
    return {ci["containerInstanceArn"]: ci for ci in out["containerInstances"]}


def attribute(ci, name):
    for a in ci.get("attributes", []):
        if a["name"] == name:
            return a.get("value")
    return None


def remaining(ci, name):
    for r in ci["remainingResources"]:
        if r["name"] == name:
            return r.get("integerValue") if r["type"] == "INTEGER" else r.get("stringSetValue", [])
    raise KeyError(name)


@pytest.fixture(scope="session")
def images(tmp_path_factory):
    why = real_agents_unavailable()
    if why:
        pytest.skip(why)
    im = Images(str(tmp_path_factory.mktemp("images")))
    yield im
    im.stop()


class Trio:
    """A cluster served by one real agent per zone (us-east-1a/b/c by default)."""

    def __init__(self, fleet, cluster=None, zones=ZONES[:3], **agent_kw):
        self.fleet = fleet
        self.ecs = fleet.ecs
        self.images = fleet.images
        self.cluster = cluster or fleet.create_cluster()
        self.agents = {}
        for z in zones:
            self.agents[z] = fleet.add_agent(self.cluster, name=f"{self.cluster}-{z[-1]}", az=z,
                                             wait=False, **agent_kw)
        for a in self.agents.values():
            fleet.wait_registered(a)
        self.arn = {z: a.arn for z, a in self.agents.items()}
        self.zone_of = {a.arn: z for z, a in self.agents.items()}

    def add(self, zone, **agent_kw):
        a = self.fleet.add_agent(self.cluster, name=f"{self.cluster}-{zone[-1]}", az=zone,
                                 **agent_kw)
        self.agents[zone] = a
        self.arn[zone] = a.arn
        self.zone_of[a.arn] = zone
        return a

    def instances(self):
        return instances_by_arn(self.ecs, self.cluster)

    def td(self, **kw):
        return register_td(self.ecs, kw.pop("image", self.images.good), **kw)


def make_fleet_fixture(server_factory, tmp_path, images, env=None):
    e = {"SKIFF_SERVICE_HEALTHY_DELAY": f"{HEALTHY_DELAY:g}s"}
    e.update(env or {})
    srv = server_factory("main", env=e).start()
    return Fleet(srv, tmp_path, images)
