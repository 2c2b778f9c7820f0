"""``wovr calibrate intrinsics|hand-eye``: calibrate a camera and write a versioned result file.

    wovr calibrate intrinsics --camera realsense --camera-name wrist --serial 123456
    wovr calibrate hand-eye --camera realsense --camera-name wrist --arm franka --setup eye-in-hand
    wovr calibrate intrinsics --camera synthetic_board            # no hardware: a rendered board

Nothing is written when the input is degenerate or the result is poor; the error says why.
"""

from __future__ import annotations

import argparse
import sys

from wovr_core.cli import Command
from wovr_core.config import add_config_arguments

_SETUPS = {"eye-in-hand": "eye_in_hand", "eye-to-hand": "eye_to_hand"}


def _camera_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--camera", required=True, metavar="TYPE",
                        help="registered camera type (realsense, sim, synthetic_board, ...)")
    parser.add_argument("--camera-name", default=None, help="name the result is filed under (default: TYPE)")
    parser.add_argument("--serial", default="", help="device serial number (RealSense)")
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--fps", type=int, default=30)
    parser.add_argument("--camera-options", default=None, metavar="YAML",
                        help="driver options as a YAML mapping, e.g. '{seed: 3}'")
    parser.add_argument("--dir", default=None,
                        help="calibration directory (default: $WOVR_CALIBRATION_DIR or ~/.config/wovr/calibration)")
    parser.add_argument("--dry-run", action="store_true", help="calibrate and report, write nothing")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from calibration.config import HandEyeConfig, IntrinsicsConfig

    sub = parser.add_subparsers(dest="mode", metavar="MODE", required=True)
    p = sub.add_parser("intrinsics", help="camera matrix and distortion from a ChArUco board",
                       description="Show the board to the camera in many positions and tilts; capture stops "
                                   "after num_views distinct views (--set num_views=N).")
    _camera_arguments(p)
    p.add_argument("--from-factory", action="store_true",
                   help="adopt the device's factory intrinsics as the calibration (no board needed)")
    add_config_arguments(p, IntrinsicsConfig)

    p = sub.add_parser("hand-eye", help="camera pose on the hand (eye-in-hand) or in the base (eye-to-hand)",
                       description="The arm visits generated poses around its current pose, which must show "
                                   "the whole board. Needs the camera's intrinsics calibration.")
    _camera_arguments(p)
    p.add_argument("--arm", required=True, metavar="TYPE", help="registered arm type (franka, synthetic, ...)")
    p.add_argument("--arm-host", default=None, help="arm address (franka FCI)")
    p.add_argument("--arm-options", default=None, metavar="YAML", help="arm driver options as a YAML mapping")
    p.add_argument("--setup", choices=sorted(_SETUPS), default=None,
                   help="eye-in-hand: camera on the hand, board fixed; eye-to-hand: camera fixed, board in hand")
    p.add_argument("--base-frame", default="base", help="TF frame of the robot base")
    p.add_argument("--ee-frame", default="ee", help="TF frame of the hand pose the arm reports")
    p.add_argument("--camera-frame", default=None, help="TF frame of the camera (default: NAME_optical_frame)")
    p.add_argument("--max-intrinsics-age-days", type=float, default=None,
                   help="refuse intrinsics older than this")
    p.add_argument("--safety-config", default=None, help="SafetyConfig YAML/JSON (workspace box, speed limits)")
    p.add_argument("--yes", action="store_true", help="move the arm without asking for confirmation")
    add_config_arguments(p, HandEyeConfig)


def _yaml_mapping(text: str | None, what: str) -> dict:
    import yaml

    from wovr_core.config import ConfigError

    if not text:
        return {}
    value = yaml.safe_load(text)
    if not isinstance(value, dict):
        raise ConfigError(f"{what} must be a YAML mapping like '{{key: value}}', got {text!r}")
    return value


def _make_camera(args: argparse.Namespace):
    import calibration  # noqa: F401  (registers synthetic_board)
    from wovr_core.hardware.camera import CameraConfig, make_camera

    config = CameraConfig(type=args.camera, name=args.camera_name or args.camera, width=args.width,
                          height=args.height, fps=args.fps, serial=args.serial,
                          options=_yaml_mapping(args.camera_options, "--camera-options"))
    return make_camera(config)


def _directory(args: argparse.Namespace):
    from pathlib import Path

    from calibration.store import default_directory

    return Path(args.dir).expanduser() if args.dir else default_directory()


def _device_info(camera) -> dict:
    return {"type": camera.config.type, "serial": getattr(camera, "serial", None) or camera.config.serial,
            "width": camera.config.width, "height": camera.config.height}


def _software() -> dict:
    import cv2
    import numpy as np

    return {"opencv": cv2.__version__, "numpy": np.__version__}


def _say(message: str) -> None:
    print(message, flush=True)


def run_intrinsics(args: argparse.Namespace) -> int:
    from calibration.capture import capture_intrinsics_views
    from calibration.config import IntrinsicsConfig
    from calibration.errors import CalibrationError
    from calibration.intrinsics import DISTORTION_COEFFS, calibrate_intrinsics, compare_with_factory
    from calibration.store import save_calibration
    from wovr_core.config import config_from_args

    config = config_from_args(args, IntrinsicsConfig)
    camera = _make_camera(args)
    with camera:
        factory = camera.intrinsics()
        if args.from_factory:
            if factory is None:
                raise CalibrationError(f"camera {camera.name!r} ({args.camera}) reports no factory intrinsics; "
                                       f"calibrate with the board instead")
            models = {n: m for m, n in DISTORTION_COEFFS.items()}
            payload = {"source": "factory", "K": factory["K"], "dist": list(factory["dist"]),
                       "distortion_model": models.get(len(factory["dist"]), "plumb_bob"),
                       "width": factory["width"], "height": factory["height"]}
            summary = "factory intrinsics"
        else:
            _say(f"intrinsics of {camera.name!r}: show the {config.board.squares_x}x{config.board.squares_y} "
                 f"ChArUco board ({config.board.dictionary}, {config.board.square_length_m} m squares) in many "
                 f"positions and tilts")
            captured = capture_intrinsics_views(camera, config, on_progress=lambda p: _say("  " + p.message))
            result = calibrate_intrinsics(captured.views, captured.width, captured.height, config, factory,
                                          captured.frames_read)
            payload = {"source": "charuco", **result.to_dict(), "frames_read": captured.frames_read,
                       "factory_comparison": compare_with_factory(result, factory)}
            summary = (f"RMS {result.rms_px:.3f} px over {len(result.views_used)} views "
                       f"({len(result.views_rejected)} rejected), coverage {100 * result.coverage:.0f}%")
            comparison = payload["factory_comparison"]
            if comparison and comparison.get("compared"):
                diff = ", ".join(f"{k} {v:+.2f}%" for k, v in comparison["difference_pct"].items())
                summary += f"; vs factory: {diff}"
        payload["camera_device"] = _device_info(camera)
    payload["software"] = _software()
    K = payload["K"]
    _say(f"intrinsics of {camera.name!r}: fx={K[0][0]:.2f} fy={K[1][1]:.2f} cx={K[0][2]:.2f} cy={K[1][2]:.2f} "
         f"at {payload['width']}x{payload['height']}; {summary}")
    if args.dry_run:
        _say("dry run: nothing written")
        return 0
    path = save_calibration(_directory(args), camera.name, "intrinsics", payload)
    _say(f"wrote {path}")
    return 0


def _confirm(message: str, assume_yes: bool) -> None:
    from calibration.errors import CalibrationError

    if assume_yes:
        return
    if not sys.stdin.isatty():
        raise CalibrationError("the arm is about to move: pass --yes to confirm when not running interactively")
    if input(f"{message} Move the arm? [y/N] ").strip().lower() not in ("y", "yes"):
        raise CalibrationError("cancelled by the operator; nothing moved")


def run_hand_eye(args: argparse.Namespace) -> int:
    import numpy as np

    from calibration.board import BoardDetector
    from calibration.capture import capture_hand_eye_samples
    from calibration.config import HandEyeConfig
    from calibration.errors import DegenerateInputError
    from calibration.geometry import matrix_to_quat, pose_to_transform
    from calibration.hand_eye import board_pose_from_detection, check_pose_diversity, solve_hand_eye
    from calibration.motion import DeltaMover
    from calibration.poses import generate_poses
    from calibration.ros_fields import optical_frame
    from calibration.store import load_latest, save_calibration
    from calibration.synthetic import SyntheticBoardCamera
    from wovr_core.config import ConfigError, config_from_args, load_config
    from wovr_core.hardware.arm import ArmConfig, make_arm
    from wovr_core.hardware.safety import SafetyConfig, SafetyEnvelope

    config = config_from_args(args, HandEyeConfig)
    if args.setup:
        config.setup = _SETUPS[args.setup]
    directory = _directory(args)
    camera = _make_camera(args)
    intrinsics = load_latest(directory, camera.name, "intrinsics", args.max_intrinsics_age_days)
    if (intrinsics["width"], intrinsics["height"]) != (args.width, args.height):
        raise ConfigError(f"intrinsics {intrinsics['calibration_id']} of {camera.name!r} are for "
                          f"{intrinsics['width']}x{intrinsics['height']}, not {args.width}x{args.height}")
    K, dist = np.asarray(intrinsics["K"]), np.asarray(intrinsics["dist"])

    arm_config = ArmConfig(type=args.arm, options=_yaml_mapping(args.arm_options, "--arm-options"))
    if args.arm_host:
        arm_config.host = args.arm_host
    arm = make_arm(arm_config)
    safety_config = load_config(args.safety_config, SafetyConfig) if args.safety_config else SafetyConfig()
    # the envelope converts normalised actions with the arm's own scales
    safety_config.control_hz = arm_config.control_hz
    safety_config.translation_scale = arm_config.translation_scale
    safety_config.rotation_scale = arm_config.rotation_scale
    safety = SafetyEnvelope(safety_config)
    # stay inside both the calibration box and the safety box
    config.poses.workspace_min = tuple(np.maximum(config.poses.workspace_min, safety_config.workspace_min))
    config.poses.workspace_max = tuple(np.minimum(config.poses.workspace_max, safety_config.workspace_max))
    config.poses.validate()

    with arm, camera:
        if isinstance(camera, SyntheticBoardCamera):
            camera.follow(arm, config.setup)  # the rendered scene needs to know where the hand is
        start = arm.state()
        T_start = pose_to_transform(start.ee_pos, start.ee_quat)
        first = BoardDetector(config.board).detect(camera.read().rgb)
        if first.num_corners < config.min_corners:
            raise DegenerateInputError(
                f"hand-eye: the board is not visible from the start pose ({first.num_corners} corners); move the "
                f"arm so the camera sees the whole board, then run again. Nothing moved.")
        distance = config.poses.pivot_distance_m
        if distance <= 0:
            distance = (float(np.linalg.norm(board_pose_from_detection(first, K, dist)[:3, 3]))
                        if config.setup == "eye_in_hand" else 0.10)
        poses = generate_poses(T_start, np.array([0.0, 0.0, distance]), config.poses)
        check_pose_diversity(poses, config, what="planned poses (workspace box or tilt limits too tight?)")
        _confirm(f"hand-eye ({config.setup}): {len(poses)} poses within "
                 f"{config.poses.max_rotation_deg:g} deg of the start pose, inside the box "
                 f"{np.round(config.poses.workspace_min, 2).tolist()}..{np.round(config.poses.workspace_max, 2).tolist()}.",
                 args.yes)
        rate = arm_config.control_hz if config.motion.rate_hz is None else config.motion.rate_hz
        mover = DeltaMover(arm, safety, rate_hz=rate, position_tolerance_m=config.motion.position_tolerance_m,
                           rotation_tolerance_deg=config.motion.rotation_tolerance_deg,
                           max_steps=config.motion.max_steps)
        samples = capture_hand_eye_samples(camera, arm, poses, mover, K, dist, config,
                                           on_progress=lambda p: _say("  " + p.message))
        mover(T_start)  # leave the arm where it was
        result = solve_hand_eye(samples, K, dist, config)
        device = _device_info(camera)

    parent = args.ee_frame if config.setup == "eye_in_hand" else args.base_frame
    board_parent = args.base_frame if config.setup == "eye_in_hand" else args.ee_frame
    T = result.T_camera
    payload = {
        **result.to_dict(),
        "intrinsics_id": intrinsics["calibration_id"],
        "frames": {"parent": parent, "child": args.camera_frame or optical_frame(camera.name),
                   "board_parent": board_parent},
        "translation_m": T[:3, 3].tolist(),
        "quaternion_xyzw": matrix_to_quat(T[:3, :3]).tolist(),
        "robot_poses": [samples[i].T_base_ee.tolist() for i in result.views_used],
        "arm": {"type": args.arm, "host": arm_config.host},
        "board": config.board.to_dict(),
        "camera_device": device,
        "software": _software(),
    }
    _say(f"hand-eye ({config.setup}) of {camera.name!r}: {parent} -> {payload['frames']['child']} translation "
         f"{np.round(T[:3, 3], 4).tolist()} m, quaternion {np.round(payload['quaternion_xyzw'], 4).tolist()}; "
         f"reprojection RMS {result.reprojection_rms_px:.3f} px, board residual "
         f"{result.translation_residual_mm['mean']:.2f} mm / {result.rotation_residual_deg['mean']:.3f} deg (mean) "
         f"over {len(result.views_used)} poses ({len(result.views_rejected)} rejected)")
    if args.dry_run:
        _say("dry run: nothing written")
        return 0
    path = save_calibration(directory, camera.name, "hand_eye", payload)
    _say(f"wrote {path}")
    return 0


def run(args: argparse.Namespace) -> int:
    return run_intrinsics(args) if args.mode == "intrinsics" else run_hand_eye(args)


COMMAND = Command("calibrate", "camera intrinsics (ChArUco) and hand-eye extrinsics, versioned result files",
                  add_arguments, run)
