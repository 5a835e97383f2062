"""The `pianocorpus` command: argument parsing and printing only; each command calls one
library function (the README's Python examples call the same ones)."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

from tqdm import tqdm

from contract.extras import missing_extra
from contract.store import location


def _add_synth(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("synth", help="write synthetic top-view piano videos with known truth",
                       description="Write N synthetic piano videos (NAME.mp4, NAME.mid, NAME.json truth) into OUT_DIR.")
    p.add_argument("out_dir", type=Path, metavar="OUT_DIR", help="folder for the videos and their truth files")
    p.add_argument("--n", type=int, default=2, help="number of videos (default 2)")
    p.add_argument("--seconds", type=float, default=20.0, help="length of each video (default 20)")
    p.add_argument("--seed", type=int, default=0, help="video i is drawn from (seed, i) (default 0)")
    p.add_argument("--width", type=int, default=1280, help="frame width in pixels")
    p.add_argument("--height", type=int, default=720, help="frame height in pixels")
    p.add_argument("--fps", type=int, default=25, help="frame rate")
    p.add_argument("--audio", choices=["auto", "fluidsynth", "pretty_midi"], default="auto",
                   help="auto: FluidSynth with a piano soundfont when installed, else pretty_midi's synthesizer")
    cut = p.add_mutually_exclusive_group()
    cut.add_argument("--cut", dest="cut", action="store_true", default=None, help="always cut to a talking scene mid-video")
    cut.add_argument("--no-cut", dest="cut", action="store_false", help="never cut mid-video")
    p.add_argument("--no-hands", dest="hands", action="store_false", help="draw no hands over the keys")
    p.add_argument("--look", default="studio", help="the conditions of real footage to draw: a family or negative "
                   "of synth/looks.py (studio, concert_grand, digital, oblique, upright_wood, overlay, "
                   "keys61, keys76, cropped, empty; default studio)")
    p.add_argument("--av-offset", type=float, default=0.0, metavar="S",
                   help="the audio S seconds behind the pictures (negative: ahead), as uploads carry (default 0)")
    p.add_argument("--audio-seed", type=int, default=None, metavar="SEED",
                   help="the audio of another performance, drawn from SEED: pictures and sound that do not belong "
                        "together (default: the video's own)")
    p.add_argument("--mirror", action="store_true", help="mirror the pictures left-right, as an uploader's mirror")
    p.set_defaults(run=_run_synth)


def _run_synth(args: argparse.Namespace) -> int:
    from synth.video import SynthConfig, make_videos

    try:
        config = SynthConfig(seconds=args.seconds, width=args.width, height=args.height, fps=args.fps,
                             audio=args.audio, cut=args.cut, hands=args.hands, look=args.look,
                             av_offset_s=args.av_offset, audio_seed=args.audio_seed, mirror=args.mirror)
    except ValueError as error:
        print(f"synth: {error}", file=sys.stderr)
        return 2
    started = time.perf_counter()
    with tqdm(total=args.n, desc="synth", unit="video") as bar:
        paths = make_videos(args.out_dir, args.n, args.seed, config, progress=lambda name: bar.update(1))
    elapsed = time.perf_counter() - started
    for path in paths:
        print(path.with_suffix(".mp4"))
    print(f"wrote {len(paths)} videos of {args.seconds:g} s to {args.out_dir} in {elapsed:.1f} s", file=sys.stderr)
    return 0


def _add_manifest(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("manifest", help="check manifests, import the official PianoYT list")
    msub = p.add_subparsers(dest="manifest_command", required=True, metavar="ACTION")
    check = msub.add_parser("check", help="validate manifests; print every bad row as FILE:LINE: column: problem")
    check.add_argument("files", nargs="+", metavar="FILE", help="CSV, TSV, JSONL or Parquet (or a shipped name: demo, audeo, pianoyt)")
    check.set_defaults(run=_run_manifest_check)
    imp = msub.add_parser("import-pianoyt", help="merge the official pianoyt.csv (Oxford VGG page) into the PianoYT manifest")
    imp.add_argument("official_csv", type=Path, metavar="CSV", help="the official pianoyt.csv")
    imp.add_argument("--out", type=Path, default=Path("pianoyt.csv"), help="where to write (default ./pianoyt.csv)")
    imp.set_defaults(run=_run_import_pianoyt)


def _run_manifest_check(args: argparse.Namespace) -> int:
    from manifests.loader import load_manifest
    from manifests.schema import ManifestError

    failed = 0
    for file in args.files:
        try:
            manifest = load_manifest(file)
        except ManifestError as error:
            failed += 1
            print("\n".join(error.problems))
            continue
        print(manifest.summary())
    return 1 if failed else 0


def _run_import_pianoyt(args: argparse.Namespace) -> int:
    from manifests.shipped import import_pianoyt

    n = import_pianoyt(args.official_csv, args.out)
    print(f"wrote {n} PianoYT rows to {args.out}")
    return 0


def _add_fetch(sub: argparse._SubParsersAction) -> None:
    from contract.config import DEFAULT_FORMAT

    p = sub.add_parser("fetch", help="download a manifest's videos into a cache with yt-dlp",
                       description="Download every video of MANIFEST into --cache (one yt-dlp call per video); "
                                   "writes CACHE/fetch.parquet with each row's status and error class.")
    p.add_argument("manifest", metavar="MANIFEST", help="CSV, TSV, JSONL or Parquet (or a shipped name: demo, audeo, pianoyt)")
    p.add_argument("--cache", type=location, required=True, metavar="CACHE",
                   help="download cache (one file per video id): a folder, or a URI such as s3://bucket/cache")
    p.add_argument("--retry-failed", action="store_true", help="retry rows that failed in an earlier run")
    p.add_argument("--format", default=DEFAULT_FORMAT, help="yt-dlp format (default: smallest >= 720p with audio)")
    p.add_argument("--max-duration", type=float, metavar="SECONDS", help="refuse longer videos (class too_long)")
    p.add_argument("--max-filesize", metavar="SIZE", help="refuse larger files, e.g. 500M (class too_large)")
    p.add_argument("--concurrency", type=int, default=2, help="videos at once (default 2)")
    p.add_argument("--retries", type=int, default=3, help="extra attempts for rate_limited/network (default 3)")
    p.add_argument("--backoff", type=float, default=5.0, metavar="SECONDS", help="first retry wait, doubling (default 5)")
    p.add_argument("--socket-timeout", type=float, default=30.0, metavar="SECONDS", help="give up on a silent connection")
    p.add_argument("--sleep", type=float, default=0.0, metavar="SECONDS", help="yt-dlp's sleep before each download")
    _add_requests_per_second(p)
    p.add_argument("--rate-limit", metavar="RATE", help="bytes/s, e.g. 2M")
    p.add_argument("--proxy", metavar="URL", help="HTTP/SOCKS proxy for yt-dlp")
    p.add_argument("--cookies", type=Path, metavar="FILE", help="Netscape cookies file (YouTube sign-in checks)")
    p.add_argument("--cookies-from-browser", metavar="BROWSER", help="read cookies from this browser's profile (yt-dlp)")
    p.add_argument("--ytdlp-option", action="append", default=[], metavar="KEY=JSON",
                   help="any other yt-dlp option, e.g. --ytdlp-option 'geo_bypass=true' (repeatable)")
    p.set_defaults(run=_run_fetch)


def _add_requests_per_second(p: argparse.ArgumentParser) -> None:
    p.add_argument("--requests-per-second", type=float, default=1.0, metavar="RATE",
                   help="video downloads started per second across all workers, http(s) only (0: no limit)")


def _run_fetch(args: argparse.Namespace) -> int:
    from contract.config import FetchOptions
    from curation.fetch import fetch_manifest
    from manifests.loader import load_manifest

    manifest = load_manifest(args.manifest)
    extra = _parse_key_values(args.ytdlp_option, "--ytdlp-option")
    options = FetchOptions(cache=args.cache, format=args.format, max_duration_s=args.max_duration,
                           max_filesize=_bytes(args.max_filesize), retries=args.retries, backoff_s=args.backoff,
                           socket_timeout_s=args.socket_timeout, concurrency=args.concurrency, sleep_s=args.sleep,
                           rate_limit=args.rate_limit, proxy=args.proxy, cookies=args.cookies,
                           cookies_from_browser=args.cookies_from_browser, requests_per_s=args.requests_per_second or None,
                           ytdlp=extra)
    counts: dict[str, int] = {}
    with tqdm(total=len(manifest), desc="fetch", unit="video") as bar:
        def done(record):
            key = record.status if record.status != "failed" else f"failed:{record.error_class}"
            counts[key] = counts.get(key, 0) + 1
            bar.update(1)
            bar.set_postfix(ok=counts.get("ok", 0), failed=sum(v for k, v in counts.items() if k.startswith("failed")))

        records = fetch_manifest(manifest, options, retry_failed=args.retry_failed, on_done=done)
    for record in records:
        if record.status != "ok":
            print(f"{record.video_id}: {record.status} ({record.error_class}): {record.error}", file=sys.stderr)
    summary = ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))
    print(f"{args.cache}/fetch.parquet: {summary}")
    return 0 if all(r.status != "failed" for r in records) else 1


def _bytes(size: str | None) -> int | None:
    """--max-filesize's 500M, 2G, 1000 as bytes."""
    from yt_dlp.utils import parse_bytes

    if size is None:
        return None
    value = parse_bytes(size)
    if value is None:
        raise ValueError(f"--max-filesize {size!r}: not a size (e.g. 500M)")
    return value


def _add_transcribe(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("transcribe", help="transcribe an audio file or a video's audio track to MIDI and rolls",
                       description="Transcribe MEDIA (audio, or a video's audio track) with a labeler; write MIDI "
                                   "and optionally the frame/onset/offset/velocity rolls at --fps.")
    p.add_argument("media", type=Path, metavar="MEDIA", help="an audio file or a video with an audio track")
    p.add_argument("--labeler", default="auto", choices=["auto", "basic-pitch", "transkun"],
                   help="auto: transkun when a GPU is visible, basic-pitch otherwise (default)")
    p.add_argument("--midi", type=Path, required=True, metavar="OUT.mid", help="where to write the notes")
    p.add_argument("--rolls", type=Path, metavar="OUT.npz", help="also write the rolls (88 keys, index 0 = A0)")
    p.add_argument("--fps", type=float, default=25.0, help="frame rate of the rolls (default 25)")
    p.add_argument("--sustain-pedal", action="store_true", help="lengthen notes held by the sustain pedal (transkun)")
    p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                   help="labeler parameter, e.g. --param onset_threshold=0.5 (repeatable)")
    p.set_defaults(run=_run_transcribe)


def _parse_key_values(items: list[str], flag: str) -> dict:
    """KEY=VALUE options; a VALUE that parses as JSON (numbers, true, lists) is taken as such."""
    import json

    params = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"{flag} {item!r}: expected KEY=VALUE")
        try:
            params[key] = json.loads(value)
        except json.JSONDecodeError:
            params[key] = value
    return params


def _run_transcribe(args: argparse.Namespace) -> int:
    from contract.config import LabelerConfig
    from labeling.label import transcribe_file

    labeler = LabelerConfig(name=args.labeler, params=_parse_key_values(args.param, "--param"),
                            sustain_pedal=args.sustain_pedal)
    done = transcribe_file(args.media, labeler, args.fps, args.midi, args.rolls)
    print(f"{args.media}: {done['notes']} notes from {done['audio_s']:.1f} s of audio with {done['labeler']} "
          f"on {done['device']} in {done['seconds']:.1f} s (label version {done['label_version']}) -> {args.midi}"
          + (f", {args.rolls}" if args.rolls else ""))
    return 0


def _add_locate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("locate", help="find the 88-key keyboard in a video or a frame grab",
                       description="Find the full 88-key keyboard's quad (TL, TR, BR, BL) in a video (from sampled "
                                   "frames) or an image. Exit 3 when no full keyboard is found.")
    p.add_argument("media", type=Path, metavar="VIDEO", help="a video or a frame grab (PNG, JPEG...)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--frames", type=int, default=24, help="frames sampled from a video (default 24)")
    p.set_defaults(run=_run_locate)


def _run_locate(args: argparse.Namespace) -> int:
    import json

    from curation.keyboard import KeyboardNotFound, locate

    try:
        location = locate(args.media, args.frames)
    except KeyboardNotFound as failure:
        if args.json:
            print(json.dumps({"error": failure.reason, "message": str(failure)}))
        else:
            print(f"{failure.reason}: {failure}", file=sys.stderr)
        return 3
    if args.json:
        print(json.dumps(location.to_json()))
    else:
        names = ("A0 back", "C8 back", "C8 front", "A0 front")
        corners = "  ".join(f"{n} ({x:.1f}, {y:.1f})" for n, (x, y) in zip(names, location.quad))
        clipped = "".join(f"; {end} end {keys:.1f} white keys outside the frame"
                          for end, keys in (("A0", location.clipped_left), ("C8", location.clipped_right)) if keys > 0.05)
        print(f"{args.media}: keyboard {corners}; bbox {location.bbox}; {location.orientation}{clipped}; "
              f"score {location.score:.3f} ({location.frames_used}/{location.frames_sampled} frames)")
    return 0


def _add_build(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("build", help="build a corpus from a manifest (Ray)",
                       description="Fetch, locate, filter, transcribe and shard every video of MANIFEST into OUT "
                                   "(the corpus layout in the README). Re-running resumes.")
    p.add_argument("manifest", metavar="MANIFEST", nargs="?",
                   help="CSV, TSV, JSONL or Parquet (or a shipped name: demo, audeo, pianoyt); default: the --config's")
    p.add_argument("--out", type=location, required=True, metavar="CORPUS",
                   help="corpus folder, or object-storage URI such as s3://bucket/prefix (created, or resumed)")
    _add_config(p, "the build's settings (a corpus.json repeats that build)")
    p.add_argument("--cache", type=location, metavar="CACHE",
                   help="download cache: a folder, or a URI such as s3://bucket/cache (default CORPUS/.cache)")
    _add_labeler_options(p)
    p.add_argument("--fps", type=float, default=25.0, help="frame rate of the corpus's frames and rolls")
    p.add_argument("--crop-size", default="900x100", metavar="WxH", help="rectified keyboard crop (default 900x100)")
    p.add_argument("--retry-failed", action="store_true", help="process videos that failed in an earlier run again")
    p.add_argument("--shard-samples", type=int, default=10_000, help="WebDataset samples per shard (default 10000)")
    p.add_argument("--shard-mb", type=int, default=500, help="WebDataset shard size cap in MB (default 500)")
    p.add_argument("--rows-per-part", type=int, default=10_000, help="frames per Parquet part (default 10000)")
    p.add_argument("--num-cpus", type=int, help="local Ray: CPUs to use (default all)")
    p.add_argument("--object-store-mb", type=int, help="local Ray: object store size")
    p.add_argument("--address", help="join a running Ray cluster (or set RAY_ADDRESS)")
    _add_gpus_per_actor(p)
    p.add_argument("--max-duration", type=float, metavar="SECONDS", help="refuse longer videos")
    p.add_argument("--max-filesize", metavar="SIZE", help="refuse larger downloads, e.g. 500M (class too_large)")
    _add_requests_per_second(p)
    p.add_argument("--progress-every", type=float, default=30.0, metavar="SECONDS",
                   help="a progress line this often when stderr is not a terminal (a log file)")
    p.add_argument("--hands", action="store_true",
                   help="hand keypoints of the kept frames (MediaPipe Hands, offline) into hands/VERSION/ and the "
                        "WebDataset's KEY.hands.npy; about 20-50 ms a frame on a CPU (default off)")
    p.add_argument("--max-hands", type=int, default=4, help="with --hands: hands a frame at most (default 4)")
    p.add_argument("--segment-seconds", type=float, default=120.0, metavar="SECONDS",
                   help="a longer video's frame pass runs as segments of this length in parallel, joined into the "
                        "same frames (0: never; default 120)")
    p.set_defaults(run=_run_build)


def _size(text: str, flag: str) -> tuple[int, int]:
    """WxH -> (H, W), the order the frame pass, the readers and the model take."""
    width, _, height = text.lower().partition("x")
    if not (width.isdigit() and height.isdigit()):
        raise ValueError(f"{flag} {text!r}: expected WxH, e.g. 900x100")
    return int(height), int(width)


FAILED_SHOWN = 20  # the failed videos the summary names, each with its error


def print_summary(stats: dict, out: Path) -> None:
    totals = stats["totals"]
    failed = ", ".join(f"{n} {c}" for c, n in sorted(totals["failed"].items())) or "none"
    skipped = "".join(f"; skipped: {n} {c}" for c, n in sorted(totals["skipped"].items()))
    dropped = ", ".join(f"{n} {r}" for r, n in totals["dropped"].items())
    print(f"corpus: {out}")
    print(f"  videos   {totals['ok']} ok of {totals['videos']}; failed: {failed}{skipped}")
    print(f"  hours    {totals['hours']:.3f} of ok video")
    print(f"  frames   {totals['frames']} decoded, {totals['kept']} kept; dropped: {dropped}")
    print(f"  labels   {stats['label_version']}: {totals['notes']} notes")
    for split, s in stats["splits"].items():
        print(f"  {split:8s} {s['videos']} videos, {s['samples']} samples in {s['wds_shards']} WebDataset shard(s), "
              f"{s['parquet_parts']} Parquet part(s)")
    print(f"  took     {stats['seconds']:.1f} s")
    for video_id, error in list(stats.get("failed_videos", {}).items())[:FAILED_SHOWN]:
        print(f"  failed   {video_id}: {error}")
    if len(stats.get("failed_videos", {})) > FAILED_SHOWN:
        print(f"  failed   ... and {len(stats['failed_videos']) - FAILED_SHOWN} more (videos.parquet has them all)")


def _add_config(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--config", type=Path, metavar="FILE",
                   help=f"JSON, TOML or YAML with corpus.json's config keys: {what}; options given here override it")
    p.set_defaults(parser=p)


def _given(args: argparse.Namespace) -> set[str]:
    """The options written on the command line (abbreviations are off, so each is spelled
    whole); they override a --config file, even where they say the default."""
    words = [w.split("=", 1)[0] for w in args.argv]
    return {action.dest for action in args.parser._actions
            if action.option_strings and any(o in words for o in action.option_strings)}


def _config_file(args: argparse.Namespace) -> dict:
    from contract.config import read_config_file

    return read_config_file(args.config) if args.config else {"config": {}, "manifest": None, "train": {}}


def _build_config(args: argparse.Namespace):
    """The build's configuration: the --config file's record over the defaults, then the
    options given here over that."""
    from contract.config import BuildConfig, HandsConfig, RayConfig, merged_record

    record = merged_record(_config_file(args)["config"], args.out)
    given = _given(args)
    if "fps" in given:
        record["frames"]["fps"] = args.fps
    if "crop_size" in given:
        height, width = _size(args.crop_size, "--crop-size")
        record["frames"].update(crop_width=width, crop_height=height)
    record["labeler"].update(_labeler_given(args, given))
    for name in ("rows_per_part", "shard_samples"):
        if name in given:
            record[name] = getattr(args, name)
    if "shard_mb" in given:
        record["shard_bytes"] = args.shard_mb * 2**20
    if "max_duration" in given:
        record["fetch"]["max_duration_s"] = args.max_duration
    if "max_filesize" in given:
        record["fetch"]["max_filesize"] = _bytes(args.max_filesize)
    if args.hands:
        record["hands"] = asdict(HandsConfig(max_hands=args.max_hands))
    config = BuildConfig.of_corpus(args.out, record, cache=args.cache, retry_failed=args.retry_failed,
                                   progress_every_s=args.progress_every, segment_s=args.segment_seconds or None,
                                   ray=RayConfig(num_cpus=args.num_cpus, object_store_mb=args.object_store_mb,
                                                 address=args.address, gpus_per_actor=args.gpus_per_actor))
    config.fetch = replace(config.fetch, requests_per_s=args.requests_per_second or None)
    return config


def _labeler_given(args: argparse.Namespace, given: set[str]) -> dict:
    out = {}
    if "labeler" in given:
        out["name"] = args.labeler
    if "param" in given:
        out["params"] = _parse_key_values(args.param, "--param")
    if "sustain_pedal" in given:
        out["sustain_pedal"] = args.sustain_pedal
    if "av_align" in given:
        out["av_align"] = args.av_align
    if "onset_filter" in given:
        out["onset_filter"] = args.onset_filter
    return out


def _run_build(args: argparse.Namespace) -> int:
    from pipelines.build import build

    manifest = args.manifest or _config_file(args)["manifest"]
    if not manifest:
        raise ValueError("no manifest: name one, or give a --config that records it (a corpus.json does)")
    config = _build_config(args)
    stats = build(manifest, config)
    print_summary(stats, args.out)
    return 0 if not stats["totals"]["failed"] else 1  # skipped rows (no URL) are not failures


def _labeler_config(args: argparse.Namespace):
    from contract.config import LabelerConfig

    return LabelerConfig(name=args.labeler, params=_parse_key_values(args.param, "--param"),
                         sustain_pedal=args.sustain_pedal, av_align=args.av_align, onset_filter=args.onset_filter)


def _add_labeler_options(p: argparse.ArgumentParser) -> None:
    """The pseudo labels' options, the same for build and relabel (`_labeler_given` reads them)."""
    from contract.config import AV_ALIGN, ONSET_FILTERS

    p.add_argument("--labeler", default="auto", choices=["auto", "basic-pitch", "transkun"],
                   help="transcriber of the pseudo labels (auto: transkun with a GPU, else basic-pitch)")
    p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE", help="labeler parameter (repeatable)")
    p.add_argument("--sustain-pedal", action="store_true", help="lengthen notes held by the sustain pedal (transkun)")
    p.add_argument("--av-align", choices=AV_ALIGN, default="auto",
                   help="auto: move each video's labels by its sync offset when the pictures confirm it "
                        "(labels/VERSION/av.parquet records it); off: measure it only (default auto)")
    p.add_argument("--onset-filter", choices=ONSET_FILTERS, default="none",
                   help="hands: drop onsets no fingertip was near (within two white keys, PianoVAM's rule) in a "
                        "frame with a hand in view; needs a corpus built with --hands (default none)")


def _add_relabel(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("relabel", help="new pseudo labels for a corpus from its audio (frames untouched)",
                       description="Transcribe CORPUS/audio/ with a labeler and write labels/VERSION/ and "
                                   "wds/VERSION/; frames and audio are not touched.")
    p.add_argument("corpus", type=location, metavar="CORPUS", help="a corpus folder or URI (made by build)")
    _add_labeler_options(p)
    p.add_argument("--make-default", action="store_true",
                   help="make the new version the corpus's default_label_version (what readers use)")
    p.add_argument("--num-cpus", type=int, help="local Ray: CPUs to use (default all)")
    p.add_argument("--address", help="join a running Ray cluster (or set RAY_ADDRESS)")
    _add_gpus_per_actor(p)
    _add_config(p, "its labeler table (name, params, sustain_pedal, av_align, onset_filter)")
    p.set_defaults(run=_run_relabel)


def _add_gpus_per_actor(p: argparse.ArgumentParser) -> None:
    p.add_argument("--gpus-per-actor", type=float, default=1.0, metavar="SHARE",
                   help="where the cluster has GPUs, each transkun actor's share of one (default 1; 0.25: four "
                        "actors a GPU); without GPUs the transcriber runs on the CPU")


def _run_relabel(args: argparse.Namespace) -> int:
    from contract.config import LabelerConfig, RayConfig
    from pipelines.build import relabel

    labeler = {**_config_file(args)["config"].get("labeler", {}), **_labeler_given(args, _given(args))}
    stats = relabel(args.corpus, LabelerConfig(**{**asdict(_labeler_config(args)), **labeler}), make_default=args.make_default,
                    ray=RayConfig(num_cpus=args.num_cpus, address=args.address, gpus_per_actor=args.gpus_per_actor))
    print(f"corpus: {args.corpus}")
    print(f"  labels   {stats['label_version']}: {stats['notes']} notes" + (" (default)" if args.make_default else ""))
    for split, s in stats["splits"].items():
        print(f"  {split:8s} {s['videos']} videos, {s['samples']} samples in {s['wds_shards']} WebDataset shard(s)")
    print(f"  took     {stats['seconds']:.1f} s")
    for video_id, error in list(stats.get("failed_videos", {}).items())[:FAILED_SHOWN]:
        print(f"  failed   {video_id}: {error}")
    if len(stats.get("failed_videos", {})) > FAILED_SHOWN:
        print(f"  failed   ... and {len(stats['failed_videos']) - FAILED_SHOWN} more (videos.parquet has them all)")
    return 0


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a visual-transcription model (Video2Roll, Roll2Midi, onsets) on a corpus",
                       description="Train on CORPUS's train split into the run folder OUT; evaluate after each "
                                   "epoch; re-running with the same OUT resumes after its last epoch.")
    p.add_argument("corpus", type=location, metavar="CORPUS", help="a corpus folder or URI (made by build)")
    p.add_argument("--out", type=Path, required=True, metavar="RUN", help="run folder: checkpoints and history (resumed)")
    p.add_argument("--model", choices=["video2roll", "roll2midi", "onset"], default="video2roll",
                   help="video2roll: 5 frames -> the frame roll (default); roll2midi: refines a Video2Roll run's "
                        "rolls over 2 s windows (needs --from); onset: 5 frames -> the onsets of the centre frame")
    p.add_argument("--from", dest="source", metavar="RUN",
                   help="roll2midi: the Video2Roll run (folder, or a checkpoint) whose outputs it refines")
    p.add_argument("--window", type=int, default=50, help="roll2midi: frames per window (default 50: 2 s at 25 fps)")
    p.add_argument("--adversarial-weight", type=float, default=0.1,
                   help="roll2midi: weight of the GAN term beside the BCE reconstruction (default 0.1)")
    p.add_argument("--pos-weight", type=float,
                   help="onset: BCE weight of onsets (default: negatives / positives of the train split)")
    p.add_argument("--label-version", help="label version to learn (default: the corpus's default)")
    p.add_argument("--epochs", type=int, default=10, help="epochs in all, counting resumed ones (default 10)")
    p.add_argument("--keys", choices=["88", "audeo51"], default="88",
                   help="all 88 keys, or Audeo's 51 (MIDI 36..86) (default 88)")
    p.add_argument("--batch-size", type=int, default=16, help="samples per step")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam's learning rate (default 1e-3)")
    p.add_argument("--lr-decay", type=float, default=0.8, help="learning rate factor per epoch (default 0.8)")
    p.add_argument("--threshold", type=float, default=0.4, help="decision threshold on sigmoid outputs (Audeo: 0.4)")
    p.add_argument("--input-size", default="900x100", metavar="WxH", help="network input (default 900x100, Audeo's)")
    p.add_argument("--head", choices=["keys", "global"], default="keys",
                   help="read each key at its columns with shared detectors (default), or pool globally as Audeo")
    p.add_argument("--reader", choices=["wds", "parquet"], default="wds", help="shards to read (default wds)")
    p.add_argument("--workers", type=int, default=1, help="DataLoader workers (default 1)")
    p.add_argument("--shuffle-buffer", type=int, default=1000, help="samples (default 1000)")
    p.add_argument("--balanced", action="store_true", help="Audeo's sampler: draw a key, then a frame where it sounds")
    p.add_argument("--eval-split", action="append", default=[], metavar="SPLIT",
                   help="split(s) evaluated after each epoch (default: valid if present, else test)")
    p.add_argument("--max-minutes", type=float, help="stop training after this many minutes (checkpointed)")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:1...")
    p.add_argument("--seed", type=int, default=0, help="seed of the initial weights and the shuffling")
    _add_config(p, "a train table of TrainConfig's fields (epochs, batch_size, lr...)")
    p.set_defaults(run=_run_train)


def _run_train(args: argparse.Namespace) -> int:
    from training.train import TrainConfig, train

    config = TrainConfig(corpus=str(args.corpus), out=str(args.out), model=args.model, source=args.source,
                         window=args.window, adversarial_weight=args.adversarial_weight, pos_weight=args.pos_weight,
                         label_version=args.label_version,
                         keys=args.keys, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                         lr_decay=args.lr_decay, threshold=args.threshold, size=_size(args.input_size, "--input-size"),
                         head=args.head, reader=args.reader, workers=args.workers, shuffle_buffer=args.shuffle_buffer, balanced=args.balanced,
                         eval_splits=args.eval_split, max_minutes=args.max_minutes, device=args.device,
                         seed=args.seed)
    config = _train_config_file(args, config)
    history = train(config)
    if history:
        last = history[-1]
        print(f"run: {args.out} ({len(history)} epochs, label version {config.label_version}); "
              f"last checkpoint {args.out / 'last.pt'}")
        for split, m in last["eval"].items():
            print(f"  {split}: " + ", ".join(f"{name} {value:.3f}" for name, value in m.items()))
    return 0


# train options whose TrainConfig field is named otherwise
_TRAIN_FIELDS = {"input_size": "size", "eval_split": "eval_splits"}


def _train_config_file(args: argparse.Namespace, config):
    """The --config file's `train` table under the options given here."""
    from dataclasses import fields

    table = _config_file(args)["train"]
    known = {f.name for f in fields(config)} - {"corpus", "out"}
    unknown = sorted(set(table) - known)
    if unknown:
        raise ValueError(f"{args.config}: unknown train setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    given = {_TRAIN_FIELDS.get(name, name) for name in _given(args)}
    table = {k: (tuple(v) if k == "size" else v) for k, v in table.items() if k not in given}
    return replace(config, **table)


def _add_eval(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="frame-level (or onset) precision/recall/F1 of a checkpoint on a corpus",
                       description="Evaluate CKPT on CORPUS's splits, per split and overall, and write the figures "
                                   "as JSON: Video2Roll: Audeo's per-frame averaged frame metrics and the summed "
                                   "ones; Roll2Midi: the same for the refined rolls and for Video2Roll alone, with "
                                   "rolls and MIDI files per video; onset: mir_eval note-onset P/R/F1.")
    p.add_argument("corpus", type=location, metavar="CORPUS", help="a corpus folder or URI (made by build)")
    p.add_argument("--checkpoint", type=Path, required=True, metavar="CKPT", help="a checkpoint written by train")
    p.add_argument("--split", action="append", default=[], metavar="SPLIT", help="(repeatable; default test)")
    p.add_argument("--label-version", help="reference labels (default: the checkpoint's)")
    p.add_argument("--threshold", type=float, help="decision threshold (default: the checkpoint's, 0.4)")
    p.add_argument("--reader", choices=["wds", "parquet"], default="wds", help="shards to read")
    p.add_argument("--json", type=Path, metavar="OUT", help="where to write the metrics (default CKPT.eval.json)")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:1...")
    p.set_defaults(run=_run_eval)


def _run_eval(args: argparse.Namespace) -> int:
    from training.train import evaluate_checkpoint

    result = evaluate_checkpoint(args.checkpoint, args.corpus, args.split or ["test"], label_version=args.label_version,
                                 threshold=args.threshold, reader=args.reader, device=args.device, out=args.json)
    print(f"{args.checkpoint} ({result['model']}) on {args.corpus} (labels {result['label_version']}, "
          f"keys {result['keys']}, threshold {result['threshold']:g})")
    {"video2roll": _print_frame_metrics, "roll2midi": _print_roll2midi, "onset": _print_onsets}[result["model"]](result)
    print(f"  -> {result['json']}")
    return 0


_FRAME_METRICS = ("precision", "recall", "accuracy", "f1")


def _print_frame_table(rows: list[tuple[str, dict]]) -> None:
    """Frame metrics two ways (Audeo per-frame, summed), one row per (name, `scores` result)."""
    print(f"  {'':18s} {'':>7s}   {'Audeo per-frame':^26s}  {'summed':^26s}")
    print(f"  {'split':18s} {'frames':>7s}   " + "  ".join(f"{h:>5s}" for h in ("P", "R", "Acc", "F1") * 2))
    for name, m in rows:
        values = [m["audeo"][k] for k in _FRAME_METRICS] + [m["summed"][k] for k in _FRAME_METRICS]
        print(f"  {name:18s} {m['frames']:7d}   " + "  ".join(f"{v:5.3f}" for v in values))


def _print_frame_metrics(result: dict) -> None:
    _print_frame_table([*result["splits"].items(), ("overall", result["overall"])])


def _print_roll2midi(result: dict) -> None:
    print(f"  Video2Roll alone at its threshold {result['video2roll_threshold']:g}, on the same frames:")
    _print_frame_table([(f"{split} {model}", m[model]) for split, m in [*result["splits"].items(),
                                                                        ("overall", result["overall"])]
                        for model in ("video2roll", "roll2midi")])
    print(f"  rolls and MIDI of {result['outputs']['videos']} videos in {result['outputs']['folder']}")


def _print_onsets(result: dict) -> None:
    print(f"  note onsets (mir_eval, {result['onset_tolerance_s'] * 1000:g} ms), after peak picking per key")
    print(f"  {'split':10s} {'videos':>6s} {'ref':>6s} {'est':>6s}  {'P':>5s}  {'R':>5s}  {'F1':>5s}  {'F1/video':>8s}")
    for name, m in [*result["splits"].items(), ("overall", result["overall"])]:
        s = m["summed"]
        print(f"  {name:10s} {m['videos']:6d} {s['reference']:6d} {s['estimated']:6d}  {s['precision']:5.3f}  "
              f"{s['recall']:5.3f}  {s['f1']:5.3f}  {m['mean_per_video']['f1']:8.3f}")


def _add_audit(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("audit", help="statistics, checks and an HTML report of a corpus",
                       description="Write CORPUS/stats/audit.json and a self-contained CORPUS/stats/report.html "
                                   "(splits, published figures, label statistics, per-video flags, checks) and "
                                   "print a short summary.")
    p.add_argument("corpus", type=location, metavar="CORPUS", help="a corpus folder or URI (made by build)")
    p.add_argument("--label-version", help="labels to describe (default: the corpus's default)")
    p.add_argument("--compare", metavar="V2", help="also measure how far label version V2 agrees with them")
    p.add_argument("--manifest", help="manifest for published figures (default: the one the corpus was built from)")
    p.add_argument("--cache", type=location, metavar="CACHE",
                   help="download cache the source frames are read from, a folder or URI (default CORPUS/.cache)")
    p.set_defaults(run=_run_audit)


def _run_audit(args: argparse.Namespace) -> int:
    from pipelines.audit import audit_corpus

    result, json_path, html_path = audit_corpus(args.corpus, args.label_version, args.compare, args.manifest, args.cache)
    overall, labels = result["splits"]["overall"], result["labels"]["overall"]
    failed = ", ".join(f"{n} {c}" for c, n in sorted(overall["failed"].items())) or "none"
    skipped = "".join(f"; skipped: {n} {c}" for c, n in sorted(overall["skipped"].items()))
    print(f"corpus: {args.corpus} (labels {result['label_version']})")
    print(f"  videos   {overall['ok']} ok of {overall['videos']}; failed: {failed}{skipped}")
    print(f"  frames   {overall['frames']} decoded, {overall['kept']} kept ({_percent(overall['kept_ratio'])}); "
          + ", ".join(f"{n} {r}" for r, n in overall["dropped"].items()))
    print(f"  labels   {labels['notes']} notes, {labels['notes_per_s'] or 0:.2f}/s; "
          f"{_percent(labels['no_key_share'])} of kept frames with no key down; "
          f"{len(labels['keys_never_down'])} keys never down")
    flags = ", ".join(f"{n} {f}" for f, n in sorted(result["flags"].items())) or "none"
    print(f"  flags    {flags}")
    print(f"  checks   {len(result['checks'])} problem(s)" + "".join(
        f"\n           {c['check']}: {c['where']} ({c['detail']})" for c in result["checks"]))
    if "compare" in result:
        c = result["compare"]["overall"]
        print(f"  compare  {args.compare} vs {result['label_version']}: frame F1 {c['frame_f1']:.3f}, "
              f"mean onset F1 {c['onset_f1_mean'] if c['onset_f1_mean'] is not None else float('nan'):.3f}")
    print(f"  wrote    {json_path}, {html_path}")
    return 0


def _percent(share: float | None) -> str:
    return "-" if share is None else f"{100 * share:.1f} %"


def _add_doctor(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("doctor", help="check what a real fetch and build need (JavaScript runtime, FFmpeg, Ray, labelers, GPU)",
                       description="Says what is missing and how to fix it. No network unless --network.")
    p.add_argument("--cookies", type=Path, metavar="FILE", help="also check this cookies file")
    p.add_argument("--network", action="store_true", help="also check that youtube.com can be reached")
    p.set_defaults(run=_doctor)


def _doctor(args) -> int:
    from pipelines.doctor import doctor

    checks = doctor(cookies=args.cookies, network=args.network)
    width = max(len(c.name) for c in checks)
    for c in checks:
        print(f"{c.status:8s} {c.name:{width}s}  {c.found}" + (f"\n{'':8s} {'':{width}s}  fix: {c.fix}" if c.fix and c.status != "ok" else ""))
    missing = [c.name for c in checks if c.status == "missing"]
    print(f"{len(missing)} missing" + (f": {', '.join(missing)}" if missing else "; everything a fetch and build need is here"))
    return 1 if missing else 0


def _add_verify(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("verify", help="check every file of a corpus against corpus.json's records",
                       description="Check that every part and shard corpus.json lists is present, of its size and "
                                   "content (sha256), that no stale part lies beside them and that each label "
                                   "version labels the current frames; say what repairs it. Exit 1 on a problem.")
    p.add_argument("corpus", type=location, metavar="CORPUS", help="a corpus folder or URI (made by build)")
    p.add_argument("--quick", action="store_true", help="sizes only, no hashes")
    p.set_defaults(run=_run_verify)


def _run_verify(args: argparse.Namespace) -> int:
    from contract.integrity import verify_corpus

    result = verify_corpus(args.corpus, hashes=not args.quick)
    for problem in result["problems"]:
        print(problem)
    print(f"{args.corpus}: {result['files']} files checked{' (sizes only)' if args.quick else ''}, "
          f"{len(result['problems'])} problem(s); {result['repair']}")
    return 1 if result["problems"] else 0


class _DefaultsShown(argparse.HelpFormatter):
    """Every option's default in --help, unless its help already says it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if "default" in text or default in (None, False, argparse.SUPPRESS) or default == [] or not action.option_strings:
            return text
        return f"{text} (default: {default})" if text else f"(default: {default})"


def build_parser() -> argparse.ArgumentParser:
    from contract.meta import tool_version

    parser = argparse.ArgumentParser(prog="pianocorpus", description="Clean, sharded, labelled corpora from top-view piano videos.",
                                     formatter_class=_DefaultsShown)
    parser.add_argument("--version", action="version", version=f"pianocorpus {tool_version()}")
    loudness = parser.add_mutually_exclusive_group()
    loudness.add_argument("-v", "--verbose", action="count", default=0, help="more log lines (-vv: Ray's and yt-dlp's too)")
    loudness.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_synth(sub)
    _add_manifest(sub)
    _add_fetch(sub)
    _add_transcribe(sub)
    _add_locate(sub)
    _add_build(sub)
    _add_relabel(sub)
    _add_train(sub)
    _add_eval(sub)
    _add_audit(sub)
    _add_verify(sub)
    _add_doctor(sub)
    parser.allow_abbrev = False
    for command in _subparsers(parser):
        command.formatter_class = _DefaultsShown
        command.allow_abbrev = False  # an option given is spelled whole (--config: see _given)
    return parser


def _subparsers(parser: argparse.ArgumentParser):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                yield child
                yield from _subparsers(child)


OUR_LOGGERS = ("contract", "manifests", "curation", "labeling", "synth", "training", "pipelines", "pianocorpus")


def configure_logging(verbose: int = 0, quiet: bool = False) -> None:
    """Our log lines (`labeler auto -> ...`) on stderr at INFO; -q: warnings only; -v:
    ours at DEBUG; -vv: everyone's at DEBUG."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose >= 2 else logging.WARNING)
    ours = logging.WARNING if quiet else logging.DEBUG if verbose else logging.INFO
    for name in OUR_LOGGERS:
        logging.getLogger(name).setLevel(ours)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(argv)
    args.argv = argv
    configure_logging(args.verbose, args.quiet)
    try:
        return args.run(args)
    except ModuleNotFoundError as error:
        extra = missing_extra(error, f"pianocorpus {args.command}")
        if extra is None:
            raise
        print(f"pianocorpus {args.command}: error: {extra}", file=sys.stderr)
        return 2
    except (ValueError, RuntimeError, OSError) as error:  # ManifestError is a ValueError; MissingExtra a RuntimeError
        print(f"pianocorpus {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
