"""The registry: OCI Distribution Spec v1.1 under /v2/ and the ECR API, with
real clients (skopeo, podman, the aws CLI, boto3) and raw HTTP.

Every test starts its own `skiff server --no-agent`. Images are OCI layouts
built here from Debian's busybox-static (registry_helpers.make_oci_layout)."""
import base64
import concurrent.futures
import hashlib
import http.client
import json
import os
import pathlib
import shutil
import subprocess
import tempfile
import threading
import time

import pytest
import requests
from botocore.exceptions import ClientError

from registry_helpers import (DOCKER_MANIFEST, ECR_PREFIX, OCI_CONFIG, OCI_EMPTY, OCI_INDEX, OCI_LAYER,
                              OCI_MANIFEST, Registry, have, layout_blob, make_oci_layout,
                              rss_kb, sha256, skopeo, wait_for)

pytestmark = pytest.mark.skipif(not have("skopeo"), reason="skopeo is not installed")

ACCOUNT = "000000000000"


@pytest.fixture
def reg_server(server_factory):
    return server_factory("reg").start()


@pytest.fixture
def ecr(reg_server):
    return reg_server.client("ecr")


@pytest.fixture
def reg(reg_server):
    return Registry(reg_server)


@pytest.fixture(scope="session")
def layout(tmp_path_factory):
    d = tmp_path_factory.mktemp("oci") / "img"
    return make_oci_layout(d, marker="base")


@pytest.fixture(scope="session")
def layout_multi(tmp_path_factory):
    d = tmp_path_factory.mktemp("oci") / "multi"
    extra = [[("etc/hello.txt", b"hello from layer 2\n", 0o644)],
             [("etc/more/data.txt", os.urandom(4096), 0o644)]]
    return make_oci_layout(d, marker="multi", extra_layers=extra)


def create_repo(ecr, name, **kw):
    return ecr.create_repository(repositoryName=name, **kw)["repository"]


def code_of(r):
    try:
        return r.json()["errors"][0]["code"]
    except (ValueError, KeyError, IndexError):
        return None


def ecr_error(excinfo):
    return excinfo.value.response["Error"]["Code"]


# --- authentication ----------------------------------------------------------


def test_v2_requires_ecr_token(reg_server, reg, ecr):
    r = requests.get(reg.base + "/v2/", timeout=10)
    assert r.status_code == 401
    assert r.headers["WWW-Authenticate"] == (
        'Basic realm="https://000000000000.dkr.ecr.us-east-1.amazonaws.com/",'
        'service="ecr.amazonaws.com"')
    assert code_of(r) == "UNAUTHORIZED"
    r = reg.req("GET", "/v2/")
    assert r.status_code == 200
    assert r.headers["Docker-Distribution-API-Version"] == "registry/2.0"
    # wrong user, garbage, tampered token
    assert reg.req("GET", "/v2/", auth=("bob", reg.password())).status_code == 401
    assert reg.req("GET", "/v2/", auth=("AWS", "nope")).status_code == 401
    raw = bytearray(base64.b64decode(reg.password()))
    raw[2] = ord("9") if raw[2] != ord("9") else ord("8")  # account digit
    tampered = base64.b64encode(bytes(raw)).decode()
    assert reg.req("GET", "/v2/", auth=("AWS", tampered)).status_code == 401
    # the token is scoped to its account: another account's registry host refuses it
    r = reg.req("GET", "/v2/", headers={"Host": "111111111111.dkr.ecr.us-east-1.amazonaws.com"})
    assert r.status_code == 401
    assert "111111111111" in r.headers["WWW-Authenticate"]
    r = reg.req("GET", "/v2/", headers={"Host": "000000000000.dkr.ecr.us-east-1.amazonaws.com"})
    assert r.status_code == 200
    # and to its region
    r = reg.req("GET", "/v2/", headers={"Host": "000000000000.dkr.ecr.eu-west-1.amazonaws.com"})
    assert r.status_code == 401
    # GetAuthorizationToken shape
    ad = ecr.get_authorization_token()["authorizationData"][0]
    assert ad["proxyEndpoint"] == f"http://127.0.0.1:{reg_server.port}"
    left = ad["expiresAt"].timestamp() - time.time()
    assert 11.9 * 3600 < left <= 12 * 3600 + 5
    assert base64.b64decode(ad["authorizationToken"]).startswith(b"AWS:")


def test_token_survives_restart_and_other_server_rejects_it(server_factory, tmp_path):
    a = server_factory("a").start()
    ra = Registry(a)
    pw = ra.password()
    a.restart()
    assert ra.req("GET", "/v2/").status_code == 200  # key kept in the store
    b = server_factory("b").start()
    rb = Registry(b)
    assert rb.req("GET", "/v2/", auth=("AWS", pw)).status_code == 401


def test_other_region_namespace(reg_server, reg):
    """Tokens select the account/region namespace of /v2/."""
    east = reg_server.client("ecr", region="us-east-1")
    west = reg_server.client("ecr", region="us-west-2")
    create_repo(east, "only-east")
    rw = Registry(reg_server, region="us-west-2")
    assert reg.req("GET", "/v2/only-east/tags/list").status_code == 200
    r = rw.req("GET", "/v2/only-east/tags/list")
    assert r.status_code == 404 and code_of(r) == "NAME_UNKNOWN"
    assert "only-east" not in [x["repositoryName"] for x in
                               west.describe_repositories()["repositories"]]


# --- real clients --------------------------------------------------------------


def test_cli_login_skopeo_roundtrip(reg_server, reg, layout, layout_multi, tmp_path):
    out = reg_server.aws("create-repository", "--repository-name", "my-repo", service="ecr")
    assert out["repository"]["repositoryUri"] == f"127.0.0.1:{reg_server.port}/my-repo"
    p = reg_server._cli(["get-login-password"], service="ecr")
    assert p.returncode == 0, p.stderr
    token = p.stdout.strip()
    dest = f"docker://127.0.0.1:{reg_server.port}/my-repo"
    # without credentials: refused
    nocred = skopeo("copy", "--dest-tls-verify=false", f"oci:{layout['layout']}:latest",
                    dest + ":nocred", check=False)
    assert nocred.returncode != 0
    assert "401" in nocred.stderr or "unauthorized" in nocred.stderr.lower()
    skopeo("copy", "--dest-creds", f"AWS:{token}", "--dest-tls-verify=false",
           f"oci:{layout['layout']}:latest", dest + ":latest")
    skopeo("copy", "--dest-creds", f"AWS:{token}", "--dest-tls-verify=false",
           f"oci:{layout_multi['layout']}:latest", dest + ":multi")
    # pulls back byte for byte
    for tag, lay in (("latest", layout), ("multi", layout_multi)):
        outdir = tmp_path / f"out-{tag}"
        skopeo("copy", "--src-creds", f"AWS:{token}", "--src-tls-verify=false",
               f"{dest}:{tag}", f"oci:{outdir}:{tag}")
        idx = json.loads((outdir / "index.json").read_text())
        assert idx["manifests"][0]["digest"] == lay["digest"]
        for d in lay["layers"]:
            assert layout_blob(outdir, d) == layout_blob(lay["layout"], d)
    # skopeo inspect sees the tags
    insp = skopeo("inspect", "--creds", f"AWS:{token}", "--tls-verify=false", dest + ":multi")
    assert json.loads(insp.stdout)["Digest"] == layout_multi["digest"]
    tags = skopeo("list-tags", "--creds", f"AWS:{token}", "--tls-verify=false", dest)
    assert sorted(json.loads(tags.stdout)["Tags"]) == ["latest", "multi"]
    # visible in the ECR API at once
    d = reg_server.aws("describe-images", "--repository-name", "my-repo", service="ecr")
    by_digest = {x["imageDigest"]: x for x in d["imageDetails"]}
    assert by_digest[layout["digest"]]["imageTags"] == ["latest"]
    assert by_digest[layout_multi["digest"]]["imageManifestMediaType"] == OCI_MANIFEST
    assert by_digest[layout_multi["digest"]]["imageSizeInBytes"] > 1_000_000


@pytest.mark.skipif(not have("podman"), reason="podman is not installed")
def test_podman_login_push_pull(reg_server, reg, layout, tmp_path):
    reg_server.aws("create-repository", "--repository-name", "pm/app", service="ecr")
    token = reg_server._cli(["get-login-password"], service="ecr").stdout.strip()
    runroot = tempfile.mkdtemp(dir="/tmp", prefix="pmr")  # podman: at most 50 characters
    store = ["--root", str(tmp_path / "pm-root"), "--runroot", runroot,
             "--storage-driver", "vfs"]
    env = dict(os.environ, REGISTRY_AUTH_FILE=str(tmp_path / "auth.json"),
               XDG_RUNTIME_DIR=str(tmp_path))
    host = f"127.0.0.1:{reg_server.port}"

    def podman(*args, stdin=None, check=True):
        p = subprocess.run(["podman", *store, *args], input=stdin, capture_output=True,
                           text=True, timeout=300, env=env)
        if check:
            assert p.returncode == 0, f"podman {args}: {p.stderr}"
        return p

    bad = podman("login", "--username", "AWS", "--password-stdin", "--tls-verify=false", host,
                 stdin="wrong", check=False)
    assert bad.returncode != 0 and "invalid username/password" in bad.stderr
    podman("login", "--username", "AWS", "--password-stdin", "--tls-verify=false", host,
           stdin=token)
    podman("pull", f"oci:{layout['layout']}:latest")
    img = podman("images", "--format", "{{.ID}}").stdout.split()[0]
    podman("tag", img, f"{host}/pm/app:v1")
    podman("push", "--tls-verify=false", f"{host}/pm/app:v1")
    podman("rmi", "-f", img)
    podman("pull", "--tls-verify=false", f"{host}/pm/app:v1")
    assert f"{host}/pm/app" in podman("images", "--format", "{{.Repository}}").stdout
    ids = reg_server.client("ecr").list_images(repositoryName="pm/app")["imageIds"]
    assert [x.get("imageTag") for x in ids] == ["v1"]
    podman("logout", host, check=False)
    shutil.rmtree(runroot, ignore_errors=True)


# --- the ECR API through the aws CLI ------------------------------------------------


def test_ecr_cli_operations(reg_server, reg, layout, tmp_path):
    aws = lambda *a: reg_server.aws(*a, service="ecr")  # noqa: E731
    aws_fail = lambda *a: reg_server.aws_fail(*a, service="ecr")  # noqa: E731
    aws("create-repository", "--repository-name", "ops/app", "--tags", "Key=team,Value=a",
        "--image-scanning-configuration", "scanOnPush=true", "--encryption-configuration",
        "encryptionType=AES256")
    assert "RepositoryAlreadyExistsException" in aws_fail("create-repository",
                                                          "--repository-name", "ops/app")
    assert "InvalidParameterException" in aws_fail("create-repository", "--repository-name",
                                                   "Bad_Name")
    assert "InvalidParameterException" in aws_fail("create-repository", "--repository-name",
                                                   "a/../b")
    repos = aws("describe-repositories", "--repository-names", "ops/app")["repositories"]
    assert repos[0]["imageScanningConfiguration"] == {"scanOnPush": True}
    assert repos[0]["repositoryArn"] == f"arn:aws:ecr:us-east-1:{ACCOUNT}:repository/ops/app"
    assert "RepositoryNotFoundException" in aws_fail("describe-repositories",
                                                     "--repository-names", "nope")
    assert aws("describe-registry")["registryId"] == ACCOUNT

    token = reg.password()
    skopeo("copy", "--dest-creds", f"AWS:{token}", "--dest-tls-verify=false",
           f"oci:{layout['layout']}:latest", f"docker://{reg.host}/ops/app:v1")
    digest = layout["digest"]
    ids = aws("list-images", "--repository-name", "ops/app")["imageIds"]
    assert ids == [{"imageDigest": digest, "imageTag": "v1"}]
    got = aws("batch-get-image", "--repository-name", "ops/app", "--image-ids", "imageTag=v1")
    img = got["images"][0]
    assert img["imageManifestMediaType"] == OCI_MANIFEST
    assert sha256(img["imageManifest"].encode()) == digest
    miss = aws("batch-get-image", "--repository-name", "ops/app", "--image-ids",
               "imageTag=none")
    assert miss["failures"][0]["failureCode"] == "ImageNotFound"
    # retag through put-image (the documented CLI recipe)
    man_path = tmp_path / "m.json"
    man_path.write_text(img["imageManifest"])
    put = aws("put-image", "--repository-name", "ops/app", "--image-tag", "v2",
              "--image-manifest", f"file://{man_path}")
    assert put["image"]["imageId"] == {"imageDigest": digest, "imageTag": "v2"}
    assert "ImageAlreadyExistsException" in aws_fail(
        "put-image", "--repository-name", "ops/app", "--image-tag", "v2", "--image-manifest",
        f"file://{man_path}")
    # pullable under the new tag
    r = reg.req("GET", "/v2/ops/app/manifests/v2", headers={"Accept": OCI_MANIFEST})
    assert r.status_code == 200 and r.headers["Docker-Content-Digest"] == digest
    det = aws("describe-images", "--repository-name", "ops/app", "--image-ids",
              "imageTag=v2")["imageDetails"][0]
    assert det["imageTags"] == ["v1", "v2"]
    assert "ImageNotFoundException" in aws_fail("describe-images", "--repository-name",
                                                "ops/app", "--image-ids", "imageTag=zz")
    # tagStatus filter
    assert aws("list-images", "--repository-name", "ops/app", "--filter",
               "tagStatus=UNTAGGED")["imageIds"] == []
    # download URL for a layer: works without headers, fails when tampered
    layer = layout["layers"][0]
    dl = aws("get-download-url-for-layer", "--repository-name", "ops/app", "--layer-digest",
             layer)
    assert dl["layerDigest"] == layer
    body = requests.get(dl["downloadUrl"], timeout=30).content
    assert sha256(body) == layer
    assert requests.get(dl["downloadUrl"].replace("Signature=", "Signature=0"),
                        timeout=10).status_code == 401
    assert "LayersNotFoundException" in aws_fail(
        "get-download-url-for-layer", "--repository-name", "ops/app", "--layer-digest",
        "sha256:" + "0" * 64)
    # repository policy
    pol = json.dumps({"Version": "2012-10-17", "Statement": [
        {"Sid": "pull", "Effect": "Allow", "Principal": "*", "Action": ["ecr:BatchGetImage"]}]})
    assert "RepositoryPolicyNotFoundException" in aws_fail("get-repository-policy",
                                                           "--repository-name", "ops/app")
    assert "InvalidParameterException" in aws_fail("set-repository-policy",
                                                   "--repository-name", "ops/app",
                                                   "--policy-text", '{"foo": 1}')
    aws("set-repository-policy", "--repository-name", "ops/app", "--policy-text", pol)
    assert json.loads(aws("get-repository-policy", "--repository-name",
                          "ops/app")["policyText"]) == json.loads(pol)
    aws("delete-repository-policy", "--repository-name", "ops/app")
    assert "RepositoryPolicyNotFoundException" in aws_fail("delete-repository-policy",
                                                           "--repository-name", "ops/app")
    # lifecycle policy + preview
    lc = json.dumps({"rules": [{"rulePriority": 1, "description": "keep 1",
                                "selection": {"tagStatus": "any",
                                              "countType": "imageCountMoreThan",
                                              "countNumber": 1},
                                "action": {"type": "expire"}}]})
    assert "LifecyclePolicyNotFoundException" in aws_fail("get-lifecycle-policy",
                                                          "--repository-name", "ops/app")
    assert "InvalidParameterException" in aws_fail(
        "put-lifecycle-policy", "--repository-name", "ops/app", "--lifecycle-policy-text",
        json.dumps({"rules": [{"rulePriority": 1, "selection": {"tagStatus": "tagged",
                                                                "countType": "imageCountMoreThan",
                                                                "countNumber": 1},
                               "action": {"type": "expire"}}]}))
    aws("put-lifecycle-policy", "--repository-name", "ops/app", "--lifecycle-policy-text", lc)
    assert json.loads(aws("get-lifecycle-policy", "--repository-name",
                          "ops/app")["lifecyclePolicyText"]) == json.loads(lc)
    st = aws("start-lifecycle-policy-preview", "--repository-name", "ops/app")
    assert st["status"] in ("IN_PROGRESS", "COMPLETE")
    pv = aws("get-lifecycle-policy-preview", "--repository-name", "ops/app")
    assert pv["status"] == "COMPLETE"
    assert pv["previewResults"] == []  # one image only
    aws("delete-lifecycle-policy", "--repository-name", "ops/app")
    # resource tags
    arn = repos[0]["repositoryArn"]
    aws("tag-resource", "--resource-arn", arn, "--tags", "Key=env,Value=prod")
    tags = aws("list-tags-for-resource", "--resource-arn", arn)["tags"]
    assert {t["Key"]: t["Value"] for t in tags} == {"team": "a", "env": "prod"}
    aws("untag-resource", "--resource-arn", arn, "--tag-keys", "team")
    assert aws("list-tags-for-resource", "--resource-arn", arn)["tags"] == [
        {"Key": "env", "Value": "prod"}]
    many = [f"Key=k{i},Value=v" for i in range(50)]
    assert "TooManyTagsException" in aws_fail("tag-resource", "--resource-arn", arn, "--tags",
                                              *many)
    # delete by tag removes the tag; the last tag takes the image with it
    out = aws("batch-delete-image", "--repository-name", "ops/app", "--image-ids",
              "imageTag=v1")
    assert out["imageIds"] == [{"imageDigest": digest, "imageTag": "v1"}]
    assert reg.req("GET", "/v2/ops/app/manifests/v1").status_code == 404
    assert reg.req("GET", f"/v2/ops/app/manifests/{digest}").status_code == 200
    # not empty → refuses; --force deletes
    assert "RepositoryNotEmptyException" in aws_fail("delete-repository", "--repository-name",
                                                     "ops/app")
    out = aws("batch-delete-image", "--repository-name", "ops/app", "--image-ids",
              f"imageDigest={digest}")
    assert {"imageDigest": digest, "imageTag": "v2"} in out["imageIds"]
    # deleted through the API → gone from /v2/
    r = reg.req("GET", f"/v2/ops/app/manifests/{digest}")
    assert r.status_code == 404 and code_of(r) == "MANIFEST_UNKNOWN"
    skopeo("copy", "--dest-creds", f"AWS:{token}", "--dest-tls-verify=false",
           f"oci:{layout['layout']}:latest", f"docker://{reg.host}/ops/app:again")
    aws("delete-repository", "--repository-name", "ops/app", "--force")
    assert "RepositoryNotFoundException" in aws_fail("describe-images", "--repository-name",
                                                     "ops/app")
    assert reg.req("GET", "/v2/ops/app/tags/list").status_code == 404


def test_describe_pagination(reg_server, reg, ecr):
    for i in range(5):
        create_repo(ecr, f"page-{i}")
    seen, token = [], None
    while True:
        kw = {"maxResults": 2}
        if token:
            kw["nextToken"] = token
        out = ecr.describe_repositories(**kw)
        seen += [r["repositoryName"] for r in out["repositories"]]
        token = out.get("nextToken")
        if not token:
            break
    assert seen == [f"page-{i}" for i in range(5)]
    with pytest.raises(ClientError) as ei:
        ecr.describe_repositories(nextToken="5.deadbeefdeadbeef")
    assert ecr_error(ei) == "InvalidParameterException"
    for i in range(3):
        reg.push_image("page-0", f"t{i}", marker=f"p{i}")
    pages = list(ecr.get_paginator("describe_images").paginate(
        repositoryName="page-0", PaginationConfig={"PageSize": 2}))
    assert sum(len(p["imageDetails"]) for p in pages) == 3 and len(pages) == 2


# --- layer upload through the API ----------------------------------------------


def test_layer_upload_api(reg_server, reg, ecr):
    create_repo(ecr, "api-layers")
    part1 = os.urandom(5 * 1024 * 1024 + 7)
    part2 = os.urandom(1234)
    blob = part1 + part2
    digest = sha256(blob)
    up = ecr.initiate_layer_upload(repositoryName="api-layers")
    uid = up["uploadId"]
    assert up["partSize"] > 0
    r = ecr.upload_layer_part(repositoryName="api-layers", uploadId=uid, partFirstByte=0,
                              partLastByte=len(part1) - 1, layerPartBlob=part1)
    assert r["lastByteReceived"] == len(part1) - 1
    # out of order → InvalidLayerPartException with lastValidByteReceived
    with pytest.raises(ClientError) as ei:
        ecr.upload_layer_part(repositoryName="api-layers", uploadId=uid, partFirstByte=10,
                              partLastByte=10 + len(part2) - 1, layerPartBlob=part2)
    assert ecr_error(ei) == "InvalidLayerPartException"
    assert ei.value.response["lastValidByteReceived"] == len(part1) - 1
    ecr.upload_layer_part(repositoryName="api-layers", uploadId=uid, partFirstByte=len(part1),
                          partLastByte=len(blob) - 1, layerPartBlob=part2)
    done = ecr.complete_layer_upload(repositoryName="api-layers", uploadId=uid,
                                     layerDigests=[digest])
    assert done["layerDigest"] == digest
    av = ecr.batch_check_layer_availability(repositoryName="api-layers",
                                            layerDigests=[digest, "sha256:" + "1" * 64])
    assert av["layers"][0]["layerAvailability"] == "AVAILABLE"
    assert av["layers"][0]["layerSize"] == len(blob)
    assert av["failures"][0]["failureCode"] == "MissingLayerDigest"
    # the blob is served by /v2/
    r = reg.req("GET", f"/v2/api-layers/blobs/{digest}")
    assert r.status_code == 200 and r.content == blob
    # the same layer again → LayerAlreadyExistsException
    uid2 = ecr.initiate_layer_upload(repositoryName="api-layers")["uploadId"]
    ecr.upload_layer_part(repositoryName="api-layers", uploadId=uid2, partFirstByte=0,
                          partLastByte=len(blob) - 1, layerPartBlob=blob)
    with pytest.raises(ClientError) as ei:
        ecr.complete_layer_upload(repositoryName="api-layers", uploadId=uid2,
                                  layerDigests=[digest])
    assert ecr_error(ei) == "LayerAlreadyExistsException"
    # wrong digest → InvalidLayerException, nothing stored
    uid3 = ecr.initiate_layer_upload(repositoryName="api-layers")["uploadId"]
    ecr.upload_layer_part(repositoryName="api-layers", uploadId=uid3, partFirstByte=0,
                          partLastByte=2, layerPartBlob=b"abc")
    wrong = "sha256:" + "2" * 64
    with pytest.raises(ClientError) as ei:
        ecr.complete_layer_upload(repositoryName="api-layers", uploadId=uid3,
                                  layerDigests=[wrong])
    assert ecr_error(ei) == "InvalidLayerException"
    assert reg.req("HEAD", f"/v2/api-layers/blobs/{sha256(b'abc')}").status_code == 404
    # small non-final part → LayerPartTooSmallException
    uid4 = ecr.initiate_layer_upload(repositoryName="api-layers")["uploadId"]
    ecr.upload_layer_part(repositoryName="api-layers", uploadId=uid4, partFirstByte=0,
                          partLastByte=2, layerPartBlob=b"abc")
    ecr.upload_layer_part(repositoryName="api-layers", uploadId=uid4, partFirstByte=3,
                          partLastByte=5, layerPartBlob=b"def")
    with pytest.raises(ClientError) as ei:
        ecr.complete_layer_upload(repositoryName="api-layers", uploadId=uid4,
                                  layerDigests=[sha256(b"abcdef")])
    assert ecr_error(ei) == "LayerPartTooSmallException"
    with pytest.raises(ClientError) as ei:
        ecr.upload_layer_part(repositoryName="api-layers", uploadId="nope", partFirstByte=0,
                              partLastByte=0, layerPartBlob=b"x")
    assert ecr_error(ei) == "UploadNotFoundException"
    # a full image pushed through the API: config + layer + PutImage
    cfg = json.dumps({"architecture": "amd64", "os": "linux"}).encode()
    uid5 = ecr.initiate_layer_upload(repositoryName="api-layers")["uploadId"]
    ecr.upload_layer_part(repositoryName="api-layers", uploadId=uid5, partFirstByte=0,
                          partLastByte=len(cfg) - 1, layerPartBlob=cfg)
    ecr.complete_layer_upload(repositoryName="api-layers", uploadId=uid5,
                              layerDigests=[sha256(cfg)])
    man = json.dumps({"schemaVersion": 2, "mediaType": DOCKER_MANIFEST,
                      "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
                                 "digest": sha256(cfg), "size": len(cfg)},
                      "layers": [{"mediaType":
                                  "application/vnd.docker.image.rootfs.diff.tar.gzip",
                                  "digest": digest, "size": len(blob)}]})
    out = ecr.put_image(repositoryName="api-layers", imageManifest=man, imageTag="api")
    assert out["image"]["imageManifestMediaType"] == DOCKER_MANIFEST
    r = reg.req("GET", "/v2/api-layers/manifests/api", headers={"Accept": DOCKER_MANIFEST})
    assert r.status_code == 200 and r.headers["Content-Type"] == DOCKER_MANIFEST
    assert r.content == man.encode()
    with pytest.raises(ClientError) as ei:
        ecr.put_image(repositoryName="api-layers", imageManifest=man, imageTag="x",
                      imageDigest="sha256:" + "3" * 64)
    assert ecr_error(ei) == "ImageDigestDoesNotMatchException"
    bad = man.replace(digest, "sha256:" + "4" * 64)
    with pytest.raises(ClientError) as ei:
        ecr.put_image(repositoryName="api-layers", imageManifest=bad, imageTag="bad")
    assert ecr_error(ei) == "LayersNotFoundException"


# --- immutability ----------------------------------------------------------------


def test_immutable_tags(reg_server, reg, ecr):
    create_repo(ecr, "immut", imageTagMutability="IMMUTABLE")
    d1 = reg.push_image("immut", "v1", marker="one")
    # the same content again is fine
    m1 = ecr.batch_get_image(repositoryName="immut",
                             imageIds=[{"imageTag": "v1"}])["images"][0]["imageManifest"]
    r = reg.push_manifest("immut", "v1", m1.encode())
    assert r.status_code == 201
    # a different image under the same tag: refused via /v2/ ...
    cfg = json.dumps({"marker": "two"}).encode()
    cd = reg.push_blob("immut", cfg)
    m2 = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                     "config": {"mediaType": OCI_CONFIG, "digest": cd, "size": len(cfg)},
                     "layers": []})
    r = reg.push_manifest("immut", "v1", m2.encode())
    assert r.status_code == 400 and code_of(r) == "TAG_INVALID"
    assert "immutable" in r.json()["errors"][0]["message"]
    # ... and via PutImage
    with pytest.raises(ClientError) as ei:
        ecr.put_image(repositoryName="immut", imageManifest=m2, imageTag="v1")
    assert ecr_error(ei) == "ImageTagAlreadyExistsException"
    # the tag still points at the first image
    r = reg.req("HEAD", "/v2/immut/manifests/v1")
    assert r.headers["Docker-Content-Digest"] == d1
    # switching to MUTABLE allows it
    ecr.put_image_tag_mutability(repositoryName="immut", imageTagMutability="MUTABLE")
    assert reg.push_manifest("immut", "v1", m2.encode()).status_code == 201
    # exclusion filters: IMMUTABLE except latest
    # (raw: Debian's botocore predates the exclusion filters)
    reg_server.raw_ok("PutImageTagMutability", {
        "repositoryName": "immut", "imageTagMutability": "IMMUTABLE_WITH_EXCLUSION",
        "imageTagMutabilityExclusionFilters": [{"filterType": "WILDCARD", "filter": "latest*"}]},
        service="ecr", target=f"{ECR_PREFIX}.PutImageTagMutability")
    assert reg.push_manifest("immut", "latest", m2.encode()).status_code == 201
    assert reg.push_manifest("immut", "latest", m1.encode()).status_code == 201
    assert reg.push_manifest("immut", "v1", m1.encode()).status_code == 400


# --- lifecycle policies applied by the scheduler ------------------------------------


def test_lifecycle_expiry_scheduler(server_factory):
    srv = server_factory("lc", env={"SKIFF_ECR_LIFECYCLE_SEC": "1"}).start()
    ecr = srv.client("ecr")
    reg = Registry(srv)
    create_repo(ecr, "lc")
    digests = {}
    for name in ("prod-1", "prod-2", "prod-3", "dev-1"):
        digests[name] = reg.push_image("lc", name, marker=name)
        time.sleep(0.05)
    # untagged images: pushed by digest
    untagged = []
    for i in range(3):
        cfg = json.dumps({"u": i}).encode()
        cd = reg.push_blob("lc", cfg)
        m = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                        "config": {"mediaType": OCI_CONFIG, "digest": cd, "size": len(cfg)},
                        "layers": []}).encode()
        assert reg.push_manifest("lc", sha256(m), m).status_code == 201
        untagged.append(sha256(m))
        time.sleep(0.05)
    policy = {"rules": [
        {"rulePriority": 1, "selection": {"tagStatus": "tagged", "tagPrefixList": ["prod"],
                                          "countType": "imageCountMoreThan", "countNumber": 1},
         "action": {"type": "expire"}},
        {"rulePriority": 2, "selection": {"tagStatus": "untagged",
                                          "countType": "imageCountMoreThan", "countNumber": 1},
         "action": {"type": "expire"}}]}
    # preview first: nothing is deleted by a preview
    ecr.start_lifecycle_policy_preview(repositoryName="lc", lifecyclePolicyText=json.dumps(policy))
    pv = ecr.get_lifecycle_policy_preview(repositoryName="lc")
    expiring = {x["imageDigest"]: x["appliedRulePriority"] for x in pv["previewResults"]}
    assert expiring == {digests["prod-1"]: 1, digests["prod-2"]: 1, untagged[0]: 2,
                        untagged[1]: 2}
    assert pv["summary"]["expiringImageTotalCount"] == 4
    assert len(ecr.describe_images(repositoryName="lc")["imageDetails"]) == 7
    ecr.put_lifecycle_policy(repositoryName="lc", lifecyclePolicyText=json.dumps(policy))

    def remaining():
        return {x["imageDigest"] for x in ecr.describe_images(repositoryName="lc")["imageDetails"]}

    assert wait_for(lambda: len(remaining()) == 3, timeout=15)
    assert remaining() == {digests["prod-3"], digests["dev-1"], untagged[2]}
    assert reg.req("GET", f"/v2/lc/manifests/{digests['prod-1']}").status_code == 404
    assert "lastEvaluatedAt" in ecr.get_lifecycle_policy(repositoryName="lc")


# --- garbage collection --------------------------------------------------------------


def test_gc_under_concurrent_push(server_factory):
    srv = server_factory("gc", env={"SKIFF_ECR_GC_SEC": "1",
                                    "SKIFF_ECR_GC_GRACE_SEC": "3"}).start()
    ecr = srv.client("ecr")
    reg = Registry(srv)
    create_repo(ecr, "gc")
    blobdir = srv.data_dir / "registry" / "blobs" / "sha256"
    orphan = reg.push_blob("gc", b"orphan blob " + os.urandom(32))
    kept = reg.push_image("gc", "kept", marker="kept", layers=2)
    # an image whose tag goes away stays (untagged images are images)
    pushed, errors = [], []
    stop = time.monotonic() + 6

    def pusher(n):
        i = 0
        while time.monotonic() < stop:
            try:
                pushed.append(reg.push_image("gc", f"p{n}-{i}", marker=f"{n}-{i}", layers=2))
            except AssertionError as e:  # pragma: no cover - reported below
                errors.append(str(e))
            i += 1

    threads = [threading.Thread(target=pusher, args=(n,)) for n in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[:3]
    assert len(pushed) > 10
    # the orphan goes away once older than the grace period
    assert wait_for(lambda: not (blobdir / orphan.split(":")[1]).exists(), timeout=15)
    r = reg.req("HEAD", f"/v2/gc/blobs/{orphan}")
    assert r.status_code == 404
    # everything referenced is still there and complete
    for d in [kept] + pushed:
        r = reg.req("GET", f"/v2/gc/manifests/{d}", headers={"Accept": OCI_MANIFEST})
        assert r.status_code == 200, d
        m = r.json()
        for desc in [m["config"]] + m["layers"]:
            b = reg.req("GET", f"/v2/gc/blobs/{desc['digest']}")
            assert b.status_code == 200 and sha256(b.content) == desc["digest"]
    # deleting an image makes its blobs collectable
    m = reg.req("GET", f"/v2/gc/manifests/{kept}", headers={"Accept": OCI_MANIFEST}).json()
    assert reg.req("DELETE", f"/v2/gc/manifests/{kept}").status_code == 202
    layer = m["layers"][0]["digest"]
    assert wait_for(lambda: not (blobdir / layer.split(":")[1]).exists(), timeout=15)


# --- raw distribution API -------------------------------------------------------------


def test_chunked_resumable_upload(reg_server, reg, ecr):
    create_repo(ecr, "chunks")
    data = os.urandom(300_000)
    digest = sha256(data)
    r = reg.req("POST", "/v2/chunks/blobs/uploads/")
    assert r.status_code == 202
    loc = r.headers["Location"]
    uuid = r.headers["Docker-Upload-UUID"]
    assert uuid in loc and r.headers["Range"] == "0-0"
    parts = [data[:100_000], data[100_000:200_000], data[200_000:]]
    r = reg.req("PATCH", loc, data=parts[0], headers={
        "Content-Type": "application/octet-stream", "Content-Range": "0-99999"})
    assert r.status_code == 202, r.text
    assert r.headers["Range"] == "0-99999"
    loc = r.headers["Location"]
    # status
    r = reg.req("GET", loc)
    assert r.status_code == 204
    assert r.headers["Range"] == "0-99999" and r.headers["Docker-Upload-UUID"] == uuid
    # out of order → 416 with the current range
    r = reg.req("PATCH", loc, data=parts[2], headers={
        "Content-Type": "application/octet-stream", "Content-Range": "200000-299999"})
    assert r.status_code == 416
    assert r.headers["Range"] == "0-99999"
    # Content-Length that contradicts Content-Range
    r = reg.req("PATCH", loc, data=parts[1][:10], headers={"Content-Range": "100000-199999"})
    assert r.status_code in (400, 416)
    # resume
    r = reg.req("PATCH", loc, data=parts[1], headers={"Content-Range": "100000-199999"})
    assert r.status_code == 202 and r.headers["Range"] == "0-199999"
    # final chunk with the PUT
    r = reg.req("PUT", loc, params={"digest": digest}, data=parts[2],
                headers={"Content-Range": "200000-299999"})
    assert r.status_code == 201, r.text
    assert r.headers["Docker-Content-Digest"] == digest
    assert r.headers["Location"] == f"/v2/chunks/blobs/{digest}"
    # the session is gone
    assert code_of(reg.req("GET", loc)) == "BLOB_UPLOAD_UNKNOWN"
    # GET / HEAD / ranges
    r = reg.req("GET", f"/v2/chunks/blobs/{digest}")
    assert r.content == data and r.headers["Docker-Content-Digest"] == digest
    r = reg.req("HEAD", f"/v2/chunks/blobs/{digest}")
    assert r.status_code == 200 and r.headers["Content-Length"] == str(len(data))
    r = reg.req("GET", f"/v2/chunks/blobs/{digest}", headers={"Range": "bytes=10-19"})
    assert r.status_code == 206 and r.content == data[10:20]
    assert r.headers["Content-Range"] == f"bytes 10-19/{len(data)}"
    r = reg.req("GET", f"/v2/chunks/blobs/{digest}", headers={"Range": "bytes=-5"})
    assert r.status_code == 206 and r.content == data[-5:]
    r = reg.req("GET", f"/v2/chunks/blobs/{digest}", headers={"Range": f"bytes={len(data)}-"})
    assert r.status_code == 416 and r.headers["Content-Range"] == f"bytes */{len(data)}"
    # streamed PATCH without Content-Range (chunked transfer encoding), then cancel
    r = reg.req("POST", "/v2/chunks/blobs/uploads/")
    loc = r.headers["Location"]
    r = reg.req("PATCH", loc, data=iter([b"a" * 1000, b"b" * 1000]))
    assert r.status_code == 202 and r.headers["Range"] == "0-1999"
    assert reg.req("DELETE", loc).status_code == 204
    assert code_of(reg.req("PATCH", loc, data=b"x")) == "BLOB_UPLOAD_UNKNOWN"
    # blob delete (unlink from the repository)
    assert reg.req("DELETE", f"/v2/chunks/blobs/{digest}").status_code == 202
    r = reg.req("GET", f"/v2/chunks/blobs/{digest}")
    assert r.status_code == 404 and code_of(r) == "BLOB_UNKNOWN"


def test_upload_sessions_survive_kill9_and_restart(reg_server, reg, ecr):
    """A chunked /v2/ upload and an API layer upload resume after kill -9 and
    after a clean restart; the staged files are gone once both complete."""
    create_repo(ecr, "resume")
    data = os.urandom(300_000)
    r = reg.req("POST", "/v2/resume/blobs/uploads/")
    assert r.status_code == 202
    loc = r.headers["Location"]
    r = reg.req("PATCH", loc, data=data[:100_000], headers={"Content-Range": "0-99999"})
    assert r.status_code == 202 and r.headers["Range"] == "0-99999"
    # The API path: a first part of the 5 MiB minimum, so a later small part is the last one.
    big = os.urandom(5 << 20)
    small = os.urandom(1000)
    uid = ecr.initiate_layer_upload(repositoryName="resume")["uploadId"]
    ecr.upload_layer_part(repositoryName="resume", uploadId=uid, partFirstByte=0,
                          partLastByte=len(big) - 1, layerPartBlob=big)
    # An upload cancelled after the restart leaves nothing behind either.
    doomed = reg.req("POST", "/v2/resume/blobs/uploads/").headers["Location"]
    reg_server.kill9()
    reg_server.start()
    r = reg.req("GET", loc)
    assert r.status_code == 204 and r.headers["Range"] == "0-99999", r.text
    # An out-of-order chunk is still refused with the resumed offset.
    r = reg.req("PATCH", loc, data=data[200_000:], headers={"Content-Range": "200000-299999"})
    assert r.status_code == 416 and r.headers["Range"] == "0-99999"
    r = reg.req("PATCH", loc, data=data[100_000:200_000], headers={"Content-Range": "100000-199999"})
    assert r.status_code == 202 and r.headers["Range"] == "0-199999"
    assert reg.req("DELETE", doomed).status_code == 204
    reg_server.restart()
    r = reg.req("PUT", loc, params={"digest": sha256(data)}, data=data[200_000:],
                headers={"Content-Range": "200000-299999"})
    assert r.status_code == 201, r.text
    assert reg.req("GET", f"/v2/resume/blobs/{sha256(data)}").content == data
    assert code_of(reg.req("GET", loc)) == "BLOB_UPLOAD_UNKNOWN"
    # The API upload continues at the byte after the first part.
    with pytest.raises(ClientError) as e:
        ecr.upload_layer_part(repositoryName="resume", uploadId=uid, partFirstByte=0,
                              partLastByte=len(small) - 1, layerPartBlob=small)
    assert ecr_error(e) == "InvalidLayerPartException"
    assert e.value.response["lastValidByteReceived"] == len(big) - 1
    ecr.upload_layer_part(repositoryName="resume", uploadId=uid, partFirstByte=len(big),
                          partLastByte=len(big) + len(small) - 1, layerPartBlob=small)
    out = ecr.complete_layer_upload(repositoryName="resume", uploadId=uid,
                                    layerDigests=[sha256(big + small)])
    assert out["layerDigest"] == sha256(big + small)
    got = ecr.batch_check_layer_availability(repositoryName="resume",
                                             layerDigests=[sha256(big + small)])["layers"]
    assert got[0]["layerAvailability"] == "AVAILABLE" and got[0]["layerSize"] == len(big + small)
    staged = list((reg_server.data_dir / "registry" / "tmp").iterdir())
    assert staged == [], staged


def test_cross_repository_mount(reg_server, reg, ecr):
    create_repo(ecr, "src-repo")
    create_repo(ecr, "dst-repo")
    d = reg.push_blob("src-repo", b"shared layer" * 100)
    r = reg.req("POST", "/v2/dst-repo/blobs/uploads/", params={"mount": d, "from": "src-repo"})
    assert r.status_code == 201
    assert r.headers["Location"] == f"/v2/dst-repo/blobs/{d}"
    assert r.headers["Docker-Content-Digest"] == d
    assert reg.req("HEAD", f"/v2/dst-repo/blobs/{d}").status_code == 200
    # the blob is not in that repository: a new upload session instead
    missing = "sha256:" + "5" * 64
    r = reg.req("POST", "/v2/dst-repo/blobs/uploads/", params={"mount": missing,
                                                               "from": "src-repo"})
    assert r.status_code == 202 and "/blobs/uploads/" in r.headers["Location"]
    # from a repository that does not exist: likewise
    r = reg.req("POST", "/v2/dst-repo/blobs/uploads/", params={"mount": d, "from": "nope"})
    assert r.status_code == 202
    # a blob never visible from a repository it was not pushed to
    assert reg.req("HEAD", f"/v2/src-repo/blobs/{missing}").status_code == 404


def test_bad_input(reg_server, reg, ecr):
    create_repo(ecr, "bad")
    data = b"some bytes"
    wrong = sha256(b"other bytes")
    r = reg.req("POST", "/v2/bad/blobs/uploads/", params={"digest": wrong}, data=data)
    assert r.status_code == 400 and code_of(r) == "DIGEST_INVALID"
    assert reg.req("HEAD", f"/v2/bad/blobs/{sha256(data)}").status_code == 404
    assert reg.req("HEAD", f"/v2/bad/blobs/{wrong}").status_code == 404
    blobdir = reg_server.data_dir / "registry" / "blobs" / "sha256"
    assert not (blobdir / sha256(data).split(":")[1]).exists()
    # chunked upload with the wrong final digest
    loc = reg.req("POST", "/v2/bad/blobs/uploads/").headers["Location"]
    reg.req("PATCH", loc, data=data)
    r = reg.req("PUT", loc, params={"digest": wrong})
    assert r.status_code == 400 and code_of(r) == "DIGEST_INVALID"
    r = reg.req("POST", "/v2/bad/blobs/uploads/", params={"digest": "sha256:xyz"}, data=data)
    assert r.status_code == 400 and code_of(r) == "DIGEST_INVALID"
    # manifests referencing blobs the repository does not have
    cfg = json.dumps({"c": 1}).encode()
    cd = reg.push_blob("bad", cfg)
    m = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
         "config": {"mediaType": OCI_CONFIG, "digest": cd, "size": len(cfg)},
         "layers": [{"mediaType": OCI_LAYER, "digest": "sha256:" + "6" * 64, "size": 3}]}
    r = reg.push_manifest("bad", "x", m)
    assert r.status_code == 400 and code_of(r) == "MANIFEST_BLOB_UNKNOWN"
    idx = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {"mediaType": OCI_MANIFEST, "digest": "sha256:" + "7" * 64, "size": 10}]}
    r = reg.push_manifest("bad", "idx", idx, OCI_INDEX)
    assert r.status_code == 400 and code_of(r) == "MANIFEST_BLOB_UNKNOWN"
    # invalid manifests
    r = reg.push_manifest("bad", "x", b"{not json", OCI_MANIFEST)
    assert r.status_code == 400 and code_of(r) == "MANIFEST_INVALID"
    r = reg.push_manifest("bad", "x", {"schemaVersion": 2, "mediaType": OCI_INDEX,
                                       "manifests": []}, OCI_MANIFEST)
    assert code_of(r) == "MANIFEST_INVALID"
    # over 4 MiB: refused from the headers alone (the body is never read)
    conn = http.client.HTTPConnection("127.0.0.1", reg_server.port, timeout=30)
    conn.putrequest("PUT", "/v2/bad/manifests/big")
    conn.putheader("Authorization", "Basic " + base64.b64encode(
        f"AWS:{reg.password()}".encode()).decode())
    conn.putheader("Content-Type", OCI_MANIFEST)
    conn.putheader("Content-Length", str(4 * 1024 * 1024 + 1))
    conn.endheaders()
    resp = conn.getresponse()
    assert resp.status == 413
    assert json.loads(resp.read())["errors"][0]["code"] == "MANIFEST_INVALID"
    conn.close()
    # chunked (no Content-Length): the buffered body hits the cap
    big = b'{"schemaVersion":2,"pad":"' + b"x" * (4 * 1024 * 1024) + b'"}'
    try:
        r = reg.req("PUT", "/v2/bad/manifests/big", data=iter([big[:1 << 20], big[1 << 20:]]),
                    headers={"Content-Type": OCI_MANIFEST})
        assert r.status_code == 413
    except requests.ConnectionError:
        pass  # the server may answer and close before the client finished sending
    # digest reference mismatch
    good = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": cd, "size": len(cfg)}, "layers": []}
    r = reg.push_manifest("bad", "sha256:" + "8" * 64, good)
    assert r.status_code == 400 and code_of(r) == "DIGEST_INVALID"
    r = reg.push_manifest("bad", "bad:tag!", good)
    assert r.status_code in (400, 404)
    r = reg.push_manifest("bad", "-badtag", good)
    assert r.status_code == 400 and code_of(r) == "TAG_INVALID"
    # names
    r = reg.req("GET", "/v2/Bad/tags/list")
    assert r.status_code == 400 and code_of(r) == "NAME_INVALID"
    r = reg.req("GET", "/v2/a/../etc/tags/list")
    assert r.status_code in (400, 404)
    r = reg.req("GET", "/v2/nope/tags/list")
    assert r.status_code == 404 and code_of(r) == "NAME_UNKNOWN"
    r = reg.req("GET", "/v2/bad/manifests/missing")
    assert r.status_code == 404 and code_of(r) == "MANIFEST_UNKNOWN"
    r = reg.req("GET", f"/v2/bad/blobs/{'sha256:' + '9' * 64}")
    assert r.status_code == 404 and code_of(r) == "BLOB_UNKNOWN"
    r = reg.req("GET", "/v2/bad/blobs/uploads/00000000-0000-0000-0000-000000000000")
    assert r.status_code == 404 and code_of(r) == "BLOB_UPLOAD_UNKNOWN"
    r = reg.req("POST", "/v2/bad/tags/list")
    assert r.status_code == 405 and code_of(r) == "UNSUPPORTED"
    # Content-Range that does not parse
    loc = reg.req("POST", "/v2/bad/blobs/uploads/").headers["Location"]
    r = reg.req("PATCH", loc, data=b"abc", headers={"Content-Range": "x-y"})
    assert r.status_code in (400, 416) and code_of(r) == "BLOB_UPLOAD_INVALID"
    assert reg_server.alive()


def test_manifest_content_negotiation(reg_server, reg, ecr):
    create_repo(ecr, "multi")
    cfg = json.dumps({"architecture": "amd64", "os": "linux"}).encode()
    cd = reg.push_blob("multi", cfg)
    layer = os.urandom(100)
    ld = reg.push_blob("multi", layer)
    dm = json.dumps({"schemaVersion": 2, "mediaType": DOCKER_MANIFEST,
                     "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
                                "digest": cd, "size": len(cfg)},
                     "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                                 "digest": ld, "size": len(layer)}]}).encode()
    r = reg.push_manifest("multi", "docker", dm, DOCKER_MANIFEST)
    assert r.status_code == 201
    dmd = sha256(dm)
    assert r.headers["Docker-Content-Digest"] == dmd
    assert r.headers["Location"] == f"/v2/multi/manifests/{dmd}"
    arm = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                      "config": {"mediaType": OCI_CONFIG, "digest": cd, "size": len(cfg)},
                      "layers": []}).encode()
    assert reg.push_manifest("multi", sha256(arm), arm).status_code == 201
    for mt in (OCI_INDEX, "application/vnd.docker.distribution.manifest.list.v2+json"):
        idx = json.dumps({"schemaVersion": 2, "mediaType": mt, "manifests": [
            {"mediaType": OCI_MANIFEST, "digest": sha256(arm), "size": len(arm),
             "platform": {"os": "linux", "architecture": "arm64"}},
            {"mediaType": DOCKER_MANIFEST, "digest": dmd, "size": len(dm),
             "platform": {"os": "linux", "architecture": "amd64"}}]}).encode()
        r = reg.push_manifest("multi", "list", idx, mt)
        assert r.status_code == 201, r.text
        r = reg.req("GET", "/v2/multi/manifests/list", headers={"Accept": mt})
        assert r.headers["Content-Type"] == mt and r.content == idx
        # a client that only reads image manifests gets linux/amd64
        r = reg.req("GET", "/v2/multi/manifests/list", headers={"Accept": DOCKER_MANIFEST})
        assert r.status_code == 200 and r.headers["Docker-Content-Digest"] == dmd
    r = reg.req("HEAD", "/v2/multi/manifests/docker", headers={"Accept": DOCKER_MANIFEST})
    assert r.status_code == 200 and r.headers["Content-Length"] == str(len(dm))
    assert r.headers["Docker-Content-Digest"] == dmd
    # a child of an index cannot be deleted through BatchDeleteImage
    out = ecr.batch_delete_image(repositoryName="multi", imageIds=[{"imageDigest": dmd}])
    assert out["failures"][0]["failureCode"] == "ImageReferencedByManifestList"
    # /v2/ DELETE by tag removes only the tag
    assert reg.req("DELETE", "/v2/multi/manifests/docker").status_code == 202
    assert reg.req("GET", f"/v2/multi/manifests/{dmd}").status_code == 200
    assert reg.req("GET", "/v2/multi/manifests/docker").status_code == 404
    imgs = ecr.describe_images(repositoryName="multi", filter={"tagStatus": "UNTAGGED"})
    assert dmd in [x["imageDigest"] for x in imgs["imageDetails"]]


def test_tags_and_catalog_pagination(reg_server, reg, ecr):
    for name in ("cat-a", "cat-b", "cat-c"):
        create_repo(ecr, name)
    d = reg.push_image("cat-a", "t0", marker="t")
    m = ecr.batch_get_image(repositoryName="cat-a",
                            imageIds=[{"imageTag": "t0"}])["images"][0]["imageManifest"]
    for t in ("t1", "t2", "t3", "t4"):
        assert reg.push_manifest("cat-a", t, m.encode()).status_code == 201
    r = reg.req("GET", "/v2/cat-a/tags/list")
    assert r.json() == {"name": "cat-a", "tags": ["t0", "t1", "t2", "t3", "t4"]}
    assert "Link" not in r.headers
    r = reg.req("GET", "/v2/cat-a/tags/list", params={"n": 2})
    assert r.json()["tags"] == ["t0", "t1"]
    assert r.headers["Link"] == '</v2/cat-a/tags/list?n=2&last=t1>; rel="next"'
    seen = []
    url = "/v2/cat-a/tags/list?n=2"
    while url:
        r = reg.req("GET", url)
        seen += r.json()["tags"]
        link = r.headers.get("Link")
        url = link[1:link.index(">")] if link else None
    assert seen == ["t0", "t1", "t2", "t3", "t4"]
    r = reg.req("GET", "/v2/cat-a/tags/list", params={"n": 10, "last": "t2"})
    assert r.json()["tags"] == ["t3", "t4"]
    r = reg.req("GET", "/v2/cat-a/tags/list", params={"n": 0})
    assert r.json()["tags"] == []
    r = reg.req("GET", "/v2/_catalog", params={"n": 2})
    assert r.json() == {"repositories": ["cat-a", "cat-b"]}
    assert r.headers["Link"] == '</v2/_catalog?n=2&last=cat-b>; rel="next"'
    r = reg.req("GET", "/v2/_catalog", params={"last": "cat-b"})
    assert r.json() == {"repositories": ["cat-c"]}
    assert sha256(m.encode()) == d


def test_referrers(reg_server, reg, ecr):
    create_repo(ecr, "refs")
    subject = reg.push_image("refs", "app", marker="subject")
    subj_size = len(reg.req("GET", f"/v2/refs/manifests/{subject}").content)
    empty = reg.push_blob("refs", b"{}")
    sig = reg.push_blob("refs", b"signature bytes")

    def artifact(at, note):
        return json.dumps({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": at,
            "config": {"mediaType": OCI_EMPTY, "digest": empty, "size": 2},
            "layers": [{"mediaType": "application/octet-stream", "digest": sig,
                        "size": len(b"signature bytes")}],
            "subject": {"mediaType": OCI_MANIFEST, "digest": subject, "size": subj_size},
            "annotations": {"note": note}}).encode()

    a1, a2 = artifact("application/vnd.example.sig", "one"), artifact("application/x-sbom", "two")
    for a in (a1, a2):
        r = reg.push_manifest("refs", sha256(a), a)
        assert r.status_code == 201
        assert r.headers["OCI-Subject"] == subject
    r = reg.req("GET", f"/v2/refs/referrers/{subject}")
    assert r.status_code == 200 and r.headers["Content-Type"] == OCI_INDEX
    idx = r.json()
    assert idx["mediaType"] == OCI_INDEX and idx["schemaVersion"] == 2
    got = {m["digest"]: m for m in idx["manifests"]}
    assert set(got) == {sha256(a1), sha256(a2)}
    assert got[sha256(a1)]["artifactType"] == "application/vnd.example.sig"
    assert got[sha256(a1)]["annotations"] == {"note": "one"}
    assert got[sha256(a1)]["size"] == len(a1)
    r = reg.req("GET", f"/v2/refs/referrers/{subject}",
                params={"artifactType": "application/x-sbom"})
    assert r.headers["OCI-Filters-Applied"] == "artifactType"
    assert [m["digest"] for m in r.json()["manifests"]] == [sha256(a2)]
    # unknown subject: an empty index
    r = reg.req("GET", f"/v2/refs/referrers/sha256:{'a' * 64}")
    assert r.status_code == 200 and r.json()["manifests"] == []
    r = reg.req("GET", "/v2/refs/referrers/nodigest")
    assert r.status_code == 400 and code_of(r) == "DIGEST_INVALID"
    # deleting the referrer removes it from the list
    assert reg.req("DELETE", f"/v2/refs/manifests/{sha256(a1)}").status_code == 202
    r = reg.req("GET", f"/v2/refs/referrers/{subject}")
    assert [m["digest"] for m in r.json()["manifests"]] == [sha256(a2)]
    det = reg_server.raw_ok("DescribeImages", {"repositoryName": "refs",
                                               "imageIds": [{"imageDigest": sha256(a2)}]},
                            service="ecr", target=f"{ECR_PREFIX}.DescribeImages")
    assert det["imageDetails"][0]["artifactMediaType"] == "application/x-sbom"
    assert det["imageDetails"][0]["subjectManifestDigest"] == subject


def test_concurrent_pulls(reg_server, reg, ecr, layout_multi, tmp_path):
    create_repo(ecr, "pulls")
    token = reg.password()
    skopeo("copy", "--dest-creds", f"AWS:{token}", "--dest-tls-verify=false",
           f"oci:{layout_multi['layout']}:latest", f"docker://{reg.host}/pulls:latest")

    def pull(i):
        out = tmp_path / f"o{i}"
        p = skopeo("copy", "--src-creds", f"AWS:{token}", "--src-tls-verify=false",
                   f"docker://{reg.host}/pulls:latest", f"oci:{out}:latest", check=False)
        if p.returncode != 0:
            return p.stderr
        idx = json.loads((out / "index.json").read_text())
        return idx["manifests"][0]["digest"]

    with concurrent.futures.ThreadPoolExecutor(20) as ex:
        results = list(ex.map(pull, range(20)))
    assert results == [layout_multi["digest"]] * 20


def test_large_blob_memory_stays_flat(reg_server, reg, ecr):
    create_repo(ecr, "big")
    size = 100 * 1024 * 1024
    chunk = 1024 * 1024
    h = hashlib.sha256()
    seed = os.urandom(chunk)
    chunks = [bytes([i]) + seed[1:] for i in range(size // chunk)]
    for c in chunks:
        h.update(c)
    digest = "sha256:" + h.hexdigest()
    pid = reg_server.proc.pid
    base = rss_kb(pid)
    peak = [base]

    def sampled(it):
        for c in it:
            peak[0] = max(peak[0], rss_kb(pid))
            yield c

    loc = reg.req("POST", "/v2/big/blobs/uploads/").headers["Location"]
    r = reg.req("PATCH", loc, data=sampled(chunks), timeout=300)
    assert r.status_code == 202 and r.headers["Range"] == f"0-{size - 1}"
    r = reg.req("PUT", loc, params={"digest": digest}, timeout=300)
    assert r.status_code == 201, r.text
    with reg.req("GET", f"/v2/big/blobs/{digest}", stream=True, timeout=300) as r:
        assert r.status_code == 200
        hh = hashlib.sha256()
        n = 0
        for c in r.iter_content(1024 * 1024):
            hh.update(c)
            n += len(c)
            peak[0] = max(peak[0], rss_kb(pid))
    assert n == size and "sha256:" + hh.hexdigest() == digest
    growth_mb = (peak[0] - base) / 1024
    assert growth_mb < 32, f"server RSS grew by {growth_mb:.1f} MiB for a 100 MiB blob"
