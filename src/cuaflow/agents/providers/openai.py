"""OpenAI Chat Completions with function calling, for OpenAI and any server speaking its API.

Every normalised action the machine can perform is offered as a function of the
same name (:data:`cuaflow.agents.tool_schemas.FUNCTIONS`), plus ``done`` and
``fail``. Screenshots go to the model as ``image_url`` data URLs in a user
message after the tool results; a turn without an image sends plain text, which
text-only local models accept too. Servers other than OpenAI's are reached
through ``CUAFLOW_OPENAI_BASE_URL``; they need no key.

429, 5xx and connection errors are retried by the SDK (``max_retries``, with
exponential backoff that honours ``retry-after``); what still fails raises
:class:`~cuaflow.errors.AgentError`.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from typing import Any

import openai

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

# Any key works for a local server, but the SDK insists on one.
LOCAL_SERVER_KEY = "unused"


class OpenAIProvider:
    """A model behind the Chat Completions API."""

    def __init__(self, model: str, settings: ProviderSettings) -> None:
        self.model = model
        self.settings = settings
        self._client: openai.AsyncOpenAI | None = None

    @property
    def spec(self) -> str:
        """The model spec, ``openai:<model>``."""
        return f"openai:{self.model}"

    def start(self, system_prompt: str, toolbox: Toolbox) -> OpenAISession:
        """Begin a conversation for one task."""
        return OpenAISession(self, system_prompt, toolbox)

    async def judge(self, system_prompt: str, question: str, view: View) -> str:
        """Ask about ``view`` without tools; return the model's text."""
        messages: list[Any] = [
            {"role": "system", "content": system_prompt},
            _user_message(question, view),
        ]
        message = await self.complete(messages, None)
        return str(message.get("content") or "")

    async def complete(self, messages: list[Any], tools: list[Any] | None) -> dict[str, Any]:
        """One chat completion; the assistant message as a dict."""
        client = self._get_client()
        try:
            if tools:
                completion = await client.chat.completions.create(
                    model=self.model, messages=messages, tools=tools
                )
            else:
                completion = await client.chat.completions.create(
                    model=self.model, messages=messages
                )
        except openai.APIStatusError as error:
            raise AgentError(
                f"the model server ({self.spec}) answered {error.status_code}: {error.message}"
            ) from error
        except openai.APIConnectionError as error:
            where = self.settings.base_url or "api.openai.com"
            raise AgentError(f"cannot reach the model server at {where}: {error}") from error
        if not completion.choices:
            raise AgentError(f"the model server ({self.spec}) answered with no choices")
        # Lenient servers send odd shapes (arguments as an object): read them, do not warn.
        message = completion.choices[0].message
        return message.model_dump(mode="json", exclude_none=True, warnings=False)

    def _get_client(self) -> openai.AsyncOpenAI:
        if self._client is None:
            key = self.settings.api_key
            if key is None:
                if self.settings.base_url is None:
                    raise AgentError(
                        "OPENAI_API_KEY is not set; set it, or set CUAFLOW_OPENAI_BASE_URL "
                        "to use another OpenAI-compatible server"
                    )
                key = LOCAL_SERVER_KEY
            self._client = openai.AsyncOpenAI(
                api_key=key,
                base_url=self.settings.base_url,
                max_retries=self.settings.max_retries,
                timeout=self.settings.timeout_seconds,
            )
        return self._client


class OpenAISession:
    """One task's conversation in Chat Completions messages."""

    def __init__(self, provider: OpenAIProvider, system_prompt: str, toolbox: Toolbox) -> None:
        self.provider = provider
        self.messages: list[Any] = [{"role": "system", "content": system_prompt}]
        self.tools: list[Any] = [
            {"type": "function", "function": function}
            for function in function_tools((*toolbox.types, "done", "fail"))
        ]

    async def ask(self, text: str, reports: Sequence[ToolReport], view: View) -> ModelTurn:
        """Send the reports and the view; return the model's next turn."""
        for report in reports:
            self.messages.append(
                {"role": "tool", "tool_call_id": report.call_id, "content": report.text}
            )
        if text or view.png is not None or view.text or view.url:
            self.messages.append(_user_message(text, view))
        _prune_screenshots(self.messages)
        message = await self.provider.complete(self.messages, self.tools)
        calls = [_tool_call(raw) for raw in message.get("tool_calls") or []]
        content = str(message.get("content") or "")
        history: dict[str, Any] = {"role": "assistant", "content": content or None}
        if calls:
            history["tool_calls"] = [_as_sent(raw) for raw in message["tool_calls"]]
        self.messages.append(history)
        # Servers that reason before answering (vLLM, DeepSeek, Ollama) return it beside content.
        reasoning = message.get("reasoning_content") or message.get("reasoning") or ""
        return ModelTurn(text=content, reasoning=str(reasoning), calls=calls)


def _user_message(text: str, view: View) -> dict[str, Any]:
    body = "\n\n".join(part for part in (text, describe_screen(view.text, view.url)) if part)
    if view.png is None:
        return {"role": "user", "content": body or "(no change to show)"}
    parts: list[dict[str, Any]] = []
    if body:
        parts.append({"type": "text", "text": body})
    data = base64.b64encode(view.png).decode()
    parts.append({"type": "image_url", "image_url": {"url": f"data:image/png;base64,{data}"}})
    return {"role": "user", "content": parts}


def _tool_call(raw: dict[str, Any]) -> ToolCall:
    function = raw.get("function") or {}
    name = str(function.get("name") or "")
    call_id = str(raw.get("id") or "")
    arguments = function.get("arguments") or "{}"
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments)
        except json.JSONDecodeError as error:
            return ToolCall(call_id, name, {}, error=f"the arguments are not valid JSON: {error}")
    if not isinstance(arguments, dict):
        return ToolCall(call_id, name, {}, error="the arguments must be a JSON object")
    try:
        return ToolCall(call_id, name, arguments, action=action_from_call(name, arguments))
    except AgentError as error:
        return ToolCall(call_id, name, arguments, error=str(error))


def _as_sent(raw: dict[str, Any]) -> dict[str, Any]:
    """A tool call as the API spells it, with its arguments as a JSON string."""
    function = dict(raw.get("function") or {})
    if not isinstance(function.get("arguments"), str):
        function["arguments"] = json.dumps(function.get("arguments") or {})
    return {**raw, "function": function}


def _prune_screenshots(messages: list[Any]) -> None:
    """Replace all but the latest :data:`KEEP_SCREENSHOTS` images with a note."""
    seen = 0
    for message in reversed(messages):
        content = message.get("content")
        if message.get("role") != "user" or not isinstance(content, list):
            continue
        for index, part in enumerate(content):
            if part.get("type") == "image_url":
                seen += 1
                if seen > KEEP_SCREENSHOTS:
                    content[index] = {"type": "text", "text": OMITTED_SCREENSHOT}
        if seen > KEEP_SCREENSHOTS:
            # Everything older was pruned on an earlier turn.
            return
