"""Node agent logging with real containers: the awslogs driver shipping to
skiff's CloudWatch Logs API (stream naming, awslogs-create-group, reading back
with `aws logs get-log-events` / `aws logs tail`), the json-file driver's
local files and rotation, and containers that log faster than anything can
keep up (never blocked; what rotation overwrote is counted as dropped)."""
import json
import re
import time
import uuid

import pytest

from agent_helpers import (Agent, IDLE, cmap, container_dir, force_cleanup, new_base,
                           node_fixture, run, safe_rmtree, server_ctx, shell, stop_all_tasks,
                           stop_and_wait, summary, task_id, wait_task, wait_tasks, wait_until)
from agent_helpers import images, out, registry, scratch  # noqa: F401  (fixtures)
from conftest import REGION

node = node_fixture(name="logs")


@pytest.fixture
def ecs(node):
    return node.client("ecs")


def awslogs(group, prefix=None, create=None, **extra):
    o = {"awslogs-group": group, "awslogs-region": REGION}
    if prefix:
        o["awslogs-stream-prefix"] = prefix
    if create is not None:
        o["awslogs-create-group"] = "true" if create else "false"
    o.update(extra)
    return {"logDriver": "awslogs", "options": o}


def log_events(server, group, stream, head=True):
    """One page of GetLogEvents through the aws CLI (oldest or newest events)."""
    out = server.aws("get-log-events", "--log-group-name", group, "--log-stream-name", stream,
                     "--start-from-head" if head else "--no-start-from-head", service="logs")
    return [e["message"] for e in out["events"]]


def all_events(server, group, stream):
    """Every event of a stream, following nextForwardToken (boto3)."""
    logs = server.client("logs")
    msgs, tok = [], None
    for _ in range(1000):
        kw = dict(logGroupName=group, logStreamName=stream, startFromHead=True)
        if tok:
            kw["nextToken"] = tok
        r = logs.get_log_events(**kw)
        msgs += [e["message"] for e in r["events"]]
        if not r["events"] or r.get("nextForwardToken") == tok:
            break
        tok = r.get("nextForwardToken")
    return msgs


def wait_events(server, group, stream, n, timeout=20):
    def enough():
        try:
            ev = log_events(server, group, stream)
        except AssertionError:
            return None
        return ev if len(ev) >= n else None
    return wait_until(enough, timeout, 0.5, f"{n} events in {group}/{stream}")


def group_exists(server, group):
    out = server.aws("describe-log-groups", "--log-group-name-prefix", group, service="logs")
    return any(g["logGroupName"] == group for g in out["logGroups"])


def test_awslogs_stream_prefix_create_group_and_read_back(node, ecs, images):
    group = f"/skiff-it/{uuid.uuid4().hex[:10]}"
    c = shell("app", images["base"],
              "for i in 1 2 3 4 5; do echo line-$i; done; echo to-stderr >&2",
              logConfiguration=awslogs(group, prefix="pfx", create=True))
    arn = run(ecs, [c])
    t = wait_task(ecs, arn, "STOPPED", 30)
    assert cmap(t)["app"].get("exitCode") == 0, summary(t)
    stream = f"pfx/app/{task_id(arn)}"
    ev = wait_events(node, group, stream, 6)
    assert [m for m in ev if m.startswith("line-")] == [f"line-{i}" for i in range(1, 6)]
    assert "to-stderr" in ev
    assert group_exists(node, group)
    streams = node.aws("describe-log-streams", "--log-group-name", group, service="logs")
    assert [s["logStreamName"] for s in streams["logStreams"]] == [stream]
    p = node._cli(["tail", group, "--since", "1h"], service="logs")
    assert p.returncode == 0, p.stderr
    for i in range(1, 6):
        assert f"line-{i}" in p.stdout, p.stdout


def test_awslogs_missing_group_without_create_group_does_not_block(node, ecs, images):
    group = f"/skiff-it/missing-{uuid.uuid4().hex[:10]}"
    c = shell("app", images["base"], "echo hello; sleep 0.5; echo bye",
              logConfiguration=awslogs(group, prefix="pfx"))
    t0 = time.monotonic()
    t = wait_task(ecs, run(ecs, [c]), "STOPPED", 30)
    assert time.monotonic() - t0 < 15
    assert cmap(t)["app"].get("exitCode") == 0, summary(t)
    assert not group_exists(node, group), "without awslogs-create-group the group is not created"


def test_awslogs_existing_group_without_create_flag(node, ecs, images):
    group = f"/skiff-it/existing-{uuid.uuid4().hex[:10]}"
    node.aws("create-log-group", "--log-group-name", group, service="logs")
    c = shell("app", images["base"], "echo only-line", logConfiguration=awslogs(group, "p"))
    arn = run(ecs, [c])
    wait_task(ecs, arn, "STOPPED", 30)
    assert wait_events(node, group, f"p/app/{task_id(arn)}", 1) == ["only-line"]


def read_records(path):
    recs = []
    for line in path.read_text().splitlines():
        recs.append(json.loads(line))
    return recs


def test_json_file_driver_writes_rotated_local_files(node, ecs, images, out):
    script = ('i=0; while [ $i -lt 1500 ]; do echo "line-$i-0123456789abcdef0123456789abcdef"; '
              'i=$((i+1)); done; echo done; touch /out/done; ' + IDLE)
    c = shell("app", images["base"], script, out=out,
              logConfiguration={"logDriver": "json-file",
                                "options": {"max-size": "8k", "max-file": "3"}})
    plain = shell("plain", images["base"], "echo a; echo b >&2; " + IDLE)
    arn = run(ecs, [c, plain], out=out)
    wait_task(ecs, arn, "RUNNING")
    out.wait("done")
    mon = container_dir(node, arn, "app") / "monitor"
    wait_until(lambda: (mon / "container.log").exists() and
               "done" in (mon / "container.log").read_text(), 10, 0.1, "the last line")
    files = sorted(p.name for p in mon.iterdir() if p.name.startswith("container.log"))
    assert files == ["container.log", "container.log.1", "container.log.2"], files
    seqs = []
    for name in ["container.log.2", "container.log.1", "container.log"]:
        p = mon / name
        size = p.stat().st_size
        recs = read_records(p)
        assert size <= 8 * 1024 + max(len(json.dumps(r)) + 1 for r in recs), (name, size)
        for r in recs:
            assert r["stream"] in ("stdout", "stderr") and r["log"].endswith("\n")
            assert r["time"].endswith("Z")
        seqs += [r["seq"] for r in recs]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), "rotated files are contiguous"
    assert read_records(mon / "container.log")[-1]["log"] == "done\n"
    # the default json-file configuration: one file, both streams
    pmon = container_dir(node, arn, "plain") / "monitor"
    recs = wait_until(lambda: len(read_records(pmon / "container.log")) >= 2 and
                      read_records(pmon / "container.log"), 10, 0.1, "plain logs")
    assert [(r["stream"], r["log"]) for r in recs] == [("stdout", "a\n"), ("stderr", "b\n")] or \
        sorted((r["stream"], r["log"]) for r in recs) == [("stderr", "b\n"), ("stdout", "a\n")]
    stop_and_wait(ecs, arn)


def test_chatty_containers_never_block(node, ecs, images):
    group = f"/skiff-it/chatty-{uuid.uuid4().hex[:10]}"
    chatty = "seq 1 300000; echo chatty-done"
    a = run(ecs, [shell("jf", images["base"], chatty, logConfiguration={
        "logDriver": "json-file", "options": {"max-size": "4k", "max-file": "2"}})])
    b = run(ecs, [shell("aws", images["base"], chatty,
                        logConfiguration=awslogs(group, "p", create=True))])
    t0 = time.monotonic()
    ts = wait_tasks(ecs, [a, b], "STOPPED", 40)
    assert time.monotonic() - t0 < 25
    for t in ts:
        assert t["containers"][0].get("exitCode") == 0, summary(t)


def test_awslogs_output_is_shipped_before_task_cleanup(node, ecs, images):
    """The task's files go at ECS_ENGINE_TASK_CLEANUP_WAIT_DURATION (3s here),
    but not before its awslogs output was shipped: every line arrives."""
    group = f"/skiff-it/tail-{uuid.uuid4().hex[:10]}"
    arn = run(ecs, [shell("app", images["base"], "seq 1 60000; echo the-end",
                          logConfiguration=awslogs(group, "p", create=True))])
    wait_task(ecs, arn, "STOPPED", 30)
    stream = f"p/app/{task_id(arn)}"

    def n_events():
        try:
            return len(all_events(node, group, stream))
        except Exception:  # noqa: BLE001 - group not created yet
            return 0
    try:
        wait_until(lambda: n_events() >= 60001, 20, 1, "60001 events")
    except AssertionError:
        pass
    ev = all_events(node, group, stream)
    cleaned = [l for l in node.agent_log().splitlines() if task_id(arn) in l and "cleaned up" in l]
    assert len(ev) == 60001 and ev[-1] == "the-end", (
        f"{len(ev)} of 60001 lines delivered (last {ev[-1] if ev else None!r}); {cleaned}")


def test_awslogs_long_lines_are_all_delivered(node, ecs, images):
    """PutLogEvents takes at most 1 MiB per call: long lines must be batched
    accordingly, none lost."""
    group = f"/skiff-it/long-{uuid.uuid4().hex[:10]}"
    c = shell("app", images["base"],
              'i=0; while [ $i -lt 300 ]; do echo "$i-$BIG"; i=$((i+1)); done; echo end-line',
              environment=[{"name": "BIG", "value": "y" * 12000}],
              logConfiguration=awslogs(group, "p", create=True))
    arn = run(ecs, [c])
    wait_task(ecs, arn, "STOPPED", 30)
    stream = f"p/app/{task_id(arn)}"
    def n_events():
        try:
            return len(all_events(node, group, stream))
        except Exception:  # noqa: BLE001 - group not created yet
            return 0
    try:
        wait_until(lambda: n_events() >= 301, 15, 1, "301 events")
    except AssertionError:
        pass
    ev = all_events(node, group, stream)
    warn = [l for l in node.agent_log().splitlines() if "log batch rejected" in l][-3:]
    assert len(ev) == 301, f"{len(ev)} of 301 lines delivered; agent: {warn}"
    assert ev[-1] == "end-line" and ev[0].startswith("0-yyy")


@pytest.mark.slow
def test_awslogs_lines_dropped_when_rotation_outruns_shipping(images, out):
    """The server (Logs sink) is down while the container writes more than the
    monitor's rotation window (3 x 10 MiB): the container is not blocked, the
    agent warns '... log line(s) dropped' and still ships the newest lines."""
    with server_ctx("logsrv") as srv:
        _dropped_lines(srv, images, out)


def _dropped_lines(srv, images, out):
    base = new_base("dropagent")
    # a long cleanup wait: this test is about rotation, not about cleanup
    ag = Agent(srv, base, "dropagent",
               env={"ECS_ENGINE_TASK_CLEANUP_WAIT_DURATION": "10m",
                    "ECS_CONTAINER_STOP_TIMEOUT": "2s"})
    try:
        ag.start()
        ecs = srv.client("ecs")
        group = f"/skiff-it/drop-{uuid.uuid4().hex[:10]}"
        big = "x" * 15000
        script = ('echo first-line; while [ ! -f /out/go ]; do sleep 0.1; done; i=0; '
                  'while [ $i -lt 2700 ]; do echo "$i-$BIG"; i=$((i+1)); done; echo last-line; '
                  'touch /out/written; ' + IDLE)
        c = shell("app", images["base"], script, out=out, memory=128,
                  environment=[{"name": "BIG", "value": big}],
                  logConfiguration=awslogs(group, "p", create=True))
        arn = run(ecs, [c], out=out)
        wait_task(ecs, arn, "RUNNING", 30)
        stream = f"p/app/{task_id(arn)}"
        wait_events(srv, group, stream, 1)
        srv.stop()
        t0 = time.monotonic()
        out.touch("go")
        out.wait("written", 60)
        assert time.monotonic() - t0 < 30, "the container must not be blocked by the logs sink"
        srv.start()
        wait_until(lambda: "log line(s) dropped" in ag.log(), 40, 0.5,
                   "the agent's dropped-lines warning")
        m = re.search(r"log line\(s\) dropped \(.*; (\d+) in total\)",
                      [l for l in ag.log().splitlines() if "dropped (" in l][-1])
        dropped = int(m.group(1))
        assert 0 < dropped < 2702
        # every line that was not dropped is delivered, the newest ones included
        ev = wait_until(lambda: (lambda e: e if "last-line" in e else None)(
            all_events(srv, group, stream)), 90, 2, "the last line to be shipped")
        assert len(ev) == 2702 - dropped, (
            f"{len(ev)} events delivered, {dropped} counted as dropped, 2702 written; agent log:\n"
            + "\n".join(l for l in ag.log().splitlines() if "warn" in l)[-3000:])
        stop_all_tasks(ecs)
    finally:
        ag.stop()
        force_cleanup(ag.key, [ag.data_dir])
        safe_rmtree(base)
