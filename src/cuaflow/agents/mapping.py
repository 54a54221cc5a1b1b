"""Normalised actions to and from model tool calls.

Models name actions in several dialects: Anthropic's computer tool
(``{"action": "left_click", "coordinate": [x, y]}``), OpenAI's computer-use
actions (``{"type": "keypress", "keys": [...]}``, ``scroll_x``/``scroll_y``), and
the reference's two shapes, ``{"action": "click", "coordinate": [x, y]}`` and
``{"type": "click", "x": ..., "y": ...}``. :func:`action_from_call` turns any
of them into one normalised :data:`~cuaflow.dsl.actions.Action`;
:func:`function_tools` describes the normalised actions as JSON-schema
functions; :func:`anthropic_tool_input` maps a normalised action back to
Anthropic's tools.

Coordinates a model returns are in the frame it was shown (a scaled
screenshot); :func:`to_screen` maps them to the screen through that frame's
scale.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from pydantic import ValidationError

from cuaflow.dsl.actions import ACTION_ADAPTER, Action, Click, Drag, Move, Scroll
from cuaflow.errors import AgentError

# Pixels per scroll "click" (Anthropic's scroll_amount, a mouse wheel notch).
SCROLL_CLICK_PIXELS = 100
# The tools that call the computer by an ``action`` (or ``type``) field.
GENERIC_TOOL_NAMES = frozenset({"computer", "computer_use", "action", "act", "perform"})


# Other spellings of action types, with the parameters each one implies.
_ALIASES: dict[str, tuple[str, dict[str, Any]]] = {
    "left_click": ("click", {"button": "left"}),
    "right_click": ("click", {"button": "right"}),
    "middle_click": ("click", {"button": "middle"}),
    "doubleclick": ("double_click", {}),
    "dblclick": ("double_click", {}),
    "mouse_move": ("move", {}),
    "move_mouse": ("move", {}),
    "hover": ("move", {}),
    "left_click_drag": ("drag", {}),
    "drag_and_drop": ("drag", {}),
    "type_text": ("type", {}),
    "input_text": ("type", {}),
    "keypress": ("key", {}),
    "key_press": ("key", {}),
    "press": ("key", {}),
    "hotkey": ("key", {}),
    "sleep": ("wait", {}),
    "goto": ("navigate", {}),
    "go_to": ("navigate", {}),
    "open_url": ("navigate", {}),
    "visit": ("navigate", {}),
    "shell": ("bash", {}),
    "run_command": ("bash", {}),
    "execute": ("bash", {}),
    "finish": ("done", {}),
    "complete": ("done", {}),
    "task_complete": ("done", {}),
    "give_up": ("fail", {}),
    "failed": ("fail", {}),
}


class CoordinateScale(Protocol):
    """Maps a point of a scaled frame to the screen it was captured from."""

    def to_screen(self, x: int, y: int) -> tuple[int, int]:
        """The screen point for frame point ``(x, y)``."""
        ...


def action_from_call(name: str, arguments: dict[str, Any]) -> Action:
    """The normalised action for a tool call ``name(arguments)`` in any dialect.

    Raises :class:`AgentError` with a message meant for the model when the call
    names no known action or its parameters do not fit it.
    """
    args = dict(arguments)
    if name in GENERIC_TOOL_NAMES or (name not in _PARAMS and name not in _ALIASES):
        kind = args.pop("action", None) or args.pop("type", None)
        if not isinstance(kind, str):
            if name in GENERIC_TOOL_NAMES:
                raise AgentError(f"tool '{name}' needs an 'action' naming what to do")
            kind = name  # an unknown tool: reported below as an unknown action
    else:
        kind = name
        args.pop("type", None)
        args.pop("action", None)
    kind = kind.strip().lower()
    kind, implied = _ALIASES.get(kind, (kind, {}))
    if kind == "done" and (args.get("success") is False or args.get("passed") is False):
        kind = "fail"  # a "done" that says it did not succeed is a failure
    params_of = _PARAMS.get(kind)
    if params_of is None:
        known = ", ".join(sorted(_PARAMS))
        raise AgentError(f"unknown action '{kind}'; the actions are: {known}")
    params = {**implied, **params_of(args)}
    try:
        return ACTION_ADAPTER.validate_python({"type": kind, **params})
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in issue['loc'][1:]) or kind}: {issue['msg']}"
            for issue in error.errors()
        )
        raise AgentError(f"invalid '{kind}' action: {problems}") from None


def to_screen(action: Action, scale: CoordinateScale | None) -> Action:
    """``action`` with its frame coordinates mapped to screen coordinates."""
    if scale is None:
        return action
    if isinstance(action, Click | Move):
        x, y = _map(scale, action.x, action.y)
        return action.model_copy(update={"x": x, "y": y})
    if isinstance(action, Drag):
        x, y = _map(scale, action.x, action.y)
        to_x, to_y = _map(scale, action.to_x, action.to_y)
        return action.model_copy(update={"x": x, "y": y, "to_x": to_x, "to_y": to_y})
    if isinstance(action, Scroll) and action.x is not None and action.y is not None:
        x, y = _map(scale, action.x, action.y)
        return action.model_copy(update={"x": x, "y": y})
    return action


def anthropic_tool_input(action: Action) -> tuple[str, dict[str, Any]]:
    """The Anthropic tool name and input that perform ``action``.

    Screen actions go to the ``computer`` tool, ``bash`` to the bash tool, and
    the rest to the function tools of the same name.
    """
    params = action.model_dump(mode="json", exclude_none=True)
    kind = params.pop("type")
    if isinstance(action, Click):
        names = {"left": "left_click", "right": "right_click", "middle": "middle_click"}
        verb = "double_click" if action.type == "double_click" else names[action.button]
        return "computer", {"action": verb, "coordinate": [action.x, action.y]}
    if isinstance(action, Move):
        return "computer", {"action": "mouse_move", "coordinate": [action.x, action.y]}
    if isinstance(action, Drag):
        drag = {"action": "left_click_drag", "start_coordinate": [action.x, action.y]}
        return "computer", {**drag, "coordinate": [action.to_x, action.to_y]}
    if isinstance(action, Scroll):
        return "computer", _anthropic_scroll(action)
    if kind == "type":
        return "computer", {"action": "type", "text": params["text"]}
    if kind == "key":
        return "computer", {"action": "key", "text": "+".join(params["keys"])}
    if kind == "wait":
        return "computer", {"action": "wait", "duration": params["seconds"]}
    if kind == "screenshot":
        return "computer", {"action": "screenshot"}
    if kind == "bash":
        return "bash", {"command": params["command"]}
    return kind, params


def _anthropic_scroll(action: Scroll) -> dict[str, Any]:
    dx, dy = int(action.dx), int(action.dy)
    if abs(dy) >= abs(dx):
        direction, pixels = ("down" if dy >= 0 else "up"), abs(dy)
    else:
        direction, pixels = ("right" if dx > 0 else "left"), abs(dx)
    scroll = {
        "action": "scroll",
        "scroll_direction": direction,
        "scroll_amount": max(1, round(pixels / SCROLL_CLICK_PIXELS)),
    }
    if action.x is not None and action.y is not None:
        scroll["coordinate"] = [action.x, action.y]
    return scroll


def _map(scale: CoordinateScale, x: int | str, y: int | str) -> tuple[int, int]:
    if isinstance(x, str) or isinstance(y, str):  # pragma: no cover - models send numbers
        raise AgentError("coordinates must be numbers")
    return scale.to_screen(x, y)


# -- reading each action's parameters, whatever the dialect --------------------------------


def _point(args: dict[str, Any], *keys: str) -> tuple[Any, Any] | None:
    for key in keys:
        value = args.get(key)
        if isinstance(value, list | tuple) and len(value) == 2:
            return _number(value[0]), _number(value[1])
        if isinstance(value, dict) and "x" in value and "y" in value:
            return _number(value["x"]), _number(value["y"])
    return None


def _number(value: Any) -> Any:
    """A float rounded to the pixel; anything else as given, for validation to judge."""
    return round(value) if isinstance(value, float) else value


def _first(args: dict[str, Any], *keys: str) -> Any:
    for key in keys:
        if args.get(key) is not None:
            return args[key]
    return None


def _xy(args: dict[str, Any]) -> dict[str, Any]:
    point = _point(args, "coordinate", "coordinates", "position", "point", "location")
    if point is not None:
        return {"x": point[0], "y": point[1]}
    return {"x": _number(args.get("x")), "y": _number(args.get("y"))}


def _button(args: dict[str, Any]) -> dict[str, Any]:
    button = args.get("button")
    if isinstance(button, str):
        button = {"wheel": "middle", "primary": "left", "secondary": "right"}.get(button, button)
        return {"button": button}
    return {}


def _click(args: dict[str, Any]) -> dict[str, Any]:
    return {**_xy(args), **_button(args)}


def _drag(args: dict[str, Any]) -> dict[str, Any]:
    path = args.get("path")
    if isinstance(path, list) and len(path) >= 2:
        start, end = _point({"p": path[0]}, "p"), _point({"p": path[-1]}, "p")
    else:
        start = _point(args, "start_coordinate", "start", "from", "source")
        end = _point(args, "end_coordinate", "coordinate", "end", "to", "target")
    params: dict[str, Any] = {
        "x": _number(args.get("x")),
        "y": _number(args.get("y")),
        "to_x": _number(args.get("to_x")),
        "to_y": _number(args.get("to_y")),
    }
    if start is not None:
        params["x"], params["y"] = start
    if end is not None:
        params["to_x"], params["to_y"] = end
    return params


def _scroll(args: dict[str, Any]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    point = _point(args, "coordinate", "coordinates", "position")
    if point is not None:
        params["x"], params["y"] = point
    elif args.get("x") is not None and args.get("y") is not None:
        params["x"], params["y"] = _number(args["x"]), _number(args["y"])
    direction = _first(args, "scroll_direction", "direction")
    if isinstance(direction, str):
        amount = _first(args, "scroll_amount", "amount", "clicks")
        pixels = round(float(amount if amount is not None else 3) * SCROLL_CLICK_PIXELS)
        sign = -1 if direction.lower() in ("up", "left") else 1
        axis = "dx" if direction.lower() in ("left", "right") else "dy"
        params[axis] = sign * pixels
        return params
    params["dx"] = _number(_first(args, "dx", "scroll_x", "delta_x") or 0)
    params["dy"] = _number(_first(args, "dy", "scroll_y", "delta_y") or 0)
    return params


def _type(args: dict[str, Any]) -> dict[str, Any]:
    return {"text": _first(args, "text", "content", "value", "string")}


def _key(args: dict[str, Any]) -> dict[str, Any]:
    keys = _first(args, "keys", "key", "text", "combo", "combination")
    if isinstance(keys, str):
        keys = [keys] if keys.strip() == "+" else [part.strip() for part in keys.split("+")]
    return {"keys": keys}


def _wait(args: dict[str, Any]) -> dict[str, Any]:
    seconds = _first(args, "seconds", "duration", "time")
    if seconds is None and _first(args, "ms", "milliseconds") is not None:
        seconds = float(_first(args, "ms", "milliseconds")) / 1000
    return {} if seconds is None else {"seconds": seconds}


def _bash(args: dict[str, Any]) -> dict[str, Any]:
    if args.get("restart"):
        raise AgentError("restarting the shell is not needed: every command runs in a fresh shell")
    return _pick(args, "timeout_seconds") | {"command": _first(args, "command", "cmd", "script")}


def _done(args: dict[str, Any]) -> dict[str, Any]:
    summary = _first(args, "summary", "message", "text", "result", "answer")
    params: dict[str, Any] = {"summary": None if summary is None else str(summary)}
    if "output" in args:
        params["output"] = args["output"]
    return params


def _fail(args: dict[str, Any]) -> dict[str, Any]:
    reason = _first(args, "reason", "message", "error", "text", "summary")
    return {"reason": None if reason is None else str(reason)}


def _pick(args: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {key: args[key] for key in keys if args.get(key) is not None}


_PARAMS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "click": _click,
    "double_click": _click,
    "move": _xy,
    "drag": _drag,
    "scroll": _scroll,
    "type": _type,
    "key": _key,
    "wait": _wait,
    "screenshot": lambda args: {},
    "navigate": lambda args: {"url": _first(args, "url", "href", "address")},
    "bash": _bash,
    "wait_for_port": lambda args: _pick(args, "port", "host", "timeout_seconds"),
    "wait_for_file": lambda args: _pick(args, "path", "timeout_seconds"),
    "done": _done,
    "fail": _fail,
}
