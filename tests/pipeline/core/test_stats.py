"""Typed stats records: FPS computed once, a misspelt name is an error, a record pickles (it is
what a stage process sends), and a restarted stage's carried counters add up."""
from __future__ import annotations

import dataclasses
import pickle
from types import SimpleNamespace

import pytest

from conftest import make_video
from videoclf.core.histogram import Histogram
from videoclf.core.runstats import RunStats
from videoclf.core.sinkstats import LivePreview, SinkStats, StreamStats
from videoclf.core.stats import ClassifierStats, DecoderStats, LiveStats, StageCounts
from videoclf.runtime.child import Reporter
from videoclf.stages.decode.file import DecodeConfig, FileDecoder


def test_fps_is_the_rate_over_the_written_span():
    assert StreamStats(frames=51, span_s=2.0).fps == 25.0
    assert StreamStats(frames=1, span_s=None).fps == 0.0  # one frame has no rate
    # the live preview's recent rate wins while it has one; after the end (0) the run's rate
    assert StreamStats(frames=51, span_s=2.0, live=LivePreview(fps=12.5)).fps_now == 12.5
    assert StreamStats(frames=51, span_s=2.0, live=LivePreview(fps=0.0)).fps_now == 25.0


def test_a_misspelt_name_is_an_error():
    with pytest.raises(TypeError):
        DecoderStats(decode_erors=1)  # type: ignore[call-arg]
    rec = DecoderStats(decode_errors=1)
    with pytest.raises(AttributeError):
        rec.decode_erors  # type: ignore[attr-defined]  # noqa: B018
    with pytest.raises(dataclasses.FrozenInstanceError):
        rec.decode_errors = 2  # type: ignore[misc]


def test_a_record_pickles_whole():
    h = Histogram()
    for ms in (1.0, 2.0, 40.0):
        h.add(ms)
    sink = SinkStats(counts=StageCounts(items=3, busy_s=0.5, wall_s=1.0),
                     streams=(StreamStats(stream=0, name="a", frames=3, span_s=0.1, e2e_ms=h, top=(("cat", 0.5),)),))
    back = pickle.loads(pickle.dumps(sink))
    assert back == sink and back.stream(0).e2e_ms.percentile(50) == h.percentile(50)
    assert back.counts.busy_fraction == 0.5


def test_a_restarted_decoders_carried_counters_add_up():
    # given a camera's decoder that dropped and reconnected, then died; its successor counts from zero
    first = DecoderStats(stream=0, counts=StageCounts(dropped=3, items=100),
                         live=LiveStats(reconnects=2, disconnects=2, downtime_s=1.5, buffer_dropped=4))
    second = DecoderStats(stream=0, counts=StageCounts(dropped=1, items=10),
                          live=LiveStats(reconnects=1, disconnects=1, downtime_s=0.25, buffer_dropped=6))
    classifier = ClassifierStats(counts=StageCounts(stale_dropped={0: 5}))
    # when the supervisor adds what the first counted to what the second reports
    stats = RunStats(["cam"])
    stats.put("source", 0, "decode[cam]", second.carried(first))
    stats.put("batch", -1, "classify", classifier.carried(ClassifierStats(counts=StageCounts(stale_dropped={0: 2}))))
    # then the drops and reconnects cover both generations, and the items only the living one
    dec = stats.decoder(0)
    assert (dec.counts.dropped, dec.counts.items) == (4, 10)
    assert dec.live is not None and (dec.live.reconnects, dec.live.disconnects, dec.live.downtime_s) == (3, 3, 1.75)
    by = stats.dropped_by(0)
    assert (by.reader, by.no_slot, by.stale) == (10, 4, 7) and stats.dropped(0) == 21
    assert by.to_json() == {"reader": 10, "no_slot": 4, "stale": 7}  # report.json's dropped_by


def test_the_aggregate_refuses_a_dict_or_another_roles_record():
    stats = RunStats(["a"])
    with pytest.raises(TypeError):
        stats.put("source", 0, "decode[a]", {"items": 1})  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        stats.put("sink", -1, "sink", DecoderStats())
    assert stats.decoder(0).name == "a" and stats.stream(0).frames == 0  # nothing reported yet


def test_a_decoder_process_sends_a_record_not_a_dict(tmp_path):
    # given a real file decoder and the Reporter of its process
    video = make_video(tmp_path / "v.mp4", frames=5)
    dec = FileDecoder(DecodeConfig("v", str(video), 32, 32, threads=1))
    dec.setup()
    sent: list = []
    spec = SimpleNamespace(role="source", stream=2, title="decode[v]")
    rep = Reporter(spec, SimpleNamespace(events=SimpleNamespace(put=sent.append)), dec)  # type: ignore[arg-type]
    try:
        rep.counters.items = 5
        rec = rep.snapshot()
    finally:
        dec.teardown()
    # then what crosses to the supervisor is the typed record, with the loop's counts on it
    assert isinstance(rec, DecoderStats) and rec.stream == 2 and rec.name == "v"
    assert rec.counts.items == 5 and rec.source is not None and rec.source["width"] == 64
    assert pickle.loads(pickle.dumps(rec)) == rec
