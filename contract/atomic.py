"""Files that appear only complete: written under a temporary name unique to the writer
(NAME.PID-TOKEN.part), then renamed into place. Two writers of the same file never share
a temporary file, so neither can pull the other's away; the last rename wins whole."""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from contract.store import store_of


def part_path(path: Path) -> Path:
    return path.with_name(f"{path.name}.{os.getpid()}-{secrets.token_hex(4)}.part")


def remove_stale_parts(root: Path, skip: tuple[str, ...] = ()) -> int:
    """Delete the temporary files a killed writer left under `root` (not under the
    top-level folders named in `skip`); only `contract.lock.corpus_lock` calls this, for its holder."""
    removed = 0
    for path in Path(root).rglob("*.part"):
        if path.is_file() and path.relative_to(root).parts[0] not in skip:
            path.unlink(missing_ok=True)
            removed += 1
    return removed


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """The temporary path to write; renamed to `path` when the block ends without error
    (and removed when it raises). A path in a remote corpus's stage is put to its store
    first, under its final name (contract/store.py)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    part = part_path(path)
    try:
        yield part
        place_file(part, path)
    except BaseException:
        part.unlink(missing_ok=True)
        raise


def place_file(complete: Path, path: Path) -> None:
    """A complete file renamed to `path`; for a staged path, put to its store first, under
    its final name (contract/store.py)."""
    if (store := store_of(path)) is not None:
        store.put(complete, path)
    os.replace(complete, path)


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """`write(temporary path)`, then the rename that makes it appear as `path`."""
    with atomic_path(path) as part:
        write(part)


def atomic_parquet(table: pa.Table, path: Path) -> None:
    atomic_write(path, lambda part: pq.write_table(table, part, compression="zstd"))


def atomic_npy(array, path: Path) -> None:
    def save(part: Path) -> None:
        with open(part, "wb") as handle:  # a file object: numpy would add .npy to the temporary name
            np.save(handle, array)

    atomic_write(path, save)


def atomic_json(data, path: Path) -> None:
    atomic_write(path, lambda part: part.write_text(json.dumps(data, indent=1, sort_keys=True, default=str) + "\n"))


def atomic_text(text: str, path: Path) -> None:
    atomic_write(path, lambda part: part.write_text(text, encoding="utf-8"))
