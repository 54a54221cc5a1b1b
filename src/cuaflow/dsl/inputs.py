"""A workflow's ``inputs_schema``: normalising it, and checking a run's inputs against it.

Two spellings are accepted and both end up as one JSON Schema:

- **JSON Schema** (any draft jsonschema knows, Draft 2020-12 unless ``$schema``
  names another), checked against its meta-schema;
- **the reference's shape**, one entry per input:
  ``{"port": {"type": "integer", "required": true, "default": 8080, "description": "..."}}``,
  converted to ``{"type": "object", "properties": {...}, "required": [...]}``.

Telling them apart: a dict is read as JSON Schema when its top-level ``type``
is a string or a list, or when it uses a JSON Schema keyword at the top level
*unless* it also fits the reference shape exactly and the keyword is one whose
value could never be such an entry in JSON Schema (``{"title": {"type":
"string"}}`` is an input called ``title``; ``{"items": {"type": "string"}}`` is
JSON Schema, as its ``items`` is a valid subschema). A dict with no JSON Schema
keyword is read as the reference shape, so a typo such as ``{"type": "int"}``
in an entry is reported instead of being silently ignored. ``{}`` declares
nothing and accepts any inputs.

Normalising is idempotent: a normalised schema is JSON Schema and stays as it is.
"""

from __future__ import annotations

import copy
import json
import re
from typing import Any

import referencing

# jsonschema ships no type hints and types-jsonschema is not a dependency.
from jsonschema import (  # type: ignore[import-untyped]
    Draft7Validator,
    Draft202012Validator,
    validators,
)
from jsonschema.exceptions import (  # type: ignore[import-untyped]
    ValidationError,
    best_match,
)
from referencing.exceptions import Unresolvable

from cuaflow.errors import Issue, Loc, WorkflowInvalid

MAX_INPUTS_BYTES = 1_000_000
MAX_ISSUES = 100
INPUT_TYPES = ("string", "number", "integer", "boolean", "object", "array")
_ENTRY_KEYS = frozenset({"type", "required", "default", "description"})
# Keywords whose value is itself one schema: a reference-shape entry under such a
# key is also a valid JSON Schema, so the keyword wins.
_SUBSCHEMA_KEYWORDS = frozenset(
    {
        "items",
        "additionalItems",
        "additionalProperties",
        "unevaluatedItems",
        "unevaluatedProperties",
        "contains",
        "propertyNames",
        "not",
        "if",
        "then",
        "else",
        "contentSchema",
    }
)
# Keywords that validate (taken from jsonschema itself) plus the annotations and
# identifiers, which validate nothing but still mark a document as JSON Schema.
_SCHEMA_KEYWORDS = (
    frozenset(Draft202012Validator.VALIDATORS)
    | frozenset(Draft7Validator.VALIDATORS)
    | _SUBSCHEMA_KEYWORDS
    | {"$schema", "$id", "$defs", "definitions", "$anchor", "$dynamicAnchor", "$comment"}
    | {"$vocabulary", "title", "description", "default", "examples", "deprecated"}
    | {"readOnly", "writeOnly", "contentEncoding", "contentMediaType", "minContains"}
    | {"maxContains"}
)


def inputs_schema_issues(raw: Any) -> tuple[dict[str, Any] | None, list[Issue]]:
    """Normalise ``raw`` to a JSON Schema; on any problem return ``None`` and the issues.

    Issues are located under ``("inputs_schema", ...)``.
    """
    if raw is None:
        return None, []
    if not isinstance(raw, dict):
        return None, [Issue(("inputs_schema",), "must be an object (a JSON Schema)")]
    if _is_json_schema(raw):
        issues = _meta_schema_issues(raw)
        return (None if issues else raw), issues
    return _from_reference_shape(raw)


def normalize_inputs_schema(schema: Any) -> dict[str, Any] | None:
    """The JSON Schema form of ``schema`` (``None`` if absent); raises ``WorkflowInvalid``."""
    normalised, issues = inputs_schema_issues(schema)
    if issues:
        raise WorkflowInvalid(issues)
    return normalised


def check_inputs(schema: dict[str, Any] | None, inputs: Any) -> tuple[dict[str, Any], list[Issue]]:
    """Apply top-level defaults to a run's ``inputs`` and check them against ``schema``.

    Returns the inputs with defaults filled in and the issues, located under
    ``("inputs", ...)``. Inputs above :data:`MAX_INPUTS_BYTES` of JSON are refused unread.
    """
    if inputs is None:
        inputs = {}
    if not isinstance(inputs, dict):
        return {}, [Issue(("inputs",), "inputs must be an object")]
    try:
        size = len(json.dumps(inputs, ensure_ascii=False, separators=(",", ":")).encode())
    except (TypeError, ValueError, RecursionError):
        return {}, [Issue(("inputs",), "inputs must be plain JSON (objects, lists, strings...)")]
    if size > MAX_INPUTS_BYTES:
        return {}, [Issue(("inputs",), f"inputs are {size} bytes of JSON; the limit is 1 MB")]
    if schema is None:
        return inputs, []
    filled = dict(inputs)
    properties = schema.get("properties")
    if isinstance(properties, dict):
        for name, spec in properties.items():
            if name not in filled and isinstance(spec, dict) and "default" in spec:
                filled[name] = copy.deepcopy(spec["default"])
    return filled, _instance_issues(schema, filled)


def input_is_declared(schema: dict[str, Any] | None, name: str) -> bool:
    """Whether ``{{inputs.<name>}}`` names an input ``schema`` allows.

    A schema that lists ``properties`` and does not open the object up again
    (``additionalProperties`` absent or false) allows only those names (and any
    matching ``patternProperties``), so a misspelt input is caught when saving.
    """
    if schema is None or not isinstance(schema.get("properties"), dict):
        return True
    if name in schema["properties"]:
        return True
    additional = schema.get("additionalProperties", False)
    if additional is not False and additional is not None:
        return True
    patterns = schema.get("patternProperties")
    if isinstance(patterns, dict):
        return any(_safe_search(pattern, name) for pattern in patterns)
    return False


def _safe_search(pattern: str, name: str) -> bool:
    try:
        return re.search(pattern, name) is not None
    except re.error:
        return False


def _is_json_schema(raw: dict[str, Any]) -> bool:
    if not raw or isinstance(raw.get("type"), str | list):
        return True
    keywords = raw.keys() & _SCHEMA_KEYWORDS
    if not keywords:
        return False
    fits_reference = all(_looks_like_entry(value) for value in raw.values())
    return not fits_reference or bool(keywords & _SUBSCHEMA_KEYWORDS)


def _looks_like_entry(value: Any) -> bool:
    return (
        isinstance(value, dict)
        and value.keys() <= _ENTRY_KEYS
        and isinstance(value.get("type"), str)
        and value["type"] in INPUT_TYPES
    )


def _validator_class(schema: dict[str, Any]) -> Any:
    return validators.validator_for(schema, default=Draft202012Validator)


def _meta_schema_issues(schema: dict[str, Any]) -> list[Issue]:
    cls = _validator_class(schema)
    meta_cls = validators.validator_for(cls.META_SCHEMA, default=cls)
    meta = meta_cls(cls.META_SCHEMA, format_checker=meta_cls.FORMAT_CHECKER)
    issues = []
    for error in meta.iter_errors(schema):
        # For anyOf/oneOf, the closest alternative says more than "not valid under any".
        detail = best_match(error.context) if error.context else error
        loc = ("inputs_schema", *error.absolute_path)
        issues.append(Issue(loc, f"not a valid JSON Schema: {detail.message}"))
        if len(issues) >= MAX_ISSUES:
            break
    return issues


def _from_reference_shape(raw: dict[str, Any]) -> tuple[dict[str, Any] | None, list[Issue]]:
    issues: list[Issue] = []
    properties: dict[str, Any] = {}
    required: list[str] = []
    for name, entry in raw.items():
        where: Loc = ("inputs_schema", name)
        if not isinstance(entry, dict):
            issues.append(
                Issue(where, f'input \'{name}\' must be an object such as {{"type": "string"}}')
            )
            continue
        for key in entry.keys() - _ENTRY_KEYS:
            issues.append(
                Issue(
                    (*where, key),
                    f"unknown field '{key}' for input '{name}';"
                    " expected type, required, default or description",
                )
            )
        kind = entry.get("type")
        if kind not in INPUT_TYPES:
            shown = "missing" if kind is None else f"{kind!r} is not an input type"
            issues.append(
                Issue(
                    (*where, "type"),
                    f"input '{name}': type {shown}; use one of {', '.join(INPUT_TYPES)}",
                )
            )
            continue
        if not isinstance(entry.get("required", False), bool):
            issues.append(
                Issue((*where, "required"), f"input '{name}': required must be true or false")
            )
        if not isinstance(entry.get("description", ""), str):
            issues.append(
                Issue((*where, "description"), f"input '{name}': description must be a string")
            )
        spec = {key: entry[key] for key in ("type", "default", "description") if key in entry}
        if "default" in entry and not Draft202012Validator({"type": kind}).is_valid(
            entry["default"]
        ):
            issues.append(
                Issue(
                    (*where, "default"),
                    f"input '{name}': default {entry['default']!r} is not of type '{kind}'",
                )
            )
        properties[name] = spec
        if entry.get("required") is True:
            required.append(name)
    if issues:
        return None, issues[:MAX_ISSUES]
    return {"type": "object", "properties": properties, "required": required}, []


def _instance_issues(schema: dict[str, Any], inputs: dict[str, Any]) -> list[Issue]:
    cls = _validator_class(schema)
    # An empty registry: a $ref to a remote URL is never fetched (it would let a
    # workflow author make the server issue requests); it fails to resolve instead.
    validator = cls(schema, registry=referencing.Registry(), format_checker=cls.FORMAT_CHECKER)
    issues: list[Issue] = []
    seen: set[Loc] = set()
    try:
        for error in validator.iter_errors(inputs):
            for issue in _describe(error):
                if issue.loc not in seen:
                    seen.add(issue.loc)
                    issues.append(issue)
            if len(issues) >= MAX_ISSUES:
                break
    except Unresolvable as exc:
        return [Issue(("inputs",), f"inputs_schema has a $ref that cannot be resolved: {exc}")]
    return issues[:MAX_ISSUES]


def _describe(error: ValidationError) -> list[Issue]:
    path = tuple(error.absolute_path)
    if error.validator == "required" and isinstance(error.instance, dict):
        missing = [n for n in error.validator_value if n not in error.instance]
        return [
            Issue(("inputs", *path, name), f"{_dotted((*path, name))} is required but missing")
            for name in missing
        ]
    return [Issue(("inputs", *path), f"{_dotted(path)}: {error.message}")]


def _dotted(path: Loc) -> str:
    return "inputs" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path)
