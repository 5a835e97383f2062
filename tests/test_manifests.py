"""Manifest schema, validator, shipped lists and the PianoYT importer."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from manifests.loader import SHIPPED_DIR, load_manifest
from manifests.schema import ManifestError
from manifests.shipped import audeo_rows, import_pianoyt, pianoyt_rows, write_manifest_csv

SHARED_DATASETS = Path(__file__).resolve().parents[2] / "shared" / "datasets"

GOOD = [
    {"video_id": "a1", "url": "https://example.org/a.mp4", "split": "train", "dataset": "mine"},
    {"video_id": "dQw4w9WgXcQ", "url": "dQw4w9WgXcQ", "split": "test", "start_s": "1.5", "end_s": "30",
     "crop": "10 600 1900 800", "crop_frame": "1920x1080", "fps": "25"},
]


def _write(path: Path, rows: list[dict]) -> Path:
    if path.suffix == ".csv":
        columns = sorted({k for r in rows for k in r}, key=lambda c: list(rows[0]).index(c) if c in rows[0] else 99)
        with path.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=columns)
            writer.writeheader()
            writer.writerows(rows)
    elif path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    else:
        pq.write_table(pa.Table.from_pylist([{**{k: None for r in rows for k in r}, **r} for r in rows]), path)
    return path


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_the_same_rows_load_from_csv_jsonl_and_parquet(tmp_path, suffix):
    manifest = load_manifest(_write(tmp_path / f"m{suffix}", GOOD))
    first, second = manifest.rows
    assert (first.video_id, first.url, first.dataset, first.split) == ("a1", "https://example.org/a.mp4", "mine", "train")
    assert second.url == "https://www.youtube.com/watch?v=dQw4w9WgXcQ"  # a bare YouTube id expands
    assert (second.start_s, second.end_s, second.fps, second.crop_frame) == (1.5, 30.0, 25.0, (1920, 1080))
    assert second.crop_quad == [[10, 600], [1900, 600], [1900, 800], [10, 800]]


def test_every_bad_row_is_reported_with_file_line_and_column(tmp_path):
    rows = [
        {"video_id": "ok1", "url": "https://x.org/1.mp4", "split": "train"},  # line 2
        {"video_id": "../../etc", "url": "https://x.org/2.mp4", "split": "train"},  # 3
        {"video_id": "bad id!", "url": "https://x.org/3.mp4", "split": "train"},  # 4
        {"video_id": "v5", "url": "ftp://x.org/5.mp4", "split": "train"},  # 5
        {"video_id": "v6", "url": "https://x.org/6.mp4", "split": "tset"},  # 6
        {"video_id": "v7", "url": "https://x.org/7.mp4", "split": "train", "start_s": "9", "end_s": "3"},  # 7
        {"video_id": "ok1", "url": "https://x.org/8.mp4", "split": "train"},  # 8
        {"video_id": "v9", "url": "https://x.org/1.mp4", "split": "test"},  # 9: same video as line 2
        {"video_id": "v10", "url": "https://x.org/10.mp4", "split": "train", "crop": "1 2 3 4"},  # 10
        {"video_id": "v11", "url": "https://x.org/11.mp4", "split": "train", "fps": "fast"},  # 11
        {"video_id": "", "url": "https://x.org/12.mp4", "split": "train"},  # 12
    ]
    path = _write(tmp_path / "bad.csv", rows)
    with pytest.raises(ManifestError) as caught:
        load_manifest(path)
    problems = caught.value.problems
    expected = {3: "video_id: '../../etc' would escape", 4: "video_id: 'bad id!'", 5: "url: unsupported URL scheme 'ftp'",
                6: "split: unknown split 'tset'", 7: "end_s: end 3 s is not after start 9 s",
                8: "video_id: duplicate id 'ok1'", 9: "split: the same video", 10: "crop_frame: required",
                11: "fps: 'fast' is not a number", 12: "video_id: missing"}
    for line, fragment in expected.items():
        assert any(p.startswith(f"{path}:{line}: ") and fragment in p for p in problems), (line, problems)
    assert len(problems) == len(expected)


def test_youtube_spellings_of_one_video_in_two_splits_are_caught(tmp_path):
    path = _write(tmp_path / "m.csv", [{"video_id": "a", "url": "https://youtu.be/dQw4w9WgXcQ", "split": "train"},
                                       {"video_id": "b", "url": "https://www.youtube.com/watch?v=dQw4w9WgXcQ&t=3",
                                        "split": "test"}])
    with pytest.raises(ManifestError, match=r"m.csv:3: split: the same video"):
        load_manifest(path)


def test_unknown_column_missing_id_column_and_bad_jsonl_are_clear(tmp_path):
    with pytest.raises(ManifestError, match=r"u.csv:2: colour: unknown column"):
        load_manifest(_write(tmp_path / "u.csv", [{"video_id": "a", "colour": "red"}]))
    with pytest.raises(ManifestError, match=r"n.csv:1: video_id: required column missing"):
        load_manifest(_write(tmp_path / "n.csv", [{"url": "https://x.org/a.mp4"}]))
    (tmp_path / "j.jsonl").write_text('{"video_id": "a"}\n{not json\n')
    with pytest.raises(ManifestError, match=r"j.jsonl:2: not valid JSON"):
        load_manifest(tmp_path / "j.jsonl")
    with pytest.raises(ManifestError, match="no such manifest"):
        load_manifest(tmp_path / "absent.csv")


def test_shipped_manifests_pass_with_the_published_counts():
    demo, audeo, pianoyt = (load_manifest(SHIPPED_DIR / f"{n}.csv") for n in ("demo", "audeo", "pianoyt"))
    assert [r.split for r in audeo].count("train") == 24 and [r.split for r in audeo].count("test") == 3
    assert all(r.crop is not None and r.crop_frame in ((1920, 1080), (1280, 720)) for r in audeo)
    assert sum(r.crop_frame == (1280, 720) for r in audeo) == 4
    assert len(pianoyt) == 228
    splits = [r.split for r in pianoyt]
    assert (splits.count("train"), splits.count("test"), splits.count("unknown")) == (198, 20, 10)
    assert all(r.url is None for r in pianoyt)  # the official URLs are not public in any stored file
    assert [r.url.startswith("synth://") for r in demo] == [True] * 3


@pytest.mark.skipif(not SHARED_DATASETS.is_dir(), reason="../shared/datasets is not beside the checkout")
def test_shipped_manifests_are_exactly_what_the_published_facts_give(tmp_path):
    write_manifest_csv(audeo_rows(SHARED_DATASETS / "audeo_videos.csv"), tmp_path / "audeo.csv")
    write_manifest_csv(pianoyt_rows(SHARED_DATASETS / "pianoyt_crops_tivit.csv"), tmp_path / "pianoyt.csv")
    for name in ("audeo.csv", "pianoyt.csv"):
        assert (tmp_path / name).read_text() == (SHIPPED_DIR / name).read_text()


def test_import_pianoyt_merges_urls_splits_and_crops(tmp_path):
    official = tmp_path / "pianoyt_videos.csv"
    official.write_text("100,https://www.youtube.com/watch?v=AAAAAAAAAAA,3,660,990,40,1870\n"
                        "411,https://www.youtube.com/watch?v=BBBBBBBBBBB,1,600,700,10,1200\n"
                        "999,https://www.youtube.com/watch?v=CCCCCCCCCCC,1,,,,\n")
    out = tmp_path / "pianoyt.csv"
    assert import_pianoyt(official, out) == 229
    rows = {r.video_id: r for r in load_manifest(out)}
    assert rows["pianoyt-100"].url.endswith("AAAAAAAAAAA") and rows["pianoyt-100"].split == "test"
    assert rows["pianoyt-100"].crop == (40, 660, 1870, 990)
    assert rows["pianoyt-411"].split == "train" and rows["pianoyt-411"].crop == (10, 600, 1200, 700)
    assert rows["pianoyt-999"].crop is None and rows["pianoyt-101"].url is None


def test_cli_manifest_check_names_every_bad_line_and_passes_the_shipped_ones(tmp_path):
    bad = _write(tmp_path / "bad.csv", [{"video_id": "x/y", "split": "train"}, {"video_id": "b", "split": "dev"}])
    result = subprocess.run([sys.executable, "-m", "pipelines.cli", "manifest", "check", str(bad)],
                            capture_output=True, text=True)
    assert result.returncode == 1
    assert f"{bad}:2: video_id" in result.stdout and f"{bad}:3: split" in result.stdout
    result = subprocess.run([sys.executable, "-m", "pipelines.cli", "manifest", "check", "demo", "audeo", "pianoyt"],
                            capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.count(": ok,") == 3


def test_duplicate_columns_and_keys_odd_cell_types_and_infinite_times_are_refused(tmp_path):
    csv_twice = tmp_path / "twice.csv"
    csv_twice.write_text("video_id,url,url\nv1,https://example.org/a.mp4,/etc/passwd\n")
    with pytest.raises(ManifestError) as caught:
        load_manifest(csv_twice)
    assert caught.value.problems == [f"{csv_twice}:1: url: column appears twice in the header (csv would keep the last)"]
    jsonl = tmp_path / "m.jsonl"
    jsonl.write_text('{"video_id": "v1", "url": "https://example.org/a.mp4", "url": "/etc/passwd"}\n'
                     '{"video_id": "v2", "url": ["https://example.org/b.mp4"]}\n')
    with pytest.raises(ManifestError) as caught:
        load_manifest(jsonl)
    assert caught.value.problems == [f"{jsonl}:1: url: key appears twice in the object"]
    jsonl.write_text('{"video_id": "v2", "url": ["https://example.org/b.mp4"]}\n'
                     '{"video_id": "v3", "url": {"href": "x"}}\n{"video_id": "v4", "end_s": "inf"}\n')
    with pytest.raises(ManifestError) as caught:
        load_manifest(jsonl)
    assert [p.split(": ")[:2] for p in caught.value.problems] == [
        [f"{jsonl}:1", "url"], [f"{jsonl}:2", "url"], [f"{jsonl}:3", "end_s"]]
    assert "expected text or a number, got a list" in caught.value.problems[0]
    parquet = tmp_path / "m.parquet"
    pq.write_table(pa.table({"video_id": ["v1"], "url": [b"/etc/passwd"]}), parquet)
    with pytest.raises(ManifestError, match=r"row 1: url: expected text or a number, got a bytes"):
        load_manifest(parquet)
