"""Tests for the cross-step rules of validate_workflow, each at its exact canonical location."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cuaflow.dsl.models import Workflow
from cuaflow.dsl.validate import MAX_ISSUES, validate_workflow
from cuaflow.errors import Loc


def task(step_id: str, text: str = "do it", **fields: Any) -> dict[str, Any]:
    return {"id": step_id, "type": "task", "task": text, **fields}


def check(step_id: str, left: Any, right: Any = True, **fields: Any) -> dict[str, Any]:
    condition = {"op": "eq", "left": left, "right": right}
    return {"id": step_id, "type": "assert", "condition": condition, **fields}


def workflow(*steps: dict[str, Any], **fields: Any) -> Workflow:
    return Workflow.model_validate({"name": "test", "steps": list(steps), **fields})


def problems(*steps: dict[str, Any], **fields: Any) -> list[tuple[Loc, str]]:
    return [(i.loc, i.msg) for i in validate_workflow(workflow(*steps, **fields))]


def locs(*steps: dict[str, Any], **fields: Any) -> list[Loc]:
    return [loc for loc, _ in problems(*steps, **fields)]


def nest(depth: int) -> dict[str, Any]:
    """A chain of ``depth`` steps: retries around a task."""
    step = task(f"s{depth}")
    for level in range(depth - 1, 0, -1):
        step = {"id": f"s{level}", "type": "retry", "body": [step]}
    return step


# --- rule 1: unique ids -----------------------------------------------------------


def test_duplicate_id_is_reported_at_the_second_occurrence() -> None:
    """A nested duplicate id is located at the later one, and the message names the first."""
    found = problems(
        task("a"),
        {"id": "b", "type": "if", "condition": {"op": "truthy", "value": 1}, "then": [task("a")]},
    )
    assert found == [
        (("steps", 1, "then", 0, "id"), "duplicate step id 'a': the step at steps[0] has it")
    ]


def test_reserved_step_ids_are_refused() -> None:
    """A step called inputs, vars or secrets could never be referenced, so it is refused."""
    assert locs(task("vars")) == [("steps", 0, "id")]


# --- rule 2: limits --------------------------------------------------------------


def test_step_count_limit_counts_nested_steps() -> None:
    """200 steps in all are fine; 201 (some nested) are reported at steps."""
    flat = [task(f"t{i}") for i in range(198)]
    assert locs(*flat, {"id": "r", "type": "retry", "body": [task("inner")]}) == []
    found = locs(*flat, {"id": "r", "type": "retry", "body": [task("inner"), task("inner2")]})
    assert found == [("steps",)]


def test_nesting_depth_limit() -> None:
    """Depth 8 is fine; the step at depth 9 is reported once, at its own location."""
    assert locs(nest(8)) == []
    deep = ("steps", 0, *(["body", 0] * 8))
    assert problems(nest(10)) == [
        (deep, "step 's9' is nested 9 levels deep; the limit is 8"),
    ]


def test_parallel_branch_limit() -> None:
    """16 branches are fine, 17 are reported at branches."""

    def parallel(n: int) -> dict[str, Any]:
        return {"id": "p", "type": "parallel", "branches": [[task(f"b{i}")] for i in range(n)]}

    assert locs(parallel(16)) == []
    assert locs(parallel(17)) == [("steps", 0, "branches")]


@pytest.mark.parametrize(
    ("value", "ok"), [(0, False), (1, True), (100_000, True), (100_001, False)]
)
def test_loop_max_iterations_range(value: int, ok: bool) -> None:
    """Loop max_iterations must be 1-100000."""
    loop = {"id": "l", "type": "loop", "count": 2, "max_iterations": value, "body": [task("t")]}
    assert locs(loop) == ([] if ok else [("steps", 0, "max_iterations")])


@pytest.mark.parametrize(("value", "ok"), [(0, False), (1, True), (20, True), (21, False)])
def test_retry_max_attempts_range(value: int, ok: bool) -> None:
    """Retry max_attempts must be 1-20."""
    retry = {"id": "r", "type": "retry", "max_attempts": value, "body": [task("t")]}
    assert locs(retry) == ([] if ok else [("steps", 0, "max_attempts")])


def test_string_count_must_be_a_single_template() -> None:
    """A count given as text must be exactly one template."""

    def loop(count: Any) -> dict[str, Any]:
        return {"id": "l", "type": "loop", "count": count, "body": [task("t")]}

    schema = {"n": {"type": "integer"}}
    assert locs(loop("{{inputs.n}}"), inputs_schema=schema) == []
    assert locs(loop(5)) == []
    assert locs(loop("5")) == [("steps", 0, "count")]
    assert locs(loop("{{inputs.n}} times"), inputs_schema=schema) == [("steps", 0, "count")]


# --- rule 3: what may not run in parallel -------------------------------------------


@pytest.mark.parametrize(
    "step",
    [
        {"id": "x", "type": "human_approval", "message": "ok?"},
        {"id": "x", "type": "succeed"},
        {"id": "x", "type": "fail", "message": "no"},
    ],
)
def test_run_ending_and_waiting_steps_are_refused_inside_parallel(step: dict[str, Any]) -> None:
    """human_approval, succeed and fail are refused at any depth below a branch."""
    inner = {"id": "r", "type": "retry", "body": [task("t"), step]}
    parallel = {"id": "p", "type": "parallel", "branches": [[task("a")], [inner]]}
    found = problems(parallel)
    assert [loc for loc, _ in found] == [("steps", 0, "branches", 1, 0, "body", 1, "type")]
    assert "parallel 'p'" in found[0][1]
    assert locs(task("a"), step) == []


# --- rule 4: loop shape ---------------------------------------------------------------


def test_loop_needs_exactly_one_mode() -> None:
    """A loop with none or two of count/while/for_each is reported at the loop."""
    body = [task("t")]
    none = {"id": "l", "type": "loop", "body": body}
    two = {"id": "l", "type": "loop", "count": 1, "for_each": [1], "body": body}
    assert problems(none) == [
        (("steps", 0), "loop 'l' has none: it needs exactly one of count, while, for_each")
    ]
    assert problems(two) == [
        (
            ("steps", 0),
            "loop 'l' has count and for_each: it needs exactly one of count, while, for_each",
        )
    ]


def test_loop_as_and_for_each_rules() -> None:
    """`as` needs for_each and may not shadow a variable; for_each text must be a template."""
    body = [task("t")]
    assert locs({"id": "l", "type": "loop", "count": 2, "as": "row", "body": body}) == [
        ("steps", 0, "as")
    ]
    assert locs({"id": "l", "type": "loop", "for_each": [1], "as": "item", "body": body}) == [
        ("steps", 0, "as")
    ]
    assert locs({"id": "l", "type": "loop", "for_each": "a,b", "body": body}) == [
        ("steps", 0, "for_each")
    ]
    ok = {"id": "l", "type": "loop", "for_each": "{{inputs.rows}}", "as": "row", "body": body}
    assert locs(ok) == []


# --- rule 5: save_as ------------------------------------------------------------------


def test_save_as_names() -> None:
    """save_as may not be reserved, a step id (even a later one) or another step's save_as."""
    assert locs(task("a", save_as="inputs")) == [("steps", 0, "save_as")]
    assert locs(task("a", save_as="b"), task("b")) == [("steps", 0, "save_as")]
    assert problems(task("a", save_as="r"), task("b", save_as="r")) == [
        (("steps", 1, "save_as"), "save_as 'r' is already used by the step at steps[0]")
    ]
    assert locs(task("a", save_as="a")) == [("steps", 0, "save_as")]
    assert locs(task("a", save_as="res"), task("b", "{{res.status}}")) == []


# --- rule 7: template references ------------------------------------------------------


def test_unknown_root_names_the_template() -> None:
    """A reference to a name that is nothing is reported with the expected roots."""
    assert problems(task("a", "see {{x.y}}")) == [
        (
            ("steps", 0, "task"),
            "unknown name 'x' in template '{{x.y}}': expected inputs, vars, secrets or a step id",
        )
    ]


def test_later_step_is_refused_and_earlier_step_allowed() -> None:
    """A step can read an earlier step, but not one that comes later."""
    assert locs(task("a"), task("b", "{{a.status}}")) == []
    assert problems(task("a", "{{deploy.status}}"), task("deploy")) == [
        (
            ("steps", 0, "task"),
            "step 'deploy' is referenced before it runs: it comes later in the workflow",
        )
    ]


def test_earlier_steps_at_any_depth_are_allowed() -> None:
    """Steps inside earlier ifs, loops, retries and parallels may be referenced."""
    cond = {"op": "truthy", "value": True}
    steps: list[dict[str, Any]] = [
        {"id": "i", "type": "if", "condition": cond, "then": [task("in_if")]},
        {"id": "l", "type": "loop", "count": 1, "body": [task("in_loop")]},
        {"id": "p", "type": "parallel", "branches": [[task("in_par")], [task("other")]]},
        task("last", "{{in_if.status}} {{in_loop.passed}} {{in_par.result}} {{p.branches}}"),
    ]
    assert locs(*steps) == []


def test_deep_reference_into_a_sibling_parallel_branch_is_refused() -> None:
    """steps[0].branches[1][0].body[2] cannot read a step in branches[0]."""
    body = [task("r1"), task("r2"), task("reader", "{{left.status}} {{r1.status}}")]
    parallel = {
        "id": "p",
        "type": "parallel",
        "branches": [[task("left")], [{"id": "r", "type": "retry", "body": body}]],
    }
    found = problems(parallel)
    assert [loc for loc, _ in found] == [("steps", 0, "branches", 1, 0, "body", 2, "task")]
    assert found[0][1].startswith("step 'left' is in another branch of parallel 'p'")


def test_self_and_ancestor_references_are_refused() -> None:
    """A step cannot read itself, nor a compound step it is inside."""
    assert locs(task("a", "{{a.status}}")) == [("steps", 0, "task")]
    retry = {"id": "r", "type": "retry", "body": [task("t", "{{r.attempts}}")]}
    found = problems(retry)
    assert found == [
        (
            ("steps", 0, "body", 0, "task"),
            "step 'r' has not finished here: this template is inside it",
        )
    ]


def test_if_branches_cannot_read_each_other() -> None:
    """The else branch cannot read a step of the then branch."""
    step = {
        "id": "c",
        "type": "if",
        "condition": {"op": "truthy", "value": True},
        "then": [task("yes")],
        "else": [task("no", "{{yes.status}}")],
    }
    assert locs(step) == [("steps", 0, "else", 0, "task")]


def test_condition_of_a_compound_step_cannot_read_its_body() -> None:
    """An if's condition and a loop's count are evaluated before their body runs."""
    cond = {"op": "eq", "left": "{{inner.passed}}", "right": True}
    if_step = {"id": "c", "type": "if", "condition": cond, "then": [task("inner")]}
    assert locs(if_step) == [("steps", 0, "condition", "left")]
    loop = {"id": "l", "type": "loop", "count": "{{inner.steps}}", "body": [task("inner")]}
    assert locs(loop) == [("steps", 0, "count")]


def test_while_and_until_may_read_their_own_body() -> None:
    """A loop's while and a retry's until are evaluated after their body ran."""
    cond = {"op": "eq", "left": "{{inner.passed}}", "right": False}
    loop = {"id": "l", "type": "loop", "while": cond, "body": [task("inner")]}
    retry = {"id": "r", "type": "retry", "until": cond, "body": [task("inner")]}
    assert locs(loop) == []
    assert locs(retry) == []


def test_output_may_read_any_step_but_not_run_enders() -> None:
    """The workflow output reads any step; succeed and fail bind nothing."""
    stop = {"id": "stop", "type": "succeed"}
    assert locs(task("a"), output={"a": "{{a.result}}"}) == []
    found = problems(task("a"), stop, output={"x": ["{{stop.status}}"]})
    assert found == [
        (
            ("output", "x", 0),
            "step 'stop' (succeed) binds nothing to reference: it ends the run",
        )
    ]


def test_first_field_after_a_step_must_be_bound() -> None:
    """A misspelt field is reported with the fields the step binds; deeper paths are free."""
    assert problems(task("start_up"), task("b", "{{start_up.sttus}}")) == [
        (
            ("steps", 1, "task"),
            "step 'start_up' (task) has no field 'sttus'; it binds status, passed, result,"
            " output, run_id, steps, cost_cents, error",
        )
    ]
    assert locs(task("a"), task("b", "{{a.output.anything.deep}}")) == []


def test_save_as_names_follow_the_same_rules() -> None:
    """A save_as name reads like its step: order and fields are checked."""
    assert locs(task("a", save_as="res"), task("b", "{{res.passed}}")) == []
    found = problems(task("b", "{{res.passed}}"), task("a", save_as="res"))
    assert found[0][1].startswith("step 'a' (saved as 'res') is referenced before it runs")


def test_strings_in_actions_verify_and_messages_are_checked() -> None:
    """Templates in actions, verify checks and approval messages are checked where they are."""
    step = task(
        "t",
        actions=[{"type": "bash", "command": "echo {{nope.x}}"}],
        verify=[{"type": "command", "command": "{{vars.item}}"}],
    )
    approval = {"id": "h", "type": "human_approval", "message": "{{t.sttus}}"}
    assert locs(step, approval) == [
        ("steps", 0, "actions", 0, "command"),
        ("steps", 0, "verify", 0, "command"),
        ("steps", 1, "message"),
    ]


def test_iteration_and_attempt_variables_need_their_loop_or_retry() -> None:
    """vars.iteration only in a loop (body or while), vars.attempt only in a retry."""
    uses = task("t", "{{vars.iteration}} {{vars.attempt}}")
    assert locs(uses) == [("steps", 0, "task"), ("steps", 0, "task")]
    while_ = {"op": "lt", "left": "{{vars.iteration}}", "right": 3}
    until = {"op": "gt", "left": "{{vars.attempt}}", "right": 2}
    loop = {"id": "l", "type": "loop", "while": while_, "body": [task("a", "{{vars.iteration}}")]}
    retry = {"id": "r", "type": "retry", "until": until, "body": [task("b", "{{vars.attempt}}")]}
    assert locs(loop, retry) == []
    bad_count = {"id": "c", "type": "loop", "count": "{{vars.iteration}}", "body": [task("x")]}
    assert locs(bad_count) == [("steps", 0, "count")]


def test_item_and_as_variables_need_their_for_each_loop() -> None:
    """vars.item and vars.<as> only inside a for_each loop body that provides them."""
    body = [task("t", "{{vars.item}} {{vars.row}}")]
    loop = {"id": "l", "type": "loop", "for_each": [1, 2], "as": "row", "body": body}
    assert locs(loop) == []
    found = problems(loop, task("after", "{{vars.row}} {{vars.other}} {{vars}}"))
    assert [loc for loc, _ in found] == [("steps", 1, "task")] * 3
    assert "for_each loop that declares `as: row`" in found[0][1]
    assert found[1][1].startswith("unknown variable 'vars.other'")


def test_inputs_must_be_declared_when_the_schema_closes_them() -> None:
    """inputs.x must be declared by a schema with properties, unless extras are allowed."""
    ref_shape = {"port": {"type": "integer"}}
    assert locs(task("a", "{{inputs.port}}"), inputs_schema=ref_shape) == []
    assert problems(task("a", "{{inputs.prot}}"), inputs_schema=ref_shape) == [
        (
            ("steps", 0, "task"),
            "input 'prot' in template '{{inputs.prot}}' is not declared in inputs_schema",
        )
    ]
    open_schema = {"type": "object", "properties": {}, "additionalProperties": True}
    assert locs(task("a", "{{inputs.prot}}"), inputs_schema=open_schema) == []
    assert locs(task("a", "{{inputs.anything}} {{secrets.ANY_NAME}}")) == []


def test_template_syntax_error_is_located_at_its_string() -> None:
    """A template that does not parse is an issue at the string holding it."""
    found = locs(task("a"), check("b", "{{ a.status "))
    assert found == [("steps", 1, "condition", "left")]


def test_hyphenated_ids_and_index_paths() -> None:
    """A hyphenated step id is one name; an index right after a step is not a bound field."""
    assert locs(task("start-up"), task("b", "{{ start-up.status }}")) == []
    found = problems(task("start-up"), task("b", "{{ start-up[0] }}"))
    assert found[0][1].startswith("step 'start-up' (task) has no field '0'")


def test_secret_names_must_be_valid() -> None:
    """Any well-formed secret name is fine; a bare or malformed one is not."""
    assert locs(task("a", "{{ secrets.API-KEY_2 }}")) == []
    assert locs(task("a", "{{ secrets['a b'] }} {{ secrets }}")) == [("steps", 0, "task")] * 2


def test_template_limits_are_issues() -> None:
    """A template over the length limit is reported, not raised."""
    found = problems(task("a", "{{" + "a" * 12_000 + "}}"))
    assert [loc for loc, _ in found] == [("steps", 0, "task")]
    assert "the limit is 10,000" in found[0][1]


def test_single_template_means_nothing_outside_the_braces() -> None:
    """A count with text around its placeholder would render to text, so it is refused."""
    loop = {"id": "l", "type": "loop", "count": " {{inputs.n}}", "body": [task("t")]}
    assert locs(loop) == [("steps", 0, "count")]


def test_invalid_inputs_schema_is_reported() -> None:
    """validate_workflow also checks the inputs_schema."""
    assert locs(task("a"), inputs_schema={"port": {"type": "int"}}) == [
        ("inputs_schema", "port", "type")
    ]


# --- rule 8: every issue, bounded -----------------------------------------------------


def test_every_issue_is_reported_up_to_the_limit() -> None:
    """All issues are returned in document order, but never more than MAX_ISSUES."""
    assert locs(task("a", "{{x.y}}"), task("b", "{{z.y}}")) == [
        ("steps", 0, "task"),
        ("steps", 1, "task"),
    ]
    many = [task(f"t{i}", " ".join(f"{{{{n{j}.x}}}}" for j in range(10))) for i in range(20)]
    assert len(validate_workflow(workflow(*many))) == MAX_ISSUES


# --- robustness -----------------------------------------------------------------------

_IDS = st.sampled_from(["a", "b", "c", "d", "e", "inputs", "vars"])
_TEXTS = st.sampled_from(
    [
        "plain",
        "{{a.status}}",
        "{{b.passed}} and {{c.nope}}",
        "{{inputs.x}}",
        "{{vars.iteration}}",
        "{{vars.item}}",
        "{{secrets.K}}",
        "{{ broken",
        "{{zz}}",
        "{{ a[0] }} {{ inputs[1] }} {{ vars[2] }}",
        "{{ e.output[vars.item].x | upper }} {{ d - 1 }}",
    ]
)


def _steps(depth: int) -> st.SearchStrategy[list[dict[str, Any]]]:
    leaf = st.one_of(
        st.builds(task, _IDS, _TEXTS),
        st.builds(check, _IDS, _TEXTS),
        st.builds(lambda i: {"id": i, "type": "succeed"}, _IDS),
        st.builds(lambda i: {"id": i, "type": "human_approval", "message": "ok"}, _IDS),
    )
    if depth == 0:
        return st.lists(leaf, min_size=1, max_size=3)
    inner = _steps(depth - 1)
    compound = st.one_of(
        st.builds(lambda i, b: {"id": i, "type": "retry", "body": b}, _IDS, inner),
        st.builds(
            lambda i, b, t: {"id": i, "type": "loop", "count": 2, "for_each": t, "body": b},
            _IDS,
            inner,
            st.one_of(st.none(), _TEXTS),
        ),
        st.builds(
            lambda i, b: {"id": i, "type": "parallel", "branches": b},
            _IDS,
            st.lists(inner, min_size=1, max_size=3),
        ),
        st.builds(
            lambda i, t, b, e: {
                "id": i,
                "type": "if",
                "condition": {"op": "eq", "left": t, "right": 1},
                "then": b,
                "else": e,
            },
            _IDS,
            _TEXTS,
            inner,
            inner,
        ),
    )
    return st.lists(st.one_of(leaf, compound), min_size=1, max_size=3)


@settings(max_examples=150, deadline=None)
@given(steps=_steps(3), output=st.one_of(st.none(), _TEXTS))
def test_validate_never_raises(steps: list[dict[str, Any]], output: str | None) -> None:
    """On random valid-shaped workflows, validation returns issues instead of raising."""
    found = validate_workflow(workflow(*steps, output=output))
    assert len(found) <= MAX_ISSUES
    assert all(issue.loc and issue.msg for issue in found)
