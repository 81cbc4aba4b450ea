"""The SQL text of the `ml` macros, generated from model signatures (pure functions, no connection).

DuckDB cannot put Python UDFs in a schema, but macros can live anywhere: every public name
(`ml.sentiment`, `ml.predict`, `ml.lead_score`, ...) is a macro in the attached catalog `ml` that
delegates to a hidden, vectorized UDF named `__sqlml_*`. Typed per-model macros check each
argument's type at bind time so that a wrong type names the column instead of failing deep in
DuckDB's function binder.
"""

from __future__ import annotations

from sqlml.sql.sentiment import LANGUAGE_ERROR, SENTIMENT_LANGUAGES, SENTIMENT_MODEL
from sqlml.sql.spec import FORECAST_ARGUMENTS, FunctionSpec, SpecColumn
from sqlml.udfs.type_map import ACCEPTED, quote_ident, quote_literal

CATALOG = "ml"
UDF_PREFIX = "__sqlml_"
PREDICT_JSON_UDF = f"{UDF_PREFIX}predict"
EXPLAIN_UDF = f"{UDF_PREFIX}explain"
FORECAST_UDF = f"{UDF_PREFIX}forecast"
MODELS_UDF = f"{UDF_PREFIX}models"
EVALUATE_UDF = f"{UDF_PREFIX}evaluate"
DEFAULT_QUANTILES = ("p10", "p50", "p90")
DEFAULT_HORIZON = 48
DEFAULT_TOP_K = 5
TRAINING_MACROS = ("train", "job", "jobs", "sync")  # training_macros() below

GENERIC_MACROS = ("predict", "explain", "forecast", "models", "evaluate", *TRAINING_MACROS)
EVALUATION_SQL_TYPE = "STRUCT(metric VARCHAR, value DOUBLE)[]"
CONTRIBUTIONS_SQL_TYPE = "STRUCT(feature VARCHAR, value DOUBLE, contribution DOUBLE)[]"
FORECAST_SQL_TYPE = "STRUCT(series VARCHAR, ts TIMESTAMP, quantile VARCHAR, value DOUBLE)[]"
MODELS_SQL_TYPE = (
    "STRUCT(name VARCHAR, version BIGINT, aliases MAP(VARCHAR, BIGINT), task VARCHAR, "
    "metrics MAP(VARCHAR, DOUBLE), loaded BOOLEAN, runtime VARCHAR, signature VARCHAR)[]"
)


def predict_udf_name(model: str) -> str:
    return f"{UDF_PREFIX}predict_{model}"


def qualified(name: str) -> str:
    return f"{CATALOG}.main.{quote_ident(name)}"


def query_rows_json(parameter: str) -> str:
    """The rows of the query text in macro parameter `parameter` as one JSON list, NULL when the
    parameter is NULL (query() needs a constant, so a NULL parameter reads an empty query)."""
    return (
        f"CASE WHEN {parameter} IS NULL THEN NULL ELSE coalesce((SELECT to_json(list(r)) FROM "
        f"query(coalesce({parameter}, 'SELECT 1 WHERE false')) AS r), '[]') END"
    )


def forecast_parameters() -> str:
    """The forecast arguments after the model, with their defaults (future / history: query texts
    whose rows, covariate values and fresh observations, go along)."""
    defaults = {
        "series": "NULL",
        "horizon": str(DEFAULT_HORIZON),
        "quantiles": "[" + ", ".join(quote_literal(q) for q in DEFAULT_QUANTILES) + "]",
        "future": "NULL",
        "history": "NULL",
    }
    return ", ".join(f"{name} := {defaults[name]}" for name in FORECAST_ARGUMENTS)


def forecast_call(model: str) -> str:
    """The table macro body of `ml.forecast` and of the per-model forecast macros."""
    return (
        f"SELECT unnest({FORECAST_UDF}({model}, series, horizon, quantiles, "
        f"{query_rows_json('future')}, {query_rows_json('history')}), recursive := true)"
    )


def generic_macros() -> list[str]:
    """`ml.predict`, `ml.explain`, `ml.forecast`, `ml.models` and `ml.evaluate`, which work for any model."""
    return [
        f'CREATE OR REPLACE MACRO {qualified("predict")}(model, "row", strict := false) AS '
        f'{PREDICT_JSON_UDF}(model, to_json("row"), strict)::JSON',
        f'CREATE OR REPLACE MACRO {qualified("explain")}(model, "row", top_k := {DEFAULT_TOP_K}, strict := false) AS '
        f'{EXPLAIN_UDF}(model, to_json("row"), top_k, strict)',
        f"CREATE OR REPLACE MACRO {qualified('forecast')}(model, {forecast_parameters()}) AS TABLE "
        f"{forecast_call('model')}",
        f"CREATE OR REPLACE MACRO {qualified('models')}() AS TABLE SELECT unnest({MODELS_UDF}(), recursive := true)",
        # query() runs the evaluation query text; its rows reach the UDF as one JSON list (an empty
        # list when there are none, which is the same error as on PostgreSQL, not silently no rows)
        f"CREATE OR REPLACE MACRO {qualified('evaluate')}(model, query_text) AS TABLE "
        f"SELECT unnest({EVALUATE_UDF}(model, coalesce((SELECT to_json(list(r)) FROM query(query_text) AS r), "
        "'[]'::JSON)), recursive := true)",
    ]


def model_macro(spec: FunctionSpec) -> str:
    """The typed macro named after the model (sqlml/sql/spec.py decides which models have one).

    Tabular models get `ml.<model>(col1, col2, ...)` and, with two or more inputs, a struct form
    `ml.<model>(row)` that picks the input fields out of any row (extra fields are ignored).
    Forecast models get a table macro `ml.<model>(series := NULL, horizon := 48, quantiles := [...],
    future := NULL, history := NULL)`.
    """
    model = spec.model
    if spec.is_table:
        return (
            f"CREATE OR REPLACE MACRO {qualified(model)}({forecast_parameters()}) AS TABLE "
            f"{forecast_call(quote_literal(model))}"
        )
    inputs = spec.inputs
    udf = predict_udf_name(model)
    params = ", ".join(quote_ident(c.name) for c in inputs)
    by_column = ", ".join(checked_argument(quote_ident(c.name), c, model) for c in inputs)
    overloads = [f"({params}) AS {udf}({by_column})"]
    if len(inputs) > 1:
        by_field = ", ".join(
            checked_argument(f'struct_extract("row", {quote_literal(c.name)})', c, model) for c in inputs
        )
        overloads.append(f'("row") AS {udf}({by_field})')
    if model == SENTIMENT_MODEL and len(inputs) == 1:
        overloads.append(f"({params}, language) AS {language_checked(f'{udf}({by_column})')}")
    return f"CREATE OR REPLACE MACRO {qualified(model)}" + ", ".join(overloads)


def language_checked(call: str) -> str:
    """`ml.sentiment(text, language)`, Aurora's `detect_sentiment(text, 'en')` form: the call for a
    language the model reads (sqlml/sql/sentiment.py), else the same error as PostgreSQL's."""
    codes = ", ".join(quote_literal(code) for code in SENTIMENT_LANGUAGES)
    before, after = LANGUAGE_ERROR.split("{language}")
    message = f"{quote_literal(before)} || language || {quote_literal(after)}"
    return f"CASE WHEN lower(trim(language)) IN ({codes}) THEN {call} ELSE error({message}) END"


def checked_argument(expression: str, column: SpecColumn, model: str) -> str:
    """`expression` cast to the column's type, or a named error when its type does not fit.

    `typeof()` is folded at bind time, so for a fitting type the CASE disappears from the plan.
    """
    target = column.duckdb_type
    kind = f"typeof({expression})"
    accepted = ", ".join(quote_literal(t) for t in ACCEPTED[column.type])
    condition = f"{kind} IN ({accepted})"
    if column.type == "double":
        condition += f" OR {kind} LIKE 'DECIMAL%'"
    message = quote_literal(f'column "{column.name}" of model "{model}" must be {target}, got ')
    hint = quote_literal(f" (hint: cast it, e.g. CAST({column.name} AS {target}))")
    return f"CAST(CASE WHEN {condition} THEN {expression} ELSE error({message} || {kind} || {hint}) END AS {target})"


def drop_model_macros(model: str) -> list[str]:
    return [f"DROP MACRO IF EXISTS {qualified(model)}", f"DROP MACRO TABLE IF EXISTS {qualified(model)}"]


# -- training: ml.train, ml.job, ml.jobs, ml.sync (udfs/training.py) ---------------------------------

TRAIN_UDF = f"{UDF_PREFIX}train"
JOB_UDF = f"{UDF_PREFIX}job"
JOBS_UDF = f"{UDF_PREFIX}jobs"
SYNC_UDF = f"{UDF_PREFIX}sync"
JOB_SQL_TYPE = (
    "STRUCT(id VARCHAR, model VARCHAR, task VARCHAR, backend VARCHAR, state VARCHAR, progress DOUBLE, "
    "message VARCHAR, version INTEGER, promoted BOOLEAN, metrics MAP(VARCHAR, DOUBLE), error VARCHAR, "
    "created_at TIMESTAMP WITH TIME ZONE, finished_at TIMESTAMP WITH TIME ZONE)[]"
)
SYNC_SQL_TYPE = "STRUCT(model VARCHAR, function VARCHAR, action VARCHAR)[]"


def training_macros() -> list[str]:
    """PostgreSQL's training functions, with its parameter names and defaults: `ml.train(...)` (the job
    id), `ml.job(id)` and `ml.jobs()` (tables of jobs), `ml.sync()` (a table of the typed macros).

    `ml.train` hands its UDF the caller's current catalog and schema, which the cursor that reads the
    query does not inherit."""
    return [
        f"CREATE OR REPLACE MACRO {qualified('train')}(model, task, query, target, params := '{{}}', "
        "backend := 'local', promote := 'if_better') AS "
        f"{TRAIN_UDF}(model, task, query, target, CAST(params AS VARCHAR), backend, promote, "
        "current_database(), current_schema())",
        f"CREATE OR REPLACE MACRO {qualified('job')}(id) AS TABLE SELECT unnest({JOB_UDF}(id), recursive := true)",
        f"CREATE OR REPLACE MACRO {qualified('jobs')}() AS TABLE SELECT unnest({JOBS_UDF}(), recursive := true)",
        f"CREATE OR REPLACE MACRO {qualified('sync')}() AS TABLE SELECT unnest({SYNC_UDF}(), recursive := true)",
    ]
