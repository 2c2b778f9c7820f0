"""Crash-safe file primitives: write to a hidden temp file, fsync, rename over the target, fsync the folder.

A reader (or a process restarted after SIGKILL) therefore sees either the old or the new file, never a torn one.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from wovr_core.errors import DataError

TMP_MARKER = ".tmp-"


def tmp_path_for(path: Path) -> Path:
    """Hidden sibling of ``path`` that the writer cleans up after a crash (same folder, so rename is atomic)."""
    return path.with_name(f".{path.name}{TMP_MARKER}{os.getpid()}")


def is_tmp_path(path: Path) -> bool:
    return path.name.startswith(".") and TMP_MARKER in path.name


def fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: Path) -> None:
    """Persist a rename: the folder entry must reach the disk too, not only the file's bytes."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:  # some filesystems do not allow opening folders; the rename is still atomic there
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def commit_file(tmp: Path, dst: Path, durable: bool = True) -> None:
    """Atomically move a fully written ``tmp`` onto ``dst``."""
    if durable:
        fsync_file(tmp)
    os.replace(tmp, dst)
    if durable:
        fsync_dir(dst.parent)


def atomic_write_bytes(path: Path, data: bytes, durable: bool = True) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = tmp_path_for(path)
    with open(tmp, "wb") as f:
        f.write(data)
    commit_file(tmp, path, durable)


def atomic_write_json(path: Path, obj: Any, durable: bool = True, sort_keys: bool = False) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=sort_keys) + "\n").encode(), durable)


def write_parquet_atomic(table: pa.Table, path: Path, durable: bool = True, row_group_size: int | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = tmp_path_for(path)
    pq.write_table(table, tmp, row_group_size=row_group_size)
    commit_file(tmp, path, durable)


def read_parquet(path: Path) -> pa.Table:
    """Whole parquet file; a missing, truncated or corrupt file raises DataError naming it."""
    if not path.exists():
        raise DataError(f"{path}: file is missing")
    try:
        return pq.read_table(path)
    except (OSError, pa.ArrowException) as e:
        raise DataError(f"{path}: unreadable parquet file ({e})") from e


def parquet_num_rows(path: Path) -> int:
    """Row count from the parquet footer (cheap); a missing or truncated file raises DataError naming it."""
    if not path.exists():
        raise DataError(f"{path}: file is missing")
    try:
        return pq.ParquetFile(path).metadata.num_rows
    except (OSError, pa.ArrowException) as e:
        raise DataError(f"{path}: unreadable parquet file ({e})") from e
