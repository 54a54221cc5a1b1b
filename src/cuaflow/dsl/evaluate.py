"""Condition evaluation: decide an ``assert``, ``if``, ``loop.while`` or ``retry.until``.

A condition (see :mod:`cuaflow.dsl.conditions`) is evaluated against the run's
template context. Each operand is rendered first, as a template
(:func:`cuaflow.dsl.templates.render_operand`); the rules below then apply to
the resulting JSON values. They are the user-facing contract.

Missing operands
    An operand that is exactly one placeholder whose path does not exist (a
    step that has not run, a field it did not bind) is *missing*; it is not an
    error. With a missing operand on either side ``eq``, ``lt``, ``gt``, ``lte``,
    ``gte`` and ``contains`` are false and ``ne`` is true. ``exists`` is false
    for a missing value and true for any present value, ``null`` included.
    ``truthy`` is false and ``falsy`` is true for a missing value. Text that mixes
    words with an undefined placeholder is an error, as anywhere else.

``eq`` and ``ne``
    JSON equality, never coercion: numbers compare by value (``1`` equals
    ``1.0``), but ``true`` is not ``1`` and the string ``"1"`` is not the number
    ``1``. Arrays are equal when they have equal items in the same order, objects
    when they have the same keys with equal values.

``lt``, ``gt``, ``lte``, ``gte``
    Two numbers compare by value; two strings compare character by character
    (by Unicode code point, so ``"B" < "a"`` and ``"10" < "9"``). Any other pair
    (booleans included) is an error naming the operator and both types, such
    as "cannot compare string '10' with number 5 using 'gt'".

``contains``
    A string on the left contains a string on the right as a substring; an array
    on the left contains the right value as an item (by ``eq``); an object on the
    left contains the right value as a key (a non-string never is one). Anything
    else on the left, or a non-string inside a string, is an error.

``truthy`` and ``falsy``
    JSON truthiness: ``null``, ``false``, ``0``, ``""``, ``[]`` and ``{}`` are
    falsy; every other value (``"false"`` and ``"0"`` included) is truthy.

``and``, ``or``, ``not``
    ``and`` and ``or`` stop at the first condition that decides the result, so
    later conditions are not rendered; ``not`` negates.

Errors are :class:`~cuaflow.errors.ConditionError` for clashing types and
:class:`~cuaflow.errors.TemplateError` for operands that cannot be rendered.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from cuaflow.dsl.conditions import AllOrAny, Compare, Condition, Not, Test
from cuaflow.dsl.templates import MISSING, json_type_name, render_operand
from cuaflow.errors import ConditionError

__all__ = ["evaluate", "json_equal"]


def evaluate(condition: Condition, context: Mapping[str, Any]) -> bool:
    """Whether ``condition`` holds in ``context`` (the template roots), by the rules above."""
    if isinstance(condition, AllOrAny):
        decide = all if condition.op == "and" else any
        return decide(evaluate(child, context) for child in condition.conditions)
    if isinstance(condition, Not):
        return not evaluate(condition.condition, context)
    if isinstance(condition, Test):
        return _test(condition.op, render_operand(condition.value, context))
    return _compare(
        condition,
        render_operand(condition.left, context),
        render_operand(condition.right, context),
    )


def _test(op: str, value: Any) -> bool:
    if op == "exists":
        return value is not MISSING
    truthy = value is not MISSING and bool(value)
    return truthy if op == "truthy" else not truthy


def _compare(condition: Compare, left: Any, right: Any) -> bool:
    op = condition.op
    if left is MISSING or right is MISSING:
        return op == "ne"
    if op == "eq":
        return json_equal(left, right)
    if op == "ne":
        return not json_equal(left, right)
    if op == "contains":
        return _contains(left, right)
    both_numbers = _is_number(left) and _is_number(right)
    if both_numbers or (isinstance(left, str) and isinstance(right, str)):
        if op == "lt":
            return bool(left < right)
        if op == "gt":
            return bool(left > right)
        if op == "lte":
            return bool(left <= right)
        return bool(left >= right)
    raise ConditionError(f"cannot compare {_describe(left)} with {_describe(right)} using '{op}'")


def json_equal(left: Any, right: Any) -> bool:
    """JSON equality: numbers by value, but no coercion between types (``true`` is not ``1``)."""
    if isinstance(left, bool) or isinstance(right, bool):
        return isinstance(left, bool) and isinstance(right, bool) and left == right
    if _is_number(left) and _is_number(right):
        return bool(left == right)
    if isinstance(left, list | tuple) and isinstance(right, list | tuple):
        return len(left) == len(right) and all(map(json_equal, left, right))
    if isinstance(left, Mapping) and isinstance(right, Mapping):
        return left.keys() == right.keys() and all(json_equal(left[k], right[k]) for k in left)
    if isinstance(left, str) and isinstance(right, str):
        return left == right
    return left is None and right is None


def _contains(left: Any, right: Any) -> bool:
    if isinstance(left, str):
        if not isinstance(right, str):
            raise ConditionError(f"cannot look for {_describe(right)} inside a string")
        return right in left
    if isinstance(left, list | tuple):
        return any(json_equal(item, right) for item in left)
    if isinstance(left, Mapping):
        return isinstance(right, str) and right in left
    raise ConditionError(
        f"'contains' needs a string, array or object on the left, not {_describe(left)}"
    )


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _describe(value: Any) -> str:
    """``string '10'``: the JSON type and a short JSON rendering, for error messages."""
    try:
        shown = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        shown = repr(value)
    if isinstance(value, str):
        shown = repr(value)
    if len(shown) > 60:
        shown = shown[:57] + "..."
    return f"{json_type_name(value)} {shown}"
