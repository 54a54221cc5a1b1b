"""How a step or a run ends, other than by completing normally.

These exceptions travel up the interpreter's call stack: ``StepFailed`` can be
caught by an enclosing ``retry``; ``RunEnded`` and ``Suspended`` never are.
"""

from __future__ import annotations

from typing import Any


class StepFailed(Exception):
    """A step failed; uncaught, it fails the run with ``code``."""

    def __init__(self, code: str, message: str, step_id: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.step_id = step_id

    def as_error(self) -> dict[str, Any]:
        """The ``{code, message, step_id}`` object stored on runs and bindings."""
        return {"code": self.code, "message": self.message, "step_id": self.step_id}


class RunEnded(Exception):
    """The run reached a final state (succeed/fail steps, guards, deadline)."""

    def __init__(
        self, status: str, *, output: Any = None, error: dict[str, Any] | None = None
    ) -> None:
        super().__init__(status)
        self.status = status
        self.output = output
        self.error = error


class Suspended(Exception):
    """The run waits for a human; its state is durable and it holds nothing."""
