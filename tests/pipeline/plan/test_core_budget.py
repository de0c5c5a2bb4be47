"""The core budget: the affinity mask and the cgroup's CPU quota (``docker run --cpus``), the
smaller sizing the threads. The quota parser on cgroup files written to a temporary folder, and
a real run inside a real cgroup whose quota is one CPU."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT, make_video
from videoclf.config.load import parse_config
from videoclf.core.cpu import CpuQuota, cgroup_cpu_quota
from videoclf.plan.budget import core_budget, thread_plan


def fs(tmp_path: Path, proc: str, files: dict[str, str]) -> tuple[str, str]:
    """A fake /proc/self/cgroup and /sys/fs/cgroup tree: (proc file, root)."""
    root = tmp_path / "cgroup"
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text + "\n")
    (tmp_path / "proc_cgroup").write_text(proc)
    return str(tmp_path / "proc_cgroup"), str(root)


def test_v2_max_is_no_quota(tmp_path):
    proc, root = fs(tmp_path, "0::/system.slice/videoclf.service\n",
                    {"system.slice/videoclf.service/cpu.max": "max 100000", "system.slice/cpu.max": "max 100000"})
    assert cgroup_cpu_quota(proc, root) is None
    assert core_budget(affinity=8, quota=cgroup_cpu_quota(proc, root)).usable == 8


def test_v2_fractional_quota_rounds_down_to_at_least_one_core(tmp_path):
    proc, root = fs(tmp_path, "0::/docker/abc\n", {"docker/abc/cpu.max": "150000 100000"})
    quota = cgroup_cpu_quota(proc, root)
    assert quota == CpuQuota(cpus=1.5, file=os.path.join(root, "docker/abc/cpu.max"))
    budget = core_budget(affinity=16, quota=quota)
    assert (budget.usable, budget.affinity, budget.cgroup_quota, budget.source) == (1, 16, 1.5, "cgroup_quota")
    half = core_budget(affinity=16, quota=CpuQuota(cpus=0.5, file="cpu.max"))
    assert (half.usable, half.cgroup_quota) == (1, 0.5)


def test_v2_nested_cgroups_take_the_smallest_quota_on_the_way_to_the_root(tmp_path):
    # the service's own cgroup allows 3 CPUs, its slice 2, the root nothing
    proc, root = fs(tmp_path, "0::/limits.slice/videoclf.service\n",
                    {"limits.slice/videoclf.service/cpu.max": "300000 100000",
                     "limits.slice/cpu.max": "400000 200000", "cpu.max": "max 100000"})
    quota = cgroup_cpu_quota(proc, root)
    assert quota is not None and quota.cpus == 2.0 and quota.file.endswith("limits.slice/cpu.max")
    assert core_budget(affinity=16, quota=quota).usable == 2


def test_a_container_sees_only_its_own_subtree(tmp_path):
    # inside a cgroup namespace the process's path is "/" and its quota is on the mount itself
    proc, root = fs(tmp_path, "0::/\n", {"cpu.max": "200000 100000"})
    assert cgroup_cpu_quota(proc, root).cpus == 2.0
    # and an older host path whose folders this view lacks is skipped, not an error
    proc, root = fs(tmp_path / "b", "0::/kubepods/pod1/c1\n", {"cpu.max": "100000 100000"})
    assert cgroup_cpu_quota(proc, root).cpus == 1.0


def test_v1_cfs_quota_and_period(tmp_path):
    proc, root = fs(tmp_path, "5:memory:/x\n3:cpu,cpuacct:/docker/abc\n1:name=systemd:/x\n",
                    {"cpu,cpuacct/docker/abc/cpu.cfs_quota_us": "250000",
                     "cpu,cpuacct/docker/abc/cpu.cfs_period_us": "100000",
                     "cpu,cpuacct/docker/cpu.cfs_quota_us": "-1", "cpu,cpuacct/docker/cpu.cfs_period_us": "100000"})
    quota = cgroup_cpu_quota(proc, root)
    assert quota is not None and quota.cpus == 2.5
    assert core_budget(affinity=4, quota=quota).usable == 2


def test_v1_unlimited_and_a_quota_above_the_affinity_mask(tmp_path):
    proc, root = fs(tmp_path, "1:cpu:/a\n", {"cpu/a/cpu.cfs_quota_us": "-1", "cpu/a/cpu.cfs_period_us": "100000"})
    assert cgroup_cpu_quota(proc, root) is None
    # 8 CPUs of quota on a 2-core mask: the mask sizes the budget, the quota is still stated
    budget = core_budget(affinity=2, quota=CpuQuota(cpus=8.0, file="cpu.max"))
    assert (budget.usable, budget.cgroup_quota, budget.source) == (2, 8.0, "affinity")


def test_nothing_readable_is_no_quota(tmp_path):
    assert cgroup_cpu_quota(str(tmp_path / "missing"), str(tmp_path)) is None
    proc, root = fs(tmp_path, "0::/a\n", {"a/cpu.max": "garbage"})
    assert cgroup_cpu_quota(proc, root) is None


def test_the_thread_plan_carries_the_budget_it_was_sized_to():
    cfg = parse_config({"streams": [{"name": "a", "source": "a.mp4"}, {"name": "b", "source": "b.mp4"}]})
    plan = thread_plan(cfg, cores=4)
    assert plan.cores == plan.budget.usable == 4 and plan.budget.source == "given"
    assert [d.threads for d in plan.decoders] == [2, 2] and plan.engine.threads == 4


def cpu_cgroup_parent() -> tuple[Path, str]:
    """Where a child cgroup with a CPU quota can be made on this machine, and its version."""
    v2 = Path("/sys/fs/cgroup")
    if (v2 / "cgroup.controllers").exists():
        enabled = (v2 / "cgroup.subtree_control").read_text().split()
        if "cpu" not in enabled:
            pytest.skip(f"cgroup v2 without the cpu controller in {v2}/cgroup.subtree_control ({enabled})")
        return v2, "v2"
    v1 = Path("/sys/fs/cgroup/cpu")
    if (v1 / "cpu.cfs_quota_us").exists():
        return v1, "v1"
    pytest.skip("no cgroup cpu controller mounted (neither v2 with cpu nor v1 /sys/fs/cgroup/cpu)")


@pytest.fixture
def one_cpu_cgroup():
    parent, version = cpu_cgroup_parent()
    group = parent / f"videoclf-test-{os.getpid()}-{time.monotonic_ns()}"
    try:
        group.mkdir()
        if version == "v2":
            (group / "cpu.max").write_text("100000 100000")
        else:
            (group / "cpu.cfs_period_us").write_text("100000")
            (group / "cpu.cfs_quota_us").write_text("100000")
    except OSError as exc:
        if group.exists():
            group.rmdir()
        pytest.skip(f"cannot make a cgroup with a CPU quota under {parent}: {exc}")
    try:
        yield group
    finally:
        for _ in range(50):  # the run's processes have exited; the kernel may take a moment
            try:
                group.rmdir()
                break
            except OSError:
                time.sleep(0.1)


def test_a_run_inside_a_one_cpu_cgroup_sizes_its_threads_to_one_core(one_cpu_cgroup, write_config, tmp_path):
    # given a small clip and a cgroup whose quota is one CPU
    clip = make_video(tmp_path / "clip.mp4", 64, 48, frames=10)
    cfg = write_config([{"name": "clip", "source": str(clip)}],
                       model={"backbone": "efficientnet_lite0", "weights": "none"})
    # when `videoclf run` runs inside it
    procs = one_cpu_cgroup / "cgroup.procs"
    res = subprocess.run(["sh", "-c", f'echo $$ > "{procs}" && exec "$0" "$@"', sys.executable,
                          "-m", "videoclf.cli.main", "run", str(cfg), "-q"],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    # then its report says the budget was one core, from the quota where the mask allows more
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    cores = report["cores"]
    affinity = len(os.sched_getaffinity(0))
    assert cores["usable"] == 1 and cores["cgroup_quota"] == 1.0 and cores["affinity"] == affinity
    assert cores["source"] == ("cgroup_quota" if affinity > 1 else "affinity")
    # and the engine and the decoder were sized to it
    assert report["model"]["threads"] == 1 and report["streams"]["clip"]["input"]["threads"] == 1
    assert report["streams"]["clip"]["frames"] == 10
