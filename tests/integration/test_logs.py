"""CloudWatch Logs (Logs_20140328): groups, streams, PutLogEvents/GetLogEvents/
FilterLogEvents, retention (validation and enforcement), tags, durability, and
the unchanged aws CLI (`get-log-events`, `tail`).

The server is `skiff server`, or any binary taking the same arguments named by
SKIFF_LOGS_BIN (e.g. build-logs/src/logs/test-logs-server, which serves only
Logs). Every test skips when the server does not serve Logs yet
(UnknownOperationException / NotImplementedException).
"""
import contextlib
import json
import os
import subprocess
import threading
import time
import uuid

import pytest
from botocore.exceptions import ClientError

from conftest import AWS_CLI, REGION, REPO, Server

LOGS_BIN = os.environ.get("SKIFF_LOGS_BIN")
if LOGS_BIN and not os.path.isabs(LOGS_BIN):
    LOGS_BIN = str(REPO / LOGS_BIN)
ACCOUNT = "000000000000"
DAY_MS = 86400 * 1000
LOGS_TARGET = "Logs_20140328"


class LogsServer(Server):
    def argv(self):
        a = super().argv()
        if LOGS_BIN:
            a[0] = LOGS_BIN
        return a

    def logs_raw(self, operation, body=None, **kw):
        return self.raw(operation, body, service="logs",
                        target=f"{LOGS_TARGET}.{operation}", **kw)

    def cli(self, *args, timeout=120):
        return self._cli(args, service="logs", timeout=timeout)


def now_ms():
    return int(time.time() * 1000)


def unique(prefix="t"):
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@contextlib.contextmanager
def raises_code(*codes):
    holder = type("Holder", (), {})()
    with pytest.raises(ClientError) as ei:
        yield holder
    holder.error = ei.value.response["Error"]
    code = holder.error.get("Code")
    assert code in codes, f"expected {codes}, got {code}: {holder.error.get('Message')}"


def wait_for(pred, timeout=10.0, interval=0.1, what="condition"):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(interval)


def skip_unless_logs(srv):
    r = srv.logs_raw("DescribeLogGroups", {})
    if r.error_type in ("UnknownOperationException", "NotImplementedException"):
        pytest.skip(f"the server does not serve CloudWatch Logs yet ({r.error_type}); "
                    "wire logs into `skiff server` or set SKIFF_LOGS_BIN="
                    "build-logs/src/logs/test-logs-server")
    assert r.status == 200, r


@pytest.fixture
def logs_factory(tmp_path):
    made = []

    def make(name=None, **kw):
        env = {"SKIFF_LOGS_SWEEP_SEC": "1"}
        env.update(kw.pop("env", {}))
        s = LogsServer(tmp_path, name=name or f"logs{len(made)}", env=env, **kw)
        made.append(s)
        return s

    yield make
    for s in made:
        if s.alive():
            try:
                s.stop()
            except Exception:
                s.kill9()


@pytest.fixture
def srv(logs_factory):
    s = logs_factory("main").start()
    skip_unless_logs(s)
    return s


@pytest.fixture
def logs(srv):
    return srv.client("logs")


def make_stream(logs, group=None, stream="s1"):
    group = group or unique("/test/g")
    try:
        logs.create_log_group(logGroupName=group)
    except ClientError as e:
        if e.response["Error"]["Code"] != "ResourceAlreadyExistsException":
            raise
    logs.create_log_stream(logGroupName=group, logStreamName=stream)
    return group, stream


def put(logs, group, stream, events):
    """events: list of (timestamp_ms, message)."""
    return logs.put_log_events(logGroupName=group, logStreamName=stream,
                               logEvents=[{"timestamp": t, "message": m} for t, m in events])


def group_arn(name, region=REGION):
    return f"arn:aws:logs:{region}:{ACCOUNT}:log-group:{name}"


# --- groups ---


def test_create_describe_delete_log_group(logs):
    name = unique("/ecs/app")
    before = now_ms()
    logs.create_log_group(logGroupName=name, tags={"team": "infra"}, kmsKeyId="alias/x")
    groups = logs.describe_log_groups(logGroupNamePrefix=name)["logGroups"]
    assert len(groups) == 1
    g = groups[0]
    assert g["logGroupName"] == name
    assert isinstance(g["creationTime"], int)
    assert before - 5000 <= g["creationTime"] <= now_ms() + 5000
    assert g["arn"] == group_arn(name) + ":*"
    assert g["metricFilterCount"] == 0
    assert g["storedBytes"] == 0
    assert g["kmsKeyId"] == "alias/x"
    assert "retentionInDays" not in g
    with raises_code("ResourceAlreadyExistsException"):
        logs.create_log_group(logGroupName=name)
    logs.delete_log_group(logGroupName=name)
    assert logs.describe_log_groups(logGroupNamePrefix=name)["logGroups"] == []
    with raises_code("ResourceNotFoundException") as h:
        logs.delete_log_group(logGroupName=name)
    assert h.error["Message"] == "The specified log group does not exist."


# Fields newer than Debian's botocore (logGroupArn, logGroupClass,
# logGroupIdentifiers) are checked on the wire.


def test_describe_log_groups_on_the_wire(srv):
    name = unique("/raw")
    assert srv.logs_raw("CreateLogGroup", {"logGroupName": name}).status == 200
    r = srv.logs_raw("DescribeLogGroups", {"logGroupNamePrefix": name})
    assert r.status == 200, r
    g = r.json["logGroups"][0]
    assert isinstance(g["creationTime"], int) and g["creationTime"] > 10**12
    assert g["logGroupArn"] == group_arn(name)
    assert g["arn"] == group_arn(name) + ":*"
    assert g["logGroupClass"] == "STANDARD"


def test_log_group_class(srv):
    name = unique("/ia")
    r = srv.logs_raw("CreateLogGroup", {"logGroupName": name,
                                        "logGroupClass": "INFREQUENT_ACCESS"})
    assert r.status == 200, r
    g = srv.logs_raw("DescribeLogGroups", {"logGroupNamePrefix": name}).json["logGroups"][0]
    assert g["logGroupClass"] == "INFREQUENT_ACCESS"
    only = srv.logs_raw("DescribeLogGroups", {"logGroupClass": "INFREQUENT_ACCESS"})
    assert [x["logGroupName"] for x in only.json["logGroups"]] == [name]
    bad = srv.logs_raw("CreateLogGroup", {"logGroupName": unique("/x"), "logGroupClass": "NOPE"})
    assert bad.status == 400 and bad.error_type == "InvalidParameterException"


@pytest.mark.parametrize("name", ["has space", "a" * 513, "bad:colon", "star*", "ümlaut"])
def test_invalid_log_group_names(logs, name):
    with raises_code("InvalidParameterException"):
        logs.create_log_group(logGroupName=name)


def test_multibyte_input_in_error_messages(srv, logs):
    """Invalid values are echoed (truncated) in messages; truncation must not
    split a UTF-8 sequence, or the server cannot encode the error."""
    for name in ["a" + "ü" * 40, "ü" * 40, "aa" + "€" * 60]:
        with raises_code("InvalidParameterException"):
            logs.create_log_group(logGroupName=name)
    group = unique("/mb")
    logs.create_log_group(logGroupName=group)
    with raises_code("InvalidParameterException"):
        logs.create_log_stream(logGroupName=group, logStreamName="b" + "ü" * 40 + ":")
    with raises_code("InvalidParameterException"):
        logs.tag_log_group(logGroupName=group, tags={"a" + "ü" * 100: "x!"})
    with raises_code("InvalidParameterException"):
        logs.tag_resource(resourceArn="arn:aws:x:" + "ü" * 100, tags={"a": "b"})
    assert srv.alive() and srv.healthy()


def test_multibyte_input_in_model_validation_errors(srv, logs):
    with raises_code("InvalidParameterException"):
        logs.create_log_group(logGroupName="a" + "ü" * 600)
    assert srv.alive() and srv.healthy()


def test_describe_log_groups_pagination_and_filters(logs):
    base = unique("/pg")
    names = sorted(f"{base}/{i:02d}" for i in range(7))
    for n in names:
        logs.create_log_group(logGroupName=n)
    logs.create_log_group(logGroupName=f"{base}-other/x")
    seen, token, pages = [], None, 0
    while True:
        kw = {"logGroupNamePrefix": base + "/", "limit": 3}
        if token:
            kw["nextToken"] = token
        out = logs.describe_log_groups(**kw)
        seen += [g["logGroupName"] for g in out["logGroups"]]
        pages += 1
        token = out.get("nextToken")
        if not token:
            break
    assert seen == names
    assert pages == 3
    # the boto3 paginator agrees
    pager = logs.get_paginator("describe_log_groups")
    flat = [g["logGroupName"] for p in pager.paginate(logGroupNamePrefix=base,
                                                      PaginationConfig={"PageSize": 2})
            for g in p["logGroups"]]
    assert flat == sorted(names + [f"{base}-other/x"])
    # pattern: case-sensitive substring
    suffix = base.split("-")[-1]
    pat = logs.describe_log_groups(logGroupNamePattern=suffix + "-other")["logGroups"]
    assert [g["logGroupName"] for g in pat] == [f"{base}-other/x"]
    assert logs.describe_log_groups(logGroupNamePattern=suffix.upper() + "-OTHER")[
        "logGroups"] == [] or suffix == suffix.upper()
    with raises_code("InvalidParameterException"):
        logs.describe_log_groups(logGroupNamePrefix=base, logGroupNamePattern="x")
    with raises_code("InvalidParameterException"):
        logs.describe_log_groups(nextToken="garbage")


def test_describe_log_groups_by_identifiers(srv, logs):
    names = sorted(unique("/ids") for _ in range(3))
    for n in names:
        logs.create_log_group(logGroupName=n)
    r = srv.logs_raw("DescribeLogGroups", {"logGroupIdentifiers": [
        names[1], group_arn(names[0]) + ":*", group_arn(unique("/nope"))]})
    assert r.status == 200, r
    assert [g["logGroupName"] for g in r.json["logGroups"]] == names[:2]


def test_regions_are_separate(srv):
    east, west = srv.client("logs"), srv.client("logs", region="eu-west-1")
    name = unique("/region")
    east.create_log_group(logGroupName=name)
    assert west.describe_log_groups(logGroupNamePrefix=name)["logGroups"] == []
    west.create_log_group(logGroupName=name)
    g = west.describe_log_groups(logGroupNamePrefix=name)["logGroups"][0]
    assert g["arn"] == group_arn(name, region="eu-west-1") + ":*"


# --- streams ---


def test_log_streams_create_describe_delete(srv, logs):
    group = unique("/streams")
    with raises_code("ResourceNotFoundException") as h:
        logs.create_log_stream(logGroupName=group, logStreamName="s")
    assert h.error["Message"] == "The specified log group does not exist."
    logs.create_log_group(logGroupName=group)
    names = [f"stream-{i}" for i in range(5)]
    for n in reversed(names):
        logs.create_log_stream(logGroupName=group, logStreamName=n)
    with raises_code("ResourceAlreadyExistsException"):
        logs.create_log_stream(logGroupName=group, logStreamName=names[0])
    for bad in ["a:b", "a*b", "x" * 513]:
        with raises_code("InvalidParameterException"):
            logs.create_log_stream(logGroupName=group, logStreamName=bad)
    streams = logs.describe_log_streams(logGroupName=group)["logStreams"]
    assert [s["logStreamName"] for s in streams] == names
    s0 = streams[0]
    assert isinstance(s0["creationTime"], int)
    assert s0["arn"] == f"{group_arn(group)}:log-stream:{names[0]}"
    assert s0["storedBytes"] == 0
    assert "firstEventTimestamp" not in s0 and "lastEventTimestamp" not in s0

    # pagination, both directions
    def all_pages(**kw):
        out, token = [], None
        while True:
            extra = {"nextToken": token} if token else {}
            r = logs.describe_log_streams(logGroupName=group, limit=2, **kw, **extra)
            out += [s["logStreamName"] for s in r["logStreams"]]
            token = r.get("nextToken")
            if not token:
                return out

    assert all_pages() == names
    assert all_pages(descending=True) == list(reversed(names))
    assert all_pages(logStreamNamePrefix="stream-3") == ["stream-3"]

    # by logGroupIdentifier (ARN with and without :*); Debian's botocore still
    # requires logGroupName, so on the wire
    for ident in (group_arn(group), group_arn(group) + ":*", group):
        r = srv.logs_raw("DescribeLogStreams", {"logGroupIdentifier": ident, "limit": 1})
        assert r.status == 200, r
        assert r.json["logStreams"][0]["logStreamName"] == names[0]
    r = srv.logs_raw("DescribeLogStreams", {"logGroupName": group, "logGroupIdentifier": group})
    assert r.error_type == "InvalidParameterException"
    r = srv.logs_raw("DescribeLogStreams", {"logGroupIdentifier": group_arn(group, "eu-west-1")})
    assert r.error_type == "ResourceNotFoundException"

    # order by last event time
    t = now_ms()
    put(logs, group, "stream-2", [(t - 3000, "a")])
    put(logs, group, "stream-0", [(t - 2000, "b")])
    put(logs, group, "stream-4", [(t - 1000, "c")])
    by_time = all_pages(orderBy="LastEventTime", descending=True)
    assert by_time[:3] == ["stream-4", "stream-0", "stream-2"]
    assert sorted(by_time) == names
    by_time_asc = all_pages(orderBy="LastEventTime")
    assert by_time_asc[-3:] == ["stream-2", "stream-0", "stream-4"]
    with raises_code("InvalidParameterException"):
        logs.describe_log_streams(logGroupName=group, orderBy="LastEventTime",
                                  logStreamNamePrefix="s")
    s4 = [s for s in logs.describe_log_streams(logGroupName=group,
                                               logStreamNamePrefix="stream-4")["logStreams"]][0]
    assert s4["firstEventTimestamp"] == t - 1000 and s4["lastEventTimestamp"] == t - 1000
    assert isinstance(s4["lastIngestionTime"], int)
    assert s4["uploadSequenceToken"]

    logs.delete_log_stream(logGroupName=group, logStreamName="stream-4")
    with raises_code("ResourceNotFoundException") as h:
        logs.delete_log_stream(logGroupName=group, logStreamName="stream-4")
    assert h.error["Message"] == "The specified log stream does not exist."
    with raises_code("ResourceNotFoundException"):
        logs.get_log_events(logGroupName=group, logStreamName="stream-4")
    with raises_code("ResourceNotFoundException"):
        logs.describe_log_streams(logGroupName=unique("/missing"))


# --- events ---


def test_put_log_events_missing_group_and_stream(logs):
    group = unique("/missing")
    t = now_ms()
    with raises_code("ResourceNotFoundException") as h:
        put(logs, group, "s", [(t, "x")])
    assert h.error["Message"] == "The specified log group does not exist."
    logs.create_log_group(logGroupName=group)
    with raises_code("ResourceNotFoundException") as h:
        put(logs, group, "s", [(t, "x")])
    assert h.error["Message"] == "The specified log stream does not exist."


def test_put_get_round_trip_from_head_with_forward_tokens(logs):
    group, stream = make_stream(logs)
    t0 = now_ms() - 60_000
    events = [(t0 + i * 10, f"message {i}") for i in range(25)]
    out = put(logs, group, stream, events)
    assert out["nextSequenceToken"]
    assert "rejectedLogEventsInfo" not in out
    got, token, calls = [], None, 0
    while True:
        kw = {"nextToken": token} if token else {"startFromHead": True}
        r = logs.get_log_events(logGroupName=group, logStreamName=stream, limit=10, **kw)
        calls += 1
        assert r["nextForwardToken"].startswith("f/")
        assert r["nextBackwardToken"].startswith("b/")
        got += [(e["timestamp"], e["message"]) for e in r["events"]]
        for e in r["events"]:
            assert isinstance(e["ingestionTime"], int)
        if r["nextForwardToken"] == token:
            assert r["events"] == []
            break
        token = r["nextForwardToken"]
        assert calls < 10
    assert got == events
    assert calls == 4  # 10 + 10 + 5 + the empty page that returns the same token
    # The end token keeps working as a tail cursor.
    put(logs, group, stream, [(t0 + 1000, "late")])
    r = logs.get_log_events(logGroupName=group, logStreamName=stream, nextToken=token)
    assert [e["message"] for e in r["events"]] == ["late"]
    assert r["nextForwardToken"] != token


def test_get_newest_page_and_backward_tokens(logs):
    group, stream = make_stream(logs)
    t0 = now_ms() - 60_000
    events = [(t0 + i, f"m{i}") for i in range(25)]
    put(logs, group, stream, events)
    # default: the newest page, oldest first within it
    r = logs.get_log_events(logGroupName=group, logStreamName=stream, limit=10)
    assert [e["message"] for e in r["events"]] == [f"m{i}" for i in range(15, 25)]
    # forward from the newest page: nothing more, same token back
    f = r["nextForwardToken"]
    r2 = logs.get_log_events(logGroupName=group, logStreamName=stream, nextToken=f)
    assert r2["events"] == [] and r2["nextForwardToken"] == f
    # walk backwards to the start
    got = [e["message"] for e in r["events"]]
    token = r["nextBackwardToken"]
    for _ in range(10):
        r = logs.get_log_events(logGroupName=group, logStreamName=stream, limit=10,
                                nextToken=token)
        if r["nextBackwardToken"] == token:
            assert r["events"] == []
            break
        got = [e["message"] for e in r["events"]] + got
        token = r["nextBackwardToken"]
    else:
        pytest.fail("backward tokens never ended")
    assert got == [m for _, m in events]
    # default limit returns everything
    r = logs.get_log_events(logGroupName=group, logStreamName=stream)
    assert len(r["events"]) == 25


def test_get_log_events_time_range_and_identifier(srv, logs):
    group, stream = make_stream(logs)
    t0 = now_ms() - 60_000
    put(logs, group, stream, [(t0 + i * 1000, f"m{i}") for i in range(10)])
    r = logs.get_log_events(logGroupName=group, logStreamName=stream, startFromHead=True,
                            startTime=t0 + 2000, endTime=t0 + 5000)
    assert [e["message"] for e in r["events"]] == ["m2", "m3", "m4"]  # [start, end)
    r = srv.logs_raw("GetLogEvents", {"logGroupIdentifier": group_arn(group),
                                      "logStreamName": stream, "startFromHead": True,
                                      "limit": 1})
    assert r.status == 200, r
    assert r.json["events"][0]["message"] == "m0"


def test_get_log_events_empty_stream_tokens(logs):
    group, stream = make_stream(logs)
    r = logs.get_log_events(logGroupName=group, logStreamName=stream, startFromHead=True)
    assert r["events"] == []
    f, b = r["nextForwardToken"], r["nextBackwardToken"]
    r2 = logs.get_log_events(logGroupName=group, logStreamName=stream, nextToken=f)
    assert r2["events"] == [] and r2["nextForwardToken"] == f
    r3 = logs.get_log_events(logGroupName=group, logStreamName=stream, nextToken=b)
    assert r3["events"] == [] and r3["nextBackwardToken"] == b
    put(logs, group, stream, [(now_ms(), "first")])
    r4 = logs.get_log_events(logGroupName=group, logStreamName=stream, nextToken=f)
    assert [e["message"] for e in r4["events"]] == ["first"]


def test_tokens_are_validated(logs):
    group, stream = make_stream(logs)
    other_group, other = make_stream(logs, stream="other")
    put(logs, group, stream, [(now_ms(), "x")])
    r = logs.get_log_events(logGroupName=group, logStreamName=stream, startFromHead=True)
    tok = r["nextForwardToken"]
    for bad in ["garbage", "f/", "f/AAAA.0000", tok[:-1] + ("0" if tok[-1] != "0" else "1"),
                "b/" + tok[2:], "x" * 5000, "f/" + "A" * 64]:
        with raises_code("InvalidParameterException"):
            logs.get_log_events(logGroupName=group, logStreamName=stream, nextToken=bad)
    with raises_code("InvalidParameterException"):
        logs.get_log_events(logGroupName=other_group, logStreamName=other, nextToken=tok)
    with raises_code("InvalidParameterException"):
        logs.filter_log_events(logGroupName=group, nextToken=tok)


def test_put_log_events_must_be_chronological(logs):
    group, stream = make_stream(logs)
    t = now_ms()
    with raises_code("InvalidParameterException") as h:
        put(logs, group, stream, [(t, "b"), (t - 1, "a")])
    assert h.error["Message"] == (
        "Log events in a single PutLogEvents request must be in chronological order.")
    # equal timestamps are fine
    put(logs, group, stream, [(t, "a"), (t, "b")])
    r = logs.get_log_events(logGroupName=group, logStreamName=stream, startFromHead=True)
    assert [e["message"] for e in r["events"]] == ["a", "b"]


def test_put_log_events_size_limits(srv, logs):
    group, stream = make_stream(logs)
    t = now_ms()
    # 5 × 250,000 bytes > 1,048,576
    with raises_code("InvalidParameterException") as h:
        put(logs, group, stream, [(t, "x" * 250_000)] * 5)
    assert "too large" in h.error["Message"].lower()
    # exactly at the limit: 4 events, sum(len + 26) == 1,048,576
    size = 1_048_576 // 4 - 26
    assert size + 26 <= 262_144
    put(logs, group, stream, [(t, "y" * size)] * 4)
    # one event over 256 KiB
    with raises_code("InvalidParameterException"):
        put(logs, group, stream, [(t, "z" * 262_200)])
    # more than 10,000 events (botocore does not check list lengths)
    with raises_code("InvalidParameterException"):
        put(logs, group, stream, [(t, "e")] * 10_001)
    # 1 MB response cap: the four big events fill a page, the fifth goes to the next
    put(logs, group, stream, [(t, "w" * 1000)])
    r = logs.get_log_events(logGroupName=group, logStreamName=stream, startFromHead=True)
    assert len(r["events"]) == 4
    total, token = len(r["events"]), r["nextForwardToken"]
    while True:
        r = logs.get_log_events(logGroupName=group, logStreamName=stream, nextToken=token)
        if r["nextForwardToken"] == token:
            break
        total += len(r["events"])
        token = r["nextForwardToken"]
    assert total == 5
    g = logs.describe_log_groups(logGroupNamePrefix=group)["logGroups"][0]
    assert g["storedBytes"] == 4 * size + 1000


def test_put_log_events_rejects_old_and_future_events(logs):
    group, stream = make_stream(logs)
    t = now_ms()
    out = put(logs, group, stream, [(t - 15 * DAY_MS, "too old"), (t - 14 * DAY_MS - 1000, "old"),
                                    (t, "ok"), (t + 3 * 3600 * 1000, "too new")])
    assert out["rejectedLogEventsInfo"] == {"tooOldLogEventEndIndex": 2,
                                            "tooNewLogEventStartIndex": 3}
    r = logs.get_log_events(logGroupName=group, logStreamName=stream, startFromHead=True)
    assert [e["message"] for e in r["events"]] == ["ok"]
    # all rejected is still a success
    out = put(logs, group, stream, [(t + 5 * 3600 * 1000, "future")])
    assert out["rejectedLogEventsInfo"] == {"tooNewLogEventStartIndex": 0}


def test_put_log_events_batch_span_and_sequence_token(logs):
    group, stream = make_stream(logs)
    t = now_ms()
    with raises_code("InvalidParameterException"):
        put(logs, group, stream, [(t - 25 * 3600 * 1000, "a"), (t, "b")])
    # sequence tokens are accepted and ignored
    out = logs.put_log_events(logGroupName=group, logStreamName=stream, sequenceToken="bogus",
                              logEvents=[{"timestamp": t, "message": "a"}])
    out2 = logs.put_log_events(logGroupName=group, logStreamName=stream,
                               sequenceToken="bogus",
                               logEvents=[{"timestamp": t, "message": "b"}])
    assert out["nextSequenceToken"] != out2["nextSequenceToken"]


def test_unicode_and_escapes_round_trip(logs):
    group, stream = make_stream(logs)
    msgs = ["héllo wörld ✓", "tab\there", "quote \" backslash \\", "emoji 🚀", "{\"json\": 1}"]
    t = now_ms()
    put(logs, group, stream, [(t + i, m) for i, m in enumerate(msgs)])
    r = logs.get_log_events(logGroupName=group, logStreamName=stream, startFromHead=True)
    assert [e["message"] for e in r["events"]] == msgs
    r = logs.filter_log_events(logGroupName=group, filterPattern='"wörld"')
    assert [e["message"] for e in r["events"]] == [msgs[0]]


# --- FilterLogEvents ---


def seed_filter_group(logs):
    group = unique("/filter")
    logs.create_log_group(logGroupName=group)
    for s in ("web-1", "web-2", "worker"):
        logs.create_log_stream(logGroupName=group, logStreamName=s)
    t = now_ms() - 60_000
    put(logs, group, "web-1", [(t + 0, "INFO GET /index 200"),
                               (t + 20, "ERROR GET /api 500 upstream timeout"),
                               (t + 40, "WARN slow request /api")])
    put(logs, group, "web-2", [(t + 10, "INFO GET /healthz 200"),
                               (t + 30, "ERROR connection reset by peer")])
    put(logs, group, "worker", [(t + 5, '{"level":"error","code":503,"job":"a"}'),
                                (t + 15, '{"level":"info","code":200,"job":"b"}'),
                                (t + 25, '{"level":"error","code":404,"job":"c"}')])
    return group, t


def msgs(r):
    return [e["message"] for e in r["events"]]


def test_filter_log_events_patterns(logs):
    group, t = seed_filter_group(logs)
    r = logs.filter_log_events(logGroupName=group)
    assert len(r["events"]) == 8
    assert [e["timestamp"] for e in r["events"]] == sorted(e["timestamp"] for e in r["events"])
    assert "nextToken" not in r
    ids = [e["eventId"] for e in r["events"]]
    assert all(len(i) == 56 and i.isdigit() for i in ids), ids
    assert len(set(ids)) == 8
    ev = r["events"][0]
    assert set(ev) >= {"logStreamName", "timestamp", "message", "ingestionTime", "eventId"}
    assert ev["logStreamName"] == "web-1"

    def f(pattern, **kw):
        return msgs(logs.filter_log_events(logGroupName=group, filterPattern=pattern, **kw))

    assert f("ERROR") == ["ERROR GET /api 500 upstream timeout", "ERROR connection reset by peer"]
    assert f("Error") == []  # case-sensitive
    assert f("ERROR GET") == ["ERROR GET /api 500 upstream timeout"]
    assert f('"connection reset"') == ["ERROR connection reset by peer"]
    assert f("?WARN ?timeout") == ["ERROR GET /api 500 upstream timeout",
                                   "WARN slow request /api"]
    assert f("GET -healthz") == ["INFO GET /index 200", "ERROR GET /api 500 upstream timeout"]
    assert f('{ $.level = "error" }') == ['{"level":"error","code":503,"job":"a"}',
                                         '{"level":"error","code":404,"job":"c"}']
    assert f("{ $.code != 200 && $.level = err* }") == [
        '{"level":"error","code":503,"job":"a"}', '{"level":"error","code":404,"job":"c"}']
    assert f("{ $.code >= 500 || $.job = \"b\" }") == [
        '{"level":"error","code":503,"job":"a"}', '{"level":"info","code":200,"job":"b"}']
    assert f("{ $.missing NOT EXISTS && $.code = 404 }") == [
        '{"level":"error","code":404,"job":"c"}']
    # stream selection
    assert f("ERROR", logStreamNames=["web-2"]) == ["ERROR connection reset by peer"]
    assert len(f("", logStreamNamePrefix="web-")) == 5
    assert f("", logStreamNames=["nope"]) == []
    with raises_code("InvalidParameterException"):
        logs.filter_log_events(logGroupName=group, logStreamNames=["web-1"],
                               logStreamNamePrefix="web")
    # time range [start, end)
    assert f("", startTime=t + 10, endTime=t + 25) == [
        "INFO GET /healthz 200", '{"level":"info","code":200,"job":"b"}',
        "ERROR GET /api 500 upstream timeout"]
    # unsupported / malformed patterns
    for bad in ["[ip, user]", "%ERR.*%", "{ $.a = ", '"open']:
        with raises_code("InvalidParameterException"):
            logs.filter_log_events(logGroupName=group, filterPattern=bad)
    with raises_code("ResourceNotFoundException"):
        logs.filter_log_events(logGroupName=unique("/missing"))


def test_filter_log_events_pagination(logs):
    group, _ = seed_filter_group(logs)
    pages, seen, token = 0, [], None
    while True:
        kw = {"nextToken": token} if token else {}
        r = logs.filter_log_events(logGroupName=group, limit=3, **kw)
        pages += 1
        seen += [e["eventId"] for e in r["events"]]
        token = r.get("nextToken")
        if not token:
            break
        assert pages < 10
    assert len(seen) == 8 and len(set(seen)) == 8
    assert pages == 3
    pager = logs.get_paginator("filter_log_events")
    flat = [e["message"] for p in pager.paginate(logGroupName=group, filterPattern="ERROR",
                                                 PaginationConfig={"PageSize": 1})
            for e in p["events"]]
    assert len(flat) == 2


# --- the aws CLI ---


def test_cli_get_log_events(srv, logs):
    group, stream = make_stream(logs)
    t = now_ms()
    put(logs, group, stream, [(t + i, f"cli {i}") for i in range(3)])
    p = srv.cli("get-log-events", "--log-group-name", group, "--log-stream-name", stream,
                "--start-from-head")
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert [e["message"] for e in out["events"]] == ["cli 0", "cli 1", "cli 2"]
    assert out["nextForwardToken"].startswith("f/")
    p = srv.cli("get-log-events", "--log-group-name", group, "--log-stream-name", "nope")
    assert p.returncode != 0 and "ResourceNotFoundException" in p.stderr


def test_cli_tail_since(srv, logs):
    group, _ = seed_filter_group(logs)
    old_stream = "old"
    logs.create_log_stream(logGroupName=group, logStreamName=old_stream)
    put(logs, group, old_stream, [(now_ms() - 3600 * 1000, "an hour ago")])
    p = srv.cli("tail", group, "--since", "10m")
    assert p.returncode == 0, p.stderr
    lines = p.stdout.strip().splitlines()
    assert len(lines) == 8, p.stdout
    assert "an hour ago" not in p.stdout
    assert any("web-2 ERROR connection reset by peer" in ln for ln in lines)
    p = srv.cli("tail", group, "--since", "2h", "--filter-pattern", "hour")
    assert p.returncode == 0, p.stderr
    assert "an hour ago" in p.stdout


def test_cli_tail_follow(srv, logs):
    """`aws logs tail --follow` polls FilterLogEvents every 5 s from the newest
    timestamp seen and de-duplicates by eventId."""
    group, stream = make_stream(logs)
    put(logs, group, stream, [(now_ms(), "before follow")])
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(srv.base_dir),
        "AWS_SHARED_CREDENTIALS_FILE": str(srv.credentials_path),
        "AWS_CONFIG_FILE": str(srv.base_dir / "aws-config-none"),
        "AWS_DEFAULT_REGION": REGION,
        "AWS_PAGER": "",
        "PYTHONUNBUFFERED": "1",
    }
    proc = subprocess.Popen([AWS_CLI, "--endpoint-url", srv.endpoint, "logs", "tail", group,
                             "--follow", "--since", "5m"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    lines = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")),
                              daemon=True)
    reader.start()
    try:
        wait_for(lambda: any("before follow" in ln for ln in lines), timeout=20,
                 what="the first tail output")
        put(logs, group, stream, [(now_ms(), "after follow")])
        wait_for(lambda: any("after follow" in ln for ln in lines), timeout=20,
                 what="the followed event")
        time.sleep(0.5)
        assert sum("before follow" in ln for ln in lines) == 1  # no duplicates across polls
        assert proc.poll() is None
    finally:
        proc.kill()
        proc.wait()
        reader.join(5)


# --- retention ---


def test_retention_policy_validation(logs):
    group = unique("/ret")
    logs.create_log_group(logGroupName=group)
    for bad in (0, 2, 4, 366, 10000):
        with raises_code("InvalidParameterException"):
            logs.put_retention_policy(logGroupName=group, retentionInDays=bad)
    for good in (1, 3653, 30):
        logs.put_retention_policy(logGroupName=group, retentionInDays=good)
    g = logs.describe_log_groups(logGroupNamePrefix=group)["logGroups"][0]
    assert g["retentionInDays"] == 30
    logs.delete_retention_policy(logGroupName=group)
    g = logs.describe_log_groups(logGroupNamePrefix=group)["logGroups"][0]
    assert "retentionInDays" not in g
    with raises_code("ResourceNotFoundException"):
        logs.put_retention_policy(logGroupName=unique("/nope"), retentionInDays=1)
    with raises_code("ResourceNotFoundException"):
        logs.delete_retention_policy(logGroupName=unique("/nope"))


def test_retention_is_enforced(logs):
    group, stream = make_stream(logs)
    t = now_ms()
    old = t - int(1.5 * DAY_MS)
    put(logs, group, stream, [(old, "old event")])  # a batch spans at most 24 h
    put(logs, group, stream, [(t, "new event")])
    before = logs.describe_log_groups(logGroupNamePrefix=group)["logGroups"][0]["storedBytes"]
    assert before == len("old event") + len("new event")
    logs.put_retention_policy(logGroupName=group, retentionInDays=1)

    def swept():
        r = logs.get_log_events(logGroupName=group, logStreamName=stream, startFromHead=True)
        return [e["message"] for e in r["events"]] == ["new event"]

    wait_for(swept, timeout=15, interval=0.25, what="the retention sweep")
    g = logs.describe_log_groups(logGroupNamePrefix=group)["logGroups"][0]
    assert g["storedBytes"] == len("new event")
    # events older than the retention are now rejected as expired
    out = put(logs, group, stream, [(old - 1000, "expired a"), (old, "expired b"),
                                    (t - 1000, "fresh")])
    assert out["rejectedLogEventsInfo"] == {"expiredLogEventEndIndex": 2}
    r = logs.get_log_events(logGroupName=group, logStreamName=stream, startFromHead=True)
    assert [e["message"] for e in r["events"]] == ["fresh", "new event"]


# --- tags ---


def test_tags_log_group_and_resource(logs):
    group = unique("/tags")
    logs.create_log_group(logGroupName=group, tags={"a": "1"})
    assert logs.list_tags_log_group(logGroupName=group)["tags"] == {"a": "1"}
    logs.tag_log_group(logGroupName=group, tags={"b": "2", "a": "one"})
    assert logs.list_tags_log_group(logGroupName=group)["tags"] == {"a": "one", "b": "2"}
    logs.untag_log_group(logGroupName=group, tags=["a"])
    assert logs.list_tags_log_group(logGroupName=group)["tags"] == {"b": "2"}
    arn = group_arn(group)
    logs.tag_resource(resourceArn=arn, tags={"c": "3"})
    assert logs.list_tags_for_resource(resourceArn=arn + ":*")["tags"] == {"b": "2", "c": "3"}
    logs.untag_resource(resourceArn=arn, tagKeys=["b", "missing"])
    assert logs.list_tags_for_resource(resourceArn=arn)["tags"] == {"c": "3"}
    with raises_code("TooManyTagsException"):
        logs.tag_resource(resourceArn=arn, tags={f"k{i}": "v" for i in range(50)})
    with raises_code("InvalidParameterException"):
        logs.tag_resource(resourceArn=arn, tags={"aws:reserved": "x"})
    with raises_code("ResourceNotFoundException"):
        logs.list_tags_for_resource(resourceArn=group_arn(unique("/nope")))
    with raises_code("ResourceNotFoundException"):
        logs.list_tags_for_resource(resourceArn=group_arn(group, region="eu-west-1"))
    with raises_code("InvalidParameterException"):
        logs.list_tags_for_resource(resourceArn="arn:aws:ecs:us-east-1:000000000000:cluster/x")
    with raises_code("ResourceNotFoundException"):
        logs.list_tags_log_group(logGroupName=unique("/nope"))


# --- lifecycle ---


def test_delete_log_group_deletes_streams_and_events(logs):
    group, stream = make_stream(logs)
    put(logs, group, stream, [(now_ms(), "gone")])
    logs.delete_log_group(logGroupName=group)
    logs.create_log_group(logGroupName=group)
    assert logs.describe_log_streams(logGroupName=group)["logStreams"] == []
    assert logs.filter_log_events(logGroupName=group)["events"] == []
    g = logs.describe_log_groups(logGroupNamePrefix=group)["logGroups"][0]
    assert g["storedBytes"] == 0


def test_unimplemented_operation(logs):
    group = unique("/m")
    logs.create_log_group(logGroupName=group)
    with raises_code("NotImplementedException"):
        logs.put_metric_filter(logGroupName=group, filterName="f", filterPattern="ERROR",
                               metricTransformations=[{"metricName": "m",
                                                       "metricNamespace": "n",
                                                       "metricValue": "1"}])


def test_acknowledged_events_survive_kill9(srv):
    logs = srv.client("logs")
    group, stream = make_stream(logs)
    t = now_ms()
    put(logs, group, stream, [(t, "durable 1"), (t + 1, "durable 2")])
    logs.put_retention_policy(logGroupName=group, retentionInDays=7)
    srv.kill9()
    srv.start()
    logs = srv.client("logs")
    r = logs.get_log_events(logGroupName=group, logStreamName=stream, startFromHead=True)
    assert [e["message"] for e in r["events"]] == ["durable 1", "durable 2"]
    g = logs.describe_log_groups(logGroupNamePrefix=group)["logGroups"][0]
    assert g["retentionInDays"] == 7
    # tokens issued before the restart still work (the key is persistent)
    tok = r["nextBackwardToken"]
    r2 = logs.get_log_events(logGroupName=group, logStreamName=stream, nextToken=tok)
    assert r2["events"] == []


def test_clean_restart_keeps_everything(srv):
    logs = srv.client("logs")
    group, stream = make_stream(logs)
    put(logs, group, stream, [(now_ms(), "kept")])
    assert srv.restart() == 0
    logs = srv.client("logs")
    r = logs.filter_log_events(logGroupName=group)
    assert msgs(r) == ["kept"]
