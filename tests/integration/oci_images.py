"""Builds small OCI image layouts from Debian's busybox-static for tests, and
runs Debian's docker-registry (distribution 2.8) on loopback to serve them.

Nothing here needs Docker: layers are tar files written with tarfile, the
layout follows the OCI image-layout spec, and skopeo pushes it."""
import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
import time
import urllib.request

from ports import free_port

BUSYBOX = "/bin/busybox"
APPLETS = ["sh", "ls", "cat", "echo", "sleep", "wget", "nc", "httpd", "ip", "hostname", "id",
           "env", "true", "false", "kill", "ps", "grep", "head", "tail", "touch", "mkdir", "rm",
           "dd", "seq", "yes", "pwd", "whoami", "ping", "test", "printf", "wc", "date", "sync",
           "ln", "stat", "mount", "umount", "df", "ulimit", "trap", "timeout", "nslookup",
           "readlink", "chmod", "chown", "uname", "sysctl", "cut", "tr", "sed", "awk", "xargs",
           "find", "top", "free", "cp", "mv", "tee", "expr", "basename", "dirname", "nproc"]


def _tar_bytes(entries):
    """entries: list of (TarInfo, bytes-or-None)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for info, data in entries:
            tf.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def _dir(name, mode=0o755):
    ti = tarfile.TarInfo(name)
    ti.type = tarfile.DIRTYPE
    ti.mode = mode
    ti.mtime = 1700000000
    return ti, None


def _file(name, data, mode=0o644, uid=0, gid=0):
    ti = tarfile.TarInfo(name)
    ti.size = len(data)
    ti.mode = mode
    ti.uid, ti.gid = uid, gid
    ti.mtime = 1700000000
    return ti, data


def _symlink(name, target):
    ti = tarfile.TarInfo(name)
    ti.type = tarfile.SYMTYPE
    ti.linkname = target
    ti.mtime = 1700000000
    return ti, None


def busybox_layer():
    """The base layer: busybox, its applets, and a minimal /etc."""
    with open(BUSYBOX, "rb") as f:
        bb = f.read()
    entries = [_dir("bin"), _dir("etc"), _dir("tmp", 0o1777), _dir("proc"), _dir("sys"),
               _dir("dev"), _dir("root", 0o700), _dir("home"), _dir("home/app"), _dir("var"),
               _dir("var/www"), _file("bin/busybox", bb, 0o755)]
    for a in APPLETS:
        entries.append(_symlink(f"bin/{a}", "busybox"))
    entries.append(_file("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n"
                                      b"app:x:1000:1000:app:/home/app:/bin/sh\n"
                                      b"nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"))
    entries.append(_file("etc/group", b"root:x:0:\napp:x:1000:\nstaff:x:50:app\n"
                                     b"nogroup:x:65534:\n"))
    entries.append(_file("var/www/index.html", b"hello from skiff\n"))
    return _tar_bytes(entries)


def file_layer(files):
    """A layer adding files: {path: bytes}. A path of '.wh.NAME' deletes NAME."""
    entries = []
    dirs = set()
    for path in sorted(files):
        parts = path.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            d = "/".join(parts[:i])
            if d and d not in dirs:
                dirs.add(d)
                entries.append(_dir(d))
        entries.append(_file(path, files[path], 0o755 if path.endswith(".sh") else 0o644))
    return _tar_bytes(entries)


def _blob(layout, data):
    digest = hashlib.sha256(data).hexdigest()
    p = os.path.join(layout, "blobs", "sha256", digest)
    with open(p, "wb") as f:
        f.write(data)
    return "sha256:" + digest, len(data)


def build_layout(layout, layers, config=None, tag="latest", gzip_layers=True):
    """Writes an OCI image layout with the given uncompressed layer tars.
    config: dict for the image config's "config" section (Entrypoint, Cmd, Env, ...)."""
    os.makedirs(os.path.join(layout, "blobs", "sha256"), exist_ok=True)
    with open(os.path.join(layout, "oci-layout"), "w") as f:
        json.dump({"imageLayoutVersion": "1.0.0"}, f)
    diff_ids, descs = [], []
    for tar in layers:
        diff_ids.append("sha256:" + hashlib.sha256(tar).hexdigest())
        data = gzip.compress(tar, mtime=0) if gzip_layers else tar
        d, n = _blob(layout, data)
        descs.append({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip" if gzip_layers
                      else "application/vnd.oci.image.layer.v1.tar", "digest": d, "size": n})
    cfg = {"architecture": "amd64", "os": "linux", "created": "2026-01-01T00:00:00Z",
           "config": config or {"Cmd": ["/bin/sh"], "Env": ["PATH=/bin"]},
           "rootfs": {"type": "layers", "diff_ids": diff_ids}}
    cd, cn = _blob(layout, json.dumps(cfg).encode())
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                           "digest": cd, "size": cn}, "layers": descs}
    md, mn = _blob(layout, json.dumps(manifest).encode())
    index_path = os.path.join(layout, "index.json")
    index = {"schemaVersion": 2, "manifests": []}
    if os.path.exists(index_path):
        with open(index_path) as f:
            index = json.load(f)
        index["manifests"] = [m for m in index["manifests"]
                              if m.get("annotations", {}).get("org.opencontainers.image.ref.name") != tag]
    index["manifests"].append({"mediaType": "application/vnd.oci.image.manifest.v1+json",
                               "digest": md, "size": mn,
                               "annotations": {"org.opencontainers.image.ref.name": tag}})
    with open(index_path, "w") as f:
        json.dump(index, f)
    return md



class Registry:
    """Debian's docker-registry on a free loopback port with a temp storage dir."""

    def __init__(self, htpasswd=None):
        self.dir = tempfile.mkdtemp(prefix="skiff-registry-")
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        auth = ""
        if htpasswd:
            auth = f"auth:\n  htpasswd:\n    realm: skiff-test\n    path: {htpasswd}\n"
        cfg = os.path.join(self.dir, "config.yml")
        with open(cfg, "w") as f:
            f.write(f"version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n"
                    f"    rootdirectory: {self.dir}/data\n  delete:\n    enabled: true\n"
                    f"http:\n  addr: 127.0.0.1:{self.port}\n{auth}")
        self.proc = subprocess.Popen(["/usr/bin/docker-registry", "serve", cfg],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 20
        while time.time() < deadline:
            try:
                urllib.request.urlopen(f"http://{self.host}/v2/", timeout=1)
                return
            except urllib.error.HTTPError:
                return  # 401 with auth: it is up
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("docker-registry did not start")

    def push(self, layout, tag, repo, dest_tag=None, creds=None):
        cmd = ["skopeo", "copy", "--quiet", "--dest-tls-verify=false"]
        if creds:
            cmd += ["--dest-creds", creds]
        cmd += [f"oci:{layout}:{tag}", f"docker://{self.host}/{repo}:{dest_tag or tag}"]
        subprocess.run(cmd, check=True, capture_output=True)
        return f"{self.host}/{repo}:{dest_tag or tag}"

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        shutil.rmtree(self.dir, ignore_errors=True)
