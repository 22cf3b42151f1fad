"""The OCI distribution-spec conformance suite (v1.1) against skiff's /v2/.

tests/integration/run-oci-conformance.sh builds the suite offline from
Debian's Go packages (ported from ginkgo v2 to the ginkgo v1 that Debian 12
ships) and runs it; this test skips with the script's reason when the Go
toolchain, the Debian Go packages or the suite's sources are not available
(see the script's header for what to install and where the sources come
from)."""
import os
import pathlib
import subprocess

import pytest

from registry_helpers import Registry

SCRIPT = pathlib.Path(__file__).resolve().parent / "run-oci-conformance.sh"


def test_oci_distribution_conformance(server_factory, tmp_path):
    srv = server_factory("conformance").start()
    ecr = srv.client("ecr")
    for name in ("conformance/repo", "conformance/mount"):
        ecr.create_repository(repositoryName=name)
    reg = Registry(srv)
    env = dict(os.environ,
               OCI_ROOT_URL=reg.base,
               OCI_NAMESPACE="conformance/repo",
               OCI_CROSSMOUNT_NAMESPACE="conformance/mount",
               OCI_USERNAME="AWS",
               OCI_PASSWORD=reg.password(),
               OCI_TEST_PULL="1", OCI_TEST_PUSH="1",
               OCI_TEST_CONTENT_DISCOVERY="1", OCI_TEST_CONTENT_MANAGEMENT="1",
               OCI_CONFORMANCE_WORK=str(tmp_path / "work"),
               OCI_REPORT_DIR=str(tmp_path))
    p = subprocess.run(["sh", str(SCRIPT)], capture_output=True, text=True, env=env,
                       timeout=900)
    if p.returncode == 77:
        reason = [ln for ln in p.stderr.splitlines() if "SKIP:" in ln]
        pytest.skip(reason[-1] if reason else "OCI conformance suite unavailable")
    tail = (p.stdout + p.stderr)[-6000:]
    assert p.returncode == 0, f"conformance suite failed:\n{tail}"
    assert " 0 Failed" in p.stdout, tail
