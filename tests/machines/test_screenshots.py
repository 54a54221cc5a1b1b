"""Scaling screenshots for a model and mapping its coordinates back to the screen."""

from __future__ import annotations

import io

import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from cuaflow.errors import MachineError
from cuaflow.machines.screenshots import (
    ScaleInfo,
    encode_png,
    fit_size,
    png_size,
    scale_for_model,
)


def _png(width: int, height: int, colour: tuple[int, int, int] = (255, 255, 255)) -> bytes:
    return encode_png(Image.new("RGB", (width, height), colour))


def test_a_frame_that_fits_is_returned_unchanged() -> None:
    """A screenshot within the limits keeps its bytes and maps coordinates one to one."""
    png = _png(800, 600)
    scaled, info = scale_for_model(png, 1024, 768)
    assert scaled is png
    assert not info.is_scaled
    assert info.to_screen(799, 0) == (799, 0)


def test_a_large_frame_is_shrunk_keeping_its_aspect() -> None:
    """A 1280x800 screen for a 1000x700 limit becomes 1000x625, and the PNG says so."""
    scaled, info = scale_for_model(_png(1280, 800), 1000, 700)
    assert png_size(scaled) == (1000, 625)
    with Image.open(io.BytesIO(scaled)) as image:
        assert image.size == (1000, 625)
    assert info == ScaleInfo(1280, 800, 1000, 625)
    assert info.to_screen(0, 0) == (0, 0)
    assert info.to_screen(999, 624) == (1279, 799)
    assert info.to_screen(5000, -3) == (1279, 0)


def test_scaled_pixels_keep_their_colour() -> None:
    """A coloured block stays at the place the mapping predicts after shrinking."""
    image = Image.new("RGB", (1280, 800), (255, 255, 255))
    image.paste((255, 0, 0), (640, 400, 680, 440))
    scaled, info = scale_for_model(encode_png(image), 640, 640)
    with Image.open(io.BytesIO(scaled)) as frame:
        x, y = info.to_frame(660, 420)
        pixel = frame.convert("RGB").getpixel((x, y))
    assert pixel == (255, 0, 0)


@given(
    screen=st.tuples(st.integers(1, 4000), st.integers(1, 4000)),
    limits=st.tuples(st.integers(1, 2000), st.integers(1, 2000)),
    point=st.tuples(st.floats(0, 1, exclude_max=True), st.floats(0, 1, exclude_max=True)),
)
def test_frame_pixels_map_inside_their_screen_span(
    screen: tuple[int, int], limits: tuple[int, int], point: tuple[float, float]
) -> None:
    """Every frame pixel maps to the screen pixel under its centre, and back to itself."""
    width, height = fit_size(*screen, *limits)
    assert width <= limits[0]
    assert height <= limits[1]
    info = ScaleInfo(screen[0], screen[1], width, height)
    fx, fy = int(point[0] * width), int(point[1] * height)
    sx, sy = info.to_screen(fx, fy)
    # The centre of frame pixel f is (f + 0.5) * screen / frame, which must lie in [s, s + 1).
    assert 2 * sx * width <= (2 * fx + 1) * screen[0] < 2 * (sx + 1) * width
    assert 2 * sy * height <= (2 * fy + 1) * screen[1] < 2 * (sy + 1) * height
    assert info.to_frame(sx, sy) == (fx, fy)


def test_bad_input_is_refused() -> None:
    """Bytes that are not a PNG, and non-positive limits, raise MachineError."""
    with pytest.raises(MachineError, match="not a PNG"):
        png_size(b"GIF89a" + bytes(30))
    with pytest.raises(MachineError, match="positive"):
        fit_size(100, 100, 0, 10)
