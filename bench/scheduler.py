#!/usr/bin/python3
"""Scheduler benchmark: placements per second through the real API path, and
a 1,000-task service rollout, with simulated container instances. See
bench/README-agent-scheduler.md.

Phases (--phases, default both):
  placement  for each size (1,000 and 5,000 instances) and each strategy
             (binpack cpu, spread AZ + instanceId, memberOf AZ in [a, b]):
             a fresh `skiff server` and one `skiff agent --runtime=simulated
             --instances N` (zones us-east-1a/b/c, 16 vCPU / 64 GiB each), then
             closed-loop RunTask count=10 from many keep-alive connections
             (bench/loadgen.c, pre-signed requests). placements/s = tasks
             created (DescribeClusters running+pending, after - before) / time.
             Every RunTask writes 10 durable task records; the simulated agent
             receives every task and reports it RUNNING (that traffic is part
             of the measurement). With --perf, a second short run of each is
             profiled with `perf record -g` and the top symbols are reported.
  service    100 simulated instances, CreateService desiredCount 1,000: time to
             steady state (DescribeServices every 100 ms: exactly one deployment
             and runningCount == desiredCount), then UpdateService to a new
             task definition revision and the time until steady again.
             SKIFF_SERVICE_HEALTHY_DELAY is set for the server (default 1s)."""
import argparse
import atexit
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import benchlib as bl
from benchlib import log

ZONES = "us-east-1a,us-east-1b,us-east-1c"
CLUSTER = "sched"


def strategy_body(name):
    body = {"cluster": CLUSTER, "taskDefinition": "sched-td", "count": 10, "launchType": "EC2",
            "startedBy": "schedbench"}
    if name == "binpack":
        body["placementStrategy"] = [{"type": "binpack", "field": "cpu"}]
    elif name == "spread":
        body["placementStrategy"] = [{"type": "spread", "field": "attribute:ecs.availability-zone"},
                                     {"type": "spread", "field": "instanceId"}]
    elif name == "memberOf":
        body["placementConstraints"] = [{
            "type": "memberOf",
            "expression": "attribute:ecs.availability-zone in [us-east-1a, us-east-1b]"}]
    elif name == "random":
        body["placementStrategy"] = [{"type": "random"}]
    else:
        raise ValueError(name)
    return body


TASK_DEF = {"family": "sched-td", "networkMode": "bridge", "requiresCompatibilities": ["EC2"],
            "containerDefinitions": [{"name": "app", "image": "busybox:1.36", "essential": True,
                                      "cpu": 64, "memory": 64,
                                      "command": ["sleep", "3600"]}]}


class Env:
    """A fresh server + one simulated agent with n instances.

    Every simulated instance holds one long poll; skiff server accepts as
    many connections as its RLIMIT_NOFILE allows (less 256 for its own files).
    Beyond --agent-max-instances (default 10,000), the rest are registered
    through RegisterContainerInstance by the bench itself (same attributes
    and resources, zones round-robin) and kept "connected" with
    SKIFF_AGENT_TIMEOUT=3600s; tasks placed on them are created like any
    other (they stay PENDING: nobody polls for them)."""

    def __init__(self, ctx, tag, n, server_env=None):
        self.ctx, self.n = ctx, n
        self.dir = os.path.join(ctx.tmp, tag)
        os.makedirs(self.dir)
        self.n_agent = min(n, ctx.args.agent_max_instances)
        self.n_api = n - self.n_agent
        senv = dict(server_env or {})
        if self.n_api:
            senv["SKIFF_AGENT_TIMEOUT"] = "3600s"
        self.server = bl.SkiffServer(ctx.exe, self.dir, cpu=ctx.args.server_cpu,
                                     env=senv).start()
        self.agent = None
        self.c = self.server.client()
        self.c.call("CreateCluster", {"clusterName": CLUSTER})
        env = bl.agent_env(self.server, {"SKIFF_SIM_ZONES": ZONES,
                                         "SKIFF_SIM_CPU": str(ctx.args.sim_cpu),
                                         "SKIFF_SIM_MEMORY": str(ctx.args.sim_memory),
                                         "ECS_ENGINE_TASK_CLEANUP_WAIT_DURATION": "3h"})
        t0 = time.time()
        if self.n_agent:
            self.agent = bl.spawn([ctx.exe, "agent", "--server", self.server.url, "--cluster",
                                   CLUSTER, "--data", os.path.join(self.dir, "agent-data"),
                                   "--runtime=simulated", "--instances", str(self.n_agent)],
                                  os.path.join(self.dir, "agent.log"), env=env,
                                  cpu=ctx.args.agent_cpu)
            self.wait_registered(self.n_agent)
        if self.n_api:
            self.register_api_instances()
            self.wait_registered(n)
        self.register_s = time.time() - t0
        self.c.call("RegisterTaskDefinition", TASK_DEF)

    def wait_registered(self, n):
        deadline = time.time() + 600
        while time.time() < deadline:
            if self.agent and self.agent.poll() is not None:
                raise RuntimeError("simulated agent exited")
            d = self.c.call("DescribeClusters", {"clusters": [CLUSTER]})["clusters"][0]
            if d.get("registeredContainerInstancesCount", 0) >= n:
                return
            time.sleep(0.2)
        raise RuntimeError("only %s of %d instances registered" % (
            d.get("registeredContainerInstancesCount"), n))

    def register_api_instances(self):
        arns = self.c.call("ListContainerInstances", {"cluster": CLUSTER, "maxResults": 1})[
            "containerInstanceArns"]
        if arns:
            ci = self.c.call("DescribeContainerInstances", {"cluster": CLUSTER,
                                                            "containerInstances": arns})[
                "containerInstances"][0]
        else:  # what the agent registers (agent.c registration_body), roughly
            ci = {"attributes": [{"name": n} for n in (
                "com.amazonaws.ecs.capability.logging-driver.json-file",
                "com.amazonaws.ecs.capability.logging-driver.none",
                "com.amazonaws.ecs.capability.logging-driver.awslogs",
                "ecs.capability.container-health-check", "ecs.capability.task-eni")] +
                [{"name": "com.amazonaws.ecs.capability.docker-remote-api.1.%d" % v}
                 for v in range(17, 45)] +
                [{"name": "ecs.os-type", "value": "linux"},
                 {"name": "ecs.cpu-architecture", "value": "x86_64"},
                 {"name": "skiff.capacity", "value": "EC2"}],
                "versionInfo": {"agentVersion": "1.0.0", "agentHash": "bench"}}
        zones = ZONES.split(",")
        base = [a for a in ci["attributes"] if a["name"] != "ecs.availability-zone"]
        res = [{"name": "CPU", "type": "INTEGER", "integerValue": self.ctx.args.sim_cpu},
               {"name": "MEMORY", "type": "INTEGER", "integerValue": self.ctx.args.sim_memory},
               {"name": "PORTS", "type": "STRINGSET",
                "stringSetValue": ["22", "2375", "2376", "51678", "51679"]},
               {"name": "PORTS_UDP", "type": "STRINGSET", "stringSetValue": []}]
        log("registering %d more instances through the API" % self.n_api)
        for k in range(self.n_api):
            attrs = base + [{"name": "ecs.availability-zone",
                             "value": zones[(self.n_agent + k) % len(zones)]}]
            self.c.call("RegisterContainerInstance", {
                "cluster": CLUSTER, "totalResources": res, "attributes": attrs,
                "versionInfo": ci.get("versionInfo", {})})

    def tasks(self):
        d = self.c.call("DescribeClusters", {"clusters": [CLUSTER]})["clusters"][0]
        return d.get("runningTasksCount", 0) + d.get("pendingTasksCount", 0), d

    def stop(self):
        if self.agent:
            bl.stop_proc(self.agent)
        self.server.stop()
        if not self.ctx.args.keep:
            shutil.rmtree(self.dir, ignore_errors=True)


def build_loadgen(tmp):
    exe = os.path.join(tmp, "loadgen")
    subprocess.run(["gcc", "-O2", "-o", exe, os.path.join(bl.HERE, "loadgen.c")], check=True)
    return exe


def run_loadgen(ctx, env, reqfile, conns, duration=None, count=None):
    cmd = ["taskset", "-c", str(ctx.args.load_cpu), ctx.loadgen, "-a",
           "127.0.0.1:%d" % env.server.port, "-f", reqfile, "-c", str(conns), "-m", "taskArn",
           "-t", "60"]
    if duration:
        cmd += ["-d", str(duration)]
    if count:
        cmd += ["-n", str(count)]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError("loadgen failed: %s" % p.stderr)
    return json.loads(p.stdout)


GENERIC_FRAMES = ("_start", "__libc_start", "ev_loop_run", "skiff_server_main", "MHD_run",
                  "main", "run_hooks", "run_mhd", "run_timers", "on_prepare", "on_access",
                  "on_api_complete")


def perf_profile(ctx, env, reqfile, tag):
    """A second, short loadgen run with `perf record --call-graph dwarf` on the
    server (the binary has no frame pointers, so -g alone gives no callers).
    Returns the hottest functions by self time and the skiff functions by
    inclusive time; the full reports are saved under bench/results/."""
    perf = shutil.which("perf")
    if not perf:
        return None
    data = os.path.join(ctx.tmp, "perf-%s.data" % tag)
    secs = max(3, min(6, ctx.args.duration))
    rec = subprocess.Popen([perf, "record", "--call-graph", "dwarf,16384", "-F", "199", "-o",
                            data, "-p", str(env.server.pid), "--", "sleep", str(secs + 1)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    run_loadgen(ctx, env, reqfile, ctx.args.conns, duration=secs)
    rec.wait()
    selfrep = subprocess.run([perf, "report", "-i", data, "--stdio", "--no-children", "-g",
                              "none", "--percent-limit", "1.5", "--sort", "dso,symbol"],
                             capture_output=True, text=True).stdout
    incl = subprocess.run([perf, "report", "-i", data, "--stdio", "--children", "-g", "none",
                           "--percent-limit", "2", "--sort", "dso,symbol"],
                          capture_output=True, text=True).stdout
    tree = subprocess.run([perf, "report", "-i", data, "--stdio", "--children", "--sort",
                           "symbol", "-g", "caller,2,callee,function,percent", "--max-stack",
                           "14", "--percent-limit", "10"], capture_output=True, text=True).stdout

    def rows(text):
        return [l.rstrip() for l in text.splitlines() if l.strip() and not l.startswith("#")]
    top_self = rows(selfrep)[:14]
    def sym(line):
        return line.split("] ", 1)[-1].replace(" - ", " ").strip(" -")

    top_incl = [l for l in rows(incl) if "sk-bin" in l and
                not any(sym(l).startswith(g) for g in GENERIC_FRAMES)][:22]
    keep = os.path.join(bl.HERE, "results", "perf-%s-%s.txt" % (
        tag, time.strftime("%Y%m%d-%H%M%S")))
    os.makedirs(os.path.dirname(keep), exist_ok=True)
    with open(keep, "w") as f:
        f.write("# self time\n" + selfrep + "\n# inclusive time\n" + incl +
                "\n# call tree\n" + tree)
    os.unlink(data)
    return {"self": top_self, "inclusive": top_incl, "file": keep}


def phase_placement(ctx, res):
    a = ctx.args
    out = []
    runs = [(n, strat, False) for n in a.sizes for strat in a.strategies]
    if a.diag:
        runs += [(n, "binpack", True) for n in a.sizes]
    for n, strat, diag in runs:
            tag = "n%d-%s%s" % (n, strat, "-noagent" if diag else "")
            log("placement: %s, starting server + %d %s instances (load %s)" % (
                tag, n, "API-registered" if diag else "simulated", bl.loadavg()))
            try:
                saved = a.agent_max_instances
                if diag:
                    a.agent_max_instances = 0
                try:
                    env = Env(ctx, tag, n)
                finally:
                    a.agent_max_instances = saved
            except Exception as e:
                res["problems"].append("placement %s: setup failed: %r" % (tag, e))
                continue
            try:
                reqs = [env.c.raw("RunTask", strategy_body(strat)) for _ in range(64)]
                reqfile = os.path.join(env.dir, "req.bin")
                with open(reqfile, "wb") as f:
                    for r in reqs:
                        f.write(b"%d\n" % len(r))
                        f.write(r)
                # warm-up, and a check that the strategy places at all
                w = run_loadgen(ctx, env, reqfile, 8, count=50)
                if w["ok"] == 0 or w["mismatch"]:
                    raise RuntimeError("warm-up RunTask failed: %s" % w["status"])
                time.sleep(1.0)
                before, _ = env.tasks()
                agpid = env.agent.pid if env.agent else None
                cpu0 = {"server": bl.proc_cpu_s(env.server.pid),
                        "agent": bl.proc_cpu_s(agpid) if agpid else 0.0}
                busy0 = bl.system_busy_s()
                la = bl.loadavg()
                # a.chunks back-to-back loadgen runs: the rate per chunk shows
                # whether throughput falls as tasks accumulate in the cluster
                chunks, lgs = [], []
                prev = before
                for k in range(a.chunks):
                    lgk = run_loadgen(ctx, env, reqfile, a.conns, duration=a.duration / a.chunks)
                    now_tasks, _ = env.tasks()
                    chunks.append({"tasks_before": prev, "created": now_tasks - prev,
                                   "wall_s": lgk["wall_s"],
                                   "per_s": (now_tasks - prev) / lgk["wall_s"]})
                    prev = now_tasks
                    lgs.append(lgk)
                busy = bl.system_busy_s() - busy0
                srv_cpu = bl.proc_cpu_s(env.server.pid) - cpu0["server"]
                ag_cpu = (bl.proc_cpu_s(agpid) - cpu0["agent"]) if agpid else 0.0
                after, cl = env.tasks()
                wall = sum(x["wall_s"] for x in lgs)
                created = after - before
                lg_cpu = sum(x["cpu_user_s"] + x["cpu_sys_s"] for x in lgs)
                # latency: median of the chunks' p50s, max of their p99s
                p50s = sorted(x["service_us"]["p50"] for x in lgs)
                lg = {"ok": sum(x["ok"] for x in lgs), "non2xx": sum(x["non2xx"] for x in lgs),
                      "mismatch": sum(x["mismatch"] for x in lgs),
                      "status": [x["status"] for x in lgs],
                      "service_us": {"p50": p50s[len(p50s) // 2],
                                     "p99": max(x["service_us"]["p99"] for x in lgs)}}
                row = {"instances": n, "strategy": strat, "register_s": env.register_s,
                       "agent_instances": env.n_agent, "api_instances": env.n_api,
                       "tasks_created": created, "placements_per_s": created / wall,
                       "runtask_per_s": lg["ok"] / wall, "runtask_ok": lg["ok"],
                       "non2xx": lg["non2xx"], "mismatch": lg["mismatch"],
                       "status": lg["status"],
                       "p50_ms": lg["service_us"]["p50"] / 1000,
                       "p99_ms": lg["service_us"]["p99"] / 1000,
                       "wall_s": wall, "conns": a.conns, "load": la,
                       "server_cores": srv_cpu / wall, "agent_cores": ag_cpu / wall,
                       "loadgen_cores": lg_cpu / wall,
                       "other_cores": max(0.0, busy - srv_cpu - ag_cpu - lg_cpu) / wall,
                       "server_cpu_us_per_placement": srv_cpu * 1e6 / created if created else None,
                       "tasks_in_cluster": after,
                       "server_rss_kib": bl.proc_status_kib(env.server.pid, "VmRSS"),
                       "chunks": chunks, "diag_no_agent": diag}
                log("placement: %s: %.0f placements/s (%d tasks, p50 %.1f ms, server %.2f "
                    "cores)" % (tag, row["placements_per_s"], created, row["p50_ms"],
                                row["server_cores"]))
                if a.perf:
                    row["perf"] = perf_profile(ctx, env, reqfile, tag)
                out.append(row)
            except Exception as e:
                import traceback
                traceback.print_exc()
                res["problems"].append("placement %s: %r\n%s" % (tag, e, env.server.log_tail(10)))
            finally:
                env.stop()
    res["placement"] = out


def svc_state(c, name):
    s = c.call("DescribeServices", {"cluster": CLUSTER, "services": [name]})["services"][0]
    return s


def wait_steady(c, name, desired, td_arn, t0, timeout, samples, until_completed=False):
    """Polls DescribeServices every 100 ms until exactly one deployment and
    runningCount == desiredCount (and that deployment runs td_arn): the
    "steady" time. With until_completed, keeps polling until the deployment's
    rolloutState is COMPLETED. Tracks the lowest service runningCount seen."""
    out = {"first_all_running_s": None, "max_running": 0, "min_running": None}
    while time.time() - t0 < timeout:
        tick = time.time()
        s = svc_state(c, name)
        deps = s.get("deployments", [])
        running = s.get("runningCount", 0)
        out["max_running"] = max(out["max_running"], sum(d.get("runningCount", 0) for d in deps))
        out["min_running"] = running if out["min_running"] is None else min(out["min_running"],
                                                                          running)
        samples.append((round(tick - t0, 2), len(deps), running, s.get("pendingCount", 0),
                        [d.get("rolloutState") for d in deps]))
        if running >= desired and out["first_all_running_s"] is None:
            out["first_all_running_s"] = tick - t0
        if ("steady_s" not in out and len(deps) == 1 and running == desired and
                deps[0].get("taskDefinition") == td_arn and
                deps[0].get("runningCount", desired) == desired):
            out["steady_s"] = tick - t0
            out["rollout_state_at_steady"] = deps[0].get("rolloutState")
        if "steady_s" in out and (not until_completed or
                                  deps[0].get("rolloutState") == "COMPLETED"):
            if until_completed:
                out["completed_s"] = tick - t0
            out["polls"] = len(samples)
            return out
        time.sleep(max(0.0, 0.1 - (time.time() - tick)))
    raise RuntimeError("service not steady%s after %ds: %s" % (
        " and COMPLETED" if until_completed else "", timeout, samples[-1:]))


def service_cycle(ctx, tag, healthy_delay, update_after_completed):
    """CreateService (desired tasks) -> steady [-> COMPLETED] -> UpdateService to
    a new revision -> steady [-> COMPLETED]."""
    a = ctx.args
    env = Env(ctx, tag, a.service_instances,
              server_env={"SKIFF_SERVICE_HEALTHY_DELAY": healthy_delay})
    out = {"instances": a.service_instances, "desired": a.service_tasks,
           "healthy_delay": healthy_delay, "register_s": env.register_s,
           "update_after_completed": update_after_completed}
    try:
        c = env.c
        td1 = c.call("DescribeTaskDefinition", {"taskDefinition": "sched-td"})[
            "taskDefinition"]["taskDefinitionArn"]
        out["create_load"] = bl.loadavg()
        t0 = time.time()
        c.call("CreateService", {"cluster": CLUSTER, "serviceName": "web",
                                 "taskDefinition": td1, "desiredCount": a.service_tasks,
                                 "launchType": "EC2"})
        samples = []
        out["create"] = wait_steady(c, "web", a.service_tasks, td1, t0, a.service_timeout,
                                    samples, until_completed=update_after_completed)
        out["create"]["timeline"] = samples[::5]
        td = dict(TASK_DEF)
        td["containerDefinitions"] = [dict(TASK_DEF["containerDefinitions"][0],
                                           environment=[{"name": "REV", "value": "2"}])]
        td2 = c.call("RegisterTaskDefinition", td)["taskDefinition"]["taskDefinitionArn"]
        out["update_load"] = bl.loadavg()
        t0 = time.time()
        c.call("UpdateService", {"cluster": CLUSTER, "service": "web", "taskDefinition": td2})
        samples = []
        out["update"] = wait_steady(c, "web", a.service_tasks, td2, t0, a.service_timeout,
                                    samples, until_completed=update_after_completed)
        out["update"]["timeline"] = samples[::5]
        s = svc_state(c, "web")
        out["events"] = [e.get("message", "")[:160] for e in s.get("events", [])[:8]]
        out["deployment_configuration"] = s.get("deploymentConfiguration")
    finally:
        env.stop()
    return out


def phase_service(ctx, res):
    a = ctx.args
    res["service"] = []
    cycles = [("service", a.healthy_delay, True)]
    if a.service_check:
        cycles.append(("service-early-update", a.check_delay, False))
    for tag, delay, after_completed in cycles:
        log("service %s: server (SKIFF_SERVICE_HEALTHY_DELAY=%s) + %d simulated instances, "
            "%d tasks" % (tag, delay, a.service_instances, a.service_tasks))
        try:
            out = service_cycle(ctx, tag, delay, after_completed)
            out["tag"] = tag
            res["service"].append(out)
            log("service %s: create steady %.1f s, update steady %.1f s, min running during "
                "update %s" % (tag, out["create"]["steady_s"], out["update"]["steady_s"],
                               out["update"]["min_running"]))
        except Exception as e:
            import traceback
            traceback.print_exc()
            res["problems"].append("service %s: %r" % (tag, e))


def report(ctx, res):
    L = ["skiff scheduler benchmark  (%s)" % res["env"]["header"],
         "binary %s sha256 %s; server on CPU %d, simulated agent on CPU %d, loadgen on CPU %d" % (
             res["env"]["skiff"], res["env"]["sha256"][:16], ctx.args.server_cpu,
             ctx.args.agent_cpu, ctx.args.load_cpu), ""]
    pl = res.get("placement")
    if pl:
        L.append("4. Placements/s: RunTask count=10, closed loop, %d connections, %d s per run; "
                 "instances %d vCPU / %d MiB, zones %s; task cpu 64 / memory 64" % (
                     ctx.args.conns, ctx.args.duration, ctx.args.sim_cpu // 1024,
                     ctx.args.sim_memory, ZONES))
        L.append("   %-6s %-9s %12s %10s %8s %8s %7s %7s %7s %7s %9s %6s" % (
            "inst", "strategy", "placements/s", "RunTask/s", "p50 ms", "p99 ms", "server",
            "agent", "loadgen", "other", "us/place", "regist"))
        for r in pl:
            L.append("   %-6d %-9s %12.0f %10.0f %8.1f %8.1f %7.2f %7.2f %7.2f %7.2f %9.0f %5.1fs" % (
                r["instances"], r["strategy"] + ("*" if r.get("diag_no_agent") else ""),
                r["placements_per_s"], r["runtask_per_s"],
                r["p50_ms"], r["p99_ms"], r["server_cores"], r["agent_cores"],
                r["loadgen_cores"], r["other_cores"], r["server_cpu_us_per_placement"] or 0,
                r["register_s"]))
        for r in pl:
            if r.get("api_instances") and not r.get("diag_no_agent"):
                L.append("   note: %d instances = %d simulated-agent instances + %d registered "
                         "through the API (--agent-max-instances)" % (
                             r["instances"], r["agent_instances"], r["api_instances"]))
                break
        if any(r.get("diag_no_agent") for r in pl):
            L.append("   *: diagnostic, every instance registered through the API, no agent "
                     "(no long polls, no state reports): the RunTask path alone")
        L.append("   placements/s per %.0f s chunk, as tasks accumulate (tasks in cluster at "
                 "chunk start):" % (ctx.args.duration / ctx.args.chunks))
        for r in pl:
            L.append("     %-5d %-9s " % (r["instances"], r["strategy"] +
                                         ("*" if r.get("diag_no_agent") else "")) +
                     "  ".join("%6.0f (%d)" % (c["per_s"], c["tasks_before"])
                               for c in r["chunks"]))
        L.append("   (server/agent/loadgen/other = CPU cores used during the run; us/place = "
                 "server CPU per placement; regist = time for all instances to register)")
        L.append("   goals: >= 20,000/s at 1k instances, >= 5,000/s at 5k. Anchors (cited, not "
                 "run): Nomad C1M 3,750 placements/s; kube-scheduler benchmarks 810-1,100 pods/s.")
        bad = [r for r in pl if r["non2xx"] or r["mismatch"]]
        for r in bad:
            L.append("   note: %d/%s non-2xx %d, 2xx without a task %d, status %s" % (
                r["instances"], r["strategy"], r["non2xx"], r["mismatch"], r["status"]))
        for r in pl:
            if r.get("perf"):
                L.append("   perf of the server, %d instances / %s (full report %s):" % (
                    r["instances"], r["strategy"], os.path.relpath(r["perf"]["file"], bl.ROOT)))
                L.append("     inclusive (children, self) of skiff functions:")
                for line in r["perf"]["inclusive"][:10]:
                    L.append("      " + " ".join(line.split()).replace(" - -", ""))
                L.append("     self time, top:")
                for line in r["perf"]["self"][:6]:
                    L.append("      " + " ".join(line.split()).replace(" - -", ""))
        L.append("")
    for sv in res.get("service") or []:
        cr, up = sv.get("create"), sv.get("update")
        if not cr or not up:
            continue
        if sv["update_after_completed"]:
            L.append("5. Service: %d tasks on %d simulated instances, SKIFF_SERVICE_HEALTHY_DELAY=%s "
                     "(a task without health check counts as healthy this long after RUNNING), "
                     "DescribeServices every 100 ms" % (sv["desired"], sv["instances"],
                                                        sv["healthy_delay"]))
        else:
            L.append("5b. Check: UpdateService right after steady, before the tasks pass "
                     "SKIFF_SERVICE_HEALTHY_DELAY=%s (%d tasks, %d instances)" % (
                         sv["healthy_delay"], sv["desired"], sv["instances"]))
        L.append("   %-58s %7.1f s  (load %s)" % (
            "CreateService -> steady (1 deployment, running == desired)", cr["steady_s"],
            sv["create_load"]))
        if cr.get("completed_s") is not None:
            L.append("   %-58s %7.1f s" % ("CreateService -> rolloutState COMPLETED",
                                          cr["completed_s"]))
        L.append("   %-58s %7.1f s  (load %s)" % ("UpdateService (new revision) -> steady",
                                                  up["steady_s"], sv["update_load"]))
        if up.get("completed_s") is not None:
            L.append("   %-58s %7.1f s" % ("UpdateService -> rolloutState COMPLETED",
                                          up["completed_s"]))
        L.append("   during the update: service runningCount min %s (minimumHealthyPercent "
                 "floor %d), tasks running at once max %d" % (
                     up["min_running"], sv["desired"] * (sv.get("deployment_configuration") or
                                                         {}).get("minimumHealthyPercent", 100)
                     // 100, up["max_running"]))
        if sv["update_after_completed"]:
            L.append("   deploymentConfiguration %s" % json.dumps(
                sv.get("deployment_configuration")))
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
    ap.add_argument("--phases", default="placement,service")
    ap.add_argument("--sizes", default="1000,5000")
    ap.add_argument("--strategies", default="binpack,spread,memberOf")
    ap.add_argument("--duration", type=int, default=10, help="seconds per placement run (10)")
    ap.add_argument("--conns", type=int, default=32, help="concurrent connections (32)")
    ap.add_argument("--sim-cpu", type=int, default=16384)
    ap.add_argument("--sim-memory", type=int, default=65536)
    ap.add_argument("--perf", action="store_true", help="profile each placement run")
    ap.add_argument("--chunks", type=int, default=5,
                    help="split each run into this many back-to-back loadgen runs (5)")
    ap.add_argument("--diag", action="store_true",
                    help="also binpack with all instances registered through the API and no "
                         "agent (no agent-channel traffic): isolates the RunTask path")
    ap.add_argument("--service-tasks", type=int, default=1000)
    ap.add_argument("--service-instances", type=int, default=100)
    ap.add_argument("--service-timeout", type=int, default=900)
    ap.add_argument("--healthy-delay", default="1s",
                    help="SKIFF_SERVICE_HEALTHY_DELAY for the service phase (1s)")
    ap.add_argument("--agent-max-instances", type=int, default=10000,
                    help="instances per simulated agent; the rest are registered through the "
                         "API")
    ap.add_argument("--no-service-check", dest="service_check", action="store_false",
                    help="skip 5b (UpdateService before the old tasks count as healthy)")
    ap.add_argument("--check-delay", default="30s",
                    help="SKIFF_SERVICE_HEALTHY_DELAY for the 5b check (30s)")
    ap.add_argument("--server-cpu", type=int, default=0)
    ap.add_argument("--agent-cpu", type=int, default=1)
    ap.add_argument("--load-cpu", type=int, default=1)
    ap.add_argument("--tmpdir", default="/var/tmp")
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--quick", action="store_true",
                    help="smoke test: 200 and 1,000 instances, 3 s runs, 200-task service")
    args = ap.parse_args()
    if args.quick:
        args.sizes, args.duration, args.service_tasks, args.service_instances = \
            "200,1000", 3, 200, 20
    args.sizes = [int(x) for x in args.sizes.split(",") if x]
    args.strategies = [x for x in args.strategies.split(",") if x]
    phases = args.phases.split(",")
    ctx = Ctx()
    ctx.args = args
    ctx.tmp = tempfile.mkdtemp(prefix="scbench-", dir=args.tmpdir)
    res = {"env": {"header": bl.host_header(), "skiff": args.skiff,
                   "sha256": bl.binary_sha256(args.skiff), "args": vars(args)},
           "problems": []}

    def rm_tmp():
        if not args.keep:
            shutil.rmtree(ctx.tmp, ignore_errors=True)

    bl.CLEANUPS.append(rm_tmp)
    atexit.register(bl.cleanup_all)
    bl.install_signal_handlers()
    rc = 0
    try:
        ctx.exe, _ = bl.copy_binaries(args.skiff, ctx.tmp)
        ctx.loadgen = build_loadgen(ctx.tmp)
        if "placement" in phases:
            phase_placement(ctx, res)
        if "service" in phases:
            phase_service(ctx, res)
    finally:
        bl.cleanup_all()
    if res["problems"]:
        rc = 1
    text = report(ctx, res)
    print(text)
    path = bl.save_report("scheduler", text, res)
    log("saved %s" % path)
    return rc


if __name__ == "__main__":
    sys.exit(main())
