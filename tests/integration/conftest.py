"""Fixtures for the skiff integration suite.

Every test gets its own skiff server (they start in a few milliseconds) on a
free loopback port with a fresh data directory, started with --no-agent. The
tests play the node agent themselves (RegisterContainerInstance,
Submit*StateChange). Clients are the unchanged boto3 and aws CLI pointed at
the server with --endpoint-url.

Environment:
  SKIFF_BIN      the binary under test (default <repo>/build/skiff)
  SKIFF_AWS_CLI  the aws CLI to drive (default /usr/bin/aws, Debian's v2)
"""
import configparser
import datetime
import json
import os
import pathlib
import shutil
import signal
import subprocess
import tempfile
import time
import types
from unittest import mock

import boto3
import botocore.auth
import botocore.awsrequest
import botocore.credentials
import pytest
import requests
from botocore.config import Config
from ports import free_port

REPO = pathlib.Path(__file__).resolve().parents[2]
SKIFF_BIN = os.environ.get("SKIFF_BIN") or str(REPO / "build" / "skiff")
AWS_CLI = os.environ.get("SKIFF_AWS_CLI") or "/usr/bin/aws"
REGION = "us-east-1"
DEFAULT_ACCOUNT = "000000000000"
ECS_TARGET_PREFIX = "AmazonEC2ContainerServiceV20141113"
DATA_DIR = pathlib.Path(__file__).resolve().parent / "data"


_OWN_BASETEMP = None


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: very slow test (still run by default)")
    # Other suites may run pytest concurrently on this machine; pytest's rotation of
    # /tmp/pytest-of-<user> would then delete our live data dirs. Use a private basetemp.
    global _OWN_BASETEMP
    if not config.option.basetemp:
        _OWN_BASETEMP = tempfile.mkdtemp(prefix="skiff-it-")
        config.option.basetemp = _OWN_BASETEMP


def pytest_sessionfinish(session, exitstatus):
    if _OWN_BASETEMP and session.testsfailed == 0 and not os.environ.get("SKIFF_KEEP_TMP"):
        shutil.rmtree(_OWN_BASETEMP, ignore_errors=True)


def pytest_sessionstart(session):
    if not os.access(SKIFF_BIN, os.X_OK):
        pytest.exit(f"skiff binary not found or not executable: {SKIFF_BIN} "
                    "(run `make build` or set SKIFF_BIN)", returncode=4)
    if not os.access(AWS_CLI, os.X_OK):
        pytest.exit(f"aws CLI not found: {AWS_CLI} (set SKIFF_AWS_CLI)", returncode=4)



class ServerError(RuntimeError):
    pass


class RawResponse:
    """What a raw request returned: status, headers, parsed JSON (or None), text."""

    def __init__(self, resp):
        self.status = resp.status_code
        self.headers = resp.headers
        self.text = resp.text
        try:
            self.json = resp.json()
        except ValueError:
            self.json = None

    @property
    def error_type(self):
        if not isinstance(self.json, dict):
            return None
        t = self.json.get("__type")
        if t is None:
            return None
        # botocore's rule: strip anything before '#' and after ':'
        return t.split("#")[-1].split(":")[0]

    @property
    def message(self):
        if not isinstance(self.json, dict):
            return None
        return self.json.get("message", self.json.get("Message"))

    def __repr__(self):
        return f"<RawResponse {self.status} {self.text[:300]!r}>"


class Server:
    """One skiff server process bound to a data dir."""

    def __init__(self, base_dir, name="srv", account_id=None, region=None, env=None,
                 extra_args=()):
        self.base_dir = pathlib.Path(base_dir)
        self.data_dir = self.base_dir / f"{name}-data"
        self.log_path = self.base_dir / f"{name}.log"
        self.account_id = account_id
        self.region = region
        self.env = dict(env or {})
        self.extra_args = list(extra_args)
        self.port = free_port()
        self.proc = None
        self._log = None
        self.last_returncode = None
        self.expect_running = False  # set while started and not deliberately stopped/killed

    # --- process control ---

    @property
    def endpoint(self):
        return f"http://127.0.0.1:{self.port}"

    @property
    def credentials_path(self):
        return self.data_dir / "credentials"

    def argv(self):
        a = [SKIFF_BIN, "server", "--listen", f"127.0.0.1:{self.port}", "--data",
             str(self.data_dir), "--no-agent"]
        if self.account_id:
            a += ["--account-id", self.account_id]
        if self.region:
            a += ["--region", self.region]
        return a + self.extra_args

    def start(self, timeout=15.0):
        assert self.proc is None or self.proc.poll() is not None, "already running"
        env = dict(os.environ)
        env.pop("SKIFF_ROOT_ACCESS_KEY_ID", None)
        env.pop("SKIFF_ROOT_SECRET_ACCESS_KEY", None)
        env.update(self.env)
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.argv(), stdout=self._log, stderr=subprocess.STDOUT,
                                     env=env, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            rc = self.proc.poll()
            if rc is not None:
                self.last_returncode = rc
                raise ServerError(f"skiff exited with {rc} during startup:\n{self.log()}")
            try:
                r = requests.get(self.endpoint + "/healthz", timeout=1)
                if r.status_code == 200:
                    self.expect_running = True
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.02)
        self.kill9()
        raise ServerError(f"skiff did not become healthy in {timeout}s:\n{self.log()}")

    def crashed(self):
        """True when the process died without being told to."""
        return self.expect_running and self.proc is not None and self.proc.poll() is not None

    def stop(self, timeout=15.0):
        """SIGTERM and wait; returns the exit code."""
        self.expect_running = False
        if self.proc is None:
            return self.last_returncode
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                self.last_returncode = "timeout"
                self.proc = None
                self._close_log()
                raise ServerError(f"skiff did not stop within {timeout}s after SIGTERM")
        self.last_returncode = self.proc.returncode
        self.proc = None
        self._close_log()
        return self.last_returncode

    def kill9(self):
        self.expect_running = False
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
        if self.proc is not None:
            self.last_returncode = self.proc.returncode
        self.proc = None
        self._close_log()

    def restart(self, timeout=15.0):
        """Clean stop (SIGTERM) and start again on the same data dir and port."""
        rc = self.stop()
        self.start(timeout)
        return rc

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def _close_log(self):
        if self._log:
            self._log.close()
            self._log = None

    def log(self):
        try:
            return self.log_path.read_text(errors="replace")[-8000:]
        except OSError:
            return ""

    def healthy(self):
        try:
            return requests.get(self.endpoint + "/healthz", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    # --- credentials and clients ---

    def credentials(self):
        cp = configparser.ConfigParser()
        cp.read(self.credentials_path)
        sec = cp["default"]
        return sec["aws_access_key_id"], sec["aws_secret_access_key"]

    def client(self, service="ecs", region=REGION, access_key=None, secret_key=None):
        ak, sk = self.credentials()
        return boto3.session.Session().client(
            service,
            region_name=region,
            endpoint_url=self.endpoint,
            aws_access_key_id=access_key or ak,
            aws_secret_access_key=secret_key or sk,
            config=Config(retries={"max_attempts": 1}, connect_timeout=5, read_timeout=30),
        )

    # --- aws CLI ---

    def _cli(self, args, region=REGION, service="ecs", timeout=120):
        env = {
            "PATH": "/usr/bin:/bin",
            "HOME": str(self.base_dir),
            "AWS_SHARED_CREDENTIALS_FILE": str(self.credentials_path),
            "AWS_CONFIG_FILE": str(self.base_dir / "aws-config-none"),
            "AWS_DEFAULT_REGION": region,
            "AWS_PAGER": "",
            "AWS_MAX_ATTEMPTS": "1",
            "AWS_RETRY_MODE": "standard",
        }
        argv = [AWS_CLI, "--endpoint-url", self.endpoint, "--output", "json", service] + [
            str(a) for a in args]
        return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=timeout,
                              cwd=str(self.base_dir))

    def aws(self, *args, region=REGION, service="ecs", timeout=120):
        """Runs `aws <service> ARGS`; asserts success and returns parsed JSON (or None)."""
        p = self._cli(args, region=region, service=service, timeout=timeout)
        assert p.returncode == 0, (
            f"aws {service} {' '.join(map(str, args))} failed rc={p.returncode}\n"
            f"stdout: {p.stdout}\nstderr: {p.stderr}")
        out = p.stdout.strip()
        return json.loads(out) if out else None

    def aws_fail(self, *args, region=REGION, service="ecs", timeout=120):
        """Runs `aws <service> ARGS` expecting failure; returns stderr."""
        p = self._cli(args, region=region, service=service, timeout=timeout)
        assert p.returncode != 0, f"expected failure, got: {p.stdout}"
        return p.stderr

    # --- raw signed requests ---

    def raw(self, operation, body=None, *, region=REGION, service="ecs", sign=True,
            access_key=None, secret_key=None, target=None, headers=None, tamper=False,
            signing_time=None, data=None, path="/"):
        """Sends one AWS JSON 1.1 request. body: dict (JSON-encoded) or bytes/str sent as is.

        target overrides the X-Amz-Target header; tamper flips the signature;
        signing_time (datetime, UTC) signs as if at that time."""
        if data is None:
            if body is None:
                data = b"{}"
            elif isinstance(body, (bytes, bytearray)):
                data = bytes(body)
            elif isinstance(body, str):
                data = body.encode()
            else:
                data = json.dumps(body).encode()
        hdrs = {
            "Content-Type": "application/x-amz-json-1.1",
            "X-Amz-Target": target if target is not None else f"{ECS_TARGET_PREFIX}.{operation}",
        }
        if headers:
            hdrs.update(headers)
        url = self.endpoint + path
        req = botocore.awsrequest.AWSRequest(method="POST", url=url, data=data, headers=hdrs)
        if sign:
            ak, sk = self.credentials()
            creds = botocore.credentials.Credentials(access_key or ak, secret_key or sk)
            signer = botocore.auth.SigV4Auth(creds, service, region)
            if signing_time is not None:
                fixed = signing_time

                class _Frozen(datetime.datetime):
                    @classmethod
                    def utcnow(cls):
                        return fixed

                shim = types.SimpleNamespace(datetime=_Frozen)
                with mock.patch.object(botocore.auth, "datetime", shim):
                    signer.add_auth(req)
            else:
                signer.add_auth(req)
            if tamper:
                auth = req.headers["Authorization"]
                sig_at = auth.index("Signature=") + len("Signature=")
                sig = auth[sig_at:]
                flipped = ("0" if sig[0] != "0" else "1") + sig[1:]
                del req.headers["Authorization"]
                req.headers["Authorization"] = auth[:sig_at] + flipped
        prepared = req.prepare()
        resp = requests.post(url, data=prepared.body, headers=dict(prepared.headers), timeout=30)
        return RawResponse(resp)

    def raw_ok(self, operation, body=None, **kw):
        """raw() that asserts HTTP 200 and returns the parsed body."""
        r = self.raw(operation, body, **kw)
        assert r.status == 200, f"{operation} failed: {r}"
        return r.json


@pytest.fixture
def server_factory(tmp_path):
    """Creates (not starts) servers under tmp_path; stops them all at teardown."""
    made = []

    def make(name=None, **kw):
        s = Server(tmp_path, name=name or f"srv{len(made)}", **kw)
        made.append(s)
        return s

    yield make
    crashed = []
    for s in made:
        if s.crashed():
            crashed.append(f"{s.data_dir}: exit {s.proc.returncode}\n{s.log()[-2000:]}")
            s.expect_running = False
            continue
        try:
            if s.alive():
                s.stop()
        except ServerError:
            s.kill9()
    if crashed:
        pytest.fail("skiff server died during the test:\n" + "\n".join(crashed))


@pytest.fixture
def server(server_factory):
    """A fresh running server (default account and region)."""
    return server_factory("main").start()


@pytest.fixture
def ecs(server):
    return server.client("ecs")


@pytest.fixture
def aws(server):
    return server.aws


@pytest.fixture
def aws_fail(server):
    return server.aws_fail


@pytest.fixture
def raw(server):
    return server.raw


@pytest.fixture
def seed_taskdef_path():
    return DATA_DIR / "scorekeep-taskdef.json"
