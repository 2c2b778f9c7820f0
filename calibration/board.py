"""The ChArUco calibration board: its description, its image, and corner detection (cv2.aruco, OpenCV 4.7+)."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from calibration.config import BoardConfig


def make_board(config: BoardConfig) -> cv2.aruco.CharucoBoard:
    config.validate()
    dictionary = cv2.aruco.getPredefinedDictionary(getattr(cv2.aruco, config.dictionary))
    return cv2.aruco.CharucoBoard((config.squares_x, config.squares_y), config.square_length_m,
                                  config.marker_length_m, dictionary)


def board_image(config: BoardConfig, px_per_square: int = 100, margin_px: int = 50) -> np.ndarray:
    """Printable grayscale image of the board. Board point (X, Y) in metres lies at pixel
    ``margin_px + X * px_per_square / square_length_m - 0.5`` (pixel centres at integers)."""
    width = config.squares_x * px_per_square + 2 * margin_px
    height = config.squares_y * px_per_square + 2 * margin_px
    return make_board(config).generateImage((width, height), marginSize=margin_px, borderBits=1)


@dataclass(frozen=True)
class BoardDetection:
    """Chessboard corners found in one image: pixel positions, their ids and their board coordinates."""

    image_points: np.ndarray  # (N, 2) float32 pixels
    object_points: np.ndarray  # (N, 3) float32 metres, board frame (z = 0 on the board)
    ids: np.ndarray  # (N,) int32

    @property
    def num_corners(self) -> int:
        return int(len(self.ids))


class BoardDetector:
    """Finds the ChArUco chessboard corners of one board in images (gray or RGB)."""

    def __init__(self, config: BoardConfig):
        self.config = config
        self.board = make_board(config)
        self._detector = cv2.aruco.CharucoDetector(self.board)

    def detect(self, image: np.ndarray) -> BoardDetection:
        gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) if image.ndim == 3 else image
        corners, ids, _, _ = self._detector.detectBoard(gray)
        if ids is None or len(ids) == 0:
            return BoardDetection(np.zeros((0, 2), np.float32), np.zeros((0, 3), np.float32), np.zeros(0, np.int32))
        obj, img = self.board.matchImagePoints(corners, ids)
        return BoardDetection(img.reshape(-1, 2).astype(np.float32), obj.reshape(-1, 3).astype(np.float32),
                              ids.reshape(-1).astype(np.int32))
