"""The scikit-learn runtime: serves an estimator or `Pipeline` trained elsewhere (`sqlml models import`).

Artifact: `model.joblib`, the estimator as `joblib.dump` wrote it. Loading it unpickles it, which
runs code from the file: only an admin token may import one (docs/security.md). `manifest.params`
says how to call it, as the importer found it (`sqlml.bridge.model_import`):

- `columns`: the names the estimator was fitted with (`feature_names_in_`), in signature order,
  when it was fitted on a DataFrame; the batch is then handed over as a DataFrame with those
  names (a `ColumnTransformer` selects by name). Without it, a 2-D array in signature order.
- `method`: `predict_proba` (a classifier that has it) or `predict`.
- `classes`: the classifier's `classes_`, as text, in its column order.

Outputs follow the signature's order, whatever their names: a regressor's `value`; a classifier's
`label` and `probability` (binary: of the second class, as for sqlml's own models; multiclass: of
the label, then one probability column per class), or only `label` without `predict_proba`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from sqlml.bridge.runtimes.base import Runtime
from sqlml.bridge.signature import arrow_type
from sqlml.errors import ModelLoadError

MODEL_FILE = "model.joblib"


def estimator_input(batch: pa.Table, inputs: list[str], columns: list[str] | None) -> Any:
    """What the estimator's `predict` takes: a DataFrame named as at fitting, or a 2-D array."""
    frame = batch.select(inputs).to_pandas()
    if columns:
        frame.columns = columns
        return frame
    return frame.to_numpy()


def classifier_outputs(names: list[str], classes: list[str], probabilities: np.ndarray) -> pa.Table:
    """label, probability and (multiclass) one probability per class, from `predict_proba`'s matrix."""
    labels = np.asarray(classes, dtype=object)
    chosen = probabilities.argmax(axis=1) if len(probabilities) else np.zeros(0, dtype=int)
    columns: dict[str, pa.Array] = {names[0]: pa.array(labels[chosen], pa.string())}
    if len(names) > 1:
        if len(classes) == 2:  # the probability of the second class, as sqlml's binary models give it
            columns[names[1]] = pa.array(probabilities[:, 1], pa.float64())
        else:
            columns[names[1]] = pa.array(probabilities[np.arange(len(probabilities)), chosen], pa.float64())
    for position, name in enumerate(names[2:]):
        columns[name] = pa.array(probabilities[:, position], pa.float64())
    return pa.table(columns)


class SklearnRuntime(Runtime):
    name = "sklearn"

    estimator: Any = None

    def load(self) -> None:
        import joblib

        path = self.path / MODEL_FILE
        if not path.is_file():
            raise ModelLoadError(f'model "{self.manifest.name}" has no {MODEL_FILE} in its artifact')
        self.estimator = joblib.load(path)
        params = self.manifest.params
        signature = self.manifest.signature
        self.inputs = signature.input_names()
        self.outputs = signature.output_names()
        self.columns: list[str] | None = list(params["columns"]) if params.get("columns") else None
        self.method = str(params.get("method", "predict"))
        self.classes = [str(c) for c in params.get("classes") or []]

    def predict(self, batch: pa.Table) -> pa.Table:
        if self.estimator is None:
            raise ModelLoadError(f'model "{self.manifest.name}" is not loaded')
        if batch.num_rows == 0:
            return self._schema().empty_table()
        features = estimator_input(batch, self.inputs, self.columns)
        if self.method == "predict_proba":
            probabilities = np.asarray(self.estimator.predict_proba(features), dtype=np.float64)
            return classifier_outputs(self.outputs, self.classes, probabilities)
        predicted = np.asarray(self.estimator.predict(features))
        if self.classes:  # a classifier without probabilities: the label only
            return pa.table({self.outputs[0]: pa.array([str(v) for v in predicted.tolist()], pa.string())})
        return pa.table({self.outputs[0]: pa.array(predicted.astype(np.float64).reshape(-1), pa.float64())})

    def _schema(self) -> pa.Schema:
        return pa.schema([(c.name, arrow_type(c.type)) for c in self.manifest.signature.outputs])

    def unload(self) -> None:
        self.estimator = None
