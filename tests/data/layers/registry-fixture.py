#!/usr/bin/python3
"""Registry fixture for tests/unit/test-image-registry.c.

Usage: registry-fixture.py WORKDIR

Builds OCI image layouts from the host's busybox (layer tarballs written with
tarfile, layout JSON written directly), starts Debian's docker-registry
(distribution 2.8) on free loopback ports and pushes the images with skopeo:

  busybox:multi   three layers (gzip, gzip, plain tar); the second holds
                  whiteouts (.wh.hello and an opaque data/ directory)
  other:1         shares busybox's base layer
  multiarch:latest  an OCI index with linux/amd64 and linux/arm64 images
  tampered:1      one layer whose stored blob is altered after the push

Registries (all on one storage directory):
  plain     no auth
  htpasswd  Basic auth (user "skiff", password "s3cret"); absent when no
            bcrypt implementation is available
  token     bearer tokens from a token server in this process (RS256 JWTs
            signed with openssl); anonymous tokens grant pull on "busybox"
            only, "skiff"/"s3cret" grants everything
  flaky     an HTTP proxy to "plain" that cuts every blob body short

Prints one JSON line describing all of this (or {"skip": reason}) and then
serves until stdin reaches EOF, when it stops the registries and exits.
"""
import base64
import gzip
import hashlib
import http.server
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

USER, PASSWORD = "skiff", "s3cret"
procs = []


def out(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def sha256(b):
    return "sha256:" + hashlib.sha256(b).hexdigest()


# ---- layers and layouts ----

def tar_bytes(entries):
    """entries: (name, kind, data/target, mode)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, kind, data, mode in entries:
            ti = tarfile.TarInfo(name)
            ti.mtime = 1700000000
            ti.mode = mode
            if kind == "dir":
                ti.type = tarfile.DIRTYPE
                tf.addfile(ti)
            elif kind == "file":
                ti.size = len(data)
                tf.addfile(ti, io.BytesIO(data))
            elif kind == "symlink":
                ti.type = tarfile.SYMTYPE
                ti.linkname = data
                tf.addfile(ti)
            elif kind == "hardlink":
                ti.type = tarfile.LNKTYPE
                ti.linkname = data
                tf.addfile(ti)
    return buf.getvalue()


class Layout:
    def __init__(self, root):
        self.root = root
        os.makedirs(os.path.join(root, "blobs", "sha256"), exist_ok=True)
        with open(os.path.join(root, "oci-layout"), "w") as f:
            json.dump({"imageLayoutVersion": "1.0.0"}, f)
        self.index = []

    def blob(self, data):
        d = sha256(data)
        with open(os.path.join(self.root, "blobs", "sha256", d[7:]), "wb") as f:
            f.write(data)
        return {"digest": d, "size": len(data)}

    def image(self, layers, arch="amd64", env=None):
        """layers: list of (tar bytes, 'gzip'|'tar'). Returns the manifest descriptor."""
        descs, diff_ids = [], []
        for raw, comp in layers:
            diff_ids.append(sha256(raw))
            if comp == "gzip":
                data = gzip.compress(raw, mtime=0)
                mt = "application/vnd.oci.image.layer.v1.tar+gzip"
            else:
                data = raw
                mt = "application/vnd.oci.image.layer.v1.tar"
            d = self.blob(data)
            d["mediaType"] = mt
            descs.append(d)
        config = {
            "architecture": arch,
            "os": "linux",
            "config": {"Env": env or ["PATH=/bin"], "Cmd": ["sh"], "WorkingDir": "/app"},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        }
        c = self.blob(json.dumps(config).encode())
        c["mediaType"] = "application/vnd.oci.image.config.v1+json"
        manifest = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": c,
            "layers": descs,
        }
        m = self.blob(json.dumps(manifest).encode())
        m["mediaType"] = "application/vnd.oci.image.manifest.v1+json"
        return m

    def tag(self, desc, tag):
        d = dict(desc)
        d["annotations"] = {"org.opencontainers.image.ref.name": tag}
        self.index.append(d)
        with open(os.path.join(self.root, "index.json"), "w") as f:
            json.dump({"schemaVersion": 2, "manifests": self.index}, f)

    def multi(self, entries):
        idx = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
               "manifests": entries}
        d = self.blob(json.dumps(idx).encode())
        d["mediaType"] = "application/vnd.oci.image.index.v1+json"
        return d


def build_layouts(work, busybox):
    with open(busybox, "rb") as f:
        bb = f.read()
    base = tar_bytes([
        ("bin", "dir", None, 0o755),
        ("bin/busybox", "file", bb, 0o755),
        ("bin/sh", "symlink", "busybox", 0o777),
        ("bin/cat", "hardlink", "bin/busybox", 0o755),
        ("etc", "dir", None, 0o755),
        ("etc/hello", "file", b"hello\n", 0o644),
        ("data", "dir", None, 0o755),
        ("data/a", "file", b"a\n", 0o644),
        ("data/b", "file", b"b\n", 0o644),
    ])
    upper = tar_bytes([
        ("etc", "dir", None, 0o755),
        ("etc/.wh.hello", "file", b"", 0o644),
        ("etc/issue", "file", b"skiff\n", 0o644),
        ("data", "dir", None, 0o755),
        ("data/.wh..wh..opq", "file", b"", 0o644),
        ("data/c", "file", b"c\n", 0o644),
    ])
    app = tar_bytes([("app", "dir", None, 0o755), ("app/config", "file", b"v1\n", 0o644)])
    other = tar_bytes([("other", "dir", None, 0o755), ("other/file", "file", b"o\n", 0o644)])
    amd = tar_bytes([("arch", "file", b"amd64\n", 0o644)])
    arm = tar_bytes([("arch", "file", b"arm64\n", 0o644)])
    tampered = tar_bytes([("t", "file", os.urandom(4096), 0o644)])

    layouts = {}
    lay = Layout(os.path.join(work, "oci-busybox"))
    lay.tag(lay.image([(base, "gzip"), (upper, "gzip"), (app, "tar")]), "multi")
    layouts["busybox:multi"] = lay.root
    lay = Layout(os.path.join(work, "oci-other"))
    lay.tag(lay.image([(base, "gzip"), (other, "gzip")]), "1")
    layouts["other:1"] = lay.root
    lay = Layout(os.path.join(work, "oci-multiarch"))
    m_amd = lay.image([(base, "gzip"), (amd, "gzip")], arch="amd64")
    m_arm = lay.image([(base, "gzip"), (arm, "gzip")], arch="arm64")
    m_amd["platform"] = {"os": "linux", "architecture": "amd64"}
    m_arm["platform"] = {"os": "linux", "architecture": "arm64", "variant": "v8"}
    lay.tag(lay.multi([m_arm, m_amd]), "latest")
    layouts["multiarch:latest"] = lay.root
    lay = Layout(os.path.join(work, "oci-tampered"))
    lay.tag(lay.image([(tampered, "gzip")]), "1")
    tampered_digest = sha256(gzip.compress(tampered, mtime=0))
    layouts["tampered:1"] = lay.root
    return layouts, tampered_digest


# ---- registries ----

def registry_config(path, port, storage, auth=None):
    lines = [
        "version: 0.1",
        "log:",
        "  level: error",
        "  accesslog:",
        "    disabled: true",
        "storage:",
        "  filesystem:",
        f"    rootdirectory: {storage}",
        "  maintenance:",
        "    uploadpurging:",
        "      enabled: false",
        "http:",
        f"  addr: 127.0.0.1:{port}",
        "  secret: skiff-test-secret",
    ]
    if auth:
        lines += auth
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def wait_http(url, timeout=30):
    end = time.time() + timeout
    while time.time() < end:
        try:
            urllib.request.urlopen(url, timeout=2)
            return True
        except urllib.error.HTTPError:
            return True
        except Exception:
            time.sleep(0.1)
    return False


def start_registry(work, name, storage, auth=None):
    port = free_port()
    cfg = os.path.join(work, f"registry-{name}.yml")
    registry_config(cfg, port, storage, auth)
    log = open(os.path.join(work, f"registry-{name}.log"), "w")
    p = subprocess.Popen(["docker-registry", "serve", cfg], stdout=log, stderr=log,
                         stdin=subprocess.DEVNULL)
    procs.append(p)
    if not wait_http(f"http://127.0.0.1:{port}/v2/"):
        raise RuntimeError(f"registry {name} did not start")
    return f"127.0.0.1:{port}"


def b64url(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def libtrust_kid(der):
    h = hashlib.sha256(der).digest()[:30]
    s = base64.b32encode(h).decode().rstrip("=")
    return ":".join(s[i:i + 4] for i in range(0, len(s), 4))


class TokenServer:
    def __init__(self, work):
        self.key = os.path.join(work, "token.key")
        self.cert = os.path.join(work, "token.crt")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                        "-keyout", self.key, "-out", self.cert, "-days", "2",
                        "-subj", "/CN=skiff-token"], check=True, capture_output=True)
        der = subprocess.run(["openssl", "pkey", "-in", self.key, "-pubout", "-outform", "DER"],
                             check=True, capture_output=True).stdout
        self.kid = libtrust_kid(der)
        self.requests = 0

    def sign(self, claims):
        header = {"typ": "JWT", "alg": "RS256", "kid": self.kid}
        signing = (b64url(json.dumps(header).encode()) + "." +
                   b64url(json.dumps(claims).encode())).encode()
        sig = subprocess.run(["openssl", "dgst", "-sha256", "-sign", self.key], input=signing,
                             check=True, capture_output=True).stdout
        return signing.decode() + "." + b64url(sig)

    def handler(self):
        server = self

        class H(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                server.requests += 1
                q = urllib.parse.urlparse(self.path)
                params = urllib.parse.parse_qs(q.query)
                authed = False
                auth = self.headers.get("Authorization", "")
                if auth.startswith("Basic "):
                    try:
                        u, _, pw = base64.b64decode(auth[6:]).decode().partition(":")
                    except Exception:
                        u, pw = "", ""
                    if (u, pw) != (USER, PASSWORD):
                        body = b'{"details":"incorrect username or password"}'
                        self.send_response(401)
                        self.send_header("Content-Length", str(len(body)))
                        self.end_headers()
                        self.wfile.write(body)
                        return
                    authed = True
                access = []
                for scope in params.get("scope", []):
                    parts = scope.split(":")
                    if len(parts) != 3 or parts[0] != "repository":
                        continue
                    if authed or parts[1] == "busybox":
                        access.append({"type": "repository", "name": parts[1],
                                       "actions": ["pull"]})
                now = int(time.time())
                claims = {"iss": "skiff-test-issuer", "sub": USER if authed else "",
                          "aud": params.get("service", [""])[0], "exp": now + 600,
                          "nbf": now - 10, "iat": now, "jti": os.urandom(8).hex(),
                          "access": access}
                body = json.dumps({"token": server.sign(claims)}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        return H


def flaky_handler(upstream):
    class H(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a):
            pass

        def do_GET(self):
            req = urllib.request.Request(f"http://{upstream}{self.path}")
            for h in ("Accept", "Authorization"):
                if self.headers.get(h):
                    req.add_header(h, self.headers[h])
            try:
                r = urllib.request.urlopen(req, timeout=10)
                status, headers, body = r.status, r.headers, r.read()
            except urllib.error.HTTPError as e:
                status, headers, body = e.code, e.headers, e.read()
            self.send_response(status)
            for h in ("Content-Type", "Docker-Content-Digest", "WWW-Authenticate"):
                if headers.get(h):
                    self.send_header(h, headers[h])
            self.send_header("Content-Length", str(len(body)))
            if "/blobs/" in self.path and status == 200 and len(body) > 16:
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(body[:len(body) // 2])
                self.wfile.flush()
                self.close_connection = True
                return
            self.end_headers()
            self.wfile.write(body)

    return H


def serve(handler):
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return f"127.0.0.1:{srv.server_address[1]}"


def manifest_digest(host, repo, tag):
    req = urllib.request.Request(f"http://{host}/v2/{repo}/manifests/{tag}", method="GET")
    req.add_header("Accept", ", ".join([
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json"]))
    body = urllib.request.urlopen(req, timeout=10).read()
    return sha256(body)


def bcrypt_hash(password):
    try:
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import crypt
        h = crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=1 << 5))
        if h and h.startswith("$2"):
            return h
    except Exception:
        pass
    if shutil.which("htpasswd"):
        r = subprocess.run(["htpasswd", "-nbB", USER, password], capture_output=True, text=True)
        if r.returncode == 0:
            return r.stdout.strip().split(":", 1)[1]
    return None


def main():
    work = sys.argv[1]
    missing = [t for t in ("docker-registry", "skopeo", "openssl") if not shutil.which(t)]
    busybox = shutil.which("busybox") or "/bin/busybox"
    if not os.path.exists(busybox):
        missing.append("busybox")
    if missing:
        out({"skip": "missing " + ", ".join(missing)})
        return
    storage = os.path.join(work, "storage")
    os.makedirs(storage, exist_ok=True)
    layouts, tampered_digest = build_layouts(work, busybox)

    info = {"skipped": []}
    info["plain"] = plain = start_registry(work, "plain", storage)
    policy = os.path.join(work, "policy.json")
    with open(policy, "w") as f:
        json.dump({"default": [{"type": "insecureAcceptAnything"}]}, f)
    for ref, root in layouts.items():
        name, tag = ref.split(":")
        subprocess.run(["skopeo", "--policy", policy, "copy", "--all", "--dest-tls-verify=false",
                        f"oci:{root}:{tag}", f"docker://{plain}/{ref}"],
                       check=True, capture_output=True)
    info["digests"] = {ref: manifest_digest(plain, *ref.split(":")) for ref in layouts}

    # Alter the tampered layer in the registry's storage (same size).
    data = os.path.join(storage, "docker/registry/v2/blobs/sha256", tampered_digest[7:9],
                        tampered_digest[7:], "data")
    with open(data, "r+b") as f:
        f.seek(100)
        b = f.read(1)
        f.seek(100)
        f.write(bytes([b[0] ^ 0xff]))
    info["tampered_layer"] = tampered_digest

    h = bcrypt_hash(PASSWORD)
    if h:
        hp = os.path.join(work, "htpasswd")
        with open(hp, "w") as f:
            f.write(f"{USER}:{h}\n")
        info["htpasswd"] = start_registry(work, "htpasswd", storage, [
            "auth:", "  htpasswd:", "    realm: skiff-basic", f"    path: {hp}"])
    else:
        info["htpasswd"] = None
        info["skipped"].append("htpasswd: no bcrypt implementation (python crypt or htpasswd)")

    ts = TokenServer(work)
    token_addr = serve(ts.handler())
    info["token"] = start_registry(work, "token", storage, [
        "auth:", "  token:", f"    realm: http://{token_addr}/token",
        "    service: skiff-test", "    issuer: skiff-test-issuer",
        f"    rootcertbundle: {ts.cert}"])
    info["flaky"] = serve(flaky_handler(plain))
    info["user"], info["password"] = USER, PASSWORD
    out(info)
    sys.stdin.read()


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
    try:
        main()
    except Exception as e:  # reported to the test, which fails
        out({"error": f"{type(e).__name__}: {e}"})
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=5)
            except Exception:
                p.kill()
