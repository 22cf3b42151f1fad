"""Node agent crash recovery with real containers: containers survive
`kill -9` of the agent (embedded or separate), the restarted agent re-attaches
through the per-container monitors, reports exits that happened while it was
down with their real exit code, and the server notices a silent agent."""
import os
import signal
import time

import pytest

from agent_helpers import (Agent, IDLE, Out, agents_ctx, cmap, container_pid, describe,
                           monitor_pids, node_fixture, pid_alive, run, runc_containers, server_ctx,
                           shell, stop_and_wait, summary, wait_task, wait_until)
from agent_helpers import images, out, registry, scratch  # noqa: F401  (fixtures)

# function scope: the server restarts a crashed agent with a growing backoff, so
# every kill test gets a fresh server (they start in milliseconds)
node = node_fixture(name="recovery", scope="function")

WAIT_GO_EXIT5 = ("echo up > /out/up; while [ ! -f /out/go ]; do sleep 0.05; done; exit 5")


@pytest.fixture
def ecs(node):
    return node.client("ecs")


def new_agent_pid(node, old):
    return wait_until(lambda: (lambda p: p if p and p != old else None)(node.agent_pid()), 15,
                      0.05, "the server to restart its agent")


def test_embedded_agent_kill9_container_keeps_running_and_is_reattached(node, ecs, images, out):
    c = shell("app", images["base"],
              "trap 'echo TERM > /out/term; exit 0' TERM; echo up > /out/up; "
              "sleep 600 & wait", out=out)
    arn = run(ecs, [c], out=out)
    t = wait_task(ecs, arn, "RUNNING")
    out.wait("up")
    cpid = container_pid(node, arn, "app")
    assert cpid and pid_alive(cpid)
    old = node.agent_pid()
    os.kill(old, signal.SIGKILL)
    time.sleep(0.3)
    assert pid_alive(cpid), "killing the agent must not stop containers"
    new_agent_pid(node, old)
    wait_until(lambda: "recovered task" in node.agent_log(), 10, 0.1, "task recovery")
    time.sleep(1)
    assert pid_alive(cpid)
    assert describe(ecs, arn)["lastStatus"] == "RUNNING"
    rid = cmap(t)["app"]["runtimeId"]
    assert runc_containers(node.key).count(rid) == 1, "no second copy of the container"
    # the new agent controls the container: StopTask reaches it
    t = stop_and_wait(ecs, arn)
    assert out.read("term") == "TERM\n"
    assert cmap(t)["app"].get("exitCode") == 0, summary(t)


def test_embedded_agent_reports_exit_code_of_container_that_exited_while_down(node, ecs, images,
                                                                              out):
    arn = run(ecs, [shell("app", images["base"], WAIT_GO_EXIT5, out=out)], out=out)
    wait_task(ecs, arn, "RUNNING")
    out.wait("up")
    cpid = container_pid(node, arn, "app")
    old = node.agent_pid()
    os.kill(old, signal.SIGKILL)
    out.touch("go")  # the container exits (5) while no agent runs
    wait_until(lambda: not pid_alive(cpid), 5, 0.02, "the container to exit")
    new_agent_pid(node, old)
    t = wait_task(ecs, arn, "STOPPED", 20)
    assert cmap(t)["app"].get("exitCode") == 5, summary(t)
    assert t["stopCode"] == "EssentialContainerExited"


def test_separate_agent_down_then_restarted(images, scratch):
    """A separate agent is killed; its container runs on, exits (5) while the
    agent is down; the server marks the agent disconnected; the restarted
    agent reconnects and reports the real exit code."""
    with server_ctx("recsrv", env={"SKIFF_AGENT_TIMEOUT": "2s"}) as srv:
        ag = Agent(srv, scratch, "recagent",
                   env={"ECS_ENGINE_TASK_CLEANUP_WAIT_DURATION": "2s"})
        with agents_ctx(srv, ag):
            ecs = srv.client("ecs")
            out = Out(scratch)
            arn = run(ecs, [shell("app", images["base"], WAIT_GO_EXIT5, out=out)], out=out)
            wait_task(ecs, arn, "RUNNING")
            out.wait("up")
            cpid = container_pid(ag.data_dir, arn, "app")
            mons = monitor_pids(ag.key)
            ag.kill9()
            time.sleep(0.5)
            assert pid_alive(cpid)
            inst = ag.instance_arn()

            def connected():
                return ecs.describe_container_instances(
                    cluster="default", containerInstances=[inst])["containerInstances"][0][
                    "agentConnected"]
            wait_until(lambda: not connected(), 15, 0.25, "agentConnected to turn false")
            out.touch("go")
            wait_until(lambda: not pid_alive(cpid), 5, 0.02, "the container to exit")
            time.sleep(0.5)
            assert describe(ecs, arn)["lastStatus"] == "RUNNING"  # nobody reported it yet
            ag.start()
            t = wait_task(ecs, arn, "STOPPED", 20)
            assert cmap(t)["app"].get("exitCode") == 5, summary(t)
            wait_until(connected, 10, 0.25, "agentConnected to turn true again")
            assert not [p for p in mons if pid_alive(p)], "the monitor exits with its container"


def test_tasks_of_a_lost_host_are_stopped_and_cleaned_up_on_return(images, scratch):
    """SKIFF_HOST_LOST_AFTER: the server stops the tasks of an agent that went
    silent; when the agent comes back it stops the orphaned container."""
    with server_ctx("lostsrv", env={"SKIFF_AGENT_TIMEOUT": "1s",
                                    "SKIFF_HOST_LOST_AFTER": "3s"}) as srv:
        ag = Agent(srv, scratch, "lostagent",
                   env={"ECS_ENGINE_TASK_CLEANUP_WAIT_DURATION": "2s",
                        "ECS_CONTAINER_STOP_TIMEOUT": "2s"})
        with agents_ctx(srv, ag):
            ecs = srv.client("ecs")
            out = Out(scratch)
            arn = run(ecs, [shell("app", images["base"], "echo up > /out/up; " + IDLE, out=out)],
                      out=out)
            wait_task(ecs, arn, "RUNNING")
            out.wait("up")
            cpid = container_pid(ag.data_dir, arn, "app")
            ag.kill9()
            t = wait_task(ecs, arn, "STOPPED", 30)
            assert t["desiredStatus"] == "STOPPED"
            assert pid_alive(cpid), "the container runs on until its agent returns"
            ag.start()
            wait_until(lambda: not pid_alive(cpid), 20, 0.1,
                       "the returning agent to stop the orphaned container")


def test_stop_requested_while_embedded_agent_is_down(node, ecs, images, out):
    c = shell("app", images["base"],
              "trap 'echo TERM > /out/term; exit 0' TERM; echo up > /out/up; sleep 600 & wait",
              out=out)
    arn = run(ecs, [c], out=out)
    wait_task(ecs, arn, "RUNNING")
    out.wait("up")
    old = node.agent_pid()
    os.kill(old, signal.SIGKILL)
    ecs.stop_task(cluster="default", task=arn)
    t = wait_task(ecs, arn, "STOPPED", 20)
    assert out.read("term") == "TERM\n"
    assert cmap(t)["app"].get("exitCode") == 0, summary(t)


def test_agent_killed_during_stop_timeout_still_kills_container(node, ecs, images, out):
    """SIGTERM was sent and ignored; the agent dies before the stop timeout
    fires. The restarted agent must still SIGKILL the container."""
    c = shell("stubborn", images["base"],
              "trap '' TERM; echo up > /out/up; while :; do sleep 0.1; done", out=out,
              stopTimeout=3)
    arn = run(ecs, [c], out=out)
    wait_task(ecs, arn, "RUNNING")
    out.wait("up")
    cpid = container_pid(node, arn, "stubborn")
    ecs.stop_task(cluster="default", task=arn)
    wait_until(lambda: '"stopSignalled":true' in _state(node, arn), 10, 0.05,
               "the agent to signal the container")
    old = node.agent_pid()
    os.kill(old, signal.SIGKILL)
    new_agent_pid(node, old)
    try:
        t = wait_task(ecs, arn, "STOPPED", 12)
    except AssertionError:
        t = describe(ecs, arn)
        # unblock the teardown: kill our container ourselves
        if pid_alive(cpid):
            os.kill(cpid, signal.SIGKILL)
    assert t["lastStatus"] == "STOPPED", (
        f"container still running after the agent restart (stopTimeout 3s): {summary(t)}")
    assert cmap(t)["stubborn"].get("exitCode") == 137, summary(t)


def _state(node, arn):
    p = node.agent_data / "tasks" / arn.rsplit("/", 1)[1] / "state.json"
    try:
        return p.read_text().replace(" ", "")
    except OSError:
        return ""


def test_health_checks_resume_after_agent_restart(node, ecs, images, out):
    c = shell("hc", images["base"], "echo up > /out/up; " + IDLE, out=out,
              healthCheck={"command": ["CMD-SHELL", "test ! -f /out/bad"], "interval": 5,
                           "timeout": 2, "retries": 1})
    arn = run(ecs, [c], out=out)
    wait_task(ecs, arn, "RUNNING")
    wait_until(lambda: cmap(describe(ecs, arn))["hc"].get("healthStatus") == "HEALTHY", 10, 0.2,
               "HEALTHY")
    old = node.agent_pid()
    os.kill(old, signal.SIGKILL)
    new_agent_pid(node, old)
    out.touch("bad")
    wait_until(lambda: cmap(describe(ecs, arn))["hc"].get("healthStatus") == "UNHEALTHY", 15,
               0.2, "UNHEALTHY after the restart (health checks must resume)")
    assert describe(ecs, arn)["healthStatus"] == "UNHEALTHY"
    stop_and_wait(ecs, arn)


def test_server_restart_keeps_running_task(node, ecs, images, out):
    """`skiff server` SIGTERM + start on the same data dir: the embedded agent
    goes down with it, containers keep running, the new agent re-attaches."""
    c = shell("app", images["base"],
              "trap 'echo TERM > /out/term; exit 0' TERM; echo up > /out/up; sleep 600 & wait",
              out=out)
    arn = run(ecs, [c], out=out)
    wait_task(ecs, arn, "RUNNING")
    out.wait("up")
    cpid = container_pid(node, arn, "app")
    node.restart()
    node.wait_agent()
    ecs = node.client("ecs")
    assert pid_alive(cpid)
    wait_until(lambda: "recovered task" in node.agent_log(), 10, 0.1, "task recovery")
    assert describe(ecs, arn)["lastStatus"] == "RUNNING"
    t = stop_and_wait(ecs, arn)
    assert out.read("term") == "TERM\n"
    assert cmap(t)["app"].get("exitCode") == 0, summary(t)
