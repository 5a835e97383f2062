"""`synth://SEED/INDEX?seconds=S[&width=W&height=H&fps=F&cut=0|1]`: a synthetic video,
rendered once into the cache's .synth/ folder, then fetched like any local file.

Registered in pyproject.toml under the `pianocorpus.sources` entry points, so that fetch
resolves the scheme without importing the test bed.
"""

from __future__ import annotations

from urllib.parse import parse_qs, urlparse

from contract.layout import CacheLayout
from contract.vocab import Failure
from synth.video import SynthConfig, indexed_video_name, make_indexed_video


def resolve(url: str, cache: CacheLayout) -> str:
    """The file:// URL of the rendered video (rendering it first if the cache lacks it)."""
    parsed = urlparse(url)
    try:
        seed, index = int(parsed.netloc), int(parsed.path.strip("/") or 0)
        query = {k: v[0] for k, v in parse_qs(parsed.query).items()}
        config = SynthConfig(seconds=float(query.get("seconds", 20)), width=int(query.get("width", 1280)),
                             height=int(query.get("height", 720)), fps=int(query.get("fps", 25)),
                             cut=None if "cut" not in query else query["cut"] not in ("0", "false"))
    except ValueError as error:
        raise Failure("other", f"bad synth URL {url!r}: {error}") from None
    name = indexed_video_name(seed, index)
    mp4 = cache.synth / f"{name}.mp4"
    if not (mp4.is_file() and (cache.synth / f"{name}.json").is_file()):
        make_indexed_video(cache.synth, seed, index, config)
    return mp4.resolve().as_uri()
