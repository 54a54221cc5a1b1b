"""Where the database lives: the URL chosen from the environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from cuaflow.errors import StoreUnavailable
from cuaflow.store.database import default_database_url, normalize_url


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CUAFLOW_DATABASE_URL", raising=False)
    monkeypatch.delenv("CUAFLOW_DATA_DIR", raising=False)


def test_default_is_an_sqlite_file_in_a_new_data_dir_under_the_working_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With nothing configured the database is ./cuaflow-data/cuaflow.db, directory created."""
    monkeypatch.chdir(tmp_path)
    assert default_database_url() == f"sqlite:///{tmp_path}/cuaflow-data/cuaflow.db"
    assert (tmp_path / "cuaflow-data").is_dir()


def test_data_dir_setting_moves_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """CUAFLOW_DATA_DIR picks the directory, and missing parents are created."""
    data_dir = tmp_path / "a" / "b"
    monkeypatch.setenv("CUAFLOW_DATA_DIR", str(data_dir))
    assert default_database_url() == f"sqlite:///{data_dir}/cuaflow.db"
    assert data_dir.is_dir()


def test_an_uncreatable_data_dir_raises_store_unavailable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A data dir that cannot be created is reported with its path."""
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("CUAFLOW_DATA_DIR", str(blocker / "data"))
    with pytest.raises(StoreUnavailable, match=r"cannot create the data directory .*file/data"):
        default_database_url()


def test_database_url_setting_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    """CUAFLOW_DATABASE_URL is used as given (apart from the PostgreSQL driver)."""
    monkeypatch.setenv("CUAFLOW_DATABASE_URL", "sqlite:////srv/cuaflow.db")
    assert default_database_url() == "sqlite:////srv/cuaflow.db"


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("postgresql://u:p@db/cuaflow", "postgresql+psycopg://u:p@db/cuaflow"),
        ("postgres://db/cuaflow", "postgresql+psycopg://db/cuaflow"),
        ("postgresql+psycopg://db/cuaflow", "postgresql+psycopg://db/cuaflow"),
        ("sqlite:///x.db", "sqlite:///x.db"),
    ],
)
def test_postgresql_urls_use_psycopg(given: str, expected: str) -> None:
    """Plain PostgreSQL URLs are pointed at the psycopg 3 driver; others are untouched."""
    assert normalize_url(given) == expected
