"""Where each file of a dataset lives (LeRobot v3 naming), so writer, reader and validator agree."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

CODEBASE_VERSION = "v3.0"
FORMAT_VERSION = 1

INFO_PATH = "meta/info.json"
STATS_PATH = "meta/stats.json"
TASKS_PATH = "meta/tasks.parquet"
EPISODES_DIR = "meta/episodes"
LOCK_PATH = ".wovr.lock"
STAGING_DIR = ".staging"

DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
VIDEO_PATH = "videos/{camera}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
EPISODES_PATH = EPISODES_DIR + "/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"


@dataclass(frozen=True, order=True)
class FileId:
    """(chunk, file) address of one data/video file; files roll inside a chunk folder, chunks roll after
    ``files_per_chunk`` files (LeRobot's ``chunks_size``)."""

    chunk_index: int
    file_index: int

    @classmethod
    def from_number(cls, number: int, files_per_chunk: int) -> FileId:
        chunk, file = divmod(number, files_per_chunk)
        return cls(chunk, file)

    def number(self, files_per_chunk: int) -> int:
        return self.chunk_index * files_per_chunk + self.file_index


def data_path(root: Path, fid: FileId) -> Path:
    return root / DATA_PATH.format(chunk_index=fid.chunk_index, file_index=fid.file_index)


def video_path(root: Path, camera: str, fid: FileId) -> Path:
    return root / VIDEO_PATH.format(camera=camera, chunk_index=fid.chunk_index, file_index=fid.file_index)


def episodes_path(root: Path, fid: FileId) -> Path:
    return root / EPISODES_PATH.format(chunk_index=fid.chunk_index, file_index=fid.file_index)


def episodes_files(root: Path) -> list[Path]:
    """Episode-index files in episode order (the zero-padded names sort correctly)."""
    return sorted((root / EPISODES_DIR).glob("chunk-*/file-*.parquet"))
