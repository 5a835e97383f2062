"""Train and evaluate the Video2Roll-style model on a corpus's shards.

`train` runs epochs of Adam on BCE-with-logits over the train split (the learning rate
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

import json
import logging
import shutil
import time
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
# What a resumed run must share with the run it continues.
RESUME_KEYS = ("corpus", "label_version", "keys", "size", "head")


@dataclass
class TrainConfig:
    corpus: str
    out: str
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


def load_checkpoint(path: str | Path, device: torch.device | None = None) -> tuple[Video2Roll, dict]:
    """The model of a checkpoint (on `device`, in eval mode) and the checkpoint itself."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such checkpoint")
    checkpoint = torch.load(path, map_location=device or "cpu", weights_only=False)  # our own file
    model = Video2Roll(**checkpoint["model_spec"])
    model.load_state_dict(checkpoint["model"])
    return model.to(device or "cpu").eval(), checkpoint


def _loader(dataset, batch_size: int, workers: int) -> DataLoader:
    return DataLoader(dataset, batch_size=batch_size, num_workers=workers, persistent_workers=False)


@torch.no_grad()
def predict(model: Video2Roll, dataset, device: torch.device, batch_size: int = 32, workers: int = 0):
    """(reference rolls, sigmoid outputs, video ids, frames) over a dataset, in its order."""
    model.eval()
    refs, probs, ids, frames = [], [], [], []
    for batch in _loader(dataset, batch_size, workers):
        probs.append(torch.sigmoid(model(batch["frames"].to(device))).cpu().numpy())
        refs.append(batch["roll"].numpy() > 0.5)
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


def evaluate(model: Video2Roll, corpus: str | Path, splits: list[str], *, label_version: str | None, keys: str,
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
    and against its own label version unless told others; written as JSON to `out`
    (default CKPT.eval.json), whose path the result names."""
    where = pick_device(device)
    model, saved = load_checkpoint(checkpoint, where)
    threshold = threshold if threshold is not None else saved["threshold"]
    result = evaluate(model, corpus, list(splits), device=where, reader=reader,
                      label_version=label_version or saved["label_version"], keys=saved["keys"], threshold=threshold)
    out = Path(out) if out else Path(checkpoint).with_suffix(".eval.json")
    result.update(checkpoint=str(checkpoint), json=str(out))
    atomic_json(result, out)
    return result


def default_eval_splits(corpus: str | Path, train_split: str) -> list[str]:
    """valid if the corpus has it, else test, else none (then training runs without evaluation)."""
    splits = [s for s in corpus_splits(corpus) if s != train_split]
    for split in ("valid", "test"):
        if split in splits:
            return [split]
    return []


def _resume(run: Path, config: TrainConfig, model, optimizer, schedule) -> tuple[int, list[dict]]:
    """The epoch to start from and the history so far (0 and [] for a new run)."""
    last = run / "last.pt"
    if not last.is_file():
        return 0, []
    checkpoint = torch.load(last, map_location="cpu", weights_only=False)
    before = checkpoint["config"]
    now = asdict(config)
    clashes = [k for k in RESUME_KEYS if json.dumps(before[k]) != json.dumps(now[k])]
    if clashes:
        raise ValueError(f"{run}: holds a run with other {', '.join(clashes)} "
                         f"({', '.join(f'{k}={before[k]!r}' for k in clashes)}); use another --out")
    model.load_state_dict(checkpoint["model"])
    optimizer.load_state_dict(checkpoint["optimizer"])
    schedule.load_state_dict(checkpoint["schedule"])
    log.info("resuming %s after epoch %d", run, checkpoint["epoch"])
    return checkpoint["epoch"], checkpoint["history"]


def train(config: TrainConfig, progress: bool = True) -> list[dict]:
    """Train (or resume) into config.out; returns the history, one dict per epoch."""
    config.label_version = corpus_label_version(config.corpus, config.label_version)
    config.size = tuple(config.size)
    config.eval_splits = config.eval_splits or default_eval_splits(config.corpus, config.train_split)
    run = Path(config.out)
    run.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(config.seed)
    device = pick_device(config.device)
    model = Video2Roll(config.keys, size=config.size, head=config.head).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    schedule = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=config.lr_decay)
    start, history = _resume(run, config, model, optimizer, schedule)
    atomic_json(asdict(config), run / "run.json")
    dataset = open_split(config.corpus, config.train_split, config.reader, label_version=config.label_version,
                         keys=config.keys, size=config.size, shuffle_buffer=config.shuffle_buffer,
                         balanced=config.balanced, seed=config.seed)
    steps = -(-count_windows(config.corpus, config.train_split) // config.batch_size)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    budget_s = config.max_minutes * 60 if config.max_minutes else None
    spent_s = sum(h["seconds"] for h in history)
    for epoch in range(start + 1, config.epochs + 1):
        if budget_s is not None and spent_s >= budget_s:
            break
        dataset.set_epoch(epoch)
        model.train()
        started, losses, samples = time.perf_counter(), [], 0
        bar = tqdm(_loader(dataset, config.batch_size, config.workers), total=steps, desc=f"epoch {epoch}",
                   unit="batch", disable=not progress)
        for batch in bar:
            logits = model(batch["frames"].to(device))
            loss = loss_fn(logits, batch["roll"].to(device))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
            samples += len(batch["roll"])
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.4f}")
            if budget_s is not None and spent_s + time.perf_counter() - started >= budget_s:
                break
        seconds = time.perf_counter() - started
        spent_s += seconds
        lr = schedule.get_last_lr()[0]
        schedule.step()
        metrics = evaluate(model, config.corpus, config.eval_splits, label_version=config.label_version,
                           keys=config.keys, threshold=config.threshold, device=device, reader=config.reader,
                           workers=config.workers) if config.eval_splits else {"splits": {}}
        history.append({"epoch": epoch, "lr": lr, "train_loss": float(np.mean(losses)) if losses else None,
                        "samples": samples, "seconds": round(seconds, 2),
                        "samples_per_s": round(samples / seconds, 2) if seconds else None,
                        "eval": {s: {"audeo_f1": m["audeo"]["f1"], "f1": m["summed"]["f1"]}
                                 for s, m in metrics["splits"].items()}, "metrics": metrics})
        _save_checkpoint({"model": model.state_dict(), "model_spec": model.spec(), "optimizer": optimizer.state_dict(),
                          "schedule": schedule.state_dict(), "epoch": epoch, "config": asdict(config),
                          "label_version": config.label_version, "keys": config.keys,
                          "threshold": config.threshold, "history": history}, run)
        if progress:
            line = "  ".join(f"{s}: F1 {m['f1']:.3f} (Audeo per-frame {m['audeo_f1']:.3f})"
                             for s, m in history[-1]["eval"].items())
            print(f"epoch {epoch}: loss {history[-1]['train_loss']:.4f}, {samples} samples in {seconds:.0f} s; {line}")
    return history
