"""The in-database half of the sqlml PostgreSQL extension: every PL/Python function delegates here.

PL/Python runs the server's own Python (3.11, standard library only), so these modules use nothing
but the standard library. extension/build_helper.py concatenates them, in the order of its
`HELPER` list and after the rules shared with the Python package (sqlml/naming.py, sqlml/sql/), into
one module, `sqlml_pg.py`, which the extension's build embeds in `sqlml--<version>.sql`;
`ml._load_helper()` executes it once per session into `GD["sqlml"]`, and each PL/Python body is a
one-line call into it with the `plpy` object, which keeps the helper testable outside PostgreSQL
with a fake `plpy` and a stub bridge. This file is not part of the build: it makes the folder a
package, so that mypy follows the imports between the modules.

What the helper does: reads the `sqlml.*` settings, keeps one kept-alive HTTP connection per bridge
(with TCP_NODELAY: a per-row request then costs ~0.2 ms instead of ~44 ms), sends rows in batches of
`sqlml.batch_size`, and turns every failure into a SQL error with an SQLSTATE, a message and a
HINT — or, with `sqlml.on_error = 'null'`, into NULL outputs plus a WARNING, narrowing a rejected
batch down to the offending rows so that one bad row does not cost the other ten million.

The modules, each importing only from those before it:

- `plpy_api`: the parts of PL/Python's `plpy` the helper uses (a Protocol), prepared plans.
- `sql_errors`: `BridgeError` and how it becomes a SQL error or a WARNING.
- `model_names`: model, alias and plain names, checked before they reach a URL or SQL.
- `settings`: the `sqlml.*` settings and the bridge token of the login role.
- `bridge_http`: the HTTP client of the bridge.
- `sql_function`: the decorators that give every SQL function its settings, bridge and errors.
- `query_text`: one SELECT, checked without a parser.
- `row_scoring`, `batch_scoring`, `query_scoring`, `explain_forecast`: the scoring functions.
- `function_ddl`, `sync`: the typed per-model functions of `ml.sync()`.
- `lifecycle`, `tokens`, `training`: models, deploys, tokens and grants, `ml.train`.
"""
