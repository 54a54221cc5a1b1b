"""Real servers and process checks the machine tests share: free ports, an HTTP recorder, sshd."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs

import pytest


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def needs(*programs: str) -> pytest.MarkDecorator:
    """Skip unless every program is installed (scripts/install-system-deps.sh installs them)."""
    missing = [program for program in programs if shutil.which(program) is None]
    return pytest.mark.skipif(
        bool(missing),
        reason=f"not installed: {', '.join(missing)} (run scripts/install-system-deps.sh)",
    )


def wait_until(check: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


async def eventually(check: Callable[[], bool], timeout: float = 10.0, what: str = "it") -> None:
    """Wait (without blocking the event loop) until ``check()`` is true."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def running(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie is not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except FileNotFoundError:
        return False
    return stat.rpartition(b")")[2].split()[0] != b"Z"


def descendants(root: int) -> dict[int, str]:
    """Live descendants of process ``root``, pid -> command name."""
    parents: dict[int, tuple[int, str]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            raw = stat.read_bytes()
        except OSError:
            continue
        head, _, rest = raw.rpartition(b")")
        fields = rest.split()
        if fields[0] == b"Z":
            continue
        name = head.partition(b"(")[2].decode(errors="replace")
        parents[int(stat.parent.name)] = (int(fields[1]), name)
    found: dict[int, str] = {}
    frontier = [root]
    while frontier:
        parent = frontier.pop()
        for pid, (ppid, name) in parents.items():
            if ppid == parent and pid not in found:
                found[pid] = name
                frontier.append(pid)
    return found


@dataclass
class Recorder:
    """An HTTP server serving fixed pages and recording every form POSTed to it."""

    pages: dict[str, str]
    posts: list[dict[str, str]] = field(default_factory=list)
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@contextmanager
def serve_pages(pages: dict[str, str]) -> Iterator[Recorder]:
    recorder = Recorder(pages)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = recorder.pages.get(self.path.split("?")[0])
            self._reply(200 if body is not None else 404, body or "<h1>not found</h1>")

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            form = parse_qs(self.rfile.read(length).decode(), keep_blank_values=True)
            values = {key: items[0] for key, items in form.items()}
            recorder.posts.append(values)
            echo = "".join(f"<p>{key}={value}</p>" for key, value in values.items())
            self._reply(200, f"<h1>Received</h1>{echo}")

        def _reply(self, status: int, body: str) -> None:
            data = body.encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    recorder.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield recorder
    finally:
        server.shutdown()
        server.server_close()


@dataclass(frozen=True)
class Sshd:
    """A running sshd on loopback that accepts ``username`` with the key at ``client_key``."""

    port: int
    username: str
    client_key: Path
    host_public_key: str


@contextmanager
def run_sshd(directory: Path) -> Iterator[Sshd]:
    """Start ``sshd -D`` on a free loopback port with generated host and user keys."""
    sshd = shutil.which("sshd") or "/usr/sbin/sshd"
    if not Path(sshd).exists():
        pytest.skip("sshd is not installed (apt-get install openssh-server)")
    if os.geteuid() != 0:
        pytest.skip("running sshd for the test needs root")
    directory.mkdir(parents=True, exist_ok=True)
    host_key, client_key = directory / "host_ed25519", directory / "client_ed25519"
    for key in (host_key, client_key):
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)],
            check=True,
            capture_output=True,
        )
    authorized = directory / "authorized_keys"
    authorized.write_text(Path(f"{client_key}.pub").read_text())
    # sshd refuses to start without its privilege separation directory.
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    port = free_port()
    config = directory / "sshd_config"
    config.write_text(
        "\n".join(
            [
                f"HostKey {host_key}",
                f"AuthorizedKeysFile {authorized}",
                f"PidFile {directory / 'sshd.pid'}",
                "PermitRootLogin prohibit-password",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                "UsePAM no",
                # The key files live under /tmp, which StrictModes rejects as world-writable.
                "StrictModes no",
                "LogLevel ERROR",
                "",
            ]
        )
    )
    process = subprocess.Popen(
        [sshd, "-D", "-e", "-f", str(config), "-p", str(port), "-o", "ListenAddress=127.0.0.1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:

        def accepting() -> bool:
            if process.poll() is not None:
                error = process.stderr.read().decode() if process.stderr else ""
                raise AssertionError(f"sshd exited: {error}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    return True
            except OSError:
                return False

        wait_until(accepting, what="sshd to listen")
        yield Sshd(
            port=port,
            username="root",
            client_key=client_key,
            host_public_key=Path(f"{host_key}.pub").read_text().strip(),
        )
    finally:
        process.terminate()
        process.wait(timeout=5)
