"""Fetch: one yt-dlp call per video (metadata and media together) into a cache keyed by id.

The media appears in the cache only when complete (downloaded into its own folder under
CACHE/.tmp/, then renamed into place), then what yt-dlp said of it, and fetch.parquet
(one row per manifest row); `contract.layout.CacheLayout` spells the paths. A cache on
object storage (`--cache s3://...`) is downloaded into this node's stage of it, and each
complete file put to the store under its final name before it takes that name here
(`contract.atomic.place_file`): the media, then its info json, which says it is there.

Failures are values: every failed row gets a class from `contract.vocab.ERROR_CLASSES`
and yt-dlp's own message. `rate_limited` and `network` are retried with exponential backoff.
URL schemes other than http(s) and file are sources registered under the entry-point group
`pianocorpus.sources` (the synthetic test bed registers `synth://`).
"""

from __future__ import annotations

import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, fields, replace
from functools import lru_cache
from pathlib import Path
from urllib.parse import unquote, urlparse

import pyarrow as pa
import pyarrow.parquet as pq

from contract.atomic import atomic_json, atomic_parquet, place_file
from contract.config import FetchOptions
from contract.layout import MEDIA_SUFFIXES, CacheLayout
from contract.records import FETCH_SCHEMA, FetchRecord
from contract.store import pull, remove_file
from contract.vocab import TRANSIENT, Failure
from curation.probe import ProbeError, probe
from curation.ratelimit import RateLimiter
from manifests.schema import ManifestRow

SOURCES_GROUP = "pianocorpus.sources"

# (class, lower-case fragments of yt-dlp's message), checked in order.
_PATTERNS = (
    ("too_large", ("larger than --max-filesize",)),
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
    """The class of a yt-dlp message whose exception says no more (an extractor's words)."""
    text = message.lower()
    for error_class, fragments in _PATTERNS:
        if any(f in text for f in fragments):
            return error_class
    return "other"


# yt-dlp's words when YouTube's formats need the JavaScript challenge solved (2025.11 on)
_NO_FORMATS = ("requested format is not available", "only images are available")
_JS_WARNINGS = ("javascript runtime", "challenge solver", "challenge solving failed", "n challenge")


def classify_failure(error: BaseException, said: list[str]) -> tuple[str, float | None]:
    """(class, seconds the server asked us to wait) of a failed yt-dlp call: by the typed
    exception under yt-dlp's DownloadError (HTTP status, transport failure) where there
    is one, else by its message; `said` is what yt-dlp logged before failing."""
    from yt_dlp.networking.exceptions import HTTPError, TransportError

    cause = (getattr(error, "exc_info", None) or (None, None))[1]
    if isinstance(cause, HTTPError):
        status = cause.status
        wait = _retry_after(cause.response.headers.get("Retry-After")) if cause.response is not None else None
        if status == 429:
            return "rate_limited", wait
        if status in (404, 410):
            return "unavailable", None
        if status >= 500:
            return "network", wait
    elif isinstance(cause, TransportError):  # refused, reset, timed out, name not resolved, TLS
        return "network", None
    message = str(error).lower()
    if any(f in message for f in _NO_FORMATS) and any(w in line.lower() for line in said for w in _JS_WARNINGS):
        return "no_js_runtime", None
    return classify_error(message), None


def _retry_after(value: str | None) -> float | None:
    """Retry-After in seconds (RFC 9110: delay-seconds or an HTTP date)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        from email.utils import parsedate_to_datetime

        try:
            return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            return None


@lru_cache(maxsize=1)
def js_runtime() -> dict | None:
    """The JavaScript runtime yt-dlp will use for YouTube: deno from its PyPI package (the
    set-up installs it) or from PATH, as yt-dlp itself sees it; None when there is none.
    Once per process: finding it runs `deno --version`, and every download asks."""
    from yt_dlp.utils._jsruntime import DenoJsRuntime

    path = None
    try:
        from deno import find_deno_bin

        path = find_deno_bin()
    except (ImportError, OSError, RuntimeError):
        path = None
    info = DenoJsRuntime(path).info
    if info is None:
        return None
    return {"name": info.name, "path": info.path, "version": info.version, "supported": info.supported}


def no_js_runtime_message(message: str) -> str:
    runtime = js_runtime()
    have = "no JavaScript runtime found" if runtime is None else (
        f"deno {runtime['version']} at {runtime['path']}{'' if runtime['supported'] else ' (too old: >= 2.3 needed)'}")
    return (f"YouTube offered no downloadable format: yt-dlp needs a JavaScript runtime (deno >= 2.3) and the "
            f"challenge solver scripts (yt-dlp-ejs) to list them ({have}); `pianocorpus doctor` says what is "
            f"missing. yt-dlp: {message}")


# --- cache ---------------------------------------------------------------------------------
def _safe_child(cache: Path, name: str) -> Path:
    """cache/name, refusing anything that would land outside the cache."""
    path = cache / name
    if path.resolve().parent != cache.resolve():
        raise Failure("other", f"video id {name!r} would write outside the cache {cache}")
    return path


def read_fetch_table(cache: Path | str) -> dict[str, FetchRecord]:
    path = pull(CacheLayout(cache).fetch_table)
    if not path.is_file():
        return {}
    names = {f.name for f in fields(FetchRecord)}
    return {r["video_id"]: FetchRecord(**{k: v for k, v in r.items() if k in names})
            for r in pq.read_table(path).to_pylist()}


def write_fetch_table(cache: Path | str, records: list[FetchRecord]) -> Path:
    path = CacheLayout(cache).fetch_table
    atomic_parquet(pa.Table.from_pylist([asdict(r) for r in records], schema=FETCH_SCHEMA), path)
    return path


# --- sources -------------------------------------------------------------------------------
def resolve_source(url: str, cache: Path | str) -> str:
    """The URL yt-dlp fetches: a local file as it is, a registered scheme's source as its
    resolver makes it (rendered into CACHE/.synth/ for `synth://`), anything else unchanged."""
    parsed = urlparse(url)
    if parsed.scheme == "file":
        local = Path(unquote(parsed.path))
        if parsed.netloc not in ("", "localhost"):
            raise Failure("unavailable", f"{url}: a file URL on another host ({parsed.netloc}); "
                                         "only this machine's files can be read (file:///path)")
        if local.is_dir():
            raise Failure("unavailable", f"{local}: a folder, not a media file")
        if not local.is_file():
            raise Failure("unavailable", f"local file not found: {local}")
        return url
    resolver = registered_sources().get(parsed.scheme)
    return resolver(url, CacheLayout(cache)) if resolver else url


def registered_sources() -> dict:
    """scheme -> resolver(url, CacheLayout) -> file URL, from the `pianocorpus.sources` entry points."""
    from importlib.metadata import entry_points

    return {point.name: point.load() for point in entry_points(group=SOURCES_GROUP)}


# --- yt-dlp ----------------------------------------------------------------------------------
class _YtdlpLog:
    """Collects yt-dlp's messages (it reports skips such as max-filesize only here)."""

    def __init__(self):
        self.lines: list[str] = []

    def debug(self, message: str) -> None:
        self.lines.append(message)

    info = warning = error = debug


def _size_guard(limit: int):
    """A progress hook that stops a download once more than `limit` bytes have arrived,
    whether or not the server said how many would come."""
    import yt_dlp

    class TooLarge(yt_dlp.utils.DownloadCancelled):
        msg = f"larger than --max-filesize {limit} bytes (stopped while downloading)"

    def hook(progress: dict) -> None:
        if (progress.get("downloaded_bytes") or 0) > limit:
            raise TooLarge()

    return hook


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
    runtime = js_runtime()
    if runtime is not None:
        params["js_runtimes"] = {"deno": {"path": runtime["path"]}}
    if options.max_duration_s is not None:
        limit = options.max_duration_s

        def too_long(info, *, incomplete=False):
            duration = info.get("duration")
            return f"too long: {duration:.0f} s > --max-duration {limit:g} s" if duration and duration > limit else None

        params["match_filter"] = too_long
    if options.max_filesize is not None:
        params["max_filesize"] = options.max_filesize  # yt-dlp's check: only when the size is announced
        params["progress_hooks"] = [_size_guard(options.max_filesize)]  # ours: as the bytes arrive
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
    """One yt-dlp call into .tmp/VIDEO_ID/, then the finished file renamed into the cache,
    then its info json (the cache's word that the file is there)."""
    import yt_dlp

    layout = CacheLayout(options.cache)
    cache = layout.root
    workdir = layout.download_dir(video_id)
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    log = _YtdlpLog()
    params = ytdlp_params(options, workdir, video_id, log)
    if url.startswith("file:"):  # only the generic extractor reads files: skip matching ~1,800 others' URL patterns
        params.setdefault("allowed_extractors", ["generic"])
    try:
        with yt_dlp.YoutubeDL(params) as ydl:
            info = ydl.extract_info(url, download=True) or {}
    except yt_dlp.utils.YoutubeDLError as error:  # DownloadError, and RequestError (a redirect to file://...)
        shutil.rmtree(workdir, ignore_errors=True)  # a partial file never looks complete
        message = str(error).replace("\r", "").removeprefix("ERROR: ").strip()
        if "No connection adapters" in message:
            message = f"refused: the server redirects to a URL that is not HTTP(S) ({message})"
        error_class, wait = classify_failure(error, log.lines)
        if error_class == "no_js_runtime":
            message = no_js_runtime_message(message)
        raise FetchFailure(error_class, message, wait) from None
    finished = [p for p in workdir.iterdir() if p.suffix.lower() in MEDIA_SUFFIXES]
    if not finished:
        shutil.rmtree(workdir, ignore_errors=True)
        said = " ".join(log.lines[-3:])
        if "does not pass filter" in said or "too long" in said:
            raise Failure("too_long", said)
        if "max-filesize" in said or "larger than" in said:
            raise Failure("too_large", f"larger than --max-filesize {options.max_filesize} bytes: {said}")
        raise Failure("other", f"yt-dlp wrote no media file ({said or 'no message'})")
    final = _safe_child(cache, f"{video_id}{finished[0].suffix.lower()}")
    kept = {k: info.get(k) for k in ("title", "duration", "format_id", "width", "height", "fps", "ext",
                                     "webpage_url", "extractor", "uploader", "upload_date")}
    place_file(finished[0], final)
    atomic_json({**kept, "file": final.name}, _safe_child(cache, layout.info_json(video_id).name))
    shutil.rmtree(workdir, ignore_errors=True)
    return final, info


class FetchFailure(Failure):
    """A failed download, with how long the server asked everyone to wait (Retry-After)."""

    def __init__(self, error_class: str, message: str, retry_after_s: float | None = None):
        super().__init__(error_class, message)
        self.retry_after_s = retry_after_s


def _check_media(path: Path, options: FetchOptions) -> tuple[float, int | None, int | None]:
    """Guards yt-dlp cannot apply before the download (direct files carry no metadata)."""
    try:
        media = probe(path)
    except ProbeError as error:
        remove_file(path)
        raise Failure("corrupt", str(error)) from None
    if options.max_duration_s is not None and media.duration_s > options.max_duration_s:
        remove_file(path)
        raise Failure("too_long", f"too long: {media.duration_s:.0f} s > --max-duration {options.max_duration_s:g} s")
    return media.duration_s, media.width, media.height


def fetch_video(row: ManifestRow, options: FetchOptions) -> FetchRecord:
    """Fetch one manifest row (or find it in the cache); never raises for a bad video."""
    record = FetchRecord(video_id=row.video_id, url=row.url, status="failed")
    if row.url is None:
        record.status, record.error_class, record.error = "skipped", "no_url", "no URL in the manifest"
        return record
    started = time.perf_counter()
    cache, existing = CacheLayout(options.cache), None
    try:
        _safe_child(cache.root, row.video_id)
        existing = cache.cached_media(row.video_id)
        if existing is not None:
            path = existing
        else:
            source = resolve_source(row.url, cache.root)
            limiter = options.limiter if source.startswith(("http:", "https:")) else None
            for attempt in range(options.retries + 1):
                record.attempts = attempt + 1
                try:
                    if limiter is not None:
                        limiter.wait()
                    path, _ = _download_once(source, row.video_id, options)
                    break
                except Failure as failure:
                    if failure.error_class not in TRANSIENT or attempt == options.retries:
                        raise
                    wait = getattr(failure, "retry_after_s", None)
                    if wait is not None and limiter is not None:
                        limiter.pause(wait)  # everyone waits, not only this worker
                    time.sleep(max(options.backoff_s * 2 ** attempt, wait or 0.0))
        record.duration_s, record.width, record.height = _check_media(path, options)
    except Failure as failure:
        record.error_class, record.error = failure.error_class, str(failure)
        record.seconds = round(time.perf_counter() - started, 3)
        return record
    except Exception as error:  # unforeseen: this row fails, the others go on
        record.error_class, record.error = "other", f"{type(error).__name__}: {error}"
        record.seconds = round(time.perf_counter() - started, 3)
        return record
    record.status, record.path, record.bytes = "ok", path.name, path.stat().st_size
    record.seconds = 0.0 if existing is not None else round(time.perf_counter() - started, 3)
    return record


def fetch_manifest(rows, options: FetchOptions, retry_failed: bool = False, on_done=None) -> list[FetchRecord]:
    """Fetch every row (cache hits cost nothing; earlier failures are retried only with
    `retry_failed`) and write fetch.parquet in manifest order."""
    if options.cache is None:
        raise ValueError("fetch: no cache folder given (FetchOptions.cache)")
    CacheLayout(options.cache).root.mkdir(parents=True, exist_ok=True)
    if options.requests_per_s and options.limiter is None:
        options = replace(options, limiter=RateLimiter(options.requests_per_s))  # one for all the threads
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
        CacheLayout(options.cache).tmp.rmdir()  # only when empty
    except OSError:
        pass
    return ordered
