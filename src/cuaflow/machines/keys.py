"""Key names for ``key`` actions: one vocabulary, mapped to Playwright's and xdotool's.

Models and workflows name keys in many ways: ``ctrl``/``Control``/``control_l``,
``enter``/``Return``, ``pgup``/``Page_Up``/``Prior``, combos as a list
(``["ctrl", "s"]``) or as one string (``"ctrl+s"``, the form Anthropic's
computer tool sends). :func:`parse_keys` turns any of them into canonical names
(lower case, such as ``ctrl``, ``enter``, ``pageup``, ``f5``) and single
characters, and :func:`playwright_combo` / :func:`xdotool_combo` spell the
result for each driver. An unknown multi-letter name is an error rather than a
silent no-op.
"""

from __future__ import annotations

from collections.abc import Sequence

from cuaflow.errors import MachineError

_NAMED = {
    "ctrl": ("Control", "ctrl"),
    "shift": ("Shift", "shift"),
    "alt": ("Alt", "alt"),
    "meta": ("Meta", "super"),
    "enter": ("Enter", "Return"),
    "tab": ("Tab", "Tab"),
    "escape": ("Escape", "Escape"),
    "backspace": ("Backspace", "BackSpace"),
    "delete": ("Delete", "Delete"),
    "insert": ("Insert", "Insert"),
    "up": ("ArrowUp", "Up"),
    "down": ("ArrowDown", "Down"),
    "left": ("ArrowLeft", "Left"),
    "right": ("ArrowRight", "Right"),
    "home": ("Home", "Home"),
    "end": ("End", "End"),
    "pageup": ("PageUp", "Prior"),
    "pagedown": ("PageDown", "Next"),
    "space": ("Space", "space"),
    "capslock": ("CapsLock", "Caps_Lock"),
    **{f"f{n}": (f"F{n}", f"F{n}") for n in range(1, 25)},
}
"""Canonical name -> (Playwright key, xdotool keysym)."""

_ALIASES = {
    "control": "ctrl",
    "ctl": "ctrl",
    "control_l": "ctrl",
    "control_r": "ctrl",
    "shift_l": "shift",
    "shift_r": "shift",
    "alt_l": "alt",
    "alt_r": "alt",
    "option": "alt",
    "cmd": "meta",
    "command": "meta",
    "super": "meta",
    "super_l": "meta",
    "super_r": "meta",
    "win": "meta",
    "windows": "meta",
    "meta_l": "meta",
    "return": "enter",
    "kp_enter": "enter",
    "esc": "escape",
    "del": "delete",
    "ins": "insert",
    "arrowup": "up",
    "arrowdown": "down",
    "arrowleft": "left",
    "arrowright": "right",
    "page_up": "pageup",
    "pgup": "pageup",
    "prior": "pageup",
    "page_down": "pagedown",
    "pgdn": "pagedown",
    "next": "pagedown",
    "spacebar": "space",
    "caps_lock": "capslock",
}

_PUNCTUATION = {
    " ": "space",
    "-": "minus",
    "+": "plus",
    "=": "equal",
    ",": "comma",
    ".": "period",
    "/": "slash",
    "\\": "backslash",
    ";": "semicolon",
    ":": "colon",
    "'": "apostrophe",
    '"': "quotedbl",
    "`": "grave",
    "~": "asciitilde",
    "[": "bracketleft",
    "]": "bracketright",
    "{": "braceleft",
    "}": "braceright",
    "(": "parenleft",
    ")": "parenright",
    "<": "less",
    ">": "greater",
    "!": "exclam",
    "@": "at",
    "#": "numbersign",
    "$": "dollar",
    "%": "percent",
    "^": "asciicircum",
    "&": "ampersand",
    "*": "asterisk",
    "_": "underscore",
    "?": "question",
    "|": "bar",
}
"""A printable character -> its X keysym name (xdotool does not take ``-`` as a key)."""

_CHAR_BY_KEYSYM = {name: char for char, name in _PUNCTUATION.items() if char != " "}


def parse_keys(keys: Sequence[str]) -> list[str]:
    """The canonical names of a key combination given as a list, ``"ctrl+s"`` items allowed.

    Raises :class:`MachineError` for an empty combination or an unknown key name.
    """
    names: list[str] = []
    for item in keys:
        for part in _split_combo(item):
            names.append(canonical_key(part))
    if not names:
        raise MachineError("a key action needs at least one key")
    return names


def canonical_key(name: str) -> str:
    """One key's canonical name: a name from the table, or a single character kept as it is."""
    if len(name) == 1:
        return "space" if name == " " else name
    lowered = name.lower()
    lowered = _ALIASES.get(lowered, lowered)
    if lowered in _NAMED:
        return lowered
    if lowered in _CHAR_BY_KEYSYM:
        return _CHAR_BY_KEYSYM[lowered]
    known = ", ".join(sorted(name for name in _NAMED if not name[1:].isdigit()))
    raise MachineError(f"unknown key '{name}'; use a single character, f1-f24 or one of: {known}")


def playwright_combo(keys: Sequence[str]) -> str:
    """The combination as Playwright's ``keyboard.press`` spells it, such as ``Control+a``."""
    return "+".join(_NAMED[name][0] if name in _NAMED else name for name in parse_keys(keys))


def xdotool_combo(keys: Sequence[str]) -> str:
    """The combination as ``xdotool key`` spells it, such as ``ctrl+a`` or ``ctrl+minus``."""
    return "+".join(_xdotool_name(name) for name in parse_keys(keys))


def _xdotool_name(name: str) -> str:
    if name in _NAMED:
        return _NAMED[name][1]
    return _PUNCTUATION.get(name, name)


def _split_combo(item: str) -> list[str]:
    """``"ctrl+shift+t"`` -> its parts; a lone ``+`` (or a trailing ``++``) is the plus key."""
    if len(item) <= 1 or "+" not in item:
        return [item]
    if item.endswith("++"):
        return [*item[:-2].split("+"), "+"]
    return [part for part in item.split("+") if part]
