"""`pianocorpus audit`: what is in a corpus, as numbers, flags and checks.

Reads only the corpus (videos.parquet, the frames and labels parts, the label MIDI files,
the labels' agreement with the pictures (labels/VERSION/av.parquet), audio/ for durations) and the manifest it was built from (for published figures); writes
nothing itself: `pipelines/report.py` turns the result into stats/audit.json and
stats/report.html. Label statistics are taken over kept frames (what training sees) and
over each video's label MIDI (notes).
"""

from __future__ import annotations

import re
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from contract.layout import CorpusLayout
from contract.meta import corpus_label_version, corpus_meta, corpus_splits
from contract.records import AV_FLAGS, video_totals
from contract.store import pull
from curation.probe import probe
from labeling.metrics import frame_scores, onset_scores
from labeling.midi import read_midi

# Published sizes of the sets we mirror (Audeo, NeurIPS 2020: 25 fps).
PUBLISHED = {"audeo": {"train": {"videos": 24, "minutes": 115.0, "frames": 172_404},
                       "test": {"videos": 3, "minutes": 12.5, "frames": 18_788}}}
# Per-video flag thresholds.
KB_SCORE_LOW = 0.5
DROP_RATIO_HIGH = 0.5
DURATION_MISMATCH_S = 1.0
CROP_IOU_LOW = 0.5
DURATION_BINS_S = [0, 0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4, float("inf")]
MAX_POLYPHONY_BIN = 10  # polyphony counts of 10 and more share the last bin


def split_figures(videos: pd.DataFrame) -> dict:
    """Videos, hours, frames kept and dropped, per split and overall."""
    out = {split: video_totals(group.to_dict("records")) for split, group in videos.groupby("split", sort=True)}
    out["overall"] = video_totals(videos.to_dict("records"))
    return out


def _notes_field(notes: str | None, name: str) -> float | None:
    match = re.search(rf"\b{name}=([0-9.]+)", notes or "")
    return float(match.group(1)) if match else None


def published_comparison(videos: pd.DataFrame, manifest_rows: dict[str, dict]) -> dict:
    """Ours beside the published figures: Audeo's split sizes, PianoYT's per-video MIDI durations."""
    out: dict = {}
    for dataset, splits in PUBLISHED.items():
        mine = videos[(videos.dataset == dataset) & (videos.status == "ok")]
        if not len(videos[videos.dataset == dataset]):
            continue
        out[dataset] = {split: {"published": figures,
                                "ours": {"videos": int((mine.split == split).sum()),
                                         "minutes": round(float(mine[mine.split == split].duration_s.sum()) / 60, 2),
                                         "frames": int(mine[mine.split == split].n_frames.sum())}}
                        for split, figures in splits.items()}
    durations = []
    for row in videos[videos.status == "ok"].itertuples():
        midi_s = _notes_field(manifest_rows.get(row.video_id, {}).get("notes"), "midi_duration_s")
        if midi_s is not None:
            durations.append({"video_id": row.video_id, "midi_duration_s": midi_s, "duration_s": row.duration_s,
                              "difference_s": round(row.duration_s - midi_s, 3)})
    if durations:
        out["midi_durations"] = {"videos": len(durations),
                                 "median_abs_difference_s": float(np.median([abs(d["difference_s"]) for d in durations])),
                                 "rows": durations}
    return out


class LabelTally:
    """Label statistics of one split, accumulated part by part (frames are never all in memory)."""

    def __init__(self):
        self.frames = 0
        self.no_key = 0
        self.key_frames = np.zeros(88, np.int64)  # kept frames in which each key sounds
        self.polyphony = np.zeros(MAX_POLYPHONY_BIN + 1, np.int64)
        self.pitches = np.zeros(88, np.int64)  # notes per key
        self.durations: list[float] = []
        self.velocities = np.zeros(128, np.int64)
        self.notes = 0
        self.seconds = 0.0

    def add_frames(self, rolls: np.ndarray) -> None:
        """rolls: (frames, 88) bool of kept frames."""
        down = rolls.sum(axis=1)
        self.frames += len(rolls)
        self.no_key += int((down == 0).sum())
        self.key_frames += rolls.sum(axis=0)
        self.polyphony += np.bincount(np.minimum(down, MAX_POLYPHONY_BIN), minlength=MAX_POLYPHONY_BIN + 1)

    def add_notes(self, notes, seconds: float) -> None:
        self.notes += len(notes)
        self.seconds += seconds
        for note in notes:
            self.pitches[note.pitch - 21] += 1
            self.durations.append(note.offset - note.onset)
            self.velocities[int(note.velocity)] += 1

    def merge(self, other: "LabelTally") -> None:
        for name in ("frames", "no_key", "key_frames", "polyphony", "pitches", "velocities", "notes", "seconds"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.durations += other.durations

    def summary(self) -> dict:
        durations = np.histogram(self.durations, bins=DURATION_BINS_S)[0]
        return {"notes": self.notes, "seconds": round(self.seconds, 3),
                "notes_per_s": round(self.notes / self.seconds, 3) if self.seconds else None,
                "kept_frames": self.frames, "no_key_share": round(self.no_key / self.frames, 4) if self.frames else None,
                "pitch_histogram": self.pitches.tolist(), "key_frame_counts": self.key_frames.tolist(),
                "polyphony": self.polyphony.tolist(),
                "duration_histogram": {"edges_s": DURATION_BINS_S, "counts": durations.tolist()},
                "velocity_histogram": self.velocities.tolist(),
                "keys_never_down": [21 + int(k) for k in np.flatnonzero(self.key_frames == 0)]}


def _parts(corpus: CorpusLayout, split: str, version: str) -> list[tuple[Path, Path]]:
    return [(f, corpus.label_part(version, split, f)) for f in corpus.frame_parts(split)]


def _part_tables(frames_path: Path, labels_path: Path) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """A part pair's tables; labels None when that part is missing or unreadable (the file
    checks name it), and no frames when the frames part is."""
    try:
        frames = pq.read_table(pull(frames_path), columns=["video_id", "frame", "kept"]).to_pandas()
    except (OSError, pa.ArrowException):
        frames = pd.DataFrame({"video_id": [], "frame": [], "kept": []})
    try:
        return frames, pq.read_table(pull(labels_path), columns=["video_id", "frame", "frame_roll"]).to_pandas()
    except (OSError, pa.ArrowException):
        return frames, None


def label_figures(corpus: CorpusLayout, videos: pd.DataFrame, version: str) -> tuple[dict, list[dict]]:
    """Label statistics per split and overall, and the frames/labels pairing problems."""
    out, problems, overall = {}, [], LabelTally()
    ok = videos[videos.status == "ok"]
    for split in corpus_splits(corpus):
        tally = LabelTally()
        for frames_path, labels_path in _parts(corpus, split, version):
            frames, labels = _part_tables(frames_path, labels_path)
            problems += pair_problems(frames, labels, frames_path, labels_path)
            if labels is None:
                continue
            merged = frames.merge(labels, on=["video_id", "frame"], how="inner")
            kept = merged[merged.kept]
            if len(kept):
                tally.add_frames(np.stack(kept.frame_roll.to_numpy()).astype(bool))
        for row in ok[ok.split == split].itertuples():
            midi = pull(corpus.midi(version, row.video_id))
            if midi.is_file():
                tally.add_notes(read_midi(midi), float(row.duration_s or 0))
        out[split] = tally.summary()
        overall.merge(tally)
    out["overall"] = overall.summary()
    return out, problems


def pair_problems(frames: pd.DataFrame, labels: pd.DataFrame | None, frames_path: Path, labels_path: Path) -> list[dict]:
    """Frames without labels and labels without frames in one part pair."""
    if labels is None:
        return [{"check": "frames_without_labels", "where": str(labels_path), "count": int(len(frames)),
                 "detail": "labels part missing"}]
    keys = {"frames": set(zip(frames.video_id, frames.frame)), "labels": set(zip(labels.video_id, labels.frame))}
    out = []
    for check, missing in (("frames_without_labels", keys["frames"] - keys["labels"]),
                           ("labels_without_frames", keys["labels"] - keys["frames"])):
        if missing:
            example = sorted(missing)[0]
            out.append({"check": check, "where": f"{frames_path.name} / {labels_path}", "count": len(missing),
                        "detail": f"e.g. {example[0]} frame {example[1]}"})
    return out


def file_checks(corpus: CorpusLayout) -> list[dict]:
    """corpus.json's file records against the disk (sizes, not hashes: `verify` reads those)."""
    from contract.integrity import verify_corpus

    return [{"check": "files", "where": problem.split(": ", 1)[0], "count": 1,
             "detail": problem.split(": ", 1)[-1]} for problem in verify_corpus(corpus, hashes=False)["problems"]]


def duplicate_checks(videos: pd.DataFrame) -> list[dict]:
    """The same id twice, the same source in two rows, the same source in two splits."""
    out = []
    for video_id, n in Counter(videos.video_id).items():
        if n > 1:
            out.append({"check": "duplicate_video_id", "where": video_id, "count": n, "detail": "id appears more than once"})
    hashed = videos[videos.source_sha256.notna()]
    for sha, group in hashed.groupby("source_sha256"):
        if len(group) > 1:
            splits = sorted(set(group.split))
            out.append({"check": "same_source_in_two_splits" if len(splits) > 1 else "duplicate_source",
                        "where": ", ".join(sorted(group.video_id)), "count": int(len(group)),
                        "detail": f"sha256 {sha[:12]}... in split(s) {', '.join(splits)}"})
    return out


def audio_seconds(corpus: CorpusLayout, video_id: str) -> float | None:
    path = pull(corpus.audio(video_id))
    return probe(path).duration_s if path.is_file() else None


def av_rows(corpus: CorpusLayout, version: str) -> dict[str, dict]:
    """The label version's agreement with the pictures per video (labels/VERSION/av.parquet;
    empty for a version made before it was measured)."""
    path = pull(corpus.av_table(version))
    return {r["video_id"]: r for r in pq.read_table(path).to_pylist()} if path.is_file() else {}


def av_figures(table: list[dict]) -> dict:
    """Per split and overall: videos measured, aligned (labels moved), the median |offset|
    of the confident ones, the mean agreement, with hand keypoints the mean share of
    onsets near a fingertip and the onsets the hands filter dropped, and the videos of
    each audio-visual flag."""
    out = {}
    for split in sorted({v["split"] for v in table}) + ["overall"]:
        rows = [v for v in table if v["status"] == "ok" and (split == "overall" or v["split"] == split)]
        measured = [v for v in rows if v.get("av_offset_s") is not None]
        confident = [v for v in measured if not (v["av_mismatch"] or v["av_mirrored"] or v["av_key_shift"])]
        out[split] = {"videos": len(rows), "measured": len(measured),
                      "aligned": sum(bool(v.get("av_applied_s")) for v in measured),
                      "median_abs_offset_s": round(float(np.median([abs(v["av_offset_s"]) for v in confident])), 4)
                      if confident else None,
                      "mean_score": round(float(np.mean([v["av_score"] for v in confident])), 4) if confident else None,
                      "mean_hands_near": _mean([v.get("av_hands_near") for v in rows]),
                      "hands_dropped": sum(v.get("av_hands_dropped") or 0 for v in rows),
                      **{flag: [v["video_id"] for v in rows if flag in v["flags"]] for flag in AV_FLAGS}}
    return out


def _mean(values: list) -> float | None:
    known = [v for v in values if v is not None]
    return round(float(np.mean(known)), 4) if known else None


def video_table(corpus: CorpusLayout, videos: pd.DataFrame, av: dict[str, dict] | None = None) -> list[dict]:
    """One row per video with its figures (the audited label version's agreement with the
    pictures among them) and the flags it raises."""
    out = []
    for row in videos.itertuples():
        entry = {"video_id": row.video_id, "split": row.split, "dataset": row.dataset, "status": row.status,
                 "error_class": row.error_class, "duration_s": row.duration_s, "n_frames": int(row.n_frames or 0),
                 "n_kept": int(row.n_kept or 0), "kb_score": row.kb_score, "kb_source": row.kb_source,
                 "kb_located_iou": getattr(row, "kb_located_iou", None), "n_notes": row.n_notes, "flags": [],
                 **{k: v for k, v in (av or {}).get(row.video_id, {}).items() if k.startswith("av_")}}
        if row.status == "ok":
            entry["audio_s"] = audio_seconds(corpus, row.video_id)
            entry["drop_ratio"] = round(1 - entry["n_kept"] / entry["n_frames"], 4) if entry["n_frames"] else None
            entry["flags"] = video_flags(entry)
        out.append(entry)
    return out


def video_flags(entry: dict) -> list[str]:
    flags = []
    if not entry["n_notes"]:
        flags.append("no_notes")
    if entry["kb_source"] == "detected" and entry["kb_score"] is not None and entry["kb_score"] < KB_SCORE_LOW:
        flags.append("keyboard_score_low")
    if entry["drop_ratio"] is not None and entry["drop_ratio"] > DROP_RATIO_HIGH:
        flags.append("high_drop_ratio")
    if entry["audio_s"] is not None and abs(entry["audio_s"] - entry["duration_s"]) > DURATION_MISMATCH_S:
        flags.append("duration_mismatch")
    iou = entry["kb_located_iou"]
    if entry["kb_source"] == "manifest" and iou is not None and not np.isnan(iou) and iou < CROP_IOU_LOW:
        flags.append("keyboard_far_from_manifest_crop")
    if entry.get("av_mismatch"):
        flags.append("av_mismatch")
    if entry.get("av_mirrored"):
        flags.append("av_mirrored")
    if entry.get("av_key_shift"):
        flags.append("av_octave_shift")
    return flags


def compare_versions(corpus: CorpusLayout, videos: pd.DataFrame, version: str, other: str) -> dict:
    """How far `other` agrees with `version` (taken as the reference): frame F1 over kept
    frames, note-onset F1 (mir_eval, 50 ms) per video from the label MIDI, per-key disagreement."""
    out = {"reference": version, "other": other, "splits": {}}
    all_ref, all_est, onsets, empty = [], [], [], np.zeros((0, 88), bool)
    for split in corpus_splits(corpus):
        refs, ests = [], []
        for frames_path, labels_path in _parts(corpus, split, version):
            frames, ref = _part_tables(frames_path, labels_path)
            est = pq.read_table(pull(corpus.label_part(other, split, frames_path)),
                                columns=["video_id", "frame", "frame_roll"]).to_pandas()
            merged = frames[frames.kept].merge(ref, on=["video_id", "frame"]).merge(
                est, on=["video_id", "frame"], suffixes=("_ref", "_est"))
            if len(merged):
                refs.append(np.stack(merged.frame_roll_ref.to_numpy()).astype(bool))
                ests.append(np.stack(merged.frame_roll_est.to_numpy()).astype(bool))
        split_onsets = []
        for video_id in videos[(videos.status == "ok") & (videos.split == split)].video_id:
            a, b = (pull(corpus.midi(v, video_id)) for v in (version, other))
            if a.is_file() and b.is_file():
                split_onsets.append(onset_scores(read_midi(a), read_midi(b))["f1"])
        ref, est = np.concatenate([empty, *refs]), np.concatenate([empty, *ests])
        out["splits"][split] = _agreement(ref, est, split_onsets)
        all_ref.append(ref)
        all_est.append(est)
        onsets += split_onsets
    out["overall"] = _agreement(np.concatenate([empty, *all_ref]), np.concatenate([empty, *all_est]), onsets)
    return out


def _agreement(ref: np.ndarray, est: np.ndarray, onset_f1s: list[float]) -> dict:
    scores = frame_scores(ref, est)
    return {"frames": int(len(ref)), "frame_f1": round(scores["f1"], 4),
            "onset_f1_mean": round(float(np.mean(onset_f1s)), 4) if onset_f1s else None,
            "key_disagreement": (ref != est).mean(axis=0).round(5).tolist() if len(ref) else [0.0] * 88}


def manifest_rows(path: str | None) -> dict[str, dict]:
    """The manifest's rows by id (empty when it is gone or unreadable: the audit goes on)."""
    if not path or not Path(path).is_file():
        return {}
    from manifests.loader import read_raw_rows

    return {raw["video_id"]: raw for _, _, raw in read_raw_rows(Path(path)) if raw.get("video_id")}


def audit(corpus: str | Path | CorpusLayout, label_version: str | None = None, compare: str | None = None,
          manifest: str | None = None) -> dict:
    """Everything the report shows, as plain data, all read from the generation published
    when it starts."""
    corpus = CorpusLayout.published(corpus)
    meta = corpus_meta(corpus)
    version = corpus_label_version(corpus, label_version)
    other = corpus_label_version(corpus, compare) if compare else None
    videos = pq.read_table(pull(corpus.videos)).to_pandas().astype(object)
    videos = videos.where(videos.notna(), None)  # nulls stay None in the JSON
    manifest_path = manifest or meta.get("manifest")
    labels, pairing = label_figures(corpus, videos, version)
    table = video_table(corpus, videos, av_rows(corpus, version))
    result = {"corpus": str(corpus), "label_version": version, "manifest": manifest_path,
              "provenance": provenance(meta, version),
              "splits": split_figures(videos), "published": published_comparison(videos, manifest_rows(manifest_path)),
              "labels": labels, "av": av_figures(table), "videos": table,
              "checks": file_checks(corpus) + duplicate_checks(videos) + pairing,
              "flags": dict(Counter(f for v in table for f in v["flags"]))}
    if other:
        result["compare"] = compare_versions(corpus, videos, version, other)
    return result


def provenance(meta: dict, version: str) -> dict:
    """When and with what: the audit's date, the corpus's creation, tool and package
    versions, the label version's spec and the build configuration (from corpus.json)."""
    from contract.meta import tool_version

    packages = meta.get("packages") or {}
    return {"audited": datetime.now(timezone.utc).isoformat(timespec="seconds"), "created": meta.get("created"),
            "tool": f"{packages.get('pianocorpus') or 'unknown'} (built), {tool_version()} (audited)",
            "python": meta.get("python"), "packages": packages,
            "label_spec": meta.get("label_versions", {}).get(version, {}), "config": meta.get("config", {})}


def audit_corpus(corpus: str | Path, label_version: str | None = None, compare: str | None = None,
                 manifest: str | None = None, cache: str | Path | None = None) -> tuple[dict, Path, Path]:
    """`pianocorpus audit`: the audit, written as stats/audit.json, stats/report.html and a
    page per video; the source frames come from `cache` (default CORPUS/.cache)."""
    from pipelines.report import write_report

    layout = CorpusLayout.published(corpus)
    result = audit(layout, label_version, compare, manifest)
    return (result, *write_report(result, layout, cache or None))
