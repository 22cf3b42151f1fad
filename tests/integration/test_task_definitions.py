"""Task definitions: registration (the seed via the aws CLI), normalisation,
revisions, describe/list/families, deregister, delete, validation, and that
every field round-trips."""
import copy

import pytest

from ecs_helpers import arn, paginate, raises_code, register_simple_taskdef, unique


def _subset(expected, actual, path="$"):
    """Every key/element of expected is present and equal in actual (actual may add
    defaults such as protocol or empty lists)."""
    if isinstance(expected, dict):
        assert isinstance(actual, dict), f"{path}: expected object, got {actual!r}"
        for k, v in expected.items():
            assert k in actual, f"{path}.{k} missing from response (got keys {sorted(actual)})"
            _subset(v, actual[k], f"{path}.{k}")
    elif isinstance(expected, list):
        assert isinstance(actual, list), f"{path}: expected list, got {actual!r}"
        assert len(expected) == len(actual), f"{path}: {expected!r} != {actual!r}"
        for i, (e, a) in enumerate(zip(expected, actual)):
            _subset(e, a, f"{path}[{i}]")
    else:
        assert expected == actual, f"{path}: expected {expected!r}, got {actual!r}"


def _container(name="app", **kw):
    c = {"name": name, "image": "public.ecr.aws/docker/library/busybox:latest", "memory": 128,
         "essential": True}
    c.update(kw)
    return c


# --- the seed, through the aws CLI ---------------------------------------------


def test_register_seed_scorekeep_with_cli(server, seed_taskdef_path):
    out = server.aws("register-task-definition", "--cli-input-json",
                     f"file://{seed_taskdef_path}")
    td = out["taskDefinition"]
    assert td["family"] == "scorekeep"
    assert td["revision"] == 1
    assert td["taskDefinitionArn"] == arn("task-definition/scorekeep:1")
    assert td["status"] == "ACTIVE"
    assert td["cpu"] == "1024", "task cpu '1 vCpu' must be normalised to units"
    assert td["memory"] == "2048", "task memory '2 gb' must be normalised to MiB"
    assert td["networkMode"] == "awsvpc"
    assert {"EC2", "FARGATE"} <= set(td["compatibilities"]), \
        "an awsvpc definition with valid Fargate sizes validates for both EC2 and FARGATE"
    assert td["requiresCompatibilities"] == ["FARGATE"]
    assert td["registeredBy"] == "arn:aws:iam::000000000000:root"
    assert [c["name"] for c in td["containerDefinitions"]] == ["scorekeep-frontend",
                                                              "scorekeep-api"]
    names = {a["name"] for a in td["requiresAttributes"]}
    assert "com.amazonaws.ecs.capability.logging-driver.awslogs" in names
    assert "ecs.capability.task-eni" in names
    assert "ecs.capability.execution-role-awslogs" in names
    assert "com.amazonaws.ecs.capability.task-iam-role" in names
    fe = td["containerDefinitions"][0]
    assert fe["essential"] is True  # defaults to true
    assert fe["portMappings"][0]["containerPort"] == 8080
    # awsvpc: hostPort defaults to the containerPort
    assert fe["portMappings"][0].get("hostPort", 8080) == 8080
    assert fe["logConfiguration"]["options"]["awslogs-stream-prefix"] == "scorekeep/frontend"
    api = td["containerDefinitions"][1]
    assert api["environment"] == [{"name": "xx", "value": "xx"}]
    assert "registeredAt" in td

    # Describe through the CLI by family, family:revision and ARN.
    for ref in ("scorekeep", "scorekeep:1", td["taskDefinitionArn"]):
        d = server.aws("describe-task-definition", "--task-definition", ref)["taskDefinition"]
        assert d["taskDefinitionArn"] == td["taskDefinitionArn"]
        assert d["cpu"] == "1024" and d["memory"] == "2048"


@pytest.mark.parametrize("cpu,memory,want_cpu,want_mem", [
    ("256", "512", "256", "512"),
    (".25 vcpu", "0.5GB", "256", "512"),
    ("2 vCPU", "4 GB", "2048", "4096"),
    ("1024", "3072", "1024", "3072"),
    ("4 vcpu", "30 GB", "4096", "30720"),
])
def test_fargate_cpu_memory_normalisation(ecs, cpu, memory, want_cpu, want_mem):
    td = ecs.register_task_definition(
        family=unique("fg"), requiresCompatibilities=["FARGATE"], networkMode="awsvpc",
        cpu=cpu, memory=memory,
        containerDefinitions=[{"name": "app", "image": "busybox"}])["taskDefinition"]
    assert (td["cpu"], td["memory"]) == (want_cpu, want_mem)
    assert "FARGATE" in td["compatibilities"]


def test_ec2_definition_compatibilities(ecs):
    td = register_simple_taskdef(ecs)
    assert "EC2" in td["compatibilities"]
    assert "FARGATE" not in td["compatibilities"], \
        "a bridge-mode definition without task cpu/memory is not Fargate-compatible"
    assert td.get("networkMode", "bridge") == "bridge"


# --- revisions -------------------------------------------------------------------


def test_revisions_increase_monotonically(ecs):
    fam = unique("fam")
    revs = [register_simple_taskdef(ecs, family=fam)["revision"] for _ in range(3)]
    assert revs == [1, 2, 3]
    d = ecs.describe_task_definition(taskDefinition=fam)["taskDefinition"]
    assert d["revision"] == 3
    assert d["taskDefinitionArn"] == arn(f"task-definition/{fam}:3")


def test_describe_by_family_revision_and_arn(ecs):
    fam = unique("fam")
    a = register_simple_taskdef(ecs, family=fam, memory=100)
    b = register_simple_taskdef(ecs, family=fam, memory=200)
    assert ecs.describe_task_definition(taskDefinition=f"{fam}:1")["taskDefinition"][
        "containerDefinitions"][0]["memory"] == 100
    assert ecs.describe_task_definition(taskDefinition=a["taskDefinitionArn"])[
        "taskDefinition"]["revision"] == 1
    assert ecs.describe_task_definition(taskDefinition=fam)["taskDefinition"]["revision"] == 2
    assert ecs.describe_task_definition(taskDefinition=b["taskDefinitionArn"])[
        "taskDefinition"]["containerDefinitions"][0]["memory"] == 200


@pytest.mark.parametrize("ref", ["nosuchfamily-x", "nosuchfamily-x:1", "{fam}:99", "{fam}:0",
                                 "{fam}:abc"])
def test_describe_unknown_task_definition(ecs, ref):
    fam = unique("fam")
    register_simple_taskdef(ecs, family=fam)
    with raises_code("ClientException"):
        ecs.describe_task_definition(taskDefinition=ref.format(fam=fam))


def test_describe_task_definition_tags(ecs):
    fam = unique("fam")
    tags = [{"key": "app", "value": "web"}]
    register_simple_taskdef(ecs, family=fam, tags=tags)
    plain = ecs.describe_task_definition(taskDefinition=fam)
    assert not plain.get("tags")
    withtags = ecs.describe_task_definition(taskDefinition=fam, include=["TAGS"])
    assert withtags["tags"] == tags


# --- listing -----------------------------------------------------------------------


def test_list_task_definitions_family_prefix_sort_and_pagination(ecs):
    fam = unique("lst")
    other = unique("zzother")
    for _ in range(5):
        register_simple_taskdef(ecs, family=fam)
    register_simple_taskdef(ecs, family=other)
    want = [arn(f"task-definition/{fam}:{i}") for i in range(1, 6)]

    asc = ecs.list_task_definitions(familyPrefix=fam)["taskDefinitionArns"]
    assert asc == want
    desc = ecs.list_task_definitions(familyPrefix=fam, sort="DESC")["taskDefinitionArns"]
    assert desc == list(reversed(want))

    items, pages = paginate(ecs.list_task_definitions, "taskDefinitionArns", familyPrefix=fam,
                            maxResults=2)
    assert items == want
    assert [len(p["taskDefinitionArns"]) for p in pages] == [2, 2, 1]
    items, _ = paginate(ecs.list_task_definitions, "taskDefinitionArns", familyPrefix=fam,
                        maxResults=2, sort="DESC")
    assert items == list(reversed(want))

    everything = ecs.list_task_definitions()["taskDefinitionArns"]
    assert set(want) <= set(everything)
    assert arn(f"task-definition/{other}:1") in everything


def test_list_task_definitions_family_prefix_is_the_full_family(ecs):
    # ListTaskDefinitions' familyPrefix names a whole family ("limits the listed task
    # definitions to task definition revisions that belong to that family").
    fam = unique("exact")
    register_simple_taskdef(ecs, family=fam)
    register_simple_taskdef(ecs, family=fam + "x")
    out = ecs.list_task_definitions(familyPrefix=fam)["taskDefinitionArns"]
    assert out == [arn(f"task-definition/{fam}:1")]


def test_list_task_definitions_order_is_family_then_revision(ecs):
    # Fresh server: only these exist. ASC = lexicographic family, then numeric revision.
    for fam in ("abc", "abc-x", "abc", "b"):
        register_simple_taskdef(ecs, family=fam)
    for _ in range(9):
        register_simple_taskdef(ecs, family="b")
    want = ([arn("task-definition/abc:1"), arn("task-definition/abc:2"),
             arn("task-definition/abc-x:1")] + [arn(f"task-definition/b:{i}") for i in range(1, 11)])
    assert ecs.list_task_definitions()["taskDefinitionArns"] == want
    assert ecs.list_task_definitions(sort="DESC")["taskDefinitionArns"] == list(reversed(want))
    items, _ = paginate(ecs.list_task_definitions, "taskDefinitionArns", maxResults=3)
    assert items == want


def test_list_task_definitions_default_page_size(ecs):
    fam = unique("many")
    for _ in range(120):
        register_simple_taskdef(ecs, family=fam)
    first = ecs.list_task_definitions(familyPrefix=fam)
    assert len(first["taskDefinitionArns"]) == 100
    assert first["nextToken"]
    second = ecs.list_task_definitions(familyPrefix=fam, nextToken=first["nextToken"])
    assert len(second["taskDefinitionArns"]) == 20
    assert "nextToken" not in second
    revs = [int(a.rsplit(":", 1)[1]) for a in first["taskDefinitionArns"] +
            second["taskDefinitionArns"]]
    assert revs == list(range(1, 121))


def test_list_task_definitions_status(ecs):
    fam = unique("st")
    for _ in range(3):
        register_simple_taskdef(ecs, family=fam)
    ecs.deregister_task_definition(taskDefinition=f"{fam}:2")
    active = ecs.list_task_definitions(familyPrefix=fam)["taskDefinitionArns"]
    assert active == [arn(f"task-definition/{fam}:1"), arn(f"task-definition/{fam}:3")]
    assert ecs.list_task_definitions(familyPrefix=fam, status="ACTIVE")[
        "taskDefinitionArns"] == active
    inactive = ecs.list_task_definitions(familyPrefix=fam, status="INACTIVE")["taskDefinitionArns"]
    assert inactive == [arn(f"task-definition/{fam}:2")]


def test_list_task_definition_families(ecs):
    base = unique("famz")
    a, b, c = base + "-a", base + "-b", base + "-c"
    register_simple_taskdef(ecs, family=a)             # all ACTIVE
    register_simple_taskdef(ecs, family=b)             # all INACTIVE
    ecs.deregister_task_definition(taskDefinition=f"{b}:1")
    register_simple_taskdef(ecs, family=c)             # mixed
    register_simple_taskdef(ecs, family=c)
    ecs.deregister_task_definition(taskDefinition=f"{c}:1")

    def fams(**kw):
        items, _ = paginate(ecs.list_task_definition_families, "families", familyPrefix=base, **kw)
        return sorted(items)

    raw_all = paginate(ecs.list_task_definition_families, "families", familyPrefix=base,
                       status="ALL")[0]
    assert raw_all == sorted(raw_all), "families are listed in lexicographic order"
    assert fams(status="ACTIVE") == [a, c]
    assert fams(status="INACTIVE") == [b]
    assert fams(status="ALL") == [a, b, c]
    assert fams() == [a, b, c], "the default lists ACTIVE and INACTIVE families"
    # familyPrefix is a real prefix here
    assert sorted(ecs.list_task_definition_families(familyPrefix=base + "-",
                                                    status="ACTIVE")["families"]) == \
        [a, c]
    items, pages = paginate(ecs.list_task_definition_families, "families", familyPrefix=base,
                            status="ALL", maxResults=1)
    assert sorted(items) == [a, b, c] and len(pages) == 3


# --- deregister / delete -------------------------------------------------------------


def test_deregister_task_definition(ecs):
    fam = unique("dereg")
    register_simple_taskdef(ecs, family=fam)
    register_simple_taskdef(ecs, family=fam)
    out = ecs.deregister_task_definition(taskDefinition=f"{fam}:2")["taskDefinition"]
    assert out["status"] == "INACTIVE"
    assert out["revision"] == 2
    assert "deregisteredAt" in out
    # The family now resolves to the latest ACTIVE revision.
    d = ecs.describe_task_definition(taskDefinition=fam)["taskDefinition"]
    assert d["revision"] == 1 and d["status"] == "ACTIVE"
    # The inactive revision is still describable by revision.
    d2 = ecs.describe_task_definition(taskDefinition=f"{fam}:2")["taskDefinition"]
    assert d2["status"] == "INACTIVE"
    # A new registration continues the numbering.
    assert register_simple_taskdef(ecs, family=fam)["revision"] == 3


def test_deregister_needs_a_revision(ecs):
    fam = unique("dereg")
    register_simple_taskdef(ecs, family=fam)
    with raises_code("ClientException", "InvalidParameterException"):
        ecs.deregister_task_definition(taskDefinition=fam)
    with raises_code("ClientException", "InvalidParameterException"):
        ecs.deregister_task_definition(taskDefinition=f"{fam}:7")


def test_describe_family_with_only_inactive_revisions(ecs):
    fam = unique("gone")
    register_simple_taskdef(ecs, family=fam)
    ecs.deregister_task_definition(taskDefinition=f"{fam}:1")
    with raises_code("ClientException"):
        ecs.describe_task_definition(taskDefinition=fam)


def test_delete_task_definitions(server, ecs):
    # DeleteTaskDefinitions is newer than botocore 1.29, so it goes out as a raw signed call.
    fam = unique("del")
    for _ in range(3):
        register_simple_taskdef(ecs, family=fam)
    ecs.deregister_task_definition(taskDefinition=f"{fam}:2")
    out = server.raw_ok("DeleteTaskDefinitions", {
        "taskDefinitions": [f"{fam}:1", f"{fam}:2"]})
    assert [t["taskDefinitionArn"] for t in out["taskDefinitions"]] == [
        arn(f"task-definition/{fam}:2")]
    assert out["taskDefinitions"][0]["status"] == "DELETE_IN_PROGRESS"
    assert len(out["failures"]) == 1
    assert out["failures"][0]["arn"] == arn(f"task-definition/{fam}:1")
    assert out["failures"][0]["reason"]
    # Revision 1 is untouched.
    assert ecs.describe_task_definition(taskDefinition=f"{fam}:1")["taskDefinition"][
        "status"] == "ACTIVE"
    # Revision 2 is gone from the INACTIVE listing or shows as DELETE_IN_PROGRESS.
    inactive = ecs.list_task_definitions(familyPrefix=fam, status="INACTIVE")["taskDefinitionArns"]
    assert arn(f"task-definition/{fam}:2") not in inactive


def test_revision_numbers_are_never_reused_after_delete(server, ecs):
    fam = unique("reuse")
    register_simple_taskdef(ecs, family=fam)
    register_simple_taskdef(ecs, family=fam)
    ecs.deregister_task_definition(taskDefinition=f"{fam}:2")
    server.raw_ok("DeleteTaskDefinitions", {"taskDefinitions": [f"{fam}:2"]})
    assert register_simple_taskdef(ecs, family=fam)["revision"] == 3
    # Even when every revision of the family is deleted.
    fam2 = unique("reuse")
    register_simple_taskdef(ecs, family=fam2)
    ecs.deregister_task_definition(taskDefinition=f"{fam2}:1")
    server.raw_ok("DeleteTaskDefinitions", {"taskDefinitions": [f"{fam2}:1"]})
    assert register_simple_taskdef(ecs, family=fam2)["revision"] == 2


def test_delete_task_definitions_unknown(server):
    out = server.raw_ok("DeleteTaskDefinitions", {"taskDefinitions": ["nope-nope:1"]})
    assert out["taskDefinitions"] == []
    assert len(out["failures"]) == 1


# --- validation ----------------------------------------------------------------------


def _base():
    return {"family": unique("v"), "containerDefinitions": [_container()]}


def _fargate(**kw):
    d = {"family": unique("v"), "requiresCompatibilities": ["FARGATE"], "networkMode": "awsvpc",
         "cpu": "256", "memory": "512",
         "containerDefinitions": [{"name": "app", "image": "busybox", "essential": True}]}
    d.update(kw)
    return d


def _case_no_containers(d):
    d["containerDefinitions"] = []


def _case_eleven(d):
    d["containerDefinitions"] = [_container(f"c{i}") for i in range(11)]


def _case_dup_names(d):
    d["containerDefinitions"] = [_container("same"), _container("same")]


def _case_no_essential(d):
    d["containerDefinitions"] = [_container("a", essential=False),
                                 _container("b", essential=False)]


def _case_no_memory(d):
    c = _container()
    del c["memory"]
    d["containerDefinitions"] = [c]


def _case_reservation_over_memory(d):
    d["containerDefinitions"] = [_container(memory=128, memoryReservation=256)]


def _case_reservation_equal_memory(d):
    d["containerDefinitions"] = [_container(memory=128, memoryReservation=128)]


def _case_tiny_memory(d):
    d["containerDefinitions"] = [_container(memory=4)]


def _case_container_memory_over_task(d):
    d["memory"] = "256"
    d["containerDefinitions"] = [_container(memory=512)]


def _case_container_cpu_over_task(d):
    d["cpu"] = "256"
    d["containerDefinitions"] = [_container(cpu=512)]


def _case_bad_cpu_string(d):
    d["cpu"] = "lots"


def _case_bad_memory_string(d):
    d["memory"] = "2 parsecs"


def _case_missing_image(d):
    c = _container()
    del c["image"]
    d["containerDefinitions"] = [c]


def _case_bad_container_name(d):
    d["containerDefinitions"] = [_container("has space")]


def _case_fargate_bridge(d):
    d.update(_fargate(networkMode="bridge"))


def _case_fargate_default_network(d):
    f = _fargate()
    del f["networkMode"]
    d.update(f)


def _case_fargate_bad_pair(d):
    d.update(_fargate(cpu="256", memory="4096"))


def _case_fargate_bad_cpu(d):
    d.update(_fargate(cpu="1000", memory="2048"))


def _case_fargate_no_cpu(d):
    f = _fargate()
    del f["cpu"]
    d.update(f)


def _case_awsvpc_host_port(d):
    d["networkMode"] = "awsvpc"
    d["containerDefinitions"] = [_container(portMappings=[{"containerPort": 80,
                                                           "hostPort": 8080}])]


def _case_host_host_port(d):
    d["networkMode"] = "host"
    d["containerDefinitions"] = [_container(portMappings=[{"containerPort": 80,
                                                           "hostPort": 81}])]


def _case_none_ports(d):
    d["networkMode"] = "none"
    d["containerDefinitions"] = [_container(portMappings=[{"containerPort": 80}])]


def _case_awsvpc_links(d):
    d["networkMode"] = "awsvpc"
    d["containerDefinitions"] = [_container("a", links=["b"]), _container("b", essential=False)]


def _case_depends_unknown(d):
    d["containerDefinitions"] = [_container(dependsOn=[{"containerName": "ghost",
                                                        "condition": "START"}])]


def _case_depends_cycle(d):
    d["containerDefinitions"] = [
        _container("a", dependsOn=[{"containerName": "b", "condition": "START"}]),
        _container("b", dependsOn=[{"containerName": "a", "condition": "START"}])]


def _case_depends_self(d):
    d["containerDefinitions"] = [
        _container("a", dependsOn=[{"containerName": "a", "condition": "START"}])]


def _case_depends_complete_on_essential(d):
    d["containerDefinitions"] = [
        _container("app", dependsOn=[{"containerName": "init", "condition": "COMPLETE"}]),
        _container("init", essential=True)]


def _case_depends_success_on_essential(d):
    d["containerDefinitions"] = [
        _container("app", dependsOn=[{"containerName": "init", "condition": "SUCCESS"}]),
        _container("init", essential=True)]


def _case_depends_healthy_without_check(d):
    d["containerDefinitions"] = [
        _container("app", dependsOn=[{"containerName": "db", "condition": "HEALTHY"}]),
        _container("db", essential=False)]


def _case_depends_bad_condition(d):
    d["containerDefinitions"] = [
        _container("app", dependsOn=[{"containerName": "db", "condition": "WHENEVER"}]),
        _container("db", essential=False)]


def _case_mount_unknown_volume(d):
    d["containerDefinitions"] = [_container(mountPoints=[{"sourceVolume": "nope",
                                                          "containerPath": "/x"}])]


def _case_volumes_from_unknown(d):
    d["containerDefinitions"] = [_container(volumesFrom=[{"sourceContainer": "nope"}])]


def _case_bad_capability(d):
    d["containerDefinitions"] = [_container(linuxParameters={
        "capabilities": {"add": ["NOT_A_CAPABILITY"]}})]


def _case_health_interval(d):
    d["containerDefinitions"] = [_container(healthCheck={"command": ["CMD", "true"],
                                                         "interval": 1})]


def _case_health_retries(d):
    d["containerDefinitions"] = [_container(healthCheck={"command": ["CMD", "true"],
                                                         "retries": 11})]


def _case_family(name):
    def f(d):
        d["family"] = name
    return f


def _case_bad_volume_name(d):
    d["volumes"] = [{"name": "bad volume!"}]


def _case_relative_host_path(d):
    d["volumes"] = [{"name": "v", "host": {"sourcePath": "relative/path"}}]


def _case_fargate_host_volume(d):
    d.update(_fargate(volumes=[{"name": "v", "host": {"sourcePath": "/srv"}}]))


def _case_fargate_awslogs_without_execution_role(d):
    f = _fargate()
    f["containerDefinitions"][0]["logConfiguration"] = {
        "logDriver": "awslogs", "options": {"awslogs-group": "g", "awslogs-region": "us-east-1",
                                            "awslogs-stream-prefix": "p"}}
    d.update(f)


def _case_placement_distinct_in_taskdef(d):
    d["placementConstraints"] = [{"type": "distinctInstance"}]


def _case_eleven_placement_constraints(d):
    d["placementConstraints"] = [{"type": "memberOf", "expression": f"attribute:a{i} exists"}
                                 for i in range(11)]


def _case_ephemeral_storage(d):
    d.update(_fargate(ephemeralStorage={"sizeInGiB": 201}))


def _case_bad_network_mode(d):
    d["networkMode"] = "overlay"


def _case_duplicate_volume(d):
    d["volumes"] = [{"name": "v"}, {"name": "v"}]


# Enum violations are caught by the model validation (InvalidParameterException, like the
# brief's launchType "BOAT"); semantic problems are ClientException.
ENUM = ("ClientException", "InvalidParameterException")

VALIDATION = [
    ("no-containers", _case_no_containers),
    ("eleven-containers", _case_eleven),
    ("duplicate-container-names", _case_dup_names),
    ("no-essential-container", _case_no_essential),
    ("ec2-without-any-memory", _case_no_memory),
    ("memoryReservation-over-memory", _case_reservation_over_memory),
    ("memoryReservation-equals-memory", _case_reservation_equal_memory),
    ("container-memory-below-6MiB", _case_tiny_memory),
    ("container-memory-over-task-memory", _case_container_memory_over_task),
    ("container-cpu-over-task-cpu", _case_container_cpu_over_task),
    ("bad-task-cpu-string", _case_bad_cpu_string),
    ("bad-task-memory-string", _case_bad_memory_string),
    ("missing-image", _case_missing_image),
    ("bad-container-name", _case_bad_container_name),
    ("fargate-bridge", _case_fargate_bridge),
    ("fargate-default-network-mode", _case_fargate_default_network),
    ("fargate-256-4096", _case_fargate_bad_pair),
    ("fargate-cpu-1000", _case_fargate_bad_cpu),
    ("fargate-without-task-cpu", _case_fargate_no_cpu),
    ("awsvpc-hostPort-differs", _case_awsvpc_host_port),
    ("host-hostPort-differs", _case_host_host_port),
    ("none-with-portMappings", _case_none_ports),
    ("awsvpc-with-links", _case_awsvpc_links),
    ("dependsOn-unknown-container", _case_depends_unknown),
    ("dependsOn-cycle", _case_depends_cycle),
    ("dependsOn-self", _case_depends_self),
    ("dependsOn-COMPLETE-on-essential", _case_depends_complete_on_essential),
    ("dependsOn-SUCCESS-on-essential", _case_depends_success_on_essential),
    ("dependsOn-HEALTHY-without-healthCheck", _case_depends_healthy_without_check),
    ("dependsOn-bad-condition", _case_depends_bad_condition, ENUM),
    ("mountPoint-unknown-volume", _case_mount_unknown_volume),
    ("volumesFrom-unknown-container", _case_volumes_from_unknown),
    ("duplicate-volume-names", _case_duplicate_volume),
    ("unknown-linux-capability", _case_bad_capability),
    ("healthCheck-interval-1s", _case_health_interval),
    ("healthCheck-retries-11", _case_health_retries),
    ("family-with-space", _case_family("bad family")),
    ("family-with-colon", _case_family("fam:1")),
    ("family-with-slash", _case_family("fam/x")),
    ("family-too-long", _case_family("f" * 256)),
    ("family-empty", _case_family("")),
    ("network-mode-overlay", _case_bad_network_mode, ENUM),
    ("volume-name-invalid", _case_bad_volume_name),
    ("host-sourcePath-relative", _case_relative_host_path),
    ("fargate-host-sourcePath", _case_fargate_host_volume),
    ("fargate-awslogs-without-executionRole", _case_fargate_awslogs_without_execution_role),
    ("taskdef-distinctInstance-constraint", _case_placement_distinct_in_taskdef, ENUM),
    ("eleven-placement-constraints", _case_eleven_placement_constraints),
    ("ephemeralStorage-201GiB", _case_ephemeral_storage),
]


@pytest.mark.parametrize("mutate,codes", [(v[1], v[2] if len(v) > 2 else ("ClientException",))
                                          for v in VALIDATION], ids=[v[0] for v in VALIDATION])
def test_register_task_definition_validation(ecs, mutate, codes):
    d = _base()
    mutate(d)
    with raises_code(*codes):
        ecs.register_task_definition(**d)


def test_rejected_registration_consumes_no_revision(ecs):
    fam = unique("norev")
    with raises_code("ClientException"):
        ecs.register_task_definition(family=fam, containerDefinitions=[
            _container(memory=128, memoryReservation=256)])
    assert register_simple_taskdef(ecs, family=fam)["revision"] == 1


def _ok_task_memory_only(d):
    d["memory"] = "512"
    del d["containerDefinitions"][0]["memory"]


def _ok_reservation_only(d):
    c = d["containerDefinitions"][0]
    del c["memory"]
    c["memoryReservation"] = 64


def _ok_host_equal_ports(d):
    d["networkMode"] = "host"
    d["containerDefinitions"][0]["portMappings"] = [{"containerPort": 80, "hostPort": 80}]


def _ok_awsvpc_no_host_port(d):
    d["networkMode"] = "awsvpc"
    d["containerDefinitions"][0]["portMappings"] = [{"containerPort": 80}]


def _ok_bridge_dynamic_port(d):
    d["containerDefinitions"][0]["portMappings"] = [{"containerPort": 80, "hostPort": 0}]


def _ok_complete_on_nonessential(d):
    d["containerDefinitions"] = [
        _container("app", dependsOn=[{"containerName": "init", "condition": "COMPLETE"}]),
        _container("init", essential=False)]


def _ok_healthy_with_check(d):
    d["containerDefinitions"] = [
        _container("app", dependsOn=[{"containerName": "db", "condition": "HEALTHY"}]),
        _container("db", healthCheck={"command": ["CMD", "true"]})]


def _ok_ten_containers(d):
    d["containerDefinitions"] = [_container(f"c{i}") for i in range(10)]


def _ok_family_255(d):
    d["family"] = "f" * 255


def _ok_fargate_512_4096(d):
    d.update(_fargate(cpu="512", memory="4096"))


VALID = [
    ("task-memory-only", _ok_task_memory_only),
    ("memoryReservation-only", _ok_reservation_only),
    ("host-mode-equal-ports", _ok_host_equal_ports),
    ("awsvpc-no-hostPort", _ok_awsvpc_no_host_port),
    ("bridge-dynamic-port", _ok_bridge_dynamic_port),
    ("dependsOn-COMPLETE-on-nonessential", _ok_complete_on_nonessential),
    ("dependsOn-HEALTHY-with-check", _ok_healthy_with_check),
    ("ten-containers", _ok_ten_containers),
    ("family-255", _ok_family_255),
    ("fargate-512-4096", _ok_fargate_512_4096),
]


@pytest.mark.parametrize("mutate", [v[1] for v in VALID], ids=[v[0] for v in VALID])
def test_register_task_definition_valid_variants(ecs, mutate):
    d = _base()
    mutate(d)
    td = ecs.register_task_definition(**d)["taskDefinition"]
    assert td["status"] == "ACTIVE" and td["revision"] == 1


def test_container_defaults(ecs):
    td = ecs.register_task_definition(family=unique("def"), containerDefinitions=[
        {"name": "app", "image": "busybox", "memory": 64,
         "healthCheck": {"command": ["CMD-SHELL", "true"]}}])["taskDefinition"]
    c = td["containerDefinitions"][0]
    assert c["essential"] is True
    hc = c["healthCheck"]
    assert (hc["interval"], hc["timeout"], hc["retries"]) == (30, 5, 3)
    names = {a["name"] for a in td["requiresAttributes"]}
    assert "ecs.capability.container-health-check" in names


# --- round trip ------------------------------------------------------------------------

FULL_VOLUMES = [
    {"name": "data", "host": {"sourcePath": "/srv/data"}},
    {"name": "scratch", "dockerVolumeConfiguration": {
        "scope": "task", "driver": "local", "driverOpts": {"type": "tmpfs", "device": "tmpfs"},
        "labels": {"purpose": "scratch"}}},
    {"name": "shared", "dockerVolumeConfiguration": {
        "scope": "shared", "autoprovision": True, "driver": "local"}},
    {"name": "anon"},
]

FULL_CONTAINERS = [
    {
        "name": "app",
        "image": "registry.example.com/team/app:1.2.3",
        "cpu": 256,
        "memory": 512,
        "memoryReservation": 256,
        "essential": True,
        "entryPoint": ["/bin/sh", "-c"],
        "command": ["exec /app --port 8080"],
        "workingDirectory": "/srv/app",
        "user": "1000:1000",
        "readonlyRootFilesystem": True,
        "privileged": False,
        "interactive": False,
        "pseudoTerminal": False,
        "stopTimeout": 60,
        "startTimeout": 90,
        "portMappings": [{"containerPort": 8080, "hostPort": 0, "protocol": "tcp"},
                         {"containerPort": 8125, "hostPort": 8125, "protocol": "udp"}],
        "environment": [{"name": "MODE", "value": "prod"}, {"name": "EMPTYISH", "value": " "}],
        "environmentFiles": [{"value": "arn:aws:s3:::bucket/app.env", "type": "s3"}],
        "secrets": [{"name": "DB_PASSWORD",
                     "valueFrom": "arn:aws:secretsmanager:us-east-1:000000000000:secret:db-AbCdEf"},
                    {"name": "API_KEY", "valueFrom": "arn:aws:ssm:us-east-1:000000000000:"
                                                     "parameter/api-key"}],
        "mountPoints": [{"sourceVolume": "data", "containerPath": "/data", "readOnly": False},
                        {"sourceVolume": "scratch", "containerPath": "/scratch",
                         "readOnly": False},
                        {"sourceVolume": "shared", "containerPath": "/shared", "readOnly": True}],
        "volumesFrom": [{"sourceContainer": "init", "readOnly": True}],
        "dependsOn": [{"containerName": "init", "condition": "SUCCESS"},
                      {"containerName": "sidecar", "condition": "HEALTHY"}],
        "healthCheck": {"command": ["CMD-SHELL", "curl -f http://localhost:8080/ || exit 1"],
                        "interval": 10, "timeout": 3, "retries": 4, "startPeriod": 20},
        "logConfiguration": {
            "logDriver": "awslogs",
            "options": {"awslogs-group": "app", "awslogs-region": "us-east-1",
                        "awslogs-stream-prefix": "app", "awslogs-create-group": "true"},
            "secretOptions": [{"name": "splunk-token",
                               "valueFrom": "arn:aws:ssm:us-east-1:000000000000:parameter/tok"}]},
        "linuxParameters": {
            "capabilities": {"add": ["NET_ADMIN", "SYS_PTRACE"], "drop": ["MKNOD"]},
            "initProcessEnabled": True,
            "sharedMemorySize": 128,
            "tmpfs": [{"containerPath": "/run", "size": 64, "mountOptions": ["rw", "noexec"]}],
            "devices": [{"hostPath": "/dev/fuse", "containerPath": "/dev/fuse",
                         "permissions": ["read", "write"]}],
            "maxSwap": 0,
            "swappiness": 10,
        },
        "ulimits": [{"name": "nofile", "softLimit": 1024, "hardLimit": 4096},
                    {"name": "core", "softLimit": 0, "hardLimit": 0}],
        "resourceRequirements": [{"type": "GPU", "value": "1"}],
        "dockerLabels": {"com.example.team": "infra", "com.example.tier": "backend"},
        "systemControls": [{"namespace": "net.core.somaxconn", "value": "1024"}],
        "extraHosts": [{"hostname": "db.local", "ipAddress": "10.0.0.5"}],
        "dnsServers": ["10.0.0.2"],
        "dnsSearchDomains": ["example.internal"],
        "hostname": "app-host",
        "links": ["sidecar:side"],
        "disableNetworking": False,
    },
    {
        "name": "init",
        "image": "busybox:1.36",
        "memory": 64,
        "essential": False,
        "command": ["sh", "-c", "echo init && exit 0"],
    },
    {
        "name": "sidecar",
        "image": "busybox:1.36",
        "memory": 64,
        "essential": True,
        "healthCheck": {"command": ["CMD", "true"], "interval": 5, "timeout": 2, "retries": 1,
                        "startPeriod": 0},
    },
]

FULL_TASK = {
    "networkMode": "bridge",
    "taskRoleArn": "arn:aws:iam::000000000000:role/app-task",
    "executionRoleArn": "arn:aws:iam::000000000000:role/app-exec",
    "requiresCompatibilities": ["EC2"],
    "cpu": "512",
    "memory": "1024",
    "pidMode": "task",
    "ipcMode": "task",
    "placementConstraints": [{"type": "memberOf",
                              "expression": "attribute:ecs.instance-type =~ t3.*"}],
}


def test_every_field_round_trips(ecs):
    fam = unique("full")
    tags = [{"key": "k1", "value": "v1"}]
    reg = ecs.register_task_definition(family=fam, containerDefinitions=copy.deepcopy(
        FULL_CONTAINERS), volumes=copy.deepcopy(FULL_VOLUMES), tags=tags,
        **copy.deepcopy(FULL_TASK))["taskDefinition"]
    out = ecs.describe_task_definition(taskDefinition=f"{fam}:1", include=["TAGS"])
    td = out["taskDefinition"]
    assert out["tags"] == tags
    for got in (reg, td):
        _subset(FULL_CONTAINERS, got["containerDefinitions"], "$.containerDefinitions")
        _subset(FULL_VOLUMES, got["volumes"], "$.volumes")
        for k, v in FULL_TASK.items():
            assert got[k] == v, (k, got.get(k))
    names = {a["name"] for a in td["requiresAttributes"]}
    assert "com.amazonaws.ecs.capability.logging-driver.awslogs" in names
    assert "ecs.capability.container-health-check" in names
    assert "com.amazonaws.ecs.capability.task-iam-role" in names


def test_round_trip_through_cli(server, tmp_path):
    import json
    fam = unique("clirt")
    doc = dict(family=fam, containerDefinitions=FULL_CONTAINERS, volumes=FULL_VOLUMES,
               **FULL_TASK)
    p = tmp_path / "td.json"
    p.write_text(json.dumps(doc))
    server.aws("register-task-definition", "--cli-input-json", f"file://{p}")
    td = server.aws("describe-task-definition", "--task-definition", fam)["taskDefinition"]
    _subset(FULL_CONTAINERS, td["containerDefinitions"], "$.containerDefinitions")
    _subset(FULL_VOLUMES, td["volumes"], "$.volumes")


def test_describe_answer_has_only_the_model_members(ecs, raw):
    """The wire answers of Register/Describe/Deregister carry the model's
    top-level members and nothing of skiff's own record."""
    fam = unique("wire")
    reg = raw.__self__.raw_ok("RegisterTaskDefinition", {
        "family": fam, "containerDefinitions": [{"name": "a", "image": "busybox", "memory": 64}]})
    assert set(reg) <= {"taskDefinition", "tags"}, reg
    for body in ({"taskDefinition": fam}, {"taskDefinition": fam, "include": ["TAGS"]}):
        out = raw.__self__.raw_ok("DescribeTaskDefinition", body)
        assert set(out) <= {"taskDefinition", "tags"}, out
        assert out["taskDefinition"]["status"] == "ACTIVE"
    ecs.deregister_task_definition(taskDefinition=f"{fam}:1")
    out = raw.__self__.raw_ok("DescribeTaskDefinition", {"taskDefinition": f"{fam}:1"})
    assert set(out) <= {"taskDefinition", "tags"}, out
    assert out["taskDefinition"]["status"] == "INACTIVE"
    # The family has no ACTIVE revision left: describing by family alone fails.
    with raises_code("ClientException"):
        ecs.describe_task_definition(taskDefinition=fam)
