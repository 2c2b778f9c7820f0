"""teleop_node: a teleop device (keyboard, SpaceMouse, or the sim's scripted expert) drives the arm.

Motion goes to ``/wovr/arm/command`` (the arm's envelope filters it); the device's buttons become service
calls to the recorder (start / stop / keyframe / success label), the e-stop topic, and the intervention
flag. ``mode``: ``teleop`` drives all the time; ``intervention`` drives only between TAKE_OVER and
HAND_BACK, while a policy runs (its commands are flagged as interventions in the episodes).

``teleop_type: scripted`` relays the sim's privileged expert (see :mod:`wovr.sim_expert`): one command per
twin step, and after each episode (success or failure) it resets the twin and starts the next one.
"""

from __future__ import annotations

import json
import queue
import threading
import time
from collections.abc import Callable

from rclpy.lifecycle import State, TransitionCallbackReturn
from sensor_msgs.msg import JointState
from std_msgs.msg import Bool, String
from std_srvs.srv import SetBool, Trigger

from wovr import topics
from wovr.conversions import action_to_msg
from wovr.node_base import RELIABLE, WovrNode, run
from wovr.sim_expert import SimExpertRelay
from wovr_core.hardware.scripted import ScriptedTeleop
from wovr_core.hardware.teleop import Teleop, TeleopCommand, TeleopConfig, TeleopEvent, make_teleop
from wovr_core.types import ACTION_DIM


class ServiceCaller:
    """Runs service calls one after another on a worker thread, so the executor never blocks on them."""

    def __init__(self, node: WovrNode, timeout_s: float = 120.0):  # a stop waits for the commit
        self.node = node
        self.timeout_s = timeout_s
        self._jobs: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._work, name="service-calls", daemon=True)
        self._thread.start()

    def submit(self, job: Callable[[], None]) -> None:
        self._jobs.put(job)

    def call(self, client, request, retry_while: str = "", retry_for_s: float = 10.0) -> object | None:
        """Blocking call from the worker thread; None (and a log line) when it fails. A refusal whose
        message contains ``retry_while`` (e.g. the recorder is "not ready": no images yet) is retried for ``retry_for_s``."""
        deadline = time.monotonic() + retry_for_s
        while True:
            response = self._call_once(client, request)
            refused_for_now = retry_while and response is not None and not getattr(response, "success", True) \
                and retry_while in getattr(response, "message", "")
            if not refused_for_now or time.monotonic() > deadline:
                return response
            time.sleep(0.2)

    def _call_once(self, client, request) -> object | None:
        log = self.node.get_logger()
        if not client.wait_for_service(timeout_sec=self.timeout_s):
            log.error(f"service {client.srv_name} not available")
            return None
        done = threading.Event()
        future = client.call_async(request)
        future.add_done_callback(lambda _: done.set())
        if not done.wait(self.timeout_s):
            log.error(f"service {client.srv_name} did not answer within {self.timeout_s} s")
            return None
        response = future.result()
        if hasattr(response, "success"):
            if response.success:  # separate call sites: rclpy fixes a call site's severity on first use
                log.info(f"{client.srv_name}: {response.message}")
            else:
                log.warning(f"{client.srv_name}: {response.message}")
        return response

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            try:
                job()
            except Exception as exc:  # noqa: BLE001 - one failed call must not stop the operator's buttons
                self.node.get_logger().error(f"service call failed: {type(exc).__name__}: {exc}")

    def close(self) -> None:
        self._jobs.put(None)
        self._thread.join(timeout=self.timeout_s)


class TeleopNode(WovrNode):
    PARAMETERS = {
        "teleop_type": "keyboard",  # any registered teleop: keyboard | spacemouse | scripted
        "options": "",  # YAML mapping of device options
        "rate_hz": 20.0,  # command rate of hardware devices (the scripted one follows the sim's steps)
        "mode": "teleop",  # teleop | intervention
        "episodes": 0,  # scripted: stop after this many episodes (0 = keep going)
        "max_episode_steps": 300,  # scripted: an episode still running after this many steps is a failure
        "reset_sim": True,  # scripted: reset the twin between episodes
    }

    def __init__(self, **kwargs):
        super().__init__("teleop_node", **kwargs)
        self.teleop: Teleop | None = None
        self.relay: SimExpertRelay | None = None
        self.episodes_done = 0
        self._intervening = False
        self._paused = False
        self._min_sim_episode = 0
        self._caller: ServiceCaller | None = None
        self._entities: list = []  # made on activate
        self._configured: list = []  # made on configure
        self._lock = threading.Lock()

    @property
    def scripted(self) -> bool:
        return self.param("teleop_type") == "scripted"

    def on_configure(self, state: State) -> TransitionCallbackReturn:
        try:
            if self.param("mode") not in ("teleop", "intervention"):
                raise ValueError(f"mode must be teleop or intervention, got {self.param('mode')!r}")
            config = TeleopConfig(type=self.param("teleop_type"), options=self.options() or None)
            if self.scripted:
                self.relay = SimExpertRelay(int(self.param("max_episode_steps")))
                self.teleop = ScriptedTeleop(config, expert=self.relay)
            else:
                self.teleop = make_teleop(config)
            self.teleop.connect()
        except Exception as exc:  # noqa: BLE001
            return self.failed("teleop device not configured", exc)
        self._service_clients = {
            "start": self.create_client(Trigger, topics.SRV_START_EPISODE),
            "stop": self.create_client(Trigger, topics.SRV_STOP_EPISODE),
            "keyframe": self.create_client(Trigger, topics.SRV_MARK_KEYFRAME),
            "success": self.create_client(SetBool, topics.SRV_SET_SUCCESS),
            "sim_reset": self.create_client(Trigger, topics.SRV_SIM_RESET),
        }
        self._command_pub = self.create_publisher(JointState, topics.ARM_COMMAND, RELIABLE)
        self._estop_pub = self.create_publisher(Bool, topics.ESTOP, RELIABLE)
        self._intervening_pub = self.create_publisher(Bool, topics.INTERVENING, RELIABLE)
        self._events_pub = self.create_publisher(String, topics.TELEOP_EVENTS, RELIABLE)
        self._configured = [*self._service_clients.values(), self._command_pub, self._estop_pub, self._intervening_pub,
                            self._events_pub]
        self._caller = ServiceCaller(self)
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: State) -> TransitionCallbackReturn:
        if self.scripted:
            self._entities.append(self.create_subscription(String, topics.SIM_EXPERT, self._on_suggestion, RELIABLE))
        else:
            self._entities.append(self.create_timer(1.0 / float(self.param("rate_hz")), self._on_timer))
        return super().on_activate(state)

    def on_deactivate(self, state: State) -> TransitionCallbackReturn:
        self._drop_entities()
        return super().on_deactivate(state)

    # ---- driving ------------------------------------------------------------------------------
    def _on_timer(self) -> None:
        command = self._poll(None)
        if command is not None:
            self._drive(command, self.now_s())

    def _on_suggestion(self, msg: String) -> None:
        suggestion = json.loads(msg.data)
        with self._lock:
            if self._paused or suggestion.get("episode", 0) < self._min_sim_episode:
                return  # between episodes, or a message from before the last reset
        command = self._poll(suggestion)
        if command is not None:
            # Computed from the observation at the suggestion's time: that is the command's stamp.
            self._drive(command, float(suggestion["t"]))

    def _poll(self, observation) -> TeleopCommand | None:
        assert self.teleop is not None
        try:
            if observation is not None:
                self.teleop.observe(observation)
            command = self.teleop.poll()
        except Exception as exc:  # noqa: BLE001 - a flaky device is reported, never crashes the node
            self.get_logger().error(f"teleop poll: {type(exc).__name__}: {exc}", throttle_duration_sec=2.0)
            return None
        self._handle_events(command.events)
        return command

    def _drive(self, command: TeleopCommand, stamp: float) -> None:
        if self.param("mode") == "intervention":
            if not self._intervening:
                return
            source = topics.SOURCE_INTERVENTION
        else:
            source = topics.SOURCE_SCRIPTED if self.scripted else topics.SOURCE_TELEOP
        if command.action.shape == (ACTION_DIM,):
            self._command_pub.publish(action_to_msg(command.action, stamp, source))

    # ---- buttons ------------------------------------------------------------------------------
    def _handle_events(self, events: list[TeleopEvent]) -> None:
        assert self._caller is not None
        for event in events:
            self._events_pub.publish(String(data=event.value))
            if event is TeleopEvent.ESTOP:
                self._estop_pub.publish(Bool(data=True))
            elif event is TeleopEvent.START_EPISODE:
                self._caller.submit(lambda: self._caller.call(self._service_clients["start"], Trigger.Request(),
                                                              retry_while="not ready"))
            elif event is TeleopEvent.STOP_EPISODE:
                self._caller.submit(lambda: self._caller.call(self._service_clients["stop"], Trigger.Request()))
            elif event is TeleopEvent.MARK_KEYFRAME:
                self._caller.submit(lambda: self._caller.call(self._service_clients["keyframe"], Trigger.Request()))
            elif event in (TeleopEvent.MARK_SUCCESS, TeleopEvent.MARK_FAILURE):
                self._end_episode(event is TeleopEvent.MARK_SUCCESS)
            elif event in (TeleopEvent.TAKE_OVER, TeleopEvent.HAND_BACK):
                self._intervening = event is TeleopEvent.TAKE_OVER
                self._intervening_pub.publish(Bool(data=self._intervening))

    def _end_episode(self, success: bool) -> None:
        assert self._caller is not None
        if self.scripted:
            with self._lock:
                self._paused = True  # no commands until the next episode has started

        def job() -> None:
            self._caller.call(self._service_clients["success"], SetBool.Request(data=success))
            self._caller.call(self._service_clients["stop"], Trigger.Request())
            self.episodes_done += 1
            if self.scripted:
                self._next_scripted_episode()

        self._caller.submit(job)

    def _next_scripted_episode(self) -> None:
        wanted = int(self.param("episodes"))
        if wanted and self.episodes_done >= wanted:
            self.get_logger().info(f"{self.episodes_done} scripted episodes done; idle")
            return
        if self.param("reset_sim"):
            response = self._caller.call(self._service_clients["sim_reset"], Trigger.Request())
            if response is None or not response.success:
                return
        with self._lock:
            self._min_sim_episode += 1
            assert self.teleop is not None and self.relay is not None
            self.relay.reset()
            self.teleop.connect()  # the scripted teleop presses START again on its next poll
            self._paused = False

    # ---- teardown -----------------------------------------------------------------------------
    def _drop_entities(self) -> None:
        self.destroy_entities(self._entities)

    def release(self) -> None:
        self._drop_entities()
        if self._caller is not None:
            self._caller.close()
            self._caller = None
        self.destroy_entities(self._configured)
        if self.teleop is not None:
            try:
                self.teleop.disconnect()
            except Exception:  # noqa: BLE001 - the device may already be gone
                pass
            self.teleop = None
        super().release()


def main(args: list[str] | None = None) -> int:
    return run(TeleopNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
