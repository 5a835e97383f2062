"""`pianocorpus build` and `pianocorpus relabel`: the Ray Data graph and the corpus files.

    manifest rows -> map(process_video, CPU) -> map_batches(LabelActor: CPU, or 1 GPU
    per actor where the cluster has GPUs) -> per-video work files -> shards (driver)

The stage functions (pipelines/stages.py) know nothing of Ray. Work files live in
CORPUS/.work/ and are the resume state: a video whose work files exist for the same
settings is not processed again (a failed one only with `retry_failed`), and the shards
are always re-assembled from the work files, so an interrupted run followed by a re-run
gives the same corpus as an uninterrupted one.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import threading
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from curation.fetch import FetchOptions
from labeling.transcribers import label_spec, label_version, resolve_labeler
from manifests.loader import load_manifest
from manifests.schema import ManifestRow
from pipelines.atomic import atomic_json
from pipelines.corpus import video_totals
from pipelines.shards import write_frame_parts, write_label_parts, write_wds_shards
from pipelines.stages import VideoSettings, label_videos, process_video

log = logging.getLogger(__name__)
CORPUS_FORMAT = "pianocorpus/1"
VIDEO_STAGE_MEMORY = 2**30  # sampled frames, the audio, a batch of frames: flat in the video's length

VIDEOS_SCHEMA = pa.schema([
    ("video_id", pa.string()), ("dataset", pa.string()), ("split", pa.string()), ("url", pa.string()),
    ("status", pa.string()), ("error_class", pa.string()), ("error", pa.string()), ("duration_s", pa.float64()),
    ("fps", pa.float64()), ("width", pa.int32()), ("height", pa.int32()), ("n_frames", pa.int32()),
    ("n_kept", pa.int32()), ("n_no_keyboard", pa.int32()), ("n_silent", pa.int32()), ("n_outside_range", pa.int32()),
    ("kb_x0", pa.int32()), ("kb_y0", pa.int32()), ("kb_x1", pa.int32()), ("kb_y1", pa.int32()),
    ("kb_quad", pa.list_(pa.float64(), 8)), ("kb_score", pa.float64()), ("kb_source", pa.string()),
    ("kb_located_iou", pa.float64()), ("kb_orientation", pa.string()), ("kb_clipped_left", pa.float64()),
    ("kb_clipped_right", pa.float64()),
    ("source_sha256", pa.string()), ("label_status", pa.string()), ("n_notes", pa.int32()),
])


@dataclass
class BuildConfig:
    out: Path
    cache: Path | None = None  # default OUT/.cache
    settings: VideoSettings = field(default_factory=VideoSettings)
    labeler: str = "auto"
    label_params: dict = field(default_factory=dict)
    sustain_pedal: bool = False
    rows_per_part: int = 10_000
    shard_samples: int = 10_000
    shard_bytes: int = 500 * 2**20
    retry_failed: bool = False
    num_cpus: int | None = None  # local Ray: default all
    object_store_mb: int | None = None  # local Ray: default Ray's
    address: str | None = None  # join a cluster (or $RAY_ADDRESS)
    label_batch: int = 1  # videos per transcriber call: each video is labelled as soon as its audio is written
    fetch: dict = field(default_factory=dict)  # FetchOptions fields
    manifest: str | None = None  # the manifest built from (recorded in corpus.json; the audit reads it)

    @property
    def work(self) -> Path:
        return self.out / ".work"

    def fetch_options(self) -> FetchOptions:
        return FetchOptions(cache=self.cache or self.out / ".cache", **self.fetch)


# --- Ray ---------------------------------------------------------------------------------------
def init_ray(config: BuildConfig):
    import ray

    if ray.is_initialized():
        return ray
    address = config.address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, log_to_driver=False)
    else:
        ray.init(num_cpus=config.num_cpus, include_dashboard=False, log_to_driver=False,
                 object_store_memory=config.object_store_mb * 2**20 if config.object_store_mb else None)
    ray.data.DataContext.get_current().enable_progress_bars = True
    return ray


def ray_is_up() -> bool:
    import ray

    return ray.is_initialized()


@contextmanager
def ray_stopping(started_here: bool):
    """Shut down the Ray this command started while the driver writes the corpus files:
    the graph is done, and Ray's shutdown mostly waits for its processes to exit
    (1.5-2.5 s of a build here). A Ray the caller started stays up."""
    stopping = None
    if started_here:
        import ray

        stopping = threading.Thread(target=ray.shutdown, name="ray-shutdown")
        stopping.start()
    try:
        yield
    finally:
        if stopping:
            stopping.join()


class LabelActor:
    """Holds one transcriber (the model loads once per actor) and labels batches of videos."""

    def __init__(self, labeler: str, params: dict, spec: dict, version: str, corpus: str, work: str):
        from labeling.transcribers import make_transcriber

        self.transcriber = make_transcriber(labeler, **params)
        self.spec, self.version, self.corpus, self.work = spec, version, Path(corpus), Path(work)

    def __call__(self, batch):
        rows = batch.to_dict("records")
        todo = [r for r in rows if r["status"] == "ok" and not _labels_done(self.work, self.version, r["video_id"])]
        label_videos(todo, self.transcriber, self.spec, self.version, self.corpus, self.work)
        import pandas as pd

        return pd.DataFrame([{"video_id": r["video_id"]} for r in rows])


def _labels_done(work: Path, version: str, video_id: str) -> bool:
    return (work / "labels" / version / f"{video_id}.parquet").is_file()


def _video_done(config: BuildConfig, row: ManifestRow) -> dict | None:
    """The earlier result for this video, if it is final for these settings."""
    path = config.work / "videos" / f"{row.video_id}.json"
    if not path.is_file():
        return None
    done = json.loads(path.read_text())
    if done.get("settings") != config.settings.digest() or done.get("url") != row.url:
        return None
    if done["status"] == "ok" and not (config.work / "frames" / f"{row.video_id}.parquet").is_file():
        return None
    if done["status"] != "ok" and config.retry_failed:
        return None
    return done


def _label_spec(config: BuildConfig, labeler: str, fps: float) -> tuple[dict, str]:
    spec = label_spec(labeler, config.label_params, fps, config.sustain_pedal)
    return spec, label_version(spec)


def label_stage(ds, config: BuildConfig, labeler: str, spec: dict, version: str, gpus: int, cpus: int):
    """Transcriber actors: one GPU each where the cluster has GPUs. On CPUs the actor
    reserves no CPU: basic-pitch labels a video at tens of times real time and waits for
    videos most of the time, so the CPUs stay with the video stage (reserving one halved
    the build's parallelism on 2 cores, and on 1 core left the video stage none). Videos
    are labelled one per call by default, as each one's audio is written, so labelling
    overlaps the video stage instead of trailing it."""
    from ray.data import ActorPoolStrategy

    use_gpu = labeler == "transkun" and gpus > 0
    return ds.map_batches(
        LabelActor, batch_size=config.label_batch, batch_format="pandas",
        fn_constructor_kwargs={"labeler": labeler, "params": config.label_params, "spec": spec, "version": version,
                               "corpus": str(config.out), "work": str(config.work)},
        num_gpus=1 if use_gpu else 0, num_cpus=0,
        compute=ActorPoolStrategy(size=gpus if use_gpu else max(1, cpus // 4)))


def run_graph(config: BuildConfig, rows: list[ManifestRow], labeler: str, spec: dict, version: str) -> None:
    """Process and label every row that is not done yet, on Ray."""
    ray = init_ray(config)
    fetch, settings, work, corpus = config.fetch_options(), config.settings, config.work, config.out
    by_index = {i: row for i, row in enumerate(rows)}

    def video_stage(item: dict) -> dict:
        row = by_index[item["i"]]
        result = _video_done(config, row) or process_video(row, work, corpus, fetch, settings)
        return {k: result.get(k) for k in ("video_id", "status", "n_frames", "fps")}

    gpus = int(ray.cluster_resources().get("GPU", 0))
    cpus = int(ray.cluster_resources().get("CPU", 1))
    ds = ray.data.from_items([{"i": i} for i in range(len(rows))], override_num_blocks=max(1, len(rows)))
    # The memory request (a video's sampled frames and audio) also keeps Ray Data from
    # fusing this CPU stage into the transcriber actors, which would serialise it.
    ds = ds.map(video_stage, num_cpus=1, memory=VIDEO_STAGE_MEMORY)
    ds = label_stage(ds, config, labeler, spec, version, gpus, cpus)
    # Ray Data reserves part of the CPUs for each operator; the transcriber holds none, yet
    # its reservation kept the second video task waiting until the actor had loaded its
    # model (1.5 s of 2 cores), leaving the two lanes of videos to finish 1-2 s apart.
    ds.context.op_resource_reservation_enabled = False
    ds.materialize()


# --- corpus files ------------------------------------------------------------------------------
def _video_rows(config: BuildConfig, rows: list[ManifestRow], version: str) -> list[dict]:
    out = []
    for row in sorted(rows, key=lambda r: r.video_id):
        done = json.loads((config.work / "videos" / f"{row.video_id}.json").read_text())
        label = config.work / "labels" / version / f"{row.video_id}.json"
        summary = json.loads(label.read_text()) if label.is_file() else {}
        done.update(label_status=summary.get("label_status"), n_notes=summary.get("n_notes"))
        if done["status"] == "ok" and summary.get("label_status") != "ok":
            done.update(status="failed", error_class="labels", error=f"labels: {summary.get('label_error', 'missing')}")
        out.append({name: done.get(name) for name in VIDEOS_SCHEMA.names})
    return out


def assemble(config: BuildConfig, video_rows: list[dict], version: str, spec: dict) -> dict:
    """frames/, labels/VERSION/, wds/VERSION/, stats/, videos.parquet, corpus.json."""
    corpus, work = config.out, config.work
    table = pa.Table.from_pylist(video_rows, schema=VIDEOS_SCHEMA)
    part = corpus / "videos.parquet.part"
    pq.write_table(table, part)
    os.replace(part, corpus / "videos.parquet")
    splits = sorted({r["split"] for r in video_rows if r["status"] == "ok"})
    for split in splits:
        ids = [r["video_id"] for r in video_rows if r["status"] == "ok" and r["split"] == split]
        write_frame_parts([work / "frames" / f"{v}.parquet" for v in ids], corpus / "frames" / split,
                          config.rows_per_part)
    stats = write_label_version(config, video_rows, version, spec)
    stats["totals"] = video_totals(video_rows)
    atomic_json(stats, corpus / "stats" / "summary.json")
    return stats


def write_label_version(config: BuildConfig, video_rows: list[dict], version: str, spec: dict) -> dict:
    """labels/VERSION/ and wds/VERSION/ from the corpus's frame parts and the label work files."""
    corpus, work = config.out, config.work
    stats = {"splits": {}}
    for split in sorted({r["split"] for r in video_rows if r["status"] == "ok"}):
        ids = [r["video_id"] for r in video_rows if r["status"] == "ok" and r["split"] == split]
        frames_parts = sorted((corpus / "frames" / split).glob("part-*.parquet"))
        sources = {v: work / "labels" / version / f"{v}.parquet" for v in ids}
        write_label_parts(frames_parts, sources, corpus / "labels" / version / split)
        shards = write_wds_shards(frames_parts, sources, split, version, corpus / "wds" / version / split,
                                  corpus / "stats" / "wds" / version, config.shard_samples, config.shard_bytes)
        stats["splits"][split] = {"videos": len(ids), "parquet_parts": len(frames_parts), "wds_shards": len(shards),
                                  "samples": sum(s["count"] for s in shards)}
    atomic_json({**spec, "label_version": version}, corpus / "labels" / version / "label.json")
    _write_corpus_json(config, version, spec)
    return stats


def _write_corpus_json(config: BuildConfig, version: str, spec: dict) -> None:
    from importlib.metadata import version as package_version

    path = config.out / "corpus.json"
    previous = json.loads(path.read_text()) if path.is_file() else {}
    versions = previous.get("label_versions", {})
    versions[version] = spec
    packages = {}
    for name in ("pianocorpus", "ray", "yt-dlp", "av", "opencv-python-headless", "pyarrow", "webdataset",
                 "basic-pitch", "transkun", "torch", "onnxruntime", "numpy"):
        try:
            packages[name] = package_version(name)
        except Exception:
            packages[name] = None
    settings = asdict(config.settings)
    atomic_json({
        "format": CORPUS_FORMAT,
        "created": previous.get("created") or datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "config": {"frames": settings["frames"], "locate_frames": settings["locate_frames"],
                   "settings_digest": config.settings.digest(), "rows_per_part": config.rows_per_part,
                   "shard_samples": config.shard_samples, "shard_bytes": config.shard_bytes},
        "manifest": config.manifest or previous.get("manifest"),
        "label_versions": versions,
        "default_label_version": previous.get("default_label_version") or version,
        "python": platform.python_version(),
        "packages": packages,
    }, path)


def build(manifest_path: str | Path, config: BuildConfig) -> dict:
    """Build (or resume) the corpus; returns the stats written to stats/summary.json."""
    manifest = load_manifest(manifest_path)
    rows = list(manifest.rows)
    started_here = not ray_is_up()
    config.manifest = str(Path(manifest.path).resolve())
    config.out.mkdir(parents=True, exist_ok=True)
    labeler = _resolve_labeler_for_cluster(config)
    fps = config.settings.frames.fps
    spec, version = _label_spec(config, labeler, fps)
    started = time.perf_counter()
    run_graph(config, rows, labeler, spec, version)
    with ray_stopping(started_here):
        video_rows = _video_rows(config, rows, version)
        stats = assemble(config, video_rows, version, spec)
    stats["label_version"], stats["seconds"] = version, round(time.perf_counter() - started, 1)
    return stats


def _resolve_labeler_for_cluster(config: BuildConfig) -> str:
    """`auto` asks the cluster (workers may have GPUs the driver lacks)."""
    if config.labeler != "auto":
        return resolve_labeler(config.labeler)
    ray = init_ray(config)
    chosen = "transkun" if ray.cluster_resources().get("GPU", 0) > 0 else "basic-pitch"
    log.info("labeler auto -> %s", chosen)
    return chosen


def relabel(config: BuildConfig, make_default: bool = False) -> dict:
    """New labels for an existing corpus from its audio/: frames and audio are not touched."""
    corpus = config.out
    if not (corpus / "videos.parquet").is_file() or not (corpus / "corpus.json").is_file():
        raise ValueError(f"{corpus}: not a corpus (no videos.parquet / corpus.json)")
    existing = json.loads((corpus / "corpus.json").read_text())
    fps = existing["config"]["frames"]["fps"]
    videos = [v for v in pq.read_table(corpus / "videos.parquet").to_pylist() if v["status"] == "ok"]
    started_here = not ray_is_up()
    labeler = _resolve_labeler_for_cluster(config)
    spec, version = _label_spec(config, labeler, fps)
    started = time.perf_counter()
    ray = init_ray(config)
    items = [{k: v[k] for k in ("video_id", "status", "n_frames", "fps")} for v in videos]
    label_stage(ray.data.from_items(items), config, labeler, spec, version,
                int(ray.cluster_resources().get("GPU", 0)), int(ray.cluster_resources().get("CPU", 1))).materialize()
    with ray_stopping(started_here):
        missing = [v["video_id"] for v in videos if not _labels_done(config.work, version, v["video_id"])]
        if missing:
            raise RuntimeError(f"labels failed for {len(missing)} video(s): {', '.join(missing[:10])} "
                               f"(see {config.work / 'labels' / version}); re-run relabel to retry")
        config.rows_per_part = existing["config"]["rows_per_part"]
        stats = write_label_version(config, videos, version, spec)
        if make_default:
            data = json.loads((corpus / "corpus.json").read_text())
            data["default_label_version"] = version
            atomic_json(data, corpus / "corpus.json")
        notes = sum(json.loads((config.work / "labels" / version / f"{v['video_id']}.json").read_text())
                    .get("n_notes", 0) for v in videos)
    return {**stats, "label_version": version, "notes": notes, "seconds": round(time.perf_counter() - started, 1)}
