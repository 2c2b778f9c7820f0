"""Action binning and the instruction tokenizer of the VLA."""

from __future__ import annotations

import numpy as np
import pytest
from vla_helpers import TASKS

from wovr_core.errors import DataError
from wovr_core.policy.action_tokenizer import ActionTokenizer
from wovr_core.policy.task_tokenizer import UNK_TOKEN, TaskTokenizer, train_word_tokenizer


def test_action_tokens_round_trip_within_half_a_bin():
    tok = ActionTokenizer(chunk_size=8, action_dim=7, num_bins=256)
    actions = np.random.default_rng(0).uniform(-1, 1, size=(5, 8, 7))
    tokens = tok.encode(actions)
    assert tokens.shape == (5, 56) and tokens.dtype == np.int64
    assert tokens.min() >= 0 and tokens.max() <= 255
    decoded = tok.decode(tokens)
    assert decoded.shape == (5, 8, 7)
    assert np.abs(decoded - actions).max() <= 1.0 / 256 + 1e-6
    # Step-major flattening: token t * 7 + d is dim d of step t.
    assert tokens[0, 3 * 7 + 6] == tok.encode(actions[:1])[0, 27]
    np.testing.assert_array_equal(tokens.reshape(5, 8, 7)[:, 3, 6], tokens[:, 27])


def test_action_tokens_clip_out_of_range_values_to_edge_bins():
    tok = ActionTokenizer(chunk_size=1, action_dim=3, num_bins=256)
    tokens = tok.encode(np.array([[-7.0, 1.0, 3.0]]))
    np.testing.assert_array_equal(tokens, [0, 255, 255])
    np.testing.assert_allclose(tok.decode(np.array([0, 128, 255])).ravel(), [-1 + 1 / 256, 1 / 256, 1 - 1 / 256])


def test_action_tokenizer_rejects_bad_input():
    tok = ActionTokenizer(chunk_size=8, action_dim=7)
    with pytest.raises(ValueError, match="shape"):
        tok.encode(np.zeros((7, 8)))
    with pytest.raises(ValueError, match="NaN"):
        tok.encode(np.full((8, 7), np.nan))
    with pytest.raises(ValueError, match=r"\[0, 256\)"):
        tok.decode(np.full(56, 256))
    with pytest.raises(ValueError, match="integer"):
        tok.decode(np.zeros(56, dtype=np.float32))


def test_task_tokenizer_pads_masks_truncates_and_maps_unknown_words(tmp_path):
    tokenizer = TaskTokenizer(train_word_tokenizer(TASKS), max_length=6)
    ids, mask = tokenizer.encode("Put the black bowl")
    assert ids.shape == (6,) and mask.tolist() == [True] * 4 + [False] * 2
    assert (ids[~mask] == tokenizer.pad_id).all()
    # Lower-cased and word-level: the same ids as the lower-case words.
    np.testing.assert_array_equal(ids[:4], tokenizer.encode("put the black bowl")[0][:4])
    unknown, unknown_mask = tokenizer.encode("grab the zebra")
    assert unknown[2] == tokenizer.tokenizer.token_to_id(UNK_TOKEN) and unknown_mask[:3].all()
    long_ids, long_mask = tokenizer.encode(" ".join(["pick"] * 50))
    assert long_mask.all() and long_ids.shape == (6,)
    # Training on the same tasks in another order gives the same vocabulary.
    assert train_word_tokenizer(reversed(TASKS)).get_vocab() == tokenizer.tokenizer.get_vocab()

    tokenizer.save(tmp_path)
    loaded = TaskTokenizer.load(tmp_path, max_length=6)
    for task in [*TASKS, "grab the zebra"]:
        np.testing.assert_array_equal(loaded.encode(task)[0], tokenizer.encode(task)[0])


def test_task_tokenizer_load_errors_name_the_file(tmp_path):
    with pytest.raises(DataError, match="tokenizer.json"):
        TaskTokenizer.load(tmp_path, max_length=8)
    (tmp_path / "tokenizer.json").write_text("{not json")
    with pytest.raises(DataError, match=str(tmp_path / "tokenizer.json")):
        TaskTokenizer.load(tmp_path, max_length=8)
    with pytest.raises(TypeError):
        TaskTokenizer(train_word_tokenizer(TASKS), 8).encode(None)
