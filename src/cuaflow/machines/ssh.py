"""The ``ssh`` machine: a remote shell over one asyncssh connection.

``bash`` runs the command through the remote user's login shell, with stdout
and stderr together, a timeout, the exit code, and output cut to a bound like
the terminal machine's. ``wait_for_port`` and ``wait_for_file`` poll on the
remote host (with ``bash``), so "the server is up" means up *there*.

Host keys are checked by default against ``~/.ssh/known_hosts``. A spec can
name another ``known_hosts`` file, pin the server's public key (``host_key``,
a line such as ``ssh-ed25519 AAAA...``), or switch checking off
(``verify_host_key=False``, for throwaway test hosts only).

Remote processes: a command is done when its shell exits, so a server it
leaves in the background (``server &``) keeps running, as on the terminal
machine; output that child writes later is not collected. On a timeout (or a
cancellation) the command's whole remote process group is killed: the command
line first reports the shell's pid (sshd makes it a process group leader),
which is stripped from the output. The remote login shell must be POSIX-like.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import shlex
import tempfile
import time
from collections.abc import Mapping, Sequence
from typing import Any, BinaryIO

import asyncssh

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

# The terminal's head-and-tail cut, which never splits a secret, serves here unchanged.
from cuaflow.machines.terminal import _read_bounded

DEFAULT_BASH_TIMEOUT_SECONDS = 300.0
READ_CHUNK = 65_536
# A wait runs remotely for its own timeout; the channel gets this much more.
WAIT_SLACK_SECONDS = 10.0
# After the shell exits, output still in flight gets this long to arrive.
EXIT_GRACE_SECONDS = 0.1
EXIT_POLL_SECONDS = 0.02
KILL_TIMEOUT_SECONDS = 5.0


class SshMachine:
    """A shell on ``username@host:port``, authenticated by password and/or client keys.

    ``client_keys`` are private key files on this machine; ``client_key`` is a
    private key's text (for a key kept as a secret), with ``passphrase`` if it
    is encrypted. ``workdir``, if given, is created and used as the remote
    working directory (relative ``wait_for_file`` paths are inside it).
    """

    kind = "ssh"
    capabilities = frozenset({"bash", "wait", "wait_for_port", "wait_for_file"})

    def __init__(
        self,
        id: str,
        host: str,
        *,
        port: int = 22,
        username: str | None = None,
        password: str | None = None,
        client_keys: Sequence[str] = (),
        client_key: str | None = None,
        passphrase: str | None = None,
        known_hosts: str | None = None,
        host_key: str | None = None,
        verify_host_key: bool = True,
        workdir: str | None = None,
        connect_timeout_seconds: float = 15.0,
        output_limit: int = 64_000,
    ) -> None:
        self.id = id
        self.host, self.port, self.username = host, port, username
        self.workdir = workdir
        self._options = _connect_options(
            password=password,
            client_keys=client_keys,
            client_key=client_key,
            passphrase=passphrase,
            known_hosts=known_hosts,
            host_key=host_key,
            verify_host_key=verify_host_key,
        )
        self._connect_timeout = connect_timeout_seconds
        self._output_limit = output_limit
        self._connection: asyncssh.SSHClientConnection | None = None
        self._connect_lock = asyncio.Lock()
        self._last_output = ""

    @property
    def address(self) -> str:
        """``user@host:port`` as shown in messages."""
        user = f"{self.username}@" if self.username else ""
        return f"{user}{self.host}:{self.port}"

    async def connect(self) -> asyncssh.SSHClientConnection:
        """The open connection, connecting (again) if there is none."""
        async with self._connect_lock:
            if self._connection is not None and not self._connection.is_closed():
                return self._connection
            try:
                self._connection = await asyncssh.connect(
                    self.host,
                    self.port,
                    username=self.username,
                    connect_timeout=self._connect_timeout,
                    **self._options,
                )
            except (OSError, asyncssh.Error) as error:
                reason = str(error) or type(error).__name__
                raise MachineError(f"cannot connect to {self.address}: {reason}") from error
            return self._connection

    async def perform(self, action: Action, *, secrets: Mapping[str, str]) -> ActionResult:
        """Perform ``action``; failures (even a bad field) come back as ``ok=False`` results."""
        if action.type not in self.capabilities:
            return unsupported_action(self, action.type)
        try:
            if isinstance(action, Bash):
                result = await self._bash(action, secrets)
            elif isinstance(action, Wait):
                seconds = as_number(action.seconds, "seconds")
                await asyncio.sleep(seconds)
                result = ActionResult(ok=True, output=f"waited {seconds:g} s")
            elif isinstance(action, WaitForPort):
                result = await self._wait_for_port(action, secrets)
            elif isinstance(action, WaitForFile):
                result = await self._wait_for_file(action, secrets)
            else:  # pragma: no cover - capabilities and this dispatch list the same types
                return unsupported_action(self, action.type)
        except MachineError as error:
            result = ActionResult(ok=False, error=str(error))
        return scrub_result(result, secrets)

    async def _bash(self, action: Bash, secrets: Mapping[str, str]) -> ActionResult:
        timeout = (
            DEFAULT_BASH_TIMEOUT_SECONDS
            if action.timeout_seconds is None
            else as_number(action.timeout_seconds, "timeout_seconds")
        )
        command = substitute_secrets(action.command, secrets)
        started = time.monotonic()
        with tempfile.TemporaryFile() as sink:
            exit_code = await self._run(command, timeout, sink)
            sink.flush()
            output, size = _read_bounded(sink.fileno(), self._output_limit, secret_values(secrets))
        self._last_output = scrub_secrets(output, secrets)
        data = {
            "duration_ms": round((time.monotonic() - started) * 1000),
            "output_bytes": size,
            "truncated": size > self._output_limit,
        }
        if exit_code is None:
            message = f"command timed out after {timeout:g} s; the remote shell was killed"
            return ActionResult(ok=False, output=output, error=message, data=data)
        if exit_code == 0 or not action.check:
            return ActionResult(ok=True, output=output, exit_code=exit_code, data=data)
        message = (
            f"command exited with code {exit_code}"
            if exit_code >= 0
            else f"command was killed by signal {-exit_code}"
        )
        return ActionResult(ok=False, output=output, exit_code=exit_code, error=message, data=data)

    async def _run(self, command: str, timeout: float, sink: BinaryIO) -> int | None:
        """Run ``command`` remotely, writing its output to ``sink``; its exit code, None on timeout.

        The command is done when its shell exits, even if a background child
        still holds the output open; a short grace collects what is in flight.
        """
        connection = await self.connect()
        prefix = ""
        if self.workdir is not None:
            where = shlex.quote(self.workdir)
            prefix = f"mkdir -p -- {where} && cd -- {where} || exit 1\n"
        try:
            # The first line reports the shell's pid, which sshd made a session
            # (and process group) leader: the handle for killing it on a timeout.
            # stderr joins stdout remotely: two SSH streams keep no order between them.
            process = await connection.create_process(
                f"echo $$\nexec 2>&1\n{prefix}{command}",
                stdin=asyncssh.DEVNULL,
                stderr=asyncssh.STDOUT,
                encoding=None,
            )
        except (OSError, asyncssh.Error) as error:
            raise MachineError(f"cannot run a command on {self.address}: {error}") from error
        header = bytearray()

        async def drain() -> None:
            while chunk := await process.stdout.read(READ_CHUNK):
                if b"\n" not in header:
                    header.extend(chunk)
                    if b"\n" not in header:
                        continue
                    chunk = bytes(header.partition(b"\n")[2])
                sink.write(chunk)
            await process.wait_closed()

        reader = asyncio.create_task(drain())
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        try:
            while not reader.done():
                remaining = deadline - loop.time()
                if remaining <= 0:
                    await self._kill_group(bytes(header.partition(b"\n")[0]))
                    return None
                if process.exit_status is not None or process.exit_signal is not None:
                    await asyncio.wait({reader}, timeout=EXIT_GRACE_SECONDS)
                    break
                await asyncio.wait({reader}, timeout=min(EXIT_POLL_SECONDS, remaining))
        except BaseException:
            await self._kill_group(bytes(header.partition(b"\n")[0]))
            raise
        finally:
            reader.cancel()
            process.close()
        # returncode is the exit status, or minus the signal that killed the shell.
        code = process.returncode
        return -1 if code is None else int(code)

    async def _kill_group(self, pid: bytes) -> None:
        """SIGKILL the remote process group led by ``pid`` (best effort, over a new channel)."""
        if not pid.strip().isdigit() or self._connection is None:
            return
        group = int(pid)
        command = f"kill -KILL -- -{group} 2>/dev/null || kill -KILL {group}"
        with contextlib.suppress(OSError, asyncssh.Error, TimeoutError):
            async with asyncio.timeout(KILL_TIMEOUT_SECONDS):
                await self._connection.run(command)

    async def _wait_for_port(self, action: WaitForPort, secrets: Mapping[str, str]) -> ActionResult:
        port = int(as_number(action.port, "port"))
        timeout = as_number(action.timeout_seconds, "timeout_seconds")
        host = substitute_secrets(action.host, secrets)
        probe = f"(exec 3<>/dev/tcp/{shlex.quote(host)}/{port}) 2>/dev/null"
        found = await self._poll(probe, timeout)
        if found:
            return ActionResult(ok=True, output=f"{host}:{port} accepts connections on {self.host}")
        return ActionResult(
            ok=False,
            error=f"nothing accepted connections on {host}:{port} (seen from {self.host}) "
            f"within {timeout:g} s",
        )

    async def _wait_for_file(self, action: WaitForFile, secrets: Mapping[str, str]) -> ActionResult:
        timeout = as_number(action.timeout_seconds, "timeout_seconds")
        path = substitute_secrets(action.path, secrets)
        found = await self._poll(f"[ -e {shlex.quote(path)} ]", timeout)
        if found:
            return ActionResult(ok=True, output=f"{path} exists on {self.host}")
        return ActionResult(
            ok=False, error=f"{path} did not appear on {self.host} within {timeout:g} s"
        )

    async def _poll(self, probe: str, timeout: float) -> bool:
        """Whether ``probe`` succeeds on the remote host within ``timeout`` (tried every 0.1 s)."""
        script = (
            f"end=$((SECONDS + {math.ceil(timeout)}))\n"
            f"until {probe}; do\n"
            "  [ $SECONDS -ge $end ] && exit 1\n"
            "  sleep 0.1\n"
            "done"
        )
        with tempfile.TemporaryFile() as sink:
            exit_code = await self._run(
                f"bash -c {shlex.quote(script)}", timeout + WAIT_SLACK_SECONDS, sink
            )
        return exit_code == 0

    async def observe(self) -> Observation:
        """The output of the last ``bash`` action; a remote shell has no screen or URL."""
        return Observation(text=self._last_output)

    async def close(self) -> None:
        """Close the connection (remote processes left in the background keep running)."""
        async with self._connect_lock:
            connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()
            with contextlib.suppress(OSError, asyncssh.Error):
                await connection.wait_closed()


def _connect_options(
    *,
    password: str | None,
    client_keys: Sequence[str],
    client_key: str | None,
    passphrase: str | None,
    known_hosts: str | None,
    host_key: str | None,
    verify_host_key: bool,
) -> dict[str, Any]:
    """asyncssh ``connect`` keyword arguments for the authentication and host-key settings."""
    options: dict[str, Any] = {}
    if password is not None:
        options["password"] = password
    keys: list[Any] = list(client_keys)
    if client_key is not None:
        try:
            keys.append(asyncssh.import_private_key(client_key, passphrase))
        except (asyncssh.KeyImportError, ValueError) as error:
            raise MachineError(f"client_key is not a usable private key: {error}") from error
    if keys:
        options["client_keys"] = keys
        options["passphrase"] = passphrase
    if not verify_host_key:
        options["known_hosts"] = None
    elif host_key is not None:
        try:
            trusted = asyncssh.import_public_key(host_key)
        except (asyncssh.KeyImportError, ValueError) as error:
            raise MachineError(f"host_key is not a public key: {error}") from error
        options["known_hosts"] = ([trusted], [], [])
    elif known_hosts is not None:
        options["known_hosts"] = known_hosts
    return options
