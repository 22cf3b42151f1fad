"""Helpers for the ECR / OCI registry tests: OCI image layouts built from
Debian's busybox-static, registry tokens, raw /v2/ requests, skopeo/podman
wrappers and RSS sampling."""
import base64
import gzip
import hashlib
import io
import json
import os
import pathlib
import shutil
import subprocess
import tarfile
import time

import requests

BUSYBOX = "/bin/busybox"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
ECR_PREFIX = "AmazonEC2ContainerRegistry_V20150921"


def sha256(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _tar_layer(files, compress=True):
    """files: list of (path, bytes, mode). Returns (blob, diff_id)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tf:
        dirs = set()
        for path, data, mode in files:
            parts = path.split("/")[:-1]
            for i in range(1, len(parts) + 1):
                d = "/".join(parts[:i])
                if d and d not in dirs:
                    dirs.add(d)
                    ti = tarfile.TarInfo(d)
                    ti.type = tarfile.DIRTYPE
                    ti.mode = 0o755
                    ti.mtime = 0
                    tf.addfile(ti)
            ti = tarfile.TarInfo(path)
            ti.size = len(data)
            ti.mode = mode
            ti.mtime = 0
            tf.addfile(ti, io.BytesIO(data))
    tar = raw.getvalue()
    diff_id = sha256(tar)
    if not compress:
        return tar, diff_id
    gz = gzip.compress(tar, compresslevel=1, mtime=0)
    return gz, diff_id


def _write_blob(layout, data):
    d = sha256(data)
    p = pathlib.Path(layout) / "blobs" / "sha256" / d.split(":")[1]
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(data)
    return d


def make_oci_layout(layout, tag="latest", extra_layers=(), marker=None, random_bytes=0,
                    compress=True):
    """Writes an OCI image layout with busybox as the first layer and one
    layer per entry of extra_layers (lists of (path, bytes, mode)). marker makes
    the config unique; random_bytes adds a layer of that many random bytes.
    Returns dict(manifest=..., digest=..., layers=[digests], config=digest)."""
    layout = pathlib.Path(layout)
    layout.mkdir(parents=True, exist_ok=True)
    (layout / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    bb = pathlib.Path(BUSYBOX).read_bytes()
    layers_files = [[("bin/busybox", bb, 0o755), ("bin/sh", bb, 0o755)]] + [list(x) for x in
                                                                           extra_layers]
    if random_bytes:
        layers_files.append([("data/random.bin", os.urandom(random_bytes), 0o644)])
    descs, diff_ids = [], []
    for files in layers_files:
        blob, diff_id = _tar_layer(files, compress=compress)
        d = _write_blob(layout, blob)
        descs.append({"mediaType": OCI_LAYER if compress else
                      "application/vnd.oci.image.layer.v1.tar", "digest": d, "size": len(blob)})
        diff_ids.append(diff_id)
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"Entrypoint": ["/bin/busybox"], "Cmd": ["sh"],
                   "Labels": {"skiff.test": marker or "x"}},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [{"created_by": "skiff test"} for _ in diff_ids],
    }
    cfg = json.dumps(config, sort_keys=True).encode()
    cfg_d = _write_blob(layout, cfg)
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": cfg_d, "size": len(cfg)},
        "layers": descs,
    }
    mbytes = json.dumps(manifest).encode()
    m_d = _write_blob(layout, mbytes)
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {"mediaType": OCI_MANIFEST, "digest": m_d, "size": len(mbytes),
         "annotations": {"org.opencontainers.image.ref.name": tag}}]}
    (layout / "index.json").write_text(json.dumps(index))
    return {"manifest": mbytes, "digest": m_d, "layers": [x["digest"] for x in descs],
            "config": cfg_d, "config_bytes": cfg, "layout": str(layout)}


def layout_blob(layout, digest):
    return (pathlib.Path(layout) / "blobs" / "sha256" / digest.split(":")[1]).read_bytes()


class Registry:
    """Raw /v2/ access to a skiff server with an ECR token."""

    def __init__(self, server, region="us-east-1"):
        self.server = server
        self.region = region
        self.host = f"127.0.0.1:{server.port}"
        self.base = f"http://{self.host}"
        self._password = None

    def password(self):
        if self._password is None:
            ecr = self.server.client("ecr", region=self.region)
            tok = ecr.get_authorization_token()["authorizationData"][0]["authorizationToken"]
            user, pw = base64.b64decode(tok).decode().split(":", 1)
            assert user == "AWS"
            self._password = pw
        return self._password

    def auth(self):
        return ("AWS", self.password())

    def req(self, method, path, auth=True, **kw):
        kw.setdefault("timeout", 60)
        if auth is True:
            kw["auth"] = self.auth()
        elif auth:
            kw["auth"] = auth
        url = path if path.startswith("http") else self.base + path
        return requests.request(method, url, **kw)

    def push_blob(self, repo, data):
        d = sha256(data)
        r = self.req("POST", f"/v2/{repo}/blobs/uploads/", params={"digest": d}, data=data,
                     headers={"Content-Type": "application/octet-stream"})
        assert r.status_code == 201, r.text
        return d

    def push_manifest(self, repo, ref, manifest, media_type=OCI_MANIFEST):
        body = manifest if isinstance(manifest, bytes) else json.dumps(manifest).encode()
        return self.req("PUT", f"/v2/{repo}/manifests/{ref}", data=body,
                        headers={"Content-Type": media_type})

    def push_image(self, repo, tag, marker="m", layers=1, size=64):
        """A small image pushed through raw /v2/ calls; returns its digest."""
        cfg = json.dumps({"architecture": "amd64", "os": "linux", "marker": marker}).encode()
        cd = self.push_blob(repo, cfg)
        descs = []
        for i in range(layers):
            data = f"{marker}-{i}-".encode() + os.urandom(size)
            descs.append({"mediaType": OCI_LAYER, "digest": self.push_blob(repo, data),
                          "size": len(data)})
        m = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
             "config": {"mediaType": OCI_CONFIG, "digest": cd, "size": len(cfg)},
             "layers": descs}
        body = json.dumps(m).encode()
        r = self.push_manifest(repo, tag, body)
        assert r.status_code == 201, r.text
        return sha256(body)


def skopeo(*args, timeout=300, check=True):
    p = subprocess.run(["skopeo", *args], capture_output=True, text=True, timeout=timeout)
    if check:
        assert p.returncode == 0, f"skopeo {' '.join(args)} failed: {p.stderr}"
    return p


def rss_kb(pid):
    try:
        for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def have(tool):
    return shutil.which(tool) is not None


def wait_for(pred, timeout=20.0, interval=0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(interval)
    return pred()
