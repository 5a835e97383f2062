"""Choose a transcriber by name, and name the labels it makes.

`auto` is transkun when torch sees a GPU and basic-pitch otherwise. A label version is
`BACKEND-HASH`, the hash over the backend, its weights' sha256, its parameters, the fps
and the pedal rule: the same labels always get the same name, different ones never do.
"""

from __future__ import annotations

import hashlib
import json
import logging
from functools import lru_cache
from pathlib import Path

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
    from curation.probe import sha256_file

    return sha256_file(path)


def labeler_params(name: str, params: dict) -> tuple[Path, dict]:
    """(weights file, the parameters that decide the labels) without loading the model."""
    if name == "transkun":
        from labeling.transkun_backend import LABEL_PARAMS, pretrained_dir

        weights, defaults = pretrained_dir() / "2.0.pt", LABEL_PARAMS
    else:
        from labeling.basic_pitch_backend import PIANO_PARAMS, onnx_model_path

        weights, defaults = onnx_model_path(), PIANO_PARAMS
    unknown = set(params) - set(defaults) - {"device", "batch_windows"}
    if unknown:
        raise ValueError(f"unknown {name} parameter(s) {sorted(unknown)}; known: {sorted(defaults)}")
    return weights, {k: params.get(k, v) for k, v in defaults.items()}


def label_spec(name: str, params: dict, fps: float, sustain_pedal: bool = False) -> dict:
    """Everything that decides the labels; label.json records it. `name` is resolved."""
    from importlib.metadata import version

    weights, label_params = labeler_params(name, params)
    return {"backend": name, "backend_version": version(name), "weights": weights.name,
            "weights_sha256": file_sha256(weights), "params": label_params, "fps": fps, "sustain_pedal": sustain_pedal}


def label_version(spec: dict) -> str:
    canonical = json.dumps({k: spec[k] for k in ("backend", "weights_sha256", "params", "fps", "sustain_pedal")},
                           sort_keys=True)
    return f"{spec['backend']}-{hashlib.sha256(canonical.encode()).hexdigest()[:10]}"
