"""Model versions on disk: ``<data_dir>/rankers/<version>/{model.txt,meta.json}`` and an
``active.json`` pointer (with the activation history, for rollback) swapped atomically.

A model can ship with the project (``default_model``, version name ``default``): it
serves while no model was ever activated in this data directory. Once an operator
activates, rolls back or deactivates, the pointer decides.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from relevance.errors import NotFoundError

MODEL_FILE, META_FILE, ACTIVE_FILE = "model.txt", "meta.json", "active.json"


@dataclass(frozen=True)
class ModelVersion:
    name: str
    created_at: str
    is_active: bool
    meta: dict[str, Any]


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

    def versions(self) -> list[ModelVersion]:
        active = self.active_version()
        found = []
        if self.bundled is not None:
            meta = json.loads((self.bundled / META_FILE).read_text(encoding="utf-8"))
            found.append(ModelVersion(DEFAULT_VERSION, meta.get("created_at", ""), active == DEFAULT_VERSION, meta))
        for meta_path in sorted(self.root.glob(f"*/{META_FILE}")):
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            name = meta_path.parent.name
            found.append(ModelVersion(name, meta.get("created_at", ""), name == active, meta))
        return found

    def _pointer(self) -> dict[str, Any]:
        try:
            return json.loads(self.active_path.read_text(encoding="utf-8"))
        except FileNotFoundError:  # never activated here: the bundled model, if any
            return {"version": DEFAULT_VERSION if self.bundled else None, "history": []}

    def active_version(self) -> str | None:
        return self._pointer().get("version")

    def activate(self, version: str) -> str | None:
        """Make ``version`` the served model; returns the one it replaces."""
        if not (self.model_dir(version) / MODEL_FILE).is_file():
            raise NotFoundError(f"no model version {version!r} under {self.root}", field="version")
        pointer = self._pointer()
        previous = pointer.get("version")
        history = (
            [*pointer.get("history", []), previous] if previous and previous != version else pointer.get("history", [])
        )
        self.root.mkdir(parents=True, exist_ok=True)
        _atomic_write(
            self.active_path,
            json.dumps({"version": version, "history": history[-20:], "activated_at": datetime.now(UTC).isoformat()}),
        )
        return previous

    def rollback(self) -> str:
        """Re-activate the model that was active before the current one."""
        pointer = self._pointer()
        history = [v for v in pointer.get("history", []) if (self.model_dir(v) / MODEL_FILE).is_file()]
        if not history:
            raise NotFoundError("no earlier model was active; nothing to roll back to", field="version")
        previous = history[-1]
        self.root.mkdir(parents=True, exist_ok=True)
        _atomic_write(
            self.active_path,
            json.dumps({"version": previous, "history": history[:-1], "activated_at": datetime.now(UTC).isoformat()}),
        )
        return previous

    def deactivate(self) -> None:
        pointer = self._pointer()
        if pointer.get("version"):
            history = [*pointer.get("history", []), pointer["version"]]
            _atomic_write(self.active_path, json.dumps({"version": None, "history": history[-20:]}))
