"""The ``terminal`` machine: a shell in a working directory, running real processes.

Each ``bash`` action runs ``/bin/bash -c <command>`` in its own session, so the
command and everything it starts form one process group that can be stopped
together. Commands often leave a server running in the background
(``python3 -m http.server 8080 &``) for later steps to use: such a group stays
alive after its action returns, and :meth:`TerminalMachine.close` stops it. The
engine gives each run its own machine and closes it when the run finishes, so a
run's leftover processes are stopped then. A process that leaves its group
(``setsid``, a double-forking daemon) escapes this.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from cuaflow.dsl.actions import Action, Bash, Wait, WaitForFile, WaitForPort
from cuaflow.errors import MachineError
from cuaflow.machines.base import (
    ActionResult,
    Observation,
    as_number,
    scrub_result,
    scrub_secrets,
    secret_values,
    substitute_secrets,
    unsupported_action,
)

PROCESS_LIST_SUFFIX = ".processes"
DEFAULT_BASH_TIMEOUT_SECONDS = 300.0
POLL_SECONDS = 0.05
# A stopped group gets this long to exit on SIGTERM before SIGKILL.
TERM_GRACE_SECONDS = 0.25
STOP_POLL_SECONDS = 0.025


class TerminalMachine:
    """A shell in ``workdir`` (created when first needed).

    ``env`` is the whole environment of the commands; without it they inherit
    the worker's. Each action's output (stdout and stderr together) is cut to
    ``output_limit`` bytes, keeping its head and its tail.
    """

    kind = "terminal"
    capabilities = frozenset({"bash", "wait", "wait_for_port", "wait_for_file"})

    def __init__(
        self,
        id: str,
        workdir: Path,
        *,
        env: Mapping[str, str] | None = None,
        output_limit: int = 64_000,
    ) -> None:
        self.id = id
        self.workdir = workdir
        self._env = dict(env) if env is not None else None
        self._output_limit = output_limit
        self._groups: set[int] = set()
        self._last_output = ""

    async def perform(self, action: Action, *, secrets: Mapping[str, str]) -> ActionResult:
        """Perform ``action``; failures (even a bad field) come back as ``ok=False`` results."""
        if action.type not in self.capabilities:
            return unsupported_action(self, action.type)
        try:
            if isinstance(action, Bash):
                result = await self._bash(action, secrets)
            elif isinstance(action, Wait):
                result = await self._wait(action)
            elif isinstance(action, WaitForPort):
                result = await self._wait_for_port(action, secrets)
            elif isinstance(action, WaitForFile):
                result = await self._wait_for_file(action, secrets)
            else:  # pragma: no cover - capabilities and this dispatch list the same types
                return unsupported_action(self, action.type)
        except MachineError as error:
            result = ActionResult(ok=False, error=str(error))
        return scrub_result(result, secrets)

    async def observe(self) -> Observation:
        """The output of the last ``bash`` action; a terminal has no screen or URL."""
        return Observation(text=self._last_output)

    async def close(self) -> None:
        """Stop every process group started in this working directory that is still running.

        Groups are also listed in a file beside the working directory, so a machine
        made again for the same run (after the run waited for a human, or after
        a worker restart) stops what an earlier one started.
        """
        groups, self._groups = self._groups | self._recorded_groups(), set()
        owned = [pgid for pgid in groups if _group_works_in(pgid, self.workdir)]
        await asyncio.gather(*(_stop_group(pgid) for pgid in owned))
        with contextlib.suppress(OSError):
            self._process_list.unlink()

    @property
    def _process_list(self) -> Path:
        # Beside the working directory, not in it: the run's files stay its own.
        return self.workdir.with_name(self.workdir.name + PROCESS_LIST_SUFFIX)

    def _record_group(self, pgid: int) -> None:
        self._groups.add(pgid)
        with contextlib.suppress(OSError), self._process_list.open("a") as listing:
            listing.write(f"{pgid}\n")

    def _recorded_groups(self) -> set[int]:
        try:
            lines = self._process_list.read_text().split()
        except OSError:
            return set()
        return {int(line) for line in lines if line.isdigit()}

    async def _bash(self, action: Bash, secrets: Mapping[str, str]) -> ActionResult:
        timeout = (
            DEFAULT_BASH_TIMEOUT_SECONDS
            if action.timeout_seconds is None
            else as_number(action.timeout_seconds, "timeout_seconds")
        )
        command = substitute_secrets(action.command, secrets)
        started = time.monotonic()
        # Output goes to a file, not a pipe: a background child inherits the
        # descriptor and would hold a pipe open, so waiting for EOF would wait
        # for the server to stop. The main process's exit is what counts.
        with tempfile.TemporaryFile() as sink:
            try:
                self.workdir.mkdir(parents=True, exist_ok=True)
                process = await asyncio.create_subprocess_exec(
                    "/bin/bash",
                    "-c",
                    command,
                    cwd=self.workdir,
                    env=self._env,
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=sink,
                    stderr=asyncio.subprocess.STDOUT,
                    start_new_session=True,
                )
            except OSError as error:
                raise MachineError(f"cannot start /bin/bash in {self.workdir}: {error}") from error
            pgid = process.pid
            self._record_group(pgid)
            timed_out = False
            try:
                # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a
                # cancellation that races the process's exit, and cancel must stop it.
                async with asyncio.timeout(timeout):
                    await process.wait()
            except TimeoutError:
                timed_out = True
                await _stop_group(pgid)
                await process.wait()
            except asyncio.CancelledError:
                await _stop_group(pgid)
                raise
            finally:
                if not _group_alive(pgid):
                    self._groups.discard(pgid)
            output, size = _read_bounded(sink.fileno(), self._output_limit, secret_values(secrets))
        self._last_output = scrub_secrets(output, secrets)
        data = {
            "duration_ms": round((time.monotonic() - started) * 1000),
            "output_bytes": size,
            "truncated": size > self._output_limit,
        }
        if timed_out:
            message = f"command timed out after {timeout:g} s; its processes were killed"
            return ActionResult(ok=False, output=output, error=message, data=data)
        exit_code = process.returncode
        if exit_code == 0 or not action.check:
            return ActionResult(ok=True, output=output, exit_code=exit_code, data=data)
        message = (
            f"command exited with code {exit_code}"
            if exit_code is not None and exit_code > 0
            else f"command was killed by signal {-(exit_code or 0)}"
        )
        return ActionResult(ok=False, output=output, exit_code=exit_code, error=message, data=data)

    async def _wait(self, action: Wait) -> ActionResult:
        seconds = as_number(action.seconds, "seconds")
        await asyncio.sleep(seconds)
        return ActionResult(ok=True, output=f"waited {seconds:g} s")

    async def _wait_for_port(self, action: WaitForPort, secrets: Mapping[str, str]) -> ActionResult:
        port = int(as_number(action.port, "port"))
        timeout = as_number(action.timeout_seconds, "timeout_seconds")
        host = substitute_secrets(action.host, secrets)
        loop = asyncio.get_running_loop()
        started = loop.time()
        deadline = started + timeout
        last_error = "no attempt"
        while True:
            remaining = deadline - loop.time()
            try:
                async with asyncio.timeout(max(remaining, POLL_SECONDS)):
                    _, writer = await asyncio.open_connection(host, port)
            except (OSError, TimeoutError) as error:
                last_error = str(error) or type(error).__name__
            else:
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()
                elapsed_ms = round((loop.time() - started) * 1000)
                return ActionResult(
                    ok=True,
                    output=f"{host}:{port} accepts connections",
                    data={"duration_ms": elapsed_ms},
                )
            if loop.time() >= deadline:
                return ActionResult(
                    ok=False,
                    error=(
                        f"nothing accepted connections on {host}:{port} within {timeout:g} s "
                        f"(last attempt: {last_error})"
                    ),
                )
            await asyncio.sleep(min(POLL_SECONDS, max(deadline - loop.time(), 0)))

    async def _wait_for_file(self, action: WaitForFile, secrets: Mapping[str, str]) -> ActionResult:
        timeout = as_number(action.timeout_seconds, "timeout_seconds")
        path = self.workdir / substitute_secrets(action.path, secrets)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not path.exists():
            if loop.time() >= deadline:
                return ActionResult(ok=False, error=f"{path} did not appear within {timeout:g} s")
            await asyncio.sleep(POLL_SECONDS)
        return ActionResult(ok=True, output=f"{path} exists")


def _group_alive(pgid: int) -> bool:
    """Whether any process of group ``pgid`` is still running (zombies do not count).

    A zombie still answers ``killpg(pgid, 0)``, and orphans stay zombies where
    PID 1 does not reap them (many containers), so on Linux ``/proc`` decides.
    """
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return False  # the group id now belongs to someone else's processes
    proc = Path("/proc")
    if not proc.is_dir():
        return True
    for stat in proc.glob("[0-9]*/stat"):
        try:
            fields = stat.read_bytes().rpartition(b")")[2].split()
        except OSError:
            continue  # the process ended while we looked
        if len(fields) >= 3 and int(fields[2]) == pgid and fields[0] != b"Z":
            return True
    return False


def _group_works_in(pgid: int, workdir: Path) -> bool:
    """Whether a live process of group ``pgid`` runs inside ``workdir``.

    Checked before stopping a recorded group, so that a process group id the
    system has since given to unrelated processes is left alone.
    """
    root = str(workdir.resolve())
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_bytes().rpartition(b")")[2].split()
            if len(fields) < 3 or int(fields[2]) != pgid or fields[0] == b"Z":
                continue
            cwd = os.readlink(stat.parent / "cwd")
        except OSError:
            continue
        if cwd == root or cwd.startswith(root + os.sep):
            return True
    return False


def _signal_group(pgid: int, signum: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


async def _stop_group(pgid: int) -> None:
    """SIGTERM group ``pgid``, then SIGKILL what is left after a short grace.

    The SIGKILL is sent even when this coroutine is cancelled during the grace,
    so stopping takes well under a second in all.
    """
    if not _group_alive(pgid):
        return
    try:
        _signal_group(pgid, signal.SIGTERM)
        for _ in range(round(TERM_GRACE_SECONDS / STOP_POLL_SECONDS)):
            await asyncio.sleep(STOP_POLL_SECONDS)
            if not _group_alive(pgid):
                return
    finally:
        _signal_group(pgid, signal.SIGKILL)
    # SIGKILL takes effect asynchronously; wait a moment so callers find the processes gone.
    for _ in range(round(TERM_GRACE_SECONDS / STOP_POLL_SECONDS)):
        if not _group_alive(pgid):
            return
        await asyncio.sleep(STOP_POLL_SECONDS)


def _read_bounded(fd: int, limit: int, secrets: Sequence[str]) -> tuple[str, int]:
    """The text in file ``fd`` cut to about ``limit`` bytes (head and tail kept), and its size.

    The cut never falls inside a secret value, so scrubbing each part still
    masks the whole secret rather than leaving a piece of it on either side.
    """
    size = os.fstat(fd).st_size
    if size <= limit:
        return os.pread(fd, size, 0).decode(errors="replace"), size
    needles = [secret.encode() for secret in secrets]
    margin = max((len(needle) for needle in needles), default=0)
    head_len = limit // 2
    head_window = os.pread(fd, head_len + margin, 0)
    head_end = max([head_len, *(end for _, end in _straddling(head_window, head_len, needles))])
    window_start = max(size - (limit - head_len) - margin, 0)
    tail_window = os.pread(fd, size - window_start, window_start)
    cut = size - (limit - head_len) - window_start
    cut = min([cut, *(start for start, _ in _straddling(tail_window, cut, needles))])
    tail_start = window_start + cut
    if tail_start <= head_end:
        return os.pread(fd, size, 0).decode(errors="replace"), size
    head = head_window[:head_end].decode(errors="replace")
    tail = tail_window[cut:].decode(errors="replace")
    return f"{head}\n[... {tail_start - head_end} bytes cut ...]\n{tail}", size


def _straddling(window: bytes, cut: int, needles: Sequence[bytes]) -> list[tuple[int, int]]:
    """The ``(start, end)`` spans of needles in ``window`` that ``cut`` falls strictly inside."""
    spans = []
    for needle in needles:
        start = window.find(needle, max(cut - len(needle) + 1, 0))
        while start != -1 and start < cut:
            spans.append((start, start + len(needle)))
            start = window.find(needle, start + 1)
    return spans
