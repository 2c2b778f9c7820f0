"""Synthetic images of a ChArUco board seen by a pinhole camera with known intrinsics, distortion and pose.

Each output pixel is traced back to the board plane (undistort, then the inverse plane homography) and
the board image is sampled there; rendering at ``supersample`` x resolution and area-averaging down
gives anti-aliased edges, so detected corners are unbiased and the ground truth is exact.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from calibration.board import board_image
from calibration.config import BoardConfig

_MIP_LEVELS = (24, 48, 96, 192, 384)  # board image resolutions, pixels per square


@dataclass(frozen=True)
class ImageNoise:
    """Imaging imperfections: Gaussian blur (pixels), additive Gaussian noise (grey levels), gain/offset."""

    blur_sigma_px: float = 0.7
    noise_std: float = 2.0
    gain: float = 1.0
    offset: float = 0.0
    background: float = 110.0


class BoardRenderer:
    """Renders grayscale views of one board for one camera (K, distortion, image size)."""

    def __init__(self, board: BoardConfig, K: np.ndarray, dist: np.ndarray | None, image_size: tuple[int, int],
                 supersample: int = 2):
        self.board = board
        self.K = np.asarray(K, dtype=np.float64)
        self.dist = np.zeros(5) if dist is None else np.asarray(dist, dtype=np.float64).reshape(-1)
        self.width, self.height = image_size
        self.supersample = supersample
        self._rays = self._pixel_rays()
        self._mips: dict[int, tuple[np.ndarray, int]] = {}

    def _pixel_rays(self) -> tuple[np.ndarray, np.ndarray]:
        """Normalised camera rays (x, y, 1) through the centres of the supersampled pixels, as x and y."""
        S = self.supersample
        us, vs = np.meshgrid(np.arange(self.width * S, dtype=np.float64), np.arange(self.height * S, dtype=np.float64))
        # the supersampled pixel u' lies at (u' - (S-1)/2) / S in output pixel coordinates (centres at integers)
        pix = np.stack([(us - (S - 1) / 2) / S, (vs - (S - 1) / 2) / S], axis=-1).reshape(-1, 1, 2)
        if np.any(self.dist != 0):
            criteria = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 30, 1e-10)
            xy = cv2.undistortPointsIter(pix, self.K, self.dist, None, None, criteria).reshape(-1, 2)
        else:
            xy = (pix.reshape(-1, 2) - self.K[:2, 2]) / np.diag(self.K)[:2]
        # float32 is ample (1e-4 board pixels) and halves the per-view memory traffic
        return xy[:, 0].astype(np.float32), xy[:, 1].astype(np.float32)

    def _mip(self, px_per_square: int) -> tuple[np.ndarray, int]:
        if px_per_square not in self._mips:
            margin = px_per_square // 2
            self._mips[px_per_square] = (board_image(self.board, px_per_square, margin).astype(np.float32), margin)
        return self._mips[px_per_square]

    def render(self, T_cam_board: np.ndarray, noise: ImageNoise = ImageNoise(),
               rng: np.random.Generator | None = None) -> np.ndarray:
        """(H, W) uint8 image of the board at pose ``T_cam_board`` (board frame -> camera frame)."""
        S = self.supersample
        R, t = T_cam_board[:3, :3], T_cam_board[:3, 3]
        plane = np.column_stack([R[:, 0], R[:, 1], t])  # (X, Y, 1) on the board -> camera ray
        if abs(np.linalg.det(plane)) < 1e-12:
            raise ValueError("board plane passes through the camera centre")
        # pick the board image resolution closest above the projected square size (no aliasing, no waste)
        depth = max(float(t[2]), 1e-3)
        projected = self.K[0, 0] * S * self.board.square_length_m / depth
        px_per_square = next((m for m in _MIP_LEVELS if m >= projected), _MIP_LEVELS[-1])
        img, margin = self._mip(px_per_square)
        scale = px_per_square / self.board.square_length_m

        # elementwise rather than a (N, 3) @ (3, 3) matmul: BLAS threads crawl on a busy machine
        M = np.linalg.inv(plane)
        x, y = self._rays
        M = M / np.abs(M).max()  # w's sign is what matters; keep float32 well scaled
        bx, by, w = (np.float32(M[i, 0]) * x + np.float32(M[i, 1]) * y + np.float32(M[i, 2]) for i in range(3))
        in_front = w > 1e-9
        inv_w = np.float32(scale) / np.where(in_front, w, np.float32(1.0))
        offset = np.float32(margin - 0.5)
        map_x = np.where(in_front, bx * inv_w + offset, np.float32(-1e6))
        map_y = np.where(in_front, by * inv_w + offset, np.float32(-1e6))
        shape = (self.height * S, self.width * S)
        big = cv2.remap(img, map_x.reshape(shape), map_y.reshape(shape),
                        cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=float(noise.background))
        out = cv2.resize(big, (self.width, self.height), interpolation=cv2.INTER_AREA)
        if noise.blur_sigma_px > 0:
            out = cv2.GaussianBlur(out, (0, 0), noise.blur_sigma_px)
        out = out * noise.gain + noise.offset
        if noise.noise_std > 0:
            rng = rng if rng is not None else np.random.default_rng()
            out = out + rng.normal(0.0, noise.noise_std, out.shape)
        return np.clip(np.rint(out), 0, 255).astype(np.uint8)

    def project(self, T_cam_board: np.ndarray, object_points: np.ndarray) -> np.ndarray:
        """True pixel positions of board points (N, 3) at this pose (with distortion)."""
        rvec = cv2.Rodrigues(T_cam_board[:3, :3])[0]
        pts, _ = cv2.projectPoints(np.asarray(object_points, np.float64).reshape(-1, 1, 3), rvec,
                                   T_cam_board[:3, 3].astype(np.float64), self.K, self.dist)
        return pts.reshape(-1, 2)
