"""The bridge serves without the libraries only training, DuckDB or the demo need.

A GPU machine (bench/gpu_check.sh) or a slim serving image has PyTorch and the web stack but may
lack XGBoost, pandas, DuckDB and the rest: models' libraries load with their runtimes, trainers'
libraries with their jobs. A subprocess refuses those imports and builds the app.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

NOT_FOR_SERVING = ["xgboost", "pandas", "duckdb", "sklearn", "torch", "transformers", "ray", "sqlglot", "psycopg"]

PROGRAM = """
import importlib.abc, sys
refused = set(sys.argv[1].split(","))

class Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in refused:
            raise ModuleNotFoundError(f"No module named {name!r} (refused by the test)", name=name)
        return None

sys.meta_path.insert(0, Refuse())
from sqlml.bridge.app import create_app
from sqlml.bridge.settings import BridgeSettings
import sqlml.commands.serve
app = create_app(BridgeSettings(store=sys.argv[2], auth=False))
print(sorted(app.openapi()["paths"]))
"""


def test_the_bridge_app_builds_without_training_or_model_libraries(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-c", PROGRAM, ",".join(NOT_FOR_SERVING), str(tmp_path / "store")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "/v1/models/{model}/predict" in result.stdout
