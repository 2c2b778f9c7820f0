"""Camera calibration: ChArUco intrinsics, hand-eye extrinsics (eye-in-hand / eye-to-hand), versioned results.

Importing the package registers the ``synthetic_board`` camera (lazily: nothing heavy is imported here).
"""

from wovr_core.hardware.camera import CAMERAS

CAMERAS.register("synthetic_board", "calibration.synthetic:SyntheticBoardCamera")
