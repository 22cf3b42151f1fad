"""Node agent networking with real containers: none, host, bridge (static and
dynamic host ports, container-to-container through the host), awsvpc (task
netns, ENI attachment, shared localhost), FARGATE, and the release of every
netns, veth, IP lease and port-forward rule once the tasks are gone."""
import ipaddress
import random
import re

import pytest
import requests

from agent_helpers import (IDLE, bridge_ports, cmap, derived_subnet, describe, free_port,
                           ipam_leases, nat_rules, netns_files, node_fixture, run, sh, shell,
                           stop_all_tasks, stop_and_wait, summary, task_id, wait_task, wait_tasks,
                           wait_until)
from agent_helpers import images, out, registry, scratch  # noqa: F401  (fixtures)

DYN_LO = random.randrange(20000, 29000)
DYN_HI = DYN_LO + 199
node = node_fixture({"ECS_DYNAMIC_HOST_PORT_RANGE": f"{DYN_LO}-{DYN_HI}",
                     "ECS_RESERVED_PORTS": "[22, 2375]"}, name="network")

HTTPD = "httpd -f -p {port} -h /var/www"
PAGE = "hello from skiff\n"
USED = {"ports": set(), "runtime_ids": set(), "task_ids": set()}


@pytest.fixture
def ecs(node):
    return node.client("ecs")


def remember(task):
    USED["task_ids"].add(task_id(task["taskArn"]))
    for c in task["containers"]:
        if c.get("runtimeId"):
            USED["runtime_ids"].add(c["runtimeId"])
        for b in c.get("networkBindings", []):
            USED["ports"].add(b["hostPort"])


def get(url, timeout=10):
    def ok():
        try:
            r = requests.get(url, timeout=2)
            return r if r.status_code == 200 else None
        except requests.RequestException:
            return None
    return wait_until(ok, timeout, 0.1, f"GET {url}")


def http_port_free(port):
    return sh(["ss", "-Htln", f"sport = :{port}"]).stdout.strip() == ""


def instance_ports(ecs):
    arn = ecs.list_container_instances(cluster="default")["containerInstanceArns"][0]
    ci = ecs.describe_container_instances(cluster="default",
                                          containerInstances=[arn])["containerInstances"][0]
    res = {r["name"]: r for r in ci["remainingResources"]}
    return set(res["PORTS"].get("stringSetValue", []))


def test_network_mode_none_has_only_loopback(ecs, images, out):
    c = shell("none", images["base"], "ip -o link > /out/links; ip -o -4 addr > /out/addrs",
              out=out)
    arn = run(ecs, [c], out=out, network_mode="none")
    t = wait_task(ecs, arn, "STOPPED")
    remember(t)
    assert cmap(t)["none"].get("exitCode") == 0, summary(t)
    links = [l.split(":")[1].strip() for l in out.read("links").splitlines()]
    assert links == ["lo"], links
    assert "networkBindings" not in cmap(t)["none"] or not cmap(t)["none"]["networkBindings"]


def test_network_mode_host(ecs, images, out):
    port = free_port()
    c = shell("host", images["base"], "ip -o link > /out/links; " + HTTPD.format(port=port),
              out=out, portMappings=[{"containerPort": port, "hostPort": port}])
    arn = run(ecs, [c], out=out, network_mode="host")
    t = wait_task(ecs, arn, "RUNNING")
    remember(t)
    links = {l.split(":")[1].strip().split("@")[0] for l in out.wait("links").splitlines()}
    default_dev = re.search(r"dev (\S+)", sh("ip route show default").stdout)
    if default_dev:
        assert default_dev.group(1) in links, links
    assert len(links) > 1
    assert get(f"http://127.0.0.1:{port}/").text == PAGE
    b = cmap(t)["host"]["networkBindings"]
    assert [(x["containerPort"], x["hostPort"]) for x in b] == [(port, port)]
    stop_and_wait(ecs, arn)


def test_bridge_static_host_port(ecs, images):
    port = free_port()
    c = shell("web", images["base"], HTTPD.format(port=8080),
              portMappings=[{"containerPort": 8080, "hostPort": port, "protocol": "tcp"}])
    arn = run(ecs, [c])
    t = wait_task(ecs, arn, "RUNNING")
    remember(t)
    assert get(f"http://127.0.0.1:{port}/").text == PAGE
    b = cmap(t)["web"]["networkBindings"]
    assert len(b) == 1 and b[0]["containerPort"] == 8080 and b[0]["hostPort"] == port, b
    assert b[0]["protocol"] == "tcp"
    assert str(port) in instance_ports(ecs), "a static host port is reserved while the task runs"
    stop_and_wait(ecs, arn)
    wait_until(lambda: str(port) not in instance_ports(ecs), 10, 0.2, "the port to be released")


def test_bridge_dynamic_host_ports_from_configured_range(ecs, images):
    arns = [run(ecs, [shell("web", images["base"], HTTPD.format(port=8080),
                            portMappings=[{"containerPort": 8080}])]) for _ in range(2)]
    ts = wait_tasks(ecs, arns, "RUNNING")
    ports = []
    for t in ts:
        remember(t)
        b = cmap(t)["web"]["networkBindings"]
        assert len(b) == 1 and b[0]["containerPort"] == 8080, b
        ports.append(b[0]["hostPort"])
    assert len(set(ports)) == 2, ports
    for p in ports:
        assert DYN_LO <= p <= DYN_HI, f"{p} outside ECS_DYNAMIC_HOST_PORT_RANGE"
        assert get(f"http://127.0.0.1:{p}/").text == PAGE
    # dynamic ports are not counted in the instance's PORTS
    assert not {str(p) for p in ports} & instance_ports(ecs)
    for a in arns:
        ecs.stop_task(cluster="default", task=a)
    wait_tasks(ecs, arns, "STOPPED")


def test_bridge_udp_port_mapping(ecs, images):
    # busybox has no UDP server, so the forward is checked in the nat table
    c = shell("udp", images["base"], IDLE,
              portMappings=[{"containerPort": 9999, "protocol": "udp"}])
    arn = run(ecs, [c])
    t = wait_task(ecs, arn, "RUNNING")
    remember(t)
    b = cmap(t)["udp"]["networkBindings"]
    assert len(b) == 1 and b[0]["protocol"] == "udp" and b[0]["containerPort"] == 9999, b
    hp = b[0]["hostPort"]
    assert DYN_LO <= hp <= DYN_HI
    rid = cmap(t)["udp"]["runtimeId"]
    fwd = [l for l in nat_rules() if "-p udp" in l and re.search(rf"--dports {hp}\b", l)
           and rid in l]
    assert fwd, "no udp port forward for the mapping"
    stop_and_wait(ecs, arn)
    assert not [l for l in nat_rules() if rid in l]


def test_containers_reach_published_ports_through_host_gateway(ecs, images, out):
    srv = run(ecs, [shell("srv", images["base"], HTTPD.format(port=8080),
                          portMappings=[{"containerPort": 8080}])])
    t = wait_task(ecs, srv, "RUNNING")
    remember(t)
    hp = cmap(t)["srv"]["networkBindings"][0]["hostPort"]
    cl = shell("client", images["base"],
               "gw=$(ip route | awk '/^default/ {print $3}'); echo $gw > /out/gw; "
               "timeout 10 wget -q -O /out/page http://$gw:$HP/; echo $? > /out/rc",
               out=out, environment=[{"name": "HP", "value": str(hp)}])
    ct = wait_task(ecs, run(ecs, [cl], out=out), "STOPPED", 30)
    remember(ct)
    assert int(out.read("rc")) == 0, (out.read("gw"), summary(ct))
    assert out.read("page") == PAGE
    stop_and_wait(ecs, srv)


@pytest.fixture
def awsvpc_task(ecs, images, out):
    web = shell("web", images["base"], HTTPD.format(port=8080),
                portMappings=[{"containerPort": 8080}])
    client = shell("client", images["base"],
                   "ip -o -4 addr show eth0 > /out/addr; cat /sys/class/net/eth0/address > /out/mac;"
                   " for i in $(seq 50); do timeout 5 wget -q -O /out/local http://127.0.0.1:8080/ "
                   "&& break; sleep 0.1; done; " + IDLE, out=out)
    arn = run(ecs, [web, client], out=out, network_mode="awsvpc")
    t = wait_task(ecs, arn, "RUNNING")
    remember(t)
    out.wait("local")
    yield describe(ecs, arn), out
    stop_and_wait(ecs, arn)


def eni(task):
    atts = [a for a in task.get("attachments", []) if a.get("type") == "ElasticNetworkInterface"]
    assert len(atts) == 1, task.get("attachments")
    return atts[0], {d["name"]: d["value"] for d in atts[0].get("details", [])}


def test_awsvpc_task_gets_ip_from_subnet_and_eni_attachment(node, awsvpc_task):
    t, out = awsvpc_task
    att, d = eni(t)
    assert att["status"] == "ATTACHED", att
    ip = d["privateIPv4Address"]
    subnet = ipaddress.ip_network(derived_subnet(node.agent_data, awsvpc=True))
    assert ipaddress.ip_address(ip) in subnet, (ip, subnet)
    assert re.fullmatch(r"[0-9a-f]{2}(:[0-9a-f]{2}){5}", d["macAddress"]), d
    # the container's own view matches the attachment
    assert f" {ip}/" in out.read("addr"), out.read("addr")
    assert out.read("mac").strip() == d["macAddress"]
    assert d.get("networkInterfaceId", "").startswith("eni-")


def test_awsvpc_containers_share_localhost(awsvpc_task):
    _, out = awsvpc_task
    assert out.read("local") == PAGE


def test_awsvpc_task_ip_reachable_from_host(awsvpc_task):
    t, _ = awsvpc_task
    ip = eni(t)[1]["privateIPv4Address"]
    assert get(f"http://{ip}:8080/").text == PAGE


def test_awsvpc_containers_list_network_interfaces(awsvpc_task):
    t, _ = awsvpc_task
    att, d = eni(t)
    for c in t["containers"]:
        nis = c.get("networkInterfaces", [])
        assert nis and nis[0].get("privateIpv4Address") == d["privateIPv4Address"], (
            f"container {c['name']}: networkInterfaces={nis!r}, attachment {d}")
        assert nis[0].get("attachmentId") == att["id"], c


def test_fargate_launch_type_runs_as_awsvpc(node, ecs, images):
    # Fargate has no host volumes: the container serves what it sees over HTTP.
    c = shell("app", images["base"],
              "env > /var/www/env; ip -o -4 addr show eth0 > /var/www/addr; "
              + HTTPD.format(port=8080), memory=None, portMappings=[{"containerPort": 8080}])
    arn = run(ecs, [c], network_mode="awsvpc", launch_type="FARGATE",
              td_kw={"requiresCompatibilities": ["FARGATE"], "cpu": "256", "memory": "512"})
    t = wait_task(ecs, arn, "RUNNING", 30)
    remember(t)
    assert t["launchType"] == "FARGATE"
    att, d = eni(t)
    ip = d["privateIPv4Address"]
    assert ipaddress.ip_address(ip) in ipaddress.ip_network(
        derived_subnet(node.agent_data, awsvpc=True))
    env = dict(l.split("=", 1) for l in get(f"http://{ip}:8080/env").text.splitlines()
               if "=" in l)
    assert env.get("AWS_EXECUTION_ENV") == "AWS_ECS_FARGATE"
    assert f" {ip}/" in get(f"http://{ip}:8080/addr").text
    stop_and_wait(ecs, arn)


def test_zz_network_resources_released_after_tasks_stop(node, ecs):
    """Runs last in this module: after every task stopped and was cleaned up,
    no netns, veth, IP lease or port-forward rule of this agent remains."""
    stop_all_tasks(ecs)
    tdir = node.agent_data / "tasks"
    wait_until(lambda: not tdir.exists() or not any(tdir.iterdir()), 30, 0.2, "task cleanup")
    key = node.key
    assert USED["runtime_ids"], "the module's tests ran no containers?"
    assert netns_files(key) == []
    assert bridge_ports(node.bridge) == []
    assert bridge_ports(node.awsvpc_bridge) == []
    assert ipam_leases(key) == []
    left = [l for l in nat_rules()
            if f"skb{key}" in l or f"ska{key}" in l
            or any(r in l for r in USED["runtime_ids"])
            or any(tid in l for tid in USED["task_ids"])]
    assert left == [], "\n".join(left)
    dports = [l for l in nat_rules() for p in USED["ports"] if re.search(rf"--dport {p}\b", l)]
    assert dports == [], "\n".join(dports)
    for p in USED["ports"]:
        assert http_port_free(p)


# --- task metadata endpoint (TMDS v3/v4) -------------------------------------------------

META = ('wget -qO /out/{m}-task "$ECS_CONTAINER_METADATA_URI_V4/task" && '
        'wget -qO /out/{m}-self "$ECS_CONTAINER_METADATA_URI_V4" && '
        'wget -qO /out/{m}-stats "$ECS_CONTAINER_METADATA_URI_V4/stats" && '
        'wget -qO /out/{m}-v3 "$ECS_CONTAINER_METADATA_URI/task"; '
        'echo $? > /out/{m}-done; echo "$ECS_CONTAINER_METADATA_URI_V4" > /out/{m}-uri; '
        "trap 'exit 0' TERM; sleep 3600 & wait")


@pytest.mark.parametrize("mode", ["bridge", "awsvpc", "host"])
def test_task_metadata_endpoint(node, ecs, images, out, mode):
    import json
    c = shell("meta", images["base"], META.format(m=mode), out=out,
              dockerLabels={"team": "skiff"})
    side = shell("side", images["base"], "trap 'exit 0' TERM; sleep 3600 & wait", essential=False)
    arn = run(ecs, [c, side], out=out, network_mode=mode)
    t = wait_task(ecs, arn, "RUNNING")
    remember(t)
    uri = out.wait(f"{mode}-uri").strip()
    assert re.fullmatch(r"http://[0-9.]+:\d+/v4/[0-9a-f]{32}", uri), uri
    assert out.wait(f"{mode}-done") == "0\n", [out.read(f"{mode}-{x}") for x in ("task", "self")]
    task = json.loads(out.read(f"{mode}-task"))
    assert task["TaskARN"] == arn and task["Cluster"] == t["clusterArn"], task
    assert task["Family"] + ":" + task["Revision"] == t["taskDefinitionArn"].split("/")[-1]
    assert task["LaunchType"] == "EC2" and task["AvailabilityZone"] == t["availabilityZone"]
    assert {x["Name"] for x in task["Containers"]} == {"meta", "side"}
    me = json.loads(out.read(f"{mode}-self"))
    assert me["Name"] == "meta" and me["DockerId"] == cmap(t)["meta"]["runtimeId"], me
    assert me["ContainerARN"] == cmap(t)["meta"]["containerArn"]
    assert me["Labels"]["team"] == "skiff"
    assert me["Labels"]["com.amazonaws.ecs.task-arn"] == arn
    assert me["Networks"][0]["NetworkMode"] == mode
    # Asked from inside at once, the agent may not have seen the start yet.
    assert me["KnownStatus"] in ("CREATED", "RUNNING") and me["Limits"]["Memory"] == 64
    if mode == "awsvpc":
        ip = t["attachments"][0]["details"]
        ip = next(d["value"] for d in ip if d["name"] == "privateIPv4Address")
        assert me["Networks"][0]["IPv4Addresses"] == [ip]
    if mode == "bridge":  # the address the container has on the agent's bridge
        ip = me["Networks"][0]["IPv4Addresses"][0]
        assert ipaddress.ip_address(ip) in ipaddress.ip_network(
            derived_subnet(node.agent_data)), ip
        assert uri.startswith(f"http://{ipaddress.ip_network(derived_subnet(node.agent_data))[1]}:")
    stats = json.loads(out.read(f"{mode}-stats"))
    assert stats["memory_stats"]["usage"] > 0 and stats["memory_stats"]["limit"] == 64 << 20
    assert json.loads(out.read(f"{mode}-v3"))["TaskARN"] == arn
    # From the host: the same answers; another token, or a bad path, is refused.
    host_uri = uri
    assert requests.get(host_uri + "/task", timeout=5).json()["TaskARN"] == arn
    assert requests.get(host_uri, timeout=5).json()["KnownStatus"] == "RUNNING"
    assert "StartedAt" in requests.get(host_uri, timeout=5).json()
    bogus = host_uri[:-32] + "0" * 32
    assert requests.get(bogus, timeout=5).status_code == 404
    assert requests.post(host_uri, timeout=5).status_code == 405
    assert requests.get(host_uri + "/nope", timeout=5).status_code == 404
    stop_and_wait(ecs, arn)
    assert requests.get(host_uri, timeout=5).status_code in (200, 404)


def test_task_metadata_endpoint_survives_agent_restart(node, ecs, images, out):
    import os
    import signal
    c = shell("meta", images["base"],
              'echo "$ECS_CONTAINER_METADATA_URI_V4" > /out/uri; ' + IDLE, out=out)
    arn = run(ecs, [c], out=out)
    remember(wait_task(ecs, arn, "RUNNING"))
    uri = out.wait("uri").strip()
    assert requests.get(uri, timeout=5).json()["Name"] == "meta"
    old = node.agent_pid()
    os.kill(old, signal.SIGKILL)
    wait_until(lambda: (lambda p: p if p and p != old else None)(node.agent_pid()), 15, 0.1,
               "the agent to be restarted")

    def answers():
        try:
            r = requests.get(uri + "/task", timeout=2)
            return r.status_code == 200 and r.json()
        except requests.RequestException:
            return None
    # The restarted agent re-adopts the task and serves the same URI (same key, same token).
    assert wait_until(answers, 20, 0.2, "the endpoint after the restart")["TaskARN"] == arn
    stop_and_wait(ecs, arn)
