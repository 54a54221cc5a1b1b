"""The terminal machine against real processes, sockets and files."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from cuaflow.dsl.actions import Bash, Click, Done, Wait, WaitForFile, WaitForPort
from cuaflow.machines.base import Machine
from cuaflow.machines.terminal import TerminalMachine

NO_SECRETS: dict[str, str] = {}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _running(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie is not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except FileNotFoundError:
        return False
    return stat.rpartition(b")")[2].split()[0] != b"Z"


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


@pytest.fixture
async def machine(tmp_path: Path) -> AsyncIterator[TerminalMachine]:
    terminal = TerminalMachine("local-terminal", tmp_path / "work")
    yield terminal
    await terminal.close()


async def test_bash_reports_exit_code_and_output(machine: TerminalMachine) -> None:
    """A command's stdout and stderr come back together, and a non-zero exit fails the action."""
    good = await machine.perform(Bash(type="bash", command="echo out; echo err >&2"), secrets={})
    assert good.ok
    assert good.exit_code == 0
    assert good.output == "out\nerr\n"
    assert good.data["duration_ms"] >= 0

    bad = await machine.perform(Bash(type="bash", command="echo oops; exit 3"), secrets={})
    assert not bad.ok
    assert bad.exit_code == 3
    assert bad.error == "command exited with code 3"
    assert bad.output == "oops\n"


async def test_bash_without_check_passes_on_non_zero_exit(machine: TerminalMachine) -> None:
    """With ``check`` false a non-zero exit is reported but does not fail the action."""
    result = await machine.perform(Bash(type="bash", command="exit 7", check=False), secrets={})
    assert result.ok
    assert result.exit_code == 7
    assert result.error is None


async def test_bash_runs_in_a_workdir_it_creates(machine: TerminalMachine) -> None:
    """The working directory is created on first use and commands run inside it."""
    assert not machine.workdir.exists()
    result = await machine.perform(Bash(type="bash", command="pwd; touch made.txt"), secrets={})
    assert result.output.strip() == str(machine.workdir)
    assert (machine.workdir / "made.txt").exists()


async def test_long_output_keeps_head_and_tail(tmp_path: Path) -> None:
    """Output beyond the limit is cut in the middle with a marker counting the bytes cut."""
    terminal = TerminalMachine("t", tmp_path, output_limit=1000)
    command = "echo HEAD; head -c 100000 /dev/zero | tr '\\0' x; echo; echo TAIL"
    result = await terminal.perform(Bash(type="bash", command=command), secrets={})
    total = len("HEAD\n") + 100_000 + len("\nTAIL\n")
    assert result.output.startswith("HEAD\nxxx")
    assert result.output.endswith("xxx\nTAIL\n")
    assert f"\n[... {total - 1000} bytes cut ...]\n" in result.output
    assert result.data["output_bytes"] == total
    assert result.data["truncated"] is True


async def test_timeout_kills_the_whole_process_group(machine: TerminalMachine) -> None:
    """A command past its timeout fails, and it and its background children are killed."""
    command = "sleep 30 & echo $! > child.pid; echo $$ > main.pid; sleep 30"
    started = time.monotonic()
    result = await machine.perform(
        Bash(type="bash", command=command, timeout_seconds=0.5), secrets={}
    )
    assert time.monotonic() - started < 2
    assert not result.ok
    assert result.exit_code is None
    assert result.error == "command timed out after 0.5 s; its processes were killed"
    for name in ("child.pid", "main.pid"):
        assert not _running(int((machine.workdir / name).read_text()))


async def test_background_server_outlives_the_action_until_close(tmp_path: Path) -> None:
    """Bash returns while a background server still holds its output, and close() stops it."""
    terminal = TerminalMachine("t", tmp_path)
    port = _free_port()
    # The server keeps the command's stdout open: bash must not wait for it.
    command = f"python3 -m http.server {port} --bind 127.0.0.1 & echo $! > server.pid"
    started = time.monotonic()
    result = await terminal.perform(Bash(type="bash", command=command), secrets={})
    assert result.ok
    assert time.monotonic() - started < 2

    ready = await terminal.perform(
        WaitForPort(type="wait_for_port", port=port, timeout_seconds=10), secrets={}
    )
    assert ready.ok, ready.error
    server_pid = int((tmp_path / "server.pid").read_text())
    assert _running(server_pid)

    await terminal.close()
    assert not _running(server_pid)
    assert not _accepts(port)


async def test_wait_for_port_times_out_on_a_closed_port(machine: TerminalMachine) -> None:
    """Waiting on a port nobody listens on fails after the timeout with a clear error."""
    port = _free_port()
    started = time.monotonic()
    result = await machine.perform(
        WaitForPort(type="wait_for_port", port=port, timeout_seconds=0.3), secrets={}
    )
    assert 0.3 <= time.monotonic() - started < 1.5
    assert not result.ok
    assert result.error is not None
    assert result.error.startswith(f"nothing accepted connections on 127.0.0.1:{port} within 0.3 s")


async def test_wait_for_port_sees_a_listening_socket(machine: TerminalMachine) -> None:
    """A socket that is already listening is found on the first attempt."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        result = await machine.perform(WaitForPort(type="wait_for_port", port=port), secrets={})
    assert result.ok
    assert result.data["duration_ms"] < 1000


async def test_wait_for_file_relative_to_workdir(machine: TerminalMachine) -> None:
    """A file that appears later is waited for; one that never does times out."""
    await machine.perform(Bash(type="bash", command="(sleep 0.2; touch ready.txt) &"), secrets={})
    found = await machine.perform(
        WaitForFile(type="wait_for_file", path="ready.txt", timeout_seconds=5), secrets={}
    )
    assert found.ok, found.error

    missing = await machine.perform(
        WaitForFile(type="wait_for_file", path="never.txt", timeout_seconds=0.2), secrets={}
    )
    assert not missing.ok
    assert missing.error == f"{machine.workdir / 'never.txt'} did not appear within 0.2 s"


async def test_cancellation_kills_the_command_quickly(machine: TerminalMachine) -> None:
    """Cancelling a running command returns within a second with all its processes gone."""
    command = "echo $$ > main.pid; sleep 30 & echo $! > child.pid; wait"
    task = asyncio.create_task(machine.perform(Bash(type="bash", command=command), secrets={}))
    child_pid = machine.workdir / "child.pid"
    while not child_pid.exists() or not child_pid.read_text().strip():
        await asyncio.sleep(0.02)
    started = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert time.monotonic() - started < 1
    for name in ("child.pid", "main.pid"):
        assert not _running(int((machine.workdir / name).read_text()))


async def test_wait_is_cancellable(machine: TerminalMachine) -> None:
    """A long wait stops as soon as it is cancelled."""
    task = asyncio.create_task(machine.perform(Wait(type="wait", seconds=30), secrets={}))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 1)


async def test_secrets_reach_the_command_but_not_the_output(machine: TerminalMachine) -> None:
    """A secret placeholder is filled in for the command and masked in output and observe()."""
    secrets = {"API_TOKEN": "s3cr3t-value", "EMPTY": ""}
    command = (
        'token="{{ secrets.API_TOKEN }}"; echo "token=$token"; '
        '[ "$token" = "s3cr3t-value" ] && echo matched; echo "[{{secrets.EMPTY}}]"'
    )
    result = await machine.perform(Bash(type="bash", command=command), secrets=secrets)
    assert result.ok
    assert result.output == "token=***\nmatched\n[]\n"
    assert (await machine.observe()).text == "token=***\nmatched\n[]\n"


async def test_unknown_secret_fails_without_running(machine: TerminalMachine) -> None:
    """A placeholder naming no secret fails the action, names the secret, and runs nothing."""
    command = "touch ran.txt; echo {{secrets.MISSING}}"
    result = await machine.perform(Bash(type="bash", command=command), secrets={"OTHER": "x"})
    assert not result.ok
    assert result.error == "unknown secret 'MISSING': no secret of that name is set"
    assert not (machine.workdir / "ran.txt").exists()


async def test_secret_at_the_cut_is_masked_whole(tmp_path: Path) -> None:
    """When the output is cut inside a secret, no piece of the secret is left either side."""
    terminal = TerminalMachine("t", tmp_path, output_limit=100)
    secret = "QZXJ-0123456789-QZXJ"
    # The head cut (byte 50) and the tail cut (50 bytes from the end) both land in the secret.
    command = "printf 'a%.0s' $(seq 40); echo -n '{{secrets.S}}'; printf 'b%.0s' $(seq 300);"
    command += " echo -n '{{secrets.S}}'; printf 'c%.0s' $(seq 40)"
    result = await terminal.perform(Bash(type="bash", command=command), secrets={"S": secret})
    assert result.ok
    assert result.output.startswith("a" * 40 + "***")
    assert result.output.endswith("***" + "c" * 40)
    for piece in ("QZ", "XJ", "0123"):
        assert piece not in result.output


async def test_unsupported_action_lists_what_the_terminal_can_do(
    machine: TerminalMachine,
) -> None:
    """Actions a terminal cannot perform come back as failed results, not exceptions."""
    as_machine: Machine = machine
    click = await as_machine.perform(Click(type="click", x=1, y=2), secrets={})
    assert not click.ok
    assert click.error == (
        "machine 'local-terminal' (terminal) cannot perform 'click'; "
        "it supports: bash, wait, wait_for_port, wait_for_file"
    )
    done = await machine.perform(Done(type="done"), secrets={})
    assert not done.ok
    assert done.error is not None
    assert "cannot perform 'done'" in done.error


async def test_unrendered_number_fails_clearly(machine: TerminalMachine) -> None:
    """A numeric field still holding a template is a failed action naming the field."""
    result = await machine.perform(
        WaitForPort(type="wait_for_port", port="{{inputs.port}}"), secrets={}
    )
    assert not result.ok
    assert result.error == (
        "'port' must be a number, got '{{inputs.port}}' (was the template rendered?)"
    )


async def test_unusable_workdir_is_a_failed_action(tmp_path: Path) -> None:
    """A working directory that cannot be created fails the action instead of raising."""
    (tmp_path / "file").write_text("not a directory")
    terminal = TerminalMachine("t", tmp_path / "file" / "work")
    result = await terminal.perform(Bash(type="bash", command="true"), secrets={})
    assert not result.ok
    assert result.error is not None
    assert result.error.startswith(f"cannot start /bin/bash in {tmp_path / 'file' / 'work'}: ")
