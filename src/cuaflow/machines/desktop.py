"""The ``desktop`` machine: its own Xvfb display, xdotool input, and screenshots of the root window.

:meth:`DesktopMachine.start` launches ``Xvfb -displayfd``, which picks a free
display number itself and writes it once the server accepts connections, so
two desktops never race for a number and nothing polls for readiness. Pointer
and keyboard actions run ``xdotool`` against that display (typed text goes
through its standard input, so a secret never shows in a process list).
``bash``, ``wait_for_port`` and ``wait_for_file`` run as on the terminal
machine but with ``DISPLAY`` set, so a GUI program a command starts appears on
this desktop; :meth:`close` stops those programs and the X server.

There is no window manager: a window appears where its program asks, and
keyboard focus follows the pointer or the program's own focus handling (a
click in a text field focuses it). A desktop serves one task at a time: the
engine holds :attr:`DesktopMachine.lease` while a task acts on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import tempfile
from collections.abc import Mapping
from pathlib import Path

from cuaflow.dsl.actions import Action, Click, Drag, Key, Move, Scroll, Type
from cuaflow.errors import MachineError
from cuaflow.machines.base import (
    ActionResult,
    Observation,
    as_number,
    scrub_result,
    substitute_secrets,
    unsupported_action,
)
from cuaflow.machines.keys import xdotool_combo
from cuaflow.machines.lease import MachineLease
from cuaflow.machines.screenshots import XScreenGrabber, encode_png
from cuaflow.machines.terminal import TerminalMachine

START_TIMEOUT_SECONDS = 10.0
STOP_GRACE_SECONDS = 1.0
XDOTOOL_TIMEOUT_SECONDS = 30.0
PIXELS_PER_WHEEL_CLICK = 100
"""A scroll of ``dy`` pixels is ``round(|dy| / 100)`` wheel clicks (at least one)."""
BUTTONS = {"left": "1", "middle": "2", "right": "3"}
INPUT_TYPES = frozenset({"click", "double_click", "move", "drag", "scroll", "type", "key"})


class DesktopMachine:
    """An X desktop of ``width`` x ``height`` pixels; commands run in ``workdir``.

    ``env`` is the environment of commands (the worker's by default), to which
    ``DISPLAY`` is added; ``type_delay_ms`` is the pause between typed keys.
    """

    kind = "desktop"
    capabilities = INPUT_TYPES | {"screenshot"} | TerminalMachine.capabilities

    def __init__(
        self,
        id: str,
        workdir: Path,
        *,
        width: int = 1280,
        height: int = 800,
        depth: int = 24,
        env: Mapping[str, str] | None = None,
        output_limit: int = 64_000,
        type_delay_ms: int = 8,
    ) -> None:
        self.id = id
        self.workdir = workdir
        self.width, self.height, self.depth = width, height, depth
        self.lease = MachineLease()
        self._env = dict(env) if env is not None else dict(os.environ)
        self._output_limit = output_limit
        self._type_delay_ms = type_delay_ms
        self._start_lock = asyncio.Lock()
        self._xvfb: asyncio.subprocess.Process | None = None
        self._display: str | None = None
        self._grabber: XScreenGrabber | None = None
        self._terminal: TerminalMachine | None = None

    @property
    def display(self) -> str:
        """The X display name, such as ``:3`` (only once started)."""
        if self._display is None:
            raise MachineError(f"desktop '{self.id}' is not started")
        return self._display

    async def start(self) -> None:
        """Start the X server; actions and observations start it when needed."""
        async with self._start_lock:
            if self._display is not None:
                return
            for program in ("Xvfb", "xdotool"):
                if shutil.which(program) is None:
                    raise MachineError(f"desktop machines need {program}, which is not installed")
            display = await self._start_xvfb()
            try:
                self._grabber = await asyncio.to_thread(XScreenGrabber, display)
            except BaseException:
                await self._stop_xvfb()
                raise
            self._display = display
            self._terminal = TerminalMachine(
                self.id,
                self.workdir,
                env={**self._env, "DISPLAY": display},
                output_limit=self._output_limit,
            )

    async def _start_xvfb(self) -> str:
        read_end, write_end = os.pipe()
        with tempfile.TemporaryFile() as log:
            try:
                self._xvfb = await asyncio.create_subprocess_exec(
                    "Xvfb",
                    "-displayfd",
                    str(write_end),
                    "-screen",
                    "0",
                    f"{self.width}x{self.height}x{self.depth}",
                    "-nolisten",
                    "tcp",
                    "-noreset",
                    pass_fds=(write_end,),
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=asyncio.subprocess.DEVNULL,
                    stderr=log,
                    start_new_session=True,
                )
            except BaseException:
                os.close(read_end)
                raise
            finally:
                os.close(write_end)
            number = ""
            try:
                # asyncio.timeout, not wait_for: on Python 3.11 wait_for can
                # swallow a cancellation that arrives as the wait ends.
                async with asyncio.timeout(START_TIMEOUT_SECONDS):
                    number = await _read_line(read_end)
            except TimeoutError:
                pass
            finally:
                if not number.isdigit():
                    await self._stop_xvfb()
            if not number.isdigit():
                log.seek(0)
                detail = log.read().decode(errors="replace").strip()[-1000:]
                raise MachineError(f"Xvfb did not start: {detail or 'no display number reported'}")
        return f":{number}"

    async def perform(self, action: Action, *, secrets: Mapping[str, str]) -> ActionResult:
        """Perform ``action``; failures (even a bad field) come back as ``ok=False`` results."""
        if action.type not in self.capabilities:
            return unsupported_action(self, action.type)
        try:
            await self.start()
            if action.type in TerminalMachine.capabilities:
                assert self._terminal is not None  # start() sets it or raises
                return await self._terminal.perform(action, secrets=secrets)
            result = await self._perform_input(action, secrets)
        except MachineError as error:
            result = ActionResult(ok=False, error=str(error))
        return scrub_result(result, secrets)

    async def _perform_input(self, action: Action, secrets: Mapping[str, str]) -> ActionResult:
        if isinstance(action, Click):
            x, y = _pixel(action.x, "x"), _pixel(action.y, "y")
            repeat = "2" if action.type == "double_click" else "1"
            button = BUTTONS[action.button]
            await self._xdotool("mousemove", x, y, "click", "--repeat", repeat, button)
            return ActionResult(ok=True, output=f"{action.type} at ({x}, {y})")
        if isinstance(action, Move):
            x, y = _pixel(action.x, "x"), _pixel(action.y, "y")
            await self._xdotool("mousemove", x, y)
            return ActionResult(ok=True, output=f"pointer at ({x}, {y})")
        if isinstance(action, Drag):
            x, y = _pixel(action.x, "x"), _pixel(action.y, "y")
            to_x, to_y = _pixel(action.to_x, "to_x"), _pixel(action.to_y, "to_y")
            mid_x, mid_y = str((int(x) + int(to_x)) // 2), str((int(y) + int(to_y)) // 2)
            await self._xdotool(
                *("mousemove", x, y, "mousedown", "1", "sleep", "0.05"),
                *("mousemove", mid_x, mid_y, "mousemove", to_x, to_y, "sleep", "0.05"),
                *("mouseup", "1"),
            )
            return ActionResult(ok=True, output=f"dragged ({x}, {y}) to ({to_x}, {to_y})")
        if isinstance(action, Scroll):
            return await self._scroll(action)
        if isinstance(action, Type):
            text = substitute_secrets(action.text, secrets)
            delay = str(self._type_delay_ms)
            await self._xdotool("type", "--delay", delay, "--file", "-", stdin=text.encode())
            return ActionResult(ok=True, output=f"typed {len(action.text)} characters")
        if isinstance(action, Key):
            combo = xdotool_combo(action.keys)
            await self._xdotool("key", combo)
            return ActionResult(ok=True, output=f"pressed {combo}")
        if action.type == "screenshot":
            grabber = self._grabber
            assert grabber is not None  # start() sets it or raises
            width, height = (await asyncio.to_thread(grabber.grab)).size
            return ActionResult(
                ok=True,
                output=f"screenshot {width}x{height}",
                data={"width": width, "height": height},
            )
        return unsupported_action(self, action.type)  # pragma: no cover - capabilities cover it

    async def _scroll(self, action: Scroll) -> ActionResult:
        args: list[str] = []
        if action.x is not None and action.y is not None:
            args += ["mousemove", _pixel(action.x, "x"), _pixel(action.y, "y")]
        dx, dy = int(as_number(action.dx, "dx")), int(as_number(action.dy, "dy"))
        for delta, backward, forward in ((dy, "4", "5"), (dx, "6", "7")):
            if delta:
                clicks = max(1, round(abs(delta) / PIXELS_PER_WHEEL_CLICK))
                args += ["click", "--repeat", str(clicks), backward if delta < 0 else forward]
        if args:
            await self._xdotool(*args)
        return ActionResult(ok=True, output=f"scrolled by ({dx}, {dy})")

    async def _xdotool(self, *args: str, stdin: bytes | None = None) -> None:
        process = await asyncio.create_subprocess_exec(
            "xdotool",
            *args,
            env={**self._env, "DISPLAY": self.display},
            stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            async with asyncio.timeout(XDOTOOL_TIMEOUT_SECONDS):
                _, stderr = await process.communicate(stdin)
        except TimeoutError:
            process.kill()
            await process.wait()
            raise MachineError(f"xdotool {args[0]} did not finish within 30 s") from None
        if process.returncode != 0:
            detail = stderr.decode(errors="replace").strip()[-500:]
            raise MachineError(f"xdotool {args[0]} failed (exit {process.returncode}): {detail}")

    async def observe(self) -> Observation:
        """A screenshot of the whole display and the output of the last command."""
        await self.start()
        grabber, terminal = self._grabber, self._terminal
        assert grabber is not None  # start() sets it or raises
        assert terminal is not None  # start() sets it or raises
        png = await asyncio.to_thread(lambda: encode_png(grabber.grab()))
        return Observation(text=(await terminal.observe()).text, screenshot_png=png)

    async def close(self) -> None:
        """Stop the programs commands started, then the X server."""
        async with self._start_lock:
            terminal, self._terminal = self._terminal, None
            grabber, self._grabber = self._grabber, None
            if terminal is not None:
                await terminal.close()
            if grabber is not None:
                with contextlib.suppress(Exception):  # the connection may already be gone
                    grabber.close()
            await self._stop_xvfb()
            self._display = None

    async def _stop_xvfb(self) -> None:
        process, self._xvfb = self._xvfb, None
        if process is None or process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            async with asyncio.timeout(STOP_GRACE_SECONDS):
                await process.wait()
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            await process.wait()


async def _read_line(fd: int) -> str:
    """The first line written to pipe ``fd`` (which this closes), stripped; empty at EOF.

    Xvfb writes its display number and a newline once it accepts connections.
    """
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    transport, _ = await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(fd, "rb", buffering=0)
    )
    try:
        return (await reader.readline()).decode(errors="replace").strip()
    finally:
        transport.close()


def _pixel(value: float | str, name: str) -> str:
    """A coordinate as the whole pixel number xdotool takes."""
    return str(round(as_number(value, name)))
