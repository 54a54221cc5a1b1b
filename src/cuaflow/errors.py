"""The exceptions cuaflow raises, as one tree.

Every error cuaflow raises on purpose derives from :class:`CuaflowError`, so a
caller can catch them all at once, or one branch of the tree::

    CuaflowError
    ├── WorkflowInvalid        a workflow document or a run's inputs break the DSL's rules;
    │                          ``.issues`` lists every problem with its JSON location
    ├── TemplateError          a ``{{ ... }}`` template cannot be rendered
    │   └── TemplateLimitExceeded   rendering would take more time or memory than allowed
    ├── ConditionError         a condition cannot be evaluated (operands of clashing types)
    ├── StoreError             the database cannot do what was asked
    │   ├── StoreUnavailable   locked past the busy timeout, read-only, or out of space
    │   └── NotFound           no such workflow, run or key (in this tenant)
    ├── InvalidState           the run is not in a state that allows this (resume a finished run)
    ├── MachineError           a machine could not perform an action
    ├── WebhookVerificationError   a webhook's signature, timestamp or headers do not check out
    └── AgentError             the agent could not be configured or run

Errors carry a stable upper-case ``code`` (for example ``ASSERTION_FAILED``) that
also appears on failed runs and in the HTTP error envelope.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

Loc = tuple[str | int, ...]


@dataclass(frozen=True)
class Issue:
    """One problem found in a document: where it is (a JSON path) and what is wrong."""

    loc: Loc
    msg: str

    def __str__(self) -> str:
        where = "/".join(str(part) for part in self.loc) or "(document)"
        return f"{where}: {self.msg}"

    def as_dict(self) -> dict[str, object]:
        """The ``{loc, msg}`` shape used in the HTTP error envelope."""
        return {"loc": list(self.loc), "msg": self.msg}


class CuaflowError(Exception):
    """Base of every error cuaflow raises on purpose."""

    code = "CUAFLOW_ERROR"


class WorkflowInvalid(CuaflowError):
    """A workflow document (or a run's inputs) is invalid; ``issues`` says where and why."""

    code = "VALIDATION_ERROR"

    def __init__(self, issues: Sequence[Issue]) -> None:
        self.issues = list(issues)
        shown = "; ".join(str(issue) for issue in self.issues[:5])
        more = f" (and {len(self.issues) - 5} more)" if len(self.issues) > 5 else ""
        super().__init__(f"{len(self.issues)} problem(s): {shown}{more}")


class TemplateError(CuaflowError):
    """A template could not be rendered: bad syntax, a missing value, a forbidden operation."""

    code = "TEMPLATE_ERROR"


class TemplateLimitExceeded(TemplateError):
    """Rendering a template would exceed the output size or operation limits."""

    code = "TEMPLATE_LIMIT_EXCEEDED"


class ConditionError(CuaflowError):
    """A condition's operands cannot be compared (for example a string and a number)."""

    code = "CONDITION_ERROR"


class StoreError(CuaflowError):
    """The database could not carry out an operation."""

    code = "STORE_ERROR"


class StoreUnavailable(StoreError):
    """The database is locked past its busy timeout, read-only, or out of space."""

    code = "STORE_UNAVAILABLE"


class NotFound(StoreError):
    """No such object exists (or it belongs to another tenant)."""

    code = "NOT_FOUND"


class InvalidState(CuaflowError):
    """The object is not in a state that allows the operation."""

    code = "INVALID_STATE"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code


class WebhookVerificationError(CuaflowError):
    """A received webhook is not authentic: missing headers, a stale timestamp, a bad signature."""

    code = "WEBHOOK_VERIFICATION_FAILED"


class MachineError(CuaflowError):
    """A machine could not perform an action."""

    code = "MACHINE_ERROR"


class AgentError(CuaflowError):
    """The agent could not be configured or could not run."""

    code = "AGENT_ERROR"
