"""The service scheduler with real containers.

Each test runs one skiff server (--no-agent) and three `skiff agent`
processes on this host, one per availability zone (us-east-1a/b/c), each with
its own data dir and config; the agents run busybox containers with runc,
pulled from a loopback docker-registry. Tasks stop on SIGTERM at once (see
SLEEP_CMD) and the agents clean up 5 s after a task stops, so a test costs a
few seconds of teardown. Needs root; skipped otherwise."""
import os
import re
import signal
import subprocess
import time

import pytest
from botocore.exceptions import ClientError, WaiterError

from conftest import AWS_CLI
from service_helpers import images  # noqa: F401  (session fixture)
from service_helpers import (HEALTHY_DELAY, STUBBORN_CMD, Trio, circuit_breaker_threshold,
                             describe_service, describe_tasks, events,
                             make_fleet_fixture, max_total, min_healthy, register_td, remaining,
                             service_tasks, short_id, unique, wait_for, wait_steady)

ZONES3 = {"us-east-1a", "us-east-1b", "us-east-1c"}
TASK_ID = r"[0-9a-f]{32}"


@pytest.fixture
def fleet_factory(server_factory, tmp_path, images):  # noqa: F811
    made = []

    def make(env=None):
        f = make_fleet_fixture(server_factory, tmp_path, images, env)
        made.append(f)
        return f

    yield make
    for f in made:
        f.teardown()


@pytest.fixture
def trio(fleet_factory):
    return Trio(fleet_factory())


def running_tasks(ecs, cluster, service):
    return [t for t in service_tasks(ecs, cluster, service, include_stopped=False)
            if t["lastStatus"] == "RUNNING" and t["desiredStatus"] == "RUNNING"]


def create_service(ecs, cluster, td, desired=3, name=None, **kw):
    name = name or unique("svc")
    ecs.create_service(cluster=cluster, serviceName=name,
                       taskDefinition=td["taskDefinitionArn"], desiredCount=desired, **kw)
    return name


def started_event_ids(msgs, name, n=None):
    """Task ids of every "(service X) has started N tasks: (task …)…." event."""
    out = []
    for m in msgs:
        mm = re.fullmatch(rf"\(service {re.escape(name)}\) has started (\d+) tasks: "
                          rf"((?:\(task {TASK_ID}\) ?)+)\.", m)
        if mm and (n is None or int(mm.group(1)) == n):
            ids = re.findall(rf"\(task ({TASK_ID})\)", mm.group(2))
            assert len(ids) == int(mm.group(1)), m
            out.append(ids)
    return out


def container_pid(trio, task):
    """PID of the task's (only) container: from `runc state`, cross-checked
    against the container cgroup's cgroup.procs when that file exists."""
    c = task["containers"][0]
    agent = trio.fleet.agent_of(task["containerInstanceArn"])
    st = agent.runc_state(c["runtimeId"])
    assert st["status"] == "running", st
    pid = st["pid"]
    key = agent.keys()[0]
    tid = short_id(task["taskArn"])
    for ctl in ("memory", "pids", "unified", ""):
        procs = os.path.join("/sys/fs/cgroup", ctl, "skiff", key, tid, c["runtimeId"],
                             "cgroup.procs")
        if os.path.exists(procs):
            with open(procs) as f:
                assert str(pid) in f.read().split(), f"pid {pid} not in {procs}"
            break
    return pid


# --- placement of service tasks ----------------------------------------------


def test_service_default_spread_puts_tasks_on_distinct_instances(trio):
    ecs, cl = trio.ecs, trio.cluster
    td = trio.td()
    name = create_service(ecs, cl, td, 3)
    svc = wait_steady(ecs, cl, name, 3, timeout=60)
    tasks = running_tasks(ecs, cl, name)
    assert len(tasks) == 3
    assert {t["containerInstanceArn"] for t in tasks} == set(trio.arn.values())
    assert {t["availabilityZone"] for t in tasks} == ZONES3
    for t in tasks:
        assert t["group"] == f"service:{name}"
        assert t["startedBy"] == svc["deployments"][0]["id"]
        assert t["launchType"] == "EC2"
        # The container really runs on the agent of that instance.
        agent = trio.fleet.agent_of(t["containerInstanceArn"])
        assert agent.runc_state(t["containers"][0]["runtimeId"])["status"] == "running"
    msgs = events(svc)
    started = started_event_ids(msgs, name, 3)
    assert started, msgs
    assert set(started[0]) == {short_id(t["taskArn"]) for t in tasks}
    assert f"(service {name}) has reached a steady state." in msgs
    assert svc["deployments"][0]["rolloutState"] == "COMPLETED"

    # Scaling out keeps the spread: two per zone, one zone per instance here.
    ecs.update_service(cluster=cl, service=name, desiredCount=6)
    wait_steady(ecs, cl, name, 6, timeout=60)
    per = {}
    for t in running_tasks(ecs, cl, name):
        per[t["availabilityZone"]] = per.get(t["availabilityZone"], 0) + 1
    assert per == {z: 2 for z in ZONES3}
    # (Scale-in balance is checked deterministically on simulated agents:
    # test_services_rolling.py::test_scale_in_takes_from_the_busiest_zone_and_instance.)


def test_killed_container_process_is_replaced(trio):
    ecs, cl = trio.ecs, trio.cluster
    name = create_service(ecs, cl, trio.td(), 2)
    wait_steady(ecs, cl, name, 2, timeout=60)
    before = running_tasks(ecs, cl, name)
    victim = before[0]
    pid = container_pid(trio, victim)
    os.kill(pid, signal.SIGKILL)

    def stopped():
        t = describe_tasks(ecs, cl, [victim["taskArn"]])[0]
        return t if t["lastStatus"] == "STOPPED" else None

    t = wait_for(stopped, 30, 0.1, "the task whose container was killed to stop")
    assert t["containers"][0].get("exitCode") == 137, t["containers"][0]
    assert t["stopCode"] == "EssentialContainerExited", t
    assert t["stoppedReason"] == "Essential container in task exited", t
    svc = wait_steady(ecs, cl, name, 2, timeout=60)
    now = running_tasks(ecs, cl, name)
    assert victim["taskArn"] not in {x["taskArn"] for x in now}
    new = [x for x in now if x["taskArn"] not in {b["taskArn"] for b in before}]
    assert len(new) == 1, now
    started = started_event_ids(events(svc), name, 1)
    assert [short_id(new[0]["taskArn"])] in started, events(svc)


@pytest.mark.parametrize("timeouts", [
    pytest.param(("3s", "6s"), id="agent-timeout-3s"),
    # Longer than the agent's 20 s long poll: isolates replacement from
    # how long an idle agent's poll is held.
    pytest.param(("25s", "30s"), id="agent-timeout-25s", marks=pytest.mark.slow),
])
def test_killed_agent_host_lost_tasks_replaced(fleet_factory, timeouts):
    agent_timeout, host_lost = timeouts
    fleet = fleet_factory({"SKIFF_AGENT_TIMEOUT": agent_timeout,
                           "SKIFF_HOST_LOST_AFTER": host_lost})
    trio = Trio(fleet)
    ecs, cl = trio.ecs, trio.cluster
    name = create_service(ecs, cl, trio.td(), 3)
    wait_steady(ecs, cl, name, 3, timeout=60)
    before = {t["containerInstanceArn"]: t for t in running_tasks(ecs, cl, name)}
    assert set(before) == set(trio.arn.values())
    dead_arn = trio.arn["us-east-1a"]
    alive_arns = [trio.arn["us-east-1b"], trio.arn["us-east-1c"]]
    dead_ec2 = trio.instances()[dead_arn]["ec2InstanceId"]
    trio.agents["us-east-1a"].kill9()
    killed_at = time.monotonic()

    # Collect the whole timeline, then judge it (so one run reports every problem).
    limit = float(host_lost[:-1]) + 20 + 15  # host lost + a held long poll + slack
    samples = []
    dead_disconnected_at = stopped_at = replaced_at = None
    while time.monotonic() - killed_at < limit:
        cis = trio.instances()
        now = time.monotonic() - killed_at
        samples.append((round(now, 1), {a: cis[a]["agentConnected"] for a in cis}))
        if dead_disconnected_at is None and not cis[dead_arn]["agentConnected"]:
            dead_disconnected_at = now
        victim = describe_tasks(ecs, cl, [before[dead_arn]["taskArn"]])[0]
        if stopped_at is None and victim["lastStatus"] == "STOPPED":
            stopped_at = now
        run = running_tasks(ecs, cl, name)
        if (stopped_at is not None and len(run) == 3 and
                all(t["containerInstanceArn"] != dead_arn for t in run)):
            replaced_at = now
            break
        time.sleep(0.3)

    problems = []
    timeout_s, lost_s = float(agent_timeout[:-1]), float(host_lost[:-1])
    if dead_disconnected_at is None:
        problems.append("the killed agent never showed agentConnected false")
    elif dead_disconnected_at > timeout_s + 3:
        problems.append(f"the killed agent showed agentConnected false only after "
                        f"{dead_disconnected_at:.1f}s (SKIFF_AGENT_TIMEOUT={agent_timeout})")
    flaps = [(t, [s[a] for a in alive_arns]) for t, s in samples
             if not all(s[a] for a in alive_arns)]
    if flaps:
        problems.append(f"the two healthy agents were reported agentConnected false in "
                        f"{len(flaps)}/{len(samples)} samples (first at {flaps[0][0]}s)")
    for a in alive_arns:
        t = describe_tasks(ecs, cl, [before[a]["taskArn"]])[0]
        if (t["lastStatus"], t["desiredStatus"]) != ("RUNNING", "RUNNING"):
            problems.append(f"the task on live instance {short_id(a)} was stopped: "
                            f"{t.get('stoppedReason')}")
    victim = describe_tasks(ecs, cl, [before[dead_arn]["taskArn"]])[0]
    if victim["lastStatus"] != "STOPPED":
        problems.append(f"the dead instance's task is {victim['lastStatus']} after {limit:.0f}s")
    else:
        if not re.match(rf"Host EC2 \(instance {re.escape(dead_ec2)}\) is unreachable",
                        victim.get("stoppedReason", "")):
            problems.append(f"stoppedReason: {victim.get('stoppedReason')!r}")
        if stopped_at > timeout_s + lost_s + 5:
            problems.append(f"the dead instance's task stopped only after {stopped_at:.1f}s "
                            f"(SKIFF_HOST_LOST_AFTER={host_lost})")
    if replaced_at is None:
        run = running_tasks(ecs, cl, name)
        problems.append(f"not replaced on the live instances: running on "
                        f"{sorted(short_id(t['containerInstanceArn']) for t in run)}")
    else:
        svc = describe_service(ecs, cl, name)
        if not started_event_ids(events(svc), name, 1):
            problems.append("no 'has started 1 tasks' event for the replacement")
    assert not problems, "\n".join(problems)


def test_daemon_service_one_task_per_instance_and_new_instances(trio):
    ecs, cl = trio.ecs, trio.cluster
    td = trio.td()
    every = unique("daemon")
    ecs.create_service(cluster=cl, serviceName=every, taskDefinition=td["taskDefinitionArn"],
                       schedulingStrategy="DAEMON")
    not_b = unique("daemon-notb")
    ecs.create_service(cluster=cl, serviceName=not_b, taskDefinition=td["taskDefinitionArn"],
                       schedulingStrategy="DAEMON", placementConstraints=[
                           {"type": "memberOf",
                            "expression": "attribute:ecs.availability-zone != us-east-1b"}])
    svc = wait_steady(ecs, cl, every, 3, timeout=60)
    assert svc["schedulingStrategy"] == "DAEMON"
    assert svc["deploymentConfiguration"]["maximumPercent"] == 100
    assert svc["deploymentConfiguration"]["minimumHealthyPercent"] == 0
    assert sorted(t["containerInstanceArn"] for t in running_tasks(ecs, cl, every)) == \
        sorted(trio.arn.values())
    wait_steady(ecs, cl, not_b, 2, timeout=60)
    assert {t["availabilityZone"] for t in running_tasks(ecs, cl, not_b)} == \
        {"us-east-1a", "us-east-1c"}

    new = trio.add("us-east-1d")
    svc = wait_steady(ecs, cl, every, 4, timeout=60)
    run = running_tasks(ecs, cl, every)
    assert sorted(t["containerInstanceArn"] for t in run) == sorted(trio.arn.values())
    on_new = [t for t in run if t["containerInstanceArn"] == new.arn]
    assert len(on_new) == 1
    assert [short_id(on_new[0]["taskArn"])] in started_event_ids(events(svc), every, 1)
    wait_steady(ecs, cl, not_b, 3, timeout=60)
    assert {t["availabilityZone"] for t in running_tasks(ecs, cl, not_b)} == \
        {"us-east-1a", "us-east-1c", "us-east-1d"}

    # A new revision replaces the daemon task on every instance, stopping the
    # old one first (maximumPercent 100): never two live tasks on one instance.
    td2 = trio.td(family=td["family"])
    ecs.update_service(cluster=cl, service=every, taskDefinition=td2["taskDefinitionArn"])
    deadline = time.monotonic() + 60
    while True:
        assert time.monotonic() < deadline, "the daemon did not roll to the new revision"
        live = [t for t in service_tasks(ecs, cl, every) if t["lastStatus"] != "STOPPED"]
        per = {}
        for t in live:
            per[t["containerInstanceArn"]] = per.get(t["containerInstanceArn"], 0) + 1
        assert max(per.values(), default=0) <= 1, per
        if (len(live) == 4 and len(per) == 4 and
                all(t["taskDefinitionArn"] == td2["taskDefinitionArn"] and
                    t["lastStatus"] == "RUNNING" for t in live)):
            break
        time.sleep(0.1)
    svc = wait_steady(ecs, cl, every, 4, timeout=30)
    assert svc["deployments"][0]["taskDefinition"] == td2["taskDefinitionArn"]


def healthy_now(t, now):
    return (t["lastStatus"] == "RUNNING" and t["desiredStatus"] == "RUNNING" and
            "startedAt" in t and t["startedAt"].timestamp() <= now - HEALTHY_DELAY)


def test_draining_instance_moves_service_tasks_only(trio):
    ecs, cl = trio.ecs, trio.cluster
    desired, minp, maxp = 3, 100, 200
    name = create_service(ecs, cl, trio.td(), desired, deploymentConfiguration={
        "minimumHealthyPercent": minp, "maximumPercent": maxp})
    drained = trio.arn["us-east-1a"]
    standalone = ecs.start_task(cluster=cl, taskDefinition=trio.td()["taskDefinitionArn"],
                                containerInstances=[drained])["tasks"][0]
    wait_steady(ecs, cl, name, desired, timeout=60)
    wait_for(lambda: describe_tasks(ecs, cl, [standalone["taskArn"]])[0]["lastStatus"] ==
             "RUNNING", 30, 0.1, "the standalone task to run")
    time.sleep(HEALTHY_DELAY + 0.2)
    old_on_drained = [t for t in running_tasks(ecs, cl, name)
                      if t["containerInstanceArn"] == drained]
    assert len(old_on_drained) == 1

    out = ecs.update_container_instances_state(cluster=cl, containerInstances=[drained],
                                               status="DRAINING")
    assert out["containerInstances"][0]["status"] == "DRAINING"
    violations = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        t0 = time.time()
        tasks = service_tasks(ecs, cl, name)
        t1 = time.time()
        live = [t for t in tasks if t["lastStatus"] != "STOPPED"]
        healthy = [t for t in live if healthy_now(t, t1)]
        if t1 - t0 < HEALTHY_DELAY * 0.9 and len(healthy) < min_healthy(desired, minp):
            violations.append(("healthy", len(healthy), [t["lastStatus"] for t in live]))
        if len(live) > max_total(desired, maxp):
            violations.append(("live", len(live)))
        run = [t for t in live if t["lastStatus"] == "RUNNING" and
               t["desiredStatus"] == "RUNNING"]
        if (len(run) == desired and all(t["containerInstanceArn"] != drained for t in run)
                and len(live) == desired):
            break
        time.sleep(0.1)
    else:
        raise AssertionError("service tasks did not leave the draining instance")
    assert not violations, violations
    moved = describe_tasks(ecs, cl, [old_on_drained[0]["taskArn"]])[0]
    assert moved["desiredStatus"] == "STOPPED"
    assert moved["stopCode"] == "ServiceSchedulerInitiated", moved
    wait_steady(ecs, cl, name, desired, timeout=30)
    # The standalone task is untouched.
    st = describe_tasks(ecs, cl, [standalone["taskArn"]])[0]
    assert (st["lastStatus"], st["desiredStatus"]) == ("RUNNING", "RUNNING"), st
    # Nothing new lands on the draining instance.
    td = trio.td()
    r = ecs.run_task(cluster=cl, taskDefinition=td["taskDefinitionArn"], count=6,
                     placementStrategy=[{"type": "spread", "field": "instanceId"}])
    assert len(r["tasks"]) == 6, r["failures"]
    assert all(t["containerInstanceArn"] != drained for t in r["tasks"])
    ec2 = trio.instances()[drained]["ec2InstanceId"]
    pinned = [{"type": "memberOf", "expression": f"ec2InstanceId == {ec2}"}]
    r = ecs.run_task(cluster=cl, taskDefinition=td["taskDefinitionArn"],
                     placementConstraints=pinned)
    assert r["tasks"] == []
    assert any(f.get("arn") == drained for f in r["failures"]), r["failures"]
    ecs.update_service(cluster=cl, service=name, desiredCount=6)
    wait_steady(ecs, cl, name, 6, timeout=60)
    assert all(t["containerInstanceArn"] != drained for t in running_tasks(ecs, cl, name))
    # ACTIVE again: placement there works.
    out = ecs.update_container_instances_state(cluster=cl, containerInstances=[drained],
                                               status="ACTIVE")
    assert out["containerInstances"][0]["status"] == "ACTIVE"
    r = ecs.run_task(cluster=cl, taskDefinition=td["taskDefinitionArn"],
                     placementConstraints=pinned)
    assert r["failures"] == [] and r["tasks"][0]["containerInstanceArn"] == drained


# --- deployments ------------------------------------------------------------------


def test_circuit_breaker_rolls_back_to_last_good_revision(trio):
    ecs, cl = trio.ecs, trio.cluster
    desired = 10
    threshold = circuit_breaker_threshold(desired)
    assert threshold == 10
    fam = unique("cb")
    good = trio.td(family=fam, cpu=16, memory=32)
    bad = register_td(ecs, trio.images.missing, family=fam, cpu=16, memory=32)
    assert bad["revision"] == good["revision"] + 1
    name = create_service(ecs, cl, good, desired, deploymentConfiguration={
        "deploymentCircuitBreaker": {"enable": True, "rollback": True},
        "maximumPercent": 200, "minimumHealthyPercent": 100})
    svc = wait_steady(ecs, cl, name, desired, timeout=90)
    first = svc["deployments"][0]
    assert first["rolloutState"] == "COMPLETED"

    ecs.update_service(cluster=cl, service=name, taskDefinition=bad["taskDefinitionArn"])
    svc = describe_service(ecs, cl, name)
    failing = svc["deployments"][0]
    assert failing["taskDefinition"] == bad["taskDefinitionArn"]
    assert failing["rolloutState"] == "IN_PROGRESS"
    seen_in_progress = []

    def failed():
        s = describe_service(ecs, cl, name)
        d = next((x for x in s["deployments"] if x["id"] == failing["id"]), None)
        if d is None:
            return s  # already gone: the rollback finished
        if d["rolloutState"] == "IN_PROGRESS":
            seen_in_progress.append(d["failedTasks"])
            return None
        return s if d["rolloutState"] == "FAILED" else None

    s = wait_for(failed, 90, 0.1, "the circuit breaker to fail the deployment")
    assert all(n < threshold for n in seen_in_progress), seen_in_progress
    d = next((x for x in s["deployments"] if x["id"] == failing["id"]), None)
    if d is not None:
        assert d["failedTasks"] >= threshold, d
        assert d["rolloutStateReason"] == "ECS deployment circuit breaker: task failed to start."
        assert d["status"] != "PRIMARY"
    svc = wait_steady(ecs, cl, name, desired, timeout=90)
    (final,) = svc["deployments"]
    assert final["taskDefinition"] == good["taskDefinitionArn"]
    assert final["id"] not in (first["id"], failing["id"])
    assert final["rolloutState"] == "COMPLETED"
    assert svc["taskDefinition"] == good["taskDefinitionArn"]
    msgs = events(svc)
    fail_msg = f"(service {name}) (deployment {failing['id']}) deployment failed: tasks failed to start."
    assert fail_msg in msgs, msgs
    rb = [m for m in msgs if re.fullmatch(
        rf"\(service {re.escape(name)}\) \(deployment {re.escape(final['id'])}\) deployment "
        rf"started: ECS deployment circuit breaker: rolling back to deploymentId "
        rf"{re.escape(first['id'])}\.", m)]
    assert rb, msgs
    steady = f"(service {name}) has reached a steady state."
    assert msgs.index(fail_msg) < len(msgs) - 1 - msgs[::-1].index(steady)
    # The failed revision's tasks never ran; they carry the pull error.
    bad_tasks = [t for t in service_tasks(ecs, cl, name)
                 if t["taskDefinitionArn"] == bad["taskDefinitionArn"]]
    assert len(bad_tasks) >= threshold
    for t in bad_tasks:
        assert t["lastStatus"] == "STOPPED"
        assert t["stopCode"] == "TaskFailedToStart", t
        assert "startedAt" not in t
        assert t["containers"][0].get("reason", "").startswith("CannotPullContainerError"), t
    assert sum(1 for t in bad_tasks) == threshold, "a FAILED deployment launches no more tasks"


def test_wait_services_stable(trio):
    ecs, cl, srv = trio.ecs, trio.cluster, trio.fleet.server
    fam = unique("stable")
    # Old tasks ignore SIGTERM: they take their 6 s stop timeout to go, so the
    # old deployment lingers while the new one already runs everything.
    old = trio.td(family=fam, command=STUBBORN_CMD, stop_timeout=6)
    new = trio.td(family=fam)
    name = create_service(ecs, cl, old, 2)
    wait_steady(ecs, cl, name, 2, timeout=60)
    t0 = time.monotonic()
    srv.aws("wait", "services-stable", "--cluster", cl, "--services", name)
    assert time.monotonic() - t0 < 10, "a stable service answers the waiter's first poll"

    ecs.update_service(cluster=cl, service=name, taskDefinition=new["taskDefinitionArn"])
    env = {"PATH": "/usr/bin:/bin", "HOME": str(srv.base_dir),
           "AWS_SHARED_CREDENTIALS_FILE": str(srv.credentials_path),
           "AWS_CONFIG_FILE": str(srv.base_dir / "aws-config-none"),
           "AWS_DEFAULT_REGION": "us-east-1", "AWS_PAGER": ""}
    waiter = subprocess.Popen([AWS_CLI, "--endpoint-url", srv.endpoint, "ecs", "wait",
                               "services-stable", "--cluster", cl, "--services", name],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    started = time.monotonic()
    last_unstable = None
    two_deployments_seen = False
    waiter_done_at = None
    while time.monotonic() - started < 90:
        s = describe_service(ecs, cl, name)
        now = time.monotonic()
        if len(s["deployments"]) > 1:
            two_deployments_seen = True
        if not (len(s["deployments"]) == 1 and s["runningCount"] == s["desiredCount"]):
            last_unstable = now
        if waiter.poll() is not None:
            waiter_done_at = time.monotonic()
            break
        time.sleep(0.1)
    out, err = waiter.communicate(timeout=60)
    assert waiter.returncode == 0, err
    assert two_deployments_seen
    assert waiter_done_at is not None and last_unstable is not None
    assert waiter_done_at >= last_unstable, (
        f"the waiter returned at {waiter_done_at - started:.1f}s although the service still had "
        f"two deployments at {last_unstable - started:.1f}s")
    s = describe_service(ecs, cl, name)
    assert len(s["deployments"]) == 1 and s["runningCount"] == 2

    # A deployment that cannot finish never satisfies the waiter.
    broken = register_td(ecs, trio.images.missing, family=fam)
    ecs.update_service(cluster=cl, service=name, taskDefinition=broken["taskDefinitionArn"])
    with pytest.raises(WaiterError):
        ecs.get_waiter("services_stable").wait(cluster=cl, services=[name],
                                               WaiterConfig={"Delay": 1, "MaxAttempts": 6})
    # A deleted service is a terminal failure for the waiter.
    ecs.delete_service(cluster=cl, service=name, force=True)
    p = srv._cli(["wait", "services-stable", "--cluster", cl, "--services", name])
    assert p.returncode != 0
    assert "terminal failure" in p.stderr or "failed" in p.stderr.lower(), p.stderr


def test_delete_service_lifecycle(trio):
    ecs, cl = trio.ecs, trio.cluster
    td = trio.td(command=STUBBORN_CMD, stop_timeout=4)
    name = create_service(ecs, cl, td, 2)
    wait_steady(ecs, cl, name, 2, timeout=60)
    tasks = running_tasks(ecs, cl, name)
    with pytest.raises(ClientError) as ei:
        ecs.delete_service(cluster=cl, service=name)
    assert ei.value.response["Error"]["Code"] == "InvalidParameterException"
    assert describe_service(ecs, cl, name)["status"] == "ACTIVE"

    out = ecs.delete_service(cluster=cl, service=name, force=True)["service"]
    assert out["status"] == "DRAINING"
    assert out["desiredCount"] == 0
    arns = ecs.list_services(cluster=cl)["serviceArns"]
    assert out["serviceArn"] not in arns
    s = describe_service(ecs, cl, name)
    assert s["status"] == "DRAINING"
    # While DRAINING, the name cannot be reused and the service cannot be updated.
    with pytest.raises(ClientError) as ei:
        ecs.create_service(cluster=cl, serviceName=name, taskDefinition=td["taskDefinitionArn"],
                           desiredCount=1)
    assert ei.value.response["Error"]["Code"] in ("InvalidParameterException",
                                                  "ClientException")
    with pytest.raises(ClientError) as ei:
        ecs.update_service(cluster=cl, service=name, desiredCount=3)
    assert ei.value.response["Error"]["Code"] == "ServiceNotActiveException"

    wait_for(lambda: describe_service(ecs, cl, name)["status"] == "INACTIVE", 60, 0.2,
             "the service to become INACTIVE")
    for t in describe_tasks(ecs, cl, [t["taskArn"] for t in tasks]):
        assert t["desiredStatus"] == "STOPPED"
        assert t["lastStatus"] in ("STOPPED",), t["lastStatus"]
    s = describe_service(ecs, cl, name)
    assert s["status"] == "INACTIVE"
    assert s["serviceArn"] == out["serviceArn"]
    assert out["serviceArn"] not in ecs.list_services(cluster=cl)["serviceArns"]
    with pytest.raises(ClientError) as ei:
        ecs.delete_service(cluster=cl, service=name, force=True)
    assert ei.value.response["Error"]["Code"] == "ServiceNotActiveException"
    # An INACTIVE service's name can be used again.
    ecs.create_service(cluster=cl, serviceName=name, taskDefinition=trio.td()["taskDefinitionArn"],
                       desiredCount=1)
    wait_steady(ecs, cl, name, 1, timeout=60)


# --- events -----------------------------------------------------------------------


def test_event_unable_to_place(trio):
    ecs, cl = trio.ecs, trio.cluster
    cpu = max(remaining(ci, "CPU") for ci in trio.instances().values())
    td = trio.td(cpu=cpu + 1)
    name = create_service(ecs, cl, td, 1)
    rx = (rf"^\(service {re.escape(name)}\) was unable to place a task because no container "
          rf"instance met all of its requirements\. The closest matching \(container-instance "
          rf"([0-9a-f]{{32}})\) has insufficient CPU units available\. For more information, see "
          rf"the Troubleshooting section\.$")
    msgs = wait_for(lambda: [m for m in events(describe_service(ecs, cl, name))
                             if re.match(rx, m)], 20, 0.2, "the unable-to-place event")
    inst = re.match(rx, msgs[0]).group(1)
    assert inst in {short_id(a) for a in trio.arn.values()}
    s = describe_service(ecs, cl, name)
    assert s["runningCount"] == 0 and s["pendingCount"] == 0
    assert ecs.list_tasks(cluster=cl, serviceName=name)["taskArns"] == []


def test_event_unable_to_consistently_start_tasks(trio):
    ecs, cl = trio.ecs, trio.cluster
    td = register_td(ecs, trio.images.missing)
    name = create_service(ecs, cl, td, 1)
    msg = (f"(service {name}) is unable to consistently start tasks successfully. For more "
           f"information, see the Troubleshooting section.")
    wait_for(lambda: msg in events(describe_service(ecs, cl, name)), 60, 0.3,
             "the throttling event")
    s = describe_service(ecs, cl, name)
    assert s["runningCount"] == 0
    stopped = [t for t in service_tasks(ecs, cl, name) if t["lastStatus"] == "STOPPED"]
    assert len(stopped) >= 4, len(stopped)
    for t in stopped:
        assert t["stopCode"] == "TaskFailedToStart", t
        assert t["containers"][0].get("reason", "").startswith("CannotPullContainerError"), t
    # Every failed launch was announced; the breaker is off so nothing FAILED.
    assert s["deployments"][0]["rolloutState"] == "IN_PROGRESS"
    assert len(started_event_ids(events(s), name, 1)) >= 1
    # A new task definition lifts the throttle at once.
    good = trio.td()
    ecs.update_service(cluster=cl, service=name, taskDefinition=good["taskDefinitionArn"])
    wait_steady(ecs, cl, name, 1, timeout=30)


def test_tasks_dying_after_running_are_replaced_without_throttling(trio):
    """Tasks that reach RUNNING and then exit do not start the throttle logic:
    the scheduler keeps replacing them, without the throttling event."""
    ecs, cl = trio.ecs, trio.cluster
    td = trio.td(command=["sh", "-c", "sleep 1; exit 3"])
    name = create_service(ecs, cl, td, 1)

    def died_often():
        ts = [t for t in service_tasks(ecs, cl, name) if t["lastStatus"] == "STOPPED"]
        return ts if len(ts) >= 5 else None

    stopped = wait_for(died_often, 60, 0.3, "five tasks to run and exit")
    for t in stopped:
        assert "startedAt" in t, t
        assert t["stopCode"] == "EssentialContainerExited", t
        assert t["containers"][0].get("exitCode") == 3, t["containers"][0]
    msgs = events(describe_service(ecs, cl, name))
    assert not [m for m in msgs if "unable to consistently start tasks" in m], msgs
    assert len(started_event_ids(msgs, name)) >= 5
