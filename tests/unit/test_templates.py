"""Tests for the template engine: rendering, missing values, secrets, the sandbox and limits."""

from __future__ import annotations

import time
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cuaflow.dsl.templates import (
    MAX_TEMPLATE_CHARS,
    MISSING,
    Reference,
    iter_strings,
    parse_references,
    render,
    render_operand,
    secret_names,
    substitute_secrets,
)
from cuaflow.errors import TemplateError, TemplateLimitExceeded

CONTEXT: dict[str, Any] = {
    "inputs": {"port": 8080, "name": "web", "items": [1, 2], "flag": True, "nothing": None},
    "vars": {"iteration": 2, "attempt": 1, "item": {"a": 1}},
    "start_up": {"status": "succeeded", "passed": True, "output": {"rows": ["a", "b", "c"]}},
    "start-up": {"status": "hyphenated"},
    "counts": {"0": "zero"},
    "secrets": {"TOKEN": "hunter2", "my-key": "s3cret"},
}


def test_strings_without_placeholders_are_returned_as_they_are() -> None:
    """A string with no `{{` is returned as the very same object, with no parsing."""
    text = "echo ${#arr[@]} {% raw %} {# not a comment #} }}"
    assert render(text, CONTEXT) is text


def test_non_strings_pass_through_and_containers_render_recursively() -> None:
    """Numbers, booleans and None are unchanged; dict values and list items are rendered, keys never."""
    value = {"{{ inputs.name }}": ["{{ inputs.port }}", 3, None, {"deep": "on {{ inputs.port }}"}]}
    assert render(value, CONTEXT) == {"{{ inputs.name }}": [8080, 3, None, {"deep": "on 8080"}]}
    assert render(7.5, CONTEXT) == 7.5


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{{ inputs.port }}", 8080),
        ("{{inputs.items}}", [1, 2]),
        ("{{   vars.item   }}", {"a": 1}),
        ("{{ inputs.flag }}", True),
        ("{{ inputs.nothing }}", None),
        ("{{ inputs.port + 1 }}", 8081),
        ("{{ inputs }}", CONTEXT["inputs"]),
    ],
)
def test_a_lone_placeholder_yields_the_raw_value(template: str, expected: Any) -> None:
    """A string that is exactly one placeholder renders to the JSON value, not text."""
    assert render(template, CONTEXT) == expected


def test_raw_values_are_copies_and_braces_never_trim() -> None:
    """Changing a rendered list leaves the context alone; `{{-1}}` is minus one, not trimming."""
    rendered = render("{{ inputs.items }}", CONTEXT)
    rendered.append(3)
    assert CONTEXT["inputs"]["items"] == [1, 2]
    assert render("a {{-1}} b", CONTEXT) == "a -1 b"


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        (" {{ inputs.port }}", " 8080"),
        ("{{ inputs.port }}\n", "8080\n"),
        ("{{ inputs.flag }}/{{ inputs.nothing }}", "true/null"),
        ("items={{ inputs.items }} item={{ vars.item }}", 'items=[1,2] item={"a":1}'),
        ("{{ inputs.name }}{{ inputs.port }}", "web8080"),
        ("{{ 1.5 }} {{ 1e-5 }}", "1.5 1e-05"),
    ],
)
def test_mixed_text_interpolates_values_json_style(template: str, expected: str) -> None:
    """Values inside text become JSON-style text: true, null, compact JSON for containers."""
    assert render(template, CONTEXT) == expected


def test_only_double_braces_are_active_and_text_is_kept_byte_for_byte() -> None:
    """`{%`, `{#`, CRLF and trailing newlines around a placeholder survive untouched."""
    text = 'n=${#arr[@]} {% if x %}{# c #}\r\n{{ inputs.port }}\r\n  "}}" {{ "{{" }}\n'
    assert render(text, CONTEXT) == 'n=${#arr[@]} {% if x %}{# c #}\r\n8080\r\n  "}}" {{\n'


def test_braces_inside_expressions_match_like_jinja() -> None:
    """`}}` inside a string literal or a dict literal does not end the placeholder."""
    assert render("{{ '}}' }}", CONTEXT) == "}}"
    assert render("{{ {'a': {'b': 1}} }}", CONTEXT) == {"a": {"b": 1}}


def test_tilde_and_string_filter_use_json_style_text() -> None:
    """`~`, `| string` and `| join` turn values into text by the same rule as interpolation."""
    assert render("{{ 'flag=' ~ inputs.flag ~ ' ' ~ inputs.nothing }}", CONTEXT) == "flag=true null"
    assert render("{{ inputs.items ~ '' }}", CONTEXT) == "[1,2]"
    assert render("{{ [true, none, 1] | join(',') }}", CONTEXT) == "true,null,1"
    assert render("{{ inputs.flag | string }}", CONTEXT) == "true"


def test_hyphenated_step_ids_are_names_and_spaced_minus_subtracts() -> None:
    """`start-up.status` reads step `start-up`; `a - b` with spaces is subtraction."""
    assert render("{{ start-up.status }}", CONTEXT) == "hyphenated"
    assert render("{{ vars.iteration - 1 }}", CONTEXT) == 1
    assert render("{{ secrets.my-key }}", CONTEXT) == "{{secrets.my-key}}"


def test_lookups_read_data_keys_never_methods() -> None:
    """`inputs.items` is the input named items; indexes work on lists, also from the end."""
    assert render("{{ inputs.items }}", CONTEXT) == [1, 2]
    assert render("{{ start_up.output.rows.1 }}", CONTEXT) == "b"
    assert render("{{ start_up.output.rows[-1] }}", CONTEXT) == "c"
    assert render("{{ counts.0 }}", CONTEXT) == "zero"


def test_harmless_filters_are_available() -> None:
    """Common filters work: upper, default, length, tojson, map, sort, replace, round."""
    assert render("{{ inputs.name | upper }}", CONTEXT) == "WEB"
    assert render("{{ inputs.items | length }}", CONTEXT) == 2
    assert render("{{ inputs.items | tojson }}", CONTEXT) == "[1, 2]"
    assert render("{{ start_up.output.rows | map('upper') | list }}", CONTEXT) == ["A", "B", "C"]
    assert render("{{ start_up.output.rows | reverse }}", CONTEXT) == ["c", "b", "a"]
    assert render("{{ inputs.name | replace('w', 'W') }}", CONTEXT) == "Web"
    assert render("{{ 2.567 | round(1) }}", CONTEXT) == 2.6


@pytest.mark.parametrize("name", ["center", "format", "indent", "random", "attr", "batch", "slice"])
def test_dangerous_or_random_filters_are_not_available(name: str) -> None:
    """Filters that can build huge values, reach attributes or break determinism do not exist."""
    with pytest.raises(TemplateError, match=f"No filter named '{name}'"):
        render(f"{{{{ inputs.name | {name}(3) }}}}", CONTEXT)


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("{{ inputs.prot }}", "'inputs.prot' is not defined: the run has no input 'prot'"),
        ("{{ start_up.foo }}", "'start_up.foo' is not defined: step 'start_up' has no field 'foo'"),
        ("x {{ deploy.status }}", "'deploy.status' is not defined: there is no step"),
        ("{{ start_up.output.rows.7 }}", "'start_up.output.rows' has 3 item(s), so no item 7"),
        ("{{ inputs.name.upper }}", "'inputs.name' is a string, which has no field 'upper'"),
        ("{{ vars.row }}", "no variable is named 'row'"),
        ("{{ inputs.prot | upper }}", "'inputs.prot' is not defined"),
        ("{{ x-1 }}", "put spaces around '-'"),
    ],
)
def test_missing_values_raise_an_error_naming_the_path(template: str, message: str) -> None:
    """Rendering an undefined path raises TemplateError saying which path and why."""
    with pytest.raises(TemplateError) as caught:
        render(template, CONTEXT)
    assert message in str(caught.value)
    assert not isinstance(caught.value, TemplateLimitExceeded)


def test_default_and_defined_handle_missing_values() -> None:
    """`| default(...)` fills in anything missing along a path, `is defined` tests for it."""
    assert render("{{ inputs.prot | default(80) }}", CONTEXT) == 80
    assert render("{{ deploy.output.x | default('none') }}", CONTEXT) == "none"
    assert render("{{ inputs.prot is defined }}/{{ inputs.port is defined }}", CONTEXT) == (
        "false/true"
    )


def test_render_operand_tells_missing_apart_from_errors() -> None:
    """A lone undefined placeholder is MISSING; the same inside text, or a bad template, raises."""
    assert render_operand("{{ inputs.prot }}", CONTEXT) is MISSING
    assert render_operand("{{ deploy.output.rows[0] }}", CONTEXT) is MISSING
    assert render_operand("{{ inputs.prot | upper }}", CONTEXT) is MISSING
    assert render_operand("{{ inputs.nothing }}", CONTEXT) is None
    assert render_operand(["{{ inputs.port }}"], CONTEXT) == [8080]
    assert render_operand(5, CONTEXT) == 5
    with pytest.raises(TemplateError, match=r"inputs\.prot"):
        render_operand("port {{ inputs.prot }}", CONTEXT)
    with pytest.raises(TemplateError):
        render_operand("{{ inputs.port + 'a' }}", CONTEXT)


def test_secrets_render_to_their_placeholder_never_their_value() -> None:
    """`{{secrets.NAME}}` stays a placeholder in raw, interpolated and joined forms."""
    rendered = render(
        {
            "raw": "{{ secrets.TOKEN }}",
            "text": "Bearer {{secrets.TOKEN}}",
            "joined": "{{ 'Bearer ' ~ secrets.TOKEN }}",
            "upper": "{{ secrets.TOKEN | upper }}",
            "listed": "{{ [secrets['TOKEN']] }}",
        },
        CONTEXT,
    )
    assert rendered == {
        "raw": "{{secrets.TOKEN}}",
        "text": "Bearer {{secrets.TOKEN}}",
        "joined": "Bearer {{secrets.TOKEN}}",
        "upper": "{{SECRETS.TOKEN}}",
        "listed": ["{{secrets.TOKEN}}"],
    }
    assert "hunter2" not in repr(rendered)


def test_secret_names_are_checked_when_known_and_the_whole_namespace_is_refused() -> None:
    """An unknown secret is undefined when the context lists secrets; `{{ secrets }}` is an error."""
    with pytest.raises(TemplateError, match="no secret is named 'NOPE'"):
        render("{{ secrets.NOPE }}", CONTEXT)
    assert render_operand("{{ secrets.NOPE }}", CONTEXT) is MISSING
    assert render("{{ secrets.ANY }}", {"inputs": {}}) == "{{secrets.ANY}}"
    with pytest.raises(TemplateError, match="one at a time"):
        render("{{ secrets }}", CONTEXT)


def test_substitute_secrets_fills_placeholders_at_the_last_moment() -> None:
    """The driver's substitution replaces each placeholder and names an unknown secret."""
    text = render("curl -H 'Authorization: {{ secrets.TOKEN }}' {{ secrets.my-key }}", CONTEXT)
    assert secret_names(text) == {"TOKEN", "my-key"}
    assert substitute_secrets(text, CONTEXT["secrets"]) == (
        "curl -H 'Authorization: hunter2' s3cret"
    )
    assert substitute_secrets("typed {{ secrets.TOKEN }}", CONTEXT["secrets"]) == "typed hunter2"
    with pytest.raises(TemplateError, match="'MISSING_ONE'"):
        substitute_secrets("{{secrets.MISSING_ONE}}", CONTEXT["secrets"])


@pytest.mark.parametrize(
    "template",
    [
        "{{ ''.__class__ }}",
        "{{ ''.__class__.__mro__ }}",
        "{{ ().__class__.__base__.__subclasses__() }}",
        "{{ self.__init__ }}",
        "{{ self }}",
        "{{ cycler.__init__.__globals__ }}",
        "{{ lipsum.__globals__ }}",
        "{{ inputs.name.__class__ }}",
        "{{ inputs.name.upper() }}",
        "{{ range(10) }}",
        "{{ namespace() }}",
        "{{ dict(a=1) }}",
        "{{ '{0.__class__}'.format(inputs) }}",
        "{{ '%s' % inputs.name }}",
        "{{ inputs.items.append(3) }}",
    ],
)
def test_escapes_and_calls_raise_template_errors(template: str) -> None:
    """Attribute escapes, globals, method calls and % formatting all fail as TemplateError."""
    with pytest.raises(TemplateError):
        render(template, CONTEXT)
    assert CONTEXT["inputs"]["items"] == [1, 2]


@pytest.mark.parametrize(
    "template",
    [
        "{{ 9**9**9 }}",
        "{{ 9**(9**9) }}",
        "{{ 2**64 }}",
        "{{ 'a'*1000000000 }}",
        "{{ [1]*10**9 }}",
        "{{ (('a' * 999) * 999) * 999 }}",
        "{{ ('a' * 900000) ~ ('a' * 900000) }}",
        "{{ ('a' * 900000) + ('a' * 900000) }}",
        "{{ ('a' * 1000) | replace('', 'b' * 1000) }}",
        "{{ ['a' * 9000] * 1000 | join(',') }}",
        "{{ ('a' * 999999) | list }}",
        "{{ ('x' * 999999) | upper | lower | upper | lower | upper | lower }}",
        "{{ 2.0 ** 5000 }}",
        "{{ 5 | round(1000000000, 'ceil') }}",
        "{{ inputs | tojson(indent=1000000000) }}",
        "{{ [[1] * 1000] * 999 | sum(start=[]) }}",
    ],
)
def test_bombs_are_refused_quickly(template: str) -> None:
    """Templates that would burn CPU or memory raise TemplateError within a fraction of a second."""
    started = time.perf_counter()
    with pytest.raises(TemplateError):
        render(template, CONTEXT)
    assert time.perf_counter() - started < 1.0


def test_size_limits_are_reported_as_limit_errors() -> None:
    """Over-long templates, huge strings and huge integers raise TemplateLimitExceeded."""
    long_template = "{{ inputs.port }}" + "x" * MAX_TEMPLATE_CHARS
    for template in (long_template, "{{ 9**9**9 }}", "{{ 'a'*1000000000 }}", "{{ [1]*10**9 }}"):
        with pytest.raises(TemplateLimitExceeded):
            render(template, CONTEXT)
    assert len(render("{{ 'a' * 1000000 }}", CONTEXT)) == 1_000_000


def test_deep_nesting_is_an_error_not_a_crash() -> None:
    """Thousands of nested parentheses or `not`s raise TemplateError instead of crashing."""
    for template in ("{{ " + "(" * 3000 + "1" + ")" * 3000 + " }}", "{{ " + "not " * 2000 + "1 }}"):
        with pytest.raises(TemplateError):
            render(template, CONTEXT)


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("{{ inputs.port", "never closed"),
        ("{{ 'abc }}", "unterminated string"),
        ("{{ }}", "invalid template"),
        ("{{ a b }}", "invalid template {{ a b }}"),
        ("{{ inputs | nosuchfilter }}", "No filter named 'nosuchfilter'"),
        ("{{ 1 / 0 }}", "division by zero"),
    ],
)
def test_bad_templates_raise_readable_errors(template: str, message: str) -> None:
    """Syntax errors, unknown filters and runtime failures are TemplateErrors that say what is wrong."""
    with pytest.raises(TemplateError, match=message.replace("{", r"\{").replace("}", r"\}")):
        render(template, CONTEXT)


def test_parse_references_lists_each_constant_path_once() -> None:
    """References carry root, the constant path after it, and the text as written."""
    text = (
        "{{ start_up.status | upper }} {{ start-up.output[vars.i].x }} {{ a.b.0 }}"
        " {{ inputs['x y'] }} {{ (c or d).e }} {{ start_up.status }} {{ secrets.TOKEN }} {{ vars }}"
    )
    assert parse_references(text) == [
        Reference("start_up", ("status",), "start_up.status"),
        Reference("start-up", ("output",), "start-up.output"),
        Reference("vars", ("i",), "vars.i"),
        Reference("a", ("b", 0), "a.b.0"),
        Reference("inputs", ("x y",), "inputs['x y']"),
        Reference("c", (), "c"),
        Reference("d", (), "d"),
        Reference("secrets", ("TOKEN",), "secrets.TOKEN"),
        Reference("vars", (), "vars"),
    ]
    assert parse_references("no templates here") == []


def test_parse_references_reports_syntax_and_filter_errors() -> None:
    """A template that cannot compile raises TemplateError at parse time, for the validator."""
    with pytest.raises(TemplateError, match="expected token"):
        parse_references("{{ a b }}")
    with pytest.raises(TemplateError, match="No filter named 'center'"):
        parse_references("{{ a | center }}")


def test_iter_strings_yields_every_string_with_its_location() -> None:
    """Strings nested in objects and arrays come out in document order with their key path."""
    value = {"a": ["x", {"b": "y", "n": 1}], "c": "z", "d": None}
    assert list(iter_strings(value)) == [(("a", 0), "x"), (("a", 1, "b"), "y"), (("c",), "z")]
    assert list(iter_strings("top")) == [((), "top")]


_SYMBOLS = ["{{", "}}", "{", "}", "(", ")", "[", "]", "'", '"', "\\", ".", "|", "~", "-", "*"]
_WORDS = ["inputs", "vars", "secrets", "start_up", "start-up", "port", "items", "__class__"]
_MORE = ["self", "upper", "default", "join", "0", "9", "1e-5", " ", "not ", " and ", " if ", "%"]
_FRAGMENTS = st.sampled_from([*_SYMBOLS, "**", *_WORDS, *_MORE])


@settings(max_examples=300, deadline=None)
@given(st.lists(_FRAGMENTS | st.text(max_size=4), max_size=25).map("".join))
def test_render_raises_only_template_errors_for_any_text(text: str) -> None:
    """Whatever the text, rendering either succeeds or raises TemplateError, nothing else."""
    try:
        render(text, CONTEXT)
        render_operand(text, CONTEXT)
        parse_references(text)
    except TemplateError:
        pass
