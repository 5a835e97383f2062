"""A corpus on object storage (`s3://bucket/prefix`, `gs://...`, any fsspec URI): the
store holds the truth, and each node works in a local stage of it.

Every process that opens a remote corpus (`CorpusLayout("s3://...")`: the driver, a video
task, a transcriber actor, an assembly task) works on local paths under its node's stage,
`$PIANOCORPUS_STAGE/DIGEST` (default ~/.cache/pianocorpus/stage): nothing assumes that the
driver and the workers share a disk. The stage is kept in step with the store at the
edges of the work:
- written: every file the contract writes goes through `contract/atomic.py`, which puts
  it to the store once it is complete, before it takes its final local name. An object
  name is final and appears only whole (S3 has no rename: write, then put), and a
  video's record (its completion marker) is written after its frames, audio and key
  levels, a label record after its rolls and MIDI, so a resumed run trusts a record only
  once what it names is there;
- read: `pull(path)` fetches a file before it is read, unless the stage already holds
  the store's version of it (its ETag, kept beside the stage); a file the store does
  not have is removed from the stage, so a stage never outlives the store's truth.

Credentials and endpoints come the standard way (the AWS_* environment, profiles,
fsspec's configuration); nothing of them is written into the corpus.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from pathlib import Path
from urllib.parse import urlparse

STAGE_ENV = "PIANOCORPUS_STAGE"


def is_remote(location: str | Path) -> bool:
    """A URI of another file system than the local one (`file://` is local)."""
    scheme = urlparse(str(location)).scheme if "://" in str(location) else ""
    return scheme not in ("", "file")


def location(value: str | Path) -> str | Path:
    """A corpus or cache argument as it is kept: a URI as text (a Path would fold s3:// into
    s3:/), a folder as a Path."""
    return str(value).rstrip("/") if is_remote(value) else Path(value)


def stage_of(uri: str) -> Path:
    """This node's stage of the corpus at `uri`."""
    base = Path(os.environ.get(STAGE_ENV) or Path.home() / ".cache" / "pianocorpus" / "stage")
    return base / hashlib.sha256(uri.rstrip("/").encode()).hexdigest()[:16]


class Store:
    """One remote corpus root and this node's stage of it."""

    def __init__(self, uri: str):
        import fsspec

        self.uri = uri.rstrip("/")
        self.stage = stage_of(self.uri)
        try:
            # No listings cache: s3fs answers `info` from a folder's cached listing, so a file
            # another node put after this process listed the folder would read as missing.
            self.fs, self.path = fsspec.core.url_to_fs(self.uri, use_listings_cache=False)
        except (ImportError, ValueError) as error:
            raise ValueError(f"{uri}: cannot open this storage ({error}); for s3:// install s3fs, for gs:// gcsfs") from None
        self.path = self.path.rstrip("/")
        self.tags = self.stage / ".store"  # ETag of each staged file, as the store had it

    def key(self, local: Path) -> str:
        """The object name of a staged path."""
        return f"{self.path}/{Path(local).relative_to(self.stage).as_posix()}".rstrip("/")

    def local(self, key: str) -> Path:
        return self.stage / key[len(self.path):].lstrip("/")

    def _tag_file(self, local: Path) -> Path:
        return self.tags / f"{Path(local).relative_to(self.stage).as_posix()}.etag"

    def _staged_tag(self, local: Path) -> str | None:
        tag = self._tag_file(local)
        return tag.read_text() if tag.is_file() and local.is_file() else None

    def _remember(self, local: Path, info: dict) -> None:
        tag = self._tag_file(local)
        tag.parent.mkdir(parents=True, exist_ok=True)
        tag.write_text(_etag(info))

    def info(self, local: Path) -> dict | None:
        """The store's record of a staged path (size, ETag...), None when it has no such object."""
        try:
            info = self.fs.info(self.key(local))
        except FileNotFoundError:
            return None
        return info if info.get("type") == "file" else None

    def pull(self, local: Path, info: dict | None = None) -> bool:
        """Bring the store's version of `local` into the stage (nothing to do when it is
        there already); True when the store has it. `info`: its listing entry, when known."""
        info = info if info is not None else self.info(local)
        if info is None:
            Path(local).unlink(missing_ok=True)
            self._tag_file(local).unlink(missing_ok=True)
            return False
        if self._staged_tag(local) == _etag(info):
            return True
        local = Path(local)
        local.parent.mkdir(parents=True, exist_ok=True)
        part = local.with_name(f"{local.name}.{os.getpid()}-{secrets.token_hex(4)}.pull")
        try:
            self.fs.get_file(self.key(local), str(part))
            os.replace(part, local)
        finally:
            part.unlink(missing_ok=True)
        self._remember(local, info)
        return True

    def put(self, written: Path, local: Path) -> None:
        """Put the complete file `written` to the store as staged path `local`'s object (the
        caller then renames it to `local`: a staged file is always one the store has)."""
        self.fs.put_file(str(written), self.key(local))
        self._remember(local, self.fs.info(self.key(local)))

    def listing(self, folder: Path) -> dict[Path, dict]:
        """Every object under a staged folder: its staged path and its listing entry."""
        try:
            found = self.fs.find(self.key(folder), detail=True)
        except FileNotFoundError:
            return {}
        return {self.local(key): info for key, info in found.items() if info.get("type") == "file"}

    def pull_tree(self, folder: Path, suffixes: tuple[str, ...] = ()) -> list[Path]:
        """Stage every object under `folder` (those ending in one of `suffixes`, when
        given), and drop the staged files of those the store no longer has."""
        listed = {p: i for p, i in self.listing(folder).items() if not suffixes or p.name.endswith(suffixes)}
        for path, info in listed.items():
            self.pull(path, info)
        if Path(folder).is_dir():
            for path in Path(folder).rglob("*"):
                if path not in listed and path.name.endswith(suffixes or ("",)) and self._staged_tag(path):
                    self.pull(path, None)  # the store had it once: gone there, gone here
        return sorted(listed)

    def remove_tree(self, folder: Path) -> None:
        """Remove a folder's objects from the store."""
        if self.listing(folder):
            self.fs.rm(self.key(folder), recursive=True)

    def copy(self, source: Path, target: Path) -> None:
        """`target` as a copy of `source`, made inside the store."""
        self.fs.copy(self.key(source), self.key(target))

    def read_text(self, local: Path) -> str | None:
        try:
            return self.fs.cat_file(self.key(local)).decode()
        except FileNotFoundError:
            return None

    def write_text(self, local: Path, text: str) -> None:
        self.fs.pipe_file(self.key(local), text.encode())

    def remove(self, local: Path) -> None:
        """A staged path's object gone from the store (nothing when there is none), and
        its staged version forgotten."""
        try:
            self.fs.rm_file(self.key(local))
        except FileNotFoundError:
            pass
        self._tag_file(local).unlink(missing_ok=True)

    # Conditional writes: what the corpus's lease (contract/lock.py) is made of. On S3 they
    # are the store's own (If-None-Match / If-Match: one of two racing writers wins, the
    # other is told). Elsewhere the fallback writes, waits a moment and reads back: it
    # tells a writer that came before or after, not one racing it in that moment.
    @property
    def conditional(self) -> bool:
        """Whether the store checks the conditions itself (S3) or the fallback does."""
        protocols = self.fs.protocol if isinstance(self.fs.protocol, (tuple, list)) else (self.fs.protocol,)
        return bool(set(protocols) & {"s3", "s3a"})

    def read_versioned(self, local: Path) -> tuple[str, str] | None:
        """A small object's text and ETag (the version a conditional write names), None
        when there is none. The ETag is read first: a version newer than it fails the write."""
        info = self.info(local)
        text = None if info is None else self.read_text(local)
        return None if text is None else (text, _etag(info))

    def create(self, local: Path, text: str) -> str:
        """`text` as a new object, only where there is none: its ETag; StoreConflict when
        there is one."""
        key = self.key(local)
        if self.conditional:
            try:
                return self._put_tagged(key, text, mode="create")
            except OSError as error:
                raise _conflict_or(error, f"{key} exists") from None
        if self.fs.exists(key):
            raise StoreConflict(f"{key} exists")
        return self._written_back(key, text)

    def replace(self, local: Path, text: str, etag: str) -> str:
        """`text` over the object, only while it is still version `etag`: the new ETag;
        StoreConflict when it changed or went."""
        key = self.key(local)
        if self.conditional:
            try:
                return self._put_tagged(key, text, IfMatch=etag)
            except OSError as error:
                raise _conflict_or(error, f"{key} is no longer version {etag}") from None
        info = self.info(local)
        if info is None or _etag(info) != etag:
            raise StoreConflict(f"{key} is no longer version {etag}")
        return self._written_back(key, text)

    def remove_version(self, local: Path, etag: str) -> bool:
        """The object removed, only while it is still version `etag`; False when it is not."""
        key = self.key(local)
        if self.conditional:
            bucket, name, _ = self.fs.split_path(key)
            try:
                self.fs.call_s3("delete_object", Bucket=bucket, Key=name, IfMatch=etag)
                return True
            except OSError as error:
                if isinstance(_conflict_or(error, key), StoreConflict):
                    return False
                # A store without conditional deletes: check, then delete.
        info = self.info(local)
        if info is None or _etag(info) != etag:
            return False
        self.remove(local)
        return True

    def _put_tagged(self, key: str, text: str, **condition) -> str:
        response = self.fs.pipe_file(key, text.encode(), **condition)
        return str((response or {}).get("ETag") or _etag(self.fs.info(key)))

    def _written_back(self, key: str, text: str, settle_s: float = 1.0) -> str:
        """The fallback's write: put, wait `settle_s` for a racing writer's put, read back."""
        import time

        self.fs.pipe_file(key, text.encode())
        time.sleep(settle_s)
        if self.fs.cat_file(key).decode() != text:
            raise StoreConflict(f"{key} was written by another writer at the same time")
        return _etag(self.fs.info(key))


class StoreConflict(RuntimeError):
    """A conditional write found the object not in the state it asked for."""


def _conflict_or(error: OSError, what: str) -> Exception:
    """A failed conditional request as StoreConflict (the condition did not hold, or the
    object went), any other error as it is."""
    cause = getattr(error.__cause__, "response", None) or {}
    code = cause.get("Error", {}).get("Code")
    if isinstance(error, (FileExistsError, FileNotFoundError)) or code in ("PreconditionFailed",
                                                                           "ConditionalRequestConflict"):
        return StoreConflict(what)
    return error


def _etag(info: dict) -> str:
    return str(info.get("ETag") or info.get("etag") or info.get("md5Hash") or
               f"{info.get('size')}-{info.get('LastModified') or info.get('mtime')}")


_STORES: dict[Path, Store] = {}  # stage -> store, of the remote corpora this process opened


def open_store(uri: str) -> Store:
    """The store of `uri` in this process (opened once: every layout and every path a task
    receives asks for it)."""
    store = _STORES.get(stage_of(uri))
    if store is None:
        store = Store(uri)
        _STORES[store.stage] = store
    return store


def store_of(path: str | Path) -> Store | None:
    """The store a staged path belongs to, None for a path of a local corpus."""
    if not _STORES:
        return None
    path = Path(path)
    for stage, store in _STORES.items():
        if path == stage or stage in path.parents:
            return store
    return None


def pull(path: Path) -> Path:
    """`path`, brought from the store first when it is a staged path (a local corpus's
    paths are returned as they are)."""
    if (store := store_of(path)) is not None:
        store.pull(path)
    return path


def exists(path: Path) -> bool:
    """Whether the file is there: in the store for a staged path, on disk otherwise."""
    store = store_of(path)
    return Path(path).is_file() if store is None else store.info(path) is not None


def file_size(path: Path) -> int | None:
    """A file's bytes (in the store for a staged path), None when it is not there."""
    store = store_of(path)
    if store is None:
        return Path(path).stat().st_size if Path(path).is_file() else None
    info = store.info(path)
    return None if info is None else int(info["size"])


def file_stamp(path: Path) -> list:
    """What identifies a file's content cheaply: size and modification time on disk, size
    and ETag in a store."""
    store = store_of(path)
    if store is None:
        stat = Path(path).stat()
        return [Path(path).name, stat.st_size, stat.st_mtime_ns]
    info = store.info(path) or {}
    return [Path(path).name, info.get("size"), _etag(info)]


def files_in(folder: Path, pattern: str) -> list[Path]:
    """The files of `folder` whose name matches `pattern`, sorted (listed in the store for a
    staged folder)."""
    store = store_of(folder)
    if store is None:
        return sorted(Path(folder).glob(pattern))
    return sorted(p for p in store.listing(folder) if p.parent == Path(folder) and p.match(pattern))


def folders_in(folder: Path) -> list[str]:
    """The names of the folders in `folder` (in the store for a staged folder)."""
    store = store_of(folder)
    if store is None:
        return sorted(p.name for p in Path(folder).iterdir() if p.is_dir()) if Path(folder).is_dir() else []
    return sorted({p.relative_to(folder).parts[0] for p in store.listing(folder) if len(p.relative_to(folder).parts) > 1})


def remove_file(path: Path) -> None:
    """A file gone, from the stage and (for a staged one) from its store."""
    Path(path).unlink(missing_ok=True)
    if (store := store_of(path)) is not None:
        store.remove(path)


def remove_tree(folder: Path) -> None:
    """A folder gone, from the stage and (for a staged one) from its store."""
    import shutil

    shutil.rmtree(folder, ignore_errors=True)
    if (store := store_of(folder)) is not None:
        store.remove_tree(folder)


def parquet_rows(path: Path) -> int:
    """A Parquet file's row count from its footer (read in place in the store for a staged path)."""
    import pyarrow.parquet as pq

    store = store_of(path)
    if store is None:
        return pq.ParquetFile(path).metadata.num_rows
    with store.fs.open(store.key(path), "rb") as handle:
        return pq.ParquetFile(handle).metadata.num_rows


class _Restaged:
    """A staged path in transit to another process: it arrives as that node's stage path."""

    def __init__(self, uri: str, relative: str, as_text: bool):
        self.uri, self.relative, self.as_text = uri, relative, as_text

    def __reduce__(self):
        return _arrive, (self.uri, self.relative, self.as_text)


def _arrive(uri: str, relative: str, as_text: bool):
    path = open_store(uri).stage / relative
    return str(path) if as_text else path


def restaged(value):
    """`value` (a task's arguments: paths, strings, tuples, lists, dicts of them) with every
    staged path made one that unpickles as the receiving node's stage path of it."""
    if isinstance(value, (Path, str)) and (store := store_of(value)) is not None and Path(value) != store.stage:
        return _Restaged(store.uri, Path(value).relative_to(store.stage).as_posix(), isinstance(value, str))
    if isinstance(value, tuple):
        return tuple(restaged(v) for v in value)
    if isinstance(value, list):
        return [restaged(v) for v in value]
    if isinstance(value, dict):
        return {k: restaged(v) for k, v in value.items()}
    return value
