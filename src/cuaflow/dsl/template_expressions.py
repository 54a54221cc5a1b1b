"""Template expressions: compiling and evaluating what one ``{{ ... }}`` placeholder holds.

:func:`compile_expression` parses the text between the braces in the sandbox of
:mod:`cuaflow.dsl.template_sandbox`, after turning hyphenated names
(``start-up.status``) into lookups, and records every variable path it uses as a
:class:`Reference`. :func:`evaluate` runs it on the roots under one work limit and
gives the JSON value, or :data:`~cuaflow.dsl.template_values.MISSING` when a value
it needs does not exist; :func:`missing_error` then says which path is missing.
The user-facing rules are in :mod:`cuaflow.dsl.templates`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import jinja2.exceptions
from jinja2 import nodes
from jinja2.environment import TemplateExpression
from jinja2.visitor import NodeTransformer

from cuaflow.dsl.template_limits import Meter, work_limit
from cuaflow.dsl.template_sandbox import ENVIRONMENT, ROOTS
from cuaflow.dsl.template_values import MISSING, lookup, missing_message, path_text, to_json
from cuaflow.errors import TemplateError, TemplateLimitExceeded

_HYPHENATED = re.compile(
    r"""(?P<string>'[^'\\]*(?:\\.[^'\\]*)*'|"[^"\\]*(?:\\.[^"\\]*)*")
      | (?P<number>(?<![\w.])\d[\d_]*(?:\.\d[\d_]*)?(?:[eE][+-]?\d[\d_]*)?)
      | \.(?P<attribute>[A-Za-z0-9_]+(?:-[A-Za-z0-9_]+)+)
      | (?<![\w.])(?P<root>[A-Za-z_][A-Za-z0-9_]*(?:-[A-Za-z0-9_]+)+)""",
    re.S | re.X,
)


@dataclass(frozen=True)
class Reference:
    """A variable path a template uses.

    ``root`` is the first name; ``path`` the constant keys after it, up to the first
    computed one: ``{{ start_up.output[vars.i].x | upper }}`` gives root
    ``start_up`` and path ``("output",)`` (and a second reference, ``vars.i``).
    ``text`` is the whole path written out, for messages: ``start_up.output``.
    """

    root: str
    path: tuple[str | int, ...]
    text: str


@dataclass(frozen=True)
class Expression:
    """One compiled placeholder: its source text, the paths it uses, and its code."""

    source: str
    references: tuple[Reference, ...]
    path: tuple[str | int, ...] | None  # set when the expression is nothing but a path
    function: TemplateExpression


def _rewrite_hyphens(source: str) -> str:
    def replace(match: re.Match[str]) -> str:
        if match.group("attribute"):
            return f"[{match.group('attribute')!r}]"
        if match.group("root"):
            return f"{ROOTS}[{match.group('root')!r}]"
        return match.group()

    return _HYPHENATED.sub(replace, source)


def _chain(node: nodes.Node) -> tuple[nodes.Node, list[str | int], list[nodes.Node]]:
    """Unwind ``a.b[c].d``: the base node, the leading constant keys, the dynamic keys."""
    keys: list[str | int] = []
    dynamic: list[nodes.Node] = []
    while True:
        if isinstance(node, nodes.Getattr):
            keys.append(node.attr)
        elif isinstance(node, nodes.Getitem):
            key = _constant_key(node.arg)
            if key is None:
                dynamic.append(node.arg)
                keys.clear()  # keys after a dynamic one are not part of the constant path
            else:
                keys.append(key)
        else:
            break
        node = node.node
    keys.reverse()
    if isinstance(node, nodes.Name) and node.name != ROOTS:
        keys.insert(0, node.name)
    elif not (isinstance(node, nodes.Name) and keys):
        keys.clear()
    return node, keys, dynamic


def _constant_key(node: nodes.Node) -> str | int | None:
    if isinstance(node, nodes.Const) and isinstance(node.value, str | int):
        return None if isinstance(node.value, bool) else node.value
    return None


def _references(node: nodes.Node, found: dict[tuple[str | int, ...], Reference]) -> None:
    if isinstance(node, nodes.Getattr | nodes.Getitem | nodes.Name):
        base, keys, dynamic = _chain(node)
        if keys:
            path = tuple(keys)
            found.setdefault(path, Reference(str(path[0]), path[1:], path_text(path)))
        for child in (*dynamic, *([] if isinstance(base, nodes.Name) else [base])):
            _references(child, found)
        return
    for child in node.iter_child_nodes():
        _references(child, found)


class _RootLookups(NodeTransformer):
    """Turn every name into a lookup in the roots, so no name means anything to Jinja."""

    def visit_Name(self, node: nodes.Name) -> nodes.Node:  # noqa: N802 - Jinja dispatches on node class names
        if node.ctx != "load" or node.name == ROOTS:
            return node
        return nodes.Getitem(
            nodes.Name(ROOTS, "load"), nodes.Const(node.name), "load", lineno=node.lineno
        )


def compile_expression(source: str) -> Expression:
    """Compile the text between one placeholder's braces.

    Raises :class:`~cuaflow.errors.TemplateError` for bad syntax or unknown filters.
    """
    shown = "{{" + source + "}}"
    try:
        # The spaces keep Jinja from reading a leading or trailing '-' as whitespace control.
        tree = ENVIRONMENT.parse("{{ " + _rewrite_hyphens(source) + " }}")
        output = tree.body[0] if len(tree.body) == 1 else None
        if not (isinstance(output, nodes.Output) and len(output.nodes) == 1):
            raise TemplateError(f"{shown} must hold exactly one expression")
        expression = output.nodes[0]
        found: dict[tuple[str | int, ...], Reference] = {}
        _references(expression, found)
        base, keys, dynamic = _chain(expression)
        plain = tuple(keys) if keys and not dynamic and isinstance(base, nodes.Name) else None
        assign = nodes.Assign(nodes.Name("result", "store"), _RootLookups().visit(expression))
        module = nodes.Template([assign], lineno=1)
        module.set_environment(ENVIRONMENT)
        function = TemplateExpression(ENVIRONMENT.from_string(module), undefined_to_none=False)
    except jinja2.exceptions.TemplateSyntaxError as error:
        raise TemplateError(f"invalid template {shown}: {error.message}") from None
    except RecursionError:
        raise TemplateLimitExceeded(f"{shown} is nested too deeply") from None
    except (SyntaxError, jinja2.exceptions.TemplateError) as error:
        raise TemplateError(f"invalid template {shown}: {error}") from None
    return Expression(source, tuple(found.values()), plain, function)


def evaluate(expression: Expression, roots: Mapping[str, Any], meter: Meter) -> Any:
    """The expression's JSON value, or MISSING when a value it needs is undefined."""
    if expression.path is not None:
        value = lookup(roots, expression.path)
        return value if value is MISSING else to_json(value, meter)
    with work_limit():
        try:
            return to_json(expression.function({ROOTS: roots}), meter)
        except jinja2.exceptions.UndefinedError:
            return MISSING
        except TemplateError:
            raise
        except (RecursionError, MemoryError):
            raise TemplateLimitExceeded(
                f"{{{{{expression.source}}}}} needs too much work"
            ) from None
        except OverflowError:
            raise TemplateLimitExceeded(
                f"{{{{{expression.source}}}}} makes a number too large"
            ) from None
        except Exception as error:
            kind = "" if isinstance(error, jinja2.exceptions.TemplateError) else "cannot evaluate: "
            raise TemplateError(f"{{{{{expression.source}}}}}: {kind}{error}") from None


def missing_error(expression: Expression, roots: Mapping[str, Any]) -> TemplateError:
    """The error for an expression that used a missing value, naming the first missing path."""
    for reference in expression.references:
        message = missing_message(roots, (reference.root, *reference.path))
        if message is not None:
            return TemplateError(message)
    return TemplateError(f"{{{{{expression.source}}}}} uses a value that is not defined")
