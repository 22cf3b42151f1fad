"""Clusters: CreateCluster, DescribeClusters, ListClusters, UpdateCluster(Settings),
PutClusterCapacityProviders, DeleteCluster."""
import base64

import pytest

from ecs_helpers import (arn, paginate, raises_code, register_instance, register_simple_taskdef,
                         report_task, unique)


def test_create_cluster_returns_active_cluster(ecs):
    name = unique("c")
    c = ecs.create_cluster(clusterName=name)["cluster"]
    assert c["clusterName"] == name
    assert c["clusterArn"] == arn(f"cluster/{name}")
    assert c["status"] == "ACTIVE"
    assert c["registeredContainerInstancesCount"] == 0
    assert c["runningTasksCount"] == 0
    assert c["pendingTasksCount"] == 0
    assert c["activeServicesCount"] == 0


def test_create_cluster_is_idempotent(ecs):
    name = unique("c")
    a = ecs.create_cluster(clusterName=name)["cluster"]
    b = ecs.create_cluster(clusterName=name)["cluster"]
    assert a["clusterArn"] == b["clusterArn"]
    assert b["status"] == "ACTIVE"
    arns = ecs.list_clusters()["clusterArns"]
    assert arns.count(a["clusterArn"]) == 1


def test_create_cluster_without_name_creates_default(ecs):
    c = ecs.create_cluster()["cluster"]
    assert c["clusterName"] == "default"
    assert c["clusterArn"] == arn("cluster/default")
    # Operations without a cluster parameter act on "default".
    assert ecs.describe_clusters()["clusters"][0]["clusterName"] == "default"


@pytest.mark.parametrize("name", ["has space", "a" * 256, "slash/name", "dot.name", "ümlaut"])
def test_create_cluster_invalid_name(ecs, name):
    with raises_code("InvalidParameterException"):
        ecs.create_cluster(clusterName=name)


def test_describe_cluster_include_tags_settings_statistics(ecs):
    name = unique("c")
    tags = [{"key": "team", "value": "infra"}, {"key": "env", "value": "test"}]
    ecs.create_cluster(clusterName=name, tags=tags,
                       settings=[{"name": "containerInsights", "value": "enabled"}])

    plain = ecs.describe_clusters(clusters=[name])
    assert plain["failures"] == []
    c = plain["clusters"][0]
    assert c["clusterName"] == name
    assert not c.get("tags"), "tags must only be returned with include=TAGS"

    c = ecs.describe_clusters(clusters=[name], include=["TAGS"])["clusters"][0]
    assert sorted(c["tags"], key=lambda t: t["key"]) == sorted(tags, key=lambda t: t["key"])

    c = ecs.describe_clusters(clusters=[name], include=["SETTINGS"])["clusters"][0]
    assert {"name": "containerInsights", "value": "enabled"} in c["settings"]

    c = ecs.describe_clusters(clusters=[name], include=["STATISTICS"])["clusters"][0]
    stats = {s["name"]: s["value"] for s in c["statistics"]}
    for key in ("runningEC2TasksCount", "runningFargateTasksCount", "pendingEC2TasksCount",
                "pendingFargateTasksCount", "activeEC2ServiceCount", "drainingEC2ServiceCount"):
        assert stats.get(key) == "0", (key, stats)

    c = ecs.describe_clusters(clusters=[name], include=["TAGS", "SETTINGS", "STATISTICS"])
    c = c["clusters"][0]
    assert len(c["tags"]) == 2 and c["settings"] and c["statistics"]


def test_describe_cluster_by_arn_and_name(ecs):
    name = unique("c")
    a = ecs.create_cluster(clusterName=name)["cluster"]["clusterArn"]
    out = ecs.describe_clusters(clusters=[name, a])
    assert [c["clusterArn"] for c in out["clusters"]] == [a, a]


def test_describe_unknown_cluster_is_a_failure_not_an_error(ecs):
    name = unique("nope")
    good = unique("c")
    ecs.create_cluster(clusterName=good)
    out = ecs.describe_clusters(clusters=[name, good])
    assert [c["clusterName"] for c in out["clusters"]] == [good]
    assert len(out["failures"]) == 1
    f = out["failures"][0]
    assert f["reason"] == "MISSING"
    assert f["arn"] == arn(f"cluster/{name}")


def test_list_clusters_pagination_returns_each_exactly_once(ecs):
    names = [f"page-{i}-{unique('c')}" for i in range(5)]
    for n in names:
        ecs.create_cluster(clusterName=n)
    items, pages = paginate(ecs.list_clusters, "clusterArns", maxResults=2)
    assert sorted(items) == sorted(arn(f"cluster/{n}") for n in names)
    assert len(items) == len(set(items)) == 5
    assert [len(p["clusterArns"]) for p in pages] == [2, 2, 1]
    assert "nextToken" not in pages[-1]


def test_list_clusters_boto_paginator(ecs):
    names = [unique("c") for _ in range(3)]
    for n in names:
        ecs.create_cluster(clusterName=n)
    got = []
    for page in ecs.get_paginator("list_clusters").paginate(PaginationConfig={"PageSize": 1}):
        got += page["clusterArns"]
    assert sorted(got) == sorted(arn(f"cluster/{n}") for n in names)


def _forged_token(ecs):
    for n in range(3):
        ecs.create_cluster(clusterName=unique("c"))
    tok = ecs.list_clusters(maxResults=1)["nextToken"]
    return tok


@pytest.mark.parametrize("kind", ["garbage", "forged-position", "flipped-mac", "empty-ish"])
def test_list_clusters_bad_next_token(ecs, kind):
    tok = _forged_token(ecs)
    if kind == "garbage":
        bad = "this-is-not-a-token"
    elif kind == "forged-position":
        # Replace whatever the token encodes before its last '.' by another value.
        head, _, tail = tok.rpartition(".")
        forged = base64.b64encode(b"ecs/000000000000/us-east-1/cluster/zzzz").decode()
        bad = f"{forged}.{tail}" if head else forged + tok
    elif kind == "flipped-mac":
        bad = tok[:-1] + ("0" if tok[-1] != "0" else "1")
    else:
        bad = "."
    assert bad != tok
    with raises_code("InvalidParameterException"):
        ecs.list_clusters(nextToken=bad)


def test_update_cluster_settings_container_insights(ecs):
    name = unique("c")
    ecs.create_cluster(clusterName=name)
    out = ecs.update_cluster_settings(
        cluster=name, settings=[{"name": "containerInsights", "value": "enabled"}])["cluster"]
    assert {"name": "containerInsights", "value": "enabled"} in out["settings"]
    c = ecs.describe_clusters(clusters=[name], include=["SETTINGS"])["clusters"][0]
    assert {"name": "containerInsights", "value": "enabled"} in c["settings"]

    out = ecs.update_cluster(cluster=name,
                             settings=[{"name": "containerInsights", "value": "disabled"}])
    assert {"name": "containerInsights", "value": "disabled"} in out["cluster"]["settings"]
    c = ecs.describe_clusters(clusters=[name], include=["SETTINGS"])["clusters"][0]
    ci = [s for s in c["settings"] if s["name"] == "containerInsights"]
    assert ci == [{"name": "containerInsights", "value": "disabled"}]


def test_update_cluster_configuration(ecs):
    name = unique("c")
    ecs.create_cluster(clusterName=name)
    cfg = {"executeCommandConfiguration": {"logging": "OVERRIDE", "logConfiguration": {
        "cloudWatchLogGroupName": "exec-logs", "cloudWatchEncryptionEnabled": False}}}
    out = ecs.update_cluster(cluster=name, configuration=cfg)["cluster"]
    assert out["configuration"] == cfg
    c = ecs.describe_clusters(clusters=[name], include=["CONFIGURATIONS"])["clusters"][0]
    assert c["configuration"] == cfg


@pytest.mark.parametrize("settings", [
    [{"name": "containerInsights", "value": "sometimes"}],
    [{"name": "notASetting", "value": "enabled"}],
])
def test_update_cluster_settings_invalid(ecs, settings):
    name = unique("c")
    ecs.create_cluster(clusterName=name)
    with raises_code("InvalidParameterException"):
        ecs.update_cluster_settings(cluster=name, settings=settings)


def test_delete_cluster(ecs):
    name = unique("c")
    carn = ecs.create_cluster(clusterName=name)["cluster"]["clusterArn"]
    out = ecs.delete_cluster(cluster=name)["cluster"]
    assert out["status"] == "INACTIVE"
    assert out["clusterArn"] == carn
    assert carn not in ecs.list_clusters()["clusterArns"]
    d = ecs.describe_clusters(clusters=[name])
    assert d["failures"] == []
    assert d["clusters"][0]["status"] == "INACTIVE"
    assert d["clusters"][0]["clusterArn"] == carn


def test_inactive_cluster_rejects_operations(ecs):
    name = unique("c")
    ecs.create_cluster(clusterName=name)
    ecs.delete_cluster(cluster=name)
    td = register_simple_taskdef(ecs)
    with raises_code("ClusterNotFoundException"):
        ecs.run_task(cluster=name, taskDefinition=td["taskDefinitionArn"])
    with raises_code("ClusterNotFoundException"):
        register_instance(ecs, name)


def test_recreate_deleted_cluster(ecs):
    name = unique("c")
    ecs.create_cluster(clusterName=name)
    ecs.delete_cluster(cluster=name)
    c = ecs.create_cluster(clusterName=name)["cluster"]
    assert c["status"] == "ACTIVE"
    assert arn(f"cluster/{name}") in ecs.list_clusters()["clusterArns"]


def test_delete_cluster_with_registered_instance_is_refused(ecs):
    name = unique("c")
    ecs.create_cluster(clusterName=name)
    ci = register_instance(ecs, name)
    with raises_code("ClusterContainsContainerInstancesException"):
        ecs.delete_cluster(cluster=name)
    assert ecs.describe_clusters(clusters=[name])["clusters"][0]["status"] == "ACTIVE"
    ecs.deregister_container_instance(cluster=name, containerInstance=ci["containerInstanceArn"])
    assert ecs.delete_cluster(cluster=name)["cluster"]["status"] == "INACTIVE"


def test_delete_cluster_with_active_tasks_is_refused(ecs):
    name = unique("c")
    ecs.create_cluster(clusterName=name)
    ci = register_instance(ecs, name)
    td = register_simple_taskdef(ecs)
    task = ecs.run_task(cluster=name, taskDefinition=td["taskDefinitionArn"])["tasks"][0]
    report_task(ecs, name, task, "RUNNING")
    # The instance goes away (forced) but its task is still alive.
    ecs.deregister_container_instance(cluster=name, containerInstance=ci["containerInstanceArn"],
                                      force=True)
    with raises_code("ClusterContainsTasksException"):
        ecs.delete_cluster(cluster=name)
    report_task(ecs, name, task, "STOPPED")
    assert ecs.delete_cluster(cluster=name)["cluster"]["status"] == "INACTIVE"


def test_delete_cluster_with_pending_task_is_refused(ecs):
    name = unique("c")
    ecs.create_cluster(clusterName=name)
    ci = register_instance(ecs, name)
    td = register_simple_taskdef(ecs)
    task = ecs.run_task(cluster=name, taskDefinition=td["taskDefinitionArn"])["tasks"][0]
    assert task["lastStatus"] == "PENDING"
    ecs.deregister_container_instance(cluster=name, containerInstance=ci["containerInstanceArn"],
                                      force=True)
    with raises_code("ClusterContainsTasksException"):
        ecs.delete_cluster(cluster=name)


def test_put_cluster_capacity_providers_fargate(ecs):
    name = unique("c")
    ecs.create_cluster(clusterName=name)
    strategy = [{"capacityProvider": "FARGATE", "weight": 1, "base": 1},
                {"capacityProvider": "FARGATE_SPOT", "weight": 4, "base": 0}]
    out = ecs.put_cluster_capacity_providers(
        cluster=name, capacityProviders=["FARGATE", "FARGATE_SPOT"],
        defaultCapacityProviderStrategy=strategy)["cluster"]
    assert sorted(out["capacityProviders"]) == ["FARGATE", "FARGATE_SPOT"]
    assert out["defaultCapacityProviderStrategy"] == strategy
    c = ecs.describe_clusters(clusters=[name])["clusters"][0]
    assert sorted(c["capacityProviders"]) == ["FARGATE", "FARGATE_SPOT"]
    assert c["defaultCapacityProviderStrategy"] == strategy

    # Clearing them works too.
    out = ecs.put_cluster_capacity_providers(cluster=name, capacityProviders=[],
                                             defaultCapacityProviderStrategy=[])["cluster"]
    assert out["capacityProviders"] == []
    assert out["defaultCapacityProviderStrategy"] == []


def test_create_cluster_with_capacity_providers(ecs):
    name = unique("c")
    c = ecs.create_cluster(clusterName=name, capacityProviders=["FARGATE"],
                           defaultCapacityProviderStrategy=[
                               {"capacityProvider": "FARGATE", "weight": 1}])["cluster"]
    assert c["capacityProviders"] == ["FARGATE"]
    assert c["defaultCapacityProviderStrategy"][0]["capacityProvider"] == "FARGATE"


def test_put_cluster_capacity_providers_invalid(ecs):
    name = unique("c")
    ecs.create_cluster(clusterName=name)
    with raises_code("InvalidParameterException"):
        ecs.put_cluster_capacity_providers(cluster=name, capacityProviders=["no-such-provider"],
                                           defaultCapacityProviderStrategy=[])
    # A strategy naming a provider that is not associated with the cluster.
    with raises_code("InvalidParameterException"):
        ecs.put_cluster_capacity_providers(
            cluster=name, capacityProviders=["FARGATE"],
            defaultCapacityProviderStrategy=[{"capacityProvider": "FARGATE_SPOT", "weight": 1}])


UNKNOWN_CLUSTER_CALLS = [
    ("delete_cluster", lambda c: dict(cluster=c)),
    ("update_cluster_settings", lambda c: dict(cluster=c, settings=[
        {"name": "containerInsights", "value": "enabled"}])),
    ("update_cluster", lambda c: dict(cluster=c, settings=[
        {"name": "containerInsights", "value": "enabled"}])),
    ("put_cluster_capacity_providers", lambda c: dict(
        cluster=c, capacityProviders=[], defaultCapacityProviderStrategy=[])),
    ("list_tasks", lambda c: dict(cluster=c)),
    ("list_container_instances", lambda c: dict(cluster=c)),
    ("describe_tasks", lambda c: dict(cluster=c, tasks=["0123456789abcdef0123456789abcdef"])),
    ("describe_container_instances", lambda c: dict(
        cluster=c, containerInstances=["0123456789abcdef0123456789abcdef"])),
    ("run_task", lambda c: dict(cluster=c, taskDefinition="whatever:1")),
    ("stop_task", lambda c: dict(cluster=c, task="0123456789abcdef0123456789abcdef")),
    ("register_container_instance", lambda c: dict(cluster=c)),
    ("list_attributes", lambda c: dict(cluster=c, targetType="container-instance")),
    ("update_container_instances_state", lambda c: dict(
        cluster=c, containerInstances=["0123456789abcdef0123456789abcdef"], status="DRAINING")),
    ("deregister_container_instance", lambda c: dict(
        cluster=c, containerInstance="0123456789abcdef0123456789abcdef")),
    ("get_task_protection", lambda c: dict(cluster=c)),
]


@pytest.mark.parametrize("op,args", UNKNOWN_CLUSTER_CALLS, ids=[c[0] for c in UNKNOWN_CLUSTER_CALLS])
def test_unknown_cluster_gives_cluster_not_found(ecs, op, args):
    with raises_code("ClusterNotFoundException"):
        getattr(ecs, op)(**args(unique("missing")))


def test_unknown_cluster_by_arn_gives_cluster_not_found(ecs):
    with raises_code("ClusterNotFoundException"):
        ecs.list_tasks(cluster=arn(f"cluster/{unique('missing')}"))


@pytest.mark.parametrize("n", [0, 101, -1])
def test_list_clusters_max_results_bounds(ecs, n):
    with raises_code("InvalidParameterException"):
        ecs.list_clusters(maxResults=n)


def test_describe_too_many_clusters(ecs):
    with raises_code("InvalidParameterException"):
        ecs.describe_clusters(clusters=[f"c{i}" for i in range(101)])


def test_cluster_tags_with_unicode_round_trip(ecs):
    name = unique("uni")
    tags = [{"key": "owner", "value": "Zoë ✓ 東京"}, {"key": "ключ", "value": "значение"}]
    ecs.create_cluster(clusterName=name, tags=tags)
    got = ecs.describe_clusters(clusters=[name], include=["TAGS"])["clusters"][0]["tags"]
    assert sorted(got, key=lambda t: t["key"]) == sorted(tags, key=lambda t: t["key"])
