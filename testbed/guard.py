"""Processes that fork: cleanups that run only where they belong, and SIGTERM as an exit.

pyroute2 forks a child to open a socket in a namespace and ends it with SIGTERM. A child
that a signal reaches before its `os._exit` would unwind through its parent's frames and
run the parent's cleanups: tear down the namespaces, the node, the service it shares with
its parent. Both guards here make such a child just exit.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from types import FrameType, TracebackType


class OwnStack(ExitStack):
    """An ExitStack whose cleanups run only in the process that made it.

    pyroute2 forks a child to open a socket in a namespace and ends it with SIGTERM; a child
    that a signal reaches before its `os._exit` unwinds through this process's frames. It
    must exit there, not tear down the namespaces, the service and the worker it shares
    with its parent."""

    def __init__(self) -> None:
        super().__init__()
        self.pid = os.getpid()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        if os.getpid() != self.pid:
            os._exit(1)
        return bool(super().__exit__(exc_type, exc, tb))


@contextmanager
def sigterm_as_exit() -> Iterator[None]:
    """SIGTERM unwinds like Ctrl-C in this process, so every cleanup runs; a forked child
    (see OwnStack) just exits."""
    pid = os.getpid()

    def handler(signum: int, frame: FrameType | None) -> None:
        if os.getpid() != pid:
            os._exit(128 + signum)
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
