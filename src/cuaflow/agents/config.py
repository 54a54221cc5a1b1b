"""Which model a task step uses, and how to reach its provider, from the environment.

A model is named by a spec ``<provider>:<model>``, such as ``openai:gpt-4o`` or
``anthropic:claude-sonnet-4-5``. A task step's own ``model`` wins; otherwise
``CUAFLOW_MODEL_V1`` / ``_V3`` / ``_V4`` for the step's ``cua_version``; otherwise
``CUAFLOW_MODEL``. With none of them set, no model is configured and only
scripted steps can run.

Provider settings:

- OpenAI and any server speaking its API (vLLM, Ollama, LM Studio):
  ``CUAFLOW_OPENAI_BASE_URL`` (or ``OPENAI_BASE_URL``) and ``OPENAI_API_KEY``;
  a local server given by base URL needs no key.
- Anthropic: ``ANTHROPIC_API_KEY`` and ``ANTHROPIC_BASE_URL``;
  ``CUAFLOW_ANTHROPIC_COMPUTER_TOOL`` picks the computer-use tool version.
- Both: ``CUAFLOW_MODEL_MAX_RETRIES`` (retries of 429, 5xx and connection
  errors, with exponential backoff; default 4), ``CUAFLOW_MODEL_TIMEOUT_SECONDS``
  (one request; default 120), ``CUAFLOW_MODEL_MAX_TOKENS`` (default 4096).
- The agent loop: ``CUAFLOW_SCREENSHOT_MAX_WIDTH`` / ``_HEIGHT`` (the largest
  screenshot a model is shown; default 1280x800) and ``CUAFLOW_LOOP_REPEATS``
  (identical turns on an unchanged screen that end a task; default 3).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from cuaflow.errors import AgentError

Provider = Literal["openai", "anthropic"]
PROVIDERS: tuple[Provider, ...] = ("openai", "anthropic")
MODEL_ENV = "CUAFLOW_MODEL"
DEFAULT_COMPUTER_TOOL = "computer_20250124"


@dataclass(frozen=True)
class ModelSpec:
    """A provider and one of its models."""

    provider: Provider
    model: str

    def __str__(self) -> str:
        return f"{self.provider}:{self.model}"


@dataclass(frozen=True)
class ProviderSettings:
    """How to reach a provider: key, base URL, retries, timeouts, output size."""

    api_key: str | None
    base_url: str | None
    max_retries: int = 4
    timeout_seconds: float = 120.0
    max_tokens: int = 4096
    computer_tool: str = DEFAULT_COMPUTER_TOOL


@dataclass(frozen=True)
class LoopSettings:
    """Limits of the agent loop."""

    screenshot_max_width: int = 1280
    screenshot_max_height: int = 800
    loop_repeats: int = 3


def model_spec_for(
    step_model: str | None, cua_version: str, env: Mapping[str, str] | None = None
) -> str | None:
    """The model spec a task step uses, or None when no model is configured."""
    env = os.environ if env is None else env
    per_version = env.get(f"{MODEL_ENV}_{cua_version.upper()}")
    for candidate in (step_model, per_version, env.get(MODEL_ENV)):
        if candidate and candidate.strip():
            return candidate.strip()
    return None


def parse_model_spec(text: str, env: Mapping[str, str] | None = None) -> ModelSpec:
    """``openai:gpt-4o`` as a :class:`ModelSpec`.

    A bare model name takes the provider of ``CUAFLOW_MODEL`` when that names
    one, else ``anthropic`` for ``claude-*`` names and ``openai`` for the rest.
    Raises :class:`AgentError` for an unknown provider or an empty model name.
    """
    env = os.environ if env is None else env
    provider, colon, model = text.strip().partition(":")
    if not colon:
        model, provider = provider, _default_provider(provider, env)
    provider = provider.strip().lower()
    model = model.strip()
    if provider not in PROVIDERS:
        raise AgentError(
            f"unknown model provider '{provider}' in '{text}'; "
            f"use openai:<model> or anthropic:<model>"
        )
    if not model:
        raise AgentError(f"no model name in '{text}'; use {provider}:<model>")
    return ModelSpec(provider, model)


def provider_settings(provider: Provider, env: Mapping[str, str] | None = None) -> ProviderSettings:
    """The settings of ``provider`` read from the environment."""
    env = os.environ if env is None else env
    if provider == "openai":
        api_key = env.get("OPENAI_API_KEY")
        base_url = env.get("CUAFLOW_OPENAI_BASE_URL") or env.get("OPENAI_BASE_URL")
    else:
        api_key, base_url = env.get("ANTHROPIC_API_KEY"), env.get("ANTHROPIC_BASE_URL")
    return ProviderSettings(
        api_key=api_key or None,
        base_url=base_url or None,
        max_retries=_int(env, "CUAFLOW_MODEL_MAX_RETRIES", 4),
        timeout_seconds=float(_int(env, "CUAFLOW_MODEL_TIMEOUT_SECONDS", 120)),
        max_tokens=_int(env, "CUAFLOW_MODEL_MAX_TOKENS", 4096),
        computer_tool=env.get("CUAFLOW_ANTHROPIC_COMPUTER_TOOL") or DEFAULT_COMPUTER_TOOL,
    )


def loop_settings(env: Mapping[str, str] | None = None) -> LoopSettings:
    """The agent loop's limits read from the environment."""
    env = os.environ if env is None else env
    return LoopSettings(
        screenshot_max_width=_int(env, "CUAFLOW_SCREENSHOT_MAX_WIDTH", 1280),
        screenshot_max_height=_int(env, "CUAFLOW_SCREENSHOT_MAX_HEIGHT", 800),
        loop_repeats=_int(env, "CUAFLOW_LOOP_REPEATS", 3),
    )


def _default_provider(model: str, env: Mapping[str, str]) -> str:
    configured, colon, _ = (env.get(MODEL_ENV) or "").partition(":")
    if colon and configured.strip().lower() in PROVIDERS:
        return configured.strip().lower()
    return "anthropic" if model.strip().lower().startswith("claude") else "openai"


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        value = int(raw)
    except ValueError:
        raise AgentError(f"{name} must be a whole number, got {raw!r}") from None
    if value < 0:
        raise AgentError(f"{name} must not be negative, got {value}")
    return value
