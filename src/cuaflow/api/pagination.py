"""Cursor pagination of list routes: ``limit`` and ``starting_after``, newest first.

A page is ``{object: "list", data, has_more, request_id}``. ``limit`` is 1-100
(default 20; anything else answers 400 ``INVALID_LIMIT``). ``starting_after``
is the id of the last object of the previous page; an id of the wrong shape,
or one this tenant does not have, answers 400 ``INVALID_CURSOR``.
"""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import Query

from cuaflow.api.errors import ApiError

LIMIT_DEFAULT = 20
LIMIT_MAX = 100
_ID_SHAPE = re.compile(r"^(wf|wfr|run)_[0-9a-f]{12,64}$")

Limit = Annotated[
    int,
    Query(ge=1, le=LIMIT_MAX, description="How many objects to return, 1-100 (default 20)."),
]
StartingAfter = Annotated[
    str | None,
    Query(
        max_length=100,
        description="The id of the last object of the previous page; "
        "the page holds the objects created before it.",
    ),
]


def check_cursor(cursor: str | None, prefixes: tuple[str, ...]) -> str | None:
    """``cursor`` if it has the shape of an id with one of ``prefixes``, else 400."""
    if cursor is None:
        return None
    match = _ID_SHAPE.match(cursor)
    if match is None or f"{match.group(1)}_" not in prefixes:
        raise invalid_cursor(cursor)
    return cursor


def invalid_cursor(cursor: str) -> ApiError:
    """The answer for a cursor that names nothing on this list."""
    return ApiError(
        400,
        "INVALID_CURSOR",
        f"starting_after '{cursor}' is not an id on this list",
        param="starting_after",
    )
