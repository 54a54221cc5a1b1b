"""Templates: the ``{{ expression }}`` placeholders in every string a step carries.

The rules below are the user-facing contract; the DSL documentation copies them.

Syntax
    Only ``{{ ... }}`` is active. Everything outside placeholders is plain text,
    copied byte for byte: ``{%``, ``{#`` and ``${#arr[@]}`` mean nothing special,
    newlines are never trimmed, and Jinja's whitespace control (``{{-``) does not
    exist (``{{-1}}`` is minus one). To write a literal ``{{`` use ``{{ '{{' }}``.
    Expressions are Jinja2 expressions evaluated in an immutable sandbox.

Names
    A placeholder starts from one of the roots: ``inputs``, ``vars`` (``iteration``,
    ``attempt``, ``item`` and loop ``as`` names), ``secrets``, or a step id or
    ``save_as`` name. ``.name``, ``[key]`` and ``.0`` look up object keys and list
    items (negative indexes count from the end); objects never expose methods, so
    ``inputs.items`` is the input named ``items``. A ``-`` between two name
    characters belongs to the name, so ``{{ start-up.status }}`` reads step
    ``start-up``; write ``a - b`` with spaces to subtract.

Values
    A string that is exactly one placeholder (spaces allowed inside the braces,
    nothing outside) yields the raw JSON value: number, boolean, null, list or
    object. Otherwise each value becomes text JSON-style: strings as they are,
    ``true``/``false``, ``null``, numbers as JSON writes them, lists and objects as
    compact JSON. ``~`` joins values as text by the same rule, and the ``string``
    and ``join`` filters use it too.

Missing values
    A path that does not exist is an error naming it ("'inputs.port' is not
    defined: the run has no input 'port'"), unless ``| default(...)`` supplies a
    value or ``is defined`` tests for it. Conditions see a missing single
    placeholder as *missing* instead (see :mod:`cuaflow.dsl.evaluate`).

Secrets
    ``{{secrets.NAME}}`` is never replaced by the secret's value here: it renders
    to the text ``{{secrets.NAME}}`` itself, so prompts, events and logs only ever
    hold the placeholder. The machine driver calls :func:`substitute_secrets` at
    the last moment. A secret can be joined with text (``'Bearer ' ~
    secrets.TOKEN``) but filters and comparisons only ever see the placeholder.

Limits
    A template is at most 10,000 characters; a rendered string or raw value at most
    1,000,000 characters (as JSON); integers made by ``*`` or ``**`` at most 64
    bits; one placeholder builds at most 10,000,000 characters of values in all.
    ``%`` on strings and every function or method call are refused (use filters:
    ``{{ name | upper }}``). Filters that could be abused to build huge values
    (center, indent, format, batch, slice, wordwrap, ...) and non-deterministic
    ones (random) are not available. Breaking a limit raises
    :class:`~cuaflow.errors.TemplateLimitExceeded`.
"""

from __future__ import annotations

import enum
import functools
import json
import math
import re
from collections.abc import Callable, Collection, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Final

import jinja2.exceptions
from jinja2 import StrictUndefined, Undefined, nodes, pass_environment
from jinja2.compiler import CodeGenerator, Frame
from jinja2.environment import TemplateExpression
from jinja2.filters import FILTERS, make_attrgetter
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.visitor import NodeTransformer

from cuaflow.errors import Loc, TemplateError, TemplateLimitExceeded

MAX_TEMPLATE_CHARS: Final = 10_000
MAX_VALUE_CHARS: Final = 1_000_000
MAX_WORK_CHARS: Final = 10_000_000
MAX_INT_BITS: Final = 64
MAX_DEPTH: Final = 100
SECRET_NAME_PATTERN: Final = r"[A-Za-z0-9_-]{1,128}"

__all__ = [
    "MAX_TEMPLATE_CHARS",
    "MAX_VALUE_CHARS",
    "MISSING",
    "Missing",
    "Reference",
    "iter_strings",
    "json_type_name",
    "parse_references",
    "render",
    "render_operand",
    "secret_names",
    "substitute_secrets",
]


class Missing(enum.Enum):
    """The type of :data:`MISSING`."""

    MISSING = "MISSING"

    def __repr__(self) -> str:
        return "MISSING"

    __str__ = __repr__


MISSING: Final = Missing.MISSING
"""What :func:`render_operand` returns for a placeholder whose path does not exist."""


@dataclass(frozen=True)
class Reference:
    """A variable path a template uses.

    ``root`` is the first name; ``path`` the constant keys after it, up to the first
    computed one: ``{{ start_up.output[vars.i].x | upper }}`` gives root
    ``start_up`` and path ``("output",)`` (and a second reference, ``vars.i``).
    ``text`` is the whole path written out, for messages: ``start_up.output``.
    """

    root: str
    path: tuple[str | int, ...]
    text: str


# --- values: JSON typing, sizing and text -------------------------------------------------


def json_type_name(value: Any) -> str:
    """The JSON name of a value's type (``string``, ``number``, ``object`` ...)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list | tuple):
        return "array"
    if isinstance(value, Mapping):
        return "object"
    return type(value).__name__


class _Meter:
    """Counts characters against a limit so a value is measured before it is built."""

    def __init__(self, limit: int, what: str) -> None:
        self.used = 0
        self.limit = limit
        self.what = what

    def add(self, amount: int) -> None:
        self.used += amount
        if self.used > self.limit:
            raise TemplateLimitExceeded(f"{self.what} would exceed {self.limit:,} characters")


_WORK: ContextVar[_Meter | None] = ContextVar("cuaflow_template_work", default=None)


def _charge(amount: int) -> None:
    meter = _WORK.get()
    if meter is not None:
        meter.add(amount)


def _measure(value: Any, limit: int = MAX_VALUE_CHARS) -> int:
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


def _check_size(value: Any) -> None:
    size = _measure(value)
    if size > MAX_VALUE_CHARS:
        raise TemplateLimitExceeded(f"a value would exceed {MAX_VALUE_CHARS:,} characters")
    _charge(size)


def _to_json(value: Any, meter: _Meter, depth: int = 0) -> Any:
    """A plain-JSON copy of a template result: tuples and iterators become lists."""
    if depth > MAX_DEPTH:
        raise TemplateLimitExceeded(f"a value is nested more than {MAX_DEPTH} levels deep")
    if isinstance(value, Undefined):
        str(value)  # StrictUndefined raises UndefinedError naming what is missing
    if value is None or isinstance(value, bool | int | float):
        meter.add(8)
        return value
    if isinstance(value, str):
        meter.add(len(value))
        return str(value)
    if isinstance(value, _SecretNames):
        raise TemplateError("secrets can only be used one at a time, as {{secrets.NAME}}")
    if isinstance(value, Mapping):
        meter.add(2)
        return {_json_key(key): _to_json(item, meter, depth + 1) for key, item in value.items()}
    if isinstance(value, list | tuple | Iterator):
        meter.add(2)
        return [_to_json(item, meter, depth + 1) for item in value]
    raise TemplateError(f"a {type(value).__name__} cannot be used as a value")


def _json_key(key: Any) -> str:
    if isinstance(key, str):
        return str(key)
    if key is None or isinstance(key, bool | int | float):
        return json.dumps(key)
    raise TemplateError(f"an object key cannot be a {type(key).__name__}")


def _to_text(value: Any, meter: _Meter | None = None) -> str:
    """Text for a value: strings unchanged, anything else as compact JSON."""
    if isinstance(value, str) and not isinstance(value, Undefined):
        text = str(value)
    else:
        plain = _to_json(value, _Meter(MAX_VALUE_CHARS, "a value"))
        try:
            text = json.dumps(plain, ensure_ascii=False, separators=(",", ":"))
        except ValueError as error:  # an integer too long to write out
            raise TemplateLimitExceeded(f"a value cannot be written as text: {error}") from None
    if meter is not None:
        meter.add(len(text))
    return text


# --- secrets ---------------------------------------------------------------------------------

_SECRET_PLACEHOLDER = re.compile(r"\{\{\s*secrets\.(" + SECRET_NAME_PATTERN + r")\s*\}\}")
_SECRET_NAME = re.compile(SECRET_NAME_PATTERN)


class _SecretNames(Mapping[str, str]):
    """The ``secrets`` root: maps each name to its own placeholder, never to a value."""

    def __init__(self, known: Collection[str] | None) -> None:
        self._known = None if known is None else frozenset(known)

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str) or not _SECRET_NAME.fullmatch(name):
            return False
        return self._known is None or name in self._known

    def __getitem__(self, name: str) -> str:
        if name not in self:
            raise KeyError(name)
        return "{{secrets." + name + "}}"

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._known or ()))

    def __len__(self) -> int:
        return len(self._known or ())


def secret_names(text: str) -> set[str]:
    """The names of every ``{{secrets.NAME}}`` placeholder in rendered ``text``."""
    return set(_SECRET_PLACEHOLDER.findall(text))


def substitute_secrets(text: str, secrets: Mapping[str, str]) -> str:
    """Replace each ``{{secrets.NAME}}`` in rendered ``text`` with the secret's value.

    Only the machine driver calls this, right before typing or running ``text``.
    Raises :class:`~cuaflow.errors.TemplateError` naming a secret that is not set.
    """
    unknown = sorted(secret_names(text) - secrets.keys())
    if unknown:
        raise TemplateError(f"secret {unknown[0]!r} is not set")
    return _SECRET_PLACEHOLDER.sub(lambda match: secrets[match.group(1)], text)


# --- paths -----------------------------------------------------------------------------------


def _step_into(obj: Any, key: Any) -> Any:
    """Look ``key`` up in ``obj`` by the template rules: data only, never attributes."""
    if isinstance(obj, Mapping):
        if isinstance(key, str | int) and not isinstance(key, bool):
            if key in obj:
                return obj[key]
            if isinstance(key, int) and str(key) in obj:
                return obj[str(key)]
        return MISSING
    if isinstance(key, str) and key.startswith("_"):
        raise TemplateError(f"'{key}' cannot be read from {_a(json_type_name(obj))}")
    if isinstance(obj, list | tuple | str) and isinstance(key, int) and not isinstance(key, bool):
        return obj[key] if -len(obj) <= key < len(obj) else MISSING
    return MISSING


def _a(noun: str) -> str:
    return f"an {noun}" if noun[:1] in "aeiou" else f"a {noun}"


def _path_text(path: tuple[str | int, ...]) -> str:
    text = str(path[0])
    for key in path[1:]:
        simple = isinstance(key, int) or re.fullmatch(r"[A-Za-z0-9_-]+", key)
        text += f".{key}" if simple else f"[{key!r}]"
    return text


def _lookup(roots: Mapping[str, Any], path: tuple[str | int, ...]) -> Any:
    value: Any = roots
    for key in path:
        value = _step_into(value, key)
        if value is MISSING:
            return MISSING
    return value


def _missing_message(roots: Mapping[str, Any], path: tuple[str | int, ...]) -> str | None:
    """Why ``path`` does not resolve, or None when it does."""
    text, value = _path_text(path), _step_into(roots, path[0])
    if value is MISSING:
        hint = " (to subtract, put spaces around '-')" if "-" in str(path[0]) else ""
        return (
            f"'{text}' is not defined: there is no step, input or variable named "
            f"'{path[0]}' at this point{hint}"
        )
    for depth, key in enumerate(path[1:], start=1):
        found = _step_into(value, key)
        if found is MISSING:
            return f"'{text}' is not defined: {_lacks(path[:depth], value, key)}"
        value = found
    return None


def _lacks(parent: tuple[str | int, ...], value: Any, key: str | int) -> str:
    if len(parent) == 1 and parent[0] in ("inputs", "vars", "secrets"):
        noun = {"inputs": "the run has no input", "vars": "no variable is named"}
        return f"{noun.get(str(parent[0]), 'no secret is named')} '{key}' here"
    owner = f"step '{parent[0]}'" if len(parent) == 1 else f"'{_path_text(parent)}'"
    if isinstance(value, list | tuple):
        return f"{owner} has {len(value)} item(s), so no item {key}"
    if not isinstance(value, Mapping):
        return f"{owner} is {_a(json_type_name(value))}, which has no field '{key}'"
    return f"{owner} has no field '{key}'"


# --- the sandbox -----------------------------------------------------------------------------

_ROOTS: Final = "__cuaflow_roots__"


class _GuardedCodeGenerator(CodeGenerator):
    """Routes ``~`` through the environment so joined text is measured and JSON-styled."""

    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:  # noqa: N802 - Jinja dispatches on node class names
        self.write("environment.concat_as_text((")
        for argument in node.nodes:
            self.visit(argument, frame)
            self.write(", ")
        self.write("))")


class _Sandbox(ImmutableSandboxedEnvironment):
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
        value = _step_into(obj, argument)
        return self.undefined(obj=obj, name=argument) if value is MISSING else value

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805 - Jinja's signature
        raise TemplateError(
            "templates cannot call functions or methods; use a filter, e.g. {{ name | upper }}"
        )

    def call_binop(self, context: Any, operator_: str, left: Any, right: Any) -> Any:
        if operator_ == "%" and isinstance(left, str):
            raise TemplateError("'%' formatting is not supported; join text with '~'")
        if operator_ == "**":
            _check_power(left, right)
        if operator_ in ("*", "+") and (_is_sequence(left) or _is_sequence(right)):
            projected = _projected_size(operator_, left, right)
            if projected > MAX_VALUE_CHARS:
                raise TemplateLimitExceeded(
                    f"'{operator_}' would build a value over {MAX_VALUE_CHARS:,} characters"
                )
            _charge(projected)
        result = self.binop_table[operator_](left, right)
        if operator_ in ("*", "**") and _is_int(result) and result.bit_length() > MAX_INT_BITS:
            raise TemplateLimitExceeded(f"'{operator_}' made an integer over {MAX_INT_BITS} bits")
        return result

    def concat_as_text(self, parts: tuple[Any, ...]) -> str:
        """Join the operands of ``~`` as text, by the same rule as interpolation."""
        meter = _Meter(MAX_VALUE_CHARS, "text joined with '~'")
        text = "".join(_to_text(part, meter) for part in parts)
        _charge(len(text))
        return text


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_sequence(value: Any) -> bool:
    return isinstance(value, str | list | tuple)


def _projected_size(operator_: str, left: Any, right: Any) -> int:
    if operator_ == "+":
        return _measure(left) + _measure(right)
    sequence, times = (left, right) if _is_sequence(left) else (right, left)
    if not isinstance(times, int):
        return 0  # Python raises TypeError for a non-integer count
    size = len(sequence) if isinstance(sequence, str) else _measure(sequence)
    return size * max(times, 0)


def _check_power(base: Any, exponent: Any) -> None:
    if not (isinstance(base, int) and isinstance(exponent, int)) or exponent <= 0:
        return  # floats overflow quickly on their own; negative powers give small floats
    if abs(base) > 1 and (
        exponent > MAX_INT_BITS or exponent * math.log2(abs(base)) > MAX_INT_BITS + 1
    ):
        raise TemplateLimitExceeded(f"'**' would make an integer over {MAX_INT_BITS} bits")


def _guarded(function: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a filter so its inputs and result are measured and charged to the work limit."""

    @functools.wraps(function)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        for argument in (*args, *kwargs.values()):
            _check_size(argument)
        result = function(*args, **kwargs)
        _check_size(result)
        return result

    return guarded


def _string(value: Any) -> str:
    return _to_text(value)


@pass_environment
def _join(
    environment: _Sandbox, value: Any, d: Any = "", attribute: str | int | None = None
) -> str:
    if attribute is not None:
        value = map(make_attrgetter(environment, attribute), value)
    separator, meter = _to_text(d), _Meter(MAX_VALUE_CHARS, "the joined text")
    parts = []
    for item in value:
        parts.append(_to_text(item, meter))
        meter.add(len(separator))
    return separator.join(parts)


def _replace(value: Any, old: Any, new: Any, count: int | None = None) -> str:
    text, old_text, new_text = _to_text(value), _to_text(old), _to_text(new)
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
    environment: _Sandbox, iterable: Any, attribute: str | int | None = None, start: Any = 0
) -> Any:
    if not isinstance(start, int | float):
        raise TemplateError("sum: adds numbers only")
    if attribute is not None:
        iterable = map(make_attrgetter(environment, attribute), iterable)
    return sum(iterable, start)


def _tojson(value: Any, indent: int | None = None) -> str:
    if indent is not None and not (isinstance(indent, int) and 0 <= indent <= 8):
        raise TemplateError("tojson: indent must be a whole number from 0 to 8")
    plain = _to_json(value, _Meter(MAX_VALUE_CHARS, "tojson"))
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


def _make_environment() -> _Sandbox:
    environment = _Sandbox(
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


_ENVIRONMENT: Final = _make_environment()


# --- compiling -------------------------------------------------------------------------------

_PLACEHOLDER_TOKEN = re.compile(
    r"""'[^'\\]*(?:\\.[^'\\]*)*'|"[^"\\]*(?:\\.[^"\\]*)*"|\}\}|[{}()\[\]'"]""", re.S
)
_HYPHENATED = re.compile(
    r"""(?P<string>'[^'\\]*(?:\\.[^'\\]*)*'|"[^"\\]*(?:\\.[^"\\]*)*")
      | (?P<number>(?<![\w.])\d[\d_]*(?:\.\d[\d_]*)?(?:[eE][+-]?\d[\d_]*)?)
      | \.(?P<attribute>[A-Za-z0-9_]+(?:-[A-Za-z0-9_]+)+)
      | (?<![\w.])(?P<root>[A-Za-z_][A-Za-z0-9_]*(?:-[A-Za-z0-9_]+)+)""",
    re.S | re.X,
)


@dataclass(frozen=True)
class _Expression:
    source: str
    references: tuple[Reference, ...]
    path: tuple[str | int, ...] | None  # set when the expression is nothing but a path
    function: TemplateExpression


@dataclass(frozen=True)
class _Compiled:
    parts: tuple[str | _Expression, ...]

    @property
    def single(self) -> _Expression | None:
        only = self.parts[0] if len(self.parts) == 1 else None
        return only if isinstance(only, _Expression) else None


def _split(text: str) -> Iterator[tuple[bool, str]]:
    """Yield ``(is_placeholder, text)`` pieces, matching ``}}`` the way Jinja's lexer does."""
    position = 0
    while (start := text.find("{{", position)) != -1:
        if start > position:
            yield False, text[position:start]
        cursor, depth = start + 2, 0
        while True:
            match = _PLACEHOLDER_TOKEN.search(text, cursor)
            if match is None:
                raise TemplateError(f"'{{{{' at character {start} is never closed by '}}}}'")
            token, cursor = match.group(), match.end()
            if token in ("'", '"'):
                raise TemplateError(f"unterminated string at character {match.start()}")
            if token == "}}" and depth == 0:
                break
            if token in ("{", "(", "["):
                depth += 1
            elif token in ("}", ")", "]", "}}"):
                depth = max(depth - 1, 0)
                cursor = match.start() + 1
        yield True, text[start + 2 : match.start()]
        position = cursor
    if position < len(text):
        yield False, text[position:]


def _rewrite_hyphens(source: str) -> str:
    def replace(match: re.Match[str]) -> str:
        if match.group("attribute"):
            return f"[{match.group('attribute')!r}]"
        if match.group("root"):
            return f"{_ROOTS}[{match.group('root')!r}]"
        return match.group()

    return _HYPHENATED.sub(replace, source)


def _chain(node: nodes.Node) -> tuple[nodes.Node, list[str | int], list[nodes.Node]]:
    """Unwind ``a.b[c].d``: the base node, the leading constant keys, the dynamic keys."""
    keys: list[str | int] = []
    dynamic: list[nodes.Node] = []
    while True:
        if isinstance(node, nodes.Getattr):
            keys.append(node.attr)
        elif isinstance(node, nodes.Getitem):
            key = _constant_key(node.arg)
            if key is None:
                dynamic.append(node.arg)
                keys.clear()  # keys after a dynamic one are not part of the constant path
            else:
                keys.append(key)
        else:
            break
        node = node.node
    keys.reverse()
    if isinstance(node, nodes.Name) and node.name != _ROOTS:
        keys.insert(0, node.name)
    elif not (isinstance(node, nodes.Name) and keys):
        keys.clear()
    return node, keys, dynamic


def _constant_key(node: nodes.Node) -> str | int | None:
    if isinstance(node, nodes.Const) and isinstance(node.value, str | int):
        return None if isinstance(node.value, bool) else node.value
    return None


def _references(node: nodes.Node, found: dict[tuple[str | int, ...], Reference]) -> None:
    if isinstance(node, nodes.Getattr | nodes.Getitem | nodes.Name):
        base, keys, dynamic = _chain(node)
        if keys:
            path = tuple(keys)
            found.setdefault(path, Reference(str(path[0]), path[1:], _path_text(path)))
        for child in (*dynamic, *([] if isinstance(base, nodes.Name) else [base])):
            _references(child, found)
        return
    for child in node.iter_child_nodes():
        _references(child, found)


class _RootLookups(NodeTransformer):
    """Turn every name into a lookup in the roots, so no name means anything to Jinja."""

    def visit_Name(self, node: nodes.Name) -> nodes.Node:  # noqa: N802 - Jinja dispatches on node class names
        if node.ctx != "load" or node.name == _ROOTS:
            return node
        return nodes.Getitem(
            nodes.Name(_ROOTS, "load"), nodes.Const(node.name), "load", lineno=node.lineno
        )


def _compile_expression(source: str) -> _Expression:
    shown = "{{" + source + "}}"
    try:
        # The spaces keep Jinja from reading a leading or trailing '-' as whitespace control.
        tree = _ENVIRONMENT.parse("{{ " + _rewrite_hyphens(source) + " }}")
        output = tree.body[0] if len(tree.body) == 1 else None
        if not (isinstance(output, nodes.Output) and len(output.nodes) == 1):
            raise TemplateError(f"{shown} must hold exactly one expression")
        expression = output.nodes[0]
        found: dict[tuple[str | int, ...], Reference] = {}
        _references(expression, found)
        base, keys, dynamic = _chain(expression)
        plain = tuple(keys) if keys and not dynamic and isinstance(base, nodes.Name) else None
        assign = nodes.Assign(nodes.Name("result", "store"), _RootLookups().visit(expression))
        module = nodes.Template([assign], lineno=1)
        module.set_environment(_ENVIRONMENT)
        function = TemplateExpression(_ENVIRONMENT.from_string(module), undefined_to_none=False)
    except jinja2.exceptions.TemplateSyntaxError as error:
        raise TemplateError(f"invalid template {shown}: {error.message}") from None
    except RecursionError:
        raise TemplateLimitExceeded(f"{shown} is nested too deeply") from None
    except (SyntaxError, jinja2.exceptions.TemplateError) as error:
        raise TemplateError(f"invalid template {shown}: {error}") from None
    return _Expression(source, tuple(found.values()), plain, function)


@functools.lru_cache(maxsize=4096)
def _compile(text: str) -> _Compiled:
    if len(text) > MAX_TEMPLATE_CHARS:
        raise TemplateLimitExceeded(
            f"a template is {len(text):,} characters long; the limit is {MAX_TEMPLATE_CHARS:,}"
        )
    parts = [_compile_expression(piece) if active else piece for active, piece in _split(text)]
    return _Compiled(tuple(parts))


# --- rendering -------------------------------------------------------------------------------


def _prepare(context: Mapping[str, Any]) -> dict[str, Any]:
    roots = dict(context)
    secrets = roots.get("secrets")
    known = secrets if isinstance(secrets, Collection) and not isinstance(secrets, str) else None
    roots["secrets"] = _SecretNames(known)
    return roots


def _evaluate(expression: _Expression, roots: Mapping[str, Any], meter: _Meter) -> Any:
    """The expression's JSON value, or MISSING when a value it needs is undefined."""
    if expression.path is not None:
        value = _lookup(roots, expression.path)
        return value if value is MISSING else _to_json(value, meter)
    token = _WORK.set(_Meter(MAX_WORK_CHARS, "the template's work"))
    try:
        return _to_json(expression.function({_ROOTS: roots}), meter)
    except jinja2.exceptions.UndefinedError:
        return MISSING
    except TemplateError:
        raise
    except (RecursionError, MemoryError):
        raise TemplateLimitExceeded(f"{{{{{expression.source}}}}} needs too much work") from None
    except OverflowError:
        raise TemplateLimitExceeded(
            f"{{{{{expression.source}}}}} makes a number too large"
        ) from None
    except Exception as error:
        kind = "" if isinstance(error, jinja2.exceptions.TemplateError) else "cannot evaluate: "
        raise TemplateError(f"{{{{{expression.source}}}}}: {kind}{error}") from None
    finally:
        _WORK.reset(token)


def _missing_error(expression: _Expression, roots: Mapping[str, Any]) -> TemplateError:
    for reference in expression.references:
        message = _missing_message(roots, (reference.root, *reference.path))
        if message is not None:
            return TemplateError(message)
    return TemplateError(f"{{{{{expression.source}}}}} uses a value that is not defined")


def _render_text(text: str, roots: Mapping[str, Any], *, operand: bool) -> Any:
    if "{{" not in text:
        return text
    compiled = _compile(text)
    meter = _Meter(MAX_VALUE_CHARS, "the rendered value")
    if (single := compiled.single) is not None:
        value = _evaluate(single, roots, meter)
        if value is MISSING and not operand:
            raise _missing_error(single, roots)
        return value
    pieces = []
    for part in compiled.parts:
        if isinstance(part, str):
            meter.add(len(part))
            pieces.append(part)
            continue
        value = _evaluate(part, roots, _Meter(MAX_VALUE_CHARS, "the rendered value"))
        if value is MISSING:
            raise _missing_error(part, roots)
        piece = _to_text(value)
        meter.add(len(piece))
        pieces.append(piece)
    return "".join(pieces)


def _render_value(value: Any, roots: Mapping[str, Any]) -> Any:
    if isinstance(value, str):
        return _render_text(value, roots, operand=False)
    if isinstance(value, dict):
        return {key: _render_value(item, roots) for key, item in value.items()}
    if isinstance(value, list):
        return [_render_value(item, roots) for item in value]
    return value


def render(value: Any, context: Mapping[str, Any]) -> Any:
    """Render every template inside ``value`` (strings, through dicts and lists).

    ``context`` maps root names (``inputs``, ``vars``, ``secrets``, step ids) to
    their values. Dict keys and non-string values are returned unchanged.
    Raises :class:`~cuaflow.errors.TemplateError` (or ``TemplateLimitExceeded``).
    """
    if isinstance(value, str) and "{{" not in value:
        return value
    return _render_value(value, _prepare(context))


def render_operand(value: Any, context: Mapping[str, Any]) -> Any:
    """Render a condition operand; a lone placeholder whose path is undefined gives MISSING.

    Text mixed with an undefined placeholder still raises
    :class:`~cuaflow.errors.TemplateError`, as in :func:`render`.
    """
    if isinstance(value, str):
        return _render_text(value, _prepare(context), operand=True) if "{{" in value else value
    return render(value, context)


# --- static inspection -----------------------------------------------------------------------


def parse_references(text: str) -> list[Reference]:
    """Every variable path the templates in ``text`` use, in order, without duplicates.

    Raises :class:`~cuaflow.errors.TemplateError` for bad syntax or unknown filters,
    so a validator can report them when the workflow is saved.
    """
    if "{{" not in text:
        return []
    found: dict[tuple[str | int, ...], Reference] = {}
    for part in _compile(text).parts:
        if isinstance(part, _Expression):
            for reference in part.references:
                found.setdefault((reference.root, *reference.path), reference)
    return list(found.values())


def iter_strings(value: Any) -> Iterator[tuple[Loc, str]]:
    """Yield every string inside a JSON value with its location (keys and indexes)."""
    stack: list[tuple[Loc, Any]] = [((), value)]
    while stack:
        loc, item = stack.pop()
        if isinstance(item, str):
            yield loc, item
        elif isinstance(item, Mapping):
            stack.extend(((*loc, key), child) for key, child in reversed(list(item.items())))
        elif isinstance(item, list | tuple):
            stack.extend(((*loc, index), child) for index, child in reversed(list(enumerate(item))))
