"""Placement with real agents: RunTask/StartTask strategies, constraints and
failures[] reasons, task groups, service placement, and EC2 versus FARGATE
capacity.

One skiff server (--no-agent) and three `skiff agent` processes (runc, one
per zone us-east-1a/b/c) serve the whole module; after each test every task
is stopped and every instance set ACTIVE again. Needs root; skipped otherwise."""
import re

import pytest

from conftest import Server, free_port
from service_helpers import images  # noqa: F401  (session fixture)
from service_helpers import (ZONES, Fleet, Trio, describe_service, describe_tasks, events,
                             remaining, service_tasks, short_id, unique, wait_for, wait_steady)

MEMBER_OF = "MemberOf placement constraint unsatisfied."
DISTINCT = "DistinctInstance placement constraint unsatisfied."


@pytest.fixture(scope="module")
def module_trio(tmp_path_factory, images):  # noqa: F811
    base = tmp_path_factory.mktemp("placement")
    srv = Server(base, name="main", env={"SKIFF_SERVICE_HEALTHY_DELAY": "1s"}).start()
    fleet = Fleet(srv, base, images)
    try:
        yield Trio(fleet)
    finally:
        fleet.teardown()
        crashed = srv.crashed()
        srv.stop() if srv.alive() else None
        assert not crashed, f"skiff server died:\n{srv.log()}"


@pytest.fixture
def trio(module_trio):
    assert module_trio.fleet.server.alive(), module_trio.fleet.server.log()
    yield module_trio
    fleet = module_trio.fleet
    if fleet.server.alive():
        fleet._stop_everything()
        for cl in fleet.clusters:
            arns = fleet.ecs.list_container_instances(cluster=cl)["containerInstanceArns"]
            if arns:
                fleet.ecs.update_container_instances_state(cluster=cl, containerInstances=arns,
                                                           status="ACTIVE")


def run(ecs, cluster, td, **kw):
    return ecs.run_task(cluster=cluster, taskDefinition=td["taskDefinitionArn"], **kw)


def reasons(failures):
    return {f.get("arn"): f["reason"] for f in failures}


def wait_running(ecs, cluster, tasks, timeout=60):
    arns = [t["taskArn"] for t in tasks]

    def ok():
        d = describe_tasks(ecs, cluster, arns)
        bad = [t for t in d if t["lastStatus"] == "STOPPED"]
        assert not bad, [(t["taskArn"], t.get("stoppedReason"),
                          [c.get("reason") for c in t["containers"]]) for t in bad]
        return all(t["lastStatus"] == "RUNNING" for t in d) and d

    return wait_for(ok, timeout, 0.1, "tasks to run")


def wait_settled(ecs, cluster, tasks, timeout=60):
    """Waits until every task is RUNNING or STOPPED; returns their descriptions."""
    arns = [t["taskArn"] for t in tasks]

    def ok():
        d = describe_tasks(ecs, cluster, arns)
        return all(t["lastStatus"] in ("RUNNING", "STOPPED") for t in d) and d

    return wait_for(ok, timeout, 0.1, "tasks to run or stop")


def spread_az():
    return [{"type": "spread", "field": "attribute:ecs.availability-zone"}]


def spread_instance():
    return [{"type": "spread", "field": "instanceId"}]


# --- RunTask strategies ---------------------------------------------------------


def test_run_task_spread_by_zone_puts_tasks_on_distinct_instances(trio):
    ecs, cl = trio.ecs, trio.cluster
    td = trio.td()
    out = run(ecs, cl, td, count=3, placementStrategy=spread_az())
    assert out["failures"] == []
    assert len({t["containerInstanceArn"] for t in out["tasks"]}) == 3
    assert {t["availabilityZone"] for t in out["tasks"]} == set(ZONES[:3])
    assert {t["group"] for t in out["tasks"]} == {f"family:{td['family']}"}
    wait_running(ecs, cl, out["tasks"])
    # Spread counts the group's earlier tasks: three more land one per zone again.
    again = run(ecs, cl, td, count=3, placementStrategy=spread_az())
    assert {t["availabilityZone"] for t in again["tasks"]} == set(ZONES[:3])
    # A different group does not see them; spread by instance does the same.
    g = run(ecs, cl, td, count=3, group="other", placementStrategy=spread_instance())
    assert len({t["containerInstanceArn"] for t in g["tasks"]}) == 3
    assert {t["group"] for t in g["tasks"]} == {"other"}
    # The default (random) places everything that fits.
    r = run(ecs, cl, td, count=10)
    assert r["failures"] == [] and len(r["tasks"]) == 10
    wait_running(ecs, cl, again["tasks"] + g["tasks"] + r["tasks"])


def test_run_task_binpack_fills_one_instance(trio):
    ecs, cl = trio.ecs, trio.cluster
    td = trio.td(memory=128)
    out = run(ecs, cl, td, count=5,
              placementStrategy=[{"type": "binpack", "field": "memory"}])
    assert out["failures"] == []
    assert len({t["containerInstanceArn"] for t in out["tasks"]}) == 1
    # binpack cpu then spread: CPU ties are broken by the spread.
    td2 = trio.td(cpu=0)
    out2 = run(ecs, cl, td2, count=3, placementStrategy=[
        {"type": "binpack", "field": "cpu"}, {"type": "spread", "field": "instanceId"}])
    assert out2["failures"] == []
    wait_running(ecs, cl, out["tasks"] + out2["tasks"])


# --- RunTask failures -------------------------------------------------------------


def test_run_task_failure_cpu_and_memory(trio):
    ecs, cl = trio.ecs, trio.cluster
    cis = trio.instances()
    cpu = max(remaining(ci, "CPU") for ci in cis.values())
    mem = max(remaining(ci, "MEMORY") for ci in cis.values())
    out = run(ecs, cl, trio.td(cpu=cpu + 1, memory=64))
    assert out["tasks"] == []
    assert reasons(out["failures"]) == {a: "RESOURCE:CPU" for a in cis}
    out = run(ecs, cl, trio.td(cpu=16, memory=mem + 1))
    assert out["tasks"] == []
    assert reasons(out["failures"]) == {a: "RESOURCE:MEMORY" for a in cis}
    # Resources taken by running tasks count: fill one instance's CPU exactly.
    a = trio.arn["us-east-1a"]
    free = remaining(cis[a], "CPU")
    big = ecs.start_task(cluster=cl, taskDefinition=trio.td(cpu=free, memory=32)[
        "taskDefinitionArn"], containerInstances=[a])
    assert big["failures"] == [], big["failures"]
    wait_running(ecs, cl, big["tasks"])
    ec2 = cis[a]["ec2InstanceId"]
    out = run(ecs, cl, trio.td(cpu=16, memory=16),
              placementConstraints=[{"type": "memberOf", "expression": f"ec2InstanceId == {ec2}"}])
    assert out["tasks"] == []
    r = reasons(out["failures"])
    assert r[a] == "RESOURCE:CPU"
    assert {r[x] for x in cis if x != a} == {MEMBER_OF}


def test_run_task_failure_static_host_port_in_use(trio):
    ecs, cl = trio.ecs, trio.cluster
    port = free_port()
    td = trio.td(host_port=port)
    a = trio.arn["us-east-1a"]
    first = ecs.start_task(cluster=cl, taskDefinition=td["taskDefinitionArn"],
                           containerInstances=[a])
    assert first["failures"] == []
    wait_running(ecs, cl, first["tasks"])
    assert str(port) in remaining(trio.instances()[a], "PORTS")
    ec2 = trio.instances()[a]["ec2InstanceId"]
    out = run(ecs, cl, td,
              placementConstraints=[{"type": "memberOf", "expression": f"ec2InstanceId == {ec2}"}])
    assert out["tasks"] == []
    assert reasons(out["failures"])[a] == "RESOURCE:PORTS"
    # Two more fit (one per free instance); the next finds the port taken everywhere.
    out = run(ecs, cl, td, count=3)
    assert len(out["tasks"]) == 2
    assert a not in {t["containerInstanceArn"] for t in out["tasks"]}
    assert reasons(out["failures"]) == {x: "RESOURCE:PORTS" for x in trio.arn.values()}
    # The three agents share this one host, so the agents themselves refuse a
    # host port another agent of the host already publishes.
    in_use = f"CannotStartContainerError: host port {port}/tcp is already in use"
    settled = wait_settled(ecs, cl, out["tasks"])
    assert [t["lastStatus"] for t in settled] == ["STOPPED", "STOPPED"], settled
    assert all(t["containers"][0].get("reason") == in_use for t in settled), settled
    # UDP ports are their own resource.
    udp = ecs.register_task_definition(family=unique("udp"), containerDefinitions=[{
        "name": "app", "image": trio.images.good, "cpu": 16, "memory": 32,
        "command": ["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"],
        "portMappings": [{"containerPort": 53, "hostPort": port, "protocol": "udp"}]}])[
        "taskDefinition"]
    out = run(ecs, cl, udp, count=4)
    assert len(out["tasks"]) == 3
    assert reasons(out["failures"]) == {x: "RESOURCE:PORTS_UDP" for x in trio.arn.values()}
    # One host: the first agent to publish the UDP port keeps it.
    settled = wait_settled(ecs, cl, out["tasks"])
    assert sorted(t["lastStatus"] for t in settled) == ["RUNNING", "STOPPED", "STOPPED"], settled
    assert all(t["containers"][0].get("reason") ==
               f"CannotStartContainerError: host port {port}/udp is already in use"
               for t in settled if t["lastStatus"] == "STOPPED"), settled


def test_run_task_failure_attribute(trio):
    ecs, cl = trio.ecs, trio.cluster
    # syslog is not in the agents' ECS_AVAILABLE_LOGGING_DRIVERS.
    td = trio.td(container={"logConfiguration": {"logDriver": "syslog"}})
    assert {"name": "com.amazonaws.ecs.capability.logging-driver.syslog"} in \
        td["requiresAttributes"]
    out = run(ecs, cl, td)
    assert out["tasks"] == []
    assert reasons(out["failures"]) == {a: "ATTRIBUTE" for a in trio.arn.values()}


def test_run_task_failure_member_of_and_distinct_instance(trio):
    ecs, cl = trio.ecs, trio.cluster
    td = trio.td()
    out = run(ecs, cl, td, placementConstraints=[
        {"type": "memberOf", "expression": "attribute:ecs.availability-zone == us-west-2a"}])
    assert out["tasks"] == []
    assert reasons(out["failures"]) == {a: MEMBER_OF for a in trio.arn.values()}
    out = run(ecs, cl, td, count=3, placementConstraints=[
        {"type": "memberOf", "expression": "attribute:ecs.availability-zone in "
                                           "[us-east-1a, us-east-1c]"}])
    assert len(out["tasks"]) == 3
    assert {t["availabilityZone"] for t in out["tasks"]} <= {"us-east-1a", "us-east-1c"}
    out = run(ecs, cl, td, count=4, group=unique("g"),
              placementConstraints=[{"type": "distinctInstance"}])
    assert len(out["tasks"]) == 3
    assert len({t["containerInstanceArn"] for t in out["tasks"]}) == 3
    assert reasons(out["failures"]) == {a: DISTINCT for a in trio.arn.values()}
    wait_running(ecs, cl, out["tasks"])


def test_no_fargate_capacity_in_an_ec2_cluster(trio):
    ecs, cl = trio.ecs, trio.cluster
    td = ecs.register_task_definition(
        family=unique("fg"), requiresCompatibilities=["FARGATE"], networkMode="awsvpc",
        cpu="256", memory="512", containerDefinitions=[
            {"name": "app", "image": trio.images.good, "command": ["sleep", "5"]}])[
        "taskDefinition"]
    out = run(ecs, cl, td, launchType="FARGATE", networkConfiguration={
        "awsvpcConfiguration": {"subnets": ["subnet-1"]}})
    assert out["tasks"] == []
    assert out["failures"], out


# --- StartTask ---------------------------------------------------------------------


def test_start_task_targets_named_instances(trio):
    ecs, cl = trio.ecs, trio.cluster
    td = trio.td()
    b = trio.arn["us-east-1b"]
    out = ecs.start_task(cluster=cl, taskDefinition=td["taskDefinitionArn"],
                         containerInstances=[short_id(b)], startedBy="me", group="pinned")
    assert out["failures"] == []
    (t,) = out["tasks"]
    assert t["containerInstanceArn"] == b
    assert t["availabilityZone"] == "us-east-1b"
    assert t["startedBy"] == "me" and t["group"] == "pinned"
    out = ecs.start_task(cluster=cl, taskDefinition=td["taskDefinitionArn"],
                         containerInstances=[trio.arn["us-east-1a"], trio.arn["us-east-1c"]])
    assert sorted(x["containerInstanceArn"] for x in out["tasks"]) == \
        sorted([trio.arn["us-east-1a"], trio.arn["us-east-1c"]])
    wait_running(ecs, cl, [t] + out["tasks"])
    # Several tasks may go to the same named instance.
    out = ecs.start_task(cluster=cl, taskDefinition=td["taskDefinitionArn"],
                         containerInstances=[b, b])
    assert [x["containerInstanceArn"] for x in out["tasks"]] == [b, b]
    missing = b.rsplit("/", 1)[0] + "/" + "0" * 32
    out = ecs.start_task(cluster=cl, taskDefinition=td["taskDefinitionArn"],
                         containerInstances=[missing])
    assert out["tasks"] == []
    assert out["failures"] == [{"arn": missing, "reason": "MISSING"}] or \
        [f["reason"] for f in out["failures"]] == ["MISSING"]
    too_big = trio.td(cpu=remaining(trio.instances()[b], "CPU") + 1)
    out = ecs.start_task(cluster=cl, taskDefinition=too_big["taskDefinitionArn"],
                         containerInstances=[b])
    assert out["tasks"] == []
    assert reasons(out["failures"]) == {b: "RESOURCE:CPU"}


# --- task groups -------------------------------------------------------------------


def test_task_groups_spread_relative_to_their_group(trio):
    ecs, cl = trio.ecs, trio.cluster
    td = trio.td()
    web = run(ecs, cl, td, count=2, group="web", placementStrategy=spread_instance())["tasks"]
    assert len({t["containerInstanceArn"] for t in web}) == 2
    db = run(ecs, cl, td, count=3, group="db", placementStrategy=spread_instance())["tasks"]
    assert len({t["containerInstanceArn"] for t in db}) == 3, "db ignores web's tasks"
    wait_running(ecs, cl, web + db)
    web_hosts = {t["containerInstanceArn"] for t in web}
    (third,) = set(trio.arn.values()) - web_hosts
    more = run(ecs, cl, td, group="web", placementStrategy=spread_instance())["tasks"]
    assert more[0]["containerInstanceArn"] == third
    assert more[0]["group"] == "web"
    # task:group in memberOf sees the groups' live tasks.
    cache = run(ecs, cl, td, group="cache", count=2, placementConstraints=[
        {"type": "memberOf", "expression": "task:group == db"}])["tasks"]
    assert len(cache) == 2
    only_third = run(ecs, cl, td, group="solo", placementConstraints=[
        {"type": "memberOf", "expression": "not(task:group == web) and task:group == db"}])
    assert only_third["tasks"] == [], "every instance now runs a web task"
    assert set(reasons(only_third["failures"]).values()) == {MEMBER_OF}
    wait_running(ecs, cl, more + cache)


# --- services ---------------------------------------------------------------------


def test_service_placement_constraints_and_strategies(trio):
    ecs, cl = trio.ecs, trio.cluster
    td = trio.td()
    not_b = unique("notb")
    cons = [{"type": "memberOf", "expression": "attribute:ecs.availability-zone != us-east-1b"}]
    ecs.create_service(cluster=cl, serviceName=not_b, taskDefinition=td["taskDefinitionArn"],
                       desiredCount=4, placementConstraints=cons)
    packed = unique("packed")
    binpack = [{"type": "binpack", "field": "memory"}]
    ecs.create_service(cluster=cl, serviceName=packed, taskDefinition=td["taskDefinitionArn"],
                       desiredCount=3, placementStrategy=binpack)
    distinct = unique("distinct")
    ecs.create_service(cluster=cl, serviceName=distinct, taskDefinition=td["taskDefinitionArn"],
                       desiredCount=4, placementConstraints=[{"type": "distinctInstance"}])

    s = wait_steady(ecs, cl, not_b, 4, timeout=60)
    assert s["placementConstraints"] == cons
    per = {}
    for t in service_tasks(ecs, cl, not_b, include_stopped=False):
        per[t["availabilityZone"]] = per.get(t["availabilityZone"], 0) + 1
    assert per == {"us-east-1a": 2, "us-east-1c": 2}

    s = wait_steady(ecs, cl, packed, 3, timeout=60)
    assert s["placementStrategy"] == binpack
    packed_hosts = {t["containerInstanceArn"] for t in service_tasks(ecs, cl, packed, False)}
    assert len(packed_hosts) == 1, "binpack on memory packs one instance"

    rx = (rf"\(service {re.escape(distinct)}\) was unable to place a task because no container "
          rf"instance met all of its requirements\.")
    wait_for(lambda: [m for m in events(describe_service(ecs, cl, distinct)) if re.match(rx, m)],
             30, 0.2, "the distinctInstance service's unable-to-place event")
    wait_for(lambda: describe_service(ecs, cl, distinct)["runningCount"] == 3, 30, 0.2,
             "three distinct tasks")
    hosts = [t["containerInstanceArn"] for t in service_tasks(ecs, cl, distinct, False)]
    assert len(hosts) == 3 and len(set(hosts)) == 3

    # Changing the strategy is a new deployment. Its tasks spread relative to
    # every live task of the service, the old deployment's included: with the
    # three old tasks packed on one instance, the three new ones (all started
    # at once, maximumPercent 200) go to the two other instances.
    (old_host,) = packed_hosts
    before = describe_service(ecs, cl, packed)["deployments"][0]["id"]
    ecs.update_service(cluster=cl, service=packed, placementStrategy=spread_instance())
    s = describe_service(ecs, cl, packed)
    assert s["deployments"][0]["id"] != before and len(s["deployments"]) == 2
    s = wait_steady(ecs, cl, packed, 3, timeout=60)
    assert s["placementStrategy"] == spread_instance()
    per = {}
    for t in service_tasks(ecs, cl, packed, False):
        per[t["containerInstanceArn"]] = per.get(t["containerInstanceArn"], 0) + 1
    assert old_host not in per and sorted(per.values()) == [1, 2], per


# --- capacity: FARGATE versus EC2 ----------------------------------------------------


def test_capacity_provider_fargate_versus_ec2(trio):
    fleet, ecs = trio.fleet, trio.ecs
    cl = fleet.create_cluster(capacityProviders=["FARGATE"])
    ec2_agent = fleet.add_agent(cl, name=f"{cl}-ec2", az="us-east-1a")
    fg_agent = fleet.add_agent(cl, name=f"{cl}-fg", az="us-east-1b", capacity="FARGATE")
    listed = ecs.list_container_instances(cluster=cl)["containerInstanceArns"]
    assert listed == [ec2_agent.arn], "Fargate capacity is not a container instance"
    fg_td = ecs.register_task_definition(
        family=unique("fg"), requiresCompatibilities=["FARGATE"], networkMode="awsvpc",
        cpu="256", memory="512", containerDefinitions=[
            {"name": "app", "image": trio.images.good,
             "command": ["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"]}])[
        "taskDefinition"]
    assert "FARGATE" in fg_td["compatibilities"]
    net = {"awsvpcConfiguration": {"subnets": ["subnet-1"]}}
    out = ecs.run_task(cluster=cl, taskDefinition=fg_td["taskDefinitionArn"],
                       capacityProviderStrategy=[{"capacityProvider": "FARGATE", "weight": 1}],
                       networkConfiguration=net)
    assert out["failures"] == []
    (t,) = out["tasks"]
    assert t["launchType"] == "FARGATE"
    assert t.get("capacityProviderName") == "FARGATE"
    assert t.get("containerInstanceArn") in (None, fg_agent.arn)
    ec2_td = trio.td()
    e = ecs.run_task(cluster=cl, taskDefinition=ec2_td["taskDefinitionArn"], launchType="EC2",
                     count=2)
    assert e["failures"] == []
    assert {x["containerInstanceArn"] for x in e["tasks"]} == {ec2_agent.arn}
    assert {x["launchType"] for x in e["tasks"]} == {"EC2"}
    running = wait_running(ecs, cl, [t] + e["tasks"])
    fg_task = next(x for x in running if x["taskArn"] == t["taskArn"])
    # The Fargate task really runs on the FARGATE-capacity agent.
    assert any(short_id(t["taskArn"]) in str(p) for p in fg_agent.live_task_dirs())
    assert fg_task["availabilityZone"] == "us-east-1b"

    fg_svc = unique("fgsvc")
    ecs.create_service(cluster=cl, serviceName=fg_svc, taskDefinition=fg_td["taskDefinitionArn"],
                       desiredCount=2, networkConfiguration=net,
                       capacityProviderStrategy=[{"capacityProvider": "FARGATE", "weight": 1}])
    ec2_svc = unique("ec2svc")
    ecs.create_service(cluster=cl, serviceName=ec2_svc, taskDefinition=ec2_td["taskDefinitionArn"],
                       desiredCount=2, launchType="EC2")
    s = wait_steady(ecs, cl, fg_svc, 2, timeout=60)
    assert s["capacityProviderStrategy"][0]["capacityProvider"] == "FARGATE"
    tasks = service_tasks(ecs, cl, fg_svc, False)
    assert {x["launchType"] for x in tasks} == {"FARGATE"}
    assert all(any(short_id(x["taskArn"]) in str(p) for p in fg_agent.live_task_dirs())
               for x in tasks)
    s = wait_steady(ecs, cl, ec2_svc, 2, timeout=60)
    assert s["launchType"] == "EC2"
    assert {x["containerInstanceArn"] for x in service_tasks(ecs, cl, ec2_svc, False)} == \
        {ec2_agent.arn}
