"""Publishing a corpus in one step: a new generation is written whole beside the published
one, then one pointer (`CORPUS/current`, a symlink) is switched to it by a rename, so a
reader that resolved the pointer sees one generation, the old or the new, never a mix.

The generation before stays for readers still in it and goes at the next publish;
files a new generation shares with the one before are hard links, not copies. The
names at the top of the corpus (`corpus.json`, `frames/`, ...) are symlinks into
`current/`, for readers that open paths by name. On object storage, where there is no
rename, the pointer is a small object naming the generation, written last.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

from contract.layout import PUBLISHED, CorpusLayout
from contract.lock import check_lease
from contract.store import remove_tree, store_of


def start_generation(corpus: CorpusLayout) -> CorpusLayout:
    """An empty folder for the generation after the published one (what a killed
    publish left there is removed: it was never published)."""
    new = corpus.next_generation()
    remove_tree(new.data)
    new.data.mkdir(parents=True)
    return new


def carry_over(old: CorpusLayout, new: CorpusLayout, keep: Callable[[Path], bool]) -> None:
    """Hard links in `new` to the files of `old` whose path (relative to the generation)
    `keep` accepts; copies where the file system has no hard links."""
    if old.store is not None:
        for path in sorted(old.store.listing(old.data)):
            relative = path.relative_to(old.data)
            if relative.parts[0] in PUBLISHED and keep(relative):
                old.store.copy(path, new.data / relative)
        return
    if not old.data.is_dir():
        return
    for path in sorted(old.data.rglob("*")):
        relative = path.relative_to(old.data)
        if not path.is_file() or path.is_symlink() or relative.parts[0] not in PUBLISHED or not keep(relative):
            continue
        link_file(path, new.data / relative)


def link_file(source: Path, target: Path) -> None:
    """`target` as a hard link to `source` (a copy where the file system has none; a copy
    made inside the store for a corpus on object storage)."""
    if (store := store_of(target)) is not None:
        store.copy(source, target)
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    target.unlink(missing_ok=True)
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def publish(new: CorpusLayout) -> None:
    """Make `new` the published generation: the pointer switched in one rename, the
    names at the top made symlinks into it (those it holds: no dangling link for an
    optional part it has not), generations older than the one before removed."""
    root, previous = new.root, CorpusLayout(new.location).generation
    if new.store is not None:
        check_lease(new)  # a writer that lost the corpus's lease to another switches nothing
        _publish_in_store(new, previous)
        return
    switching = root / f".current.{os.getpid()}.tmp"
    switching.unlink(missing_ok=True)
    switching.symlink_to(Path("data") / new.generation)
    if new.pointer.is_dir() and not new.pointer.is_symlink():  # a copy that followed the symlinks
        shutil.rmtree(new.pointer)
    os.replace(switching, new.pointer)
    for name in PUBLISHED:
        link = root / name
        if not (new.data / name).exists():  # an optional part (hands/) this generation has not
            if link.is_symlink():
                link.unlink()
            continue
        if link.is_symlink():
            continue
        if link.is_dir():  # a corpus made before generations: its files are the old generation
            shutil.rmtree(link)
        elif link.exists():
            link.unlink()
        link.symlink_to(Path("current") / name)
    for generation in new.generations():
        if generation not in (new.generation, previous):
            shutil.rmtree(root / "data" / generation, ignore_errors=True)


def _publish_in_store(new: CorpusLayout, previous: str) -> None:
    """Object storage has no rename: the generation's objects are all in place, and the
    pointer (an object naming it) is written last, in one put."""
    new.store.write_text(new.pointer, f"data/{new.generation}\n")
    for generation in new.generations():
        if generation not in (new.generation, previous):
            remove_tree(new.root / "data" / generation)
