"""Node agent registration (what describe-container-instances shows for a
real agent, ecs.config keys, re-registration under the same ARN) and several
agents on one host (distinct identities, bridges, subnets and cgroup roots;
no IP clashes; a host-port conflict between agents fails cleanly)."""
import ipaddress
import os
import signal
import uuid

import requests

from agent_helpers import (Agent, CG_ROOT, IDLE, Out, agents_ctx, cmap, derived_subnet, describe,
                           free_port, link_exists, node_ctx, server_ctx, shell, summary, task_id,
                           wait_task, wait_tasks, wait_until)
from agent_helpers import images, registry, scratch  # noqa: F401  (fixtures)


def host_cpus():
    return os.sysconf("SC_NPROCESSORS_ONLN")


def host_mem_mib():
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) // 1024
    raise AssertionError("no MemTotal")


def describe_ci(srv, cluster, arn):
    out = srv.aws("describe-container-instances", "--cluster", cluster, "--container-instances",
                  arn)
    assert out["failures"] == [], out
    return out["containerInstances"][0]


def resources(ci, key="registeredResources"):
    out = {}
    for r in ci[key]:
        out[r["name"]] = (sorted(r.get("stringSetValue", [])) if r["type"] == "STRINGSET"
                          else r.get("integerValue"))
    return out


def attrs(ci):
    return {a["name"]: a.get("value") for a in ci.get("attributes", [])}


def test_registration_from_ecs_config(scratch):
    cluster = f"reg-{uuid.uuid4().hex[:8]}"
    with server_ctx("regsrv") as srv:
        srv.aws("create-cluster", "--cluster-name", cluster)
        ag = Agent(srv, scratch, "regagent", config={
            "ECS_CLUSTER": cluster,
            "ECS_RESERVED_MEMORY": "300",
            "ECS_RESERVED_PORTS": "[22, 2375, 8125]",
            "ECS_RESERVED_PORTS_UDP": "[161]",
            "ECS_AVAILABLE_LOGGING_DRIVERS": '["json-file","awslogs"]',
            "ECS_INSTANCE_ATTRIBUTES": '{"team": "qa", "ecs.availability-zone": "us-east-1c"}',
        })
        with agents_ctx(srv, ag):
            arn = ag.instance_arn()
            assert arn and arn.startswith(
                f"arn:aws:ecs:us-east-1:000000000000:container-instance/{cluster}/")
            ci = describe_ci(srv, cluster, arn)
            reg = resources(ci)
            assert reg["CPU"] == host_cpus() * 1024
            assert reg["MEMORY"] == host_mem_mib() - 300
            assert reg["PORTS"] == sorted(["22", "2375", "8125"])
            assert reg["PORTS_UDP"] == ["161"]
            assert resources(ci, "remainingResources") == reg
            a = attrs(ci)
            assert a["ecs.os-type"] == "linux"
            assert a["ecs.cpu-architecture"] == "x86_64"
            assert a["ecs.availability-zone"] == "us-east-1c"
            assert a["team"] == "qa"
            assert "com.amazonaws.ecs.capability.logging-driver.json-file" in a
            assert "com.amazonaws.ecs.capability.logging-driver.awslogs" in a
            assert "com.amazonaws.ecs.capability.logging-driver.none" not in a
            assert "ecs.capability.container-health-check" in a
            assert "ecs.capability.task-eni" in a
            vi = ci["versionInfo"]
            assert vi.get("agentVersion") and vi.get("agentHash") and vi.get("dockerVersion"), vi
            assert ci["agentConnected"] is True and ci["status"] == "ACTIVE"
            assert ci["runningTasksCount"] == 0 and ci["pendingTasksCount"] == 0


def test_availability_zone_from_environment_and_default_log_drivers(scratch):
    with server_ctx("azsrv") as srv:
        ag = Agent(srv, scratch, "azagent", env={"SKIFF_AVAILABILITY_ZONE": "us-east-1b"})
        with agents_ctx(srv, ag):
            ci = describe_ci(srv, "default", ag.instance_arn())
            a = attrs(ci)
            assert a["ecs.availability-zone"] == "us-east-1b"
            for d in ("json-file", "none", "awslogs"):
                assert f"com.amazonaws.ecs.capability.logging-driver.{d}" in a
            assert resources(ci)["PORTS"] == sorted(["22", "2375", "2376", "51678", "51679"])


def test_restarted_agent_reregisters_as_same_instance(scratch):
    with server_ctx("resrv") as srv:
        ag = Agent(srv, scratch, "reagent")
        with agents_ctx(srv, ag):
            arn = ag.instance_arn()
            ag.stop()           # SIGTERM
            ag.start()
            assert ag.instance_arn() == arn
            assert "(re-registered)" in ag.log()
            ag.kill9()          # and after a crash
            ag.start()
            assert ag.instance_arn() == arn
            ecs = srv.client("ecs")
            assert ecs.list_container_instances(cluster="default")["containerInstanceArns"] == [arn]
            assert describe_ci(srv, "default", arn)["agentConnected"] is True


def test_embedded_agent_restarted_by_server_keeps_instance():
    with node_ctx("embedded") as n:
        ecs = n.client("ecs")
        arn = n.instance_arn()
        pid = n.agent_pid()
        assert pid
        os.kill(pid, signal.SIGKILL)
        new = wait_until(lambda: (lambda p: p if p and p != pid else None)(n.agent_pid()), 15,
                         0.1, "the server to restart its agent")
        assert new != pid
        wait_until(lambda: n.agent_log().count("(re-registered)") >= 1, 15, 0.1,
                   "re-registration")
        assert n.instance_arn() == arn
        assert ecs.list_container_instances(cluster="default")["containerInstanceArns"] == [arn]
        assert describe_ci(n, "default", arn)["agentConnected"] is True


# --- several agents on one host -------------------------------------------------------


def start_on(ecs, cluster, instance, containers, volumes=(), network_mode=None, **kw):
    args = dict(family=f"multi-{uuid.uuid4().hex[:8]}", containerDefinitions=containers)
    if volumes:
        args["volumes"] = list(volumes)
    if network_mode:
        args["networkMode"] = network_mode
    td = ecs.register_task_definition(**args)["taskDefinition"]["taskDefinitionArn"]
    st = dict(cluster=cluster, taskDefinition=td, containerInstances=[instance])
    if network_mode == "awsvpc":
        st["networkConfiguration"] = {"awsvpcConfiguration": {"subnets": ["subnet-skiff"]}}
    st.update(kw)
    r = ecs.start_task(**st)
    assert not r["failures"], r["failures"]
    return r["tasks"][0]["taskArn"]


def test_two_agents_on_one_host(scratch, images):
    cluster = f"multi-{uuid.uuid4().hex[:8]}"
    with server_ctx("multisrv") as srv:
        srv.aws("create-cluster", "--cluster-name", cluster)
        env = {"ECS_ENGINE_TASK_CLEANUP_WAIT_DURATION": "2s", "ECS_CONTAINER_STOP_TIMEOUT": "2s"}
        a = Agent(srv, scratch, "agent-a", cluster=cluster, env=env,
                  config={"ECS_RESERVED_MEMORY": "100"})
        b = Agent(srv, scratch, "agent-b", cluster=cluster, env=env,
                  config={"ECS_RESERVED_MEMORY": "200",
                          "ECS_INSTANCE_ATTRIBUTES": '{"role": "b"}'})
        with agents_ctx(srv, a, b):
            ecs = srv.client("ecs")
            ia, ib = a.instance_arn(), b.instance_arn()
            assert ia and ib and ia != ib
            assert sorted(ecs.list_container_instances(cluster=cluster)[
                "containerInstanceArns"]) == sorted([ia, ib])
            assert resources(describe_ci(srv, cluster, ia))["MEMORY"] == host_mem_mib() - 100
            assert resources(describe_ci(srv, cluster, ib))["MEMORY"] == host_mem_mib() - 200
            assert attrs(describe_ci(srv, cluster, ib)).get("role") == "b"
            assert a.key != b.key and a.bridge != b.bridge
            assert derived_subnet(a.data_dir) != derived_subnet(b.data_dir)

            # bridge and awsvpc tasks on both agents at once
            out = Out(scratch)
            probe = "ip -o -4 addr show eth0 > /out/ip.$N; " + IDLE
            tasks = {}
            for ag, inst in (("a", ia), ("b", ib)):
                for mode in ("bridge", "awsvpc"):
                    c = shell("p", images["base"], probe, out=out,
                              environment=[{"name": "N", "value": f"{ag}-{mode}"}])
                    tasks[(ag, mode)] = start_on(ecs, cluster, inst, [c], [out.volume],
                                                 network_mode=mode)
            wait_tasks(ecs, list(tasks.values()), "RUNNING", 30, cluster=cluster)
            ips = {}
            for (ag, mode) in tasks:
                line = out.wait(f"ip.{ag}-{mode}")
                ips[(ag, mode)] = ipaddress.ip_interface(line.split()[3]).ip
            assert len(set(ips.values())) == 4, ips
            for ag, agent in (("a", a), ("b", b)):
                assert ips[(ag, "bridge")] in ipaddress.ip_network(
                    derived_subnet(agent.data_dir)), ips
                assert ips[(ag, "awsvpc")] in ipaddress.ip_network(
                    derived_subnet(agent.data_dir, awsvpc=True)), ips
            # each agent's tasks live under its own cgroup root and bridges
            for ag, agent in (("a", a), ("b", b)):
                for mode in ("bridge", "awsvpc"):
                    tid = task_id(tasks[(ag, mode)])
                    assert (CG_ROOT / "memory" / "skiff" / agent.key / tid).is_dir()
                assert link_exists(agent.bridge) and link_exists(agent.awsvpc_bridge)
            for arn in tasks.values():
                ecs.stop_task(cluster=cluster, task=arn)
            wait_tasks(ecs, list(tasks.values()), "STOPPED", 30, cluster=cluster)


def test_same_static_host_port_on_two_agents(scratch, images):
    """Agent A publishes host port P; a task on agent B asking for the same
    port must fail to start (as docker's 'port is already allocated') without
    breaking A's mapping."""
    cluster = f"ports-{uuid.uuid4().hex[:8]}"
    port = free_port()
    with server_ctx("portsrv") as srv:
        srv.aws("create-cluster", "--cluster-name", cluster)
        env = {"ECS_ENGINE_TASK_CLEANUP_WAIT_DURATION": "2s", "ECS_CONTAINER_STOP_TIMEOUT": "2s"}
        a = Agent(srv, scratch, "port-a", cluster=cluster, env=env)
        b = Agent(srv, scratch, "port-b", cluster=cluster, env=env)
        with agents_ctx(srv, a, b):
            ecs = srv.client("ecs")

            def web(name):
                return shell("web", images["base"],
                             f"echo {name} > /var/www/index.html; httpd -f -p 8080 -h /var/www",
                             portMappings=[{"containerPort": 8080, "hostPort": port}])
            ta = start_on(ecs, cluster, a.instance_arn(), [web("served-by-a")])
            wait_task(ecs, ta, "RUNNING", cluster=cluster)
            assert wait_until(lambda: _get(port), 10, 0.1, "A's port") == "served-by-a\n"
            tb = start_on(ecs, cluster, b.instance_arn(), [web("served-by-b")])
            try:
                t = wait_task(ecs, tb, "STOPPED", 8, cluster=cluster)
            except AssertionError:
                t = describe(ecs, tb, cluster)
            c = cmap(t)["web"]
            assert t["lastStatus"] == "STOPPED", (
                f"B started with A's host port: {summary(t)}; port {port} now serves "
                f"{_get(port)!r}")
            assert (c.get("reason") or "").startswith("CannotStartContainerError"), summary(t)
            # A keeps its port
            for _ in range(5):
                assert _get(port) == "served-by-a\n"
            assert describe(ecs, ta, cluster)["lastStatus"] == "RUNNING"


def _get(port):
    try:
        r = requests.get(f"http://127.0.0.1:{port}/", timeout=2)
        return r.text if r.status_code == 200 else None
    except requests.RequestException:
        return None


def test_configured_subnets_capacity_and_datadir(scratch, images):
    """SKIFF_BRIDGE_SUBNET / SKIFF_AWSVPC_SUBNET place task IPs; ECS_DATADIR
    (instead of --data) holds the agent's state; an EC2-only agent
    (SKIFF_CAPACITY default) takes no FARGATE task."""
    import random
    n = random.randrange(2, 250)
    bsub, vsub = f"10.231.{n}.0/24", f"10.232.{n}.0/24"
    with server_ctx("subsrv") as srv:
        ag = Agent(srv, scratch, "subagent", config={
            "SKIFF_BRIDGE_SUBNET": bsub, "SKIFF_AWSVPC_SUBNET": vsub,
            "ECS_DATADIR": str(scratch / "subagent-data"),
            "ECS_ENGINE_TASK_CLEANUP_WAIT_DURATION": "2s"})
        ag.data_arg = False
        with agents_ctx(srv, ag):
            assert (ag.data_dir / "agent.json").exists(), "ECS_DATADIR must hold the agent state"
            ecs = srv.client("ecs")
            out = Out(scratch)
            arns = {}
            for mode in ("bridge", "awsvpc"):
                c = shell("p", images["base"], "ip -o -4 addr show eth0 > /out/ip.$M", out=out,
                          environment=[{"name": "M", "value": mode}])
                td = ecs.register_task_definition(
                    family=f"sub-{mode}", containerDefinitions=[c], volumes=[out.volume],
                    networkMode=mode)["taskDefinition"]["taskDefinitionArn"]
                kw = {}
                if mode == "awsvpc":
                    kw["networkConfiguration"] = {"awsvpcConfiguration": {"subnets": ["s-1"]}}
                arns[mode] = ecs.run_task(cluster="default", taskDefinition=td, **kw)[
                    "tasks"][0]["taskArn"]
            wait_tasks(ecs, list(arns.values()), "STOPPED", 30)
            for mode, sub in (("bridge", bsub), ("awsvpc", vsub)):
                ip = ipaddress.ip_interface(out.read(f"ip.{mode}").split()[3]).ip
                assert ip in ipaddress.ip_network(sub), (mode, ip, sub)
            # FARGATE needs a FARGATE-capable instance
            td = ecs.register_task_definition(
                family="sub-fargate", requiresCompatibilities=["FARGATE"], networkMode="awsvpc",
                cpu="256", memory="512",
                containerDefinitions=[shell("f", images["base"], "true", memory=None)])[
                "taskDefinition"]["taskDefinitionArn"]
            r = ecs.run_task(cluster="default", taskDefinition=td, launchType="FARGATE",
                             networkConfiguration={"awsvpcConfiguration": {"subnets": ["s-1"]}})
            assert r["tasks"] == [] and r["failures"], r
