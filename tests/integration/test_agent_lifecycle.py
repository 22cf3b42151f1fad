"""Node agent: the task/container lifecycle with real containers: dependsOn
ordering, startTimeout, essential and non-essential exits, stop signals and
stop timeouts, health checks, OOM kills, start and pull failures, and cleanup
after ECS_ENGINE_TASK_CLEANUP_WAIT_DURATION."""
import os
import re
import signal
import time

import pytest

from agent_helpers import (Agent, IDLE, Out, agents_ctx, bridge_ports, cgroup_dirs, cmap,
                           container, container_dir, container_pid, describe, monitor_pids,
                           mounts_under, netns_files, node_ctx, node_fixture, pid_alive, run,
                           runc_containers, server_ctx, shell, stop_and_wait, summary, task_id,
                           wait_task, wait_tasks, wait_until)
from agent_helpers import images, out, registry, scratch  # noqa: F401  (fixtures)

CLEANUP_WAIT = 3
node = node_fixture({"ECS_ENGINE_TASK_CLEANUP_WAIT_DURATION": f"{CLEANUP_WAIT}s",
                     "ECS_CONTAINER_STOP_TIMEOUT": "3s"}, name="lifecycle")

STAMP = "read up _ < /proc/uptime; echo $up > /out/$ECS_CONTAINER_NAME.start; "
END = "read up _ < /proc/uptime; echo $up > /out/$ECS_CONTAINER_NAME.end; "


@pytest.fixture
def ecs(node):
    return node.client("ecs")


def stamp(out, name, kind="start"):
    v = out.read(f"{name}.{kind}")
    return float(v) if v else None


def container_state(ecs, arn, name):
    return cmap(describe(ecs, arn))[name]


# --- dependsOn ------------------------------------------------------------------------


def test_depends_on_start(ecs, images, out):
    a = shell("a", images["base"], STAMP + IDLE, out=out)
    b = shell("b", images["base"], STAMP + IDLE, out=out,
              dependsOn=[{"containerName": "a", "condition": "START"}])
    arn = run(ecs, [b, a], out=out)  # b listed first: order comes from dependsOn
    wait_task(ecs, arn, "RUNNING")
    out.wait("b.start")
    assert stamp(out, "b") >= stamp(out, "a")
    stop_and_wait(ecs, arn)


def test_shutdown_in_reverse_dependency_order(ecs, images, out):
    """A container stops only after every container that depends on it."""
    trap = ("trap 'sleep $DELAY; read up _ < /proc/uptime; echo $up > /out/$ECS_CONTAINER_NAME.end;"
            " exit 0' TERM; echo up > /out/$ECS_CONTAINER_NAME.up; sleep 600 & wait")
    db = shell("db", images["base"], trap, out=out, environment=[{"name": "DELAY", "value": "0"}])
    app = shell("app", images["base"], trap, out=out,
                environment=[{"name": "DELAY", "value": "1"}],
                dependsOn=[{"containerName": "db", "condition": "START"}])
    arn = run(ecs, [db, app], out=out)
    wait_task(ecs, arn, "RUNNING")
    out.wait("app.up")
    out.wait("db.up")
    stop_and_wait(ecs, arn)
    assert stamp(out, "db", "end") >= stamp(out, "app", "end"), (
        "db was stopped before app, which depends on it")


def test_depends_on_complete_and_success(ecs, images, out):
    c1 = shell("c1", images["base"], STAMP + "sleep 1; " + END + "exit 3", out=out,
               essential=False)
    s1 = shell("s1", images["base"], STAMP + "sleep 1.5; " + END + "exit 0", out=out,
               essential=False)
    after = shell("after", images["base"], STAMP + IDLE, out=out,
                  dependsOn=[{"containerName": "c1", "condition": "COMPLETE"},
                             {"containerName": "s1", "condition": "SUCCESS"}])
    arn = run(ecs, [after, c1, s1], out=out)
    out.wait("after.start", 30)
    assert stamp(out, "after") >= stamp(out, "c1", "end")
    assert stamp(out, "after") >= stamp(out, "s1", "end")
    t = wait_task(ecs, arn, "RUNNING")
    cs = cmap(t)
    assert cs["c1"]["lastStatus"] == "STOPPED" and cs["c1"].get("exitCode") == 3, summary(t)
    assert cs["s1"]["lastStatus"] == "STOPPED" and cs["s1"].get("exitCode") == 0, summary(t)
    assert cs["after"]["lastStatus"] == "RUNNING"
    stop_and_wait(ecs, arn)


def test_success_dependency_exiting_nonzero_stops_task(ecs, images, out):
    dep = shell("dep", images["base"], "sleep 0.5; exit 1", essential=False)
    main = shell("main", images["base"], STAMP + IDLE, out=out,
                 dependsOn=[{"containerName": "dep", "condition": "SUCCESS"}])
    arn = run(ecs, [main, dep], out=out)
    t = wait_task(ecs, arn, "STOPPED", 20)
    cs = cmap(t)
    assert cs["dep"].get("exitCode") == 1, summary(t)
    assert cs["main"]["lastStatus"] == "STOPPED"
    assert "exitCode" not in cs["main"], summary(t)
    assert out.read("main.start") is None, "main must never start"


def test_depends_on_healthy(ecs, images, out):
    db = shell("db", images["base"],
               STAMP + "sleep 2; touch /tmp/ready; " + END + IDLE, out=out,
               healthCheck={"command": ["CMD-SHELL", "test -f /tmp/ready"], "interval": 5,
                            "timeout": 2, "retries": 3})
    app = shell("app", images["base"], STAMP + IDLE, out=out,
                dependsOn=[{"containerName": "db", "condition": "HEALTHY"}])
    arn = run(ecs, [app, db], out=out)
    out.wait("app.start", 30)
    assert stamp(out, "app") >= stamp(out, "db", "end")  # db became ready before app started
    t = describe(ecs, arn)
    assert cmap(t)["db"].get("healthStatus") == "HEALTHY", summary(t)
    stop_and_wait(ecs, arn)


def test_start_timeout_gives_up_waiting_for_dependency(ecs, images, out):
    slow = shell("slow", images["base"], IDLE, essential=False, startTimeout=2)
    main = shell("main", images["base"], STAMP + IDLE, out=out,
                 dependsOn=[{"containerName": "slow", "condition": "COMPLETE"}])
    t0 = time.monotonic()
    arn = run(ecs, [main, slow], out=out)
    t = wait_task(ecs, arn, "STOPPED", 30)
    assert time.monotonic() - t0 < 20
    assert out.read("main.start") is None, "main must not start after the timeout"
    assert "exitCode" not in cmap(t)["main"], summary(t)


# --- essential / non-essential ------------------------------------------------------


def test_essential_container_exit_stops_task(ecs, images):
    main = shell("main", images["base"], "sleep 0.5; exit 3")
    side = shell("side", images["base"], IDLE, essential=False)
    arn = run(ecs, [main, side])
    t = wait_task(ecs, arn, "STOPPED", 30)
    assert t["stopCode"] == "EssentialContainerExited", summary(t)
    assert t["stoppedReason"] == "Essential container in task exited", summary(t)
    cs = cmap(t)
    assert cs["main"].get("exitCode") == 3
    assert cs["side"]["lastStatus"] == "STOPPED"
    assert cs["side"].get("exitCode") == 0, summary(t)  # got SIGTERM, its trap exits 0
    assert "startedAt" in t and "stoppedAt" in t and "executionStoppedAt" in t


def test_non_essential_exit_keeps_task_running(ecs, images):
    main = shell("main", images["base"], IDLE)
    side = shell("side", images["base"], "sleep 0.3; exit 2", essential=False)
    arn = run(ecs, [main, side])
    wait_until(lambda: container_state(ecs, arn, "side")["lastStatus"] == "STOPPED", 20, 0.1,
               "side to stop")
    time.sleep(2)
    t = describe(ecs, arn)
    assert t["lastStatus"] == "RUNNING" and t["desiredStatus"] == "RUNNING", summary(t)
    assert cmap(t)["side"].get("exitCode") == 2
    assert cmap(t)["main"]["lastStatus"] == "RUNNING"
    stop_and_wait(ecs, arn)


# --- stopping -------------------------------------------------------------------------


def test_stop_task_sends_sigterm(ecs, images, out):
    c = shell("trap", images["base"],
              "trap 'echo TERM > /out/term; exit 0' TERM; echo up > /out/up; "
              "while :; do sleep 0.1; done", out=out, stopTimeout=20)
    arn = run(ecs, [c], out=out)
    wait_task(ecs, arn, "RUNNING")
    out.wait("up")
    t0 = time.monotonic()
    t = stop_and_wait(ecs, arn, reason="it: stopping now")
    elapsed = time.monotonic() - t0
    assert out.read("term") == "TERM\n"
    assert cmap(t)["trap"].get("exitCode") == 0, summary(t)
    assert elapsed < 5, f"a TERM-handling container must stop quickly (took {elapsed:.1f}s)"
    assert t["stopCode"] == "UserInitiated", summary(t)
    assert t["stoppedReason"] == "it: stopping now"


def test_stop_signal_from_image_config(ecs, images, out):
    c = container("sig", images["stopsig"], out=out, stopTimeout=20)  # /stop.sh traps USR1/TERM
    arn = run(ecs, [c], out=out)
    wait_task(ecs, arn, "RUNNING")
    out.wait("ready")
    t = stop_and_wait(ecs, arn)
    assert out.read("signal") == "USR1\n", "the image's STOPSIGNAL must be sent first"
    assert cmap(t)["sig"].get("exitCode") == 0, summary(t)


def test_sigkill_after_stop_timeout(ecs, images, scratch):
    out = Out(scratch)
    script = "trap '' TERM; echo up > /out/up.$ECS_CONTAINER_NAME; while :; do sleep 0.1; done"
    a = run(ecs, [shell("five", images["base"], script, out=out, stopTimeout=5)], out=out)
    b = run(ecs, [shell("dflt", images["base"], script, out=out)], out=out)  # agent: 3s
    wait_tasks(ecs, [a, b], "RUNNING")
    out.wait("up.five")
    out.wait("up.dflt")
    t0 = time.time()
    ecs.stop_task(cluster="default", task=a)
    ecs.stop_task(cluster="default", task=b)
    ta, tb = wait_tasks(ecs, [a, b], "STOPPED", 30)
    da = ta["executionStoppedAt"].timestamp() - t0
    db = tb["executionStoppedAt"].timestamp() - t0
    assert cmap(ta)["five"].get("exitCode") == 137, summary(ta)
    assert cmap(tb)["dflt"].get("exitCode") == 137, summary(tb)
    assert 4.5 <= da <= 8, f"stopTimeout 5: killed after {da:.1f}s"
    assert 2.5 <= db <= 6, f"ECS_CONTAINER_STOP_TIMEOUT 3s: killed after {db:.1f}s"


# --- health checks --------------------------------------------------------------------


def test_health_checks_drive_container_and_task_health(ecs, images):
    flip = shell("flip", images["base"], "sleep 3; touch /tmp/bad; " + IDLE,
                 healthCheck={"command": ["CMD-SHELL", "test ! -f /tmp/bad"], "interval": 5,
                              "timeout": 2, "retries": 2})
    startp = shell("startp", images["base"], IDLE,
                   healthCheck={"command": ["CMD-SHELL", "exit 1"], "interval": 5,
                                "timeout": 2, "retries": 1, "startPeriod": 9})
    slow = shell("slowcheck", images["base"], IDLE,
                 healthCheck={"command": ["CMD", "/bin/sleep", "10"], "interval": 5,
                              "timeout": 2, "retries": 1})
    side = shell("side", images["base"], IDLE, essential=False,
                 healthCheck={"command": ["CMD-SHELL", "exit 1"], "interval": 5, "timeout": 2,
                              "retries": 1})
    arns = {"flip": run(ecs, [flip, side]), "startp": run(ecs, [startp]),
            "slowcheck": run(ecs, [slow])}
    wait_tasks(ecs, list(arns.values()), "RUNNING")
    t0 = time.monotonic()
    seen = {k: [] for k in arns}  # (elapsed, container health, task health)
    while time.monotonic() - t0 < 22:
        for k, arn in arns.items():
            t = describe(ecs, arn)
            h = (cmap(t)[k].get("healthStatus"), t.get("healthStatus"))
            if not seen[k] or seen[k][-1][1:] != h:
                seen[k].append((round(time.monotonic() - t0, 1),) + h)
        if all(s[-1][1] == "UNHEALTHY" for s in seen.values()) and \
                time.monotonic() - t0 > 12:
            break
        time.sleep(0.2)
    # flip: HEALTHY first, UNHEALTHY once the check fails `retries` times
    states = [s[1] for s in seen["flip"]]
    assert "HEALTHY" in states and states[-1] == "UNHEALTHY", seen["flip"]
    assert states.index("HEALTHY") < states.index("UNHEALTHY"), seen["flip"]
    healthy_task = [s for s in seen["flip"] if s[1] == "HEALTHY"]
    # the non-essential side container's UNHEALTHY status does not count for the task
    assert healthy_task[0][2] == "HEALTHY", seen["flip"]
    assert seen["flip"][-1][2] == "UNHEALTHY", seen["flip"]
    # startp: failures during startPeriod (9s) do not count
    first_unhealthy = [s[0] for s in seen["startp"] if s[1] == "UNHEALTHY"]
    assert first_unhealthy and first_unhealthy[0] >= 7, seen["startp"]
    assert seen["startp"][-1][2] == "UNHEALTHY"
    # slowcheck: a check that exceeds its timeout is a failure
    assert seen["slowcheck"][-1][1] == "UNHEALTHY", seen["slowcheck"]
    # a standalone task keeps running whatever its health
    for arn in arns.values():
        assert describe(ecs, arn)["lastStatus"] == "RUNNING"
        ecs.stop_task(cluster="default", task=arn)
    wait_tasks(ecs, list(arns.values()), "STOPPED", 30)


# --- failures -------------------------------------------------------------------------


def test_oom_kill(ecs, images):
    hog = "dd if=/dev/zero of=/dev/null bs=96M count=1"
    a = run(ecs, [shell("hog", images["base"], hog, memory=32)])
    # the limit of the task (no container limit): killed in the task cgroup
    b = run(ecs, [shell("hog", images["base"], hog, memory=None)], td_kw={"memory": "48"})
    for t in wait_tasks(ecs, [a, b], "STOPPED", 30):
        cc = cmap(t)["hog"]
        assert cc.get("exitCode") == 137, summary(t)
        assert cc.get("reason") == "OutOfMemoryError: Container killed due to memory usage", \
            summary(t)
        assert t["stopCode"] == "EssentialContainerExited"


def test_nonexistent_binary_cannot_start(ecs, images):
    c = container("nobin", images["base"], command=["/no/such/binary"], entryPoint=[])
    arn = run(ecs, [c])
    t = wait_task(ecs, arn, "STOPPED", 30)
    cc = cmap(t)["nobin"]
    assert (cc.get("reason") or "").startswith("CannotStartContainerError"), summary(t)
    assert "exitCode" not in cc, summary(t)
    assert t["stopCode"] == "TaskFailedToStart", summary(t)
    assert t["stoppedReason"].startswith("CannotStartContainerError"), summary(t)


def test_missing_image_cannot_pull(ecs, images):
    reg = images["_registry"]
    c = container("ghost", f"{reg.host}/it/does-not-exist:missing", command=["true"])
    arn = run(ecs, [c])
    t = wait_task(ecs, arn, "STOPPED", 30)
    cc = cmap(t)["ghost"]
    assert (cc.get("reason") or "").startswith("CannotPullContainerError"), summary(t)
    assert "exitCode" not in cc
    assert t["stopCode"] == "TaskFailedToStart", summary(t)
    assert t["stoppedReason"].startswith("CannotPullContainerError"), summary(t)


# --- cleanup --------------------------------------------------------------------------


def test_cleanup_after_task_cleanup_wait_duration(node, ecs, images):
    c = shell("web", images["base"], "httpd -f -p 8080 -h /var/www",
              portMappings=[{"containerPort": 8080, "hostPort": 0}])
    arn = run(ecs, [c])
    t = wait_task(ecs, arn, "RUNNING")
    rid = cmap(t)["web"]["runtimeId"]
    tdir = node.agent_data / "tasks" / task_id(arn)
    cdir = container_dir(node, arn, "web")
    key = node.key
    # while running: rootfs mount, cgroup, netns, veth, runc container, monitor
    assert mounts_under(cdir), "the rootfs overlay should be mounted"
    assert any(task_id(arn) in d for d in cgroup_dirs(key))
    assert any(rid in f for f in netns_files(key))
    assert bridge_ports(node.bridge)
    assert rid in runc_containers(key)
    mons = monitor_pids(key)
    assert mons
    stop_and_wait(ecs, arn)
    time.sleep(1)
    assert tdir.exists(), "cleanup must wait ECS_ENGINE_TASK_CLEANUP_WAIT_DURATION"
    wait_until(lambda: not tdir.exists(), CLEANUP_WAIT + 15, 0.2, "the task dir to be removed")
    assert not mounts_under(tdir)
    assert not any(task_id(arn) in d for d in cgroup_dirs(key)), cgroup_dirs(key)
    assert not any(rid in f for f in netns_files(key))
    assert rid not in runc_containers(key)
    assert not bridge_ports(node.bridge)
    assert not any(pid_alive(p) for p in mons if p in monitor_pids(key))


def test_state_reports_and_short_cleanup_wait_under_load(images):
    """Many tasks stopping at once with a very short cleanup wait: every task
    must reach STOPPED on the server with every container STOPPED, and the
    agent must not crash (a task may only be freed once no state report for
    it is in flight, and only after the server acknowledged STOPPED)."""
    with node_ctx("reports", {"ECS_ENGINE_TASK_CLEANUP_WAIT_DURATION": "100ms"}) as n:
        ecs = n.client("ecs")
        arns = []
        for wave in range(4):
            batch = [run(ecs, [shell("a", images["base"], "echo a"),
                               shell("b", images["base"], "echo b", essential=False)],
                         network_mode="awsvpc") for _ in range(10)]
            arns += batch
            try:
                wait_tasks(ecs, batch, "STOPPED", 20)
            except AssertionError:
                pass
        crashes = re.findall(r"embedded agent exited with status \d+", n.agent_log())
        stuck = [summary(t) for i in range(0, len(arns), 100)
                 for t in ecs.describe_tasks(cluster="default", tasks=arns[i:i + 100])["tasks"]
                 if t["lastStatus"] != "STOPPED"
                 or any(c["lastStatus"] != "STOPPED" for c in t["containers"])]
        assert not crashes, f"the agent crashed: {crashes}; tasks not fully STOPPED: {stuck[:3]}"
        assert not stuck, "\n".join(stuck[:5])


def slow_runtime(scratch, seconds):
    """An OCI runtime whose `run` hangs for `seconds` (or until `release`
    exists) before calling runc: a stuck container start."""
    rel = scratch / "release"
    rt = scratch / "slow-runc"
    rt.write_text(f"""#!/bin/sh
for a in "$@"; do
    if [ "$a" = run ]; then
        i=0
        while [ ! -f {rel} ] && [ $i -lt {seconds * 10} ]; do sleep 0.1; i=$((i+1)); done
        break
    fi
done
exec /usr/sbin/runc "$@"
""")
    rt.chmod(0o755)
    return rt, rel


def unstick(ag, arn, rel, name="app"):
    """Lets the runtime go on and kills the container if it came up (so a
    failing test does not leave the agent waiting on it)."""
    rel.touch()
    try:
        pid = wait_until(lambda: container_pid(ag.data_dir, arn, name), 5, 0.1, "container pid")
    except AssertionError:
        return
    if pid_alive(pid):
        os.kill(pid, signal.SIGKILL)


def test_container_start_timeout(images, scratch):
    """ECS_CONTAINER_START_TIMEOUT: a container whose runtime does not start it
    in time is given up on (and the task stops) instead of staying PENDING."""
    rt, rel = slow_runtime(scratch, 30)
    with server_ctx("starttosrv") as srv:
        ag = Agent(srv, scratch, "startto", runtime=str(rt),
                   env={"ECS_CONTAINER_START_TIMEOUT": "3s",
                        "ECS_ENGINE_TASK_CLEANUP_WAIT_DURATION": "2s",
                        "ECS_CONTAINER_STOP_TIMEOUT": "2s"})
        with agents_ctx(srv, ag):
            ecs = srv.client("ecs")
            arn = run(ecs, [shell("app", images["base"], IDLE)])
            t0 = time.monotonic()
            try:
                try:
                    t = wait_task(ecs, arn, "STOPPED", 10)
                except AssertionError:
                    t = describe(ecs, arn)
                assert t["lastStatus"] == "STOPPED", (
                    f"still {t['lastStatus']} {time.monotonic() - t0:.0f}s after the start with a"
                    f" 3s start timeout: {summary(t)}")
                reason = cmap(t)["app"].get("reason") or ""
                assert reason.split(":")[0] in ("ContainerRuntimeTimeoutError",
                                                "DockerTimeoutError",
                                                "CannotStartContainerError"), summary(t)
            finally:
                unstick(ag, arn, rel)


def test_stop_while_container_is_being_created(images, scratch):
    """StopTask arrives while the runtime is still creating the container: once
    the container comes up it must be stopped, and the task reach STOPPED."""
    rt, rel = slow_runtime(scratch, 3)
    with server_ctx("stopcreatesrv") as srv:
        ag = Agent(srv, scratch, "stopcreate", runtime=str(rt),
                   env={"ECS_ENGINE_TASK_CLEANUP_WAIT_DURATION": "2s",
                        "ECS_CONTAINER_STOP_TIMEOUT": "2s"})
        with agents_ctx(srv, ag):
            ecs = srv.client("ecs")
            arn = run(ecs, [shell("app", images["base"], IDLE)])
            wait_until(lambda: (ag.data_dir / "tasks" / task_id(arn) / "containers" / "app" /
                                "monitor" / "monitor.pid").exists(), 10, 0.05, "the monitor")
            ecs.stop_task(cluster="default", task=arn)
            try:
                try:
                    t = wait_task(ecs, arn, "STOPPED", 12)
                except AssertionError:
                    t = describe(ecs, arn)
                pid = container_pid(ag.data_dir, arn, "app")
                assert t["lastStatus"] == "STOPPED", (
                    f"container alive={bool(pid and pid_alive(pid))} 12s after StopTask: "
                    f"{summary(t)}")
            finally:
                unstick(ag, arn, rel)
