"""Model providers: the conversation between the agent loop and a model.

A provider starts one :class:`ModelSession` per task. The loop asks the session
for each turn, handing it what happened since the last one (a report per tool
call, and the machine's state as a :class:`View`); the session keeps the
conversation in its provider's wire format and answers with a
:class:`ModelTurn`: the model's text and its tool calls, each already mapped to
a normalised action (in the coordinates of the frame the model saw) or to the
error the model will be told about.

:func:`provider_for` picks the provider of a model spec such as
``openai:gpt-4o``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from cuaflow.agents.config import parse_model_spec, provider_settings
from cuaflow.dsl.actions import Action

# Screenshots kept in a conversation: older ones are replaced by a note, so a
# long task does not grow its requests (and the model's bill) without end.
KEEP_SCREENSHOTS = 3
OMITTED_SCREENSHOT = "[an earlier screenshot, omitted]"


@dataclass(frozen=True)
class View:
    """What the model is shown of the machine: its text, URL and a (scaled) screenshot."""

    text: str = ""
    url: str | None = None
    png: bytes | None = None
    width: int | None = None
    height: int | None = None

    @property
    def screen(self) -> tuple[int, int] | None:
        """The screenshot's size ``(width, height)``, if there is one."""
        if self.width is None or self.height is None:
            return None
        return self.width, self.height


@dataclass(frozen=True)
class ToolCall:
    """One tool call of a model turn: the normalised action, or why there is none."""

    id: str
    name: str
    arguments: dict[str, Any]
    action: Action | None = None
    error: str | None = None


@dataclass(frozen=True)
class ModelTurn:
    """A model's answer: its message, its separate reasoning (if any), and its tool calls."""

    text: str = ""
    reasoning: str = ""
    calls: list[ToolCall] = field(default_factory=list)


@dataclass(frozen=True)
class ToolReport:
    """What the model is told about one of its tool calls."""

    call_id: str
    text: str
    ok: bool = True


@dataclass(frozen=True)
class Toolbox:
    """The tools a model is offered: the machine's action types, plus ``done`` and ``fail``."""

    types: tuple[str, ...]
    screen: tuple[int, int] | None = None


class ModelSession(Protocol):
    """One task's conversation with a model."""

    async def ask(self, text: str, reports: Sequence[ToolReport], view: View) -> ModelTurn:
        """Tell the model ``text``, its calls' ``reports`` and the ``view``; get its next turn."""
        ...


class ModelProvider(Protocol):
    """A model behind a provider's API."""

    @property
    def spec(self) -> str:
        """The model spec, such as ``openai:gpt-4o``."""
        ...

    def start(self, system_prompt: str, toolbox: Toolbox) -> ModelSession:
        """Begin a conversation for one task."""
        ...

    async def judge(self, system_prompt: str, question: str, view: View) -> str:
        """Ask a one-off question about ``view``, without tools; return the model's text."""
        ...


def provider_for(model_spec: str) -> ModelProvider:
    """The provider for ``model_spec`` (``openai:<model>`` or ``anthropic:<model>``).

    Settings come from the environment (:mod:`cuaflow.agents.config`); the SDK
    client is made at the first request, so a missing key fails the task that
    needs it. Raises :class:`~cuaflow.errors.AgentError` for a malformed spec.
    """
    # The SDKs are imported only when a model is used: scripted and test-mode runs skip them.
    from cuaflow.agents.providers.anthropic import AnthropicProvider  # noqa: PLC0415
    from cuaflow.agents.providers.openai import OpenAIProvider  # noqa: PLC0415

    spec = parse_model_spec(model_spec)
    settings = provider_settings(spec.provider)
    if spec.provider == "anthropic":
        return AnthropicProvider(spec.model, settings)
    return OpenAIProvider(spec.model, settings)
