"""The interpreter: carries one workflow run through its steps, durably.

A run is executed by walking its definition from the top. Every step instance
has a path (its id, prefixed by the loop iterations and retry attempts it runs
in: ``each[2]/upload``, ``upload#3/put``). Before executing a step the
interpreter looks its path up in the run's journal; a completed entry is taken
as the step's result instead of running it again, so resuming a run after a
crash, a lost lease or a human's answer repeats no finished step.

Control-flow steps queue their journal rows without waiting for the commit; the
interpreter waits for everything queued before anything leaves the process (an
agent action, a suspension, the end of the run). See :mod:`cuaflow.store.writer`.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from cuaflow.dsl import models as m
from cuaflow.dsl.conditions import Condition
from cuaflow.dsl.evaluate import evaluate
from cuaflow.dsl.templates import render
from cuaflow.engine.outcomes import RunEnded, StepFailed
from cuaflow.engine.run_state import RunState
from cuaflow.errors import ConditionError, TemplateError
from cuaflow.store.writer import Event, UnitOfWork

DEFAULT_WHILE_LIMIT = 1000


@dataclass(frozen=True)
class Scope:
    """Where a step instance runs: its path prefix, its ``vars``, whether a retry guards it."""

    prefix: str = ""
    vars: dict[str, Any] = field(default_factory=dict)
    in_retry: bool = False
    in_parallel: bool = False

    def child(self, segment: str, *, in_retry: bool | None = None, **new_vars: Any) -> Scope:
        """The scope of a body nested under ``segment`` (``loop[2]/`` or ``retry#1/``)."""
        return Scope(
            prefix=f"{self.prefix}{segment}",
            vars={**self.vars, **new_vars},
            in_retry=self.in_retry if in_retry is None else in_retry,
            in_parallel=self.in_parallel,
        )


class Interpreter:
    """Executes the steps of one run against its :class:`RunState`."""

    def __init__(self, state: RunState) -> None:
        self.state = state

    async def execute(self) -> None:
        """Run to the end; raise ``RunEnded`` (finished) or ``Suspended`` (waiting)."""
        state = self.state
        await self.block(state.workflow.steps, Scope())
        output = self.render(state.workflow.output, Scope(), "output")
        raise RunEnded("succeeded", output=output)

    async def block(self, steps: list[m.Step], scope: Scope) -> None:
        """Run a list of steps in order."""
        for step in steps:
            await self.step(step, scope)

    async def step(self, step: m.Step, scope: Scope) -> None:
        """Run one step instance, or take its journalled result."""
        path = scope.prefix + step.id
        entry = self.state.journal.get(path)
        if entry is not None and entry["state"] == "completed" and not _is_compound(step):
            self._replay(step, path, entry["result"])
            return
        self.state.current_step_id = step.id
        if isinstance(step, m.TaskStep):
            from cuaflow.engine.task_step import run_task_step  # noqa: PLC0415  # import cycle

            binding, finish = await run_task_step(self, step, path, scope)
            # A task never fails the run by itself; inside a retry, not passing fails the step.
            failed = scope.in_retry and not binding["passed"]
            error = {**(binding["error"] or {}), "step_id": step.id} if failed else None
            self.complete(step, path, binding, error=error, unit=finish)
            if error is not None:
                raise StepFailed(
                    error.get("code", "TASK_FAILED"), error.get("message", ""), step.id
                )
        elif isinstance(step, m.AssertStep):
            await self._assert(step, path, scope)
        elif isinstance(step, m.IfStep):
            taken = self.condition(step.condition, scope, step.id)
            await self.block(step.then if taken else step.else_, scope)
            self.complete(step, path, {"branch": "then" if taken else "else"})
        elif isinstance(step, m.LoopStep):
            await self._loop(step, path, scope)
        elif isinstance(step, m.ParallelStep):
            await self._parallel(step, path, scope)
        elif isinstance(step, m.RetryStep):
            await self._retry(step, path, scope)
        elif isinstance(step, m.HumanApprovalStep):
            from cuaflow.engine.approval import run_approval  # noqa: PLC0415  # import cycle

            await run_approval(self, step, path, scope)
        elif isinstance(step, m.SucceedStep):
            output = (
                self.render(step.output, scope, step.id)
                if step.output is not None
                else self.render(self.state.workflow.output, scope, "output")
            )
            self.complete(step, path, {"output": output})
            raise RunEnded("succeeded", output=output)
        else:
            message = str(self.render(step.message, scope, step.id))
            error = {"code": "WORKFLOW_FAILED", "message": message, "step_id": step.id}
            self.complete(step, path, {"message": message})
            raise RunEnded("failed", error=error)

    def _replay(self, step: m.Step, path: str, result: dict[str, Any]) -> None:
        self.state.bind(step, result["binding"])
        error = result.get("error")
        if isinstance(step, m.SucceedStep):
            raise RunEnded("succeeded", output=result["binding"].get("output"))
        if isinstance(step, m.FailStep):
            message = result["binding"].get("message", "")
            raise RunEnded(
                "failed", error={"code": "WORKFLOW_FAILED", "message": message, "step_id": step.id}
            )
        if error is not None:
            raise StepFailed(error["code"], error["message"], step.id)

    # -- building blocks -------------------------------------------------

    def render(self, value: Any, scope: Scope, step_id: str) -> Any:
        """Render templates in ``value``; a failure fails the step, naming it."""
        if value is None:
            return None
        try:
            return render(value, self.state.template_context(scope.vars))
        except TemplateError as exc:
            raise StepFailed(exc.code, f"step '{step_id}': {exc}", step_id) from None

    def condition(self, condition: Condition, scope: Scope, step_id: str) -> bool:
        """Evaluate a condition; a template or type error fails the step, naming it."""
        try:
            return evaluate(condition, self.state.template_context(scope.vars))
        except (TemplateError, ConditionError) as exc:
            raise StepFailed(exc.code, f"step '{step_id}': {exc}", step_id) from None

    def complete(
        self,
        step: m.Step,
        path: str,
        binding: dict[str, Any],
        *,
        error: dict[str, Any] | None = None,
        unit: UnitOfWork | None = None,
    ) -> None:
        """Bind a step's result and journal it (with its event) unless replaying."""
        state = self.state
        state.bind(step, binding)
        if state.journal.get(path, {}).get("state") == "completed":
            return
        result = {"binding": binding, "error": error}
        state.journal[path] = {"state": "completed", "result": result}
        unit = unit or UnitOfWork()
        unit.journal.append(
            {
                "run_id": state.run_id,
                "path": path,
                "step_id": step.id,
                "step_type": step.type,
                "state": "completed",
                "result": result,
            }
        )
        status = "failed" if error else "succeeded"
        event: dict[str, Any] = {"step_id": step.id, "path": path, "type": step.type}
        event |= {"status": status, "result": binding}
        if error:
            event["error"] = error
        unit.events.append(Event(state.run_id, "step", event, step_id=step.id))
        unit.update_run(state.run_id, current_step_id=step.id, iterations_used=state.iterations)
        state.submit(unit)

    async def _assert(self, step: m.AssertStep, path: str, scope: Scope) -> None:
        passed = self.condition(step.condition, scope, step.id)
        if passed:
            self.complete(step, path, {"passed": True})
            return
        message = self.render(step.message, scope, step.id) or f"assertion '{step.id}' failed"
        error = {"code": "ASSERTION_FAILED", "message": str(message), "step_id": step.id}
        self.complete(step, path, {"passed": False}, error=error)
        raise StepFailed("ASSERTION_FAILED", str(message), step.id)

    async def _loop(self, step: m.LoopStep, path: str, scope: Scope) -> None:
        items: list[Any] | None = None
        limit = step.max_iterations
        if step.count is not None:
            count = self.render(step.count, scope, step.id)
            if isinstance(count, bool) or not isinstance(count, int) or not 0 <= count <= 100_000:
                raise StepFailed(
                    "TEMPLATE_ERROR",
                    f"step '{step.id}': count must be an integer from 0 to 100000, got {count!r}",
                    step.id,
                )
            total: int | None = count
        elif step.for_each is not None:
            rendered = self.render(step.for_each, scope, step.id)
            if not isinstance(rendered, list):
                raise StepFailed(
                    "TEMPLATE_ERROR",
                    f"step '{step.id}': for_each must give a list, got {type(rendered).__name__}",
                    step.id,
                )
            items, total = rendered, len(rendered)
        else:
            total = None
            limit = limit or DEFAULT_WHILE_LIMIT
        iteration = 0
        while total is None or iteration < total:
            if step.while_ is not None:
                vars_now = {**scope.vars, "iteration": iteration}
                if not self.condition(step.while_, Scope(scope.prefix, vars_now), step.id):
                    break
            if limit is not None and iteration >= limit:
                error = {
                    "code": "LOOP_LIMIT_EXCEEDED",
                    "message": f"loop '{step.id}' reached its max_iterations ({limit})",
                    "step_id": step.id,
                }
                self.complete(step, path, {"iterations": iteration}, error=error)
                raise StepFailed(error["code"], error["message"], step.id)
            self.state.count_iteration(step.id)
            extra: dict[str, Any] = {"iteration": iteration}
            if items is not None:
                extra["item"] = items[iteration]
                if step.as_:
                    extra[step.as_] = items[iteration]
            await self.block(step.body, scope.child(f"{step.id}[{iteration}]/", **extra))
            iteration += 1
        self.complete(step, path, {"iterations": iteration})

    async def _parallel(self, step: m.ParallelStep, path: str, scope: Scope) -> None:
        statuses = ["succeeded"] * len(step.branches)
        first: list[BaseException] = []

        async def branch(index: int, steps: list[m.Step]) -> None:
            try:
                await self.block(steps, Scope(scope.prefix, scope.vars, scope.in_retry, True))
            except asyncio.CancelledError:
                statuses[index] = "cancelled"
                raise
            except BaseException as exc:
                statuses[index] = "failed"
                first.append(exc)
                raise

        try:
            async with asyncio.TaskGroup() as group:
                for index, steps in enumerate(step.branches):
                    group.create_task(branch(index, steps))
        except BaseExceptionGroup:
            failure = first[0]
            if isinstance(failure, StepFailed):
                error = failure.as_error()
                self.complete(step, path, {"branches": statuses}, error=error)
                raise StepFailed(failure.code, failure.message, failure.step_id) from None
            raise failure from None
        self.complete(step, path, {"branches": statuses})

    async def _retry(self, step: m.RetryStep, path: str, scope: Scope) -> None:
        last: StepFailed | None = None
        for attempt in range(1, step.max_attempts + 1):
            inner = scope.child(f"{step.id}#{attempt}/", in_retry=True, attempt=attempt)
            try:
                await self.block(step.body, inner)
                self._check_until(step, inner, attempt)
            except StepFailed as failure:
                last = failure
                if attempt < step.max_attempts:
                    await self._backoff(step, attempt)
                continue
            self.complete(step, path, {"attempts": attempt, "succeeded": True})
            return
        assert last is not None  # max_attempts >= 1, so at least one attempt failed
        error = last.as_error()
        self.complete(step, path, {"attempts": step.max_attempts, "succeeded": False}, error=error)
        raise StepFailed(last.code, last.message, last.step_id)

    def _check_until(self, step: m.RetryStep, scope: Scope, attempt: int) -> None:
        if step.until is not None and not self.condition(step.until, scope, step.id):
            raise StepFailed(
                "RETRY_UNTIL_NOT_MET",
                f"retry '{step.id}': 'until' did not hold after attempt {attempt}",
                step.id,
            )

    async def _backoff(self, step: m.RetryStep, attempt: int) -> None:
        next_prefix = f"{step.id}#{attempt + 1}/"
        if any(next_prefix in path for path in self.state.journal):
            return  # replaying: the next attempt already ran, its wait is over
        delay = step.backoff_seconds * step.backoff_rate ** (attempt - 1)
        if delay > 0:
            await self.state.flush()
            await asyncio.sleep(min(delay, 3600.0))


def _is_compound(step: m.Step) -> bool:
    # Compound steps are walked again on replay so that their inner steps bind.
    return isinstance(step, m.IfStep | m.LoopStep | m.ParallelStep | m.RetryStep)


def now() -> float:
    """Wall-clock seconds, the unit of every stored timestamp."""
    return time.time()
