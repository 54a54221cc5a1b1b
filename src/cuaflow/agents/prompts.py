"""What a model is told: the base prompt, the task, each action's outcome, the screen.

The system prompt is :data:`BASE_PROMPT` (or the step's or run's
``system_prompt``, which replaces it whole) followed by the run's and the
step's ``instructions``. The first user message gives the task and, when the
run has a task of its own that differs, that task as the overall goal.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cuaflow.dsl.models import TaskStep
from cuaflow.machines.base import ActionResult

# How much of an action's output, and of the screen's text, a model is shown.
RESULT_CHARS = 8000
SCREEN_TEXT_CHARS = 4000

BASE_PROMPT = """\
You are a computer-use agent. You carry out one task on a {kind} machine by \
calling the tools you are given, and you see the outcome of every call before \
you decide the next.

- Work only toward the task, in the simplest reliable way.
- After each turn you get the result of each tool call and the machine's \
current state{screen_note}.
- When the task is complete, call `done` with a short summary of what you did \
and found; when the task asks for data, put it in `output`.
- When the task cannot be done, call `fail` with the reason. Never call `done` \
for a task you did not complete.
- Text such as {{{{secrets.NAME}}}} stands for a secret: use it exactly as \
written and the machine fills in the value, which you never see."""

SCREEN_NOTE = (
    ", with a screenshot of {width}x{height} pixels; coordinates you give refer to the "
    "latest screenshot"
)

JUDGE_PROMPT = """\
You check the work of a computer-use agent. You are given the task it was set, \
what it reported, and the machine's state now. Decide whether the task has \
really been done. Answer with one JSON object and nothing else: \
{"passed": true or false, "reason": "one sentence"}."""


@dataclass(frozen=True)
class Briefing:
    """Everything that shapes the prompts of one task beyond its text."""

    goal: str | None = None
    system_prompt: str | None = None
    instructions: tuple[str, ...] = ()

    @classmethod
    def for_step(cls, step: TaskStep, run_params: Mapping[str, Any]) -> Briefing:
        """The briefing of ``step`` in a run started with ``run_params``.

        The step's ``system_prompt`` wins over the run's; the run's and the
        step's ``instructions`` both apply, the run's first.
        """
        instructions = (run_params.get("instructions"), step.instructions)
        return cls(
            goal=run_params.get("task") or None,
            system_prompt=step.system_prompt or run_params.get("system_prompt") or None,
            instructions=tuple(text for text in instructions if text),
        )


def system_prompt(briefing: Briefing, kind: str, screen: tuple[int, int] | None) -> str:
    """The system prompt for a task on a machine of ``kind`` showing ``screen`` (w, h)."""
    if briefing.system_prompt:
        prompt = briefing.system_prompt
    else:
        note = "" if screen is None else SCREEN_NOTE.format(width=screen[0], height=screen[1])
        prompt = BASE_PROMPT.format(kind=kind, screen_note=note)
    for text in briefing.instructions:
        prompt += f"\n\nAdditional instructions:\n{text}"
    return prompt


def task_message(task: str, goal: str | None) -> str:
    """The first thing the model reads: its task, within the run's overall goal."""
    if goal and goal.strip() != task.strip():
        return f"Overall goal of this workflow:\n{goal}\n\nYour task now:\n{task}"
    return f"Your task:\n{task}"


def describe_result(result: ActionResult) -> str:
    """One action's outcome as the model reads it."""
    lines = ["ok" if result.ok else f"error: {result.error or 'the action failed'}"]
    if result.exit_code is not None:
        lines.append(f"exit code: {result.exit_code}")
    if result.output:
        output = result.output
        if len(output) > RESULT_CHARS:
            cut = len(output) - RESULT_CHARS
            output = f"[... {cut} characters cut ...]\n{output[-RESULT_CHARS:]}"
        lines.append(f"output:\n{output}")
    return "\n".join(lines)


def describe_screen(text: str, url: str | None) -> str:
    """The machine's state in words: its URL and the text it shows."""
    lines = []
    if url:
        lines.append(f"Current URL: {url}")
    if text:
        shown = text if len(text) <= SCREEN_TEXT_CHARS else text[:SCREEN_TEXT_CHARS] + " [...]"
        lines.append(f"Text on the screen:\n{shown}")
    return "\n".join(lines)


def judge_question(task: str, summary: str | None, output: Any) -> str:
    """What a verifying model is asked about a task the agent says it finished."""
    question = f"Task:\n{task}\n\nThe agent reported:\n{summary or '(no summary)'}"
    if output is not None:
        question += f"\n\nThe agent's output:\n{output!r}"
    return question + "\n\nThe machine's state now follows."
