"""Rules of a workflow that span steps, checked on the canonical model.

The models check each field's type and range; :func:`validate_workflow` checks
what no single field can: unique step ids, the size and nesting limits, what
may run inside ``parallel``, the shape of loops and retries, ``save_as`` names,
the inputs schema, and every template reference (see
:mod:`cuaflow.dsl.references`). It returns every problem found, up to
:data:`MAX_ISSUES`, each at its canonical JSON location; the parser translates
those into the user's own spelling.

Beyond the written rules, a step id may not be ``inputs``, ``vars`` or
``secrets``: a template could not reach such a step.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from itertools import chain, islice

from cuaflow.dsl.inputs import inputs_schema_issues
from cuaflow.dsl.models import LoopStep, ParallelStep, RetryStep, Workflow
from cuaflow.dsl.references import ReferenceChecker, StepSite, format_loc, walk_steps
from cuaflow.dsl.templates import is_single_placeholder
from cuaflow.errors import Issue, Loc

MAX_STEPS = 200
MAX_DEPTH = 8
MAX_BRANCHES = 16
MAX_LOOP_ITERATIONS = 100_000
MAX_RETRY_ATTEMPTS = 20
MAX_ISSUES = 100
RESERVED_NAMES = ("inputs", "vars", "secrets")
LOOP_VARIABLES = ("iteration", "attempt", "item")
NOT_IN_PARALLEL = ("human_approval", "succeed", "fail")


def validate_workflow(workflow: Workflow) -> list[Issue]:
    """Every cross-step problem of ``workflow`` (at most :data:`MAX_ISSUES`), in document order."""
    schema, schema_issues = inputs_schema_issues(workflow.inputs_schema)
    sites = walk_steps(workflow.steps)
    references = ReferenceChecker(sites, schema)
    found = chain(
        schema_issues,
        _size_issues(sites),
        _step_issues(sites, references),
        references.output_issues(workflow.output),
    )
    # The checks are lazy: past the limit, nothing more is even examined.
    return list(islice(found, MAX_ISSUES))


def _size_issues(sites: Sequence[StepSite]) -> Iterator[Issue]:
    if len(sites) > MAX_STEPS:
        yield Issue(
            ("steps",),
            f"the workflow has {len(sites)} steps (counting nested ones); the limit is {MAX_STEPS}",
        )


def _step_issues(sites: Sequence[StepSite], references: ReferenceChecker) -> Iterator[Issue]:
    id_owners: dict[str, Loc] = {}
    for site in sites:
        id_owners.setdefault(site.step.id, site.loc)
    seen_ids: dict[str, Loc] = {}
    seen_save_as: dict[str, Loc] = {}
    for site in sites:
        yield from _id_issues(site, seen_ids)
        yield from _placement_issues(site)
        yield from _shape_issues(site)
        yield from _save_as_issues(site, id_owners, seen_save_as)
        yield from references.site_issues(site)


def _id_issues(site: StepSite, seen: dict[str, Loc]) -> Iterator[Issue]:
    step_id = site.step.id
    where = (*site.loc, "id")
    if step_id in seen:
        yield Issue(
            where, f"duplicate step id '{step_id}': the step at {format_loc(seen[step_id])} has it"
        )
    else:
        seen[step_id] = site.loc
    if step_id in RESERVED_NAMES:
        yield Issue(
            where, f"step id '{step_id}' is reserved: templates read '{step_id}' as something else"
        )


def _placement_issues(site: StepSite) -> Iterator[Issue]:
    if site.depth == MAX_DEPTH + 1:  # deeper steps sit inside this one: one issue is enough
        yield Issue(
            site.loc,
            f"step '{site.step.id}' is nested {site.depth} levels deep; the limit is {MAX_DEPTH}",
        )
    parallels = [a.step for a in site.ancestors if isinstance(a.step, ParallelStep)]
    if parallels and site.step.type in NOT_IN_PARALLEL:
        why = (
            "a branch cannot wait for a person"
            if site.step.type == "human_approval"
            else "a branch cannot end the whole run"
        )
        yield Issue(
            (*site.loc, "type"),
            f"a {site.step.type} step ('{site.step.id}') is not allowed inside parallel"
            f" '{parallels[-1].id}': {why}",
        )


def _shape_issues(site: StepSite) -> Iterator[Issue]:
    step, loc = site.step, site.loc
    if isinstance(step, ParallelStep) and len(step.branches) > MAX_BRANCHES:
        yield Issue(
            (*loc, "branches"),
            f"parallel '{step.id}' has {len(step.branches)} branches; the limit is {MAX_BRANCHES}",
        )
    elif isinstance(step, RetryStep) and not 1 <= step.max_attempts <= MAX_RETRY_ATTEMPTS:
        yield Issue(
            (*loc, "max_attempts"),
            f"max_attempts {step.max_attempts} of retry '{step.id}' is out of range:"
            f" it must be 1 to {MAX_RETRY_ATTEMPTS}",
        )
    elif isinstance(step, LoopStep):
        yield from _loop_issues(step, loc)


def _loop_issues(step: LoopStep, loc: Loc) -> Iterator[Issue]:
    modes = {"count": step.count, "while": step.while_, "for_each": step.for_each}
    given = [name for name, value in modes.items() if value is not None]
    if len(given) != 1:
        has = "has none" if not given else f"has {' and '.join(given)}"
        yield Issue(loc, f"loop '{step.id}' {has}: it needs exactly one of count, while, for_each")
    # Only a lone placeholder renders to a raw value; anything else renders to text,
    # which no count or list can be.
    if isinstance(step.count, str) and not is_single_placeholder(step.count):
        yield Issue(
            (*loc, "count"),
            f"count {step.count!r} must be a number or a single template such as"
            " '{{inputs.times}}'",
        )
    if isinstance(step.for_each, str) and not is_single_placeholder(step.for_each):
        yield Issue(
            (*loc, "for_each"),
            f"for_each {step.for_each!r} must be a list or a single template such as"
            " '{{inputs.items}}'",
        )
    if step.as_ is not None and step.for_each is None:
        yield Issue((*loc, "as"), f"`as` names the item of for_each, and loop '{step.id}' has none")
    if step.as_ in LOOP_VARIABLES:
        yield Issue(
            (*loc, "as"),
            f"`as: {step.as_}` would hide vars.{step.as_}; choose another name",
        )
    if step.max_iterations is not None and not 1 <= step.max_iterations <= MAX_LOOP_ITERATIONS:
        yield Issue(
            (*loc, "max_iterations"),
            f"max_iterations {step.max_iterations} of loop '{step.id}' is out of range:"
            f" it must be 1 to {MAX_LOOP_ITERATIONS}",
        )


def _save_as_issues(
    site: StepSite, id_owners: dict[str, Loc], seen: dict[str, Loc]
) -> Iterator[Issue]:
    name = site.step.save_as
    if name is None:
        return
    where = (*site.loc, "save_as")
    if name in RESERVED_NAMES:
        yield Issue(
            where, f"save_as '{name}' is reserved: templates read '{name}' as something else"
        )
    elif name in id_owners:
        owner = id_owners[name]
        whose = (
            "this step's own id"
            if owner == site.loc
            else f"the id of the step at {format_loc(owner)}"
        )
        yield Issue(where, f"save_as '{name}' is already {whose}")
    elif name in seen:
        yield Issue(
            where, f"save_as '{name}' is already used by the step at {format_loc(seen[name])}"
        )
    else:
        seen[name] = site.loc
