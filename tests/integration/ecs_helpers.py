"""Helpers shared by the integration tests: unique names, a fake node agent
(container-instance registration and task state reports), error assertions."""
import contextlib
import re
import time
import uuid

import pytest
from botocore.exceptions import ClientError

ACCOUNT = "000000000000"
REGION = "us-east-1"
HEX32 = re.compile(r"^[0-9a-f]{32}$")


def unique(prefix="t"):
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def arn(resource, region=REGION, account=ACCOUNT):
    return f"arn:aws:ecs:{region}:{account}:{resource}"


@contextlib.contextmanager
def raises_code(*codes):
    """Asserts the block raises a ClientError whose code is one of codes.
    Yields a holder whose .error is the parsed error dict afterwards."""
    holder = type("Holder", (), {})()
    with pytest.raises(ClientError) as ei:
        yield holder
    holder.error = ei.value.response["Error"]
    holder.response = ei.value.response
    code = holder.error.get("Code")
    assert code in codes, f"expected {codes}, got {code}: {holder.error.get('Message')}"


def error_code(exc):
    return exc.response["Error"]["Code"]


# --- resources ---------------------------------------------------------------


def resource(resources, name):
    for r in resources:
        if r["name"] == name:
            return r
    raise KeyError(name)


def remaining(ecs, cluster, instance_arn):
    ci = describe_instance(ecs, cluster, instance_arn)
    res = ci["remainingResources"]
    return {
        "CPU": resource(res, "CPU")["integerValue"],
        "MEMORY": resource(res, "MEMORY")["integerValue"],
        "PORTS": sorted(resource(res, "PORTS").get("stringSetValue", [])),
        "PORTS_UDP": sorted(resource(res, "PORTS_UDP").get("stringSetValue", [])),
    }


def describe_instance(ecs, cluster, instance_arn):
    out = ecs.describe_container_instances(cluster=cluster, containerInstances=[instance_arn])
    assert out["failures"] == [], out["failures"]
    assert len(out["containerInstances"]) == 1
    return out["containerInstances"][0]


# --- the fake agent ----------------------------------------------------------

DEFAULT_ATTRS = {
    "ecs.availability-zone": "us-east-1a",
    "ecs.os-type": "linux",
    "ecs.instance-type": "t3.medium",
    "ecs.cpu-architecture": "x86_64",
    "ecs.ami-id": "ami-0123456789abcdef0",
    "com.amazonaws.ecs.capability.logging-driver.awslogs": None,
    "com.amazonaws.ecs.capability.logging-driver.json-file": None,
    "com.amazonaws.ecs.capability.docker-remote-api.1.17": None,
    "com.amazonaws.ecs.capability.docker-remote-api.1.18": None,
    "com.amazonaws.ecs.capability.docker-remote-api.1.19": None,
    "com.amazonaws.ecs.capability.docker-remote-api.1.21": None,
    "com.amazonaws.ecs.capability.docker-remote-api.1.24": None,
    "com.amazonaws.ecs.capability.docker-remote-api.1.25": None,
    "com.amazonaws.ecs.capability.docker-remote-api.1.29": None,
    "com.amazonaws.ecs.capability.task-iam-role": None,
    "ecs.capability.task-eni": None,
    "ecs.capability.container-health-check": None,
    "ecs.capability.execution-role-awslogs": None,
    "ecs.capability.secrets.ssm.environment-variables": None,
    "ecs.capability.container-ordering": None,
}

VERSION_INFO = {
    "agentVersion": "1.70.0",
    "agentHash": "abcdef01",
    "dockerVersion": "DockerVersion: 20.10.21",
}


def register_instance(ecs, cluster, cpu=2048, memory=3000, ports=("22",), ports_udp=(),
                      az="us-east-1a", attributes=None, container_instance_arn=None, tags=None,
                      version_info=None):
    attrs = dict(DEFAULT_ATTRS)
    attrs["ecs.availability-zone"] = az
    if attributes:
        attrs.update(attributes)
    kw = dict(
        cluster=cluster,
        totalResources=[
            {"name": "CPU", "type": "INTEGER", "integerValue": cpu},
            {"name": "MEMORY", "type": "INTEGER", "integerValue": memory},
            {"name": "PORTS", "type": "STRINGSET", "stringSetValue": list(ports)},
            {"name": "PORTS_UDP", "type": "STRINGSET", "stringSetValue": list(ports_udp)},
        ],
        versionInfo=version_info or VERSION_INFO,
        attributes=[{"name": k, **({"value": v} if v is not None else {})}
                    for k, v in attrs.items()],
    )
    if container_instance_arn:
        kw["containerInstanceArn"] = container_instance_arn
    if tags:
        kw["tags"] = tags
    return ecs.register_container_instance(**kw)["containerInstance"]


def containers_of(task):
    return {c["name"]: c for c in task["containers"]}


def report_task(ecs, cluster, task, status, containers=None, reason=None, container_status=None,
                exit_code=None, **extra):
    """SubmitTaskStateChange as the agent would. containers: list of change dicts; by
    default every container of the task is reported with container_status (or status)."""
    task_arn = task if isinstance(task, str) else task["taskArn"]
    if containers is None and not isinstance(task, str):
        containers = []
        for c in task["containers"]:
            ch = {"containerName": c["name"], "runtimeId": uuid.uuid4().hex,
                  "status": container_status or status}
            if (container_status or status) == "STOPPED":
                ch["exitCode"] = 0 if exit_code is None else exit_code
            containers.append(ch)
    kw = dict(cluster=cluster, task=task_arn, status=status)
    if containers:
        kw["containers"] = containers
    if reason:
        kw["reason"] = reason
    kw.update(extra)
    return ecs.submit_task_state_change(**kw)


def describe_task(ecs, cluster, task_arn, include_tags=False):
    kw = dict(cluster=cluster, tasks=[task_arn])
    if include_tags:
        kw["include"] = ["TAGS"]
    out = ecs.describe_tasks(**kw)
    assert out["failures"] == [], out["failures"]
    assert len(out["tasks"]) == 1
    return out["tasks"][0]


def register_simple_taskdef(ecs, family=None, cpu=256, memory=512, host_port=None,
                            container_port=80, containers=None, **kw):
    """An EC2/bridge task definition with one essential container."""
    family = family or unique("fam")
    if containers is None:
        c = {"name": "web", "image": "public.ecr.aws/nginx/nginx:latest", "cpu": cpu,
             "memory": memory, "essential": True}
        if host_port is not None:
            c["portMappings"] = [{"containerPort": container_port, "hostPort": host_port,
                                  "protocol": "tcp"}]
        containers = [c]
    return ecs.register_task_definition(family=family, containerDefinitions=containers,
                                        **kw)["taskDefinition"]


def cluster_counts(ecs, cluster):
    c = ecs.describe_clusters(clusters=[cluster])["clusters"][0]
    return {k: c[k] for k in ("runningTasksCount", "pendingTasksCount",
                              "registeredContainerInstancesCount")}


def instance_counts(ecs, cluster, instance_arn):
    ci = describe_instance(ecs, cluster, instance_arn)
    return {"running": ci["runningTasksCount"], "pending": ci["pendingTasksCount"]}


def wait_for(pred, timeout=10.0, interval=0.05, what="condition"):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = pred()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def paginate(call, key, **kw):
    """Follows nextToken; returns (items, pages)."""
    items, pages = [], []
    token = None
    while True:
        args = dict(kw)
        if token:
            args["nextToken"] = token
        out = call(**args)
        pages.append(out)
        items.extend(out[key])
        token = out.get("nextToken")
        if not token:
            return items, pages
        assert len(pages) < 100, "pagination does not terminate"
