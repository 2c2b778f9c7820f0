"""The MuJoCo twin (LIBERO scenes) and scripted experts that use privileged simulator state.

Importing this package is cheap: MuJoCo, robosuite and LIBERO load when a twin is first built.
"""

from wovr_core.sim.experts import ExpertConfig, PickPlaceExpert
from wovr_core.sim.suites import EXPERT_SUITES, SUITES, TaskSpec, get_task, list_tasks
from wovr_core.sim.twin import LiberoTwin, StepResult, TwinConfig
from wovr_core.sim.vec_env import TwinPool

__all__ = [
    "EXPERT_SUITES", "SUITES", "ExpertConfig", "LiberoTwin", "PickPlaceExpert", "StepResult", "TaskSpec",
    "TwinConfig", "TwinPool", "get_task", "list_tasks",
]
