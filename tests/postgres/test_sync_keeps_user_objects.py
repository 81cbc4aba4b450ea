"""`ml.sync()` and `ml.deploy()` never destroy what a user made: a table column of a generated
result type and a view over a generated function survive `ml.sync()` run twice and a deploy of a
version with another signature (before, every sync ran DROP TYPE ... CASCADE, which dropped the
column with only a NOTICE, and a view made the next sync fail for good)."""

from __future__ import annotations

import uuid
from pathlib import Path

import psycopg
import pytest

from sqlml.bridge.manifest import Column, Manifest, Signature
from sqlml.bridge.registry import Registry

pytestmark = [pytest.mark.postgres, pytest.mark.bridge]


def _publish(
    store: Registry, name: str, inputs: list[tuple[str, str]], outputs: list[str], tmp_path: Path, alias: str | None
) -> int:
    folder = tmp_path / f"{name}-{len(inputs)}"
    folder.mkdir()
    manifest = Manifest(
        name=name,
        runtime="fake_echo",
        task="regression",
        signature=Signature(
            inputs=[Column(name=n, type=t) for n, t in inputs],  # type: ignore[arg-type]
            outputs=[Column(name=n, type="text" if n == "tag" else "double") for n in outputs],
        ),
    )
    return store.publish(manifest, folder, alias=alias).version


def _actions(conn: psycopg.Connection, model: str) -> list[str]:
    return [row[2] for row in conn.execute("SELECT * FROM ml.sync()") if row[0] == model]


def test_user_columns_and_views_survive_sync_and_a_new_signature(
    conn: psycopg.Connection, bridge_store: Registry, tmp_path: Path
) -> None:
    model = f"shape_{uuid.uuid4().hex[:6]}"
    _publish(bridge_store, model, [("a", "bigint"), ("b", "bigint")], ["score", "tag"], tmp_path, "production")
    assert _actions(conn, model) == ["created"]
    conn.execute(f"CREATE TABLE {model}_saved (id int, r ml.{model}_result)")
    conn.execute(f"INSERT INTO {model}_saved SELECT g, ml.{model}(g, 1) FROM generate_series(1, 3) g")
    conn.execute(f"CREATE VIEW {model}_view AS SELECT g AS id, (ml.{model}(g, 2)).score FROM generate_series(1, 3) g")
    saved = conn.execute(f"SELECT id, (r).score, (r).tag FROM {model}_saved ORDER BY id").fetchall()
    assert saved == [(1, 2.0, "ok"), (2, 3.0, "ok"), (3, 4.0, "ok")]

    assert _actions(conn, model) == ["unchanged"]
    assert _actions(conn, model) == ["unchanged"]
    assert conn.execute(f"SELECT id, (r).score, (r).tag FROM {model}_saved ORDER BY id").fetchall() == saved
    assert conn.execute(f"SELECT score FROM {model}_view ORDER BY id").fetchall() == [(3.0,), (4.0,), (5.0,)]

    # a version with another signature: deploying it re-syncs, and the view keeps the old function
    inputs = [("a", "bigint"), ("b", "bigint"), ("c", "double")]
    version = _publish(bridge_store, model, inputs, ["score", "tag", "extra"], tmp_path, None)
    conn.execute("SET client_min_messages = notice")
    notices: list[str] = []
    conn.add_notice_handler(lambda diag: notices.append(diag.message_primary or ""))
    conn.execute("SELECT ml.deploy(%s, %s)", [model, version])
    assert any("is kept" in n and f"{model}_view" in n for n in notices), notices
    assert conn.execute(f"SELECT id, (r).score, (r).tag FROM {model}_saved ORDER BY id").fetchall() == saved
    assert conn.execute(f"SELECT to_regclass('{model}_view') IS NOT NULL").fetchone() == (True,)

    # once the view is gone, the next sync replaces the function; the column keeps its old type
    conn.execute(f"DROP VIEW {model}_view")
    assert _actions(conn, model) == ["updated"]
    assert conn.execute(f"SELECT (ml.{model}(1, 2, 0.5)).score").fetchone() == (3.5,)
    assert conn.execute(f"SELECT id, (r).score, (r).tag FROM {model}_saved ORDER BY id").fetchall() == saved
    returns = conn.execute(
        "SELECT format_type(prorettype, NULL) FROM pg_proc WHERE proname = %s AND pronamespace = 'ml'::regnamespace",
        [model],
    ).fetchall()
    assert len(returns) == 2 and len(set(returns)) == 1  # the typed function and its row form
    assert returns[0][0].startswith(f"ml.{model}_result_")  # a type of its own
    assert conn.execute(f"SELECT (ml.{model}(1, 2, 0.5)).extra").fetchone() == (3.5,)
    conn.execute(f"DROP TABLE {model}_saved")
