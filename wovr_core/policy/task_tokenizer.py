"""Task instruction -> fixed-length token ids, with a ``tokenizers`` tokenizer saved as ``tokenizer.json``.

The tiny preset trains a word-level vocabulary on the task strings of its dataset; the paper preset uses the
pretrained language model's own ``tokenizer.json``. Either way the checkpoint carries the file it was trained with.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

from wovr_core.errors import DataError

TOKENIZER_FILENAME = "tokenizer.json"
PAD_TOKEN = "[PAD]"
UNK_TOKEN = "[UNK]"
# Pad tokens of common pretrained tokenizers; padded positions are masked out, any id in range would do.
_PAD_CANDIDATES = (PAD_TOKEN, "<pad>", "<|endoftext|>", "<|end_of_text|>", "</s>")


def train_word_tokenizer(tasks: Iterable[str]) -> Tokenizer:
    """A lowercase word-level vocabulary over ``tasks``; unseen words map to ``[UNK]``."""
    tokenizer = Tokenizer(models.WordLevel(unk_token=UNK_TOKEN))
    tokenizer.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    trainer = trainers.WordLevelTrainer(special_tokens=[PAD_TOKEN, UNK_TOKEN], min_frequency=1)
    tokenizer.train_from_iterator(sorted(set(tasks)), trainer)  # sorted: the same vocabulary for any task order
    return tokenizer


class TaskTokenizer:
    """Encodes an instruction to ``max_length`` ids plus a validity mask (truncated, then right-padded)."""

    def __init__(self, tokenizer: Tokenizer, max_length: int):
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.pad_id = next((i for t in _PAD_CANDIDATES if (i := tokenizer.token_to_id(t)) is not None), 0)
        self._cache: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.get_vocab_size(with_added_tokens=True)

    def encode(self, task: str) -> tuple[np.ndarray, np.ndarray]:
        """``task`` -> (ids int64 (max_length,), mask bool (max_length,)); a serving loop repeats one task,
        so results are cached."""
        if not isinstance(task, str):
            raise TypeError(f"task must be a string, got {type(task).__name__}")
        if task not in self._cache:
            ids = self.tokenizer.encode(task.strip()).ids[: self.max_length]
            padded = np.full(self.max_length, self.pad_id, dtype=np.int64)
            padded[: len(ids)] = ids
            mask = np.zeros(self.max_length, dtype=bool)
            mask[: len(ids)] = True
            if len(self._cache) > 1024:
                self._cache.clear()
            self._cache[task] = (padded, mask)
        ids, mask = self._cache[task]
        return ids.copy(), mask.copy()

    def save(self, directory: str | Path) -> Path:
        path = Path(directory) / TOKENIZER_FILENAME
        tmp = path.with_name(path.name + ".tmp")
        self.tokenizer.save(str(tmp))
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: str | Path, max_length: int) -> TaskTokenizer:
        """Read ``tokenizer.json`` (or a directory holding one)."""
        path = Path(path).expanduser()
        if path.is_dir():
            path = path / TOKENIZER_FILENAME
        if not path.is_file():
            raise DataError(f"{path}: tokenizer file not found")
        try:
            tokenizer = Tokenizer.from_file(str(path))
        except Exception as e:  # the Rust parser raises a bare Exception on malformed files
            raise DataError(f"{path}: not a valid tokenizers file ({e})") from None
        return cls(tokenizer, max_length)
