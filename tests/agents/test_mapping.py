"""Tool calls in every dialect map to one normalised action, and back."""

from __future__ import annotations

from typing import Any

import pytest

from cuaflow.agents.mapping import (
    action_from_call,
    anthropic_tool_input,
    to_screen,
)
from cuaflow.agents.tool_schemas import FUNCTIONS, function_tools
from cuaflow.dsl.actions import ACTION_TYPES, Action
from cuaflow.errors import AgentError
from cuaflow.machines.screenshots import ScaleInfo


def dump(action: Action) -> dict[str, Any]:
    return action.model_dump(mode="json", exclude_none=True)


@pytest.mark.parametrize(
    ("name", "arguments", "expected"),
    [
        # The reference's two shapes.
        ("computer", {"action": "click", "coordinate": [10, 20]}, {"x": 10, "y": 20}),
        ("computer", {"type": "click", "x": 10, "y": 20}, {"x": 10, "y": 20}),
        ("action", {"type": "click", "x": 10.6, "y": 20.2}, {"x": 11, "y": 20}),
        # A function named for the action.
        ("click", {"x": 10, "y": 20, "button": "right"}, {"x": 10, "y": 20, "button": "right"}),
        # Anthropic's computer tool and toolset members.
        ("computer", {"action": "right_click", "coordinate": [1, 2]}, {"button": "right"}),
        ("middle_click", {"coordinate": [1, 2]}, {"button": "middle"}),
        ("computer", {"action": "left_click", "coordinate": {"x": 3, "y": 4}}, {"x": 3}),
        # OpenAI computer-use shapes.
        ("computer", {"type": "click", "x": 1, "y": 2, "button": "wheel"}, {"button": "middle"}),
    ],
)
def test_clicks_in_every_shape(
    name: str, arguments: dict[str, Any], expected: dict[str, Any]
) -> None:
    """Every spelling of a click becomes a normalised click with the same point and button."""
    action = dump(action_from_call(name, arguments))
    assert action["type"] == "click"
    assert expected.items() <= action.items()


@pytest.mark.parametrize(
    ("name", "arguments", "expected"),
    [
        ("computer", {"action": "double_click", "coordinate": [5, 6]},
         {"type": "double_click", "x": 5, "y": 6, "button": "left"}),
        ("computer", {"action": "mouse_move", "coordinate": [5, 6]}, {"type": "move", "x": 5, "y": 6}),
        ("computer", {"type": "move", "x": 5, "y": 6}, {"type": "move", "x": 5, "y": 6}),
        ("computer", {"action": "left_click_drag", "start_coordinate": [1, 2], "coordinate": [3, 4]},
         {"type": "drag", "x": 1, "y": 2, "to_x": 3, "to_y": 4}),
        ("computer", {"type": "drag", "path": [{"x": 1, "y": 2}, {"x": 2, "y": 2}, {"x": 3, "y": 4}]},
         {"type": "drag", "x": 1, "y": 2, "to_x": 3, "to_y": 4}),
        ("drag", {"x": 1, "y": 2, "to_x": 3, "to_y": 4},
         {"type": "drag", "x": 1, "y": 2, "to_x": 3, "to_y": 4}),
        ("computer", {"action": "scroll", "coordinate": [7, 8], "scroll_direction": "up",
                      "scroll_amount": 2}, {"type": "scroll", "x": 7, "y": 8, "dx": 0, "dy": -200}),
        ("computer", {"type": "scroll", "x": 7, "y": 8, "scroll_x": 0, "scroll_y": 120},
         {"type": "scroll", "x": 7, "y": 8, "dx": 0, "dy": 120}),
        ("scroll", {"dx": -50}, {"type": "scroll", "dx": -50, "dy": 0}),
        ("computer", {"action": "type", "text": "hi {{secrets.PW}}"},
         {"type": "type", "text": "hi {{secrets.PW}}"}),
        ("computer", {"action": "key", "text": "ctrl+shift+t"},
         {"type": "key", "keys": ["ctrl", "shift", "t"]}),
        ("computer", {"type": "keypress", "keys": ["CTRL", "L"]}, {"type": "key", "keys": ["CTRL", "L"]}),
        ("key", {"keys": "+"}, {"type": "key", "keys": ["+"]}),
        ("computer", {"action": "wait", "duration": 2}, {"type": "wait", "seconds": 2}),
        ("computer", {"type": "wait"}, {"type": "wait", "seconds": 1.0}),
        ("computer", {"action": "screenshot"}, {"type": "screenshot"}),
        ("computer", {"action": "goto", "url": "http://x"}, {"type": "navigate", "url": "http://x"}),
        ("bash", {"command": "ls"}, {"type": "bash", "command": "ls", "check": True}),
        ("computer", {"type": "bash", "command": "ls"}, {"type": "bash", "command": "ls", "check": True}),
        ("wait_for_port", {"port": 8080}, {"type": "wait_for_port", "port": 8080,
                                           "host": "127.0.0.1", "timeout_seconds": 30.0}),
        ("done", {"summary": "ok", "output": {"n": 1}}, {"type": "done", "summary": "ok", "output": {"n": 1}}),
        ("computer", {"action": "finish", "message": "ok"}, {"type": "done", "summary": "ok"}),
        ("done", {"success": False, "summary": "could not"}, {"type": "fail", "reason": "could not"}),
        ("fail", {"reason": "blocked"}, {"type": "fail", "reason": "blocked"}),
    ],
)  # fmt: skip
def test_each_action_in_its_dialects(
    name: str, arguments: dict[str, Any], expected: dict[str, Any]
) -> None:
    """Anthropic, OpenAI and reference spellings of each action map to the normalised one."""
    assert dump(action_from_call(name, arguments)) == expected


@pytest.mark.parametrize(
    ("name", "arguments", "message"),
    [
        ("computer", {}, "needs an 'action'"),
        ("computer", {"action": "zoom", "region": [0, 0, 1, 1]}, "unknown action 'zoom'"),
        ("teleport", {}, "unknown action 'teleport'"),
        ("click", {"x": -1, "y": 2}, "invalid 'click' action: x"),
        ("computer", {"action": "type"}, "invalid 'type' action: text"),
        ("bash", {"restart": True}, "fresh shell"),
    ],
)
def test_calls_that_name_no_valid_action_say_why(
    name: str, arguments: dict[str, Any], message: str
) -> None:
    """A call the agent cannot perform raises an error the model can read and act on."""
    with pytest.raises(AgentError, match=message):
        action_from_call(name, arguments)


def test_to_screen_maps_every_coordinate_through_the_frame_scale() -> None:
    """Points of a half-size frame land on the screen pixel under their centre."""
    scale = ScaleInfo(2560, 1600, 1280, 800)
    click = to_screen(action_from_call("click", {"x": 0, "y": 799}), scale)
    assert dump(click) == {"type": "click", "x": 1, "y": 1599, "button": "left"}
    drag = to_screen(action_from_call("drag", {"x": 1, "y": 1, "to_x": 2, "to_y": 2}), scale)
    assert dump(drag) == {"type": "drag", "x": 3, "y": 3, "to_x": 5, "to_y": 5}
    scroll = to_screen(action_from_call("scroll", {"dy": 5}), scale)
    assert dump(scroll) == {"type": "scroll", "dx": 0, "dy": 5}  # no point, nothing to map
    assert to_screen(action_from_call("click", {"x": 3, "y": 4}), None) == action_from_call(
        "click", {"x": 3, "y": 4}
    )


@pytest.mark.parametrize(
    "action",
    [
        {"type": "click", "x": 1, "y": 2, "button": "left"},
        {"type": "click", "x": 1, "y": 2, "button": "right"},
        {"type": "double_click", "x": 1, "y": 2, "button": "left"},
        {"type": "move", "x": 1, "y": 2},
        {"type": "drag", "x": 1, "y": 2, "to_x": 3, "to_y": 4},
        {"type": "scroll", "x": 1, "y": 2, "dx": 0, "dy": -300},
        {"type": "scroll", "dx": 200, "dy": 0},
        {"type": "type", "text": "hello"},
        {"type": "key", "keys": ["ctrl", "s"]},
        {"type": "wait", "seconds": 2.0},
        {"type": "screenshot"},
        {"type": "bash", "command": "ls", "check": True},
        {"type": "navigate", "url": "http://x"},
        {"type": "done", "summary": "ok"},
    ],
)
def test_anthropic_tool_input_round_trips(action: dict[str, Any]) -> None:
    """Mapping a normalised action to Anthropic's tools and back gives the same action."""
    normal = action_from_call("computer", action)
    name, tool_input = anthropic_tool_input(normal)
    assert dump(action_from_call(name, tool_input)) == dump(normal)


def test_function_tools_describe_every_action_with_a_schema() -> None:
    """Every action type has a described function whose required fields are its properties."""
    assert set(FUNCTIONS) == set(ACTION_TYPES)
    for tool in function_tools(ACTION_TYPES):
        schema = tool["parameters"]
        assert tool["description"]
        assert schema["type"] == "object"
        assert set(schema["required"]) <= set(schema["properties"])
    assert [tool["name"] for tool in function_tools(["bash", "nope"])] == ["bash"]
