"""The stage loops in one process, with scripted stages (pipeline/devtools/testing.py) and real
shared-memory pools: batching under max_wait, each back-pressure policy, a crashing source."""
from __future__ import annotations

import numpy as np

from videoclf.devtools.testing import CRASH, EOF, EchoClassifier, FakeSource, ListSink, Pause, ScriptedCrash, Wiring, run_in_threads


def frame(value: int) -> np.ndarray:
    return np.full((8, 8, 3), value, np.uint8)


def by_stream(sink: ListSink, stream: int) -> list:
    return [(t, r) for t, r in sink.results if r.frame.stream == stream]


def test_max_wait_batches_what_is_ready_and_never_waits_for_a_stalled_stream(owner):
    # given a stream with 8 frames ready and one that sends a frame, then stalls for 1.5 s
    busy = FakeSource([frame(i) for i in range(8)] + [EOF])
    stalled = FakeSource([frame(100), Pause(1.5), frame(101), EOF])
    run = run_in_threads(owner, [busy, stalled], EchoClassifier(max_batch=4), ListSink(), Wiring(slots=8, max_wait_s=0.02))
    assert not run.errors, run.errors
    # then the busy stream's frames were all classified long before the stalled one came back,
    # in batches of at most 4, each frame once and in order, with its own pixels
    done = by_stream(run.sink, 0)
    later = by_stream(run.sink, 1)
    assert [r.frame.seq for _, r in done] == list(range(8)) and [r.frame.seq for _, r in later] == [0, 1]
    assert max(t for t, _ in done) < max(t for t, _ in later) - 1.0
    assert max(run.classifier.batches) <= 4 and sum(run.classifier.batches) == 10
    assert [r.top[0][0] for _, r in done] == [f"mean{i}" for i in range(8)]
    assert {e.stream for e in run.sink.ends} == {0, 1}


def test_a_lossless_stream_waits_for_slots_and_loses_nothing(owner):
    # given a file-like stream and a slow classifier, with only 2 slots between them
    source = FakeSource([frame(i) for i in range(20)] + [EOF])
    run = run_in_threads(owner, [source], EchoClassifier(max_batch=2, delay_s=0.01), ListSink(), Wiring(slots=2))
    # then every frame arrives once, in order, and nothing was dropped
    assert not run.errors, run.errors
    assert [r.frame.seq for _, r in run.sink.results] == list(range(20))
    assert run.reporters["decode[s0]"].counters.dropped == 0


def test_a_live_stream_drops_and_keeps_its_freshest_frames(owner):
    # given a camera-like stream (drop-oldest) at 200 fps and a classifier that takes 50 ms a frame
    source = FakeSource([frame(i % 250) for i in range(60)] + [EOF], fps=200)
    run = run_in_threads(owner, [source], EchoClassifier(max_batch=1, delay_s=0.05), ListSink(),
                         Wiring(slots=4, policies=("drop_oldest",)))
    assert not run.errors, run.errors
    seqs = [r.frame.seq for _, r in run.sink.results]
    dropped = run.reporters["decode[s0]"].counters.dropped + run.reporters["classify[fake]"].counters.stale_dropped[0]
    # then it never waited for the classifier: frames were dropped and counted, the ones
    # classified are in order, and the newest frame was among them
    assert dropped > 0 and len(seqs) + dropped == 60, (len(seqs), dropped)
    assert seqs == sorted(seqs) and seqs[-1] == 59


def test_a_source_that_crashes_stops_its_stream_and_the_others_go_on(owner):
    crashing = FakeSource([frame(1), frame(2), CRASH, frame(3)])
    healthy = FakeSource([frame(i) for i in range(5)] + [EOF])
    run = run_in_threads(owner, [crashing, healthy], EchoClassifier(), ListSink(), Wiring(slots=4))
    assert isinstance(run.errors.get("decode[s0]"), ScriptedCrash)
    assert [r.frame.seq for _, r in by_stream(run.sink, 0)] == [0, 1]
    assert [r.frame.seq for _, r in by_stream(run.sink, 1)] == list(range(5))
