"""A real webhook receiver for tests: an HTTP server on loopback, answering from a script.

Signatures are checked here with code written for the tests (``hmac`` and
``base64``), independent of cuaflow's signing module.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Answer:
    """How the receiver answers one request."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds to wait before answering
    hold: threading.Event | None = None  # answer only once this is set


@dataclass
class Received:
    """One request the receiver got."""

    headers: dict[str, str]  # names lower-cased
    body: bytes
    at: float
    answer: Answer

    @property
    def payload(self) -> dict[str, Any]:
        return dict(json.loads(self.body))

    @property
    def event(self) -> str:
        return str(self.payload["event"])


Script = Callable[[int, dict[str, Any]], Answer]  # (request number from 0, payload) -> answer


def answers(*script: Answer) -> Script:
    """Answer the requests in this order, then 200 to everything."""
    return lambda n, _payload: script[n] if n < len(script) else Answer()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # the default 5 drops bursts of concurrent deliveries


class Receiver:
    """A threaded HTTP server on 127.0.0.1 recording every POST it gets."""

    def __init__(self, script: Script | None = None) -> None:
        self.script: Script = script or answers()
        self.received: list[Received] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with receiver._lock:
                    answer = receiver.script(len(receiver.received), json.loads(body))
                    receiver.received.append(
                        Received(
                            {k.lower(): v for k, v in self.headers.items()},
                            body,
                            time.time(),
                            answer,
                        )
                    )
                if answer.hold is not None:
                    answer.hold.wait(30)
                time.sleep(answer.delay)
                try:
                    self.send_response(answer.status)
                    for name, value in answer.headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", "2")
                    self.end_headers()
                    self.wfile.write(b"ok")
                except OSError:
                    pass  # the sender gave up waiting (a timeout test)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = _Server(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    def __enter__(self) -> Receiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def wait_for(self, count: int, timeout: float = 10) -> list[Received]:
        """Block until at least ``count`` requests arrived; return them all."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.received) >= count:
                return list(self.received)
            time.sleep(0.01)
        raise AssertionError(f"got {len(self.received)} requests, expected {count}")


def check_signatures(secret: str, request: Received, tolerance: float = 300) -> None:
    """Assert both signature schemes of ``request`` are valid for ``secret`` (independently)."""
    body = request.body
    scheme, _, rest = request.headers["coasty-signature"].partition(",")
    assert scheme.startswith("t=")
    timestamp = int(scheme[2:])
    assert abs(time.time() - timestamp) < tolerance
    assert rest.startswith("v1=")
    expected_hex = hmac.new(
        secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256
    ).hexdigest()
    assert hmac.compare_digest(rest[3:], expected_hex)

    message_id = request.headers["webhook-id"]
    assert int(request.headers["webhook-timestamp"]) == timestamp
    key = base64.b64decode(secret.removeprefix("whsec_"))
    digest = hmac.new(key, f"{message_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    assert request.headers["webhook-signature"] == "v1," + base64.b64encode(digest).decode()
