"""Install the `ml` SQL surface on a DuckDB connection (embedded mode or via a bridge client).

`register(con, client)` attaches a private in-memory catalog named `ml` (so nothing is written into
the user's database file and read-only databases work), registers the hidden vectorized UDFs, and
creates the macros: generic ones (`ml.predict`, `ml.explain`, `ml.forecast`, `ml.models`) and a
typed one per model generated from its signature (`ml.sentiment`, `ml.lead_score`, ...).
`refresh(con)` picks up models published since. Training from SQL (`ml.train`, `ml.job`, `ml.jobs`,
`ml.sync`: udfs/training.py) refreshes from inside a query, through a cursor of the connection
that this object keeps for as long as the UDFs it registered live.
"""

from __future__ import annotations

import atexit
import logging
import shutil
import tempfile
import threading
import warnings
import weakref
from pathlib import Path
from typing import Any

import duckdb
from duckdb.sqltypes import DuckDBPyType

from sqlml.bridge.client import LocalClient, ModelClient
from sqlml.bridge.manifest import Signature
from sqlml.errors import Conflict
from sqlml.sql.spec import FunctionSpec, spec_from_entry
from sqlml.udfs import arrow_udfs, macros, training
from sqlml.udfs.type_map import duckdb_type, result_sql_type

log = logging.getLogger("sqlml.udfs")
_REGISTERED: weakref.WeakKeyDictionary[duckdb.DuckDBPyConnection, SqlFunctions] = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()


class SqlFunctions:
    """The `ml` functions installed on one connection, and the client they call."""

    def __init__(self, con: duckdb.DuckDBPyConnection, client: ModelClient):
        self._con = weakref.ref(con)
        self.client = client
        self.udfs: set[str] = set()
        self.typed: dict[str, FunctionSpec] = {}  # model -> the spec its macro was built from
        # A UDF is removed through the connection that created it; one created inside a query
        # (by ml.train) belongs to the side cursor, which must outlive it.
        self._owners: dict[str, duckdb.DuckDBPyConnection] = {}
        self._side: duckdb.DuckDBPyConnection | None = None
        self.changes: dict[str, str] = {}  # model -> what the last refresh did to its macro

    @property
    def con(self) -> duckdb.DuckDBPyConnection:
        con = self._con()
        if con is None:
            raise Conflict("the DuckDB connection these ml functions were registered on is closed")
        return con

    def install(self) -> None:
        attach_catalog(self.con)
        varchar, bigint, boolean = DuckDBPyType("VARCHAR"), DuckDBPyType("BIGINT"), DuckDBPyType("BOOLEAN")
        json_text = DuckDBPyType("JSON")
        self._udf(macros.PREDICT_JSON_UDF, arrow_udfs.predict_json(self.client), [varchar, json_text, boolean], varchar)
        self._udf(
            macros.EXPLAIN_UDF,
            arrow_udfs.explain_json(self.client),
            [varchar, json_text, bigint, boolean],
            DuckDBPyType(macros.CONTRIBUTIONS_SQL_TYPE),
        )
        self._udf(
            macros.FORECAST_UDF,
            arrow_udfs.forecast(self.client),
            [varchar, varchar, bigint, DuckDBPyType("VARCHAR[]"), json_text, json_text],
            DuckDBPyType(macros.FORECAST_SQL_TYPE),
        )
        self._udf(macros.MODELS_UDF, arrow_udfs.models(self.client), [], DuckDBPyType(macros.MODELS_SQL_TYPE))
        self._udf(
            macros.EVALUATE_UDF,
            arrow_udfs.evaluate(self.client),
            [varchar, json_text],
            DuckDBPyType(macros.EVALUATION_SQL_TYPE),
        )
        self._install_training(varchar)
        for statement in macros.generic_macros() + macros.training_macros():
            self.con.execute(statement)
        self.refresh()

    def _install_training(self, varchar: DuckDBPyType) -> None:
        job_type = DuckDBPyType(macros.JOB_SQL_TYPE)
        self._udf(macros.TRAIN_UDF, training.train(self), [varchar] * 9, varchar, side_effects=True)
        self._udf(macros.JOB_UDF, training.job(self), [varchar], job_type, side_effects=True)
        self._udf(macros.JOBS_UDF, training.jobs_listing(self), [], job_type, side_effects=True)
        self._udf(macros.SYNC_UDF, training.sync(self), [], DuckDBPyType(macros.SYNC_SQL_TYPE), side_effects=True)

    def cursor(self) -> duckdb.DuckDBPyConnection:
        """A new cursor of the connection: what code running inside one of its queries may use."""
        return self.con.cursor()

    def sync_in_query(self) -> dict[str, str]:
        """`refresh` from inside a query on the connection (its DDL through the side cursor); returns
        model -> created, replaced, dropped or unchanged."""
        with _LOCK:
            if self._side is None:
                self._side = self.con.cursor()
            self.refresh(via=self._side)
            return dict(self.changes)

    def refresh(self, via: duckdb.DuckDBPyConnection | None = None) -> list[str]:
        """(Re)create the typed macro of every model the client lists; returns their names.

        A model listed with an `error` (its store entry is unreadable) keeps the macro it has, with
        a warning, so one broken model never stops the others from refreshing. `via` runs the DDL
        on another connection of the same database (a cursor, inside a query)."""
        ddl = via if via is not None else self.con
        self.changes = {}
        current = {}
        unreadable = set()
        for entry in self.client.models():
            if entry.get("error") is not None:
                unreadable.add(entry["name"])
                _warn_unreadable(entry, kept=entry["name"] in self.typed)
                continue
            spec = spec_from_entry(entry)
            if spec is not None:
                current[spec.model] = (spec, Signature.model_validate(entry["signature"]))
        for gone in set(self.typed) - set(current) - unreadable:
            self._drop_model(gone, ddl)
            self.changes[gone] = "dropped"
        for model, (spec, signature) in current.items():
            if self.typed.get(model) == spec:
                self.changes[model] = "unchanged"
                continue
            self.changes[model] = "replaced" if model in self.typed else "created"
            self._drop_model(model, ddl)
            if not spec.is_table:
                self._udf(
                    macros.predict_udf_name(model),
                    arrow_udfs.typed_predict(self.client, model, signature),
                    [duckdb_type(c) for c in spec.inputs],
                    DuckDBPyType(result_sql_type(spec)),
                    via=ddl,
                )
            ddl.execute(macros.model_macro(spec))
            self.typed[model] = spec
        return sorted(self.typed)

    def _drop_model(self, model: str, ddl: duckdb.DuckDBPyConnection | None = None) -> None:
        for statement in macros.drop_model_macros(model):
            (ddl or self.con).execute(statement)
        name = macros.predict_udf_name(model)
        if name in self.udfs:
            self._remove_udf(name)
        self.typed.pop(model, None)

    def _remove_udf(self, name: str) -> None:
        (self._owners.pop(name, None) or self.con).remove_function(name)
        self.udfs.discard(name)

    # Every UDF sees NULLs ("special"): the model host owns NULL in, NULL out, and a model may
    # return NULL for a non-NULL input (blank text), which DuckDB's default handling forbids.
    def _udf(
        self,
        name: str,
        function: arrow_udfs.ArrowUdf,
        parameters: list[DuckDBPyType],
        return_type: DuckDBPyType,
        null_handling: str = "special",
        *,
        side_effects: bool = False,
        via: duckdb.DuckDBPyConnection | None = None,
    ) -> None:
        if name in self.udfs:
            self._remove_udf(name)
        owner = via if via is not None else self.con
        owner.create_function(
            name,
            function,
            parameters,
            return_type,
            type="arrow",
            null_handling=null_handling,  # type: ignore[call-overload]
            side_effects=side_effects,
        )
        self.udfs.add(name)
        self._owners[name] = owner

    def uninstall(self) -> None:
        for model in list(self.typed):
            self._drop_model(model)
        for name in list(self.udfs):
            self._remove_udf(name)
        if self._side is not None:
            self._side.close()
            self._side = None


def _warn_unreadable(entry: dict[str, Any], kept: bool) -> None:
    error = entry["error"]
    outcome = "its macro is kept as it was" if kept else "it gets no macro"
    message = f'sqlml: model "{entry["name"]}" cannot be read from the store ({error.get("message")}); {outcome}'
    warnings.warn(message, UnreadableModelWarning, stacklevel=3)
    log.warning(message)


class UnreadableModelWarning(UserWarning):
    """A model the store cannot describe was skipped by `refresh` (its existing macro is kept)."""


def attach_catalog(con: duckdb.DuckDBPyConnection) -> None:
    """Attach the private catalog `ml` that holds the macros (once per connection).

    An in-memory catalog keeps the user's database file untouched; a read-only connection cannot
    start one, so it gets a throwaway file instead.
    """
    attached = con.execute(
        "SELECT count(*) FROM duckdb_databases() WHERE database_name = ?", [macros.CATALOG]
    ).fetchall()
    if attached[0][0]:
        return
    try:
        con.execute(f"ATTACH ':memory:' AS {macros.CATALOG}")
    except duckdb.Error:
        folder = tempfile.mkdtemp(prefix="sqlml-duckdb-")
        atexit.register(shutil.rmtree, folder, ignore_errors=True)
        path = str(Path(folder) / "ml.duckdb").replace("'", "''")
        con.execute(f"ATTACH '{path}' AS {macros.CATALOG} (READ_WRITE)")


def register(con: duckdb.DuckDBPyConnection, client: ModelClient | None = None) -> None:
    """Install the `ml` functions on `con`; `client` defaults to embedded mode over the default store.

    Calling it again on the same connection replaces the functions (for example with a new client).
    """
    client = client if client is not None else LocalClient()
    with _LOCK:
        previous = _REGISTERED.get(con)
        if previous is not None:
            previous.uninstall()
        functions = SqlFunctions(con, client)
        functions.install()
        _REGISTERED[con] = functions


def refresh(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Create typed macros for models published since `register` (and drop removed ones)."""
    with _LOCK:
        functions = _REGISTERED.get(con)
        if functions is None:
            raise Conflict(
                "sqlml functions are not registered on this connection", hint="call sqlml.udfs.register(con)"
            )
        return functions.refresh()


def client_of(con: duckdb.DuckDBPyConnection) -> ModelClient | None:
    """The client the `ml` functions on `con` call, if registered."""
    functions = _REGISTERED.get(con)
    return functions.client if functions else None
