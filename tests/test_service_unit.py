"""contrib/videoclf.service: systemd accepts it (``systemd-analyze verify``) and it says what
running as a service needs: restart on failure, SIGTERM to the supervisor alone with time to
drain, secrets from an optional environment file, a dedicated user, and hardening that keeps
/dev/shm writable."""
from __future__ import annotations

import configparser
import json
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, SAMPLE
from helpers_proc import wait_for

UNIT = ROOT / "contrib" / "videoclf.service"
SHIPPED_EXEC = "/opt/videoclf/venv/bin/videoclf"


def unit() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=True, interpolation=None, comment_prefixes=("#", ";"))
    parser.optionxform = str  # systemd keys are case-sensitive
    parser.read_string(UNIT.read_text())
    return parser


def test_the_unit_restarts_on_failure_and_stops_by_draining():
    svc = unit()["Service"]
    assert svc["ExecStart"] == f"{SHIPPED_EXEC} run /etc/videoclf/cameras.yaml"
    assert svc["Restart"] == "on-failure"
    # SIGTERM reaches the supervisor alone (stage processes die mid-drain on their own SIGTERM),
    # with time to finish the frames in flight and write the report
    assert (svc["KillSignal"], svc["KillMode"]) == ("SIGTERM", "mixed")
    assert int(svc["TimeoutStopSec"]) >= 60
    # secrets from an optional file; a dedicated unprivileged user
    assert svc["EnvironmentFile"] == "-/etc/default/videoclf"
    # reload is SIGHUP to the supervisor (the config read again), and the API may write the config
    assert svc["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert svc["ReadWritePaths"] == "/etc/videoclf" and not svc["EnvironmentFile"].lstrip("-").startswith("/etc/videoclf/")
    assert svc["User"] not in ("", "root") and svc.get("DynamicUser", "no") == "no"


def test_the_hardening_leaves_dev_shm_writable():
    svc = unit()["Service"]
    # strict leaves /dev read-write; nothing names /dev/shm read-only or inaccessible
    assert svc["ProtectSystem"] == "strict" and svc["NoNewPrivileges"] == "yes"
    for key in ("ReadOnlyPaths", "InaccessiblePaths", "TemporaryFileSystem"):
        assert "/dev" not in svc.get(key, ""), key
    # the engines generate their kernels at run time: no W^X on memory
    assert svc.get("MemoryDenyWriteExecute", "no") == "no"
    # the outputs and the model cache are the only writable folders, made for the user
    assert (svc["StateDirectory"], svc["CacheDirectory"]) == ("videoclf", "videoclf")


def videoclf_executable() -> str | None:
    here = Path(sys.executable).parent / "videoclf"
    return str(here) if here.exists() else shutil.which("videoclf")


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_analyze_verify_accepts_the_unit(tmp_path):
    exe = videoclf_executable()
    if exe is None:
        pytest.skip("no videoclf executable beside this Python or on PATH (verify needs ExecStart to exist)")
    # given the shipped unit with ExecStart pointing at this environment's videoclf
    copy = tmp_path / "videoclf.service"
    copy.write_text(UNIT.read_text().replace(SHIPPED_EXEC, exe))
    # when systemd checks it
    res = subprocess.run(["systemd-analyze", "verify", str(copy)], capture_output=True, text=True, timeout=60)
    # then it passes without a word about the unit (an unknown or misplaced key is only a warning)
    said = [ln for ln in (res.stdout + res.stderr).splitlines() if "videoclf" in ln]
    assert res.returncode == 0 and not said, res.stdout + res.stderr


def test_sigterm_to_the_supervisor_alone_drains_and_exits_cleanly(write_config, tmp_path):
    # given a run classifying the looping sample (what the unit's ExecStart starts)
    cfg = write_config([{"name": "bbb", "source": str(SAMPLE), "loop": True}],
                       model={"backbone": "efficientnet_lite0", "weights": "none"})
    proc = subprocess.Popen([sys.executable, "-m", "videoclf.cli.main", "run", str(cfg), "-q"], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    log = tmp_path / "out" / "bbb.jsonl"
    try:
        wait_for(lambda: proc.poll() is not None or (log.exists() and log.stat().st_size > 0), 120,
                 "the first label lines")
        assert proc.poll() is None, proc.stderr.read()[-2000:]
        # when systemd stops the service: SIGTERM to the main process only (KillMode=mixed)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    # then the run drained: exit 0 (a clean stop, no restart), the report written, every
    # classified frame's line flushed
    assert proc.returncode == 0, err[-2000:]
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["interrupted"] is True and report["error"] is None
    assert report["streams"]["bbb"]["frames"] == len(log.read_text().splitlines()) > 0
