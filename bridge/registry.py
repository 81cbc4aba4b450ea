"""The model registry: immutable versions and movable aliases in a store.

Layout of a store (a local folder or any fsspec URL):

    <store>/<name>/<version>/manifest.json   the manifest, written last: it marks the version complete
    <store>/<name>/<version>/...             the artifact files the runtime reads
    <store>/<name>/aliases.json              {"production": 3, "staging": 4}

Publishing copies the artifact into a hidden staging folder and then renames it into place (atomic
on a local file system); on object stores the manifest is written last. A version without a
manifest is never listed or served, so a crash mid-write never leaves a servable half-version.

Faults stay with the model they belong to:

- A manifest that cannot be read or parsed raises `StoreCorrupt` (a `ModelLoadError`) for that
  version only: the host then serves the newest older version that loads, and the listing shows
  the model with its error while every other model lists as usual.
- A broken `aliases.json` fails resolution of that model's default reference and of its aliases
  with `StoreCorrupt`; it never falls back to another version, because serving a version nobody
  promoted is worse than a clear error. `name:3` and `name:latest` need no aliases and still
  resolve. Every file found corrupt is reported once to the `watch_corruption` listeners (the
  bridge counts them in `sqlml_store_corrupt_entries`).
- A write the store refuses (full, read-only) raises `StoreUnwritable` and leaves neither a
  staging folder nor a `.tmp` file. A publish whose alias cannot be written takes its new version
  back, so a failed publish leaves the store as it was.
- Debris of crashed writers (`.staging-*` folders, `*.tmp` files) is removed when a `Registry` is
  created on a local store, but only once nothing in it changed for `STALE_DEBRIS_SECONDS`: a
  publisher on another replica sharing the store may be writing it right now.

`latest` is reserved (`sqlml.naming.RESERVED_ALIASES`): it always means the newest version, so no
alias may take the name.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import fsspec
from pydantic import StrictInt, TypeAdapter, ValidationError

from sqlml.bridge.manifest import Manifest, check_alias, check_name
from sqlml.errors import (
    Conflict,
    ModelNotFound,
    NotFound,
    SqlmlError,
    StoreCorrupt,
    StoreUnwritable,
    VersionNotFound,
)
from sqlml.naming import LATEST

log = logging.getLogger("sqlml.registry")

T = TypeVar("T")

DEFAULT_ALIAS = "production"
# Remote stores have no cheap change marker: resolutions are reused this long (replicas see a
# promotion within it). Local stores revalidate on every call with one stat.
REMOTE_RESOLUTION_SECONDS = 2.0
RECENT_CHANGE_NS = 100_000_000
MANIFEST = "manifest.json"
ALIASES = "aliases.json"
STAGING_PREFIX = ".staging-"
TMP_SUFFIX = ".tmp"
# Debris younger than this may belong to a publisher that is still writing (on another replica).
STALE_DEBRIS_SECONDS = 300.0
TAKEN = frozenset({errno.EEXIST, errno.ENOTEMPTY})  # rename onto a version another writer published

_ALIAS_FILE = TypeAdapter(dict[str, StrictInt])
CorruptionListener = Callable[[str, str], None]  # (model, store file relative to the store root)


class InvalidStoreFile(ValueError):
    """Raised by a parser of a store file: what is wrong with a file that parses."""


@dataclass(frozen=True)
class ModelRef:
    """A parsed model reference: `name`, `name:3` or `name:staging`."""

    name: str
    ref: str | None = None

    @staticmethod
    def parse(text: str) -> ModelRef:
        name, _, ref = str(text).partition(":")
        check_name(name)
        return ModelRef(name, ref or None)

    def __str__(self) -> str:
        return self.name if self.ref is None else f"{self.name}:{self.ref}"


class Registry:
    """Versions and aliases of every model in one store."""

    def __init__(self, url: str | os.PathLike[str]):
        self.url = str(url)
        self.fs, self.root = fsspec.core.url_to_fs(self.url)
        self.is_local = self.fs.protocol in ("file", "local") or "file" in tuple(self.fs.protocol)
        self.fs.makedirs(self.root, exist_ok=True)
        self._resolved: dict[ModelRef, tuple[int, int]] = {}
        self._corrupt: dict[str, str] = {}  # store file -> what is wrong with it, as last read
        self._corruption_listeners: list[CorruptionListener] = []
        if self.is_local:
            remove_stale_debris(Path(self.root))

    # -- reading ---------------------------------------------------------------------------

    def names(self) -> list[str]:
        """Names of models with at least one complete version."""
        out = []
        for entry in self.fs.ls(self.root, detail=False):
            name = entry.rstrip("/").rsplit("/", 1)[-1]
            if not name.startswith(".") and self.versions(name):
                out.append(name)
        return sorted(out)

    def versions(self, name: str) -> list[int]:
        """Complete versions of `name`, oldest first."""
        check_name(name)
        path = self._path(name)
        if not self.fs.exists(path):
            return []
        found = []
        for entry in self.fs.ls(path, detail=False):
            tail = entry.rstrip("/").rsplit("/", 1)[-1]
            if tail.isdigit() and self.fs.exists(f"{entry.rstrip('/')}/{MANIFEST}"):
                found.append(int(tail))
        return sorted(found)

    def aliases(self, name: str) -> dict[str, int]:
        """The aliases of `name`; `StoreCorrupt` when its `aliases.json` cannot be read."""
        check_name(name)
        file = f"{name}/{ALIASES}"
        hint = (
            f"restore {file} (an object of alias to version number), or delete it and set the aliases "
            f'again; "{name}:<version>" and "{name}:{LATEST}" still resolve'
        )
        aliases = self._read(
            file, _ALIAS_FILE.validate_json, lambda problem: StoreCorrupt(name, file, problem, hint=hint)
        )
        return {} if aliases is None else aliases

    def resolve(self, ref: ModelRef | str) -> int:
        """The version a reference points at: explicit number, alias, else production, else latest."""
        ref = ModelRef.parse(ref) if isinstance(ref, str) else ref
        generation = self._generation(ref.name)
        cached = self._resolved.get(ref)
        if generation is not None and cached is not None and cached[0] == generation:
            return cached[1]
        version = self._resolve_uncached(ref)
        if generation is not None:
            self._resolved[ref] = (generation, version)
        return version

    def _generation(self, name: str) -> int | None:
        """A value that changes whenever versions or aliases of `name` may have changed, or None
        when a cached resolution must not be trusted. Scoring asks for the version of every
        DuckDB vector and every bridge request, so this must cost a stat, not a listing."""
        if not self.is_local:
            return int(time.monotonic() / REMOTE_RESOLUTION_SECONDS)
        try:
            changed = os.stat(self._path(name)).st_mtime_ns  # publishing and alias writes rename into it
        except OSError:
            return None
        if time.time_ns() - changed < RECENT_CHANGE_NS:  # within the file system's clock granularity
            return None
        return changed

    def _resolve_uncached(self, ref: ModelRef) -> int:
        versions = self.versions(ref.name)
        if not versions:
            raise ModelNotFound(ref.name, self.names())
        if ref.ref is not None and ref.ref.isdigit() and int(ref.ref) in versions:
            return int(ref.ref)
        if ref.ref == LATEST:
            return versions[-1]
        aliases = self.aliases(ref.name)  # only now: `name:3` and `name:latest` survive a broken file
        if ref.ref is None:
            return aliases.get(DEFAULT_ALIAS, versions[-1])
        if ref.ref in aliases:
            return aliases[ref.ref]
        raise VersionNotFound(ref.name, ref.ref, [*map(str, versions), *aliases])

    def manifest(self, name: str, version: int) -> Manifest:
        """The manifest of one version; `StoreCorrupt` when it cannot be read or does not validate."""
        file = f"{name}/{version}/{MANIFEST}"
        hint = "older versions keep serving; publish the model again or restore the file"

        def corrupt(problem: str) -> StoreCorrupt:
            return StoreCorrupt(name, file, problem, version=version, hint=hint)

        def parse(body: bytes) -> Manifest:
            manifest = Manifest.model_validate_json(body)
            if (manifest.name, manifest.version) != (name, version):
                raise InvalidStoreFile(f'names model "{manifest.name}" version {manifest.version}')
            return manifest

        manifest = self._read(file, parse, corrupt)
        if manifest is None:
            raise VersionNotFound(name, str(version), [str(v) for v in self.versions(name)])
        return manifest

    def describe(self, ref: ModelRef | str) -> Manifest:
        ref = ModelRef.parse(ref) if isinstance(ref, str) else ref
        return self.manifest(ref.name, self.resolve(ref))

    def local_path(self, name: str, version: int, cache_dir: str | os.PathLike[str] | None = None) -> Path:
        """A local folder holding the version's files (downloaded once for remote stores)."""
        remote = self._path(name, str(version))
        if self.is_local:
            return Path(remote)
        cache = Path(cache_dir or tempfile.gettempdir()) / "sqlml-model-cache" / name / str(version)
        if not (cache / MANIFEST).exists():
            staging = cache.with_name(f".{version}-{uuid.uuid4().hex}")
            self.fs.get(remote.rstrip("/") + "/", str(staging), recursive=True)
            staging.rename(cache)
        return cache

    # -- store faults ----------------------------------------------------------------------

    def watch_corruption(self, listener: CorruptionListener) -> None:
        """Call `listener(model, file)` once for each store file found corrupt (again after it
        read well in between)."""
        self._corruption_listeners.append(listener)

    def corrupt_files(self) -> dict[str, str]:
        """Store files found corrupt when last read, with what is wrong with each."""
        return dict(self._corrupt)

    def _read(self, file: str, parse: Callable[[bytes], T], corrupt: Callable[[str], StoreCorrupt]) -> T | None:
        """`parse` of a store file's bytes; None when the file does not exist."""
        try:
            with self.fs.open(self._path(file), "rb") as fh:
                value = parse(fh.read())
        except FileNotFoundError:
            return None
        except ValidationError as exc:
            raise self._found_corrupt(file, corrupt(_validation_problem(exc))) from None
        except InvalidStoreFile as exc:
            raise self._found_corrupt(file, corrupt(str(exc))) from None
        except OSError as exc:
            raise self._found_corrupt(file, corrupt(f"could not be read: {exc.strerror or exc}")) from None
        self._corrupt.pop(file, None)
        return value

    def _found_corrupt(self, file: str, error: StoreCorrupt) -> StoreCorrupt:
        if self._corrupt.get(file) != error.message:
            self._corrupt[file] = error.message
            log.warning("corrupt store entry: %s", error.message)
            for listener in self._corruption_listeners:
                listener(file.split("/", 1)[0], file)
        return error

    # -- writing ---------------------------------------------------------------------------

    def publish(self, manifest: Manifest, artifact_dir: str | os.PathLike[str], alias: str | None = None) -> Manifest:
        """Store `artifact_dir` as the next version of `manifest.name`; returns the stored manifest."""
        name = check_name(manifest.name)
        if alias:
            check_alias(alias)  # before anything is written
        with self._writing(f'model "{name}"', name):
            self.fs.makedirs(self._path(name), exist_ok=True)
        for _attempt in range(100):
            version = max(self.versions(name) + self._claimed_versions(name), default=0) + 1
            stored = manifest.model_copy(update={"version": version})
            if self._write_version(stored, Path(artifact_dir)):
                if alias:
                    self._promote_published(stored, alias)
                return stored
        raise Conflict(f'could not allocate a new version for model "{name}"')

    def set_alias(self, name: str, alias: str, version: int) -> dict[str, int]:
        """Point `alias` at `version` (promote, roll forward or back)."""
        check_alias(alias)
        if version not in self.versions(name):
            raise VersionNotFound(name, str(version), [str(v) for v in self.versions(name)])
        aliases = self.aliases(name)
        aliases[alias] = version
        self._write_aliases(name, aliases)
        return aliases

    def remove_alias(self, name: str, alias: str) -> dict[str, int]:
        aliases = self.aliases(name)
        if alias not in aliases:
            raise NotFound(f'model "{name}" has no alias "{alias}"', hint=f"aliases: {', '.join(aliases) or 'none'}")
        del aliases[alias]
        self._write_aliases(name, aliases)
        return aliases

    def rollback(self, name: str, alias: str = DEFAULT_ALIAS) -> int:
        """Move `alias` to the newest version older than the one it points at now."""
        current = self.resolve(ModelRef(name, alias)) if alias in self.aliases(name) else self.versions(name)[-1]
        older = [v for v in self.versions(name) if v < current]
        if not older:
            raise Conflict(f'model "{name}" has no version older than {current} to roll back to')
        self.set_alias(name, alias, older[-1])
        return older[-1]

    # -- internals -------------------------------------------------------------------------

    def _path(self, *parts: str) -> str:
        return "/".join([self.root.rstrip("/"), *parts])

    def _claimed_versions(self, name: str) -> list[int]:
        """Version folders that exist without a manifest (being written, or left by a crash)."""
        out = []
        for entry in self.fs.ls(self._path(name), detail=False):
            tail = entry.rstrip("/").rsplit("/", 1)[-1]
            if tail.isdigit():
                out.append(int(tail))
        return out

    @contextmanager
    def _writing(self, what: str, file: str) -> Iterator[None]:
        """Turn the store's refusal to write into `StoreUnwritable`, naming what was not written."""
        try:
            yield
        except OSError as exc:
            raise StoreUnwritable(what, file, exc) from None

    def _promote_published(self, stored: Manifest, alias: str) -> None:
        """Point `alias` at a just-published version, or take the version back: a publish that
        fails leaves the store as it was (otherwise `latest` could serve what was never promoted)."""
        try:
            self.set_alias(stored.name, alias, stored.version)
        except SqlmlError:
            self._withdraw(stored.name, stored.version)
            raise

    def _withdraw(self, name: str, version: int) -> None:
        target = self._path(name, str(version))
        try:
            if self.is_local:  # renamed away first, so it leaves the listing at once
                hidden = self._path(name, f"{STAGING_PREFIX}{uuid.uuid4().hex}")
                os.rename(target, hidden)
                shutil.rmtree(hidden, ignore_errors=True)  # what stays is debris, removed at start-up
            else:
                self.fs.rm(target, recursive=True)
        except OSError as exc:
            log.warning('could not take back version %s of model "%s": %s', version, name, exc)

    def _write_version(self, manifest: Manifest, artifact_dir: Path) -> bool:
        """Write one version; False when another writer took its number first."""
        file = f"{manifest.name}/{manifest.version}"
        with self._writing(f'version {manifest.version} of model "{manifest.name}"', file):
            if self.is_local:
                return self._write_local_version(manifest, artifact_dir)
            return self._write_remote_version(manifest, artifact_dir)

    def _write_local_version(self, manifest: Manifest, artifact_dir: Path) -> bool:
        target = Path(self._path(manifest.name, str(manifest.version)))
        staging = target.with_name(f"{STAGING_PREFIX}{uuid.uuid4().hex}")
        try:
            _copy_tree(artifact_dir, staging)
            _write_durably(staging / MANIFEST, manifest.model_dump_json(indent=2))
            os.rename(staging, target)  # atomic; fails if another writer took this number
        except OSError as exc:
            shutil.rmtree(staging, ignore_errors=True)
            if exc.errno in TAKEN:
                return False
            raise
        return True

    def _write_remote_version(self, manifest: Manifest, artifact_dir: Path) -> bool:
        target = self._path(manifest.name, str(manifest.version))
        if self.fs.exists(target):
            return False
        try:
            self.fs.put(str(artifact_dir).rstrip("/") + "/", target, recursive=True)
            with self.fs.open(f"{target}/{MANIFEST}", "w") as fh:  # written last: marks it complete
                fh.write(manifest.model_dump_json(indent=2))
        except OSError:
            self._withdraw(manifest.name, manifest.version)
            raise
        return True

    def _write_aliases(self, name: str, aliases: dict[str, int]) -> None:
        path = self._path(name, ALIASES)
        body = json.dumps(aliases, indent=2, sort_keys=True)
        with self._writing(f'the alias file of model "{name}"', f"{name}/{ALIASES}"):
            if not self.is_local:
                with self.fs.open(path, "w") as fh:
                    fh.write(body)
                return
            tmp = Path(f"{path}.{uuid.uuid4().hex}{TMP_SUFFIX}")
            try:
                _write_durably(tmp, body)
                os.replace(tmp, path)
            except OSError:
                tmp.unlink(missing_ok=True)
                raise


def _validation_problem(error: ValidationError) -> str:
    """What is wrong with a store file, in words: bad JSON, or the first schema mismatch."""
    first = error.errors(include_url=False, include_context=False, include_input=False)[0]
    if first["type"] == "json_invalid":
        return f"is not valid JSON: {first['msg'].removeprefix('Invalid JSON: ')}"
    where = ".".join(str(part) for part in first["loc"])
    return f"is not valid: {where + ': ' if where else ''}{first['msg']}"


def _copy_tree(source: Path, target: Path) -> None:
    """`shutil.copytree`, but the first failure raises with its errno: copytree gathers failures
    into one `shutil.Error`, and a full disk must be told apart from a lost race."""
    target.mkdir()
    for entry in source.iterdir():
        if entry.is_dir():
            _copy_tree(entry, target / entry.name)
        else:
            shutil.copy2(entry, target / entry.name)


def _write_durably(path: Path, text: str) -> None:
    """Write and fsync before the caller renames it into place: a crash then leaves the old file
    or the new one, never a truncated one."""
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())


# -- debris of crashed writers -----------------------------------------------------------------


def remove_stale_debris(root: Path, older_than_s: float = STALE_DEBRIS_SECONDS) -> list[Path]:
    """Remove `.staging-*` folders and `*.tmp` files in model folders that nothing touched for
    `older_than_s`; returns what was removed. Best effort: a read-only store keeps its debris."""
    removed = []
    horizon = time.time() - older_than_s
    try:
        model_dirs = [d for d in root.iterdir() if d.is_dir() and not d.name.startswith(".")]
        for model_dir in model_dirs:
            for entry in model_dir.iterdir():
                if _is_debris(entry.name) and _newest_change(entry) < horizon and _remove(entry):
                    removed.append(entry)
    except OSError as exc:
        log.warning("could not clean the store's debris in %s: %s", root, exc)
    if removed:
        log.info("removed %d stale staging entries from %s", len(removed), root)
    return removed


def _is_debris(name: str) -> bool:
    return name.startswith(STAGING_PREFIX) or name.endswith(TMP_SUFFIX)


def _newest_change(path: Path) -> float:
    """The newest mtime in `path`'s tree: a writer copying one large file changes only that file."""
    try:
        newest = path.stat().st_mtime
        if path.is_dir():
            for folder, _dirs, files in os.walk(path):
                for child in [folder, *(os.path.join(folder, f) for f in files)]:
                    newest = max(newest, os.stat(child).st_mtime)
    except OSError:
        return time.time()  # vanished or unreadable meanwhile: someone is at work, leave it
    return newest


def _remove(path: Path) -> bool:
    try:
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()
    except OSError as exc:
        log.warning("could not remove store debris %s: %s", path, exc)
        return False
    return True
