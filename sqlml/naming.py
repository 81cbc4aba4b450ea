"""The one rule for the names users give: models, aliases, features, and `name:ref` references.

Names travel into store paths, URLs and generated SQL, so they are plain identifiers. Every
pattern is matched whole (`fullmatch`, or `\\Z` where `match` is used): `$` would also accept a
trailing newline ("staging\\n"). The bridge, the store and the job specs import these; the
PostgreSQL helper (standard library only, embedded in the extension) keeps copies that a drift
test compares with this module (tests/security/test_name_rules.py).
"""

from __future__ import annotations

import re

NAME_RULE = r"[a-z][a-z0-9_]{0,62}"
# A model, alias or feature name: lowercase letters, digits and underscores, starting with a letter.
NAME = re.compile(NAME_RULE + r"\Z")
# A model reference: `name`, `name:3` (a version) or `name:staging` (an alias, or `latest`).
MODEL_REF = re.compile(NAME_RULE + r"(?::(?:[0-9]{1,9}|" + NAME_RULE + r"))?\Z")

# Words a reference resolves by itself, so no alias may take them.
LATEST = "latest"
RESERVED_ALIASES = frozenset({LATEST})

NAME_HINT = "use lowercase letters, digits and underscores, starting with a letter (at most 63)"


def is_name(text: object) -> bool:
    return isinstance(text, str) and NAME.match(text) is not None


def is_model_ref(text: object) -> bool:
    return isinstance(text, str) and MODEL_REF.match(text) is not None
