"""StageCache: a finished stage is skipped on a rerun, a forgotten one runs again, a damaged record is named."""

from __future__ import annotations

import pytest

from wovr_core.errors import DataError
from wovr_core.pipeline.stage_cache import StageCache


def test_finished_stages_are_skipped_and_forgotten_ones_run_again(tmp_path):
    calls = []

    def stage():
        calls.append(len(calls))
        return {"value": len(calls)}

    first = StageCache(tmp_path, log=lambda _: None)
    assert first.run("train", stage)["value"] == 1
    rerun = StageCache(tmp_path, log=lambda _: None)  # a new process reads stages.json
    assert "train" in rerun and rerun.run("train", stage)["value"] == 1 and calls == [0]
    assert rerun.forget("train")["value"] == 1
    assert "train" not in StageCache(tmp_path, log=lambda _: None)  # forgetting is written at once
    assert rerun.run("train", stage)["value"] == 2 and calls == [0, 1]
    assert rerun.forget("never-ran") is None


def test_a_damaged_record_is_reported_with_its_path(tmp_path):
    (tmp_path / StageCache.FILENAME).write_text("{not json")
    with pytest.raises(DataError, match="stages.json"):
        StageCache(tmp_path)
