"""What to install when an optional package is missing: one message per package, used by
the command line and the Python API alike."""

from __future__ import annotations

import sys
from importlib import import_module
from importlib.util import find_spec

# import name -> how to get it
INSTALL = {
    "torch": "pip install 'pianocorpus[train]' (torch; or [all])",
    "torchvision": "pip install 'pianocorpus[train]' (torchvision; or [all])",
    "torchaudio": "pip install 'pianocorpus[labels]' (transkun and torchaudio; or [all])",
    "transkun": "pip install 'pianocorpus[labels]' (transkun; or [all])",
    "basic_pitch": "pip install --no-deps basic-pitch==0.4.0 (its run-time needs come with pianocorpus; "
                   "--no-deps keeps out the TensorFlow it declares but does not need)",
}


class MissingExtra(RuntimeError):
    """An optional package a command needs is not installed; the message says how to get it."""

    def __init__(self, package: str, needed_for: str):
        self.package = package
        super().__init__(f"{needed_for} needs {package}, which is not installed: {INSTALL[package]}")


def missing_extra(error: ModuleNotFoundError, needed_for: str) -> MissingExtra | None:
    """The MissingExtra for an import that failed on an optional package, else None."""
    top = (error.name or "").split(".")[0]
    return MissingExtra(top, needed_for) if top in INSTALL else None


def imported(module: str):
    """The module, or a MissingExtra naming what to install."""
    try:
        return import_module(module)
    except ModuleNotFoundError as error:
        extra = missing_extra(error, module)
        if extra is None:
            raise
        raise extra from None


def available(package: str) -> bool:
    if package in sys.modules:
        return sys.modules[package] is not None  # None: imports of it are blocked
    return find_spec(package) is not None
