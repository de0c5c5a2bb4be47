"""The web view's upload classifies a frame exactly as the pipeline classifies it from a stream."""
from __future__ import annotations

import av
import cv2
import pytest

from conftest import SAMPLE, read_jsonl, run_cli
from pipeline.config import load_config
from pipeline.web import Uploads


def test_an_uploaded_frame_gets_the_same_top1_as_that_frame_from_a_stream(tmp_path, write_config):
    # given the labels the pipeline gave every frame of the real sample (top_k 5)
    cfg_path = write_config([{"name": "bbb", "source": str(SAMPLE)}],
                            model={"backbone": "efficientnet_lite0", "weights": "imagenet", "backend": "openvino",
                                   "precision": "fp32", "top_k": 5, "cache_dir": str(tmp_path / "cache")})
    res = run_cli("run", str(cfg_path), "-q")
    assert res.returncode == 0, res.stderr
    labels = read_jsonl(tmp_path / "out" / "bbb.jsonl")
    # and a few frames with a clear top-1 (ahead of the second by 0.2), saved as lossless PNGs
    clear = [i for i, r in enumerate(labels) if r["top"][0]["score"] - r["top"][1]["score"] >= 0.2]
    assert len(clear) >= 5, "the sample no longer has frames with a clear top-1"
    picks = set(clear[:: max(1, len(clear) // 5)][:5])
    pngs = {}
    with av.open(str(SAMPLE)) as c:
        for i, frame in enumerate(c.decode(video=0)):
            if i in picks:
                ok, buf = cv2.imencode(".png", frame.to_ndarray(format="bgr24"))
                pngs[i] = buf.tobytes()
    # when each is uploaded
    uploads = Uploads(load_config(cfg_path))
    for i, png in sorted(pngs.items()):
        top = uploads.classify(png)
        # then it gets the stream's top-1 for that frame, with the run's top_k
        assert len(top) == 5 and top[0]["label"] == labels[i]["top"][0]["label"], (i, top, labels[i]["top"])
        assert top[0]["score"] == pytest.approx(labels[i]["top"][0]["score"], abs=0.1)  # the PNG went through RGB at full size: chroma differs a little
    # and what is not an image is refused in one line
    with pytest.raises(ValueError, match="not a readable image"):
        uploads.classify(b"GIF? no: plain text")
