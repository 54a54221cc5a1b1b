"""Which model a task step uses, and the provider settings, from the environment."""

from __future__ import annotations

import pytest

from cuaflow.agents.config import (
    ModelSpec,
    loop_settings,
    model_spec_for,
    parse_model_spec,
    provider_settings,
)
from cuaflow.errors import AgentError


def test_the_step_then_the_cua_version_then_the_global_model_decide() -> None:
    """A step's ``model`` wins; then CUAFLOW_MODEL_<VERSION>; then CUAFLOW_MODEL; else none."""
    env = {"CUAFLOW_MODEL": "openai:gpt-4o", "CUAFLOW_MODEL_V4": "anthropic:claude-x"}
    assert model_spec_for("openai:mine", "v4", env) == "openai:mine"
    assert model_spec_for(None, "v4", env) == "anthropic:claude-x"
    assert model_spec_for(None, "v3", env) == "openai:gpt-4o"
    assert model_spec_for(None, "v1", {"CUAFLOW_MODEL": "  "}) is None
    assert model_spec_for(None, "v1", {}) is None


@pytest.mark.parametrize(
    ("text", "env", "expected"),
    [
        ("openai:gpt-4o", {}, ModelSpec("openai", "gpt-4o")),
        ("Anthropic: claude-sonnet-4-5 ", {}, ModelSpec("anthropic", "claude-sonnet-4-5")),
        ("openai:org/model:7b", {}, ModelSpec("openai", "org/model:7b")),
        ("claude-opus-4", {}, ModelSpec("anthropic", "claude-opus-4")),
        ("llama3", {}, ModelSpec("openai", "llama3")),
        ("llama3", {"CUAFLOW_MODEL": "anthropic:claude-x"}, ModelSpec("anthropic", "llama3")),
    ],
)
def test_model_specs_parse(text: str, env: dict[str, str], expected: ModelSpec) -> None:
    """``provider:model`` splits at the first colon; a bare name gets a sensible provider."""
    assert parse_model_spec(text, env) == expected


@pytest.mark.parametrize(("text", "message"), [("gemini:pro", "unknown model provider"),
                                               ("openai:", "no model name")])  # fmt: skip
def test_bad_specs_say_what_is_wrong(text: str, message: str) -> None:
    """An unknown provider or an empty model name is an AgentError naming the problem."""
    with pytest.raises(AgentError, match=message):
        parse_model_spec(text, {})


def test_provider_settings_read_keys_urls_and_limits() -> None:
    """Each provider reads its own key and base URL; CUAFLOW_OPENAI_BASE_URL wins over OPENAI_'s."""
    env = {
        "OPENAI_API_KEY": "sk-o",
        "OPENAI_BASE_URL": "http://other",
        "CUAFLOW_OPENAI_BASE_URL": "http://local:8000/v1",
        "ANTHROPIC_API_KEY": "sk-a",
        "CUAFLOW_MODEL_MAX_RETRIES": "7",
        "CUAFLOW_ANTHROPIC_COMPUTER_TOOL": "computer_20251124",
    }
    openai = provider_settings("openai", env)
    assert (openai.api_key, openai.base_url, openai.max_retries) == (
        "sk-o",
        "http://local:8000/v1",
        7,
    )
    anthropic = provider_settings("anthropic", env)
    assert (anthropic.api_key, anthropic.base_url) == ("sk-a", None)
    assert anthropic.computer_tool == "computer_20251124"
    assert provider_settings("openai", {}).base_url is None


def test_bad_numbers_in_settings_are_named() -> None:
    """A setting that is not a whole number raises an AgentError naming the variable."""
    with pytest.raises(AgentError, match="CUAFLOW_LOOP_REPEATS"):
        loop_settings({"CUAFLOW_LOOP_REPEATS": "three"})
    assert loop_settings({"CUAFLOW_SCREENSHOT_MAX_WIDTH": "1024"}).screenshot_max_width == 1024
