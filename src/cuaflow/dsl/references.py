"""Where each step sits in a workflow, and which names its templates may reference.

:func:`walk_steps` lists every step at any depth, in document order, with its
canonical location and the compound steps around it. :class:`ReferenceChecker`
then checks each ``{{root.path}}`` reference found in a step's strings (or in
the workflow's ``output``) against the place it is written:

- ``inputs.x`` must be declared when the inputs schema closes its properties;
- ``secrets.NAME`` may name any secret (of a valid name), but must name one;
- ``vars.iteration`` / ``vars.attempt`` / ``vars.item`` / ``vars.<as>`` only
  inside the loop, retry or for_each loop that provides them;
- a step id (or a ``save_as`` name) only when that step can have finished
  before this point: earlier in the same list, or inside an earlier step at any
  depth, never later, never itself or a step around the reference, never in a
  sibling parallel branch or the other branch of an ``if``. A loop's ``while``
  may read its own body (from the second iteration on, it sees the previous
  iteration's results; on the first they are missing) and a retry's ``until``
  its own body; the workflow ``output`` may read any step. The first field
  after a step must be one that step type binds.

``vars.item`` is available in every for_each body, with or without ``as``
(the interpreter binds both).

Only strings that contain ``{{`` are parsed: no other syntax is active.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from cuaflow.dsl.inputs import input_is_declared
from cuaflow.dsl.models import BINDINGS, IfStep, LoopStep, ParallelStep, RetryStep, Step
from cuaflow.dsl.templates import SECRET_NAME_PATTERN, Reference, iter_strings, parse_references
from cuaflow.errors import Issue, Loc, TemplateError

# Fields that are not rendered (identity and labels) or that hold nested steps,
# which are checked as steps of their own.
_NOT_RENDERED = {"id", "type", "name", "description", "save_as", "as_"} | {
    "then",
    "else_",
    "body",
    "branches",
}
_VARIABLE_HINT = "vars.iteration, vars.attempt, vars.item or a for_each loop's `as` name"


@dataclass(frozen=True)
class StepSite:
    """One step with its canonical location and the compound steps around it."""

    step: Step
    loc: Loc
    ancestors: tuple[StepSite, ...]  # outermost first

    @property
    def depth(self) -> int:
        """1 for a top-level step, one more for each enclosing if/loop/parallel/retry."""
        return len(self.ancestors) + 1


def child_steps(step: Step, loc: Loc) -> Iterator[tuple[Step, Loc]]:
    """The steps directly inside ``step`` (at ``loc``), with their locations, in order."""
    if isinstance(step, IfStep):
        yield from ((child, (*loc, "then", i)) for i, child in enumerate(step.then))
        yield from ((child, (*loc, "else", i)) for i, child in enumerate(step.else_))
    elif isinstance(step, LoopStep | RetryStep):
        yield from ((child, (*loc, "body", i)) for i, child in enumerate(step.body))
    elif isinstance(step, ParallelStep):
        for b, branch in enumerate(step.branches):
            yield from ((child, (*loc, "branches", b, i)) for i, child in enumerate(branch))


def walk_steps(steps: Sequence[Step]) -> list[StepSite]:
    """Every step at any depth, in document order (a compound step before its body)."""
    sites: list[StepSite] = []
    # An explicit stack, so a deeply nested document cannot exhaust Python's.
    stack: list[tuple[Step, Loc, tuple[StepSite, ...]]] = [
        (step, ("steps", i), ()) for i, step in reversed(list(enumerate(steps)))
    ]
    while stack:
        step, loc, ancestors = stack.pop()
        site = StepSite(step, loc, ancestors)
        sites.append(site)
        inner = (*ancestors, site)
        children = list(child_steps(step, loc))
        stack.extend((child, child_loc, inner) for child, child_loc in reversed(children))
    return sites


def format_loc(loc: Loc) -> str:
    """A location as a person reads it: ``steps[0].branches[1][0].body[2]``."""
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text


def shown(ref: Reference) -> str:
    """A reference as it would be written in a template, quoted."""
    return f"'{{{{{ref.text}}}}}'"


class ReferenceChecker:
    """Checks the template references of a workflow's steps against their scope."""

    def __init__(self, sites: Sequence[StepSite], inputs_schema: dict[str, Any] | None) -> None:
        self._schema = inputs_schema
        self._by_loc = {site.loc: site for site in sites}
        self._named: dict[str, tuple[StepSite, bool]] = {}
        for site in sites:
            self._named.setdefault(site.step.id, (site, False))
        for site in sites:
            if site.step.save_as is not None:
                self._named.setdefault(site.step.save_as, (site, True))
        self._as_names = {
            site.step.as_ for site in sites if isinstance(site.step, LoopStep) and site.step.as_
        }

    def site_issues(self, site: StepSite) -> Iterator[Issue]:
        """Problems with the references in the strings ``site``'s step carries."""
        fields = site.step.model_dump(
            mode="json", by_alias=True, exclude_none=True, exclude=_NOT_RENDERED
        )
        for field, value in fields.items():
            for rel, text in iter_strings(value):
                yield from self._text_issues(site, field, (*site.loc, field, *rel), text)

    def output_issues(self, output: Any) -> Iterator[Issue]:
        """Problems with the references in the workflow's ``output``."""
        for rel, text in iter_strings(output):
            yield from self._text_issues(None, None, ("output", *rel), text)

    def _text_issues(
        self, owner: StepSite | None, field: str | None, loc: Loc, text: str
    ) -> Iterator[Issue]:
        if "{{" not in text:
            return
        try:
            references = parse_references(text)
        except TemplateError as exc:
            yield Issue(loc, str(exc))
            return
        for ref in references:
            problem = self._problem(owner, field, ref)
            if problem is not None:
                yield Issue(loc, problem)

    def _problem(self, owner: StepSite | None, field: str | None, ref: Reference) -> str | None:
        if ref.root == "inputs":
            if ref.path and not input_is_declared(self._schema, str(ref.path[0])):
                return (
                    f"input '{ref.path[0]}' in template {shown(ref)}"
                    " is not declared in inputs_schema"
                )
            return None
        if ref.root == "secrets":
            if not ref.path:
                return f"{shown(ref)} must name one secret, as in '{{{{secrets.API_KEY}}}}'"
            if not re.fullmatch(SECRET_NAME_PATTERN, str(ref.path[0])):
                return (
                    f"secret name '{ref.path[0]}' in template {shown(ref)} is not valid:"
                    " use letters, digits, '_' and '-' (at most 128)"
                )
            return None
        if ref.root == "vars":
            return self._variable_problem(owner, field, ref)
        if ref.root in self._named:
            target, via_save_as = self._named[ref.root]
            return self._step_problem(owner, field, ref, target, via_save_as)
        return (
            f"unknown name '{ref.root}' in template {shown(ref)}:"
            " expected inputs, vars, secrets or a step id"
        )

    def _variable_problem(
        self, owner: StepSite | None, field: str | None, ref: Reference
    ) -> str | None:
        if not ref.path:
            return f"{shown(ref)} needs a name: {_VARIABLE_HINT}"
        name = ref.path[0]
        around = owner.ancestors if owner is not None else ()
        step = owner.step if owner is not None else None
        if name == "iteration":
            if any(isinstance(a.step, LoopStep) for a in around) or (
                isinstance(step, LoopStep) and field == "while"
            ):
                return None
            return f"{shown(ref)} is only available inside a loop (its body or its while)"
        if name == "attempt":
            if any(isinstance(a.step, RetryStep) for a in around) or (
                isinstance(step, RetryStep) and field == "until"
            ):
                return None
            return f"{shown(ref)} is only available inside a retry (its body or its until)"
        for_each = [
            a.step for a in around if isinstance(a.step, LoopStep) and a.step.for_each is not None
        ]
        if name == "item":
            if for_each:
                return None
            return f"{shown(ref)} is only available inside a for_each loop's body"
        if any(loop.as_ == name for loop in for_each):
            return None
        if name in self._as_names:
            return (
                f"{shown(ref)} is only available inside the body of the for_each loop"
                f" that declares `as: {name}`"
            )
        return f"unknown variable 'vars.{name}' in template {shown(ref)}: expected {_VARIABLE_HINT}"

    def _step_problem(
        self,
        owner: StepSite | None,
        field: str | None,
        ref: Reference,
        target: StepSite,
        via_save_as: bool,
    ) -> str | None:
        step = target.step
        label = f"step '{step.id}'" + (f" (saved as '{ref.root}')" if via_save_as else "")
        binds = BINDINGS[step.type]
        if not binds:
            return f"{label} ({step.type}) binds nothing to reference: it ends the run"
        if owner is not None:
            problem = self._order_problem(owner, field, target, label)
            if problem is not None:
                return problem
        if ref.path and ref.path[0] not in binds:
            return (
                f"{label} ({step.type}) has no field '{ref.path[0]}'; it binds {', '.join(binds)}"
            )
        return None

    def _order_problem(
        self, owner: StepSite, field: str | None, target: StepSite, label: str
    ) -> str | None:
        here, there = owner.loc, target.loc
        if there == here:
            return f"{label} cannot reference itself: its result exists only once it has finished"
        if here[: len(there)] == there:
            return f"{label} has not finished here: this template is inside it"
        if there[: len(here)] == here:
            if (isinstance(owner.step, LoopStep) and field == "while") or (
                isinstance(owner.step, RetryStep) and field == "until"
            ):
                return None
            return (
                f"{label} is referenced before it runs: it is inside '{owner.step.id}',"
                f" whose {field} is evaluated first"
            )
        k = next(i for i, (a, b) in enumerate(zip(there, here, strict=False)) if a != b)
        a, b = there[k], here[k]
        if isinstance(a, int) and isinstance(b, int):
            if there[k - 1] == "branches":
                parallel = self._by_loc[there[: k - 1]].step.id
                return (
                    f"{label} is in another branch of parallel '{parallel}', which runs at the"
                    " same time as this one: its result is not available here"
                )
            if a > b:
                return f"{label} is referenced before it runs: it comes later in the workflow"
            return None
        branching = self._by_loc[there[:k]].step.id
        return (
            f"{label} never runs before this point: it is in the '{a}' branch of if"
            f" '{branching}' and this is in its '{b}' branch"
        )
