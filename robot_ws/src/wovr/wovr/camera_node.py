"""camera_node: one camera device (RealSense, synthetic...) -> Image + CameraInfo on sensor-data QoS.

Images are stamped with the device capture time mapped onto the host clock (``Frame.t_capture``), so
consumers align by when the picture was taken, not when it arrived. CameraInfo comes from the calibration
store (see :mod:`wovr.camera_calibration`); a missing or stale calibration stops the node unless
``require_calibration`` is false, and then no CameraInfo is published at all.
"""

from __future__ import annotations

import threading

from rclpy.lifecycle import State, TransitionCallbackReturn

from wovr.bridges import CameraPublisher
from wovr.camera_calibration import resolve_calibration
from wovr.node_base import WovrNode, image_qos, run
from wovr_core.hardware.camera import Camera, CameraConfig, make_camera
from wovr_core.hardware.errors import DeviceError, DeviceTimeoutError


class CameraNode(WovrNode):
    PARAMETERS = {
        "camera_type": "realsense",  # any registered camera type: realsense | synthetic
        "camera_name": "agentview",
        "serial": "",
        "width": 640,
        "height": 480,
        "fps": 30,
        "depth": False,
        "options": "",  # YAML mapping of driver options
        "frame_id": "",  # default: <camera_name>_optical_frame
        "qos": "sensor_data",  # sensor_data | reliable
        "queue_depth": 10,  # images kept for slow reliable readers
        "intrinsics_source": "calibration",  # calibration | device
        "calibration_dir": "",  # default: $WOVR_CALIBRATION_DIR or ~/.config/wovr/calibration
        "calibration_max_age_days": 0.0,  # 0 = no limit
        "require_calibration": True,
        "hand_eye": False,  # also load (and publish) the hand-eye transform
    }

    def __init__(self, **kwargs):
        super().__init__("camera_node", **kwargs)
        self.camera: Camera | None = None
        self.publisher: CameraPublisher | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def on_configure(self, state: State) -> TransitionCallbackReturn:
        name = self.param("camera_name")
        try:
            config = CameraConfig(type=self.param("camera_type"), name=name, width=int(self.param("width")),
                                  height=int(self.param("height")), fps=int(self.param("fps")),
                                  depth=bool(self.param("depth")), serial=str(self.param("serial")),
                                  options=self.options() or None)
            self.camera = make_camera(config)
            self.camera.connect()
            status = resolve_calibration(
                name, (config.width, config.height), self.param("intrinsics_source"),
                directory=self.param("calibration_dir"), max_age_days=float(self.param("calibration_max_age_days")),
                required=bool(self.param("require_calibration")), hand_eye=bool(self.param("hand_eye")),
                device_intrinsics=self.camera.intrinsics(), frame_id=self.param("frame_id") or None)
        except Exception as exc:  # noqa: BLE001 - any configuration problem fails the transition, with its message
            return self.failed(f"camera {name!r} not configured", exc)
        log = self.get_logger()
        # rclpy fixes a log call site's severity on first use: one call site per severity.
        if status.calibrated:
            log.info(f"camera {name!r} calibration: {status.detail}")
        else:
            log.error(f"camera {name!r} calibration: {status.detail}")
        frame_id = self.param("frame_id") or f"{name}_optical_frame"
        self.publisher = CameraPublisher(self, name, image_qos(self.param("qos"), int(self.param("queue_depth"))), status, frame_id)
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: State) -> TransitionCallbackReturn:
        self._stop.clear()
        self._thread = threading.Thread(target=self._stream, name="camera-stream", daemon=True)
        self._thread.start()
        return super().on_activate(state)

    def on_deactivate(self, state: State) -> TransitionCallbackReturn:
        self._stop_stream()
        return super().on_deactivate(state)

    def _stream(self) -> None:
        assert self.camera is not None and self.publisher is not None
        while not self._stop.is_set():
            try:
                frame = self.camera.read()
            except DeviceTimeoutError as exc:
                self.get_logger().warning(str(exc), throttle_duration_sec=5.0)
                continue
            except DeviceError as exc:
                self.get_logger().error(f"camera {self.camera.name!r} stopped: {exc}")
                return
            self.publisher.publish(frame)

    def _stop_stream(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
            self._thread = None

    def release(self) -> None:
        self._stop_stream()
        if self.publisher is not None:
            self.get_logger().info(f"camera {self.publisher.camera!r}: published {self.publisher.published} frames")
            self.publisher.destroy()
            self.publisher = None
        if self.camera is not None and self.camera.is_connected:
            self.camera.disconnect()
        self.camera = None
        super().release()


def main(args: list[str] | None = None) -> int:
    return run(CameraNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
