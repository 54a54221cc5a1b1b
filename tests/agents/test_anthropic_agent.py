"""The agent loop through the real Anthropic SDK against a fake Messages server."""

from __future__ import annotations

import base64
from pathlib import Path

from cuaflow.agents.config import LoopSettings, ProviderSettings
from cuaflow.agents.loop import ModelAgent, default_scaler
from cuaflow.agents.providers.anthropic import AnthropicProvider
from cuaflow.dsl.actions import Click, Drag, Key, Scroll, Type
from cuaflow.machines.screenshots import png_size
from cuaflow.machines.terminal import TerminalMachine
from tests.agents.fakes import (
    FakeModelServer,
    ScreenMachine,
    anthropic_error,
    anthropic_turn,
    context_for,
    serve,
)

# A 2560x1600 screen shown to the model at 1280x800: every frame pixel is 2x2 screen pixels.
HALF = LoopSettings(screenshot_max_width=1280, screenshot_max_height=800)


def provider(server: FakeModelServer, **settings: object) -> AnthropicProvider:
    options = {"api_key": None, "base_url": server.url, "max_retries": 2, **settings}
    return AnthropicProvider("fake-model", ProviderSettings(**options))  # type: ignore[arg-type]


def agent(server: FakeModelServer, **settings: object) -> ModelAgent:
    return ModelAgent(provider(server, **settings), settings=HALF, scaler=default_scaler(HALF))


async def test_bash_tool_runs_on_the_terminal_then_done(tmp_path: Path) -> None:
    """The bash tool's command runs for real; the tool result carries its output."""
    terminal = TerminalMachine("local-terminal", tmp_path)
    with serve(
        anthropic_turn(("bash", {"command": "printf hi > f.txt; cat f.txt"}), thinking="plan"),
        anthropic_turn(("done", {"summary": "wrote it"}), text="All set."),
    ) as server:
        ctx = context_for(terminal, "write hi")
        outcome = await agent(server).run(ctx)
    assert outcome.passed
    assert outcome.summary == "wrote it"
    assert (tmp_path / "f.txt").read_text() == "hi"
    assert ctx.texts("reasoning") == ["plan", "All set."]
    first, second = (request.body for request in server.requests)
    assert server.requests[0].path.startswith("/v1/messages")
    tools = {tool["name"]: tool for tool in first["tools"]}
    assert tools["bash"]["type"] == "bash_20250124"
    assert "computer" not in tools
    assert "done" in tools
    assert "input_schema" in tools["done"]
    assert "terminal" in first["system"]
    result = second["messages"][2]["content"][0]
    assert result["type"] == "tool_result"
    assert result["is_error"] is False
    assert result["tool_use_id"] == second["messages"][1]["content"][1]["id"]
    assert "hi" in result["content"][0]["text"]
    # The thinking block goes back to the model unchanged, as the API requires.
    assert second["messages"][1]["content"][0] == {
        "type": "thinking",
        "thinking": "plan",
        "signature": "sig",
    }


async def test_coordinates_on_a_scaled_screenshot_map_back_to_the_screen() -> None:
    """The model sees 1280x800; its clicks, drags and scrolls land at 2x on the 2560x1600 screen."""
    machine = ScreenMachine(2560, 1600)
    with serve(
        anthropic_turn(("computer", {"action": "left_click", "coordinate": [100, 50]})),
        anthropic_turn(
            (
                "computer",
                {"action": "left_click_drag", "start_coordinate": [10, 10], "coordinate": [20, 30]},
            ),
            (
                "computer",
                {
                    "action": "scroll",
                    "coordinate": [640, 400],
                    "scroll_direction": "down",
                    "scroll_amount": 3,
                },
            ),
        ),
        anthropic_turn(("computer", {"action": "type", "text": "hello"})),
        anthropic_turn(("computer", {"action": "key", "text": "ctrl+s"})),
        anthropic_turn(("done", {"summary": "saved"})),
    ) as server:
        ctx = context_for(machine, "save the document")
        outcome = await agent(server, computer_tool="computer_20250124").run(ctx)
    assert outcome.passed, outcome.error
    assert machine.performed == [
        Click(type="click", x=201, y=101),
        Drag(type="drag", x=21, y=21, to_x=41, to_y=61),
        Scroll(type="scroll", x=1281, y=801, dx=0, dy=300),
        Type(type="type", text="hello"),
        Key(type="key", keys=["ctrl", "s"]),
    ]
    first = server.requests[0]
    assert first.headers.get("anthropic-beta") == "computer-use-2025-01-24"
    computer = next(t for t in first.body["tools"] if t["name"] == "computer")
    assert computer == {
        "type": "computer_20250124",
        "name": "computer",
        "display_width_px": 1280,
        "display_height_px": 800,
    }
    image = first.body["messages"][0]["content"][-1]
    assert image["type"] == "image"
    assert png_size(base64.b64decode(image["source"]["data"])) == (1280, 800)
    # After acting, the new screenshot rides in the last tool result.
    second = server.requests[1].body["messages"][-1]["content"]
    assert second[0]["type"] == "tool_result"
    assert second[0]["content"][-1]["type"] == "image"


async def test_toolset_members_named_for_their_action_are_understood() -> None:
    """A tool_use named ``left_click`` (the computer toolset's shape) is a click."""
    machine = ScreenMachine(1280, 800)
    with serve(
        anthropic_turn(("left_click", {"coordinate": [5, 6]}), extra={"toolset_name": "computer"}),
        anthropic_turn(("done", {"summary": "clicked"})),
    ) as server:
        outcome = await agent(server, computer_tool="computer_toolset_20260801").run(
            context_for(machine)
        )
    assert outcome.passed
    assert machine.performed == [Click(type="click", x=5, y=6)]
    assert {"type": "computer_toolset_20260801"} in server.requests[0].body["tools"]
    assert "anthropic-beta" not in server.requests[0].headers


async def test_old_screenshots_are_dropped_from_the_conversation() -> None:
    """Only the latest three screenshots are sent; older ones become a short note."""
    machine = ScreenMachine(640, 400)
    turns = [
        anthropic_turn(("computer", {"action": "mouse_move", "coordinate": [i, i]}))
        for i in range(5)
    ]
    with serve(*turns, anthropic_turn(("done", {"summary": "moved"}))) as server:
        await agent(server).run(context_for(machine))
    last = server.requests[-1].body["messages"]
    body = repr(last)
    assert body.count("'type': 'image'") == 3
    assert body.count("an earlier screenshot, omitted") == 3


async def test_a_429_from_anthropic_is_retried() -> None:
    """Rate limiting is retried with backoff and the task then passes."""
    machine = ScreenMachine(640, 400)
    with serve(
        anthropic_error(429, **{"retry-after-ms": "20"}),
        anthropic_turn(("done", {"summary": "ok"})),
    ) as server:
        outcome = await agent(server).run(context_for(machine))
    assert outcome.passed
    assert len(server.requests) == 2


async def test_bash_restart_is_answered_with_an_error(tmp_path: Path) -> None:
    """The bash tool's restart is not an action; the model is told so and can go on."""
    terminal = TerminalMachine("local-terminal", tmp_path)
    with serve(
        anthropic_turn(("bash", {"restart": True})),
        anthropic_turn(("done", {"summary": "fine"})),
    ) as server:
        outcome = await agent(server).run(context_for(terminal))
    assert outcome.passed
    report = server.requests[1].body["messages"][-1]["content"][0]
    assert report["is_error"] is True
    assert "fresh shell" in report["content"][0]["text"]
