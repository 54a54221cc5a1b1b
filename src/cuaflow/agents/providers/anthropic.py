"""Anthropic's Messages API with the computer-use and bash tools.

A machine with a screen gets the ``computer`` tool (``computer_20250124`` by
default, through its beta; ``CUAFLOW_ANTHROPIC_COMPUTER_TOOL`` picks another
version, such as ``computer_20251124`` or the ``computer_toolset_20260801``
family), sized to the scaled screenshots the model is shown. A machine with a
shell gets the ``bash`` tool. The other actions the machine can perform
(``navigate``, ``wait_for_port``...) and ``done``/``fail`` are custom tools.

Tool calls are read in both of Anthropic's shapes: ``computer`` with
``{"action": "left_click", "coordinate": [x, y]}``, and a toolset member named
for its action (``left_click`` with ``{"coordinate": [x, y]}``). The new
screenshot goes inside the last tool result, as the computer tool expects.

429, 5xx and connection errors are retried by the SDK (``max_retries``, with
exponential backoff that honours ``retry-after``); what still fails raises
:class:`~cuaflow.errors.AgentError`.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import Any

import anthropic

from cuaflow.agents.config import ProviderSettings
from cuaflow.agents.mapping import action_from_call
from cuaflow.agents.prompts import describe_screen
from cuaflow.agents.providers import (
    KEEP_SCREENSHOTS,
    OMITTED_SCREENSHOT,
    ModelTurn,
    Toolbox,
    ToolCall,
    ToolReport,
    View,
)
from cuaflow.agents.tool_schemas import function_tools
from cuaflow.errors import AgentError

# The beta flag each computer tool version needs.
COMPUTER_TOOL_BETAS = {
    "computer_20241022": "computer-use-2024-10-22",
    "computer_20250124": "computer-use-2025-01-24",
    "computer_20251124": "computer-use-2025-11-24",
}
# The normalised actions the computer tool covers.
COMPUTER_ACTIONS = frozenset(
    {"click", "double_click", "move", "drag", "scroll", "type", "key", "wait", "screenshot"}
)
BASH_TOOL = {"type": "bash_20250124", "name": "bash"}
# Any key works for a local or fake server, but the SDK insists on one.
LOCAL_SERVER_KEY = "unused"
# The size the computer tool declares when the machine showed no screenshot yet.
DEFAULT_SCREEN = (1024, 768)


class AnthropicProvider:
    """A model behind the Messages API."""

    def __init__(self, model: str, settings: ProviderSettings) -> None:
        self.model = model
        self.settings = settings
        self._client: anthropic.AsyncAnthropic | None = None

    @property
    def spec(self) -> str:
        """The model spec, ``anthropic:<model>``."""
        return f"anthropic:{self.model}"

    def start(self, system_prompt: str, toolbox: Toolbox) -> AnthropicSession:
        """Begin a conversation for one task."""
        return AnthropicSession(self, system_prompt, toolbox)

    async def judge(self, system_prompt: str, question: str, view: View) -> str:
        """Ask about ``view`` without tools; return the model's text."""
        content = _view_blocks(question, view)
        message = await self.complete(system_prompt, [{"role": "user", "content": content}], [])
        return "".join(block.get("text", "") for block in message if block.get("type") == "text")

    async def complete(
        self, system: str, messages: list[Any], tools: list[Any]
    ) -> list[dict[str, Any]]:
        """One Messages request; the answer's content blocks as dicts."""
        client = self._get_client()
        beta = next(
            (COMPUTER_TOOL_BETAS[t["type"]] for t in tools if t.get("type") in COMPUTER_TOOL_BETAS),
            None,
        )
        common: dict[str, Any] = {
            "model": self.model,
            "max_tokens": self.settings.max_tokens,
            "system": system,
            "messages": messages,
        }
        if tools:
            common["tools"] = tools
        try:
            if beta is not None:
                message: Any = await client.beta.messages.create(**common, betas=[beta])
            else:
                message = await client.messages.create(**common)
        except anthropic.APIStatusError as error:
            raise AgentError(
                f"the model server ({self.spec}) answered {error.status_code}: {error.message}"
            ) from error
        except anthropic.APIConnectionError as error:
            where = self.settings.base_url or "api.anthropic.com"
            raise AgentError(f"cannot reach the model server at {where}: {error}") from error
        # Lenient servers send odd shapes: read them as they come, without warnings.
        return [
            block.model_dump(mode="json", exclude_none=True, warnings=False)
            for block in message.content
        ]

    def _get_client(self) -> anthropic.AsyncAnthropic:
        if self._client is None:
            key = self.settings.api_key
            if key is None:
                if self.settings.base_url is None:
                    raise AgentError(
                        "ANTHROPIC_API_KEY is not set; set it, or set ANTHROPIC_BASE_URL "
                        "to use another server speaking the Messages API"
                    )
                key = LOCAL_SERVER_KEY
            self._client = anthropic.AsyncAnthropic(
                api_key=key,
                base_url=self.settings.base_url,
                max_retries=self.settings.max_retries,
                timeout=self.settings.timeout_seconds,
            )
        return self._client


class AnthropicSession:
    """One task's conversation in Messages content blocks."""

    def __init__(self, provider: AnthropicProvider, system_prompt: str, toolbox: Toolbox) -> None:
        self.provider = provider
        self.system = system_prompt
        self.messages: list[Any] = []
        self.tools = _tools(toolbox, provider.settings.computer_tool)

    async def ask(self, text: str, reports: Sequence[ToolReport], view: View) -> ModelTurn:
        """Send the reports and the view; return the model's next turn."""
        content: list[dict[str, Any]] = [
            {
                "type": "tool_result",
                "tool_use_id": report.call_id,
                "content": [{"type": "text", "text": report.text}],
                "is_error": not report.ok,
            }
            for report in reports
        ]
        blocks = _view_blocks(text, view)
        if content and blocks and blocks[-1]["type"] == "image":
            content[-1]["content"].append(blocks.pop())
        content.extend(blocks)
        self.messages.append({"role": "user", "content": content or [_text("(no change)")]})
        _prune_screenshots(self.messages)
        answer = await self.provider.complete(self.system, self.messages, self.tools)
        self.messages.append({"role": "assistant", "content": answer})
        texts, thoughts, calls = [], [], []
        for block in answer:
            kind = block.get("type")
            if kind == "text":
                texts.append(str(block.get("text") or ""))
            elif kind == "thinking":
                thoughts.append(str(block.get("thinking") or ""))
            elif kind == "tool_use":
                calls.append(_tool_call(block))
        return ModelTurn(text="\n".join(texts), reasoning="\n".join(thoughts), calls=calls)


def _tools(toolbox: Toolbox, computer_tool: str) -> list[dict[str, Any]]:
    types = set(toolbox.types)
    covered: set[str] = set()
    tools: list[dict[str, Any]] = []
    if types & (COMPUTER_ACTIONS - {"wait"}):
        if computer_tool.startswith("computer_toolset"):
            tools.append({"type": computer_tool})
        else:
            width, height = toolbox.screen or DEFAULT_SCREEN
            tools.append(
                {
                    "type": computer_tool,
                    "name": "computer",
                    "display_width_px": width,
                    "display_height_px": height,
                }
            )
        covered |= COMPUTER_ACTIONS
    if "bash" in types:
        tools.append(dict(BASH_TOOL))
        covered.add("bash")
    others = [kind for kind in toolbox.types if kind not in covered]
    for function in function_tools((*others, "done", "fail")):
        tools.append(
            {
                "name": function["name"],
                "description": function["description"],
                "input_schema": function["parameters"],
            }
        )
    return tools


def _tool_call(block: dict[str, Any]) -> ToolCall:
    name = str(block.get("name") or "")
    call_id = str(block.get("id") or "")
    arguments = block.get("input")
    if not isinstance(arguments, dict):
        return ToolCall(call_id, name, {}, error="the input must be a JSON object")
    try:
        return ToolCall(call_id, name, arguments, action=action_from_call(name, arguments))
    except AgentError as error:
        return ToolCall(call_id, name, arguments, error=str(error))


def _text(text: str) -> dict[str, Any]:
    return {"type": "text", "text": text}


def _view_blocks(text: str, view: View) -> list[dict[str, Any]]:
    blocks = [_text(part) for part in (text, describe_screen(view.text, view.url)) if part]
    if view.png is not None:
        data = base64.b64encode(view.png).decode()
        source = {"type": "base64", "media_type": "image/png", "data": data}
        blocks.append({"type": "image", "source": source})
    return blocks


def _prune_screenshots(messages: list[Any]) -> None:
    """Replace all but the latest :data:`KEEP_SCREENSHOTS` images with a note."""
    seen = 0
    for message in reversed(messages):
        if message["role"] != "user":
            continue
        for holder in _image_holders(message["content"]):
            for index, block in enumerate(holder):
                if block.get("type") == "image":
                    seen += 1
                    if seen > KEEP_SCREENSHOTS:
                        holder[index] = _text(OMITTED_SCREENSHOT)
        if seen > KEEP_SCREENSHOTS:
            # Everything older was pruned on an earlier turn.
            return


def _image_holders(content: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """The block lists of a user message that may hold images: its own, and its tool results'."""
    holders = [content]
    for block in content:
        if block.get("type") == "tool_result" and isinstance(block.get("content"), list):
            holders.append(block["content"])
    return holders
