"""The DDP training function outside Ray: two processes under torchrun (gloo on the CPU)."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

from sqlml.bridge.jobs.ddp_sentiment import auc

ROOT = Path(__file__).resolve().parents[2]


def test_auc_matches_ranks_with_ties() -> None:
    assert auc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == 0.75
    assert auc([0.5, 0.5], [0, 1]) == 0.5


def test_the_same_training_function_runs_under_torchrun_with_two_processes(tiny_bert: Path, tmp_path: Path) -> None:
    data = tmp_path / "reviews.csv"
    with data.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["body", "great", "split"])
        for i in range(80):
            great = i % 2 == 0
            writer.writerow(
                ["lovely tea great" if great else "stale awful box", great, "test" if i % 5 == 0 else "train"]
            )
    output = tmp_path / "model"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         "-m", "sqlml.bridge.jobs.ddp_sentiment", "--data", str(data), "--base-model", str(tiny_bert),
         "--epochs", "2", "--batch-size", "8", "--max-length", "16", "--learning-rate", "0.001", "--cpu",
         "--output", str(output)],
        capture_output=True, text=True, timeout=300, env=env, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(next(line for line in result.stdout.splitlines() if line.startswith("{")))
    assert summary["world_size"] == 2 and summary["train_rows"] == 64 and summary["test_rows"] == 16
    assert summary["samples_per_second"] > 0 and 0.0 <= summary["test_auc"] <= 1.0
    assert "samples/s" in result.stdout
    assert (output / "config.json").exists() and (output / "tokenizer.json").exists()
