#!/usr/bin/python3
"""Registry benchmark: skiff's /v2/ vs Debian's docker-registry (distribution
2.8), side by side in one run, driven by skopeo. See bench/registry.sh.

Measures, for both servers:
  1. push of a multi-layer image (~200 MB of incompressible layers) with skopeo;
  2. pull of the same image back into an OCI layout (median of --pulls-n runs);
  3. manifest GET latency (keep-alive, sequential): p50 / p99 / max;
  4. 20 concurrent skopeo pulls: wall time and aggregate throughput;
  5. server RSS: idle, peak while pushing, peak while pulling (a flat line is
     the goal: memory must not grow with blob size).
Prints a table with the ratios skiff / docker-registry and saves it with the
raw numbers to bench/results/registry-YYYYMMDD-HHMMSS.txt."""
import argparse
import base64
import concurrent.futures
import configparser
import http.client
import json
import os
import pathlib
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "tests" / "integration"))
from registry_helpers import make_oci_layout  # noqa: E402

import boto3  # noqa: E402
from botocore.config import Config  # noqa: E402


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_kb(pid):
    try:
        for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


class Sampler:
    """Samples a process's RSS every 20 ms while active."""

    def __init__(self, pid):
        self.pid = pid
        self.peak = rss_kb(pid)
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_kb(self.pid))
            time.sleep(0.02)

    def __enter__(self):
        self._t.start()
        return self

    def __exit__(self, *a):
        self._stop.set()
        self._t.join()


def wait_http(url, timeout=20):
    import urllib.error
    import urllib.request
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=1)
            return
        except urllib.error.HTTPError:
            return  # answered (401 is fine)
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{url} did not come up")


def run(cmd, **kw):
    t = time.monotonic()
    p = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {p.stderr[-2000:]}")
    return time.monotonic() - t


class Target:
    def __init__(self, name, host, creds, pid):
        self.name = name
        self.host = host
        self.creds = creds  # "user:pass" or None
        self.pid = pid

    def skopeo_creds(self, direction):
        return [f"--{direction}-creds", self.creds] if self.creds else []

    def auth_header(self):
        if not self.creds:
            return {}
        return {"Authorization": "Basic " + base64.b64encode(self.creds.encode()).decode()}


def start_skiff(binary, tmp):
    # A private copy: a rebuild during the run cannot mix two binaries.
    copy = tmp / "regbench-srv"
    shutil.copy2(binary, copy)
    binary = str(copy)
    port = free_port()
    data = tmp / "srv-data"
    logf = open(tmp / "srv.log", "wb")
    proc = subprocess.Popen([binary, "server", "--no-agent", "--listen", f"127.0.0.1:{port}",
                             "--data", str(data)], stdout=logf, stderr=subprocess.STDOUT,
                            start_new_session=True)
    wait_http(f"http://127.0.0.1:{port}/healthz")
    cp = configparser.ConfigParser()
    cp.read(data / "credentials")
    sec = cp["default"]
    ecr = boto3.session.Session().client(
        "ecr", region_name="us-east-1", endpoint_url=f"http://127.0.0.1:{port}",
        aws_access_key_id=sec["aws_access_key_id"],
        aws_secret_access_key=sec["aws_secret_access_key"],
        config=Config(retries={"max_attempts": 1}))
    for repo in ("bench", "bench-pull"):
        ecr.create_repository(repositoryName=repo)
    tok = ecr.get_authorization_token()["authorizationData"][0]["authorizationToken"]
    creds = base64.b64decode(tok).decode()
    return proc, Target("skiff", f"127.0.0.1:{port}", creds, proc.pid)


def start_docker_registry(tmp):
    port = free_port()
    cfg = tmp / "docker-registry.yml"
    cfg.write_text(f"""version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: {tmp / 'dr-data'}
  delete:
    enabled: true
http:
  addr: 127.0.0.1:{port}
""")
    logf = open(tmp / "docker-registry.log", "wb")
    proc = subprocess.Popen(["/usr/bin/docker-registry", "serve", str(cfg)], stdout=logf,
                            stderr=subprocess.STDOUT, start_new_session=True)
    wait_http(f"http://127.0.0.1:{port}/v2/")
    return proc, Target("docker-registry", f"127.0.0.1:{port}", None, proc.pid)


def manifest_latency(t, repo, tag, n):
    conn = http.client.HTTPConnection(t.host.split(":")[0], int(t.host.split(":")[1]),
                                      timeout=30)
    hdr = {"Accept": "application/vnd.oci.image.manifest.v1+json", **t.auth_header()}
    lat = []
    for i in range(n + 50):
        s = time.perf_counter()
        conn.request("GET", f"/v2/{repo}/manifests/{tag}", headers=hdr)
        r = conn.getresponse()
        r.read()
        e = time.perf_counter() - s
        if r.status != 200:
            raise RuntimeError(f"{t.name}: manifest GET {r.status}")
        if i >= 50:  # warm-up
            lat.append(e * 1000)
    conn.close()
    lat.sort()
    return {"p50_ms": lat[len(lat) // 2], "p99_ms": lat[int(len(lat) * 0.99) - 1],
            "max_ms": lat[-1], "n": n}


def bench_target(t, layout, size_bytes, tmp, args):
    res = {}
    src = f"oci:{layout}:latest"
    dest = f"docker://{t.host}/bench:latest"
    idle = rss_kb(t.pid)
    log(f"[{t.name}] push {size_bytes / 1e6:.0f} MB")
    with Sampler(t.pid) as s:
        dt = run(["skopeo", "copy", "--dest-tls-verify=false", *t.skopeo_creds("dest"), src,
                  dest])
    res["push_s"] = dt
    res["push_MBps"] = size_bytes / 1e6 / dt
    res["rss_push_peak_kb"] = s.peak
    pulls = []
    with Sampler(t.pid) as s:
        for i in range(args.pulls_n):
            out = tmp / f"{t.name}-pull-{i}"
            log(f"[{t.name}] pull {i + 1}/{args.pulls_n}")
            pulls.append(run(["skopeo", "copy", "--src-tls-verify=false",
                              *t.skopeo_creds("src"), dest, f"oci:{out}:latest"]))
            shutil.rmtree(out, ignore_errors=True)
    res["pull_s"] = statistics.median(pulls)
    res["pull_MBps"] = size_bytes / 1e6 / res["pull_s"]
    res["rss_pull_peak_kb"] = s.peak
    res["rss_idle_kb"] = idle
    log(f"[{t.name}] manifest GET latency x{args.manifest_n}")
    res["manifest"] = manifest_latency(t, "bench", "latest", args.manifest_n)
    log(f"[{t.name}] {args.concurrent} concurrent pulls")

    def one(i):
        out = tmp / f"{t.name}-c{i}"
        try:
            run(["skopeo", "copy", "--src-tls-verify=false", *t.skopeo_creds("src"), dest,
                 f"oci:{out}:latest"])
            return True
        finally:
            shutil.rmtree(out, ignore_errors=True)

    with Sampler(t.pid) as s:
        st = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(args.concurrent) as ex:
            ok = list(ex.map(one, range(args.concurrent)))
        wall = time.monotonic() - st
    res["concurrent_ok"] = sum(ok)
    res["concurrent_wall_s"] = wall
    res["concurrent_MBps"] = size_bytes * args.concurrent / 1e6 / wall
    res["rss_concurrent_peak_kb"] = s.peak
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--skiff", default=os.environ.get("SKIFF_BIN") or str(ROOT / "build" / "skiff"))
    ap.add_argument("--size-mb", type=int, default=200)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--pulls-n", type=int, default=3)
    ap.add_argument("--manifest-n", type=int, default=2000)
    ap.add_argument("--concurrent", type=int, default=20)
    ap.add_argument("--quick", action="store_true", help="40 MB, 1 pull, 500 manifest GETs")
    args = ap.parse_args()
    if args.quick:
        args.size_mb, args.pulls_n, args.manifest_n = 40, 1, 500
    for tool in ("skopeo", "/usr/bin/docker-registry"):
        if not shutil.which(tool):
            log(f"bench/registry: {tool} is not installed")
            return 2
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="regbench-"))
    procs = []
    try:
        per_layer = args.size_mb * 1024 * 1024 // args.layers
        log(f"building a {args.size_mb} MB image in {args.layers} random layers")
        extra = [[(f"data/l{i}.bin", os.urandom(per_layer), 0o644)] for i in range(args.layers)]
        img = make_oci_layout(tmp / "img", extra_layers=extra, marker="bench", compress=False)
        size = sum((tmp / "img" / "blobs" / "sha256" / d.split(":")[1]).stat().st_size
                   for d in img["layers"])
        del extra
        sk_proc, sk = start_skiff(args.skiff, tmp)
        procs.append(sk_proc)
        dr_proc, dr = start_docker_registry(tmp)
        procs.append(dr_proc)
        results = {}
        for t in (dr, sk):
            results[t.name] = bench_target(t, tmp / "img", size, tmp, args)
        a, b = results["skiff"], results["docker-registry"]
        lines = [
            f"registry benchmark  {time.strftime('%Y-%m-%d %H:%M:%S')}  "
            f"image {size / 1e6:.0f} MB in {len(img['layers'])} layers, {os.cpu_count()} CPUs",
            "",
            f"{'metric':34} {'skiff':>12} {'docker-registry':>16} {'ratio':>8}",
        ]

        def row(name, key, fmt="{:.1f}", better="higher", sub=None):
            va = a[sub][key] if sub else a[key]
            vb = b[sub][key] if sub else b[key]
            ratio = (va / vb if better == "higher" else vb / va) if va and vb else 0
            lines.append(f"{name:34} {fmt.format(va):>12} {fmt.format(vb):>16} {ratio:>7.2f}x")

        row("push throughput (MB/s)", "push_MBps")
        row("pull throughput (MB/s, median)", "pull_MBps")
        row("manifest GET p50 (ms)", "p50_ms", "{:.3f}", "lower", "manifest")
        row("manifest GET p99 (ms)", "p99_ms", "{:.3f}", "lower", "manifest")
        row(f"{args.concurrent} concurrent pulls: wall (s)", "concurrent_wall_s", "{:.2f}",
            "lower")
        row(f"{args.concurrent} concurrent pulls (MB/s)", "concurrent_MBps")
        for k, label in (("rss_idle_kb", "RSS idle (MiB)"),
                         ("rss_push_peak_kb", "RSS peak during push (MiB)"),
                         ("rss_pull_peak_kb", "RSS peak during pull (MiB)"),
                         ("rss_concurrent_peak_kb", "RSS peak, concurrent pulls (MiB)")):
            lines.append(f"{label:34} {a[k] / 1024:>12.1f} {b[k] / 1024:>16.1f}")
        lines.append(f"{'concurrent pulls ok':34} {a['concurrent_ok']:>12} "
                     f"{b['concurrent_ok']:>16}")
        lines.append("")
        lines.append("ratio: >1 means skiff is better (throughput up, latency down). "
                     "Goals: push/pull >= 1.2x, manifest p99 <= 1 ms, RSS flat vs blob size.")
        report = "\n".join(lines)
        print(report)
        outdir = HERE / "results"
        outdir.mkdir(exist_ok=True)
        out = outdir / f"registry-{time.strftime('%Y%m%d-%H%M%S')}.txt"
        out.write_text(report + "\n\n" + json.dumps(results, indent=1) + "\n")
        log(f"saved {out}")
        return 0
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(15)
                except subprocess.TimeoutExpired:
                    p.kill()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
