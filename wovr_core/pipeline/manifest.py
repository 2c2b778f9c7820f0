"""Stage manifests: ``runs/<run_id>/<stage>/manifest.json``, written atomically when a stage is done.

A manifest is the stage's commit point: a stage with a manifest whose status is ``done`` never runs again
in that run. It records what the stage read (sha256 of each input), the config it ran with, its outputs,
metrics, duration and attempts.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

HASH_BLOCK = 1 << 20


def _update_file(digest, path: Path) -> None:
    with path.open("rb") as f:
        while block := f.read(HASH_BLOCK):
            digest.update(block)


def _visible_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*")
                  if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts))


def sha256_path(path: str | Path) -> str:
    """sha256 of a file, or of a folder's files (relative names + bytes; hidden files skipped).

    An episode dataset is hashed by its metadata and per-frame tables, and its videos by name and size:
    videos are append-only behind the episode index, and reading gigabytes of mp4 to hash them every run
    would cost more than the check is worth.
    """
    path = Path(path)
    digest = hashlib.sha256()
    if path.is_file():
        _update_file(digest, path)
        return digest.hexdigest()
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: cannot hash a missing input")
    is_dataset = (path / "meta" / "info.json").is_file()
    for file in _visible_files(path):
        rel = file.relative_to(path).as_posix()
        digest.update(rel.encode() + b"\0")
        if is_dataset and rel.startswith("videos/"):
            digest.update(str(file.stat().st_size).encode())
        else:
            _update_file(digest, file)
        digest.update(b"\0")
    return digest.hexdigest()
