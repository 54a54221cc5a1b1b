"""The normalised action set: what an agent (or a scripted task) does on a machine.

An action is an object ``{"type": ..., params}``. The same models describe the
``actions`` a scripted task step carries, the actions a model provider's tool
calls are mapped to, and the actions the machines API performs. Any string in
an action is a template; a numeric field may be a template string too
(``"port": "{{inputs.port}}"``), which is rendered and checked again right
before the action runs.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Discriminator, Field, TypeAdapter


def _must_be_template(value: str) -> str:
    if "{{" not in value:
        raise ValueError("must be a number, or a template such as '{{inputs.port}}'")
    return value


TemplateStr = Annotated[str, AfterValidator(_must_be_template)]
Number = Annotated[float, Field(ge=0)] | TemplateStr
Coordinate = Annotated[int, Field(ge=0, le=100_000)] | TemplateStr
Port = Annotated[int, Field(ge=1, le=65535)] | TemplateStr


class _Action(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Bash(_Action):
    """Run a shell command; a non-zero exit fails the task unless ``check`` is false."""

    type: Literal["bash"]
    command: str = Field(min_length=1, max_length=100_000)
    check: bool = True
    timeout_seconds: Number | None = None


class Wait(_Action):
    """Do nothing for ``seconds``."""

    type: Literal["wait"]
    seconds: Number = 1.0


class WaitForPort(_Action):
    """Wait until something accepts TCP connections on ``host:port``."""

    type: Literal["wait_for_port"]
    port: Port
    host: str = "127.0.0.1"
    timeout_seconds: Number = 30.0


class WaitForFile(_Action):
    """Wait until ``path`` exists (relative paths are inside the run's working directory)."""

    type: Literal["wait_for_file"]
    path: str = Field(min_length=1, max_length=4096)
    timeout_seconds: Number = 30.0


class Click(_Action):
    """Click at screen coordinates."""

    type: Literal["click", "double_click"]
    x: Coordinate
    y: Coordinate
    button: Literal["left", "right", "middle"] = "left"


class Move(_Action):
    """Move the pointer to screen coordinates."""

    type: Literal["move"]
    x: Coordinate
    y: Coordinate


class Drag(_Action):
    """Press at one point, move to another, release."""

    type: Literal["drag"]
    x: Coordinate
    y: Coordinate
    to_x: Coordinate
    to_y: Coordinate


class Scroll(_Action):
    """Scroll by ``dx``/``dy`` pixels, at ``x``/``y`` when given."""

    type: Literal["scroll"]
    x: Coordinate | None = None
    y: Coordinate | None = None
    dx: int | TemplateStr = 0
    dy: int | TemplateStr = 0


class Type(_Action):
    """Type text; ``{{secrets.NAME}}`` placeholders are replaced only at this moment."""

    type: Literal["type"]
    text: str = Field(max_length=100_000)


class Key(_Action):
    """Press a key combination, such as ``["ctrl", "s"]``."""

    type: Literal["key"]
    keys: list[str] = Field(min_length=1, max_length=8)


class Screenshot(_Action):
    """Capture the screen."""

    type: Literal["screenshot"]


class Navigate(_Action):
    """Open ``url`` in the browser."""

    type: Literal["navigate"]
    url: str = Field(min_length=1, max_length=8192)


class Done(_Action):
    """The task is finished: ``summary`` says how, ``output`` carries structured results."""

    type: Literal["done"]
    summary: str | None = None
    output: Any = None


class Fail(_Action):
    """The task cannot be done: ``reason`` says why."""

    type: Literal["fail"]
    reason: str | None = None


Action = Annotated[
    Bash
    | Wait
    | WaitForPort
    | WaitForFile
    | Click
    | Move
    | Drag
    | Scroll
    | Type
    | Key
    | Screenshot
    | Navigate
    | Done
    | Fail,
    Discriminator("type"),
]

ACTION_TYPES = (
    "bash",
    "wait",
    "wait_for_port",
    "wait_for_file",
    "click",
    "double_click",
    "move",
    "drag",
    "scroll",
    "type",
    "key",
    "screenshot",
    "navigate",
    "done",
    "fail",
)

ACTION_ADAPTER: TypeAdapter[Action] = TypeAdapter(Action)
"""Validates a JSON object as one :data:`Action` (``ACTION_ADAPTER.validate_python``)."""
