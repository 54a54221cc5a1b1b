"""parse_workflow: both spellings, exact error locations, bounded input, idempotent normalisation."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cuaflow.dsl.parse import MAX_DOCUMENT_BYTES, parse_workflow, workflow_document
from cuaflow.errors import WorkflowInvalid

BRIEF_STYLE = {
    "name": "brief",
    "version": "1.0.0",
    "steps": [
        {"id": "start_up", "type": "task", "task": "Start it", "max_steps": 20},
        {
            "id": "ready",
            "type": "assert",
            "condition": {"type": "field_equals", "field": "start_up.status", "value": "succeeded"},
        },
        {"id": "ok", "type": "human_approval", "instruction": "Review"},
        {
            "id": "again",
            "type": "retry",
            "max_attempts": 2,
            "steps": [{"id": "x", "type": "fail", "error": "no"}],
        },
        {"id": "final", "type": "succeed", "message": "done"},
    ],
}
REFERENCE_STYLE = {
    "name": "brief",
    "version": "1.0.0",
    "definition": {
        "steps": [
            {"id": "start_up", "type": "task", "task": "Start it", "max_steps": 20},
            {
                "id": "ready",
                "type": "assert",
                "condition": {"op": "eq", "left": "{{start_up.status}}", "right": "succeeded"},
            },
            {"id": "ok", "type": "human_approval", "message": "Review"},
            {
                "id": "again",
                "type": "retry",
                "max_attempts": 2,
                "body": [{"id": "x", "type": "fail", "message": "no"}],
            },
            {"id": "final", "type": "succeed", "output": "done"},
        ]
    },
}


def locations(document: Any) -> list[tuple[str | int, ...]]:
    with pytest.raises(WorkflowInvalid) as caught:
        parse_workflow(document)
    return [issue.loc for issue in caught.value.issues]


def test_both_spellings_normalise_to_one_canonical_form() -> None:
    """The brief's spelling and the reference spelling give the same canonical document."""
    brief = workflow_document(parse_workflow(BRIEF_STYLE))
    reference = workflow_document(parse_workflow(REFERENCE_STYLE))
    assert brief == reference
    assert brief["steps"][1]["condition"] == {
        "op": "eq",
        "left": "{{start_up.status}}",
        "right": "succeeded",
    }
    assert brief["steps"][2]["message"] == "Review"
    assert brief["steps"][4]["output"] == "done"


def test_negated_seed_conditions_become_not() -> None:
    """field_not_exists becomes {op: not, condition: {op: exists}}."""
    doc = {
        "name": "n",
        "steps": [
            {
                "id": "a",
                "type": "assert",
                "condition": {"type": "field_not_exists", "field": "inputs.x"},
            }
        ],
    }
    condition = workflow_document(parse_workflow(doc))["steps"][0]["condition"]
    assert condition == {"op": "not", "condition": {"op": "exists", "value": "{{inputs.x}}"}}


def test_errors_point_at_the_users_own_keys() -> None:
    """A problem in an aliased field is reported where the user wrote it, not in canonical form."""
    doc = {
        "name": "n",
        "definition": {
            "steps": [
                {"id": "ok", "type": "human_approval", "instruction": 5},
                {
                    "id": "r",
                    "type": "retry",
                    "max_attempts": 2,
                    "steps": [
                        {
                            "id": "a",
                            "type": "assert",
                            "condition": {"type": "field_gt", "field": 7, "value": 1},
                        }
                    ],
                },
            ]
        },
    }
    assert set(locations(doc)) == {
        ("definition", "steps", 0, "instruction"),
        ("definition", "steps", 1, "steps", 0, "condition", "field"),
    }


def test_deep_locations_without_union_tags() -> None:
    """Locations inside nested steps and conditions carry no pydantic union tags."""
    doc = {
        "name": "n",
        "steps": [
            {
                "id": "p",
                "type": "parallel",
                "branches": [
                    [
                        {
                            "id": "a",
                            "type": "if",
                            "condition": {
                                "op": "and",
                                "conditions": [{"op": "gt", "left": 1}, {"op": "nope"}],
                            },
                            "then": [{"id": "t", "type": "task"}],
                        }
                    ]
                ],
            }
        ],
    }
    assert set(locations(doc)) == {
        ("steps", 0, "branches", 0, 0, "condition", "conditions", 1, "op"),
        ("steps", 0, "branches", 0, 0, "then", 0, "task"),
    }


def test_unknown_step_type_lists_the_valid_ones() -> None:
    """An unknown step type names the nine valid ones at the step's type."""
    with pytest.raises(WorkflowInvalid) as caught:
        parse_workflow({"name": "n", "steps": [{"id": "a", "type": "taks", "task": "x"}]})
    (issue,) = caught.value.issues
    assert issue.loc == ("steps", 0, "type")
    assert "unknown step type 'taks'" in issue.msg
    assert "human_approval" in issue.msg


def test_unknown_field_is_named() -> None:
    """A misspelt field is reported as unknown at its own location."""
    assert locations(
        {"name": "n", "steps": [{"id": "a", "type": "task", "task": "x", "max_step": 3}]}
    ) == [("steps", 0, "max_step")]


def test_alias_and_canonical_together_is_an_error() -> None:
    """Giving instruction and message both is ambiguous and refused at the alias."""
    doc = {
        "name": "n",
        "steps": [{"id": "a", "type": "human_approval", "instruction": "x", "message": "y"}],
    }
    assert locations(doc) == [("steps", 0, "instruction")]


@pytest.mark.parametrize(
    ("source", "fragment"),
    [
        ("{", "not valid JSON"),
        ("[" * 100_000 + "]" * 100_000, "nested"),
        (b"\xff\xfe", "not valid"),
        (" " * (MAX_DOCUMENT_BYTES + 1), "limit"),
        ("[]", "JSON object"),
    ],
)
def test_bad_documents_get_a_clear_error(source: str | bytes, fragment: str) -> None:
    """Malformed, hostile and oversized documents are refused with a message, never a crash."""
    with pytest.raises(WorkflowInvalid) as caught:
        parse_workflow(source)
    assert fragment in str(caught.value) or fragment in caught.value.issues[0].msg


def test_top_level_guards_are_lifted() -> None:
    """budget_cents given at the top level lands in guards; out of range is located there."""
    assert (
        parse_workflow(
            {"name": "n", "budget_cents": 10, "steps": [{"id": "a", "type": "succeed"}]}
        ).guards.budget_cents
        == 10
    )
    assert locations(
        {"name": "n", "deadline_seconds": 0, "steps": [{"id": "a", "type": "succeed"}]}
    ) == [("deadline_seconds",)]


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-5, 5)
    | st.sampled_from(["x", "{{inputs.a}}", "a", "s1", "{{s1.passed}}"]),
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(
            st.sampled_from(
                [
                    "id",
                    "type",
                    "op",
                    "left",
                    "right",
                    "value",
                    "field",
                    "steps",
                    "body",
                    "then",
                    "else",
                    "condition",
                    "conditions",
                    "branches",
                    "message",
                    "instruction",
                    "task",
                    "count",
                    "max_attempts",
                    "output",
                ]
            ),
            children,
            max_size=5,
        )
    ),
    max_leaves=25,
)
step_types = st.sampled_from(
    ["task", "assert", "if", "loop", "parallel", "human_approval", "retry", "succeed", "fail"]
)


@st.composite
def step_like(draw: st.DrawFn) -> dict[str, Any]:
    step = draw(
        st.dictionaries(
            st.sampled_from(
                [
                    "task",
                    "condition",
                    "then",
                    "steps",
                    "body",
                    "branches",
                    "count",
                    "message",
                    "instruction",
                    "max_attempts",
                ]
            ),
            json_values,
            max_size=4,
        )
    )
    return {
        "id": draw(st.sampled_from(["s1", "s2", "s3", "bad id"])),
        "type": draw(step_types),
        **step,
    }


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(step_like(), max_size=4), json_values)
def test_parse_never_crashes_and_normalising_twice_changes_nothing(
    steps: list[Any], output: Any
) -> None:
    """Random documents are either valid (and a fixed point of normalisation) or refused cleanly."""
    document = {"name": "fuzz", "steps": steps, "output": output}
    try:
        canonical = workflow_document(parse_workflow(document))
    except WorkflowInvalid as exc:
        issues = exc.issues
    else:
        issues = []
    if issues:
        assert all(issue.msg for issue in issues)
        return
    again = workflow_document(parse_workflow(json.loads(json.dumps(canonical))))
    assert again == canonical


def test_unary_seed_condition_refuses_a_value() -> None:
    """field_exists with a value would silently test the value; it is refused at 'value'."""
    doc = {
        "name": "n",
        "steps": [
            {
                "id": "a",
                "type": "assert",
                "condition": {"type": "field_exists", "field": "inputs.x", "value": "x"},
            }
        ],
    }
    assert locations(doc) == [("steps", 0, "condition", "value")]
