"""The caller's query text, checked to be exactly one SELECT (or WITH, VALUES, TABLE) statement.

ml.predict_query, ml.train, ml.evaluate and ml.forecast (future, history) run the caller's query as
a subquery. With the standard library alone
there is no SQL parser here: the text is read just far enough to split it into statements at each
`;` outside quotes, dollar quotes and comments.
"""

from __future__ import annotations

import re

from .sql_errors import BridgeError


def check_query(query: str, function: str) -> str:
    """The query without a trailing semicolon, if it is exactly one SELECT / WITH / VALUES / TABLE
    statement; `function` names the caller in errors. Quotes, dollar quotes and comments are
    skipped so `;` inside them is fine."""
    if not isinstance(query, str) or not query.strip():
        raise BridgeError("invalid_query", "the query is empty")
    statements = [s for s in _split_statements(query) if s.strip()]
    if len(statements) != 1:
        raise BridgeError(
            "invalid_query",
            f"{function} takes exactly one SELECT statement",
            hint="remove the extra statements (a ';' outside quotes ends a statement)",
        )
    text = statements[0]
    first = re.match(r"[\s(]*([A-Za-z]+)", _strip_comments(text))
    if not first or first.group(1).lower() not in ("select", "with", "values", "table"):
        raise BridgeError(
            "invalid_query",
            f"{function} takes a SELECT (or WITH ... SELECT) query",
            hint="for example 'SELECT id, mostype, maothers FROM leads'",
        )
    return text


def _split_statements(sql: str) -> list[str]:
    out, start, i, n = [], 0, 0, len(sql)
    while i < n:
        c = sql[i]
        if c == "-" and sql.startswith("--", i):
            end = sql.find("\n", i)
            i = n if end < 0 else end + 1
        elif c == "/" and sql.startswith("/*", i):
            i = _skip_block_comment(sql, i)
        elif c in ("'", '"'):
            i = _skip_quoted(sql, i, c)
        elif c == "$" and (tag := re.match(r"\$([A-Za-z_][A-Za-z0-9_]*)?\$", sql[i:])):
            end = sql.find(tag.group(0), i + len(tag.group(0)))
            if end < 0:
                raise BridgeError("invalid_query", "unterminated dollar-quoted string in the query")
            i = end + len(tag.group(0))
        elif c == ";":
            out.append(sql[start:i])
            start = i = i + 1
        else:
            i += 1
    out.append(sql[start:])
    return out


def _skip_quoted(sql: str, i: int, quote: str) -> int:
    j = i + 1
    while True:
        j = sql.find(quote, j)
        if j < 0:
            raise BridgeError("invalid_query", "unterminated quoted string or identifier in the query")
        if sql.startswith(quote * 2, j):
            j += 2  # a doubled quote inside the literal
            continue
        return j + 1


def _skip_block_comment(sql: str, i: int) -> int:
    depth, j = 0, i
    while j < len(sql):
        if sql.startswith("/*", j):
            depth, j = depth + 1, j + 2
        elif sql.startswith("*/", j):
            depth, j = depth - 1, j + 2
            if depth == 0:
                return j
        else:
            j += 1
    raise BridgeError("invalid_query", "unterminated /* comment in the query")


def _strip_comments(sql: str) -> str:
    text = sql.lstrip()
    while text.startswith(("--", "/*")):
        text = (
            text[text.find("\n") + 1 :]
            if text.startswith("--") and "\n" in text
            else (text[_skip_block_comment(text, 0) :] if text.startswith("/*") else "")
        )
        text = text.lstrip()
    return text
