"""Model versions on disk: ``<data_dir>/rankers/<version>/{model.txt,meta.json}`` and an
``active.json`` pointer (with the activation history, for rollback) swapped atomically.

A model can ship with the project (``default_model``, version name ``default``): it
serves while no model was ever activated in this data directory. Once an operator
activates, rolls back or deactivates, the pointer decides.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout
from pydantic import BaseModel, ValidationError

from relevance.errors import ModelError, NotFoundError

log = logging.getLogger(__name__)
MODEL_FILE, META_FILE, ACTIVE_FILE = "model.txt", "meta.json", "active.json"
POINTER_LOCK_SECONDS = 30.0


@dataclass(frozen=True)
class ModelVersion:
    name: str
    created_at: str
    is_active: bool
    meta: dict[str, Any]
    problem: str | None = None  # why its metadata cannot be read


class _Pointer(BaseModel):
    """``active.json``: the served version (None: the fused order) and the states before it,
    oldest first (None there too: a rollback can return to serving no model)."""

    version: str | None
    history: list[str | None] = []


def read_meta(version: str, directory: Path) -> dict[str, Any]:
    """A version's metadata; ModelError naming the file when it is missing or unreadable."""
    path = directory / META_FILE
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        if not directory.is_dir():
            raise ModelError(f"model {version}'s directory {directory} is missing", field="version") from None
        raise ModelError(f"model {version} has no {path} (an interrupted save)", field="version") from None
    except (OSError, ValueError) as exc:  # ValueError: not UTF-8, or not JSON
        raise ModelError(f"model {version}'s {path} is unreadable: {exc}", field="version") from exc
    if not isinstance(meta, dict):
        raise ModelError(f"model {version}'s {path} does not hold a JSON object", field="version")
    return meta


def model_checksum(model_text: str) -> str:
    return hashlib.sha256(model_text.encode("utf-8")).hexdigest()


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(text, encoding="utf-8")
    temporary.replace(path)


DEFAULT_VERSION = "default"


class ModelRegistry:
    def __init__(self, root: Path, bundled: Path | None = None) -> None:
        self.root = root
        self.bundled = bundled if bundled is not None and (bundled / MODEL_FILE).is_file() else None

    @property
    def active_path(self) -> Path:
        return self.root / ACTIVE_FILE

    def model_dir(self, version: str) -> Path:
        if version == DEFAULT_VERSION and self.bundled is not None:
            return self.bundled
        return self.root / version

    def save(self, model_text: str, meta: dict[str, Any], files: dict[str, str] | None = None) -> str:
        """A new version directory; ``files``: more of its files by name. The metadata goes last:
        a directory without it is an interrupted save."""
        created = datetime.now(UTC)
        version = f"ltr-{created.strftime('%Y%m%dT%H%M%S%f')}"
        directory = self.model_dir(version)
        directory.mkdir(parents=True)
        (directory / MODEL_FILE).write_text(model_text, encoding="utf-8")
        for name, text in (files or {}).items():
            (directory / name).write_text(text, encoding="utf-8")
        meta = {
            **meta,
            "version": version,
            "created_at": created.isoformat(),
            "model_sha256": model_checksum(model_text),
        }
        _atomic_write(directory / META_FILE, json.dumps(meta, indent=2))
        return version

    def names(self) -> list[str]:
        """Every version: the bundled one, then each directory under the root (readable or not)."""
        found = [DEFAULT_VERSION] if self.bundled is not None else []
        if self.root.is_dir():
            found += sorted(d.name for d in self.root.iterdir() if d.is_dir() and not d.name.startswith("."))
        return found

    def versions(self) -> list[ModelVersion]:
        """Every version with its metadata; one that cannot be read is listed with its problem."""
        try:
            active = self.active_version()
        except ModelError:  # the versions are still worth listing; the pointer's problem is its own
            active = None
        found = []
        for name in self.names():
            try:
                meta, problem = read_meta(name, self.model_dir(name)), None
            except ModelError as exc:
                meta, problem = {}, exc.detail
            found.append(ModelVersion(name, str(meta.get("created_at", "")), name == active, meta, problem))
        return found

    def _pointer(self) -> dict[str, Any]:
        try:
            text = self.active_path.read_text(encoding="utf-8")
        except FileNotFoundError:  # never activated here: the bundled model, if any
            return {"version": DEFAULT_VERSION if self.bundled else None, "history": []}
        except (OSError, ValueError) as exc:
            problem = f"is unreadable ({exc})"
        else:
            try:
                return _Pointer.model_validate_json(text).model_dump()
            except ValidationError as exc:
                problem = f"is not a model pointer ({exc.errors()[0]['msg']})"
        raise ModelError(
            f"the active-model pointer {self.active_path} {problem}; `relevance models activate VERSION` writes a new one"
        )

    def _pointer_to_replace(self) -> dict[str, Any]:
        """The pointer, or an empty one where it is unreadable: writing a new one repairs it."""
        try:
            return self._pointer()
        except ModelError:
            log.warning("replacing the unreadable %s; its activation history is lost", self.active_path)
            return {"version": None, "history": []}

    def active_version(self) -> str | None:
        return self._pointer().get("version")

    @contextmanager
    def _changing_pointer(self) -> Iterator[None]:
        """Held while the pointer is read, changed and written: two operators activating at once
        must not both extend the history they read and lose one of its entries."""
        self.root.mkdir(parents=True, exist_ok=True)
        try:
            with FileLock(self.root / f".{ACTIVE_FILE}.lock", timeout=POINTER_LOCK_SECONDS):
                yield
        except Timeout:
            raise ModelError(
                f"another activation has held {self.active_path} for over {POINTER_LOCK_SECONDS:.0f} s; try again",
                field="version",
            ) from None

    def activate(self, version: str) -> str | None:
        """Make ``version`` the served model; returns the one it replaces.

        Only a version of this registry (not a path) whose files load and match this
        build's features is activated; otherwise ModelError says why.
        """
        if version not in self.names():
            raise NotFoundError(f"no model version {version!r} under {self.root} (see models list)", field="version")
        self._check_loads(version, "not activated")
        with self._changing_pointer():
            pointer = self._pointer_to_replace()
            previous = pointer.get("version")
            history = pointer.get("history", [])
            history = [*history, previous] if previous != version else history
            _atomic_write(
                self.active_path,
                json.dumps(
                    {"version": version, "history": history[-20:], "activated_at": datetime.now(UTC).isoformat()}
                ),
            )
        return previous

    def _check_loads(self, version: str, refusal: str) -> None:
        """ModelError, prefixed with ``refusal``, unless ``version`` loads and matches this build."""
        from reranker.model import RankerModel  # here: reranker.model imports this module

        try:
            RankerModel.load(version, self.model_dir(version))
        except ModelError as exc:
            raise ModelError(f"{refusal}: {exc.detail}", field="version") from exc

    def rollback(self) -> str | None:
        """Return to the state before the current one: the model active before it (checked as
        activate checks it), or None where no model was active then (the fused order)."""
        with self._changing_pointer():
            pointer = self._pointer()
            current = pointer.get("version")
            history = [v for v in pointer.get("history", []) if v is None or (self.model_dir(v) / MODEL_FILE).is_file()]
            while history and history[-1] == current:  # pointers written before None was recorded
                history.pop()
            if not history:
                raise NotFoundError("no earlier model was active; nothing to roll back to", field="version")
            previous = history[-1]
            if previous is not None:
                self._check_loads(previous, f"not rolled back to {previous}")
            _atomic_write(
                self.active_path,
                json.dumps(
                    {"version": previous, "history": history[:-1], "activated_at": datetime.now(UTC).isoformat()}
                ),
            )
        return previous

    def deactivate(self) -> None:
        with self._changing_pointer():
            try:
                pointer = self._pointer()
            except ModelError:  # an unreadable pointer: writing an empty one is the repair
                pointer = self._pointer_to_replace()
            else:
                if not pointer.get("version"):
                    return  # nothing active, and the pointer reads: nothing to write
            history = [*pointer.get("history", []), *([pointer["version"]] if pointer.get("version") else [])]
            _atomic_write(self.active_path, json.dumps({"version": None, "history": history[-20:]}))
