"""Template sandbox: the Jinja environment that evaluates placeholder expressions.

Jinja's immutable sandbox, narrowed to the template contract of
:mod:`cuaflow.dsl.templates`: only ``{{ }}`` is active; names and attributes are
data-only lookups in the roots; calls are refused; ``*``, ``**``, ``+`` and ``%``
are intercepted so they cannot build huge values or format text; ``~`` joins
text by the JSON-style rule; and only the kept filters (plus our own ``join``,
``replace``, ``round``, ``string``, ``sum`` and ``tojson``) exist, each measured
and charged to the placeholder's work limit (see :mod:`cuaflow.dsl.template_limits`).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import Any, Final

from jinja2 import StrictUndefined, Undefined, nodes, pass_environment
from jinja2.compiler import CodeGenerator, Frame
from jinja2.filters import FILTERS, make_attrgetter
from jinja2.sandbox import ImmutableSandboxedEnvironment

from cuaflow.dsl.template_limits import (
    MAX_INT_BITS,
    MAX_VALUE_CHARS,
    Meter,
    charge,
    check_power,
    check_size,
    is_int,
    is_sequence,
    projected_size,
)
from cuaflow.dsl.template_values import MISSING, step_into, to_json, to_text
from cuaflow.errors import TemplateError, TemplateLimitExceeded

# Compiled expressions read every name from this one variable, so no name a workflow
# writes can reach anything Jinja itself defines.
ROOTS: Final = "__cuaflow_roots__"


class _GuardedCodeGenerator(CodeGenerator):
    """Routes ``~`` through the environment so joined text is measured and JSON-styled."""

    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:  # noqa: N802 - Jinja dispatches on node class names
        self.write("environment.concat_as_text((")
        for argument in node.nodes:
            self.visit(argument, frame)
            self.write(", ")
        self.write("))")


class Sandbox(ImmutableSandboxedEnvironment):
    """Jinja's immutable sandbox with data-only lookups, no calls and bounded operators."""

    code_generator_class = _GuardedCodeGenerator
    intercepted_binops = frozenset({"*", "**", "+", "%"})

    def getattr(self, obj: Any, attribute: str) -> Any:
        return self.getitem(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        if isinstance(obj, Undefined):
            if isinstance(argument, str) and argument.startswith("__"):
                raise TemplateError(f"'{argument}' cannot be read")
            return obj
        value = step_into(obj, argument)
        return self.undefined(obj=obj, name=argument) if value is MISSING else value

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805 - Jinja's signature
        raise TemplateError(
            "templates cannot call functions or methods; use a filter, e.g. {{ name | upper }}"
        )

    def call_binop(self, context: Any, operator_: str, left: Any, right: Any) -> Any:
        if operator_ == "%" and isinstance(left, str):
            raise TemplateError("'%' formatting is not supported; join text with '~'")
        if operator_ == "**":
            check_power(left, right)
        if operator_ in ("*", "+") and (is_sequence(left) or is_sequence(right)):
            projected = projected_size(operator_, left, right)
            if projected > MAX_VALUE_CHARS:
                raise TemplateLimitExceeded(
                    f"'{operator_}' would build a value over {MAX_VALUE_CHARS:,} characters"
                )
            charge(projected)
        result = self.binop_table[operator_](left, right)
        if operator_ in ("*", "**") and is_int(result) and result.bit_length() > MAX_INT_BITS:
            raise TemplateLimitExceeded(f"'{operator_}' made an integer over {MAX_INT_BITS} bits")
        return result

    def concat_as_text(self, parts: tuple[Any, ...]) -> str:
        """Join the operands of ``~`` as text, by the same rule as interpolation."""
        meter = Meter(MAX_VALUE_CHARS, "text joined with '~'")
        text = "".join(to_text(part, meter) for part in parts)
        charge(len(text))
        return text


def _guarded(function: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a filter so its inputs and result are measured and charged to the work limit."""

    @functools.wraps(function)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        for argument in (*args, *kwargs.values()):
            check_size(argument)
        result = function(*args, **kwargs)
        check_size(result)
        return result

    return guarded


def _string(value: Any) -> str:
    return to_text(value)


@pass_environment
def _join(environment: Sandbox, value: Any, d: Any = "", attribute: str | int | None = None) -> str:
    if attribute is not None:
        value = map(make_attrgetter(environment, attribute), value)
    separator, meter = to_text(d), Meter(MAX_VALUE_CHARS, "the joined text")
    parts = []
    for item in value:
        parts.append(to_text(item, meter))
        meter.add(len(separator))
    return separator.join(parts)


def _replace(value: Any, old: Any, new: Any, count: int | None = None) -> str:
    text, old_text, new_text = to_text(value), to_text(old), to_text(new)
    hits = text.count(old_text) if old_text else len(text) + 1
    if count is not None and count >= 0:
        hits = min(hits, count)
    if len(text) + hits * (len(new_text) - len(old_text)) > MAX_VALUE_CHARS:
        raise TemplateLimitExceeded(f"replace would exceed {MAX_VALUE_CHARS:,} characters")
    return text.replace(old_text, new_text, -1 if count is None else count)


def _round(value: float, precision: int = 0, method: str = "common") -> float:
    if not isinstance(precision, int) or abs(precision) > 20:
        raise TemplateError("round: precision must be a whole number from -20 to 20")
    rounded: float = FILTERS["round"](value, precision, method)
    return rounded


@pass_environment
def _sum(
    environment: Sandbox, iterable: Any, attribute: str | int | None = None, start: Any = 0
) -> Any:
    if not isinstance(start, int | float):
        raise TemplateError("sum: adds numbers only")
    if attribute is not None:
        iterable = map(make_attrgetter(environment, attribute), iterable)
    return sum(iterable, start)


def _tojson(value: Any, indent: int | None = None) -> str:
    if indent is not None and not (isinstance(indent, int) and 0 <= indent <= 8):
        raise TemplateError("tojson: indent must be a whole number from 0 to 8")
    plain = to_json(value, Meter(MAX_VALUE_CHARS, "tojson"))
    return json.dumps(plain, ensure_ascii=False, indent=indent)


_KEPT_FILTERS = [
    "abs",
    "capitalize",
    "count",
    "d",
    "default",
    "dictsort",
    "e",
    "escape",
    "filesizeformat",
    "first",
    "float",
    "groupby",
    "int",
    "items",
    "last",
    "length",
    "list",
    "lower",
    "map",
    "max",
    "min",
    "reject",
    "rejectattr",
    "reverse",
    "select",
    "selectattr",
    "sort",
    "sum",
    "title",
    "trim",
    "truncate",
    "unique",
    "upper",
    "urlencode",
    "wordcount",
]
_OWN_FILTERS: dict[str, Callable[..., Any]] = {
    "join": _join,
    "replace": _replace,
    "round": _round,
    "string": _string,
    "sum": _sum,
    "tojson": _tojson,
}


def _make_environment() -> Sandbox:
    environment = Sandbox(
        # Only {{ }} is active: block and comment markers start with an ASCII record
        # separator, which never occurs in workflow text, so `{%` and `{#` stay text.
        block_start_string="\x1e{%",
        block_end_string="%}\x1e",
        comment_start_string="\x1e{#",
        comment_end_string="#}\x1e",
        undefined=StrictUndefined,
        autoescape=False,
        optimized=False,  # constant folding would run filters at compile time, unmetered
        cache_size=0,
    )
    environment.globals.clear()
    filters = {name: FILTERS[name] for name in _KEPT_FILTERS} | _OWN_FILTERS
    environment.filters = {name: _guarded(function) for name, function in filters.items()}
    return environment


ENVIRONMENT: Final = _make_environment()
"""The one environment every placeholder expression is parsed and evaluated in."""
