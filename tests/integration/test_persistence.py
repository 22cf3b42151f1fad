"""Durability: clean restarts keep everything, kill -9 loses no acknowledged write,
the data dir is exclusive, and the credentials file is stable and private."""
import os
import stat
import subprocess
import threading
import time

import pytest
from botocore.exceptions import BotoCoreError, ClientError

from conftest import SKIFF_BIN
from ecs_helpers import (describe_instance, describe_task, register_instance,
                         register_simple_taskdef, remaining, report_task)


def test_sigterm_is_a_clean_shutdown(server):
    server.client().create_cluster(clusterName="x")
    rc = server.stop()
    assert rc == 0, server.log()
    assert "stopped" in server.log()


def test_restart_keeps_everything(server):
    ecs = server.client()
    cluster = "persist"
    ecs.create_cluster(clusterName=cluster, tags=[{"key": "k", "value": "v"}],
                       settings=[{"name": "containerInsights", "value": "enabled"}])
    ecs.create_cluster(clusterName="doomed")
    ecs.delete_cluster(cluster="doomed")
    for _ in range(3):
        register_simple_taskdef(ecs, family="fam", tags=[{"key": "td", "value": "1"}])
    ecs.deregister_task_definition(taskDefinition="fam:2")
    ci = register_instance(ecs, cluster, tags=[{"key": "rack", "value": "r9"}])
    inst = ci["containerInstanceArn"]
    ecs.put_attributes(cluster=cluster, attributes=[{"name": "stack", "value": "blue",
                                                     "targetId": inst}])
    td = register_simple_taskdef(ecs, family="web", host_port=8080)
    running = ecs.run_task(cluster=cluster, taskDefinition=td["taskDefinitionArn"],
                           startedBy="me", tags=[{"key": "t", "value": "1"}])["tasks"][0]
    report_task(ecs, cluster, running, "RUNNING")
    stopped = ecs.run_task(cluster=cluster, taskDefinition="fam:3")["tasks"][0]
    ecs.stop_task(cluster=cluster, task=stopped["taskArn"], reason="bye")
    report_task(ecs, cluster, stopped, "STOPPED")
    ecs.put_account_setting(name="awsvpcTrunking", value="enabled")
    ecs.create_capacity_provider(name="mycp", autoScalingGroupProvider={
        "autoScalingGroupArn": "arn:aws:autoscaling:us-east-1:000000000000:autoScalingGroup:"
                               "x:autoScalingGroupName/asg"})
    for i in range(3):
        ecs.create_cluster(clusterName=f"page-{i}")
    token = ecs.list_clusters(maxResults=1)["nextToken"]
    before_rem = remaining(ecs, cluster, inst)
    before_clusters = sorted(ecs.list_clusters()["clusterArns"])

    assert server.restart() == 0
    ecs = server.client()

    assert sorted(ecs.list_clusters()["clusterArns"]) == before_clusters
    c = ecs.describe_clusters(clusters=[cluster], include=["TAGS", "SETTINGS"])["clusters"][0]
    assert c["status"] == "ACTIVE"
    assert c["tags"] == [{"key": "k", "value": "v"}]
    assert {"name": "containerInsights", "value": "enabled"} in c["settings"]
    assert c["runningTasksCount"] == 1 and c["pendingTasksCount"] == 0
    assert c["registeredContainerInstancesCount"] == 1
    assert ecs.describe_clusters(clusters=["doomed"])["clusters"][0]["status"] == "INACTIVE"

    arns = ecs.list_task_definitions(familyPrefix="fam")["taskDefinitionArns"]
    assert [a.rsplit(":", 1)[1] for a in arns] == ["1", "3"]
    assert ecs.describe_task_definition(taskDefinition="fam:2")["taskDefinition"][
        "status"] == "INACTIVE"
    assert ecs.describe_task_definition(taskDefinition="fam", include=["TAGS"])["tags"] == [
        {"key": "td", "value": "1"}]
    assert register_simple_taskdef(ecs, family="fam")["revision"] == 4

    d = describe_instance(ecs, cluster, inst)
    assert d["status"] == "ACTIVE"
    assert {"name": "stack", "value": "blue"} in [
        {k: a[k] for k in ("name", "value") if k in a} for a in d["attributes"]]
    assert remaining(ecs, cluster, inst) == before_rem
    assert ecs.list_tags_for_resource(resourceArn=inst)["tags"] == [{"key": "rack",
                                                                     "value": "r9"}]

    t = describe_task(ecs, cluster, running["taskArn"], include_tags=True)
    assert t["lastStatus"] == "RUNNING" and t["startedBy"] == "me"
    assert t["tags"] == [{"key": "t", "value": "1"}]
    s = describe_task(ecs, cluster, stopped["taskArn"])
    assert (s["lastStatus"], s["stopCode"], s["stoppedReason"]) == ("STOPPED", "UserInitiated",
                                                                   "bye")
    assert ecs.list_tasks(cluster=cluster)["taskArns"] == [running["taskArn"]]

    eff = {x["name"]: x["value"] for x in ecs.list_account_settings(
        name="awsvpcTrunking")["settings"]}
    assert eff == {"awsvpcTrunking": "enabled"}
    cp = ecs.describe_capacity_providers(capacityProviders=["mycp"])["capacityProviders"]
    assert cp and cp[0]["status"] == "ACTIVE"

    # Pagination tokens handed out before the restart still work.
    page = ecs.list_clusters(nextToken=token, maxResults=100)
    assert len(page["clusterArns"]) == len(before_clusters) - 1

    # And the task can still finish, releasing its resources.
    report_task(ecs, cluster, running, "STOPPED")
    assert remaining(ecs, cluster, inst)["CPU"] == 2048


def test_credentials_file_mode_and_stability(server):
    p = server.credentials_path
    st = os.stat(p)
    assert stat.S_IMODE(st.st_mode) == 0o600
    content = p.read_text()
    assert "[default]" in content
    ak, sk = server.credentials()
    assert ak and sk and len(sk) >= 16
    server.restart()
    assert stat.S_IMODE(os.stat(p).st_mode) == 0o600
    assert p.read_text() == content
    assert server.credentials() == (ak, sk)
    server.client().list_clusters()


def test_data_dir_is_private(server):
    assert stat.S_IMODE(os.stat(server.data_dir).st_mode) & 0o077 == 0


def test_second_server_on_same_data_dir_fails(server, server_factory):
    other = server_factory("second")
    other.data_dir = server.data_dir
    p = subprocess.Popen(other.argv(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         text=True)
    try:
        out, _ = p.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        p.kill()
        out, _ = p.communicate()
        pytest.fail(f"a second server on the same data dir kept running:\n{out}")
    assert p.returncode != 0
    msg = out.lower()
    assert "in use" in msg or "lock" in msg, msg
    # The first server is unaffected.
    assert server.healthy()
    server.client().list_clusters()


def test_restart_after_kill9(server):
    ecs = server.client()
    ecs.create_cluster(clusterName="before-kill")
    server.kill9()
    server.start()
    assert server.client().describe_clusters(clusters=["before-kill"])["clusters"][0][
        "status"] == "ACTIVE"


def test_kill9_loses_no_acknowledged_write(server):
    acked_clusters = []
    acked_tds = []  # (family, revision)
    lock = threading.Lock()
    stop = threading.Event()
    errors = []

    def cluster_writer(i):
        c = server.client()
        n = 0
        while not stop.is_set():
            name = f"w{i}-{n}"
            n += 1
            try:
                c.create_cluster(clusterName=name)
            except (BotoCoreError, ClientError, OSError):
                return
            with lock:
                acked_clusters.append(name)

    def td_writer(i):
        c = server.client()
        fam = f"fam{i}"
        while not stop.is_set():
            try:
                rev = register_simple_taskdef(c, family=fam)["revision"]
            except (BotoCoreError, ClientError, OSError):
                return
            except Exception as e:  # noqa: BLE001 - recorded for the assertion
                errors.append(repr(e))
                return
            with lock:
                acked_tds.append((fam, rev))

    threads = [threading.Thread(target=cluster_writer, args=(i,)) for i in range(3)]
    threads += [threading.Thread(target=td_writer, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with lock:
            if len(acked_clusters) >= 60 and len(acked_tds) >= 60:
                break
        time.sleep(0.05)
    time.sleep(0.3)  # make sure writes are in flight when the process dies
    server.kill9()
    stop.set()
    for t in threads:
        t.join(30)
    assert not errors, errors
    assert acked_clusters and acked_tds, "the writers made no progress"
    print(f"kill -9 after {len(acked_clusters)} clusters and {len(acked_tds)} task definitions")

    server.start()
    ecs = server.client()
    listed = set()
    token = None
    while True:
        kw = {"nextToken": token} if token else {}
        page = ecs.list_clusters(**kw)
        listed.update(a.rsplit("/", 1)[1] for a in page["clusterArns"])
        token = page.get("nextToken")
        if not token:
            break
    lost = [n for n in acked_clusters if n not in listed]
    assert not lost, f"{len(lost)} acknowledged clusters lost after kill -9: {lost[:10]}"

    by_family = {}
    for fam, rev in acked_tds:
        by_family.setdefault(fam, []).append(rev)
    for fam, revs in by_family.items():
        assert sorted(revs) == list(range(1, len(revs) + 1)), (fam, revs)
        arns = []
        token = None
        while True:
            kw = {"nextToken": token} if token else {}
            page = ecs.list_task_definitions(familyPrefix=fam, **kw)
            arns += page["taskDefinitionArns"]
            token = page.get("nextToken")
            if not token:
                break
        have = {int(a.rsplit(":", 1)[1]) for a in arns}
        missing = sorted(set(revs) - have)
        assert not missing, f"{fam}: acknowledged revisions lost after kill -9: {missing}"
        # Numbering continues after the highest acknowledged (or unacknowledged) revision.
        nxt = register_simple_taskdef(ecs, family=fam)["revision"]
        assert nxt > max(revs)
        assert nxt not in have


def test_env_credentials_on_first_start(server_factory):
    ak = "AKIASKIFFTESTKEY0001"
    sk = "skiffTestSecretKey/with+chars0123456789ab"
    s = server_factory("envcreds", env={"SKIFF_ROOT_ACCESS_KEY_ID": ak,
                                        "SKIFF_ROOT_SECRET_ACCESS_KEY": sk}).start()
    assert s.credentials() == (ak, sk)
    assert stat.S_IMODE(os.stat(s.credentials_path).st_mode) == 0o600
    ecs = s.client(access_key=ak, secret_key=sk)
    assert ecs.create_cluster(clusterName="env")["cluster"]["status"] == "ACTIVE"
    out = s.aws("list-clusters")
    assert out["clusterArns"] == ["arn:aws:ecs:us-east-1:000000000000:cluster/env"]
    r = s.raw("ListClusters", {}, access_key="AKIASKIFFTESTKEY0002", secret_key=sk)
    assert r.error_type == "UnrecognizedClientException", r

    # The env is only honoured on first start: the stored root keys stay.
    s.stop()
    s.env = {"SKIFF_ROOT_ACCESS_KEY_ID": "AKIASKIFFOTHERKEY999",
             "SKIFF_ROOT_SECRET_ACCESS_KEY": "another-secret-that-is-long-enough"}
    s.start()
    assert s.credentials() == (ak, sk)
    s.client(access_key=ak, secret_key=sk).list_clusters()


@pytest.mark.parametrize("env", [
    {"SKIFF_ROOT_ACCESS_KEY_ID": "lowercase-key-id-x", "SKIFF_ROOT_SECRET_ACCESS_KEY": "s" * 40},
    {"SKIFF_ROOT_ACCESS_KEY_ID": "AKIASKIFFTESTKEY0001"},
    {"SKIFF_ROOT_ACCESS_KEY_ID": "AKIASKIFFTESTKEY0001", "SKIFF_ROOT_SECRET_ACCESS_KEY": "short"},
])
def test_invalid_env_credentials_refused(server_factory, env):
    s = server_factory("badenv", env=env)
    with pytest.raises(Exception) as ei:
        s.start(timeout=10)
    assert "SKIFF_ROOT" in str(ei.value)


def test_generated_credentials_differ_per_data_dir(server_factory):
    a = server_factory("a").start()
    b = server_factory("b").start()
    assert a.credentials() != b.credentials()
    # Keys of one server are unknown to the other.
    ak, sk = a.credentials()
    r = b.raw("ListClusters", {}, access_key=ak, secret_key=sk)
    assert r.error_type == "UnrecognizedClientException", r


def test_binary_version():
    p = subprocess.run([SKIFF_BIN, "version"], capture_output=True, text=True, timeout=10)
    assert p.returncode == 0
    assert p.stdout.strip()


def test_kill9_keeps_placement_accounting_consistent(server):
    """RunTask writes the task and the instance's reservation atomically: after a crash
    mid-load, remainingResources and counts match the tasks that exist."""
    ecs = server.client()
    ecs.create_cluster(clusterName="acct")
    inst = register_instance(ecs, "acct", cpu=100000, memory=1000000)["containerInstanceArn"]
    td = register_simple_taskdef(ecs, cpu=3, memory=7)
    acked = []
    lock = threading.Lock()

    def runner():
        c = server.client()
        while True:
            try:
                out = c.run_task(cluster="acct", taskDefinition=td["taskDefinitionArn"], count=2)
            except (BotoCoreError, ClientError, OSError):
                return
            with lock:
                acked.extend(t["taskArn"] for t in out["tasks"])

    threads = [threading.Thread(target=runner) for _ in range(4)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with lock:
            if len(acked) >= 200:
                break
        time.sleep(0.02)
    server.kill9()
    for t in threads:
        t.join(30)
    server.start()
    ecs = server.client()
    tasks = []
    token = None
    while True:
        kw = {"nextToken": token} if token else {}
        page = ecs.list_tasks(cluster="acct", **kw)
        tasks += page["taskArns"]
        token = page.get("nextToken")
        if not token:
            break
    assert set(acked) <= set(tasks), "acknowledged tasks lost"
    n = len(tasks)
    r = remaining(ecs, "acct", inst)
    assert (r["CPU"], r["MEMORY"]) == (100000 - 3 * n, 1000000 - 7 * n)
    c = ecs.describe_clusters(clusters=["acct"])["clusters"][0]
    assert c["pendingTasksCount"] == n
    assert describe_instance(ecs, "acct", inst)["pendingTasksCount"] == n
