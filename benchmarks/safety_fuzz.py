"""Safety fuzz: 10,000 random commands (normal, NaN/Inf, huge, stale, out-of-box, ...) through the envelope.

Every output is checked by an independent audit (``LimitAudit``) against every limit; every command
that would break a limit if sent raw must come out clipped or held. Prints a table and writes
``benchmarks/results/safety_fuzz.json``.

    python benchmarks/safety_fuzz.py [--commands 10000] [--seed 0]
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import time
from pathlib import Path

import numpy as np

from wovr_core.config import to_dict
from wovr_core.hardware.safety import LimitAudit, SafetyConfig, SafetyEnvelope
from wovr_core.types import RobotState

CATEGORIES = {  # name: probability
    "normal": 0.30, "jerky": 0.10, "huge": 0.10, "nan": 0.07, "inf": 0.06, "stale": 0.08,
    "future": 0.04, "out_of_box": 0.10, "source_lost": 0.06, "bad_state": 0.03, "wrong_shape": 0.03,
    "estop": 0.03,
}
RESULTS = Path(__file__).resolve().parent / "results" / "safety_fuzz.json"


def make_command(kind: str, rng: np.random.Generator, cfg: SafetyConfig, pos: np.ndarray, now: float,
                 nominal: np.ndarray):
    """Returns (action, state_pos, obs_time, source_time, estop) for one command of ``kind``.

    ``nominal`` is a smooth random walk (what a sane policy or operator sends); the faulty kinds
    start from it and break one thing.
    """
    action = nominal.copy()
    state_pos, obs_time, source_time, estop = pos, now - rng.uniform(0, cfg.stale_obs_s * 0.8), now, False
    if kind == "jerky":
        action = rng.choice([-1.0, 1.0], size=7)
    elif kind == "huge":
        action = rng.choice([-1.0, 1.0], size=7) * 10.0 ** rng.uniform(0.5, 300, size=7)
    elif kind == "nan":
        action[rng.integers(0, 7, size=rng.integers(1, 8))] = math.nan
    elif kind == "inf":
        action[rng.integers(0, 7)] = rng.choice([math.inf, -math.inf])
    elif kind == "stale":
        obs_time = now - rng.uniform(cfg.stale_obs_s + 1e-3, 30.0)
    elif kind == "future":
        obs_time = now + rng.uniform(cfg.future_obs_tolerance_s + 1e-3, 5.0)
    elif kind == "out_of_box":
        lo, hi = np.asarray(cfg.workspace_min), np.asarray(cfg.workspace_max)
        axis, side = rng.integers(0, 3), rng.choice([-1, 1])
        state_pos = pos.copy()
        wall = hi[axis] if side > 0 else lo[axis]
        state_pos[axis] = wall + side * rng.uniform(-0.01, 0.1)  # just inside to well outside
        action[axis] = side * rng.uniform(0.3, 5.0)
    elif kind == "source_lost":
        source_time = now - rng.uniform(cfg.source_timeout_s + 1e-3, 60.0)
    elif kind == "bad_state":
        state_pos = np.array([math.nan, 0.0, 0.3]) if rng.random() < 0.5 else None
    elif kind == "wrong_shape":
        action = rng.uniform(-1, 1, size=int(rng.choice([0, 3, 6, 8, 14])))
    elif kind == "estop":
        estop = True
    return action, state_pos, obs_time, source_time, estop


def raw_is_unsafe(kind, action, state_pos, obs_time, source_time, now, audit: LimitAudit, cfg) -> bool:
    """Would sending ``action`` unchanged break a limit? (hold conditions or an audit violation)."""
    if kind in ("stale", "future", "source_lost", "bad_state", "wrong_shape", "estop"):
        return True
    a = np.asarray(action, dtype=np.float64)
    if a.shape != (7,) or not np.all(np.isfinite(a)) or state_pos is None or not np.all(np.isfinite(state_pos)):
        return True
    if np.any(np.abs(a) > 1.0):
        return True
    return bool(copy.deepcopy(audit).violations(a.astype(np.float32), state_pos, held=False))


def run(n_commands: int, seed: int) -> dict:
    cfg = SafetyConfig()
    env = SafetyEnvelope(cfg)
    audit = LimitAudit(cfg)
    rng = np.random.default_rng(seed)
    names, probs = list(CATEGORIES), np.array(list(CATEGORIES.values()))
    stats = {k: {"n": 0, "ok": 0, "clipped": 0, "held": 0, "unsafe_raw": 0, "unsafe_sent_raw": 0,
                 "limit_violations": 0, "reasons": {}} for k in names}
    violation_examples: list[dict] = []
    pos = np.array([0.5, 0.0, 0.3])
    now = 1_000.0
    t0 = time.perf_counter()
    episode_left = 0
    for _ in range(n_commands):
        if episode_left == 0:  # new episode: robot somewhere in the box, envelope from rest
            episode_left = int(rng.integers(20, 200))
            pos = rng.uniform(cfg.workspace_min, cfg.workspace_max)
            env.reset()
            audit.reset()
            nominal = np.zeros(7)
            nominal[6] = -1.0
        episode_left -= 1
        now += cfg.dt
        nominal[:6] = np.clip(0.9 * nominal[:6] + rng.normal(0, 0.01, 6), -0.1, 0.1)
        if rng.random() < 0.02:
            nominal[6] = -nominal[6]
        kind = str(rng.choice(names, p=probs / probs.sum()))
        action, state_pos, obs_time, source_time, estop = make_command(kind, rng, cfg, pos, now, nominal)
        unsafe = raw_is_unsafe(kind, action, state_pos, obs_time, source_time, now, audit, cfg)
        if estop:
            env.estop("fuzz")
        state = None if state_pos is None else RobotState(
            t=now, joint_pos=np.zeros(7), ee_pos=np.asarray(state_pos), ee_quat=np.array([1.0, 0, 0, 0]),
            gripper_width=0.04)
        decision = env.filter(action, state, obs_time, now, source_time=source_time)
        if estop:
            env.reset_estop()
        s = stats[kind]
        s["n"] += 1
        s[decision.status] += 1
        for reason in decision.reasons:
            s["reasons"][reason] = s["reasons"].get(reason, 0) + 1
        s["unsafe_raw"] += int(unsafe)
        if unsafe and decision.status == "ok":
            s["unsafe_sent_raw"] += 1
        audit_pos = state_pos if state_pos is not None and np.all(np.isfinite(state_pos)) else pos
        problems = audit.violations(decision.action, audit_pos, decision.held)
        if problems:
            s["limit_violations"] += 1
            if len(violation_examples) < 10:
                violation_examples.append({"kind": kind, "problems": problems, "action": decision.action.tolist()})
        if not decision.held:
            pos = np.asarray(audit_pos, dtype=np.float64) + decision.action[:3].astype(np.float64) * cfg.translation_scale
    elapsed = time.perf_counter() - t0

    totals = {k: sum(s[k] for s in stats.values()) for k in next(iter(stats.values())) if k != "reasons"}
    unsafe = totals["unsafe_raw"]
    handled = unsafe - totals["unsafe_sent_raw"]
    return {
        "commands": n_commands,
        "seed": seed,
        "unsafe_commands": unsafe,
        "unsafe_clipped_or_held_pct": 100.0 * handled / max(unsafe, 1),
        "unsafe_sent_raw": totals["unsafe_sent_raw"],
        "limit_violations": totals["limit_violations"],
        "passed": totals["unsafe_sent_raw"] == 0 and totals["limit_violations"] == 0,
        "per_category": stats,
        "totals": totals,
        "violation_examples": violation_examples,
        "us_per_command": 1e6 * elapsed / n_commands,
        "config": to_dict(cfg),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commands", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    result = run(args.commands, args.seed)
    print(f"{'category':<12} {'n':>6} {'ok':>6} {'clipped':>8} {'held':>6} {'unsafe':>7} {'raw!':>5} {'viol':>5}")
    for name, s in result["per_category"].items():
        print(f"{name:<12} {s['n']:>6} {s['ok']:>6} {s['clipped']:>8} {s['held']:>6} {s['unsafe_raw']:>7} "
              f"{s['unsafe_sent_raw']:>5} {s['limit_violations']:>5}")
    print(f"{result['commands']} commands, {result['unsafe_commands']} unsafe: "
          f"{result['unsafe_clipped_or_held_pct']:.2f}% clipped or held, {result['unsafe_sent_raw']} sent raw, "
          f"{result['limit_violations']} outputs outside a limit ({result['us_per_command']:.1f} us/command)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    if not result["passed"]:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
