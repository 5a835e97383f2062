"""Rectification: warp a keyboard quadrilateral to an upright W x H crop."""

from __future__ import annotations

import cv2
import numpy as np


def rectification_matrix(quad, width: int, height: int) -> np.ndarray:
    """Homography taking the quad (corners TL, TR, BR, BL in frame pixels) to a width x height crop."""
    src = np.asarray(quad, np.float32).reshape(4, 2)
    dst = np.array([[0, 0], [width, 0], [width, height], [0, height]], np.float32)
    return cv2.getPerspectiveTransform(src, dst)


def rectify_keyboard(frame: np.ndarray, quad, width: int, height: int) -> np.ndarray:
    return cv2.warpPerspective(frame, rectification_matrix(quad, width, height), (width, height),
                               flags=cv2.INTER_LINEAR)
