"""`pianocorpus doctor`: what a real fetch and build need, checked on this machine.

Each check says ok / missing / note, what it found, and how to fix what is missing. Nothing
touches the network unless `network=True` (then: can YouTube's name be resolved and its
front page reached). Notes (no GPU, no FluidSynth) do not fail the doctor.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from contract.extras import INSTALL, available


@dataclass
class Check:
    name: str
    status: str  # ok | missing | note
    found: str
    fix: str = ""


def _js_runtime() -> Check:
    from curation.fetch import js_runtime

    runtime = js_runtime()
    if runtime is None:
        return Check("JavaScript runtime (YouTube)", "missing", "no deno found (the deno package or PATH)",
                     "pip install 'deno>=2.3' (the set-up does; YouTube lists no formats without it)")
    if not runtime["supported"]:
        return Check("JavaScript runtime (YouTube)", "missing", f"deno {runtime['version']} at {runtime['path']}",
                     "pip install -U 'deno>=2.3' (yt-dlp needs >= 2.3)")
    return Check("JavaScript runtime (YouTube)", "ok", f"deno {runtime['version']} at {runtime['path']}")


def _challenge_solver() -> Check:
    if not available("yt_dlp_ejs"):
        return Check("challenge solver (yt-dlp-ejs)", "missing", "yt_dlp_ejs not importable",
                     "pip install 'yt-dlp[default]' (brings the yt-dlp-ejs version this yt-dlp expects)")
    from importlib.metadata import requires, version

    wanted = [r for r in (requires("yt-dlp") or []) if r.startswith("yt-dlp-ejs") and "default" in r]
    have = version("yt-dlp-ejs")
    pin = wanted[0].split(";")[0].split("==")[-1].strip() if wanted else None
    if pin and pin != have:
        return Check("challenge solver (yt-dlp-ejs)", "missing", f"yt-dlp-ejs {have}; this yt-dlp expects {pin}",
                     f"pip install 'yt-dlp-ejs=={pin}'")
    return Check("challenge solver (yt-dlp-ejs)", "ok", f"yt-dlp-ejs {have} (yt-dlp {version('yt-dlp')})")


def _ffmpeg() -> Check:
    try:
        import imageio_ffmpeg

        exe = imageio_ffmpeg.get_ffmpeg_exe()
        out = subprocess.run([exe, "-version"], capture_output=True, text=True, timeout=30).stdout.split("\n")[0]
        return Check("FFmpeg (merging video and audio)", "ok", f"{out} ({exe})")
    except (ImportError, RuntimeError, OSError, subprocess.SubprocessError) as error:
        return Check("FFmpeg (merging video and audio)", "missing", str(error), "pip install imageio-ffmpeg")


def _cookies(path: Path | None) -> Check | None:
    if path is None:
        return None
    try:
        head = path.read_text(errors="replace")[:200]
    except OSError as error:
        return Check("cookies file", "missing", f"{path}: {error.strerror or error}", "export a Netscape cookies.txt")
    if "HTTP Cookie File" not in head and "\t" not in head:
        return Check("cookies file", "missing", f"{path}: not a Netscape cookies file",
                     "export cookies.txt from a signed-in browser (Netscape format)")
    return Check("cookies file", "ok", f"{path} readable")


def _ray() -> Check:
    try:
        import ray

        started = not ray.is_initialized()
        if started:
            ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False, configure_logging=False)
        try:
            cpus = ray.cluster_resources().get("CPU", 0)
        finally:
            if started:
                ray.shutdown()
        return Check("Ray", "ok", f"ray {ray.__version__} starts ({cpus:g} CPU)")
    except Exception as error:  # whatever keeps Ray from starting is the finding
        return Check("Ray", "missing", f"{type(error).__name__}: {error}", "pip install 'ray[data]'; check /tmp is writable")


def _labelers() -> list[Check]:
    checks = []
    for name, module in (("basic-pitch", "basic_pitch"), ("transkun", "transkun")):
        if available(module) and (module != "transkun" or available("torch")):
            checks.append(Check(f"labeler {name}", "ok", f"{module} importable"))
        else:
            checks.append(Check(f"labeler {name}", "note", f"{module} not installed", INSTALL[module]))
    if all(c.status != "ok" for c in checks):
        for c in checks:
            c.status = "missing"
    return checks


def _gpu() -> Check:
    if not available("torch"):
        return Check("GPU", "note", "torch not installed", INSTALL["torch"])
    import torch

    if torch.cuda.is_available():
        return Check("GPU", "ok", f"{torch.cuda.device_count()} CUDA device(s): {torch.cuda.get_device_name(0)}")
    return Check("GPU", "note", "torch sees no GPU: labelling and training run on the CPU (slower)")


def _fluidsynth() -> Check:
    if shutil.which("fluidsynth") and Path("/usr/share/sounds/sf2/FluidR3_GM.sf2").exists():
        return Check("FluidSynth (synthetic audio)", "ok", shutil.which("fluidsynth"))
    return Check("FluidSynth (synthetic audio)", "note", "not found: synthetic videos use pretty_midi's sound",
                 "apt-get install fluidsynth fluid-soundfont-gm")


def _network() -> Check:
    import urllib.request

    try:
        with urllib.request.urlopen("https://www.youtube.com/", timeout=10) as response:
            return Check("network (youtube.com)", "ok", f"HTTP {response.status}")
    except OSError as error:
        return Check("network (youtube.com)", "missing", str(error), "check the connection or --proxy")


def doctor(cookies: Path | None = None, network: bool = False) -> list[Check]:
    """Every check, in the order a fetch and a build meet them."""
    checks = [_js_runtime(), _challenge_solver(), _ffmpeg(), _cookies(cookies), _ray(), *_labelers(), _gpu(),
              _fluidsynth(), _network() if network else None]
    return [c for c in checks if c is not None]
