"""`sqlml models import` into a store (no bridge): each kind published as a version, its signature
inferred or given, scored through the store's own host; and the errors a user meets on the way."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pytest
from typer.testing import CliRunner

from sqlml.bridge.client import LocalClient
from sqlml.bridge.registry import Registry
from sqlml.cli import app
from tests import imported_models as made

runner = CliRunner()


def run_import(store: Path, *args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, ["models", "import", *args, "--store", str(store)])
    return result.exit_code, result.stdout, result.stderr


def signature(store: Path, name: str) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    manifest = Registry(store).describe(name)
    return (
        [(c.name, c.type) for c in manifest.signature.inputs],
        [(c.name, c.type) for c in manifest.signature.outputs],
    )


def test_an_xgboost_file_keeps_its_feature_names_as_sql_names(tmp_path: Path) -> None:
    store = tmp_path / "store"
    code, out, err = run_import(store, "churn", str(made.xgboost_file(tmp_path)), "--alias", "production")
    assert code == 0, err
    assert "imported churn version 1 (xgboost, classification)" in out
    assert signature(store, "churn") == ([("age", "double"), ("income_k", "double"), ("clicks", "bigint")],
                                         [("probability", "double")])  # fmt: skip
    assert Registry(store).aliases("churn") == {"production": 1}
    scored = LocalClient(Registry(store)).predict(
        "churn", pa.table({"age": [0.9, 0.1, None], "income_k": [0.5, 0.5, 0.5], "clicks": [3, 3, 3]})
    )
    old, young, unknown = scored.column("probability").to_pylist()
    assert old > 0.8 and young < 0.2 and 0.0 < unknown < 1.0  # NULL is a missing value, still scored


def test_an_xgboost_import_with_its_target_can_be_evaluated(tmp_path: Path) -> None:
    store = tmp_path / "store"
    code, _, err = run_import(store, "churn", str(made.xgboost_file(tmp_path)), "--target", "churned")
    assert code == 0, err
    age = [0.1 * i for i in range(10)]
    rows = pa.table({"age": age, "income_k": [0.5] * 10, "clicks": [1] * 10, "churned": [a > 0.5 for a in age]})
    result = LocalClient(Registry(store)).evaluate("churn", rows)
    assert result["rows"] == 10 and result["metrics"]["accuracy"] >= 0.9
    assert Registry(store).describe("churn").lineage["target"] == "churned"


def test_an_xgboost_json_without_names_takes_the_inputs_given_and_labels(tmp_path: Path) -> None:
    store = tmp_path / "store"
    path = made.xgboost_file(tmp_path, names=False, suffix=".json", objective="multi:softprob")
    code, _, err = run_import(store, "churn", str(path))
    assert code == 1
    assert "no feature names" in err and "--inputs" in err and "3 features" in err
    code, _, err = run_import(
        store, "churn", str(path), "--inputs", "a double, b double, n integer", "--labels", "stay,leave"
    )
    assert code == 0, err
    assert signature(store, "churn") == (
        [("a", "double"), ("b", "double"), ("n", "bigint")],
        [("label", "text"), ("probability", "double"), ("p_stay", "double"), ("p_leave", "double")],
    )
    row = LocalClient(Registry(store)).predict("churn", pa.table({"a": [0.95], "b": [0.5], "n": [1]})).to_pylist()[0]
    assert row["label"] == "leave" and row["probability"] == pytest.approx(row["p_leave"])


def test_a_sklearn_pipeline_gets_text_and_number_inputs_and_its_classes(tmp_path: Path) -> None:
    store = tmp_path / "store"
    code, out, err = run_import(store, "upgrade", str(made.sklearn_pipeline(tmp_path)))
    assert code == 0, err
    assert "(sklearn, classification)" in out
    assert signature(store, "upgrade") == ([("age", "double"), ("plan", "text")],
                                           [("label", "text"), ("probability", "double")])  # fmt: skip
    scored = LocalClient(Registry(store)).predict("upgrade", pa.table({"age": [30.0, 30.0], "plan": ["max", "basic"]}))
    assert scored.column("label").to_pylist() == ["yes", "no"]
    high, low = scored.column("probability").to_pylist()  # the probability of "yes", the second class
    assert high > 0.5 > low


def test_a_regressor_fitted_on_an_array_needs_its_inputs_named(tmp_path: Path) -> None:
    store = tmp_path / "store"
    path = made.sklearn_regressor(tmp_path)
    code, _, err = run_import(store, "price", str(path))
    assert code == 1 and "fitted on an array" in err and "--inputs" in err
    code, _, err = run_import(store, "price", str(path), "--inputs", "a double, b double", "--outputs", "price double")
    assert code == 0, err
    scored = LocalClient(Registry(store)).predict("price", pa.table({"a": [1.0], "b": [1.0]}))
    assert scored.column_names == ["price"] and scored.column("price")[0].as_py() == pytest.approx(5.0)


def test_a_transformers_folder_becomes_a_text_classifier_with_its_labels(tmp_path: Path) -> None:
    store = tmp_path / "store"
    code, out, err = run_import(store, "tone", str(made.text_classifier(tmp_path / "tone-model")))
    assert code == 0, err
    assert "(text_classifier, classification)" in out
    inputs, outputs = signature(store, "tone")
    assert inputs == [("text", "text")]
    assert outputs == [("label", "text"), ("confidence", "double"), ("score_negative", "double"),
                       ("score_neutral", "double"), ("score_positive", "double")]  # fmt: skip
    texts = ["the coffee is great", "awful", None, "   ", "good " * 10_000]
    rows = LocalClient(Registry(store)).predict("tone", pa.table({"text": texts})).to_pylist()
    for row in rows[:2] + rows[4:]:
        assert row["label"] in made.TEXT_LABELS.values()
        scores = [row["score_negative"], row["score_neutral"], row["score_positive"]]
        assert sum(scores) == pytest.approx(1.0) and row["confidence"] == pytest.approx(max(scores))
    assert all(value is None for row in rows[2:4] for value in row.values())  # NULL and blank text: NULL


def test_the_bare_listing_still_lists(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SQLML_STORE", str(tmp_path / "store"))
    code, _, err = run_import(tmp_path / "store", "churn", str(made.xgboost_file(tmp_path)))
    assert code == 0, err
    result = runner.invoke(app, ["models"])
    assert result.exit_code == 0 and "churn" in result.stdout and "classification" in result.stdout


# -- what goes wrong -------------------------------------------------------------------------------


def test_a_file_that_is_not_a_model_is_refused_by_name(tmp_path: Path) -> None:
    store = tmp_path / "store"
    notes = tmp_path / "notes.json"
    notes.write_text(json.dumps({"not": "a model"}))
    code, _, err = run_import(store, "m", str(notes))
    assert code == 1 and 'error [bad_request]: "notes.json" is not an XGBoost model' in err
    pickle = tmp_path / "numbers.joblib"
    import joblib

    joblib.dump([1, 2, 3], pickle)
    code, _, err = run_import(store, "m", str(pickle))
    assert code == 1 and "holds a list, not a scikit-learn estimator" in err
    code, _, err = run_import(store, "m", str(tmp_path / "vocab.txt"), "--kind", "sklearn")
    assert code == 1 and "does not exist" in err
    assert not (store / "m").exists() or Registry(store).versions("m") == []


def test_an_unknown_kind_or_an_unrecognised_file_names_the_kinds(tmp_path: Path) -> None:
    store = tmp_path / "store"
    path = made.xgboost_file(tmp_path)
    code, _, err = run_import(store, "m", str(path), "--kind", "onnx")
    assert code == 1 and "unknown model kind 'onnx'" in err and "xgboost" in err and "transformers" in err
    odd = tmp_path / "model.onnx"
    odd.write_bytes(b"\x08\x07")
    code, _, err = run_import(store, "m", str(odd))
    assert code == 1 and "cannot tell what kind of model" in err and "--kind" in err


def test_a_signature_that_does_not_match_the_feature_count_is_refused(tmp_path: Path) -> None:
    store = tmp_path / "store"
    code, _, err = run_import(store, "m", str(made.xgboost_file(tmp_path)), "--inputs", "a double")
    assert code == 1 and "error [invalid_input]: the model takes 3 features, the inputs given name 1" in err
    code, _, err = run_import(store, "m", str(made.sklearn_pipeline(tmp_path)), "--inputs", "a double, b double")
    assert code == 1 and "fails to score a row of (a double, b double)" in err  # the test row caught it
    code, _, err = run_import(store, "m", str(made.xgboost_file(tmp_path)), "--outputs", "label text")
    assert code == 1 and "answers (probability double)" in err
    code, _, err = run_import(store, "m", str(made.xgboost_file(tmp_path)), "--task", "regression")
    assert code == 1 and "is a classification model (objective binary:logistic), not regression" in err
    assert Registry(store).names() == []  # nothing was published


def test_a_transformers_folder_without_safetensors_or_a_head_is_refused(tmp_path: Path) -> None:
    store = tmp_path / "store"
    folder = made.text_classifier(tmp_path / "tone")
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "architectures": ["BertModel"]}))
    code, _, err = run_import(store, "m", str(folder))
    assert code == 1 and "without a sequence classification head" in err
    (folder / "model.safetensors").rename(folder / "pytorch_model.bin")
    code, _, err = run_import(store, "m", str(folder))
    assert code == 1 and "no safetensors weights" in err and "refused" in err
    empty = tmp_path / "empty"
    empty.mkdir()
    code, _, err = run_import(store, "m", str(empty))
    assert code == 1 and "has no config.json" in err


def test_bad_column_lists_say_what_to_write(tmp_path: Path) -> None:
    store = tmp_path / "store"
    path = str(made.xgboost_file(tmp_path))
    code, _, err = run_import(store, "m", path, "--inputs", "a double, b")
    assert code == 1 and "'b' needs a name and a type" in err
    code, _, err = run_import(store, "m", path, "--inputs", "a double, b money, c double")
    assert code == 1 and "unknown type 'money'" in err
    code, _, err = run_import(store, "m", path, "--inputs", "a double, a double, c double")
    assert code == 1 and "a named twice" in err
    code, _, err = run_import(store, "Bad-Name", path)
    assert code == 1 and "invalid model name" in err
