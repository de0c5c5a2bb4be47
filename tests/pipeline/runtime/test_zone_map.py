"""The sink's map from a physical stream's zone results to its logged streams."""
from __future__ import annotations

from videoclf.core.records import EndOfStream, FrameRecord, Result
from videoclf.runtime.zones import ZoneMap


def result(stream: int, seq: int, zone=None) -> Result:
    return Result(FrameRecord(stream, seq, 0, None, 0.0, 0.0, 1.0), (("a", 1.0),), 1.0, 1, zone=zone)


def test_zone_results_ends_and_resume_map_to_logged_streams():
    # given stream 0 with zones logged as 0, 2 and 3, and stream 1 without zones (logged as 1)
    zm = ZoneMap(((0, 2, 3), (1,)))
    # then zone k of stream 0 is written as its k-th logged stream, stream 1 as itself
    assert [zm.logged(result(0, 7, z)).frame.stream for z in range(3)] == [0, 2, 3]
    assert zm.logged(result(1, 7)).frame.stream == 1
    # and stream 0's end ends each of its logs, with its count and reason
    assert zm.ends(EndOfStream(0, 12, "limit")) == [EndOfStream(0, 12, "limit"), EndOfStream(2, 12, "limit"),
                                                    EndOfStream(3, 12, "limit")]
    # and the classifier is told the lowest last frame among a stream's logs
    assert zm.resume([9, 4, 5, 11]) == (5, 4)


def test_without_zones_nothing_changes():
    zm = ZoneMap(())
    r = result(1, 3)
    assert zm.logged(r) is r and zm.resume([2, 3]) == (2, 3) and zm.ends(EndOfStream(1, 4)) == [EndOfStream(1, 4)]
