"""Transparent batching for PostgreSQL: rewrite per-row `ml.*` model calls into batched calls.

`rewrite(sql, catalog)` finds scalar model calls (`ml.sentiment(body)`, `ml.predict('m', f)`,
typed `ml.lead_score(...)`) in every SELECT of a query and returns an equivalent query that
scores each distinct input once through the extension's set-returning batch functions and joins
the outputs back. For one SELECT `S` with a call `f(k)` the shape is:

    WITH __ml_in_1 AS (SELECT DISTINCT CAST(k AS T) AS __ml_k1 FROM <S's FROM> WHERE <S's
                       deterministic filters> AND CAST(k AS T) IS NOT NULL),
         __ml_1 AS (SELECT u.__ml_k1, <output> AS __ml_value
                    FROM (SELECT array_agg(__ml_k1) AS __ml_k1 FROM __ml_in_1) AS x
                    CROSS JOIN LATERAL unnest(x.__ml_k1) WITH ORDINALITY AS u(__ml_k1, __ml_ord)
                    JOIN LATERAL ml.<batch>(x.__ml_k1) AS b ON b.ord = u.__ml_ord)
    SELECT ... __ml_1.__ml_value ... FROM <S's FROM> LEFT JOIN __ml_1 ON __ml_1.__ml_k1 = CAST(k AS T) ...

NULL inputs never reach the batch (the functions are STRICT: NULL in, NULL out, which the LEFT
JOIN reproduces); duplicates are scored once; row count, order, DISTINCT, aggregates and windows
are untouched because the join adds exactly one column per row. A SELECT with LIMIT whose order
and filters do not depend on a prediction is first cut down to its surviving rows (materialized),
and only those are scored.

Anything the rewriter cannot prove equivalent is left unchanged, with the reason in
`RewriteResult.reason` and a log line on `sqlml.rewrite`: conditional calls (CASE, COALESCE),
volatile or unknown functions where a second evaluation could differ, possibly correlated
subqueries, calls in JOIN conditions or over aggregates, ROLLUP/CUBE, recursive CTEs. The
rewrite is all or nothing per statement. Imports: sqlglot and the standard library only.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field

import sqlglot
from sqlglot import exp

from sqlml.sql.catalog import Catalog, ModelFunction
from sqlml.sql.sentiment import SENTIMENT_FIELDS

log = logging.getLogger("sqlml.rewrite")

DIALECTS = ("postgres", "duckdb")
PREFIX = "__ml_"
JSONB_PAIRS_PER_CALL = 50  # key/value pairs per jsonb_build_object call (100 arguments)

# Functions that give the same value when a query evaluates them twice. sqlglot parses the
# functions it knows into their own classes; everything else (exp.Anonymous: user functions,
# nextval, clock_timestamp, ...) is trusted only when listed here.
DETERMINISTIC_ANONYMOUS = frozenset(
    {
        "jsonb_build_object", "json_build_object", "to_jsonb", "to_json", "jsonb_build_array", "btrim",
        "concat_ws", "format", "md5", "split_part", "regexp_replace", "translate", "initcap", "left",
        "right", "replace", "char_length", "octet_length", "abs", "round", "trunc", "floor", "ceil",
        "jsonb_extract_path_text", "jsonb_typeof", "date_part", "date_trunc", "lpad", "rpad", "reverse",
    }
)  # fmt: skip
VOLATILE_CLASSES: tuple[type[exp.Expr], ...] = (exp.Rand, exp.Uuid)
# Nodes whose children are not always evaluated: a model call inside one may be a guard's target.
CONDITIONAL_CLASSES: tuple[type[exp.Expr], ...] = (exp.Case, exp.If)
# Positions of a SELECT where a replaced call may sit (its other clauses are refused).
# Clauses evaluated once per group in an aggregate query (a prediction there must be grouped).
GROUPED_CLAUSES = frozenset({"expressions", "having", "order", "distinct", "qualify"})
SUPPORTED_CLAUSES = frozenset({"expressions", "where", "group", "having", "order", "distinct", "qualify", "windows"})


@dataclass(frozen=True)
class RewriteResult:
    """The query to run (`sql`), whether it differs from the input, and why (or why not)."""

    sql: str
    changed: bool
    reason: str
    batches: int = 0


class Unsupported(Exception):
    """A reason to leave the whole statement unchanged."""


def rewrite(sql: str, catalog: Catalog, dialect: str = "postgres") -> RewriteResult:
    """Rewrite per-row model calls in `sql` into batched calls; the stable entry point.

    `dialect` is the engine the query runs on: `postgres` is rewritten; `duckdb` needs no rewrite
    (sqlml's DuckDB functions are vectorized already) and is returned unchanged.
    """
    if dialect not in DIALECTS:
        raise ValueError(f"unknown dialect {dialect!r}; expected one of {', '.join(DIALECTS)}")
    if dialect == "duckdb":
        return _unchanged(sql, "DuckDB's ml.* functions are vectorized: nothing to batch")
    try:
        statements = sqlglot.parse(sql, read="postgres")
    except sqlglot.errors.SqlglotError as error:
        return _unchanged(sql, f"could not parse the query ({str(error).splitlines()[0]})")
    if len(statements) != 1 or statements[0] is None:
        return _unchanged(sql, "only a single statement is rewritten")
    tree = statements[0]
    if not any(True for _ in find_model_calls(tree, catalog)):
        return _unchanged(sql, "no per-row model calls")
    if not isinstance(tree, exp.Query):
        return _unchanged(sql, "only queries (SELECT, UNION, ...) are rewritten")
    try:
        rewritten, batches = rewrite_tree(tree, catalog)
    except Unsupported as reason:
        return _unchanged(sql, str(reason))
    text = rewritten.sql(dialect="postgres")
    log.info("sqlml.rewrite: %d model call(s) batched", batches)
    return RewriteResult(text, True, f"{batches} per-row model call(s) batched", batches)


def _unchanged(sql: str, reason: str) -> RewriteResult:
    log.info("sqlml.rewrite: query left unchanged: %s", reason)
    return RewriteResult(sql, False, reason)


# --- finding calls -------------------------------------------------------------------------


def model_function(node: exp.Expr, catalog: Catalog) -> ModelFunction | None:
    """The catalog entry when `node` is a call `ml.<name>(...)` of a batchable function."""
    if not isinstance(node, exp.Dot) or not isinstance(node.expression, exp.Anonymous):
        return None
    schema = node.this
    if not isinstance(schema, exp.Identifier | exp.Column) or schema.name.lower() != catalog.schema:
        return None
    return catalog.lookup(node.expression.name)


def find_model_calls(tree: exp.Expr, catalog: Catalog) -> Iterator[exp.Dot]:
    for node in tree.find_all(exp.Dot):
        if model_function(node, catalog) is not None:
            yield node


def call_arguments(call: exp.Dot) -> list[exp.Expr]:
    return list(call.expression.expressions)


def enclosing_select(node: exp.Expr) -> exp.Select | None:
    parent = node.parent
    while parent is not None and not isinstance(parent, exp.Select):
        parent = parent.parent
    return parent


# --- the whole statement ---------------------------------------------------------------------


@dataclass
class Naming:
    """Fresh names for the CTEs of one statement (`__ml_1`, `__ml_in_1`, `__ml_rows_1`)."""

    counter: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    def next(self) -> int:
        return next(self.counter)


def rewrite_tree(tree: exp.Query, catalog: Catalog) -> tuple[exp.Query, int]:
    """Rewrite every SELECT holding model calls, innermost first; raises Unsupported."""
    tree = tree.copy()
    if any(tree.find_all(exp.Insert, exp.Update, exp.Delete, exp.Merge)):
        raise Unsupported("data-modifying statements are not rewritten")
    if any(p.this is None for p in tree.find_all(exp.Placeholder)):
        # the rewrite repeats and reorders filters: positional %s parameters would shift
        raise Unsupported("positional %s parameters (use %(name)s or $1 to allow the rewrite)")
    if any(select.args.get("locks") for select in tree.find_all(exp.Select)):
        raise Unsupported("SELECT ... FOR UPDATE/SHARE is not rewritten")
    selects: dict[int, exp.Select] = {}
    for call in find_model_calls(tree, catalog):
        select = enclosing_select(call)
        if select is None:
            raise Unsupported("model call outside a SELECT")
        selects[id(select)] = select
    naming, batches = Naming(), 0
    for select in sorted(selects.values(), key=_depth, reverse=True):
        is_root = select is tree
        new_select, count = rewrite_select(select, catalog, naming)
        batches += count
        if is_root:
            tree = _root(new_select)
    if any(True for _ in find_model_calls(tree, catalog)):
        raise Unsupported("a model call was left in place")  # never expected; refuse rather than half-rewrite
    return tree, batches


def _depth(node: exp.Expr) -> int:
    depth = 0
    while node.parent is not None:
        node, depth = node.parent, depth + 1
    return depth


def _root(node: exp.Expr) -> exp.Query:
    while node.parent is not None:
        node = node.parent
    assert isinstance(node, exp.Query)
    return node


# --- one SELECT ------------------------------------------------------------------------------


@dataclass
class Batch:
    """One distinct call `f(args)` of a SELECT, scored by one batch function call."""

    function: ModelFunction
    model: str | None  # the model literal of ml.predict, the model of a typed function
    keys: list[exp.Expr]  # the inputs, cast to the function's argument types
    name: str  # the CTE with the outputs (`__ml_3`)
    input_name: str  # the CTE with the distinct inputs (`__ml_in_3`)
    # A typed function that is not STRICT (its model takes NULL as a missing value): one key, the
    # jsonb object of the inputs, which is never NULL, so NULL inputs are scored too and match.
    by_object: bool = False

    @property
    def value(self) -> exp.Column:
        return exp.column(f"{PREFIX}value", table=self.name)


def rewrite_select(select: exp.Select, catalog: Catalog, naming: Naming) -> tuple[exp.Select, int]:
    """Replace the model calls of one SELECT by lookups into batch CTEs; returns the SELECT that
    now stands in its place and the number of batches."""
    calls = [c for c in find_model_calls(select, catalog) if enclosing_select(c) is select]
    check_select(select, calls, catalog)
    limited = select.args.get("limit") is not None or select.args.get("offset") is not None
    if limited and not needs_every_row(select, calls, catalog):
        # the per-row query scores only the rows LIMIT keeps: so must the rewrite
        select = push_limit_down(select, calls, catalog, naming)
        calls = [c for c in find_model_calls(select, catalog) if enclosing_select(c) is select]
    batches = plan_batches(select, calls, catalog, naming)
    sources = _from_clause(select)
    where = select.args.get("where")
    filters = _conjuncts(where.this) if where is not None else []
    copied_filters = [f for f in filters if is_repeatable(f, catalog) and not _has_call(f, catalog)]
    qualify_stars(select)
    ctes: list[exp.CTE] = []
    for batch in batches.values():
        ctes += batch_ctes(batch, sources, copied_filters)
    ungrouped = ungrouped_calls(select, calls, catalog)
    name_outputs(select, catalog)
    for call in calls:
        call.replace(batches[_call_key(call, catalog)].value.copy())
    for batch in batches.values():
        join_batch(select, batch)
    for key in ungrouped:
        select.args["group"].append("expressions", batches[key].value.copy())
    _convert_comma_joins(select)
    place_ctes(select, ctes)
    return select, len(batches)


def check_select(select: exp.Select, calls: list[exp.Dot], catalog: Catalog) -> None:
    """Raise Unsupported unless replacing `calls` in `select` provably keeps the query's meaning."""
    if select.args.get("from_") is None:
        raise Unsupported("model call in a SELECT without FROM (a single row: nothing to batch)")
    for call in calls:
        clause = _clause_of(call, select)
        if clause not in SUPPORTED_CLAUSES:
            raise Unsupported(f"model call in a {clause.upper().rstrip('_')} clause")
        if _is_conditional(call, select):
            raise Unsupported("model call evaluated conditionally (CASE/COALESCE branch)")
        for argument in call_arguments(call):
            for node in argument.walk():
                if isinstance(node, exp.AggFunc | exp.Window | exp.Subquery | exp.Query):
                    raise Unsupported("model call over an aggregate, window or subquery")
            if _has_call(argument, catalog):
                raise Unsupported("nested model calls")
            if not is_deterministic(argument, catalog):
                raise Unsupported("model call over a volatile or unknown function")
    for source in _from_clause(select):
        if not is_deterministic(source, catalog) or any(source.find_all(exp.TableSample)):
            raise Unsupported("FROM holds a volatile or unknown function or TABLESAMPLE")
        if not is_repeatable(source, catalog) or any(
            q.args.get("distinct") is not None and q.args["distinct"].args.get("on") is not None
            for q in source.find_all(exp.Select)
        ):
            raise Unsupported("FROM holds a subquery with LIMIT/OFFSET/DISTINCT ON (not repeatable)")
        if _has_call(source, catalog):
            raise Unsupported("model call in FROM or a JOIN condition")
    for join in select.args.get("joins") or []:
        natural = join.args.get("using") or (join.method or "").upper() == "NATURAL"
        if natural and any(isinstance(e, exp.Star) for e in select.expressions):
            raise Unsupported("SELECT * over a JOIN ... USING/NATURAL JOIN")
    if _in_recursive_cte(select):
        raise Unsupported("model call in a recursive CTE")
    if _is_correlatable(select) and not _all_columns_local(select):
        raise Unsupported("possibly correlated subquery (unqualified or outer column references)")
    if is_aggregated(select):
        outside = [c for c in calls if _clause_of(c, select) in GROUPED_CLAUSES and not _inside_aggregate(c, select)]
        group = select.args.get("group")
        if outside and (group is None or any(isinstance(g, exp.Rollup | exp.Cube | exp.GroupingSets)
                                             for g in group.expressions)):  # fmt: skip
            raise Unsupported("model call outside an aggregate in an aggregate query without a plain GROUP BY")


def plan_batches(select: exp.Select, calls: list[exp.Dot], catalog: Catalog, naming: Naming) -> dict[str, Batch]:
    """One Batch per distinct (function, arguments) of a SELECT, keyed by its canonical SQL."""
    batches: dict[str, Batch] = {}
    for call in calls:
        key = _call_key(call, catalog)
        if key in batches:
            continue
        function = model_function(call, catalog)
        assert function is not None
        arguments = row_form_arguments(call_arguments(call), function, select)
        if len(arguments) != len(function.inputs):
            raise Unsupported(f"ml.{function.name} called with {len(arguments)} argument(s)")
        model = function.model
        if function.kind == "predict":
            model_argument, features = arguments
            if not (isinstance(model_argument, exp.Literal) and model_argument.is_string):
                raise Unsupported("ml.predict with a model that is not a string literal")
            if (
                isinstance(features, exp.Tuple)
                or (isinstance(features, exp.Anonymous) and features.name.lower() == "row")
                or (isinstance(features, exp.Column) and features.name.lower() in _source_names(select))
            ):
                # the record overload (a whole row): CAST(... AS jsonb) would not accept it
                raise Unsupported("ml.predict over a whole row (write to_jsonb(t))")
            model, arguments = model_argument.this, [features]
        inputs = function.inputs[-len(arguments) :]
        keys: list[exp.Expr] = [
            exp.cast(a.copy(), exp.DataType.build(i.sql_type, dialect="postgres"))
            for a, i in zip(arguments, inputs, strict=True)
        ]
        by_object = function.kind == "typed" and not function.strict
        if by_object:
            keys = [inputs_object([i.name for i in inputs], keys)]
        number = naming.next()
        batches[key] = Batch(function, model, keys, f"{PREFIX}{number}", f"{PREFIX}in_{number}", by_object)
    return batches


def row_form_arguments(arguments: list[exp.Expr], function: ModelFunction, select: exp.Select) -> list[exp.Expr]:
    """The row form `ml.<model>(t)` over a source `t` of the SELECT, spelled as the typed call it
    stands for: `ml.<model>(t.<input 1>, t.<input 2>, ...)` (other columns of t are not inputs)."""
    if function.kind != "typed" or len(arguments) != 1:
        return arguments
    only = arguments[0]
    if not (isinstance(only, exp.Column) and not only.table and only.name.lower() in _source_names(select)):
        return arguments
    if len(function.inputs) == 1 and only.name.lower() == function.inputs[0].name.lower():
        return arguments  # a column named like the one input, not a row
    return [exp.column(i.name, table=only.name) for i in function.inputs]


def inputs_object(names: list[str], values: list[exp.Expr]) -> exp.Expr:
    """`jsonb_build_object('a', a, ...)`, concatenated per JSONB_PAIRS_PER_CALL pairs (PostgreSQL
    passes at most 100 arguments to a function)."""
    pairs: list[exp.Expr] = []
    for name, value in zip(names, values, strict=True):
        pairs += [exp.Literal.string(name), value]
    step = 2 * JSONB_PAIRS_PER_CALL
    objects: list[exp.Expr] = [
        exp.Anonymous(this="jsonb_build_object", expressions=pairs[start : start + step])
        for start in range(0, len(pairs), step)
    ]
    joined = objects[0]
    for more in objects[1:]:
        joined = exp.DPipe(this=joined, expression=more)
    return joined


def _call_key(call: exp.Dot, catalog: Catalog) -> str:
    return call.sql(dialect="postgres")


# --- the SQL pieces ----------------------------------------------------------------------------


def batch_ctes(batch: Batch, sources: list[exp.Expr], filters: list[exp.Expr]) -> list[exp.CTE]:
    """The two CTEs of a batch: its distinct non-NULL inputs, and the outputs keyed by them."""
    key_names = [f"{PREFIX}k{i}" for i in range(1, len(batch.keys) + 1)]
    inputs = exp.select(*[exp.alias_(k.copy(), n) for k, n in zip(batch.keys, key_names, strict=True)]).distinct()
    inputs = _with_sources(inputs, sources)
    conditions = [f.copy() for f in filters] + [
        exp.Not(this=exp.Is(this=k.copy(), expression=exp.Null())) for k in batch.keys
    ]
    inputs = inputs.where(exp.and_(*conditions), copy=False)
    return [
        exp.CTE(this=inputs, alias=exp.TableAlias(this=exp.to_identifier(batch.input_name))),
        # MATERIALIZED: the batch function must run exactly once, whatever join the planner picks
        exp.CTE(
            this=outputs_query(batch, key_names),
            alias=exp.TableAlias(this=exp.to_identifier(batch.name)),
            materialized=True,
        ),
    ]


def outputs_query(batch: Batch, key_names: list[str]) -> exp.Select:
    """`SELECT u.keys..., <value> FROM (arrays of the inputs) x, unnest(x) WITH ORDINALITY u
    JOIN <batch>(x.batch) b ON b.ord = u.ord`: every distinct input with its output."""
    function = batch.function
    arrays = [f"array_agg({n}) AS {n}" for n in key_names]
    if function.kind == "sentiment":
        batch_input, call = key_names[0], "ml.sentiment_batch(x.__ml_k1)"
    elif function.kind == "predict" or batch.by_object:
        batch_input = key_names[0]
        call = f"ml.predict_batch({exp.Literal.string(batch.model or '').sql()}, x.{batch_input})"
    else:
        pairs = [f"{exp.Literal.string(i.name).sql()}, {n}" for i, n in zip(function.inputs, key_names, strict=True)]
        # PostgreSQL passes at most 100 arguments to a function: wide models concatenate objects
        objects = " || ".join(
            f"jsonb_build_object({', '.join(pairs[start : start + JSONB_PAIRS_PER_CALL])})"
            for start in range(0, len(pairs), JSONB_PAIRS_PER_CALL)
        )
        arrays.append(f"array_agg({objects}) AS {PREFIX}batch")
        batch_input = f"{PREFIX}batch"
        call = f"ml.predict_batch({exp.Literal.string(batch.model or '').sql()}, x.{batch_input})"
    key_list = ", ".join(key_names)
    text = (
        f"SELECT {', '.join('u.' + n for n in key_names)}, {output_value_sql(function)} AS {PREFIX}value "
        f"FROM (SELECT {', '.join(arrays)} FROM {batch.input_name}) AS x "
        f"CROSS JOIN LATERAL unnest({', '.join('x.' + n for n in key_names)}) "
        f"WITH ORDINALITY AS u({key_list}, {PREFIX}ord) "
        f"JOIN LATERAL {call} AS b ON b.ord = u.{PREFIX}ord"
    )
    query = sqlglot.parse_one(text, read="postgres")
    assert isinstance(query, exp.Select)
    return query


def output_value_sql(function: ModelFunction) -> str:
    """The per-row function's return value rebuilt from the batch function's columns."""
    if function.kind == "sentiment":
        # ml.sentiment returns NULL (not a row of NULLs) when the model gives no label
        row = ", ".join(f"b.{name}" for name in SENTIMENT_FIELDS)
        return f"CASE WHEN b.label IS NULL THEN NULL ELSE CAST(ROW({row}) AS {function.result_type}) END"
    if function.kind == "predict":
        return "b.result"
    fields = [f"CAST(b.result ->> {exp.Literal.string(o.name).sql()} AS {o.sql_type})" for o in function.outputs]
    if function.result_type is None:
        return fields[0]
    return f"CAST(ROW({', '.join(fields)}) AS {function.result_type})"


def join_batch(select: exp.Select, batch: Batch) -> None:
    """`LEFT JOIN __ml_N ON __ml_N.__ml_k1 = <key1> AND ...`: at most one match, NULL inputs none."""
    condition = exp.and_(
        *[
            exp.EQ(this=exp.column(f"{PREFIX}k{i}", table=batch.name), expression=key.copy())
            for i, key in enumerate(batch.keys, start=1)
        ]
    )
    select.join(exp.to_table(batch.name), on=condition, join_type="LEFT", copy=False)


def ungrouped_calls(select: exp.Select, calls: list[exp.Dot], catalog: Catalog) -> set[str]:
    """The calls (by key) a grouped SELECT shows outside aggregates and outside any GROUP BY
    expression: valid only because their inputs are grouped, so their value must join the GROUP BY
    once it is a plain column (a function of the group keys: the groups stay the same)."""
    group = select.args.get("group")
    if group is None:
        return set()
    grouped = {_grouped_expression(select, g).sql(dialect="postgres") for g in group.expressions}
    keys = set()
    for call in calls:
        if _clause_of(call, select) not in GROUPED_CLAUSES or _inside_aggregate(call, select):
            continue
        covered = call.sql(dialect="postgres") in grouped or any(
            a.sql(dialect="postgres") in grouped for a in _ancestors(call, select) if a is not select
        )
        if not covered:
            keys.add(_call_key(call, catalog))
    return keys


def _grouped_expression(select: exp.Select, key: exp.Expr) -> exp.Expr:
    """What a GROUP BY item stands for: `GROUP BY 1` and `GROUP BY <output name>` name a select item."""
    items = select.expressions
    if isinstance(key, exp.Literal) and not key.is_string and 1 <= int(key.this) <= len(items):
        item: exp.Expr = items[int(key.this) - 1]
        return item.this if isinstance(item, exp.Alias) else item  # type: ignore[no-any-return]
    if isinstance(key, exp.Column) and not key.table:
        for item in items:
            if isinstance(item, exp.Alias) and item.alias == key.name:
                return item.this  # type: ignore[no-any-return]
    return key


def name_outputs(select: exp.Select, catalog: Catalog) -> None:
    """Keep the output column names PostgreSQL derived from the calls (`sentiment`, `lead_score`)."""
    for item in list(select.expressions):
        if isinstance(item, exp.Alias) or not _has_call(item, catalog):
            continue
        if isinstance(item, exp.Dot) and isinstance(item.expression, exp.Star):
            continue  # (ml.f(x)).* names its columns after the fields
        name = pg_column_name(item, catalog)
        placeholder = exp.Null()
        item.replace(placeholder)  # the call nodes inside `item` must stay the same objects
        placeholder.replace(exp.Alias(this=item, alias=exp.to_identifier(name, quoted=True)))


def pg_column_name(node: exp.Expr, catalog: Catalog) -> str:
    """The name PostgreSQL gives an unaliased select item (FigureColname), for the shapes around calls."""
    function = model_function(node, catalog)
    if function is not None:
        return function.name
    if isinstance(node, exp.Dot):
        return str(node.expression.name)
    if isinstance(node, exp.Paren):
        return pg_column_name(node.this, catalog)
    if isinstance(node, exp.Cast):
        inner = pg_column_name(node.this, catalog)
        return inner if inner != "?column?" else node.to.sql(dialect="postgres").lower()
    if isinstance(node, exp.Column):
        return node.name
    if isinstance(node, exp.Anonymous):
        return node.name.lower()
    if isinstance(node, exp.Case):
        return "case"
    if isinstance(node, exp.Window):
        return pg_column_name(node.this, catalog)
    if isinstance(node, exp.Func) and not isinstance(node, exp.Binary):
        return node.sql_name().lower()
    return "?column?"


def place_ctes(select: exp.Select, ctes: list[exp.CTE]) -> None:
    """Add the batch CTEs to the nearest WITH that sees everything `select` sees: before the CTE
    that holds `select`, or at the end of the WITH of the query `select` belongs to."""
    node: exp.Expr = select
    while True:
        parent = node.parent
        if isinstance(parent, exp.CTE):
            with_ = parent.parent
            assert isinstance(with_, exp.With)
            position = with_.expressions.index(parent)
            with_.set("expressions", with_.expressions[:position] + ctes + with_.expressions[position:])
            return
        if isinstance(node, exp.Query) and node.args.get("with_") is not None:
            with_ = node.args["with_"]
            with_.set("expressions", with_.expressions + ctes)
            return
        if parent is None or isinstance(parent, exp.With):
            break
        node = parent
    assert isinstance(node, exp.Query)
    node.set("with_", exp.With(expressions=ctes))


# --- LIMIT: score only the rows that survive it ---------------------------------------------------


def needs_every_row(select: exp.Select, calls: list[exp.Dot], catalog: Catalog) -> bool:
    """Whether the per-row query scores every row before LIMIT applies: a prediction in WHERE,
    GROUP BY, HAVING, ORDER BY (also through an output name or position), DISTINCT or an aggregate."""
    if is_aggregated(select) or select.args.get("distinct") is not None:
        return True
    if any(_clause_of(call, select) != "expressions" for call in calls):
        return True
    resolved = select.copy()
    _resolve_order_references(resolved)
    order = resolved.args.get("order")
    return order is not None and _has_call(order, catalog)


def push_limit_down(select: exp.Select, calls: list[exp.Dot], catalog: Catalog, naming: Naming) -> exp.Select:
    """Cut `SELECT items FROM ... ORDER BY o LIMIT n` (calls in items only) down to its rows first:

        WITH __ml_rows_N AS MATERIALIZED (SELECT q.*, row_number() OVER () AS __ml_n FROM
            (SELECT <call-free items>, <columns and inputs of the calls> FROM ... ORDER BY o LIMIT n) q)
        SELECT <items over __ml_rows_N> FROM __ml_rows_N AS r ORDER BY r.__ml_n

    The returned SELECT still holds the calls, now over at most n rows; the caller batches them.
    """
    if any(isinstance(item, exp.Star) or (isinstance(item, exp.Column) and isinstance(item.this, exp.Star))
           for item in select.expressions):  # fmt: skip
        raise Unsupported("LIMIT with SELECT * (every row would be scored)")
    rows_name = f"{PREFIX}rows_{naming.next()}"
    inner = select.copy()
    inner.set("with_", None)
    _resolve_order_references(inner)
    items: list[exp.Expr] = []
    outer_items: list[exp.Expr] = []
    hidden = itertools.count(1)
    for index, item in enumerate(inner.expressions, start=1):
        name = item.alias_or_name if isinstance(item, exp.Alias) else pg_column_name(item, catalog)
        body = item.this if isinstance(item, exp.Alias) else item
        if not _has_call(body, catalog):
            items.append(exp.alias_(body.copy(), f"{PREFIX}c{index}"))
            outer_items.append(exp.alias_(exp.column(f"{PREFIX}c{index}", table="r"), name, quoted=True))
            continue
        if any(body.find_all(exp.Subquery, exp.Query, exp.Window)):
            raise Unsupported("LIMIT with a subquery or window beside a prediction (every row would be scored)")
        outer = body.copy()
        for column in list(_columns_outside_calls(outer, catalog)):
            hidden_name = f"{PREFIX}v{next(hidden)}"
            items.append(exp.alias_(column.copy(), hidden_name))
            column.replace(exp.column(hidden_name, table="r"))
        for call in [c for c in outer.find_all(exp.Dot) if model_function(c, catalog) is not None]:
            arguments = call_arguments(call)
            for argument in arguments:
                if isinstance(argument, exp.Literal):
                    continue
                hidden_name = f"{PREFIX}v{next(hidden)}"
                items.append(exp.alias_(argument.copy(), hidden_name))
                argument.replace(exp.column(hidden_name, table="r"))
        outer_items.append(exp.alias_(outer, name, quoted=True))
    inner.set("expressions", items)
    ordered = inner.args.get("order") is not None
    rows_query: exp.Select = inner
    if ordered:
        rows_query = exp.select(exp.Star(), exp.alias_(exp.Window(this=exp.RowNumber()), f"{PREFIX}n")).from_(
            exp.alias_(exp.Subquery(this=inner), "q", table=True)
        )
        # The Star must be q.*, not *: it is the only source, so both read the same.
    rows_cte = exp.CTE(this=rows_query, alias=exp.TableAlias(this=exp.to_identifier(rows_name)), materialized=True)
    outer_select = exp.select(*outer_items).from_(exp.alias_(exp.to_table(rows_name), "r", table=True))
    if ordered:
        outer_select = outer_select.order_by(exp.column(f"{PREFIX}n", table="r"))
    if select.args.get("with_") is not None:
        outer_select.set("with_", select.args["with_"])
    select.replace(outer_select)
    place_ctes(outer_select, [rows_cte])
    return outer_select


def _resolve_order_references(select: exp.Select) -> None:
    """ORDER BY 2 or ORDER BY <output name> become the item's expression, so items can be renamed."""
    order = select.args.get("order")
    if order is None:
        return
    by_name = {item.alias: item.this for item in select.expressions if isinstance(item, exp.Alias)}
    for ordered in order.expressions:
        key = ordered.this
        if isinstance(key, exp.Literal) and not key.is_string:
            position = int(key.this)
            if not 1 <= position <= len(select.expressions):
                raise Unsupported("ORDER BY position out of range")
            item = select.expressions[position - 1]
            key.replace((item.this if isinstance(item, exp.Alias) else item).copy())
        elif isinstance(key, exp.Column) and not key.table and key.name in by_name:
            key.replace(by_name[key.name].copy())


def _columns_outside_calls(node: exp.Expr, catalog: Catalog) -> Iterator[exp.Column]:
    for column in list(node.find_all(exp.Column)):
        if not any(model_function(a, catalog) is not None for a in _ancestors(column, node)):
            yield column


# --- helpers ----------------------------------------------------------------------------------


def _ancestors(node: exp.Expr, stop: exp.Expr) -> Iterator[exp.Expr]:
    parent = node.parent
    while parent is not None:
        yield parent
        if parent is stop:
            return
        parent = parent.parent


def _clause_of(node: exp.Expr, select: exp.Select) -> str:
    """Which argument of `select` holds `node` (expressions, where, joins, ...)."""
    child = node
    while child.parent is not select:
        assert child.parent is not None
        child = child.parent
    return str(child.arg_key)


def _is_conditional(call: exp.Expr, select: exp.Select) -> bool:
    child: exp.Expr = call
    for parent in _ancestors(call, select):
        if isinstance(parent, CONDITIONAL_CLASSES):
            return True
        if isinstance(parent, exp.Coalesce) and child is not parent.this:
            return True
        child = parent
    return False


def _inside_aggregate(node: exp.Expr, select: exp.Select) -> bool:
    """Inside an aggregate's arguments or FILTER (evaluated per input row, not per group)."""
    return any(
        (isinstance(a, exp.AggFunc) and not isinstance(a.parent, exp.Window)) or isinstance(a, exp.Filter)
        for a in _ancestors(node, select)
    )


def is_aggregated(select: exp.Select) -> bool:
    """GROUP BY, HAVING or an aggregate (not a window) in the SELECT's own clauses."""
    if select.args.get("group") is not None or select.args.get("having") is not None:
        return True
    for key in ("expressions", "order"):
        for node in select.args.get(key) or []:
            for agg in node.find_all(exp.AggFunc):
                if not isinstance(agg.parent, exp.Window) and enclosing_select(agg) is select:
                    return True
    return False


def is_deterministic(node: exp.Expr, catalog: Catalog) -> bool:
    """No function that may give another value when evaluated again (volatile or unknown)."""
    for function in node.find_all(exp.Func):
        if isinstance(function, VOLATILE_CLASSES):
            return False
        if isinstance(function, exp.Anonymous):
            parent = function.parent
            if isinstance(parent, exp.Dot) and model_function(parent, catalog) is not None:
                continue
            if function.name.lower() not in DETERMINISTIC_ANONYMOUS:
                return False
    return True


def is_repeatable(node: exp.Expr, catalog: Catalog) -> bool:
    """Evaluating `node` twice in one statement gives the same rows: deterministic, and no
    LIMIT/OFFSET/TABLESAMPLE subquery whose row choice is up to the engine."""
    return is_deterministic(node, catalog) and not any(node.find_all(exp.Limit, exp.Offset, exp.Fetch, exp.TableSample))


def _source_names(select: exp.Select) -> set[str]:
    return {
        s.alias_or_name.lower() for source in _from_clause(select) for s in source.find_all(exp.Table, exp.Subquery)
    }


def qualify_stars(select: exp.Select) -> None:
    """`SELECT *` would also show the batch columns once they are joined: spell it `a.*, b.*`."""
    if not any(isinstance(item, exp.Star) for item in select.expressions):
        return
    names = []
    for source in _from_clause(select):
        node = source.this
        if isinstance(node, exp.Lateral | exp.Unnest) or not isinstance(node, exp.Table | exp.Subquery):
            raise Unsupported("SELECT * over a source without a name")
        name = node.alias_or_name
        if not name:
            raise Unsupported("SELECT * over a source without a name")
        names.append(name)
    items: list[exp.Expr] = []
    for item in select.expressions:
        if isinstance(item, exp.Star):
            items += [exp.Column(this=exp.Star(), table=exp.to_identifier(n)) for n in names]
        else:
            items.append(item)
    select.set("expressions", items)


def _has_call(node: exp.Expr, catalog: Catalog) -> bool:
    return any(model_function(d, catalog) is not None for d in node.find_all(exp.Dot))


def _conjuncts(node: exp.Expr) -> list[exp.Expr]:
    return list(node.flatten()) if isinstance(node, exp.And) else [node]


def _from_clause(select: exp.Select) -> list[exp.Expr]:
    """The FROM source and every JOIN of a SELECT, in order."""
    return [select.args["from_"], *(select.args.get("joins") or [])]


def _with_sources(query: exp.Select, sources: list[exp.Expr]) -> exp.Select:
    query.set("from_", sources[0].copy())
    if len(sources) > 1:
        query.set("joins", [j.copy() for j in sources[1:]])
    return query


def _convert_comma_joins(select: exp.Select) -> None:
    """`FROM a, b LEFT JOIN __ml_1 ON ...` would bind the new join to b alone: make the commas
    CROSS JOINs (the same rows) so our joins see every source."""
    for join in select.args.get("joins") or []:
        if (
            not join.args.get("on")
            and not join.args.get("using")
            and not join.kind
            and not join.side
            and not join.method
        ):
            join.set("kind", "CROSS")


def _in_recursive_cte(select: exp.Select) -> bool:
    return any(
        isinstance(a, exp.CTE) and isinstance(a.parent, exp.With) and bool(a.parent.args.get("recursive"))
        for a in _ancestors(select, _root(select))
    )


def _is_correlatable(select: exp.Select) -> bool:
    """A SELECT inside an expression (scalar, IN, EXISTS subquery) or LATERAL may read outer columns."""
    child: exp.Expr = select
    for parent in _ancestors(select, _root(select)):
        if isinstance(parent, exp.Lateral) or (isinstance(parent, exp.Subquery) and parent.args.get("lateral")):
            return True
        if isinstance(parent, exp.Select) and child.arg_key not in ("from_", "joins", "with_"):
            return True
        child = parent
    return False


def _all_columns_local(select: exp.Select) -> bool:
    """Every column is qualified by a source named inside `select` (so none can be an outer one)."""
    names: set[str] = set()
    for source in select.find_all(exp.Table, exp.Subquery, exp.Lateral):
        alias = source.alias_or_name
        if alias:
            names.add(alias.lower())
    for cte in select.find_all(exp.CTE):
        names.add(cte.alias.lower())
    return all(c.table and c.table.lower() in names for c in select.find_all(exp.Column))
