"""Template secrets: ``{{secrets.NAME}}`` stays a placeholder until the machine driver.

Inside templates the ``secrets`` root is a :class:`SecretNames`, which maps each
name to its own placeholder text, so rendering never sees a secret's value and
prompts, events and logs only ever hold ``{{secrets.NAME}}``. The machine driver
calls :func:`substitute_secrets` at the last moment. The user-facing rules are in
:mod:`cuaflow.dsl.templates`.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterator, Mapping
from typing import Final

from cuaflow.errors import TemplateError

SECRET_NAME_PATTERN: Final = r"[A-Za-z0-9_-]{1,128}"

_SECRET_PLACEHOLDER = re.compile(r"\{\{\s*secrets\.(" + SECRET_NAME_PATTERN + r")\s*\}\}")
_SECRET_NAME = re.compile(SECRET_NAME_PATTERN)


class SecretNames(Mapping[str, str]):
    """The ``secrets`` root: maps each name to its own placeholder, never to a value.

    ``known`` limits the names to those given; None allows every well-formed name.
    """

    def __init__(self, known: Collection[str] | None) -> None:
        self._known = None if known is None else frozenset(known)

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str) or not _SECRET_NAME.fullmatch(name):
            return False
        return self._known is None or name in self._known

    def __getitem__(self, name: str) -> str:
        if name not in self:
            raise KeyError(name)
        return "{{secrets." + name + "}}"

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._known or ()))

    def __len__(self) -> int:
        return len(self._known or ())


def secret_names(text: str) -> set[str]:
    """The names of every ``{{secrets.NAME}}`` placeholder in rendered ``text``."""
    return set(_SECRET_PLACEHOLDER.findall(text))


def substitute_secrets(text: str, secrets: Mapping[str, str]) -> str:
    """Replace each ``{{secrets.NAME}}`` in rendered ``text`` with the secret's value.

    Only the machine driver calls this, right before typing or running ``text``.
    Raises :class:`~cuaflow.errors.TemplateError` naming a secret that is not set.
    """
    unknown = sorted(secret_names(text) - secrets.keys())
    if unknown:
        raise TemplateError(f"secret {unknown[0]!r} is not set")
    return _SECRET_PLACEHOLDER.sub(lambda match: secrets[match.group(1)], text)
