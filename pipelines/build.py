"""`pianocorpus build` and `pianocorpus relabel`: the Ray Data graph and the corpus files.

    manifest rows -> map(process_video, CPU) -> map_batches(LabelActor: CPU, or 1 GPU
    per actor where the cluster has GPUs) -> per-video work files -> shards (driver)

The stages (`curation/video.py`, `labeling/label.py`) know nothing of Ray; the paths,
rows and configuration are the contract's (`contract/`). The work state is what a re-run
resumes from: a video whose work files exist for the same settings is not processed
again (a failed one only with `retry_failed`), and the shards are always re-assembled
from the work files, so an interrupted run followed by a re-run gives the same corpus as
an uninterrupted one.
"""

from __future__ import annotations

import json
import logging
import os
import time
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from urllib.parse import unquote, urlparse

import pyarrow as pa
import pyarrow.parquet as pq

from contract.atomic import atomic_json, atomic_parquet
from contract.config import BuildConfig, LabelerConfig, RayConfig
from contract.hashing import json_digest, sha256_file
from contract.integrity import check_files, expected_files, file_record
from contract.layout import CacheLayout, CorpusLayout, WorkLayout
from contract.lock import corpus_lock
from contract.meta import corpus_meta, write_corpus_json
from contract.publish import carry_over, link_file, publish, start_generation
from contract.records import AV_COLUMNS, AV_SCHEMA, VIDEOS_SCHEMA, new_video_row, video_totals
from contract.store import exists, file_stamp, pull, remove_tree
from curation.hands import hands_spec, hands_version
from curation.probe import ProbeError, probe
from curation.ratelimit import shared_limiter
from curation.video import process_hands, process_video
from labeling.label import label_videos
from labeling.transcribers import label_spec, label_version, resolve_labeler
from manifests.loader import load_manifest
from manifests.schema import ManifestRow
from pipelines.progress import BuildProgress, new_actor_lines
from pipelines.shards import write_frame_parts, write_label_parts, write_wds_shards

log = logging.getLogger(__name__)
VIDEO_STAGE_MEMORY = 2**30  # sampled frames, the audio, a batch of frames: flat in the video's length


# --- Ray ---------------------------------------------------------------------------------------
def init_ray(config: RayConfig):
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
    """Shut down the Ray this command started once the block is done (the corpus files are
    written by Ray tasks: pipelines/shards.py). A Ray the caller started stays up."""
    try:
        yield
    finally:
        if started_here:
            import ray

            ray.shutdown()


class LabelActor:
    """Holds one transcriber (the model loads once per actor) and labels batches of videos."""

    def __init__(self, labeler: LabelerConfig, spec: dict, version: str, corpus: str):
        from labeling.transcribers import make_transcriber

        self.transcriber = make_transcriber(labeler.name, **labeler.params)
        self.spec, self.version, self.corpus = spec, version, CorpusLayout(corpus)
        _announce_actor(self.corpus.work, labeler.name, self.transcriber.device)

    def __call__(self, batch):
        import pandas as pd

        rows = batch.to_dict("records")
        for r in rows:
            pull(self.corpus.work.label_rolls(self.version, r["video_id"]))  # (the stage of a corpus on object storage)
            pull(self.corpus.work.label_record(self.version, r["video_id"]))
        todo = [r for r in rows if r["status"] == "ok" and not _labels_done(self.corpus, self.version, r["video_id"])]
        label_videos(todo, self.transcriber, self.spec, self.version, self.corpus)  # failures are records
        return pd.DataFrame([{"video_id": r["video_id"]} for r in rows])


def _announce_actor(work: WorkLayout, labeler: str, device: str) -> None:
    """Say which device this transcriber actor runs on, and where: a json in the work state
    that the driver's progress logs as a line (an actor's own output stays on its node)."""
    import ray

    context = ray.get_runtime_context()
    record = {"labeler": labeler, "device": device, "gpus": [str(g) for g in ray.get_gpu_ids()],
              "node": context.get_node_id()[:12], "pid": os.getpid()}
    atomic_json(record, work.actors / f"{record['node']}-{record['pid']}.json")


def _labels_done(corpus: CorpusLayout, version: str, video_id: str) -> bool:
    """The video's rolls are there, and are the ones its label record was written for."""
    rolls = corpus.work.label_rolls(version, video_id)
    return rolls.is_file() and _label_record(corpus, version, video_id).get("rolls_sha256") == sha256_file(rolls)


def _label_record(corpus: CorpusLayout, version: str, video_id: str) -> dict:
    path = corpus.work.label_record(version, video_id)
    return json.loads(path.read_text()) if path.is_file() else {}


def _video_done(config: BuildConfig, row: ManifestRow) -> dict | None:
    """The earlier result for this video, if it is final for these settings."""
    path = pull(config.layout.work.video_json(row.video_id))
    if not path.is_file():
        return None
    done = json.loads(path.read_text())
    if done.get("settings") != config.settings.digest() or done.get("url") != row.url:
        return None
    if done.get("final") is False:  # out of disk or memory last time: try again
        return None
    frames = config.layout.work.frames(row.video_id)
    if done["status"] == "ok":  # (the stage of a corpus on object storage)
        pull(frames)
        pull(config.layout.work.key_levels(row.video_id))
    if done["status"] == "ok" and not (frames.is_file() and sha256_file(frames) == done.get("frames_sha256")):
        return None  # gone, damaged, or written over by a straggler of a killed run: redo the video
    if done["status"] == "ok" and not config.layout.work.key_levels(row.video_id).is_file():
        return None  # done before the frame pass kept key levels
    if done["status"] != "ok" and config.retry_failed:
        return None
    return done


def _label_spec(config: BuildConfig, labeler: LabelerConfig) -> tuple[dict, str]:
    hands = _hands_version(config)
    if labeler.onset_filter == "hands" and hands is None:
        raise ValueError(f"{config.out}: --onset-filter hands needs the hands' keypoints: build with --hands")
    spec = label_spec(labeler.name, labeler.params, config.settings.frames.fps, labeler.sustain_pedal,
                      labeler.av_align, hands if labeler.onset_filter == "hands" else None)
    # The hands the labels are checked against (measured only: it is not in the version unless they filter).
    return {**spec, "hands": hands}, label_version(spec)


def _hands_version(config: BuildConfig) -> str | None:
    """The build's hands version, None when it takes no hand keypoints."""
    return hands_version(hands_spec(config.hands, config.settings.frames.fps)) if config.hands else None


def label_stage(ds, config: BuildConfig, labeler: LabelerConfig, spec: dict, version: str, gpus: int, cpus: int):
    """Transcriber actors: one GPU each where the cluster has GPUs. On CPUs the actor
    reserves no CPU: basic-pitch labels a video at tens of times real time and waits for
    videos most of the time, so the CPUs stay with the video stage (reserving one halved
    the build's parallelism on 2 cores, and on 1 core left the video stage none). Videos
    are labelled one per call by default, as each one's audio is written, so labelling
    overlaps the video stage instead of trailing it."""
    from ray.data import ActorPoolStrategy

    size, share = actor_pool(labeler.name, gpus, cpus, config.ray.gpus_per_actor)
    remove_tree(config.layout.work.actors)  # this run's actors announce themselves
    return ds.map_batches(
        LabelActor, batch_size=labeler.batch, batch_format="pandas",
        fn_constructor_kwargs={"labeler": labeler, "spec": spec, "version": version, "corpus": str(config.out)},
        num_gpus=share, num_cpus=0, compute=ActorPoolStrategy(size=size))


def actor_pool(labeler: str, gpus: int, cpus: int, gpus_per_actor: float) -> tuple[int, float]:
    """(actors, each one's share of a GPU): transkun on a cluster with GPUs fills every GPU
    with actors of `gpus_per_actor` each; otherwise CPU actors, one per 4 CPUs."""
    if labeler == "transkun" and gpus > 0:
        return max(1, int(gpus / gpus_per_actor + 1e-9)), gpus_per_actor
    return max(1, cpus // 4), 0


def expected_seconds(row: ManifestRow, cache: Path | str) -> float | None:
    """How long the row's video is, where that is known before it is fetched: its start and
    end, its cached download's info (of a cache on object storage: as far as this node's
    stage holds it, no request a video), or a local file's header; None otherwise."""
    if row.start_s is not None and row.end_s is not None:
        return row.end_s - row.start_s
    info = CacheLayout(cache).info_json(row.video_id)
    if info.is_file():
        try:
            return float(json.loads(info.read_text())["duration"])
        except (OSError, ValueError, KeyError, TypeError):
            return None
    url = urlparse(row.url or "")
    local = Path(unquote(url.path))
    if url.scheme == "file" and local.is_file():
        try:
            return probe(local).duration_s
        except ProbeError:
            return None  # its own task names what is wrong with it
    return None


def longest_first(rows: list[ManifestRow], cache: Path | str) -> list[int]:
    """The order the videos start in: those of known length longest first (a long recital
    started last is the build's tail), then the others in manifest order."""
    seconds = [expected_seconds(row, cache) for row in rows]
    known = sorted((i for i, s in enumerate(seconds) if s is not None), key=lambda i: -seconds[i])
    return known + [i for i, s in enumerate(seconds) if s is None]


def run_graph(config: BuildConfig, rows: list[ManifestRow], labeler: LabelerConfig, spec: dict,
              version: str) -> None:
    """Process and label every row that is not done yet, on Ray."""
    ray = init_ray(config.ray)
    fetch, settings, corpus = config.fetch_options(), config.settings, config.layout
    if fetch.requests_per_s and any((row.url or "").startswith(("http:", "https:")) for row in rows):
        fetch = replace(fetch, limiter=shared_limiter(fetch.requests_per_s))  # one rate for every worker
    by_index = {i: row for i, row in enumerate(rows)}
    hands = _hands_version(config)

    def video_stage(item: dict) -> dict:
        row = by_index[item["i"]]
        result = _video_done(config, row) or process_video(row, corpus, fetch, settings, config.segment_s)
        if hands and result["status"] == "ok":  # before its labels: an onset filter reads them
            process_hands(result, corpus, fetch.cache, settings, config.hands, hands)
        return {k: result.get(k) for k in ("video_id", "status", "n_frames", "fps")}

    gpus = int(ray.cluster_resources().get("GPU", 0))
    cpus = int(ray.cluster_resources().get("CPU", 1))
    order = longest_first(rows, fetch.cache)
    ds = ray.data.from_items([{"i": i} for i in order], override_num_blocks=max(1, len(rows)))
    # The memory request (a video's sampled frames and audio) also keeps Ray Data from
    # fusing this CPU stage into the transcriber actors, which would serialise it.
    ds = ds.map(video_stage, num_cpus=1, memory=VIDEO_STAGE_MEMORY)
    ds = label_stage(ds, config, labeler, spec, version, gpus, cpus)
    # Ray Data reserves part of the CPUs for each operator; the transcriber holds none, yet
    # its reservation kept the second video task waiting until the actor had loaded its
    # model (1.5 s of 2 cores), leaving the two lanes of videos to finish 1-2 s apart.
    ds.context.op_resource_reservation_enabled = False
    ds.context.enable_progress_bars = False  # ours counts videos, frames and seconds; Ray's count rows
    ds.context.print_on_execution_start = False
    logging.getLogger("ray.data._internal.progress").setLevel(logging.ERROR)  # "Progress bars disabled": we know
    with BuildProgress(corpus.work, [row.video_id for row in rows], every_s=config.progress_every_s,
                       label_version=version):
        ds.materialize()


# --- corpus files ------------------------------------------------------------------------------
def _video_rows(config: BuildConfig, rows: list[ManifestRow], version: str) -> list[dict]:
    """videos.parquet's rows from the work state; an ok video whose labels failed fails as `labels`."""
    corpus, out = config.layout, []
    corpus.work.stage_records(version, hands=_hands_version(config))
    for row in sorted(rows, key=lambda r: r.video_id):
        path = corpus.work.video_json(row.video_id)
        done = json.loads(path.read_text()) if path.is_file() else {
            **new_video_row(row.video_id, row.dataset, row.split, row.url), "error_class": "resources",
            "error": "resources: the video's result could not be written (is the disk full?)"}
        label = _label_record(corpus, version, row.video_id)
        done.update(label_status=label.get("label_status"), n_notes=label.get("n_notes"),
                    **{name: label.get(name) for name, _ in AV_COLUMNS})
        if done["status"] == "ok" and label.get("label_status") != "ok":
            done.update(status="failed", error_class="labels", error=f"labels: {label.get('label_error', 'missing')}")
        out.append({name: done.get(name) for name in VIDEOS_SCHEMA.names})
    return out


def _ok_by_split(video_rows: list[dict]) -> dict[str, list[str]]:
    splits: dict[str, list[str]] = {}
    for r in video_rows:
        if r["status"] == "ok":
            splits.setdefault(r["split"], []).append(r["video_id"])
    return dict(sorted(splits.items()))


def assemble(config: BuildConfig, video_rows: list[dict], version: str, spec: dict) -> dict:
    """A new generation (videos.parquet, frames/, labels/VERSION/, wds/VERSION/, stats/,
    corpus.json), then published. The corpus's other label versions (made by relabel) are
    made again for the new frames parts from their work files; one whose work files are
    not all there is linked from the published generation as it was (and `verify` says
    when it no longer fits the frames)."""
    published = config.layout
    corpus = start_generation(published)
    remade = _remakeable_versions(published, corpus, video_rows, version)
    carry_over(published, corpus, lambda path: _label_version_of(path) not in (None, version, *remade))
    atomic_parquet(pa.Table.from_pylist(video_rows, schema=VIDEOS_SCHEMA), corpus.videos)
    files = {"videos": file_record(corpus.videos, rows=len(video_rows)),
             "frames": {split: write_frame_parts([corpus.work.frames(v) for v in ids], corpus.frames_dir(split),
                                                 config.shards.rows_per_part)
                        for split, ids in _ok_by_split(video_rows).items()}}
    if hands := _hands_version(config):
        files["hands"] = write_hands_version(config, corpus, video_rows, hands)
    stats = write_label_version(config, corpus, video_rows, version, spec, files=files)
    for other, other_spec in remade.items():
        write_label_version(config, corpus, video_rows, other, other_spec)
    stats["totals"] = video_totals(video_rows)
    stats["failed_videos"] = {r["video_id"]: r["error"] for r in video_rows if r["status"] == "failed"}
    atomic_json(stats, corpus.summary_json)
    publish(corpus)
    return stats


def _remakeable_versions(published: CorpusLayout, corpus: CorpusLayout, video_rows: list[dict],
                         version: str) -> dict[str, dict]:
    """The published corpus's other label versions whose labels every ok video has in the
    work state, with their specs."""
    if not exists(published.corpus_json):
        return {}
    ok = [r["video_id"] for r in video_rows if r["status"] == "ok"]
    others = {other: spec for other, spec in corpus_meta(published)["label_versions"].items() if other != version}
    if corpus.store is not None:  # the rolls too: what is done is checked against them
        for other in others:
            corpus.store.pull_tree(corpus.work.labels_dir(other), (".json", ".parquet"))
    return {other: spec for other, spec in others.items() if all(_labels_done(corpus, other, v) for v in ok)}


def _label_version_of(path: Path) -> str | None:
    """The label version a generation's file belongs to (labels/V/..., wds/V/...,
    stats/wds/V/...), None for the others."""
    parts = path.parts
    if parts[0] in ("labels", "wds") and len(parts) > 2:
        return parts[1]
    return parts[2] if parts[:2] == ("stats", "wds") and len(parts) > 3 else None


def write_hands_version(config: BuildConfig, corpus: CorpusLayout, video_rows: list[dict], version: str) -> dict:
    """hands/VERSION/ of generation `corpus`: each ok video's hands file, and hands.json
    (the spec, and per video its hands record: frames searched, frames with a hand, or why
    it has none); the file records."""
    records, files = {}, {}
    for row in video_rows:
        if row["status"] != "ok":
            continue
        path = corpus.work.hands_record(version, row["video_id"])
        records[row["video_id"]] = json.loads(path.read_text()) if path.is_file() else {"status": "missing"}
        source = corpus.work.hands(version, row["video_id"])
        if records[row["video_id"]].get("status") == "ok" and exists(source):
            link_file(source, corpus.hands_file(version, row["video_id"]))
            files[row["video_id"]] = file_record(corpus.hands_file(version, row["video_id"]))
    atomic_json({**hands_spec(config.hands, config.settings.frames.fps), "hands_version": version, "videos": records},
                corpus.hands_json(version))
    return {version: files}


def write_label_version(config: BuildConfig, corpus: CorpusLayout, video_rows: list[dict], version: str, spec: dict,
                        make_default: bool = False, files: dict | None = None) -> dict:
    """labels/VERSION/ and wds/VERSION/ of generation `corpus` from its frame parts and the
    label work files; the version, the configuration and the file records (`files`: those
    of videos.parquet and the frames parts when they were written too) into its corpus.json."""
    stats, labels, wds = {"splits": {}}, {}, {}
    hands_version = _hands_version(config)
    for split, ids in _ok_by_split(video_rows).items():
        frames_parts = corpus.frame_parts(split)
        sources = {v: corpus.work.label_rolls(version, v) for v in ids}
        labels[split] = write_label_parts(frames_parts, sources, corpus.label_parts_dir(version, split))
        hands = {v: corpus.work.hands(hands_version, v) for v in ids} if hands_version else None
        wds[split] = write_wds_shards(frames_parts, sources, split, version, corpus, config.shards, hands)
        stats["splits"][split] = {"videos": len(ids), "parquet_parts": len(frames_parts), "wds_shards": len(wds[split]),
                                  "samples": sum(s["samples"] for s in wds[split])}
    for row in video_rows:
        midi = corpus.work.label_midi(version, row["video_id"])
        if row["status"] == "ok" and exists(midi):  # (a version made before MIDI went through the work state keeps its own)
            link_file(midi, corpus.midi(version, row["video_id"]))
    av_rows = [{"video_id": row["video_id"], "split": row["split"],
                **{name: record.get(name) for name in AV_SCHEMA.names[2:]}}
               for row in video_rows if row["status"] == "ok"
               for record in [_label_record(corpus, version, row["video_id"])]]
    atomic_parquet(pa.Table.from_pylist(av_rows, schema=AV_SCHEMA), corpus.av_table(version))
    atomic_json({**spec, "label_version": version}, corpus.label_json(version))
    write_corpus_json(corpus, config.recorded(), config.manifest, version, spec, make_default,
                      files={**(files or {}), "labels": {version: labels}, "wds": {version: wds},
                             "av": {version: file_record(corpus.av_table(version), rows=len(av_rows))}})
    return stats


def build(manifest_path: str | Path, config: BuildConfig) -> dict:
    """Build (or resume) the corpus; returns the stats written to stats/summary.json."""
    manifest = load_manifest(manifest_path)
    rows = list(manifest.rows)
    if exists(config.layout.corpus_json):
        corpus_meta(config.out)  # a damaged corpus.json is named now, not after the whole run
    config.manifest = str(Path(manifest.path).resolve())
    with corpus_lock(config.out, "build"):
        started_here = not ray_is_up()
        labeler = _resolved(config.labeler, config.ray)
        spec, version = _label_spec(config, labeler)
        started = time.perf_counter()
        run_graph(config, rows, labeler, spec, version)
        with ray_stopping(started_here):
            video_rows = _video_rows(config, rows, version)
            inputs = _assembly_inputs(config, video_rows, version, spec)
            stats = _published_unchanged(config, inputs)
            if stats is None:
                stats = assemble(config, video_rows, version, spec)
                atomic_json({"inputs": inputs}, config.layout.work.published)
    stats["label_version"], stats["seconds"] = version, round(time.perf_counter() - started, 1)
    return stats


def _assembly_inputs(config: BuildConfig, video_rows: list[dict], version: str, spec: dict) -> str:
    """A digest of everything the published files are made from: the configuration, the
    rows, the label spec and each ok video's work files (size and modification time)."""
    work, stamps, hands = config.layout.work, [], _hands_version(config)
    for row in video_rows:
        if row["status"] == "ok":
            optional = [work.hands(hands, row["video_id"])] if hands else []  # a video whose hands failed has none
            for path in (work.frames(row["video_id"]), work.label_rolls(version, row["video_id"]),
                         *(p for p in optional if exists(p))):
                stamps.append(file_stamp(path))
    return json_digest({"config": config.recorded(), "manifest": config.manifest, "rows": video_rows,
                        "version": version, "spec": spec, "work": stamps}, 32)


def _published_unchanged(config: BuildConfig, inputs: str) -> dict | None:
    """The published summary when the corpus was assembled from these very inputs and its
    files are all in place: a re-run that changes nothing rewrites nothing."""
    corpus = config.layout
    published, summary = pull(corpus.work.published), pull(corpus.summary_json)
    if not (published.is_file() and summary.is_file() and exists(corpus.corpus_json)):
        return None
    if json.loads(published.read_text()).get("inputs") != inputs:
        return None
    if check_files(expected_files(corpus, corpus_meta(corpus.location).get("files", {}))):
        return None  # damaged since: assemble again (the repair)
    return json.loads(corpus.summary_json.read_text())


def _resolved(labeler: LabelerConfig, ray_config: RayConfig) -> LabelerConfig:
    """The labeler with its name resolved: `auto` asks the cluster (workers may have GPUs
    the driver lacks)."""
    if labeler.name != "auto":
        return replace(labeler, name=resolve_labeler(labeler.name))
    ray = init_ray(ray_config)
    return replace(labeler, name=resolve_labeler("auto", gpu=ray.cluster_resources().get("GPU", 0) > 0))


def relabel(corpus: str | Path, labeler: LabelerConfig = LabelerConfig(), make_default: bool = False,
            ray: RayConfig = RayConfig()) -> dict:
    """New labels from `labeler` for an existing corpus from its audio/, under the
    configuration it was built with (corpus.json's, whole, and left as it is): frames and
    audio are not touched. A version is
    published only when every ok video has its labels; failures are named, and a re-run
    redoes only them."""
    layout = CorpusLayout(corpus)
    if not exists(layout.videos):
        raise ValueError(f"{corpus}: not a corpus (no videos.parquet)")
    meta = corpus_meta(corpus)
    with corpus_lock(corpus, "relabel"):
        return _relabel(layout, meta, labeler, make_default, ray)


def _relabel(layout: CorpusLayout, meta: dict, labeler: LabelerConfig, make_default: bool, ray: RayConfig) -> dict:
    corpus = layout.location
    damaged = check_files(expected_files(layout, {"frames": meta.get("files", {}).get("frames", {})}))
    if damaged:
        raise ValueError(f"{corpus}: frames parts damaged, new labels would not match them: {'; '.join(damaged[:5])}. "
                         "Re-run the build to repair them first (`pianocorpus verify` lists every problem)")
    config = BuildConfig.of_corpus(corpus, meta["config"], ray=ray, manifest=meta.get("manifest"))
    videos = [v for v in pq.read_table(pull(layout.videos)).to_pylist() if v["status"] == "ok"]
    started_here = not ray_is_up()
    labeler = _resolved(labeler, config.ray)
    spec, version = _label_spec(config, labeler)
    started = time.perf_counter()
    cluster = init_ray(config.ray)
    items = [{k: v[k] for k in ("video_id", "status", "n_frames", "fps")} for v in videos]
    label_stage(cluster.data.from_items(items), config, labeler, spec, version,
                int(cluster.cluster_resources().get("GPU", 0)),
                int(cluster.cluster_resources().get("CPU", 1))).materialize()
    for line in new_actor_lines(layout.work, set()):
        log.info("%s", line)
    with ray_stopping(started_here):
        layout.work.stage_records(version)
        records = {v["video_id"]: _label_record(layout, version, v["video_id"]) for v in videos}
        failed = {v: r.get("label_error", "no label record") for v, r in records.items() if r.get("label_status") != "ok"}
        if failed:
            named = "; ".join(f"{v}: {error}" for v, error in list(failed.items())[:10])
            raise RuntimeError(f"labels failed for {len(failed)} of {len(videos)} video(s), version {version} not "
                               f"published: {named}. The others' labels are kept; re-run relabel to retry these.")
        target = start_generation(layout)  # the published one's files, linked, but for this version's
        carry_over(layout, target, lambda path: path.name != "corpus.json" and _label_version_of(path) != version)
        stats = write_label_version(config, target, videos, version, spec, make_default)
        publish(target)
    notes = sum(r["n_notes"] or 0 for r in records.values())
    return {**stats, "label_version": version, "notes": notes, "seconds": round(time.perf_counter() - started, 1)}
