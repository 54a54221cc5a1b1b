"""Machines built from stored specs, config validation, and what this host can run."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from cuaflow.dsl.actions import Bash
from cuaflow.errors import WorkflowInvalid
from cuaflow.machines.browser import BrowserMachine
from cuaflow.machines.desktop import DesktopMachine
from cuaflow.machines.registry import (
    LOCAL_TERMINAL_ID,
    MachineSpec,
    available_kinds,
    build_machine,
    builtin_specs,
    missing_programs,
    validate_spec,
)
from cuaflow.machines.ssh import SshMachine
from cuaflow.machines.terminal import TerminalMachine


def test_bad_specs_name_the_field() -> None:
    """An unknown kind, a bad value and an unknown field each come back with their location."""
    with pytest.raises(WorkflowInvalid) as unknown:
        validate_spec("mainframe", {})
    assert unknown.value.issues[0].loc == ("kind",)
    with pytest.raises(WorkflowInvalid) as bad:
        validate_spec("desktop", {"width": 5, "colour": "blue"})
    assert {issue.loc for issue in bad.value.issues} == {("config", "width"), ("config", "colour")}
    with pytest.raises(WorkflowInvalid) as missing:
        validate_spec("cdp", {})
    assert missing.value.issues[0].loc == ("config", "url")


def test_defaults_fill_in() -> None:
    """A spec with no config gets the documented defaults."""
    assert validate_spec("browser", {})["width"] == 1280
    assert validate_spec("desktop", {"height": 600}) == {
        "width": 1280,
        "height": 600,
        "depth": 24,
        "workdir": None,
        "output_limit": 64_000,
    }


async def test_each_kind_builds_its_machine(tmp_path: Path) -> None:
    """Every kind becomes the right machine class, and a terminal runs in the given workdir."""
    terminal = build_machine(MachineSpec("t", "terminal"), workdir=tmp_path / "t")
    assert isinstance(terminal, TerminalMachine)
    result = await terminal.perform(Bash(type="bash", command="pwd"), secrets={})
    await terminal.close()
    assert result.output == f"{tmp_path / 't'}\n"

    browser = build_machine(
        MachineSpec("b", "browser", {"width": 800, "height": 600}), workdir=tmp_path
    )
    assert isinstance(browser, BrowserMachine)
    assert browser.cdp_url is None
    cdp = build_machine(MachineSpec("c", "cdp", {"url": "http://127.0.0.1:9222"}), workdir=tmp_path)
    assert isinstance(cdp, BrowserMachine)
    assert cdp.cdp_url == "http://127.0.0.1:9222"
    desktop = build_machine(
        MachineSpec("d", "desktop", {"workdir": str(tmp_path / "own")}), workdir=tmp_path
    )
    assert isinstance(desktop, DesktopMachine)
    assert desktop.workdir == tmp_path / "own"
    ssh = build_machine(
        MachineSpec("s", "ssh", {"host": "example.invalid", "password": "{{secrets.PW}}"}),
        workdir=tmp_path,
        secrets={"PW": "hunter2"},
    )
    assert isinstance(ssh, SshMachine)
    assert ssh.address == "example.invalid:22"


def test_available_kinds_follow_installed_programs() -> None:
    """browser and desktop are offered exactly when Chromium, Xvfb and xdotool are installed."""
    kinds = available_kinds()
    assert {"terminal", "ssh", "cdp"} <= kinds
    has_desktop = shutil.which("Xvfb") is not None and shutil.which("xdotool") is not None
    assert ("desktop" in kinds) == has_desktop
    assert ("browser" in kinds) == (not missing_programs("browser"))
    specs = builtin_specs()
    assert specs[0] == MachineSpec(LOCAL_TERMINAL_ID, "terminal")
    assert {spec.kind for spec in specs} == {"terminal"} | (kinds & {"browser", "desktop"})
