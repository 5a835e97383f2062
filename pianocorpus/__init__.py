"""pianocorpus: clean, sharded, labelled corpora from top-view piano videos.

The documented Python API in one namespace (the command line calls the same functions):

    import pianocorpus as pc
    stats = pc.build("demo", pc.BuildConfig(out="demo/corpus"))
    pc.relabel("demo/corpus", pc.LabelerConfig("transkun"))
    result, audit_json, report_html = pc.audit_corpus("demo/corpus")
    train_set = pc.open_split("demo/corpus", "train")

Names load on first use, so `import pianocorpus` stays light (no torch, no Ray).
"""

from __future__ import annotations

from contract.meta import tool_version

__version__ = tool_version()

# public name -> module that defines it
_API = {
    "BuildConfig": "contract.config", "FetchOptions": "contract.config", "FrameConfig": "contract.config",
    "LabelerConfig": "contract.config", "RayConfig": "contract.config", "ShardConfig": "contract.config",
    "CorpusLayout": "contract.layout",
    "build": "pipelines.build", "relabel": "pipelines.build",
    "audit_corpus": "pipelines.audit",
    "verify_corpus": "contract.integrity",
    "load_manifest": "manifests.loader",
    "fetch_manifest": "curation.fetch",
    "locate": "curation.keyboard",
    "transcribe_file": "labeling.label",
    "make_videos": "synth.video",
    "open_split": "training.data", "count_windows": "training.data",
    "TrainConfig": "training.train", "train": "training.train", "evaluate_checkpoint": "training.train",
    "doctor": "pipelines.doctor",
}

__all__ = ["__version__", *_API]


def __getattr__(name: str):
    module = _API.get(name)
    if module is None:
        raise AttributeError(f"module 'pianocorpus' has no attribute {name!r}")
    from contract.extras import imported

    value = getattr(imported(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
