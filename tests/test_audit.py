"""`pianocorpus audit` on the e2e build's corpus (3 good videos, 4 broken ones), checked
against the synthetic truth and against figures recomputed here from the Parquet and MIDI
files; `--compare` against a second label version made by relabel; the checks, on a copy
with a label row removed; the per-video flags and the manifest-crop agreement."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pretty_midi
import pyarrow.parquet as pq
import pytest
from sklearn.metrics import f1_score

from curation.video import _located_iou
from pipelines.audit import duplicate_checks, video_flags
from synth.video import SynthConfig, make_video
from tests.conftest import GOOD

FAILED = {"unavailable": 1, "corrupt": 1, "no_audio": 1, "no_keyboard": 1}


def _run(*args, timeout=600) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", "pipelines.cli", *map(str, args)], capture_output=True, text=True,
                            timeout=timeout)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


@pytest.fixture(scope="module")
def audited(built_corpus, served, tmp_path_factory):
    """A copy of the corpus, a second label version, a manifest with a published MIDI length."""
    source, stats = built_corpus
    manifest, _, _ = served
    out = tmp_path_factory.mktemp("audit") / "c"
    shutil.copytree(source, out)
    version = stats["label_version"]
    _run("relabel", out, "--labeler", "basic-pitch", "--param", "onset_threshold=0.65", "--num-cpus", "2")
    other = next(v for v in json.loads((out / "corpus.json").read_text())["label_versions"] if v != version)
    table = pd.read_csv(manifest)
    table["notes"] = ["midi_duration_s=5.5; midi_notes=12" if v == "vid-a" else "" for v in table.video_id]
    with_notes = out.parent / "manifest.csv"
    table.to_csv(with_notes, index=False)
    printed = _run("audit", out, "--label-version", version, "--compare", other, "--manifest", with_notes,
                   "--cache", source.parent / "cache").stdout
    return out, version, other, json.loads((out / "stats" / "audit.json").read_text()), printed


def _kept_labels(corpus, version: str, split: str | None = None) -> pd.DataFrame:
    splits = [split] if split else ["train", "test"]
    frames = pd.concat([pq.read_table(corpus / "frames" / s, columns=["video_id", "frame", "kept"]).to_pandas()
                        for s in splits])
    labels = pd.concat([pq.read_table(corpus / "labels" / version / s, columns=["video_id", "frame", "frame_roll"])
                        .to_pandas() for s in splits])
    merged = frames[frames.kept].merge(labels, on=["video_id", "frame"])
    return merged.sort_values(["video_id", "frame"])


def test_split_figures_match_the_truth_and_the_parquet(audited, served):
    corpus, _, _, result, printed = audited
    _, truths, _ = served
    overall = result["splits"]["overall"]
    assert overall["videos"] == 7 and overall["ok"] == 3 and overall["failed"] == FAILED
    assert overall["frames"] == sum(t["video"]["n_frames"] for t in truths.values())
    assert overall["hours"] == pytest.approx(sum(t["video"]["n_frames"] / 25 for t in truths.values()) / 3600, abs=1e-4)
    for split in ("train", "test"):
        frames = pq.read_table(corpus / "frames" / split, columns=["kept", "drop_reason"]).to_pandas()
        mine = result["splits"][split]
        assert mine["ok"] == sum(s == split for s, _ in GOOD.values())
        assert mine["kept"] == int(frames.kept.sum()) and mine["frames"] == len(frames)
        assert mine["dropped"]["no_keyboard"] == int((frames.drop_reason == "no_keyboard").sum())
        assert mine["kept_ratio"] == pytest.approx(frames.kept.mean(), abs=1e-4)
    playing = sum(int(np.sum(t["playing"])) for t in truths.values())
    assert abs(overall["kept"] - playing) <= 0.02 * overall["frames"]
    assert "3 ok of 7" in printed and "1 no_audio" in printed


def test_label_statistics_match_the_midi_and_the_rolls(audited):
    corpus, version, _, result, _ = audited
    notes = [n for v in GOOD for inst in pretty_midi.PrettyMIDI(
        str(corpus / "labels" / version / "midi" / f"{v}.mid")).instruments for n in inst.notes]
    overall = result["labels"]["overall"]
    assert overall["notes"] == len(notes)
    assert overall["pitch_histogram"] == np.bincount([n.pitch - 21 for n in notes], minlength=88).tolist()
    assert sum(overall["velocity_histogram"]) == len(notes)
    assert sum(overall["duration_histogram"]["counts"]) == len(notes)
    assert overall["notes_per_s"] == pytest.approx(len(notes) / (3 * 6.0), rel=0.01)
    kept = _kept_labels(corpus, version)
    rolls = np.stack(kept.frame_roll.to_numpy()).astype(bool)
    assert overall["kept_frames"] == len(rolls)
    assert overall["no_key_share"] == pytest.approx((rolls.sum(axis=1) == 0).mean(), abs=1e-4)
    assert overall["polyphony"][:4] == np.bincount(rolls.sum(axis=1), minlength=4)[:4].tolist()
    test_rolls = np.stack(_kept_labels(corpus, version, "test").frame_roll.to_numpy()).astype(bool)
    assert result["labels"]["test"]["keys_never_down"] == [21 + k for k in np.flatnonzero(~test_rolls.any(axis=0))]


def test_compare_agrees_with_an_independent_f1(audited):
    corpus, version, other, result, printed = audited
    reference = np.stack(_kept_labels(corpus, version).frame_roll.to_numpy()).astype(bool)
    estimate = np.stack(_kept_labels(corpus, other).frame_roll.to_numpy()).astype(bool)
    compare = result["compare"]
    assert compare["reference"] == version and compare["other"] == other
    assert compare["overall"]["frame_f1"] == pytest.approx(f1_score(reference, estimate, average="micro"), abs=1e-4)
    assert compare["overall"]["key_disagreement"] == pytest.approx((reference != estimate).mean(axis=0), abs=1e-4)
    assert 0 < compare["overall"]["onset_f1_mean"] <= 1
    assert "frame F1" in printed


def test_published_figures_and_report(audited):
    corpus, _, _, result, _ = audited
    rows = result["published"]["midi_durations"]["rows"]
    assert [r["video_id"] for r in rows] == ["vid-a"]
    assert rows[0]["difference_s"] == pytest.approx(rows[0]["duration_s"] - 5.5, abs=1e-3)
    page = (corpus / "stats" / "report.html").read_text()
    assert page.count('src="data:image/png;base64,') == 4  # frames, notes per key, histograms, disagreement
    assert "http://" not in page and "https://" not in page and "<script" not in page  # works offline
    assert "no_audio" in page and "vid-a" in page


def test_video_flags_and_checks(audited, tmp_path):
    corpus, version, _, result, _ = audited
    videos = {v["video_id"]: v for v in result["videos"]}
    assert all(videos[v]["flags"] == [] for v in GOOD)  # clean synthetic videos raise none
    assert videos["vid-a"]["audio_s"] == pytest.approx(videos["vid-a"]["duration_s"], abs=0.1)
    assert result["checks"] == []
    broken = tmp_path / "c"
    shutil.copytree(corpus, broken, ignore=shutil.ignore_patterns(".cache", ".work"))
    part = broken / "labels" / version / "train" / "part-00000.parquet"
    table = pq.read_table(part)
    pq.write_table(table.slice(1), part)
    printed = _run("audit", broken, "--label-version", version).stdout
    checks = json.loads((broken / "stats" / "audit.json").read_text())["checks"]
    first = table.slice(0, 1).to_pylist()[0]
    recorded = json.loads((broken / "corpus.json").read_text())["files"]["labels"][version]["train"][0]
    assert checks == [{"check": "files", "where": str(part), "count": 1,
                       "detail": f"{part.stat().st_size} bytes, {recorded['bytes']} expected (damaged or cut short)"},
                      {"check": "frames_without_labels", "where": f"part-00000.parquet / {part}", "count": 1,
                       "detail": f"e.g. {first['video_id']} frame {first['frame']}"}]
    assert "frames_without_labels" in printed


def test_flag_rules():
    entry = {"n_notes": 0, "kb_source": "detected", "kb_score": 0.3, "drop_ratio": 0.7, "audio_s": 10.0,
             "duration_s": 12.0, "kb_located_iou": None}
    assert video_flags(entry) == ["no_notes", "keyboard_score_low", "high_drop_ratio", "duration_mismatch"]
    crop = {**entry, "n_notes": 5, "kb_source": "manifest", "drop_ratio": 0.1, "audio_s": 12.0, "kb_located_iou": 0.2}
    assert video_flags(crop) == ["keyboard_far_from_manifest_crop"]
    assert video_flags({**crop, "kb_located_iou": 0.8}) == []


def test_duplicate_sources_across_splits_are_reported():
    videos = pd.DataFrame({"video_id": ["a", "b", "c", "c"], "split": ["train", "test", "train", "train"],
                           "source_sha256": ["f" * 64, "f" * 64, None, "e" * 64]})
    checks = {c["check"]: c for c in duplicate_checks(videos)}
    assert checks["duplicate_video_id"]["where"] == "c"
    assert checks["same_source_in_two_splits"]["where"] == "a, b"


def test_manifest_crop_agreement_is_measured(tmp_path):
    from curation.keyboard import sample_frames

    truth = json.loads(make_video(tmp_path, "crop", 41, SynthConfig(seconds=3, width=640, height=360,
                                                                     audio="pretty_midi")).read_text())
    frames, _ = sample_frames(tmp_path / "crop.mp4", 8)
    quad = np.array(truth["keyboard"]["quad"], float)
    assert _located_iou(frames, quad, (360, 640)) > 0.9
    assert _located_iou(frames, quad + [0, 60], (360, 640)) < 0.5  # a crop 60 px too low


def test_audeo_rows_are_set_beside_the_published_split_sizes():
    from pipelines.audit import published_comparison

    videos = pd.DataFrame({"video_id": ["a", "b", "c", "d"], "dataset": ["audeo", "audeo", "audeo", "custom"],
                           "split": ["train", "train", "test", "train"], "status": ["ok", "ok", "failed", "ok"],
                           "duration_s": [60.0, 90.0, None, 30.0], "n_frames": [1500, 2250, 0, 750]})
    audeo = published_comparison(videos, {})["audeo"]
    assert audeo["train"]["published"] == {"videos": 24, "minutes": 115.0, "frames": 172_404}
    assert audeo["train"]["ours"] == {"videos": 2, "minutes": 2.5, "frames": 3750}
    assert audeo["test"]["ours"] == {"videos": 0, "minutes": 0.0, "frames": 0}


def test_a_corpus_where_every_video_failed_is_audited_not_crashed(tmp_path):
    import pyarrow as pa

    from contract.records import VIDEOS_SCHEMA
    from pipelines.audit import audit
    from pipelines.report import write_report

    rows = [{name: None for name in VIDEOS_SCHEMA.names} | {"video_id": v, "split": "train", "dataset": "custom",
                                                           "status": "failed", "error_class": c, "n_frames": 0,
                                                           "n_kept": 0, "n_no_keyboard": 0, "n_silent": 0,
                                                           "n_outside_range": 0}
            for v, c in (("gone", "unavailable"), ("mute", "no_audio"))]
    pq.write_table(pa.Table.from_pylist(rows, schema=VIDEOS_SCHEMA), tmp_path / "videos.parquet")
    (tmp_path / "corpus.json").write_text(json.dumps({"label_versions": {"v1": {}, "v2": {}},
                                                      "default_label_version": "v1"}))
    result = audit(tmp_path, compare="v2")
    assert result["splits"]["overall"]["failed"] == {"unavailable": 1, "no_audio": 1}
    assert result["labels"]["overall"]["notes"] == 0 and result["compare"]["overall"]["frames"] == 0
    assert [v["flags"] for v in result["videos"]] == [[], []]
    write_report(result, tmp_path)
    assert "unavailable" in (tmp_path / "stats" / "report.html").read_text()


def test_each_ok_video_has_a_page_with_its_pictures(audited):
    corpus, version, _, result, _ = audited
    report = (corpus / "stats" / "report.html").read_text()
    ok = [v["video_id"] for v in result["videos"] if v["status"] == "ok"]
    assert sorted(p.stem for p in (corpus / "stats" / "videos").glob("*.html")) == sorted(ok)
    for video_id in ok:
        assert f'href="videos/{video_id}.html"' in report
        page = (corpus / "stats" / "videos" / f"{video_id}.html").read_text()
        assert page.count('alt="source frame with the keyboard"') == 1
        assert page.count('alt="kept frame ') == 6 and 'alt="label piano roll and kept/dropped frames"' in page
        frames = pd.concat([pq.read_table(corpus / "frames" / s, filters=[("video_id", "=", video_id)]).to_pandas()
                            for s in ("train", "test")])
        reasons = set(frames.drop_reason.dropna())
        assert {r for r in ("no_keyboard", "silent", "outside_range") if f'alt="dropped: {r}"' in page} == reasons
        assert "<script" not in page and "http" not in page.replace('href="../report.html"', "")
    assert "Provenance" in report and "basic-pitch" in report and "Build configuration" in report
    assert "Keys never down" in report and "MIDI 2" not in report  # note names (A0, C#4...), not MIDI numbers


def _broken_images(page: Path, out: Path) -> tuple[int, int]:
    """(images, broken ones) of a page as headless Chromium loads it, and a screenshot."""
    import shutil as _shutil

    browser = _shutil.which("chromium") or _shutil.which("chromium-browser")
    assert browser, "headless Chromium is part of the set-up (make system-deps: apt-get install chromium)"
    probe = out / f"{page.stem}.probe.html"  # the page, plus a script that counts what did not decode
    probe.write_text(page.read_text().replace("</body>", "<script>addEventListener('load', () => {const i = "
                     "[...document.images]; document.title = `images ${i.length} broken ${i.filter(x => "
                     "!x.complete || x.naturalWidth === 0).length}`;});</script></body>"))
    flags = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--virtual-time-budget=10000"]
    dom = subprocess.run([*flags, "--dump-dom", probe.as_uri()], capture_output=True, text=True, timeout=120).stdout
    subprocess.run([*flags, "--window-size=1200,2400", f"--screenshot={out / (page.stem + '.png')}", page.as_uri()],
                   capture_output=True, timeout=120)
    found = re.search(r"<title>images (\d+) broken (\d+)</title>", dom)
    assert found, dom[:500]
    return int(found.group(1)), int(found.group(2))


def test_the_report_and_the_video_pages_show_every_picture_in_a_real_browser(audited, tmp_path):
    corpus, _, _, result, _ = audited
    pages = [corpus / "stats" / "report.html", *sorted((corpus / "stats" / "videos").glob("*.html"))]
    for page in pages:
        images, broken = _broken_images(page, tmp_path)
        assert images >= 4 and broken == 0, (page, images, broken)
        assert (tmp_path / f"{page.stem}.png").stat().st_size > 20_000  # a screenshot with something in it
    damaged = tmp_path / "damaged.html"  # the check fails when a picture is broken
    damaged.write_text(pages[1].read_text().replace('src="data:image/jpeg;base64,', 'src="data:image/jpeg;base64,AAAA', 1))
    assert _broken_images(damaged, tmp_path)[1] == 1
