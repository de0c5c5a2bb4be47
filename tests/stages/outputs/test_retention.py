"""Retention rules and the free-space floor, on real files in a real directory."""
from __future__ import annotations

import os
import time

import pytest

from videoclf.config.load import parse_config
from videoclf.core.errors import ConfigError
from videoclf.config.outputs import Retention
from videoclf.stages.outputs.retention import Housekeeper


def touch(path, size: int, age_s: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\0" * size)
    t = time.time() - age_s
    os.utime(path, (t, t))


def test_video_past_its_size_goes_oldest_first_and_the_open_file_and_foreign_files_stay(tmp_path):
    # given five 1 MB segments of cam, one of cam_2 (another stream whose name starts alike), a
    # file of the user's, and a 2 MB video rule
    for i in range(5):
        touch(tmp_path / f"cam_2026-12-0{i + 1}_10-00-00.mp4", 1_000_000, 100 - i)
    touch(tmp_path / "cam_2_2026-12-01_10-00-00.mp4", 1_000_000, 1000)
    touch(tmp_path / "holiday.mp4", 1_000_000, 1000)
    rules = Retention.model_validate({"video": {"max_bytes": "2MB"}})
    busy = {str(tmp_path / "cam_2026-12-01_10-00-00.mp4")}  # the oldest is still being written
    keeper = Housekeeper(str(tmp_path), ["cam"], "jsonl", rules, 0, in_use=lambda: busy)
    # when the rules are applied
    deleted = keeper.sweep()
    # then cam's oldest closed files went until 2 MB remain besides the open one
    left = sorted(p.name for p in tmp_path.iterdir())
    assert deleted == 2
    assert left == ["cam_2026-12-01_10-00-00.mp4", "cam_2026-12-04_10-00-00.mp4", "cam_2026-12-05_10-00-00.mp4",
                    "cam_2_2026-12-01_10-00-00.mp4", "holiday.mp4"]
    assert keeper.retention_stats().deleted_files["video"] == 2
    assert keeper.retention_stats().deleted_bytes["video"] == 2_000_000


def test_age_rules_per_kind_and_the_current_logs_are_never_deleted(tmp_path):
    # given label logs and event logs of old days, the current ones, and old snapshots
    touch(tmp_path / "cam.2026-01-01.jsonl", 10, 40 * 86400)
    touch(tmp_path / "cam.2026-11-30.jsonl", 10, 6 * 86400)
    touch(tmp_path / "cam.jsonl", 10, 60 * 86400)  # the current log, even if old
    touch(tmp_path / "events.2026-01-01.jsonl", 10, 40 * 86400)
    touch(tmp_path / "events.jsonl", 10, 60 * 86400)
    touch(tmp_path / "snapshots" / "cam_2026-01-01_10-00-00_12_dog.jpg", 10, 40 * 86400)
    touch(tmp_path / "snapshots" / "cam_2026-12-05_10-00-00_99_dog.jpg", 10, 3600)
    rules = Retention.model_validate({"labels": {"max_age_days": 30}, "events": {"max_age_days": 30},
                                      "snapshots": {"max_age_days": 7}})
    keeper = Housekeeper(str(tmp_path), ["cam"], "jsonl", rules, 0)
    # when applied
    keeper.sweep()
    # then only what is past its kind's age went
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cam.2026-11-30.jsonl", "cam.jsonl", "events.jsonl",
                                                          "snapshots"]
    assert [p.name for p in (tmp_path / "snapshots").iterdir()] == ["cam_2026-12-05_10-00-00_99_dog.jpg"]
    assert keeper.deleted == {"labels": 1, "events": 1, "video": 0, "snapshots": 1, "clips": 0}


def test_clips_follow_their_own_age_and_size_rules_and_the_clip_being_written_stays(tmp_path):
    # given four 1 MB clips of cam (the oldest 40 days old, the newest still recording), one of
    # cam_2, a file of the user's in clips/, and a clips rule of 30 days and 1.5 MB (the clip being
    # written is not counted)
    clips = tmp_path / "clips"
    for i, age in enumerate((40 * 86400, 300, 200, 100)):
        touch(clips / f"cam_2026-12-0{i + 1}_10-00-00_dog.ts", 1_000_000, age)
    touch(clips / "cam_2_2026-12-01_10-00-00_dog.ts", 1_000_000, 50 * 86400)
    touch(clips / "mine.ts", 1_000_000, 50 * 86400)
    rules = Retention.model_validate({"clips": {"max_age_days": 30, "max_bytes": 1_500_000}})
    busy = {str(clips / "cam_2026-12-04_10-00-00_dog.ts")}
    keeper = Housekeeper(str(tmp_path), ["cam"], "jsonl", rules, 0, in_use=lambda: busy)
    # when applied
    keeper.sweep()
    # then the 40-day-old clip went for its age, the next oldest for the size; the one being
    # written, the other stream's and the user's file stayed
    assert sorted(p.name for p in clips.iterdir()) == ["cam_2026-12-03_10-00-00_dog.ts", "cam_2026-12-04_10-00-00_dog.ts",
                                                       "cam_2_2026-12-01_10-00-00_dog.ts", "mine.ts"]
    assert keeper.deleted["clips"] == 2 and keeper.deleted_bytes["clips"] == 2_000_000


def test_the_floor_is_read_from_the_real_disk(tmp_path):
    # given a floor above any disk's free space, then one of zero
    high = Housekeeper(str(tmp_path), ["cam"], "jsonl", None, 1 << 62)
    zero = Housekeeper(str(tmp_path), ["cam"], "jsonl", None, 0)
    high.tick(0.0)
    zero.tick(0.0)
    assert high.low and high.pauses == 1 and high.free is not None
    assert not zero.low and zero.pauses == 0


@pytest.mark.parametrize("value, bytes_", [("2MB", 2_000_000), ("1.5 GiB", int(1.5 * 1024 ** 3)), (4096, 4096),
                                           ("500k", 500_000)])
def test_sizes_are_read_in_units(value, bytes_):
    cfg = parse_config({"streams": [{"name": "a", "source": "a.mp4"}],
                        "output": {"retention": {"video": {"max_bytes": value}}, "min_free": value}})
    assert cfg.output.retention.video.max_bytes == bytes_ == cfg.output.min_free


def test_a_bad_size_is_one_line_naming_the_key():
    with pytest.raises(ConfigError) as e:
        parse_config({"streams": [{"name": "a", "source": "a.mp4"}],
                      "output": {"retention": {"video": {"max_bytes": "lots"}}}})
    assert str(e.value).count("\n") == 0 and "output.retention.video.max_bytes" in str(e.value)
