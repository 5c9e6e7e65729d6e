"""What the fault tests share: a callback recorder that waits, bounded."""

import queue
import time
from typing import Any


class Seen:
    """Records ``(value, revision)`` callbacks; :meth:`wait_for` takes them until
    one carries the value expected."""

    def __init__(self) -> None:
        self.calls: queue.Queue[tuple[Any, int]] = queue.Queue()

    def __call__(self, value: Any, revision: int) -> None:
        self.calls.put((value, revision))

    def wait_for(self, expected: Any, timeout: float) -> float:
        """Seconds until a callback carried ``expected``.

        :raises AssertionError: none did within ``timeout`` seconds.
        """
        start = time.monotonic()
        deadline = start + timeout
        last: Any = "(no callback)"
        while True:
            left = deadline - time.monotonic()
            try:
                last, _ = self.calls.get(timeout=max(0.01, left))
            except queue.Empty:
                raise AssertionError(
                    f"no callback with {expected!r} within {timeout} s (last: {last!r})"
                ) from None
            if last == expected:
                return time.monotonic() - start
