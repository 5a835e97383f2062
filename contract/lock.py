"""One writer at a time per corpus: an advisory lock on CORPUS/.lock, held for the whole
of a build or relabel.

The kernel releases a `flock` when its holder dies, so a killed run (even `kill -9`)
never leaves the corpus locked; the lock file names its holder (pid, host, command,
start), and a second writer is refused with that name. Ray workers that outlive a
killed driver cannot race the next run's files either: every temporary name is unique
to its writer (`contract.atomic`). A corpus on object storage is locked in the driver's
stage of it (contract/store.py): a second driver on another machine is not refused yet
(that needs a lease object with an expiry in the store).
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

from contract.atomic import remove_stale_parts
from contract.layout import CorpusLayout


class CorpusLocked(RuntimeError):
    """Another writer holds the corpus; the message names it."""


def lock_holder(root: str | Path) -> dict | None:
    """Who holds (or last held) the corpus's lock, as its lock file says."""
    try:
        return json.loads(CorpusLayout(root).lock.read_text() or "null")
    except (OSError, ValueError):
        return None


@contextmanager
def corpus_lock(root: str | Path, command: str) -> Iterator[None]:
    """Hold the corpus's write lock for the block, or raise CorpusLocked naming the holder;
    the new holder first removes the temporary files a killed writer left (not in the cache)."""
    layout = CorpusLayout(root)
    root = layout.root  # a corpus on object storage: this machine's stage of it
    root.mkdir(parents=True, exist_ok=True)
    fd = os.open(layout.lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        holder = lock_holder(root) or {}
        raise CorpusLocked(
            f"{layout}: another pianocorpus is writing this corpus (pid {holder.get('pid', '?')} on "
            f"{holder.get('host', '?')}: {holder.get('command', '?')}, since {holder.get('since', '?')}); "
            "wait for it to finish, or stop it, then run again") from None
    try:
        me = {"pid": os.getpid(), "host": socket.gethostname(), "command": command,
              "argv": " ".join(sys.argv), "since": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(me) + "\n").encode(), 0)
        remove_stale_parts(root, skip=(layout.default_cache.name,))
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
