"""The `pianocorpus` command: argument parsing only; the work lives in the stage modules."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from tqdm import tqdm


def _add_synth(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("synth", help="write synthetic top-view piano videos with known truth",
                       description="Write N synthetic piano videos (NAME.mp4, NAME.mid, NAME.json truth) into OUT_DIR.")
    p.add_argument("out_dir", type=Path, metavar="OUT_DIR")
    p.add_argument("--n", type=int, default=2, help="number of videos (default 2)")
    p.add_argument("--seconds", type=float, default=20.0, help="length of each video (default 20)")
    p.add_argument("--seed", type=int, default=0, help="video i is drawn from (seed, i) (default 0)")
    p.add_argument("--width", type=int, default=1280)
    p.add_argument("--height", type=int, default=720)
    p.add_argument("--fps", type=int, default=25)
    p.add_argument("--audio", choices=["auto", "fluidsynth", "pretty_midi"], default="auto",
                   help="auto: FluidSynth with a piano soundfont when installed, else pretty_midi's synthesizer")
    cut = p.add_mutually_exclusive_group()
    cut.add_argument("--cut", dest="cut", action="store_true", default=None, help="always cut to a talking scene mid-video")
    cut.add_argument("--no-cut", dest="cut", action="store_false", help="never cut mid-video")
    p.add_argument("--no-hands", dest="hands", action="store_false", help="draw no hands over the keys")
    p.set_defaults(run=_run_synth)


def _run_synth(args: argparse.Namespace) -> int:
    from curation.synthetic import SynthConfig, make_videos

    config = SynthConfig(seconds=args.seconds, width=args.width, height=args.height, fps=args.fps,
                         audio=args.audio, cut=args.cut, hands=args.hands)
    started = time.perf_counter()
    with tqdm(total=args.n, desc="synth", unit="video") as bar:
        paths = make_videos(args.out_dir, args.n, args.seed, config, progress=lambda name: bar.update(1))
    elapsed = time.perf_counter() - started
    for path in paths:
        print(path.with_suffix(".mp4"))
    print(f"wrote {len(paths)} videos of {args.seconds:g} s to {args.out_dir} in {elapsed:.1f} s", file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pianocorpus", description="Clean, sharded, labelled corpora from top-view piano videos.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_synth(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except (ValueError, RuntimeError, OSError) as error:
        print(f"pianocorpus {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
