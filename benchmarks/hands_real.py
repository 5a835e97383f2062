"""MediaPipe Hands (curation/hands.py) on real frames, against hand boxes annotated by hand.

    .venv/bin/python benchmarks/hands_real.py FRAMES_DIR ANNOTATIONS_DIR [--limit N]

FRAMES_DIR and ANNOTATIONS_DIR: `versions/1/frames` and `versions/1/annotations` of the
public AmitMY/piano-hands repository (236 frames of about 159 YouTube piano videos, and
Pascal VOC XML with a box per hand, named left or right; third-party, never committed).
Each frame is searched on its own (static mode: no tracking from a previous frame).

A box counts as found when a detected hand has at least half of its 21 landmarks inside
it (the box widened by 10 % each side); a detected hand matches one box at most. Printed:
the share of boxes found, detected hands that match no box, how often MediaPipe's left /
right agrees with the box's name, and the speed: frames a second on these cores beside
reading the same JPEGs (the anchor), and keypoints (21 per hand found) a second.
"""

from __future__ import annotations

import argparse
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import cv2
import numpy as np

from curation.hands import HandTracker

WIDEN = 0.10


def boxes_of(xml: Path) -> list[tuple[str, np.ndarray]]:
    """(name, [xmin, ymin, xmax, ymax]) of each annotated hand."""
    root = ET.parse(xml).getroot()
    return [(obj.findtext("name"), np.array([float(obj.find("bndbox").findtext(k))
                                             for k in ("xmin", "ymin", "xmax", "ymax")]))
            for obj in root.iter("object")]


def inside_share(landmarks: np.ndarray, box: np.ndarray) -> float:
    w, h = box[2] - box[0], box[3] - box[1]
    x0, y0, x1, y1 = box[0] - WIDEN * w, box[1] - WIDEN * h, box[2] + WIDEN * w, box[3] + WIDEN * h
    x, y = landmarks[:, 0], landmarks[:, 1]
    return float(((x >= x0) & (x <= x1) & (y >= y0) & (y <= y1)).mean())


def match(hands, boxes) -> tuple[list[int | None], int]:
    """Per box the detected hand it matched (or None), and the detected hands left over."""
    found = [i for i in range(len(hands.handedness)) if hands.handedness[i] >= 0]
    pairs = sorted(((inside_share(hands.landmarks[i], box), i, b) for i in found for b, (_, box) in enumerate(boxes)),
                   reverse=True)
    matched: list[int | None] = [None] * len(boxes)
    used: set[int] = set()
    for share, i, b in pairs:
        if share >= 0.5 and i not in used and matched[b] is None:
            matched[b] = i
            used.add(i)
    return matched, len(found) - len(used)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("frames", type=Path)
    parser.add_argument("annotations", type=Path)
    parser.add_argument("--limit", type=int, default=0, help="only the first N annotated frames")
    args = parser.parse_args()
    xmls = sorted(p for p in args.annotations.glob("*.xml") if boxes_of(p))
    xmls = [p for p in xmls if (args.frames / p.with_suffix(".jpg").name).is_file()]
    if args.limit:
        xmls = xmls[:args.limit]
    if not xmls:
        raise SystemExit(f"no annotated frames of {args.annotations} found in {args.frames}")
    paths = [args.frames / p.with_suffix(".jpg").name for p in xmls]
    started = time.perf_counter()
    images = [cv2.imread(str(p)) for p in paths]
    read_s = time.perf_counter() - started
    tracker = HandTracker(static=True)
    n_boxes = found = extra = same_side = keypoints = 0
    started = time.perf_counter()
    for xml, image in zip(xmls, images):
        hands = tracker(image)
        boxes = boxes_of(xml)
        matched, leftover = match(hands, boxes)
        n_boxes += len(boxes)
        found += sum(m is not None for m in matched)
        extra += leftover
        same_side += sum(m is not None and (hands.handedness[m] == 1) == (name == "right")
                         for m, (name, _) in zip(matched, boxes))
        keypoints += 21 * hands.count
    track_s = time.perf_counter() - started
    tracker.close()
    print(f"{len(xmls)} annotated frames, {n_boxes} hand boxes")
    print(f"boxes with a detected hand: {found}/{n_boxes} = {found / n_boxes:.1%}; detected hands in no box: {extra}")
    if found:
        print(f"MediaPipe's left/right as the box's name: {same_side}/{found} = {same_side / found:.1%} "
              f"(it assumes a camera facing the player)")
    fps, read_fps = len(xmls) / track_s, len(xmls) / read_s
    print(f"speed: {fps:.1f} frames/s ({1000 / fps:.0f} ms a frame, {keypoints / track_s:.0f} keypoints/s); "
          f"reading the JPEGs (anchor): {read_fps:.1f} frames/s; ratio {fps / read_fps:.3f}")


if __name__ == "__main__":
    main()
