"""Shared helpers for bench/agent.py and bench/scheduler.py (node agent and
scheduler benchmarks). Conventions follow bench/controlplane.py: private copies
of the binaries under a temporary directory whose names avoid the word
"skiff" (someone's `pkill -f skiff` on a shared host must not hit us),
SigV4 signing with botocore, CPU pinning with taskset, a registry of every
process started so that cleanup is robust (atexit + SIGINT/SIGTERM)."""
import configparser
import datetime
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

try:
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials
except ImportError:  # pragma: no cover
    sys.exit("bench: botocore is required (run under Debian's /usr/bin/python3)")

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
REGION = "us-east-1"
ECS_TARGET = "AmazonEC2ContainerServiceV20141113."
CLK_TCK = os.sysconf("SC_CLK_TCK")


def log(msg):
    print("[%s] %s" % (time.strftime("%H:%M:%S"), msg), file=sys.stderr, flush=True)


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def pct(values, p):
    """Nearest-rank percentile (p in 0..100). With 50 samples p99 is the max."""
    if not values:
        return None
    v = sorted(values)
    k = max(1, -(-len(v) * p // 100))  # ceil(n*p/100)
    return v[int(k) - 1]


def proc_status_kib(pid, field):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def smaps_rollup(pid):
    """{'Rss': kB, 'Pss': kB, ...} from /proc/PID/smaps_rollup ({} if gone)."""
    out = {}
    try:
        with open("/proc/%d/smaps_rollup" % pid) as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 3 and parts[0].endswith(":") and parts[2] == "kB":
                    out[parts[0][:-1]] = int(parts[1])
    except OSError:
        pass
    return out


def proc_cpu_s(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK
    except OSError:
        return 0.0


def system_busy_s():
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return (v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / CLK_TCK


def binary_sha256(path):
    import hashlib
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# --------------------------------------------------------------------------
# process registry and cleanup

PROCS = []          # Popen objects we started (killed at exit, newest first)
CLEANUPS = []       # callables run at exit, newest first


def spawn(cmd, logpath, env=None, cpu=None):
    if cpu is not None:
        cmd = ["taskset", "-c", str(cpu)] + list(cmd)
    logf = open(logpath, "ab")
    p = subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                         env=env, start_new_session=True)
    logf.close()
    PROCS.append(p)
    return p


def stop_proc(p, sig=signal.SIGTERM, timeout=20):
    if p is None:
        return
    if p.poll() is None:
        try:
            p.send_signal(sig)
            p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    if p in PROCS:
        PROCS.remove(p)


def cleanup_all():
    while CLEANUPS:
        fn = CLEANUPS.pop()
        try:
            fn()
        except Exception as e:  # keep going: everything must be tried
            log("cleanup step failed: %r" % (e,))
    for p in list(reversed(PROCS)):
        try:
            stop_proc(p, signal.SIGKILL)
        except Exception:
            pass


def install_signal_handlers():
    def on_signal(signo, frame):
        log("signal %d: cleaning up" % signo)
        cleanup_all()
        sys.exit(128 + signo)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)


# --------------------------------------------------------------------------
# skiff server + signed client

def copy_binaries(skiff, tmp):
    """Private copies: a rebuild during the run cannot mix two binaries, and the
    names avoid 'skiff'. The agent looks for skiff-monitor next to itself or
    in src/runtime/ (build tree); we pass SKIFF_MONITOR explicitly."""
    exe = os.path.join(tmp, "sk-bin")
    shutil.copy2(skiff, exe)
    mon_src = os.path.join(os.path.dirname(os.path.abspath(skiff)), "src", "runtime",
                           "skiff-monitor")
    if not os.path.exists(mon_src):
        mon_src = os.path.join(os.path.dirname(os.path.abspath(skiff)), "skiff-monitor")
    mon = os.path.join(tmp, "sk-mon")
    if os.path.exists(mon_src):
        shutil.copy2(mon_src, mon)
    else:
        mon = None
    return exe, mon


class Client:
    """A keep-alive HTTP connection sending SigV4-signed ECS JSON requests."""

    def __init__(self, host, port, creds):
        self.host, self.port, self.creds = host, port, creds
        self.conn = None

    def sign(self, op, body):
        data = json.dumps(body, separators=(",", ":")).encode()
        headers = {"X-Amz-Target": ECS_TARGET + op,
                   "Content-Type": "application/x-amz-json-1.1"}
        req = AWSRequest(method="POST", url="http://%s:%d/" % (self.host, self.port), data=data,
                         headers=headers)
        SigV4Auth(self.creds, "ecs", REGION).add_auth(req)
        hdrs = {k: v for k, v in req.headers.items() if k.lower() not in ("host", "content-length")}
        return hdrs, data

    def raw(self, op, body):
        """Raw request bytes (for loadgen request files)."""
        hdrs, data = self.sign(op, body)
        lines = ["POST / HTTP/1.1", "Host: %s:%d" % (self.host, self.port)]
        lines += ["%s: %s" % kv for kv in hdrs.items()]
        lines.append("Content-Length: %d" % len(data))
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + data

    def send_signed(self, signed, timeout=120):
        hdrs, data = signed
        for attempt in (0, 1):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
            try:
                self.conn.request("POST", "/", body=data, headers=hdrs)
                r = self.conn.getresponse()
                out = r.read()
                if r.getheader("Connection", "").lower() == "close":
                    self.close()
                return r.status, out
            except (http.client.HTTPException, OSError):
                self.close()
                if attempt:
                    raise
        raise RuntimeError("unreachable")

    def close(self):
        if self.conn:
            self.conn.close()
            self.conn = None

    def call(self, op, body, check=True):
        status, out = self.send_signed(self.sign(op, body))
        try:
            doc = json.loads(out) if out else {}
        except ValueError:
            doc = {"_raw": out[:300].decode("utf-8", "replace")}
        if check and status != 200:
            raise RuntimeError("%s -> HTTP %d: %s" % (op, status, out[:400]))
        return doc


class SkiffServer:
    def __init__(self, exe, workdir, cpu=None, env=None, name="srv"):
        self.exe, self.workdir, self.cpu = exe, workdir, cpu
        self.env = dict(os.environ)
        for k in ("SKIFF_ROOT_ACCESS_KEY_ID", "SKIFF_ROOT_SECRET_ACCESS_KEY"):
            self.env.pop(k, None)
        self.env.update(env or {})
        self.data = os.path.join(workdir, name + "-data")
        self.logpath = os.path.join(workdir, name + ".log")
        self.port = free_port()
        self.proc = None
        self.creds = None

    @property
    def url(self):
        return "http://127.0.0.1:%d" % self.port

    @property
    def pid(self):
        return self.proc.pid

    @property
    def credentials_path(self):
        return os.path.join(self.data, "credentials")

    def start(self, timeout=60):
        cmd = [self.exe, "server", "--no-agent", "--listen", "127.0.0.1:%d" % self.port,
               "--data", self.data]
        self.proc = spawn(cmd, self.logpath, env=self.env, cpu=self.cpu)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("server exited during start:\n" + self.log_tail())
            try:
                c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                c.request("GET", "/healthz")
                r = c.getresponse()
                r.read()
                c.close()
                if r.status == 200:
                    break
            except OSError:
                pass
            time.sleep(0.02)
        else:
            raise RuntimeError("server not ready after %ds" % timeout)
        cp = configparser.ConfigParser()
        cp.read(self.credentials_path)
        self.creds = Credentials(cp["default"]["aws_access_key_id"],
                                 cp["default"]["aws_secret_access_key"])
        return self

    def client(self):
        return Client("127.0.0.1", self.port, self.creds)

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, n=30):
        try:
            with open(self.logpath, "rb") as f:
                return "\n".join(f.read().decode("utf-8", "replace").splitlines()[-n:])
        except OSError:
            return ""

    def stop(self):
        stop_proc(self.proc)


def agent_env(server, extra=None):
    env = dict(os.environ)
    for k in list(env):
        if k.startswith("ECS_") or k.startswith("SKIFF_SIM_") or k in (
                "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE"):
            env.pop(k)
    env["AWS_SHARED_CREDENTIALS_FILE"] = server.credentials_path
    env.update(extra or {})
    return env


def save_report(name, report, raw):
    outdir = os.path.join(HERE, "results")
    os.makedirs(outdir, exist_ok=True)
    path = os.path.join(outdir, "%s-%s.txt" % (name, time.strftime("%Y%m%d-%H%M%S")))
    with open(path, "w") as f:
        f.write(report + "\n\n" + json.dumps(raw, indent=1, default=str) + "\n")
    return path


def host_header():
    import platform
    return "host %s, %d CPUs, kernel %s, load average at start %s, %s" % (
        platform.node(), os.cpu_count(), platform.release(), loadavg(),
        datetime.datetime.now().strftime("%Y-%m-%d %H:%M:%S"))
