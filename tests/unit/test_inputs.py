"""Tests for inputs_schema normalisation and checking a run's inputs."""

from __future__ import annotations

import pytest

from cuaflow.dsl.inputs import (
    MAX_INPUTS_BYTES,
    check_inputs,
    input_is_declared,
    inputs_schema_issues,
    normalize_inputs_schema,
)
from cuaflow.errors import WorkflowInvalid

PORT_SCHEMA = {
    "type": "object",
    "properties": {"port": {"type": "integer"}, "host": {"type": "string", "default": "h"}},
    "required": ["port"],
}


def test_absent_schema_is_none() -> None:
    """No inputs_schema normalises to None without issues."""
    assert inputs_schema_issues(None) == (None, [])


def test_reference_shape_converts_to_json_schema() -> None:
    """The reference's per-input shape becomes an object schema with properties and required."""
    raw = {
        "port": {"type": "integer", "required": True, "default": 80, "description": "p"},
        "name": {"type": "string"},
    }
    schema, issues = inputs_schema_issues(raw)
    assert issues == []
    assert schema == {
        "type": "object",
        "properties": {
            "port": {"type": "integer", "default": 80, "description": "p"},
            "name": {"type": "string"},
        },
        "required": ["port"],
    }


def test_normalising_is_idempotent() -> None:
    """A normalised schema is JSON Schema and normalises to itself."""
    schema = normalize_inputs_schema({"port": {"type": "integer", "required": True}})
    assert normalize_inputs_schema(schema) == schema


def test_inputs_named_like_annotation_keywords_are_reference_shape() -> None:
    """Inputs called 'title' or 'description' are inputs, not JSON Schema annotations."""
    schema = normalize_inputs_schema(
        {"title": {"type": "string"}, "description": {"type": "string"}}
    )
    assert schema is not None
    assert set(schema["properties"]) == {"title", "description"}


@pytest.mark.parametrize(
    "raw",
    [
        {"type": "object", "properties": {"a": {"type": "string"}}},
        {"type": ["object", "null"]},
        {"properties": {"a": {"type": "string"}}},
        {"items": {"type": "string"}},
        {"$schema": "https://json-schema.org/draft/2020-12/schema"},
        {},
    ],
)
def test_json_schema_is_kept_as_is(raw: dict[str, object]) -> None:
    """A document using JSON Schema keywords (or an empty one) is kept unchanged."""
    assert inputs_schema_issues(raw) == (raw, [])


def test_invalid_json_schema_is_reported_at_its_path() -> None:
    """A JSON Schema that breaks the meta-schema is reported where the bad value is."""
    schema, issues = inputs_schema_issues({"type": "object", "properties": {"a": {"minimum": "x"}}})
    assert schema is None
    assert [i.loc for i in issues] == [("inputs_schema", "properties", "a", "minimum")]
    assert "'x' is not of type 'number'" in issues[0].msg


def test_bad_type_keyword_names_the_allowed_types() -> None:
    """An unknown JSON Schema type is reported with the list of known types."""
    _, issues = inputs_schema_issues({"type": "strin"})
    assert [i.loc for i in issues] == [("inputs_schema", "type")]
    assert "'strin' is not one of" in issues[0].msg


def test_reference_shape_typo_is_reported() -> None:
    """A misspelt type in the reference shape is an issue, not a silently ignored keyword."""
    schema, issues = inputs_schema_issues(
        {"port": {"type": "int"}, "x": {"type": "string", "req": 1}}
    )
    assert schema is None
    assert [i.loc for i in issues] == [
        ("inputs_schema", "port", "type"),
        ("inputs_schema", "x", "req"),
    ]
    assert "'int' is not an input type" in issues[0].msg


def test_reference_shape_checks_default_required_and_entry_shape() -> None:
    """Defaults must match their type, required must be a bool, entries must be objects."""
    _, issues = inputs_schema_issues(
        {
            "port": {"type": "integer", "default": "abc", "required": "yes"},
            "name": {"type": "string"},
            "bad": 3,
        }
    )
    assert {i.loc for i in issues} == {
        ("inputs_schema", "port", "default"),
        ("inputs_schema", "port", "required"),
        ("inputs_schema", "bad"),
    }


def test_non_object_schema_is_an_issue() -> None:
    """An inputs_schema that is not an object is reported at inputs_schema."""
    schema, issues = inputs_schema_issues(["a"])
    assert schema is None
    assert [i.loc for i in issues] == [("inputs_schema",)]


def test_normalize_raises_with_issues() -> None:
    """normalize_inputs_schema raises WorkflowInvalid carrying the issues."""
    with pytest.raises(WorkflowInvalid) as caught:
        normalize_inputs_schema({"port": {"type": "int"}})
    assert caught.value.issues[0].loc == ("inputs_schema", "port", "type")


def test_check_inputs_applies_defaults_and_reports_type_errors() -> None:
    """Top-level defaults are filled in and a wrongly typed input is reported by path."""
    filled, issues = check_inputs(PORT_SCHEMA, {"port": "abc"})
    assert filled == {"port": "abc", "host": "h"}
    assert [(i.loc, i.msg) for i in issues] == [
        (("inputs", "port"), "inputs.port: 'abc' is not of type 'integer'")
    ]


def test_check_inputs_names_missing_required_inputs() -> None:
    """Each missing required input is its own issue, located at its name."""
    schema = {"type": "object", "required": ["a", "b"]}
    _, issues = check_inputs(schema, {"a": 1})
    assert [(i.loc, i.msg) for i in issues] == [
        (("inputs", "b"), "inputs.b is required but missing")
    ]


def test_check_inputs_defaults_do_not_override_given_values() -> None:
    """A given input wins over the default, and defaults are copies."""
    schema = {"type": "object", "properties": {"tags": {"type": "array", "default": []}}}
    filled, issues = check_inputs(schema, {})
    filled["tags"].append("x")
    again, _ = check_inputs(schema, {})
    assert again == {"tags": []}
    given, _ = check_inputs(schema, {"tags": ["y"]})
    assert given == {"tags": ["y"]}
    assert issues == []


def test_check_inputs_nested_path() -> None:
    """An error inside a list is located with its index."""
    schema = {
        "type": "object",
        "properties": {"a": {"type": "array", "items": {"type": "integer"}}},
    }
    _, issues = check_inputs(schema, {"a": [1, "x"]})
    assert [(i.loc, i.msg) for i in issues] == [
        (("inputs", "a", 1), "inputs.a[1]: 'x' is not of type 'integer'")
    ]


def test_check_inputs_without_schema_accepts_any_object() -> None:
    """No schema: any object is accepted, None means {}, non-objects are refused."""
    assert check_inputs(None, {"x": 1}) == ({"x": 1}, [])
    assert check_inputs(None, None) == ({}, [])
    _, issues = check_inputs(None, [1])
    assert [i.loc for i in issues] == [("inputs",)]


def test_check_inputs_refuses_huge_inputs() -> None:
    """Inputs above 1 MB of JSON are refused without validating them."""
    _, issues = check_inputs(PORT_SCHEMA, {"port": 1, "blob": "x" * MAX_INPUTS_BYTES})
    assert [i.loc for i in issues] == [("inputs",)]
    assert "limit is 1 MB" in issues[0].msg


def test_check_inputs_never_fetches_remote_refs() -> None:
    """A $ref to a URL is not retrieved; it is reported as unresolvable."""
    _, issues = check_inputs({"$ref": "https://example.invalid/schema.json"}, {})
    assert [i.loc for i in issues] == [("inputs",)]
    assert "cannot be resolved" in issues[0].msg


def test_input_is_declared_respects_closed_and_open_schemas() -> None:
    """Declared names pass; undeclared names fail unless extra properties are allowed."""
    assert input_is_declared(PORT_SCHEMA, "port")
    assert not input_is_declared(PORT_SCHEMA, "prot")
    assert input_is_declared({**PORT_SCHEMA, "additionalProperties": True}, "prot")
    assert input_is_declared({**PORT_SCHEMA, "additionalProperties": {"type": "string"}}, "x")
    assert input_is_declared({**PORT_SCHEMA, "patternProperties": {"^x_": {}}}, "x_1")
    assert input_is_declared({"type": "object"}, "anything")
    assert input_is_declared(None, "anything")
