"""An event loop that Ctrl-C stops cleanly, however often it is pressed.

``asyncio.run`` turns the first Ctrl-C into a cancellation of its main task,
so every ``finally`` closes its connections; but a second Ctrl-C raises
``KeyboardInterrupt`` wherever the loop happens to be, inside its own
machinery: a task left half-stepped makes ``asyncio.run`` wait for it forever,
and aiosqlite's threads report to a loop that is closed (a traceback each).
So while a drain runs, SIGINT (and SIGTERM, when Python code handles it) is
taken over: the first signal cancels the drain, a second one says that the
clean-up is under way, a third abandons the clean-up. Once the loop is
closed, the first signal goes on to the handler that was there before (for
SIGINT, Python's own: ``KeyboardInterrupt``); if that handler returns,
``KeyboardInterrupt`` naming the signal is raised.
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any, NoReturn, TypeVar

T = TypeVar("T")

_TAKEN_OVER = (signal.SIGINT, signal.SIGTERM)
_CLEANING_UP = b"qbench: stopping: closing the database connections (a third Ctrl-C abandons the clean-up)\n"


def _name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


class Interrupts:
    """The signals received while the loop ran, and the task the first one cancels."""

    def __init__(self) -> None:
        self.received: list[int] = []
        self.main: asyncio.Task[Any] | None = None
        self._previous: dict[int, Callable[[int, FrameType | None], Any]] = {}

    def attach(self) -> None:
        """Called first in the main coroutine: the task a signal cancels (now, if one came already)."""
        self.main = asyncio.current_task()
        if self.received and self.main is not None:
            self.main.cancel()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.received.append(signum)
        if len(self.received) == 1:
            main = self.main
            if main is not None and not main.done():
                main.cancel()
                main.get_loop().call_soon_threadsafe(lambda: None)  # wake a loop asleep in select()
        elif len(self.received) == 2:
            os.write(2, _CLEANING_UP)
        else:
            raise KeyboardInterrupt(_name(signum))

    @contextmanager
    def installed(self) -> Iterator[None]:
        """Take over SIGINT and SIGTERM where Python code handles them (main thread only)."""
        if threading.current_thread() is threading.main_thread():
            for signum in _TAKEN_OVER:
                current = signal.getsignal(signum)
                if callable(current):
                    self._previous[signum] = current
                    signal.signal(signum, self._handle)
        try:
            yield
        finally:
            for taken, handler in self._previous.items():
                signal.signal(taken, handler)

    def redeliver(self) -> NoReturn:
        """Hand the first signal to the handler that was there before; KeyboardInterrupt if it returns."""
        signum = self.received[0]
        previous = self._previous.get(signum)
        if previous is not None:
            previous(signum, None)
        raise KeyboardInterrupt(_name(signum))


def run_interruptibly(main: Callable[[Interrupts], Coroutine[Any, Any, T]]) -> T:
    """Run ``main(interrupts)`` in a fresh event loop, as ``asyncio.run`` does, with the signals above.

    Raises:
        KeyboardInterrupt: a signal came; raised once ``main`` has finished its clean-up and the
            loop is closed (or at once, on the third signal).
    """
    interrupts = Interrupts()
    runner = asyncio.Runner()
    abandoned = False
    outcome: list[T] = []
    with interrupts.installed():
        try:
            outcome.append(runner.run(main(interrupts)))
        except asyncio.CancelledError:
            if not interrupts.received:
                raise
        except KeyboardInterrupt:
            # The third signal: tasks may be half-stepped, and closing the loop would wait for
            # them forever. The loop is left open, so no connection thread reports to a closed one.
            abandoned = True
            raise
        finally:
            if not abandoned:
                runner.close()
    if interrupts.received:
        interrupts.redeliver()
    return outcome[0]
