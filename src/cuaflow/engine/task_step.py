"""The ``task`` step: a task run carried out by an agent on a machine.

Each task step instance creates a task run (``run_...``, ``object: agent.run``)
linked to its workflow run both ways. Every agent step is billed and its events
committed before the next one starts, so ``spent_cents`` stays exact whatever
happens. A task in flight when its worker died starts again from the beginning
(at least once); the earlier attempt's task run is marked failed, its agent
steps stay billed, and a ``text`` event says so.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cuaflow.agents.base import Agent, TaskOutcome
from cuaflow.agents.config import model_spec_for
from cuaflow.agents.scripted import ScriptedAgent
from cuaflow.agents.simulated import SimulatedAgent
from cuaflow.dsl import models as m
from cuaflow.engine.outcomes import StepFailed
from cuaflow.errors import AgentError, MachineError, NotFound
from cuaflow.machines.base import ActionResult, Machine
from cuaflow.machines.terminal import TerminalMachine
from cuaflow.store.artifacts import ArtifactStore
from cuaflow.store.runs import new_id
from cuaflow.store.writer import Event, UnitOfWork

if TYPE_CHECKING:
    from cuaflow.engine.interpreter import Interpreter, Scope
    from cuaflow.engine.run_state import RunState

LOCAL_TERMINAL = "local-terminal"
EVENT_OUTPUT_CHARS = 2000
DEFAULT_MAX_STEPS = 50


async def run_task_step(
    interp: Interpreter, step: m.TaskStep, path: str, scope: Scope
) -> tuple[dict[str, Any], UnitOfWork]:
    """Run a task step; return its binding and the writes that finish its task run."""
    state = interp.state
    params = state.params
    task_text = str(interp.render(step.task, scope, step.id))
    cua_version = step.cua_version or params.get("cua_version") or "v3"
    machine_id = str(
        interp.render(step.machine_id, scope, step.id) or params.get("machine_id") or LOCAL_TERMINAL
    )
    # A task run started on its own (POST /v1/runs) is its own task run.
    standalone = state.run["kind"] == "task"
    task_run_id = state.run_id if standalone else new_id("run_")
    _start(state, step, path, task_run_id, task_text, cua_version, machine_id)
    await state.flush()
    rendered = _rendered(interp, step, scope)
    ctx = _Context(
        interp=interp,
        scope=scope,
        run_id=state.run_id,
        step_path=path,
        task=task_text,
        step=rendered,
        machine=_NO_MACHINE,
        max_steps=step.max_steps or params.get("max_steps") or DEFAULT_MAX_STEPS,
        secrets=state.secrets,
        task_run_id=task_run_id,
        price=state.price(cua_version),
        machine_id=machine_id,
    )
    finish = UnitOfWork()
    try:
        try:
            async with state.pool.use(state, machine_id, ctx.waiting_for_machine) as machine:
                ctx.machine = machine
                outcome = await _perform(ctx, _agent(state, rendered, cua_version))
                if ctx.pending_artifact is not None:  # the last frame, seen after the last step
                    await ctx.pending_artifact
        except NotFound as exc:
            outcome = TaskOutcome.failed(str(exc), code="MACHINE_NOT_FOUND")
    except (StepFailed, asyncio.CancelledError) as stop:
        if standalone:
            raise
        if isinstance(stop, StepFailed):
            status, error = "failed", {"code": stop.code, "message": stop.message}
        else:
            status, error = "cancelled", {"code": "CANCELLED", "message": "the run was cancelled"}
        unit = UnitOfWork()
        unit.update_run(task_run_id, status=status, error=error, finished_at=time.time())
        state.submit(unit)
        raise
    binding = {
        "status": outcome.status,
        "passed": outcome.passed,
        "result": {"passed": outcome.passed, "status": outcome.status, "summary": outcome.summary},
        "output": outcome.output,
        "run_id": task_run_id,
        "steps": ctx.steps,
        "cost_cents": ctx.cost_cents,
        "error": outcome.error,
    }
    if outcome.verdict is not None:
        binding["result"]["verdict"] = outcome.verdict
    if standalone:
        return binding, finish  # the runner ends the run itself
    finish.update_run(
        task_run_id,
        status=outcome.status,
        result=binding["result"],
        output=outcome.output,
        error=outcome.error,
        finished_at=time.time(),
    )
    finish.events.append(Event(task_run_id, "done", {"status": outcome.status, **binding}))
    return binding, finish


def _start(
    state: RunState,
    step: m.TaskStep,
    path: str,
    task_run_id: str,
    task_text: str,
    cua_version: str,
    machine_id: str,
) -> None:
    now = time.time()
    run_id = state.run_id
    standalone = task_run_id == run_id
    unit = UnitOfWork()
    earlier = state.journal.get(path)
    if earlier is not None and earlier.get("state") == "started":
        lost = (earlier.get("result") or {}).get("task_run_id")
        if lost and not standalone:
            lost_error = {"code": "WORKER_LOST", "message": "the worker running it stopped"}
            unit.update_run(lost, status="failed", error=lost_error, finished_at=now)
        message = (
            f"task step '{step.id}' restarted from the beginning after its worker stopped; "
            "agent steps it took before stay billed"
        )
        unit.events.append(Event(run_id, "text", {"step_id": step.id, "message": message}, step.id))
    _add_task_run(state, step, path, task_run_id, task_text, cua_version, machine_id, unit)
    unit.journal.append(
        {
            "run_id": run_id,
            "path": path,
            "step_id": step.id,
            "step_type": "task",
            "state": "started",
            "result": {"task_run_id": task_run_id},
        }
    )
    started = {"step_id": step.id, "path": path, "type": "task", "status": "started",
               "run_id": task_run_id, "task": task_text}  # fmt: skip
    unit.events.append(Event(run_id, "step", started, step_id=step.id))
    unit.update_run(run_id, current_step_id=step.id)
    state.journal[path] = {"state": "started", "result": {"task_run_id": task_run_id}}
    state.submit(unit)


def _add_task_run(
    state: RunState,
    step: m.TaskStep,
    path: str,
    task_run_id: str,
    task_text: str,
    cua_version: str,
    machine_id: str,
    unit: UnitOfWork,
) -> None:
    if task_run_id == state.run_id:
        return  # a standalone task run already has its row
    params = state.params
    now = time.time()
    unit.new_runs.append(
        {
            "id": task_run_id,
            "tenant_id": state.run["tenant_id"],
            "kind": "task",
            "status": "running",
            "parent_run_id": state.run_id,
            "workflow_id": state.run["workflow_id"],
            "step_id": path,
            "definition": {},
            "params": {
                "task": task_text,
                "machine_id": machine_id,
                "cua_version": cua_version,
                "instructions": step.instructions or params.get("instructions"),
                "max_steps": step.max_steps or params.get("max_steps") or DEFAULT_MAX_STEPS,
                "on_awaiting_human": step.on_awaiting_human or params.get("on_awaiting_human"),
            },
            "inputs": {},
            "guards": {},
            "test_mode": state.test_mode,
            "created_at": now,
            "started_at": now,
        }
    )
    unit.events.append(Event(task_run_id, "status", {"status": "running"}))


async def _perform(ctx: _Context, agent: Agent) -> TaskOutcome:
    try:
        if ctx.step.timeout_seconds is None:
            return await agent.run(ctx)
        async with asyncio.timeout(ctx.step.timeout_seconds):
            return await agent.run(ctx)
    except (AgentError, MachineError) as exc:
        return TaskOutcome.failed(str(exc), code=exc.code)
    except TimeoutError:
        return TaskOutcome.failed(
            f"the task took longer than its timeout_seconds ({ctx.step.timeout_seconds})",
            code="TASK_TIMEOUT",
        )


# Stands in for a machine that does not exist; never asked to act (the task fails first).
_NO_MACHINE = TerminalMachine("none", Path("/nonexistent"))


def _agent(state: RunState, step: m.TaskStep, cua_version: str) -> Agent:
    """Simulated in test mode; scripted for a step with ``actions``; else the configured model.

    With no model configured the scripted agent explains how to configure one.
    On v4 a verifier decides whether a finished task passed.
    """
    if state.test_mode:
        # This execution's number: the step's instances in the journal, this one included.
        runs = sum(1 for path in state.journal if path.rpartition("/")[2] == step.id)
        return SimulatedAgent(max(runs, 1), verify=cua_version == "v4")
    model = model_spec_for(step.model, cua_version)
    if (step.actions or model is None) and cua_version != "v4":
        return ScriptedAgent()
    # The model-driven agent and the verifier bring screenshots (Pillow) and
    # model SDKs: loaded only by workers that run such tasks.
    from cuaflow.agents.loop import ModelAgent  # noqa: PLC0415
    from cuaflow.agents.prompts import Briefing  # noqa: PLC0415
    from cuaflow.agents.verifier import VerifiedAgent  # noqa: PLC0415

    agent: Agent = (
        ScriptedAgent()
        if step.actions or model is None
        else ModelAgent(model, Briefing.for_step(step, state.params))
    )
    return VerifiedAgent(agent, model) if cua_version == "v4" else agent


def _rendered(interp: Interpreter, step: m.TaskStep, scope: Scope) -> m.TaskStep:
    """The step with its free-text settings rendered (the task text is rendered apart)."""
    fields = ("instructions", "system_prompt", "model")
    values = {name: getattr(step, name) for name in fields if getattr(step, name) is not None}
    if not values:
        return step
    rendered = interp.render(values, scope, step.id)
    return step.model_copy(update={name: str(value) for name, value in rendered.items()})


@dataclass
class _Context:
    """The engine's side of :class:`cuaflow.agents.base.AgentContext`."""

    interp: Interpreter
    scope: Scope
    run_id: str
    step_path: str
    task: str
    step: m.TaskStep
    machine: Machine
    max_steps: int
    secrets: Mapping[str, str]
    task_run_id: str
    price: int
    machine_id: str = LOCAL_TERMINAL
    last_artifact: str | None = None
    pending_artifact: asyncio.Task[str] | None = None
    steps: int = 0
    cost_cents: int = 0

    def render(self, value: Any) -> Any:
        return self.interp.render(value, self.scope, self.step.id)

    async def save_artifact(self, name: str, data: bytes) -> str:
        """Keep ``data`` with the run under a name unique to this step instance."""
        prefix = re.sub(r"[^A-Za-z0-9._-]", "_", self.step_path)
        stored = f"{prefix}-{name}"
        store = ArtifactStore(self.interp.state.pool.data_dir)
        # Written while the model thinks; end_agent_step waits for it before naming it.
        self.pending_artifact = asyncio.create_task(
            asyncio.to_thread(store.save, self.run_id, stored, data)
        )
        self.last_artifact = stored
        return stored

    async def waiting_for_machine(self, ahead: int, holder: str | None) -> None:
        """Say in the run's events that the task waits for a machine another run holds."""
        message = (
            f"task step '{self.step.id}' waits for machine '{self.machine_id}': "
            f"{ahead} task(s) ahead, held by run {holder}"
        )
        await self.emit("text", {"message": message, "machine_id": self.machine_id})

    async def begin_agent_step(self) -> None:
        state = self.interp.state
        state.check_deadline(self.step.id)
        state.check_budget(self.price, self.step.id)

    async def end_agent_step(
        self,
        action: dict[str, Any],
        result: ActionResult,
        *,
        earlier: Sequence[tuple[dict[str, Any], ActionResult]] = (),
    ) -> None:
        if self.pending_artifact is not None:
            await self.pending_artifact
            self.pending_artifact = None
        state = self.interp.state
        state.spent_cents += self.price
        state.steps_completed += 1
        self.steps += 1
        self.cost_cents += self.price
        # The task run's own log gets each call and its result; a workflow run's
        # log gets each call tagged with the step, and what the step cost.
        events = []
        for performed, outcome in (*earlier, (action, result)):
            call = {
                "step_id": self.step.id,
                "path": self.step_path,
                "run_id": self.task_run_id,
                "action": performed,
                "ok": outcome.ok,
                "exit_code": outcome.exit_code,
                "error": outcome.error,
                "output": outcome.output[-EVENT_OUTPUT_CHARS:],
            }
            if self.last_artifact is not None:
                call["screenshot"] = self.last_artifact  # what the model saw when it chose this
            events.append(Event(self.task_run_id, "tool_call", {"action": performed}))
            events.append(Event(self.task_run_id, "tool_result", call))
            if self.run_id != self.task_run_id:
                events.append(Event(self.run_id, "tool_call", call, step_id=self.step.id))
        billing = {"step_id": self.step.id, "cents": self.price, "spent_cents": state.spent_cents}
        events.append(Event(self.run_id, "billing", billing, step_id=self.step.id))
        unit = UnitOfWork(
            events=events,
            billing=[
                {
                    "run_id": self.run_id,
                    "task_run_id": self.task_run_id,
                    "path": self.step_path,
                    "cents": self.price,
                }
            ],
        )
        for run_id in {self.run_id, self.task_run_id}:
            unit.update_run(run_id, **{"+spent_cents": self.price, "+steps_completed": 1})
        state.submit(unit)
        await state.flush()

    async def emit(self, type: str, data: dict[str, Any]) -> None:  # the protocol names it `type`
        unit = UnitOfWork(events=[Event(self.task_run_id, type, data)])
        if self.run_id != self.task_run_id:
            tagged = {"step_id": self.step.id, **data}
            unit.events.append(Event(self.run_id, type, tagged, step_id=self.step.id))
        self.interp.state.submit(unit)
