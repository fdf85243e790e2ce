"""Riding through outages: one line when a service stops answering, one when it is back, and
the backoff between tries. Standard library only (the stream's helper processes use it).

    outage = Outage("Kafka (transactions of transactions:0)")
    while True:
        try:
            do()
            outage.ok()
            break
        except RETRYABLE as e:
            time.sleep(outage.failed(e))
"""

from __future__ import annotations

import sys
import time

FIRST_DELAY_S = 0.2
MAX_DELAY_S = 5.0


def describe(err: BaseException) -> str:
    """An error in one short line (no traceback, no secret value)."""
    from .secrets import redact

    text = " ".join(redact(str(err)).split())
    if len(text) > 300:
        text = text[:300] + "..."
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


class Outage:
    def __init__(self, what: str, *, first_s: float = FIRST_DELAY_S, max_s: float = MAX_DELAY_S, quiet: bool = False):
        self.what = what
        self.first_s, self.max_s = first_s, max_s
        self.quiet = quiet
        self.since: float | None = None
        self.tries = 0
        self.count = 0  # outages seen

    @property
    def down(self) -> bool:
        return self.since is not None

    def failed(self, err: BaseException, action: str = "retrying", *, since: float | None = None) -> float:
        """Note a failure (of a try begun at monotonic time `since`: the outage began then, not when
        the try gave up); returns how long to wait before the next try (doubling, capped)."""
        if self.since is None:
            self.since = time.monotonic() if since is None else since
            self.tries = 0
            self.count += 1
            self._say(f"{self.what} unreachable ({describe(err)}); {action} with backoff, nothing is lost")
        self.tries += 1
        return min(self.max_s, self.first_s * 2 ** min(self.tries - 1, 16))

    def ok(self) -> None:
        if self.since is not None:
            self._say(f"{self.what} back after {time.monotonic() - self.since:.1f} s ({self.tries} tries)")
            self.since = None

    def _say(self, text: str) -> None:
        if not self.quiet:
            print(f"[stream] {text}", file=sys.stderr, flush=True)


def retrying(fn, outage: Outage, retry_on: tuple, *, give_up_after_s: float | None = None):
    """fn() until it stops raising one of `retry_on` (a line when it first fails, one when it
    works again); after give_up_after_s of failures the last error is raised."""
    t0 = time.monotonic()
    while True:
        t_try = time.monotonic()
        try:
            value = fn()
        except retry_on as e:
            if give_up_after_s is not None and time.monotonic() - t0 > give_up_after_s:
                raise
            time.sleep(outage.failed(e, since=t_try))
            continue
        outage.ok()
        return value


def transient_errors() -> tuple:
    """What a Redis or Kafka call raises while the service is away (the calls are retried)."""
    from kafka.errors import KafkaError
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError

    return (RedisConnectionError, RedisTimeoutError, KafkaError, TimeoutError, ConnectionError)
