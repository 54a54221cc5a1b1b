"""Tests for the workflow JSON Schema: it is valid, and it agrees with parse_workflow."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

# jsonschema ships no type hints and types-jsonschema is not a dependency.
from jsonschema import Draft202012Validator  # type: ignore[import-untyped]
from typer.testing import CliRunner

from cuaflow.cli.main import app
from cuaflow.dsl.normalize import SEED_CONDITION_TYPES
from cuaflow.dsl.parse import parse_workflow, workflow_document
from cuaflow.dsl.schema import SCHEMA_ID, workflow_json_schema
from cuaflow.errors import WorkflowInvalid

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "examples").glob("*.json"))

# The brief's setup-and-test workflow in its own spelling, and the same workflow in
# the canonical spelling; both must mean the same thing.
BRIEF: dict[str, Any] = {
    "name": "setup-and-test",
    "version": "1.0.0",
    "steps": [
        {"id": "start_up", "type": "task", "task": "Start the web server", "max_steps": 20},
        {
            "id": "assert_ready",
            "type": "assert",
            "condition": {"type": "field_equals", "field": "start_up.status", "value": "succeeded"},
        },
        {"id": "human_ok", "type": "human_approval", "instruction": "Review the test results"},
        {"id": "final", "type": "succeed", "message": "Setup and test completed"},
    ],
}
CANONICAL: dict[str, Any] = {
    "name": "setup-and-test",
    "version": "1.0.0",
    "steps": [
        {"id": "start_up", "type": "task", "task": "Start the web server", "max_steps": 20},
        {
            "id": "assert_ready",
            "type": "assert",
            "condition": {"op": "eq", "left": "{{start_up.status}}", "right": "succeeded"},
        },
        {"id": "human_ok", "type": "human_approval", "message": "Review the test results"},
        {"id": "final", "type": "succeed", "output": "Setup and test completed"},
    ],
}


@pytest.fixture(scope="module")
def validator() -> Any:
    """A validator for the schema, built once for the module."""
    return Draft202012Validator(workflow_json_schema())


def doc(*steps: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {"name": "t", "steps": list(steps), **fields}


def task(step_id: str = "a", **fields: Any) -> dict[str, Any]:
    return {"id": step_id, "type": "task", "task": "do it", **fields}


def schema_errors(validator: Any, document: Any) -> list[str]:
    return [error.message for error in validator.iter_errors(document)]


def parser_accepts(document: Any) -> bool:
    try:
        parse_workflow(copy.deepcopy(document))
    except WorkflowInvalid:
        return False
    return True


def test_schema_is_a_valid_draft_2020_12_schema() -> None:
    """The schema passes the 2020-12 meta-schema and names itself, its draft and a title."""
    schema = workflow_json_schema()
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"] == SCHEMA_ID == "https://cuaflow.dev/schema/workflow-2026-06-01.json"
    assert schema["title"]
    assert "discriminator" not in json.dumps(schema)  # pure JSON Schema, no OpenAPI keywords


def test_there_are_examples() -> None:
    """The examples folder is found, so the parametrised tests below do run."""
    assert len(EXAMPLES) >= 12


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_example_validates(validator: Any, path: Path) -> None:
    """Each example file, in whatever spelling it uses, is valid under the schema."""
    assert schema_errors(validator, json.loads(path.read_text())) == []


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_canonical_form_of_every_example_validates(validator: Any, path: Path) -> None:
    """The canonical document the parser produces from each example is valid too."""
    canonical = workflow_document(parse_workflow(path.read_bytes()))
    assert schema_errors(validator, canonical) == []


def test_brief_and_canonical_spellings_both_validate(validator: Any) -> None:
    """The brief's spelling and the canonical one validate and parse to the same workflow."""
    assert schema_errors(validator, BRIEF) == []
    assert schema_errors(validator, CANONICAL) == []
    assert parse_workflow(BRIEF) == parse_workflow(CANONICAL)


REJECTED_FOR_TYPE_REASONS: dict[str, dict[str, Any]] = {
    "unknown step type": doc({"id": "a", "type": "click_around", "task": "x"}),
    "missing step type": doc({"id": "a", "task": "x"}),
    "missing task text": doc({"id": "a", "type": "task"}),
    "empty task text": doc(task(task="")),
    "max_steps is text": doc(task(max_steps="many")),
    "max_steps out of range": doc(task(max_steps=0)),
    "unknown step field": doc(task(retries=3)),
    "bad step id": doc(task("has space")),
    "unknown cua_version": doc(task(cua_version="v2")),
    "unknown action type": doc(task(actions=[{"type": "teleport"}])),
    "port neither number nor template": doc(
        task(actions=[{"type": "wait_for_port", "port": "http"}])
    ),
    "bash without command": doc(task(actions=[{"type": "bash"}])),
    "unknown condition op": doc(
        {"id": "a", "type": "assert", "condition": {"op": "approx", "left": 1, "right": 1}}
    ),
    "unknown seed condition type": doc(
        {"id": "a", "type": "assert", "condition": {"type": "field_is", "field": "x.y"}}
    ),
    "unknown condition field": doc(
        {"id": "a", "type": "assert", "condition": {"op": "eq", "left": 1, "right": 1, "x": 2}}
    ),
    "approval without message": doc({"id": "a", "type": "human_approval"}),
    "approval with message and instruction": doc(
        {"id": "a", "type": "human_approval", "message": "m", "instruction": "i"}
    ),
    "fail with message and error": doc({"id": "a", "type": "fail", "message": "m", "error": "e"}),
    "loop without body": doc({"id": "a", "type": "loop", "count": 2}),
    "loop body and steps": doc(
        {"id": "a", "type": "loop", "count": 2, "body": [task("b")], "steps": [task("c")]}
    ),
    "loop with two modes": doc(
        {"id": "a", "type": "loop", "count": 2, "for_each": [1], "body": [task("b")]}
    ),
    "retry max_attempts too high": doc(
        {"id": "a", "type": "retry", "max_attempts": 50, "body": [task("b")]}
    ),
    "branch is text": doc({"id": "a", "type": "parallel", "branches": ["task b"]}),
    "steps is an object": {"name": "t", "steps": {"a": task()}},
    "no steps at all": {"name": "t"},
    "no name": {"steps": [task()]},
    "unknown top-level field": doc(task(), owner="me"),
    "version is a float": doc(task(), version=1.5),
    "guard out of range": doc(task(), guards={"deadline_seconds": 0}),
    "bare guard of the wrong type": doc(task(), budget_cents="lots"),
    "steps both at the top and in definition": doc(task(), definition={"steps": [task()]}),
}


@pytest.mark.parametrize(
    "document", REJECTED_FOR_TYPE_REASONS.values(), ids=REJECTED_FOR_TYPE_REASONS.keys()
)
def test_schema_rejects_what_the_parser_rejects(validator: Any, document: dict[str, Any]) -> None:
    """A document the parser refuses for its shape or types is refused by the schema too."""
    assert not parser_accepts(document)
    assert schema_errors(validator, document) != []


ACCEPTED_SPELLINGS: dict[str, dict[str, Any]] = {
    "approval instruction": doc({"id": "a", "type": "human_approval", "instruction": "ok?"}),
    "succeed message": doc({"id": "a", "type": "succeed", "message": "done"}),
    "fail error": doc({"id": "a", "type": "fail", "error": "broken"}),
    "loop steps": doc({"id": "a", "type": "loop", "count": 2, "steps": [task("b")]}),
    "retry steps": doc({"id": "a", "type": "retry", "max_attempts": 2, "steps": [task("b")]}),
    "branch objects": doc(
        {
            "id": "a",
            "type": "parallel",
            "branches": [{"name": "left", "steps": [task("b")]}, [task("c")]],
        }
    ),
    "definition nesting": {
        "name": "t",
        "definition": {"steps": [task()], "output": "{{a.status}}", "guards": {"budget_cents": 9}},
    },
    "name inside definition": {"definition": {"name": "t", "steps": [task()]}},
    "bare guards": doc(task(), budget_cents=10, max_iterations=5, deadline_seconds=60),
    "integer version": doc(task(), version=3),
    "op spelt type": doc(
        {
            "id": "b",
            "type": "assert",
            "condition": {
                "type": "and",
                "conditions": [
                    {"type": "eq", "left": 1, "right": 1},
                    {"type": "not", "condition": {"type": "field_falsy", "field": "inputs.x"}},
                ],
            },
        }
    ),
    "reference inputs_schema": doc(
        task(task="{{inputs.port}}"),
        inputs_schema={"port": {"type": "integer", "required": True, "default": 1}},
    ),
    "template numbers in actions": doc(
        task(actions=[{"type": "wait_for_port", "port": "{{inputs.port}}", "timeout_seconds": 2}])
    ),
    "verify checks": doc(
        task(
            cua_version="v4", verify=[{"type": "port", "port": 80}, {"type": "url", "pattern": "x"}]
        )
    ),
}


@pytest.mark.parametrize("document", ACCEPTED_SPELLINGS.values(), ids=ACCEPTED_SPELLINGS.keys())
def test_schema_accepts_every_spelling_the_parser_accepts(
    validator: Any, document: dict[str, Any]
) -> None:
    """Each alternative spelling normalize.py understands is valid under the schema too."""
    assert parser_accepts(document)
    assert schema_errors(validator, document) == []


@pytest.mark.parametrize("seed_type", sorted(SEED_CONDITION_TYPES))
def test_every_seed_condition_type_validates(validator: Any, seed_type: str) -> None:
    """Each of the brief's field_* condition types is accepted by the schema and the parser."""
    condition: dict[str, Any] = {"type": seed_type, "field": "a.status"}
    op, _ = SEED_CONDITION_TYPES[seed_type]
    if op not in ("exists", "truthy", "falsy"):
        condition["value"] = "succeeded" if op in ("eq", "ne", "contains") else 3
    document = doc(task(), {"id": "check", "type": "assert", "condition": condition})
    assert parser_accepts(document)
    assert schema_errors(validator, document) == []


def test_unary_seed_condition_takes_no_value(validator: Any) -> None:
    """A field_exists condition with a `value` is refused: it would test the value, not the field."""
    condition = {"type": "field_exists", "field": "a.status", "value": "x"}
    document = doc(task(), {"id": "check", "type": "assert", "condition": condition})
    assert schema_errors(validator, document) != []


def test_schema_checks_nested_steps(validator: Any) -> None:
    """A bad step deep inside if/loop/parallel/retry bodies is still caught."""
    bad = {"id": "deep", "type": "task"}
    nested = {
        "id": "i",
        "type": "if",
        "condition": {"op": "truthy", "value": True},
        "then": [
            {
                "id": "l",
                "type": "loop",
                "count": 1,
                "body": [{"id": "p", "type": "parallel", "branches": [{"steps": [bad]}]}],
            }
        ],
    }
    assert schema_errors(validator, doc(nested)) != []
    bad["task"] = "now complete"
    assert schema_errors(validator, doc(nested)) == []


def test_cli_prints_the_schema() -> None:
    """`cuaflow schema` prints exactly this schema as JSON."""
    result = CliRunner().invoke(app, ["schema"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == workflow_json_schema()
