"""What this process may use of the CPU: the cores in its affinity mask, its cgroup's CPU
quota, the CPU's instruction sets and a oneDNN cap on them. Probes only, shared by the plan (which sizes threads) and the
engines (which pick kernels and key their caches by CPU)."""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from typing import Callable, Optional


def usable_cores() -> int:
    """Cores in this process's affinity mask (a container's or taskset's limit), not the host's."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


@dataclass(frozen=True, kw_only=True)
class CpuQuota:
    """The tightest CPU quota of this process's cgroup and its ancestors: ``cpus`` CPUs' worth of
    time (quota / period, may be fractional), set by the file ``file``."""

    cpus: float
    file: str


def cgroup_cpu_quota(proc_cgroup: str = "/proc/self/cgroup", root: str = "/sys/fs/cgroup") -> Optional[CpuQuota]:
    """The smallest CPU quota (``docker run --cpus``, systemd's ``CPUQuota=``) on the way from this
    process's cgroup up to the root, cgroup v2 (``cpu.max``) and v1 (``cpu.cfs_quota_us`` /
    ``cpu.cfs_period_us``) alike; None where no quota is set or nothing can be read."""
    try:
        with open(proc_cgroup, encoding="ascii", errors="ignore") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    found: list[CpuQuota] = []
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        if controllers == "":  # cgroup v2: the unified hierarchy (under unified/ on a hybrid host)
            for mount in (root, os.path.join(root, "unified")):
                found += _walk(mount, path, _v2_quota)
        elif "cpu" in controllers.split(","):  # cgroup v1: the cpu controller's hierarchy
            for mount in {os.path.join(root, controllers), os.path.join(root, "cpu"),
                          os.path.join(root, "cpu,cpuacct")}:
                found += _walk(mount, path, _v1_quota)
    return min(found, key=lambda q: q.cpus) if found else None


def _walk(mount: str, path: str, read: Callable[[str], Optional[CpuQuota]]) -> list[CpuQuota]:
    """Quotas from ``mount``/``path`` up to ``mount`` itself. A container's view may mount only
    its own subtree, so a level whose folder is missing is skipped, not an error."""
    parts = [p for p in path.strip("/").split("/") if p and p != ".."]
    out = []
    for depth in range(len(parts), -1, -1):
        q = read(os.path.join(mount, *parts[:depth]))
        if q is not None:
            out.append(q)
    return out


def _read(path: str) -> Optional[str]:
    try:
        with open(path, encoding="ascii") as f:
            return f.read().strip()
    except (OSError, UnicodeDecodeError):
        return None


def _quota(file: str, quota: str, period: Optional[str]) -> Optional[CpuQuota]:
    try:
        q, p = int(quota), int(period or 0)
    except ValueError:  # "max" (v2) or an unreadable figure: no quota
        return None
    return CpuQuota(cpus=q / p, file=file) if q > 0 and p > 0 else None  # v1 says -1 for none


def _v2_quota(folder: str) -> Optional[CpuQuota]:
    text = _read(os.path.join(folder, "cpu.max"))  # "max 100000" or "200000 100000"
    if not text:
        return None
    quota, _, period = text.partition(" ")
    return _quota(os.path.join(folder, "cpu.max"), quota, period or "100000")


def _v1_quota(folder: str) -> Optional[CpuQuota]:
    quota = _read(os.path.join(folder, "cpu.cfs_quota_us"))
    if quota is None:
        return None
    return _quota(os.path.join(folder, "cpu.cfs_quota_us"), quota, _read(os.path.join(folder, "cpu.cfs_period_us")))


def cpu_flags() -> str:
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="ignore") as f:
            return f.read()
    except OSError:
        return ""


# oneDNN's instruction-set names, lowest first; ONEDNN_MAX_CPU_ISA (or DNNL_MAX_CPU_ISA)
# caps what oneDNN, and so OpenVINO's CPU plugin and torch, may use. A cap below
# AVX512_CORE_BF16 makes a bf16 model fail to compile, so the engines' choices honour it.
ISA_ORDER = ("SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2", "AVX512_CORE", "AVX512_CORE_VNNI",
             "AVX512_CORE_BF16", "AVX512_CORE_FP16", "AVX10_1_512", "AVX512_CORE_AMX", "AVX10_1_512_AMX",
             "AVX512_CORE_AMX_FP16", "AVX10_1_512_AMX_FP16", "AVX10_2_512", "AVX10_2_512_AMX_2")


def isa_cap() -> Optional[str]:
    """The oneDNN instruction-set cap from the environment, upper-case, or None (no cap)."""
    cap = (os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA") or "").strip().upper()
    return cap if cap in ISA_ORDER else None


def isa_allows(isa: str) -> bool:
    cap = isa_cap()
    if cap is None:
        return True
    if isa == "AVX2_VNNI":  # a branch of its own: AVX-512 caps do not include it
        return cap in ("AVX2_VNNI", "AVX2_VNNI_2")
    return ISA_ORDER.index(cap) >= ISA_ORDER.index(isa)


def bf16_flags() -> bool:
    """The CPU has bf16 instructions, whether or not a cap lets oneDNN use them."""
    flags = cpu_flags()
    return "avx512_bf16" in flags or "amx_bf16" in flags


def cpu_has_bf16() -> bool:
    return bf16_flags() and isa_allows("AVX512_CORE_BF16")


def cpu_has_vnni() -> bool:
    """int8 dot products without the 16-bit intermediate that older AVX2/AVX-512 int8 code
    saturates (VNNI or AMX): full 8-bit weights are safe."""
    flags = cpu_flags()
    return (("avx512_vnni" in flags or "amx_int8" in flags) and isa_allows("AVX512_CORE_VNNI")) or \
        ("avx_vnni" in flags and isa_allows("AVX2_VNNI"))


def cpu_tag() -> str:
    """This CPU's identity for cached measurements: model name, flags, cores and ISA cap."""
    model, flags = "", ""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="ignore") as f:
            for line in f:
                if line.startswith("model name") and not model:
                    model = line.split(":", 1)[1].strip()
                elif line.startswith("flags") and not flags:
                    flags = line.split(":", 1)[1].strip()
                if model and flags:
                    break
    except OSError:
        pass
    cap = isa_cap()  # a oneDNN instruction-set cap changes every measurement
    return hashlib.sha256(f"{model}|{flags}|{os.cpu_count()}{'|' + cap if cap else ''}".encode()).hexdigest()[:10]
