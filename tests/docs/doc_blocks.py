"""The fenced blocks of README.md and docs/*.md, their markers, and how a block's stated results read.

Pure functions, no services: test_doc_blocks.py runs what they find. The marker vocabulary is in
that module's docstring.
"""

from __future__ import annotations

import ast
import json
import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOC_FILES = ["README.md", *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "docs").glob("*.md"))]

FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})(.*)$")
MARKER = re.compile(r"^\s*<!--\s*doc:\s*(.*?)\s*-->\s*$")
RUNNERS = {"duckdb", "postgres", "shell", "python"}


@dataclass(frozen=True)
class Block:
    doc: str  # path relative to the repository root
    line: int  # 1-based line of the opening fence
    info: str  # the fence's info string (language tag), may be empty
    text: str  # the lines between the fences
    marker: str | None  # what follows "doc:" in the comment on the line before the fence

    @property
    def where(self) -> str:
        return f"{self.doc}:{self.line}"


def read_blocks(doc: str) -> list[Block]:
    """Every fenced block (``` or ~~~, any info string) of `doc`; an unclosed one runs to the end."""
    lines = (ROOT / doc).read_text().splitlines()
    blocks, i = [], 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if not opening or (opening.group(1)[0] == "`" and "`" in opening.group(2)):
            i += 1
            continue
        fence, start = opening.group(1), i
        closing = re.compile(rf"^ {{0,3}}{re.escape(fence[0])}{{{len(fence)},}}\s*$")
        i += 1
        while i < len(lines) and not closing.match(lines[i]):
            i += 1
        marker = MARKER.match(lines[start - 1]) if start > 0 else None
        blocks.append(
            Block(
                doc=doc,
                line=start + 1,
                info=opening.group(2).strip(),
                text="\n".join(lines[start + 1 : i]) + "\n",
                marker=marker.group(1) if marker else None,
            )
        )
        i += 1
    return blocks


def all_blocks() -> list[Block]:
    return [block for doc in DOC_FILES for block in read_blocks(doc)]


def parse_marker(marker: str | None) -> tuple[str, ...] | str:
    """`run WORDS` -> the words (a tuple); `not run: REASON` -> the reason (a str). Raises ValueError."""
    if marker is None:
        raise ValueError("no <!-- doc: ... --> marker on the line before the fence")
    if marker.startswith("not run"):
        reason = marker.removeprefix("not run").lstrip(":").strip()
        if not marker.startswith("not run:") or not reason:
            raise ValueError(f"'{marker}': a 'not run' marker needs a reason, as in 'not run: <why>'")
        return reason
    words = tuple(marker.split())
    if not words or words[0] != "run" or len(words) < 2:
        raise ValueError(f"'{marker}': expected 'run <runner>...' or 'not run: <reason>'")
    runner, *needs = words[1:]
    if runner not in RUNNERS or any(need != "postgres" for need in needs):
        raise ValueError(f"'{marker}': runners are {sorted(RUNNERS)}, optionally followed by 'postgres'")
    return words[1:]


# -- SQL ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Statement:
    sql: str
    line: int  # 1-based, within the block
    stated: str | None  # a one-word comment at the end of its last line: the value it returns


def split_sql(text: str) -> list[Statement]:
    """Statements of a SQL script, split on `;` outside quotes, dollar quotes and comments.

    A comment that is a single word, at the end of the line a statement ends on, states the
    statement's one value (`SELECT (ml.sentiment('...')).label;  -- negative`); longer comments
    are prose."""
    statements: list[Statement] = []
    current: list[str] = []
    start_line, line_no, i, n = None, 1, 0, len(text)
    pending: tuple[str, int] | None = None  # a statement ended on this line; its comment may follow

    def finish(sql: str, start: int) -> None:
        nonlocal pending
        if sql.strip():
            pending = (sql.strip(), start)

    def flush(comment: str | None) -> None:
        nonlocal pending
        if pending:
            word = comment.strip() if comment else ""
            stated = word if re.fullmatch(r"[\w.:-]+", word) else None
            statements.append(Statement(pending[0], pending[1], stated))
            pending = None

    while i < n:
        ch = text[i]
        if ch == "\n":
            flush(None)
            line_no += 1
            current.append(ch)
            i += 1
            continue
        if text.startswith("--", i):
            end = text.find("\n", i)
            end = n if end < 0 else end
            flush(text[i + 2 : end])
            i = end
            continue
        if text.startswith("/*", i):
            end = text.find("*/", i + 2)
            end = n if end < 0 else end + 2
            line_no += text.count("\n", i, end)
            i = end
            continue
        if ch.strip() and start_line is None:
            start_line = line_no
        if ch in "'\"":
            end = i + 1
            while end < n and not (text[end] == ch and not text.startswith(ch * 2, end)):
                end += 2 if text.startswith(ch * 2, end) else 1
            current.append(text[i : end + 1])
            line_no += text.count("\n", i, end)
            i = end + 1
            continue
        dollar = re.match(r"\$(\w*)\$", text[i:])
        if dollar:
            tag = dollar.group(0)
            end = text.find(tag, i + len(tag))
            end = n if end < 0 else end + len(tag)
            current.append(text[i:end])
            line_no += text.count("\n", i, end)
            i = end
            continue
        if ch == ";":
            finish("".join(current), start_line or line_no)
            current, start_line = [], None
            i += 1
            continue
        current.append(ch)
        i += 1
    flush(None)
    finish("".join(current), start_line or line_no)
    flush(None)
    return statements


def transcript(text: str) -> list[tuple[str, list[str]]] | None:
    """A psql transcript (`=> STATEMENT` lines, each followed by its output): the pairs, else None."""
    if not text.lstrip().startswith("=> "):
        return None
    pairs: list[tuple[str, list[str]]] = []
    for line in text.splitlines():
        if line.startswith("=> "):
            pairs.append((line[3:], []))
        elif line.strip():
            pairs[-1][1].append(line.strip())
    return pairs


def substitute(text: str, replacements: dict[str, str]) -> str:
    """The doc's names for things (the bridge's address, the demo database) -> the test's."""
    for pattern, value in replacements.items():
        text = re.sub(pattern, value, text)
    return text


# -- shell -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Command:
    text: str
    line: int  # 1-based, within the block
    stated: str | None  # a JSON sample in a comment after it: `# {"status": "ok"}`


def _comment_start(line: str, quote: str | None) -> tuple[int | None, str | None]:
    """Where a `#` comment starts in `line` (None if none), and the quote still open at its end."""
    i = 0
    while i < len(line):
        ch = line[i]
        if quote == "'":
            if ch == "'":
                quote = None
        elif ch == "\\":
            i += 1
        elif quote == '"':
            if ch == '"':
                quote = None
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1].isspace()):
            return i, None
        i += 1
    return None, quote


def split_shell(text: str) -> list[Command]:
    """Commands of a shell block (continued by a trailing `\\` or an open quote), each with the JSON
    sample its comment states: a trailing `# {...}` or `# [...]`, or such a comment line after it."""
    commands: list[Command] = []
    current: list[str] = []
    start, quote, stated = 0, None, None

    def sample(comment: str) -> str | None:
        comment = comment.lstrip("#").strip()
        return comment if comment[:1] in "{[" else None

    for number, line in enumerate(text.splitlines(), 1):
        if not current and quote is None:
            if not line.strip():
                continue
            if line.lstrip().startswith("#"):
                if commands and commands[-1].stated is None and sample(line):
                    last = commands.pop()
                    commands.append(Command(last.text, last.line, sample(line)))
                continue
            start = number
        hash_at, quote = _comment_start(line, quote)
        if hash_at is not None:
            stated = sample(line[hash_at:])
        current.append(line)
        if quote is None and not line[: hash_at if hash_at is not None else len(line)].rstrip().endswith("\\"):
            commands.append(Command("\n".join(current), start, stated))
            current, stated = [], None
    if current:
        commands.append(Command("\n".join(current), start, stated))
    return commands


# -- stated JSON samples -----------------------------------------------------------------------


def leading_json(sample: str) -> str:
    """The bracketed value at the start of `sample` (prose may follow it: `{"status": "ok"}: ...`)."""
    depth, quote, escaped = 0, False, False
    for i, ch in enumerate(sample):
        if quote:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                quote = False
            continue
        if ch == '"':
            quote = True
        elif ch in "{[":
            depth += 1
        elif ch in "}]":
            depth -= 1
            if depth == 0:
                return sample[: i + 1]
    return sample


def read_sample(sample: str) -> object:
    """A doc's JSON sample as a shape: JSON, where `...` stands for anything (`{...}`, `"..."`, a
    trailing `, ...` in a list: more elements), and `{"a", "b"}` for an object with those keys."""
    text = leading_json(sample)
    pieces = re.split(r'("(?:\\.|[^"\\])*")', text)  # keep strings as they are
    for k in range(0, len(pieces), 2):
        piece = re.sub(r"\btrue\b", "True", pieces[k])
        piece = re.sub(r"\bfalse\b", "False", piece)
        piece = re.sub(r"\bnull\b", "None", piece)
        pieces[k] = re.sub(r",\s*\.\.\.\s*}", "}", piece)  # an object's "and more keys"
    try:
        return ast.literal_eval("".join(pieces))
    except (SyntaxError, ValueError) as error:
        raise ValueError(f"cannot read the doc's sample {text!r}: {error}") from None


def shape_mismatch(expected: object, actual: object, path: str = "$") -> str | None:
    """Why `actual` (parsed JSON) does not have the shape of `expected` (from `read_sample`), or None.

    Shape means keys and JSON types: the keys a sample shows must be there (more may be), lists
    are compared element by element as far as both go (and one the sample shows non-empty must not
    be empty), null must be null; the numbers and strings themselves are examples."""
    if expected is Ellipsis or expected == "...":
        return None
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return f"{path}: expected an object, got {json.dumps(actual)[:200]}"
        for key, value in expected.items():
            if key not in actual:
                return f"{path}: no key {key!r} (keys: {sorted(actual)})"
            if problem := shape_mismatch(value, actual[key], f"{path}.{key}"):
                return problem
        return None
    if isinstance(expected, set):
        if not isinstance(actual, dict):
            return f"{path}: expected an object, got {json.dumps(actual)[:200]}"
        missing = sorted(k for k in expected if k is not Ellipsis and k not in actual)
        return f"{path}: no keys {missing} (keys: {sorted(actual)})" if missing else None
    if isinstance(expected, list):
        if not isinstance(actual, list):
            return f"{path}: expected a list, got {json.dumps(actual)[:200]}"
        items = [item for item in expected if item is not Ellipsis]
        if items and not actual:
            return f"{path}: expected a list like {expected!r}, got []"
        if not expected and actual:
            return f"{path}: expected [], got {json.dumps(actual)[:200]}"
        for k, (want, got) in enumerate(zip(items, actual, strict=False)):
            if problem := shape_mismatch(want, got, f"{path}[{k}]"):
                return problem
        return None
    kinds = {type(None): "null", bool: "boolean", int: "number", float: "number", str: "string"}
    want, got = kinds.get(type(expected)), kinds.get(type(actual))
    return None if want == got else f"{path}: expected a {want} like {expected!r}, got {json.dumps(actual)[:200]}"


def matches_with_ellipsis(stated: str, actual: str) -> bool:
    """doctest's ELLIPSIS: `...` in `stated` stands for any text."""
    pattern = ".*".join(re.escape(part) for part in stated.split("..."))
    return re.fullmatch(pattern, actual, re.S) is not None
