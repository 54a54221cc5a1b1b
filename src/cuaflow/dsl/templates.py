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

This module splits text into placeholders, renders it and inspects it statically;
it is the one place the rest of cuaflow imports template names from. The parts
live beside it: :mod:`~cuaflow.dsl.template_expressions` compiles and evaluates
one placeholder, :mod:`~cuaflow.dsl.template_sandbox` is the Jinja environment
with its filters and operator checks, :mod:`~cuaflow.dsl.template_limits` the
limits and work meters, :mod:`~cuaflow.dsl.template_values` JSON-style values,
text and data-only path lookup, and :mod:`~cuaflow.dsl.template_secrets` the
``secrets`` placeholders.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from cuaflow.dsl.template_expressions import (
    Expression,
    Reference,
    compile_expression,
    evaluate,
    missing_error,
)
from cuaflow.dsl.template_limits import (
    MAX_DEPTH,
    MAX_INT_BITS,
    MAX_TEMPLATE_CHARS,
    MAX_VALUE_CHARS,
    MAX_WORK_CHARS,
    Meter,
)
from cuaflow.dsl.template_secrets import (
    SECRET_NAME_PATTERN,
    SecretNames,
    secret_names,
    substitute_secrets,
)
from cuaflow.dsl.template_values import MISSING, Missing, json_type_name, to_text
from cuaflow.errors import Loc, TemplateError, TemplateLimitExceeded

__all__ = [
    "MAX_DEPTH",
    "MAX_INT_BITS",
    "MAX_TEMPLATE_CHARS",
    "MAX_VALUE_CHARS",
    "MAX_WORK_CHARS",
    "MISSING",
    "SECRET_NAME_PATTERN",
    "Missing",
    "Reference",
    "is_single_placeholder",
    "iter_strings",
    "json_type_name",
    "parse_references",
    "render",
    "render_operand",
    "secret_names",
    "substitute_secrets",
]


# --- splitting and compiling -----------------------------------------------------------------

_PLACEHOLDER_TOKEN = re.compile(
    r"""'[^'\\]*(?:\\.[^'\\]*)*'|"[^"\\]*(?:\\.[^"\\]*)*"|\}\}|[{}()\[\]'"]""", re.S
)


@dataclass(frozen=True)
class _Compiled:
    parts: tuple[str | Expression, ...]

    @property
    def single(self) -> Expression | None:
        only = self.parts[0] if len(self.parts) == 1 else None
        return only if isinstance(only, Expression) else None


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


def is_single_placeholder(text: str) -> bool:
    """Whether ``text`` is exactly one placeholder, which renders to a raw JSON value.

    This is the renderer's own rule: spaces inside the braces are allowed, nothing
    outside them. Text whose braces or quotes do not close is not a placeholder.
    """
    if "{{" not in text:
        return False
    try:
        pieces = list(_split(text))
    except TemplateError:
        return False
    return len(pieces) == 1 and pieces[0][0]


@functools.lru_cache(maxsize=4096)
def _compile(text: str) -> _Compiled:
    if len(text) > MAX_TEMPLATE_CHARS:
        raise TemplateLimitExceeded(
            f"a template is {len(text):,} characters long; the limit is {MAX_TEMPLATE_CHARS:,}"
        )
    parts = [compile_expression(piece) if active else piece for active, piece in _split(text)]
    return _Compiled(tuple(parts))


# --- rendering -------------------------------------------------------------------------------


def _prepare(context: Mapping[str, Any]) -> dict[str, Any]:
    roots = dict(context)
    secrets = roots.get("secrets")
    known = secrets if isinstance(secrets, Collection) and not isinstance(secrets, str) else None
    roots["secrets"] = SecretNames(known)
    return roots


def _render_text(text: str, roots: Mapping[str, Any], *, operand: bool) -> Any:
    if "{{" not in text:
        return text
    compiled = _compile(text)
    meter = Meter(MAX_VALUE_CHARS, "the rendered value")
    if (single := compiled.single) is not None:
        value = evaluate(single, roots, meter)
        if value is MISSING and not operand:
            raise missing_error(single, roots)
        return value
    pieces = []
    for part in compiled.parts:
        if isinstance(part, str):
            meter.add(len(part))
            pieces.append(part)
            continue
        value = evaluate(part, roots, Meter(MAX_VALUE_CHARS, "the rendered value"))
        if value is MISSING:
            raise missing_error(part, roots)
        piece = to_text(value)
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
        if isinstance(part, Expression):
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
