"""Agent benchmark: engine time added per agent step, excluding model and machine time.

A model-driven task runs through the real engine on a fresh SQLite file: the
model is the real OpenAI session (messages, tools, the screenshot as a data URL)
whose request is answered in-process at once, and the machine performs every
action at once and shows the same 1280x800 screenshot. Each agent step's wall
time, from one model request to the next, minus the time inside the model call
and the machine, is what the engine and the agent loop add: rendering, mapping,
hashing and encoding the screenshot, events, billing and the durable commit.

Prints:

(a) engine time per agent step through the engine (p50, p99), screenshots included;
(b) the same for the agent loop alone, with an in-memory context (no database);
(c) scaling one 1920x1080 screenshot to the model's 1280x800 limit (p50, p99),
    which the loop does off the event loop for desktops larger than the limit.

Run with ``.venv/bin/python bench/agent_bench.py [--steps N]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import tempfile
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

from cuaflow.agents.config import LoopSettings, ProviderSettings
from cuaflow.agents.loop import ModelAgent
from cuaflow.agents.providers.openai import OpenAIProvider
from cuaflow.dsl.actions import Action
from cuaflow.dsl.models import TaskStep
from cuaflow.dsl.parse import parse_workflow
from cuaflow.engine import task_step
from cuaflow.engine.machine_pool import MachinePool
from cuaflow.engine.runner import drive_run
from cuaflow.engine.start import RunOptions, start_workflow_run
from cuaflow.machines.base import ActionResult, Machine, Observation
from cuaflow.machines.screenshots import scale_for_model
from cuaflow.store.database import open_database
from cuaflow.store.writer import Writer


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) of ``values``."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def screenshot(width: int, height: int) -> bytes:
    """A PNG that looks like an application window: panels, buttons and lines of text."""
    image = Image.new("RGB", (width, height), (246, 247, 249))
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 0, width, 48), fill=(32, 33, 36))
    draw.rectangle((0, 48, 240, height), fill=(233, 236, 240))
    for row in range(60, height - 40, 28):
        draw.text((260, row), f"Row {row}: invoice #{row * 7} paid, 42.00 EUR", fill=(20, 20, 20))
        draw.text((16, row), f"Menu item {row // 28}", fill=(60, 60, 60))
    for x in range(260, width - 140, 160):
        draw.rounded_rectangle((x, 8, x + 140, 40), 6, fill=(26, 115, 232))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


class Clock:
    """When each model turn began, and the model and machine time of each step."""

    def __init__(self) -> None:
        self.turn_starts: list[float] = []
        self.outside: list[float] = []
        self.pending = 0.0

    def turn(self) -> float:
        """Mark a model turn's start, closing the outside time of the step before it."""
        now = time.perf_counter()
        if self.turn_starts:
            self.outside.append(self.pending)
        self.pending = 0.0
        self.turn_starts.append(now)
        return now

    def engine_ms(self) -> list[float]:
        """Engine milliseconds of each step: the time between turns, less model and machine."""
        starts = self.turn_starts
        return [
            (starts[i + 1] - starts[i] - self.outside[i]) * 1000 for i in range(len(starts) - 1)
        ]


class InstantModel(OpenAIProvider):
    """The real OpenAI session whose requests are answered in-process at once.

    It moves the pointer to a new point each turn and says ``done`` after ``steps`` turns.
    """

    def __init__(self, steps: int, clock: Clock) -> None:
        super().__init__("bench", ProviderSettings(api_key="unused", base_url=None))
        self.steps = steps
        self.clock = clock
        self.turn = 0

    async def complete(self, messages: list[Any], tools: list[Any] | None) -> dict[str, Any]:
        started = self.clock.turn()
        self.turn += 1
        if self.turn > self.steps:
            name, arguments = "done", '{"summary": "benchmarked"}'
        else:
            name, arguments = "move", f'{{"x": {self.turn % 1000}, "y": {self.turn % 700}}}'
        function = {"name": name, "arguments": arguments}
        call = {"id": f"call_{self.turn}", "type": "function", "function": function}
        answer = {"role": "assistant", "content": None, "tool_calls": [call]}
        self.clock.pending += time.perf_counter() - started
        return answer


class InstantScreen:
    """A machine that performs everything at once and always shows the same screenshot."""

    id = "bench-screen"
    kind = "desktop"
    capabilities = frozenset({"click", "double_click", "move", "drag", "scroll", "type", "key"})

    def __init__(self, png: bytes, clock: Clock) -> None:
        self.png = png
        self.clock = clock

    async def perform(self, action: Action, *, secrets: Mapping[str, str]) -> ActionResult:
        started = time.perf_counter()
        result = ActionResult(ok=True, output=f"{action.type} done")
        self.clock.pending += time.perf_counter() - started
        return result

    async def observe(self) -> Observation:
        started = time.perf_counter()
        observation = Observation(text="Invoices", screenshot_png=self.png, url=None)
        self.clock.pending += time.perf_counter() - started
        return observation

    async def close(self) -> None:
        pass


async def through_engine(steps: int, png: bytes, base: Path) -> list[float]:
    """Per-step engine time of one model-driven task of ``steps`` steps run by the engine."""
    clock = Clock()
    model = InstantModel(steps, clock)
    machine = InstantScreen(png, clock)
    # The engine picks its agent by the step and its machine by id; the
    # benchmark hands it the instant model and machine instead.
    task_step._agent = lambda state, step, cua_version: ModelAgent(model)

    @contextlib.asynccontextmanager
    async def instant_machine(*_: Any) -> AsyncIterator[Machine]:
        yield machine

    MachinePool.use = instant_machine  # type: ignore[assignment,method-assign]  # the bench's machine
    engine = open_database(f"sqlite:///{base / 'agent.db'}")
    step = {"id": "work", "type": "task", "task": "move around", "max_steps": steps + 1}
    workflow = parse_workflow({"name": "bench", "steps": [step]})
    run = start_workflow_run(engine, workflow, RunOptions())
    writer = Writer(engine)
    writer.start()
    outcome = await drive_run(engine, writer, str(run["id"]), data_dir=base)
    await writer.close()
    assert outcome == "finished", outcome
    return clock.engine_ms()


class MemoryContext:
    """An agent context with no database: what the agent loop alone costs."""

    def __init__(self, machine: Machine, steps: int) -> None:
        self.machine = machine
        self.task = "move around"
        self.step = TaskStep(id="work", type="task", task=self.task)
        self.max_steps = steps + 1
        self.secrets: dict[str, str] = {}
        self.run_id = "wfr_bench"
        self.step_path = "work"

    def render(self, value: Any) -> Any:
        return value

    async def begin_agent_step(self) -> None:
        pass

    async def end_agent_step(
        self,
        action: dict[str, Any],
        result: ActionResult,
        *,
        earlier: Sequence[tuple[dict[str, Any], ActionResult]] = (),
    ) -> None:
        pass

    async def emit(self, type: str, data: dict[str, Any]) -> None:
        pass

    async def save_artifact(self, name: str, data: bytes) -> str:
        return name


async def loop_alone(steps: int, png: bytes) -> list[float]:
    """Per-step time of the agent loop alone, with an in-memory context."""
    clock = Clock()
    model = InstantModel(steps, clock)
    machine = InstantScreen(png, clock)
    agent = ModelAgent(model, settings=LoopSettings())
    outcome = await agent.run(MemoryContext(machine, steps))
    assert outcome.passed, outcome.error
    return clock.engine_ms()


def scaling_ms(png: bytes, times: int) -> list[float]:
    """Milliseconds to scale ``png`` to the default limit, ``times`` times."""
    durations = []
    for _ in range(times):
        started = time.perf_counter()
        scale_for_model(png, 1280, 800)
        durations.append((time.perf_counter() - started) * 1000)
    return durations


def report(label: str, values: list[float]) -> None:
    """Print one figure."""
    print(
        f"{label}: p50 {percentile(values, 50):.3f} ms, p99 {percentile(values, 99):.3f} ms "
        f"({len(values)} steps)"
    )


async def main() -> None:
    """Run the three measurements and print their figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=500, help="agent steps per measurement")
    args = parser.parse_args()
    png = screenshot(1280, 800)
    print(f"screenshot: 1280x800 PNG of {len(png) / 1024:.0f} KiB")
    with tempfile.TemporaryDirectory() as tmp:
        report("(a) engine time per agent step", await through_engine(args.steps, png, Path(tmp)))
    report("(b) agent loop alone per step", await loop_alone(args.steps, png))
    report("(c) scaling a 1920x1080 screenshot", scaling_ms(screenshot(1920, 1080), 100))


if __name__ == "__main__":
    asyncio.run(main())
