"""Template limits: the size bounds, and the meters that enforce them before values are built.

The limits themselves are part of the template contract written out in
:mod:`cuaflow.dsl.templates`. Two meters enforce them: a :class:`Meter` counts the
characters of one value as it is converted or joined, and :func:`work_limit`
charges everything one placeholder builds (filter inputs and results, ``+``, ``*``
and ``~``) to a single budget of :data:`MAX_WORK_CHARS`. Sizes are measured or
projected before a value is made, so a template cannot allocate a huge value first
and be refused after. Breaking a limit raises
:class:`~cuaflow.errors.TemplateLimitExceeded`.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Final

from cuaflow.errors import TemplateLimitExceeded

MAX_TEMPLATE_CHARS: Final = 10_000
MAX_VALUE_CHARS: Final = 1_000_000
MAX_WORK_CHARS: Final = 10_000_000
MAX_INT_BITS: Final = 64
MAX_DEPTH: Final = 100


class Meter:
    """Counts characters against a limit so a value is measured before it is built."""

    def __init__(self, limit: int, what: str) -> None:
        self.used = 0
        self.limit = limit
        self.what = what

    def add(self, amount: int) -> None:
        """Count ``amount`` more characters; raise once the total passes the limit."""
        self.used += amount
        if self.used > self.limit:
            raise TemplateLimitExceeded(f"{self.what} would exceed {self.limit:,} characters")


_WORK: ContextVar[Meter | None] = ContextVar("cuaflow_template_work", default=None)


@contextmanager
def work_limit() -> Iterator[None]:
    """Charge what is built inside the block to one fresh budget of :data:`MAX_WORK_CHARS`."""
    token = _WORK.set(Meter(MAX_WORK_CHARS, "the template's work"))
    try:
        yield
    finally:
        _WORK.reset(token)


def charge(amount: int) -> None:
    """Charge ``amount`` characters to the current :func:`work_limit`, if there is one."""
    meter = _WORK.get()
    if meter is not None:
        meter.add(amount)


def measure(value: Any, limit: int = MAX_VALUE_CHARS) -> int:
    """About how many characters ``value`` takes as JSON; stops counting past ``limit``."""
    total, stack = 0, [value]
    while stack and total <= limit:
        item = stack.pop()
        if isinstance(item, str):
            total += len(item)
        elif isinstance(item, dict):
            total += 2 + 2 * len(item)
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            total += 2 + len(item)
            stack.extend(item)
        elif isinstance(item, int):
            total += item.bit_length() // 3 + 1
        else:
            total += 1
    return total


def check_size(value: Any) -> None:
    """Refuse a value over :data:`MAX_VALUE_CHARS` and charge its size to the work limit."""
    size = measure(value)
    if size > MAX_VALUE_CHARS:
        raise TemplateLimitExceeded(f"a value would exceed {MAX_VALUE_CHARS:,} characters")
    charge(size)


def is_int(value: Any) -> bool:
    """Whether ``value`` is an integer and not a boolean."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_sequence(value: Any) -> bool:
    """Whether ``+`` or ``*`` on ``value`` builds text or a list rather than a number."""
    return isinstance(value, str | list | tuple)


def projected_size(operator_: str, left: Any, right: Any) -> int:
    """About how many characters ``left + right`` or ``left * right`` would build."""
    if operator_ == "+":
        return measure(left) + measure(right)
    sequence, times = (left, right) if is_sequence(left) else (right, left)
    if not isinstance(times, int):
        return 0  # Python raises TypeError for a non-integer count
    size = len(sequence) if isinstance(sequence, str) else measure(sequence)
    return size * max(times, 0)


def check_power(base: Any, exponent: Any) -> None:
    """Refuse ``base ** exponent`` before computing it when it would pass :data:`MAX_INT_BITS`."""
    if not (isinstance(base, int) and isinstance(exponent, int)) or exponent <= 0:
        return  # floats overflow quickly on their own; negative powers give small floats
    if abs(base) > 1 and (
        exponent > MAX_INT_BITS or exponent * math.log2(abs(base)) > MAX_INT_BITS + 1
    ):
        raise TemplateLimitExceeded(f"'**' would make an integer over {MAX_INT_BITS} bits")
