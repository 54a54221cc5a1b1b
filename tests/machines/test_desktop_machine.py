"""The desktop machine: its own Xvfb, xdotool input into a real Tk window, root screenshots."""

from __future__ import annotations

import asyncio
import io
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from PIL import Image

from cuaflow.dsl.actions import (
    Action,
    Bash,
    Click,
    Key,
    Navigate,
    Screenshot,
    Type,
    WaitForFile,
)
from cuaflow.machines.base import ActionResult
from cuaflow.machines.desktop import DesktopMachine
from cuaflow.machines.screenshots import scale_for_model
from tests.machines.support import descendants, needs, running

pytestmark = needs("Xvfb", "xdotool")

SECRETS = {"PIN": "4711-secret"}

# A window at (40, 60) without a window manager: an entry that saves its text
# on Return, and a canvas whose red square is ringed by blue ones.
TK_APP = """
import sys, tkinter as tk
saved, clicks, ready = sys.argv[1:4]
root = tk.Tk()
root.geometry("600x300+40+60")
root.configure(bg="white")
entry = tk.Entry(root, font=("TkFixedFont", 14))
entry.place(x=20, y=20, width=400, height=36)
entry.bind("<Return>", lambda event: open(saved, "w").write(entry.get()))
canvas = tk.Canvas(root, width=560, height=200, bg="white", highlightthickness=0)
canvas.place(x=20, y=80)
for dx, dy, colour in [(0, 0, "red"), (-16, 0, "blue"), (16, 0, "blue"), (0, -16, "blue"), (0, 16, "blue")]:
    canvas.create_rectangle(301 + dx, 81 + dy, 314 + dx, 94 + dy, fill=colour, outline=colour, tags=colour)
def clicked(event):
    items = canvas.find_overlapping(event.x, event.y, event.x, event.y)
    tag = canvas.gettags(items[-1])[0] if items else "miss"
    open(clicks, "a").write(tag + "\\n")
canvas.bind("<Button-1>", clicked)
root.update()
root.after(200, lambda: open(ready, "w").write("up"))
root.mainloop()
"""


@pytest.fixture
async def desktop(tmp_path: Path) -> AsyncIterator[DesktopMachine]:
    machine = DesktopMachine("desktop-test", tmp_path / "work")
    yield machine
    await machine.close()


async def _do(machine: DesktopMachine, action: Action) -> ActionResult:
    result = await machine.perform(action, secrets=SECRETS)
    assert result.ok, result.error
    assert SECRETS["PIN"] not in f"{result.output} {result.error}"
    return result


async def _start_app(machine: DesktopMachine, tmp_path: Path) -> None:
    pytest.importorskip("tkinter", reason="this Python has no Tk (apt-get install python3-tk)")
    (tmp_path / "app.py").write_text(TK_APP)
    await _do(
        machine,
        Bash(
            type="bash",
            command=f"{sys.executable} {tmp_path / 'app.py'} saved.txt clicks.txt ready &",
        ),
    )
    await _do(machine, WaitForFile(type="wait_for_file", path="ready", timeout_seconds=15))


async def test_types_into_a_real_window(desktop: DesktopMachine, tmp_path: Path) -> None:
    """Click a Tk entry, type (a secret too), erase a key, press Return: the app saves the text."""
    await _start_app(desktop, tmp_path)
    await _do(desktop, Click(type="click", x=200, y=98))
    await _do(desktop, Type(type="type", text="pin {{secrets.PIN}}!x"))
    await _do(desktop, Key(type="key", keys=["BackSpace"]))
    await _do(desktop, Key(type="key", keys=["Return"]))
    await _do(desktop, WaitForFile(type="wait_for_file", path="saved.txt", timeout_seconds=10))
    assert (tmp_path / "work" / "saved.txt").read_text() == "pin 4711-secret!"


async def test_click_on_a_scaled_frame_lands_on_the_target(
    desktop: DesktopMachine, tmp_path: Path
) -> None:
    """The red square found on a downscaled root screenshot, mapped back, is what gets clicked."""
    await _start_app(desktop, tmp_path)
    observation = await desktop.observe()
    assert observation.screenshot_png is not None
    frame, scale = scale_for_model(observation.screenshot_png, 1024, 768)
    assert (scale.screen_width, scale.screen_height) == (1280, 800)
    assert (scale.frame_width, scale.frame_height) == (1024, 640)
    image = Image.open(io.BytesIO(frame)).convert("RGB")
    reds = [
        (x, y)
        for y in range(image.height)
        for x in range(image.width)
        if image.getpixel((x, y)) == (255, 0, 0)
    ]
    assert reds, "the red target is not on the scaled screenshot"
    fx = sorted(x for x, _ in reds)[len(reds) // 2]
    fy = sorted(y for _, y in reds)[len(reds) // 2]
    x, y = scale.to_screen(fx, fy)
    await _do(desktop, Click(type="click", x=x, y=y))
    clicks = tmp_path / "work" / "clicks.txt"
    for _ in range(100):
        if clicks.exists() and clicks.read_text():
            break
        await asyncio.sleep(0.05)
    assert clicks.read_text() == "red\n"


async def test_commands_see_the_display_and_close_stops_everything(tmp_path: Path) -> None:
    """bash runs with DISPLAY set; close() stops GUI programs and the X server."""
    machine = DesktopMachine("desktop-close", tmp_path / "work", width=800, height=600)
    try:
        command = "echo $DISPLAY; xdotool getdisplaygeometry"
        result = await _do(machine, Bash(type="bash", command=command))
        assert result.output == f"{machine.display}\n800 600\n"
        assert (await machine.observe()).text == result.output
        screenshot = await _do(machine, Screenshot(type="screenshot"))
        assert screenshot.data == {"width": 800, "height": 600}
        browse = await machine.perform(Navigate(type="navigate", url="x"), secrets={})
        assert not browse.ok
        await _do(machine, Bash(type="bash", command="sleep 60 & echo $! > sleeper.pid"))
        sleeper = int((tmp_path / "work" / "sleeper.pid").read_text())
        servers = [pid for pid, name in descendants(os.getpid()).items() if name == "Xvfb"]
        assert len(servers) == 1
        assert running(sleeper)
    finally:
        await machine.close()
    assert not running(servers[0])
    assert not running(sleeper)


async def test_desktops_get_their_own_displays(tmp_path: Path) -> None:
    """Two desktops started at once pick different free display numbers and both work."""
    first = DesktopMachine("one", tmp_path / "one", width=640, height=480)
    second = DesktopMachine("two", tmp_path / "two", width=800, height=600)
    try:
        await asyncio.gather(first.start(), second.start())
        assert first.display != second.display
        shots = await asyncio.gather(first.observe(), second.observe())
        sizes = [Image.open(io.BytesIO(shot.screenshot_png or b"")).size for shot in shots]
        assert sizes == [(640, 480), (800, 600)]
    finally:
        await asyncio.gather(first.close(), second.close())
