"""Template values: JSON-style conversion to values and text, and data-only path lookup.

Whatever a placeholder yields is turned into plain JSON (:func:`to_json`) or into
text by the JSON-style rule of :mod:`cuaflow.dsl.templates` (:func:`to_text`:
strings as they are, anything else as compact JSON). Paths such as
``inputs.items.0`` are looked up in data only, never in attributes
(:func:`step_into`, :func:`lookup`); a path that does not exist gives
:data:`MISSING`, and :func:`missing_message` says which part is missing and why.
"""

from __future__ import annotations

import enum
import json
import re
from collections.abc import Iterator, Mapping
from typing import Any, Final

from jinja2 import Undefined

from cuaflow.dsl.template_limits import MAX_DEPTH, MAX_VALUE_CHARS, Meter
from cuaflow.dsl.template_secrets import SecretNames
from cuaflow.errors import TemplateError, TemplateLimitExceeded


class Missing(enum.Enum):
    """The type of :data:`MISSING`."""

    MISSING = "MISSING"

    def __repr__(self) -> str:
        return "MISSING"

    __str__ = __repr__


MISSING: Final = Missing.MISSING
"""What a lookup (and :func:`~cuaflow.dsl.templates.render_operand`) gives for a path that does
not exist."""


# --- JSON typing and text -------------------------------------------------------------------


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


def to_json(value: Any, meter: Meter, depth: int = 0) -> Any:
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
    if isinstance(value, SecretNames):
        raise TemplateError("secrets can only be used one at a time, as {{secrets.NAME}}")
    if isinstance(value, Mapping):
        meter.add(2)
        return {_json_key(key): to_json(item, meter, depth + 1) for key, item in value.items()}
    if isinstance(value, list | tuple | Iterator):
        meter.add(2)
        return [to_json(item, meter, depth + 1) for item in value]
    raise TemplateError(f"a {type(value).__name__} cannot be used as a value")


def _json_key(key: Any) -> str:
    if isinstance(key, str):
        return str(key)
    if key is None or isinstance(key, bool | int | float):
        return json.dumps(key)
    raise TemplateError(f"an object key cannot be a {type(key).__name__}")


def to_text(value: Any, meter: Meter | None = None) -> str:
    """Text for a value: strings unchanged, anything else as compact JSON."""
    if isinstance(value, str) and not isinstance(value, Undefined):
        text = str(value)
    else:
        plain = to_json(value, Meter(MAX_VALUE_CHARS, "a value"))
        try:
            text = json.dumps(plain, ensure_ascii=False, separators=(",", ":"))
        except ValueError as error:  # an integer too long to write out
            raise TemplateLimitExceeded(f"a value cannot be written as text: {error}") from None
    if meter is not None:
        meter.add(len(text))
    return text


# --- paths -----------------------------------------------------------------------------------


def step_into(obj: Any, key: Any) -> Any:
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


def path_text(path: tuple[str | int, ...]) -> str:
    """A path written out for messages: ``start_up.output.rows.0``, ``inputs['a b']``."""
    text = str(path[0])
    for key in path[1:]:
        simple = isinstance(key, int) or re.fullmatch(r"[A-Za-z0-9_-]+", key)
        text += f".{key}" if simple else f"[{key!r}]"
    return text


def lookup(roots: Mapping[str, Any], path: tuple[str | int, ...]) -> Any:
    """The value at ``path`` from the roots, or :data:`MISSING`."""
    value: Any = roots
    for key in path:
        value = step_into(value, key)
        if value is MISSING:
            return MISSING
    return value


def missing_message(roots: Mapping[str, Any], path: tuple[str | int, ...]) -> str | None:
    """Why ``path`` does not resolve, or None when it does."""
    text, value = path_text(path), step_into(roots, path[0])
    if value is MISSING:
        hint = " (to subtract, put spaces around '-')" if "-" in str(path[0]) else ""
        return (
            f"'{text}' is not defined: there is no step, input or variable named "
            f"'{path[0]}' at this point{hint}"
        )
    for depth, key in enumerate(path[1:], start=1):
        found = step_into(value, key)
        if found is MISSING:
            return f"'{text}' is not defined: {_lacks(path[:depth], value, key)}"
        value = found
    return None


def _lacks(parent: tuple[str | int, ...], value: Any, key: str | int) -> str:
    if len(parent) == 1 and parent[0] in ("inputs", "vars", "secrets"):
        noun = {"inputs": "the run has no input", "vars": "no variable is named"}
        return f"{noun.get(str(parent[0]), 'no secret is named')} '{key}' here"
    owner = f"step '{parent[0]}'" if len(parent) == 1 else f"'{path_text(parent)}'"
    if isinstance(value, list | tuple):
        return f"{owner} has {len(value)} item(s), so no item {key}"
    if not isinstance(value, Mapping):
        return f"{owner} is {_a(json_type_name(value))}, which has no field '{key}'"
    return f"{owner} has no field '{key}'"
