"""Bearer-token auth of the bridge: tokens carry scopes, routes ask for one scope.

Scopes: `predict:<model>` (one model), `predict:*` (every model), `train`, `admin` (implies all).
Reading the model list needs any valid token. A missing or unknown token is 401 `unauthorized`,
a known token without the scope 403 `forbidden`. Auth is off only when the settings say so.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable, Mapping

from sqlml.errors import Forbidden, Unauthorized

ADMIN = "admin"
TRAIN = "train"
ANY_TOKEN = ""  # the "scope" of routes that only need a valid token


def predict_scope(model: str) -> str:
    return f"predict:{model}"


def grants(scopes: Iterable[str], needed: str) -> bool:
    """Whether a token holding `scopes` may do what `needed` names."""
    held = set(scopes)
    if needed == ANY_TOKEN or ADMIN in held or needed in held:
        return True
    return needed.startswith("predict:") and "predict:*" in held


class TokenAuth:
    def __init__(self, tokens: Mapping[str, Iterable[str]], enabled: bool = True):
        self.enabled = enabled
        self._tokens = {token: frozenset(scopes) for token, scopes in tokens.items()}

    def scopes(self, authorization: str | None) -> frozenset[str]:
        """The scopes of the bearer token in an `Authorization` header value; 401 if none match."""
        scheme, _, token = (authorization or "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise Unauthorized("missing bearer token", hint="send the header 'Authorization: Bearer <token>'")
        found: frozenset[str] | None = None
        for known, scopes in self._tokens.items():
            # compare every token in constant time, so timing does not reveal a prefix
            if hmac.compare_digest(known.encode(), token.encode()):
                found = scopes
        if found is None:
            raise Unauthorized("invalid bearer token", hint="ask the bridge operator for a token")
        return found

    def require(self, authorization: str | None, needed: str) -> None:
        """Raise unless the request may do `needed`."""
        if not self.enabled:
            return
        scopes = self.scopes(authorization)
        if not grants(scopes, needed):
            raise Forbidden(
                f"this token lacks the scope {needed!r}",
                hint=f"token scopes: {', '.join(sorted(scopes)) or 'none'}",
                detail={"needed": needed},
            )
