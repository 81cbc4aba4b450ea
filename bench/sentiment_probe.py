"""Label accuracy on the plain-sentence probe set (sqlml/data/feedback_probe.csv), before and after.

Reads the probabilities bench/sentiment_recipes.py saved (`--out/probabilities.npz`: validation,
test, probe texts and probe segments per option) and scores, per option:

- `before`: today's rule, three labels from raw P(great) with the neutral band where each side
  reaches 85 % precision on the validation slice (a probe `mixed` sentence can never be right);
- `after, gamma=g`: calibrated P(great) (Platt on validation for single models; the stacked
  options are calibrated already) through `sentiment_labels.four_scores`, mixed from the segments
  (scored by the encoder alone, Platt-scaled, as the runtime's `segment_calibration` does).

    PYTHONPATH=. python bench/sentiment_probe.py /tmp/sentiment-bench/probabilities.npz
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression

from sqlml.bridge.runtimes.sentiment_labels import LABELS, four_scores, logit, mixed_strength, segments

PROBE = Path(__file__).resolve().parent.parent / "sqlml" / "data" / "feedback_probe.csv"


def old_band(p: np.ndarray, great: np.ndarray, target: float = 0.85) -> tuple[float, float]:
    """The previous trainer's `pick_thresholds` (negative_below, positive_above)."""
    positive_above = negative_below = 0.5
    candidates = np.unique(p)
    for t in candidates:
        if great[p >= t].mean() >= target:
            positive_above = float(t)
            break
    for t in candidates[::-1]:
        if (~great[p <= t]).mean() >= target:
            negative_below = float(t)
            break
    if negative_below > positive_above:
        negative_below = positive_above = (negative_below + positive_above) / 2
    return negative_below, positive_above


def main(path: str) -> None:
    saved = np.load(path)
    probe = pd.read_csv(PROBE)
    truth = probe["label"].to_numpy()
    pieces = [segments(text) for text in probe["text"]]
    y_val = saved["y_val"]
    options = sorted({key.split("/")[0] for key in saved.files if "/" in key})
    print(f"probe: {len(probe)} sentences ({probe['label'].value_counts().to_dict()})")
    print(
        "| option | before (3 labels) | "
        + " | ".join(f"after γ={g}" for g in (2, 3, 4, 6))
        + " | after γ=4, per label |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for option in options:
        p_val, p_probe, p_seg = (saved[f"{option}/{s}"] for s in ("validation", "probe", "segments"))
        low, high = old_band(p_val, y_val.astype(bool))
        before = np.where(p_probe >= high, "positive", np.where(p_probe <= low, "negative", "neutral"))
        # clauses: the encoder alone, Platt-scaled on validation (the runtime's segment_calibration);
        # whole texts: the stacked options are calibrated already, single models get Platt scaling
        encoder = option.split("+")[0]
        platt = LogisticRegression(C=1e4).fit(logit(saved[f"{encoder}/validation"])[:, None], y_val)
        p_seg = platt.predict_proba(logit(saved[f"{encoder}/segments"])[:, None])[:, 1]
        if "+" not in option:
            p_probe = platt.predict_proba(logit(p_probe)[:, None])[:, 1]
        mixed, at = np.zeros(len(probe)), 0
        for row, parts in enumerate(pieces):
            mixed[row] = mixed_strength(p_seg[at : at + len(parts)]) if len(parts) > 1 else 0.0
            at += len(parts)
        cells, per_label = [], ""
        for gamma in (2, 3, 4, 6):
            predicted = np.array(LABELS)[four_scores(p_probe, mixed, gamma).argmax(axis=1)]
            cells.append(f"{(predicted == truth).mean():.3f}")
            if gamma == 4:
                per_label = ", ".join(f"{lab} {(predicted[truth == lab] == lab).mean():.2f}" for lab in LABELS)
                misses = [
                    (t, lab, got) for t, lab, got in zip(probe["text"], truth, predicted, strict=True) if lab != got
                ]
        print(f"| {option} | {(before == truth).mean():.3f} | " + " | ".join(cells) + f" | {per_label} |")
        if option.endswith("+tfidf") and option.startswith(("top1", "frozen")):
            for text, lab, got in misses:
                print(f"    miss ({option}, γ=4): {text!r} {lab} -> {got}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "/tmp/sentiment-bench/probabilities.npz")
