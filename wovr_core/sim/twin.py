"""The MuJoCo twin: a LIBERO scene behind WoVR's observation/action contract.

Observation dict (the same keys the policy server takes)::

    "observation.images.agentview"  (S, S, 3) uint8, upright
    "observation.images.wrist"      (S, S, 3) uint8, upright
    "observation.state"             (8,) float32: eef pos, eef axis-angle, gripper finger qpos
    "task"                          str, LIBERO's instruction
    "timestamp"                     float, sim time in seconds

Privileged state (object poses, for scripted experts only) comes from :meth:`LiberoTwin.privileged`.
Action: 7-D delta end-effector in [-1, 1] (OSC_POSE; gripper -1 open, +1 closed).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import numpy as np

from wovr_core.config import ConfigError
from wovr_core.sim.libero_assets import prepare_libero
from wovr_core.sim.suites import SUITES, TaskSpec, get_task
from wovr_core.types import ACTION_DIM, DUMMY_ACTION, quat_to_axis_angle

log = logging.getLogger(__name__)

CAMERA_NAMES = {"agentview": "agentview", "wrist": "robot0_eye_in_hand"}

# Episode step limits used by the LIBERO evaluations of OpenVLA(-OFT) and the WoVR reference.
MAX_STEPS = {"libero_spatial": 220, "libero_object": 280, "libero_goal": 300, "libero_10": 520}


@dataclass
class TwinConfig:
    """Which LIBERO task to load and how to render it."""

    PRESETS: ClassVar[dict] = {"tiny": {}, "paper": {"image_size": 256}}

    suite: str = "libero_object"
    task_id: int = 0
    image_size: int = 128
    cameras: tuple[str, ...] = ("agentview", "wrist")
    render: bool = True  # False: physics only (expert checks, privileged rollouts)
    # Shadows, reflections and MSAA cost most of the CPU render time and carry no task information.
    render_quality: Literal["fast", "full"] = "fast"
    control_hz: int = 20
    max_steps: int = 0  # 0: the suite's standard limit (MAX_STEPS)
    settle_steps: int = 10  # dummy steps after reset so objects come to rest (as LIBERO evaluations do)
    seed: int = 0
    extra: dict = field(default_factory=dict)

    def validate(self) -> None:
        if self.suite not in SUITES:
            raise ConfigError(f"twin.suite must be one of {list(SUITES)}, got {self.suite!r}")
        unknown = [c for c in self.cameras if c not in CAMERA_NAMES]
        if unknown:
            raise ConfigError(f"unknown twin cameras {unknown}; available: {list(CAMERA_NAMES)}")
        if not 16 <= self.image_size <= 1024:
            raise ConfigError(f"twin.image_size must be in [16, 1024], got {self.image_size}")

    @property
    def step_limit(self) -> int:
        return self.max_steps or MAX_STEPS[self.suite]


@dataclass
class StepResult:
    obs: dict[str, Any]
    success: bool
    done: bool  # success or the step limit reached
    step: int


class LiberoTwin:
    """One LIBERO environment (single task) with deterministic resets from LIBERO's fixed init states."""

    def __init__(self, config: TwinConfig | None = None):
        self.config = config or TwinConfig()
        self.config.validate()
        self.task: TaskSpec = get_task(self.config.suite, self.config.task_id)
        self._init_states = self.task.init_states()
        self._env = self._make_env()
        self._rng = np.random.default_rng(self.config.seed)
        self._steps = 0
        self._success = False
        self.init_state_index: int | None = None
        self._robot = self._env.robots[0]

    # -- construction -------------------------------------------------------------------------------
    def _make_env(self):
        prepare_libero()
        from libero.libero.envs.env_wrapper import ControlEnv

        cfg = self.config
        env = ControlEnv(
            bddl_file_name=str(self.task.bddl_file),
            # We render the cameras ourselves: only the ones asked for, at most once per step.
            use_camera_obs=False,
            has_offscreen_renderer=cfg.render,
            camera_names=[CAMERA_NAMES[c] for c in cfg.cameras] or ["agentview"],
            camera_heights=cfg.image_size,
            camera_widths=cfg.image_size,
            control_freq=cfg.control_hz,
            horizon=10_000,  # episode limits are ours (step_limit), not robosuite's
            ignore_done=True,
            hard_reset=False,  # reloading the XML every reset costs seconds; init states fix the layout
        )
        env.seed(cfg.seed)
        env.reset()
        if cfg.render:
            self._configure_renderer(env)
        return env

    def _configure_renderer(self, env) -> None:
        import mujoco

        sim = env.sim
        ctx = sim._render_context_offscreen
        if ctx is None:
            raise RuntimeError("robosuite created no offscreen render context")
        if self.config.render_quality == "fast":
            model = sim.model._model
            model.vis.quality.offsamples = 0  # no MSAA
            model.light_castshadow[:] = 0
            ctx.scn.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = 0
            ctx.scn.flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = 0
            ctx.scn.flags[mujoco.mjtRndFlag.mjRND_SKYBOX] = 0
            ctx.gl_ctx.make_current()
            ctx.con.free()
            ctx._set_mujoco_context_and_buffers()  # MSAA setting takes effect on a new context

    # -- episode ------------------------------------------------------------------------------------
    @property
    def num_init_states(self) -> int:
        return int(self._init_states.shape[0])

    def reset(self, init_state_index: int | None = None) -> dict[str, Any]:
        """Reset to LIBERO's fixed init state ``init_state_index`` (random one if None), then settle."""
        if init_state_index is None:
            init_state_index = int(self._rng.integers(self.num_init_states))
        if not 0 <= init_state_index < self.num_init_states:
            raise ValueError(f"init_state_index must be in [0, {self.num_init_states}), got {init_state_index}")
        self._env.reset()
        self._env.set_init_state(self._init_states[init_state_index])
        self.init_state_index = init_state_index
        return self._settle()

    def reset_random_layout(self, seed: int, jitter_m: float = 0.015, jitter_yaw_deg: float = 15.0) -> dict[str, Any]:
        """Reset to a new layout: one of LIBERO's fixed init states with every movable object shifted by up to
        ``jitter_m`` and turned by up to ``jitter_yaw_deg``. Demonstrations collected this way do not replay
        the exact init states that evaluation uses. (LIBERO's own placement sampler returns its regions'
        centres, so it gives no variety.)"""
        rng = np.random.default_rng(seed)
        self._env.reset()
        self._env.set_init_state(self._init_states[int(rng.integers(self.num_init_states))])
        data = self._env.sim.data
        for obj in self._env.env.objects_dict.values():
            for joint in obj.joints:
                qpos = np.array(data.get_joint_qpos(joint))
                if qpos.shape != (7,):  # only free joints carry a pose
                    continue
                qpos[:2] += rng.uniform(-jitter_m, jitter_m, size=2)
                yaw = np.deg2rad(rng.uniform(-jitter_yaw_deg, jitter_yaw_deg))
                turn = np.array([np.cos(yaw / 2), 0.0, 0.0, np.sin(yaw / 2)])  # wxyz about world z
                qpos[3:] = _quat_mul_wxyz(turn, qpos[3:])
                data.set_joint_qpos(joint, qpos)
        self._env.sim.forward()
        self.init_state_index = None
        return self._settle()

    def _settle(self) -> dict[str, Any]:
        for _ in range(self.config.settle_steps):
            self._env.step(DUMMY_ACTION)
        self._steps = 0
        self._success = bool(self._env.check_success())
        return self.observation()

    def step(self, action: np.ndarray) -> StepResult:
        action = np.asarray(action, dtype=np.float64).reshape(-1)
        if action.shape != (ACTION_DIM,):
            raise ValueError(f"action must have {ACTION_DIM} values, got shape {action.shape}")
        if not np.all(np.isfinite(action)):
            raise ValueError(f"action must be finite, got {action}")
        self._env.step(np.clip(action, -1.0, 1.0))
        self._steps += 1
        self._success = bool(self._env.check_success())
        done = self._success or self._steps >= self.config.step_limit
        return StepResult(self.observation(), self._success, done, self._steps)

    @property
    def success(self) -> bool:
        return self._success

    @property
    def steps(self) -> int:
        return self._steps

    # -- observation --------------------------------------------------------------------------------
    def render(self, camera: str) -> np.ndarray:
        if not self.config.render:
            raise RuntimeError("this twin was created with render=False")
        size = self.config.image_size
        image = self._env.sim.render(width=size, height=size, camera_name=CAMERA_NAMES[camera])
        return np.ascontiguousarray(image[::-1])  # OpenGL rows start at the bottom

    def state(self) -> np.ndarray:
        data = self._env.sim.data
        eef_pos = np.array(data.site_xpos[self._robot.eef_site_id])
        return np.concatenate([eef_pos, quat_to_axis_angle(self._eef_quat()), self._gripper_qpos()]).astype(np.float32)

    def _eef_quat(self) -> np.ndarray:
        import mujoco

        xmat = np.array(self._env.sim.data.site_xmat[self._robot.eef_site_id], dtype=np.float64)
        wxyz = np.zeros(4)
        mujoco.mju_mat2Quat(wxyz, xmat)
        return np.array([wxyz[1], wxyz[2], wxyz[3], wxyz[0]])

    def _gripper_qpos(self) -> np.ndarray:
        return np.array(self._env.sim.data.qpos[self._robot._ref_gripper_joint_pos_indexes], dtype=np.float64)

    def joint_positions(self) -> np.ndarray:
        return np.array(self._env.sim.data.qpos[self._robot._ref_joint_pos_indexes], dtype=np.float64)

    def observation(self) -> dict[str, Any]:
        obs: dict[str, Any] = {
            "observation.state": self.state(),
            "task": self.task.language,
            "timestamp": float(self._env.sim.data.time),
        }
        if self.config.render:
            for cam in self.config.cameras:
                obs[f"observation.images.{cam}"] = self.render(cam)
        return obs

    def privileged(self) -> dict[str, Any]:
        """Simulator-only state for scripted experts: end effector and every object's pose."""
        env = self._env.env
        data = self._env.sim.data
        objects = {}
        for name, body_id in env.obj_body_id.items():
            objects[name] = {
                "pos": np.array(data.body_xpos[body_id]),
                "quat_wxyz": np.array(data.body_xquat[body_id]),
            }
        return {
            "eef_pos": np.array(data.site_xpos[self._robot.eef_site_id]),
            "eef_quat": self._eef_quat(),
            "gripper_qpos": self._gripper_qpos(),
            "objects": objects,
            "goal": self.task.goal,
        }

    def get_sim_state(self) -> np.ndarray:
        return np.array(self._env.get_sim_state())

    def set_sim_state(self, state: np.ndarray) -> dict[str, Any]:
        self._env.set_init_state(state)
        return self.observation()

    def close(self) -> None:
        env, self._env = getattr(self, "_env", None), None
        if env is not None:
            try:
                env.close()
            except Exception:  # robosuite's EGL teardown can raise at exit; nothing to recover
                log.debug("ignoring error while closing LIBERO env", exc_info=True)

    def __enter__(self) -> LiberoTwin:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _quat_mul_wxyz(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    w1, x1, y1, z1 = a
    w2, x2, y2, z2 = b
    return np.array([
        w1 * w2 - x1 * x2 - y1 * y2 - z1 * z2,
        w1 * x2 + x1 * w2 + y1 * z2 - z1 * y2,
        w1 * y2 - x1 * z2 + y1 * w2 + z1 * x2,
        w1 * z2 + x1 * y2 - y1 * x2 + z1 * w2,
    ])
