"""The one entry point from a workflow document to a checked :class:`Workflow`.

:func:`parse_workflow` reads JSON (text, bytes or already-decoded data),
bounds its size and nesting, normalises its spelling, checks its types with the
models and its cross-step rules with the validator, and raises
:class:`~cuaflow.errors.WorkflowInvalid` listing every problem at the user's own
JSON location.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from cuaflow.dsl.actions import ACTION_TYPES
from cuaflow.dsl.conditions import ALL_OPS
from cuaflow.dsl.inputs import inputs_schema_issues
from cuaflow.dsl.models import STEP_TYPES, Workflow
from cuaflow.dsl.normalize import LocMap, normalize
from cuaflow.dsl.validate import validate_workflow
from cuaflow.errors import Issue, Loc, WorkflowInvalid

MAX_DOCUMENT_BYTES = 1_048_576
MAX_JSON_DEPTH = 100


def parse_workflow(source: str | bytes | Any) -> Workflow:
    """Parse, normalise and validate a workflow document, or raise ``WorkflowInvalid``."""
    data = _decode(source)
    doc, locs, issues = normalize(data)
    if isinstance(doc, dict) and doc.get("inputs_schema") is not None:
        doc["inputs_schema"], schema_issues = inputs_schema_issues(doc["inputs_schema"])
        issues.extend(schema_issues)
    try:
        workflow = Workflow.model_validate(doc)
    except ValidationError as exc:
        issues.extend(_model_issues(exc, doc))
        raise WorkflowInvalid(_located(issues, locs)) from None
    issues.extend(validate_workflow(workflow))
    if issues:
        raise WorkflowInvalid(_located(issues, locs))
    return workflow


def _located(issues: list[Issue], locs: LocMap) -> list[Issue]:
    # Everything above works on canonical locations; users read their own.
    return [Issue(locs.original(issue.loc), issue.msg) for issue in issues]


def workflow_document(workflow: Workflow) -> dict[str, Any]:
    """The canonical JSON document of a workflow (parsing it gives the same workflow)."""
    return workflow.model_dump(mode="json", by_alias=True, exclude_none=True)


def _decode(source: str | bytes | Any) -> Any:
    if isinstance(source, str | bytes):
        size = len(source.encode() if isinstance(source, str) else source)
        if size > MAX_DOCUMENT_BYTES:
            raise WorkflowInvalid(
                [Issue((), f"document is {size} bytes; the limit is {MAX_DOCUMENT_BYTES}")]
            )
        try:
            data = json.loads(source)
        except json.JSONDecodeError as exc:
            raise WorkflowInvalid(
                [Issue((), f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}")]
            ) from None
        except RecursionError:
            data = None
            _raise_too_deep()
        except UnicodeDecodeError as exc:
            raise WorkflowInvalid([Issue((), f"not valid UTF-8: {exc.reason}")]) from None
    else:
        data = source
    if _depth(data) > MAX_JSON_DEPTH:
        _raise_too_deep()
    return data


def _raise_too_deep() -> None:
    raise WorkflowInvalid([Issue((), f"document is nested more than {MAX_JSON_DEPTH} levels deep")])


def _depth(value: Any) -> int:
    # Iterative, so a hostile document cannot exhaust the interpreter's stack here.
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, level = stack.pop()
        if isinstance(node, dict | list):
            deepest = max(deepest, level)
            if deepest > MAX_JSON_DEPTH:
                return deepest
            children = node.values() if isinstance(node, dict) else node
            stack.extend((child, level + 1) for child in children)
    return deepest


def _model_issues(exc: ValidationError, doc: Any) -> list[Issue]:
    merged: dict[Loc, list[str]] = {}
    for error in exc.errors(include_url=False):
        loc = _data_loc(doc, error)
        message = _message(error, loc)
        if error["type"] in ("union_tag_invalid", "union_tag_not_found"):
            loc = (*loc, str((error.get("ctx") or {}).get("discriminator", "")).strip("'"))
        if message not in merged.setdefault(loc, []):
            merged[loc].append(message)
    return [Issue(loc, " or ".join(msgs)) for loc, msgs in merged.items()]


def _data_loc(doc: Any, error: ErrorDetails) -> Loc:
    """Pydantic's location without the union tags and member names it inserts."""
    out: list[str | int] = []
    node = doc
    tag_skipped = False
    parts = error["loc"]
    for index, part in enumerate(parts):
        last = index == len(parts) - 1
        # A union tag (a step's type, a condition's op) is never the last part.
        if isinstance(node, dict) and not tag_skipped and not last and part in _tags(node):
            tag_skipped = True
            continue
        child = _child(node, part)
        if child is not _ABSENT:
            out.append(part)
            node, tag_skipped = child, False
        elif error["type"] == "missing" and last:
            out.append(part)
    return tuple(out)


_ABSENT = object()


def _child(node: Any, part: str | int) -> Any:
    if isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
        return node[part]
    if isinstance(node, dict) and part in node:
        return node[part]
    return _ABSENT


def _tags(node: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(node[key] for key in ("type", "op") if key in node)


def _message(error: ErrorDetails, loc: Loc) -> str:
    kind = error["type"]
    ctx = error.get("ctx") or {}
    if kind == "missing":
        return "required field is missing"
    if not loc and kind in ("model_type", "dict_type"):
        return "a workflow must be a JSON object with name and steps"
    if kind == "extra_forbidden":
        return f"unknown field '{loc[-1] if loc else ''}'"
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        key = str(ctx.get("discriminator", "")).strip("'")
        what, expected = _union_kind(loc, key)
        if kind == "union_tag_not_found":
            return f"missing '{key}'; expected one of {', '.join(expected)}"
        return f"unknown {what} '{ctx.get('tag')}'; expected one of {', '.join(expected)}"
    return str(error["msg"])


def _union_kind(loc: Loc, key: str) -> tuple[str, tuple[str, ...]]:
    """What a discriminated union at ``loc`` holds: steps, actions or conditions."""
    if key == "op":
        return "condition op", ALL_OPS
    if len(loc) >= 2 and loc[-2] == "actions":
        return "action type", ACTION_TYPES
    return "step type", STEP_TYPES
