"""Audio -> labels, for a corpus's videos (`label_videos`, the label stage) and for one
file (`transcribe_file`, the `transcribe` command): one flow, transcriber -> notes
(lengthened by the pedal when the spec says so; in the build, moved by the video's
confident sync offset when the spec says auto) -> rolls at the frame times + MIDI.

A transcriber that raises on a video fails that video alone: its label record says
`failed` with the exception's class and message, and the others are labelled.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pyarrow as pa

from contract.atomic import atomic_json, atomic_parquet, atomic_write
from contract.config import LabelerConfig
from contract.hashing import sha256_file
from contract.layout import CorpusLayout
from contract.piano import LOWEST_MIDI, N_KEYS
from contract.records import LABELS_SCHEMA, label_record
from contract.store import pull
from curation.audio import load_audio
from curation.hands import fingertips_u, near_fingertip
from labeling.agreement import Agreement, check
from labeling.midi import write_midi
from labeling.rolls import Rolls, apply_sustain, onset_frames, rolls_for_frames
from labeling.transcribers import label_spec, label_version, make_transcriber


def labelled_notes(result, spec: dict) -> list:
    """The transcription's notes as the labels hold them (pedal rule applied when asked)."""
    return apply_sustain(result.notes, result.pedal) if spec["sustain_pedal"] else result.notes


def _transcribe_each(transcriber, clips: list) -> list:
    """Per clip its transcription or the exception it raised: a batch that raises is
    transcribed again one clip at a time, so that one bad clip fails alone."""
    try:
        return transcriber.transcribe_batch(clips)
    except Exception as error:
        if len(clips) == 1:
            return [error]
    results = []
    for clip in clips:
        try:
            results.append(transcriber.transcribe_batch([clip])[0])
        except Exception as error:
            results.append(error)
    return results


def label_videos(rows: list[dict], transcriber, spec: dict, version: str, corpus: CorpusLayout) -> list[dict]:
    """Transcribe the FLAC of each ok video in one batch; its rolls at its frame times and
    its MIDI into the work state (assembly publishes them); one label record per video."""
    clips, ready, records = [], [], []
    for row in rows:
        try:
            clips.append(load_audio(pull(corpus.audio(row["video_id"]))))  # (pull: written on another node)
            ready.append(row)
        except Exception as error:  # NoAudioError, or the file is gone
            records.append(_fail(corpus, version, row["video_id"], error))
    for row, result in zip(ready, _transcribe_each(transcriber, clips) if clips else []):
        try:
            if isinstance(result, Exception):
                raise result
            records.append(_write_labels(corpus, version, spec, row, result))
        except Exception as error:
            records.append(_fail(corpus, version, row["video_id"], error))
    return records


def _write_labels(corpus: CorpusLayout, version: str, spec: dict, row: dict, result) -> dict:
    notes = labelled_notes(result, spec)
    n, fps = int(row["n_frames"]), float(row["fps"])
    av = _agreement(pull(corpus.work.key_levels(row["video_id"])), notes, fps, spec)
    pedal = result.pedal
    if av.applied_s:  # the audio is late by applied_s: its notes happen that much earlier in the pictures
        notes = [replace(note, onset=note.onset - av.applied_s, offset=note.offset - av.applied_s) for note in notes
                 if note.offset - av.applied_s > 0]  # (one moved before the video's start keeps its negative onset)
        pedal = [(down - av.applied_s, up - av.applied_s) for down, up in pedal]
    notes, hands = _hands_checked(corpus, spec, row["video_id"], notes, fps)
    rolls = rolls_for_frames(notes, n, fps)
    table = pa.Table.from_pydict({
        "video_id": [row["video_id"]] * n, "frame": np.arange(n, dtype=np.int32),
        "frame_roll": list(rolls.frame), "onset_roll": list(rolls.onset), "offset_roll": list(rolls.offset),
        "velocity": list(rolls.velocity)}, schema=LABELS_SCHEMA)
    write_midi(notes, corpus.work.label_midi(version, row["video_id"]), pedal)  # published at assembly
    rolls_path = corpus.work.label_rolls(version, row["video_id"])
    atomic_parquet(table, rolls_path)
    record = {**label_record(row["video_id"], n_notes=len(notes), rolls_sha256=sha256_file(rolls_path)), **av.record(),
              **hands}
    atomic_json(record, corpus.work.label_record(version, row["video_id"]))
    return record


def _hands_checked(corpus: CorpusLayout, spec: dict, video_id: str, notes: list, fps: float) -> tuple[list, dict]:
    """With the build's hands (`spec["hands"]`): the share of onsets, of those with a hand
    in view, that a fingertip was near (curation/hands.py: near_fingertip); with
    `onset_filter` "hands VERSION" also the notes without the onsets no fingertip was near
    (a video whose hands are missing keeps all)."""
    version = spec.get("hands")
    path = pull(corpus.work.hands(version, video_id)) if version else None
    if path is None or not path.is_file() or not notes:
        return notes, {"av_hands_near": None, "av_hands_dropped": None}
    keys = np.array([int(note.pitch) - LOWEST_MIDI for note in notes], np.int64)
    near = np.full(len(notes), -1, np.int8)
    inside = (keys >= 0) & (keys < N_KEYS)
    frames = onset_frames(np.array([note.onset for note in notes], np.float64), fps)
    near[inside] = near_fingertip(fingertips_u(path), frames[inside], keys[inside])
    known = near >= 0
    filtering = spec.get("onset_filter", "none").startswith("hands")
    kept = [note for note, flag in zip(notes, near) if flag != 0 or not filtering]
    return kept, {"av_hands_near": round(float((near[known] == 1).mean()), 4) if known.any() else None,
                  "av_hands_dropped": len(notes) - len(kept)}


def _agreement(levels_path: Path, notes: list, fps: float, spec: dict) -> Agreement:
    """The labels' agreement with the pictures (labeling/agreement.py), from the frames' key
    levels; nothing measured for a video whose frame pass kept none (an older corpus)."""
    if not levels_path.is_file():
        return Agreement.unmeasured(0)
    onsets = np.array([note.onset for note in notes], np.float64)
    keys = np.array([int(note.pitch) - LOWEST_MIDI for note in notes], np.int64)
    inside = (keys >= 0) & (keys < N_KEYS)
    levels = np.load(levels_path).astype(np.float32)
    return check(levels, onsets[inside], keys[inside], fps, align=spec.get("av_align", "off").startswith("auto"))


def _fail(corpus: CorpusLayout, version: str, video_id: str, error: Exception) -> dict:
    record = label_record(video_id, error=f"{type(error).__name__}: {error}")
    atomic_json(record, corpus.work.label_record(version, video_id))
    return record


def transcribe_file(media: Path, labeler: LabelerConfig, fps: float, midi: Path, rolls: Path | None = None) -> dict:
    """One file's audio (or a video's audio track) -> MIDI, and the rolls at `fps` as .npz
    when `rolls` is given; returns what was done (notes, seconds, device, label version)."""
    import time

    if not Path(media).is_file():
        raise ValueError(f"{media}: no such file")
    audio, rate = load_audio(media)
    started = time.perf_counter()
    transcriber = make_transcriber(labeler.name, **labeler.params)
    result = transcriber.transcribe(audio, rate)
    spec = label_spec(transcriber.name, labeler.params, fps, labeler.sustain_pedal)
    version = label_version(spec)
    notes = labelled_notes(result, spec)
    seconds = time.perf_counter() - started
    write_midi(notes, midi, result.pedal)
    if rolls is not None:
        made = rolls_for_frames(notes, int(round(len(audio) / rate * fps)), fps)
        atomic_write(Path(rolls), lambda part: _save_rolls(part, made, fps, version, spec))
    return {"notes": len(notes), "audio_s": len(audio) / rate, "seconds": seconds, "labeler": transcriber.name,
            "device": transcriber.device, "label_version": version}


def _save_rolls(path: Path, rolls: Rolls, fps: float, version: str, spec: dict) -> None:
    with open(path, "wb") as handle:  # a file object: numpy would add .npz to the temporary name
        np.savez_compressed(handle, frame_roll=rolls.frame, onset_roll=rolls.onset, offset_roll=rolls.offset,
                            velocity=rolls.velocity, fps=fps, label_version=version,
                            label_spec=json.dumps({**spec, "label_version": version}))
