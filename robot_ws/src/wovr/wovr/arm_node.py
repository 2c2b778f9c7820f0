"""arm_node: the arm (Franka via franky, or the synthetic arm) behind the safety envelope.

Publishes JointState and the end-effector PoseStamped at ``state_hz``; runs one control cycle at
``control_hz``: the newest command from ``/wovr/arm/command`` through the envelope to the arm, then the
applied action on ``/wovr/arm/applied_action`` (what the recorder stores as the action). E-stop: topic
``/wovr/estop`` (Bool true) or service ``/wovr/arm/estop``; cleared only by ``/wovr/arm/reset_estop``.
"""

from __future__ import annotations

from rclpy.lifecycle import State, TransitionCallbackReturn

from wovr.bridges import ArmBridge
from wovr.node_base import WovrNode, run
from wovr_core.hardware.arm import Arm, ArmConfig, make_arm
from wovr_core.hardware.safety import SafetyConfig, SafetyEnvelope

# The envelope must use the arm's own rate and scales; they are set once, from the arm's parameters.
SAFETY_FROM_ARM = ("control_hz", "translation_scale", "rotation_scale")


class ArmNode(WovrNode):
    PARAMETERS = {
        "arm_type": "franka",  # any registered arm type: franka | synthetic
        "host": "172.16.0.2",
        "control_hz": 20.0,
        "translation_scale": 0.05,
        "rotation_scale": 0.5,
        "options": "",  # YAML mapping of driver options
        "state_hz": 100.0,
        "command_timeout_s": 0.5,
        "frame_id": "base",
    }
    SECTIONS = {"safety": (SafetyConfig, SAFETY_FROM_ARM)}

    def __init__(self, **kwargs):
        super().__init__("arm_node", **kwargs)
        self.arm: Arm | None = None
        self.bridge: ArmBridge | None = None
        self._loop_timers = []

    def on_configure(self, state: State) -> TransitionCallbackReturn:
        try:
            config = ArmConfig(type=self.param("arm_type"), host=self.param("host"),
                               control_hz=float(self.param("control_hz")),
                               translation_scale=float(self.param("translation_scale")),
                               rotation_scale=float(self.param("rotation_scale")), options=self.options() or None)
            safety = SafetyEnvelope(self.section("safety", {k: getattr(config, k) for k in SAFETY_FROM_ARM}))
            self.arm = make_arm(config)
            self.arm.connect()
        except Exception as exc:  # noqa: BLE001 - fail the transition with the driver's message
            return self.failed("arm not configured", exc)
        self.bridge = ArmBridge(self, self.arm, safety, float(self.param("command_timeout_s")),
                                self.param("frame_id"))
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: State) -> TransitionCallbackReturn:
        assert self.bridge is not None
        self.bridge.safety.reset()
        self._loop_timers = [
            self.create_timer(1.0 / float(self.param("control_hz")), self._control),
            self.create_timer(1.0 / float(self.param("state_hz")), self._publish_state),
        ]
        return super().on_activate(state)

    def on_deactivate(self, state: State) -> TransitionCallbackReturn:
        self._destroy_timers()
        return super().on_deactivate(state)

    def _control(self) -> None:
        if self.bridge is not None:
            self.bridge.cycle(self.now_s())

    def _publish_state(self) -> None:
        if self.bridge is not None:
            self.bridge.publish_state()

    def _destroy_timers(self) -> None:
        for timer in self._loop_timers:
            self.destroy_timer(timer)
        self._loop_timers = []

    def release(self) -> None:
        self._destroy_timers()
        if self.bridge is not None:
            self.bridge.destroy()
            self.bridge = None
        if self.arm is not None and self.arm.is_connected:
            self.arm.disconnect()
        self.arm = None
        super().release()


def main(args: list[str] | None = None) -> int:
    return run(ArmNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
