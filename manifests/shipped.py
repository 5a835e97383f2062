"""Builds the shipped manifests from the published facts in ../shared/datasets, and
converts the official PianoYT CSV (from the Oxford VGG page) when a user has it.

`python -m manifests.shipped SHARED_DATASETS_DIR` regenerates audeo.csv and pianoyt.csv;
a test checks that the committed files equal what this produces.
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

from manifests.loader import load_manifest
from manifests.schema import COLUMNS

SHIPPED_DIR = Path(__file__).resolve().parent
PIANOYT_SPLITS = {"1": "train", "2": "valid", "3": "test"}


def write_manifest_csv(rows: list[dict], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({c: row.get(c, "") if row.get(c) is not None else "" for c in COLUMNS})


def audeo_rows(audeo_csv: Path) -> list[dict]:
    """Audeo's Pseudo-MIDI evaluation set: 24 train / 3 test, with the hand-drawn crops."""
    rows = []
    with audeo_csv.open(newline="") as handle:
        for r in csv.DictReader(handle):
            rows.append({
                "video_id": r["youtube_id"], "url": r["url"], "dataset": "audeo", "split": r["split"],
                "crop": " ".join(r[k] for k in ("upper_left_x", "upper_left_y", "lower_right_x", "lower_right_y")),
                "crop_frame": r["coord_frame_guess"], "fps": "25",
                "notes": f"order={r['order']}; label_folder={r['inferred_label_folder']} (inferred); "
                         "crop_frame inferred from the coordinates",
            })
    return rows


def pianoyt_rows(tivit_csv: Path) -> list[dict]:
    """The 228 PianoYT rows with splits and crops as far as they are known (no URLs)."""
    rows = []
    with tivit_csv.open(newline="") as handle:
        for r in csv.DictReader(handle):
            pid = r["video_id"]
            notes = [f"pianoyt_id={pid}", f"midi_file={r['midi_file']}"]
            if r["midi_duration_sec"]:
                notes.append(f"midi_duration_s={r['midi_duration_sec']}; midi_notes={r['n_notes']}")
            if not r["split_code"]:
                notes.append("below 1920x1080 in TiViT's download: split and crop not published")
            row = {"video_id": f"pianoyt-{pid}", "url": "", "dataset": "pianoyt",
                   "split": PIANOYT_SPLITS.get(r["split_code"], "unknown"), "fps": "25", "notes": "; ".join(notes)}
            _set_pianoyt_crop(row, _pianoyt_crop(r["crop_min_x"], r["crop_min_y"], r["crop_max_x"], r["crop_max_y"]))
            rows.append(row)
    return rows


def _pianoyt_crop(min_x: str, min_y: str, max_x: str, max_y: str) -> list[str] | None:
    return [min_x, min_y, max_x, max_y] if all((min_x, min_y, max_x, max_y)) else None


def _set_pianoyt_crop(row: dict, crop: list[str] | None) -> None:
    """PianoYT crops are in the authors' native pixels, mostly 1920x1080; a crop beyond
    1080 rows has an unknown pixel frame, so it goes to the notes, not the crop column."""
    row["crop"] = row["crop_frame"] = ""
    if crop and max(float(crop[1]), float(crop[3])) <= 1080:
        row.update(crop=" ".join(crop), crop_frame="1920x1080")
    elif crop:
        row["notes"] += f"; crop x0 y0 x1 y1 = {' '.join(crop)} exceeds 1080 rows: pixel frame unknown, not used"


def read_official_pianoyt(path: Path) -> dict[str, dict]:
    """The official pianoyt.csv: `videoID, url, split, min_y, max_y, min_x, max_x`, header optional."""
    with path.open(newline="", encoding="utf-8-sig") as handle:
        records = [r for r in csv.reader(handle) if r and any(c.strip() for c in r)]
    if records and not records[0][0].strip().isdigit():
        records = records[1:]  # header
    official = {}
    for number, r in enumerate(records, start=1):
        if len(r) < 7:
            raise ValueError(f"{path}: record {number}: expected 7 columns (videoID, url, split, min_y, max_y, "
                             f"min_x, max_x), got {len(r)}")
        vid, url, split, min_y, max_y, min_x, max_x = (c.strip() for c in r[:7])
        official[vid] = {"url": url, "split": split, "crop": _pianoyt_crop(min_x, min_y, max_x, max_y)}
    return official


def import_pianoyt(official_csv: Path, out: Path, base: Path = SHIPPED_DIR / "pianoyt.csv") -> int:
    """Writes the shipped PianoYT manifest with the official URLs, splits and crops merged
    in, and checks that the result validates (a ManifestError names each bad row)."""

    official = read_official_pianoyt(official_csv)
    with base.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    seen = set()
    for row in rows:
        pid = row["video_id"].removeprefix("pianoyt-")
        if pid in official:
            seen.add(pid)
            row.update(url=official[pid]["url"], split=PIANOYT_SPLITS.get(official[pid]["split"], "unknown"))
            row["notes"] = "; ".join(n for n in row["notes"].split("; ") if not n.startswith(("crop x0", "below 1920")))
            _set_pianoyt_crop(row, official[pid]["crop"])
    for pid, extra in official.items():  # rows the shipped list does not have
        if pid not in seen:
            row = {"video_id": f"pianoyt-{pid}", "url": extra["url"], "dataset": "pianoyt",
                   "split": PIANOYT_SPLITS.get(extra["split"], "unknown"), "fps": "25", "notes": f"pianoyt_id={pid}"}
            _set_pianoyt_crop(row, extra["crop"])
            rows.append(row)
    write_manifest_csv(rows, out)
    load_manifest(out)
    return len(rows)


def regenerate(datasets_dir: Path, out_dir: Path = SHIPPED_DIR) -> None:
    write_manifest_csv(audeo_rows(datasets_dir / "audeo_videos.csv"), out_dir / "audeo.csv")
    write_manifest_csv(pianoyt_rows(datasets_dir / "pianoyt_crops_tivit.csv"), out_dir / "pianoyt.csv")


if __name__ == "__main__":
    regenerate(Path(sys.argv[1]))
