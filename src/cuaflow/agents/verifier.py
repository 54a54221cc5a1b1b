"""The ``cua_version`` v4 verifier: after the agent says it is done, decide pass or fail.

With ``verify`` checks on the step, the checks decide (all must pass):
``command`` (the command's exit code on the machine equals ``exit_code``),
``port`` (something accepts connections on ``host:port``), ``text`` (the text
is in what the machine shows now) and ``url`` (the machine's URL matches
``pattern``: a glob matching the whole URL, or a regular expression found in
it). Checks are rendered with the run's bindings first.

Without checks, a model judges the final observation against the task; it
answers ``{"passed": ..., "reason": ...}`` and an answer that cannot be read
counts as a rejection. With neither, the agent's own result stands.

The verdict ``{passed, reason, by, checks}`` becomes the task's ``verdict``; a
rejected result fails the task with ``VERIFICATION_FAILED``.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

from pydantic import ValidationError

from cuaflow.agents.base import Agent, AgentContext, TaskOutcome
from cuaflow.agents.config import loop_settings
from cuaflow.agents.loop import Scaler, default_scaler, look
from cuaflow.agents.prompts import JUDGE_PROMPT, judge_question
from cuaflow.agents.providers import ModelProvider, provider_for
from cuaflow.dsl.actions import Bash, WaitForPort
from cuaflow.dsl.models import VerifyCheck
from cuaflow.machines.base import Observation

VERIFICATION_FAILED = "VERIFICATION_FAILED"
COMMAND_TIMEOUT_SECONDS = 60.0
PORT_TIMEOUT_SECONDS = 2.0
DETAIL_CHARS = 500


class VerifiedAgent:
    """Runs ``agent``, then verifies a result it reports as passed.

    ``judge`` is the model (a provider or a spec such as ``openai:gpt-4o``)
    that judges steps without ``verify`` checks, or None.
    """

    def __init__(
        self,
        agent: Agent,
        judge: ModelProvider | str | None = None,
        *,
        scaler: Scaler | None = None,
    ) -> None:
        self.agent = agent
        self.judge = judge
        self.scaler = scaler

    async def run(self, ctx: AgentContext) -> TaskOutcome:
        """Carry out the task, then decide whether it really passed."""
        outcome = await self.agent.run(ctx)
        if not outcome.passed:
            return outcome
        judge = self.judge
        if isinstance(judge, str):
            # The first use imports the provider's SDK: a second or two, off the event loop.
            judge = await asyncio.to_thread(provider_for, judge)
        scaler = self.scaler or default_scaler(loop_settings())
        verdict = await verify(ctx, outcome, judge, scaler)
        await ctx.emit("text", {"message": f"verifier: {verdict['reason']}", "verdict": verdict})
        return with_verdict(outcome, verdict)


async def verify(
    ctx: AgentContext, outcome: TaskOutcome, judge: ModelProvider | None, scaler: Scaler
) -> dict[str, Any]:
    """The verdict on ``outcome``: by the step's checks, else by ``judge``, else the agent's."""
    if ctx.step.verify:
        return await _run_checks(ctx, ctx.step.verify)
    if judge is not None:
        frame = await look(ctx.machine, ctx.secrets, scaler)
        question = judge_question(ctx.task, outcome.summary, outcome.output)
        answer = await judge.judge(JUDGE_PROMPT, question, frame.view)
        passed, reason = read_judgement(answer)
        return {"passed": passed, "reason": reason, "by": "model", "checks": []}
    reason = "no verify checks and no model to judge; the agent's result stands"
    return {"passed": outcome.passed, "reason": reason, "by": "agent", "checks": []}


def with_verdict(outcome: TaskOutcome, verdict: dict[str, Any]) -> TaskOutcome:
    """``outcome`` carrying ``verdict``, failed with ``VERIFICATION_FAILED`` when it rejects."""
    if verdict["passed"]:
        return replace(outcome, verdict=verdict)
    message = f"the verifier rejected the result: {verdict['reason']}"
    return replace(
        outcome,
        passed=False,
        status="failed",
        error={"code": VERIFICATION_FAILED, "message": message},
        verdict=verdict,
    )


def read_judgement(answer: str) -> tuple[bool, str]:
    """``(passed, reason)`` from a judging model's answer; unreadable answers do not pass."""
    start, end = answer.find("{"), answer.rfind("}")
    if start != -1 and end > start:
        with contextlib.suppress(json.JSONDecodeError):
            data = json.loads(answer[start : end + 1])
            if isinstance(data, dict) and isinstance(data.get("passed"), bool):
                return data["passed"], str(data.get("reason") or "no reason given")
    shown = answer.strip()[:DETAIL_CHARS] or "(empty)"
    return False, f"the judging model's answer could not be read: {shown}"


async def _run_checks(ctx: AgentContext, checks: list[VerifyCheck]) -> dict[str, Any]:
    seen: list[Observation] = []

    async def observation() -> Observation:
        if not seen:
            seen.append(await ctx.machine.observe())
        return seen[0]

    results = []
    for index, check in enumerate(checks):
        try:
            rendered = VerifyCheck.model_validate(ctx.render(check.model_dump(mode="json")))
        except ValidationError as error:
            detail = f"invalid after rendering: {error.errors()[0]['msg']}"
            results.append({"index": index, **_result(check, False, detail)})
            continue
        passed, detail = await _check(ctx, rendered, observation)
        results.append({"index": index, **_result(rendered, passed, detail)})
    failed = [result for result in results if not result["passed"]]
    if failed:
        reason = "; ".join(f"{result['type']} check: {result['detail']}" for result in failed)
    else:
        reason = f"all {len(results)} verify checks passed"
    return {"passed": not failed, "reason": reason, "by": "checks", "checks": results}


async def _check(
    ctx: AgentContext, check: VerifyCheck, observation: Callable[[], Awaitable[Observation]]
) -> tuple[bool, str]:
    machine = ctx.machine
    if check.type == "command":
        if "bash" not in machine.capabilities:
            return False, f"machine '{machine.id}' cannot run commands"
        command = check.command or ""
        timeout = COMMAND_TIMEOUT_SECONDS
        action = Bash(type="bash", command=command, check=False, timeout_seconds=timeout)
        result = await machine.perform(action, secrets=ctx.secrets)
        if result.exit_code is None:
            return False, f"`{command}` did not finish: {result.error}"
        detail = f"`{command}` exited with {result.exit_code} (expected {check.exit_code})"
        return result.exit_code == check.exit_code, detail
    if check.type == "port":
        return await _port_open(ctx, check)
    shown = await observation()
    if check.type == "text":
        text = check.text or ""
        found = text in shown.text
        return found, f"{text!r} {'is' if found else 'is not'} on the screen"
    pattern = check.pattern or ""
    url = shown.url or ""
    matched = _url_matches(pattern, url)
    return matched, f"URL {url!r} {'matches' if matched else 'does not match'} {pattern!r}"


async def _port_open(ctx: AgentContext, check: VerifyCheck) -> tuple[bool, str]:
    try:
        port = int(str(check.port))
    except ValueError:
        return False, f"port {check.port!r} is not a number"
    where = f"{check.host}:{port}"
    if "wait_for_port" in ctx.machine.capabilities:
        action = WaitForPort(
            type="wait_for_port", port=port, host=check.host, timeout_seconds=PORT_TIMEOUT_SECONDS
        )
        result = await ctx.machine.perform(action, secrets=ctx.secrets)
        return result.ok, f"{where} {'accepts' if result.ok else 'refuses'} connections"
    try:
        _, writer = await asyncio.wait_for(
            asyncio.open_connection(check.host, port), PORT_TIMEOUT_SECONDS
        )
    except (OSError, TimeoutError):
        return False, f"{where} refuses connections"
    writer.close()
    return True, f"{where} accepts connections"


def _url_matches(pattern: str, url: str) -> bool:
    if fnmatch.fnmatchcase(url, pattern):
        return True
    try:
        return re.search(pattern, url) is not None
    except re.error:
        return False  # not an expression, and not a glob that matched


# The fields of each kind of check that a verdict repeats.
_SHOWN = {"command": ("command", "exit_code"), "port": ("host", "port"), "text": ("text",),
          "url": ("pattern",)}  # fmt: skip


def _result(check: VerifyCheck, passed: bool, detail: str) -> dict[str, Any]:
    fields = {name: getattr(check, name) for name in _SHOWN[check.type]}
    return {"type": check.type, **fields, "passed": passed, "detail": detail[:DETAIL_CHARS]}
