"""Reader tokens, teams and public names (coordinator/auth.py), and the tokens table's migration."""

from __future__ import annotations

import sqlite3

import grpc
import pytest

from autoswarm.coordinator.auth import AuthError, Authenticator, profiles, pseudonym
from autoswarm.coordinator.store import Store


def _bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


def test_a_reader_token_reads_status_history_lineage_and_credit_and_nothing_else(tmp_path):
    auth = Authenticator(Store(tmp_path / "s.db"))
    reader = auth.create_join_token("grafana", kind="reader")
    assert reader.startswith("asr_") and auth.reader(reader)
    for method in ("Status", "History", "Lineage", "Credit"):
        assert auth.authorize(f"/autoswarm.v1.ControlService/{method}", _bearer(reader)).kind == "reader"
    for method in ("AddStudy", "CreateToken", "RevokeToken", "GetVersion"):
        with pytest.raises(AuthError) as refused:
            auth.authorize(f"/autoswarm.v1.ControlService/{method}", _bearer(reader))
        assert refused.value.code == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(AuthError):
        auth.authorize("/autoswarm.v1.WorkerService/Register", _bearer(reader))
    auth.revoke("grafana")
    assert not auth.reader(reader)


def test_join_tokens_carry_a_team_a_display_name_or_anonymity(tmp_path):
    store = Store(tmp_path / "s.db")
    auth = Authenticator(store)
    auth.create_join_token("alice", team="Red Team")
    auth.create_join_token("bob", display="Bob B.", team="Red Team")
    auth.create_join_token("carol", anonymous=True)
    people = profiles(store.tokens())
    assert (people["alice"].public, people["alice"].team) == ("alice", "Red Team")
    assert people["bob"].public == "Bob B."
    assert people["carol"].public == pseudonym("carol") and "carol" not in people["carol"].public
    assert not auth.reader(auth.create_join_token("dave")), "a join token is not a reader token"
    with pytest.raises(ValueError, match="team"):
        auth.create_join_token("eve", team="x" * 65)
    with pytest.raises(ValueError, match="reader token has no team"):
        auth.create_join_token("feed", team="t", kind="reader")


def test_a_tokens_table_from_before_readers_and_teams_is_migrated(tmp_path):
    db = tmp_path / "old.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE tokens (hash TEXT PRIMARY KEY, kind TEXT NOT NULL CHECK (kind IN "
                     "('admin', 'join', 'worker')), name TEXT NOT NULL, worker_id TEXT NOT NULL, parent TEXT NOT NULL, "
                     "created REAL NOT NULL, revoked INTEGER NOT NULL DEFAULT 0)")
        conn.execute("INSERT INTO tokens VALUES ('h', 'join', 'alice', '', '', 1.0, 0)")
    auth = Authenticator(Store(db))
    assert [t.name for t in auth.store.tokens()] == ["alice"]
    assert auth.reader(auth.create_join_token("grafana", kind="reader"))
