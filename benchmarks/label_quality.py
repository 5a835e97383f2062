"""Label quality per backend on held-out synthetic piano performances (FluidSynth piano).

Prints note-onset P/R/F1 (mir_eval, 50 ms) and frame F1 at 25 fps against the truth MIDI,
for each backend, with basic-pitch's own default settings as the anchor. Seeds 1000+ are
never used for tuning (tuning used 100-107). Goals: basic-pitch >= 0.85 onset F1;
transkun >= 0.97 onset F1 and >= 0.90 frame F1.

    make bench-label-quality        # or: .venv/bin/python benchmarks/label_quality.py --clips 10
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from labeling.basic_pitch_backend import BasicPitchTranscriber
from labeling.metrics import frame_scores, onset_scores
from labeling.rolls import rolls_for_frames
from labeling.transcribers import make_transcriber
from synth.audio import fluidsynth_ready
from synth.video import performance_audio

FPS = 25
BASIC_PITCH_DEFAULTS = {"onset_threshold": 0.5, "frame_threshold": 0.3, "min_note_ms": 127.7, "melodia_trick": True,
                        "infer_onsets": True, "harmonic_ratio": 0.0}


def score(transcriber, clips, seconds: float) -> dict:
    started = time.perf_counter()
    results = transcriber.transcribe_batch([(audio, 44100) for audio, _ in clips])
    elapsed = time.perf_counter() - started
    n_frames = int(round(seconds * FPS))
    onset = [onset_scores(truth, r.notes) for (_, truth), r in zip(clips, results)]
    frame = [frame_scores(rolls_for_frames(truth, n_frames, FPS).frame, rolls_for_frames(r.notes, n_frames, FPS).frame)
             for (_, truth), r in zip(clips, results)]
    mean = lambda rows, k: float(np.mean([r[k] for r in rows]))
    return {"clips": len(clips), "onset_p": mean(onset, "precision"), "onset_r": mean(onset, "recall"),
            "onset_f1": mean(onset, "f1"), "frame_f1": mean(frame, "f1"), "rtf": seconds * len(clips) / elapsed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clips", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--seed", type=int, default=1000)
    parser.add_argument("--transkun-clips", type=int, default=None,
                        help="clips for transkun (default: all; about 1x real time on 2 CPU cores, 0 to skip)")
    args = parser.parse_args()
    transkun_clips = args.clips if args.transkun_clips is None else args.transkun_clips
    if not fluidsynth_ready():
        raise SystemExit("needs FluidSynth and a piano soundfont: make system-deps (apt-get install fluidsynth fluid-soundfont-gm)")
    clips = [performance_audio(args.seed + i, args.seconds)[:2] for i in range(args.clips)]
    print(f"{args.clips} clips x {args.seconds:g} s, seeds {args.seed}..{args.seed + args.clips - 1}, "
          f"{sum(len(t) for _, t in clips)} notes, FluidSynth piano")
    rows = [("basic-pitch (its defaults: anchor)", score(BasicPitchTranscriber(**BASIC_PITCH_DEFAULTS), clips, args.seconds)),
            ("basic-pitch (ours, tuned)", score(make_transcriber("basic-pitch"), clips, args.seconds))]
    if transkun_clips:
        transkun = make_transcriber("transkun")
        rows.append((f"transkun ({transkun.device})", score(transkun, clips[:transkun_clips], args.seconds)))
    print(f"{'backend':38s} {'clips':>5s} {'onset P':>8s} {'onset R':>8s} {'onset F1':>9s} {'frame F1':>9s} {'x real time':>11s}")
    for name, r in rows:
        print(f"{name:38s} {r['clips']:5d} {r['onset_p']:8.3f} {r['onset_r']:8.3f} {r['onset_f1']:9.3f} "
              f"{r['frame_f1']:9.3f} {r['rtf']:11.1f}")
    ours = rows[1][1]
    print(f"goal basic-pitch onset F1 >= 0.85: {'met' if ours['onset_f1'] >= 0.85 else 'NOT met'} "
          f"({ours['onset_f1']:.3f}; anchor {rows[0][1]['onset_f1']:.3f}, ratio {ours['onset_f1'] / rows[0][1]['onset_f1']:.2f})")
    if transkun_clips:
        tk = rows[2][1]
        print(f"goal transkun onset F1 >= 0.97 and frame F1 >= 0.90: "
              f"{'met' if tk['onset_f1'] >= 0.97 and tk['frame_f1'] >= 0.90 else 'NOT met'} "
              f"({tk['onset_f1']:.3f}, {tk['frame_f1']:.3f})")


if __name__ == "__main__":
    main()
