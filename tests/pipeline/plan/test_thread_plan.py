"""The thread plan: every decoder's, the engine's and the spare core decided once, from the
config, the files' frame size and a frame's decode cost; nothing stored on the config."""
from __future__ import annotations

import pickle

import pytest

from videoclf.config.load import parse_config
from videoclf.plan.budget import FRAME_THREADING_COST, SPARE_CORE_MPX, split_or_share, thread_plan


def config(streams, **model):
    return parse_config({"streams": streams, "model": model})


def test_one_large_file_with_automatic_threads_may_leave_its_decoder_a_core():
    # given one 1080p file and automatic threads on 4 cores, its decode cost measured at 3 ms
    cfg = config([{"name": "a", "source": "a.mp4"}])
    # when the plan is made
    plan = thread_plan(cfg, mpx=1920 * 1080 / 1e6, decode_s=3e-3, cores=4)
    # then the decoder has every core and, beside one CPU engine stream, half of them
    assert (plan.decoders[0].threads, plan.decoders[0].lean) == (4, 2)
    # and the engine runs on every core, its streams measured, free to leave a core, by the
    # plan's rule on the measured cost
    e = plan.engine
    assert (e.threads, e.streams, e.spare_core, e.lean_decoders) == (4, None, True, True)
    assert e.split is not None and e.split.decode_s == 3e-3 and e.split.cores == 4
    assert e.split.frame_threading_cost == FRAME_THREADING_COST
    assert e.split.predict(400.0, 700.0) == split_or_share(3e-3, 400.0, 700.0, 4)
    # and the user's config is as it was parsed
    assert cfg.model.threads == 0 and cfg.model.engine_streams == "auto" and cfg.streams[0].decode_threads == 0
    assert pickle.loads(pickle.dumps(plan)) == plan


@pytest.mark.parametrize("model,stream,why", [({"threads": 2}, {}, "threads set"),
                                              ({}, {}, "small frames"),
                                              ({"device": "cuda"}, {}, "not a CPU engine")])
def test_no_spare_core_when_the_threads_are_set_the_frames_small_or_the_engine_not_on_the_cpu(model, stream, why):
    cfg = config([{"name": "a", "source": "a.mp4", **stream}], **model)
    mpx = 0.2 if why == "small frames" else SPARE_CORE_MPX
    plan = thread_plan(cfg, mpx=mpx, cores=4)
    assert not plan.engine.spare_core and plan.engine.split is None, why


def test_decoder_threads_the_config_sets_are_kept_beside_any_engine():
    # given a file whose decode threads the config sets, and one camera
    cfg = config([{"name": "a", "source": "a.mp4", "decode_threads": 3},
                  {"name": "c", "source": "rtsp://cam/1"}])
    plan = thread_plan(cfg, mpx=2.0, cores=4)
    # then neither leans: the set count is kept, and a camera's decoder never leans
    assert [(d.threads, d.lean) for d in plan.decoders] == [(3, 3), (2, 2)]
    assert not plan.engine.lean_decoders
    # and several streams get an engine stream per thread, decided here, not measured
    assert plan.engine.streams == 4


def test_specs_and_control_are_built_by_keyword_only():
    from videoclf.runtime.specs import BatchSpec, Control, SinkSpec

    with pytest.raises(TypeError):
        Control(1, 2, 3, 4)  # four flags in a row would type-check if two were swapped
    with pytest.raises(TypeError):
        SinkSpec("sink", "sink.jsonl", None, "\0in", 1)
    assert BatchSpec(title="c", kind="classify", config=None, inbox="i", to="o", n_streams=1).lean_decode is False


def test_a_file_with_zones_plans_its_engine_as_several_cameras():
    from videoclf.plan.budget import wants_decode_cost

    # given one 1080p file with three zones (three engine inputs a frame, one decode)
    zones = [{"name": n, "x": 100 * i, "y": 0, "w": 100, "h": 100} for i, n in enumerate("abc")]
    cfg = config([{"name": "a", "source": "a.mp4", "zones": zones}])
    plan = thread_plan(cfg, mpx=1920 * 1080 / 1e6, cores=4)
    # then the engine runs a stream per thread, as for several cameras, and its decoder keeps
    # every core: no one-stream measurement, no decode cost looked at
    assert plan.engine.streams == plan.engine.threads == 4 and plan.decoders[0].threads == 4
    assert not wants_decode_cost(cfg, 1920 * 1080 / 1e6)
    # while the same file without zones is measured as one stream
    assert thread_plan(config([{"name": "a", "source": "a.mp4"}]), mpx=2.07, cores=4).engine.streams is None
