"""The model registry: immutable versions and movable aliases in a store.

Layout of a store (a local folder or any fsspec URL):

    <store>/<name>/<version>/manifest.json   the manifest, written last: it marks the version complete
    <store>/<name>/<version>/...             the artifact files the runtime reads
    <store>/<name>/aliases.json              {"production": 3, "staging": 4}

Publishing copies the artifact into a hidden staging folder and then renames it into place (atomic
on a local file system); on object stores the manifest is written last. A version without a
manifest is never listed or served, so a crash mid-write never leaves a servable half-version.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fsspec

from sqlml.bridge.manifest import Manifest, check_name
from sqlml.errors import Conflict, ModelNotFound, NotFound, VersionNotFound

DEFAULT_ALIAS = "production"
# Remote stores have no cheap change marker: resolutions are reused this long (replicas see a
# promotion within it). Local stores revalidate on every call with one stat.
REMOTE_RESOLUTION_SECONDS = 2.0
RECENT_CHANGE_NS = 100_000_000
MANIFEST = "manifest.json"
ALIASES = "aliases.json"


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
        check_name(name)
        path = self._path(name, ALIASES)
        if not self.fs.exists(path):
            return {}
        with self.fs.open(path, "r") as fh:
            data: dict[str, int] = json.load(fh)
        return data

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
        aliases = self.aliases(ref.name)
        if ref.ref is None:
            return aliases.get(DEFAULT_ALIAS, versions[-1])
        if ref.ref.isdigit() and int(ref.ref) in versions:
            return int(ref.ref)
        if ref.ref == "latest":
            return versions[-1]
        if ref.ref in aliases:
            return aliases[ref.ref]
        raise VersionNotFound(ref.name, ref.ref, [*map(str, versions), *aliases])

    def manifest(self, name: str, version: int) -> Manifest:
        path = self._path(name, str(version), MANIFEST)
        if not self.fs.exists(path):
            raise VersionNotFound(name, str(version), [str(v) for v in self.versions(name)])
        with self.fs.open(path, "r") as fh:
            return Manifest.model_validate_json(fh.read())

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

    # -- writing ---------------------------------------------------------------------------

    def publish(self, manifest: Manifest, artifact_dir: str | os.PathLike[str], alias: str | None = None) -> Manifest:
        """Store `artifact_dir` as the next version of `manifest.name`; returns the stored manifest."""
        name = check_name(manifest.name)
        self.fs.makedirs(self._path(name), exist_ok=True)
        for _attempt in range(100):
            version = max(self.versions(name) + self._claimed_versions(name), default=0) + 1
            stored = manifest.model_copy(update={"version": version})
            if self._write_version(stored, Path(artifact_dir)):
                if alias:
                    self.set_alias(name, alias, version)
                return stored
        raise Conflict(f'could not allocate a new version for model "{name}"')

    def set_alias(self, name: str, alias: str, version: int) -> dict[str, int]:
        """Point `alias` at `version` (promote, roll forward or back)."""
        check_name(alias, "alias")
        if version not in self.versions(name):
            raise VersionNotFound(name, str(version), [str(v) for v in self.versions(name)])
        aliases = self.aliases(name)
        aliases[alias] = version
        self._write_json(self._path(name, ALIASES), aliases)
        return aliases

    def remove_alias(self, name: str, alias: str) -> dict[str, int]:
        aliases = self.aliases(name)
        if alias not in aliases:
            raise NotFound(f'model "{name}" has no alias "{alias}"', hint=f"aliases: {', '.join(aliases) or 'none'}")
        del aliases[alias]
        self._write_json(self._path(name, ALIASES), aliases)
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

    def _write_version(self, manifest: Manifest, artifact_dir: Path) -> bool:
        target = self._path(manifest.name, str(manifest.version))
        body = manifest.model_dump_json(indent=2)
        if self.is_local:
            staging = Path(self._path(manifest.name, f".staging-{uuid.uuid4().hex}"))
            shutil.copytree(artifact_dir, staging)
            (staging / MANIFEST).write_text(body)
            try:
                os.rename(staging, target)  # atomic; fails if another writer took this number
            except OSError:
                shutil.rmtree(staging, ignore_errors=True)
                return False
            return True
        if self.fs.exists(target):
            return False
        self.fs.put(str(artifact_dir).rstrip("/") + "/", target, recursive=True)
        with self.fs.open(f"{target}/{MANIFEST}", "w") as fh:  # written last: marks it complete
            fh.write(body)
        return True

    def _write_json(self, path: str, data: Any) -> None:
        body = json.dumps(data, indent=2, sort_keys=True)
        if self.is_local:
            tmp = f"{path}.{uuid.uuid4().hex}.tmp"
            Path(tmp).write_text(body)
            os.replace(tmp, path)
        else:
            with self.fs.open(path, "w") as fh:
                fh.write(body)
