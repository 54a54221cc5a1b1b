"""The ssh machine against a real sshd started on a free loopback port with generated keys."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncssh
import pytest

from cuaflow.dsl.actions import Bash, Click, WaitForFile, WaitForPort
from cuaflow.machines.registry import MachineSpec, build_machine
from cuaflow.machines.ssh import SshMachine
from tests.machines.support import Sshd, eventually, free_port, run_sshd, running

SECRETS = {"TOKEN": "ssh-s3cret"}


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sshd]:
    with run_sshd(tmp_path_factory.mktemp("sshd")) as server:
        yield server


@pytest.fixture
async def machine(sshd: Sshd, tmp_path: Path) -> AsyncIterator[SshMachine]:
    remote = SshMachine(
        "ssh-test",
        "127.0.0.1",
        port=sshd.port,
        username=sshd.username,
        client_keys=[str(sshd.client_key)],
        host_key=sshd.host_public_key,
        workdir=str(tmp_path / "remote"),
    )
    yield remote
    await remote.close()


async def test_commands_report_output_and_exit_codes(machine: SshMachine, tmp_path: Path) -> None:
    """Output (stderr too) and exit codes come back; a non-zero exit fails unless check is off."""
    good = await machine.perform(
        Bash(type="bash", command="echo out; echo err >&2; pwd"), secrets={}
    )
    assert good.ok
    assert good.exit_code == 0
    assert good.output == f"out\nerr\n{tmp_path / 'remote'}\n"
    assert (await machine.observe()).text == good.output

    bad = await machine.perform(Bash(type="bash", command="echo oops; exit 3"), secrets={})
    assert not bad.ok
    assert bad.exit_code == 3
    assert bad.output == "oops\n"
    assert bad.error == "command exited with code 3"

    tolerated = await machine.perform(Bash(type="bash", command="exit 4", check=False), secrets={})
    assert tolerated.ok
    assert tolerated.exit_code == 4


async def test_secrets_are_substituted_remotely_and_masked(machine: SshMachine) -> None:
    """The remote command gets the secret's value; the result shows only the mask."""
    result = await machine.perform(
        Bash(type="bash", command="echo {{secrets.TOKEN}} > token; cat token; wc -c < token"),
        secrets=SECRETS,
    )
    assert result.ok
    assert result.output == f"***\n{len(SECRETS['TOKEN']) + 1}\n"
    assert SECRETS["TOKEN"] not in (await machine.observe()).text


async def test_timeout_kills_the_remote_process_group(machine: SshMachine, tmp_path: Path) -> None:
    """A command past its timeout fails quickly and its remote children are killed."""
    started = time.monotonic()
    result = await machine.perform(
        Bash(type="bash", command="sleep 60 & echo $! > child.pid; wait", timeout_seconds=1),
        secrets={},
    )
    assert time.monotonic() - started < 5
    assert not result.ok
    assert "timed out after 1 s" in (result.error or "")
    child = int((tmp_path / "remote" / "child.pid").read_text())
    for _ in range(50):
        if not running(child):
            break
        time.sleep(0.05)
    assert not running(child)


async def test_cancelling_a_command_kills_it_remotely(machine: SshMachine, tmp_path: Path) -> None:
    """A cancelled bash action stops its remote processes instead of leaving them running."""
    pid_file = tmp_path / "remote" / "cancel.pid"
    task = asyncio.create_task(
        machine.perform(
            Bash(type="bash", command="sleep 60 & echo $! > cancel.pid; wait"), secrets={}
        )
    )
    await eventually(lambda: pid_file.exists() and pid_file.read_text().strip() != "", what="pid")
    child = int(pid_file.read_text())
    assert running(child)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await eventually(lambda: not running(child), timeout=5, what="the remote child to die")


async def test_a_background_server_does_not_hold_the_command(
    machine: SshMachine, tmp_path: Path
) -> None:
    """A command that leaves a process in the background returns once its shell exits."""
    started = time.monotonic()
    result = await machine.perform(
        Bash(type="bash", command="sleep 30 & echo $! > bg.pid; echo started"), secrets={}
    )
    assert time.monotonic() - started < 3
    assert result.ok
    assert result.output == "started\n"
    background = int((tmp_path / "remote" / "bg.pid").read_text())
    assert running(background)
    await machine.perform(Bash(type="bash", command=f"kill {background}"), secrets={})


async def test_waits_run_on_the_remote_host(machine: SshMachine) -> None:
    """wait_for_port and wait_for_file succeed when the thing appears and fail after the timeout."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        up = await machine.perform(WaitForPort(type="wait_for_port", port=port), secrets={})
    assert up.ok, up.error
    down = await machine.perform(
        WaitForPort(type="wait_for_port", port=free_port(), timeout_seconds=1), secrets={}
    )
    assert not down.ok
    assert "nothing accepted connections" in (down.error or "")

    await machine.perform(Bash(type="bash", command="(sleep 0.3; touch later) &"), secrets={})
    appeared = await machine.perform(
        WaitForFile(type="wait_for_file", path="later", timeout_seconds=5), secrets={}
    )
    assert appeared.ok, appeared.error
    missing = await machine.perform(
        WaitForFile(type="wait_for_file", path="never", timeout_seconds=1), secrets={}
    )
    assert not missing.ok
    unsupported = await machine.perform(Click(type="click", x=1, y=1), secrets={})
    assert not unsupported.ok


async def test_a_key_kept_as_a_secret_logs_in(sshd: Sshd, tmp_path: Path) -> None:
    """A registry spec whose client key is a secret placeholder connects with the secret's key."""
    spec = MachineSpec(
        "ssh-from-spec",
        "ssh",
        {
            "host": "127.0.0.1",
            "port": sshd.port,
            "username": sshd.username,
            "client_key": "{{secrets.SSH_KEY}}",
            "host_key": sshd.host_public_key,
        },
    )
    remote = build_machine(spec, workdir=tmp_path, secrets={"SSH_KEY": sshd.client_key.read_text()})
    try:
        result = await remote.perform(Bash(type="bash", command="echo hello"), secrets={})
    finally:
        await remote.close()
    assert result.output == "hello\n"


async def test_wrong_host_key_or_credentials_fail_clearly(sshd: Sshd, tmp_path: Path) -> None:
    """A server whose host key is not the pinned one, or a user without a key, is refused."""
    other_key = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode()
    spoofed = SshMachine(
        "spoofed",
        "127.0.0.1",
        port=sshd.port,
        username=sshd.username,
        client_keys=[str(sshd.client_key)],
        host_key=other_key,
    )
    keyless = SshMachine(
        "keyless", "127.0.0.1", port=sshd.port, username="nobody", verify_host_key=False
    )
    for remote in (spoofed, keyless):
        try:
            result = await remote.perform(Bash(type="bash", command="true"), secrets={})
        finally:
            await remote.close()
        assert not result.ok
        assert f"cannot connect to {remote.address}" in (result.error or "")
