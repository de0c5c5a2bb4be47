"""The web view's upload classifies a frame exactly as the pipeline classifies it from a stream."""
from __future__ import annotations

import json
import signal
import socket
import time

import av
import cv2
import pytest

from conftest import FAST_MODEL, SAMPLE, make_video, read_jsonl, run_cli
from helpers_proc import line_count, start_cli, wait_for
from videoclf.config.load import load_config
from videoclf.devtools.testing import free_port
from videoclf.observe.web import Uploads
from videoclf.plan import compose


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
    uploads = Uploads(load_config(cfg_path), compose)  # the composition root lends the stages
    for i, png in sorted(pngs.items()):
        top = uploads.classify(png)
        # then it gets the stream's top-1 for that frame, with the run's top_k
        assert len(top) == 5 and top[0]["label"] == labels[i]["top"][0]["label"], (i, top, labels[i]["top"])
        assert top[0]["score"] == pytest.approx(labels[i]["top"][0]["score"], abs=0.1)  # the PNG went through RGB at full size: chroma differs a little
    # and what is not an image is refused in one line
    with pytest.raises(ValueError, match="not a readable image"):
        uploads.classify(b"GIF? no: plain text")


def _raw(port: int, request: bytes, half_close: bool = False) -> tuple[int, dict]:
    """A raw request to the web view; its status code and JSON body (0 when the server closed
    the connection without an answer)."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(request)
        if half_close:
            sock.shutdown(socket.SHUT_WR)  # the body ends here, short of its Content-Length
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    if not reply:
        return 0, {"error": "the connection closed without an answer"}
    status, _, rest = reply.partition(b"\r\n")
    body = rest.split(b"\r\n\r\n", 1)[1]
    return int(status.split()[1]), json.loads(body) if body.startswith(b"{") else {"error": body.decode()}


def _post(path: str, head: bytes, body: bytes = b"") -> bytes:
    return (b"POST " + path.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n" + head + b"\r\n"
            + body)


def _json(body: bytes) -> bytes:
    return _post("/api/streams", b"Content-Type: application/json\r\nContent-Length: %d\r\n" % len(body), body)


def _get(method: str, path: bytes) -> bytes:
    return method.encode() + b" " + path + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"


def _chunked(path: str, size: int) -> bytes:
    return _post(path, b"Transfer-Encoding: chunked\r\n", b"%x\r\n" % size + b"{" * size + b"\r\n0\r\n\r\n")


# (request, half-close after it, expected status, what the answer says). A request HTTP cannot
# parse (h11 refuses it: a bad or conflicting Content-Length, a garbage request line, a header
# without a colon) gets a 400 from the server itself; a body cut short by a half-close gets no
# answer (the connection is closed); everything else is answered by the app.
HOSTILE = [
    (_post("/api/classify", b"Content-Length: lots\r\n"), False, 400, "bad Content-Length"),
    (_post("/api/classify", b"Content-Length: -5\r\n"), False, 400, "bad Content-Length"),
    (_post("/api/classify", b"Content-Length: 12\r\nContent-Length: 13\r\n"), False, 400,
     "conflicting Content-Length headers"),
    (_post("/api/classify", b""), False, 411, "Content-Length required"),
    (_post("/api/classify", b"Content-Length: " + b"9" * 5000 + b"\r\n"), False, 400, "bad Content-Length"),
    (_post("/api/classify", b"Content-Length: 99999999999999999999\r\n"), False, 413,
     "upload an image of 1 byte to 16 MiB"),
    (_post("/api/classify", b"Content-Length: %d\r\n" % ((16 << 20) + 1)), False, 413, "16 MiB"),
    (_post("/api/classify", b"Content-Length: 100\r\n", b"a short body"), True, 0, "closed without an answer"),
    (_post("/api/classify", b"Content-Length: 9\r\n", b"not a jpg"), False, 400, "not a readable image"),
    (_json(b'{"name": "x", "source": '), False, 400, "not JSON"),
    (_json(b'["x", "y"]'), False, 400, "one JSON object"),
    (_json(b'"a string"'), False, 400, "one JSON object"),
    (_json(b'{"name": "x", "source": "y.mp4", "colour": "red"}'), False, 400, "colour: unknown key"),
    (_json(b'{"name": "../etc", "source": "y.mp4"}'), False, 400, "name"),
    (_json(b'{"name": "v", "source": "y.mp4"}'), False, 409, "already running"),
    (_post("/api/streams", b"Content-Length: %d\r\n" % (65 << 10)), False, 413, "64 KiB"),
    (_chunked("/api/streams", (64 << 10) + 1), False, 413, "64 KiB"),
    (_get("DELETE", b"/api/streams/nosuch"), False, 404, "no stream named"),
    (_get("DELETE", b"/api/streams/..%2F..%2Fetc%2Fpasswd"), False, 404, "Not Found"),
    (_get("DELETE", b"/api/streams/%2e%2e%2fv"), False, 404, "Not Found"),
    (_get("DELETE", b"/api/streams/v%00"), False, 404, "no stream of that name"),
    (_get("GET", b"/live/..%2freport.json%00.jpg"), False, 404, "Not Found"),
    (_get("GET", b"/live/%2e%2e%2f%2e%2e%2fetc%2fpasswd.jpg"), False, 404, "Not Found"),
    (_get("GET", b"/live/v%00.jpg"), False, 404, "no such stream"),
    (_get("GET", b"/live/../report.json"), False, 404, "Not Found"),
    (_get("PATCH", b"/api/streams"), False, 405, "Method Not Allowed"),
    (_get("PROPFIND", b"/"), False, 405, "Method Not Allowed"),
    (_get("TRACE", b"/api/classify"), False, 405, "Method Not Allowed"),
    (_get("GET", b"/nowhere"), False, 404, "Not Found"),
    (b"\x16\x03\x01\x02\x00garbage\r\n\r\n", False, 400, "invalid HTTP request"),
    (b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nNoColonHere\r\n\r\n", False, 400, "invalid HTTP request"),
    (b"GET / HTTP/1.1\r\n\r\n", False, 400, "Host"),
]


def test_hostile_requests_are_refused_and_the_run_goes_on(tmp_path, write_config):
    # regression: a non-numeric Content-Length raised in the handler and socketserver printed a
    # traceback on the run's stderr
    # given a running pipeline with the web view (a looped file, so it runs until told to stop)
    port = free_port()
    video = make_video(tmp_path / "v.mp4", width=96, height=64, frames=30)
    cfg = write_config([{"name": "v", "source": str(video), "loop": True}], model=FAST_MODEL)
    proc = start_cli("run", str(cfg), "-q", "--duration", "120", "--web", f":{port}")
    log = tmp_path / "out" / "v.jsonl"
    try:
        wait_for(lambda: line_count(log) >= 10, 120, "the first labels")
        # when hostile requests arrive, then each gets its 4xx and a short message
        t0 = time.monotonic()
        for request, half_close, code, says in HOSTILE:
            got = _raw(port, request, half_close)
            assert got[0] == code and says in got[1]["error"], (request[:60], got)
        assert time.monotonic() - t0 < 5, "answers waited for a timeout"
        # and a client that sends half an upload and vanishes gets nothing and costs nothing
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            sock.sendall(b"POST /api/classify HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nten bytes.")
        # and the run goes on classifying
        seen = line_count(log)
        wait_for(lambda: line_count(log) > seen + 10, 60, "labels after the hostile requests")
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    # then the run ends normally, nothing but the stop is on its stderr, and its log is complete
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    assert [ln for ln in err.splitlines() if not ln.startswith("videoclf: warning: SIGINT")] == [], err
    frames = [r["frame"] for r in read_jsonl(log)]
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert frames == list(range(len(frames))) and len(frames) == report["streams"]["v"]["frames"]
