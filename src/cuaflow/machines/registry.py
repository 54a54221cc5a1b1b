"""Building machines from stored specs, and knowing which kinds this host can run.

A registered machine is stored as a spec ``{id, kind, config}``. Kinds and
their config (every field optional unless marked):

- ``terminal``: ``workdir``, ``output_limit``
- ``browser``: ``executable_path``, ``width``, ``height`` (1280x800),
  ``headless``, ``extra_args``, ``text_limit``
- ``cdp``: ``url`` (required; ``http://host:9222`` or a ``ws://`` endpoint),
  ``width``/``height`` (unset keeps the remote window's size), ``text_limit``
- ``desktop``: ``width``, ``height``, ``depth`` (24), ``workdir``, ``output_limit``
- ``ssh``: ``host`` (required), ``port``, ``username``, ``password``,
  ``client_keys`` (key files), ``client_key`` (key text), ``passphrase``,
  ``known_hosts``, ``host_key``, ``verify_host_key``, ``workdir``,
  ``output_limit``; ``password``, ``client_key`` and ``passphrase`` may be
  ``{{secrets.NAME}}``, filled in when the machine is built

:func:`validate_spec` checks a config (raising :class:`WorkflowInvalid` with
each problem's location, for a 422), :func:`build_machine` makes the machine.
Machines of :data:`SHARED_KINDS` stand for one real screen that several runs
may ask for: keep one instance per id and hold its ``lease`` for a task;
the others are cheap to build per run.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from cuaflow.errors import Issue, WorkflowInvalid
from cuaflow.machines.base import Machine, substitute_secrets
from cuaflow.machines.programs import find_chromium
from cuaflow.machines.terminal import TerminalMachine

LOCAL_TERMINAL_ID = "local-terminal"
LOCAL_BROWSER_ID = "local-browser"
LOCAL_DESKTOP_ID = "local-desktop"
MACHINE_KINDS = ("terminal", "browser", "cdp", "desktop", "ssh")
SHARED_KINDS = frozenset({"desktop", "cdp"})
PROGRAMS = {"browser": ("chromium",), "desktop": ("Xvfb", "xdotool")}
"""The programs each kind needs on this host (``chromium`` stands for any Chromium or Chrome)."""


class _Config(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TerminalConfig(_Config):
    """Config of a ``terminal`` machine."""

    workdir: str | None = None
    output_limit: int = Field(64_000, ge=1_000, le=10_000_000)


class BrowserConfig(_Config):
    """Config of a ``browser`` machine."""

    executable_path: str | None = None
    width: int = Field(1280, ge=100, le=10_000)
    height: int = Field(800, ge=100, le=10_000)
    headless: bool = True
    extra_args: list[str] = Field(default_factory=list)
    text_limit: int = Field(20_000, ge=100, le=1_000_000)


class CdpConfig(_Config):
    """Config of a ``cdp`` machine: a Chromium already running elsewhere."""

    url: str = Field(pattern=r"^(https?|wss?)://")
    width: int | None = Field(None, ge=100, le=10_000)
    height: int | None = Field(None, ge=100, le=10_000)
    text_limit: int = Field(20_000, ge=100, le=1_000_000)


class DesktopConfig(_Config):
    """Config of a ``desktop`` machine."""

    width: int = Field(1280, ge=100, le=10_000)
    height: int = Field(800, ge=100, le=10_000)
    depth: Literal[16, 24] = 24
    workdir: str | None = None
    output_limit: int = Field(64_000, ge=1_000, le=10_000_000)


class SshConfig(_Config):
    """Config of an ``ssh`` machine."""

    host: str = Field(min_length=1)
    port: int = Field(22, ge=1, le=65535)
    username: str | None = None
    password: str | None = None
    client_keys: list[str] = Field(default_factory=list)
    client_key: str | None = None
    passphrase: str | None = None
    known_hosts: str | None = None
    host_key: str | None = None
    verify_host_key: bool = True
    workdir: str | None = None
    output_limit: int = Field(64_000, ge=1_000, le=10_000_000)


CONFIGS: dict[str, type[_Config]] = {
    "terminal": TerminalConfig,
    "browser": BrowserConfig,
    "cdp": CdpConfig,
    "desktop": DesktopConfig,
    "ssh": SshConfig,
}


@dataclass(frozen=True)
class MachineSpec:
    """A machine as stored: its id, its kind and its kind's config."""

    id: str
    kind: str
    config: dict[str, Any] = field(default_factory=dict)


def validate_spec(kind: str, config: Mapping[str, Any]) -> dict[str, Any]:
    """``config`` checked for ``kind`` and completed with defaults.

    Raises :class:`WorkflowInvalid` naming the kind or each bad config field.
    """
    model = CONFIGS.get(kind)
    if model is None:
        allowed = ", ".join(MACHINE_KINDS)
        raise WorkflowInvalid([Issue(("kind",), f"unknown machine kind {kind!r}; use {allowed}")])
    try:
        return model.model_validate(dict(config)).model_dump()
    except ValidationError as error:
        raise WorkflowInvalid(
            [Issue(("config", *problem["loc"]), problem["msg"]) for problem in error.errors()]
        ) from error


def build_machine(
    spec: MachineSpec, *, workdir: Path, secrets: Mapping[str, str] | None = None
) -> Machine:
    """A new (not yet started) machine for ``spec``.

    ``workdir`` is where terminal and desktop commands run unless the config
    names a ``workdir``; ``secrets`` fill ``{{secrets.NAME}}`` in an ssh
    machine's password and keys.
    """
    config = validate_spec(spec.kind, spec.config)
    if spec.kind == "terminal":
        terminal = TerminalConfig.model_validate(config)
        return TerminalMachine(
            spec.id, _workdir(terminal.workdir, workdir), output_limit=terminal.output_limit
        )
    # The drivers (Playwright, python-xlib, asyncssh) load only for a machine that needs them.
    from cuaflow.machines.browser import BrowserMachine  # noqa: PLC0415
    from cuaflow.machines.desktop import DesktopMachine  # noqa: PLC0415
    from cuaflow.machines.ssh import SshMachine  # noqa: PLC0415

    if spec.kind == "browser":
        browser = BrowserConfig.model_validate(config)
        return BrowserMachine(
            spec.id,
            executable_path=browser.executable_path,
            viewport=(browser.width, browser.height),
            headless=browser.headless,
            extra_args=browser.extra_args,
            text_limit=browser.text_limit,
        )
    if spec.kind == "cdp":
        cdp = CdpConfig.model_validate(config)
        viewport = (cdp.width, cdp.height) if cdp.width and cdp.height else None
        return BrowserMachine(
            spec.id, cdp_url=cdp.url, viewport=viewport, text_limit=cdp.text_limit
        )
    if spec.kind == "desktop":
        desktop = DesktopConfig.model_validate(config)
        return DesktopMachine(
            spec.id,
            _workdir(desktop.workdir, workdir),
            width=desktop.width,
            height=desktop.height,
            depth=desktop.depth,
            output_limit=desktop.output_limit,
        )
    ssh = SshConfig.model_validate(config)
    found = secrets or {}

    def filled(value: str | None) -> str | None:
        return None if value is None else substitute_secrets(value, found)

    return SshMachine(
        spec.id,
        ssh.host,
        port=ssh.port,
        username=ssh.username,
        password=filled(ssh.password),
        client_keys=ssh.client_keys,
        client_key=filled(ssh.client_key),
        passphrase=filled(ssh.passphrase),
        known_hosts=ssh.known_hosts,
        host_key=ssh.host_key,
        verify_host_key=ssh.verify_host_key,
        workdir=ssh.workdir,
        output_limit=ssh.output_limit,
    )


def missing_programs(kind: str) -> tuple[str, ...]:
    """The programs ``kind`` needs that are not installed here."""
    missing = []
    for program in PROGRAMS.get(kind, ()):
        found = find_chromium() if program == "chromium" else shutil.which(program)
        if found is None:
            missing.append(program)
    return tuple(missing)


def available_kinds() -> frozenset[str]:
    """The kinds whose programs are installed here (terminal, ssh and cdp need none)."""
    return frozenset(kind for kind in MACHINE_KINDS if not missing_programs(kind))


def builtin_specs() -> list[MachineSpec]:
    """The machines that exist out of the box: ``local-terminal``, and a local browser
    and desktop when their programs are installed."""
    specs = [MachineSpec(LOCAL_TERMINAL_ID, "terminal")]
    kinds = available_kinds()
    if "browser" in kinds:
        specs.append(MachineSpec(LOCAL_BROWSER_ID, "browser"))
    if "desktop" in kinds:
        specs.append(MachineSpec(LOCAL_DESKTOP_ID, "desktop"))
    return specs


def _workdir(configured: str | None, default: Path) -> Path:
    return Path(configured).expanduser() if configured is not None else default
