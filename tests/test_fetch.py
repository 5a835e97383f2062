"""Fetch through real yt-dlp against a loopback HTTP server; no test touches the internet."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from contract.config import FetchOptions
from contract.layout import CacheLayout
from curation.fetch import classify_error, fetch_manifest
from manifests.loader import load_manifest
from synth.video import SynthConfig, make_video
from tests.loopback import MediaServer


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("clip")
    return make_video(out, "clip", 21, SynthConfig(seconds=4, width=320, height=180, audio="pretty_midi")).with_suffix(".mp4")


@pytest.fixture()
def server(clip):
    with MediaServer({"clip.mp4": clip}, stall_s=4.0) as s:
        yield s


def _manifest(path: Path, rows: list[tuple[str, str]]) -> Path:
    path.write_text("video_id,url,split\n" + "".join(f"{vid},{url},train\n" for vid, url in rows))
    return path


def _options(cache: Path, **kw) -> FetchOptions:
    return FetchOptions(cache=cache, **{"backoff_s": 0.05, "socket_timeout_s": 1.0, "retries": 1, **kw})


def test_one_good_one_missing_then_a_second_run_downloads_nothing(tmp_path, server, clip):
    manifest = load_manifest(_manifest(tmp_path / "m.csv", [("good", server.url("video", "clip.mp4")),
                                                            ("gone", server.url("missing", "clip.mp4"))]))
    cache = tmp_path / "cache"
    records = fetch_manifest(manifest, _options(cache))
    assert [(r.video_id, r.status, r.error_class) for r in records] == [("good", "ok", None), ("gone", "failed", "unavailable")]
    assert "404" in records[1].error
    media = CacheLayout(cache).cached_media("good")
    assert media.read_bytes() == clip.read_bytes() and records[0].bytes == clip.stat().st_size
    assert records[0].duration_s == pytest.approx(4.0, abs=0.1) and (records[0].width, records[0].height) == (320, 180)
    table = pq.read_table(cache / "fetch.parquet").to_pylist()
    assert [(r["video_id"], r["status"], r["error_class"], r["path"]) for r in table] == \
        [("good", "ok", None, "good.mp4"), ("gone", "failed", "unavailable", None)]
    assert (cache / "good.info.json").is_file()
    hits, mtime = dict(server.hits), media.stat().st_mtime_ns
    again = fetch_manifest(manifest, _options(cache))
    assert dict(server.hits) == hits and media.stat().st_mtime_ns == mtime  # nothing downloaded, nothing retried
    assert [(r.status, r.seconds) for r in again][0] == ("ok", 0.0)
    assert again[1].error_class == "unavailable"


def test_retry_failed_retries_only_what_failed(tmp_path, server):
    manifest = load_manifest(_manifest(tmp_path / "m.csv", [("good", server.url("video", "clip.mp4")),
                                                            ("gone", server.url("missing", "clip.mp4"))]))
    cache = tmp_path / "cache"
    fetch_manifest(manifest, _options(cache))
    before = dict(server.hits)
    fetch_manifest(manifest, _options(cache), retry_failed=True)
    assert server.hits["/video/clip.mp4"] == before["/video/clip.mp4"]
    assert server.hits["/missing/clip.mp4"] > before["/missing/clip.mp4"]


def test_429_is_retried_with_backoff_and_succeeds(tmp_path, server):
    manifest = load_manifest(_manifest(tmp_path / "m.csv", [("busy", server.url("flaky429", "clip.mp4"))]))
    [record] = fetch_manifest(manifest, _options(tmp_path / "cache"))
    assert (record.status, record.attempts) == ("ok", 2)


def test_connection_cut_mid_transfer_fails_as_network_and_leaves_no_file(tmp_path, server):
    cache = tmp_path / "cache"
    manifest = load_manifest(_manifest(tmp_path / "m.csv", [("cut", server.url("cut", "clip.mp4"))]))
    [record] = fetch_manifest(manifest, _options(cache))
    assert (record.status, record.error_class, record.attempts) == ("failed", "network", 2)
    assert CacheLayout(cache).cached_media("cut") is None
    assert sorted(p.name for p in cache.rglob("*") if p.is_file()) == ["fetch.parquet"]


def test_stalled_server_times_out_as_network(tmp_path, server):
    manifest = load_manifest(_manifest(tmp_path / "m.csv", [("stall", server.url("stall", "clip.mp4"))]))
    started = time.perf_counter()
    [record] = fetch_manifest(manifest, _options(tmp_path / "cache", retries=0))
    assert (record.status, record.error_class) == ("failed", "network")
    assert "timed out" in record.error.lower()
    assert time.perf_counter() - started < 20


def test_local_paths_relative_to_the_manifest_and_missing_ones(tmp_path, clip):
    (tmp_path / "media").mkdir()
    (tmp_path / "media" / "x.mp4").write_bytes(clip.read_bytes())
    manifest = load_manifest(_manifest(tmp_path / "m.csv", [("here", "media/x.mp4"), ("nothere", "media/y.mp4")]))
    records = fetch_manifest(manifest, _options(tmp_path / "cache"))
    assert [(r.status, r.error_class) for r in records] == [("ok", None), ("failed", "unavailable")]
    assert "local file not found" in records[1].error


def test_max_duration_and_max_filesize_guards(tmp_path, server):
    manifest = load_manifest(_manifest(tmp_path / "m.csv", [("v", server.url("video", "clip.mp4"))]))
    [long] = fetch_manifest(manifest, _options(tmp_path / "c1", max_duration_s=2.0))
    assert (long.status, long.error_class) == ("failed", "too_long") and CacheLayout(tmp_path / "c1").cached_media("v") is None
    [big] = fetch_manifest(manifest, _options(tmp_path / "c2", max_filesize=1000))
    assert (big.status, big.error_class) == ("failed", "too_large") and CacheLayout(tmp_path / "c2").cached_media("v") is None


def test_rows_without_url_are_skipped_not_failed(tmp_path):
    (tmp_path / "m.csv").write_text("video_id,url\nnourl,\n")
    [record] = fetch_manifest(load_manifest(tmp_path / "m.csv"), _options(tmp_path / "cache"))
    assert (record.status, record.error_class) == ("skipped", "no_url")


@pytest.mark.parametrize("message, expected", [
    ("[youtube] abc: Private video. Sign in if you've been granted access to this video", "private"),
    ("[youtube] abc: Sign in to confirm you're not a bot. Use --cookies-from-browser", "bot_check"),
    ("[youtube] abc: Video unavailable. This video has been removed by the uploader", "unavailable"),
    ("[generic] x: Unable to download webpage: HTTP Error 429: Too Many Requests", "rate_limited"),
    ("[download] Got error: HTTPConnectionPool(host='127.0.0.1', port=1): Read timed out.", "network"),
    ("[download] Got error: 79382 bytes read, 158766 more expected. Giving up after 1 retries", "network"),
    ("Requested format is not available", "unavailable"),
    ("Postprocessing: Conversion failed!", "other"),
])
def test_error_classes_from_ytdlp_messages(message, expected):
    assert classify_error(message) == expected


def test_cli_fetch_reports_each_failure_and_exits_nonzero(tmp_path, server):
    manifest = _manifest(tmp_path / "m.csv", [("good", server.url("video", "clip.mp4")),
                                              ("gone", server.url("missing", "clip.mp4"))])
    result = subprocess.run([sys.executable, "-m", "pipelines.cli", "fetch", str(manifest), "--cache",
                             str(tmp_path / "cache"), "--retries", "0", "--socket-timeout", "2"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1, result.stderr
    assert "gone: failed (unavailable)" in result.stderr and "1 ok" in result.stdout and "1 failed:unavailable" in result.stdout


def test_demo_manifest_fetches_offline_through_ytdlp(tmp_path):
    """The demo's synth:// rows are rendered once, then fetched like any local file."""
    manifest = tmp_path / "demo.csv"
    manifest.write_text("video_id,url,split\nd0,synth://5/0?seconds=4&width=320&height=180,train\n")
    [record] = fetch_manifest(load_manifest(manifest), _options(tmp_path / "cache"))
    assert record.status == "ok" and record.duration_s == pytest.approx(4.0, abs=0.1)
    assert (tmp_path / "cache" / ".synth" / "synth-5-000.json").is_file()


def test_a_redirect_to_a_file_url_fails_that_row_and_the_others_are_fetched(tmp_path, server):
    manifest = load_manifest(_manifest(tmp_path / "m.csv", [("redirected", server.url("tofile", "clip.mp4")),
                                                            ("good", server.url("video", "clip.mp4"))]))
    records = fetch_manifest(manifest, _options(tmp_path / "cache"))
    assert [(r.video_id, r.status, r.error_class) for r in records] == \
        [("redirected", "failed", "other"), ("good", "ok", None)]
    assert "not HTTP(S)" in records[0].error and CacheLayout(tmp_path / "cache").cached_media("redirected") is None
    assert not any(b"root:" in p.read_bytes() for p in (tmp_path / "cache").rglob("*") if p.is_file())


def test_max_filesize_holds_when_the_server_sends_no_content_length(tmp_path, server, clip):
    manifest = load_manifest(_manifest(tmp_path / "m.csv", [("v", server.url("nolength", "clip.mp4"))]))
    [record] = fetch_manifest(manifest, _options(tmp_path / "cache", max_filesize=20_000))
    assert (record.status, record.error_class) == ("failed", "too_large"), record.error
    assert CacheLayout(tmp_path / "cache").cached_media("v") is None
    assert sum(p.stat().st_size for p in (tmp_path / "cache").rglob("*") if p.is_file() and p.suffix != ".parquet") \
        < clip.stat().st_size
    [unlimited] = fetch_manifest(manifest, _options(tmp_path / "cache2"))
    assert unlimited.status == "ok" and unlimited.bytes == clip.stat().st_size


def test_a_remote_file_url_and_a_folder_are_unavailable_at_once(tmp_path):
    (tmp_path / "folder.mp4").mkdir()
    manifest = load_manifest(_manifest(tmp_path / "m.csv", [("remote", "file://otherhost/videos/a.mp4"),
                                                            ("folder", (tmp_path / "folder.mp4").as_uri())]))
    remote, folder = fetch_manifest(manifest, _options(tmp_path / "cache"))
    assert (remote.error_class, remote.attempts) == ("unavailable", 0) and "another host (otherhost)" in remote.error
    assert folder.error_class == "unavailable" and "a folder, not a media file" in folder.error


# --- typed failures, YouTube's JavaScript challenge, one rate for all workers ----------------
@pytest.mark.parametrize("url", ["http://does-not-exist.invalid/clip.mp4", "http://127.0.0.1:1/clip.mp4"])
def test_a_name_that_does_not_resolve_or_a_refused_connection_is_network_and_retried(tmp_path, url):
    """By yt-dlp's typed exception (TransportError), not its words: "Failed to resolve"
    was filed `other` and never retried."""
    manifest = load_manifest(_manifest(tmp_path / "m.csv", [("offline", url)]))
    [record] = fetch_manifest(manifest, _options(tmp_path / "cache", retries=1))
    assert (record.status, record.error_class, record.attempts) == ("failed", "network", 2)


def test_no_formats_after_yt_dlp_warned_of_its_javascript_runtime_is_no_js_runtime(tmp_path, server):
    """A real yt-dlp "Requested format is not available" (a format nothing matches), as
    YouTube gives it when the challenge cannot be solved: with yt-dlp's JavaScript warning
    before it, the class says so and the message says what to do."""
    import yt_dlp

    from curation.fetch import classify_failure, no_js_runtime_message

    with pytest.raises(yt_dlp.utils.DownloadError) as caught:
        with yt_dlp.YoutubeDL({"format": "bestvideo[height>=9000]", "quiet": True, "no_warnings": True,
                               "outtmpl": str(tmp_path / "x.%(ext)s")}) as ydl:
            ydl.extract_info(server.url("video", "clip.mp4"), download=True)
    warning = ("WARNING: [youtube] No supported JavaScript runtime could be found. Only deno is enabled by default; "
               "YouTube extraction without a JS runtime has been deprecated, and some formats may be missing.")
    assert classify_failure(caught.value, [warning]) == ("no_js_runtime", None)
    assert classify_failure(caught.value, []) == ("unavailable", None)  # the same words without the warning
    message = no_js_runtime_message(str(caught.value))
    assert "deno" in message and "pianocorpus doctor" in message and "Requested format is not available" in message


def test_fetch_points_yt_dlp_at_the_set_ups_javascript_runtime(tmp_path):
    from curation.fetch import _YtdlpLog, js_runtime, ytdlp_params

    runtime = js_runtime()
    assert runtime is not None and runtime["supported"], "the set-up installs deno >= 2.3"
    params = ytdlp_params(FetchOptions(cache=tmp_path), tmp_path, "x", _YtdlpLog())
    assert params["js_runtimes"] == {"deno": {"path": runtime["path"]}}


def test_retry_after_holds_back_every_worker_not_only_the_one_told(tmp_path, clip):
    """Three rows fetched three at a time; each path answers its first request 429 with
    Retry-After: 1.5. After the first 429, no request of any worker comes sooner than that."""
    with MediaServer({"clip.mp4": clip}, retry_after_s=1.5) as server:
        warm = load_manifest(_manifest(tmp_path / "warm.csv", [("warm", server.url("video", "clip.mp4"))]))
        fetch_manifest(warm, _options(tmp_path / "warm"))  # yt-dlp's first call loads its extractors for a second
        server.requests.clear()
        rows = [(f"v{i}", server.url("busy", "clip.mp4") + f"?{i}") for i in range(3)]
        manifest = load_manifest(_manifest(tmp_path / "m.csv", rows))
        records = fetch_manifest(manifest, _options(tmp_path / "cache", retries=2, concurrency=3, requests_per_s=2.0))
        assert [(r.status, r.attempts) for r in records] == [("ok", 2)] * 3
        first_429 = min(t for t, _, status in server.requests if status == 429)
        told = [t for t, _, status in server.requests if t > first_429 + 0.05]
        assert told and min(told) >= first_429 + 1.4, sorted(t - first_429 for t, _, _ in server.requests)


def test_one_rate_for_all_ray_workers(tmp_path, clip):
    """Six videos fetched by Ray tasks on two workers share one limiter (a Ray actor): the
    downloads start at most one a second in all (not one a second per worker), so the
    server sees them over about five seconds, not all at once."""
    import ray

    from curation.fetch import fetch_video
    from curation.ratelimit import shared_limiter
    from manifests.schema import ManifestRow

    with MediaServer({"clip.mp4": clip}) as server:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        try:
            fetch = ray.remote(num_cpus=1)(fetch_video)
            warm = [ManifestRow(video_id=f"w{i}", url=server.url("video", "clip.mp4") + f"?w{i}") for i in range(2)]
            ray.get([fetch.remote(row, _options(tmp_path / "warm")) for row in warm])  # workers up, yt-dlp loaded
            options = _options(tmp_path / "cache", limiter=shared_limiter(1.0))
            rows = [ManifestRow(video_id=f"v{i}", url=server.url("video", "clip.mp4") + f"?{i}", split="train")
                    for i in range(6)]
            records = ray.get([fetch.remote(row, options) for row in rows])
        finally:
            ray.shutdown()
    assert [r.status for r in records] == ["ok"] * 6
    starts = np.sort([min(t for t, path, _ in server.requests if path.endswith(f"?{i}")) for i in range(6)])
    # Slots are at least a second apart; a busy machine may delay a request by up to a second on its way.
    assert starts[-1] - starts[0] >= 4.0, np.diff(starts)
    assert max(int(np.sum((starts >= t) & (starts < t + 1.0))) for t in starts) <= 3, np.diff(starts)
