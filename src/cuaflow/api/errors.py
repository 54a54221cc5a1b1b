"""The error envelope and the handlers that turn every failure into it.

Every error answer is ``{"error": {code, message, type, request_id,
suggestion?, ...context}}``: ``code`` is stable and upper case, ``type`` is
one of a few coarse families, and context fields (``details``,
``required_scope``, ``current_state`` ...) help a client correct itself.

Validation details are ``[{loc, msg}]``. A location inside the JSON body is
the path within the body the client sent (``["steps", 2, "condition", "op"]``,
``["definition", "steps", 0, "task"]``, ``["max_steps"]``), the same paths
:class:`cuaflow.errors.Issue` carries; query parameters and headers are named
by their part (``["query", "limit"]``, ``["header", "Idempotency-Key"]``).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from cuaflow.errors import Issue, WorkflowInvalid

log = logging.getLogger(__name__)

TYPE_BY_STATUS = {
    400: "validation_error",
    401: "auth_error",
    403: "auth_error",
    404: "not_found_error",
    405: "validation_error",
    409: "state_error",
    413: "validation_error",
    415: "validation_error",
    422: "validation_error",
    429: "rate_limit_error",
}
SUGGESTIONS = {
    "INVALID_API_KEY": "Send a key made with `cuaflow keys create` in the X-API-Key header "
    "(or as Authorization: Bearer <key>).",
    "INSUFFICIENT_SCOPE": "Create a key with the missing scope: "
    "cuaflow keys create --scopes <scope>,...",
    "VALIDATION_ERROR": "Fix the fields named in details and send the request again.",
    "INVALID_LIMIT": "Pass 1 <= limit <= 100, or leave it out for 20.",
    "INVALID_STATUS_FILTER": "Use one of valid_options, or leave the filter out.",
    "INVALID_TYPE_FILTER": "Use one of valid_options, or leave the filter out.",
    "INVALID_CURSOR": "Pass the id of the last object of the previous page as starting_after.",
    "RUN_NOT_FOUND": "List your runs with GET /v1/runs, using a key of the same tenant.",
    "WORKFLOW_NOT_FOUND": "List your workflows with GET /v1/workflows, "
    "using a key of the same tenant.",
    "NOT_FOUND": "Check the path against /openapi.json.",
    "NOT_AWAITING_HUMAN": "Read the run again; resume it only while its status is awaiting_human.",
    "INVALID_STATE": "Read the object again and act on its current state.",
    "IDEMPOTENCY_KEY_REUSED": "Send the original body to get the stored answer, or use a new key.",
    "IDEMPOTENCY_KEY_IN_USE": "Another request with this key is still running; retry shortly.",
    "PAYLOAD_TOO_LARGE": "Send a smaller body.",
    "STORE_UNAVAILABLE": "Retry after a moment.",
    "INTERNAL_ERROR": "Retry; if it keeps failing, report the request_id.",
}


class ApiError(Exception):
    """An answer other than success, with its status, code and context fields."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        error_type: str | None = None,
        suggestion: str | None = None,
        headers: dict[str, str] | None = None,
        **context: Any,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.error_type = error_type or TYPE_BY_STATUS.get(status, "server_error")
        self.suggestion = suggestion if suggestion is not None else SUGGESTIONS.get(code)
        self.headers = headers or {}
        self.context = context


class BodyTooLarge(StarletteHTTPException):
    """Raised while reading a body past the size limit.

    A Starlette ``HTTPException`` because FastAPI re-raises those unchanged
    from body parsing (any other exception there becomes a bare 400).
    """

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the request body is larger than {limit} bytes")
        self.limit = limit


def validation_error(issues: Sequence[Issue], prefix: tuple[str | int, ...] = ()) -> ApiError:
    """A 422 ``VALIDATION_ERROR`` listing ``issues`` (locations prefixed with ``prefix``)."""
    details = [{"loc": [*prefix, *issue.loc], "msg": issue.msg} for issue in issues]
    first = details[0] if details else {"loc": [], "msg": "invalid request"}
    where = "/".join(str(part) for part in first["loc"]) or "body"
    more = f" (and {len(details) - 1} more)" if len(details) > 1 else ""
    return ApiError(422, "VALIDATION_ERROR", f"{where}: {first['msg']}{more}", details=details)


def error_body(request: Request, error: ApiError) -> dict[str, Any]:
    """The envelope for ``error`` answered to ``request``."""
    body: dict[str, Any] = {
        "code": error.code,
        "message": error.message,
        "type": error.error_type,
        "request_id": request_id_of(request),
    }
    if error.suggestion:
        body["suggestion"] = error.suggestion
    body.update(error.context)
    return {"error": body}


def request_id_of(request: Request) -> str:
    """The id the request middleware gave this request."""
    return str(getattr(request.state, "request_id", "") or "")


def error_response(request: Request, error: ApiError) -> JSONResponse:
    """The JSON answer for ``error``."""
    return JSONResponse(error_body(request, error), error.status, headers=error.headers)


def install_error_handlers(app: FastAPI) -> None:
    """Answer every handled failure with the envelope."""

    async def on_api_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ApiError)  # registered for ApiError only
        return error_response(request, exc)

    async def on_invalid_request(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)  # registered for it only
        return error_response(request, request_validation_error(exc.errors()))

    async def on_invalid_workflow(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, WorkflowInvalid)  # registered for it only
        return error_response(request, validation_error(exc.issues))

    async def on_http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)  # registered for it only
        return error_response(request, _http_error(exc))

    app.add_exception_handler(ApiError, on_api_error)
    app.add_exception_handler(RequestValidationError, on_invalid_request)
    app.add_exception_handler(WorkflowInvalid, on_invalid_workflow)
    app.add_exception_handler(StarletteHTTPException, on_http_error)


def _http_error(exc: StarletteHTTPException) -> ApiError:
    headers = dict(exc.headers or {})
    if exc.status_code == 404:
        return ApiError(404, "NOT_FOUND", "no such route", headers=headers)
    if exc.status_code == 405:
        return ApiError(405, "METHOD_NOT_ALLOWED", "the route does not allow this method",
                        headers=headers)  # fmt: skip
    if exc.status_code == 413:
        limit = exc.limit if isinstance(exc, BodyTooLarge) else None
        return ApiError(413, "PAYLOAD_TOO_LARGE", str(exc.detail), headers=headers, limit=limit)
    code = "INVALID_REQUEST" if exc.status_code < 500 else "INTERNAL_ERROR"
    return ApiError(exc.status_code, code, str(exc.detail), headers=headers)


_SPECIAL_QUERY = {
    "limit": ("INVALID_LIMIT", 400),
    "status": ("INVALID_STATUS_FILTER", 400),
    "type": ("INVALID_TYPE_FILTER", 400),
}


def request_validation_error(errors: Sequence[Any]) -> ApiError:
    """The envelope for FastAPI's request validation errors (body, query, headers, path)."""
    issues: list[Issue] = []
    for error in errors:
        loc = tuple(error.get("loc", ()))
        if len(loc) == 2 and loc[0] == "query" and loc[1] in _SPECIAL_QUERY:
            return _query_error(str(loc[1]), error)
        if loc[:1] == ("body",):
            loc = loc[1:]
        issues.append(Issue(loc, _message(error)))
    return validation_error(issues)


def _query_error(name: str, error: dict[str, Any]) -> ApiError:
    code, status = _SPECIAL_QUERY[name]
    actual = error.get("input")
    if name == "limit":
        return ApiError(
            status,
            code,
            f"limit must be a whole number from 1 to 100, got {actual!r}",
            actual=actual,
            min=1,
            max=100,
        )
    # Pydantic names a Literal's values in ctx.expected: "'a', 'b' or 'c'".
    options = re.findall(r"'([^']*)'", str((error.get("ctx") or {}).get("expected", "")))
    return ApiError(
        status,
        code,
        f"{name} must be one of {', '.join(options)}, got {actual!r}",
        valid_options=options,
    )


def _message(error: dict[str, Any]) -> str:
    kind = error.get("type")
    if kind == "extra_forbidden":
        return "unknown field"
    if kind == "json_invalid":
        reason = (error.get("ctx") or {}).get("error", "")
        return f"the body is not valid JSON ({reason})" if reason else "the body is not valid JSON"
    if kind == "missing":
        return "field required"
    return str(error.get("msg", "invalid value"))
