"""The episode index (``meta/episodes/chunk-*/file-*.parquet``) and the task table (``meta/tasks.parquet``).

The index is the commit point of the writer: an episode exists once its row is in an index file. Index files
are rewritten whole via temp file + rename (they hold at most ``episodes_per_index_file`` small rows), so a
crash leaves the previous version intact.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa

from wovr_core.errors import DataError

from . import layout
from ._fsio import read_parquet, write_parquet_atomic
from .layout import FileId
from .schema import EpisodeMeta, episodes_schema


def load_episodes(root: Path, cameras: Sequence[str]) -> list[EpisodeMeta]:
    """All committed episodes in index order. A corrupt index file makes the dataset unusable (DataError)."""
    episodes: list[EpisodeMeta] = []
    for path in layout.episodes_files(root):
        table = read_parquet(path)
        try:
            episodes += [EpisodeMeta.from_row(row, cameras) for row in table.to_pylist()]
        except (KeyError, TypeError, ValueError) as e:
            raise DataError(f"{path}: corrupt episode index ({type(e).__name__}: {e})") from e
    for position, ep in enumerate(episodes):
        if ep.episode_index != position:
            raise DataError(f"{root / layout.EPISODES_DIR}: episode index is not contiguous "
                            f"(row {position} holds episode {ep.episode_index})")
    return episodes


def write_episodes_file(root: Path, episodes: Sequence[EpisodeMeta], cameras: Sequence[str], fps: float,
                        episodes_per_file: int, durable: bool = True) -> Path:
    """Rewrite the index file that holds the last episode of ``episodes`` (the commit of that episode)."""
    last = episodes[-1].episode_index
    number = last // episodes_per_file
    first = number * episodes_per_file
    rows = [ep.to_row(fps) for ep in episodes[first:last + 1]]
    table = pa.Table.from_pylist(rows, schema=episodes_schema(cameras))
    path = layout.episodes_path(root, FileId.from_number(number, 1000))
    write_parquet_atomic(table, path, durable)
    return path


def load_tasks(root: Path) -> list[str]:
    """Tasks in ``task_index`` order (empty for a new dataset)."""
    path = root / layout.TASKS_PATH
    if not path.exists():
        return []
    table = read_parquet(path)
    try:
        pairs = sorted(zip(table.column("task_index").to_pylist(), table.column("task").to_pylist(), strict=True))
    except KeyError as e:
        raise DataError(f"{path}: corrupt task table ({e})") from e
    if [i for i, _ in pairs] != list(range(len(pairs))):
        raise DataError(f"{path}: task_index is not 0..{len(pairs) - 1}")
    return [task for _, task in pairs]


def write_tasks(root: Path, tasks: Sequence[str], durable: bool = True) -> None:
    table = pa.table({"task_index": pa.array(range(len(tasks)), pa.int64()), "task": pa.array(tasks, pa.string())})
    write_parquet_atomic(table, root / layout.TASKS_PATH, durable)

