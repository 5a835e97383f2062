"""A corpus on object storage: real builds to `s3://` on a real S3 server (moto's
standalone server, started here on 127.0.0.1), read back with pyarrow, webdataset and
the training readers.

The corpus in the bucket must be the local build's, byte for byte: on a two-node Ray
cluster whose nodes have stages of their own (no disk shared between driver and
workers), and after a build killed with -9 and resumed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.loopback import S3Server
from tests.test_build import _tree_digest

BUCKET = "corpora"
BUILD_LEASE_S = 10  # the builds' lease on the corpus: a killed one's expires in seconds, not minutes


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    """moto's S3 server on 127.0.0.1, its endpoint and credentials in the environment (the
    standard AWS_* variables: the build, its Ray workers and the readers find them there)."""
    pytest.importorskip("s3fs")
    import fsspec

    with S3Server() as server:
        saved = {k: os.environ.get(k) for k in server.env}
        os.environ.update(server.env)
        try:
            fs = fsspec.filesystem("s3")
            fs.mkdir(BUCKET)
            yield fs
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v


@pytest.fixture(scope="module")
def reference(built_corpus, served, tmp_path_factory) -> Path:
    """A local build of the same manifest with the same command (the shared built corpus
    gains label versions from other modules' tests)."""
    shared, _ = built_corpus
    manifest, _, _ = served
    out = tmp_path_factory.mktemp("store-reference") / "c"
    result = _build(manifest, str(out), shared.parent / "cache", out.parent / "stage", "--num-cpus", "2")
    assert result.returncode == 1, result.stderr[-3000:]  # four videos fail
    return out


def _published(root: Path) -> dict[str, str]:
    """A local corpus's published generation and audio, digested file by file."""
    return {**_tree_digest(root / "current"), **{f"audio/{k}": v for k, v in _tree_digest(root / "audio").items()}}


def _bucket_digest(fs, prefix: str, tmp: Path) -> dict[str, str]:
    """The same of a corpus in the bucket: the generation its pointer names, and its audio."""
    pointer = fs.cat_file(f"{prefix}/current").decode().strip()
    local = tmp / "download"
    fs.get(f"{prefix}/{pointer}/", str(local / "gen"), recursive=True)
    fs.get(f"{prefix}/audio/", str(local / "audio"), recursive=True)
    return {**_tree_digest(local / "gen"), **{f"audio/{k}": v for k, v in _tree_digest(local / "audio").items()}}


def _build(manifest: Path, out: str, cache: Path, stage: Path, *extra: str, wait: bool = True):
    command = [sys.executable, "-m", "pipelines.cli", "build", str(manifest), "--out", out, "--cache", str(cache),
               "--labeler", "basic-pitch", "--rows-per-part", "200", "--shard-samples", "150", *extra]
    env = {**os.environ, "PIANOCORPUS_STAGE": str(stage), "PIANOCORPUS_LEASE_S": str(BUILD_LEASE_S)}
    if not wait:
        return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
                                start_new_session=True)
    return subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)


def test_a_two_node_build_to_s3_is_the_local_corpus_and_reads_back(reference, built_corpus, served, s3, tmp_path):
    """`build --out s3://... --address`: the head has no CPUs, so every task runs on the
    second node, whose stage is its own; the bucket holds the local build's corpus byte
    for byte, and pyarrow, webdataset and the training readers read it there."""
    import ray
    from ray.cluster_utils import Cluster

    cache = built_corpus[0].parent / "cache"
    manifest, _, _ = served
    ray.shutdown()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    try:
        worker = cluster.add_node(num_cpus=2, env_vars={"PIANOCORPUS_STAGE": str(tmp_path / "node2")})
        cluster.wait_for_nodes()
        result = _build(manifest, f"s3://{BUCKET}/two-node", cache, tmp_path / "driver",
                        "--address", cluster.address)
        assert result.returncode == 1, result.stdout[-2000:] + result.stderr[-3000:]  # the same four videos fail
        assert _bucket_digest(s3, f"{BUCKET}/two-node", tmp_path) == _published(reference)
        records = [json.loads(s3.cat_file(p)) for p in s3.glob(f"{BUCKET}/two-node/.work/videos/*.json")]
        assert {r["node"] for r in records} == {worker.node_id} != {cluster.head_node.node_id}
        # The frames were made, and the shards written, on the second node: the driver's stage never had them.
        for made in (".work/frames/*.parquet", "frames/*/part-*.parquet", "wds/*/*/*.tar"):
            assert list((tmp_path / "node2").rglob(made)) and not list((tmp_path / "driver").rglob(made)), made
    finally:
        cluster.shutdown()
    _reads_back(f"s3://{BUCKET}/two-node", reference, tmp_path / "reader")


def _reads_back(uri: str, reference: Path, stage: Path) -> None:
    import pyarrow.fs as pafs
    from webdataset.tariterators import group_by_keys, tar_file_expander

    from contract.layout import CorpusLayout
    from training.data import open_split

    os.environ["PIANOCORPUS_STAGE"] = str(stage)  # this reader's own stage
    try:
        layout = CorpusLayout.published(uri)
        prefix = uri.removeprefix("s3://")
        fs, _ = pafs.FileSystem.from_uri(uri)
        part = f"{prefix}/data/{layout.generation}/frames/train/part-00000.parquet"
        assert pq.read_table(part, filesystem=fs).equals(pq.read_table(reference / "frames/train/part-00000.parquet"))
        import fsspec

        version = json.loads((reference / "corpus.json").read_text())["default_label_version"]
        def samples(stream) -> list[dict]:
            return [{k: v for k, v in s.items() if not k.startswith("__url")}
                    for s in group_by_keys(tar_file_expander([{"stream": stream, "url": "-"}]))]

        with fsspec.open(f"s3://{prefix}/data/{layout.generation}/wds/{version}/train/train-000000.tar") as stream:
            remote = samples(stream)
        with open(reference / f"wds/{version}/train/train-000000.tar", "rb") as local:
            assert remote and remote == samples(local)
        for reader in ("wds", "parquet"):
            remote = [(s["video_id"], s["frame"], s["frames"].numpy().tobytes(), s["roll"].numpy().tobytes())
                      for s in open_split(uri, "train", reader, size=(50, 450))]
            local = [(s["video_id"], s["frame"], s["frames"].numpy().tobytes(), s["roll"].numpy().tobytes())
                     for s in open_split(reference, "train", reader, size=(50, 450))]
            assert remote and remote == local
    finally:
        os.environ.pop("PIANOCORPUS_STAGE", None)


def test_a_build_to_s3_killed_with_9_resumes_to_the_same_corpus(reference, built_corpus, served, s3, tmp_path):
    """kill -9 mid-build on S3, then the same command from a fresh stage (another machine
    would have none): the bucket's corpus is the uninterrupted local one."""
    cache = built_corpus[0].parent / "cache"
    manifest, _, _ = served
    uri = f"s3://{BUCKET}/killed"
    process = _build(manifest, uri, cache, tmp_path / "first", "--num-cpus", "1", wait=False)
    deadline = time.time() + 120
    while time.time() < deadline and not s3.glob(f"{BUCKET}/killed/.work/videos/*.json"):
        time.sleep(0.2)
    assert s3.glob(f"{BUCKET}/killed/.work/videos/*.json"), "the build made no progress before the kill"
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert not s3.exists(f"{BUCKET}/killed/current")  # killed before it published
    ray_cli = Path(sys.executable).parent / "ray"
    if ray_cli.exists():
        subprocess.run([str(ray_cli), "stop", "--force"], capture_output=True)
    _until_the_lease_expires(s3, f"{BUCKET}/killed")  # the killed build's lease is still in the bucket
    finished = _build(manifest, uri, cache, tmp_path / "second", "--num-cpus", "2")
    assert finished.returncode == 1, finished.stderr[-3000:]
    assert "from an earlier run" in finished.stderr  # the killed run's videos were taken from the bucket
    assert f"took over the expired lease of pid {process.pid}" in finished.stderr
    assert _bucket_digest(s3, f"{BUCKET}/killed", tmp_path) == _published(reference)
    _relabel_verify_audit(s3, uri, tmp_path / "third")


def _relabel_verify_audit(s3, uri: str, stage: Path) -> None:
    """relabel, verify and audit on the corpus in the bucket, from a stage of their own:
    the new version is published with the frames parts' objects untouched, and the
    training reader reads its labels."""
    from training.data import open_split

    env = {**os.environ, "PIANOCORPUS_STAGE": str(stage)}
    prefix = uri.removeprefix("s3://")

    def frames_objects() -> dict:
        pointer = s3.cat_file(f"{prefix}/current").decode().strip()
        return {p.split("/frames/")[1]: s3.info(p)["ETag"] for p in s3.find(f"{prefix}/{pointer}/frames")}

    before = frames_objects()
    cli = [sys.executable, "-m", "pipelines.cli"]
    relabelled = subprocess.run(cli + ["relabel", uri, "--labeler", "basic-pitch", "--param", "onset_threshold=0.4",
                                       "--make-default", "--num-cpus", "2"], capture_output=True, text=True, timeout=600,
                                env=env)
    assert relabelled.returncode == 0, relabelled.stdout[-2000:] + relabelled.stderr[-3000:]
    assert frames_objects() == before  # copied inside the bucket: the same bytes
    verified = subprocess.run(cli + ["verify", uri], capture_output=True, text=True, timeout=600, env=env)
    assert verified.returncode == 0 and "0 problem(s)" in verified.stdout, verified.stdout[-2000:]
    audited = subprocess.run(cli + ["audit", uri], capture_output=True, text=True, timeout=600, env=env)
    assert audited.returncode == 0, audited.stdout[-2000:] + audited.stderr[-3000:]
    pointer = s3.cat_file(f"{prefix}/current").decode().strip()
    meta = json.loads(s3.cat_file(f"{prefix}/{pointer}/corpus.json"))
    assert len(meta["label_versions"]) == 2 and s3.exists(f"{prefix}/{pointer}/stats/audit.json")
    os.environ["PIANOCORPUS_STAGE"] = str(stage / "reader")
    try:
        samples = list(open_split(uri, "train", "wds", size=(50, 450)))
        assert samples and {s["video_id"] for s in samples} == {"vid-a", "vid-b"}
    finally:
        os.environ.pop("PIANOCORPUS_STAGE", None)


def test_a_staged_path_travels_as_the_receiving_nodes_stage_path(tmp_path, monkeypatch):
    """What a task is handed (paths, strings, nested) names the same objects in the stage
    of whichever node unpickles it."""
    import pickle

    from contract import store

    pytest.importorskip("s3fs")
    monkeypatch.setenv(store.STAGE_ENV, str(tmp_path / "here"))
    here = store.open_store("s3://b/corpus")
    job = ([(str(here.stage / "data/g1/frames/x.parquet"), 0, 3)], {"v": here.stage / ".work/v.parquet"}, "train", 7)
    sent = pickle.dumps(store.restaged(job))
    monkeypatch.setenv(store.STAGE_ENV, str(tmp_path / "there"))
    store._STORES.clear()
    arrived = pickle.loads(sent)
    there = store.open_store("s3://b/corpus").stage
    assert there != here.stage and there.parent == tmp_path / "there"
    assert arrived == ([(str(there / "data/g1/frames/x.parquet"), 0, 3)], {"v": there / ".work/v.parquet"}, "train", 7)
    assert store.store_of(there / "a") is not None and store.store_of(tmp_path / "a") is None


def test_a_file_put_by_another_node_after_a_listing_is_seen(s3, tmp_path, monkeypatch):
    """A store that listed a folder still finds a file another process put there after
    (the driver lists the label records for its progress, then asks for each video's MIDI)."""
    import fsspec

    from contract import store

    monkeypatch.setenv(store.STAGE_ENV, str(tmp_path / "stage"))
    here = store.open_store(f"s3://{BUCKET}/listed")
    folder = here.stage / ".work/labels/v"
    s3.pipe_file(f"{BUCKET}/listed/.work/labels/v/a.json", b"{}")
    assert here.pull_tree(folder, (".json",)) == [folder / "a.json"]
    other = fsspec.filesystem("s3", skip_instance_cache=True)  # another node's client
    other.pipe_file(f"{BUCKET}/listed/.work/labels/v/a.mid", b"MThd")
    assert store.exists(folder / "a.mid") and store.file_size(folder / "a.mid") == 4


# --- one writer per corpus across machines: the lease in the store (contract/lock.py) ---------
HOLD = """import sys
from contract.lock import corpus_lock
with corpus_lock(sys.argv[1], "holder"):
    print("held", flush=True)
    sys.stdin.readline()
print("released", flush=True)
"""


def _holder(uri: str, stage: Path, lease_s: float) -> subprocess.Popen:
    """A writer on another machine (a stage of its own) holding the corpus until told on stdin."""
    holder = subprocess.Popen([sys.executable, "-c", HOLD, uri], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True, env={**os.environ, "PIANOCORPUS_STAGE": str(stage),
                                              "PIANOCORPUS_LEASE_S": str(lease_s)})
    assert holder.stdout.readline().strip() == "held"
    return holder


def _until_the_lease_expires(s3, prefix: str) -> None:
    from datetime import UTC, datetime

    if s3.exists(f"{prefix}/.lock"):
        expires = datetime.fromisoformat(json.loads(s3.cat_file(f"{prefix}/.lock"))["expires"])
        time.sleep(max(0.0, (expires - datetime.now(UTC)).total_seconds()) + 0.2)


def test_a_second_machine_is_refused_while_the_first_holds_the_corpus(s3, tmp_path, monkeypatch):
    """Two stages (two machines) on one s3:// corpus: the second writer is refused, naming
    the holder and its lease's expiry, for longer than a lease's term (the holder renews
    it); once the first releases, the second gets it, and its release leaves no lease."""
    import socket

    from contract.lock import CorpusLocked, corpus_lock, lock_holder
    from contract.store import STAGE_ENV

    uri = f"s3://{BUCKET}/leased"
    holder = _holder(uri, tmp_path / "first", lease_s=1.5)
    monkeypatch.setenv(STAGE_ENV, str(tmp_path / "second"))
    try:
        for wait in (0, 3):  # 3 s: two terms of the holder's lease, renewed meanwhile
            time.sleep(wait)
            refused = f"pid {holder.pid} on {socket.gethostname()}: holder, since .*its lease expires at .* in [0-9] s"
            with pytest.raises(CorpusLocked, match=refused), corpus_lock(uri, "second"):
                pass
    finally:
        holder.communicate("\n", timeout=30)
    assert holder.returncode == 0 and not s3.exists(f"{BUCKET}/leased/.lock")
    with corpus_lock(uri, "second"):
        assert lock_holder(uri)["command"] == "second" and lock_holder(uri)["pid"] == os.getpid()
    assert not s3.exists(f"{BUCKET}/leased/.lock")


def test_a_killed_holders_lease_expires_and_the_next_writer_takes_it_over(s3, tmp_path, monkeypatch, caplog):
    """kill -9 leaves the lease in the bucket: refused until it expires, then taken over."""
    from contract.lock import CorpusLocked, corpus_lock, lock_holder
    from contract.store import STAGE_ENV

    uri = f"s3://{BUCKET}/killed-holder"
    holder = _holder(uri, tmp_path / "first", lease_s=2)
    holder.kill()
    holder.wait()
    monkeypatch.setenv(STAGE_ENV, str(tmp_path / "second"))
    with pytest.raises(CorpusLocked, match=f"pid {holder.pid} .*its lease expires at"), corpus_lock(uri, "second"):
        pass
    _until_the_lease_expires(s3, f"{BUCKET}/killed-holder")
    with caplog.at_level("WARNING", logger="contract.lock"), corpus_lock(uri, "second"):
        assert lock_holder(uri)["pid"] == os.getpid()
    assert f"took over the expired lease of pid {holder.pid}" in caplog.text


def test_a_writer_whose_lease_was_taken_over_publishes_nothing(s3, tmp_path, monkeypatch):
    """A holder whose lease another writer took (its renewals failed for a term) learns it
    at the next renewal, and its publish is refused; it leaves the other's lease alone."""
    from contract.layout import CorpusLayout
    from contract.lock import CorpusLocked, corpus_lock
    from contract.publish import publish
    from contract.store import STAGE_ENV

    uri = f"s3://{BUCKET}/taken"
    monkeypatch.setenv(STAGE_ENV, str(tmp_path / "first"))
    other = json.dumps({"pid": 1, "host": "elsewhere", "command": "build", "expires": "2999-01-01T00:00:00+00:00"})
    with corpus_lock(uri, "first", lease_s=1):
        s3.pipe_file(f"{BUCKET}/taken/.lock", other.encode())  # as a writer on another machine would
        time.sleep(1)  # four renewals' time
        with pytest.raises(CorpusLocked, match="lost its lease on the corpus .*taken over by pid 1 on elsewhere"):
            publish(CorpusLayout(uri).next_generation())
    assert not s3.exists(f"{BUCKET}/taken/current")
    assert json.loads(s3.cat_file(f"{BUCKET}/taken/.lock")) == json.loads(other)


# --- the download cache on object storage (--cache s3://...) -----------------------------------
def test_a_cache_on_s3_is_downloaded_once_and_read_from_the_bucket_by_a_fresh_stage(served, s3, tmp_path, monkeypatch):
    """`fetch --cache s3://...` downloads through yt-dlp into its stage and puts the video
    and its info json in the bucket; a fetch and a build from fresh stages (other
    machines) take the video from the bucket: the server is asked for it no more."""
    from contract.config import FetchOptions
    from contract.store import STAGE_ENV
    from curation.fetch import fetch_manifest
    from manifests.loader import load_manifest
    from tests.loopback import MediaServer

    _, _, media = served
    cache = f"s3://{BUCKET}/cache"
    with MediaServer({"vid-a.mp4": media / "vid-a.mp4"}) as server:
        manifest = tmp_path / "m.csv"
        manifest.write_text(f"video_id,url,split\nvid-a,{server.url('video', 'vid-a.mp4')},train\n")
        fetched = subprocess.run([sys.executable, "-m", "pipelines.cli", "fetch", str(manifest), "--cache", cache],
                                 capture_output=True, text=True, timeout=300, check=False,
                                 env={**os.environ, "PIANOCORPUS_STAGE": str(tmp_path / "first")})
        assert fetched.returncode == 0, fetched.stderr[-3000:]
        downloaded = dict(server.hits)  # (yt-dlp's generic extractor asks twice: to look, then to download)
        assert downloaded["/video/vid-a.mp4"] >= 1
        assert s3.cat_file(f"{BUCKET}/cache/vid-a.mp4") == (media / "vid-a.mp4").read_bytes()
        assert json.loads(s3.cat_file(f"{BUCKET}/cache/vid-a.info.json"))["file"] == "vid-a.mp4"
        with s3.open(f"{BUCKET}/cache/fetch.parquet") as table:
            assert pq.read_table(table).to_pylist()[0]["status"] == "ok"

        monkeypatch.setenv(STAGE_ENV, str(tmp_path / "second"))
        again = fetch_manifest(load_manifest(manifest), FetchOptions(cache=cache, retries=0))
        assert [(r.status, r.path, r.seconds) for r in again] == [("ok", "vid-a.mp4", 0.0)]  # a cache hit

        built = _build(manifest, str(tmp_path / "corpus"), cache, tmp_path / "third", "--num-cpus", "2")
        assert built.returncode == 0, built.stdout[-2000:] + built.stderr[-3000:]
        assert dict(server.hits) == downloaded  # neither the fetch nor the build asked for it again
    staged = list((tmp_path / "third").rglob("vid-a.mp4"))
    assert len(staged) == 1 and staged[0].read_bytes() == (media / "vid-a.mp4").read_bytes()
    rows = pq.read_table(tmp_path / "corpus" / "videos.parquet").to_pylist()
    assert [(r["video_id"], r["status"]) for r in rows] == [("vid-a", "ok")]


def test_a_corpus_on_s3_keeps_its_default_cache_on_the_node(s3, tmp_path, monkeypatch):
    """Without --cache, a corpus on object storage downloads into a local folder beside its
    stage: a file written there is not put to the store (the media would fill the bucket)."""
    from contract.atomic import atomic_text
    from contract.config import BuildConfig
    from contract.store import STAGE_ENV, store_of

    monkeypatch.setenv(STAGE_ENV, str(tmp_path / "stage"))
    config = BuildConfig(out=f"s3://{BUCKET}/default-cache")
    cache = config.fetch_options().cache
    assert cache.parent == tmp_path / "stage" and store_of(cache / "vid.mp4") is None
    atomic_text("video", cache / "vid.mp4")
    assert not s3.exists(f"{BUCKET}/default-cache/.cache/vid.mp4") and not s3.find(f"{BUCKET}/default-cache")
