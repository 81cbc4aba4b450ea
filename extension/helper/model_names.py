"""Model references, aliases and plain names, checked before they reach a URL or generated SQL.

The rules are the package's own (sqlml/naming.py, concatenated into the helper before this module).
"""

from __future__ import annotations

from sqlml.naming import MODEL_REF, NAME, RESERVED_ALIASES

from .sql_errors import BridgeError


def check_model(model: str) -> str:
    """A model reference (`name`, `name:3`, `name:staging`) safe for URLs and generated SQL."""
    if not isinstance(model, str) or not MODEL_REF.match(model):
        raise BridgeError(
            "invalid_name",
            f"invalid model name {str(model)[:80]!r}",
            hint="a model is name, name:version or name:alias; names use lowercase letters, digits and "
            "underscores, starting with a letter",
        )
    return model


def check_alias(alias: str) -> None:
    if not isinstance(alias, str) or not NAME.match(alias) or alias in RESERVED_ALIASES:
        raise BridgeError(
            "invalid_name",
            f"invalid alias {str(alias)[:80]!r}",
            hint="aliases use lowercase letters, digits and '_', starting with a letter; "
            f"{', '.join(sorted(RESERVED_ALIASES))} is reserved",
        )


def check_plain_name(name: str, what: str = "model name") -> str:
    """A model name without a version or alias (ml.grant, ml.train)."""
    if not isinstance(name, str) or not NAME.match(name):
        raise BridgeError(
            "invalid_name",
            f"invalid {what} {str(name)[:80]!r}",
            hint="names use lowercase letters, digits and underscores, starting with a letter",
        )
    return name
