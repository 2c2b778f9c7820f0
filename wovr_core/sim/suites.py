"""LIBERO suites and tasks, read from LIBERO's own files (BDDL, task map, init states) without importing torch."""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from wovr_core.config import ConfigError, did_you_mean
from wovr_core.sim.libero_assets import libero_root, read_init_states

SUITES = ("libero_spatial", "libero_object", "libero_goal", "libero_10")
EXPERT_SUITES = ("libero_object", "libero_spatial")


@dataclass(frozen=True)
class GoalPredicate:
    """One conjunct of a BDDL goal, e.g. ``("In", "milk_1", "basket_1_contain_region")``."""

    relation: str
    args: tuple[str, ...]


@dataclass(frozen=True)
class TaskSpec:
    suite: str
    task_id: int
    name: str  # file stem, e.g. pick_up_the_milk_and_place_it_in_the_basket
    language: str  # the instruction the policy sees (LIBERO's: the name with spaces)
    bddl_file: Path
    init_states_file: Path
    goal: tuple[GoalPredicate, ...]
    objects_of_interest: tuple[str, ...]

    def init_states(self) -> np.ndarray:
        return read_init_states(self.init_states_file)


@lru_cache(maxsize=1)
def _task_map() -> dict[str, list[str]]:
    # The task order is data in LIBERO's benchmark package, whose __init__ imports torch; read it as source.
    source = (libero_root() / "benchmark" / "libero_suite_task_map.py").read_text()
    tree = ast.parse(source)
    for node in tree.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "libero_task_map":
            return ast.literal_eval(node.value)
    raise RuntimeError("libero_task_map not found in LIBERO's libero_suite_task_map.py")


def _check_suite(suite: str) -> None:
    if suite not in SUITES:
        raise ConfigError(f"unknown LIBERO suite {suite!r}; available: {list(SUITES)}." + did_you_mean(suite, SUITES))


def task_names(suite: str) -> list[str]:
    _check_suite(suite)
    return list(_task_map()[suite])


def _parse_goal(bddl_text: str) -> tuple[GoalPredicate, ...]:
    start = bddl_text.index("(:goal")
    goal = bddl_text[start:]
    return tuple(
        GoalPredicate(m.group(1), tuple(m.group(2).split()))
        for m in re.finditer(r"\((On|In|Open|Close|TurnOn|TurnOff)\s+([^()]+)\)", goal)
    )


def _parse_objects_of_interest(bddl_text: str) -> tuple[str, ...]:
    m = re.search(r"\(:obj_of_interest(.*?)\)", bddl_text, re.S)
    return tuple(m.group(1).split()) if m else ()


@lru_cache(maxsize=64)
def get_task(suite: str, task_id: int) -> TaskSpec:
    names = task_names(suite)
    if not 0 <= task_id < len(names):
        raise ConfigError(f"{suite} has tasks 0..{len(names) - 1}, got task {task_id}")
    name = names[task_id]
    root = libero_root()
    bddl = root / "bddl_files" / suite / f"{name}.bddl"
    text = bddl.read_text()
    return TaskSpec(
        suite=suite,
        task_id=task_id,
        name=name,
        language=name.replace("_", " "),
        bddl_file=bddl,
        init_states_file=root / "init_files" / suite / f"{name}.pruned_init",
        goal=_parse_goal(text),
        objects_of_interest=_parse_objects_of_interest(text),
    )


def list_tasks(suite: str) -> list[TaskSpec]:
    return [get_task(suite, i) for i in range(len(task_names(suite)))]
