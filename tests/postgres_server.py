"""A throwaway PostgreSQL server for tests and benchmarks: Debian's binaries, a temp dir, loopback.

:class:`PostgresServer` runs ``initdb`` into a fresh temporary directory (as
the ``postgres`` user through ``runuser`` when we are root, since PostgreSQL
refuses to run as root), then ``pg_ctl start`` on a free port of 127.0.0.1
only, with its unix socket in the same directory, so it never meets a system
cluster. ``stop()`` shuts it down and deletes the directory.

Tests turn durability off (``fsync``, ``synchronous_commit``,
``full_page_writes``): a crash of the test machine loses nothing that matters,
and ``CREATE DATABASE`` per test gets several times faster. Benchmarks keep
the defaults so their figures mean what a real deployment would see.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

POSTGRES_USER = "postgres"
_FAST_SETTINGS = ("fsync=off", "synchronous_commit=off", "full_page_writes=off")


class PostgresUnavailable(Exception):
    """PostgreSQL's server programs are not installed, or the server would not start."""


def find_bindir() -> Path:
    """The directory of the newest installed ``initdb``/``pg_ctl`` (Debian keeps them off PATH)."""
    candidates = [Path(p).parent for p in glob.glob("/usr/lib/postgresql/*/bin/initdb")]
    if candidates:
        return max(candidates, key=lambda path: int(path.parent.name))
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).parent
    raise PostgresUnavailable(
        "PostgreSQL is not installed (no initdb); run `make system-deps` "
        "or set CUAFLOW_TEST_POSTGRES_URL"
    )


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PostgresServer:
    """One PostgreSQL server of our own, in a temporary directory."""

    def __init__(self, *, durable: bool = False, max_connections: int = 400) -> None:
        self.bindir = find_bindir()
        self.durable = durable
        self.max_connections = max_connections
        self.port = free_port()
        self.directory = Path(tempfile.mkdtemp(prefix="cuaflow-pg-"))
        self.data = self.directory / "data"
        self.log = self.directory / "server.log"

    @property
    def url(self) -> str:
        """The URL of the ``postgres`` maintenance database, as the superuser."""
        return f"postgresql://{POSTGRES_USER}@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        """initdb and start; raises :class:`PostgresUnavailable` with the log if either fails."""
        as_root = os.geteuid() == 0
        if as_root:
            entry = pwd.getpwnam(POSTGRES_USER)
            os.chown(self.directory, entry.pw_uid, entry.pw_gid)
        settings = [
            "listen_addresses=127.0.0.1",
            f"port={self.port}",
            f"unix_socket_directories={self.directory}",
            f"max_connections={self.max_connections}",
        ]
        if not self.durable:
            settings += _FAST_SETTINGS
        options = " ".join(f"-c {setting}" for setting in settings)
        self._run(
            [
                str(self.bindir / "initdb"),
                "-D",
                str(self.data),
                "-U",
                POSTGRES_USER,
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
            ],
            as_root=as_root,
        )
        self._run(
            [
                str(self.bindir / "pg_ctl"),
                "-D",
                str(self.data),
                "-l",
                str(self.log),
                "-o",
                options,
                "-w",
                "-t",
                "60",
                "start",
            ],
            as_root=as_root,
        )

    def stop(self) -> None:
        """Stop the server at once (its data is thrown away) and delete its directory."""
        if (self.data / "postmaster.pid").exists():
            with contextlib.suppress(PostgresUnavailable):
                self._run(
                    [str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop"],
                    as_root=os.geteuid() == 0,
                )
        shutil.rmtree(self.directory, ignore_errors=True)

    def _run(self, command: list[str], *, as_root: bool) -> None:
        if as_root:
            command = ["runuser", "-u", POSTGRES_USER, "--", *command]
        try:
            result = subprocess.run(
                command, check=False, capture_output=True, text=True, timeout=120
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise PostgresUnavailable(f"{command[0]} failed: {exc}") from exc
        if result.returncode != 0:
            log = self.log.read_text() if self.log.exists() else ""
            raise PostgresUnavailable(
                f"{' '.join(command)} exited {result.returncode}:\n"
                f"{result.stdout}{result.stderr}{log}"
            )
