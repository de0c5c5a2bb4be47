"""A zone becomes the model input whole (fit: pad, stretch) or by the backbone's centre crop
(fit: crop), from the planar YUV frame in one scaling pass."""
from __future__ import annotations

import av
import numpy as np
import pytest

from videoclf.config.schema import Roi, Zone
from videoclf.core.errors import InputError
from videoclf.stages.decode.file import DecodeConfig, to_model_rgb
from videoclf.stages.decode.geometry import MEAN_RGB

ZONE = dict(x=600, y=300, w=640, h=480)
MARK = 48  # marker side in source pixels (about 17 input pixels at 224)
COLOURS = {"top_left": (255, 0, 0), "top_right": (0, 255, 0), "bottom_left": (0, 0, 255),
           "bottom_right": (255, 255, 0)}
OUTSIDE = (255, 255, 255)  # everything outside the zone: white, which no marker and no pad is
INSIDE = (40, 40, 40)


def marked_frame() -> av.VideoFrame:
    """A 1080p yuv420p frame: white outside the zone, dark grey inside it, a coloured
    marker in each of the zone's four corners."""
    img = np.full((1080, 1920, 3), OUTSIDE, np.uint8)
    x, y, w, h = ZONE["x"], ZONE["y"], ZONE["w"], ZONE["h"]
    img[y:y + h, x:x + w] = INSIDE
    img[y:y + MARK, x:x + MARK] = COLOURS["top_left"]
    img[y:y + MARK, x + w - MARK:x + w] = COLOURS["top_right"]
    img[y + h - MARK:y + h, x:x + MARK] = COLOURS["bottom_left"]
    img[y + h - MARK:y + h, x + w - MARK:x + w] = COLOURS["bottom_right"]
    return av.VideoFrame.from_ndarray(img, format="rgb24").reformat(format="yuv420p")


def corners(out: np.ndarray, x0: int, y0: int, x1: int, y1: int, inset: int = 4) -> dict[str, np.ndarray]:
    """The input's pixels just inside the four corners of the area (x0, y0)-(x1, y1), inclusive."""
    return {"top_left": out[y0 + inset, x0 + inset], "top_right": out[y0 + inset, x1 - inset],
            "bottom_left": out[y1 - inset, x0 + inset], "bottom_right": out[y1 - inset, x1 - inset]}


def near(pixel: np.ndarray, rgb: tuple[int, int, int], tol: int = 40) -> bool:
    return bool(np.abs(pixel.astype(int) - np.array(rgb)).max() <= tol)


def no_outside(out: np.ndarray) -> bool:
    """Nothing white: no pixel from outside the zone reached the input."""
    return bool((out.astype(int).min(axis=2) < 200).all())


def test_pad_shows_the_whole_zone_with_its_four_markers_and_mean_bars():
    # given a 1080p frame and a 640x480 zone with a marker in each corner
    frame = marked_frame()
    # when the zone becomes the model input with fit: pad (the default)
    out = to_model_rgb(frame, DecodeConfig("cam", "x", 256, 224, Roi(**ZONE)))
    # then the zone fills 224x168 in the middle of the square, each marker at its corner
    assert out.shape == (224, 224, 3)
    for corner, pixel in corners(out, 0, 28, 223, 195).items():
        assert near(pixel, COLOURS[corner]), (corner, pixel)
    # and the bars above and below are the ImageNet mean colour, nothing from outside the zone
    assert (out[:28] == MEAN_RGB).all() and (out[196:] == MEAN_RGB).all()
    assert no_outside(out)


def test_stretch_puts_the_markers_at_the_inputs_corners():
    out = to_model_rgb(marked_frame(), DecodeConfig("cam", "x", 256, 224, Roi(**ZONE, fit="stretch")))
    for corner, pixel in corners(out, 0, 0, 223, 223).items():
        assert near(pixel, COLOURS[corner]), (corner, pixel)
    assert no_outside(out)


def test_crop_keeps_the_backbones_centre_square_of_the_zone():
    # fit: crop is the backbone's recipe on the zone: its centre 480x480 square (then 7/8 of
    # it), so the corner markers are lost: what pad is for
    out = to_model_rgb(marked_frame(), DecodeConfig("cam", "x", 256, 224, Roi(**ZONE, fit="crop")))
    assert all(near(p, INSIDE) for p in corners(out, 0, 0, 223, 223).values())
    assert no_outside(out)


def test_a_tall_zone_pads_left_and_right():
    frame = marked_frame()
    # a 120x480 zone down the zone's left edge: its top-left and bottom-left markers
    out = to_model_rgb(frame, DecodeConfig("cam", "x", 256, 224, Roi(x=600, y=300, w=120, h=480)))
    assert (out[:, :84] == MEAN_RGB).all() and (out[:, 140:] == MEAN_RGB).all()
    assert near(out[4, 88], COLOURS["top_left"]) and near(out[219, 88], COLOURS["bottom_left"])


def test_zones_give_one_input_each_in_their_order():
    # given two zones: the top-left marker alone, and the bottom-right one
    zones = (Zone(name="a", x=600, y=300, w=MARK, h=MARK), Zone(name="b", x=1240 - MARK, y=780 - MARK, w=MARK, h=MARK))
    out = to_model_rgb(marked_frame(), DecodeConfig("cam", "x", 256, 224, zones=zones))
    # then the decoder's slot holds one input per zone, each all its own marker's colour
    assert out.shape == (2, 224, 224, 3)
    assert near(out[0, 8:-8, 8:-8].mean(axis=(0, 1)), COLOURS["top_left"])
    assert near(out[1, 8:-8, 8:-8].mean(axis=(0, 1)), COLOURS["bottom_right"])


def test_a_zone_outside_the_frame_names_its_key():
    zones = (Zone(name="door", x=1800, y=0, w=200, h=100),)
    with pytest.raises(InputError, match=r"streams\.cam\.zones\.door: \(1800, 0, 200, 100\) lies outside the "
                                         r"1920x1080 frame"):
        to_model_rgb(marked_frame(), DecodeConfig("cam", "x", 256, 224, zones=zones))
