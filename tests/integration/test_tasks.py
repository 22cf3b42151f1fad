"""Tasks on registered container instances. No agent runs: the tests play it with
SubmitTaskStateChange / SubmitContainerStateChange."""
import pytest

from ecs_helpers import (HEX32, arn, cluster_counts, containers_of, describe_task,
                         instance_counts, paginate, raises_code, register_instance,
                         register_simple_taskdef, remaining, report_task, unique)


@pytest.fixture
def env(ecs):
    """A cluster with one 2048 CPU / 3000 MiB instance reserving port 22."""
    cluster = unique("tk")
    ecs.create_cluster(clusterName=cluster)
    ci = register_instance(ecs, cluster)
    return cluster, ci["containerInstanceArn"]


def _run(ecs, cluster, td, **kw):
    out = ecs.run_task(cluster=cluster, taskDefinition=td["taskDefinitionArn"], **kw)
    return out


def test_run_task_basic_shape(ecs, env):
    cluster, inst = env
    td = register_simple_taskdef(ecs, cpu=256, memory=512)
    out = _run(ecs, cluster, td)
    assert out["failures"] == []
    t = out["tasks"][0]
    prefix = arn(f"task/{cluster}/")
    assert t["taskArn"].startswith(prefix) and HEX32.match(t["taskArn"][len(prefix):])
    assert t["clusterArn"] == arn(f"cluster/{cluster}")
    assert t["taskDefinitionArn"] == td["taskDefinitionArn"]
    assert t["containerInstanceArn"] == inst
    assert t["lastStatus"] == "PENDING"
    assert t["desiredStatus"] == "RUNNING"
    assert t["launchType"] == "EC2"
    assert t["group"] == f"family:{td['family']}"
    assert t["availabilityZone"] == "us-east-1a"
    assert "createdAt" in t
    assert "startedAt" not in t and "stoppedAt" not in t
    (c,) = t["containers"]
    assert c["name"] == "web"
    assert c["lastStatus"] == "PENDING"
    assert c["taskArn"] == t["taskArn"]
    assert c["containerArn"].startswith(arn(f"container/{cluster}/"))
    d = describe_task(ecs, cluster, t["taskArn"])
    assert d["taskArn"] == t["taskArn"] and d["lastStatus"] == "PENDING"


def test_run_task_count_limits(ecs, env):
    cluster, _ = env
    td = register_simple_taskdef(ecs, cpu=10, memory=10)
    out = _run(ecs, cluster, td, count=10)
    assert len(out["tasks"]) == 10 and out["failures"] == []
    assert len({t["taskArn"] for t in out["tasks"]}) == 10
    with raises_code("InvalidParameterException"):
        _run(ecs, cluster, td, count=11)
    with raises_code("InvalidParameterException"):
        _run(ecs, cluster, td, count=0)


def test_run_task_without_instances(ecs):
    cluster = unique("empty")
    ecs.create_cluster(clusterName=cluster)
    td = register_simple_taskdef(ecs)
    with raises_code("InvalidParameterException") as e:
        _run(ecs, cluster, td)
    assert e.error["Message"] == "No Container Instances were found in your cluster."


def test_run_task_unknown_or_inactive_task_definition(ecs, env):
    cluster, _ = env
    with raises_code("ClientException", "InvalidParameterException"):
        ecs.run_task(cluster=cluster, taskDefinition=unique("nofam") + ":1")
    td = register_simple_taskdef(ecs)
    ecs.deregister_task_definition(taskDefinition=td["taskDefinitionArn"])
    with raises_code("ClientException", "InvalidParameterException"):
        _run(ecs, cluster, td)


def test_resource_accounting(ecs, env):
    cluster, inst = env
    td = register_simple_taskdef(ecs, cpu=256, memory=512, host_port=8080)
    before = remaining(ecs, cluster, inst)
    assert before == {"CPU": 2048, "MEMORY": 3000, "PORTS": ["22"], "PORTS_UDP": []}
    t = _run(ecs, cluster, td)["tasks"][0]
    r = remaining(ecs, cluster, inst)
    assert r["CPU"] == 2048 - 256
    assert r["MEMORY"] == 3000 - 512
    assert r["PORTS"] == sorted(["22", "8080"])
    report_task(ecs, cluster, t, "RUNNING")
    assert remaining(ecs, cluster, inst) == r
    ecs.stop_task(cluster=cluster, task=t["taskArn"])
    # Still reserved until the agent says it stopped.
    assert remaining(ecs, cluster, inst) == r
    report_task(ecs, cluster, t, "STOPPED")
    assert remaining(ecs, cluster, inst) == before


def test_memory_reservation_is_what_placement_subtracts(ecs, env):
    cluster, inst = env
    td = register_simple_taskdef(ecs, containers=[
        {"name": "a", "image": "busybox", "cpu": 100, "memory": 1024, "memoryReservation": 300},
        {"name": "b", "image": "busybox", "cpu": 50, "memory": 200, "essential": False}])
    _run(ecs, cluster, td)
    r = remaining(ecs, cluster, inst)
    assert r["CPU"] == 2048 - 150
    assert r["MEMORY"] == 3000 - 300 - 200


def test_task_level_cpu_memory_is_what_placement_subtracts(ecs, env):
    cluster, inst = env
    td = ecs.register_task_definition(family=unique("tl"), cpu="1024", memory="2048",
                                      containerDefinitions=[{"name": "a", "image": "busybox",
                                                             "cpu": 100, "memory": 100}])[
        "taskDefinition"]
    _run(ecs, cluster, td)
    r = remaining(ecs, cluster, inst)
    assert (r["CPU"], r["MEMORY"]) == (2048 - 1024, 3000 - 2048)


def test_udp_ports_are_reserved(ecs, env):
    cluster, inst = env
    td = register_simple_taskdef(ecs, containers=[
        {"name": "dns", "image": "coredns", "cpu": 10, "memory": 10,
         "portMappings": [{"containerPort": 53, "hostPort": 5353, "protocol": "udp"}]}])
    _run(ecs, cluster, td)
    r = remaining(ecs, cluster, inst)
    assert r["PORTS_UDP"] == ["5353"]
    assert r["PORTS"] == ["22"]
    out = _run(ecs, cluster, td)
    assert out["tasks"] == []
    assert out["failures"][0]["reason"] == "RESOURCE:PORTS_UDP"


def test_dynamic_host_ports_are_not_reserved(ecs, env):
    cluster, inst = env
    td = register_simple_taskdef(ecs, host_port=0)
    for _ in range(2):
        assert len(_run(ecs, cluster, td)["tasks"]) == 1
    assert remaining(ecs, cluster, inst)["PORTS"] == ["22"]


@pytest.mark.parametrize("kw,reason", [
    (dict(cpu=4096, memory=128), "RESOURCE:CPU"),
    (dict(cpu=128, memory=4000), "RESOURCE:MEMORY"),
    (dict(cpu=128, memory=128, host_port=22), "RESOURCE:PORTS"),
])
def test_run_task_failures_when_nothing_fits(ecs, env, kw, reason):
    cluster, inst = env
    td = register_simple_taskdef(ecs, **kw)
    out = _run(ecs, cluster, td)
    assert out["tasks"] == []
    assert out["failures"] == [{"arn": inst, "reason": reason}] or \
        [(f["arn"], f["reason"]) for f in out["failures"]] == [(inst, reason)]
    # Nothing was reserved.
    assert remaining(ecs, cluster, inst)["CPU"] == 2048


def test_port_conflict_between_tasks(ecs, env):
    cluster, inst = env
    td = register_simple_taskdef(ecs, cpu=10, memory=10, host_port=8080)
    first = _run(ecs, cluster, td)
    assert len(first["tasks"]) == 1
    second = _run(ecs, cluster, td)
    assert second["tasks"] == []
    assert [(f["arn"], f["reason"]) for f in second["failures"]] == [(inst, "RESOURCE:PORTS")]
    # count=2 in one call: only one fits.
    ecs.stop_task(cluster=cluster, task=first["tasks"][0]["taskArn"])
    report_task(ecs, cluster, first["tasks"][0], "STOPPED")
    both = _run(ecs, cluster, td, count=2)
    assert len(both["tasks"]) == 1
    assert [f["reason"] for f in both["failures"]] == ["RESOURCE:PORTS"]


def test_partial_placement(ecs, env):
    cluster, inst = env
    td = register_simple_taskdef(ecs, cpu=1024, memory=100)
    out = _run(ecs, cluster, td, count=3)
    assert len(out["tasks"]) == 2
    assert [(f["arn"], f["reason"]) for f in out["failures"]] == [(inst, "RESOURCE:CPU")]
    assert remaining(ecs, cluster, inst)["CPU"] == 0


def test_placement_across_instances(ecs, env):
    cluster, inst = env
    other = register_instance(ecs, cluster, az="us-east-1b")["containerInstanceArn"]
    td = register_simple_taskdef(ecs, cpu=2048, memory=100)
    out = _run(ecs, cluster, td, count=2)
    assert out["failures"] == []
    assert sorted(t["containerInstanceArn"] for t in out["tasks"]) == sorted([inst, other])


def test_overrides(ecs, env):
    cluster, _ = env
    td = register_simple_taskdef(ecs)
    ov = {"containerOverrides": [{"name": "web", "command": ["echo", "hi"],
                                  "environment": [{"name": "X", "value": "1"}]}]}
    t = _run(ecs, cluster, td, overrides=ov)["tasks"][0]
    got = t["overrides"]["containerOverrides"][0]
    assert got["name"] == "web"
    assert got["command"] == ["echo", "hi"]
    assert got["environment"] == [{"name": "X", "value": "1"}]
    d = describe_task(ecs, cluster, t["taskArn"])
    assert d["overrides"]["containerOverrides"][0]["command"] == ["echo", "hi"]


def test_override_unknown_container(ecs, env):
    cluster, _ = env
    td = register_simple_taskdef(ecs)
    with raises_code("InvalidParameterException"):
        _run(ecs, cluster, td, overrides={"containerOverrides": [{"name": "ghost",
                                                                  "command": ["x"]}]})


def test_override_cpu_memory_changes_reservation(ecs, env):
    cluster, inst = env
    td = register_simple_taskdef(ecs, cpu=256, memory=512)
    _run(ecs, cluster, td, overrides={"containerOverrides": [
        {"name": "web", "cpu": 1000, "memory": 1000}]})
    r = remaining(ecs, cluster, inst)
    assert (r["CPU"], r["MEMORY"]) == (2048 - 1000, 3000 - 1000)


def test_started_by_group_and_tags(ecs, env):
    cluster, _ = env
    td = register_simple_taskdef(ecs)
    t = _run(ecs, cluster, td, startedBy="ci-job-42", group="batch:nightly",
             tags=[{"key": "job", "value": "42"}])["tasks"][0]
    assert t["startedBy"] == "ci-job-42"
    assert t["group"] == "batch:nightly"
    d = describe_task(ecs, cluster, t["taskArn"], include_tags=True)
    assert d["tags"] == [{"key": "job", "value": "42"}]
    assert d["startedBy"] == "ci-job-42" and d["group"] == "batch:nightly"
    plain = describe_task(ecs, cluster, t["taskArn"])
    assert not plain.get("tags")
    assert ecs.list_tags_for_resource(resourceArn=t["taskArn"])["tags"] == \
        [{"key": "job", "value": "42"}]


def test_propagate_tags_from_task_definition(ecs, env):
    cluster, _ = env
    td = register_simple_taskdef(ecs, tags=[{"key": "from", "value": "taskdef"}])
    t = _run(ecs, cluster, td, propagateTags="TASK_DEFINITION",
             tags=[{"key": "own", "value": "yes"}])["tasks"][0]
    tags = sorted(describe_task(ecs, cluster, t["taskArn"], include_tags=True)["tags"],
                  key=lambda x: x["key"])
    assert tags == [{"key": "from", "value": "taskdef"}, {"key": "own", "value": "yes"}]


def test_lifecycle_user_stop(ecs, env):
    cluster, inst = env
    td = register_simple_taskdef(ecs, host_port=8080)
    t = _run(ecs, cluster, td)["tasks"][0]
    arn_ = t["taskArn"]
    cid = "c0ffee" * 10
    report_task(ecs, cluster, t, "RUNNING", containers=[{
        "containerName": "web", "runtimeId": cid, "status": "RUNNING",
        "networkBindings": [{"bindIP": "0.0.0.0", "containerPort": 80, "hostPort": 8080,
                             "protocol": "tcp"}]}], pullStartedAt=1700000000.5,
        pullStoppedAt=1700000001.5)
    d = describe_task(ecs, cluster, arn_)
    assert d["lastStatus"] == "RUNNING"
    assert d["desiredStatus"] == "RUNNING"
    assert "startedAt" in d
    assert d["pullStartedAt"].timestamp() == pytest.approx(1700000000.5)
    c = containers_of(d)["web"]
    assert c["lastStatus"] == "RUNNING"
    assert c["runtimeId"] == cid
    assert c["networkBindings"] == [{"bindIP": "0.0.0.0", "containerPort": 80, "hostPort": 8080,
                                     "protocol": "tcp"}]

    out = ecs.stop_task(cluster=cluster, task=arn_, reason="maintenance window")["task"]
    assert out["desiredStatus"] == "STOPPED"
    assert out["lastStatus"] == "RUNNING"
    assert out["stopCode"] == "UserInitiated"
    assert out["stoppedReason"] == "maintenance window"
    d = describe_task(ecs, cluster, arn_)
    assert (d["desiredStatus"], d["lastStatus"], d["stopCode"]) == ("STOPPED", "RUNNING",
                                                                   "UserInitiated")
    assert "stoppingAt" in d

    report_task(ecs, cluster, t, "STOPPED", containers=[{
        "containerName": "web", "runtimeId": cid, "status": "STOPPED", "exitCode": 143}])
    d = describe_task(ecs, cluster, arn_)
    assert d["lastStatus"] == "STOPPED"
    assert d["desiredStatus"] == "STOPPED"
    assert d["stopCode"] == "UserInitiated", "the stop code of the user's stop must be kept"
    assert d["stoppedReason"] == "maintenance window"
    assert "stoppedAt" in d and "executionStoppedAt" in d
    assert d["stoppedAt"] >= d["startedAt"]
    c = containers_of(d)["web"]
    assert c["lastStatus"] == "STOPPED" and c["exitCode"] == 143


def test_stop_task_default_reason(ecs, env):
    cluster, _ = env
    td = register_simple_taskdef(ecs)
    t = _run(ecs, cluster, td)["tasks"][0]
    out = ecs.stop_task(cluster=cluster, task=t["taskArn"])["task"]
    assert out["stopCode"] == "UserInitiated"
    assert out["stoppedReason"]


def test_stop_unknown_task(ecs, env):
    cluster, _ = env
    with raises_code("InvalidParameterException"):
        ecs.stop_task(cluster=cluster, task="f" * 32)


def test_essential_container_exit_stops_task(ecs, env):
    cluster, _ = env
    td = register_simple_taskdef(ecs, containers=[
        {"name": "app", "image": "busybox", "cpu": 10, "memory": 64, "essential": True},
        {"name": "side", "image": "busybox", "cpu": 10, "memory": 64, "essential": False}])
    t = _run(ecs, cluster, td)["tasks"][0]
    report_task(ecs, cluster, t, "RUNNING")
    # The non-essential container exiting changes nothing for the task.
    ecs.submit_container_state_change(cluster=cluster, task=t["taskArn"], containerName="side",
                                      status="STOPPED", exitCode=0, runtimeId="s1")
    d = describe_task(ecs, cluster, t["taskArn"])
    assert d["desiredStatus"] == "RUNNING" and d["lastStatus"] == "RUNNING"
    assert containers_of(d)["side"]["exitCode"] == 0
    assert containers_of(d)["side"]["lastStatus"] == "STOPPED"
    # The essential one exiting makes the control plane stop the task.
    ecs.submit_container_state_change(cluster=cluster, task=t["taskArn"], containerName="app",
                                      status="STOPPED", exitCode=137,
                                      reason="OutOfMemoryError: Container killed due to memory "
                                             "usage", runtimeId="a1")
    d = describe_task(ecs, cluster, t["taskArn"])
    assert d["desiredStatus"] == "STOPPED"
    assert d["stopCode"] == "EssentialContainerExited"
    assert d["stoppedReason"] == "Essential container in task exited"
    app = containers_of(d)["app"]
    assert app["exitCode"] == 137
    assert app["reason"] == "OutOfMemoryError: Container killed due to memory usage"
    report_task(ecs, cluster, t["taskArn"], "STOPPED")
    d = describe_task(ecs, cluster, t["taskArn"])
    assert d["lastStatus"] == "STOPPED"
    assert d["stopCode"] == "EssentialContainerExited"
    assert d["stoppedReason"] == "Essential container in task exited"


def test_task_state_change_carries_container_exit(ecs, env):
    cluster, _ = env
    td = register_simple_taskdef(ecs)
    t = _run(ecs, cluster, td)["tasks"][0]
    report_task(ecs, cluster, t, "RUNNING")
    report_task(ecs, cluster, t, "STOPPED", containers=[{
        "containerName": "web", "status": "STOPPED", "exitCode": 2,
        "reason": "CannotStartContainerError: boom"}])
    d = describe_task(ecs, cluster, t["taskArn"])
    assert d["lastStatus"] == "STOPPED"
    assert d["stopCode"] == "EssentialContainerExited"
    assert d["stoppedReason"] == "Essential container in task exited"
    web = containers_of(d)["web"]
    assert (web["exitCode"], web["reason"]) == (2, "CannotStartContainerError: boom")


def test_task_failed_to_start(ecs, env):
    cluster, _ = env
    td = register_simple_taskdef(ecs)
    t = _run(ecs, cluster, td)["tasks"][0]
    report_task(ecs, cluster, t, "STOPPED", containers=[{
        "containerName": "web", "status": "STOPPED",
        "reason": "CannotPullContainerError: pull access denied"}])
    d = describe_task(ecs, cluster, t["taskArn"])
    assert d["lastStatus"] == "STOPPED"
    assert d["stopCode"] == "TaskFailedToStart"
    assert "CannotPullContainerError" in d["stoppedReason"]
    assert "exitCode" not in containers_of(d)["web"]
    assert "startedAt" not in d


def test_late_reports_do_not_resurrect_a_stopped_task(ecs, env):
    cluster, _ = env
    td = register_simple_taskdef(ecs)
    t = _run(ecs, cluster, td)["tasks"][0]
    report_task(ecs, cluster, t, "RUNNING")
    report_task(ecs, cluster, t, "STOPPED")
    report_task(ecs, cluster, t, "RUNNING")
    d = describe_task(ecs, cluster, t["taskArn"])
    assert d["lastStatus"] == "STOPPED"


def test_describe_tasks_missing(ecs, env):
    cluster, _ = env
    td = register_simple_taskdef(ecs)
    t = _run(ecs, cluster, td)["tasks"][0]
    missing = "0123456789abcdef0123456789abcdef"
    out = ecs.describe_tasks(cluster=cluster, tasks=[t["taskArn"], missing])
    assert [x["taskArn"] for x in out["tasks"]] == [t["taskArn"]]
    assert len(out["failures"]) == 1
    assert out["failures"][0]["reason"] == "MISSING"
    assert out["failures"][0]["arn"].endswith(missing)


def test_describe_tasks_by_short_id(ecs, env):
    cluster, _ = env
    td = register_simple_taskdef(ecs)
    t = _run(ecs, cluster, td)["tasks"][0]
    short = t["taskArn"].rsplit("/", 1)[1]
    assert describe_task(ecs, cluster, short)["taskArn"] == t["taskArn"]


def test_list_tasks_filters(ecs, env):
    cluster, inst = env
    inst2 = register_instance(ecs, cluster, az="us-east-1b")["containerInstanceArn"]
    td_a = register_simple_taskdef(ecs, family=unique("fa"), cpu=10, memory=10)
    td_b = register_simple_taskdef(ecs, family=unique("fb"), cpu=10, memory=10)
    a1 = ecs.start_task(cluster=cluster, taskDefinition=td_a["taskDefinitionArn"],
                        containerInstances=[inst], startedBy="alice")["tasks"][0]["taskArn"]
    a2 = ecs.start_task(cluster=cluster, taskDefinition=td_a["taskDefinitionArn"],
                        containerInstances=[inst2], startedBy="bob")["tasks"][0]["taskArn"]
    b1 = ecs.start_task(cluster=cluster, taskDefinition=td_b["taskDefinitionArn"],
                        containerInstances=[inst2], startedBy="alice")["tasks"][0]["taskArn"]
    b2 = ecs.start_task(cluster=cluster, taskDefinition=td_b["taskDefinitionArn"],
                        containerInstances=[inst])["tasks"][0]["taskArn"]
    ecs.stop_task(cluster=cluster, task=b2)
    report_task(ecs, cluster, b2, "STOPPED")

    def lst(**kw):
        return sorted(paginate(ecs.list_tasks, "taskArns", cluster=cluster, **kw)[0])

    assert lst() == sorted([a1, a2, b1])
    assert lst(desiredStatus="RUNNING") == sorted([a1, a2, b1])
    assert lst(desiredStatus="STOPPED") == [b2]
    assert lst(family=td_a["family"]) == sorted([a1, a2])
    assert lst(family=td_b["family"], desiredStatus="STOPPED") == [b2]
    assert lst(startedBy="alice") == sorted([a1, b1])
    assert lst(containerInstance=inst) == [a1]
    assert lst(containerInstance=inst2) == sorted([a2, b1])
    assert lst(containerInstance=inst2.rsplit("/", 1)[1]) == sorted([a2, b1])
    assert lst(launchType="EC2") == sorted([a1, a2, b1])
    assert lst(launchType="FARGATE") == []
    assert lst(family="no-such-family") == []


def test_list_tasks_pagination(ecs, env):
    cluster, _ = env
    td = register_simple_taskdef(ecs, cpu=10, memory=10)
    arns = [t["taskArn"] for t in _run(ecs, cluster, td, count=5)["tasks"]]
    items, pages = paginate(ecs.list_tasks, "taskArns", cluster=cluster, maxResults=2)
    assert sorted(items) == sorted(arns)
    assert len(items) == 5
    assert [len(p["taskArns"]) for p in pages] == [2, 2, 1]
    with raises_code("InvalidParameterException"):
        ecs.list_tasks(cluster=cluster, nextToken="garbage")


def test_start_task_on_named_instance(ecs, env):
    cluster, inst = env
    other = register_instance(ecs, cluster, az="us-east-1c")["containerInstanceArn"]
    td = register_simple_taskdef(ecs, cpu=100, memory=100)
    out = ecs.start_task(cluster=cluster, taskDefinition=td["taskDefinitionArn"],
                         containerInstances=[other], startedBy="me")
    assert out["failures"] == []
    t = out["tasks"][0]
    assert t["containerInstanceArn"] == other
    assert t["availabilityZone"] == "us-east-1c"
    assert remaining(ecs, cluster, other)["CPU"] == 2048 - 100
    assert remaining(ecs, cluster, inst)["CPU"] == 2048
    # One task per listed instance.
    out = ecs.start_task(cluster=cluster, taskDefinition=td["taskDefinitionArn"],
                         containerInstances=[inst, other])
    assert sorted(t["containerInstanceArn"] for t in out["tasks"]) == sorted([inst, other])


def test_start_task_failures(ecs, env):
    cluster, inst = env
    td = register_simple_taskdef(ecs, cpu=4096, memory=100)
    out = ecs.start_task(cluster=cluster, taskDefinition=td["taskDefinitionArn"],
                         containerInstances=[inst, "f" * 32])
    assert out["tasks"] == []
    reasons = sorted(f["reason"] for f in out["failures"])
    assert reasons == ["MISSING", "RESOURCE:CPU"]


def test_task_protection_on_standalone_task(ecs, env):
    cluster, _ = env
    td = register_simple_taskdef(ecs)
    t = _run(ecs, cluster, td)["tasks"][0]
    out = ecs.get_task_protection(cluster=cluster, tasks=[t["taskArn"]])
    assert out["protectedTasks"] == []
    assert [f["reason"] for f in out["failures"]] == ["TASK_NOT_VALID"]
    assert out["failures"][0]["arn"] == t["taskArn"]
    out = ecs.update_task_protection(cluster=cluster, tasks=[t["taskArn"]],
                                     protectionEnabled=True, expiresInMinutes=60)
    assert out["protectedTasks"] == []
    assert [f["reason"] for f in out["failures"]] == ["TASK_NOT_VALID"]
    out = ecs.get_task_protection(cluster=cluster, tasks=["f" * 32])
    assert [f["reason"] for f in out["failures"]] == ["MISSING"]


def test_counts_stay_consistent(ecs, env):
    cluster, inst = env
    td = register_simple_taskdef(ecs, cpu=10, memory=10)

    def check(running, pending):
        assert cluster_counts(ecs, cluster) == {"runningTasksCount": running,
                                                "pendingTasksCount": pending,
                                                "registeredContainerInstancesCount": 1}
        assert instance_counts(ecs, cluster, inst) == {"running": running, "pending": pending}
        stats = {s["name"]: s["value"] for s in ecs.describe_clusters(
            clusters=[cluster], include=["STATISTICS"])["clusters"][0]["statistics"]}
        assert stats["runningEC2TasksCount"] == str(running)
        assert stats["pendingEC2TasksCount"] == str(pending)

    check(0, 0)
    tasks = _run(ecs, cluster, td, count=3)["tasks"]
    check(0, 3)
    report_task(ecs, cluster, tasks[0], "RUNNING")
    check(1, 2)
    report_task(ecs, cluster, tasks[1], "RUNNING")
    check(2, 1)
    ecs.stop_task(cluster=cluster, task=tasks[0]["taskArn"])
    check(2, 1)  # still running until the agent reports it stopped
    report_task(ecs, cluster, tasks[0], "STOPPED")
    check(1, 1)
    report_task(ecs, cluster, tasks[2], "STOPPED")  # failed to start
    check(1, 0)
    report_task(ecs, cluster, tasks[1], "STOPPED")
    check(0, 0)


def test_awsvpc_task_needs_network_configuration(ecs, env):
    cluster, _ = env
    td = ecs.register_task_definition(family=unique("vpc"), networkMode="awsvpc",
                                      containerDefinitions=[{"name": "a", "image": "busybox",
                                                             "memory": 64}])["taskDefinition"]
    with raises_code("InvalidParameterException"):
        _run(ecs, cluster, td)
    t = _run(ecs, cluster, td, networkConfiguration={"awsvpcConfiguration": {
        "subnets": ["subnet-12345678"], "securityGroups": ["sg-12345678"]}})["tasks"][0]
    assert t["attachments"][0]["type"] == "ElasticNetworkInterface"


def test_bridge_task_rejects_network_configuration(ecs, env):
    cluster, _ = env
    td = register_simple_taskdef(ecs)
    with raises_code("InvalidParameterException"):
        _run(ecs, cluster, td, networkConfiguration={"awsvpcConfiguration": {
            "subnets": ["subnet-12345678"]}})


def test_waiters_through_cli(server, ecs, env):
    cluster, _ = env
    td = register_simple_taskdef(ecs)
    t = _run(ecs, cluster, td)["tasks"][0]
    report_task(ecs, cluster, t, "RUNNING")
    server.aws("wait", "tasks-running", "--cluster", cluster, "--tasks", t["taskArn"], timeout=60)
    ecs.stop_task(cluster=cluster, task=t["taskArn"])
    report_task(ecs, cluster, t, "STOPPED")
    server.aws("wait", "tasks-stopped", "--cluster", cluster, "--tasks", t["taskArn"], timeout=60)


def test_waiter_tasks_running_fails_for_stopped_task(server, ecs, env):
    cluster, _ = env
    td = register_simple_taskdef(ecs)
    t = _run(ecs, cluster, td)["tasks"][0]
    report_task(ecs, cluster, t, "STOPPED")
    err = server.aws_fail("wait", "tasks-running", "--cluster", cluster, "--tasks", t["taskArn"],
                          timeout=60)
    assert "Waiter TasksRunning failed" in err


def test_boto_waiter(ecs, env):
    cluster, _ = env
    td = register_simple_taskdef(ecs)
    t = _run(ecs, cluster, td)["tasks"][0]
    report_task(ecs, cluster, t, "RUNNING")
    ecs.get_waiter("tasks_running").wait(cluster=cluster, tasks=[t["taskArn"]],
                                         WaiterConfig={"Delay": 1, "MaxAttempts": 3})


def test_run_task_through_cli(server, ecs, env):
    cluster, inst = env
    td = register_simple_taskdef(ecs)
    out = server.aws("run-task", "--cluster", cluster, "--task-definition", td["family"],
                     "--count", "2", "--started-by", "cli")
    assert len(out["tasks"]) == 2
    assert all(t["startedBy"] == "cli" for t in out["tasks"])
    listed = server.aws("list-tasks", "--cluster", cluster, "--started-by", "cli")["taskArns"]
    assert sorted(listed) == sorted(t["taskArn"] for t in out["tasks"])


def test_stop_task_is_idempotent(ecs, env):
    cluster, _ = env
    td = register_simple_taskdef(ecs)
    t = _run(ecs, cluster, td)["tasks"][0]
    ecs.stop_task(cluster=cluster, task=t["taskArn"], reason="first")
    report_task(ecs, cluster, t, "STOPPED")
    out = ecs.stop_task(cluster=cluster, task=t["taskArn"], reason="second")["task"]
    assert out["lastStatus"] == "STOPPED"
    assert out["stoppedReason"] == "first"


def test_describe_too_many_tasks(ecs, env):
    cluster, _ = env
    with raises_code("InvalidParameterException"):
        ecs.describe_tasks(cluster=cluster, tasks=[f"{i:032x}" for i in range(101)])


@pytest.mark.parametrize("n", [0, 101])
def test_list_tasks_max_results_bounds(ecs, env, n):
    cluster, _ = env
    with raises_code("InvalidParameterException"):
        ecs.list_tasks(cluster=cluster, maxResults=n)


def test_list_tasks_default_page_size(ecs, env):
    cluster, _ = env
    td = register_simple_taskdef(ecs, cpu=1, memory=6)
    arns = []
    for _ in range(11):
        arns += [t["taskArn"] for t in _run(ecs, cluster, td, count=10)["tasks"]]
    assert len(arns) == 110
    first = ecs.list_tasks(cluster=cluster)
    assert len(first["taskArns"]) == 100 and first["nextToken"]
    second = ecs.list_tasks(cluster=cluster, nextToken=first["nextToken"])
    assert len(second["taskArns"]) == 10 and "nextToken" not in second
    assert sorted(first["taskArns"] + second["taskArns"]) == sorted(arns)


def test_run_task_fargate_launch_type_needs_compatible_definition(ecs, env):
    cluster, _ = env
    td = register_simple_taskdef(ecs)
    with raises_code("InvalidParameterException", "ClientException"):
        _run(ecs, cluster, td, launchType="FARGATE", networkConfiguration={
            "awsvpcConfiguration": {"subnets": ["subnet-1"]}})


def test_run_task_launch_type_and_strategy_conflict(ecs, env):
    cluster, _ = env
    td = register_simple_taskdef(ecs)
    with raises_code("InvalidParameterException"):
        _run(ecs, cluster, td, launchType="EC2",
             capacityProviderStrategy=[{"capacityProvider": "FARGATE", "weight": 1}])


def test_run_task_client_token_idempotency(server, ecs, env):
    # clientToken is newer than botocore 1.29: raw signed calls.
    cluster, inst = env
    td = register_simple_taskdef(ecs, cpu=100, memory=100)
    body = {"cluster": cluster, "taskDefinition": td["taskDefinitionArn"], "count": 2,
            "clientToken": "token-123"}
    first = server.raw_ok("RunTask", body)
    again = server.raw_ok("RunTask", body)
    assert len(first["tasks"]) == 2
    assert sorted(t["taskArn"] for t in again["tasks"]) == \
        sorted(t["taskArn"] for t in first["tasks"]), "a retried RunTask must not start new tasks"
    assert len(ecs.list_tasks(cluster=cluster)["taskArns"]) == 2
    assert remaining(ecs, cluster, inst)["CPU"] == 2048 - 200
    other = dict(body, count=1)
    r = server.raw("RunTask", other)
    assert r.status == 400 and r.error_type == "ConflictException", r


def test_concurrent_run_task_never_overcommits(server, ecs, env):
    import concurrent.futures
    cluster, inst = env
    td = register_simple_taskdef(ecs, cpu=512, memory=100)

    def run(_):
        c = server.client()
        return len(c.run_task(cluster=cluster, taskDefinition=td["taskDefinitionArn"])["tasks"])

    with concurrent.futures.ThreadPoolExecutor(8) as ex:
        placed = sum(ex.map(run, range(16)))
    assert placed == 4
    assert remaining(ecs, cluster, inst)["CPU"] == 0
    assert len(ecs.list_tasks(cluster=cluster)["taskArns"]) == 4


# --- placement constraints are binding ----------------------------------------------------


@pytest.fixture
def two_azs(ecs):
    cluster = unique("pl")
    ecs.create_cluster(clusterName=cluster)
    a = register_instance(ecs, cluster, az="us-east-1a",
                          attributes={"ecs.instance-type": "t3.medium"})["containerInstanceArn"]
    b = register_instance(ecs, cluster, az="us-east-1b",
                          attributes={"ecs.instance-type": "m5.large"})["containerInstanceArn"]
    return cluster, a, b


def test_run_task_member_of_constraint(ecs, two_azs):
    cluster, a, b = two_azs
    td = register_simple_taskdef(ecs, cpu=10, memory=10)
    for want, expr in ((b, "attribute:ecs.availability-zone == us-east-1b"),
                       (a, "attribute:ecs.instance-type =~ t3.*")):
        out = _run(ecs, cluster, td, count=3, placementConstraints=[
            {"type": "memberOf", "expression": expr}])
        assert out["failures"] == []
        assert {t["containerInstanceArn"] for t in out["tasks"]} == {want}, expr


def test_run_task_member_of_nothing_matches(ecs, two_azs):
    cluster, _, _ = two_azs
    td = register_simple_taskdef(ecs, cpu=10, memory=10)
    out = _run(ecs, cluster, td, placementConstraints=[
        {"type": "memberOf", "expression": "attribute:ecs.availability-zone == eu-west-1a"}])
    assert out["tasks"] == []
    assert out["failures"]


def test_task_definition_member_of_constraint(ecs, two_azs):
    cluster, a, b = two_azs
    for want, itype in ((a, "t3.medium"), (b, "m5.large")):
        td = register_simple_taskdef(ecs, cpu=10, memory=10, placementConstraints=[
            {"type": "memberOf", "expression": f"attribute:ecs.instance-type == {itype}"}])
        out = _run(ecs, cluster, td, count=4)
        assert {t["containerInstanceArn"] for t in out["tasks"]} == {want}, itype


def test_distinct_instance_constraint(ecs, two_azs):
    cluster, a, b = two_azs
    td = register_simple_taskdef(ecs, cpu=10, memory=10)
    out = _run(ecs, cluster, td, count=3, placementConstraints=[{"type": "distinctInstance"}])
    assert sorted(t["containerInstanceArn"] for t in out["tasks"]) == sorted([a, b])
    assert len(out["failures"]) >= 1


def test_invalid_member_of_expression(ecs, two_azs):
    cluster, _, _ = two_azs
    td = register_simple_taskdef(ecs, cpu=10, memory=10)
    with raises_code("InvalidParameterException"):
        _run(ecs, cluster, td, placementConstraints=[
            {"type": "memberOf", "expression": "attribute:x =="}])


def test_binpack_strategy(ecs, two_azs):
    cluster, a, b = two_azs
    # Load the instance that a naive first-fit (by id) would pick last.
    loaded = max(a, b, key=lambda x: x.rsplit("/", 1)[1])
    td_big = register_simple_taskdef(ecs, cpu=10, memory=2000)
    ecs.start_task(cluster=cluster, taskDefinition=td_big["taskDefinitionArn"],
                   containerInstances=[loaded])
    td = register_simple_taskdef(ecs, cpu=10, memory=100)
    out = _run(ecs, cluster, td, count=3, placementStrategy=[{"type": "binpack",
                                                              "field": "memory"}])
    # The loaded instance has the least memory left, so binpack fills it first.
    assert {t["containerInstanceArn"] for t in out["tasks"]} == {loaded}


def test_run_task_family_resolves_latest_active_revision(ecs, env):
    cluster, _ = env
    fam = unique("latest")
    register_simple_taskdef(ecs, family=fam)
    register_simple_taskdef(ecs, family=fam)
    ecs.deregister_task_definition(taskDefinition=f"{fam}:2")
    t = ecs.run_task(cluster=cluster, taskDefinition=fam)["tasks"][0]
    assert t["taskDefinitionArn"] == arn(f"task-definition/{fam}:1")
    with raises_code("ClientException", "InvalidParameterException"):
        ecs.run_task(cluster=cluster, taskDefinition=f"{fam}:2")


def test_task_version_increases(ecs, env):
    cluster, _ = env
    td = register_simple_taskdef(ecs)
    t = _run(ecs, cluster, td)["tasks"][0]
    v0 = t["version"]
    report_task(ecs, cluster, t, "RUNNING")
    v1 = describe_task(ecs, cluster, t["taskArn"])["version"]
    ecs.stop_task(cluster=cluster, task=t["taskArn"])
    v2 = describe_task(ecs, cluster, t["taskArn"])["version"]
    report_task(ecs, cluster, t, "STOPPED")
    v3 = describe_task(ecs, cluster, t["taskArn"])["version"]
    assert v0 < v1 < v2 < v3


def test_task_of_another_cluster_is_missing(ecs, env):
    cluster, _ = env
    other = unique("other")
    ecs.create_cluster(clusterName=other)
    td = register_simple_taskdef(ecs)
    t = _run(ecs, cluster, td)["tasks"][0]
    out = ecs.describe_tasks(cluster=other, tasks=[t["taskArn"]])
    assert out["tasks"] == []
    assert out["failures"][0]["reason"] == "MISSING"
    with raises_code("InvalidParameterException"):
        ecs.stop_task(cluster=other, task=t["taskArn"])
    assert ecs.list_tasks(cluster=other)["taskArns"] == []


def test_update_task_protection_expiry_bounds(ecs, env):
    cluster, _ = env
    td = register_simple_taskdef(ecs)
    t = _run(ecs, cluster, td)["tasks"][0]
    for minutes in (0, 2881):
        with raises_code("InvalidParameterException"):
            ecs.update_task_protection(cluster=cluster, tasks=[t["taskArn"]],
                                       protectionEnabled=True, expiresInMinutes=minutes)
