"""Runs last (zz): a soak of short tasks of every network mode and log driver
on one agent, after which nothing may be left on the host and the agent's open
file descriptors are back at their baseline; then the leftovers recorded by
every other test_agent_* module's teardown (agent_helpers.LEAKS) must be
empty."""
import os
import re
import uuid

import pytest

import agent_helpers
from agent_helpers import (bridge_ports, cgroup_dirs, fd_count, host_leftovers, ipam_leases,
                           monitor_pids, mounts_under, netns_files, node_ctx, run, runc_containers,
                           shell, summary, wait_tasks, wait_until)
from agent_helpers import images, registry  # noqa: F401  (fixtures)
from conftest import REGION

SOAK_TASKS = 30


def soak_specs(image, group):
    """(containers, run kwargs) of short tasks across modes and drivers."""
    specs = []
    for i in range(SOAK_TASKS):
        kind = i % 5
        if kind == 0:
            specs.append(([shell("web", image, "echo bridge",
                                 portMappings=[{"containerPort": 8080}])], {}))
        elif kind == 1:
            specs.append(([shell("a", image, "echo awsvpc"),
                           shell("b", image, "echo side", essential=False)],
                          {"network_mode": "awsvpc"}))
        elif kind == 2:
            specs.append(([shell("n", image, "echo none")], {"network_mode": "none"}))
        elif kind == 3:
            specs.append(([shell("h", image, "echo host")], {"network_mode": "host"}))
        else:
            specs.append(([shell("l", image, "seq 1 500", logConfiguration={
                "logDriver": "awslogs", "options": {
                    "awslogs-group": group, "awslogs-region": REGION,
                    "awslogs-stream-prefix": "soak", "awslogs-create-group": "true"}},
                healthCheck={"command": ["CMD-SHELL", "true"], "interval": 5})], {}))
    return specs


def fds(pid):
    return fd_count(pid, sockets=False), fd_count(pid)


@pytest.mark.slow
def test_soak_leaves_nothing_behind(images):
    env = {"ECS_ENGINE_TASK_CLEANUP_WAIT_DURATION": "1s", "ECS_CONTAINER_STOP_TIMEOUT": "2s"}
    group = f"/skiff-it/soak-{uuid.uuid4().hex[:8]}"
    with node_ctx("soak", env) as n:
        ecs = n.client("ecs")
        tdir = n.agent_data / "tasks"

        def drained():
            return not tdir.exists() or not any(tdir.iterdir())

        specs = soak_specs(images["base"], group)
        # warm-up: one task of each kind, so lazily opened files are in the baseline
        arns = [run(ecs, c, **kw) for c, kw in specs[:5]]
        wait_tasks(ecs, arns, "STOPPED", 60)
        wait_until(drained, 30, 0.2, "warm-up cleanup")
        pid = n.agent_pid()
        base_files, base_all = fds(pid)
        # the soak, ten tasks at a time
        for wave in range(0, SOAK_TASKS, 10):
            arns = [run(ecs, c, **kw) for c, kw in specs[wave:wave + 10]]
            for t in wait_tasks(ecs, arns, "STOPPED", 60):
                for c in t["containers"]:
                    assert c.get("exitCode") == 0, summary(t)
        wait_until(drained, 40, 0.2, "every soak task to be cleaned up")
        crashes = re.findall(r"embedded agent exited with status \d+", n.agent_log())
        assert not crashes and n.agent_pid() == pid, f"the agent restarted during the soak: {crashes}"
        key = n.key
        assert host_leftovers(key, [n.data_dir]) == {}
        assert not mounts_under(n.agent_data)
        assert cgroup_dirs(key) == []
        assert netns_files(key) == []
        assert bridge_ports(n.bridge) == [] and bridge_ports(n.awsvpc_bridge) == []
        assert ipam_leases(key) == []
        assert monitor_pids(key) == []
        assert runc_containers(key) == []
        files, total = wait_until(lambda: (lambda f: f if f[0] <= base_files else None)(fds(pid)),
                                  10, 0.5, "the agent's file descriptors to return to baseline")
        assert files == base_files, (files, base_files)
        assert total <= base_all + 8, (total, base_all)  # pooled HTTP connections may vary


def test_no_leftovers_from_any_agent_module():
    """Every node/agent torn down by the test_agent_* modules left nothing
    behind (their teardowns record leftovers in agent_helpers.LEAKS)."""
    assert agent_helpers.LEAKS == [], "\n".join(f"{w}: {d}" for w, d in agent_helpers.LEAKS)
    for d in agent_helpers.ALL_AGENT_DATA:
        key = agent_helpers.agent_key(d)
        assert not os.path.exists(f"/run/skiff/{key}"), f"/run/skiff/{key} of {d} left behind"
        assert not cgroup_dirs(key)
        assert not monitor_pids(key)
