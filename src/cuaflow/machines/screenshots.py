"""Screenshots: capturing an X display, encoding PNGs, and scaling frames for a model.

A model sees a screenshot scaled down to fit its limits and answers with
coordinates on that smaller frame. :class:`ScaleInfo` belongs to one frame and
maps its coordinates back to the screen exactly: frame pixel ``x`` covers the
screen span ``[x*W/w, (x+1)*W/w)``, and :meth:`ScaleInfo.to_screen` picks the
screen pixel under that span's centre, in integer arithmetic, so no rounding
drift piles up and the point always lands inside what the model pointed at.

PNGs are written with zlib level 1: for screen content it is several times
faster than the default and the files are barely larger.
"""

from __future__ import annotations

import io
import struct
import threading
from dataclasses import dataclass

from PIL import Image
from Xlib import X
from Xlib import display as xdisplay
from Xlib.error import ConnectionClosedError, DisplayError, XError

from cuaflow.errors import MachineError

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_COMPRESS_LEVEL = 1


@dataclass(frozen=True)
class ScaleInfo:
    """How one frame relates to the screen it was taken from."""

    screen_width: int
    screen_height: int
    frame_width: int
    frame_height: int

    @property
    def is_scaled(self) -> bool:
        """Whether the frame is smaller than the screen."""
        return (self.frame_width, self.frame_height) != (self.screen_width, self.screen_height)

    def to_screen(self, x: float, y: float) -> tuple[int, int]:
        """The screen pixel under the centre of frame pixel ``(x, y)`` (clamped to the screen)."""
        return (
            _map(x, self.frame_width, self.screen_width),
            _map(y, self.frame_height, self.screen_height),
        )

    def to_frame(self, x: float, y: float) -> tuple[int, int]:
        """The frame pixel showing screen pixel ``(x, y)`` (clamped to the frame)."""
        return (
            _map(x, self.screen_width, self.frame_width),
            _map(y, self.screen_height, self.frame_height),
        )

    def as_dict(self) -> dict[str, int]:
        """The four sizes, for event payloads and artifact metadata."""
        return {
            "screen_width": self.screen_width,
            "screen_height": self.screen_height,
            "frame_width": self.frame_width,
            "frame_height": self.frame_height,
        }


def _map(value: float, source: int, target: int) -> int:
    """``floor((value + 0.5) * target / source)``, exact for integers, clamped to the target."""
    if source == target:
        mapped = int(value)
    elif isinstance(value, int) or float(value).is_integer():
        mapped = ((2 * int(value) + 1) * target) // (2 * source)
    else:
        mapped = int((value + 0.5) * target / source)
    return min(max(mapped, 0), target - 1)


def fit_size(width: int, height: int, max_width: int, max_height: int) -> tuple[int, int]:
    """The largest size with the same aspect ratio within the limits (never larger than given)."""
    if max_width < 1 or max_height < 1:
        raise MachineError(f"screenshot limits must be positive, got {max_width}x{max_height}")
    if width <= max_width and height <= max_height:
        return width, height
    factor = min(max_width / width, max_height / height)
    return (
        min(max(round(width * factor), 1), max_width),
        min(max(round(height * factor), 1), max_height),
    )


def scale_image(
    image: Image.Image, max_width: int, max_height: int
) -> tuple[Image.Image, ScaleInfo]:
    """``image`` shrunk to fit the limits (the same object when it fits), and its scale."""
    width, height = image.size
    frame_width, frame_height = fit_size(width, height, max_width, max_height)
    info = ScaleInfo(width, height, frame_width, frame_height)
    if not info.is_scaled:
        return image, info
    # reducing_gap lets Pillow shrink by an integer factor first, which keeps
    # the cost near that of a plain box filter with bilinear quality.
    scaled = image.resize((frame_width, frame_height), Image.Resampling.BILINEAR, reducing_gap=2.0)
    return scaled, info


def scale_for_model(png: bytes, max_width: int, max_height: int) -> tuple[bytes, ScaleInfo]:
    """``png`` shrunk to fit the limits (the same bytes when it fits), and its scale."""
    width, height = png_size(png)
    frame_width, frame_height = fit_size(width, height, max_width, max_height)
    if (frame_width, frame_height) == (width, height):
        return png, ScaleInfo(width, height, width, height)
    with Image.open(io.BytesIO(png)) as image:
        scaled, info = scale_image(image.convert("RGB"), max_width, max_height)
    return encode_png(scaled), info


def encode_png(image: Image.Image) -> bytes:
    """``image`` as PNG bytes, compressed for speed."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
    return buffer.getvalue()


def png_size(png: bytes) -> tuple[int, int]:
    """Width and height from a PNG's header, without decoding it."""
    if len(png) < 24 or not png.startswith(PNG_SIGNATURE) or png[12:16] != b"IHDR":
        raise MachineError("not a PNG image")
    width, height = struct.unpack(">II", png[16:24])
    return int(width), int(height)


class XScreenGrabber:
    """Reads the root window of an X display over one long-lived connection.

    Grabbing with ``XGetImage`` through python-xlib takes about 8 ms for a
    1280x800 screen, against about 50 ms for spawning ImageMagick's ``import``.
    Calls are serialised: an X connection must not be used by two threads at once.
    """

    def __init__(self, display_name: str) -> None:
        try:
            self._display = xdisplay.Display(display_name)
        except (DisplayError, OSError) as error:
            raise MachineError(f"cannot connect to X display {display_name}: {error}") from error
        self._root = self._display.screen().root
        self._lock = threading.Lock()

    def grab(self) -> Image.Image:
        """The whole screen now, as an RGB image."""
        with self._lock:
            try:
                geometry = self._root.get_geometry()
                width, height = int(geometry.width), int(geometry.height)
                reply = self._root.get_image(0, 0, width, height, X.ZPixmap, 0xFFFFFFFF)
            except (ConnectionClosedError, XError, OSError) as error:
                raise MachineError(f"cannot read the X display: {error}") from error
        data = reply.data
        raw = data if isinstance(data, bytes) else bytes(data)
        # A 24-bit TrueColor root is laid out as 32-bit BGRX pixels.
        return Image.frombuffer("RGB", (width, height), raw, "raw", "BGRX", 0, 1)

    def close(self) -> None:
        """Close the X connection."""
        with self._lock:
            self._display.close()
