"""What each published file of a corpus must hold, and the check of it.

corpus.json's `files` records, for `videos.parquet`, every frames part, every labels part
and every WebDataset shard: its name, size and sha256, and what it holds (rows, kept
frames, samples). Readers check names and sizes when they open a split (cheap); `audit`
does too; `verify` also checks the hashes. A problem names the file and what a re-run
repairs: the shards are always re-assembled from CORPUS/.work.
"""

from __future__ import annotations

from pathlib import Path

from contract.hashing import sha256_file
from contract.layout import CorpusLayout
from contract.store import file_size, files_in, pull


def file_record(path: Path, **holds) -> dict:
    """A published file's entry: name, bytes, sha256, and what it holds (rows, samples...)."""
    pull(path)
    return {"name": path.name, "bytes": path.stat().st_size, "sha256": sha256_file(path), **holds}


def expected_files(corpus: CorpusLayout, files: dict) -> list[tuple[Path, dict]]:
    """(path, record) for every file corpus.json's `files` lists."""
    out = []
    if "videos" in files:
        out.append((corpus.videos, files["videos"]))
    for split, parts in files.get("frames", {}).items():
        out += [(corpus.frames_dir(split) / p["name"], p) for p in parts]
    for version, splits in files.get("labels", {}).items():
        for split, parts in splits.items():
            out += [(corpus.label_parts_dir(version, split) / p["name"], p) for p in parts]
    for version, splits in files.get("wds", {}).items():
        for split, shards in splits.items():
            out += [(corpus.wds_dir(version, split) / s["name"], s) for s in shards]
    for version, record in files.get("av", {}).items():
        out.append((corpus.av_table(version), record))
    for version, videos in files.get("hands", {}).items():
        out += [(corpus.hands_dir(version) / r["name"], r) for r in videos.values()]
    return out


def check_files(entries: list[tuple[Path, dict]], hashes: bool = False) -> list[str]:
    """`PATH: what is wrong` for each listed file that is missing, of another size, or
    (with `hashes`) of other content."""
    problems = []
    for path, record in entries:
        size = file_size(path)
        if size is None:
            problems.append(f"{path}: missing (it holds {_holds(record)})")
        elif size != record["bytes"]:
            problems.append(f"{path}: {size} bytes, {record['bytes']} expected (damaged or cut short)")
        elif hashes and sha256_file(pull(path)) != record["sha256"]:
            problems.append(f"{path}: its content changed (sha256 differs from corpus.json's)")
    return problems


def unlisted_files(corpus: CorpusLayout, files: dict) -> list[str]:
    """Parts and shards on disk that corpus.json does not list (left by another build)."""
    listed = {path for path, _ in expected_files(corpus, files)}
    found = [p for split in files.get("frames", {}) for p in corpus.frame_parts(split)]
    for version, splits in files.get("wds", {}).items():
        found += [p for split in splits for p in corpus.wds_shards(version, split)]
    return [f"{p}: not listed in corpus.json (stale)" for p in found if p not in listed]


def _holds(record: dict) -> str:
    return ", ".join(f"{v} {k}" for k, v in record.items() if k not in ("name", "bytes", "sha256")) or "data"


def label_parts_match_frames(corpus: CorpusLayout, files: dict) -> list[str]:
    """Each label version's parts must be named and sized (in rows) as the frames parts
    they label: a version made before the frames were rebuilt no longer labels them."""
    problems = []
    frames = {split: [(p["name"], p["rows"]) for p in parts] for split, parts in files.get("frames", {}).items()}
    for version, splits in files.get("labels", {}).items():
        for split, parts in splits.items():
            if [(p["name"], p["rows"]) for p in parts] != frames.get(split):
                problems.append(f"{corpus.label_parts_dir(version, split)}: label version {version} was made for "
                                "other frames parts than the corpus has now: relabel to make it again")
    return problems


def verify_corpus(root: str | Path | CorpusLayout, hashes: bool = True) -> dict:
    """`pianocorpus verify`: every listed file present, of its size and (with `hashes`)
    content; no stale part; labels made for these frames. Returns the problems and what
    repairs them."""
    from contract.meta import corpus_meta

    corpus = CorpusLayout.published(root)
    files = corpus_meta(corpus).get("files")
    if files is None:
        return {"problems": [f"{corpus.corpus_json}: no file records (built before they were kept): rebuild to add them"],
                "repair": "re-run the build", "files": 0}
    entries = expected_files(corpus, files)
    problems = check_files(entries, hashes) + unlisted_files(corpus, files) + label_parts_match_frames(corpus, files)
    has_work = bool(files_in(corpus.work.root / "frames", "*.parquet"))
    repair = ("nothing to repair" if not problems else
              "re-run the same `pianocorpus build MANIFEST --out CORPUS` (and, for a version made by relabel, the same "
              "relabel): the shards are re-assembled from CORPUS/.work" if has_work else
              "the work state (CORPUS/.work) is gone: build the corpus again from its manifest")
    return {"problems": problems, "repair": repair, "files": len(entries)}
