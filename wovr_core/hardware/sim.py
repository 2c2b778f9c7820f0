"""Devices backed by the MuJoCo twin: cameras and an arm that share ONE ``LiberoTwin`` per process.

Registered as camera type ``sim`` and arm type ``sim``. The arm steps the twin (one control step per
``send_action``); every step renders the twin's cameras once and hands the frames to the ``SimCamera``
objects, so images, robot state and timestamps always describe the same instant.

Both device kinds read the twin's settings from ``options["twin"]`` (``TwinConfig`` keys) and
``options["world"]`` (``SimWorldOptions`` keys); devices of one process must agree on them, because a
camera looking at a different twin than the arm it films would be a silent bug::

    twin = {"suite": "libero_object", "task_id": 0, "image_size": 64}
    arm = make_arm(ArmConfig(type="sim", options={"twin": twin}))
    cam = make_camera(CameraConfig(type="sim", name="agentview", width=64, height=64, options={"twin": twin}))

Time: with ``world.clock="wall"`` (default) frames and states are stamped with the host clock when the
step finished, which is what the ROS-free control loop compares against. With ``world.clock="sim"`` they
are stamped with the simulation time (``time_origin + steps / control_hz``), which the ROS ``sim_node``
publishes on ``/clock`` because rendering may run slower than real time.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np

from wovr_core.config import ConfigError, from_dict
from wovr_core.hardware.arm import Arm, ArmConfig
from wovr_core.hardware.camera import Camera, CameraConfig
from wovr_core.hardware.errors import (
    DeviceAlreadyConnectedError,
    DeviceError,
    DeviceNotConnectedError,
    DeviceTimeoutError,
)
from wovr_core.sim.twin import CAMERA_NAMES, LiberoTwin, TwinConfig
from wovr_core.types import ACTION_DIM, Frame, RobotState


@dataclass
class SimWorldOptions:
    clock: Literal["wall", "sim"] = "wall"
    time_origin: float = 0.0  # sim clock at creation (seconds); "sim" clock only
    init_state: int = 0  # LIBERO init state used by the first reset; -1 = random


@dataclass(frozen=True)
class SimSnapshot:
    """Everything one twin step produced."""

    seq: int
    t: float
    frames: dict[str, np.ndarray]
    state: RobotState
    success: bool


class SimWorld:
    """One twin per process, shared by the sim devices; thread-safe (one lock around the twin)."""

    _shared: SimWorld | None = None
    _shared_lock = threading.Lock()

    def __init__(self, twin_config: TwinConfig, options: SimWorldOptions | None = None,
                 wall_clock: Callable[[], float] = time.time):
        self.twin_config = twin_config
        self.options = options or SimWorldOptions()
        self._wall_clock = wall_clock
        self.twin = LiberoTwin(twin_config)
        self.dt = 1.0 / twin_config.control_hz
        self._cond = threading.Condition()
        self._steps = 0  # every step and reset advances the sim clock, so it never jumps back
        self._seq = -1
        self._snapshot: SimSnapshot | None = None
        self._users = 0

    # ---- sharing ------------------------------------------------------------------------------
    @classmethod
    def shared(cls, twin_config: TwinConfig, options: SimWorldOptions | None = None) -> SimWorld:
        """The process's world, created on first use; a different config than the existing one is an error."""
        options = options or SimWorldOptions()
        with cls._shared_lock:
            world = cls._shared
            if world is None:
                world = cls._shared = cls(twin_config, options)
            elif (world.twin_config, world.options) != (twin_config, options):
                raise ConfigError(
                    "sim devices of one process must share one twin; existing twin "
                    f"{asdict(world.twin_config)} / {asdict(world.options)}, requested "
                    f"{asdict(twin_config)} / {asdict(options)}")
            world._users += 1
            return world

    def release(self) -> None:
        """A device stops using the shared world; the last one closes the twin."""
        with SimWorld._shared_lock:
            self._users -= 1
            if self._users > 0:
                return
            if SimWorld._shared is self:
                SimWorld._shared = None
        self.twin.close()

    # ---- time ---------------------------------------------------------------------------------
    @property
    def sim_time(self) -> float:
        return self.options.time_origin + self._steps * self.dt

    def _stamp(self) -> float:
        return self.sim_time if self.options.clock == "sim" else self._wall_clock()

    # ---- stepping -----------------------------------------------------------------------------
    @property
    def started(self) -> bool:
        return self._snapshot is not None

    def reset(self, init_state: int | None = None) -> SimSnapshot:
        """Reset the twin to a LIBERO init state (``options.init_state`` when None; -1 = random)."""
        index = self.options.init_state if init_state is None else init_state
        with self._cond:
            obs = self.twin.reset(None if index < 0 else index)
            return self._publish(obs, success=self.twin.success)

    def step(self, action: np.ndarray) -> SimSnapshot:
        with self._cond:
            if self._snapshot is None:
                raise DeviceError("sim world: reset() before stepping")
            result = self.twin.step(action)
            return self._publish(result.obs, success=result.success)

    def ensure_started(self) -> SimSnapshot:
        with self._cond:
            return self._snapshot if self._snapshot is not None else self.reset()

    def _publish(self, obs: dict[str, Any], success: bool) -> SimSnapshot:
        self._steps += 1
        self._seq += 1
        frames = {cam: obs[f"observation.images.{cam}"] for cam in self.twin_config.cameras
                  if f"observation.images.{cam}" in obs}
        t = self._stamp()
        self._snapshot = SimSnapshot(self._seq, t, frames, self._robot_state(t), success)
        self._cond.notify_all()
        return self._snapshot

    def _robot_state(self, t: float) -> RobotState:
        privileged = self.twin.privileged()
        fingers = np.asarray(privileged["gripper_qpos"], dtype=np.float64)
        return RobotState(t=t, joint_pos=self.twin.joint_positions(), ee_pos=np.asarray(privileged["eef_pos"]),
                          ee_quat=np.asarray(privileged["eef_quat"]), gripper_width=float(abs(fingers[0] - fingers[1])),
                          gripper_qpos=fingers)

    # ---- reading ------------------------------------------------------------------------------
    def latest(self) -> SimSnapshot | None:
        return self._snapshot

    def wait_newer(self, seq: int, timeout_s: float) -> SimSnapshot | None:
        """The first snapshot with ``seq`` greater than the given one, or None after ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while self._snapshot is None or self._snapshot.seq <= seq:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._cond.wait(remaining)
            return self._snapshot

    def camera_intrinsics(self, camera: str) -> dict:
        """The pinhole model MuJoCo renders with: focal length from the camera's vertical field of view,
        principal point at the image centre, no distortion (exact for a rendered image)."""
        import mujoco

        model = self.twin._env.sim.model._model  # the twin keeps its env private; the expert reads it too
        cam_id = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_CAMERA, CAMERA_NAMES[camera])
        if cam_id < 0:
            raise DeviceError(f"the twin's scene has no camera {CAMERA_NAMES[camera]!r}")
        size = self.twin_config.image_size
        focal = 0.5 * size / math.tan(math.radians(float(model.cam_fovy[cam_id])) / 2)
        return {"K": [[focal, 0.0, size / 2], [0.0, focal, size / 2], [0.0, 0.0, 1.0]], "dist": [0.0] * 5,
                "width": size, "height": size, "distortion_model": "plumb_bob",
                "source": "twin (MuJoCo camera fovy)", "camera": camera}


def _world_from_options(options: dict | None) -> SimWorld:
    options = dict(options or {})
    twin = from_dict(TwinConfig, _tuples(options.pop("twin", {}) or {}))
    world = from_dict(SimWorldOptions, options.pop("world", {}) or {})
    if options:
        raise ConfigError(f"unknown sim device options {sorted(options)}; valid: ['twin', 'world']")
    return SimWorld.shared(twin, world)


def _tuples(d: dict) -> dict:
    # YAML/ROS parameters give lists; TwinConfig compares by value and keeps cameras as a tuple.
    return {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}


class SimCamera(Camera):
    """One of the twin's cameras (``config.name`` = agentview | wrist, or ``options["twin_camera"]``).

    A new frame exists after every twin step: ``read`` waits for it, ``read_latest`` never waits.
    """

    read_timeout_s: float = 10.0  # rendering is slow on a CPU; a step can take a fraction of a second

    def __init__(self, config: CameraConfig):
        super().__init__(config)
        options = dict(config.options or {})
        self.twin_camera = options.pop("twin_camera", config.name)
        if self.twin_camera not in CAMERA_NAMES:
            raise ConfigError(f"sim camera {config.name!r}: the twin has cameras {list(CAMERA_NAMES)}; set "
                              "options.twin_camera to one of them")
        self._options = options
        self._world: SimWorld | None = None
        self._last_seq = -1

    @property
    def is_connected(self) -> bool:
        return self._world is not None

    @property
    def world(self) -> SimWorld:
        if self._world is None:
            raise DeviceNotConnectedError(f"sim camera {self.name!r}: call connect() first")
        return self._world

    def connect(self) -> None:
        if self._world is not None:
            raise DeviceAlreadyConnectedError(f"sim camera {self.name!r} is already connected")
        world = _world_from_options(self._options)
        try:
            size = world.twin_config.image_size
            if (self.config.width, self.config.height) != (size, size):
                raise ConfigError(f"sim camera {self.name!r} asks for {self.config.width}x{self.config.height}, "
                                  f"the twin renders {size}x{size} (set twin.image_size)")
            if self.twin_camera not in world.twin_config.cameras:
                raise ConfigError(f"sim camera {self.name!r}: the twin renders only {world.twin_config.cameras}")
            world.ensure_started()
        except BaseException:
            world.release()
            raise
        self._world = world
        self._last_seq = -1

    def disconnect(self) -> None:
        world = self.world
        self._world = None
        world.release()

    def read(self) -> Frame:
        return self.async_read(self.read_timeout_s)

    def async_read(self, timeout_s: float = 0.2) -> Frame:
        snapshot = self.world.wait_newer(self._last_seq, timeout_s)
        if snapshot is None:
            raise DeviceTimeoutError(f"sim camera {self.name!r}: no new twin step within {timeout_s:.3f} s "
                                     "(the twin only renders when the arm steps it)")
        return self._frame(snapshot)

    def read_latest(self) -> Frame:
        snapshot = self.world.latest()
        if snapshot is None:
            raise DeviceTimeoutError(f"sim camera {self.name!r}: the twin has not rendered yet")
        return self._frame(snapshot)

    def _frame(self, snapshot: SimSnapshot) -> Frame:
        self._last_seq = max(self._last_seq, snapshot.seq)
        return Frame(rgb=snapshot.frames[self.twin_camera], t_capture=snapshot.t, t_receive=snapshot.t,
                     seq=snapshot.seq, camera=self.name)

    def intrinsics(self) -> dict | None:
        return self.world.camera_intrinsics(self.twin_camera)


class SimArm(Arm):
    """The twin's Panda: ``send_action`` runs one twin control step (OSC delta end effector)."""

    def __init__(self, config: ArmConfig):
        super().__init__(config)
        self._options = dict(config.options or {})
        self._world: SimWorld | None = None

    @property
    def is_connected(self) -> bool:
        return self._world is not None

    @property
    def world(self) -> SimWorld:
        if self._world is None:
            raise DeviceNotConnectedError("sim arm: call connect() first")
        return self._world

    def connect(self) -> None:
        if self._world is not None:
            raise DeviceAlreadyConnectedError("sim arm is already connected")
        world = _world_from_options(self._options)
        try:
            if abs(world.twin_config.control_hz - self.config.control_hz) > 1e-9:
                raise ConfigError(f"sim arm control_hz {self.config.control_hz} differs from the twin's "
                                  f"{world.twin_config.control_hz}: each action is one twin step")
            world.ensure_started()
        except BaseException:
            world.release()
            raise
        self._world = world

    def disconnect(self) -> None:
        world = self.world
        self._world = None
        world.release()

    def state(self) -> RobotState:
        snapshot = self.world.latest()
        if snapshot is None:
            raise DeviceNotConnectedError("sim arm: the twin has not been reset")
        return snapshot.state

    def send_action(self, action: np.ndarray) -> np.ndarray:
        a = np.asarray(action, dtype=np.float64)
        if a.shape != (ACTION_DIM,) or not np.all(np.isfinite(a)):
            raise DeviceError(f"sim arm: refusing action {a!r}: expected {ACTION_DIM} finite numbers")
        self.world.step(a)
        return a.astype(np.float32)

    def reset(self, init_state: int | None = None) -> RobotState:
        """Start a new episode from a LIBERO init state (the world's default when None)."""
        return self.world.reset(init_state).state

    @property
    def success(self) -> bool:
        """LIBERO's success predicate for the current state."""
        snapshot = self.world.latest()
        return bool(snapshot and snapshot.success)

    def recover(self) -> None:
        self.world  # noqa: B018 - raises when not connected; the twin has no error state to clear
