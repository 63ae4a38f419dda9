"""Connection helpers and settings that need no server."""

from __future__ import annotations

from pathlib import Path

import pytest

from lqs.config import Settings, find_data_dir
from lqs.db.connection import check_server_version, describe_url
from lqs.db.errors import UnsupportedServer
from lqs.db.pool import jwt_claims


@pytest.mark.parametrize(
    ("version_num", "shown"), [(140011, "PostgreSQL 14.11"), (130000, "PostgreSQL 13.0")]
)
def test_servers_before_15_are_refused_with_their_version(version_num: int, shown: str) -> None:
    with pytest.raises(UnsupportedServer, match=f"{shown} is too old: LQS needs PostgreSQL 15"):
        check_server_version(version_num)


@pytest.mark.parametrize("version_num", [150000, 150019, 160002, 180000])
def test_servers_from_15_on_are_accepted(version_num: int) -> None:
    check_server_version(version_num)


def test_described_url_never_shows_the_password() -> None:
    described = describe_url("postgresql://app:hunter2@db.example.test:6543/lqs")
    assert described == "app@db.example.test:6543/lqs"


def test_socket_urls_are_described_by_their_directory() -> None:
    assert (
        describe_url("postgresql://postgres:@/postgres?host=/tmp/pg") == "postgres@/tmp/pg/postgres"
    )


def test_unparseable_url_is_not_described() -> None:
    assert describe_url("postgresql://[::1") is None


def test_settings_come_from_lqs_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LQS_DATABASE_URL", "postgresql://x@localhost/y")
    monkeypatch.setenv("LQS_DATA_DIR", "/srv/lqs")
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.database_url == "postgresql://x@localhost/y"
    assert settings.data_dir == Path("/srv/lqs")


def test_settings_default_to_the_embedded_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("LQS_DATABASE_URL", raising=False)
    monkeypatch.delenv("LQS_DATA_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.database_url is None
    assert settings.data_dir == Path(".lqs")


def test_the_data_directory_is_found_in_a_folder_above(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("LQS_DATA_DIR", raising=False)
    (tmp_path / ".lqs").mkdir()
    deeper = tmp_path / "imports" / "2026"
    deeper.mkdir(parents=True)
    monkeypatch.chdir(deeper)

    assert Settings(_env_file=None).data_dir == tmp_path / ".lqs"  # type: ignore[call-arg]


def test_the_nearest_data_directory_wins(tmp_path: Path) -> None:
    (tmp_path / ".lqs").mkdir()
    (tmp_path / "inner" / ".lqs").mkdir(parents=True)
    (tmp_path / "inner" / "sub").mkdir()

    assert find_data_dir(tmp_path / "inner" / "sub") == tmp_path / "inner" / ".lqs"
    assert find_data_dir(tmp_path / "inner") == tmp_path / "inner" / ".lqs"


def test_a_file_named_like_the_data_directory_is_not_one(tmp_path: Path) -> None:
    (tmp_path / ".lqs").write_text("not a directory")
    (tmp_path / "sub").mkdir()

    assert find_data_dir(tmp_path / "sub") == Path(".lqs")


def test_without_a_data_directory_above_it_is_created_in_the_current_folder(
    tmp_path: Path,
) -> None:
    assert find_data_dir(tmp_path) == Path(".lqs")


def test_a_removed_current_folder_falls_back_to_the_relative_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gone = tmp_path / "gone"
    gone.mkdir()
    monkeypatch.chdir(gone)
    gone.rmdir()

    assert find_data_dir() == Path(".lqs")


def test_lqs_data_dir_wins_over_a_data_directory_found_above(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / ".lqs").mkdir()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LQS_DATA_DIR", "/srv/lqs")

    assert Settings(_env_file=None).data_dir == Path("/srv/lqs")  # type: ignore[call-arg]


def test_settings_read_a_dotenv_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LQS_DATA_DIR", raising=False)
    env_file = tmp_path / ".env"
    env_file.write_text("LQS_DATA_DIR=/from/dotenv\n")
    assert Settings(_env_file=env_file).data_dir == Path("/from/dotenv")  # type: ignore[call-arg]


def test_jwt_claims_are_those_postgrest_sets() -> None:
    from uuid import UUID

    user = UUID("00000000-0000-0000-0000-00000000000a")
    assert jwt_claims(user, "authenticated") == {"role": "authenticated", "sub": str(user)}
    assert jwt_claims(None, "anon") == {"role": "anon"}


@pytest.mark.parametrize("key", ["role", "sub"])
def test_extra_claims_cannot_change_the_role_or_subject(key: str) -> None:
    with pytest.raises(ValueError, match="may not set"):
        jwt_claims(None, "authenticated", {key: "service_role"})


def test_extra_claims_are_added() -> None:
    assert jwt_claims(None, "anon", {"aal": "aal1"}) == {"aal": "aal1", "role": "anon"}
