"""Node agent: container definition → OCI runtime mapping, with real runc
containers. Each test runs busybox containers that write what they observe
into a host dir bind-mounted at /out, and asserts on those files (and on the
host's cgroups / bundle files while the container runs)."""
import json
import os
import pathlib
import re

import pytest

from agent_helpers import (CG_ROOT, IDLE, Out, cmap, container, container_dir, node_fixture, run,
                           shell, stop_and_wait, summary, task_id, wait_task, wait_tasks,
                           wait_until)
from agent_helpers import images, out, registry, scratch  # noqa: F401  (fixtures)

PIDS_LIMIT = 100
node = node_fixture({"ECS_TASK_PIDS_LIMIT": str(PIDS_LIMIT)}, name="containers")


@pytest.fixture
def ecs(node):
    return node.client("ecs")


def run_stopped(ecs, containers, timeout=30, **kw):
    arn = run(ecs, containers, **kw)
    return wait_task(ecs, arn, "STOPPED", timeout)


def run_many(ecs, specs, timeout=40):
    """specs: list of (containers, kw). Runs all tasks, waits for all STOPPED."""
    arns = [run(ecs, c, **kw) for c, kw in specs]
    return wait_tasks(ecs, arns, "STOPPED", timeout)


def cap_bits(status_text, field="CapEff"):
    m = re.search(rf"^{field}:\s*([0-9a-f]+)", status_text, re.M)
    assert m, status_text
    return int(m.group(1), 16)


CAP_CHOWN, CAP_NET_ADMIN, CAP_SYS_MODULE, CAP_SYS_PTRACE, CAP_SYS_ADMIN, CAP_SYS_TIME = (
    0, 12, 16, 19, 21, 25)


# --- entryPoint / command / environment / user ------------------------------------


def test_entrypoint_and_command_merge_like_docker(ecs, images, scratch):
    img = images["epcmd"]  # Entrypoint [/record.sh, ep-image], Cmd [cmd-image-1, cmd-image-2]
    out = Out(scratch)
    specs = [
        ([container("dflt", img, out=out)], {"out": out}),
        ([container("cmdonly", img, command=["c1", "c2"], out=out)], {"out": out}),
        ([container("eponly", img, entryPoint=["/record.sh", "ep-td"], out=out)], {"out": out}),
        ([container("both", img, entryPoint=["/record.sh", "ep-td"], command=["c1"], out=out)],
         {"out": out}),
        ([container("runover", img, command=["td-cmd"], out=out)],
         {"out": out, "overrides": {"containerOverrides": [
             {"name": "runover", "command": ["run-cmd-1", "run-cmd-2"]}]}}),
    ]
    tasks = run_many(ecs, specs)
    for t in tasks:
        c = t["containers"][0]
        assert c.get("exitCode") == 0, summary(t)

    def args(n):
        return out.read(f"args.{n}", "").splitlines()

    assert args("dflt") == ["/record.sh", "ep-image", "cmd-image-1", "cmd-image-2"]
    assert args("cmdonly") == ["/record.sh", "ep-image", "c1", "c2"]
    # an entryPoint in the definition drops the image's Cmd (docker semantics)
    assert args("eponly") == ["/record.sh", "ep-td"]
    assert args("both") == ["/record.sh", "ep-td", "c1"]
    assert args("runover") == ["/record.sh", "ep-image", "run-cmd-1", "run-cmd-2"]


def test_environment_precedence_image_taskdef_overrides(ecs, images, out):
    c = shell("envc", images["epcmd"], "env > /out/env", out=out, environment=[
        {"name": "OVER_TD", "value": "td"}, {"name": "OVER_RUN", "value": "td"},
        {"name": "TD_ONLY", "value": "td"}, {"name": "WITH_EQ", "value": "a=b=c"}])
    t = run_stopped(ecs, [c], out=out, overrides={"containerOverrides": [
        {"name": "envc", "environment": [{"name": "OVER_RUN", "value": "run"},
                                         {"name": "RUN_ONLY", "value": "run"}]}]})
    assert cmap(t)["envc"].get("exitCode") == 0, summary(t)
    env = dict(l.split("=", 1) for l in out.read("env").splitlines() if "=" in l)
    assert env["IMG_ONLY"] == "img"
    assert env["OVER_TD"] == "td"
    assert env["OVER_RUN"] == "run"
    assert env["TD_ONLY"] == "td"
    assert env["RUN_ONLY"] == "run"
    assert env["WITH_EQ"] == "a=b=c"
    assert env["SPACED"] == "a b"
    assert env["PATH"] == "/bin"
    assert env.get("AWS_EXECUTION_ENV") == "AWS_ECS_EC2"


def test_working_directory(ecs, images, scratch):
    out = Out(scratch)
    tasks = run_many(ecs, [
        ([shell("wdimg", images["epcmd"], "pwd > /out/wd.img", out=out)], {"out": out}),
        ([shell("wdtd", images["epcmd"], "pwd > /out/wd.td", out=out,
                workingDirectory="/tmp")], {"out": out}),
        ([shell("wdnone", images["base"], "pwd > /out/wd.none", out=out)], {"out": out}),
    ])
    for t in tasks:
        assert t["containers"][0].get("exitCode") == 0, summary(t)
    assert out.read("wd.img").strip() == "/home/app"   # image WorkingDir
    assert out.read("wd.td").strip() == "/tmp"         # definition wins
    assert out.read("wd.none").strip() == "/"


@pytest.mark.parametrize("user,image,uid,gid,groups_incl", [
    ("app", "base", 1000, 1000, {1000, 50}),          # name from /etc/passwd, staff membership
    ("app:staff", "base", 1000, 50, {50}),
    ("1234:4321", "base", 1234, 4321, {4321}),
    ("1000", "base", 1000, 1000, {1000}),             # numeric uid listed in passwd: its group
    (None, "userimg", 1000, 1000, {1000, 50}),       # image config User
    (None, "base", 0, 0, {0}),
])
def test_user(ecs, images, out, user, image, uid, gid, groups_incl):
    kw = {"user": user} if user else {}
    c = shell("u", images[image], "id -u > /out/uid; id -g > /out/gid; id -G > /out/groups",
              out=out, **kw)
    t = run_stopped(ecs, [c], out=out)
    assert cmap(t)["u"].get("exitCode") == 0, summary(t)
    assert int(out.read("uid")) == uid
    assert int(out.read("gid")) == gid
    groups = {int(g) for g in out.read("groups").split()}
    assert groups_incl <= groups, groups


def test_unknown_user_cannot_start(ecs, images):
    t = run_stopped(ecs, [shell("u", images["base"], "true", user="nosuchuser")])
    c = cmap(t)["u"]
    assert (c.get("reason") or "").startswith("CannotStartContainerError"), summary(t)
    assert "exitCode" not in c
    assert t.get("stopCode") == "TaskFailedToStart", summary(t)


def test_hostname(ecs, images, out):
    c = shell("h", images["base"], "hostname > /out/hn; cat /etc/hostname > /out/etc", out=out,
              hostname="skiff-it-host")
    t = run_stopped(ecs, [c], out=out)
    assert cmap(t)["h"].get("exitCode") == 0, summary(t)
    assert out.read("hn").strip() == "skiff-it-host"
    assert out.read("etc").strip() == "skiff-it-host"


# --- resources ----------------------------------------------------------------------


def test_cpu_shares_and_memory_limits_in_cgroup(node, ecs, images, out):
    script = ("cat /sys/fs/cgroup/cpu/cpu.shares > /out/shares; "
              "cat /sys/fs/cgroup/memory/memory.limit_in_bytes > /out/limit; "
              "cat /sys/fs/cgroup/memory/memory.soft_limit_in_bytes > /out/soft; " + IDLE)
    c = shell("res", images["base"], script, out=out, cpu=512, memory=96, memoryReservation=48)
    arn = run(ecs, [c], out=out)
    t = wait_task(ecs, arn, "RUNNING")
    out.wait("soft")
    assert int(out.read("shares")) == 512
    assert int(out.read("limit")) == 96 << 20
    assert int(out.read("soft")) == 48 << 20
    # the same limits on the host, in /skiff/<key>/<task>/<container>
    leaf = f"skiff/{node.key}/{task_id(arn)}/{cmap(t)['res']['runtimeId']}"
    assert int((CG_ROOT / "memory" / leaf / "memory.limit_in_bytes").read_text()) == 96 << 20
    assert int((CG_ROOT / "cpu" / leaf / "cpu.shares").read_text()) == 512
    stop_and_wait(ecs, arn)


def test_task_level_cpu_and_memory(node, ecs, images, out):
    c = shell("t", images["base"], "echo up > /out/up; " + IDLE, out=out, memory=None)
    arn = run(ecs, [c], out=out, td_kw={"cpu": "512", "memory": "256"})
    wait_task(ecs, arn, "RUNNING")
    tcg = f"skiff/{node.key}/{task_id(arn)}"
    assert int((CG_ROOT / "cpu" / tcg / "cpu.cfs_period_us").read_text()) == 100000
    assert int((CG_ROOT / "cpu" / tcg / "cpu.cfs_quota_us").read_text()) == 50000
    assert int((CG_ROOT / "memory" / tcg / "memory.limit_in_bytes").read_text()) == 256 << 20
    stop_and_wait(ecs, arn)


def test_task_pids_limit(node, ecs, images, out):
    script = ("cat /sys/fs/cgroup/pids/pids.max > /out/pidsmax; "
              f"( i=0; while [ $i -lt {PIDS_LIMIT + 50} ]; do sleep 60 & i=$((i+1)); done ) "
              "2>/out/fork.err; set -- /proc/[0-9]*; echo $# > /out/nproc; sleep 60")
    c = shell("p", images["base"], script, out=out)
    arn = run(ecs, [c], out=out)
    wait_task(ecs, arn, "RUNNING")
    out.wait("nproc", 30)
    assert int(out.read("pidsmax")) == PIDS_LIMIT
    tcg = CG_ROOT / "pids" / "skiff" / node.key / task_id(arn)
    assert int((tcg / "pids.max").read_text()) == PIDS_LIMIT
    assert int((tcg / "pids.current").read_text()) <= PIDS_LIMIT
    assert int(out.read("nproc")) <= PIDS_LIMIT
    assert out.read("fork.err").strip(), "forks beyond the limit should have failed"
    stop_and_wait(ecs, arn)


def test_ulimits_within_host_limit(ecs, images, out):
    c = shell("ul", images["base"], "ulimit -Sn > /out/soft; ulimit -Hn > /out/hard", out=out,
              ulimits=[{"name": "nofile", "softLimit": 1024, "hardLimit": 2048}])
    t = run_stopped(ecs, [c], out=out)
    assert cmap(t)["ul"].get("exitCode") == 0, summary(t)
    assert int(out.read("soft")) == 1024
    assert int(out.read("hard")) == 2048


def test_ulimit_above_host_hard_limit_fails_to_start(node, ecs, images):
    limits = pathlib.Path(f"/proc/{node.agent_pid()}/limits").read_text()
    hard = int(re.search(r"^Max open files\s+\d+\s+(\d+)", limits, re.M).group(1))
    c = shell("ul", images["base"], "true",
              ulimits=[{"name": "nofile", "softLimit": 1024, "hardLimit": hard + 1}])
    t = run_stopped(ecs, [c])
    cc = cmap(t)["ul"]
    assert (cc.get("reason") or "").startswith("CannotStartContainerError"), summary(t)
    assert "exitCode" not in cc
    assert t.get("stopCode") == "TaskFailedToStart"


# --- linuxParameters -----------------------------------------------------------------


def test_capability_drop_chown(ecs, images, scratch):
    out = Out(scratch)
    script = ("touch /tmp/f; chown 1000 /tmp/f 2>/dev/null; echo $? > /out/chown.$ECS_CONTAINER_NAME;"
              " grep Cap /proc/self/status > /out/caps.$ECS_CONTAINER_NAME")
    tasks = run_many(ecs, [
        ([shell("drop", images["base"], script, out=out,
                linuxParameters={"capabilities": {"drop": ["CHOWN"]}})], {"out": out}),
        ([shell("keep", images["base"], script, out=out)], {"out": out}),
    ])
    for t in tasks:
        assert t["containers"][0].get("exitCode") == 0, summary(t)
    assert int(out.read("chown.drop")) != 0
    assert not cap_bits(out.read("caps.drop")) & (1 << CAP_CHOWN)
    assert int(out.read("chown.keep")) == 0
    assert cap_bits(out.read("caps.keep")) & (1 << CAP_CHOWN)


def test_capability_add_sys_admin(ecs, images, out):
    c = shell("add", images["base"],
              "grep Cap /proc/self/status > /out/caps; mount -t tmpfs none /mnt; echo $? > /out/mount",
              out=out, linuxParameters={"capabilities": {"add": ["SYS_ADMIN"]}})
    t = run_stopped(ecs, [c], out=out)
    assert cmap(t)["add"].get("exitCode") == 0, summary(t)
    assert cap_bits(out.read("caps")) & (1 << CAP_SYS_ADMIN)
    assert int(out.read("mount")) == 0


def test_secure_defaults(ecs, images, out):
    script = ("grep -E 'Seccomp|NoNewPrivs|Cap' /proc/self/status > /out/status; "
              "cat /proc/kcore > /out/kcore 2>/dev/null; echo $? > /out/kcore.rc; "
              "cat /proc/keys > /out/keys 2>/dev/null; "
              "mount -t tmpfs none /mnt 2>/dev/null; echo $? > /out/mount; "
              "echo skiff > /proc/sys/kernel/domainname 2>/dev/null; echo $? > /out/procsys; "
              "touch /sys/skiff-x 2>/dev/null; echo $? > /out/sys; id -u > /out/uid")
    t = run_stopped(ecs, [shell("sec", images["base"], script, out=out)], out=out)
    assert cmap(t)["sec"].get("exitCode") == 0, summary(t)
    st = out.read("status")
    assert re.search(r"^Seccomp:\s+2$", st, re.M), st
    assert re.search(r"^NoNewPrivs:\s+1$", st, re.M), st
    eff = cap_bits(st)
    for bit in (CAP_SYS_ADMIN, CAP_NET_ADMIN, CAP_SYS_MODULE, CAP_SYS_PTRACE, CAP_SYS_TIME):
        assert not eff & (1 << bit), f"cap {bit} should not be effective: {st}"
    assert eff & (1 << CAP_CHOWN)
    assert cap_bits(st, "CapBnd") & (1 << CAP_SYS_ADMIN) == 0
    assert out.read("kcore", "") == ""            # masked: /proc/kcore reads empty or is denied
    assert out.read("keys", "") == ""
    assert int(out.read("mount")) != 0
    assert int(out.read("procsys")) != 0
    assert int(out.read("sys")) != 0
    assert int(out.read("uid")) == 0


def test_init_process_enabled(ecs, images, scratch):
    out = Out(scratch)
    script = ("tr '\\0' ' ' < /proc/1/cmdline > /out/pid1.$ECS_CONTAINER_NAME; "
              "echo $$ > /out/self.$ECS_CONTAINER_NAME")
    tasks = run_many(ecs, [
        ([shell("init", images["base"], script, out=out,
                linuxParameters={"initProcessEnabled": True})], {"out": out}),
        ([shell("noinit", images["base"], script, out=out)], {"out": out}),
    ])
    for t in tasks:
        assert t["containers"][0].get("exitCode") == 0, summary(t)
    assert out.read("pid1.init").split()[0] in ("/sbin/docker-init", "/dev/init"), out.read(
        "pid1.init")
    assert int(out.read("self.init")) != 1
    assert int(out.read("self.noinit")) == 1


def _df_kb(text, mount):
    for line in text.splitlines():
        f = line.split()
        if f and f[-1] == mount:
            return int(f[1])
    raise AssertionError(text)


def test_shared_memory_size(ecs, images, scratch):
    out = Out(scratch)
    script = "df -k /dev/shm > /out/shm.$ECS_CONTAINER_NAME"
    tasks = run_many(ecs, [
        ([shell("shm128", images["base"], script, out=out,
                linuxParameters={"sharedMemorySize": 128})], {"out": out}),
        ([shell("shmdefault", images["base"], script, out=out)], {"out": out}),
    ])
    for t in tasks:
        assert t["containers"][0].get("exitCode") == 0, summary(t)
    assert _df_kb(out.read("shm.shm128"), "/dev/shm") == 128 * 1024
    assert _df_kb(out.read("shm.shmdefault"), "/dev/shm") == 64 * 1024


def test_tmpfs_mounts(ecs, images, out):
    c = shell("tmp", images["base"],
              "grep ' /scratch ' /proc/mounts > /out/mounts; df -k /scratch > /out/df; "
              "echo x > /scratch/f && echo ok > /out/write", out=out,
              linuxParameters={"tmpfs": [{"containerPath": "/scratch", "size": 32,
                                          "mountOptions": ["noexec"]}]})
    t = run_stopped(ecs, [c], out=out)
    assert cmap(t)["tmp"].get("exitCode") == 0, summary(t)
    m = out.read("mounts")
    assert m.split()[2] == "tmpfs", m
    assert "noexec" in m.split()[3].split(","), m
    assert _df_kb(out.read("df"), "/scratch") == 32 * 1024
    assert out.read("write").strip() == "ok"


def test_readonly_root_filesystem(ecs, images, out):
    c = shell("ro", images["base"],
              "touch /newfile 2>/dev/null; echo $? > /out/root; touch /out/vol && echo ok > /out/volw",
              out=out, readonlyRootFilesystem=True)
    t = run_stopped(ecs, [c], out=out)
    assert cmap(t)["ro"].get("exitCode") == 0, summary(t)
    assert int(out.read("root")) != 0
    assert out.read("volw").strip() == "ok"


def test_privileged(ecs, images, out):
    c = shell("priv", images["base"],
              "grep -E 'Seccomp|NoNewPrivs|Cap' /proc/self/status > /out/status; "
              "mount -t tmpfs none /mnt; echo $? > /out/mount", out=out, privileged=True)
    t = run_stopped(ecs, [c], out=out)
    assert cmap(t)["priv"].get("exitCode") == 0, summary(t)
    st = out.read("status")
    assert cap_bits(st) & (1 << CAP_SYS_ADMIN)
    assert cap_bits(st) & (1 << CAP_NET_ADMIN)
    assert re.search(r"^Seccomp:\s+0$", st, re.M), st
    assert re.search(r"^NoNewPrivs:\s+0$", st, re.M), st
    assert int(out.read("mount")) == 0


def test_system_controls_in_own_netns(ecs, images, out):
    host_before = (pathlib.Path("/proc/sys/net/core/somaxconn").read_text(),
                   pathlib.Path("/proc/sys/net/ipv4/ip_unprivileged_port_start").read_text())
    c = shell("sysctl", images["base"],
              "cat /proc/sys/net/core/somaxconn > /out/somaxconn; "
              "cat /proc/sys/net/ipv4/ip_unprivileged_port_start > /out/unpriv", out=out,
              systemControls=[{"namespace": "net.core.somaxconn", "value": "777"},
                              {"namespace": "net.ipv4.ip_unprivileged_port_start",
                               "value": "0"}])
    t = run_stopped(ecs, [c], out=out)
    assert cmap(t)["sysctl"].get("exitCode") == 0, summary(t)
    assert int(out.read("somaxconn")) == 777
    assert int(out.read("unpriv")) == 0
    host_after = (pathlib.Path("/proc/sys/net/core/somaxconn").read_text(),
                  pathlib.Path("/proc/sys/net/ipv4/ip_unprivileged_port_start").read_text())
    assert host_after == host_before


def test_docker_labels_become_bundle_annotations(node, ecs, images):
    labels = {"com.example.team": "qa", "skiff.it/label": "value with spaces"}
    c = shell("lab", images["base"], IDLE, dockerLabels=labels)
    arn = run(ecs, [c])
    wait_task(ecs, arn, "RUNNING")
    cfg = json.loads((container_dir(node, arn, "lab") / "bundle" / "config.json").read_text())
    for k, v in labels.items():
        assert cfg.get("annotations", {}).get(k) == v, cfg.get("annotations")
    stop_and_wait(ecs, arn)


# --- volumes --------------------------------------------------------------------------


def test_host_bind_mount(ecs, images, scratch, out):
    host = pathlib.Path(scratch) / "hostvol"
    host.mkdir()
    (host / "input.txt").write_text("from-host\n")
    c = shell("bind", images["base"], "cat /data/input.txt > /data/output.txt", out=out,
              mountPoints=[{"sourceVolume": "hv", "containerPath": "/data"}])
    t = run_stopped(ecs, [c], out=out, volumes=[{"name": "hv", "host": {"sourcePath": str(host)}}])
    assert cmap(t)["bind"].get("exitCode") == 0, summary(t)
    assert (host / "output.txt").read_text() == "from-host\n"


def test_mount_point_read_only(ecs, images, scratch, out):
    host = pathlib.Path(scratch) / "rovol"
    host.mkdir()
    (host / "input.txt").write_text("ro\n")
    c = shell("ro", images["base"],
              "cat /data/input.txt > /out/read; touch /data/new 2>/dev/null; echo $? > /out/write",
              out=out, mountPoints=[{"sourceVolume": "hv", "containerPath": "/data",
                                     "readOnly": True}])
    t = run_stopped(ecs, [c], out=out, volumes=[{"name": "hv", "host": {"sourcePath": str(host)}}])
    assert cmap(t)["ro"].get("exitCode") == 0, summary(t)
    assert out.read("read") == "ro\n"
    assert int(out.read("write")) != 0
    assert not (host / "new").exists()


def test_task_scoped_volume_shared_and_removed_with_task(node, ecs, images, out):
    writer = shell("writer", images["base"], "echo shared-data > /shared/x", essential=False,
                   mountPoints=[{"sourceVolume": "shared", "containerPath": "/shared"}])
    reader = shell("reader", images["base"], "cat /shared/x > /out/x; " + IDLE, out=out,
                   mountPoints=[{"sourceVolume": "shared", "containerPath": "/shared"}],
                   dependsOn=[{"containerName": "writer", "condition": "SUCCESS"}])
    arn = run(ecs, [writer, reader], out=out, volumes=[{"name": "shared"}])
    wait_task(ecs, arn, "RUNNING")
    assert out.wait("x") == "shared-data\n"
    vol = node.agent_data / "tasks" / task_id(arn) / "volumes" / "shared"
    assert (vol / "x").read_text() == "shared-data\n"
    stop_and_wait(ecs, arn)
    wait_until(lambda: not vol.exists(), 20, 0.2, "the task volume to be removed")


def test_volumes_from(ecs, images, scratch):
    out = Out(scratch)
    src = shell("src", images["base"], "echo from-src > /shared/f; " + IDLE, essential=False,
                mountPoints=[{"sourceVolume": "shared", "containerPath": "/shared"}])
    ro = shell("ro", images["base"],
               "cat /shared/f > /out/ro.read; touch /shared/ro 2>/dev/null; echo $? > /out/ro.write",
               out=out, essential=False, volumesFrom=[{"sourceContainer": "src", "readOnly": True}],
               dependsOn=[{"containerName": "src", "condition": "START"}])
    rw = shell("rw", images["base"],
               "sleep 0.5; cat /shared/f > /out/rw.read; touch /shared/rw; echo $? > /out/rw.write;"
               " " + IDLE, out=out, volumesFrom=[{"sourceContainer": "src"}],
               dependsOn=[{"containerName": "src", "condition": "START"}])
    arn = run(ecs, [src, ro, rw], out=out, volumes=[{"name": "shared"}])
    wait_task(ecs, arn, "RUNNING")
    out.wait("ro.write")
    out.wait("rw.write")
    assert out.read("ro.read") == "from-src\n"
    assert int(out.read("ro.write")) != 0
    assert out.read("rw.read") == "from-src\n"
    assert int(out.read("rw.write")) == 0
    stop_and_wait(ecs, arn)


def test_shared_docker_volume_outlives_tasks(node, ecs, images, out):
    name = f"persist{os.getpid()}"
    vol = {"name": name, "dockerVolumeConfiguration": {"scope": "shared", "autoprovision": True,
                                                       "driver": "local"}}
    mp = [{"sourceVolume": name, "containerPath": "/persist"}]
    t1 = run_stopped(ecs, [shell("w", images["base"], "echo kept > /persist/f", mountPoints=mp)],
                     volumes=[vol])
    assert cmap(t1)["w"].get("exitCode") == 0, summary(t1)
    t2 = run_stopped(ecs, [shell("r", images["base"], "cat /persist/f > /out/f", out=out,
                                 mountPoints=mp)], out=out, volumes=[vol])
    assert cmap(t2)["r"].get("exitCode") == 0, summary(t2)
    assert out.read("f") == "kept\n"


def test_extra_hosts_and_dns(ecs, images, out):
    c = shell("dns", images["base"], "cat /etc/hosts > /out/hosts; cat /etc/resolv.conf > /out/resolv",
              out=out, extraHosts=[{"hostname": "db.internal", "ipAddress": "10.9.8.7"}],
              dnsServers=["10.0.0.2"], dnsSearchDomains=["corp.example"])
    t = run_stopped(ecs, [c], out=out)
    assert cmap(t)["dns"].get("exitCode") == 0, summary(t)
    assert re.search(r"^10\.9\.8\.7\s+db\.internal$", out.read("hosts"), re.M), out.read("hosts")
    resolv = out.read("resolv")
    assert "nameserver 10.0.0.2" in resolv and "corp.example" in resolv, resolv


def test_pid_mode_host(ecs, images, scratch):
    out = Out(scratch)
    script = "tr '\\0' ' ' < /proc/1/cmdline > /out/pid1.$ECS_CONTAINER_NAME; true"
    tasks = run_many(ecs, [
        ([shell("hostpid", images["base"], script, out=out)], {"out": out,
                                                               "td_kw": {"pidMode": "host"}}),
        ([shell("ownpid", images["base"], script, out=out)], {"out": out}),
    ])
    for t in tasks:
        assert t["containers"][0].get("exitCode") == 0, summary(t)
    host_init = pathlib.Path("/proc/1/cmdline").read_bytes().replace(b"\0", b" ").decode()
    assert out.read("pid1.hostpid") == host_init
    assert out.read("pid1.ownpid").startswith("/bin/sh"), out.read("pid1.ownpid")


def test_task_through_the_aws_cli(node, images, scratch):
    """register-task-definition / run-task (with overrides) / wait / describe-tasks
    with the unchanged aws CLI."""
    out = Out(scratch)
    family = f"cli-{os.getpid()}"
    td = {"family": family, "volumes": [out.volume],
          "containerDefinitions": [shell("cli", images["base"], "echo $GREETING > /out/greeting",
                                         out=out)]}
    path = pathlib.Path(scratch) / "td.json"
    path.write_text(json.dumps(td))
    node.aws("register-task-definition", "--cli-input-json", f"file://{path}")
    ov = {"containerOverrides": [{"name": "cli", "environment": [
        {"name": "GREETING", "value": "hello-from-cli"}]}]}
    r = node.aws("run-task", "--cluster", "default", "--task-definition", family,
                 "--overrides", json.dumps(ov))
    assert r["failures"] == []
    arn = r["tasks"][0]["taskArn"]
    node.aws("wait", "tasks-stopped", "--cluster", "default", "--tasks", arn)
    t = node.aws("describe-tasks", "--cluster", "default", "--tasks", arn)["tasks"][0]
    assert t["lastStatus"] == "STOPPED"
    assert t["containers"][0]["exitCode"] == 0, t
    assert out.read("greeting") == "hello-from-cli\n"
