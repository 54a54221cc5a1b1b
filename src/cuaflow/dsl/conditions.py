"""Conditions: data that decides `assert`, `if`, `loop.while` and `retry.until`.

A condition is never code. The canonical (reference) form is a small tree:

- ``{op: eq|ne|lt|gt|lte|gte|contains, left, right}`` compares two operands;
- ``{op: truthy|falsy|exists, value}`` tests one operand;
- ``{op: and|or, conditions: [...]}`` and ``{op: not, condition}`` combine them.

Operands are JSON values; strings in them are templates rendered at run time.
The brief's ``{type: field_equals, field, value}`` form is rewritten into this
tree by :mod:`cuaflow.dsl.normalize` before these models see it.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field

COMPARE_OPS = ("eq", "ne", "lt", "gt", "lte", "gte", "contains")
UNARY_OPS = ("truthy", "falsy", "exists")
LOGICAL_OPS = ("and", "or")
ALL_OPS = (*COMPARE_OPS, *UNARY_OPS, *LOGICAL_OPS, "not")


class _ConditionBase(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Compare(_ConditionBase):
    """Compare ``left`` with ``right``."""

    op: Literal["eq", "ne", "lt", "gt", "lte", "gte", "contains"]
    left: Any = None
    right: Any = None


class Test(_ConditionBase):
    """Test a single ``value``: is it truthy, falsy, or present at all."""

    op: Literal["truthy", "falsy", "exists"]
    value: Any = None


class AllOrAny(_ConditionBase):
    """True when all (``and``) or any (``or``) of ``conditions`` hold."""

    op: Literal["and", "or"]
    conditions: list[Condition] = Field(min_length=1, max_length=64)


class Not(_ConditionBase):
    """True when ``condition`` does not hold."""

    op: Literal["not"]
    condition: Condition


Condition = Annotated[Compare | Test | AllOrAny | Not, Discriminator("op")]

AllOrAny.model_rebuild()
Not.model_rebuild()
