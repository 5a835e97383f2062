"""Fetch: one yt-dlp call per video (metadata and media together) into a cache keyed by id.

Cache layout (DIR):
    VIDEO_ID.EXT          the media; present only when complete (downloaded under
                          .tmp/VIDEO_ID/, then renamed into place)
    VIDEO_ID.info.json    what yt-dlp said of it (title, duration, format, size)
    fetch.parquet         one row per manifest row: status, error class and message
    .synth/               synthetic sources rendered for `synth://` URLs

Failures are values: every failed row gets a class (`unavailable`, `private`,
`bot_check`, `rate_limited`, `network`, `too_long`, `too_large`, `other`) and yt-dlp's
own message. `rate_limited` and `network` are retried with exponential backoff.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlparse

import pyarrow as pa
import pyarrow.parquet as pq

from curation.probe import ProbeError, probe
from manifests.schema import ManifestRow

ERROR_CLASSES = ("unavailable", "private", "bot_check", "rate_limited", "network", "too_long", "too_large", "other")
TRANSIENT = frozenset({"rate_limited", "network"})
# The smallest video of at least 720 rows, with its audio (merged when separate);
# otherwise the best there is.
DEFAULT_FORMAT = "bv*[height>=720]+ba/b[height>=720]/bv*+ba/b"
DEFAULT_FORMAT_SORT = ("+res", "+size", "+br")
MEDIA_SUFFIXES = (".mp4", ".mkv", ".webm", ".mov", ".m4v", ".avi", ".flv")

# (class, lower-case fragments of yt-dlp's message), checked in order.
_PATTERNS = (
    ("private", ("private video", "this video is private")),
    ("bot_check", ("sign in to confirm", "not a bot", "login required", "sign in to view", "cookies")),
    ("rate_limited", ("http error 429", "too many requests", "rate-limit", "rate limit")),
    ("unavailable", ("video unavailable", "http error 404", "http error 410", "not available", "has been removed",
                     "no such file", "does not exist", "account associated with this video has been terminated")),
    ("network", ("timed out", "timeout", "connection reset", "connection refused", "connection aborted",
                 "more expected", "incompleteread", "remote end closed", "urlopen error", "name resolution",
                 "http error 500", "http error 502", "http error 503", "http error 504", "unable to connect")),
)


def classify_error(message: str) -> str:
    text = message.lower()
    for error_class, fragments in _PATTERNS:
        if any(f in text for f in fragments):
            return error_class
    return "other"


class FetchFailure(Exception):
    def __init__(self, error_class: str, message: str):
        super().__init__(message)
        self.error_class = error_class


@dataclass(frozen=True)
class FetchOptions:
    """How to fetch; `ytdlp` holds extra yt-dlp options passed through unchanged."""

    cache: Path
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
    ytdlp: dict = field(default_factory=dict)


@dataclass
class FetchRecord:
    """One row of fetch.parquet."""

    video_id: str
    url: str | None
    status: str  # ok | failed | skipped
    error_class: str | None = None
    error: str | None = None
    path: str | None = None  # the media file, relative to the cache
    bytes: int | None = None
    seconds: float | None = None  # wall time of the fetch (0 for a cache hit)
    attempts: int = 0
    duration_s: float | None = None
    width: int | None = None
    height: int | None = None


FETCH_SCHEMA = pa.schema([
    ("video_id", pa.string()), ("url", pa.string()), ("status", pa.string()), ("error_class", pa.string()),
    ("error", pa.string()), ("path", pa.string()), ("bytes", pa.int64()), ("seconds", pa.float64()),
    ("attempts", pa.int32()), ("duration_s", pa.float64()), ("width", pa.int32()), ("height", pa.int32()),
])


# --- cache ---------------------------------------------------------------------------------
def cached_media(cache: Path, video_id: str) -> Path | None:
    """The complete media file for `video_id`, if the cache has one."""
    for suffix in MEDIA_SUFFIXES:
        candidate = cache / f"{video_id}{suffix}"
        if candidate.is_file():
            return candidate
    return None


def _safe_child(cache: Path, name: str) -> Path:
    """cache/name, refusing anything that would land outside the cache."""
    path = (cache / name).resolve()
    if path.parent != cache.resolve():
        raise FetchFailure("other", f"video id {name!r} would write outside the cache {cache}")
    return path


def read_fetch_table(cache: Path) -> dict[str, FetchRecord]:
    path = cache / "fetch.parquet"
    if not path.is_file():
        return {}
    names = {f.name for f in fields(FetchRecord)}
    return {r["video_id"]: FetchRecord(**{k: v for k, v in r.items() if k in names})
            for r in pq.read_table(path).to_pylist()}


def write_fetch_table(cache: Path, records: list[FetchRecord]) -> Path:
    path = cache / "fetch.parquet"
    table = pa.Table.from_pylist([asdict(r) for r in records], schema=FETCH_SCHEMA)
    part = path.with_name(path.name + ".part")
    pq.write_table(table, part)
    os.replace(part, path)
    return path


# --- sources -------------------------------------------------------------------------------
def resolve_source(url: str, cache: Path) -> str:
    """The URL yt-dlp fetches: `synth://SEED/INDEX?seconds=S` is rendered (once) first."""
    parsed = urlparse(url)
    if parsed.scheme == "file":
        local = Path(unquote(parsed.path))
        if not local.is_file():
            raise FetchFailure("unavailable", f"local file not found: {local}")
        return url
    if parsed.scheme != "synth":
        return url
    from curation.synthetic import SynthConfig, indexed_video_name, make_indexed_video  # the demo and tests

    try:
        seed, index = int(parsed.netloc), int(parsed.path.strip("/") or 0)
        query = {k: v[0] for k, v in parse_qs(parsed.query).items()}
        config = SynthConfig(seconds=float(query.get("seconds", 20)), width=int(query.get("width", 1280)),
                             height=int(query.get("height", 720)), fps=int(query.get("fps", 25)),
                             cut=None if "cut" not in query else query["cut"] not in ("0", "false"))
    except ValueError as error:
        raise FetchFailure("other", f"bad synth URL {url!r}: {error}") from None
    out = cache / ".synth"
    name = indexed_video_name(seed, index)
    mp4 = out / f"{name}.mp4"
    if not (mp4.is_file() and (out / f"{name}.json").is_file()):
        make_indexed_video(out, seed, index, config)
    return mp4.resolve().as_uri()


# --- yt-dlp ----------------------------------------------------------------------------------
class _YtdlpLog:
    """Collects yt-dlp's messages (it reports skips such as max-filesize only here)."""

    def __init__(self):
        self.lines: list[str] = []

    def debug(self, message: str) -> None:
        self.lines.append(message)

    info = warning = error = debug


def ytdlp_params(options: FetchOptions, workdir: Path, video_id: str, log: _YtdlpLog) -> dict:
    import imageio_ffmpeg

    params = {
        "format": options.format,
        "format_sort": list(options.format_sort),
        "outtmpl": str(workdir / f"{video_id}.%(ext)s"),
        "merge_output_format": "mp4/mkv",
        "ffmpeg_location": imageio_ffmpeg.get_ffmpeg_exe(),
        "noplaylist": True,
        "logger": log,
        "noprogress": True,
        "socket_timeout": options.socket_timeout_s,
        "retries": 1,
        "fragment_retries": 1,
        "enable_file_urls": True,
        "overwrites": True,
        "continuedl": False,
        "restrictfilenames": True,
        "cachedir": False,
    }
    if options.max_duration_s is not None:
        limit = options.max_duration_s

        def too_long(info, *, incomplete=False):
            duration = info.get("duration")
            return f"too long: {duration:.0f} s > --max-duration {limit:g} s" if duration and duration > limit else None

        params["match_filter"] = too_long
    if options.max_filesize is not None:
        params["max_filesize"] = options.max_filesize
    if options.sleep_s:
        params["sleep_interval"] = options.sleep_s
    if options.rate_limit:
        from yt_dlp.utils import parse_bytes

        params["ratelimit"] = parse_bytes(options.rate_limit)
    if options.proxy:
        params["proxy"] = options.proxy
    if options.cookies:
        params["cookiefile"] = str(options.cookies)
    if options.cookies_from_browser:
        params["cookiesfrombrowser"] = (options.cookies_from_browser,)
    params.update(options.ytdlp)
    return params


def _download_once(url: str, video_id: str, options: FetchOptions) -> tuple[Path, dict]:
    """One yt-dlp call into .tmp/VIDEO_ID/, then the finished file renamed into the cache."""
    import yt_dlp

    cache = options.cache
    workdir = cache / ".tmp" / video_id
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    log = _YtdlpLog()
    params = ytdlp_params(options, workdir, video_id, log)
    if url.startswith("file:"):  # only the generic extractor reads files: skip matching ~1,800 others' URL patterns
        params.setdefault("allowed_extractors", ["generic"])
    try:
        with yt_dlp.YoutubeDL(params) as ydl:
            info = ydl.extract_info(url, download=True) or {}
    except yt_dlp.utils.DownloadError as error:
        shutil.rmtree(workdir, ignore_errors=True)  # a partial file never looks complete
        message = str(error).replace("\r", "").removeprefix("ERROR: ").strip()
        raise FetchFailure(classify_error(message), message) from None
    finished = [p for p in workdir.iterdir() if p.suffix.lower() in MEDIA_SUFFIXES]
    if not finished:
        shutil.rmtree(workdir, ignore_errors=True)
        said = " ".join(log.lines[-3:])
        if "does not pass filter" in said or "too long" in said:
            raise FetchFailure("too_long", said)
        if "max-filesize" in said or "larger than" in said:
            raise FetchFailure("too_large", f"larger than --max-filesize {options.max_filesize} bytes: {said}")
        raise FetchFailure("other", f"yt-dlp wrote no media file ({said or 'no message'})")
    final = _safe_child(cache, f"{video_id}{finished[0].suffix.lower()}")
    kept = {k: info.get(k) for k in ("title", "duration", "format_id", "width", "height", "fps", "ext",
                                     "webpage_url", "extractor", "uploader", "upload_date")}
    _safe_child(cache, f"{video_id}.info.json").write_text(json.dumps(kept, indent=1, default=str) + "\n")
    os.replace(finished[0], final)
    shutil.rmtree(workdir, ignore_errors=True)
    return final, info


def _check_media(path: Path, options: FetchOptions) -> tuple[float, int | None, int | None]:
    """Guards yt-dlp cannot apply before the download (direct files carry no metadata)."""
    try:
        media = probe(path)
    except ProbeError as error:
        path.unlink(missing_ok=True)
        raise FetchFailure("other", str(error)) from None
    if options.max_duration_s is not None and media.duration_s > options.max_duration_s:
        path.unlink(missing_ok=True)
        raise FetchFailure("too_long", f"too long: {media.duration_s:.0f} s > --max-duration {options.max_duration_s:g} s")
    return media.duration_s, media.width, media.height


def fetch_video(row: ManifestRow, options: FetchOptions) -> FetchRecord:
    """Fetch one manifest row (or find it in the cache); never raises for a bad video."""
    record = FetchRecord(video_id=row.video_id, url=row.url, status="failed")
    if row.url is None:
        record.status, record.error_class, record.error = "skipped", "no_url", "no URL in the manifest"
        return record
    started = time.perf_counter()
    existing = cached_media(options.cache, row.video_id)
    try:
        _safe_child(options.cache, row.video_id)
        if existing is not None:
            path = existing
        else:
            source = resolve_source(row.url, options.cache)
            for attempt in range(options.retries + 1):
                record.attempts = attempt + 1
                try:
                    path, _ = _download_once(source, row.video_id, options)
                    break
                except FetchFailure as failure:
                    if failure.error_class not in TRANSIENT or attempt == options.retries:
                        raise
                    time.sleep(options.backoff_s * 2 ** attempt)
        record.duration_s, record.width, record.height = _check_media(path, options)
    except FetchFailure as failure:
        record.error_class, record.error = failure.error_class, str(failure)
        record.seconds = round(time.perf_counter() - started, 3)
        return record
    record.status, record.path, record.bytes = "ok", path.name, path.stat().st_size
    record.seconds = 0.0 if existing is not None else round(time.perf_counter() - started, 3)
    return record


def fetch_manifest(rows, options: FetchOptions, retry_failed: bool = False, on_done=None) -> list[FetchRecord]:
    """Fetch every row (cache hits cost nothing; earlier failures are retried only with
    `retry_failed`) and write fetch.parquet in manifest order."""
    options.cache.mkdir(parents=True, exist_ok=True)
    rows = list(rows)
    previous = read_fetch_table(options.cache)
    results: dict[str, FetchRecord] = {}
    lock = threading.Lock()
    todo = []
    for row in rows:
        before = previous.get(row.video_id)
        if before is not None and before.status == "failed" and not retry_failed and before.url == row.url:
            results[row.video_id] = before
            if on_done:
                on_done(before)
        else:
            todo.append(row)

    def run(row: ManifestRow) -> None:
        record = fetch_video(row, options)
        with lock:
            results[row.video_id] = record
            if len(results) % 20 == 0:
                write_fetch_table(options.cache, [results[r.video_id] for r in rows if r.video_id in results])
        if on_done:
            on_done(record)

    with ThreadPoolExecutor(max_workers=max(1, options.concurrency)) as pool:
        list(pool.map(run, todo))
    ordered = [results[r.video_id] for r in rows]
    write_fetch_table(options.cache, ordered)
    try:
        (options.cache / ".tmp").rmdir()  # only when empty
    except OSError:
        pass
    return ordered
