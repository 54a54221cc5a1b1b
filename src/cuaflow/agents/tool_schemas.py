"""The normalised actions as tools a model can call: names, descriptions, JSON schemas.

Both providers offer these as functions (OpenAI) or custom tools (Anthropic),
beside Anthropic's own computer-use and bash tools; a call comes back through
:func:`cuaflow.agents.mapping.action_from_call`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

_POINT = {"x": {"type": "integer", "minimum": 0}, "y": {"type": "integer", "minimum": 0}}


def _schema(properties: dict[str, Any], *required: str) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": list(required)}


# What each normalised action means to a model, and its parameters as JSON schema.
FUNCTIONS: dict[str, tuple[str, dict[str, Any]]] = {
    "bash": (
        "Run a shell command and get its output and exit code.",
        _schema(
            {
                "command": {"type": "string"},
                "timeout_seconds": {"type": "number", "minimum": 0},
            },
            "command",
        ),
    ),
    "click": (
        "Click at a point of the latest screenshot.",
        _schema({**_POINT, "button": {"enum": ["left", "right", "middle"]}}, "x", "y"),
    ),
    "double_click": ("Double-click a point of the latest screenshot.", _schema(_POINT, "x", "y")),
    "move": ("Move the pointer to a point of the latest screenshot.", _schema(_POINT, "x", "y")),
    "drag": (
        "Press the mouse at (x, y), move to (to_x, to_y) and release.",
        _schema({**_POINT, "to_x": _POINT["x"], "to_y": _POINT["y"]}, "x", "y", "to_x", "to_y"),
    ),
    "scroll": (
        "Scroll by dx/dy pixels (positive dy scrolls down), at (x, y) when given.",
        _schema({**_POINT, "dx": {"type": "integer"}, "dy": {"type": "integer"}}),
    ),
    "type": ("Type text with the keyboard.", _schema({"text": {"type": "string"}}, "text")),
    "key": (
        'Press a key or a combination, such as ["enter"] or ["ctrl", "s"].',
        _schema({"keys": {"type": "array", "items": {"type": "string"}, "minItems": 1}}, "keys"),
    ),
    "wait": ("Wait a number of seconds.", _schema({"seconds": {"type": "number", "minimum": 0}})),
    "screenshot": ("Look at the screen again.", _schema({})),
    "navigate": ("Open a URL in the browser.", _schema({"url": {"type": "string"}}, "url")),
    "wait_for_port": (
        "Wait until something accepts TCP connections on host:port.",
        _schema(
            {
                "port": {"type": "integer", "minimum": 1, "maximum": 65535},
                "host": {"type": "string"},
                "timeout_seconds": {"type": "number", "minimum": 0},
            },
            "port",
        ),
    ),
    "wait_for_file": (
        "Wait until a file exists.",
        _schema(
            {"path": {"type": "string"}, "timeout_seconds": {"type": "number", "minimum": 0}},
            "path",
        ),
    ),
    "done": (
        "Finish: the task is complete. Say what was done in summary; put requested data in output.",
        _schema({"summary": {"type": "string"}, "output": {}}, "summary"),
    ),
    "fail": (
        "Give up: the task cannot be completed. Say why in reason.",
        _schema({"reason": {"type": "string"}}, "reason"),
    ),
}


def function_tools(types: Iterable[str]) -> list[dict[str, Any]]:
    """JSON-schema function descriptions ``{name, description, parameters}`` of ``types``."""
    return [
        {"name": kind, "description": FUNCTIONS[kind][0], "parameters": FUNCTIONS[kind][1]}
        for kind in types
        if kind in FUNCTIONS
    ]
