"""Worker settings from the environment: lease length and poll interval, with clear errors."""

from __future__ import annotations

import pytest

from cuaflow.errors import CuaflowError
from cuaflow.store.notify import supports_notifications
from cuaflow.worker.worker import default_lease_seconds, default_poll_seconds


def test_defaults_without_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """Unset variables give a 15 s lease and a quarter-second poll."""
    monkeypatch.delenv("CUAFLOW_LEASE_SECONDS", raising=False)
    monkeypatch.delenv("CUAFLOW_WORKER_POLL_SECONDS", raising=False)
    assert default_lease_seconds() == 15.0
    assert default_poll_seconds() == 0.25


def test_settings_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    """Set variables are used as seconds."""
    monkeypatch.setenv("CUAFLOW_LEASE_SECONDS", "2.5")
    monkeypatch.setenv("CUAFLOW_WORKER_POLL_SECONDS", " 3 ")
    assert default_lease_seconds() == 2.5
    assert default_poll_seconds() == 3.0


@pytest.mark.parametrize("raw", ["0", "-1", "soon"])
def test_bad_settings_name_the_variable(monkeypatch: pytest.MonkeyPatch, raw: str) -> None:
    """A non-positive or non-numeric lease is refused with the variable and the value."""
    monkeypatch.setenv("CUAFLOW_LEASE_SECONDS", raw)
    with pytest.raises(CuaflowError, match=rf"CUAFLOW_LEASE_SECONDS.*'{raw}'"):
        default_lease_seconds()


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql://u@h/db", True),
        ("postgresql+psycopg://u@h/db", True),
        ("sqlite:///x.db", False),
    ],
)
def test_only_postgres_delivers_notifications(url: str, expected: bool) -> None:
    """Workers and event hubs listen for notifications on PostgreSQL URLs only."""
    assert supports_notifications(url) is expected
