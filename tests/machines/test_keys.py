"""Key names from models and workflows map to Playwright's and xdotool's spellings."""

from __future__ import annotations

import pytest

from cuaflow.errors import MachineError
from cuaflow.machines.keys import parse_keys, playwright_combo, xdotool_combo


@pytest.mark.parametrize(
    ("keys", "playwright", "xdotool"),
    [
        (["ctrl", "a"], "Control+a", "ctrl+a"),
        (["Control", "Shift", "T"], "Control+Shift+T", "ctrl+shift+T"),
        (["ctrl+s"], "Control+s", "ctrl+s"),
        (["Return"], "Enter", "Return"),
        (["enter"], "Enter", "Return"),
        (["esc"], "Escape", "Escape"),
        (["BackSpace"], "Backspace", "BackSpace"),
        (["Page_Up"], "PageUp", "Prior"),
        (["pagedown"], "PageDown", "Next"),
        (["up"], "ArrowUp", "Up"),
        (["ArrowLeft"], "ArrowLeft", "Left"),
        (["f1"], "F1", "F1"),
        (["F12"], "F12", "F12"),
        (["cmd", "c"], "Meta+c", "super+c"),
        (["alt", "tab"], "Alt+Tab", "alt+Tab"),
        (["ctrl", "-"], "Control+-", "ctrl+minus"),
        (["ctrl", "minus"], "Control+-", "ctrl+minus"),
        (["ctrl++"], "Control++", "ctrl+plus"),
        (["space"], "Space", "space"),
        ([" "], "Space", "space"),
    ],
)
def test_key_names_map_to_each_driver(keys: list[str], playwright: str, xdotool: str) -> None:
    """Aliases, xdotool keysyms and ``a+b`` strings all reach the same key on both drivers."""
    assert playwright_combo(keys) == playwright
    assert xdotool_combo(keys) == xdotool


def test_unknown_or_empty_keys_are_errors() -> None:
    """A misspelt key name is refused with the list of known names instead of being dropped."""
    with pytest.raises(MachineError, match=r"unknown key 'hyperdrive'.*escape"):
        parse_keys(["ctrl", "hyperdrive"])
    with pytest.raises(MachineError, match="at least one key"):
        parse_keys([])
