"""Read a manifest from CSV, JSONL or Parquet and validate every row at once."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from manifests.schema import COLUMNS, Manifest, ManifestError, cross_check, validate_row

SHIPPED_DIR = Path(__file__).resolve().parent


def read_raw_rows(path: Path) -> list[tuple[int, str, dict]]:
    """(line or row number, 'FILE:LINE' label, raw cells) for every data row."""
    suffix = path.suffix.lower()
    if suffix in (".csv", ".tsv"):
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle, delimiter="\t" if suffix == ".tsv" else ",")
            _check_unique(path, reader.fieldnames or [])
            rows = []
            for raw in reader:
                line = reader.line_num
                if not any((v or "").strip() for v in raw.values() if isinstance(v, str)):
                    continue  # blank line
                rows.append((line, f"{path}:{line}", raw))
            _check_header(path, reader.fieldnames or [])
            return rows
    if suffix in (".jsonl", ".ndjson"):
        rows = []
        for line, text in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if not text.strip():
                continue
            try:
                raw = json.loads(text, object_pairs_hook=_unique_keys)
            except json.JSONDecodeError as error:
                raise ManifestError([f"{path}:{line}: not valid JSON ({error.msg})"]) from None
            except _DuplicateKey as error:
                raise ManifestError([f"{path}:{line}: {error}: key appears twice in the object"]) from None
            if not isinstance(raw, dict):
                raise ManifestError([f"{path}:{line}: expected a JSON object per line"])
            rows.append((line, f"{path}:{line}", raw))
        return rows
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        table = pq.read_table(path)
        _check_header(path, table.column_names)
        return [(i + 1, f"{path}:row {i + 1}", raw) for i, raw in enumerate(table.to_pylist())]
    raise ManifestError([f"{path}: unsupported manifest format {suffix!r} (use .csv, .tsv, .jsonl or .parquet)"])


class _DuplicateKey(ValueError):
    pass


def _unique_keys(pairs: list[tuple[str, object]]) -> dict:
    """A JSON object whose keys are all different (json.loads would keep the last)."""
    seen = set()
    for key, _ in pairs:
        if key in seen:
            raise _DuplicateKey(key)
        seen.add(key)
    return dict(pairs)


def _check_unique(path: Path, columns: list[str]) -> None:
    twice = sorted({c for c in columns if columns.count(c) > 1})
    if twice:
        raise ManifestError([f"{path}:1: {twice[0]}: column appears twice in the header (csv would keep the last)"])


def _check_header(path: Path, columns: list[str]) -> None:
    if "video_id" not in columns:
        raise ManifestError([f"{path}:1: video_id: required column missing (columns: {', '.join(columns) or 'none'})"])


def load_manifest(path: str | Path) -> Manifest:
    """Validated manifest; raises ManifestError listing every bad row.

    A bare name such as `demo` or `audeo` finds the shipped manifest of that name.
    """
    path = Path(path)
    if not path.is_file() and not path.suffix and (SHIPPED_DIR / f"{path}.csv").exists():  # demo/ may be a folder
        path = SHIPPED_DIR / f"{path}.csv"
    if not path.is_file():
        raise ManifestError([f"{path}: no such manifest file"])
    base_dir = path.resolve().parent
    rows, problems, where = [], [], {}
    for line, label, raw in read_raw_rows(path):
        unknown = set(raw) - set(COLUMNS)
        if unknown:
            problems.append(f"{label}: {sorted(unknown)[0]}: unknown column (known: {', '.join(COLUMNS)})")
            continue
        row, row_problems = validate_row(raw, label, base_dir)
        problems += row_problems
        if row is not None:
            rows.append(row.__class__(**{**row.__dict__, "line": line}))
            where[line] = label
    problems += cross_check(rows, where)
    if not rows and not problems:
        problems.append(f"{path}: the manifest has no rows")
    if problems:
        raise ManifestError(problems)
    return Manifest(path=path, rows=tuple(rows))
