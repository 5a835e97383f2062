"""One polite request rate for a whole fetch, however many threads or Ray workers share it.

A `RateLimiter` hands out start times: at most `per_second` starts a second (each slot
jittered, so workers released together do not hit the server in step), and a server's
`Retry-After` pushes every later slot past it. The fetch command's threads share one in
the process; a build's Ray workers share one Ray actor (`shared_limiter`), which is the
same class run remotely, so the arithmetic lives here once.
"""

from __future__ import annotations

import random
import threading
import time


class RateLimiter:
    def __init__(self, per_second: float, jitter: float = 0.2, seed: int | None = None):
        if per_second <= 0:
            raise ValueError(f"requests per second must be > 0 (got {per_second})")
        self.interval = 1.0 / per_second
        self.jitter = jitter
        self.next_start = 0.0  # time.time() of the next free slot
        self.paused_until = 0.0  # Retry-After: no start before this
        self.random = random.Random(seed)
        self.lock = threading.Lock()

    def reserve(self) -> float:
        """Claim the next slot; returns the wall-clock time (time.time()) to start at."""
        with self.lock:
            start = max(time.time(), self.next_start, self.paused_until)
            self.next_start = start + self.interval * (1 + self.jitter * self.random.random())
            return start

    def pause(self, seconds: float) -> None:
        """The server said Retry-After: nobody starts before then, slot or not."""
        with self.lock:
            self.paused_until = max(self.paused_until, time.time() + seconds)

    def resume_at(self) -> float:
        return self.paused_until

    def wait(self) -> None:
        _sleep_until(self.reserve(), self.resume_at)


def _sleep_until(start: float, resume_at) -> None:
    """Sleep to the slot, then past any pause that was called while sleeping."""
    while True:
        delay = max(start, resume_at()) - time.time()
        if delay <= 0:
            return
        time.sleep(min(delay, 0.5))


class RemoteLimiter:
    """A worker's view of the shared Ray actor, with the same `wait` and `pause`."""

    def __init__(self, actor):
        self.actor = actor

    def wait(self) -> None:
        import ray

        _sleep_until(ray.get(self.actor.reserve.remote()), lambda: ray.get(self.actor.resume_at.remote()))

    def pause(self, seconds: float) -> None:
        self.actor.pause.remote(seconds)


def shared_limiter(per_second: float) -> RemoteLimiter:
    """A limiter all of this Ray job's workers share (Ray must be up): one actor, no CPU held."""
    import ray

    actor = ray.remote(num_cpus=0)(RateLimiter).remote(per_second)
    return RemoteLimiter(actor)
