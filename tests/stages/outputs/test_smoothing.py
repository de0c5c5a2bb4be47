"""The smoother (window and EMA) and the label-change detector (hysteresis, the first label),
the smoothed top-1 in the label log, smoothed alert rules and the config's keys."""
from __future__ import annotations

import json
import time

import pytest

from conftest import run_cli
from videoclf.config.outputs import AlertRule
from videoclf.config.schema import Config
from videoclf.config.smoothing import LabelChange, SmoothOptions
from videoclf.core.records import FrameRecord, Result
from videoclf.stages.outputs.alerts import AlertEngine, EventLog
from videoclf.stages.outputs.labellog import csv_header, format_line, label_record, smoothed_label, top_label
from videoclf.stages.outputs.labels import JsonlSink, SinkConfig
from videoclf.stages.outputs.smoothing import ChangeDetector, LabelChanges, Smoother, change_event


def test_a_window_averages_its_frames_a_missing_label_counting_as_zero():
    sm = Smoother(SmoothOptions(window=3), k=2)
    assert sm.update([("cat", 0.8), ("dog", 0.2)]) == (("cat", 0.8), ("dog", 0.2))
    # dog missing from the second frame's top-k counts 0 there: (0.2 + 0) / 2
    assert sm.update([("cat", 0.6), ("fox", 0.4)]) == (("cat", 0.7), ("fox", 0.2))
    assert sm.update([("fox", 0.9), ("cat", 0.1)]) == (("cat", 0.5), ("fox", 0.43333))
    # the first frame leaves the window: its dog is gone altogether, cat = (0.6 + 0.1 + 0) / 3
    assert sm.update([("fox", 0.9), ("owl", 0.1)]) == (("fox", 0.73333), ("cat", 0.23333))
    assert "dog" not in sm.sums and set(sm.seen) == {"cat", "fox", "owl"}


def test_an_ema_starts_at_the_first_frame_and_weighs_each_next_by_alpha():
    sm = Smoother(SmoothOptions(ema=0.5), k=3)
    assert sm.update([("cat", 0.8), ("dog", 0.2)]) == (("cat", 0.8), ("dog", 0.2))
    assert sm.update([("dog", 1.0)]) == (("dog", 0.6), ("cat", 0.4))
    for _ in range(20):  # cat keeps halving: below the floor it is forgotten
        sm.update([("dog", 1.0)])
    assert sm.update([("dog", 1.0)]) == (("dog", 1.0),)


def test_a_window_of_one_is_the_raw_labels():
    sm = Smoother(SmoothOptions(window=1), k=2)
    for top in ([("a", 0.9), ("b", 0.1)], [("c", 0.6), ("a", 0.3)]):
        assert sm.update(top) == tuple(top)


def _feed(det: ChangeDetector, labels: str, score: float = 0.9) -> list[tuple[int, object]]:
    """One frame per letter (its smoothed top-1); the frames whose update fired, with the change."""
    fired = []
    for i, lbl in enumerate(labels):
        ch = det.update([(lbl, score), ("z", 0.01)], i, i / 10)
        if ch is not None:
            fired.append((i, ch))
    return fired


def test_the_first_label_fires_nothing_and_a_held_change_fires_once():
    fired = _feed(ChangeDetector(LabelChange(for_frames=3)), "aaaaabbbbbbbaaa")
    # a: the start (nothing); b held from frame 5, confirmed at frame 7; back to a at 12, confirmed at 14
    assert [(i, c.previous[0], c.current[0], c.since_frame) for i, c in fired] == [(7, "a", "b", 5), (14, "b", "a", 12)]
    assert fired[0][1].since_pts == 0.5 and fired[0][1].current == ("b", 0.9) and fired[0][1].previous == ("a", 0.0)


def test_a_label_that_flips_back_before_it_holds_fires_nothing():
    assert _feed(ChangeDetector(LabelChange(for_frames=3)), "aaaabbabbaabbacbba") == []


def test_a_new_label_below_min_score_does_not_count():
    det = ChangeDetector(LabelChange(for_frames=2, min_score=0.5))
    assert _feed(det, "aaa", 0.9) == []
    assert _feed(det, "bbbbbb", 0.4) == [] and det.label == "a"
    assert [c.current for _, c in _feed(det, "bb", 0.6)] == [("b", 0.6)]


def test_a_stream_whose_first_label_is_never_sure_starts_at_its_first_sure_one():
    det = ChangeDetector(LabelChange(for_frames=2, min_score=0.5))
    assert _feed(det, "xyxy", 0.3) == [] and det.label is None
    assert _feed(det, "aab", 0.8) == [] and det.label == "a"


def test_the_event_carries_both_labels_their_scores_and_the_raw_top_k():
    det = ChangeDetector(LabelChange(for_frames=1))
    det.update([("a", 0.9)], 0, 0.0)
    ch = det.update([("b", 0.6), ("a", 0.3)], 1, 0.04)
    assert ch is not None
    ev = change_event("cam", 1, 0.04, 1_700_000_000.5, ch, [("b", 0.7), ("c", 0.2)])
    assert ev == {"event": "label_change", "stream": "cam", "frame": 1, "pts": 0.04, "time": 1_700_000_000.5,
                  "previous": {"label": "a", "score": 0.3}, "current": {"label": "b", "score": 0.6},
                  "since_frame": 1, "since_pts": 0.04, "top": [{"label": "b", "score": 0.7}, {"label": "c", "score": 0.2}]}


def _result(stream: int, seq: int, top, smoothed=None) -> Result:
    rec = FrameRecord(stream, seq, 0, seq / 25, time.time(), time.monotonic(), 1.0)
    return Result(rec, tuple(top), 1.0, 1, smoothed=smoothed)


def test_label_changes_per_stream_follow_the_smoothed_labels_and_skip_streams_without_options():
    got = []
    lc = LabelChanges([LabelChange(for_frames=2), None], lambda opts, ev: got.append((opts.for_frames, ev)))
    for seq, (raw, sm) in enumerate([("a", "a"), ("b", "a"), ("b", "b"), ("a", "b")]):
        lc.update("one", _result(0, seq, [(raw, 0.9)], ((sm, 0.8),)))
        lc.update("two", _result(1, seq, [(raw, 0.9)], ((sm, 0.8),)))
    # one change on stream 0 (a -> b, held 2 frames from frame 2), confirmed at frame 3; nothing on stream 1
    assert [(n, e["stream"], e["frame"], e["previous"]["label"], e["current"]["label"]) for n, e in got] == \
        [(2, "one", 3, "a", "b")]
    assert got[0][1]["top"] == [{"label": "a", "score": 0.9}]  # the raw top-k of the confirming frame


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_the_smoothed_top_1_is_added_to_a_line_and_reads_back(fmt):
    rec = label_record("cam", 7, 0.28, 1_700_000_000.0, [("tench, Tinca tinca", 0.5), ("goldfish", 0.25)],
                       smoothed=("goldfish", 0.4))
    line = format_line(fmt, rec)
    assert smoothed_label(line, fmt, 2) == ("goldfish", 0.4)
    assert top_label(line, fmt) == ("tench, Tinca tinca", 0.5)  # the raw top-k stays where it was
    plain = format_line(fmt, label_record("cam", 7, 0.28, 1_700_000_000.0, [("a", 0.5), ("b", 0.25)]))
    assert smoothed_label(plain, fmt, 2) is None and "smoothed" not in plain
    assert csv_header(2, smoothed=True).endswith(",score2,smoothed_label,smoothed_score")


def test_the_label_sink_smooths_only_the_streams_that_ask(tmp_path):
    sink = JsonlSink(SinkConfig(str(tmp_path), ("a", "b"), top_k=1, smooth=(SmoothOptions(window=2), None)))
    sink.setup()
    try:
        out = [sink.prepare(_result(s, seq, [(lbl, 1.0)])) for seq, lbl in enumerate("xy") for s in (0, 1)]
    finally:
        sink.teardown()
    assert [r.smoothed for r in out] == [(("x", 1.0),), None, (("x", 0.5),), None]


def test_a_smoothed_alert_rule_matches_the_smoothed_top_k_and_a_plain_one_the_raw():
    got = []
    rules = [AlertRule(when=("cat",), min_score=0.5, cooldown_s=0, smoothed=True),
             AlertRule(when=("cat",), min_score=0.5, cooldown_s=0)]
    eng = AlertEngine(rules, lambda rule, ev: got.append((ev["rule"], ev["event"])))
    # a raw cat of 0.9 whose smoothed score is only 0.3: the plain rule opens, the smoothed one does not
    eng.update("s", 0.0, 0.0, [("cat", 0.9)], lambda _: None, [("dog", 0.6), ("cat", 0.3)])
    assert got == [(1, "open")]
    # the smoothed cat reaches 0.55 while the raw frame shows none: the smoothed rule opens, the plain one closes
    eng.update("s", 0.04, 0.04, [("dog", 0.9)], lambda _: None, [("cat", 0.55)])
    assert got == [(1, "open"), (0, "open"), (1, "close")]


BASE = {"streams": [{"name": "a", "source": "a.mp4"}, {"name": "b", "source": "b.mp4"}]}


def test_a_stream_s_smooth_replaces_the_top_one_and_its_label_change_keys_win_one_by_one():
    cfg = Config.model_validate({**BASE, "smooth": {"window": 10}, "label_change": {"for_frames": 4},
                                 "streams": [{"name": "a", "source": "a.mp4", "smooth": {"ema": 0.2},
                                              "label_change": {"min_score": 0.6}},
                                             {"name": "b", "source": "b.mp4"}]})
    a, b = cfg.streams
    assert a.smooth == SmoothOptions(ema=0.2) and b.smooth == SmoothOptions(window=10)
    assert (a.label_change.for_frames, a.label_change.min_score) == (4, 0.6)
    assert (b.label_change.for_frames, b.label_change.min_score) == (4, 0.3)
    plain = Config.model_validate(BASE)
    assert all(s.smooth is None and s.label_change is None for s in plain.streams)


@pytest.mark.parametrize("top, expected", [
    ({"smooth": {"window": 5, "ema": 0.5}}, "smooth: give exactly one of window (N frames) or ema (ALPHA)"),
    ({"smooth": {}}, "smooth: give exactly one of window (N frames) or ema (ALPHA)"),
    ({"output": {"alerts": [{"when": ["cat"], "smoothed": True}]}},
     "output.alerts.0.smoothed: needs smooth (top level, or on every stream); b has none"),
])
def test_a_smoothing_mistake_is_one_line_naming_the_key(tmp_path, top, expected):
    import yaml

    streams = [{"name": "a", "source": "a.mp4", "smooth": {"window": 3}}, {"name": "b", "source": "b.mp4"}]
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"streams": streams, **top}))
    res = run_cli("validate", str(path))
    assert res.returncode == 2 and "Traceback" not in res.stderr
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and expected in lines[0], res.stderr


def test_a_label_change_goes_to_events_jsonl_and_its_webhook_through_the_alerts_event_log(tmp_path, receiver):
    # given a real receiver on 127.0.0.1 and the event log the alerts use, with the webhook on
    url, got = receiver
    opts = LabelChange(for_frames=1, webhook=url)
    log = EventLog(str(tmp_path), webhook=True)
    lc = LabelChanges([opts], log)
    # when the smoothed top-1 goes from a to b
    for seq, lbl in enumerate("ab"):
        lc.update("cam", _result(0, seq, [(lbl, 0.9)], ((lbl, 0.7),)))
    log.close()
    # then one event, the same in events.jsonl and at the receiver
    lines = [json.loads(ln) for ln in (tmp_path / "events.jsonl").read_text().splitlines()]
    assert len(lines) == 1 and got == lines
    assert (lines[0]["previous"]["label"], lines[0]["current"]["label"]) == ("a", "b")
    assert log.stats().webhook.sent == 1
