"""Append-only line files: never truncated, whole lines only (a full disk included), torn tails
cut at open, rotation by local day that never replaces a file."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from videoclf.stages.outputs.appendlog import AppendLog, DiskFull, day_of, repair_tail, rotated_files
from videoclf.stages.outputs.labellog import day_of_line, last_logged_frame
from types import SimpleNamespace

DAY = 86400.0


def line(frame: int, t: float) -> str:
    return json.dumps({"stream": "cam", "frame": frame, "time": t})


def test_reopening_appends_and_never_truncates(tmp_path):
    # given a log with two lines
    path = tmp_path / "cam.jsonl"
    log = AppendLog(str(path), day_of_line=day_of_line).open()
    log.write(line(0, time.time()))
    log.write(line(1, time.time()))
    log.close()
    # when it is opened again and written
    log = AppendLog(str(path), day_of_line=day_of_line).open()
    log.write(line(2, time.time()))
    log.close()
    # then every line is there, in order
    assert [json.loads(x)["frame"] for x in path.read_text().splitlines()] == [0, 1, 2]


def test_a_torn_tail_is_cut_at_open_and_counted(tmp_path):
    # given a log whose writer died mid-line (no newline after the last bytes)
    path = tmp_path / "cam.jsonl"
    path.write_text(line(0, 1.0) + "\n" + line(1, 1.0) + "\n" + '{"stream":"cam","fra')
    # when it is opened for appending
    log = AppendLog(str(path)).open()
    log.write(line(2, 2.0))
    log.close()
    # then the torn part is gone, counted, and the new line follows the last whole one
    assert log.repaired_bytes == len('{"stream":"cam","fra')
    assert [json.loads(x)["frame"] for x in path.read_text().splitlines()] == [0, 1, 2]


def test_repair_tail_keeps_a_whole_file_and_empties_a_file_of_one_torn_line(tmp_path):
    whole, torn = tmp_path / "a", tmp_path / "b"
    whole.write_bytes(b"x\n" * 5000)  # longer than one read chunk
    torn.write_bytes(b"y" * 9000)
    assert repair_tail(str(whole)) == 0 and whole.stat().st_size == 10000
    assert repair_tail(str(torn)) == 9000 and torn.stat().st_size == 0
    assert repair_tail(str(tmp_path / "missing")) == 0


def test_a_new_day_rotates_the_file_under_its_day_and_never_replaces_one(tmp_path):
    # given yesterday's log, and a file already named like its rotation (an earlier rotation)
    path = tmp_path / "cam.jsonl"
    now = time.time()
    yesterday = day_of(now - DAY)
    (tmp_path / f"cam.{yesterday}.jsonl").write_text(line(-1, now - DAY) + "\n")
    log = AppendLog(str(path), day_of_line=day_of_line).open()
    log.write(line(0, now - DAY), now - DAY)
    log.close()
    # when a run writes a line of today
    log = AppendLog(str(path), day_of_line=day_of_line).open()
    log.write(line(1, now), now)
    log.close()
    # then yesterday's lines moved to a numbered file of that day, the older file is untouched,
    # and the current file holds today's line only
    rotated = rotated_files(str(path))
    assert [Path(p).name for p in rotated] == [f"cam.{yesterday}.jsonl", f"cam.{yesterday}.1.jsonl"]
    assert json.loads(Path(rotated[0]).read_text())["frame"] == -1
    assert json.loads(Path(rotated[1]).read_text())["frame"] == 0
    assert [json.loads(x)["frame"] for x in path.read_text().splitlines()] == [1]
    # and the last logged frame is found in the current file, or in the newest rotated one
    out = SimpleNamespace(dir=str(tmp_path), format="jsonl")
    assert last_logged_frame(out, "cam") == 1
    path.unlink()
    assert last_logged_frame(out, "cam") == 0


def test_a_csv_log_gets_its_header_once(tmp_path):
    path = tmp_path / "cam.csv"
    for frame in range(3):
        log = AppendLog(str(path), header="stream,frame,pts,time").open()
        log.write(f"cam,{frame},0.0,{time.time()}")
        log.close()
    lines = path.read_text().splitlines()
    assert lines[0] == "stream,frame,pts,time" and len(lines) == 4


@pytest.fixture
def tiny_disk(tmpfs):
    return tmpfs("64k")


def test_a_full_disk_leaves_whole_lines_and_the_refused_line_can_be_written_later(tiny_disk):
    # given a log on a disk that fills up
    path = tiny_disk / "cam.jsonl"
    log = AppendLog(str(path)).open()
    pad = "x" * 700
    written = 0
    with pytest.raises(DiskFull):
        for frame in range(1000):
            log.write(json.dumps({"frame": frame, "pad": pad}))
            written += 1
    # then the file holds exactly the lines written before, each whole
    lines = path.read_text().splitlines(keepends=True)
    assert len(lines) == written and all(x.endswith("\n") for x in lines)
    assert [json.loads(x)["frame"] for x in lines] == list(range(written))
    # and when space is freed, the refused line is written after them
    (tiny_disk / "filler").unlink(missing_ok=True)
    os.truncate(path, len("".join(lines[: written // 2])))
    log.close()
    log = AppendLog(str(path)).open()
    log.write(json.dumps({"frame": written, "pad": pad}))
    log.close()
    assert json.loads(path.read_text().splitlines()[-1])["frame"] == written
