"""Checks every request body passes before any route reads it.

JSON may carry the NUL character (``\\u0000``) in any string, but PostgreSQL
stores neither it in ``jsonb`` nor in text columns, so such a body would fail
deep in a write on one backend and pass on the other. Every body is refused
with 422 instead, at the location of the first offending string, whatever the
database. The scan only runs when the raw body contains the escape at all.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import Request

from cuaflow.api.errors import validation_error
from cuaflow.errors import Issue, Loc

_NUL_ESCAPE = b"\\u0000"
_MESSAGE = "must not contain the NUL character (\\u0000)"


async def reject_nul_characters(request: Request) -> None:
    """A dependency: 422 when a string (or key) in the JSON body holds a NUL character."""
    if request.method not in ("POST", "PUT", "PATCH"):
        return
    raw = await request.body()
    if _NUL_ESCAPE not in raw:
        return
    try:
        body = json.loads(raw)
    except ValueError:
        return  # not JSON: the route's own parsing says so
    where = _first_nul(body, ())
    if where is not None:
        raise validation_error([Issue(where, _MESSAGE)])


def _first_nul(value: Any, loc: Loc) -> Loc | None:
    # Iterative, so a deeply nested body cannot exhaust the stack here.
    stack: list[tuple[Any, Loc]] = [(value, loc)]
    while stack:
        node, at = stack.pop()
        if isinstance(node, str) and "\x00" in node:
            return at
        if isinstance(node, dict):
            for key, child in node.items():
                if "\x00" in key:
                    return (*at, key)
                stack.append((child, (*at, key)))
        elif isinstance(node, list):
            stack.extend((child, (*at, index)) for index, child in enumerate(node))
    return None
