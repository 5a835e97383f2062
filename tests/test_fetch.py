"""Fetch through real yt-dlp against a loopback HTTP server; no test touches the internet."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

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
