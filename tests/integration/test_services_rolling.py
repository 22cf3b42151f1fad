"""Rolling deployments, scaling and the circuit breaker on SIMULATED agents
(`skiff agent --runtime=simulated --instances N`): registration, the poll
channel, state reports and every scheduler decision are real, containers are
not, so deployments take seconds.

What the rollout property test counts, at every observation:
  * It lists the service's tasks with ListTasks (desiredStatus RUNNING, then
    STOPPED) and describes them all with DescribeTasks (one snapshot).
  * live = tasks whose lastStatus is not STOPPED, whatever their
    desiredStatus: a task the scheduler is stopping still occupies its slot
    until it has stopped, so it counts against maximumPercent (ECS: "RUNNING or
    PENDING tasks"). Upper bound: live <= floor(desired * maximumPercent / 100).
  * healthy = lastStatus RUNNING, desiredStatus RUNNING, and RUNNING for at
    least SKIFF_SERVICE_HEALTHY_DELAY (these tasks have no health check, so
    that is when the scheduler counts them healthy); a task being stopped no
    longer counts. Lower bound: healthy >= ceil(desired * minimumHealthyPercent
    / 100).
  * The listing and the description are separate calls. A task created in
    between is missing from the snapshot, which can only lower both counts; it
    cannot be healthy yet if the two calls took less than the healthy delay,
    so samples slower than that are not judged for the lower bound."""
import os
import re
import time

import pytest

from service_helpers import (HEALTHY_DELAY, ZONES, Fleet, circuit_breaker_threshold,
                             describe_service, describe_tasks, events, list_task_arns,
                             max_total, min_healthy, register_td, service_tasks, short_id, unique,
                             wait_for, wait_steady)

SIM_ZONES = ",".join(ZONES[:3])


class Sim:
    def __init__(self, fleet, instances):
        self.fleet = fleet
        self.ecs = fleet.ecs
        self.cluster = fleet.create_cluster()
        self.agent = fleet.add_agent(self.cluster, name=f"sim-{self.cluster}", simulated=True,
                                     instances=instances,
                                     env={"SKIFF_SIM_ZONES": SIM_ZONES,
                                          "SKIFF_SIM_CPU": "4096", "SKIFF_SIM_MEMORY": "8192"})
        self.instances = instances


@pytest.fixture
def sim_factory(server_factory, tmp_path):
    # Even simulated instances keep a state dir under /run/skiff.
    if os.geteuid() != 0 and not os.access("/run/skiff", os.W_OK):
        pytest.skip("simulated agents need write access to /run/skiff (run as root)")
    made = []

    def make(instances=6):
        srv = server_factory(f"srv{len(made)}", env={
            "SKIFF_SERVICE_HEALTHY_DELAY": f"{HEALTHY_DELAY:g}s"}).start()
        f = Fleet(srv, tmp_path)
        made.append(f)
        return Sim(f, instances)

    yield make
    for f in made:
        f.teardown()


@pytest.fixture
def sim(sim_factory):
    return sim_factory(6)


def create_service(ecs, cluster, td, desired, minp=None, maxp=None, **kw):
    name = unique("svc")
    dc = dict(kw.pop("deploymentConfiguration", {}))
    if minp is not None:
        dc["minimumHealthyPercent"] = minp
    if maxp is not None:
        dc["maximumPercent"] = maxp
    ecs.create_service(cluster=cluster, serviceName=name, taskDefinition=td["taskDefinitionArn"],
                       desiredCount=desired, deploymentConfiguration=dc, **kw)
    return name


def healthy_now(t, now):
    return (t["lastStatus"] == "RUNNING" and t["desiredStatus"] == "RUNNING" and
            "startedAt" in t and t["startedAt"].timestamp() <= now - HEALTHY_DELAY)


class Rollout:
    """Watches a service as fast as the API answers and checks the bounds at
    every observation (see the module docstring)."""

    def __init__(self, ecs, cluster, name, desired, minp, maxp):
        self.ecs, self.cluster, self.name = ecs, cluster, name
        self.desired, self.minp, self.maxp = desired, minp, maxp
        self.lo = min_healthy(desired, minp)
        self.hi = max(max_total(desired, maxp), desired)
        self.samples = 0
        self.judged = 0
        self.violations = []
        self.max_live = 0
        self.min_healthy_seen = None

    def observe(self):
        t0 = time.time()
        arns = list_task_arns(self.ecs, self.cluster, serviceName=self.name,
                              desiredStatus="RUNNING")
        arns += [a for a in list_task_arns(self.ecs, self.cluster, serviceName=self.name,
                                           desiredStatus="STOPPED") if a not in arns]
        tasks = describe_tasks(self.ecs, self.cluster, arns)
        t1 = time.time()
        live = [t for t in tasks if t["lastStatus"] != "STOPPED"]
        healthy = [t for t in live if healthy_now(t, t1)]
        self.samples += 1
        self.max_live = max(self.max_live, len(live))
        if len(live) > self.hi:
            self.violations.append(
                f"sample {self.samples}: {len(live)} live tasks > {self.hi} "
                f"({sorted((t['lastStatus'], t['desiredStatus']) for t in live)})")
        if t1 - t0 < HEALTHY_DELAY * 0.9:
            self.judged += 1
            if self.min_healthy_seen is None or len(healthy) < self.min_healthy_seen:
                self.min_healthy_seen = len(healthy)
            if len(healthy) < self.lo:
                self.violations.append(
                    f"sample {self.samples}: {len(healthy)} healthy tasks < {self.lo} "
                    f"({sorted((t['lastStatus'], t['desiredStatus']) for t in live)})")
        return tasks

    def until(self, done, timeout=60):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            tasks = self.observe()
            svc = describe_service(self.ecs, self.cluster, self.name)
            if done(svc, tasks):
                return svc
        svc = describe_service(self.ecs, self.cluster, self.name)
        raise AssertionError(
            f"no convergence in {timeout}s: deployments="
            f"{[(d['status'], d.get('rolloutState'), d['runningCount'], d['pendingCount']) for d in svc['deployments']]}"
            f" running={svc['runningCount']}\n" + "\n".join(events(svc)[-10:]))


def converged_on(td_arn, desired):
    def done(svc, tasks):
        live = [t for t in tasks if t["lastStatus"] != "STOPPED"]
        return (len(svc["deployments"]) == 1 and svc["runningCount"] == desired and
                svc["deployments"][0]["taskDefinition"] == td_arn and
                len(live) == desired and
                all(t["taskDefinitionArn"] == td_arn and t["lastStatus"] == "RUNNING"
                    for t in live))
    return done


@pytest.mark.parametrize("desired,minp,maxp", [
    (4, 50, 200), (4, 100, 200), (4, 0, 100), (6, 50, 150), (5, 60, 120), (2, 50, 100)])
def test_rolling_update_respects_min_and_max(sim, desired, minp, maxp):
    ecs, cl = sim.ecs, sim.cluster
    fam = unique("roll")
    td1 = register_td(ecs, "busybox:1", family=fam)
    td2 = register_td(ecs, "busybox:2", family=fam)
    name = create_service(ecs, cl, td1, desired, minp, maxp)
    wait_steady(ecs, cl, name, desired, timeout=30)
    time.sleep(HEALTHY_DELAY + 0.3)  # every task counts as healthy
    ecs.update_service(cluster=cl, service=name, taskDefinition=td2["taskDefinitionArn"])
    r = Rollout(ecs, cl, name, desired, minp, maxp)
    svc = r.until(converged_on(td2["taskDefinitionArn"], desired), timeout=60)
    assert not r.violations, "\n".join(r.violations[:10])
    assert r.judged >= 5, f"too few observations ({r.judged}/{r.samples}) to judge the rollout"
    # The rollout used the room it had: it never needed more than the ceiling...
    assert r.max_live <= r.hi
    # ...and it finishes: one deployment, COMPLETED, steady state announced.
    svc = wait_steady(ecs, cl, name, desired, timeout=20)
    (d,) = svc["deployments"]
    assert d["taskDefinition"] == td2["taskDefinitionArn"]
    assert d["rolloutState"] == "COMPLETED"
    assert d["rolloutStateReason"] == f"ECS deployment {d['id']} completed."
    msgs = events(svc)
    assert msgs.count(f"(service {name}) has reached a steady state.") >= 2
    stopped = [t for t in service_tasks(ecs, cl, name)
               if t["taskDefinitionArn"] == td1["taskDefinitionArn"]]
    assert len(stopped) == desired
    for t in stopped:
        assert t["stopCode"] == "ServiceSchedulerInitiated", t
        assert re.fullmatch(r"Scaling activity initiated by \(deployment ecs-svc/\d+\)",
                            t["stoppedReason"]), t["stoppedReason"]


def test_update_right_after_a_rollout_keeps_the_floor(sim):
    """UpdateService before the tasks of the previous rollout have proved
    themselves (they run, without health check, for less than the healthy
    delay): those RUNNING tasks still count towards minimumHealthyPercent, so
    the service never has fewer than desiredCount running tasks."""
    ecs, cl = sim.ecs, sim.cluster
    desired = 4
    fam = unique("quick")
    td1 = register_td(ecs, "busybox:1", family=fam)
    td2 = register_td(ecs, "busybox:2", family=fam)
    name = create_service(ecs, cl, td1, desired, 100, 200)
    wait_for(lambda: describe_service(ecs, cl, name)["runningCount"] == desired, 30, 0.01,
             "the first tasks to run")
    ecs.update_service(cluster=cl, service=name, taskDefinition=td2["taskDefinitionArn"])
    lowest = desired
    deadline = time.monotonic() + 60
    while True:
        tasks = describe_tasks(ecs, cl, list_task_arns(ecs, cl, serviceName=name,
                                                       desiredStatus="RUNNING"))
        running = [t for t in tasks if t["lastStatus"] == "RUNNING"]
        lowest = min(lowest, len(running))
        if (len(running) == desired and
                all(t["taskDefinitionArn"] == td2["taskDefinitionArn"] for t in running)):
            break
        assert time.monotonic() < deadline, "the rollout did not converge"
    assert lowest >= desired, f"only {lowest} running tasks during the rollout"


def test_rolling_update_blocked_by_configuration(sim):
    """desired 3, minimumHealthyPercent 100, maximumPercent 125: the floor is
    3 and the ceiling floor(3.75) = 3, so no task may stop first and none may
    start first."""
    ecs, cl = sim.ecs, sim.cluster
    desired, minp, maxp = 3, 100, 125
    assert (min_healthy(desired, minp), max_total(desired, maxp)) == (3, 3)
    fam = unique("stuck")
    td1 = register_td(ecs, "busybox:1", family=fam)
    td2 = register_td(ecs, "busybox:2", family=fam)
    name = create_service(ecs, cl, td1, desired, minp, maxp)
    wait_steady(ecs, cl, name, desired, timeout=30)
    time.sleep(HEALTHY_DELAY + 0.3)
    ecs.update_service(cluster=cl, service=name, taskDefinition=td2["taskDefinitionArn"])
    msg = (f"(service {name}) was unable to stop or start tasks during a deployment because of "
           f"the service deployment configuration. Update the minimumHealthyPercent or "
           f"maximumPercent value and try again.")
    r = Rollout(ecs, cl, name, desired, minp, maxp)
    r.until(lambda svc, tasks: msg in events(svc), timeout=20)
    # No progress: the old tasks all still run, nothing new exists.
    t_end = time.monotonic() + 3
    while time.monotonic() < t_end:
        tasks = r.observe()
        assert all(t["taskDefinitionArn"] == td1["taskDefinitionArn"] for t in tasks), tasks
    svc = describe_service(ecs, cl, name)
    assert len(svc["deployments"]) == 2
    assert svc["deployments"][0]["runningCount"] == 0
    assert svc["deployments"][0]["rolloutState"] == "IN_PROGRESS"
    assert not r.violations, r.violations
    # Loosening the floor lets it proceed one task at a time.
    ecs.update_service(cluster=cl, service=name,
                       deploymentConfiguration={"minimumHealthyPercent": 66})
    r = Rollout(ecs, cl, name, desired, 66, maxp)
    r.until(converged_on(td2["taskDefinitionArn"], desired), timeout=60)
    assert not r.violations, "\n".join(r.violations[:10])
    wait_steady(ecs, cl, name, desired, timeout=20)


def per_key(tasks, key):
    out = {}
    for t in tasks:
        out[t[key]] = out.get(t[key], 0) + 1
    return out


def running_tasks(ecs, cl, name):
    return [t for t in service_tasks(ecs, cl, name, include_stopped=False)
            if t["lastStatus"] == "RUNNING" and t["desiredStatus"] == "RUNNING"]


def test_desired_count_changes(sim):
    ecs, cl = sim.ecs, sim.cluster
    td = register_td(ecs, "busybox:1")
    name = create_service(ecs, cl, td, 3)
    svc = wait_steady(ecs, cl, name, 3, timeout=30)
    dep = svc["deployments"][0]["id"]
    assert per_key(running_tasks(ecs, cl, name), "availabilityZone") == \
        {z: 1 for z in ZONES[:3]}
    ecs.update_service(cluster=cl, service=name, desiredCount=9)
    svc = wait_steady(ecs, cl, name, 9, timeout=30)
    assert [d["id"] for d in svc["deployments"]] == [dep], "a count change is no new deployment"
    assert svc["deployments"][0]["desiredCount"] == 9
    run = running_tasks(ecs, cl, name)
    assert per_key(run, "availabilityZone") == {z: 3 for z in ZONES[:3]}
    per_inst = per_key(run, "containerInstanceArn")
    assert len(per_inst) == 6 and max(per_inst.values()) - min(per_inst.values()) <= 1

    before = {t["taskArn"] for t in run}
    ecs.update_service(cluster=cl, service=name, desiredCount=4)
    svc = wait_steady(ecs, cl, name, 4, timeout=30)
    now = running_tasks(ecs, cl, name)
    assert {t["taskArn"] for t in now} <= before, "scale-in starts nothing"
    gone = describe_tasks(ecs, cl, list(before - {t["taskArn"] for t in now}))
    assert len(gone) == 5
    for t in gone:
        assert t["desiredStatus"] == "STOPPED"
        assert t["stopCode"] == "ServiceSchedulerInitiated"
        assert t["stoppedReason"] == f"Scaling activity initiated by (deployment {dep})"
    stopped_msgs = [m for m in events(svc) if m.startswith(f"(service {name}) has stopped ")]
    assert stopped_msgs, events(svc)
    for m in stopped_msgs:
        assert re.fullmatch(rf"\(service {re.escape(name)}\) has stopped (\d+) running tasks: "
                            rf"(\(task [0-9a-f]{{32}}\) ?)+\.", m), m
    ids = re.findall(r"\(task ([0-9a-f]{32})\)", " ".join(stopped_msgs))
    assert set(ids) == {short_id(t["taskArn"]) for t in gone}

    ecs.update_service(cluster=cl, service=name, desiredCount=0)
    svc = wait_steady(ecs, cl, name, 0, timeout=30)
    assert running_tasks(ecs, cl, name) == []
    out = ecs.delete_service(cluster=cl, service=name)["service"]  # no force needed at 0
    assert out["status"] in ("DRAINING", "INACTIVE")
    wait_for(lambda: describe_service(ecs, cl, name)["status"] == "INACTIVE", 20, 0.2,
             "INACTIVE")


def test_scale_in_takes_from_the_busiest_zone_and_instance(sim_factory):
    """ECS scales in from the zone, then the instance, holding the most tasks
    of the service (the default spread): three instances, one per zone, stay
    balanced at every step 12 -> 9 -> 6 -> 3."""
    sim = sim_factory(3)
    ecs, cl = sim.ecs, sim.cluster
    td = register_td(ecs, "busybox:1")
    name = create_service(ecs, cl, td, 12)
    wait_steady(ecs, cl, name, 12, timeout=30)
    assert sorted(per_key(running_tasks(ecs, cl, name), "availabilityZone").values()) == \
        [4, 4, 4]
    for n in (9, 6, 3):
        ecs.update_service(cluster=cl, service=name, desiredCount=n)
        wait_steady(ecs, cl, name, n, timeout=30)
        zones = per_key(running_tasks(ecs, cl, name), "availabilityZone")
        assert sorted(zones.values()) == [n // 3] * 3, (
            f"after scaling in to {n}: {zones} (expected {n // 3} per zone)")


def test_circuit_breaker_threshold_and_no_rollback(sim):
    """desired 25: threshold clamp(ceil(12.5), 10, 200) = 13. Without rollback
    the FAILED deployment stays PRIMARY, launches nothing more, and the old
    tasks keep running."""
    ecs, cl = sim.ecs, sim.cluster
    desired = 25
    threshold = circuit_breaker_threshold(desired)
    assert threshold == 13
    fam = unique("cb")
    good = register_td(ecs, "busybox:1", family=fam, cpu=16, memory=16)
    bad = register_td(ecs, "registry.local/does-not-exist:1", family=fam, cpu=16, memory=16)
    name = create_service(ecs, cl, good, desired, 100, 200, deploymentConfiguration={
        "deploymentCircuitBreaker": {"enable": True, "rollback": False}})
    wait_steady(ecs, cl, name, desired, timeout=60)
    ecs.update_service(cluster=cl, service=name, taskDefinition=bad["taskDefinitionArn"])
    in_progress = []

    def failed():
        s = describe_service(ecs, cl, name)
        d = s["deployments"][0]
        if d["rolloutState"] == "IN_PROGRESS":
            in_progress.append(d["failedTasks"])
        return s if d["rolloutState"] == "FAILED" else None

    svc = wait_for(failed, 60, 0.05, "the deployment to fail")
    assert all(n < threshold for n in in_progress), in_progress
    d = svc["deployments"][0]
    assert d["status"] == "PRIMARY" and d["taskDefinition"] == bad["taskDefinitionArn"]
    assert d["failedTasks"] >= threshold
    assert d["rolloutStateReason"] == "ECS deployment circuit breaker: task failed to start."
    launched = len([t for t in service_tasks(ecs, cl, name)
                    if t["taskDefinitionArn"] == bad["taskDefinitionArn"]])
    time.sleep(3)
    svc = describe_service(ecs, cl, name)
    assert len([t for t in service_tasks(ecs, cl, name)
                if t["taskDefinitionArn"] == bad["taskDefinitionArn"]]) == launched, \
        "a FAILED deployment launches no more tasks"
    assert len(svc["deployments"]) == 2, "no rollback deployment without rollback=true"
    assert svc["deployments"][1]["runningCount"] == desired, "the old tasks keep running"
    assert f"(service {name}) (deployment {d['id']}) deployment failed: tasks failed to start." \
        in events(svc)


def test_circuit_breaker_first_deployment_has_nothing_to_roll_back_to(sim):
    ecs, cl = sim.ecs, sim.cluster
    bad = register_td(ecs, "registry.local/does-not-exist:1", cpu=16, memory=16)
    name = create_service(ecs, cl, bad, 10, deploymentConfiguration={
        "deploymentCircuitBreaker": {"enable": True, "rollback": True}})
    svc = wait_for(lambda: (lambda s: s if s["deployments"][0]["rolloutState"] == "FAILED"
                            else None)(describe_service(ecs, cl, name)), 60, 0.1,
                   "the first deployment to fail")
    assert svc["deployments"][0]["failedTasks"] >= circuit_breaker_threshold(10)
    time.sleep(2)
    svc = describe_service(ecs, cl, name)
    assert len(svc["deployments"]) == 1, "no completed deployment to roll back to"
    assert svc["deployments"][0]["rolloutState"] == "FAILED"
    assert svc["runningCount"] == 0


@pytest.mark.slow
def test_thousand_task_service_on_hundred_instances(sim_factory, record_property):
    sim = sim_factory(100)
    ecs, cl = sim.ecs, sim.cluster
    wait_for(lambda: len(ecs.list_container_instances(cluster=cl, maxResults=100)[
        "containerInstanceArns"]) == 100, 30, 0.2, "100 instances")
    td = register_td(ecs, "busybox:1", cpu=128, memory=128)
    t0 = time.monotonic()
    name = create_service(ecs, cl, td, 1000)
    svc = wait_steady(ecs, cl, name, 1000, timeout=240, interval=0.5)
    elapsed = time.monotonic() - t0
    record_property("seconds_to_steady_state_1000_tasks", round(elapsed, 1))
    print(f"\n1000 tasks on 100 simulated instances: steady after {elapsed:.1f}s")
    assert svc["runningCount"] == 1000
    tasks = [t for t in service_tasks(ecs, cl, name, include_stopped=False)
             if t["lastStatus"] == "RUNNING"]
    assert len(tasks) == 1000
    zones = per_key(tasks, "availabilityZone")
    assert max(zones.values()) - min(zones.values()) <= 1, zones
    for z in zones:
        per_inst = per_key([t for t in tasks if t["availabilityZone"] == z],
                           "containerInstanceArn")
        assert max(per_inst.values()) - min(per_inst.values()) <= 1, (z, per_inst)
    assert elapsed < 180, f"1000 tasks took {elapsed:.0f}s to reach a steady state"
    # And all of it goes away again: the 1000 tasks stop at once.
    t0 = time.monotonic()
    ecs.delete_service(cluster=cl, service=name, force=True)

    def inactive():
        assert sim.agent.alive(), (
            f"the simulated agent died (exit {sim.agent.proc.returncode}) while 1000 tasks "
            f"stopped; agent log tail:\n{sim.agent.log(600)}")
        return describe_service(ecs, cl, name)["status"] == "INACTIVE"

    wait_for(inactive, 90, 0.5, "the deleted 1000-task service to become INACTIVE")
    record_property("seconds_to_inactive_1000_tasks", round(time.monotonic() - t0, 1))
    live = [t for t in describe_tasks(ecs, cl, list_task_arns(ecs, cl, desiredStatus="STOPPED"))
            if t["lastStatus"] != "STOPPED"]
    assert live == []


# --- service deployments and revisions (raw requests: Debian's botocore
# predates ListServiceDeployments) ---

def _deployments(sim, name, **kw):
    body = {"cluster": sim.cluster, "service": name}
    body.update(kw)
    return sim.fleet.server.raw_ok("ListServiceDeployments", body)


def _describe_deployments(sim, arns):
    return sim.fleet.server.raw_ok("DescribeServiceDeployments", {"serviceDeploymentArns": arns})


def test_service_deployments_record_each_rollout(sim):
    ecs, cl = sim.ecs, sim.cluster
    fam = unique("sd")
    v1 = register_td(ecs, "busybox:1", family=fam, cpu=16, memory=16)
    v2 = register_td(ecs, "busybox:1", family=fam, cpu=16, memory=32)
    name = create_service(ecs, cl, v1, 3)
    wait_steady(ecs, cl, name, 3, timeout=60)
    svc_arn = describe_service(ecs, cl, name)["serviceArn"]

    def first_successful():
        out = _deployments(sim, name)["serviceDeployments"]
        return out if out and out[0]["status"] == "SUCCESSFUL" else None

    first = wait_for(first_successful, 30, 0.2, "the first deployment to succeed")
    assert len(first) == 1
    d1 = first[0]
    prefix = svc_arn.replace(":service/", ":service-deployment/")
    assert d1["serviceDeploymentArn"].startswith(prefix + "/"), d1
    assert d1["serviceArn"] == svc_arn and d1["clusterArn"].endswith(f":cluster/{cl}")
    assert d1["targetServiceRevisionArn"].startswith(
        svc_arn.replace(":service/", ":service-revision/") + "/")
    dep_id = describe_service(ecs, cl, name)["deployments"][0]["id"]
    assert d1["serviceDeploymentArn"].endswith("/" + dep_id.split("/", 1)[1])
    assert "finishedAt" in d1 and d1["finishedAt"] >= d1["startedAt"]

    ecs.update_service(cluster=cl, service=name, taskDefinition=v2["taskDefinitionArn"])
    wait_steady(ecs, cl, name, 3, timeout=60)
    both = wait_for(lambda: (lambda o: o if len(o) == 2 and o[0]["status"] == "SUCCESSFUL"
                             else None)(_deployments(sim, name)["serviceDeployments"]),
                    30, 0.2, "the second deployment to succeed")
    assert both[1]["serviceDeploymentArn"] == d1["serviceDeploymentArn"], "newest first"
    assert _deployments(sim, name, status=["IN_PROGRESS"])["serviceDeployments"] == []
    page = _deployments(sim, name, maxResults=1)
    assert len(page["serviceDeployments"]) == 1 and page.get("nextToken")
    rest = _deployments(sim, name, maxResults=1, nextToken=page["nextToken"])
    assert rest["serviceDeployments"][0]["serviceDeploymentArn"] == d1["serviceDeploymentArn"]

    full = _describe_deployments(sim, [both[0]["serviceDeploymentArn"],
                                       prefix + "/1234567890123456789"])
    assert [f["reason"] for f in full["failures"]] == ["MISSING"]
    d2 = full["serviceDeployments"][0]
    assert d2["status"] == "SUCCESSFUL"
    assert d2["deploymentConfiguration"]["maximumPercent"] == 200
    assert [s["arn"] for s in d2["sourceServiceRevisions"]] == [d1["targetServiceRevisionArn"]]
    revs = sim.fleet.server.raw_ok("DescribeServiceRevisions", {
        "serviceRevisionArns": [d1["targetServiceRevisionArn"], d2["targetServiceRevision"]["arn"]]})
    assert revs["failures"] == []
    assert [r["taskDefinition"] for r in revs["serviceRevisions"]] == [
        v1["taskDefinitionArn"], v2["taskDefinitionArn"]]
    r = sim.fleet.server.raw("ListServiceDeployments", {"cluster": cl, "service": "nope"})
    assert r.status == 400 and r.json["__type"].endswith("ServiceNotFoundException"), r


def test_stop_service_deployment_rolls_back(sim):
    ecs, cl = sim.ecs, sim.cluster
    srv = sim.fleet.server
    fam = unique("ssd")
    good = register_td(ecs, "busybox:1", family=fam, cpu=16, memory=16)
    bad = register_td(ecs, "registry.local/does-not-exist:1", family=fam, cpu=16, memory=16)
    name = create_service(ecs, cl, good, 3)
    wait_steady(ecs, cl, name, 3, timeout=60)
    first = wait_for(lambda: (lambda o: o[0] if o[0]["status"] == "SUCCESSFUL" else None)(
        _deployments(sim, name)["serviceDeployments"]), 30, 0.2, "the first deployment")
    # A completed deployment cannot be stopped.
    r = srv.raw("StopServiceDeployment", {"serviceDeploymentArn": first["serviceDeploymentArn"]})
    assert r.status == 400 and r.json["__type"].endswith("ConflictException"), r.json
    # Without a circuit breaker, a deployment whose tasks never start stays in progress.
    ecs.update_service(cluster=cl, service=name, taskDefinition=bad["taskDefinitionArn"])
    cur = _deployments(sim, name)["serviceDeployments"][0]
    assert cur["status"] == "IN_PROGRESS"
    arn = cur["serviceDeploymentArn"]
    r = srv.raw("StopServiceDeployment", {"serviceDeploymentArn": arn, "stopType": "ABORT"})
    assert r.status == 400 and r.json["__type"].endswith("InvalidParameterException"), r.json
    r = srv.raw("StopServiceDeployment", {"serviceDeploymentArn": arn[:-3] + "999"})
    assert r.status == 400 and r.json["__type"].endswith("ServiceDeploymentNotFoundException")
    assert srv.raw_ok("StopServiceDeployment", {"serviceDeploymentArn": arn}) == {
        "serviceDeploymentArn": arn}

    def rolled_back():
        out = _deployments(sim, name)["serviceDeployments"]
        return out if out[0]["status"] == "ROLLBACK_SUCCESSFUL" else None

    out = wait_for(rolled_back, 60, 0.2, "the stopped deployment to roll back")
    assert len(out) == 2 and out[0]["serviceDeploymentArn"] == arn
    full = _describe_deployments(sim, [arn])["serviceDeployments"][0]
    assert full["rollback"]["serviceRevisionArn"] == first["targetServiceRevisionArn"]
    assert "stopped" in full["rollback"]["reason"]
    wait_steady(ecs, cl, name, 3, timeout=60)
    svc = describe_service(ecs, cl, name)
    assert svc["taskDefinition"] == good["taskDefinitionArn"]
    assert any("Service deployment stopped" in e["message"] for e in svc["events"])
    r = srv.raw("StopServiceDeployment", {"serviceDeploymentArn": arn})
    assert r.status == 400 and r.json["__type"].endswith("ConflictException")


def test_service_deployment_rollback_is_recorded(sim):
    ecs, cl = sim.ecs, sim.cluster
    fam = unique("sdr")
    good = register_td(ecs, "busybox:1", family=fam, cpu=16, memory=16)
    bad = register_td(ecs, "registry.local/does-not-exist:1", family=fam, cpu=16, memory=16)
    name = create_service(ecs, cl, good, 10, deploymentConfiguration={
        "deploymentCircuitBreaker": {"enable": True, "rollback": True}})
    wait_steady(ecs, cl, name, 10, timeout=60)
    wait_for(lambda: _deployments(sim, name)["serviceDeployments"][0]["status"] == "SUCCESSFUL",
             30, 0.2, "the first deployment to succeed")
    ecs.update_service(cluster=cl, service=name, taskDefinition=bad["taskDefinitionArn"])

    def rolled_back():
        out = _deployments(sim, name)["serviceDeployments"]
        return out if out[0]["status"] == "ROLLBACK_SUCCESSFUL" else None

    out = wait_for(rolled_back, 90, 0.2, "the failed deployment to finish its rollback")
    assert len(out) == 2, "the rollback belongs to the failed deployment's record"
    full = _describe_deployments(sim, [out[0]["serviceDeploymentArn"]])["serviceDeployments"][0]
    assert full["rollback"]["serviceRevisionArn"] == out[1]["targetServiceRevisionArn"]
    assert "circuit breaker" in full["rollback"]["reason"]
    svc = describe_service(ecs, cl, name)
    assert svc["taskDefinition"] == good["taskDefinitionArn"]
