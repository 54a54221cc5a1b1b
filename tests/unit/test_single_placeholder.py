"""Tests for is_single_placeholder: the renderer's rule for a string that yields a raw value."""

from __future__ import annotations

from typing import Any

import pytest

from cuaflow.dsl.templates import is_single_placeholder, render

CONTEXT: dict[str, Any] = {"inputs": {"items": [1, 2], "n": 3}}


@pytest.mark.parametrize(
    "text",
    ["{{inputs.items}}", "{{  inputs.n  }}", "{{ '{{' }}", "{{ '}}' }}", "{{ {'a': 1} }}"],
)
def test_one_placeholder_and_nothing_else_is_single(text: str) -> None:
    """Exactly one placeholder, even one holding braces in strings or a dict, is single."""
    assert is_single_placeholder(text)


@pytest.mark.parametrize(
    "text",
    ["", "5", " {{inputs.n}}", "{{inputs.n}}\n", "{{inputs.n}}{{inputs.n}}", "{{inputs.n"],
)
def test_text_outside_or_a_second_placeholder_is_not_single(text: str) -> None:
    """Text around the braces, two placeholders, none, or an unclosed one is not single."""
    assert not is_single_placeholder(text)


def test_unterminated_string_is_not_single_and_does_not_raise() -> None:
    """A placeholder whose quote never closes answers False instead of raising."""
    assert not is_single_placeholder("{{ 'x }}")


@pytest.mark.parametrize(
    "text", ["{{inputs.items}}", "{{ inputs.n }}", "x {{inputs.n}}", "{{inputs.n}}{{inputs.n}}"]
)
def test_agrees_with_what_render_yields(text: str) -> None:
    """A single placeholder renders to the raw value; anything else renders to text."""
    rendered = render(text, CONTEXT)
    assert is_single_placeholder(text) == (not isinstance(rendered, str))
