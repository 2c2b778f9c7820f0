"""``wovr rl``'s update loop: checkpoints, TensorBoard, twin-eval hook, and resuming after a stop or a kill.

The loop is exercised twice: in the DotWorld with a table policy (fast, checks a resumed run reproduces an
uninterrupted one exactly), and through ``run_imagination_rl`` with the real test-size models and files
(micro VLA, tiny world model, reward classifier, an episode dataset), stopped, resumed, then SIGKILLed in a
subprocess and resumed again.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from rl_helpers import TASKS, DotScorer, DotWorld, TaskTablePolicy, dot_episode
from safetensors.torch import load_file, save_file

from wovr_core.config import make_config
from wovr_core.errors import DataError
from wovr_core.rl.env import WorldModelEnv
from wovr_core.rl.run import CHECKPOINT_DIR, DONE_FILE, UPDATES_FILE, PolicyIO, RLRunConfig, train_updates
from wovr_core.rl.starts import start_from_arrays
from wovr_core.rl.trainer import GRPOTrainer


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


class DotStarts:
    """A StartSource: dots at random x, one of the two tasks."""

    def __init__(self, seed: int = 0):
        self.rng = np.random.default_rng(seed)

    def sample(self, groups: int):
        out = []
        for _ in range(groups):
            frames, actions = dot_episode(np.array([[self.rng.uniform(0.3, 0.7), 0.5]]))
            out.append(start_from_arrays(frames, actions, TASKS[int(self.rng.integers(2))]))
        return out

    def get_state(self):
        return self.rng.bit_generator.state

    def set_state(self, state):
        self.rng.bit_generator.state = state


def _table_io(policy: TaskTablePolicy) -> PolicyIO:
    def save(directory: Path) -> Path:
        directory.mkdir(parents=True, exist_ok=True)
        save_file({k: v.detach().contiguous() for k, v in policy.state_dict().items()},
                  str(directory / "model.safetensors"))
        (directory / "config.json").write_text("{}")
        return directory

    def load(directory: Path) -> None:
        policy.load_state_dict(load_file(str(directory / "model.safetensors")))

    return PolicyIO(save, load)


def _dot_run(out: Path, updates: int, stop_after=None, evaluate=None, eval_every=0):
    cfg = make_config(RLRunConfig, "tiny", {"rl.updates": updates, "rl.groups_per_update": 2,
                                            "rl.grpo.group_size": 4, "rl.env.max_steps": 32,
                                            "rl.trainer.minibatches": 2, "rl.trainer.lr": 0.05,
                                            "checkpoint_every": 2, "eval_every": eval_every})
    policy = TaskTablePolicy()
    env = WorldModelEnv(DotWorld(), DotScorer(), cfg.rl.env)
    trainer = GRPOTrainer(policy, cfg.rl.trainer, cfg.rl.grpo)
    summary = train_updates(cfg, trainer, env, DotStarts(), _table_io(policy), out, evaluate=evaluate,
                            stop_after=stop_after, progress=False)
    return summary, policy


def _history(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / UPDATES_FILE).read_text().splitlines()]


def test_a_stopped_run_resumes_at_its_update_and_matches_an_uninterrupted_one(tmp_path):
    whole, whole_policy = _dot_run(tmp_path / "whole", 5)
    assert whole["finished"] and whole["updates"] == 5
    assert [h["update"] for h in _history(tmp_path / "whole")] == [0, 1, 2, 3, 4]

    part, _ = _dot_run(tmp_path / "parts", 5, stop_after=3)
    assert part == {"updates": 3, "finished": False}
    state = json.loads((tmp_path / "parts" / CHECKPOINT_DIR / "state.json").read_text())
    assert state["update"] == 3 and (tmp_path / "parts" / CHECKPOINT_DIR / "optimizer.safetensors").exists()
    # A line of an update the checkpoint does not hold (as a kill after it leaves) is dropped on resume.
    with (tmp_path / "parts" / UPDATES_FILE).open("a") as f:
        f.write(json.dumps({"update": 3, "loss": 123.0}) + '\n{"update": 4, "lo')
    resumed, resumed_policy = _dot_run(tmp_path / "parts", 5)
    assert resumed["finished"] and [h["update"] for h in _history(tmp_path / "parts")] == [0, 1, 2, 3, 4]
    # Same starts, same samples, same optimizer moments: the same updates as the uninterrupted run.
    for a, b in zip(_history(tmp_path / "whole"), _history(tmp_path / "parts"), strict=True):
        assert a["loss"] == pytest.approx(b["loss"], abs=1e-6) and a["rollout/success_rate"] == b["rollout/success_rate"]
    for a, b in zip(whole_policy.parameters(), resumed_policy.parameters(), strict=True):
        torch.testing.assert_close(a, b)
    # TensorBoard events were written; a finished run is not run again.
    assert list((tmp_path / "parts" / "tb").glob("events.out.tfevents.*"))
    again, _ = _dot_run(tmp_path / "parts", 5)
    assert again["finished"] and len(_history(tmp_path / "parts")) == 5


def test_twin_evaluations_are_logged_at_their_interval_and_never_change_training(tmp_path):
    calls = []

    def evaluate(policy_dir: Path, update: int) -> dict[str, float]:
        assert (policy_dir / "model.safetensors").exists()
        calls.append(update)
        return {"success": 0.25 * update}

    _dot_run(tmp_path / "eval", 4, evaluate=evaluate, eval_every=2)
    _dot_run(tmp_path / "plain", 4)
    assert calls == [2, 4]
    evals = [json.loads(line) for line in (tmp_path / "eval" / "evals.jsonl").read_text().splitlines()]
    assert evals == [{"update": 2, "success": 0.5}, {"update": 4, "success": 1.0}]
    losses = [h["loss"] for h in _history(tmp_path / "eval")]
    assert losses == pytest.approx([h["loss"] for h in _history(tmp_path / "plain")], abs=1e-7)


def test_a_corrupt_checkpoint_is_a_clear_error(tmp_path):
    _dot_run(tmp_path / "run", 4, stop_after=2)
    (tmp_path / "run" / CHECKPOINT_DIR / "optimizer.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(DataError, match="optimizer.safetensors"):
        _dot_run(tmp_path / "run", 4)
    (tmp_path / "run" / CHECKPOINT_DIR / "state.json").write_text("{trunc")
    with pytest.raises(DataError, match="state.json"):
        _dot_run(tmp_path / "run", 4)


# ---- the real driver ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def real_inputs(tmp_path_factory):
    from vla_helpers import libero_like_stats, micro_config
    from wm_helpers import TASKS as WM_TASKS
    from wm_helpers import tiny_model_config, write_synthetic_dataset

    from wovr_core.policy.vla_policy import VLAPolicy
    from wovr_core.reward import RewardModelConfig, SuccessClassifier
    from wovr_core.world_model import WorldModel

    root = tmp_path_factory.mktemp("rl_inputs")
    write_synthetic_dataset(root / "data", n_episodes=4, length=24, size=32)
    WorldModel.build(tiny_model_config()).save(root / "wm")
    SuccessClassifier(make_config(RewardModelConfig, "tiny", {"image_size": 32, "tasks": list(WM_TASKS)})).save(
        root / "reward")
    VLAPolicy.create(micro_config(use_state=False), libero_like_stats(), tasks=list(WM_TASKS), device="cpu",
                     seed=0).save(root / "policy")
    return root


REAL_OVERRIDES = ["rl.updates=3", "rl.groups_per_update=1", "rl.grpo.group_size=2", "rl.env.max_steps=16",
                  "checkpoint_every=1", "device=cpu", "threads=1"]


def wovr_argv(*args: str) -> list[str]:
    """argv of the real ``wovr`` main() with the ``rl`` command's entry point (until pyproject lists it)."""
    script = ("import sys; from importlib.metadata import EntryPoint; import wovr_core.cli as cli; "
              "found = cli._discover(); "
              "found.setdefault('rl', EntryPoint('rl', 'wovr_core.rl.rl_cli:COMMAND', cli.ENTRY_POINT_GROUP)); "
              "cli._discover = lambda: found; sys.exit(cli.main(sys.argv[1:]))")
    return [sys.executable, "-c", script, *args]


def _real_args(root: Path, out: Path) -> dict:
    return {"policy_dir": root / "policy", "world_model_dir": root / "wm", "reward_dir": root / "reward",
            "data_roots": [root / "data"], "out_dir": out}


def test_the_real_driver_stops_resumes_and_writes_a_loadable_policy(real_inputs, tmp_path):
    from wovr_core.policy.vla_policy import load_vla_policy
    from wovr_core.rl.run import run_imagination_rl

    cfg = make_config(RLRunConfig, "tiny", REAL_OVERRIDES)
    out = tmp_path / "rl"
    first = run_imagination_rl(cfg, **_real_args(real_inputs, out), stop_after=1, progress=False)
    assert first == {"updates": 1, "finished": False}
    assert (out / CHECKPOINT_DIR / "policy" / "model.safetensors").exists()
    summary = run_imagination_rl(cfg, **_real_args(real_inputs, out), progress=False)
    assert summary["finished"] and summary["updates"] == 3
    assert [h["update"] for h in _history(out)] == [0, 1, 2]
    policy = load_vla_policy(out / "policy", device="cpu")
    assert all(torch.isfinite(p).all() for p in policy.model.parameters())


@pytest.mark.slow
def test_a_sigkilled_wovr_rl_resumes_from_its_last_checkpoint(real_inputs, tmp_path):
    """``wovr rl`` in a subprocess, SIGKILLed once it checkpointed, then run again to the end."""
    out = tmp_path / "rl"
    argv = [*wovr_argv("rl"), "--policy", str(real_inputs / "policy"),
            "--world-model", str(real_inputs / "wm"), "--reward", str(real_inputs / "reward"),
            "--data", str(real_inputs / "data"), "--out", str(out), "--no-progress",
            *[a for o in [*REAL_OVERRIDES[1:], "rl.updates=6"] for a in ("--set", o)]]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    state = out / CHECKPOINT_DIR / "state.json"
    while time.monotonic() < deadline and proc.poll() is None:
        if state.exists() and json.loads(state.read_text())["update"] >= 2:
            break
        time.sleep(0.05)
    assert proc.poll() is None, proc.communicate()[0].decode()[-2000:]
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = json.loads(state.read_text())["update"]
    assert 2 <= killed_at < 6 and not (out / DONE_FILE).exists()
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert f"resuming {out} at update {killed_at}" in done.stderr
    assert [h["update"] for h in _history(out)] == list(range(6))
    assert json.loads((out / DONE_FILE).read_text())["updates"] == 6


@pytest.mark.slow
@pytest.mark.sim
def test_pace_runs_its_five_stages_once_and_counts_the_new_twin_rollouts(real_inputs, tmp_path):
    """RL -> twin rollouts of the updated policy (LIBERO predicate labels) -> world model fine-tuned from the
    given one and reward model on old + new data -> RL again; a second call skips every stage."""
    pytest.importorskip("libero")
    from wm_helpers import tiny_train_overrides

    from wovr_core.data import EpisodeDataset
    from wovr_core.rl.pace import PACE_STAGES, run_pace

    overrides = [*REAL_OVERRIDES, "pace.stage1_updates=1", "pace.stage2_updates=1", "pace.rollouts_per_task=1",
                 "pace.tasks=[0]", "twin.max_steps=16", "real_budget=1",
                 *[f"pace.world_model.{o}" for o in tiny_train_overrides()],
                 "pace.reward.model.image_size=32", "pace.reward.max_steps=4", "pace.reward.val_every=2",
                 "pace.reward.batch_size=8", "pace.reward.threads=1"]
    cfg = make_config(RLRunConfig, "tiny", overrides)
    out = tmp_path / "pace"
    args = {k: v for k, v in _real_args(real_inputs, out).items()}
    result = run_pace(cfg, **args, progress=False)
    assert all((out / s / "done.json").exists() for s in PACE_STAGES)
    rollouts = EpisodeDataset(out / "rollouts" / "dataset")
    assert len(rollouts) == 1 and rollouts.meta(rollouts.episode_indices[0]).length == 17
    episode = rollouts.episode(rollouts.episode_indices[0])  # LIBERO's predicate per frame: true at most at the end
    predicate = np.asarray(episode.column("success"))
    assert predicate.shape == (17,) and predicate[:-1].sum() == 0 and predicate[-1] == float(episode.meta.success)
    assert json.loads((out / "budget.json").read_text())["spent"] == {"pace_rollouts": 1}
    assert result["real_trajectories"] == 1
    assert str(out / "rollouts" / "dataset") in result["stages"]["world_model"]["data"]
    assert (Path(result["policy"]) / "model.safetensors").exists()
    stamps = {s: (out / s / "done.json").stat().st_mtime_ns for s in PACE_STAGES}
    again = run_pace(cfg, **args, progress=False)
    assert again["policy"] == result["policy"]
    assert {s: (out / s / "done.json").stat().st_mtime_ns for s in PACE_STAGES} == stamps


def test_the_cli_parses_its_options_and_names_what_is_missing(tmp_path):
    import argparse

    from wovr_core.config import ConfigError
    from wovr_core.rl.rl_cli import COMMAND

    parser = argparse.ArgumentParser()
    COMMAND.add_arguments(parser)
    args = parser.parse_args(["--policy", str(tmp_path), "--out", str(tmp_path / "out"), "--data", "a", "--data", "b",
                              "--suite", "libero_spatial", "--pace", "--preset", "paper", "--set", "rl.updates=3"])
    assert args.data == ["a", "b"] and args.pace and not args.baseline_twin and args.preset == "paper"
    with pytest.raises(ConfigError, match="--world-model, --reward"):
        COMMAND.run(args)
    with pytest.raises(SystemExit):  # --pace and --baseline-twin exclude each other
        parser.parse_args(["--policy", "p", "--out", "o", "--pace", "--baseline-twin"])
    bad = parser.parse_args(["--policy", "p", "--out", "o", "--world-model", "w", "--reward", "r", "--data", "d",
                             "--set", "rl.grpo.group_sise=4"])
    with pytest.raises(ConfigError, match="group_size"):  # did-you-mean on a misspelt key
        COMMAND.run(bad)
