"""What happens around every request: its id, the body size limit, common headers, crashes.

A plain ASGI middleware (not Starlette's ``BaseHTTPMiddleware``, which costs a
task and a copy per request and buffers streaming answers). It

- gives each request an id (the client's ``X-Request-Id`` if it is a sane
  token, else ``req_`` and 24 hex digits) and answers it in ``X-Request-Id``
  (and ``X-Coasty-Request-Id``, the reference's name) on every response;
- refuses bodies over the limit with 413 ``PAYLOAD_TOO_LARGE``, from
  ``Content-Length`` before reading, or while reading a chunked body;
- reads every body under ``/v1`` as JSON, whatever its ``Content-Type`` says
  (``curl -d`` without ``-H`` sends ``application/x-www-form-urlencoded``);
- adds ``X-Test-Mode: true`` when a test-mode key authenticated the request;
- turns an unexpected exception into a 500 ``INTERNAL_ERROR`` envelope (logged
  with its request id) instead of a bare text answer.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cuaflow.api.errors import SUGGESTIONS, BodyTooLarge

log = logging.getLogger(__name__)

_CLIENT_REQUEST_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")


class RequestContextMiddleware:
    """Request ids, body limit, common headers and the last-resort 500."""

    def __init__(self, app: ASGIApp, *, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _request_id(scope)
        state: dict[str, Any] = scope.setdefault("state", {})
        state["request_id"] = request_id
        started = False

        async def send_with_headers(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = list(message.get("headers", []))
                rid = request_id.encode()
                headers += [(b"x-request-id", rid), (b"x-coasty-request-id", rid)]
                if state.get("test_mode"):
                    headers += [(b"x-test-mode", b"true"), (b"x-coasty-test-mode", b"true")]
                message = {**message, "headers": headers}
            await send(message)

        if scope["path"].startswith("/v1/"):
            scope = _as_json(scope)
        if _declared_length(scope) > self.max_body_bytes:
            await _send_error(
                send_with_headers,
                413,
                "PAYLOAD_TOO_LARGE",
                f"the request body is larger than {self.max_body_bytes} bytes",
                request_id,
                limit=self.max_body_bytes,
            )
            return
        try:
            await self.app(scope, self._limited(receive), send_with_headers)
        except Exception:
            log.exception("request %s failed", request_id)
            if not started:
                await _send_error(
                    send_with_headers,
                    500,
                    "INTERNAL_ERROR",
                    "the server failed to answer this request",
                    request_id,
                )

    def _limited(self, receive: Receive) -> Receive:
        received = 0
        limit = self.max_body_bytes

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        return limited


def _request_id(scope: Scope) -> str:
    for name, value in scope.get("headers", []):
        if name == b"x-request-id":
            candidate = bytes(value).decode("latin-1")
            if _CLIENT_REQUEST_ID.match(candidate):
                return candidate
    return f"req_{secrets.token_hex(12)}"


def _as_json(scope: Scope) -> Scope:
    headers = [(name, value) for name, value in scope.get("headers", []) if name != b"content-type"]
    headers.append((b"content-type", b"application/json"))
    return {**scope, "headers": headers}


def _declared_length(scope: Scope) -> int:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return 0
    return 0


async def _send_error(
    send: Send, status: int, code: str, message: str, request_id: str, **context: Any
) -> None:
    error: dict[str, Any] = {
        "code": code,
        "message": message,
        "type": "validation_error" if status < 500 else "server_error",
        "request_id": request_id,
        "suggestion": SUGGESTIONS.get(code, ""),
        **context,
    }
    body = json.dumps({"error": error}, separators=(",", ":")).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
