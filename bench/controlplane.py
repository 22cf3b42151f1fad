#!/usr/bin/python3
"""skiff vs moto control-plane benchmark.

Runs skiff (build/skiff server --no-agent) and moto's server side by side in
one run and measures, with the same SigV4-signed requests sent to both:

  1. DescribeTaskDefinition: max throughput (wrk, closed loop) and latency at
     a fixed open-loop rate (bench/loadgen.c, default 1,000 req/s);
  2. RunTask (EC2 launch type, bridge mode, dynamic host ports): the same;
  3. durable RegisterTaskDefinition writes/s against skiff with 1/16/64
     connections (moto at the same concurrencies as an in-memory reference),
     followed by a kill -9 / restart durability check;
  4. RSS: idle right after start, after 10,000 task definitions and after
     10,000 tasks, for skiff and moto.

Must run under Debian's /usr/bin/python3 (botocore is used for signing); moto
itself runs under the python3 that is first on PATH (pyenv) unless
--moto-python says otherwise. bench/controlplane.sh is the entry point.
"""
import argparse
import atexit
import configparser
import datetime
import http.client
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

try:
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials
except ImportError:  # pragma: no cover
    sys.exit("controlplane.py: botocore is required (run it with Debian's /usr/bin/python3)")

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
REGION = "us-east-1"
ECS_TARGET = "AmazonEC2ContainerServiceV20141113."
CLUSTER = "bench"
MOTO_AMI = "ami-03cf127a"  # one of moto's bundled default AMIs
MOTO_INSTANCE_MEMORY = 7482  # moto ignores totalResources: fixed 4096 CPU / 7482 MiB
CLK_TCK = os.sysconf("SC_CLK_TCK")

# Realistic two-container task definition used for the read and RunTask
# benchmarks. Bridge mode, dynamic host ports (no hostPort), awslogs.
# Task-level cpu/memory, and only small soft reservations per container: moto
# gives every container instance a fixed 4096 CPU / 7482 MiB regardless of
# totalResources and sums the *container* reservations, so this keeps moto
# placing every task (see README). (moto also rejects EC2 task definitions that
# have neither container 'memory' nor task-level memory.)
def task_definition(family):
    def logcfg(prefix):
        return {"logDriver": "awslogs",
                "options": {"awslogs-group": "/ecs/bench-web", "awslogs-region": REGION,
                            "awslogs-stream-prefix": prefix}}
    return {
        "family": family,
        "networkMode": "bridge",
        "requiresCompatibilities": ["EC2"],
        "cpu": "256",
        "memory": "512",
        "containerDefinitions": [
            {"name": "web", "image": "public.ecr.aws/nginx/nginx:1.25", "essential": True,
             "memoryReservation": 8,
             "portMappings": [{"containerPort": 80, "protocol": "tcp"},
                              {"containerPort": 443, "protocol": "tcp"}],
             "environment": [{"name": "APP_ENV", "value": "production"},
                             {"name": "LOG_LEVEL", "value": "info"},
                             {"name": "UPSTREAM_URL", "value": "http://127.0.0.1:8080"},
                             {"name": "WORKER_CONNECTIONS", "value": "1024"}],
             "ulimits": [{"name": "nofile", "softLimit": 65536, "hardLimit": 65536}],
             "logConfiguration": logcfg("web")},
            {"name": "metrics", "image": "public.ecr.aws/docker/library/busybox:1.36",
             "essential": False, "memoryReservation": 8,
             "command": ["sh", "-c", "while true; do sleep 60; done"],
             "portMappings": [{"containerPort": 9100, "protocol": "tcp"}],
             "environment": [{"name": "SCRAPE_INTERVAL", "value": "15s"},
                             {"name": "TARGET", "value": "web:80"}],
             "logConfiguration": logcfg("metrics")},
        ],
        "tags": [{"key": "team", "value": "platform"}, {"key": "bench", "value": "controlplane"}],
    }


TD_MEMORY = 16  # MiB reserved per task by task_definition()

# What a current ECS agent reports for an x86_64 Linux host.
AGENT_ATTRIBUTES = (
    ["com.amazonaws.ecs.capability.docker-remote-api.1.%d" % v for v in range(17, 45)]
    + ["com.amazonaws.ecs.capability.logging-driver." + d
       for d in ("json-file", "awslogs", "syslog", "none", "fluentd", "journald", "gelf")]
    + ["com.amazonaws.ecs.capability.privileged-container",
       "com.amazonaws.ecs.capability.ecr-auth",
       "com.amazonaws.ecs.capability.task-iam-role",
       "com.amazonaws.ecs.capability.task-iam-role-network-host",
       "ecs.capability.execution-role-awslogs",
       "ecs.capability.execution-role-ecr-pull",
       "ecs.capability.container-health-check",
       "ecs.capability.container-ordering",
       "ecs.capability.task-eni",
       "ecs.capability.secrets.asm.environment-variables",
       "ecs.capability.secrets.ssm.environment-variables",
       "ecs.capability.docker-plugin.local"]
)
AGENT_VALUED_ATTRIBUTES = {"ecs.os-type": "linux", "ecs.os-family": "LINUX",
                           "ecs.cpu-architecture": "x86_64", "ecs.instance-type": "m5.large",
                           "ecs.availability-zone": "us-east-1a"}


def log(msg):
    print("[%s] %s" % (time.strftime("%H:%M:%S"), msg), file=sys.stderr, flush=True)


def nice_prefix(args):
    return ["nice", "-n", str(args.nice)] if args.nice else []


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def proc_status(pid, field):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])  # kB
    except OSError:
        return None
    return None


def proc_cpu_ticks(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])  # utime + stime (all threads)
    except OSError:
        return 0


def system_busy_ticks():
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    # user nice system idle iowait irq softirq steal
    return v[0] + v[1] + v[2] + v[5] + v[6] + v[7]


def children_cpu_s():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def self_cpu_s():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


# --------------------------------------------------------------------------
# servers

class Server:
    def __init__(self, kind, args, workdir):
        self.kind = kind  # "skiff" | "moto"
        self.args = args
        self.workdir = workdir
        self.port = None
        self.proc = None
        self.logf = None
        self.creds = None
        self.datadir = os.path.join(workdir, "data") if kind == "skiff" else None
        self.logpath = os.path.join(workdir, "server.log")
        self.instance_arns = []
        self.ec2_instance = None

    @property
    def pid(self):
        return self.proc.pid

    @property
    def host(self):
        return "127.0.0.1:%d" % self.port

    def command(self):
        pin = nice_prefix(self.args) + ["taskset", "-c", str(self.args.server_cpu)]
        if self.kind == "skiff":
            return pin + [self.args.skiff, "server", "--no-agent", "--listen", self.host,
                          "--data", self.datadir]
        return pin + [self.args.moto_python, "-m", "moto.server", "-H", "127.0.0.1",
                      "-p", str(self.port)]

    def start(self, reuse_port=False):
        if not reuse_port or not self.port:
            self.port = free_port()
        self.logf = open(self.logpath, "ab")
        self.proc = subprocess.Popen(self.command(), stdout=self.logf, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        RUNNING.append(self)
        self.wait_ready()
        if self.kind == "skiff":
            cp = configparser.ConfigParser()
            cp.read(os.path.join(self.datadir, "credentials"))
            self.creds = Credentials(cp["default"]["aws_access_key_id"],
                                     cp["default"]["aws_secret_access_key"])
        else:
            self.creds = Credentials("testing", "testing")  # moto does not check signatures
        return self

    def wait_ready(self, timeout=60):
        path = "/healthz" if self.kind == "skiff" else "/"
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("%s exited during start (rc %s); log: %s\n%s" % (
                    self.kind, self.proc.returncode, self.logpath, self.log_tail()))
            try:
                c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                c.request("GET", path)
                r = c.getresponse()
                r.read()
                c.close()
                if r.status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.02)
        raise RuntimeError("%s not ready after %ds" % (self.kind, timeout))

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def rss_kib(self):
        return proc_status(self.pid, "VmRSS")

    def rss_detail(self):
        return {k: proc_status(self.pid, k) for k in ("VmRSS", "RssAnon", "RssFile", "RssShmem")}

    def hwm_kib(self):
        return proc_status(self.pid, "VmHWM")

    def cpu_ticks(self):
        return proc_cpu_ticks(self.pid)

    def log_tail(self, n=30):
        try:
            with open(self.logpath, "rb") as f:
                lines = f.read().decode("utf-8", "replace").splitlines()
            return "\n".join(lines[-n:])
        except OSError:
            return ""

    def stop(self, sig=signal.SIGTERM):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(sig)
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self in RUNNING:
            RUNNING.remove(self)
        if self.logf:
            self.logf.close()
            self.logf = None

    def kill9(self):
        self.stop(signal.SIGKILL)

    # ---- signing & calls

    def sign(self, op, body, service="ecs", target=None, ctype=None):
        """Returns the raw HTTP/1.1 request bytes, SigV4-signed by botocore."""
        if isinstance(body, (dict, list)):
            body = json.dumps(body, separators=(",", ":"))
        data = body.encode()
        headers = {}
        if service == "ecs":
            headers["X-Amz-Target"] = (target or ECS_TARGET) + op
            headers["Content-Type"] = "application/x-amz-json-1.1"
        else:
            headers["Content-Type"] = ctype or "application/x-www-form-urlencoded; charset=utf-8"
        req = AWSRequest(method="POST", url="http://%s/" % self.host, data=data, headers=headers)
        SigV4Auth(self.creds, service, REGION).add_auth(req)
        lines = ["POST / HTTP/1.1", "Host: %s" % self.host]
        for k, v in req.headers.items():
            if k.lower() in ("host", "content-length"):
                continue
            lines.append("%s: %s" % (k, v))
        lines.append("Content-Length: %d" % len(data))
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + data

    def call_raw(self, raw, timeout=60):
        head, body = raw.split(b"\r\n\r\n", 1)
        hdrs = {}
        for line in head.decode().split("\r\n")[1:]:
            k, v = line.split(": ", 1)
            hdrs[k] = v
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        c.request("POST", "/", body=body, headers=hdrs)
        r = c.getresponse()
        data = r.read()
        c.close()
        return r.status, data

    def ecs(self, op, body, check=True):
        status, data = self.call_raw(self.sign(op, body))
        try:
            doc = json.loads(data) if data else {}
        except ValueError:
            doc = {"_raw": data[:500].decode("utf-8", "replace")}
        if check and status != 200:
            raise RuntimeError("%s %s -> HTTP %d: %s" % (self.kind, op, status, data[:500]))
        return status, doc


RUNNING = []
SHORT = {"skiff": "sk", "moto": "mo"}


def cleanup():
    for s in list(RUNNING):
        try:
            s.stop(signal.SIGKILL)
        except Exception:
            pass


def on_signal(signo, frame):
    cleanup()
    sys.exit(128 + signo)


# --------------------------------------------------------------------------
# load tools

class Measure:
    """Server CPU, load-generator CPU and foreign CPU (other processes on the
    host) over an interval."""

    def __init__(self, server):
        self.server = server

    def __enter__(self):
        self.t0 = time.time()
        self.s0 = self.server.cpu_ticks()
        self.c0 = children_cpu_s()
        self.m0 = self_cpu_s()
        self.b0 = system_busy_ticks()
        return self

    def __exit__(self, *exc):
        self.wall = time.time() - self.t0
        self.server_cpu = (self.server.cpu_ticks() - self.s0) / CLK_TCK
        self.gen_cpu = children_cpu_s() - self.c0
        me = self_cpu_s() - self.m0
        busy = (system_busy_ticks() - self.b0) / CLK_TCK
        self.foreign_cpu = max(0.0, busy - self.server_cpu - self.gen_cpu - me)
        return False

    def as_dict(self):
        w = self.wall or 1
        return {"wall_s": round(self.wall, 3), "server_cores": round(self.server_cpu / w, 3),
                "loadgen_cores": round(self.gen_cpu / w, 3),
                "other_cores": round(self.foreign_cpu / w, 3)}


UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def to_ms(s):
    m = re.match(r"([\d.]+)(us|ms|s|m)$", s)
    return float(m.group(1)) * UNITS[m.group(2)] if m else None


def write_lua(path, raw):
    head, body = raw.split(b"\r\n\r\n", 1)
    out = ['wrk.method = "POST"', 'wrk.path = "/"',
           "wrk.body = [==[%s]==]" % body.decode(), "wrk.headers = {}"]
    for line in head.decode().split("\r\n")[1:]:
        k, v = line.split(": ", 1)
        if k.lower() == "content-length":
            continue  # wrk adds it from wrk.body
        out.append('wrk.headers["%s"] = [==[%s]==]' % (k, v))
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")


def run_wrk(args, server, raw, conns, duration, tmp):
    lua = os.path.join(tmp, "req-%s.lua" % server.kind)
    write_lua(lua, raw)
    cmd = nice_prefix(args) + ["taskset", "-c", str(args.load_cpu), args.wrk, "-t1", "-c%d" % conns,
           "-d%ds" % duration, "--timeout", "10s", "--latency", "-s", lua,
           "http://%s/" % server.host]
    with Measure(server) as m:
        out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError("wrk failed: %s\n%s" % (out.stderr, out.stdout))
    txt = out.stdout
    r = {"tool": "wrk", "cmd": " ".join(cmd[cmd.index(args.wrk):]), "conns": conns,
         "duration_s": duration}
    mm = re.search(r"Requests/sec:\s+([\d.]+)", txt)
    r["rps"] = float(mm.group(1)) if mm else 0.0
    mm = re.search(r"(\d+) requests in ([\d.]+)(\w+)", txt)
    r["requests"] = int(mm.group(1)) if mm else 0
    mm = re.search(r"Non-2xx or 3xx responses: (\d+)", txt)
    r["non2xx"] = int(mm.group(1)) if mm else 0
    mm = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", txt)
    r["socket_errors"] = sum(int(x) for x in mm.groups()) if mm else 0
    for p in ("50", "75", "90", "99"):
        mm = re.search(r"^\s+%s%%\s+(\S+)" % p, txt, re.M)
        r["p%s_ms" % p] = to_ms(mm.group(1)) if mm else None
    r.update(m.as_dict())
    r["raw"] = txt
    return r


class SyscallCounter:
    """Best effort: counts fsync/fdatasync/pwrite64 of a PID with `perf stat`
    tracepoints (needs perf and root); .counts stays {} when unavailable."""
    EVENTS = ("fsync", "fdatasync", "pwrite64")

    def __init__(self, pid, seconds):
        self.counts = {}
        self.p = None
        perf = shutil.which("perf")
        if not perf:
            return
        ev = ",".join("syscalls:sys_enter_" + e for e in self.EVENTS)
        try:
            self.p = subprocess.Popen([perf, "stat", "-x,", "-e", ev, "-p", str(pid), "--",
                                       "sleep", str(seconds)],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        except OSError:
            self.p = None

    def finish(self):
        if not self.p:
            return self.counts
        try:
            err = self.p.communicate(timeout=30)[1]
        except subprocess.TimeoutExpired:
            self.p.kill()
            return self.counts
        for line in err.splitlines():
            f = line.split(",")
            if len(f) > 2 and f[0].isdigit() and "sys_enter_" in f[2]:
                self.counts[f[2].split("sys_enter_")[1]] = int(f[0])
        return self.counts


def write_reqfile(path, raws):
    with open(path, "wb") as f:
        for raw in raws:
            f.write(b"%d\n" % len(raw))
            f.write(raw)


def run_loadgen(args, server, raws, tmp, conns, duration=None, rate=None, count=None,
                match=None, drain=None):
    reqfile = os.path.join(tmp, "req-%s.bin" % server.kind)
    write_reqfile(reqfile, raws)
    cmd = nice_prefix(args) + ["taskset", "-c", str(args.load_cpu), args.loadgen,
                               "-a", server.host, "-f", reqfile, "-c", str(conns)]
    if duration:
        cmd += ["-d", str(duration)]
    if rate:
        cmd += ["-r", str(rate)]
    if count:
        cmd += ["-n", str(count)]
    if match:
        cmd += ["-m", match]
    if drain is not None:
        cmd += ["-t", str(drain)]
    with Measure(server) as m:
        out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError("loadgen failed (rc %d): %s" % (out.returncode, out.stderr))
    r = json.loads(out.stdout)
    r["tool"] = "loadgen"
    r["cmd"] = " ".join(["loadgen"] + cmd[cmd.index(args.loadgen) + 1:])
    r.update(m.as_dict())
    return r


def median_run(runs):
    s = sorted(runs, key=lambda r: r["rps"])
    return s[len(s) // 2]


# --------------------------------------------------------------------------
# setup helpers

def moto_ec2_instance(server):
    body = ("Action=RunInstances&Version=2016-11-15&ImageId=%s&MinCount=1&MaxCount=1"
            "&InstanceType=m5.large" % MOTO_AMI)
    status, data = server.call_raw(server.sign(None, body, service="ec2"))
    m = re.search(rb"<instanceId>(i-[0-9a-f]+)</instanceId>", data)
    if status != 200 or not m:
        raise RuntimeError("moto RunInstances failed: %d %s" % (status, data[:300]))
    return m.group(1).decode()


def register_instance_body(server, requires):
    attrs = [{"name": a} for a in AGENT_ATTRIBUTES]
    attrs += [{"name": k, "value": v} for k, v in AGENT_VALUED_ATTRIBUTES.items()]
    have = {a["name"] for a in attrs}
    for ra in requires:  # whatever else the task definition needs
        if ra["name"] not in have:
            attrs.append({k: v for k, v in ra.items() if k in ("name", "value")})
    iid = server.ec2_instance or "i-0b1e2c3d4e5f60718"
    doc = {"instanceId": iid, "region": REGION, "availabilityZone": "us-east-1a",
           "instanceType": "m5.large", "accountId": "000000000000",
           "imageId": MOTO_AMI, "architecture": "x86_64", "privateIp": "10.0.1.17"}
    return {
        "cluster": CLUSTER,
        "instanceIdentityDocument": json.dumps(doc),
        "instanceIdentityDocumentSignature": "bench",
        "totalResources": [
            {"name": "CPU", "type": "INTEGER", "integerValue": 100000000},
            {"name": "MEMORY", "type": "INTEGER", "integerValue": 100000000},
            {"name": "PORTS", "type": "STRINGSET",
             "stringSetValue": ["22", "2375", "2376", "51678", "51679"]},
            {"name": "PORTS_UDP", "type": "STRINGSET", "stringSetValue": []},
        ],
        "versionInfo": {"agentVersion": "1.86.0", "agentHash": "bench",
                        "dockerVersion": "DockerVersion: 25.0.3"},
        "attributes": attrs,
    }


def setup_server(server, family="bench-web"):
    """Cluster, the benchmark task definition and one container instance."""
    server.ecs("CreateCluster", {"clusterName": CLUSTER})
    _, doc = server.ecs("RegisterTaskDefinition", task_definition(family))
    td = doc["taskDefinition"]
    server.requires = td.get("requiresAttributes", [])
    if server.kind == "moto":
        server.ec2_instance = moto_ec2_instance(server)
    _, doc = server.ecs("RegisterContainerInstance", register_instance_body(server, server.requires))
    server.instance_arns = [doc["containerInstance"]["containerInstanceArn"]]
    return td


def prepare_runtask(server, expected_tasks):
    """Make sure the next `expected_tasks` RunTask calls can be placed.

    skiff: one instance with 1e8 CPU/MEMORY never fills up, but without an
    agent its agentConnected flag expires 60 s after the last contact; a
    DiscoverPollEndpoint for the instance (what an agent does) refreshes it.
    moto: ignores totalResources (fixed 4096 CPU / 7482 MiB per instance) and
    scans instances in registration order, so full instances are
    force-deregistered and enough fresh ones registered for the phase."""
    if server.kind == "skiff":
        for arn in server.instance_arns:
            server.ecs("DiscoverPollEndpoint", {"cluster": CLUSTER, "containerInstance": arn})
        return
    per_instance = MOTO_INSTANCE_MEMORY // TD_MEMORY
    for arn in server.instance_arns:
        server.ecs("DeregisterContainerInstance",
                   {"cluster": CLUSTER, "containerInstance": arn, "force": True})
    server.instance_arns = []
    need = max(1, -(-int(expected_tasks * 1.2) // per_instance))
    body = register_instance_body(server, server.requires)
    for _ in range(need):
        _, doc = server.ecs("RegisterContainerInstance", body)
        server.instance_arns.append(doc["containerInstance"]["containerInstanceArn"])


def task_count(server):
    _, doc = server.ecs("DescribeClusters", {"clusters": [CLUSTER]})
    c = doc["clusters"][0]
    return c.get("runningTasksCount", 0) + c.get("pendingTasksCount", 0)


def run_task_body(family="bench-web"):
    return {"cluster": CLUSTER, "taskDefinition": family, "count": 1, "launchType": "EC2",
            "startedBy": "bench"}


# --------------------------------------------------------------------------
# phases

def phase_read_and_runtask(args, tmp, results):
    servers = {}
    for kind in ("skiff", "moto"):
        d = tempfile.mkdtemp(prefix="%s-" % SHORT[kind], dir=tmp)
        log("starting %s" % kind)
        servers[kind] = Server(kind, args, d).start()
    time.sleep(1.0)
    for kind, s in servers.items():
        results["rss"].setdefault(kind, {})["idle_phase1_kib"] = s.rss_kib()
        results["rss"][kind]["idle_phase1_detail"] = s.rss_detail()
    tds = {}
    for kind, s in servers.items():
        tds[kind] = setup_server(s)
    # same shape on both sides?
    a, b = tds["skiff"], tds["moto"]
    results["env"]["taskdef_containers"] = [len(a["containerDefinitions"]),
                                            len(b["containerDefinitions"])]
    for kind, s in servers.items():
        _, doc = s.ecs("DescribeTaskDefinition", {"taskDefinition": "bench-web"})
        results["env"]["describe_response_bytes_" + kind] = len(json.dumps(doc))

    for op in ("DescribeTaskDefinition", "RunTask"):
        if {"DescribeTaskDefinition": "describe", "RunTask": "runtask"}[op] not in args.phases:
            continue
        for kind in ("skiff", "moto"):
            s = servers[kind]
            if op == "DescribeTaskDefinition":
                body = {"taskDefinition": "bench-web"}
                match = "taskDefinitionArn"
            else:
                body = run_task_body()
                match = "taskArn"
            res = results.setdefault(op, {}).setdefault(kind, {})
            log("%s on %s: warm-up" % (op, kind))
            if op == "RunTask":
                prepare_runtask(s, 4000 * args.warmup)
            raw = s.sign(op, body)
            run_loadgen(args, s, [raw], tmp, conns=args.conns, duration=args.warmup,
                        match=match)
            # closed-loop max throughput (wrk), median of trials
            trials = []
            for t in range(args.trials):
                if op == "RunTask":
                    prepare_runtask(s, 4000 * args.duration)
                    before = task_count(s)
                raw = s.sign(op, body)
                log("%s on %s: wrk trial %d/%d (%d conns, %ds)" % (
                    op, kind, t + 1, args.trials, args.conns, args.duration))
                r = run_wrk(args, s, raw, args.conns, args.duration, tmp)
                if op == "RunTask":
                    r["tasks_created"] = task_count(s) - before
                    ok = r["requests"] - r["non2xx"]
                    r["placement_ok"] = r["tasks_created"] >= ok
                trials.append(r)
                log("  %.0f req/s, p99 %.2f ms, server %.2f cores, other procs %.2f cores" % (
                    r["rps"], r["p99_ms"] or -1, r["server_cores"], r["other_cores"]))
            res["wrk_trials"] = trials
            res["wrk"] = median_run(trials)
            # open-loop latency at a fixed rate
            if op == "RunTask":
                prepare_runtask(s, args.rate * args.open_duration)
                before = task_count(s)
            raw = s.sign(op, body)
            log("%s on %s: open loop %d req/s for %ds" % (op, kind, args.rate, args.open_duration))
            r = run_loadgen(args, s, [raw], tmp, conns=args.open_conns,
                            duration=args.open_duration, rate=args.rate, match=match,
                            drain=args.drain)
            if op == "RunTask":
                r["tasks_created"] = task_count(s) - before
            res["open"] = r
            log("  p50 %.3f ms p99 %.3f ms, achieved %.0f req/s, incomplete %d" % (
                r["latency_us"]["p50"] / 1000, r["latency_us"]["p99"] / 1000, r["throughput"],
                r["incomplete"]))
            if not s.alive():
                results["problems"].append("%s died during %s; log tail:\n%s" % (
                    kind, op, s.log_tail()))
                break
    for s in servers.values():
        if not s.alive():
            results["problems"].append("%s not alive at end of phase 1/2 (rc %s); log:\n%s" % (
                s.kind, s.proc.returncode, s.log_tail()))
        s.stop()


def phase_writes(args, tmp, results):
    res = results["writes"]
    fam = "bench-write"
    d = tempfile.mkdtemp(prefix="sk-w-", dir=tmp)
    s = Server("skiff", args, d).start()
    s.ecs("CreateCluster", {"clusterName": CLUSTER})
    acked = 0
    raw = s.sign("RegisterTaskDefinition", task_definition(fam))
    r = run_loadgen(args, s, [raw], tmp, conns=16, duration=args.warmup,
                    match="taskDefinitionArn")
    acked += r["ok"]
    runs = {}
    for c in args.write_conns:
        trials = []
        for t in range(args.trials):
            raw = s.sign("RegisterTaskDefinition", task_definition(fam))
            log("RegisterTaskDefinition on skiff: wrk %d conns trial %d/%d" % (c, t + 1, args.trials))
            sc = SyscallCounter(s.pid, args.duration)
            r = run_wrk(args, s, raw, c, args.duration, tmp)
            r["syscalls"] = sc.finish()
            syncs = r["syscalls"].get("fsync", 0) + r["syscalls"].get("fdatasync", 0)
            r["writes_per_sync"] = round(r["requests"] / syncs, 1) if syncs else None
            acked += r["requests"] - r["non2xx"]
            trials.append(r)
            log("  %.0f writes/s, p99 %.2f ms, server %.2f cores, other procs %.2f cores" % (
                r["rps"], r["p99_ms"] or -1, r["server_cores"], r["other_cores"]))
        runs[str(c)] = {"trials": trials, "median": median_run(trials)}
    res["skiff"] = runs
    # Resolving a family name (no :revision) with many revisions: time it, and
    # probe /healthz while it runs (the event loop is single-threaded).
    probe = {}

    def healthz_probe():
        time.sleep(0.05)
        t = time.time()
        c = http.client.HTTPConnection("127.0.0.1", s.port, timeout=300)
        c.request("GET", "/healthz")
        c.getresponse().read()
        probe["healthz_ms"] = (time.time() - t) * 1000.0

    import threading
    th = threading.Thread(target=healthz_probe)
    t = time.time()
    th.start()
    _, doc = s.ecs("DescribeTaskDefinition", {"taskDefinition": fam})
    by_family_ms = (time.time() - t) * 1000.0
    th.join()
    latest = doc["taskDefinition"]["revision"]
    t = time.time()
    s.ecs("DescribeTaskDefinition", {"taskDefinition": "%s:%d" % (fam, latest)})
    by_rev_ms = (time.time() - t) * 1000.0
    res["family_lookup"] = {"revisions": latest, "by_family_ms": round(by_family_ms, 1),
                            "by_family_rev_ms": round(by_rev_ms, 2),
                            "healthz_during_ms": round(probe.get("healthz_ms", -1), 1)}
    log("DescribeTaskDefinition with %d revisions: by family %.0f ms, by family:rev %.1f ms, "
        "/healthz meanwhile %.0f ms" % (latest, by_family_ms, by_rev_ms, probe.get("healthz_ms", -1)))
    db = os.path.join(s.datadir, "state.db")
    res["durability"] = {"acked": acked, "latest_revision_before_kill": latest,
                         "db_bytes": sum(os.path.getsize(p) for p in
                                         (db, db + "-wal", db + "-shm") if os.path.exists(p))}
    log("kill -9 skiff and restart on the same data dir")
    s.kill9()
    s.start(reuse_port=True)
    # by family:revision (resolving the bare family name is O(revisions), see above)
    st1, _ = s.ecs("DescribeTaskDefinition", {"taskDefinition": "%s:%d" % (fam, latest)}, check=False)
    st2, _ = s.ecs("DescribeTaskDefinition", {"taskDefinition": "%s:%d" % (fam, latest + 1)},
                   check=False)
    after = latest if st1 == 200 and st2 != 200 else None
    res["durability"]["latest_revision_after_restart"] = after
    res["durability"]["ok"] = after is not None and after >= acked
    s.stop()

    # moto at the same concurrencies: in-memory reference (not durable)
    if not args.no_moto_writes:
        d = tempfile.mkdtemp(prefix="mo-w-", dir=tmp)
        m = Server("moto", args, d).start()
        m.ecs("CreateCluster", {"clusterName": CLUSTER})
        mres = {}
        for c in args.write_conns:
            raw = m.sign("RegisterTaskDefinition", task_definition(fam))
            log("RegisterTaskDefinition on moto: wrk %d conns" % c)
            r = run_wrk(args, m, raw, c, args.duration, tmp)
            log("  %.0f writes/s" % r["rps"])
            mres[str(c)] = r
        res["moto"] = mres
        m.stop()


def phase_rss(args, tmp, results):
    res = results["rss"]
    servers = {}
    for kind in ("skiff", "moto"):
        d = tempfile.mkdtemp(prefix="%s-rss-" % SHORT[kind], dir=tmp)
        s = Server(kind, args, d).start()
        servers[kind] = s
        time.sleep(0.5)
        res.setdefault(kind, {})["idle_kib"] = s.rss_kib()
        res[kind]["idle_detail"] = s.rss_detail()
    nfam = max(1, args.rss_taskdefs // 10)
    for kind, s in servers.items():
        r = res[kind]
        s.ecs("CreateCluster", {"clusterName": CLUSTER})
        raws = [s.sign("RegisterTaskDefinition", task_definition("rss-fam-%05d" % i))
                for i in range(nfam)]
        log("%s: registering %d task definitions (%d families x %d revisions)" % (
            kind, args.rss_taskdefs, nfam, args.rss_taskdefs // nfam))
        lg = run_loadgen(args, s, raws, tmp, conns=16, count=args.rss_taskdefs,
                         match="taskDefinitionArn")
        r["taskdefs_load"] = lg
        time.sleep(1.0)
        r["after_taskdefs_kib"] = s.rss_kib()
        r["after_taskdefs_detail"] = s.rss_detail()
        # container instance + tasks
        _, doc = s.ecs("DescribeTaskDefinition", {"taskDefinition": "rss-fam-00000"})
        s.requires = doc["taskDefinition"].get("requiresAttributes", [])
        if kind == "moto":
            s.ec2_instance = moto_ec2_instance(s)
        _, doc = s.ecs("RegisterContainerInstance", register_instance_body(s, s.requires))
        s.instance_arns = [doc["containerInstance"]["containerInstanceArn"]]
        prepare_runtask(s, args.rss_tasks)
        raw = s.sign("RunTask", run_task_body("rss-fam-00000"))
        log("%s: running %d tasks" % (kind, args.rss_tasks))
        lg = run_loadgen(args, s, [raw], tmp, conns=16, count=args.rss_tasks, match="taskArn")
        r["tasks_load"] = lg
        r["tasks_in_cluster"] = task_count(s)
        time.sleep(1.0)
        r["after_tasks_kib"] = s.rss_kib()
        r["after_tasks_detail"] = s.rss_detail()
        r["hwm_kib"] = s.hwm_kib()
        if kind == "skiff":
            db = os.path.join(s.datadir, "state.db")
            r["db_bytes"] = sum(os.path.getsize(p) for p in (db, db + "-wal", db + "-shm")
                                if os.path.exists(p))
        log("%s: RSS idle %s KiB, +taskdefs %s KiB, +tasks %s KiB" % (
            kind, r["idle_kib"], r["after_taskdefs_kib"], r["after_tasks_kib"]))
    for s in servers.values():
        if not s.alive():
            results["problems"].append("%s not alive at end of RSS phase; log:\n%s" % (
                s.kind, s.log_tail()))
        s.stop()


# --------------------------------------------------------------------------
# report

def fmt(v, nd=0):
    if v is None:
        return "-"
    if isinstance(v, float):
        return ("%%.%df" % nd) % v
    return str(v)


def lat_ms(us):
    if us is None:
        return "-"
    if us < 0:
        return "inf"  # request never completed (counts as infinite latency)
    return "%.3f" % (us / 1000.0)


def cpu_us_per_req(r):
    if not r.get("rps") or r.get("server_cores") is None:
        return None
    return r["server_cores"] * 1e6 / r["rps"]


def ratio(a, b, nd=1):
    if not a or not b:
        return "-"
    return ("%%.%dfx" % nd) % (a / b)


def mib(kib):
    return "-" if kib is None else "%.1f" % (kib / 1024.0)


def report(args, results):
    L = []
    env = results["env"]
    L.append("skiff control-plane benchmark  %s" % env["date"])
    L.append("=" * 78)
    L.append("host: %s, %d CPUs, kernel %s; data dirs on %s (%s)" % (
        env["host"], env["ncpu"], env["kernel"], env["tmpdir"], env["tmpfs_type"]))
    fs = env.get("fsync", {})
    L.append("disk: 4 KiB write+fdatasync in the data dir: p50 %s ms, p99 %s ms, max %s ms (n=%s)" % (
        fs.get("p50_ms"), fs.get("p99_ms"), fs.get("max_ms"), fs.get("n")))
    if args.nice:
        L.append("priority: servers and load generators run under nice -n %d" % args.nice)
    L.append("pinning: servers on CPU %d (taskset -c %d), wrk/loadgen + this script on CPU %d" % (
        args.server_cpu, args.server_cpu, args.load_cpu))
    sb = env.get("skiff_binary", {})
    L.append("skiff: %s (copied at start; sha256 %s, %s bytes, built %s) server --no-agent" % (
        sb.get("path"), (sb.get("sha256") or "")[:12], sb.get("bytes"), sb.get("mtime")))
    L.append("       (SQLite WAL, synchronous=FULL, responses held until the group commit)")
    L.append("load average at start: %s" % " ".join(env.get("loadavg_at_start", [])))
    L.append("moto:  %s -m moto.server (moto %s, werkzeug threaded; closes the connection "
             "after every response)" % (args.moto_python, env.get("moto_version")))
    L.append("signing: botocore %s SigV4Auth (service ecs, %s); the same signed requests go "
             "to both; wrk/loadgen replay one pre-signed request (valid 15 min)" % (
                 env.get("botocore_version"), REGION))
    L.append("closed loop: %s -t1 -c%d -d%ds --latency, median of %d trials (+%ds warm-up)" % (
        args.wrk, args.conns, args.duration, args.trials, args.warmup))
    L.append("open loop:   bench/loadgen (C, epoll, one thread) -r %d -d %d -c %d (keep-alive "
             "where the server allows); latency measured from the *scheduled* send time "
             "(no coordinated omission); unanswered %ds after the last send = incomplete = inf" % (
                 args.rate, args.open_duration, args.open_conns, args.drain))
    L.append("task definition: 2 containers, portMappings (dynamic host ports), environment, "
             "awslogs; EC2 launch type, bridge mode; describe response %s B (skiff) / %s B (moto)"
             % (env.get("describe_response_bytes_skiff"), env.get("describe_response_bytes_moto")))
    L.append("")

    L.append("ratio column: throughput skiff/moto; latency, CPU per request and RSS moto/skiff "
             "(higher = better for skiff)")
    L.append("")
    row = lambda label, a, b, r="": L.append("%-36s %14s %14s %9s" % (label, a, b, r))
    for op in ("DescribeTaskDefinition", "RunTask"):
        if op not in results:
            continue
        s, m = results[op].get("skiff", {}), results[op].get("moto", {})
        L.append(op + ("  (each skiff RunTask writes a durable task record)" if op == "RunTask" else ""))
        L.append("-" * 78)
        row("", "skiff", "moto", "ratio")
        sw, mw = s.get("wrk", {}), m.get("wrk", {})
        row("max throughput req/s (wrk median)", fmt(sw.get("rps")), fmt(mw.get("rps")),
            ratio(sw.get("rps"), mw.get("rps")))
        row("  trials req/s", "/".join(fmt(t["rps"]) for t in s.get("wrk_trials", [])),
            "/".join(fmt(t["rps"]) for t in m.get("wrk_trials", [])))
        row("  wrk latency p50/p99 ms", "%s/%s" % (fmt(sw.get("p50_ms"), 2), fmt(sw.get("p99_ms"), 2)),
            "%s/%s" % (fmt(mw.get("p50_ms"), 1), fmt(mw.get("p99_ms"), 1)))
        row("  non-2xx / socket errors", "%s/%s" % (sw.get("non2xx"), sw.get("socket_errors")),
            "%s/%s" % (mw.get("non2xx"), mw.get("socket_errors")))
        scpu = cpu_us_per_req(sw)
        mcpu = cpu_us_per_req(mw)
        row("  server CPU us per request", fmt(scpu, 1), fmt(mcpu, 0), ratio(mcpu, scpu))
        row("  CPU cores: server/wrk/other procs",
            "%s/%s/%s" % (fmt(sw.get("server_cores"), 2), fmt(sw.get("loadgen_cores"), 2),
                          fmt(sw.get("other_cores"), 2)),
            "%s/%s/%s" % (fmt(mw.get("server_cores"), 2), fmt(mw.get("loadgen_cores"), 2),
                          fmt(mw.get("other_cores"), 2)))
        if op == "RunTask":
            row("  tasks created / 2xx answers",
                "%s/%s" % (sw.get("tasks_created"), sw.get("requests", 0) - sw.get("non2xx", 0)),
                "%s/%s" % (mw.get("tasks_created"), mw.get("requests", 0) - mw.get("non2xx", 0)))
        so, mo = s.get("open", {}), m.get("open", {})
        sl, ml = so.get("latency_us", {}), mo.get("latency_us", {})
        for key, label in (("p50", "open loop %d req/s: p50 ms" % args.rate),
                           ("p99", "                    p99 ms")):
            sv, mv = sl.get(key), ml.get(key)
            r = ratio(mv, sv, 0) if (mv or -1) > 0 and (sv or -1) > 0 else "-"
            row(label, lat_ms(sv), lat_ms(mv), r)
        row("                    p99.9 / max ms", "%s/%s" % (lat_ms(sl.get("p999")), lat_ms(sl.get("max"))),
            "%s/%s" % (lat_ms(ml.get("p999")), lat_ms(ml.get("max"))))
        row("  achieved req/s", fmt(so.get("throughput")), fmt(mo.get("throughput")))
        row("  ok / non-2xx / body-check fail",
            "%s/%s/%s" % (so.get("ok"), so.get("non2xx"), so.get("mismatch")),
            "%s/%s/%s" % (mo.get("ok"), mo.get("non2xx"), mo.get("mismatch")))
        row("  incomplete / conn errors", "%s/%s" % (so.get("incomplete"), so.get("conn_errors")),
            "%s/%s" % (mo.get("incomplete"), mo.get("conn_errors")))
        row("  waited for a free connection", so.get("queued"), mo.get("queued"))
        row("  TCP connects", so.get("connects"), mo.get("connects"))
        row("  service time p50/p99 ms",
            "%s/%s" % (lat_ms(so.get("service_us", {}).get("p50")), lat_ms(so.get("service_us", {}).get("p99"))),
            "%s/%s" % (lat_ms(mo.get("service_us", {}).get("p50")), lat_ms(mo.get("service_us", {}).get("p99"))))
        row("  loadgen timer lag p50/p99 us",
            "%s/%s" % (fmt(so.get("timer_lag_us", {}).get("p50"), 0), fmt(so.get("timer_lag_us", {}).get("p99"), 0)),
            "%s/%s" % (fmt(mo.get("timer_lag_us", {}).get("p50"), 0), fmt(mo.get("timer_lag_us", {}).get("p99"), 0)))
        row("  CPU cores: server/loadgen/other",
            "%s/%s/%s" % (fmt(so.get("server_cores"), 2), fmt(so.get("loadgen_cores"), 2), fmt(so.get("other_cores"), 2)),
            "%s/%s/%s" % (fmt(mo.get("server_cores"), 2), fmt(mo.get("loadgen_cores"), 2), fmt(mo.get("other_cores"), 2)))
        if op == "RunTask":
            row("  tasks created", so.get("tasks_created"), mo.get("tasks_created"))
        L.append("")

    w = results.get("writes", {})
    if w.get("skiff"):
        L.append("Durable RegisterTaskDefinition (skiff, fsync on; wrk -t1 -cN -d%ds, median of %d)"
                 % (args.duration, args.trials))
        L.append("-" * 78)
        L.append("%-12s %12s %14s %14s %10s %12s" % ("connections", "skiff wr/s", "p50/p99 ms",
                                                     "moto wr/s*", "skiff/moto", "vs etcd 583"))
        for c in args.write_conns:
            r = w["skiff"][str(c)]["median"]
            mr = (w.get("moto") or {}).get(str(c), {})
            L.append("%-12s %12s %14s %14s %10s %12s" % (
                c, fmt(r["rps"]), "%s/%s" % (fmt(r["p50_ms"], 2), fmt(r["p99_ms"], 2)),
                fmt(mr.get("rps")), ratio(r["rps"], mr.get("rps")), ratio(r["rps"], 583.0)))
            L.append("%-12s   trials %s; non-2xx %d; CPU server %.2f / other %.2f cores%s" % (
                "", "/".join(fmt(t["rps"]) for t in w["skiff"][str(c)]["trials"]),
                r["non2xx"], r["server_cores"], r["other_cores"],
                "; %s writes per fdatasync (group commit)" % r["writes_per_sync"]
                if r.get("writes_per_sync") else ""))
        L.append("* moto keeps everything in memory (no durability): reference only.")
        L.append("etcd anchor: ~583 durable writes/s with one client (not run here).")
        fl = w.get("family_lookup")
        if fl:
            L.append("DescribeTaskDefinition after the writes (%d revisions of one family): by family "
                     "name %.1f ms, by family:revision %.2f ms; a /healthz sent meanwhile took %.1f ms"
                     % (fl["revisions"], fl["by_family_ms"], fl["by_family_rev_ms"],
                        fl["healthz_during_ms"]))
        du = w.get("durability", {})
        L.append("durability check: %s acked writes; latest revision %s before kill -9, %s after "
                 "restart -> %s; state.db+wal %.1f MiB" % (
                     du.get("acked"), du.get("latest_revision_before_kill"),
                     du.get("latest_revision_after_restart"),
                     "OK" if du.get("ok") else "FAILED",
                     (du.get("db_bytes") or 0) / 1048576.0))
        L.append("")

    rss = results.get("rss", {})
    if rss.get("skiff", {}).get("after_tasks_kib"):
        s, m = rss["skiff"], rss["moto"]
        L.append("RSS (VmRSS from /proc/PID/status, MiB; fresh servers)")
        L.append("-" * 78)
        row("", "skiff", "moto", "ratio")
        for label, key, dkey in (("idle, right after start", "idle_kib", "idle_detail"),
                                 ("after %d task definitions" % args.rss_taskdefs,
                                  "after_taskdefs_kib", "after_taskdefs_detail"),
                                 ("  + %d RunTask tasks" % args.rss_tasks, "after_tasks_kib",
                                  "after_tasks_detail")):
            row(label, mib(s.get(key)), mib(m.get(key)), ratio(m.get(key), s.get(key)))
            a, b = s.get(dkey) or {}, m.get(dkey) or {}
            row("    of which anon / file-backed", "%s/%s" % (mib(a.get("RssAnon")), mib(a.get("RssFile"))),
                "%s/%s" % (mib(b.get("RssAnon")), mib(b.get("RssFile"))))
        row("peak (VmHWM)", mib(s.get("hwm_kib")), mib(m.get("hwm_kib")),
            ratio(m.get("hwm_kib"), s.get("hwm_kib")))
        row("idle (phase 1 servers, after 1 s)", mib(s.get("idle_phase1_kib")),
            mib(m.get("idle_phase1_kib")))
        for key, label in (("taskdefs_load", "RegisterTaskDefinition"), ("tasks_load", "RunTask")):
            a, b = s.get(key, {}), m.get(key, {})
            row("  %s x%d, req/s" % (label, a.get("scheduled", 0)), fmt(a.get("throughput")),
                fmt(b.get("throughput")), ratio(a.get("throughput"), b.get("throughput")))
            row("    ok / non-2xx / body-check fail",
                "%s/%s/%s" % (a.get("ok"), a.get("non2xx"), a.get("mismatch")),
                "%s/%s/%s" % (b.get("ok"), b.get("non2xx"), b.get("mismatch")))
        row("  tasks in cluster", s.get("tasks_in_cluster"), m.get("tasks_in_cluster"))
        row("  skiff state.db+wal+shm MiB", "%.1f" % ((s.get("db_bytes") or 0) / 1048576.0), "-")
        L.append("")

    # goals
    L.append("Goals")
    L.append("-" * 78)
    goals = []
    for op in ("DescribeTaskDefinition", "RunTask"):
        if op not in results:
            continue
        s, m = results[op].get("skiff", {}), results[op].get("moto", {})
        sr, mr = s.get("wrk", {}).get("rps"), m.get("wrk", {}).get("rps")
        if sr and mr:
            goals.append(("%s throughput >= 100x moto" % op, sr / mr >= 100, "%.1fx" % (sr / mr)))
        p99 = s.get("open", {}).get("latency_us", {}).get("p99")
        if p99 is not None:
            goals.append(("%s p99 <= 2 ms at %d req/s" % (op, args.rate), 0 <= p99 <= 2000,
                          lat_ms(p99) + " ms"))
    if w.get("skiff"):
        for c in args.write_conns:
            v = w["skiff"][str(c)]["median"]["rps"]
            goals.append(("durable writes >= 5000/s at %d conns" % c, v >= 5000, "%.0f/s" % v))
    if rss.get("skiff", {}).get("idle_kib"):
        v = rss["skiff"]["idle_kib"]
        goals.append(("skiff idle RSS <= 10 MiB", v <= 10240, "%.1f MiB" % (v / 1024.0)))
    for name, ok, val in goals:
        L.append("%-48s %-6s %s" % (name, "PASS" if ok else "FAIL", val))
    if results["problems"]:
        L.append("")
        L.append("Problems")
        L.append("-" * 78)
        L.extend(results["problems"])
    oc = [r.get("other_cores", 0) for r in iter_runs(results)]
    if oc and max(oc) > 0.15:
        L.append("")
        L.append("NOTE: other processes used up to %.2f cores during some runs (see the 'other' "
                 "CPU columns); on a 2-CPU host that perturbs throughput and tail latency. The "
                 "'server CPU us per request' rows are the least sensitive to it." % max(oc))
    return "\n".join(L) + "\n"


def sanity_problems(results):
    """Failed requests, failed body checks or missing tasks in any run."""
    out = []

    def check(where, r):
        bad = []
        if r.get("non2xx"):
            bad.append("%d non-2xx" % r["non2xx"])
        if r.get("mismatch"):
            bad.append("%d 2xx answers without the expected object" % r["mismatch"])
        if r.get("conn_errors") or r.get("socket_errors"):
            bad.append("%d connection/socket errors" % (r.get("conn_errors") or r.get("socket_errors")))
        if r.get("placement_ok") is False:
            bad.append("tasks created %s < 2xx answers" % r.get("tasks_created"))
        if bad:
            out.append("%s: %s" % (where, ", ".join(bad)))

    for op in ("DescribeTaskDefinition", "RunTask"):
        for kind, side in results.get(op, {}).items():
            for i, t in enumerate(side.get("wrk_trials", [])):
                check("%s %s wrk trial %d" % (op, kind, i + 1), t)
            if side.get("open"):
                check("%s %s open loop" % (op, kind), side["open"])
    for c, v in (results.get("writes", {}).get("skiff") or {}).items():
        for i, t in enumerate(v["trials"]):
            check("RegisterTaskDefinition skiff %s conns trial %d" % (c, i + 1), t)
    du = results.get("writes", {}).get("durability")
    if du and not du.get("ok"):
        out.append("durability check failed: %s" % du)
    for kind, r in results.get("rss", {}).items():
        for key in ("taskdefs_load", "tasks_load"):
            if r.get(key):
                check("RSS phase %s %s" % (kind, key), r[key])
    return out


def iter_runs(results):
    for op in ("DescribeTaskDefinition", "RunTask"):
        for side in results.get(op, {}).values():
            for t in side.get("wrk_trials", []):
                yield t
            if side.get("open"):
                yield side["open"]
    for c, v in (results.get("writes", {}).get("skiff") or {}).items():
        for t in v["trials"]:
            yield t


def fsync_probe(d, n=200):
    """Latency of a 4 KiB append + fdatasync on the data-dir disk (what every
    group commit pays at least once)."""
    path = os.path.join(d, "fsync-probe")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    lat = []
    try:
        buf = b"x" * 4096
        for _ in range(n):
            t = time.perf_counter()
            os.write(fd, buf)
            os.fdatasync(fd)
            lat.append((time.perf_counter() - t) * 1000.0)
    finally:
        os.close(fd)
        os.unlink(path)
    lat.sort()
    return {"n": n, "p50_ms": round(lat[n // 2], 3), "p99_ms": round(lat[int(n * 0.99) - 1], 3),
            "max_ms": round(lat[-1], 3)}


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--skiff", default=os.path.join(ROOT, "build", "skiff"))
    ap.add_argument("--moto-python", default=None,
                    help="python with moto installed (default: first python3 on PATH)")
    ap.add_argument("--wrk", default=shutil.which("wrk") or "/usr/bin/wrk")
    ap.add_argument("--duration", type=int, default=10, help="seconds per wrk run (10)")
    ap.add_argument("--trials", type=int, default=3, help="wrk runs per measurement (3)")
    ap.add_argument("--warmup", type=int, default=2, help="warm-up seconds (2)")
    ap.add_argument("--conns", type=int, default=64, help="wrk connections (64)")
    ap.add_argument("--rate", type=int, default=1000, help="open-loop rate (1000 req/s)")
    ap.add_argument("--open-duration", type=int, default=10, help="open-loop seconds (10)")
    ap.add_argument("--open-conns", type=int, default=64, help="open-loop connection pool (64)")
    ap.add_argument("--drain", type=int, default=30,
                    help="open loop: seconds to wait for answers after the last send (30)")
    ap.add_argument("--write-conns", default="1,16,64")
    ap.add_argument("--no-moto-writes", action="store_true",
                    help="skip the moto reference runs for RegisterTaskDefinition")
    ap.add_argument("--rss-taskdefs", type=int, default=10000)
    ap.add_argument("--rss-tasks", type=int, default=10000)
    ap.add_argument("--phases", default="describe,runtask,writes,rss")
    ap.add_argument("--server-cpu", type=int, default=0)
    ap.add_argument("--load-cpu", type=int, default=1)
    ap.add_argument("--tmpdir", default="/var/tmp",
                    help="parent for temporary data dirs (should be a real disk, not tmpfs)")
    ap.add_argument("--results", default=os.path.join(HERE, "results"))
    ap.add_argument("--nice", type=int, default=0,
                    help="run servers and load generators under nice -n N (e.g. -10 on a "
                         "busy host; needs root for negative values)")
    ap.add_argument("--keep", action="store_true",
                    help="keep the temporary data dirs and server logs")
    ap.add_argument("--quick", action="store_true",
                    help="smoke test: 2 s runs, 1 trial, 1,000 task definitions/tasks")
    args = ap.parse_args()
    if args.quick:
        args.duration, args.trials, args.warmup, args.open_duration = 2, 1, 1, 2
        args.drain = 5
        args.rss_taskdefs = args.rss_tasks = 1000
    args.write_conns = [int(x) for x in args.write_conns.split(",") if x]
    args.phases = [p.strip().lower() for p in args.phases.split(",")]

    if not os.access(args.skiff, os.X_OK):
        sys.exit("controlplane.py: %s not found; run `make build` first" % args.skiff)
    if not os.access(args.wrk, os.X_OK):
        sys.exit("controlplane.py: wrk not found (apt-get install wrk)")
    if args.moto_python is None:
        py = None
        for d in os.environ.get("PATH", "").split(os.pathsep):
            cand = os.path.join(d, "python3")
            if os.access(cand, os.X_OK):
                py = cand
                break
        if not py:
            sys.exit("controlplane.py: no python3 on PATH for moto")
        args.moto_python = py
    # resolve pyenv shims to the real interpreter so the server PID is python's
    out = subprocess.run([args.moto_python, "-c",
                          "import sys, moto; print(sys.executable); print(moto.__version__)"],
                         capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit("controlplane.py: %s cannot import moto:\n%s" % (args.moto_python, out.stderr))
    args.moto_python, moto_version = out.stdout.split()
    ncpu = os.cpu_count()
    if max(args.server_cpu, args.load_cpu) >= ncpu:
        args.server_cpu, args.load_cpu = 0, 0
    os.sched_setaffinity(0, {args.load_cpu})

    atexit.register(cleanup)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    # Names without "skiff"/"moto" in them: on a shared host, someone else's
    # `pkill skiff` / `killall skiff` should not take our servers down.
    tmp = tempfile.mkdtemp(prefix="cpbench-", dir=args.tmpdir)
    if not args.keep:
        atexit.register(shutil.rmtree, tmp, True)

    # build the load generator
    args.loadgen = os.path.join(tmp, "loadgen")
    cc = subprocess.run(["gcc", "-O2", "-Wall", "-o", args.loadgen, os.path.join(HERE, "loadgen.c")],
                        capture_output=True, text=True)
    if cc.returncode != 0:
        sys.exit("controlplane.py: building loadgen failed:\n" + cc.stderr)

    # Snapshot the skiff binary: build/skiff may be rebuilt while we run.
    src_bin = args.skiff
    st = os.stat(src_bin)
    args.skiff = os.path.join(tmp, "sk-server")
    shutil.copy2(src_bin, args.skiff)
    import hashlib
    with open(args.skiff, "rb") as f:
        skiff_sha = hashlib.sha256(f.read()).hexdigest()
    import botocore
    fstype = subprocess.run(["df", "--output=fstype,source", tmp], capture_output=True,
                            text=True).stdout.split("\n")[1].strip()
    fsync_stats = fsync_probe(tmp)
    now = datetime.datetime.now()
    results = {
        "env": {"date": now.strftime("%Y-%m-%d %H:%M:%S"), "host": platform.node(),
                "ncpu": ncpu, "kernel": platform.release(), "tmpdir": tmp,
                "tmpfs_type": fstype, "moto_version": moto_version, "fsync": fsync_stats,
                "botocore_version": botocore.__version__,
                "loadavg_at_start": open("/proc/loadavg").read().split()[:3],
                "skiff_binary": {"path": src_bin, "sha256": skiff_sha, "bytes": st.st_size,
                                 "mtime": datetime.datetime.fromtimestamp(st.st_mtime).isoformat(
                                     timespec="seconds")}},
        "args": {k: v for k, v in vars(args).items()},
        "rss": {}, "writes": {}, "problems": [],
    }
    t0 = time.time()
    try:
        if "describe" in args.phases or "runtask" in args.phases:
            phase_read_and_runtask(args, tmp, results)
        if "writes" in args.phases:
            phase_writes(args, tmp, results)
        if "rss" in args.phases:
            phase_rss(args, tmp, results)
    except Exception as e:  # keep what we have, report the failure
        import traceback
        results["problems"].append("benchmark aborted: %s\n%s" % (e, traceback.format_exc()))
        for s in list(RUNNING):
            state = "running" if s.alive() else "EXITED rc=%s (negative = killed by signal)" % (
                s.proc.returncode)
            results["problems"].append("%s (pid %d, %s) log tail:\n%s" % (
                s.kind, s.pid, state, s.log_tail()))
    finally:
        cleanup()
    results["env"]["runtime_s"] = round(time.time() - t0, 1)
    results["problems"].extend(sanity_problems(results))

    text = report(args, results)
    sys.stdout.write(text)
    os.makedirs(args.results, exist_ok=True)
    path = os.path.join(args.results, "controlplane-%s.txt" % now.strftime("%Y%m%d-%H%M%S"))
    with open(path, "w") as f:
        f.write(text)
        f.write("\nRaw results (JSON)\n" + "-" * 78 + "\n")
        f.write(json.dumps(results, indent=1, default=str))
        f.write("\n")
    print("\nsaved: %s" % os.path.relpath(path, ROOT))
    return 1 if results["problems"] else 0


if __name__ == "__main__":
    sys.exit(main())
