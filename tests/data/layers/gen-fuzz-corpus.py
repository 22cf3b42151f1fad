#!/usr/bin/python3
"""Writes the seed corpora of the image fuzz targets:

  fuzz/corpus/image-ref/       image references
  fuzz/corpus/image-auth/      WWW-Authenticate values
  fuzz/corpus/image-manifest/  a Content-Type selector byte + manifest/index/config JSON
  fuzz/corpus/image-unpack/    layer tarballs (plain, gzip), benign and malicious

Run from anywhere; output paths are relative to the repository root. The
files are deterministic so that re-running produces no diff.
"""
import gzip
import hashlib
import io
import json
import os
import tarfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
CORPUS = os.path.join(ROOT, "fuzz", "corpus")


def write(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


D = "sha256:" + "0123456789abcdef" * 4
D2 = "sha256:" + "fedcba9876543210" * 4

refs = [
    "busybox", "busybox:1.36", "library/busybox:latest", "docker.io/library/busybox",
    "localhost:5000/foo/bar:v1", "[::1]:5000/img", "127.0.0.1:5000/a_b/c-d.e",
    "123456789012.dkr.ecr.us-east-1.amazonaws.com/app:prod",
    f"busybox@{D}", f"r.io/x:t@{D}", "UPPER/case", "a..b", "foo@sha512:00", "host:99999/x",
]
for i, r in enumerate(refs):
    write("image-ref", f"ref-{i:02d}", r)

auths = [
    'Bearer realm="https://auth.docker.io/token",service="registry.docker.io"',
    'Bearer realm="https://a/t",service="s",scope="repository:x:pull",error="insufficient_scope"',
    'Basic realm="Registry Realm"',
    'Basic realm="b", Bearer realm="t"',
    'Negotiate abc==, Basic realm="x"',
    'Bearer realm="a\\"b", scope="repository:a:pull repository:b:pull"',
    'bearer REALM=https://unquoted,service=svc',
    'Bearer realm="unterminated',
]
for i, a in enumerate(auths):
    write("image-auth", f"auth-{i:02d}", a)

manifest = {
    "schemaVersion": 2,
    "mediaType": "application/vnd.oci.image.manifest.v1+json",
    "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": D, "size": 10},
    "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": D2,
                "size": 20}],
}
docker_manifest = dict(manifest, mediaType="application/vnd.docker.distribution.manifest.v2+json")
index = {
    "schemaVersion": 2,
    "mediaType": "application/vnd.oci.image.index.v1+json",
    "manifests": [
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": D, "size": 1,
         "platform": {"os": "linux", "architecture": "amd64"}},
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": D2, "size": 1,
         "platform": {"os": "linux", "architecture": "arm", "variant": "v7"}},
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": D2, "size": 1,
         "platform": {"os": "unknown", "architecture": "unknown"}},
    ],
}
config = {"architecture": "amd64", "os": "linux",
          "config": {"Env": ["PATH=/bin"], "Cmd": ["sh"], "WorkingDir": "/"},
          "rootfs": {"type": "layers", "diff_ids": [D, D2]}}
for i, (sel, doc) in enumerate([(0, manifest), (3, docker_manifest), (2, index),
                                 (4, dict(index, mediaType=None)), (0, config),
                                 (1, {"schemaVersion": 1})]):
    write("image-manifest", f"doc-{i:02d}", bytes([sel]) + json.dumps(doc).encode())


def tar(entries):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, kind, data in entries:
            ti = tarfile.TarInfo(name)
            ti.mtime = 1700000000
            ti.mode = 0o755 if kind == "dir" else 0o644
            if kind == "dir":
                ti.type = tarfile.DIRTYPE
                tf.addfile(ti)
            elif kind == "file":
                ti.size = len(data)
                tf.addfile(ti, io.BytesIO(data))
            elif kind == "sym":
                ti.type = tarfile.SYMTYPE
                ti.linkname = data
                tf.addfile(ti)
            elif kind == "hard":
                ti.type = tarfile.LNKTYPE
                ti.linkname = data
                tf.addfile(ti)
            elif kind == "chr":
                ti.type = tarfile.CHRTYPE
                tf.addfile(ti)
            elif kind == "fifo":
                ti.type = tarfile.FIFOTYPE
                tf.addfile(ti)
    return buf.getvalue()


layers = {
    "normal": [("bin", "dir", None), ("bin/sh", "file", b"#!x\n"), ("bin/ln", "hard", "bin/sh"),
               ("lib", "sym", "usr/lib"), ("usr/lib/x", "file", b"x")],
    "whiteouts": [("etc", "dir", None), ("etc/.wh.passwd", "file", b""),
                  ("data/.wh..wh..opq", "file", b""), (".wh..wh.plnk", "dir", None)],
    "dotdot": [("../../escape", "file", b"pwned")],
    "absolute": [("/abs/escape", "file", b"pwned")],
    "abs-symlink": [("evil", "sym", "/tmp"), ("evil/pwned", "file", b"x")],
    "rel-symlink": [("up", "sym", "../../.."), ("up/pwned", "file", b"x")],
    "hardlink-out": [("pw", "hard", "../../etc/passwd")],
    "hardlink-abs": [("pw", "hard", "/etc/passwd")],
    "device": [("null", "chr", None)],
    "fifo": [("pipe", "fifo", None)],
    "replace": [("a", "sym", "/etc/passwd"), ("a", "file", b"new"), ("d", "sym", "/"),
                ("d", "dir", None), ("d/x", "file", b"y")],
}
for name, entries in layers.items():
    raw = tar(entries)
    write("image-unpack", f"{name}.tar", raw)
    if name in ("normal", "whiteouts", "abs-symlink"):
        write("image-unpack", f"{name}.tar.gz", gzip.compress(raw, mtime=0))
