"""Tiny models "trained elsewhere", as a user would bring them to `sqlml models import`: an XGBoost
file, a scikit-learn Pipeline over a DataFrame with a text column, a regressor fitted on a bare
array, and a transformers text classifier with its own three labels and a tokenizer built from a
ten-word vocabulary. Built in a second, never downloaded."""

from __future__ import annotations

from pathlib import Path

import numpy as np

XGB_FEATURES = ["Age", "Income (k)", "clicks"]  # as pandas users name columns; imported as SQL names
XGB_COLUMNS = ["age", "income_k", "clicks"]
TEXT_LABELS = {0: "negative", 1: "neutral", 2: "positive"}
WORDS = ["good", "bad", "great", "awful", "the", "coffee", "is", "was", "not"]
VOCABULARY = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]


def xgboost_file(folder: Path, *, names: bool = True, suffix: str = ".ubj", objective: str = "binary:logistic") -> Path:
    """A binary classifier whose probability rises with `age` (feature 0)."""
    import xgboost as xgb

    rng = np.random.default_rng(0)
    x = rng.random((300, 3))
    x[:, 2] = np.round(x[:, 2] * 10)
    y = (x[:, 0] > 0.5).astype(float)
    matrix = xgb.DMatrix(
        x,
        label=y,
        feature_names=XGB_FEATURES if names else None,
        feature_types=["float", "float", "int"] if names else None,
    )
    params: dict[str, object] = {"objective": objective, "max_depth": 2}
    if objective.startswith("multi:"):
        params["num_class"] = 2
    booster = xgb.train(params, matrix, 10)
    path = folder / f"churn{suffix}"
    booster.save_model(str(path))
    return path


def sklearn_pipeline(folder: Path) -> Path:
    """A Pipeline (scaler and one-hot encoder in a ColumnTransformer, then logistic regression) fitted
    on a DataFrame of `age` (double) and `plan` (text); 'max' plans say yes."""
    import joblib
    import pandas as pd
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    rng = np.random.default_rng(1)
    frame = pd.DataFrame({"age": rng.random(200) * 50, "plan": rng.choice(["basic", "pro", "max"], 200)})
    target = np.where(frame["plan"] == "max", "yes", "no")
    columns = ColumnTransformer(
        [("num", StandardScaler(), ["age"]), ("cat", OneHotEncoder(handle_unknown="ignore"), ["plan"])]
    )
    pipeline = Pipeline([("columns", columns), ("model", LogisticRegression(C=10.0))]).fit(frame, target)
    path = folder / "upgrade.joblib"
    joblib.dump(pipeline, path)
    return path


def sklearn_regressor(folder: Path) -> Path:
    """A linear regression fitted on a bare array (no feature names): y = 2a + 3b."""
    import joblib
    from sklearn.linear_model import LinearRegression

    x = np.random.default_rng(2).random((50, 2))
    path = folder / "price.pkl"
    joblib.dump(LinearRegression().fit(x, 2 * x[:, 0] + 3 * x[:, 1]), path)
    return path


def text_classifier(folder: Path) -> Path:
    """A random one-layer BERT with three labels, saved with `save_pretrained` (safetensors)."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    vocab = folder.parent / f"{folder.name}-vocab.txt"
    vocab.write_text("\n".join(VOCABULARY) + "\n")
    tokenizer = BertTokenizerFast(vocab_file=str(vocab))
    config = BertConfig(
        vocab_size=len(VOCABULARY),
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=64,
        num_labels=len(TEXT_LABELS),
        id2label=TEXT_LABELS,
        label2id={label: index for index, label in TEXT_LABELS.items()},
    )
    torch.manual_seed(0)
    BertForSequenceClassification(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
