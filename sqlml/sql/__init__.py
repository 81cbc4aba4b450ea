"""The engine-neutral SQL layer: what every SQL surface of sqlml derives from.

- `types`: the signature column types and how PostgreSQL and DuckDB spell each.
- `reserved`: the names the `ml` schema defines itself, which no model function may take.
- `sqlstates`: the SQLSTATE of every bridge error code.
- `spec`: one `FunctionSpec` per model, computed from its signature: the PostgreSQL DDL of
  `ml.sync()`, the DuckDB macros and the rewriter's catalogue are all rendered from it.
- `catalog` and `rewrite`: the batching rewriter (PostgreSQL, Superset, `sqlml sql rewrite`).
- `postgres_connection`: `connect(dsn)`, a psycopg connection that rewrites as it executes.

`types`, `reserved`, `sqlstates` and `spec` use the standard library only: the PostgreSQL
extension's build concatenates them into its PL/Python helper (extension/build_helper.py), so the
database runs these very definitions rather than copies.
"""
