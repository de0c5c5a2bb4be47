"""The label-log format lives in one module: what the sinks write is what every reader reads back
(the frame number for resuming, the day for rotation, the first label for the fleet's MQTT state)."""
from __future__ import annotations

import time

import pytest

from videoclf.core.records import EndOfStream, FrameRecord, Result
from videoclf.stages.outputs.appendlog import day_of
from videoclf.stages.outputs.labellog import (csv_header, day_reader, format_line, frame_of, label_record,
                                              last_logged_frame, top_label)
from videoclf.stages.outputs.labels import CsvSink, JsonlSink, SinkConfig


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_a_written_line_reads_back(fmt):
    # given a line with a label that needs CSV quoting and a pts of None
    epoch = 1_700_000_123.25
    rec = label_record("cam 1", 41, None, epoch, [("tench, Tinca tinca", 0.75), ("goldfish", 0.125)])
    # when it is formatted, then every reader finds its fields
    line = format_line(fmt, rec)
    assert frame_of(line.encode(), fmt) == 41
    assert top_label(line, fmt) == ("tench, Tinca tinca", 0.75)
    assert day_reader(fmt)(line.encode()) == day_of(epoch)


def test_a_header_or_a_torn_line_has_no_frame():
    assert frame_of(csv_header(2).encode(), "csv") is None
    assert top_label(csv_header(2), "csv") is None
    assert frame_of(b'{"stream":"a","fra', "jsonl") is None


@pytest.mark.parametrize("sink", [JsonlSink, CsvSink])
def test_a_sinks_log_resumes_from_its_last_frame(tmp_path, sink):
    # given a label sink that writes three frames of stream "a"
    s = sink(SinkConfig(str(tmp_path), ("a",), top_k=1))
    s.setup()
    now = time.time()
    for seq in (5, 6, 7):
        s.write(Result(FrameRecord(0, seq, 0, seq / 25, now, time.monotonic(), 1.0), (("cat", 0.5),), 2.0, 1))
    s.end(EndOfStream(0, 8))
    s.teardown()
    # then the reader of the format finds the last frame, and the stats count them
    output = type("Output", (), {"dir": str(tmp_path), "format": sink.fmt})
    assert last_logged_frame(output, "a") == 7
    assert (tmp_path / f"a.{sink.fmt}").read_text().count("cat") == 3
