"""The golden rewrite cases: `golden/NAME.sql` is the input, `golden/NAME.expected.sql` the
rewrite (pretty-printed; identical to the input when the query must be left unchanged).
`python -m tests.rewrite.golden_cases` regenerates the expected files after a deliberate change;
review the diff before committing it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import sqlglot

from sqlml.sql.rewrite import rewrite
from tests.rewrite.conftest import demo_catalog

GOLDEN = Path(__file__).parent / "golden"


@dataclass(frozen=True)
class GoldenCase:
    name: str
    input_sql: str
    expected_sql: str

    @property
    def expect_unchanged(self) -> bool:
        return normalize(self.expected_sql) == normalize(self.input_sql)


def normalize(sql: str) -> str:
    return sqlglot.parse_one(sql, read="postgres").sql(dialect="postgres", comments=False)


def load_cases() -> list[GoldenCase]:
    cases = []
    for path in sorted(GOLDEN.glob("*.sql")):
        if path.name.endswith(".expected.sql"):
            continue
        expected = path.with_name(path.stem + ".expected.sql")
        cases.append(GoldenCase(path.stem, path.read_text(), expected.read_text() if expected.exists() else ""))
    return cases


def regenerate() -> None:
    catalog = demo_catalog()
    for case in load_cases():
        result = rewrite(case.input_sql, catalog)
        text = sqlglot.transpile(result.sql, read="postgres", write="postgres", pretty=True)[0]
        header = "" if result.changed else f"-- unchanged: {result.reason}\n"
        case_path = GOLDEN / f"{case.name}.expected.sql"
        case_path.write_text(header + text + "\n")
        print(f"{case.name}: {'rewritten' if result.changed else 'unchanged'} ({result.reason})")


if __name__ == "__main__":
    regenerate()
