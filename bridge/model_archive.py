"""How a model trained elsewhere travels to the bridge: one file, or a folder packed as a tar or zip.

`pack_artifact` is the client's side (`sqlml models import --bridge`): a file is sent as it is, a
folder (a transformers `save_pretrained` folder) as an uncompressed tar of its files. `unpack_body`
is the bridge's side (`POST /v1/models/{name}/import`): it writes the body into a fresh folder and
returns the path of the model in it, the file or the folder an archive holds.

An archive is read defensively, since its author may not be trusted: only regular files and
folders (no links, devices or absolute paths, no `..`), at most `MAX_ENTRIES` entries, and at most
`max_bytes` unpacked in all, counted from what is written rather than what the headers claim.
"""

from __future__ import annotations

import io
import re
import tarfile
import zipfile
from pathlib import Path, PurePosixPath
from typing import IO

from sqlml.errors import BadRequest, PayloadTooLarge

MAX_ENTRIES = 10_000
_CHUNK = 1024 * 1024
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")
PICKLE_MAGIC = b"\x80"
ZIP_MAGIC = b"PK\x03\x04"
GZIP_MAGIC = b"\x1f\x8b"


def pack_artifact(path: Path) -> tuple[bytes, str]:
    """The request body for `path` and the file name that tells the bridge what it is."""
    if path.is_file():
        return path.read_bytes(), path.name
    if not path.is_dir():
        raise BadRequest(f"{path} is neither a file nor a folder")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for entry in sorted(path.rglob("*")):
            if entry.is_file() and not entry.is_symlink():
                archive.add(entry, arcname=entry.relative_to(path).as_posix(), recursive=False)
    return buffer.getvalue(), f"{path.name or 'model'}.tar"


def safe_file_name(name: str | None) -> str:
    """A client's file name reduced to its last part in plain characters ('' when none is left)."""
    tail = PurePosixPath((name or "").replace("\\", "/")).name
    return _SAFE_NAME.sub("_", tail).strip("._")[:120]


def is_archive(body: bytes, filename: str) -> bool:
    lowered = filename.lower()
    if lowered.endswith((".tar", ".tar.gz", ".tgz", ".zip")):
        return True
    return body.startswith((ZIP_MAGIC, GZIP_MAGIC)) or body[257:262] == b"ustar"


def sniffed_name(body: bytes) -> str:
    """A file name for a body sent without one, from its first bytes."""
    if body.startswith(b'{"') or body.lstrip()[:2] == b'{"':
        return "model.json"  # XGBoost JSON
    if body.startswith(b"{"):
        return "model.ubj"  # XGBoost's UBJSON also opens with an object marker
    if body.startswith(PICKLE_MAGIC):
        return "model.pkl"
    return "model"


def unpack_body(body: bytes, filename: str | None, folder: Path, max_bytes: int) -> Path:
    """The model a request body holds, written under `folder` (which must exist and be empty)."""
    if not body:
        raise BadRequest("empty request body", hint="send the model file, or a tar or zip of its folder")
    name = safe_file_name(filename)
    if not is_archive(body, name):
        target = folder / (name or sniffed_name(body))
        target.write_bytes(body)
        return target
    unpacked = folder / "unpacked"
    unpacked.mkdir()
    if body.startswith(ZIP_MAGIC):
        _unzip(body, unpacked, max_bytes)
    else:
        _untar(body, unpacked, max_bytes)
    return _model_in(unpacked)


def _model_in(folder: Path) -> Path:
    """The folder itself, its one subfolder (an archive of `mymodel/`), or its one file."""
    entries = [e for e in folder.iterdir() if not e.name.startswith(".")]
    if not entries:
        raise BadRequest("the archive holds no files")
    if len(entries) == 1 and entries[0].is_dir() and not (folder / "config.json").exists():
        return _model_in(entries[0])
    if len(entries) == 1 and entries[0].is_file() and entries[0].name != "config.json":
        return entries[0]
    return folder


def _member_path(folder: Path, name: str) -> Path:
    parts = PurePosixPath(name.replace("\\", "/")).parts
    if not parts or name.startswith(("/", "\\")) or ".." in parts or any(":" in p for p in parts):
        raise BadRequest(f"the archive holds an unsafe path {name[:200]!r}", hint="archive the folder's files only")
    return folder.joinpath(*parts)


class _Budget:
    def __init__(self, max_bytes: int):
        self.left = max_bytes
        self.max_bytes = max_bytes

    def copy(self, source: IO[bytes], target: Path) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        with target.open("wb") as sink:
            while chunk := source.read(_CHUNK):
                self.left -= len(chunk)
                if self.left < 0:
                    raise PayloadTooLarge(
                        f"the archive unpacks to more than {self.max_bytes} bytes",
                        hint="the bridge's limit is max_upload_bytes (SQLML_MAX_UPLOAD_BYTES)",
                    )
                sink.write(chunk)


def _untar(body: bytes, folder: Path, max_bytes: int) -> None:
    budget = _Budget(max_bytes)
    try:
        with tarfile.open(fileobj=io.BytesIO(body), mode="r:*") as archive:
            for count, member in enumerate(archive):
                if count >= MAX_ENTRIES:
                    raise BadRequest(f"the archive holds more than {MAX_ENTRIES} entries")
                target = _member_path(folder, member.name)
                if member.isdir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                if not member.isfile():
                    raise BadRequest(f"the archive holds {member.name[:200]!r}, which is not a plain file")
                source = archive.extractfile(member)
                if source is not None:
                    budget.copy(source, target)
    except (tarfile.TarError, EOFError, OSError, ValueError) as exc:
        raise BadRequest(f"the body is not a readable tar archive ({type(exc).__name__})") from None


def _unzip(body: bytes, folder: Path, max_bytes: int) -> None:
    budget = _Budget(max_bytes)
    try:
        with zipfile.ZipFile(io.BytesIO(body)) as archive:
            members = archive.infolist()
            if len(members) > MAX_ENTRIES:
                raise BadRequest(f"the archive holds more than {MAX_ENTRIES} entries")
            for member in members:
                target = _member_path(folder, member.filename)
                if member.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                if (member.external_attr >> 16) & 0o170000 not in (0, 0o100000):  # links and devices
                    raise BadRequest(f"the archive holds {member.filename[:200]!r}, which is not a plain file")
                with archive.open(member) as source:
                    budget.copy(source, target)
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, NotImplementedError) as exc:
        raise BadRequest(f"the body is not a readable zip archive ({type(exc).__name__})") from None
