"""basic-pitch backend throughput vs basic-pitch's own predict(), same files, same run.

Anchor: `basic_pitch.inference.predict(path, model)` called file by file with the model
loaded once (the fairest use of its API). Ours: `transcribe_batch` over all files (audio
decoded by us, windows of all files batched through one onnxruntime session). Goal:
ratio >= 1.5. Also prints the network alone on the same windows: both paths run it, so
anchor / network bounds the ratio any path can reach without changing the network's
arithmetic. Each timing is the best of `--repeats` interleaved runs. Also prints transkun's
real-time factor on this machine's device.

    make bench-label-speed          # or: .venv/bin/python benchmarks/label_speed.py --files 10
"""

from __future__ import annotations

import argparse
import tempfile
import time
import wave
from pathlib import Path

import numpy as np

from curation.audio import load_audio
from labeling.basic_pitch_backend import _import_basic_pitch, onnx_model_path
from labeling.transcribers import make_transcriber
from synth.video import performance_audio


def write_wav(path: Path, audio: np.ndarray, rate: int) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((np.clip(audio, -1, 1) * 32767).astype(np.int16).tobytes())


def network_seconds(transcriber, clips) -> float:
    """The ONNX network alone over every file's windows, batched: the floor under both paths."""
    from labeling.basic_pitch_backend import RATE
    from labeling.events import resample

    windows = np.concatenate([transcriber._windows(resample(audio, rate, RATE)) for audio, rate in clips])[..., None]
    started = time.perf_counter()
    transcriber.network(windows)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--files", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--repeats", type=int, default=3, help="interleaved runs of each timing; the best is reported")
    parser.add_argument("--transkun-seconds", type=float, default=16.0, help="0 to skip transkun")
    args = parser.parse_args()
    _import_basic_pitch()
    from basic_pitch.inference import Model, predict

    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for i in range(args.files):
            audio, _, _ = performance_audio(2000 + i, args.seconds)
            paths.append(Path(tmp) / f"clip{i}.wav")
            write_wav(paths[-1], audio, 44100)
        total = args.files * args.seconds

        model = Model(onnx_model_path())
        predict(paths[0], model)  # warm-ups
        ours_transcriber = make_transcriber("basic-pitch")
        ours_transcriber.transcribe(np.zeros(44100, np.float32), 44100)

        def anchor_run() -> float:
            started = time.perf_counter()
            for path in paths:
                predict(path, model)
            return time.perf_counter() - started

        def ours_run() -> float:
            started = time.perf_counter()
            ours_transcriber.transcribe_batch([load_audio(path) for path in paths])
            return time.perf_counter() - started

        # Interleaved repeats, best of each: single runs here swing by a third.
        clips = [load_audio(path) for path in paths]
        runs = [(anchor_run(), ours_run(), network_seconds(ours_transcriber, clips)) for _ in range(args.repeats)]
        anchor, ours, network = (min(column) for column in zip(*runs))

    print(f"{args.files} files x {args.seconds:g} s, best of {args.repeats}")
    print(f"basic-pitch predict() file by file (anchor): {anchor:6.2f} s  {total / anchor:6.1f}x real time")
    print(f"ours, batched windows:                       {ours:6.2f} s  {total / ours:6.1f}x real time")
    print(f"ratio ours/anchor: {anchor / ours:.2f} (goal >= 1.5: {'met' if anchor / ours >= 1.5 else 'NOT met'})")
    print(f"the network alone on the same windows: {network:6.2f} s = {network / anchor:.0%} of the anchor's time, so "
          f"any path running this network at this precision on this device is at most {anchor / network:.2f}x the anchor")
    if args.transkun_seconds:
        transkun = make_transcriber("transkun")
        audio, _, _ = performance_audio(3000, args.transkun_seconds)
        started = time.perf_counter()
        transkun.transcribe(audio, 44100)
        elapsed = time.perf_counter() - started
        print(f"transkun on {transkun.device}: {args.transkun_seconds:g} s of audio in {elapsed:.1f} s = "
              f"{args.transkun_seconds / elapsed:.2f}x real time (it pads 8 s each side and works in 16 s segments)")


if __name__ == "__main__":
    main()
