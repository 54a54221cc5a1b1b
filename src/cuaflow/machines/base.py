"""What every machine offers: the :class:`Machine` interface and its result types.

A machine is where an agent acts: a terminal, a browser, a desktop. It performs
one normalised action at a time (:mod:`cuaflow.dsl.actions`) and says how it
went in an :class:`ActionResult`; a failed action is a result with
``ok=False``, never an exception, so the agent (or a model) can read the error
and decide what to do next.

Secrets never enter a workflow's events or prompts: actions carry literal
``{{secrets.NAME}}`` placeholders, which a machine replaces with
:func:`substitute_secrets` at the moment it executes, and it masks every secret
value out of what it returns with :func:`scrub_secrets`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from cuaflow.dsl import templates
from cuaflow.dsl.actions import ACTION_TYPES, Action
from cuaflow.errors import MachineError

SECRET_MASK = "***"


@dataclass(frozen=True)
class ActionResult:
    """How one action went.

    ``output`` is bounded text the agent (and a model) may see, with secrets
    masked; ``exit_code`` is set by actions that run a process; ``error`` says
    why ``ok`` is false; ``data`` carries extra facts such as ``duration_ms``.
    """

    ok: bool
    output: str = ""
    exit_code: int | None = None
    error: str | None = None
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Observation:
    """What the machine shows now: text (terminal output, page text), a screenshot, a URL."""

    text: str
    screenshot_png: bytes | None = None
    url: str | None = None


class Machine(Protocol):
    """A place where actions are performed.

    ``kind`` is ``"terminal"``, ``"browser"``, ``"desktop"`` or ``"ssh"``;
    ``capabilities`` are the action types it can perform. ``done`` and ``fail``
    are never among them: they end a task, which is the agent's business.
    """

    @property
    def id(self) -> str:
        """The machine's id, such as ``local-terminal``."""
        ...

    @property
    def kind(self) -> str:
        """What sort of machine this is."""
        ...

    @property
    def capabilities(self) -> frozenset[str]:
        """The action types this machine can perform."""
        ...

    async def perform(self, action: Action, *, secrets: Mapping[str, str]) -> ActionResult:
        """Perform ``action``, filling in ``{{secrets.NAME}}`` from ``secrets``."""
        ...

    async def observe(self) -> Observation:
        """Report what the machine shows now."""
        ...

    async def close(self) -> None:
        """Release everything the machine holds (processes, browsers, displays)."""
        ...


def unsupported_action(machine: Machine, action_type: str) -> ActionResult:
    """The result for an action type ``machine`` cannot perform, listing what it can."""
    supported = ", ".join(kind for kind in ACTION_TYPES if kind in machine.capabilities)
    return ActionResult(
        ok=False,
        error=(
            f"machine '{machine.id}' ({machine.kind}) cannot perform '{action_type}'; "
            f"it supports: {supported}"
        ),
    )


def substitute_secrets(text: str, secrets: Mapping[str, str]) -> str:
    """Replace every ``{{secrets.NAME}}`` in ``text`` with the secret's value.

    Raises :class:`MachineError` naming the first secret that is not in ``secrets``.
    """
    unknown = sorted(templates.secret_names(text) - secrets.keys())
    if unknown:
        raise MachineError(f"unknown secret '{unknown[0]}': no secret of that name is set")
    return templates.substitute_secrets(text, secrets)


def secret_values(secrets: Mapping[str, str]) -> list[str]:
    """The non-empty secret values, longest first (a secret containing another is masked whole)."""
    return sorted({value for value in secrets.values() if value}, key=len, reverse=True)


def scrub_secrets(text: str, secrets: Mapping[str, str]) -> str:
    """``text`` with every occurrence of a secret value replaced by ``***``."""
    for value in secret_values(secrets):
        text = text.replace(value, SECRET_MASK)
    return text


def scrub_result(result: ActionResult, secrets: Mapping[str, str]) -> ActionResult:
    """``result`` with secret values masked in its output and error."""
    if not secrets:
        return result
    error = None if result.error is None else scrub_secrets(result.error, secrets)
    return replace(result, output=scrub_secrets(result.output, secrets), error=error)


def as_number(value: float | str, name: str) -> float:
    """A numeric action field as a float; a template left unrendered raises :class:`MachineError`.

    Action models accept a template string where a number goes, to be rendered
    right before the action runs; if it reaches a machine still as text, the
    caller forgot to render it.
    """
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise MachineError(f"'{name}' must be a number, got {value!r} (was the template rendered?)")
    return float(value)
