"""Model, metrics, the train loop (loss falls, checkpoints, resume) and `pianocorpus eval`."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from sklearn import metrics as skm

from labeling.metrics import frame_scores, frame_scores_per_frame
from tests.handmade_corpus import write_corpus
from training.data import open_split
from training.model import Video2Roll, key_columns
from training.train import TrainConfig, evaluate, load_checkpoint, predict, train

VIDEOS = {"a": ("train", [True] * 40), "b": ("train", [True] * 30 + [False] * 3 + [True] * 17),
          "t": ("test", [True] * 24)}
SMALL = (25, 225)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return write_corpus(tmp_path_factory.mktemp("trainable") / "c", VIDEOS, rows_per_part=40, shard_samples=30)


@pytest.mark.parametrize("keys,head,n", [("88", "keys", 88), ("audeo51", "keys", 51), ("88", "global", 88)])
def test_model_maps_five_frames_to_one_logit_per_key(keys, head, n):
    model = Video2Roll(keys, size=(100, 900), head=head).eval()
    frames = torch.randint(0, 256, (2, 5, 100, 900), dtype=torch.uint8)
    logits = model(frames)
    assert logits.shape == (2, n)
    assert torch.allclose(logits, model(frames.float() / 255), atol=1e-5)
    assert model.stem[0].in_channels == 5


def test_key_columns_average_each_key_over_its_own_columns():
    weights = key_columns(104, 0, 88).numpy()  # two cells per white key
    assert np.allclose(weights.sum(axis=0), 1)
    assert set(np.flatnonzero(weights[:, 0])) == {0, 1}  # A0: the first white key
    assert set(np.flatnonzero(weights[:, 87])) == {102, 103}  # C8: the last
    assert set(np.flatnonzero(weights[:, 1])) <= {1, 2}  # A#0 straddles A0 and B0


def test_audeo_frame_metrics_match_sklearn_samples_average():
    rng = np.random.default_rng(0)
    reference = rng.random((200, 88)) < 0.05
    estimate = reference ^ (rng.random((200, 88)) < 0.03)
    reference[:20], estimate[:20] = False, False  # silent frames count 1.0 in Audeo's figures
    estimate[20:30] = False  # nothing predicted where keys sound: precision 1 (zero_division), recall 0
    mine = frame_scores_per_frame(reference, estimate)
    kwargs = {"average": "samples", "zero_division": 1}
    assert mine["precision"] == pytest.approx(skm.precision_score(reference, estimate, **kwargs))
    assert mine["recall"] == pytest.approx(skm.recall_score(reference, estimate, **kwargs))
    assert mine["f1"] == pytest.approx(skm.f1_score(reference, estimate, **kwargs))
    assert mine["accuracy"] == pytest.approx(skm.jaccard_score(reference, estimate, **kwargs))
    # By hand: a silent frame (1.0 on all four), and a frame with keys {0, 1} where {0} was found.
    reference, estimate = np.zeros((2, 88), bool), np.zeros((2, 88), bool)
    reference[1, [0, 1]], estimate[1, 0] = True, True
    assert frame_scores_per_frame(reference, estimate) == pytest.approx(
        {"precision": 1.0, "recall": 0.75, "accuracy": 0.75, "f1": (1 + 2 / 3) / 2, "frames": 2})
    summed = frame_scores(reference, estimate)
    assert (summed["precision"], summed["recall"], summed["accuracy"]) == (1.0, 0.5, 0.5)


def test_training_lowers_the_loss_and_resumes(corpus, tmp_path):
    run = tmp_path / "run"
    config = TrainConfig(corpus=str(corpus), out=str(run), epochs=3, batch_size=8, size=SMALL, workers=0,
                         shuffle_buffer=64, lr=3e-3)
    history = train(config, progress=False)
    assert [h["epoch"] for h in history] == [1, 2, 3]
    assert history[-1]["train_loss"] < 0.7 * history[0]["train_loss"]
    assert history[0]["samples"] == len(list(open_split(corpus, "train")))
    assert set(history[0]["eval"]) == {"test"}  # no valid split: test is watched
    assert (run / "checkpoints" / "epoch-003.pt").is_file() and (run / "last.pt").is_file()
    assert len((run / "history.jsonl").read_text().splitlines()) == 3

    resumed = train(TrainConfig(**{**config.__dict__, "epochs": 4}), progress=False)
    assert [h["epoch"] for h in resumed] == [1, 2, 3, 4]
    assert resumed[:3] == history
    assert [h["lr"] for h in resumed] == pytest.approx([3e-3 * 0.8 ** k for k in range(4)])  # the schedule resumed too
    before = torch.load(run / "checkpoints" / "epoch-003.pt", weights_only=False)
    after = torch.load(run / "checkpoints" / "epoch-004.pt", weights_only=False)
    assert not torch.equal(before["model"]["head.bias"], after["model"]["head.bias"])  # it trained on from epoch 3

    with pytest.raises(ValueError, match="other keys"):
        train(TrainConfig(**{**config.__dict__, "epochs": 5, "keys": "audeo51"}), progress=False)


def test_eval_command_prints_and_writes_both_metrics(corpus, tmp_path):
    run = tmp_path / "run"
    train(TrainConfig(corpus=str(corpus), out=str(run), epochs=1, batch_size=8, size=SMALL, workers=0), progress=False)
    out = tmp_path / "metrics.json"
    result = subprocess.run([sys.executable, "-m", "pipelines.cli", "eval", str(corpus), "--checkpoint",
                             str(run / "last.pt"), "--split", "train", "--split", "test", "--json", str(out)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "Audeo per-frame" in result.stdout and "overall" in result.stdout
    written = json.loads(out.read_text())
    assert set(written["splits"]) == {"train", "test"} and written["threshold"] == 0.4

    model, _ = load_checkpoint(run / "last.pt")
    reference, probability, _, _ = predict(model, open_split(corpus, "test", size=SMALL), torch.device("cpu"))
    expected = frame_scores_per_frame(reference, probability >= 0.4)
    assert written["splits"]["test"]["audeo"] == pytest.approx(expected)
    assert written["splits"]["test"]["summed"]["f1"] == pytest.approx(frame_scores(reference, probability >= 0.4)["f1"])
    both = evaluate(model, corpus, ["train", "test"], label_version=None, keys="88", threshold=0.4,
                    device=torch.device("cpu"))
    frames = sum(m["frames"] for m in both["splits"].values())
    assert both["overall"]["frames"] == frames == written["overall"]["frames"]


def test_eval_names_a_missing_checkpoint(corpus, tmp_path):
    result = subprocess.run([sys.executable, "-m", "pipelines.cli", "eval", str(corpus), "--checkpoint",
                             str(tmp_path / "nope.pt")], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "nope.pt: no such checkpoint" in result.stderr


def test_a_corpus_without_valid_or_test_trains_without_evaluation(tmp_path):
    corpus = write_corpus(tmp_path / "c", {"a": ("train", [True] * 12)})
    history = train(TrainConfig(corpus=str(corpus), out=str(tmp_path / "run"), epochs=1, batch_size=4, size=SMALL,
                                workers=0), progress=False)
    assert history[0]["eval"] == {} and history[0]["samples"] == 8
    with pytest.raises(ValueError, match="no split to evaluate"):
        evaluate(load_checkpoint(tmp_path / "run" / "last.pt")[0], corpus, [], label_version=None, keys="88",
                 threshold=0.4, device=torch.device("cpu"))
