"""Files that appear only complete: written under NAME.part, then renamed into place."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """`write(temporary path)`, then the rename that makes it appear as `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(path.name + ".part")
    write(part)
    os.replace(part, path)


def atomic_parquet(table: pa.Table, path: Path) -> None:
    atomic_write(path, lambda part: pq.write_table(table, part, compression="zstd"))


def atomic_json(data, path: Path) -> None:
    atomic_write(path, lambda part: part.write_text(json.dumps(data, indent=1, sort_keys=True, default=str) + "\n"))


def atomic_text(text: str, path: Path) -> None:
    atomic_write(path, lambda part: part.write_text(text, encoding="utf-8"))
