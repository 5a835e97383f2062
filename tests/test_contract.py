"""The contract's one places: the configuration read back whole, the error vocabulary as
the README shows it and as the tests reach it, and the README's Python examples."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import pytest

from contract.config import BuildConfig, FetchOptions, FrameConfig, LabelerConfig, ShardConfig, VideoSettings
from contract.layout import CorpusLayout
from contract.records import VIDEOS_SCHEMA, new_video_row, video_totals
from contract.vocab import DROP_REASONS, ERROR_CLASSES, Failure

ROOT = Path(__file__).resolve().parents[1]


def test_the_recorded_configuration_reads_back_whole(tmp_path):
    config = BuildConfig(out=tmp_path, settings=VideoSettings(FrameConfig(fps=10, crop_width=600, crop_height=80), 12),
                         labeler=LabelerConfig("basic-pitch", {"onset_threshold": 0.4}, True, 2),
                         shards=ShardConfig(30, 40, 2**20),
                         fetch=FetchOptions(max_duration_s=60, proxy="http://user:secret@proxy:3128",
                                            cookies=tmp_path / "cookies.txt"))
    recorded = config.recorded()
    assert "secret" not in repr(recorded) and "cookies" not in recorded["fetch"]
    again = BuildConfig.of_corpus(tmp_path, recorded)
    assert again.recorded() == recorded
    assert (again.settings, again.shards, again.labeler) == (config.settings, config.shards, config.labeler)
    assert again.settings.digest() == config.settings.digest() != VideoSettings().digest()
    relabelled = BuildConfig.of_corpus(tmp_path, recorded, labeler=LabelerConfig("transkun"))
    assert relabelled.settings.frames.fps == 10 and relabelled.shards.shard_samples == 40


def test_a_video_row_has_every_column_and_counts_each_drop_reason():
    row = new_video_row("v", "demo", "train", None)
    assert list(row) == VIDEOS_SCHEMA.names and row["status"] == "failed"
    assert all(f"n_{reason}" in row for reason in DROP_REASONS)
    totals = video_totals([{**row, "status": "skipped", "error_class": "no_url"},
                           {**row, "status": "failed", "error_class": "corrupt"}])
    assert (totals["failed"], totals["skipped"]) == ({"corrupt": 1}, {"no_url": 1})


def test_failures_take_only_known_classes_and_no_url_is_a_skip():
    assert Failure("no_url", "x").status == "skipped" and Failure("corrupt", "x").status == "failed"
    with pytest.raises(ValueError, match="unknown error class 'nope'"):
        Failure("nope", "x")


def test_the_readme_lists_the_error_classes_as_the_vocabulary_defines_them():
    readme = (ROOT / "README.md").read_text()
    table = readme.split("<!-- error classes")[1].split("<!-- end of error classes")[0]
    rows = re.findall(r"^\| `(\w+)` \| ([^|]+) \| (.+) \|$", table, re.M)
    assert [(c, stage.strip(), meaning.strip()) for c, stage, meaning in rows] == \
        [(c, stage, meaning) for c, (stage, meaning) in ERROR_CLASSES.items()]


def test_every_error_class_is_reached_by_a_test():
    """Each class is asserted as a row's (or a fetch record's) class somewhere in the tests."""
    text = "\n".join(p.read_text() for p in (ROOT / "tests").glob("test_*.py") if p.name != "test_contract.py")
    missing = [c for c in ERROR_CLASSES if not re.search(rf"""["']{c}["']""", text)]
    assert not missing, f"no test reaches error class(es) {missing}"


def test_the_readme_python_examples_import_what_they_call():
    block = (ROOT / "README.md").read_text().split("## From Python")[1].split("```python")[1].split("```")[0]
    imports = "\n".join(line for line in block.splitlines() if line.startswith("from "))
    namespace: dict = {}
    exec(imports, namespace)  # noqa: S102 - our own README
    called = set(re.findall(r"\b([A-Za-z_]\w*)\(", block))
    assert called <= set(namespace) | {"dict", "print"}, called - set(namespace)


def test_the_layout_names_each_file_once(tmp_path):
    layout = CorpusLayout(tmp_path)
    assert layout.label_part("v1", "train", layout.frames_dir("train") / "part-00003.parquet") == \
        tmp_path / "labels" / "v1" / "train" / "part-00003.parquet"
    assert layout.wds_stats("v1", "train-000002.tar") == tmp_path / "stats" / "wds" / "v1" / "train-000002_stats.json"
    assert layout.work.label_rolls("v1", "a") == tmp_path / ".work" / "labels" / "v1" / "a.parquet"
    assert replace(BuildConfig(out=tmp_path), cache=None).fetch_options().cache == tmp_path / ".cache"


def test_a_published_layout_stays_with_its_generation_when_another_is_published(tmp_path):
    from contract.publish import carry_over, publish, start_generation

    first = start_generation(CorpusLayout(tmp_path))
    first.corpus_json.write_text('{"label_versions": {}, "n": 1}')
    publish(first)
    pinned, live = CorpusLayout.published(tmp_path), CorpusLayout(tmp_path)
    second = start_generation(CorpusLayout(tmp_path))
    carry_over(CorpusLayout(tmp_path), second, lambda path: True)
    assert second.corpus_json.stat().st_ino == first.corpus_json.stat().st_ino  # shared files are links
    second.corpus_json.unlink()
    second.corpus_json.write_text('{"label_versions": {}, "n": 2}')
    publish(second)
    assert (pinned.generation, str(pinned)) == ("g000001", str(tmp_path)) and '"n": 1' in pinned.corpus_json.read_text()
    assert '"n": 2' in CorpusLayout(tmp_path).corpus_json.read_text() and live.generation == "g000002"
    assert '"n": 2' in (tmp_path / "corpus.json").read_text()  # the name at the top follows the pointer
    publish(start_generation(CorpusLayout(tmp_path)))
    assert CorpusLayout(tmp_path).generations() == ["g000002", "g000003"]  # the one before stays, older ones go
