"""What every wovr node shares: declared-parameter schemas, autostart of the lifecycle, a main runner.

Each node class lists its parameters in ``PARAMETERS`` (name -> default), optionally with dataclass
sections (``SECTIONS``: prefix -> config class, declared as ``prefix.field``), so that tests and the launch
file check can list them without starting ROS. Parameters are declared with dynamic typing: a YAML ``20``
for a float parameter is fine, the value is coerced (and checked) by the wovr config code.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import signal
import sys
import threading
from collections.abc import Callable
from typing import Any, ClassVar

import rclpy
from geometry_msgs.msg import PoseStamped
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.client import Client
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.lifecycle import LifecycleNode, State, TransitionCallbackReturn
from rclpy.publisher import Publisher
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from rclpy.service import Service
from rclpy.signals import SignalHandlerOptions
from rclpy.subscription import Subscription
from rclpy.timer import Timer
from sensor_msgs.msg import JointState

from wovr import topics
from wovr.conversions import MessageError, StatePairer
from wovr_core.config import ConfigError, from_dict
from wovr_core.types import RobotState

log = logging.getLogger(__name__)

LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL,
                     history=HistoryPolicy.KEEP_LAST)
RELIABLE = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST)


def image_qos(name: str, depth: int = 5) -> QoSProfile:
    """``sensor_data`` (best effort, what camera drivers use) or ``reliable`` (lossless on a good link).

    ``depth`` is how many images wait for a slow reader before the oldest is dropped: small for a policy
    (it wants the newest), about a second's worth for a recorder (it must not lose a frame to a hiccup)."""
    if name == "sensor_data":
        qos = QoSProfile(depth=depth, reliability=qos_profile_sensor_data.reliability,
                         durability=qos_profile_sensor_data.durability, history=HistoryPolicy.KEEP_LAST)
        return qos
    if name == "reliable":
        return QoSProfile(depth=depth, reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST)
    raise ConfigError(f"qos must be 'sensor_data' or 'reliable', got {name!r}")


def _ros_default(value: Any) -> Any:
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, dict):
        return json.dumps(value)
    return value


def section_parameters(prefix: str, cls: type, exclude: tuple[str, ...] = (),
                       defaults: dict[str, Any] | None = None) -> dict[str, Any]:
    """``{prefix.field: default}`` for a dataclass config (``defaults`` replace the class's own)."""
    out = {}
    instance = cls(**(defaults or {}))
    for f in dataclasses.fields(cls):
        if f.init and f.name not in exclude:
            out[f"{prefix}.{f.name}"] = _ros_default(getattr(instance, f.name))
    return out


class WovrNode(LifecycleNode):
    """A lifecycle node that declares its schema and, with ``autostart`` (default), configures and activates
    itself at start (the job of nav2's lifecycle manager, without needing one)."""

    PARAMETERS: ClassVar[dict[str, Any]] = {}
    SECTIONS: ClassVar[dict[str, tuple[type, tuple[str, ...]]]] = {}  # prefix -> (config class, excluded fields)
    SECTION_DEFAULTS: ClassVar[dict[str, dict[str, Any]]] = {}  # prefix -> {field: default}

    @classmethod
    def parameter_schema(cls) -> dict[str, Any]:
        schema = {"autostart": True, **cls.PARAMETERS}
        for prefix, (config_cls, exclude) in cls.SECTIONS.items():
            schema.update(section_parameters(prefix, config_cls, exclude, cls.SECTION_DEFAULTS.get(prefix)))
        return schema

    def __init__(self, name: str, **kwargs):
        super().__init__(name, **kwargs)
        dynamic = ParameterDescriptor(dynamic_typing=True)
        for pname, default in self.parameter_schema().items():
            self.declare_parameter(pname, default, dynamic)
        self._active = False

    # ---- parameters ---------------------------------------------------------------------------
    def param(self, name: str) -> Any:
        value = self.get_parameter(name).value
        return list(value) if isinstance(value, (tuple,)) or type(value).__name__ == "array" else value

    def section(self, prefix: str, overrides: dict | None = None):
        config_cls, exclude = self.SECTIONS[prefix]
        values = {f.name: self.param(f"{prefix}.{f.name}") for f in dataclasses.fields(config_cls)
                  if f.init and f.name not in exclude}
        values.update(overrides or {})
        return from_dict(config_cls, values)

    def options(self, name: str = "options") -> dict:
        """A YAML/JSON mapping given as a string parameter ('' = empty)."""
        import yaml

        text = self.param(name)
        if not text:
            return {}
        value = yaml.safe_load(text) if isinstance(text, str) else text
        if not isinstance(value, dict):
            raise ConfigError(f"parameter {name!r} must be a YAML mapping, got {text!r}")
        return value

    # ---- lifecycle helpers --------------------------------------------------------------------
    def now_s(self) -> float:
        """The node clock (ROS time: sim time when ``use_sim_time`` is set) in seconds."""
        return self.get_clock().now().nanoseconds * 1e-9

    def failed(self, what: str, exc: BaseException) -> TransitionCallbackReturn:
        self.get_logger().error(f"{what}: {type(exc).__name__}: {exc}")
        self.release()
        return TransitionCallbackReturn.FAILURE

    def on_activate(self, state: State) -> TransitionCallbackReturn:
        self._active = True
        self.get_logger().info(f"{self.get_name()} active")
        return TransitionCallbackReturn.SUCCESS

    def on_deactivate(self, state: State) -> TransitionCallbackReturn:
        self._active = False
        return TransitionCallbackReturn.SUCCESS

    def on_cleanup(self, state: State) -> TransitionCallbackReturn:
        self.release()
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: State) -> TransitionCallbackReturn:
        self.release()
        return TransitionCallbackReturn.SUCCESS

    def release(self) -> None:
        """Stop threads and release devices/files; must be safe to call twice."""
        self._active = False

    def subscribe_robot_state(self, sink: Callable[[RobotState], None]) -> list[Subscription]:
        """Subscribe to the arm's JointState + PoseStamped, pair them by stamp and hand each ``RobotState`` to
        ``sink``; a malformed message is logged (throttled) and skipped."""
        pairer = StatePairer()

        def add(pair: Callable[[], RobotState | None]) -> None:
            try:
                state = pair()
            except MessageError as exc:
                self.get_logger().warning(f"robot state ignored: {exc}", throttle_duration_sec=5.0)
                return
            if state is not None:
                sink(state)

        return [self.create_subscription(JointState, topics.JOINT_STATES,
                                         lambda msg: add(lambda: pairer.add_joints(msg)), RELIABLE),
                self.create_subscription(PoseStamped, topics.EE_POSE,
                                         lambda msg: add(lambda: pairer.add_pose(msg)), RELIABLE)]

    def destroy_entities(self, entities: list) -> None:
        """Destroy subscriptions, services, clients, timers and publishers made in ``on_configure``, so that a
        cleanup -> configure cycle does not double them."""
        destroyers = ((Subscription, self.destroy_subscription), (Service, self.destroy_service),
                      (Client, self.destroy_client), (Timer, self.destroy_timer), (Publisher, self.destroy_publisher))
        for entity in entities:
            for kind, destroy in destroyers:
                if isinstance(entity, kind):
                    destroy(entity)
                    break
        entities.clear()


def run(node_factory: Callable[[], WovrNode], args: list[str] | None = None) -> int:
    """Init rclpy, build the node, autostart it, spin until SIGINT / SIGTERM, then release everything.

    One single-threaded executor per node: rclpy's MultiThreadedExecutor busy-polls its futures (measured:
    a recorder at 66 % of a core and a third of its steps lost, against 15 % single-threaded), so no
    callback may block; slow work (encoding, commits, inference, service calls) runs on the node's own
    worker threads.

    rclpy's own signal handlers would invalidate the context at once, while device threads still publish
    and the recorder still has an episode to commit; here a signal only stops the executor, the node
    releases its resources with ROS still up, and only then is rclpy shut down.
    """
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    rclpy.init(args=args if args is not None else sys.argv, signal_handler_options=SignalHandlerOptions.NO)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    node: WovrNode | None = None
    executor = SingleThreadedExecutor()
    code = 0
    try:
        node = node_factory()
        if node.param("autostart"):
            for transition in (node.trigger_configure, node.trigger_activate):
                if transition() != TransitionCallbackReturn.SUCCESS:
                    raise SystemExit(f"{node.get_name()}: {transition.__name__} failed (see the error above)")
        executor.add_node(node)
        spinner = threading.Thread(target=_spin, args=(executor, stop), name="executor", daemon=True)
        spinner.start()
        stop.wait()
        executor.shutdown(timeout_sec=5.0)
        spinner.join(timeout=5.0)
    except SystemExit as exc:
        print(exc, file=sys.stderr)
        code = 1
    finally:
        if node is not None:
            node.release()
            node.destroy_node()
        rclpy.try_shutdown()
    return code


def _spin(executor, stop: threading.Event) -> None:
    try:
        executor.spin()
    except ExternalShutdownException:
        pass
    finally:
        stop.set()
