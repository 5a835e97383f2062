"""The typed configuration of a build: frames, fetch, labeler, shards, and where it runs.

`BuildConfig.recorded()` is what corpus.json keeps under `config`, whole, and
`BuildConfig.of_corpus()` reads it back whole: relabel, audit and training see the
settings the corpus was built with, never defaults. Of the fetch options only those that
decide which file a video comes from are recorded (not the politeness ones, nor proxy,
cookies or raw yt-dlp options, which can carry credentials).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

from contract.hashing import json_digest
from contract.layout import CorpusLayout
from contract.store import location

# The smallest video of at least 720 rows, with its audio (merged when separate);
# otherwise the best there is.
DEFAULT_FORMAT = "bv*[height>=720]+ba/b[height>=720]/bv*+ba/b"
DEFAULT_FORMAT_SORT = ("+res", "+size", "+br")


@dataclass(frozen=True)
class FrameConfig:
    """The frame pass: corpus fps, the rectified crop, and the drop rules' thresholds."""

    fps: float = 25.0
    crop_width: int = 900  # Audeo's network input is 900 x 100 (W x H)
    crop_height: int = 100
    jpeg_quality: int = 90
    keyboard_similarity: float = 0.5
    silence_db: float = -50.0
    silence_floor: float = 1e-4  # absolute RMS below which a frame is always silent
    edge_margin_s: float = 0.5
    rest_max_s: float = 3.0
    rest_margin_s: float = 0.5
    batch_frames: int = 256  # frames per yielded batch


@dataclass(frozen=True)
class VideoSettings:
    """What decides a video's frames and audio (hashed: a video is redone when it changes)."""

    frames: FrameConfig = field(default_factory=FrameConfig)
    locate_frames: int = 24

    def digest(self) -> str:
        return json_digest(asdict(self), 12)


@dataclass(frozen=True)
class FetchOptions:
    """How to fetch; `ytdlp` holds extra yt-dlp options passed through unchanged."""

    cache: Path | str | None = None  # a folder or URI (CacheLayout); the build sets CORPUS/.cache unless told another
    format: str = DEFAULT_FORMAT
    format_sort: tuple[str, ...] = DEFAULT_FORMAT_SORT
    max_duration_s: float | None = None
    max_filesize: int | None = None  # bytes
    retries: int = 3  # extra attempts for rate_limited / network
    backoff_s: float = 5.0  # first wait; doubles per attempt
    socket_timeout_s: float = 30.0
    concurrency: int = 2  # videos at once
    sleep_s: float = 0.0  # yt-dlp's sleep before each download
    rate_limit: str | None = None  # bytes/s, e.g. "2M"
    proxy: str | None = None
    cookies: Path | None = None
    cookies_from_browser: str | None = None
    requests_per_s: float | None = 1.0  # video downloads started per second, across all workers (http/https only)
    limiter: object | None = field(default=None, compare=False, repr=False)  # shared at run time (fetch_manifest, the build)
    ytdlp: dict = field(default_factory=dict)

    def recorded(self) -> dict:
        """What decides which file a video's frames come from (the rest says how politely
        to fetch it, or carries credentials: not recorded)."""
        return {"format": self.format, "format_sort": list(self.format_sort), "max_duration_s": self.max_duration_s,
                "max_filesize": self.max_filesize}


@dataclass(frozen=True)
class LabelerConfig:
    """Which transcriber, with which parameters; `batch` videos per transcriber call."""

    name: str = "auto"  # auto: transkun where the cluster has a GPU, basic-pitch otherwise
    params: dict = field(default_factory=dict)
    sustain_pedal: bool = False
    batch: int = 1  # each video is labelled as soon as its audio is written
    av_align: str = "auto"  # auto: labels moved by a confident sync offset (labeling/agreement.py); off: measured only
    onset_filter: str = "none"  # hands: onsets no fingertip was near are dropped (needs the build's hand keypoints)

    def __post_init__(self):
        if self.av_align not in AV_ALIGN:
            raise ValueError(f"av_align must be one of {', '.join(AV_ALIGN)}, got {self.av_align!r}")
        if self.onset_filter not in ONSET_FILTERS:
            raise ValueError(f"onset_filter must be one of {', '.join(ONSET_FILTERS)}, got {self.onset_filter!r}")


AV_ALIGN = ("auto", "off")
ONSET_FILTERS = ("none", "hands")


@dataclass(frozen=True)
class HandsConfig:
    """Hand keypoints (curation/hands.py: MediaPipe Hands, tracking from frame to frame:
    its palm detector runs only when a hand is lost)."""

    max_hands: int = 4  # two players at one keyboard
    model_complexity: int = 1  # 0: the lite landmark model, 1: the full one
    min_detection_confidence: float = 0.2  # chosen on real frames (benchmarks/hands_real.py; README)
    min_tracking_confidence: float = 0.5


@dataclass(frozen=True)
class ShardConfig:
    rows_per_part: int = 10_000  # frames per Parquet part
    shard_samples: int = 10_000  # WebDataset samples per shard
    shard_bytes: int = 500 * 2**20  # WebDataset shard size cap


@dataclass(frozen=True)
class RayConfig:
    num_cpus: int | None = None  # local Ray: default all
    object_store_mb: int | None = None  # local Ray: default Ray's
    address: str | None = None  # join a cluster (or $RAY_ADDRESS)
    gpus_per_actor: float = 1.0  # a transcriber actor's share of a GPU: 0.25 puts four on each GPU

    def __post_init__(self):
        if not 0 < self.gpus_per_actor <= 1:
            raise ValueError(f"gpus_per_actor must be in (0, 1], got {self.gpus_per_actor}")


@dataclass
class BuildConfig:
    out: Path | str  # a folder, or an object-storage URI (s3://bucket/prefix: contract/store.py)
    cache: Path | str | None = None  # a folder or URI; default OUT/.cache (for a corpus on object storage, a folder on each node)
    settings: VideoSettings = field(default_factory=VideoSettings)
    labeler: LabelerConfig = field(default_factory=LabelerConfig)
    shards: ShardConfig = field(default_factory=ShardConfig)
    fetch: FetchOptions = field(default_factory=FetchOptions)
    hands: HandsConfig | None = None  # hand keypoints of the kept frames (hands/VERSION/): off unless asked
    segment_s: float | None = 120.0  # a longer video's frame pass runs as segments of this length in parallel (same frames)
    ray: RayConfig = field(default_factory=RayConfig)
    retry_failed: bool = False
    manifest: str | None = None  # the manifest built from (recorded in corpus.json; the audit reads it)
    progress_every_s: float = 30.0  # a progress line this often when stderr is not a terminal

    def __post_init__(self):
        self.out = location(self.out)
        self.cache = None if self.cache is None else location(self.cache)

    @property
    def layout(self) -> CorpusLayout:
        return CorpusLayout(self.out)

    def fetch_options(self) -> FetchOptions:
        return replace(self.fetch, cache=location(self.cache or self.fetch.cache or self.layout.default_cache))

    def recorded(self) -> dict:
        """corpus.json's `config`: everything that decided the corpus's content."""
        return {"frames": asdict(self.settings.frames), "locate_frames": self.settings.locate_frames,
                "settings_digest": self.settings.digest(), **asdict(self.shards),
                "labeler": asdict(self.labeler), "fetch": self.fetch.recorded(),
                "hands": asdict(self.hands) if self.hands else None}

    @classmethod
    def of_corpus(cls, out: str | Path, recorded: dict, **overrides) -> "BuildConfig":
        """The configuration a corpus was built with (corpus.json's `config`), with
        `overrides` (the labeler of a relabel, where to run)."""
        settings = VideoSettings(frames=FrameConfig(**recorded["frames"]), locate_frames=recorded["locate_frames"])
        shards = ShardConfig(**{f.name: recorded[f.name] for f in fields(ShardConfig)})
        fetch = recorded.get("fetch", {})
        hands = recorded.get("hands")
        config = cls(out=out, settings=settings, shards=shards,
                     labeler=LabelerConfig(**recorded.get("labeler", {})), hands=HandsConfig(**hands) if hands else None,
                     fetch=FetchOptions(**{**fetch, "format_sort": tuple(fetch.get("format_sort", DEFAULT_FORMAT_SORT))}))
        # what the recorded fetch options leave out stays at its default
        return replace(config, **overrides)


# --- config files (--config) ---------------------------------------------------------------
CONFIG_SECTIONS = ("frames", "locate_frames", "settings_digest", *(f.name for f in fields(ShardConfig)), "labeler",
                   "fetch", "hands", "train")


def read_config_file(path: str | Path) -> dict:
    """A --config file (JSON, TOML or YAML) as {"config": corpus.json's keys, "manifest",
    "train"}; a corpus.json is read as its own record (its `config` and `manifest`), so
    `build --config CORPUS/corpus.json` repeats that build. Unknown keys are refused,
    naming the file."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as error:
        raise ValueError(f"{path}: cannot read the config file ({error.strerror or error})") from None
    suffix = path.suffix.lower()
    try:
        if suffix == ".toml":
            import tomllib

            data = tomllib.loads(text)
        elif suffix in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text) or {}
        else:
            import json

            data = json.loads(text)
    except Exception as error:  # each parser has its own error type; the message says where
        raise ValueError(f"{path}: not valid {suffix.lstrip('.') or 'JSON'}: {error}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a config file holds a table of settings, not {type(data).__name__}")
    if "config" in data and "format" in data:  # a corpus.json
        return {"config": data["config"], "manifest": data.get("manifest"), "train": {}}
    unknown = sorted(set(data) - set(CONFIG_SECTIONS) - {"manifest"})
    if unknown:
        raise ValueError(f"{path}: unknown setting(s) {', '.join(unknown)}; known: {', '.join(CONFIG_SECTIONS)}, manifest")
    train = data.get("train", {})
    return {"config": {k: v for k, v in data.items() if k not in ("manifest", "train")},
            "manifest": data.get("manifest"), "train": train}


def merged_record(partial: dict, out: str | Path = ".") -> dict:
    """The defaults' record with `partial` laid over it (tables merged key by key)."""
    record = BuildConfig(out=Path(out)).recorded()
    for key, value in partial.items():
        if key == "settings_digest":
            continue  # derived from the settings, not a setting
        if isinstance(value, dict) and isinstance(record.get(key), dict):
            known = set(record[key])
            if set(value) - known:
                raise ValueError(f"unknown {key} setting(s) {', '.join(sorted(set(value) - known))}; "
                                 f"known: {', '.join(sorted(known))}")
            record[key] = {**record[key], **value}
        else:
            record[key] = value
    return record
