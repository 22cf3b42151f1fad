"""Node agent image handling with real pulls: images pushed to skiff's own
ECR (pulled with an ECR token under their amazonaws.com name),
ECS_IMAGE_PULL_BEHAVIOR against a registry that goes away, image garbage
collection, and hostile layers that try to write outside the image store."""
import hashlib
import io
import json
import os
import pathlib
import subprocess
import tarfile
import time
import uuid

import pytest

import oci_images
from agent_helpers import (ACCOUNT, IDLE, Out, TestRegistry, cmap, container, new_base, node_ctx,
                           node_fixture, run, safe_rmtree, shell, stop_and_wait, summary,
                           unique_image, wait_task, wait_tasks, wait_until)
from agent_helpers import registry, scratch  # noqa: F401  (fixtures)
from conftest import REGION

node = node_fixture(name="images")


@pytest.fixture
def ecs(node):
    return node.client("ecs")


def diff_ids(layout):
    lay = pathlib.Path(layout)
    idx = json.loads((lay / "index.json").read_text())
    blob = lambda d: (lay / "blobs" / "sha256" / d.split(":")[1]).read_bytes()  # noqa: E731
    man = json.loads(blob(idx["manifests"][-1]["digest"]))
    return json.loads(blob(man["config"]["digest"]))["rootfs"]["diff_ids"]


def image_record(agent_data, ref):
    return pathlib.Path(agent_data) / "images" / "images" / (
        hashlib.sha256(ref.encode()).hexdigest() + ".json")


def layer_dir(agent_data, diff_id):
    return pathlib.Path(agent_data) / "images" / "layers" / diff_id.split(":")[1]


def run_marker(ecs, ref, out, **kw):
    c = shell("m", ref, "cat /etc/marker > /out/marker", out=out, **kw)
    return wait_task(ecs, run(ecs, [c], out=out), "STOPPED", 30)


# --- skiff's own ECR --------------------------------------------------------------------


def test_task_image_from_skiffs_ecr(node, ecs, scratch):
    repo = f"it/ecr-{uuid.uuid4().hex[:8]}"
    node.aws("create-repository", "--repository-name", repo, service="ecr")
    p = node._cli(["get-login-password"], service="ecr")
    assert p.returncode == 0, p.stderr
    token = p.stdout.strip()
    marker = uuid.uuid4().hex
    lay = str(pathlib.Path(scratch) / "ecr-layout")
    oci_images.build_layout(lay, [oci_images.busybox_layer(),
                                  oci_images.file_layer({"etc/marker": marker.encode() + b"\n"})],
                            config={"Cmd": ["/bin/sh"], "Env": ["PATH=/bin"]})
    cp = subprocess.run(["skopeo", "copy", "--quiet", "--dest-creds", f"AWS:{token}",
                         "--dest-tls-verify=false", f"oci:{lay}:latest",
                         f"docker://127.0.0.1:{node.port}/{repo}:v1"],
                        capture_output=True, text=True, timeout=120)
    assert cp.returncode == 0, cp.stderr
    digest = node.aws("describe-images", "--repository-name", repo,
                      service="ecr")["imageDetails"][0]["imageDigest"]
    # skiff reports its own host as repositoryUri; task definitions may also use
    # the ECR form ACCOUNT.dkr.ecr.REGION.amazonaws.com/REPO
    uri = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/{repo}"
    out1, out2 = Out(scratch), Out(scratch)
    # the ECR name (the agent authenticates with an ECR token and pulls from skiff) ...
    t1 = run_marker(ecs, f"{uri}:v1", out1)
    # ... and skiff's registry host itself
    t2 = run_marker(ecs, f"127.0.0.1:{node.port}/{repo}:v1", out2)
    for t, o in ((t1, out1), (t2, out2)):
        c = cmap(t)["m"]
        assert c.get("exitCode") == 0, summary(t)
        assert o.read("marker") == marker + "\n"
        assert c.get("imageDigest") == digest, (c.get("imageDigest"), digest)


def test_missing_ecr_repository_cannot_pull(ecs):
    ref = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/it/no-such-repo-{uuid.uuid4().hex[:6]}:v1"
    t = wait_task(ecs, run(ecs, [container("m", ref, command=["true"])]), "STOPPED", 30)
    assert (cmap(t)["m"].get("reason") or "").startswith("CannotPullContainerError"), summary(t)
    assert t["stopCode"] == "TaskFailedToStart"


# --- ECS_IMAGE_PULL_BEHAVIOR ---------------------------------------------------------------


@pytest.mark.parametrize("behavior", ["default", "always", "once", "prefer-cached"])
def test_image_pull_behavior(behavior, scratch):
    reg = TestRegistry()
    try:
        ref, _ = unique_image(scratch, reg, f"pull-{behavior}")
        with node_ctx(f"pull-{behavior}", {"ECS_IMAGE_PULL_BEHAVIOR": behavior}) as n:
            ecs = n.client("ecs")
            manifests = lambda: len(reg.requests("/manifests/"))  # noqa: E731
            before = manifests()
            t = run_marker(ecs, ref, Out(scratch))
            assert cmap(t)["m"].get("exitCode") == 0, summary(t)
            first = manifests()
            assert first > before, "the first run pulls the image"
            # registry up, image cached
            t = run_marker(ecs, ref, Out(scratch))
            assert cmap(t)["m"].get("exitCode") == 0, summary(t)
            if behavior in ("once", "prefer-cached"):
                assert manifests() == first, "a cached image is not pulled again"
            else:
                assert manifests() > first, "default/always pull again"
            # registry down, image cached
            reg.halt()
            o = Out(scratch)
            t = run_marker(ecs, ref, o)
            c = cmap(t)["m"]
            if behavior == "always":
                assert (c.get("reason") or "").startswith("CannotPullContainerError"), summary(t)
                assert t["stopCode"] == "TaskFailedToStart"
            else:
                assert c.get("exitCode") == 0, summary(t)
                assert o.read("marker")
            if behavior == "default":
                assert "using the cached image" in n.agent_log()
    finally:
        reg.stop()


# --- image cleanup ------------------------------------------------------------------------


def test_image_cleanup_removes_unused_images_only(scratch, registry):
    ref_a, lay_a = unique_image(scratch, registry, "gc-a")
    ref_b, lay_b = unique_image(scratch, registry, "gc-b")
    uniq_a, uniq_b = diff_ids(lay_a)[-1], diff_ids(lay_b)[-1]
    shared = diff_ids(lay_a)[0]
    assert shared == diff_ids(lay_b)[0]
    env = {"SKIFF_AGENT_FAST_GC": "1", "ECS_IMAGE_CLEANUP_INTERVAL": "2s",
           "ECS_IMAGE_MINIMUM_CLEANUP_AGE": "1s", "ECS_ENGINE_TASK_CLEANUP_WAIT_DURATION": "1s"}
    with node_ctx("gc", env) as n:
        ecs = n.client("ecs")
        a = run(ecs, [shell("a", ref_a, "true")])
        b = run(ecs, [shell("b", ref_b, IDLE)])
        wait_task(ecs, a, "STOPPED", 30)
        wait_task(ecs, b, "RUNNING", 30)
        data = n.agent_data
        assert image_record(data, ref_a).exists() and image_record(data, ref_b).exists()
        # a is unused once its task is cleaned up
        wait_until(lambda: not image_record(data, ref_a).exists(), 30, 0.25,
                   "the unused image to be removed")
        wait_until(lambda: not layer_dir(data, uniq_a).exists(), 15, 0.25,
                   "the unused image's own layer to be removed")
        assert "image cleanup removed" in n.agent_log()
        # b is in use: kept, through several more cleanup cycles
        time.sleep(5)
        assert image_record(data, ref_b).exists()
        assert layer_dir(data, uniq_b).exists()
        assert layer_dir(data, shared).exists(), "a layer still used by b must stay"
        assert describe_status(ecs, b) == "RUNNING"
        # another task on b's image still starts
        t = wait_task(ecs, run(ecs, [shell("b2", ref_b, "cat /etc/marker")]), "STOPPED", 30)
        assert cmap(t)["b2"].get("exitCode") == 0, summary(t)
        stop_and_wait(ecs, b)
        wait_until(lambda: not image_record(data, ref_b).exists(), 30, 0.25,
                   "b's image to be removed once unused")


def describe_status(ecs, arn):
    return ecs.describe_tasks(cluster="default", tasks=[arn])["tasks"][0]["lastStatus"]


# --- hostile layers -------------------------------------------------------------------------

UP = "../" * 40


def _ti(name, typ=tarfile.REGTYPE, data=b"", linkname="", mode=0o644, major=0, minor=0):
    ti = tarfile.TarInfo(name)
    ti.type = typ
    ti.mode = mode
    ti.mtime = 1700000000
    ti.linkname = linkname
    ti.devmajor, ti.devminor = major, minor
    if typ == tarfile.REGTYPE:
        ti.size = len(data)
        return ti, data
    return ti, None


def _layer(entries):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for ti, data in entries:
            tf.addfile(ti, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def hostile_layers(sentinel):
    """name -> (list of extra layers, must_fail). sentinel: absolute dir path."""
    rel = sentinel.lstrip("/")
    parent, base = os.path.dirname(sentinel), os.path.basename(sentinel)
    R = tarfile.REGTYPE
    return {
        "traversal": ([[_ti(f"{UP}{rel}/traversal", R, b"pwned")]], True),
        "traversal-mid": ([[_ti("etc", tarfile.DIRTYPE, mode=0o755),
                            _ti(f"etc/{UP}{rel}/traversal-mid", R, b"pwned")]], True),
        "absolute": ([[_ti(f"/{rel}/absolute", R, b"pwned")]], True),
        "symlink-abs": ([[_ti("esc", tarfile.SYMTYPE, linkname=sentinel),
                          _ti("esc/via-abs-symlink", R, b"pwned")]], True),
        "symlink-rel": ([[_ti("esc", tarfile.SYMTYPE, linkname=f"{UP}{rel}"),
                          _ti("esc/via-rel-symlink", R, b"pwned")]], True),
        "symlink-parent": ([[_ti("p", tarfile.SYMTYPE, linkname=parent),
                             _ti(f"p/{base}/via-parent", R, b"pwned")]], True),
        "symlink-dir-chain": ([[_ti("d", tarfile.DIRTYPE, mode=0o755),
                                _ti("d/l", tarfile.SYMTYPE, linkname="../../../../../../../../.."
                                    + sentinel),
                                _ti("d/l/via-chain", R, b"pwned")]], True),
        "hardlink-abs": ([[_ti("hl", tarfile.LNKTYPE, linkname=f"{sentinel}/target"),
                           _ti("hl", R, b"pwned")]], True),
        "hardlink-rel": ([[_ti("hl", tarfile.LNKTYPE, linkname=f"{UP}{rel}/target"),
                           _ti("hl", R, b"pwned")]], True),
        "chardev": ([[_ti("dev", tarfile.DIRTYPE, mode=0o755),
                      _ti("dev/mem", tarfile.CHRTYPE, mode=0o666, major=1, minor=1)]], True),
        "blockdev": ([[_ti("sda", tarfile.BLKTYPE, mode=0o666, major=8, minor=0)]], True),
        # not necessarily refused, but must never touch the sentinel:
        "symlink-then-file": ([[_ti("t", tarfile.SYMTYPE, linkname=f"{sentinel}/target"),
                                _ti("t", R, b"pwned")]], False),
        "cross-layer-symlink": ([[_ti("x", tarfile.SYMTYPE, linkname=sentinel)],
                                 [_ti("x", tarfile.DIRTYPE, mode=0o755),
                                  _ti("x/cross-layer", R, b"pwned")]], False),
    }


def snapshot(d):
    snap = {}
    for root, dirs, files in os.walk(d):
        for n in dirs + files:
            p = os.path.join(root, n)
            st = os.lstat(p)
            data = open(p, "rb").read() if os.path.isfile(p) and not os.path.islink(p) else None
            snap[p] = (st.st_mode, st.st_size, st.st_mtime_ns, st.st_nlink, data)
    return snap


def test_hostile_layers_are_refused_and_write_nothing_outside(ecs, scratch, registry):
    sentinel = str(new_base("sentinel"))
    try:
        pathlib.Path(sentinel, "target").write_text("original\n")
        os.chmod(sentinel, 0o755)
        before = snapshot(sentinel)
        parent_before = set(os.listdir(os.path.dirname(sentinel)))
        cases = hostile_layers(sentinel)
        bb = oci_images.busybox_layer()
        arns = {}
        for name, (layers, _) in cases.items():
            lay = str(pathlib.Path(scratch) / f"evil-{name}")
            oci_images.build_layout(lay, [bb] + [_layer(l) for l in layers],
                                    config={"Cmd": ["/bin/sh", "-c", "ls -la /"],
                                            "Env": ["PATH=/bin"]})
            ref = registry.push(lay, "latest", f"evil/{name}")
            arns[name] = run(ecs, [container("evil", ref)])
        tasks = dict(zip(arns, wait_tasks(ecs, list(arns.values()), "STOPPED", 60)))
        problems = []
        for name, (_, must_fail) in cases.items():
            c = cmap(tasks[name])["evil"]
            if must_fail and not (c.get("reason") or "").startswith("CannotPullContainerError"):
                problems.append(f"{name}: {summary(tasks[name])}")
        assert snapshot(sentinel) == before, "a hostile layer changed files outside the rootfs"
        new = set(os.listdir(os.path.dirname(sentinel))) - parent_before
        assert not [n for n in new if n in ("traversal", "absolute", "via-parent")], new
        assert not problems, "hostile layers were accepted:\n" + "\n".join(problems)
    finally:
        safe_rmtree(sentinel)
