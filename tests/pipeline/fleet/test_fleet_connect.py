"""``videoclf run CONFIG --ray ADDRESS`` where no cluster is: one line naming the address, at once."""
from __future__ import annotations

import time

import pytest

from conftest import run_cli

pytest.importorskip("ray")


def _one_line(res) -> str:
    assert "Traceback" not in res.stderr, res.stderr
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, res.stderr
    return lines[0]


@pytest.mark.parametrize("args, env, named", [
    (["--ray", "127.0.0.1:1"], {}, "--ray 127.0.0.1:1"),
    (["--ray", "auto"], {"RAY_ADDRESS": "127.0.0.1:1"}, "RAY_ADDRESS=127.0.0.1:1"),
], ids=["address", "auto-from-environment"])
def test_an_unreachable_cluster_is_one_line_naming_the_address(tmp_path, write_config, video_factory, args, env, named):
    # regression: ray.init retried an address where nothing listens for minutes, a log line every
    # few seconds, and ended the CLI without a word about the address
    # given a config and an address on loopback where nothing listens
    cfg = write_config([{"name": "a", "source": str(video_factory())}])
    # when the fleet is asked to run there
    t0 = time.monotonic()
    res = run_cli("run", str(cfg), *args, timeout=120, env=env)
    # then it stops within seconds (one refused connect), exit 1, with one line naming the address
    assert time.monotonic() - t0 < 60
    assert res.returncode == 1, res.stderr
    assert _one_line(res) == f"videoclf: error: {named}: no Ray cluster answers there (Connection refused)"
    assert not (tmp_path / "out" / "report.json").exists() and not (tmp_path / "out" / "a.jsonl").exists()


def test_a_malformed_ray_address_is_a_bad_input(tmp_path, write_config, video_factory):
    cfg = write_config([{"name": "a", "source": str(video_factory())}])
    res = run_cli("run", str(cfg), "--ray", "head-without-port", timeout=120)
    assert res.returncode == 2, res.stderr
    assert _one_line(res).startswith("videoclf: error: --ray head-without-port: not a Ray address; give the head's")
