"""Small helpers the trainers share: a temporary artifact folder, progress bars (also as an XGBoost
callback), data fingerprints.

Trainers write their artifact into `artifact_dir()`, hand it to `Registry.publish` (which copies it
into the store atomically) and let the folder disappear. `data_fingerprint` goes into a manifest's
lineage so two versions trained on the same rows can be recognised as such.
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

if TYPE_CHECKING:
    import pandas as pd


@contextmanager
def artifact_dir(prefix: str = "sqlml-artifact-") -> Iterator[Path]:
    """A fresh temporary folder for one artifact, removed on exit (publish copies it first)."""
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        yield Path(tmp)


def progress_bar(enabled: bool = True) -> Progress:
    """A rich `Progress` for long training steps; disabled, it draws nothing but keeps the same API.

    Use it as a context manager: `with progress_bar(show) as bar: task = bar.add_task("fit", total=n)`.
    """
    return Progress(
        SpinnerColumn(),
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        disable=not enabled,
        transient=False,
    )


def xgboost_callback(after_round: Callable[[int], None]) -> Any:
    """An XGBoost training callback calling `after_round(rounds_done)` after each boosting round."""
    import xgboost as xgb  # here, so that importing this module does not import XGBoost

    class AfterRound(xgb.callback.TrainingCallback):
        def after_iteration(self, model: Any, epoch: int, evals_log: Any) -> bool:
            after_round(epoch + 1)
            return False

    return AfterRound()


def xgboost_progress(bar: Progress, task: TaskID) -> Any:
    """An XGBoost training callback that moves `task` of `bar` one step a boosting round."""
    return xgboost_callback(lambda done: bar.advance(task))


def data_fingerprint(df: pd.DataFrame) -> str:
    """sha256 over the column names, dtypes and row values (order matters), as hex."""
    import pandas as pd  # here: the bridge imports this module to serve, and serving needs no pandas

    digest = hashlib.sha256()
    digest.update(repr([(str(c), str(t)) for c, t in df.dtypes.items()]).encode())
    row_hashes = pd.util.hash_pandas_object(df, index=False).to_numpy()
    digest.update(row_hashes.tobytes())
    return digest.hexdigest()
