"""A build's progress in the units a user thinks in: videos through the frame pass (ok /
failed), videos labelled, frames kept, seconds of video, and their rates; read from the per-video work records as they appear,
so it needs nothing from Ray and counts the same on one machine or many.

On a terminal, one line redrawn in place; otherwise (a log file, CI) one line every
`every_s` seconds through the `pipelines.progress` logger, and a last one at the end.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time

from contract.layout import WorkLayout

log = logging.getLogger(__name__)


def new_actor_lines(work: WorkLayout, seen: set[str]) -> list[str]:
    """A line for each transcriber actor that announced itself (pipelines/build.py) and is
    not in `seen` (which gets it): which labeler, on which device and node."""
    lines = []
    work.stage_records(actors=True)
    for path in sorted(work.actors.glob("*.json")) if work.actors.is_dir() else []:
        if path.name in seen:
            continue
        try:
            actor = json.loads(path.read_text())
        except (OSError, ValueError):  # being written right now: next poll
            continue
        seen.add(path.name)
        gpus = f" (GPU {', '.join(actor['gpus'])})" if actor.get("gpus") else ""
        lines.append(f"label actor {actor['pid']} on node {actor['node']}: {actor['labeler']} on {actor['device']}{gpus}")
    return lines


class BuildProgress:
    def __init__(self, work: WorkLayout, video_ids: list[str], every_s: float = 30.0, stream=None,
                 label_version: str | None = None):
        self.work, self.video_ids, self.label_version = work, list(video_ids), label_version
        self.labelled: dict[str, bool] = {}  # video -> its labels are ok
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.every_s = 1.0 if self.tty else every_s
        self.seen: dict[str, dict] = {}
        self.actors: set[str] = set()
        self.work.stage_records(*[label_version] if label_version else [])
        self.resumed = {v for v in self.video_ids if self.work.video_json(v).is_file()}  # done before this run
        self.started = time.perf_counter()
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True, name="build-progress")

    def __enter__(self) -> "BuildProgress":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stopping.set()
        self.thread.join(timeout=5)
        self._poll()
        self._emit(final=True)

    def _run(self) -> None:
        while not self.stopping.wait(self.every_s):
            self._poll()
            self._emit(final=False)

    def _poll(self) -> None:
        self.work.stage_records(*[self.label_version] if self.label_version else [])
        for line in new_actor_lines(self.work, self.actors):
            if self.tty:
                self.stream.write("\r\x1b[2K" + line + "\n")
            else:
                log.info("%s", line)
        for video_id in self.video_ids:
            if self.label_version and video_id not in self.labelled:
                self._poll_labels(video_id)
            if video_id in self.seen:
                continue
            path = self.work.video_json(video_id)
            if path.is_file():
                try:
                    self.seen[video_id] = json.loads(path.read_text())
                except (OSError, ValueError):  # being replaced right now: next poll
                    pass

    def _poll_labels(self, video_id: str) -> None:
        path = self.work.label_record(self.label_version, video_id)
        if path.is_file():
            try:
                self.labelled[video_id] = json.loads(path.read_text()).get("label_status") == "ok"
            except (OSError, ValueError):  # being replaced right now: next poll
                pass

    def line(self) -> str:
        """The progress as one line."""
        new = [r for v, r in self.seen.items() if v not in self.resumed]
        ok = sum(r.get("status") == "ok" for r in self.seen.values())
        failed = sum(r.get("status") == "failed" for r in self.seen.values())
        kept = sum(r.get("n_kept") or 0 for r in self.seen.values())
        seconds = sum(r.get("duration_s") or 0.0 for r in new)
        wall = max(time.perf_counter() - self.started, 1e-6)
        label_failed = sum(not good for good in self.labelled.values())
        labelled = [f"{len(self.labelled) - label_failed}/{ok} labelled"
                    + (f" ({label_failed} failed)" if label_failed else "")] if self.label_version else []
        parts = [f"{len(self.seen)}/{len(self.video_ids)} videos ({ok} ok, {failed} failed"
                 + (f", {len(self.resumed)} from an earlier run" if self.resumed else "") + ")",
                 *labelled, f"{kept:,} frames kept", f"{seconds / 60:,.1f} min of video this run",
                 f"{seconds / wall:.2f} video s/s", f"{len(new) / wall * 60:.1f} videos/min", f"{wall:.0f} s"]
        return "build: " + " · ".join(parts)

    def _emit(self, final: bool) -> None:
        if self.tty:
            self.stream.write("\r\x1b[2K" + self.line() + ("\n" if final else ""))
            self.stream.flush()
        else:
            log.info("%s%s", self.line(), " (done)" if final else "")
