"""Tests for condition evaluation: missing operands, JSON equality, ordering, contains, logic."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import TypeAdapter

from cuaflow.dsl.conditions import Condition
from cuaflow.dsl.evaluate import evaluate
from cuaflow.errors import ConditionError, TemplateError

CONTEXT: dict[str, Any] = {
    "inputs": {"threshold": 5, "label": "10", "tags": ["a", "b"], "flag": False, "nothing": None},
    "vars": {"iteration": 3},
    "start_up": {"status": "succeeded", "passed": True, "output": {"port": 8080, "ok": 1.0}},
}

_ADAPTER: TypeAdapter[Condition] = TypeAdapter(Condition)


def holds(condition: dict[str, Any], context: dict[str, Any] = CONTEXT) -> bool:
    """Evaluate a condition written as the DSL's JSON."""
    return evaluate(_ADAPTER.validate_python(condition), context)


def compare(op: str, left: Any, right: Any) -> bool:
    """Evaluate one comparison."""
    return holds({"op": op, "left": left, "right": right})


MISSING_OPERAND = "{{ start_up.output.nope }}"


@pytest.mark.parametrize(
    ("op", "expected"),
    [("eq", False), ("ne", True), ("lt", False), ("gt", False), ("lte", False), ("gte", False)],
)
def test_a_missing_operand_on_either_side_decides_comparisons(op: str, expected: bool) -> None:
    """With a missing left or right operand, only `ne` holds, and nothing raises."""
    assert compare(op, MISSING_OPERAND, 1) is expected
    assert compare(op, 1, MISSING_OPERAND) is expected
    assert compare(op, "{{ deploy.status }}", MISSING_OPERAND) is expected


def test_contains_with_a_missing_operand_is_false() -> None:
    """`contains` is false when either side is missing, even if the other is not a container."""
    assert compare("contains", MISSING_OPERAND, "a") is False
    assert compare("contains", "{{ inputs.tags }}", MISSING_OPERAND) is False


@pytest.mark.parametrize(
    ("op", "value", "expected"),
    [
        ("exists", MISSING_OPERAND, False),
        ("exists", "{{ inputs.nothing }}", True),
        ("exists", "{{ inputs.flag }}", True),
        ("truthy", MISSING_OPERAND, False),
        ("falsy", MISSING_OPERAND, True),
    ],
)
def test_missing_values_in_tests(op: str, value: Any, expected: bool) -> None:
    """`exists` is true for any present value, null included; missing is falsy."""
    assert holds({"op": op, "value": value}) is expected


def test_missing_inside_text_is_still_an_error() -> None:
    """An undefined placeholder mixed with text raises TemplateError instead of being missing."""
    with pytest.raises(TemplateError, match=r"start_up\.output\.nope"):
        compare("eq", "port {{ start_up.output.nope }}", "port 1")


@pytest.mark.parametrize(
    ("left", "right", "expected"),
    [
        (1, 1.0, True),
        ("{{ start_up.output.ok }}", 1, True),
        (True, 1, False),
        (False, 0, False),
        ("1", 1, False),
        ("{{ inputs.label }}", 10, False),
        (None, None, True),
        (None, False, False),
        ("{{ inputs.nothing }}", None, True),
        ([1, [2.0, {"a": True}]], [1.0, [2, {"a": True}]], True),
        ([1, [2, {"a": True}]], [1, [2, {"a": 1}]], False),
        ({"a": 1, "b": "x"}, {"b": "x", "a": 1.0}, True),
        ({"a": 1}, {"a": 1, "b": None}, False),
        ([1, 2], [2, 1], False),
        ("{{ start_up.status }}", "succeeded", True),
        ("{{ start_up.passed }}", True, True),
    ],
)
def test_eq_and_ne_use_json_equality_without_coercion(
    left: Any, right: Any, expected: bool
) -> None:
    """Numbers compare by value, but booleans, strings and numbers never equal each other."""
    assert compare("eq", left, right) is expected
    assert compare("ne", left, right) is not expected


@pytest.mark.parametrize(
    ("op", "left", "right", "expected"),
    [
        ("lt", "{{ vars.iteration }}", 5, True),
        ("gt", "{{ vars.iteration }}", 5, False),
        ("lte", 5, 5.0, True),
        ("gte", 4.5, 5, False),
        ("lt", "apple", "banana", True),
        ("lt", "10", "9", True),
        ("gt", "a", "B", True),
        ("gte", "b", "b", True),
    ],
)
def test_ordering_compares_numbers_by_value_and_strings_by_code_point(
    op: str, left: Any, right: Any, expected: bool
) -> None:
    """Two numbers compare numerically, two strings lexicographically."""
    assert compare(op, left, right) is expected


def test_ordering_mixed_types_names_the_operator_and_both_types() -> None:
    """A string against a number is a ConditionError with a message a person can act on."""
    with pytest.raises(ConditionError) as caught:
        compare("gt", "{{ inputs.label }}", "{{ inputs.threshold }}")
    assert str(caught.value) == "cannot compare string '10' with number 5 using 'gt'"


@pytest.mark.parametrize(
    ("left", "right"),
    [(True, 1), (1, False), (None, 1), ([1], [2]), ({"a": 1}, {"a": 2}), ("a", None)],
)
def test_ordering_anything_but_two_numbers_or_two_strings_is_an_error(
    left: Any, right: Any
) -> None:
    """Booleans, null, arrays and objects cannot be ordered, even against their own kind."""
    with pytest.raises(ConditionError, match="using 'lt'"):
        compare("lt", left, right)


@pytest.mark.parametrize(
    ("left", "right", "expected"),
    [
        ("succeeded in 3s", "succeeded", True),
        ("{{ start_up.status }}", "fail", False),
        ("{{ inputs.tags }}", "a", True),
        ("{{ inputs.tags }}", "c", False),
        ([1, 2], 1.0, True),
        ([1, 2], True, False),
        ([[1], {"a": 1}], {"a": 1.0}, True),
        ("{{ start_up.output }}", "port", True),
        ("{{ start_up.output }}", "8080", False),
        ({"1": "x"}, 1, False),
    ],
)
def test_contains_checks_substrings_items_and_keys(left: Any, right: Any, expected: bool) -> None:
    """Substring for strings, item (by JSON equality) for arrays, key for objects."""
    assert compare("contains", left, right) is expected


@pytest.mark.parametrize(("left", "right"), [(5, 5), (None, "a"), (True, True), ("abc", 1)])
def test_contains_on_other_types_is_an_error(left: Any, right: Any) -> None:
    """A number, boolean or null on the left, or a non-string in a string, raises ConditionError."""
    with pytest.raises(ConditionError):
        compare("contains", left, right)


@pytest.mark.parametrize(
    ("value", "truthy"),
    [
        (None, False),
        (False, False),
        (0, False),
        (0.0, False),
        ("", False),
        ([], False),
        ({}, False),
        ("false", True),
        ("0", True),
        (-1, True),
        ([0], True),
        ({"a": None}, True),
        ("{{ inputs.flag }}", False),
        ("{{ start_up.passed }}", True),
    ],
)
def test_truthy_and_falsy_follow_json_truthiness(value: Any, truthy: bool) -> None:
    """null, false, 0, "", [] and {} are falsy; every other value is truthy."""
    assert holds({"op": "truthy", "value": value}) is truthy
    assert holds({"op": "falsy", "value": value}) is not truthy


BOOM = {"op": "gt", "left": "text", "right": 1}


def test_and_or_short_circuit_and_not_negates() -> None:
    """`and` stops at the first false, `or` at the first true, so a later error is never reached."""
    yes = {"op": "eq", "left": 1, "right": 1}
    no = {"op": "eq", "left": 1, "right": 2}
    assert holds({"op": "and", "conditions": [no, BOOM]}) is False
    assert holds({"op": "or", "conditions": [yes, BOOM]}) is True
    assert holds({"op": "and", "conditions": [yes, yes]}) is True
    assert holds({"op": "or", "conditions": [no, no]}) is False
    assert holds({"op": "not", "condition": no}) is True
    assert holds({"op": "not", "condition": {"op": "not", "condition": yes}}) is True
    with pytest.raises(ConditionError):
        holds({"op": "and", "conditions": [yes, BOOM]})
