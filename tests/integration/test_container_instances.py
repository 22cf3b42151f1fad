"""Container instances registered the way the agent does it: Register/Describe/List
(with status and the cluster-query-language filter), re-registration, attributes,
DRAINING, deregistration, and DiscoverPollEndpoint."""
import pytest

from ecs_helpers import (HEX32, VERSION_INFO, arn, describe_instance, paginate, raises_code,
                         register_instance, register_simple_taskdef, remaining, report_task,
                         resource, unique)


@pytest.fixture
def cluster(ecs):
    name = unique("ci")
    ecs.create_cluster(clusterName=name)
    return name


def test_register_container_instance(ecs, cluster):
    ci = register_instance(ecs, cluster)
    a = ci["containerInstanceArn"]
    prefix = arn(f"container-instance/{cluster}/")
    assert a.startswith(prefix)
    assert HEX32.match(a[len(prefix):]), a
    assert ci["status"] == "ACTIVE"
    assert ci["agentConnected"] is True
    assert ci["ec2InstanceId"]
    assert ci["versionInfo"] == VERSION_INFO
    reg = ci["registeredResources"]
    assert resource(reg, "CPU")["integerValue"] == 2048
    assert resource(reg, "MEMORY")["integerValue"] == 3000
    assert resource(reg, "PORTS")["stringSetValue"] == ["22"]
    assert resource(reg, "PORTS_UDP").get("stringSetValue", []) == []
    rem = ci["remainingResources"]
    assert resource(rem, "CPU")["integerValue"] == 2048
    assert resource(rem, "MEMORY")["integerValue"] == 3000
    attrs = {x["name"]: x.get("value") for x in ci["attributes"]}
    assert attrs["ecs.availability-zone"] == "us-east-1a"
    assert attrs["ecs.os-type"] == "linux"
    assert "com.amazonaws.ecs.capability.logging-driver.awslogs" in attrs
    assert ci["runningTasksCount"] == 0 and ci["pendingTasksCount"] == 0
    c = ecs.describe_clusters(clusters=[cluster])["clusters"][0]
    assert c["registeredContainerInstancesCount"] == 1


def test_describe_container_instances(ecs, cluster):
    ci = register_instance(ecs, cluster)
    a = ci["containerInstanceArn"]
    short = a.rsplit("/", 1)[1]
    missing = "0" * 32
    out = ecs.describe_container_instances(cluster=cluster, containerInstances=[a, short, missing])
    assert [x["containerInstanceArn"] for x in out["containerInstances"]] == [a, a]
    assert len(out["failures"]) == 1
    assert out["failures"][0]["reason"] == "MISSING"
    assert out["failures"][0]["arn"].endswith(missing)


def test_list_container_instances_and_status_filter(ecs, cluster):
    a = register_instance(ecs, cluster)["containerInstanceArn"]
    b = register_instance(ecs, cluster)["containerInstanceArn"]
    assert sorted(ecs.list_container_instances(cluster=cluster)["containerInstanceArns"]) == \
        sorted([a, b])
    ecs.update_container_instances_state(cluster=cluster, containerInstances=[b],
                                         status="DRAINING")
    assert ecs.list_container_instances(cluster=cluster, status="ACTIVE")[
        "containerInstanceArns"] == [a]
    assert ecs.list_container_instances(cluster=cluster, status="DRAINING")[
        "containerInstanceArns"] == [b]
    # Without a status filter both ACTIVE and DRAINING instances are listed.
    assert sorted(ecs.list_container_instances(cluster=cluster)["containerInstanceArns"]) == \
        sorted([a, b])


def test_list_container_instances_pagination(ecs, cluster):
    arns = [register_instance(ecs, cluster)["containerInstanceArn"] for _ in range(5)]
    items, pages = paginate(ecs.list_container_instances, "containerInstanceArns",
                            cluster=cluster, maxResults=2)
    assert sorted(items) == sorted(arns)
    assert len(items) == 5
    assert [len(p["containerInstanceArns"]) for p in pages] == [2, 2, 1]
    with raises_code("InvalidParameterException"):
        ecs.list_container_instances(cluster=cluster, nextToken="garbage")


def test_reregister_keeps_arn(ecs, cluster):
    ci = register_instance(ecs, cluster)
    a = ci["containerInstanceArn"]
    again = register_instance(ecs, cluster, cpu=4096, memory=8000, container_instance_arn=a)
    assert again["containerInstanceArn"] == a
    assert again["status"] == "ACTIVE"
    assert resource(again["registeredResources"], "CPU")["integerValue"] == 4096
    assert ecs.list_container_instances(cluster=cluster)["containerInstanceArns"] == [a]
    d = describe_instance(ecs, cluster, a)
    assert resource(d["registeredResources"], "MEMORY")["integerValue"] == 8000
    assert d["registeredAt"] == ci["registeredAt"]


def test_reregister_keeps_reservations_of_live_tasks(ecs, cluster):
    ci = register_instance(ecs, cluster)
    a = ci["containerInstanceArn"]
    td = register_simple_taskdef(ecs, cpu=512, memory=1024, host_port=8080)
    ecs.run_task(cluster=cluster, taskDefinition=td["taskDefinitionArn"])
    register_instance(ecs, cluster, container_instance_arn=a)
    r = remaining(ecs, cluster, a)
    assert r["CPU"] == 2048 - 512
    assert r["MEMORY"] == 3000 - 1024
    assert "8080" in r["PORTS"]


def test_attributes_put_list_delete(ecs, cluster):
    a = register_instance(ecs, cluster)["containerInstanceArn"]
    b = register_instance(ecs, cluster)["containerInstanceArn"]
    ecs.put_attributes(cluster=cluster, attributes=[
        {"name": "stack", "value": "prod", "targetId": a},
        {"name": "stack", "value": "dev", "targetId": b},
        {"name": "gpu-ready", "targetId": a, "targetType": "container-instance"},
    ])
    out = ecs.list_attributes(cluster=cluster, targetType="container-instance",
                              attributeName="stack")["attributes"]
    assert sorted((x["targetId"], x["value"]) for x in out) == sorted([(a, "prod"), (b, "dev")])
    out = ecs.list_attributes(cluster=cluster, targetType="container-instance",
                              attributeName="stack", attributeValue="prod")["attributes"]
    assert [(x["targetId"], x["name"], x["value"]) for x in out] == [(a, "stack", "prod")]
    d = describe_instance(ecs, cluster, a)
    attrs = {x["name"]: x.get("value") for x in d["attributes"]}
    assert attrs["stack"] == "prod" and "gpu-ready" in attrs
    # Overwrite keeps one attribute of that name.
    ecs.put_attributes(cluster=cluster, attributes=[{"name": "stack", "value": "qa",
                                                     "targetId": a}])
    d = describe_instance(ecs, cluster, a)
    assert [x.get("value") for x in d["attributes"] if x["name"] == "stack"] == ["qa"]

    ecs.delete_attributes(cluster=cluster, attributes=[{"name": "stack", "targetId": a}])
    out = ecs.list_attributes(cluster=cluster, targetType="container-instance",
                              attributeName="stack")["attributes"]
    assert [(x["targetId"], x["value"]) for x in out] == [(b, "dev")]


def test_list_attributes_pagination(ecs, cluster):
    a = register_instance(ecs, cluster)["containerInstanceArn"]
    ecs.put_attributes(cluster=cluster, attributes=[
        {"name": f"custom-{i}", "value": str(i), "targetId": a} for i in range(5)])
    items, pages = paginate(ecs.list_attributes, "attributes", cluster=cluster,
                            targetType="container-instance", maxResults=2)
    names = [x["name"] for x in items]
    assert len(names) == len(set(names)), "an attribute was returned twice"
    assert {f"custom-{i}" for i in range(5)} <= set(names)
    assert all(len(p["attributes"]) <= 2 for p in pages)


def test_attribute_limit(ecs, cluster):
    a = register_instance(ecs, cluster)["containerInstanceArn"]
    ecs.put_attributes(cluster=cluster, attributes=[
        {"name": f"custom-{i}", "value": "x", "targetId": a} for i in range(10)])
    with raises_code("AttributeLimitExceededException"):
        ecs.put_attributes(cluster=cluster, attributes=[
            {"name": "custom-10", "value": "x", "targetId": a}])
    # Updating an existing one is still fine, and built-in ecs.* attributes do not count.
    ecs.put_attributes(cluster=cluster, attributes=[
        {"name": "custom-3", "value": "y", "targetId": a}])
    d = describe_instance(ecs, cluster, a)
    assert "custom-10" not in {x["name"] for x in d["attributes"]}


def test_attribute_unknown_target(ecs, cluster):
    register_instance(ecs, cluster)
    with raises_code("TargetNotFoundException"):
        ecs.put_attributes(cluster=cluster, attributes=[
            {"name": "x", "value": "y", "targetId": arn(f"container-instance/{cluster}/" +
                                                        "f" * 32)}])


@pytest.mark.parametrize("name,value", [("bad name", "v"), ("x" * 129, "v"), ("ok", "bad\tvalue"),
                                        ("ok", "v" * 129)])
def test_attribute_invalid_name_or_value(ecs, cluster, name, value):
    a = register_instance(ecs, cluster)["containerInstanceArn"]
    with raises_code("InvalidParameterException"):
        ecs.put_attributes(cluster=cluster, attributes=[{"name": name, "value": value,
                                                         "targetId": a}])


def test_update_container_instances_state_draining(ecs, cluster):
    a = register_instance(ecs, cluster)["containerInstanceArn"]
    out = ecs.update_container_instances_state(cluster=cluster, containerInstances=[a],
                                               status="DRAINING")
    assert out["failures"] == []
    assert out["containerInstances"][0]["status"] == "DRAINING"
    assert describe_instance(ecs, cluster, a)["status"] == "DRAINING"
    # No new tasks are placed on a draining instance.
    td = register_simple_taskdef(ecs)
    run = ecs.run_task(cluster=cluster, taskDefinition=td["taskDefinitionArn"])
    assert run["tasks"] == []
    assert run["failures"]
    out = ecs.update_container_instances_state(cluster=cluster, containerInstances=[a],
                                               status="ACTIVE")
    assert out["containerInstances"][0]["status"] == "ACTIVE"
    run = ecs.run_task(cluster=cluster, taskDefinition=td["taskDefinitionArn"])
    assert len(run["tasks"]) == 1


def test_update_container_instances_state_missing_instance(ecs, cluster):
    register_instance(ecs, cluster)
    out = ecs.update_container_instances_state(cluster=cluster, containerInstances=["f" * 32],
                                               status="DRAINING")
    assert out["containerInstances"] == []
    assert out["failures"][0]["reason"] == "MISSING"


def test_deregister_container_instance(ecs, cluster):
    a = register_instance(ecs, cluster)["containerInstanceArn"]
    out = ecs.deregister_container_instance(cluster=cluster, containerInstance=a)
    assert out["containerInstance"]["status"] == "INACTIVE"
    assert ecs.list_container_instances(cluster=cluster)["containerInstanceArns"] == []
    assert describe_instance(ecs, cluster, a)["status"] == "INACTIVE"
    c = ecs.describe_clusters(clusters=[cluster])["clusters"][0]
    assert c["registeredContainerInstancesCount"] == 0


def test_deregister_with_tasks_requires_force(ecs, cluster):
    a = register_instance(ecs, cluster)["containerInstanceArn"]
    td = register_simple_taskdef(ecs)
    task = ecs.run_task(cluster=cluster, taskDefinition=td["taskDefinitionArn"])["tasks"][0]
    report_task(ecs, cluster, task, "RUNNING")
    with raises_code("InvalidParameterException"):
        ecs.deregister_container_instance(cluster=cluster, containerInstance=a)
    assert describe_instance(ecs, cluster, a)["status"] == "ACTIVE"
    out = ecs.deregister_container_instance(cluster=cluster, containerInstance=a, force=True)
    assert out["containerInstance"]["status"] == "INACTIVE"


def test_deregister_unknown_instance(ecs, cluster):
    with raises_code("InvalidParameterException", "ClientException"):
        ecs.deregister_container_instance(cluster=cluster, containerInstance="a" * 32)


def test_register_more_than_ten_custom_attributes(ecs, cluster):
    with raises_code("AttributeLimitExceededException"):
        register_instance(ecs, cluster, attributes={f"custom-{i}": "x" for i in range(11)})


def test_container_instance_tags(ecs, cluster):
    ci = register_instance(ecs, cluster, tags=[{"key": "rack", "value": "r1"}])
    a = ci["containerInstanceArn"]
    d = ecs.describe_container_instances(cluster=cluster, containerInstances=[a],
                                         include=["TAGS"])["containerInstances"][0]
    assert d["tags"] == [{"key": "rack", "value": "r1"}]
    assert ecs.list_tags_for_resource(resourceArn=a)["tags"] == [{"key": "rack", "value": "r1"}]


# --- ListContainerInstances filter: the cluster query language ----------------------------


@pytest.fixture
def two_zones(ecs, cluster):
    a = register_instance(ecs, cluster, az="us-east-1a",
                          attributes={"ecs.instance-type": "t3.medium", "role": "web"})
    b = register_instance(ecs, cluster, az="us-east-1b",
                          attributes={"ecs.instance-type": "m5.large"})
    return cluster, a, b


FILTERS = [
    ("attribute:ecs.availability-zone == us-east-1a", "a"),
    ("attribute:ecs.availability-zone equals us-east-1b", "b"),
    ("attribute:ecs.availability-zone != us-east-1a", "b"),
    ("attribute:ecs.availability-zone in [us-east-1a, us-east-1b]", "ab"),
    ("attribute:ecs.availability-zone not_in [us-east-1a]", "b"),
    ("attribute:ecs.instance-type =~ t3.*", "a"),
    ("attribute:ecs.instance-type !~ t3.*", "b"),
    ("attribute:role exists", "a"),
    ("attribute:role !exists", "b"),
    ("attribute:ecs.instance-type == m5.large or attribute:role == web", "ab"),
    ("attribute:ecs.instance-type == m5.large and attribute:role == web", ""),
    ("not(attribute:ecs.availability-zone == us-east-1a)", "b"),
    ("!(attribute:ecs.availability-zone == us-east-1a) && attribute:ecs.os-type == linux", "b"),
    ("(attribute:role exists || attribute:ecs.instance-type == m5.large) && "
     "attribute:ecs.availability-zone == us-east-1b", "b"),
    ("runningTasksCount == 0", "ab"),
    ("runningTasksCount > 0", ""),
    ("agentConnected == true", "ab"),
    ("agentVersion >= 1.14.5", "ab"),
    ("agentVersion < 1.14.5", ""),
    ("registeredAt > 2020-01-01", "ab"),
    ("registeredAt < 2020-01-01", ""),
    ("attribute:ecs.availability-zone in ['us-east-1a', \"us-east-1b\"]", "ab"),
]


@pytest.mark.parametrize("expr,want", FILTERS, ids=[f[0] for f in FILTERS])
def test_list_container_instances_filter(ecs, two_zones, expr, want):
    cluster, a, b = two_zones
    by = {"a": a["containerInstanceArn"], "b": b["containerInstanceArn"]}
    out = ecs.list_container_instances(cluster=cluster, filter=expr)["containerInstanceArns"]
    assert sorted(out) == sorted(by[k] for k in want)


def test_list_container_instances_filter_ec2_instance_id(ecs, two_zones):
    cluster, a, b = two_zones
    expr = f"ec2InstanceId == {a['ec2InstanceId']}"
    out = ecs.list_container_instances(cluster=cluster, filter=expr)["containerInstanceArns"]
    assert out == [a["containerInstanceArn"]]
    expr = f"ec2InstanceId in ['{a['ec2InstanceId']}', '{b['ec2InstanceId']}']"
    out = ecs.list_container_instances(cluster=cluster, filter=expr)["containerInstanceArns"]
    assert sorted(out) == sorted([a["containerInstanceArn"], b["containerInstanceArn"]])


def test_list_container_instances_filter_task_group(ecs, two_zones):
    cluster, a, b = two_zones
    td = register_simple_taskdef(ecs)
    ecs.start_task(cluster=cluster, taskDefinition=td["taskDefinitionArn"],
                   containerInstances=[b["containerInstanceArn"]], group="database")
    out = ecs.list_container_instances(cluster=cluster, filter="task:group == database")
    assert out["containerInstanceArns"] == [b["containerInstanceArn"]]
    out = ecs.list_container_instances(cluster=cluster, filter="not(task:group == database)")
    assert out["containerInstanceArns"] == [a["containerInstanceArn"]]


@pytest.mark.parametrize("expr", [
    "attribute:ecs.availability-zone ==",
    "bogusSubject == 1",
    "attribute:x === y",
    "(attribute:x == y",
    "attribute:x in [a, b",
    "and and",
    "x" * 2001,
])
def test_list_container_instances_bad_filter(ecs, two_zones, expr):
    cluster, _, _ = two_zones
    with raises_code("InvalidParameterException"):
        ecs.list_container_instances(cluster=cluster, filter=expr)


# --- agent-facing --------------------------------------------------------------------------


def test_discover_poll_endpoint(ecs, cluster):
    a = register_instance(ecs, cluster)["containerInstanceArn"]
    out = ecs.discover_poll_endpoint(cluster=cluster, containerInstance=a)
    assert out["endpoint"].startswith(("http://", "https://", "ws://", "wss://")), out
    assert out["telemetryEndpoint"].startswith(("http://", "https://", "ws://", "wss://")), out
    # Without arguments too (the agent calls it before registering).
    out = ecs.discover_poll_endpoint()
    assert out["endpoint"]


def test_list_attributes_value_requires_name(ecs, cluster):
    register_instance(ecs, cluster)
    with raises_code("InvalidParameterException"):
        ecs.list_attributes(cluster=cluster, targetType="container-instance",
                            attributeValue="x")


def test_put_more_than_ten_attributes_in_one_call(ecs, cluster):
    a = register_instance(ecs, cluster)["containerInstanceArn"]
    with raises_code("AttributeLimitExceededException", "InvalidParameterException"):
        ecs.put_attributes(cluster=cluster, attributes=[
            {"name": f"c{i}", "value": "x", "targetId": a} for i in range(11)])
    d = describe_instance(ecs, cluster, a)
    assert not any(x["name"].startswith("c") and x["name"][1:].isdigit()
                   for x in d["attributes"]), "a rejected call must not apply anything"


def test_instance_of_another_cluster_is_missing(ecs, cluster):
    a = register_instance(ecs, cluster)["containerInstanceArn"]
    other = unique("other")
    ecs.create_cluster(clusterName=other)
    out = ecs.describe_container_instances(cluster=other, containerInstances=[a])
    assert out["containerInstances"] == []
    assert out["failures"][0]["reason"] == "MISSING"


def test_cli_pagination(server, ecs, cluster):
    arns = sorted(register_instance(ecs, cluster)["containerInstanceArn"] for _ in range(3))
    out = server.aws("list-container-instances", "--cluster", cluster, "--page-size", "1")
    assert sorted(out["containerInstanceArns"]) == arns
    out = server.aws("list-container-instances", "--cluster", cluster, "--max-items", "2")
    assert len(out["containerInstanceArns"]) == 2 and out.get("NextToken")
    rest = server.aws("list-container-instances", "--cluster", cluster, "--starting-token",
                      out["NextToken"])
    assert sorted(out["containerInstanceArns"] + rest["containerInstanceArns"]) == arns
