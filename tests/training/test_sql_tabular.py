"""Users' own tables trained, scored and evaluated from SQL: a multiclass and a regression data set.

Palmer penguins (text island and sex, NULL measurements, three species) and Ames houses (40 text
columns) are loaded into PostgreSQL as tables; `ml.train` trains on one part, `ml.sync()` makes
the typed function, which scores the other part, and `ml.evaluate` measures it there, against a
real bridge with the job routes. The metrics are checked against the predictions themselves.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
import psycopg
import pytest

from sqlml.data.tables import load_table

from .sql_jobs import poll_job, sql_session

pytestmark = pytest.mark.postgres

QUICK = '{"n_estimators": 40, "learning_rate": 0.2}'


def _sql_type(dtype: Any) -> str:
    text = str(dtype)
    return "bigint" if text.startswith("int") else "double precision" if text.startswith("float") else "text"


def _load(conn: psycopg.Connection[Any], name: str, frame: pd.DataFrame) -> None:
    columns = ", ".join(f"{c} {_sql_type(t)}" for c, t in frame.dtypes.items())
    conn.execute(f"DROP TABLE IF EXISTS {name}")  # type: ignore[arg-type]
    conn.execute(f"CREATE TABLE {name} ({columns})")  # type: ignore[arg-type]
    with conn.cursor().copy(f"COPY {name} ({', '.join(frame.columns)}) FROM STDIN") as copy:  # type: ignore[arg-type]
        for row in frame.astype(object).where(frame.notna(), None).itertuples(index=False):
            copy.write_row(list(row))


@pytest.fixture
def session(pg_leads: str, bridge_url: str) -> Iterator[psycopg.Connection[Any]]:
    with sql_session(pg_leads, bridge_url) as conn:
        yield conn


def _train(conn: psycopg.Connection[Any], model: str, task: str, query: str, target: str) -> dict[str, float]:
    job = conn.execute("SELECT ml.train(%s, %s, %s, %s, %s::jsonb)", [model, task, query, target, QUICK]).fetchone()
    state, _version, _promoted, metrics, error = poll_job(conn, job[0], timeout_s=180)  # type: ignore[index]
    assert state == "succeeded", error
    conn.execute("SELECT * FROM ml.sync()")
    return dict(metrics)


def test_a_multiclass_model_from_sql_scores_and_evaluates(session: psycopg.Connection[Any]) -> None:
    penguins = load_table("penguins").sample(frac=1.0, random_state=1).reset_index(drop=True)
    _load(session, "penguins", penguins)
    session.execute("ALTER TABLE penguins ADD COLUMN part text")
    session.execute("UPDATE penguins SET part = CASE WHEN penguin_id % 4 = 0 THEN 'test' ELSE 'train' END")
    metrics = _train(session, "penguin_species", "classification",
                     "SELECT island, bill_length_mm, bill_depth_mm, flipper_length_mm, body_mass_g, sex, species "
                     "FROM penguins WHERE part = 'train'", "species")  # fmt: skip
    assert metrics["accuracy"] > metrics["baseline_accuracy"]
    scored = session.execute(
        "SELECT species, (ml.penguin_species(p)).label, (ml.penguin_species(p)).p_gentoo "
        "FROM penguins p WHERE part = 'test' ORDER BY penguin_id"
    ).fetchall()
    assert all(label in ("Adelie", "Chinstrap", "Gentoo") and 0.0 <= p <= 1.0 for _s, label, p in scored)
    evaluated = dict(session.execute(
        "SELECT metric, value FROM ml.evaluate('penguin_species', 'SELECT * FROM penguins WHERE part = ''test''')"
    ).fetchall())  # fmt: skip
    accuracy = np.mean([truth == label for truth, label, _p in scored])
    assert evaluated["rows"] == len(scored) and evaluated["accuracy"] == pytest.approx(accuracy)
    assert sum(v for k, v in evaluated.items() if k.startswith("confusion:")) == len(scored)
    assert evaluated["confusion:Gentoo:Gentoo"] == sum(1 for t, label, _p in scored if t == label == "Gentoo")


def test_a_regression_from_sql_scores_and_evaluates(session: psycopg.Connection[Any]) -> None:
    houses = load_table("ames")
    _load(session, "houses", houses)
    metrics = _train(session, "house_price", "regression", "SELECT * FROM houses WHERE house_id <= 2400", "sale_price")
    assert metrics["rmse"] < 0.5 * metrics["baseline_rmse"]
    assert "house_id" not in [
        r[0] for r in session.execute(
            "SELECT unnest(proargnames) FROM pg_proc WHERE proname = 'house_price' AND pronargs > 1").fetchall()
    ]  # fmt: skip
    scored = session.execute(
        "SELECT sale_price, ml.house_price(h) FROM houses h WHERE house_id > 2400 ORDER BY house_id"
    ).fetchall()
    rmse = float(np.sqrt(np.mean([(truth - p) ** 2 for truth, p in scored])))
    evaluated = dict(
        session.execute("SELECT * FROM ml.evaluate('house_price', 'SELECT * FROM houses WHERE house_id > 2400')")
    .fetchall())  # fmt: skip
    assert evaluated["rows"] == len(scored) == 530
    assert evaluated["rmse"] == pytest.approx(rmse, rel=1e-6)


def test_unknown_parameters_and_bad_targets_are_refused_before_any_job(session: psycopg.Connection[Any]) -> None:
    _load(session, "tiny", pd.DataFrame({"note": ["a", "b"] * 15, "y": ["yes", "no"] * 15, "v": range(30)}))
    with pytest.raises(psycopg.Error, match="unknown training parameter: 'algorithm'"):
        session.execute(
            """SELECT ml.train('t1', 'classification', 'SELECT * FROM tiny', 'y', '{"algorithm": "xgboost"}')"""
        )
    with pytest.raises(psycopg.Error, match="regression needs a numeric target"):
        session.execute("SELECT ml.train('t2', 'regression', 'SELECT * FROM tiny', 'y')")
