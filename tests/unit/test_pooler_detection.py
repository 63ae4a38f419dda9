"""Which URLs go through a transaction pooler, and what follows (no server needed)."""

from __future__ import annotations

from typing import get_args

import pytest

from lqs.config import Settings
from lqs.db.connection import (
    PoolerMode,
    declare_pooler,
    detect_pooler,
    prepare_options,
    transaction_pooled,
)
from lqs.worker.run import listen_url

SUPABASE_POOLER = "aws-0-eu-central-1.pooler.supabase.com"


@pytest.mark.parametrize(
    ("url", "mode"),
    [
        (f"postgresql://postgres.ref:pw@{SUPABASE_POOLER}:6543/postgres", "transaction"),
        (f"postgresql://postgres.ref:pw@{SUPABASE_POOLER}:5432/postgres", "session"),
        (f"postgresql://postgres.ref:pw@{SUPABASE_POOLER}/postgres", "session"),
        (f"postgresql://postgres.ref:pw@{SUPABASE_POOLER.upper()}:6544/postgres", "transaction"),
        ("postgresql://app@10.0.0.7:6543/lqs", "transaction"),
        ("host=db.internal port=6543 dbname=lqs", "transaction"),
        ("postgresql://postgres:pw@db.abcdefgh.supabase.co:5432/postgres", "none"),
        ("postgresql://root@127.0.0.1:5432/postgres", "none"),
        ("postgresql://postgres:@/postgres?host=/tmp/pg", "none"),
        ("postgresql://[::1", "none"),
    ],
)
def test_the_pooler_is_detected_from_the_url(url: str, mode: str) -> None:
    assert detect_pooler(url) == mode


@pytest.mark.parametrize("setting", ["transaction", "session", "none"])
def test_the_setting_wins_over_the_url(setting: str) -> None:
    assert detect_pooler("postgresql://app@db:6543/lqs", setting) == setting
    assert detect_pooler("postgresql://app@db:5432/lqs", setting) == setting


def test_an_unknown_setting_is_refused_naming_it() -> None:
    with pytest.raises(ValueError, match="LQS_DATABASE_POOLER must be transaction, session or"):
        detect_pooler("postgresql://app@db/lqs", "statement")


def test_the_settings_offer_exactly_the_detected_modes() -> None:
    annotation = Settings.model_fields["database_pooler"].annotation
    offered = {arg for member in get_args(annotation) for arg in get_args(member)}
    assert offered == set(get_args(PoolerMode))


def test_settings_read_the_pooler_and_the_direct_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LQS_DATABASE_POOLER", "transaction")
    monkeypatch.setenv("LQS_DIRECT_DATABASE_URL", "postgresql://u@db:5432/lqs")
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.database_pooler == "transaction"
    assert settings.direct_database_url == "postgresql://u@db:5432/lqs"


def test_the_environment_then_the_url_decide_when_the_caller_does_not(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("LQS_DATABASE_POOLER", raising=False)
    assert transaction_pooled("postgresql://app@db:6543/lqs")
    assert not transaction_pooled("postgresql://app@db:6432/lqs")
    assert not transaction_pooled("postgresql://app@db:6543/lqs", pooled=False)
    monkeypatch.setenv("LQS_DATABASE_POOLER", "transaction")
    assert transaction_pooled("postgresql://app@db:6432/lqs")


def test_a_declared_mode_holds_for_its_url_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LQS_DATABASE_POOLER", raising=False)
    declare_pooler("postgresql://app@declared-pgbouncer:6432/lqs", "transaction")
    assert transaction_pooled("postgresql://app@declared-pgbouncer:6432/lqs")
    assert not transaction_pooled("postgresql://app@declared-pgbouncer:6432/other")


def test_pooled_connections_prepare_nothing_and_direct_ones_keep_the_default() -> None:
    assert prepare_options("postgresql://app@db:6543/lqs") == {"prepare_threshold": None}
    assert prepare_options("postgresql://app@db:5432/lqs", pooled=False) == {}


def test_the_worker_listens_on_the_direct_url_or_polls(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LQS_DATABASE_POOLER", raising=False)
    pooled, direct = "postgresql://app@db:6543/lqs", "postgresql://app@db:5432/lqs"
    assert listen_url(pooled, direct) == direct
    assert listen_url(pooled, None) is None
    assert listen_url(direct, None) == direct
