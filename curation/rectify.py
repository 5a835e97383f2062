"""Rectification: warp a keyboard quadrilateral to an upright W x H crop."""

from __future__ import annotations

import cv2
import numpy as np


def rectify_keyboard(frame: np.ndarray, quad, width: int, height: int) -> np.ndarray:
    """Warp the quad (corners TL, TR, BR, BL in frame pixels) to a width x height image."""
    src = np.asarray(quad, np.float32).reshape(4, 2)
    dst = np.array([[0, 0], [width, 0], [width, height], [0, height]], np.float32)
    matrix = cv2.getPerspectiveTransform(src, dst)
    return cv2.warpPerspective(frame, matrix, (width, height), flags=cv2.INTER_AREA)
