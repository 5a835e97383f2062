"""Train and evaluate visual-transcription models on a corpus's shards.

Three models share the epoch loop, checkpoints and resume here (`TrainConfig.model`):
"video2roll" (training/model.py, below), "roll2midi" (Audeo's second stage,
training/roll2midi.py) and "onset" (a Sight-to-Sound-style onset model, training/onset.py);
each of those modules says what differs (its networks, batches, step and metrics).

For Video2Roll, `train` runs epochs of Adam on BCE-with-logits over the train split (the learning rate
decays by `lr_decay` per epoch: on a few videos the test F1 swings from epoch to epoch at
a constant rate), evaluates after each epoch, and writes into the run folder:

    RUN/run.json                    the TrainConfig
    RUN/history.jsonl               one line per epoch: loss, seconds, samples/s, metrics
    RUN/checkpoints/epoch-NNN.pt    model, optimizer, config, history after epoch NNN
    RUN/last.pt                     the newest of those (what a re-run resumes from)

A re-run with the same run folder resumes after the last finished epoch (the corpus, label
version, keys, input size and head must be the same; `epochs` may grow). GPU when torch
sees one, CPU otherwise. `evaluate` gives both frame metrics at the decision threshold:
Audeo's (per frame, then averaged; empty-and-empty frames count 1.0) and the summed ones
(TP/FP/FN over all frames and keys, as mir_eval.multipitch), per split and overall.
"""

from __future__ import annotations

import importlib
import json
import logging
import shutil
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from contract.atomic import atomic_json, atomic_text, atomic_write
from contract.meta import corpus_label_version, corpus_splits
from labeling.metrics import frame_scores, frame_scores_per_frame
from training.data import count_windows, open_split
from training.model import Video2Roll

log = logging.getLogger(__name__)
# What a resumed run must share with the run it continues, per model.
RESUME_KEYS = {"video2roll": ("model", "corpus", "label_version", "keys", "size", "head"),
               "roll2midi": ("model", "corpus", "label_version", "keys", "source", "window"),
               "onset": ("model", "corpus", "label_version", "keys", "size", "head")}
# model -> where its network, its training parts and its checkpoint evaluation are, as
# "module:name" (imported on use: those modules import this one)
MODELS = {
    "video2roll": {"network": "training.model:Video2Roll", "fit": "training.train:video2roll_fit",
                   "evaluate": "training.train:evaluate_video2roll"},
    "roll2midi": {"network": "training.roll2midi:Roll2Midi", "fit": "training.roll2midi:fit",
                  "evaluate": "training.roll2midi:evaluate_saved"},
    "onset": {"network": "training.onset:OnsetNet", "fit": "training.onset:fit",
              "evaluate": "training.onset:evaluate_saved"},
}


@dataclass
class TrainConfig:
    corpus: str
    out: str
    model: str = "video2roll"  # or "roll2midi" (needs `source`), "onset"
    label_version: str | None = None  # default: the corpus's default_label_version
    keys: str = "88"  # or "audeo51" (MIDI 36..86, as Audeo)
    epochs: int = 10
    batch_size: int = 16
    lr: float = 1e-3
    lr_decay: float = 0.8  # the learning rate is multiplied by this after each epoch
    threshold: float = 0.4  # Audeo's decision threshold on sigmoid outputs
    size: tuple[int, int] = (100, 900)  # input H, W (Audeo: 100x900)
    head: str = "keys"  # or "global" (Audeo's pooling)
    reader: str = "wds"  # or "parquet"
    workers: int = 1
    shuffle_buffer: int = 1000
    balanced: bool = False
    train_split: str = "train"
    eval_splits: list[str] = field(default_factory=list)  # default: valid if the corpus has it, else test
    max_minutes: float | None = None  # stop (and checkpoint) once training has run this long
    device: str = "auto"
    seed: int = 0
    # roll2midi: the Video2Roll run (folder, or a checkpoint) whose outputs it refines; window length in frames
    source: str | None = None
    window: int = 50  # 2 s at 25 fps, as Audeo
    adversarial_weight: float = 0.1  # the generator's GAN term beside its BCE reconstruction term
    # onset: the positive class's weight in the BCE (None: negatives / positives of the train split)
    pos_weight: float | None = None


def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _save_checkpoint(checkpoint: dict, run: Path) -> None:
    """checkpoints/epoch-NNN.pt, then the same bytes as last.pt; history.jsonl rewritten whole
    (so a resumed run never repeats a line)."""
    path = run / "checkpoints" / f"epoch-{checkpoint['epoch']:03d}.pt"
    atomic_write(path, lambda part: torch.save(checkpoint, part))
    atomic_write(run / "last.pt", lambda part: shutil.copyfile(path, part))
    atomic_text("".join(json.dumps({k: v for k, v in h.items() if k != "metrics"}) + "\n"
                        for h in checkpoint["history"]), run / "history.jsonl")


def load_checkpoint(path: str | Path, device: torch.device | None = None) -> tuple[torch.nn.Module, dict]:
    """The model of a checkpoint (on `device`, in eval mode) and the checkpoint itself;
    a checkpoint without `kind` (written before there were others) is a Video2Roll one."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such checkpoint")
    checkpoint = torch.load(path, map_location=device or "cpu", weights_only=False)  # our own file
    checkpoint.setdefault("kind", "video2roll")
    model = _model_part(checkpoint["kind"], "network")(**checkpoint["model_spec"])
    model.load_state_dict(checkpoint["model"])
    return model.to(device or "cpu").eval(), checkpoint


def _loader(dataset, batch_size: int, workers: int) -> DataLoader:
    return DataLoader(dataset, batch_size=batch_size, num_workers=workers, persistent_workers=False)


@torch.no_grad()
def predict(model: torch.nn.Module, dataset, device: torch.device, batch_size: int = 32, workers: int = 0,
            target: str = "roll"):
    """(reference rolls, sigmoid outputs, video ids, frames) over a dataset, in its order;
    `target` names the sample's reference roll ("roll", or e.g. "onset_roll" from a reader
    with that target)."""
    model.eval()
    refs, probs, ids, frames = [], [], [], []
    for batch in _loader(dataset, batch_size, workers):
        probs.append(torch.sigmoid(model(batch["frames"].to(device))).cpu().numpy())
        refs.append(batch[target].numpy() > 0.5)
        ids += list(batch["video_id"])
        frames += batch["frame"].tolist()
    if not refs:
        return np.zeros((0, model.n_keys), bool), np.zeros((0, model.n_keys)), ids, frames
    return np.concatenate(refs), np.concatenate(probs), ids, frames


def scores(reference: np.ndarray, estimate: np.ndarray) -> dict:
    summed = frame_scores(reference, estimate)
    return {"audeo": frame_scores_per_frame(reference, estimate),
            "summed": {k: summed[k] for k in ("precision", "recall", "accuracy", "f1", "tp", "fp", "fn")},
            "frames": int(len(reference))}


def evaluate(model: torch.nn.Module, corpus: str | Path, splits: list[str], *, label_version: str | None, keys: str,
             threshold: float, device: torch.device, reader: str = "wds", batch_size: int = 32,
             workers: int = 0) -> dict:
    """Frame metrics per split and over all of them together."""
    if not splits:
        raise ValueError(f"{corpus}: no split to evaluate")
    result, all_ref, all_est = {"splits": {}}, [], []
    for split in splits:
        dataset = open_split(corpus, split, reader, label_version=label_version, keys=keys, size=model.size)
        reference, probability, _, _ = predict(model, dataset, device, batch_size, workers)
        estimate = probability >= threshold
        result["splits"][split] = scores(reference, estimate)
        all_ref.append(reference)
        all_est.append(estimate)
    result["overall"] = scores(np.concatenate(all_ref), np.concatenate(all_est))
    result.update(label_version=corpus_label_version(corpus, label_version), keys=keys, threshold=threshold)
    return result


def evaluate_checkpoint(checkpoint: str | Path, corpus: str | Path, splits: list[str] = ("test",), *,
                        label_version: str | None = None, threshold: float | None = None, reader: str = "wds",
                        device: str = "auto", out: str | Path | None = None) -> dict:
    """`pianocorpus eval`: a checkpoint's metrics on a corpus's splits, at its own threshold
    and against its own label version unless told others, by its model's own evaluation;
    written as JSON to `out` (default CKPT.eval.json), whose path the result names."""
    where = pick_device(device)
    model, saved = load_checkpoint(checkpoint, where)
    out = Path(out) if out else Path(checkpoint).with_suffix(".eval.json")
    result = _model_part(saved["kind"], "evaluate")(
        model, saved, Path(checkpoint), corpus, list(splits), label_version=label_version or saved["label_version"],
        threshold=threshold if threshold is not None else saved["threshold"], reader=reader, device=where, out=out)
    result.update(model=saved["kind"], checkpoint=str(checkpoint), json=str(out))
    atomic_json(result, out)
    return result


def evaluate_video2roll(model: torch.nn.Module, saved: dict, checkpoint: Path, corpus: str | Path, splits: list[str], *,
                        label_version: str, threshold: float, reader: str, device: torch.device, out: Path) -> dict:
    """A Video2Roll checkpoint's frame metrics (`evaluate`)."""
    return evaluate(model, corpus, splits, device=device, reader=reader, label_version=label_version,
                    keys=saved["keys"], threshold=threshold)


def default_eval_splits(corpus: str | Path, train_split: str) -> list[str]:
    """valid if the corpus has it, else test, else none (then training runs without evaluation)."""
    splits = [s for s in corpus_splits(corpus) if s != train_split]
    for split in ("valid", "test"):
        if split in splits:
            return [split]
    return []


@dataclass
class Fit:
    """One model's part in the shared epoch loop (`train`): its networks and optimisers (all
    checkpointed and restored on resume), its batches, one training step, its evaluation."""

    model: torch.nn.Module  # the network eval loads (checkpoint "model", "model_spec")
    state: dict  # name -> optimiser, schedule or other network, checkpointed under that name
    schedules: list  # stepped after each epoch; the first one's learning rate goes in the history
    batches: Callable[[int], Iterable[dict]]  # epoch -> that epoch's batches
    steps: int  # batches per epoch (the progress bar's length)
    step: Callable[[dict], dict]  # one batch -> {"loss": float, "samples": int, other losses...}
    evaluate: Callable[[], dict]  # the metrics after an epoch: {"splits": {split: metrics}, ...}
    headline: Callable[[dict], dict]  # one split's metrics -> the figures each history line keeps
    saved: dict = field(default_factory=dict)  # more checkpoint keys (the source checkpoint...)
    info: dict = field(default_factory=dict)  # more keys on every history line (the positive rate...)


def _model_part(kind: str, part: str):
    """A model's training parts ("fit") or its checkpoint evaluation ("evaluate")."""
    if kind not in MODELS:
        raise ValueError(f"model {kind!r}: expected one of {', '.join(MODELS)}")
    module, name = MODELS[kind][part].split(":")
    return getattr(importlib.import_module(module), name)


def descend(optimizer: torch.optim.Optimizer, loss: torch.Tensor) -> float:
    """One gradient step on `loss`; its value."""
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return loss.item()


def epoch_loader(dataset, config: TrainConfig) -> Callable[[int], DataLoader]:
    """epoch -> batches of a reader, reshuffled per epoch."""
    def batches(epoch: int) -> DataLoader:
        dataset.set_epoch(epoch)
        return _loader(dataset, config.batch_size, config.workers)

    return batches


def train_reader(config: TrainConfig, **options):
    """The train split's reader, as `config` asks for it (`options`: more, e.g. targets)."""
    return open_split(config.corpus, config.train_split, config.reader, label_version=config.label_version,
                      keys=config.keys, size=config.size, shuffle_buffer=config.shuffle_buffer,
                      balanced=config.balanced, seed=config.seed, **options)


def per_sample_fit(config: TrainConfig, device: torch.device, model: torch.nn.Module, dataset, loss_fn, target: str,
                   evaluate_now: Callable[[], dict], headline: Callable[[dict], dict], info: dict | None = None) -> Fit:
    """The training parts of a network scored per sample (Video2Roll, the onset model): Adam
    with the per-epoch decay, `loss_fn` of its logits against the sample's `target` roll."""
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    schedule = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=config.lr_decay)

    def step(batch: dict) -> dict:
        loss = loss_fn(model(batch["frames"].to(device)), batch[target].to(device))
        return {"loss": descend(optimizer, loss), "samples": len(batch[target])}

    return Fit(model, {"optimizer": optimizer, "schedule": schedule}, [schedule], epoch_loader(dataset, config),
               -(-count_windows(config.corpus, config.train_split) // config.batch_size), step, evaluate_now,
               headline=headline, info=info or {})


def video2roll_fit(config: TrainConfig, device: torch.device, previous: dict | None) -> Fit:
    """Video2Roll: Adam on BCE-with-logits of each sample's centre frame roll."""
    model = Video2Roll(config.keys, size=config.size, head=config.head).to(device)

    def evaluate_now() -> dict:
        return evaluate(model, config.corpus, config.eval_splits, label_version=config.label_version, keys=config.keys,
                        threshold=config.threshold, device=device, reader=config.reader, workers=config.workers)

    return per_sample_fit(config, device, model, train_reader(config), torch.nn.BCEWithLogitsLoss(), "roll",
                          evaluate_now, headline=lambda m: {"audeo_f1": m["audeo"]["f1"], "f1": m["summed"]["f1"]})


def _resumable(run: Path, config: TrainConfig) -> dict | None:
    """The run's last checkpoint, if it has one and it may be continued with `config`."""
    last = run / "last.pt"
    if not last.is_file():
        return None
    checkpoint = torch.load(last, map_location="cpu", weights_only=False)
    before = {**asdict(TrainConfig(corpus="", out="")), **checkpoint["config"]}  # older runs: the defaults
    now = asdict(config)
    clashes = [k for k in RESUME_KEYS[config.model] if json.dumps(before[k]) != json.dumps(now[k])]
    if clashes:
        raise ValueError(f"{run}: holds a run with other {', '.join(clashes)} "
                         f"({', '.join(f'{k}={before[k]!r}' for k in clashes)}); use another --out")
    return checkpoint


def _restore(fit: Fit, checkpoint: dict | None, run: Path) -> tuple[int, list[dict]]:
    """The epoch to start from and the history so far (0 and [] for a new run)."""
    if checkpoint is None:
        return 0, []
    fit.model.load_state_dict(checkpoint["model"])
    for name, part in fit.state.items():
        part.load_state_dict(checkpoint[name])
    log.info("resuming %s after epoch %d", run, checkpoint["epoch"])
    return checkpoint["epoch"], checkpoint["history"]


def _summary(line: dict) -> str:
    figures = "  ".join(f"{split}: " + ", ".join(f"{k} {v:.3f}" for k, v in m.items())
                        for split, m in line["eval"].items())
    loss = f"{line['train_loss']:.4f}" if line["train_loss"] is not None else "-"
    return f"epoch {line['epoch']}: loss {loss}, {line['samples']} samples in {line['seconds']:.0f} s; {figures}"


def train(config: TrainConfig, progress: bool = True) -> list[dict]:
    """Train (or resume) config.model into config.out; returns the history, one dict per epoch."""
    if config.model not in MODELS:
        raise ValueError(f"model {config.model!r}: expected one of {', '.join(MODELS)}")
    config.label_version = corpus_label_version(config.corpus, config.label_version)
    config.size = tuple(config.size)
    config.eval_splits = config.eval_splits or default_eval_splits(config.corpus, config.train_split)
    run = Path(config.out)
    run.mkdir(parents=True, exist_ok=True)
    previous = _resumable(run, config)
    torch.manual_seed(config.seed)
    device = pick_device(config.device)
    fit = _model_part(config.model, "fit")(config, device, previous)
    start, history = _restore(fit, previous, run)
    atomic_json(asdict(config), run / "run.json")
    networks = [fit.model, *(part for part in fit.state.values() if isinstance(part, torch.nn.Module))]
    budget_s = config.max_minutes * 60 if config.max_minutes else None
    spent_s = sum(h["seconds"] for h in history)
    for epoch in range(start + 1, config.epochs + 1):
        if budget_s is not None and spent_s >= budget_s:
            break
        for net in networks:
            net.train()
        started, losses, samples = time.perf_counter(), {"loss": []}, 0
        bar = tqdm(fit.batches(epoch), total=fit.steps, desc=f"epoch {epoch}", unit="batch", disable=not progress)
        for batch in bar:
            result = fit.step(batch)
            samples += result.pop("samples")
            for name, value in result.items():
                losses.setdefault(name, []).append(value)
            bar.set_postfix(loss=f"{np.mean(losses['loss'][-20:]):.4f}")
            if budget_s is not None and spent_s + time.perf_counter() - started >= budget_s:
                break
        seconds = time.perf_counter() - started
        spent_s += seconds
        lr = fit.schedules[0].get_last_lr()[0]
        for schedule in fit.schedules:
            schedule.step()
        metrics = fit.evaluate() if config.eval_splits else {"splits": {}}
        means = {("train_loss" if name == "loss" else name): float(np.mean(v)) if v else None
                 for name, v in losses.items()}
        history.append({"epoch": epoch, "lr": lr, **means, "samples": samples, "seconds": round(seconds, 2),
                        "samples_per_s": round(samples / seconds, 2) if seconds else None, **fit.info,
                        "eval": {s: fit.headline(m) for s, m in metrics["splits"].items()}, "metrics": metrics})
        _save_checkpoint({"kind": config.model, "model": fit.model.state_dict(), "model_spec": fit.model.spec(),
                          **{name: part.state_dict() for name, part in fit.state.items()}, "epoch": epoch,
                          "config": asdict(config), "label_version": config.label_version, "keys": config.keys,
                          "threshold": config.threshold, "history": history, **fit.saved}, run)
        if progress:
            print(_summary(history[-1]))
    return history
