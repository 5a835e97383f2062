"""The package as users meet it: the namespace, the wheel's contents, the command line's
flags and help, logging, `doctor`, and what a missing optional package says."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _python(code: str, env: dict | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env={**os.environ, **(env or {})}, cwd=cwd or ROOT)


def test_the_pianocorpus_namespace_loads_the_documented_api_on_first_use():
    result = _python("import sys, pianocorpus as pc; assert 'torch' not in sys.modules and 'ray' not in sys.modules; "
                     "print(pc.__version__, pc.build.__module__, pc.open_split.__module__, pc.audit_corpus.__module__, "
                     "pc.locate.__module__, pc.BuildConfig.__module__)")
    assert result.returncode == 0, result.stderr
    version, *modules = result.stdout.split()
    assert version[0].isdigit() and modules == ["pipelines.build", "training.data", "pipelines.audit",
                                                "curation.keyboard", "contract.config"]
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        import pianocorpus

        pianocorpus.nope  # noqa: B018


def test_the_wheel_ships_the_manifests_and_py_typed(tmp_path):
    source = tmp_path / "source"  # a copy of the tracked files: building writes build/ beside them
    tracked = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], capture_output=True, text=True,
                             cwd=ROOT, check=True).stdout.split()
    for name in tracked:
        if (ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            (source / name).write_bytes((ROOT / name).read_bytes())
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                             "-w", str(tmp_path / "dist"), str(source)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    [wheel] = (tmp_path / "dist").glob("pianocorpus-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {"manifests/demo.csv", "manifests/audeo.csv", "manifests/pianoyt.csv", "pianocorpus/py.typed",
            "pianocorpus/__init__.py"} <= names
    metadata = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("METADATA"))).decode()
    for extra in ("train", "labels", "all"):
        assert f"Provides-Extra: {extra}" in metadata
    assert "deno" in metadata and "yt-dlp[default]" in metadata


def _options(parser: argparse.ArgumentParser, prefix: str = ""):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield from _options(child, f"{prefix} {name}".strip())
        elif not isinstance(action, (argparse._HelpAction, argparse._VersionAction)):
            yield prefix, action, parser


def test_every_option_has_help_and_shows_its_default():
    from pipelines.cli import build_parser

    checked = 0
    for command, action, parser in _options(build_parser()):
        name = "/".join(action.option_strings) or action.dest
        assert action.help, f"pianocorpus {command} {name}: no help"
        shown = parser.formatter_class(prog="x")._get_help_string(action)
        if action.option_strings and action.default not in (None, False, [], argparse.SUPPRESS):
            assert "default" in shown, f"pianocorpus {command} {name}: default {action.default!r} not shown"
        checked += 1
    assert checked > 80


def test_version_and_the_auto_labeler_line_is_logged_unless_quiet():
    from pianocorpus import __version__

    result = subprocess.run([sys.executable, "-m", "pianocorpus", "--version"], capture_output=True, text=True, cwd=ROOT)
    assert result.stdout.strip() == f"pianocorpus {__version__}"
    code = ("from pipelines.cli import configure_logging; configure_logging(quiet={q}); "
            "from labeling.transcribers import resolve_labeler; print(resolve_labeler('auto'))")
    loud, quiet = _python(code.format(q=False)), _python(code.format(q=True))
    assert "labeler auto -> basic-pitch (no GPU)" in loud.stderr and loud.stdout.strip() == "basic-pitch"
    assert "labeler auto" not in quiet.stderr and quiet.stdout.strip() == "basic-pitch"


def test_a_missing_optional_package_says_which_extra_to_install(tmp_path):
    """Imports blocked as on a machine where they were never installed."""
    train = _python(f"import sys; sys.modules['torch'] = None; from pipelines.cli import main; "
                    f"sys.exit(main(['train', '{tmp_path}', '--out', '{tmp_path / 'run'}']))")
    assert train.returncode == 2 and "pip install 'pianocorpus[train]'" in train.stderr, train.stderr
    fallback = _python("import sys; sys.modules['basic_pitch'] = None; "
                       "from labeling.transcribers import resolve_labeler; print(resolve_labeler('auto'))")
    assert fallback.stdout.strip() == "transkun", fallback.stderr
    none = _python("import sys; sys.modules['basic_pitch'] = sys.modules['transkun'] = None; "
                   "from labeling.transcribers import resolve_labeler; resolve_labeler('auto')")
    assert "pip install --no-deps basic-pitch==0.4.0" in none.stderr and "MissingExtra" in none.stderr
    asked = _python("import sys; sys.modules['transkun'] = None; "
                    "from labeling.transcribers import resolve_labeler; resolve_labeler('transkun')")
    assert "labeler transkun needs transkun" in asked.stderr and "pianocorpus[labels]" in asked.stderr


def test_doctor_passes_with_the_set_up():
    result = subprocess.run([sys.executable, "-m", "pianocorpus", "doctor"], capture_output=True, text=True,
                            timeout=300, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert any(line.startswith("ok") and "JavaScript runtime" in line and "deno 2." in line for line in lines)
    assert any(line.startswith("ok") and "challenge solver" in line for line in lines)
    assert lines[-1].startswith("0 missing")


def test_doctor_reports_a_missing_javascript_runtime_and_how_to_get_it(tmp_path):
    """A machine set up without deno: an environment whose scripts folder has no deno (a
    bare venv reading our packages), the deno package absent, no deno on PATH."""
    import site
    import venv

    venv.create(tmp_path / "bare", with_pip=False)
    bare_path = os.pathsep.join(p for p in os.environ.get("PATH", "").split(os.pathsep)
                                if not (Path(p) / "deno").exists())
    packages = os.pathsep.join([str(ROOT), *site.getsitepackages()])
    result = subprocess.run([str(tmp_path / "bare" / "bin" / "python"), "-c",
                             "import sys; sys.modules['deno'] = None; from pipelines.cli import main; sys.exit(main(['doctor']))"],
                            capture_output=True, text=True, timeout=300, cwd=tmp_path,
                            env={**os.environ, "PATH": bare_path, "PYTHONPATH": packages})
    assert result.returncode == 1, result.stdout + result.stderr
    [line] = [line for line in result.stdout.splitlines() if "JavaScript runtime" in line and line.split()[0] != "1"
              and not line.startswith(" ")]
    assert line.startswith("missing") and "no deno found" in line
    assert "pip install 'deno>=2.3'" in result.stdout
    assert "1 missing: JavaScript runtime (YouTube)" in result.stdout.splitlines()[-1]


def test_doctor_checks_a_cookies_file(tmp_path):
    from pipelines.doctor import doctor

    good, bad = tmp_path / "cookies.txt", tmp_path / "notes.txt"
    good.write_text("# Netscape HTTP Cookie File\n.youtube.com\tTRUE\t/\tTRUE\t0\tPREF\tf=1\n")
    bad.write_text("hello")
    found = {str(p): [c for c in doctor(cookies=p) if c.name == "cookies file"][0].status
             for p in (good, bad, tmp_path / "absent.txt")}
    assert found == {str(good): "ok", str(bad): "missing", str(tmp_path / "absent.txt"): "missing"}


def test_build_progress_counts_videos_frames_and_seconds_from_the_work_records(tmp_path, caplog):
    """Not a terminal: one line per interval through the logger, and a last one; the
    videos done before this run are counted apart from this run's rates."""
    import io
    import json
    import logging
    import threading
    import time

    from contract.layout import WorkLayout
    from pipelines.progress import BuildProgress

    work = WorkLayout(tmp_path / ".work")
    work.video_json("a").parent.mkdir(parents=True)
    work.video_json("a").write_text(json.dumps({"status": "ok", "n_kept": 100, "duration_s": 60.0}))

    def finish_two():
        time.sleep(0.3)
        work.video_json("b").write_text(json.dumps({"status": "ok", "n_kept": 250, "duration_s": 90.0}))
        time.sleep(0.3)
        work.video_json("c").write_text(json.dumps({"status": "failed", "n_kept": 0, "duration_s": None}))

    caplog.set_level(logging.INFO, logger="pipelines.progress")
    writer = threading.Thread(target=finish_two)
    with BuildProgress(work, ["a", "b", "c", "d"], every_s=0.1, stream=io.StringIO(), label_version="v1"):
        writer.start()
        writer.join()
        work.label_record("v1", "a").parent.mkdir(parents=True)
        work.label_record("v1", "a").write_text(json.dumps({"label_status": "ok"}))
        work.label_record("v1", "b").write_text(json.dumps({"label_status": "failed", "label_error": "E: e"}))
    lines = [r.getMessage() for r in caplog.records if r.name == "pipelines.progress"]
    assert len(lines) >= 3 and lines[-1].endswith("(done)")
    assert lines[-1].startswith("build: 3/4 videos (2 ok, 1 failed, 1 from an earlier run)")
    assert "350 frames kept" in lines[-1] and "1.5 min of video this run" in lines[-1] and "1/2 labelled (1 failed)" in lines[-1]
    assert any(line.startswith("build: 1/4 videos") for line in lines)  # seen before the others came


def _parsed(*argv):
    from pipelines.cli import build_parser

    words = [str(a) for a in argv]
    args = build_parser().parse_args(words)
    args.argv = words  # as main() keeps them
    return args


def test_build_config_files_toml_yaml_and_a_corpus_json_with_options_over_them(tmp_path):
    from contract.config import BuildConfig, FrameConfig, LabelerConfig, ShardConfig, VideoSettings
    from pipelines.cli import _build_config

    original = BuildConfig(out=tmp_path / "a", settings=VideoSettings(FrameConfig(fps=30.0, keyboard_similarity=0.6,
                                                                                   crop_width=600, crop_height=80)),
                           labeler=LabelerConfig("transkun", {"onset_threshold": 0.4}, sustain_pedal=True),
                           shards=ShardConfig(rows_per_part=77))
    corpus_json = tmp_path / "corpus.json"
    corpus_json.write_text(json.dumps({"format": "pianocorpus/1", "config": original.recorded(), "manifest": "m.csv"}))
    again = _build_config(_parsed("build", "--out", tmp_path / "b", "--config", corpus_json))
    assert again.recorded() == original.recorded()  # the whole record, thresholds the CLI has no option for too
    over = _build_config(_parsed("build", "--out", tmp_path / "b", "--config", corpus_json, "--fps", "25",
                                 "--labeler", "basic-pitch"))
    assert (over.settings.frames.fps, over.labeler.name, over.labeler.params, over.shards.rows_per_part) == \
        (25.0, "basic-pitch", {"onset_threshold": 0.4}, 77)
    toml = tmp_path / "c.toml"
    toml.write_text('rows_per_part = 500\n[frames]\nsilence_db = -45.0\n[labeler]\nname = "transkun"\n')
    yaml_file = tmp_path / "c.yaml"
    yaml_file.write_text("rows_per_part: 500\nframes:\n  silence_db: -45.0\nlabeler:\n  name: transkun\n")
    for path in (toml, yaml_file):
        config = _build_config(_parsed("build", "--out", tmp_path / "b", "--config", path))
        assert (config.shards.rows_per_part, config.settings.frames.silence_db, config.labeler.name) == \
            (500, -45.0, "transkun")
        assert config.settings.frames.fps == 25.0 and config.shards.shard_samples == 10_000  # the rest: defaults
    bad = tmp_path / "bad.toml"
    bad.write_text('[frames]\nfsp = 30\n')
    with pytest.raises(ValueError, match="unknown frames setting.*fsp"):
        _build_config(_parsed("build", "--out", tmp_path / "b", "--config", bad))
    bad.write_text('shard_size = 3\n')
    with pytest.raises(ValueError, match=r"bad.toml: unknown setting\(s\) shard_size"):
        _build_config(_parsed("build", "--out", tmp_path / "b", "--config", bad))


def test_train_and_relabel_config_files(tmp_path):
    from pipelines.cli import _given, _labeler_given, _train_config_file
    from training.train import TrainConfig

    path = tmp_path / "train.toml"
    path.write_text('[train]\nepochs = 3\nlr = 0.01\nsize = [50, 450]\n[labeler]\nname = "transkun"\n')
    args = _parsed("train", tmp_path, "--out", tmp_path / "run", "--config", path, "--lr", "0.002")
    config = _train_config_file(args, TrainConfig(corpus="c", out="r", lr=args.lr))
    assert (config.epochs, config.lr, config.size) == (3, 0.002, (50, 450))  # --lr was given: it wins
    path.write_text('[train]\nepoch = 3\n')
    with pytest.raises(ValueError, match="unknown train setting.*epoch"):
        _train_config_file(_parsed("train", tmp_path, "--out", tmp_path / "run", "--config", path), TrainConfig("c", "r"))
    relabel = _parsed("relabel", tmp_path, "--param", "onset_threshold=0.6")
    assert _labeler_given(relabel, _given(relabel)) == {"params": {"onset_threshold": 0.6}}
