"""The pieces behind changing a running run's streams: the comparison of two configs, the
config file edited in place for the HTTP API, and the file followed through renames."""
from __future__ import annotations

import os
import stat
import time
from pathlib import Path

import pytest

from videoclf.config import persist
from videoclf.config.changes import diff
from videoclf.config.load import load_config, parse_config
from videoclf.config.watch import ConfigWatcher
from videoclf.core.errors import ConfigError

CAMS = [{"name": "a", "source": "rtsp://10.0.0.1/a"}, {"name": "b", "source": "rtsp://10.0.0.1/b"}]


def test_streams_are_compared_by_name_and_other_keys_are_named_as_needing_a_restart():
    before = parse_config({"streams": CAMS})
    after = parse_config({"streams": [{"name": "a", "source": "rtsp://10.0.0.1/a", "ring_slots": 16},
                                      {"name": "c", "source": "rtsp://10.0.0.1/c"}],
                          "model": {"top_k": 5}})
    ch = diff(before.streams, before, after)
    assert [s.name for s in ch.added] == ["c"]
    assert ch.removed == ("b",)
    assert [(s.name, s.ring_slots) for s in ch.changed] == [("a", 16)]
    assert ch.restart_keys == ("model",)
    assert ch.describe() == "adding c; removing b; restarting a"
    # the same config again: nothing to do
    same = diff(after.streams, after, after)
    assert not same.streams and same.restart_keys == ()


CONFIG = """\
# the site's cameras
model: {weights: none}   # no download
streams:
  - name: a   # front door
    source: "rtsp://admin:${CAM_PASSWORD}@10.0.0.1/a"
  - {name: b, source: "rtsp://10.0.0.1/b"}
"""


def test_the_api_edits_the_file_in_place_keeping_comments_and_variables(tmp_path, monkeypatch):
    monkeypatch.setenv("CAM_PASSWORD", "s3cret")
    path = tmp_path / "cams.yaml"
    path.write_text(CONFIG)
    os.chmod(path, 0o640)
    persist.add_stream(str(path), {"name": "c", "source": "rtsp://10.0.0.1/c"}, load_config)
    persist.remove_stream(str(path), "b", load_config)
    text = path.read_text()
    # comments, the variable reference and the indentation are the user's; the password never lands in it
    assert "# the site's cameras" in text and "# front door" in text and "# no download" in text
    assert "${CAM_PASSWORD}" in text and "s3cret" not in text
    assert "  - name: c" in text and "name: b" not in text
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    cfg = load_config(path)
    assert [s.name for s in cfg.streams] == ["a", "c"]
    assert cfg.streams[0].source == "rtsp://admin:s3cret@10.0.0.1/a"
    assert [p.name for p in tmp_path.iterdir()] == ["cams.yaml"]  # no temporary file left


def test_an_edit_that_would_make_the_file_invalid_leaves_it_untouched(tmp_path, monkeypatch):
    monkeypatch.setenv("CAM_PASSWORD", "x")
    path = tmp_path / "cams.yaml"
    path.write_text(CONFIG)
    with pytest.raises(ConfigError, match="ring_slots"):
        persist.add_stream(str(path), {"name": "c", "source": "rtsp://h/c", "ring_slots": 1}, load_config)
    with pytest.raises(ConfigError, match="no stream named zz"):
        persist.remove_stream(str(path), "zz", load_config)
    assert path.read_text() == CONFIG
    assert [p.name for p in tmp_path.iterdir()] == ["cams.yaml"]


def _seen(w: ConfigWatcher, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if w.take():
            return True
        time.sleep(0.02)
    return False


def test_the_watcher_sees_edits_and_renames_of_its_file_only(tmp_path: Path):
    path = tmp_path / "cams.yaml"
    path.write_text("a: 1\n")
    w = ConfigWatcher(str(path)).start()
    try:
        time.sleep(0.3)  # the watch is set up
        (tmp_path / "other.yaml").write_text("x")  # another file in the folder
        assert not _seen(w, 1.0)
        tmp = tmp_path / ".cams.yaml.swp"
        tmp.write_text("a: 2\n")
        os.replace(tmp, path)  # how editors and sed -i save
        assert _seen(w)
        with open(path, "a") as f:  # written in place
            f.write("b: 3\n")
        assert _seen(w)
        w.trigger()  # SIGHUP
        assert w.take() and not w.take()
    finally:
        w.stop()
