"""Bearer-token auth of the bridge: tokens carry scopes, routes ask for one scope.

Scopes: `predict:<model>` (one model), `predict:*` (every model), `train`, `admin` (implies all).
Reading the model list needs any valid token. A missing or unknown token is 401 `unauthorized`,
a known token without the scope 403 `forbidden`. Auth is off only when the settings say so.

Besides the configured tokens, the bridge accepts tokens derived from one of them without asking
the bridge (the PostgreSQL extension mints them for database roles, one per grant). The format,
shared with the extension's own standard-library copy, so it must not change:

    token = "sqlmld1." + P + "." + M
    P = base64url, no padding, of JSON {"p": F, "s": [scopes, sorted], "sub": label}
        (sort_keys=True, separators=(",", ":"))
    F = sha256(parent).hexdigest()[:16]
    M = hmac_sha256(key=parent, msg=P).hexdigest()

A derived token holds only the scopes in "s" that its parent grants, so it can only narrow; its
parent must be a configured token, not a derived one.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Iterable, Mapping

from sqlml.errors import Forbidden, Unauthorized

ADMIN = "admin"
TRAIN = "train"
ANY_TOKEN = ""  # the "scope" of routes that only need a valid token

DERIVED_PREFIX = "sqlmld1."
MAX_DERIVED_TOKEN_CHARS = 8192  # far above any real grant list; bounds the work on a forged one


def predict_scope(model: str) -> str:
    return f"predict:{model}"


def grants(scopes: Iterable[str], needed: str) -> bool:
    """Whether a token holding `scopes` may do what `needed` names."""
    held = set(scopes)
    if needed == ANY_TOKEN or ADMIN in held or needed in held:
        return True
    return needed.startswith("predict:") and "predict:*" in held


# -- derived tokens --------------------------------------------------------------------------


def token_fingerprint(token: str) -> str:
    """Names a parent inside a derived token without revealing it."""
    return hashlib.sha256(token.encode()).hexdigest()[:16]


def _payload_mac(parent: str, payload: str) -> str:
    return hmac.new(parent.encode(), payload.encode(), hashlib.sha256).hexdigest()


def derive_token(parent: str, scopes: Iterable[str], sub: str) -> str:
    """A token that holds at most `scopes` of `parent`'s, labelled `sub` (a database role, say)."""
    if parent.startswith(DERIVED_PREFIX):
        raise ValueError("a derived token cannot be the parent of another")
    claims = {"p": token_fingerprint(parent), "s": sorted(scopes), "sub": sub}
    dumped = json.dumps(claims, sort_keys=True, separators=(",", ":"))
    payload = base64.urlsafe_b64encode(dumped.encode()).decode().rstrip("=")
    return f"{DERIVED_PREFIX}{payload}.{_payload_mac(parent, payload)}"


def _claims(payload: str) -> tuple[str, list[str]] | None:
    """(parent fingerprint, claimed scopes) of a payload, or None when it is not well formed."""
    try:
        raw = base64.b64decode(payload + "=" * (-len(payload) % 4), altchars=b"-_", validate=True)
        claims = json.loads(raw.decode())
    except (binascii.Error, UnicodeDecodeError, ValueError, RecursionError):
        return None
    if not isinstance(claims, dict) or set(claims) != {"p", "s", "sub"}:
        return None
    fingerprint, scopes, sub = claims["p"], claims["s"], claims["sub"]
    if not (isinstance(fingerprint, str) and isinstance(sub, str) and isinstance(scopes, list)):
        return None
    if not all(isinstance(scope, str) for scope in scopes):
        return None
    return fingerprint, scopes


class TokenAuth:
    def __init__(self, tokens: Mapping[str, Iterable[str]], enabled: bool = True):
        self.enabled = enabled
        self._tokens = {token: frozenset(scopes) for token, scopes in tokens.items()}
        # Parents of derived tokens: configured tokens only, so a derivation cannot nest.
        self._parents = {t: s for t, s in self._tokens.items() if not t.startswith(DERIVED_PREFIX)}

    def scopes(self, authorization: str | None) -> frozenset[str]:
        """The scopes of the bearer token in an `Authorization` header value; 401 if none match."""
        scheme, _, token = (authorization or "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise Unauthorized("missing bearer token", hint="send the header 'Authorization: Bearer <token>'")
        found = self._configured_scopes(token)
        if found is None and token.startswith(DERIVED_PREFIX):
            found = self._derived_scopes(token)
        if found is None:
            # one answer for every reason (unknown, forged, malformed): no oracle for forgers
            raise Unauthorized("invalid bearer token", hint="ask the bridge operator for a token")
        return found

    def _configured_scopes(self, token: str) -> frozenset[str] | None:
        found: frozenset[str] | None = None
        for known, scopes in self._tokens.items():
            # compare every token in constant time, so timing does not reveal a prefix
            if hmac.compare_digest(known.encode(), token.encode()):
                found = scopes
        return found

    def _derived_scopes(self, token: str) -> frozenset[str] | None:
        parts = token.split(".")
        if len(token) > MAX_DERIVED_TOKEN_CHARS or len(parts) != 3:
            return None
        _, payload, mac = parts
        claims = _claims(payload)
        if claims is None:
            return None
        fingerprint, claimed = claims
        found: frozenset[str] | None = None
        for parent, parent_scopes in self._parents.items():
            # every parent's MAC is computed and compared, so timing does not reveal which matched
            same_parent = hmac.compare_digest(token_fingerprint(parent).encode(), fingerprint.encode())
            same_mac = hmac.compare_digest(_payload_mac(parent, payload).encode(), mac.encode())
            if same_parent and same_mac:
                found = frozenset(scope for scope in claimed if grants(parent_scopes, scope))
        return found

    def can_see(self, authorization: str | None, model: str) -> bool:
        """Whether the request may see a model in listings and descriptions (its signature, metrics
        and lineage): a token that may score it, or one that trains models."""
        if not self.enabled:
            return True
        scopes = self.scopes(authorization)
        return TRAIN in scopes or grants(scopes, predict_scope(model))

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
