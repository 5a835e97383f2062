"""The words a corpus uses for what happened to a video and a frame: one place for each.

A video's `status` is `ok`, `failed` (with an error class and a message) or `skipped`
(nothing to fetch). A dropped frame carries one drop reason. Every failure anywhere in a
build is a `Failure(error_class, message)`, and every class it can carry is listed here,
with the stage that gives it and what it means (the README's table is this one).
"""

from __future__ import annotations

import errno
import os

STATUSES = ("ok", "failed", "skipped")

# Checked in this order; the first that applies is the frame's reason.
DROP_REASONS = ("outside_range", "no_keyboard", "silent")
OUTSIDE_RANGE, NO_KEYBOARD, SILENT = DROP_REASONS

ERROR_CLASSES: dict[str, tuple[str, str]] = {
    "no_url": ("fetch", "the manifest row has no URL: the video is `skipped`, not failed"),
    "unavailable": ("fetch", "removed, never existed (HTTP 404/410), or a local file that is not there"),
    "private": ("fetch", "a private video"),
    "bot_check": ("fetch", "YouTube asks to sign in / confirm you are not a bot: pass --cookies or --cookies-from-browser"),
    "rate_limited": ("fetch", "HTTP 429: retried with backoff (at least the Retry-After it gives, for every worker), then failed"),
    "network": ("fetch", "timeouts, resets, a transfer cut short, 5xx: retried with backoff, then failed"),
    "no_js_runtime": ("fetch", "YouTube listed no downloadable format because yt-dlp lacks a JavaScript runtime (deno >= 2.3) "
                               "or the challenge solver (yt-dlp-ejs); `pianocorpus doctor` says which"),
    "too_long": ("fetch", "longer than --max-duration"),
    "too_large": ("fetch", "larger than --max-filesize"),
    "corrupt": ("fetch, video", "not readable media, or decoding fails part-way through the file"),
    "no_video": ("video", "the file has no video stream"),
    "no_audio": ("video", "the file has no audio stream, or its audio cannot be decoded"),
    "no_keyboard": ("video", "no 88-key keyboard in the sampled frames"),
    "partial_keyboard": ("video", "keys seen, but never the full 88 (cropped, 61/76 keys, out of the frame)"),
    "labels": ("labels", "the transcriber failed on the video's audio; the message says how"),
    "resources": ("any", "the machine ran out of disk space or memory: not kept as the video's verdict, a re-run tries again"),
    "other": ("any", "anything unforeseen (a bug): the message ends with the traceback's last lines"),
}
TRANSIENT = frozenset({"rate_limited", "network"})  # retried by fetch
SKIPPED = frozenset({"no_url"})  # the row's status is `skipped`
NOT_FINAL = frozenset({"resources"})  # a re-run tries the video again
_RESOURCE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.ENOMEM)
_RESOURCE_WORDS = tuple(os.strerror(number) for number in _RESOURCE_ERRNOS)


def is_resource_error(error: BaseException) -> bool:
    """Out of disk, quota, file size or memory, however the library reports it (pyarrow
    and FFmpeg give the words, not always the errno)."""
    if isinstance(error, MemoryError) or getattr(error, "errno", None) in _RESOURCE_ERRNOS:
        return True
    return any(words in str(error) for words in _RESOURCE_WORDS)


class Failure(Exception):
    """A video's failure with its class from ERROR_CLASSES; the message says what and where."""

    def __init__(self, error_class: str, message: str):
        if error_class not in ERROR_CLASSES:
            raise ValueError(f"unknown error class {error_class!r} (known: {', '.join(ERROR_CLASSES)})")
        super().__init__(message)
        self.error_class = error_class

    @property
    def status(self) -> str:
        return "skipped" if self.error_class in SKIPPED else "failed"
