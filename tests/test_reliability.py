"""Safe under concurrency and damage: one writer per corpus, and every lost or damaged
part or shard named by the readers, `audit` and `verify` (real builds, real Ray)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from contract.atomic import part_path
from contract.lock import CorpusLocked, corpus_lock
from synth.video import SynthConfig, make_video

# The arguments conftest's built_corpus was built with (its cache beside it).
SHARED_BUILD = ["--labeler", "basic-pitch", "--rows-per-part", "200", "--shard-samples", "150", "--num-cpus", "2"]


def _cli(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipelines.cli", *args], capture_output=True, text=True,
                          timeout=timeout)


def test_a_second_writer_is_refused_naming_the_first_and_the_first_completes(tmp_path):
    media = tmp_path / "media"
    for name, seed in (("one", 41), ("two", 42)):
        make_video(media, name, seed, SynthConfig(seconds=4, width=640, height=360))
    manifest = tmp_path / "m.csv"
    manifest.write_text("video_id,url,split\n" + "".join(f"{v},{(media / f'{v}.mp4').as_uri()},train\n"
                                                        for v in ("one", "two")))
    out = tmp_path / "corpus"
    first = subprocess.Popen([sys.executable, "-m", "pipelines.cli", "build", str(manifest), "--out", str(out),
                              "--labeler", "basic-pitch", "--num-cpus", "1"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while time.time() < deadline and str(first.pid) not in _read(out / ".lock"):
        time.sleep(0.1)
    second = _cli("build", str(manifest), "--out", str(out), "--labeler", "basic-pitch", "--num-cpus", "1")
    assert second.returncode == 2
    assert f"another pianocorpus is writing this corpus (pid {first.pid}" in second.stderr and "build" in second.stderr
    _, stderr = first.communicate(timeout=600)
    assert first.returncode == 0, stderr[-2000:]
    verify = _cli("verify", str(out))
    assert verify.returncode == 0 and "0 problem(s)" in verify.stdout, verify.stdout


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def test_a_killed_writer_leaves_no_lock_and_temporary_names_are_per_writer(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from contract.lock import corpus_lock\n"
                               f"with corpus_lock({str(tmp_path)!r}, 'test'):\n    print('held', flush=True); "
                               "time.sleep(60)"], stdout=subprocess.PIPE, text=True, cwd=Path(__file__).parents[1])
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(CorpusLocked, match=f"pid {holder.pid} .*test"):
        with corpus_lock(tmp_path, "second"):
            pass
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    with corpus_lock(tmp_path, "after the kill"):
        assert json.loads((tmp_path / ".lock").read_text())["command"] == "after the kill"
    target = tmp_path / "x.parquet"
    assert part_path(target) != part_path(target) and part_path(target).name.endswith(".part")


@pytest.fixture()
def damaged(built_corpus, tmp_path):
    reference, stats = built_corpus
    corpus = tmp_path / "c"
    shutil.copytree(reference, corpus)
    version = stats["label_version"]  # the build's (the relabel test may have made another the default)
    tar = corpus / "wds" / version / "train" / "train-000001.tar"
    frames_part = corpus / "frames" / "test" / "part-00000.parquet"
    labels_part = corpus / "labels" / version / "train" / "part-00001.parquet"
    tar.unlink()
    frames_part.unlink()
    labels_part.write_bytes(labels_part.read_bytes()[:100])
    return reference, corpus, version, (tar, frames_part, labels_part)


def test_lost_and_damaged_files_are_named_by_readers_audit_and_verify_and_a_rebuild_repairs_them(damaged, served):
    from pipelines.audit import audit
    from training.data import open_split

    reference, corpus, version, (tar, frames_part, labels_part) = damaged
    with pytest.raises(ValueError, match=f"{tar}: missing"):
        open_split(corpus, "train", "wds", label_version=version)
    with pytest.raises(ValueError, match=f"{frames_part}: missing"):
        open_split(corpus, "test", "parquet")
    with pytest.raises(ValueError, match=f"{labels_part}: 100 bytes"):
        open_split(corpus, "train", "parquet", label_version=version)
    checks = [c for c in audit(corpus, label_version=version)["checks"] if c["check"] == "files"]
    assert {c["where"] for c in checks} >= {str(tar), str(frames_part), str(labels_part)}
    verify = _cli("verify", str(corpus))
    assert verify.returncode == 1
    for path in (tar, frames_part, labels_part):
        assert str(path) in verify.stdout
    assert "re-run the same `pianocorpus build" in verify.stdout
    relabel = _cli("relabel", str(corpus), "--labeler", "basic-pitch", "--param", "onset_threshold=0.4",
                   "--num-cpus", "2")
    assert relabel.returncode == 2 and f"{frames_part}: missing" in relabel.stderr
    manifest, _, _ = served
    rebuilt = _cli("build", str(manifest), "--out", str(corpus), "--cache", str(reference.parent / "cache"),
                   *SHARED_BUILD)
    assert rebuilt.returncode == 1, rebuilt.stderr[-2000:]  # the four broken videos, as before
    assert _cli("verify", str(corpus)).returncode == 0
    assert len(list(open_split(corpus, "train", "wds", label_version=version))) == \
        len(list(open_split(reference, "train", "wds", label_version=version)))


def test_a_hash_mismatch_is_found_by_verify_only(built_corpus, tmp_path):
    reference, _ = built_corpus
    corpus = tmp_path / "c"
    shutil.copytree(reference, corpus, ignore=shutil.ignore_patterns(".work", ".cache"))
    version = json.loads((corpus / "corpus.json").read_text())["default_label_version"]
    tar = corpus / "wds" / version / "test" / "test-000000.tar"
    data = bytearray(tar.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, other content
    tar.write_bytes(bytes(data))
    quick, full = _cli("verify", str(corpus), "--quick"), _cli("verify", str(corpus))
    assert quick.returncode == 0 and full.returncode == 1
    assert f"{tar}: its content changed" in full.stdout and "work state (CORPUS/.work) is gone" in full.stdout


_CHILD = """
import resource, signal, sys
from pathlib import Path
from contract.config import BuildConfig
from curation.video import process_video
from manifests.loader import load_manifest
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead
resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[3]), int(sys.argv[3])))
config = BuildConfig(out=Path(sys.argv[2]))
[row] = load_manifest(sys.argv[1]).rows
result = process_video(row, config.layout, config.fetch_options(), config.settings)
print(result["error_class"], result["error"])
"""


def test_a_full_disk_is_not_kept_as_the_videos_verdict(tmp_path):
    """With files capped at 400 kB the fetch fits and the frames do not: the video fails as
    `resources`, not as final; with room again the next run makes it."""
    from contract.config import BuildConfig
    from curation.video import process_video
    from manifests.loader import load_manifest
    from pipelines.build import _video_done

    make_video(tmp_path, "v", 43, SynthConfig(seconds=4, width=640, height=360))
    manifest = tmp_path / "m.csv"
    manifest.write_text(f"video_id,url,split\nv,{(tmp_path / 'v.mp4').as_uri()},train\n")
    out = tmp_path / "corpus"
    child = subprocess.run([sys.executable, "-c", _CHILD, str(manifest), str(out), str(400_000)],
                           capture_output=True, text=True, timeout=300, cwd=Path(__file__).parents[1])
    assert child.returncode == 0, child.stdout[-2000:] + child.stderr[-2000:]
    error_class, error = child.stdout.split(" ", 1)
    assert error_class == "resources" and error.startswith("resources: ") and "File too large" in error, child.stdout
    config = BuildConfig(out=out)
    [row] = load_manifest(manifest).rows
    assert json.loads(config.layout.work.video_json("v").read_text())["final"] is False
    assert _video_done(config, row) is None  # tried again, not taken as done
    assert process_video(row, config.layout, config.fetch_options(), config.settings)["status"] == "ok"
    assert _video_done(config, row)["status"] == "ok"


def test_a_damaged_corpus_json_is_named_before_any_work(tmp_path):
    out = tmp_path / "corpus"
    out.mkdir()
    (out / "corpus.json").write_text('{"label_versions": {')
    manifest = tmp_path / "m.csv"
    manifest.write_text(f"video_id,url,split\nv,{(tmp_path / 'none.mp4').as_uri()},train\n")
    started = time.perf_counter()
    for command in (["build", str(manifest), "--out", str(out)], ["audit", str(out)], ["verify", str(out)]):
        result = _cli(*command)
        assert result.returncode == 2 and f"{out / 'corpus.json'}: not valid JSON" in result.stderr, result.stderr
    assert time.perf_counter() - started < 60 and not (out / ".work").exists()  # refused before Ray and the stages


def _published(corpus: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(corpus)): (p.stat().st_ino, p.stat().st_mtime_ns) for p in sorted(corpus.rglob("*"))
            if p.is_file() and p.relative_to(corpus).parts[0] not in (".work", ".cache", ".lock")}


def test_a_rerun_that_changes_nothing_rewrites_nothing_while_a_reader_reads(built_corpus, served, tmp_path):
    import threading

    from training.data import open_split

    reference, _ = built_corpus
    manifest, _, _ = served
    corpus = tmp_path / "c"
    shutil.copytree(reference, corpus)
    command = ["build", str(manifest), "--out", str(corpus), "--cache", str(reference.parent / "cache"), *SHARED_BUILD]
    assert _cli(*command).returncode == 1  # the four broken videos
    before, samples = _published(corpus), len(list(open_split(corpus, "train", "wds")))
    errors, reads, stop = [], [0], threading.Event()

    def reader() -> None:
        while not stop.is_set():
            try:
                assert len(list(open_split(corpus, "train", "wds"))) == samples
                reads[0] += 1
            except Exception as error:  # noqa: BLE001 - counted, and the test fails on any
                errors.append(repr(error))

    thread = threading.Thread(target=reader)
    thread.start()
    again = _cli(*command)
    stop.set()
    thread.join()
    assert again.returncode == 1 and "3 ok of 7" in again.stdout, again.stderr[-2000:]
    assert _published(corpus) == before  # the same inodes, untouched
    assert not errors and reads[0] > 0, errors[:3]


def test_a_work_file_written_over_by_a_straggler_is_redone(built_corpus, served, tmp_path):
    """A Ray worker of a killed run may finish its rename after the next run started: a
    work file that is not the one its record was written for is never taken as done."""
    reference, stats = built_corpus
    manifest, _, _ = served
    corpus = tmp_path / "c"
    shutil.copytree(reference, corpus)
    work = corpus / ".work"
    version = stats["label_version"]
    shutil.copyfile(work / "frames" / "vid-b.parquet", work / "frames" / "vid-a.parquet")  # another video's frames
    shutil.copyfile(work / "labels" / version / "vid-b.parquet", work / "labels" / version / "vid-c.parquet")
    rebuilt = _cli("build", str(manifest), "--out", str(corpus), "--cache", str(reference.parent / "cache"),
                   *SHARED_BUILD)
    assert rebuilt.returncode == 1, rebuilt.stderr[-2000:]
    for kind in ("frames", "labels"):
        for path in sorted((reference / kind).rglob("*.parquet")):
            assert (corpus / path.relative_to(reference)).read_bytes() == path.read_bytes(), path


def test_a_changing_rebuild_publishes_in_one_step_and_a_kill_midway_leaves_the_old_corpus(built_corpus, served,
                                                                                           tmp_path):
    """A re-run with other shard sizes writes a new generation beside the published one:
    a reader iterating throughout never fails nor sees a count of neither; killed while
    it writes, the published corpus is untouched."""
    import threading

    from training.data import open_split

    reference, stats = built_corpus
    manifest, _, _ = served
    corpus = tmp_path / "c"
    shutil.copytree(reference, corpus, symlinks=True)
    version = stats["label_version"]
    expected = len(list(open_split(corpus, "train", "parquet", label_version=version)))
    command = [sys.executable, "-m", "pipelines.cli", "build", str(manifest), "--out", str(corpus), "--cache",
               str(reference.parent / "cache"), "--labeler", "basic-pitch", "--rows-per-part", "70",
               "--shard-samples", "40", "--num-cpus", "2"]
    before = os.readlink(corpus / "current")
    killed = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    upcoming = corpus / "data" / f"g{int(before.rsplit('g', 1)[1]) + 1:06d}" / "frames"
    deadline = time.time() + 120
    while time.time() < deadline and not list(upcoming.rglob("*.parquet")):
        time.sleep(0.05)
    os.killpg(killed.pid, signal.SIGKILL)
    killed.wait()
    ray_cli = Path(sys.executable).parent / "ray"  # Ray's processes went with the group; make sure
    if ray_cli.exists():
        subprocess.run([str(ray_cli), "stop", "--force"], capture_output=True)
    assert list(upcoming.rglob("*.parquet")), "the rebuild never started writing its generation"
    assert os.readlink(corpus / "current") == before and _cli("verify", str(corpus)).returncode == 0
    errors, counts, stop = [], set(), threading.Event()

    def reader() -> None:
        while not stop.is_set():
            try:
                counts.add(len(list(open_split(corpus, "train", "parquet", label_version=version))))
            except Exception as error:  # noqa: BLE001 - counted, and the test fails on any
                errors.append(repr(error))

    thread = threading.Thread(target=reader)
    thread.start()
    finished = subprocess.run(command, capture_output=True, text=True, timeout=600)
    stop.set()
    thread.join()
    assert finished.returncode == 1, finished.stderr[-2000:]
    assert os.readlink(corpus / "current") != before and _cli("verify", str(corpus)).returncode == 0
    assert not errors and counts == {expected}, (errors[:3], counts)
    assert max(json.loads(p.read_text())["count"] for p in (corpus / "stats" / "wds" / version).glob("*.json")) <= 40
