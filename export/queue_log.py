"""Rate-limits waitress's request-queue warnings (one line per interval)."""

from __future__ import annotations

import logging
import math
import threading
import time

__all__ = ["quiet_queue_warnings"]


class _EveryInterval(logging.Filter):
    """Lets one record through per `interval` seconds; counts the others.

    waitress logs "Task queue depth is N" on every request that finds no idle
    thread: with more clients than threads (the normal state of a loaded
    service) that is one warning per request. One line per interval, with the
    deepest queue and the number of requests that waited, says the same.
    """

    def __init__(self, interval: float = 60.0):
        super().__init__()
        self.interval = interval
        self._lock = threading.Lock()
        self._last = -math.inf
        self._waited = 0
        self._deepest = 0

    def filter(self, record: logging.LogRecord) -> bool:
        depth = record.args[0] if isinstance(record.args, tuple) and record.args else 0
        with self._lock:
            self._waited += 1
            self._deepest = max(self._deepest, int(depth or 0))
            now = time.monotonic()
            if now - self._last < self.interval:
                return False
            record.msg = ("Request queue: up to %d request(s) waited for a free "
                          "thread (%d time(s) in the last %.0f s); raise --threads "
                          "if latency matters more than memory")
            record.args = (self._deepest, self._waited, self.interval)
            self._last, self._waited, self._deepest = now, 0, 0
            return True


_QUEUE_FILTER = _EveryInterval()


def quiet_queue_warnings(interval: float = 60.0) -> None:
    """Rate-limits waitress's `waitress.queue` warnings to one per `interval` s."""
    queue_logger = logging.getLogger("waitress.queue")
    _QUEUE_FILTER.interval = interval
    if _QUEUE_FILTER not in queue_logger.filters:
        queue_logger.addFilter(_QUEUE_FILTER)
