"""Machine benchmark: screenshot capture and scaling time per agent step.

For a browser machine (headless Chromium on a typical local page) and a desktop
machine (Xvfb with terminal windows full of text), takes ``--shots``
observations at 1280x800 and scales each for a model (to fit 1024x768, as
the agent does), and prints p50 and p99 of:

- capture: ``machine.observe()`` (screenshot PNG plus page or terminal text);
- scale: ``scale_for_model`` on that PNG (decode, resize, encode);
- total: the two together, which is what a step spends on its screenshot.

Run with ``.venv/bin/python bench/machine_bench.py [--shots 50]``; a machine
whose programs are missing is skipped with a note.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from cuaflow.dsl.actions import Bash, Navigate
from cuaflow.machines.base import Machine
from cuaflow.machines.browser import BrowserMachine
from cuaflow.machines.desktop import DesktopMachine
from cuaflow.machines.registry import missing_programs
from cuaflow.machines.screenshots import scale_for_model

MODEL_LIMIT = (1024, 768)
# A typical application page: a gradient banner, headings, paragraphs, buttons.
PAGE = (
    "<!doctype html><html><body style='font: 15px sans-serif; margin: 0'>"
    "<header style='height: 120px; background: linear-gradient(90deg, #2b5876, #4e4376);"
    " color: white; font-size: 32px; padding: 30px'>Dashboard</header><main style='margin: 20px'>"
    + "".join(
        f"<h3>Section {n}</h3><p>"
        + " ".join(f"word{n * 7 + k} lorem ipsum dolor sit amet" for k in range(30))
        + f"</p><button style='background: #e0e7ff; padding: 6px'>Action {n}</button>"
        for n in range(12)
    )
    + "</main></body></html>"
)


def _percentiles(samples: list[float]) -> str:
    ordered = sorted(samples)
    p50 = statistics.median(ordered) * 1000
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))] * 1000
    return f"p50 {p50:6.1f} ms   p99 {p99:6.1f} ms"


async def _measure(name: str, machine: Machine, shots: int) -> None:
    await machine.observe()  # warm up: start the machine, load fonts
    capture: list[float] = []
    scale: list[float] = []
    size = 0
    for _ in range(shots):
        started = time.perf_counter()
        observation = await machine.observe()
        captured = time.perf_counter()
        assert observation.screenshot_png is not None
        frame, _ = scale_for_model(observation.screenshot_png, *MODEL_LIMIT)
        scaled = time.perf_counter()
        capture.append(captured - started)
        scale.append(scaled - captured)
        size = len(frame)
    total = [a + b for a, b in zip(capture, scale, strict=True)]
    print(f"{name} ({shots} shots, 1280x800 -> fit {MODEL_LIMIT[0]}x{MODEL_LIMIT[1]}):")
    print(f"  capture  {_percentiles(capture)}")
    print(f"  scale    {_percentiles(scale)}")
    print(f"  total    {_percentiles(total)}   (scaled PNG {size // 1024} KiB)")


async def bench_browser(shots: int) -> None:
    if missing_programs("browser"):
        print("browser: skipped, Chromium is not installed")
        return
    machine = BrowserMachine("bench-browser")
    try:
        page = Path(tempfile.mkdtemp()) / "page.html"
        page.write_text(PAGE)
        result = await machine.perform(Navigate(type="navigate", url=page.as_uri()), secrets={})
        assert result.ok, result.error
        await _measure("browser", machine, shots)
    finally:
        await machine.close()


async def bench_desktop(shots: int) -> None:
    if missing_programs("desktop"):
        print("desktop: skipped, Xvfb or xdotool is not installed")
        return
    machine = DesktopMachine("bench-desktop", Path(tempfile.mkdtemp()))
    try:
        windows = " ".join(
            f"xterm -geometry 100x30+{x}+{y} -e 'ls -la /usr/bin; sleep 600' &"
            for x, y in ((0, 0), (400, 300), (700, 50))
        )
        result = await machine.perform(Bash(type="bash", command=f"{windows} sleep 1"), secrets={})
        assert result.ok, result.error
        await _measure("desktop", machine, shots)
    finally:
        await machine.close()


async def main(shots: int) -> None:
    await bench_browser(shots)
    await bench_desktop(shots)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shots", type=int, default=50)
    asyncio.run(main(parser.parse_args().shots))
