"""The manifest schema: one row per video, read from CSV, JSONL or Parquet, and validated.

Columns (only `video_id` is required):

| column | meaning |
| --- | --- |
| `video_id` | letters, digits, `-`, `_`; at most 64 characters; unique in the manifest |
| `url` | http(s) URL, `file://` URL, local path (relative to the manifest's folder), a bare YouTube id (expands to its watch URL), `synth://SEED/INDEX?seconds=S` (a synthetic video rendered on first use), or empty (not known: the row cannot be fetched) |
| `dataset` | free text (default `custom`) |
| `split` | `train`, `valid`, `test`, or `unknown` (not published); default `train` |
| `start_s`, `end_s` | time range to keep, seconds; end after start |
| `crop` | manual keyboard box `x0 y0 x1 y1` or quad `x y` x 4 (TL TR BR BL), spaces or commas |
| `crop_frame` | the pixel frame the crop was measured in, `WIDTHxHEIGHT`; required with `crop` |
| `fps` | corpus frame rate for this video (default: the build's) |
| `notes` | free text |

Every problem is reported as `FILE:LINE: column: what is wrong` (Parquet: `FILE:row N`).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlparse

COLUMNS = ("video_id", "url", "dataset", "split", "start_s", "end_s", "crop", "crop_frame", "fps", "notes")
SPLITS = ("train", "valid", "test", "unknown")
VIDEO_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
YOUTUBE_ID = re.compile(r"^[A-Za-z0-9_-]{11}$")
CROP_FRAME = re.compile(r"^(\d{2,5})x(\d{2,5})$")
URL_SCHEMES = ("http", "https", "file", "synth")


@dataclass(frozen=True)
class ManifestRow:
    video_id: str
    url: str | None  # normalised: absolute URL, file:// URL, synth:// URL, or None
    dataset: str = "custom"
    split: str = "train"
    start_s: float | None = None
    end_s: float | None = None
    crop: tuple[float, ...] | None = None  # 4 (box) or 8 (quad) numbers
    crop_frame: tuple[int, int] | None = None  # (width, height)
    fps: float | None = None
    notes: str | None = None
    line: int = 0  # where the row came from, for messages

    @property
    def crop_quad(self) -> list[list[float]] | None:
        """The manual crop as corners TL, TR, BR, BL, in `crop_frame` pixels."""
        if self.crop is None:
            return None
        if len(self.crop) == 4:
            x0, y0, x1, y1 = self.crop
            return [[x0, y0], [x1, y0], [x1, y1], [x0, y1]]
        return [list(self.crop[i:i + 2]) for i in range(0, 8, 2)]


@dataclass(frozen=True)
class Manifest:
    path: Path
    rows: tuple[ManifestRow, ...]

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self):
        return iter(self.rows)

    def summary(self) -> str:
        """`PATH: ok, N videos (n train, ...)[; k without URL]`, as `manifest check` prints it."""
        splits: dict[str, int] = {}
        for row in self.rows:
            splits[row.split] = splits.get(row.split, 0) + 1
        no_url = sum(row.url is None for row in self.rows)
        detail = ", ".join(f"{n} {s}" for s, n in sorted(splits.items()))
        return f"{self.path}: ok, {len(self)} videos ({detail})" + (f"; {no_url} without URL" if no_url else "")


class ManifestError(ValueError):
    """All problems found in one manifest, each `FILE:LINE: column: what is wrong`."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__(f"{len(problems)} problem(s) in the manifest:\n" + "\n".join(problems))


def canonical_youtube_url(url: str) -> str | None:
    """https://www.youtube.com/watch?v=ID for any youtu.be / youtube.com video URL, else None.

    One spelling per video, so the same video under two spellings is caught as a duplicate.
    """
    parsed = urlparse(url)
    host = (parsed.hostname or "").lower().removeprefix("www.").removeprefix("m.")
    video = None
    if host == "youtu.be":
        video = parsed.path.strip("/")
    elif host in ("youtube.com", "music.youtube.com"):
        if parsed.path == "/watch":
            video = parse_qs(parsed.query).get("v", [""])[0]
        elif parsed.path.startswith(("/shorts/", "/embed/", "/live/")):
            video = parsed.path.split("/")[2]
    return f"https://www.youtube.com/watch?v={video}" if video and YOUTUBE_ID.match(video) else None


def normalise_url(value: str, base_dir: Path) -> str:
    """Absolute URL for a manifest `url` cell; raises ValueError naming what is wrong."""
    value = value.strip()
    parsed = urlparse(value)
    if parsed.scheme and len(parsed.scheme) > 1:  # one letter would be a Windows drive
        if parsed.scheme not in URL_SCHEMES:
            raise ValueError(f"unsupported URL scheme {parsed.scheme!r} (use http, https, file, synth or a local path)")
        if parsed.scheme in ("http", "https") and not parsed.netloc:
            raise ValueError(f"URL {value!r} has no host")
        return canonical_youtube_url(value) or value
    local = (base_dir / value).resolve()
    if YOUTUBE_ID.match(value) and not local.exists():
        return f"https://www.youtube.com/watch?v={value}"
    return local.as_uri()


def _parse_crop(text: str) -> tuple[float, ...]:
    text = text.strip()
    numbers = json.loads(text) if text.startswith("[") else re.split(r"[\s,;]+", text)
    values = tuple(float(v) for v in (numbers if not isinstance(numbers[0], list) else sum(numbers, [])))
    if len(values) not in (4, 8):
        raise ValueError(f"expected 4 numbers (box x0 y0 x1 y1) or 8 (quad TL TR BR BL), got {len(values)}")
    if any(v < 0 for v in values):
        raise ValueError("negative coordinate")
    if len(values) == 4 and not (values[2] > values[0] and values[3] > values[1]):
        raise ValueError("box needs x1 > x0 and y1 > y0")
    return values


def _cell(raw: dict, column: str) -> str | None:
    value = raw.get(column)
    if value is None:
        return None
    if isinstance(value, float) and value != value:  # NaN from pandas/pyarrow
        return None
    text = str(value).strip()
    return text or None


def validate_row(raw: dict, where: str, base_dir: Path) -> tuple[ManifestRow | None, list[str]]:
    """One raw row -> a ManifestRow, or the list of `where: column: problem` messages."""
    problems: list[str] = []

    def bad(column: str, message: str) -> None:
        problems.append(f"{where}: {column}: {message}")

    for column, value in list(raw.items()):
        if value is not None and not isinstance(value, (str, int, float)) and not (column == "crop" and isinstance(value, list)):
            bad(column, f"expected text or a number, got a {type(value).__name__} ({str(value)[:40]!r})")
            raw = {**raw, column: None}
    video_id = _cell(raw, "video_id") or ""
    if not video_id:
        bad("video_id", "missing (required)")
    elif "/" in video_id or "\\" in video_id or ".." in video_id:
        bad("video_id", f"{video_id!r} would escape the output folder (letters, digits, '-', '_' only)")
    elif not VIDEO_ID.match(video_id):
        bad("video_id", f"{video_id!r} is not 1-64 letters, digits, '-' or '_'")
    url = None
    if (cell := _cell(raw, "url")) is not None:
        try:
            url = normalise_url(cell, base_dir)
        except ValueError as error:
            bad("url", str(error))
    split = (_cell(raw, "split") or "train").lower()
    if split not in SPLITS:
        bad("split", f"unknown split {split!r} (one of {', '.join(SPLITS)})")
    numbers: dict[str, float | None] = {}
    for column in ("start_s", "end_s", "fps"):
        numbers[column] = None
        if (cell := _cell(raw, column)) is not None:
            try:
                numbers[column] = float(cell)
            except ValueError:
                bad(column, f"{cell!r} is not a number")
                continue
            if not 0 <= numbers[column] < float("inf") or (column == "fps" and not 0 < numbers[column] <= 240):
                bad(column, f"{cell} is out of range")
    if numbers["start_s"] is not None and numbers["end_s"] is not None and numbers["end_s"] <= numbers["start_s"]:
        bad("end_s", f"end {numbers['end_s']:g} s is not after start {numbers['start_s']:g} s")
    crop = crop_frame = None
    if (cell := _cell(raw, "crop")) is not None:
        try:
            crop = _parse_crop(cell)
        except (ValueError, json.JSONDecodeError, IndexError, TypeError) as error:
            bad("crop", f"{cell!r}: {error}")
    if (cell := _cell(raw, "crop_frame")) is not None:
        match = CROP_FRAME.match(cell.lower())
        if match:
            crop_frame = (int(match.group(1)), int(match.group(2)))
        else:
            bad("crop_frame", f"{cell!r} is not WIDTHxHEIGHT (e.g. 1920x1080)")
    if crop is not None and crop_frame is None and not any("crop_frame" in p for p in problems):
        bad("crop_frame", "required when crop is given (the pixel frame the crop was measured in)")
    if crop is not None and crop_frame is not None:
        xs, ys = crop[0::2], crop[1::2]
        if max(xs) > crop_frame[0] * 1.1 or max(ys) > crop_frame[1] * 1.1:
            bad("crop", f"{crop} lies outside its {crop_frame[0]}x{crop_frame[1]} frame")
    if problems:
        return None, problems
    return ManifestRow(video_id=video_id, url=url, dataset=_cell(raw, "dataset") or "custom", split=split,
                       start_s=numbers["start_s"], end_s=numbers["end_s"], crop=crop, crop_frame=crop_frame,
                       fps=numbers["fps"], notes=_cell(raw, "notes")), []


def cross_check(rows: list[ManifestRow], where: dict[int, str]) -> list[str]:
    """Problems between rows: duplicate ids, the same video twice or in two splits."""
    problems = []
    first_id: dict[str, ManifestRow] = {}
    first_url: dict[str, ManifestRow] = {}
    for row in rows:
        if row.video_id in first_id:
            problems.append(f"{where[row.line]}: video_id: duplicate id {row.video_id!r} (first at {where[first_id[row.video_id].line]})")
        else:
            first_id[row.video_id] = row
        if row.url is None:
            continue
        if row.url in first_url:
            other = first_url[row.url]
            if other.split != row.split:
                problems.append(f"{where[row.line]}: split: the same video ({row.url}) is in {other.split!r} at "
                                f"{where[other.line]} and in {row.split!r} here")
            else:
                problems.append(f"{where[row.line]}: url: duplicate video {row.url} (first at {where[other.line]})")
        else:
            first_url[row.url] = row
    return problems
