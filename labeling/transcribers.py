"""Choose a transcriber by name, and name the labels it makes.

`auto` is transkun when torch sees a GPU and basic-pitch otherwise (the other one when
that one is not installed). A label version is
`BACKEND-HASH`, the hash over the backend and its package version, its weights' sha256,
its parameters, the fps, the pedal rule and the version of our own label logic (the
backend's post-processing and the roll convention): the same name always means the same
labels, and different labels never share one.
"""

from __future__ import annotations

import logging
from functools import lru_cache
from pathlib import Path

from contract.extras import MissingExtra, available
from contract.hashing import json_digest, sha256_file

log = logging.getLogger(__name__)

LABELERS = ("auto", "basic-pitch", "transkun")


def resolve_labeler(name: str, gpu: bool | None = None) -> str:
    """The labeler `name` stands for; `gpu`: whether the machines that will run it have
    one (None: whether torch sees one here)."""
    if name not in LABELERS:
        raise ValueError(f"unknown labeler {name!r}; choose one of {', '.join(LABELERS)}")
    installed = {"basic-pitch": available("basic_pitch"), "transkun": available("transkun") and available("torch")}
    if name != "auto":
        if not installed[name]:
            raise MissingExtra("basic_pitch" if name == "basic-pitch" else "transkun", f"labeler {name}")
        return name
    gpu = installed["transkun"] and (_cuda_visible() if gpu is None else gpu)
    preferred = "transkun" if gpu else "basic-pitch"
    chosen = preferred if installed[preferred] else next((n for n in ("transkun", "basic-pitch") if installed[n]), None)
    if chosen is None:
        raise MissingExtra("basic_pitch", "labeler auto (basic-pitch or transkun)")
    why = "GPU visible" if gpu else "no GPU"
    log.info("labeler auto -> %s (%s%s)", chosen, why, "" if chosen == preferred else f"; {preferred} not installed")
    return chosen


def _cuda_visible() -> bool:
    import torch

    return torch.cuda.is_available()


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


def label_spec(name: str, params: dict, fps: float, sustain_pedal: bool = False, av_align: str = "off",
               hands_version: str | None = None) -> dict:
    """Everything that decides the labels; label.json records it. `name` is resolved;
    `av_align` auto moves each video's labels by its confident sync offset (the offset
    itself is recorded per video, in labels/VERSION/av.parquet); `hands_version`: onsets
    no fingertip of that hands version was near are dropped (`--onset-filter hands`)."""
    from importlib.metadata import version

    from labeling.agreement import AV_LOGIC

    weights, label_params, logic = labeler_params(name, params)
    return {"backend": name, "backend_version": version(name), "weights": weights.name,
            "weights_sha256": file_sha256(weights), "params": label_params, "fps": fps, "sustain_pedal": sustain_pedal,
            "label_logic": logic, "av_align": f"auto {AV_LOGIC}" if av_align == "auto" else "off",
            "onset_filter": f"hands {hands_version}" if hands_version else "none"}


# What decides the labels; the weights' file name does not (its sha256 does).
VERSIONED = ("backend", "backend_version", "weights_sha256", "params", "fps", "sustain_pedal", "label_logic", "av_align",
             "onset_filter")


def label_version(spec: dict) -> str:
    return f"{spec['backend']}-{json_digest({k: spec[k] for k in VERSIONED}, 10)}"
