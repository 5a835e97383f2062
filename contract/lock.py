"""One writer at a time per corpus, held for the whole of a build or relabel, on every
machine: a second writer is refused with the holder's name (pid, host, command, start).

A local corpus: an advisory `flock` on CORPUS/.lock. The kernel releases it when its
holder dies, so a killed run (even `kill -9`) never leaves the corpus locked.

A corpus on object storage (contract/store.py): a lease, the object CORPUS/.lock in the
store, naming its holder and when the lease expires. Drivers on other machines (other
stages) see it, where a flock on one machine's stage would not. It is taken with a
conditional write (S3's If-None-Match: one of two racing writers gets it), renewed by a
heartbeat thread every quarter of its term (If-Match on the version this holder wrote:
a holder that lost it learns so), and removed at the end. A holder killed with -9
renews nothing: its lease expires `PIANOCORPUS_LEASE_S` (default 120) seconds after its
last renewal, and the next writer takes it over (If-Match on the expired version: one
taker wins). Expiry is read against the taker's clock: machines' clocks must agree to
within seconds (NTP). A store without conditional writes (only S3's are used) falls back
to write, wait a second, read back (`Store.create`), which does not tell apart two
writers starting in the same second. A holder whose lease was taken over (its renewals
failed for a whole term) is refused at publish (`check_lease`): it never switches the
pointer under another writer.

Ray workers that outlive a killed driver cannot race the next run's files either: every
temporary name is unique to its writer (`contract.atomic`).
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import secrets
import socket
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

from contract.atomic import remove_stale_parts
from contract.layout import CorpusLayout
from contract.store import StoreConflict

log = logging.getLogger(__name__)

LEASE_ENV = "PIANOCORPUS_LEASE_S"  # a lease's term in seconds (tests shorten it)
LEASE_S = 120.0
RENEWALS_PER_TERM = 4  # the heartbeat renews every 30 s of a 120-s term


class CorpusLocked(RuntimeError):
    """Another writer holds the corpus (the message names it), or this one lost its lease."""


def lock_holder(root: str | Path) -> dict | None:
    """Who holds (or last held) the corpus's lock, as its lock file (or lease object) says."""
    layout = CorpusLayout(root)
    try:
        if layout.store is not None:
            found = layout.store.read_versioned(layout.lock)
            return json.loads(found[0]) if found else None
        return json.loads(layout.lock.read_text() or "null")
    except (OSError, ValueError):
        return None


@contextmanager
def corpus_lock(root: str | Path, command: str, lease_s: float | None = None) -> Iterator[None]:
    """Hold the corpus's write lock for the block, or raise CorpusLocked naming the holder;
    the new holder first removes the temporary files a killed writer left (not in the cache).
    `lease_s`: a store lease's term (default $PIANOCORPUS_LEASE_S, else 120 s)."""
    layout = CorpusLayout(root)
    root = layout.root  # a corpus on object storage: this machine's stage of it
    root.mkdir(parents=True, exist_ok=True)
    held = _store_lease(layout, command, lease_s) if layout.store is not None else _flock(layout, command)
    with held:
        remove_stale_parts(root, skip=(layout.default_cache.name,))
        yield


def _me(command: str) -> dict:
    """This writer, as the lock names it."""
    return {"pid": os.getpid(), "host": socket.gethostname(), "command": command, "argv": " ".join(sys.argv),
            "since": _now().isoformat(timespec="seconds")}


def _refusal(layout: CorpusLayout, holder: dict, lease: str = "") -> CorpusLocked:
    return CorpusLocked(
        f"{layout}: another pianocorpus is writing this corpus (pid {holder.get('pid', '?')} on "
        f"{holder.get('host', '?')}: {holder.get('command', '?')}, since {holder.get('since', '?')}{lease}); "
        "wait for it to finish, or stop it, then run again")


@contextmanager
def _flock(layout: CorpusLayout, command: str) -> Iterator[None]:
    fd = os.open(layout.lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise _refusal(layout, lock_holder(layout.root) or {}) from None
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(_me(command)) + "\n").encode(), 0)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


# --- the lease of a corpus on object storage ---------------------------------------------------
_HELD: dict[str, Lease] = {}  # corpus URI -> the lease this process holds on it


def lease_seconds() -> float:
    return float(os.environ.get(LEASE_ENV) or LEASE_S)


@contextmanager
def _store_lease(layout: CorpusLayout, command: str, lease_s: float | None) -> Iterator[None]:
    lease = Lease(layout, command, lease_s or lease_seconds())
    lease.acquire()
    _HELD[layout.store.uri] = lease
    try:
        yield
    finally:
        _HELD.pop(layout.store.uri, None)
        lease.release()


def check_lease(layout: CorpusLayout) -> None:
    """Raise CorpusLocked when this process held the corpus's lease and lost it (its
    renewals failed for a whole term, so another writer may hold it now); nothing otherwise."""
    lease = _HELD.get(layout.store.uri) if layout.store is not None else None
    if lease is not None and lease.lost:
        raise CorpusLocked(f"{layout}: this run lost its lease on the corpus ({lease.lost}); "
                           "nothing was published: run it again")


class Lease:
    """CORPUS/.lock in the store, held by this process: taken, renewed by a heartbeat
    thread, released (see the module's docstring)."""

    def __init__(self, layout: CorpusLayout, command: str, term_s: float):
        self.layout, self.store, self.term_s = layout, layout.store, term_s
        self.record = {**_me(command), "token": secrets.token_hex(8), "lease_s": term_s}
        self.etag: str | None = None  # the version of the lease object this holder wrote last
        self.expires = _now()
        self.lost: str | None = None  # why, once another writer may hold it
        self._stop = threading.Event()
        self._beat = threading.Thread(target=self._heartbeat, name=f"lease {layout}", daemon=True)

    def acquire(self) -> None:
        """Take the lease: create it, or take over an expired one; CorpusLocked when a
        live one is held by another writer."""
        for _ in range(5):  # each turn lost only to a writer that changed the lease meanwhile
            found = self.store.read_versioned(self.layout.lock)
            try:
                if found is None:
                    self.etag = self.store.create(self.layout.lock, self._text())
                else:
                    holder = _parse(found[0])
                    if _expires(holder) > _now():
                        raise _refusal(self.layout, holder, _lease_words(holder))
                    self.etag = self.store.replace(self.layout.lock, self._text(), found[1])
                    log.warning("%s: took over the expired lease of pid %s on %s (%s, expired %s)", self.layout,
                                holder.get("pid", "?"), holder.get("host", "?"), holder.get("command", "?"),
                                holder.get("expires", "?"))
            except StoreConflict:
                continue
            self._beat.start()
            return
        raise _refusal(self.layout, lock_holder(self.layout.location) or {}, " (its lease kept changing)")

    def _text(self) -> str:
        """The lease object's text, expiring one term from now."""
        self.expires = _now() + timedelta(seconds=self.term_s)
        return json.dumps({**self.record, "expires": self.expires.isoformat(timespec="milliseconds")}) + "\n"

    def renew(self) -> None:
        """Push the expiry a term on, only while the lease is still the version this holder
        wrote (StoreConflict otherwise: another writer took it over)."""
        expires_before = self.expires
        try:
            self.etag = self.store.replace(self.layout.lock, self._text(), self.etag)
        except BaseException:
            self.expires = expires_before
            raise

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.term_s / RENEWALS_PER_TERM):
            try:
                self.renew()
            except StoreConflict:
                self.lost = f"taken over by {_holder_words(lock_holder(self.layout.location) or {})}"
            except Exception as error:  # noqa: BLE001 (the store unreachable a moment: the next beat tries again)
                log.warning("%s: could not renew the lease (%s: %s)", self.layout, type(error).__name__, error)
                if _now() >= self.expires:
                    self.lost = f"not renewed since it expired at {self.expires.isoformat(timespec='seconds')}"
            if self.lost:
                log.error("%s: this run lost its lease on the corpus: %s", self.layout, self.lost)
                return

    def release(self) -> None:
        """Stop renewing and remove the lease, unless another writer holds it by now."""
        self._stop.set()
        if self._beat.is_alive():
            self._beat.join()
        if self.etag is not None and not self.lost:
            try:
                self.store.remove_version(self.layout.lock, self.etag)
            except Exception as error:  # noqa: BLE001 (it expires by itself)
                log.warning("%s: could not remove the lease (%s); it expires at %s", self.layout, error,
                            self.expires.isoformat(timespec="seconds"))


def _now() -> datetime:
    return datetime.now(UTC)


def _parse(text: str) -> dict:
    try:
        holder = json.loads(text)
    except ValueError:
        return {}
    return holder if isinstance(holder, dict) else {}


def _expires(holder: dict) -> datetime:
    """When a lease expires (one not readable counts as expired: a writer takes it over)."""
    try:
        return datetime.fromisoformat(holder["expires"])
    except (KeyError, TypeError, ValueError):
        return datetime.min.replace(tzinfo=UTC)


def _lease_words(holder: dict) -> str:
    left = (_expires(holder) - _now()).total_seconds()
    return (f"; its lease expires at {holder.get('expires', '?')}, in {left:.0f} s, unless renewed: "
            "a writer killed without releasing it is replaced then")


def _holder_words(holder: dict) -> str:
    return f"pid {holder.get('pid', '?')} on {holder.get('host', '?')} ({holder.get('command', '?')})"
