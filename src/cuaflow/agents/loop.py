"""The model-driven agent: observe the machine, ask the model, act, repeat.

Each model turn that calls tools is one agent step: the engine checks the
budget and deadline before it (``begin_agent_step``), the turn's actions run in
order, and the step is billed once with an event per action
(``end_agent_step``). The model's text streams as ``reasoning`` events.

The task ends when the model calls ``done`` (passed) or ``fail``, answers
without calling a tool (passed, its text the summary), would take more than
``max_steps`` steps (``MAX_STEPS_EXCEEDED``), or repeats the same calls on an
unchanged screen ``loop_repeats`` times (``LOOP_DETECTED``). An action that
fails does not end the task: the model reads the error, and the rest of that
turn's actions are skipped.

Screenshots are scaled down before the model sees them, and each coordinate the
model returns is mapped back through the scale of the frame it was shown.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from cuaflow.agents.base import MAX_STEPS_EXCEEDED, AgentContext, TaskOutcome
from cuaflow.agents.config import LoopSettings, loop_settings
from cuaflow.agents.mapping import CoordinateScale, to_screen
from cuaflow.agents.prompts import Briefing, describe_result, system_prompt, task_message
from cuaflow.agents.providers import (
    ModelProvider,
    ModelTurn,
    Toolbox,
    ToolCall,
    ToolReport,
    View,
    provider_for,
)
from cuaflow.dsl.actions import ACTION_TYPES, Done, Fail, Screenshot
from cuaflow.errors import MachineError
from cuaflow.machines.base import ActionResult, Machine, scrub_secrets
from cuaflow.machines.screenshots import png_size, scale_for_model

LOOP_DETECTED = "LOOP_DETECTED"
OBSERVE_RETRY_SECONDS = 0.25

Scaler = Callable[[bytes], tuple[bytes, CoordinateScale | None]]
Performed = tuple[dict[str, Any], ActionResult]


@dataclass(frozen=True)
class Frame:
    """One observation as the model sees it, the scale its coordinates map back by, and a digest."""

    view: View
    scale: CoordinateScale | None
    digest: str


class ModelAgent:
    """Carries out a task by asking a model what to do next.

    ``model`` is a provider, or a model spec (``openai:gpt-4o``) resolved when
    the task starts, so a bad configuration fails the task rather than the
    engine. ``scaler`` turns a screenshot into the frame shown to the model and
    its scale (by default :func:`default_scaler`).
    """

    def __init__(
        self,
        model: ModelProvider | str,
        briefing: Briefing | None = None,
        *,
        settings: LoopSettings | None = None,
        scaler: Scaler | None = None,
    ) -> None:
        self.model = model
        self.briefing = briefing or Briefing()
        self.settings = settings or loop_settings()
        self.scaler = scaler or default_scaler(self.settings)

    async def provider(self) -> ModelProvider:
        """The model provider (resolving a spec on first use)."""
        if isinstance(self.model, str):
            # The first use imports the provider's SDK: a second or two, off the event loop.
            self.model = await asyncio.to_thread(provider_for, self.model)
        return self.model

    async def run(self, ctx: AgentContext) -> TaskOutcome:
        """Work on ``ctx.task`` until the model finishes, gives up, or a limit ends it."""
        try:
            return await self._run(ctx)
        except MachineError as error:
            # Acting comes back as results; only observing the machine raises.
            return TaskOutcome.failed(f"cannot observe the machine: {error}", code=error.code)

    async def _run(self, ctx: AgentContext) -> TaskOutcome:
        provider = await self.provider()
        machine = ctx.machine
        frame = await look(machine, ctx.secrets, self.scaler)
        await _keep(ctx, frame, 0)
        types = tuple(kind for kind in ACTION_TYPES if kind in machine.capabilities)
        screen = frame.view.screen
        session = provider.start(
            system_prompt(self.briefing, machine.kind, screen), Toolbox(types, screen)
        )
        text = task_message(ctx.task, self.briefing.goal)
        reports: list[ToolReport] = []
        recent: deque[str] = deque(maxlen=max(self.settings.loop_repeats, 2))
        steps = 0
        while True:
            turn = await session.ask(text, reports, frame.view)
            await _say(ctx, turn)
            if not turn.calls:
                summary = scrub_secrets(turn.text.strip(), ctx.secrets)
                return TaskOutcome.succeeded(summary or "the model finished")
            if steps >= ctx.max_steps:
                return TaskOutcome.failed(
                    f"the model still had actions to take after max_steps ({ctx.max_steps}) "
                    "agent steps",
                    code=MAX_STEPS_EXCEEDED,
                )
            recent.append(frame.digest + _fingerprint(turn.calls))
            if len(recent) == recent.maxlen and len(set(recent)) == 1:
                return TaskOutcome.failed(
                    f"the model asked for the same actions on an unchanged screen "
                    f"{len(recent)} times in a row: {_fingerprint(turn.calls)}",
                    code=LOOP_DETECTED,
                )
            await ctx.begin_agent_step()
            performed, reports, outcome = await _perform_turn(ctx, turn.calls, frame.scale)
            steps += 1
            action, result = performed[-1]
            await ctx.end_agent_step(action, result, earlier=performed[:-1])
            if outcome is not None:
                return outcome
            frame = await look(machine, ctx.secrets, self.scaler)
            await _keep(ctx, frame, steps)
            if frame.view.png is None and frame.view.text == result.output:
                # A terminal shows the last output, which the model just read in the report.
                frame = replace(frame, view=replace(frame.view, text=""))
            text = ""


async def _keep(ctx: AgentContext, frame: Frame, step: int) -> None:
    # The frame the model is shown, kept with the run and named by its next agent step.
    if frame.view.png is not None:
        await ctx.save_artifact(f"step-{step:03d}.png", frame.view.png)


async def look(machine: Machine, secrets: Mapping[str, str], scaler: Scaler) -> Frame:
    """Observe ``machine`` and prepare what the model is shown."""
    try:
        observation = await machine.observe()
    except MachineError:
        # A browser busy painting can refuse one capture; a second try a moment later decides.
        await asyncio.sleep(OBSERVE_RETRY_SECONDS)
        observation = await machine.observe()
    text = scrub_secrets(observation.text, secrets)
    digest = hashlib.blake2b(digest_size=16)
    digest.update(text.encode())
    digest.update(b"\0" + (observation.url or "").encode() + b"\0")
    if not observation.screenshot_png:
        return Frame(View(text=text, url=observation.url), None, digest.hexdigest())
    digest.update(observation.screenshot_png)
    # Decoding and resizing an image takes milliseconds: off the event loop, other runs go on.
    png, scale = await asyncio.to_thread(scaler, observation.screenshot_png)
    width, height = png_size(png)
    view = View(text=text, url=observation.url, png=png, width=width, height=height)
    return Frame(view, scale, digest.hexdigest())


def default_scaler(settings: LoopSettings) -> Scaler:
    """Shrink screenshots to fit the settings' limits, keeping each frame's scale."""
    width, height = settings.screenshot_max_width, settings.screenshot_max_height

    def scale(png: bytes) -> tuple[bytes, CoordinateScale | None]:
        return scale_for_model(png, width, height)

    return scale


async def _perform_turn(
    ctx: AgentContext, calls: Sequence[ToolCall], scale: CoordinateScale | None
) -> tuple[list[Performed], list[ToolReport], TaskOutcome | None]:
    """Perform a turn's calls in order, up to the first that fails or ends the task."""
    performed: list[Performed] = []
    reports: list[ToolReport] = []
    outcome: TaskOutcome | None = None
    skipped: str | None = None
    for call in calls:
        if skipped is not None:
            reports.append(ToolReport(call.id, f"not performed: {skipped}", ok=False))
            continue
        record, result, outcome = await _perform_call(ctx, call, scale)
        performed.append((record, result))
        reports.append(ToolReport(call.id, describe_result(result), ok=result.ok))
        if outcome is not None:
            skipped = "the task had ended"
        elif not result.ok:
            skipped = "an earlier action of this turn failed"
    return performed, reports, outcome


async def _perform_call(
    ctx: AgentContext, call: ToolCall, scale: CoordinateScale | None
) -> tuple[dict[str, Any], ActionResult, TaskOutcome | None]:
    action = call.action
    if action is None:
        record = {"type": "invalid", "tool": call.name, "arguments": call.arguments}
        return record, ActionResult(ok=False, error=call.error or "no action"), None
    action = to_screen(action, scale)
    record = action.model_dump(mode="json", exclude_none=True)
    if isinstance(action, Done):
        summary = scrub_secrets(action.summary, ctx.secrets) if action.summary else None
        result = ActionResult(ok=True, output=summary or "task done")
        return record, result, TaskOutcome.succeeded(summary, action.output)
    if isinstance(action, Fail):
        reason = action.reason or "no reason given"
        outcome = TaskOutcome.failed(f"the agent gave up: {reason}")
        return record, ActionResult(ok=False, error=reason), outcome
    if isinstance(action, Screenshot) and "screenshot" in ctx.machine.capabilities:
        # Every turn ends with a fresh observation; there is nothing else to capture.
        return record, ActionResult(ok=True, output="the new screenshot follows"), None
    try:
        result = await ctx.machine.perform(action, secrets=ctx.secrets)
    except MachineError as error:
        result = ActionResult(ok=False, error=str(error))
    return record, result, None


async def _say(ctx: AgentContext, turn: ModelTurn) -> None:
    for text in (turn.reasoning, turn.text):
        if text.strip():
            await ctx.emit("reasoning", {"text": scrub_secrets(text.strip(), ctx.secrets)})


def _fingerprint(calls: Sequence[ToolCall]) -> str:
    return json.dumps([[call.name, call.arguments] for call in calls], sort_keys=True, default=str)
