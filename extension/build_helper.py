"""Build the PL/Python helper: one standard-library-only module, `sqlml_pg.py`.

PL/Python runs one source text per session (`ml._load_helper()`), so the helper is shipped as a
single file; it is written as small modules and concatenated here, in the order of `MODULES`:
first the rules the whole project shares (the name rule, the type map, the reserved names, the
SQLSTATE map, the function spec), read from the Python package itself so the database runs the
same definitions as the bridge and DuckDB, then the helper's own modules (extension/helper/).

The build removes the imports between these modules (`from sqlml.sql.spec import FunctionSpec`,
`from .settings import Settings`) and checks what that is allowed to mean: every name imported so
is defined, under the same name, by the module it is imported from, and that module comes earlier
in the list; no top-level name is defined twice; nothing imports a module outside the standard
library; every module in extension/helper/ is in the list (its `__init__.py`, which only makes the
folder a package for mypy, holds no code); the text compiles.

    python3 build_helper.py OUT       (the extension's Makefile does this)
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

SHARED = [
    "sqlml/naming.py",
    "sqlml/sql/types.py",
    "sqlml/sql/sentiment.py",
    "sqlml/sql/reserved.py",
    "sqlml/sql/sqlstates.py",
    "sqlml/sql/spec.py",
    "sqlml/sql/evaluation_rows.py",
]
# Each module imports only from those before it (the build checks it).
HELPER = [
    f"extension/helper/{name}.py"
    for name in (
        "plpy_api",  # the Protocol of PL/Python's plpy, prepared plans
        "sql_errors",  # BridgeError into SQL errors and WARNINGs
        "model_names",  # model, alias and plain names
        "settings",  # sqlml.* settings, the role's bridge token
        "bridge_http",  # the bridge's HTTP client
        "sql_function",  # the decorators of the SQL-facing functions
        "query_text",  # one SELECT, checked without a parser
        "caller_rows",  # the caller's rows as JSON, for the invoker / definer pairs
        "row_scoring",  # ml.predict, ml.sentiment, the typed functions
        "batch_scoring",  # ml.predict_batch, ml.sentiment_batch, ml._predict_rows
        "query_scoring",  # ml.predict_query
        "explain_forecast",  # ml.explain, ml.forecast
        "evaluate",  # ml.evaluate
        "function_ddl",  # the DDL of the typed functions
        "sync",  # ml.sync()
        "lifecycle",  # ml.models, ml.health, ml.deploy, ml.rollback
        "tokens",  # ml.set_token, ml.grant, ml.revoke
        "training",  # ml.train and its upload steps
    )
]
# Makes extension/helper/ a package for mypy; not part of the build, so it must hold no code.
PACKAGE_INIT = "extension/helper/__init__.py"
MODULES = SHARED + HELPER

# The dollar-quote tag the extension script embeds the helper in must not occur in it.
FORBIDDEN_TEXT = ("sqlml_helper$", "sqlml_function$")
STDLIB = frozenset(sys.stdlib_module_names)


class BuildError(Exception):
    pass


def _top_level_names(tree: ast.Module) -> set[str]:
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    return names


def _is_internal(node: ast.ImportFrom) -> bool:
    return node.level > 0 or (node.module or "").split(".")[0] == "sqlml"


def _imported_module(relative: str, node: ast.ImportFrom) -> str:
    """The file an internal import reads from: `from .settings import X` in extension/helper/x.py is
    extension/helper/settings.py, `from sqlml.sql.spec import X` is sqlml/sql/spec.py."""
    if not node.module:
        raise BuildError(f"{relative}:{node.lineno}: import names from a module (from .x import Name), not modules")
    folder = Path(relative).parents[node.level - 1] if node.level else Path()
    return (folder / (node.module.replace(".", "/") + ".py")).as_posix()


def _check_package(root: Path, modules: list[str]) -> None:
    """Every helper module is built (one left out would leave its SQL functions undefined at run
    time), and the package's __init__.py, which is not, holds nothing but its docstring."""
    on_disk = {path.relative_to(root).as_posix() for path in (root / PACKAGE_INIT).parent.glob("*.py")}
    left_out = sorted(on_disk - set(modules) - {PACKAGE_INIT})
    if left_out:
        raise BuildError(f"{', '.join(left_out)}: not in build_helper.HELPER")
    if PACKAGE_INIT in on_disk:
        init = ast.parse((root / PACKAGE_INIT).read_text(), PACKAGE_INIT)
        if ast.get_docstring(init) is None or len(init.body) > 1:
            raise BuildError(f"{PACKAGE_INIT}: must hold only a docstring (it is not part of the helper)")


def build(root: Path = ROOT, modules: list[str] = MODULES) -> str:
    """The helper's source text."""
    _check_package(root, modules)
    defined: dict[str, str] = {}
    defines: dict[str, set[str]] = {}
    header = f'"""The sqlml PL/Python helper, generated by extension/build_helper.py from {", ".join(modules)}."""\n\n'
    parts = [header, "from __future__ import annotations\n"]
    for relative in modules:
        text = (root / relative).read_text()
        tree = ast.parse(text, relative)
        drop: set[int] = set()
        for node in tree.body:
            if isinstance(node, ast.Import):
                outside = [a.name for a in node.names if a.name.split(".")[0] not in STDLIB]
                if outside:
                    raise BuildError(f"{relative}:{node.lineno}: imports {outside}, not in the standard library")
            elif isinstance(node, ast.ImportFrom):
                if node.module == "__future__":
                    drop.update(range(node.lineno, (node.end_lineno or node.lineno) + 1))
                elif _is_internal(node):
                    source = _imported_module(relative, node)
                    if source not in defines:
                        raise BuildError(f"{relative}:{node.lineno}: imports {source}, which is not listed before it")
                    for alias in node.names:
                        if alias.asname not in (None, alias.name) or alias.name not in defines[source]:
                            raise BuildError(
                                f"{relative}:{node.lineno}: `{alias.name}` must be defined by {source}, "
                                "and imported under its own name"
                            )
                    drop.update(range(node.lineno, (node.end_lineno or node.lineno) + 1))
                elif (node.module or "").split(".")[0] not in STDLIB:
                    raise BuildError(f"{relative}:{node.lineno}: imports {node.module}, not in the standard library")
        defines[relative] = _top_level_names(tree)
        for name in defines[relative]:
            if name in defined:
                raise BuildError(f"{relative}: `{name}` is also defined in {defined[name]}")
            defined[name] = relative
        kept = [line for number, line in enumerate(text.splitlines(), 1) if number not in drop]
        parts.append(f"\n# ---- {relative} " + "-" * max(0, 94 - len(relative)) + "\n" + "\n".join(kept) + "\n")
    source = "".join(parts)
    for tag in FORBIDDEN_TEXT:
        if tag in source:
            raise BuildError(f"the helper must not contain the dollar-quote tag {tag!r}")
    compile(source, "sqlml_pg.py", "exec")
    return source


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    try:
        source = build()
    except (BuildError, SyntaxError) as exc:
        print(f"build_helper: {exc}", file=sys.stderr)
        return 1
    Path(argv[1]).write_text(source)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
