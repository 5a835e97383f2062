"""How many threads a stage's libraries may start: the CPUs its Ray task reserved.

Ray sets OMP_NUM_THREADS to each task's and actor's CPU reservation (1 for the video
stage and for the CPU transcriber actors). FFmpeg's decoder, OpenCV and onnxruntime do
not read it and start a thread per core, so two video tasks on two cores ran four
decoding threads that spent their time handing frames to each other (measured here:
twice the system time, and onnxruntime ran on both cores of a build pinned to one).
Outside Ray nothing is set and every library keeps its own default.
"""

from __future__ import annotations

import os


def thread_budget() -> int:
    """OMP_NUM_THREADS as set by Ray for this task, or 0: the library's default."""
    try:
        return max(0, int(os.environ.get("OMP_NUM_THREADS", "0")))
    except ValueError:
        return 0


def thread_decoder(stream) -> None:
    """Threaded decoding of a PyAV video stream within the task's budget (0: FFmpeg's default)."""
    stream.thread_type = "AUTO"
    stream.codec_context.thread_count = thread_budget()
