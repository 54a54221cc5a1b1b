"""Fake model servers speaking the real OpenAI and Anthropic wire formats, and test helpers.

A :class:`FakeModelServer` listens on loopback and answers each POST with the
next scripted :class:`Reply`, recording every request body, so a test scripts a
model's turns and then reads what the agent sent. The official SDKs talk to it
exactly as they would to the real APIs.
"""

from __future__ import annotations

import json
import struct
import threading
import time
import zlib
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from itertools import count
from typing import Any

from cuaflow.agents.base import TaskOutcome
from cuaflow.dsl.actions import Action
from cuaflow.dsl.models import TaskStep
from cuaflow.machines.base import ActionResult, Machine, Observation

_ids = count(1)


@dataclass
class Reply:
    """One scripted answer: status, JSON body, headers, and a delay before answering."""

    body: dict[str, Any]
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


@dataclass
class Request:
    """One request the server received."""

    path: str
    headers: dict[str, str]
    body: dict[str, Any]


class FakeModelServer:
    """An HTTP server on 127.0.0.1 answering POSTs with scripted replies, in order."""

    def __init__(self, replies: Sequence[Reply]) -> None:
        self.replies = list(replies)
        self.requests: list[Request] = []
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                with server._lock:
                    server.requests.append(Request(self.path, dict(self.headers), body))
                    reply = server.replies.pop(0) if server.replies else _exhausted()
                time.sleep(reply.delay)
                data = json.dumps(reply.body).encode()
                self.send_response(reply.status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # keep test output quiet

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> FakeModelServer:
        # A short poll interval: shutdown() waits up to one interval.
        serve = threading.Thread(target=self._server.serve_forever, args=(0.01,), daemon=True)
        serve.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


def _exhausted() -> Reply:
    error = {"type": "invalid_request_error", "message": "no more scripted replies"}
    return Reply({"type": "error", "error": error}, status=400)


@contextmanager
def serve(*replies: Reply) -> Iterator[FakeModelServer]:
    """A running :class:`FakeModelServer` with these replies."""
    with FakeModelServer(replies) as server:
        yield server


# -- OpenAI Chat Completions ---------------------------------------------------------------


def openai_turn(*calls: tuple[str, dict[str, Any]], text: str | None = None) -> Reply:
    """A chat completion whose message says ``text`` and calls these functions."""
    message: dict[str, Any] = {"role": "assistant", "content": text}
    if calls:
        message["tool_calls"] = [
            {
                "id": f"call_{next(_ids)}",
                "type": "function",
                "function": {"name": name, "arguments": json.dumps(arguments)},
            }
            for name, arguments in calls
        ]
    choice = {
        "index": 0,
        "message": message,
        "finish_reason": "tool_calls" if calls else "stop",
        "logprobs": None,
    }
    return Reply(
        {
            "id": f"chatcmpl-{next(_ids)}",
            "object": "chat.completion",
            "created": 1_700_000_000,
            "model": "fake-model",
            "choices": [choice],
            "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
        }
    )


def openai_error(status: int, **headers: str) -> Reply:
    """An OpenAI error answer."""
    error = {"message": f"fake error {status}", "type": "server_error", "code": None}
    return Reply({"error": error}, status=status, headers=headers)


# -- Anthropic Messages ---------------------------------------------------------------------


def anthropic_turn(
    *uses: tuple[str, dict[str, Any]],
    text: str | None = None,
    thinking: str | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Reply:
    """A message that says ``text`` (after ``thinking``) and uses these tools."""
    content: list[dict[str, Any]] = []
    if thinking is not None:
        content.append({"type": "thinking", "thinking": thinking, "signature": "sig"})
    if text is not None:
        content.append({"type": "text", "text": text})
    for name, tool_input in uses:
        block = {"type": "tool_use", "id": f"toolu_{next(_ids)}", "name": name, "input": tool_input}
        content.append({**block, **(extra or {})})
    return Reply(
        {
            "id": f"msg_{next(_ids)}",
            "type": "message",
            "role": "assistant",
            "model": "fake-model",
            "content": content,
            "stop_reason": "tool_use" if uses else "end_turn",
            "stop_sequence": None,
            "usage": {"input_tokens": 10, "output_tokens": 5},
        }
    )


def anthropic_error(status: int, **headers: str) -> Reply:
    """An Anthropic error answer."""
    error = {"type": "rate_limit_error", "message": f"fake error {status}"}
    return Reply({"type": "error", "error": error}, status=status, headers=headers)


# -- an agent context and a machine with a screen ------------------------------------------


@dataclass
class RecordingContext:
    """An :class:`~cuaflow.agents.base.AgentContext` that keeps what the agent did in memory."""

    machine: Machine
    task: str
    step: TaskStep
    max_steps: int = 50
    secrets: Mapping[str, str] = field(default_factory=dict)
    run_id: str = "wfr_test"
    step_path: str = "task"
    begun: int = 0
    steps: list[list[tuple[dict[str, Any], ActionResult]]] = field(default_factory=list)
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    artifacts: dict[str, bytes] = field(default_factory=dict)

    def render(self, value: Any) -> Any:
        return value

    async def begin_agent_step(self) -> None:
        self.begun += 1

    async def end_agent_step(
        self,
        action: dict[str, Any],
        result: ActionResult,
        *,
        earlier: Sequence[tuple[dict[str, Any], ActionResult]] = (),
    ) -> None:
        self.steps.append([*earlier, (action, result)])

    async def emit(self, type: str, data: dict[str, Any]) -> None:
        self.events.append((type, data))

    async def save_artifact(self, name: str, data: bytes) -> str:
        self.artifacts[name] = data
        return name

    @property
    def actions(self) -> list[dict[str, Any]]:
        """Every action performed, in order."""
        return [action for step in self.steps for action, _ in step]

    def texts(self, type: str) -> list[str]:
        """The ``text`` of every event of ``type``."""
        return [str(data.get("text")) for kind, data in self.events if kind == type]


def task_step(task: str = "do it", **fields: Any) -> TaskStep:
    """A task step with this text."""
    return TaskStep.model_validate({"id": "task", "type": "task", "task": task, **fields})


def context_for(machine: Machine, task: str = "do it", **fields: Any) -> RecordingContext:
    """A recording context for ``task`` on ``machine``."""
    max_steps = fields.pop("max_steps", 50)
    return RecordingContext(machine, task, task_step(task, **fields), max_steps=max_steps)


def solid_png(width: int, height: int) -> bytes:
    """A valid PNG of one grey colour, made without an imaging library."""
    row = b"\x00" + b"\x80" * (width * 3)
    raw = zlib.compress(row * height, 1)

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", raw) + chunk(b"IEND", b"")


class ScreenMachine:
    """A machine with a screen of known size that records the actions it is given.

    It stands in for a desktop in tests of the agent's bookkeeping (coordinates,
    observation changes), where what matters is what the agent asked for.
    """

    kind = "desktop"
    capabilities = frozenset({"click", "double_click", "move", "drag", "scroll", "type", "key"}) | {
        "screenshot",
        "wait",
    }

    def __init__(self, width: int = 2560, height: int = 1600) -> None:
        self.id = "screen"
        self.png = solid_png(width, height)
        self.performed: list[Action] = []

    async def perform(self, action: Action, *, secrets: Mapping[str, str]) -> ActionResult:
        self.performed.append(action)
        return ActionResult(ok=True, output=f"{action.type} done")

    async def observe(self) -> Observation:
        return Observation(text=f"{len(self.performed)} actions so far", screenshot_png=self.png)

    async def close(self) -> None:
        pass


def outcome_error_code(outcome: TaskOutcome) -> str | None:
    """The error code of ``outcome``, if it has one."""
    return None if outcome.error is None else outcome.error["code"]
