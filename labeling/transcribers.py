"""Choose a transcriber by name, and name the labels it makes.

`auto` is transkun when torch sees a GPU and basic-pitch otherwise. A label version is
`BACKEND-HASH`, the hash over the backend and its package version, its weights' sha256,
its parameters, the fps, the pedal rule and the version of our own label logic (the
backend's post-processing and the roll convention): the same name always means the same
labels, and different labels never share one.
"""

from __future__ import annotations

import logging
from functools import lru_cache
from pathlib import Path

from contract.hashing import json_digest, sha256_file

log = logging.getLogger(__name__)

LABELERS = ("auto", "basic-pitch", "transkun")


def resolve_labeler(name: str) -> str:
    if name not in LABELERS:
        raise ValueError(f"unknown labeler {name!r}; choose one of {', '.join(LABELERS)}")
    if name != "auto":
        return name
    import torch

    chosen = "transkun" if torch.cuda.is_available() else "basic-pitch"
    log.info("labeler auto -> %s (%s)", chosen, "GPU visible" if chosen == "transkun" else "no GPU")
    return chosen


def make_transcriber(name: str, **params):
    """The transcriber `name` with its parameters; the model loads here, once."""
    name = resolve_labeler(name)
    if name == "transkun":
        from labeling.transkun_backend import TranskunTranscriber

        return TranskunTranscriber(**params)
    from labeling.basic_pitch_backend import BasicPitchTranscriber

    return BasicPitchTranscriber(**params)


@lru_cache(maxsize=8)
def file_sha256(path: Path) -> str:
    """The weights' hash, once per process."""
    return sha256_file(path)


def labeler_params(name: str, params: dict) -> tuple[Path, dict, str]:
    """(weights file, the parameters that decide the labels, the version of our label
    logic) without loading the model."""
    from labeling.rolls import ROLLS_LOGIC

    if name == "transkun":
        from labeling.transkun_backend import LABEL_PARAMS, LOGIC, pretrained_dir

        weights, defaults = pretrained_dir() / "2.0.pt", LABEL_PARAMS
    else:
        from labeling.basic_pitch_backend import LOGIC, PIANO_PARAMS, onnx_model_path

        weights, defaults = onnx_model_path(), PIANO_PARAMS
    unknown = set(params) - set(defaults) - {"device", "batch_windows"}
    if unknown:
        raise ValueError(f"unknown {name} parameter(s) {sorted(unknown)}; known: {sorted(defaults)}")
    return weights, {k: params.get(k, v) for k, v in defaults.items()}, f"{ROLLS_LOGIC} {LOGIC}"


def label_spec(name: str, params: dict, fps: float, sustain_pedal: bool = False) -> dict:
    """Everything that decides the labels; label.json records it. `name` is resolved."""
    from importlib.metadata import version

    weights, label_params, logic = labeler_params(name, params)
    return {"backend": name, "backend_version": version(name), "weights": weights.name,
            "weights_sha256": file_sha256(weights), "params": label_params, "fps": fps, "sustain_pedal": sustain_pedal,
            "label_logic": logic}


# What decides the labels; the weights' file name does not (its sha256 does).
VERSIONED = ("backend", "backend_version", "weights_sha256", "params", "fps", "sustain_pedal", "label_logic")


def label_version(spec: dict) -> str:
    return f"{spec['backend']}-{json_digest({k: spec[k] for k in VERSIONED}, 10)}"
