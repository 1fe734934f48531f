"""Background work whose results are handled on Blender's main thread.

Blender's data may only be touched from the main thread, and network calls must not run
there (the UI would freeze). A `Task` runs its work function on a daemon thread; whatever
it hands back (progress, the result, or the exception) is posted to a `Mailbox` as a
callable, and the add-on's one `bpy.app.timers` function runs `Mailbox.drain()` on the
main thread. No bpy here.
"""

from __future__ import annotations

import logging
import queue
import threading
import traceback
from typing import Any, Callable

log = logging.getLogger(__name__)


class Mailbox:
    """Callables posted from any thread, run in order by `drain()` on the main thread."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[tuple[Callable[..., Any], tuple]] = queue.SimpleQueue()

    def post(self, fn: Callable[..., Any], *args: Any) -> None:
        self._queue.put((fn, args))

    def drain(self, limit: int = 1000) -> int:
        """Run up to `limit` posted callables; returns how many ran. A failing callable is
        logged and does not stop the others (the timer that calls this must survive)."""
        ran = 0
        while ran < limit:
            try:
                fn, args = self._queue.get_nowait()
            except queue.Empty:
                break
            ran += 1
            try:
                fn(*args)
            except Exception:  # noqa: BLE001 - keep draining; the traceback is in the log
                log.error("avatar-runtime: main-thread callback failed\n%s", traceback.format_exc())
        return ran

    def empty(self) -> bool:
        return self._queue.empty()


class Task:
    """`work(task)` on a daemon thread; `on_done(result)` or `on_error(exc)` on the main thread
    (`on_error` also gets what `on_done` raises).

    The work function may call `task.post(fn, *args)` to run `fn` on the main thread (progress
    reports) and should check `task.cancelled` between blocking steps.
    """

    def __init__(self, name: str, work: Callable[["Task"], Any], mailbox: Mailbox, *,
                 on_done: Callable[[Any], None], on_error: Callable[[BaseException], None]):
        self.name = name
        self._work = work
        self._mailbox = mailbox
        self._on_done = on_done
        self._on_error = on_error
        self._cancel = threading.Event()
        self._finished = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"avatar-runtime: {name}", daemon=True)

    def start(self) -> "Task":
        self._thread.start()
        return self

    def cancel(self) -> None:
        self._cancel.set()

    def cancelled(self) -> bool:
        return self._cancel.is_set()

    @property
    def finished(self) -> bool:
        """True once the result (or error) has been handled on the main thread."""
        return self._finished.is_set()

    def post(self, fn: Callable[..., Any], *args: Any) -> None:
        self._mailbox.post(fn, *args)

    def _run(self) -> None:
        try:
            result = self._work(self)
        except BaseException as exc:  # noqa: BLE001 - every failure goes back to the UI
            self._mailbox.post(self._fail, exc)
        else:
            self._mailbox.post(self._complete, result)

    def _complete(self, result: Any) -> None:
        try:
            self._on_done(result)
        except Exception as exc:  # noqa: BLE001 - handling the result failed: report that
            self._on_error(exc)
        finally:
            self._finished.set()

    def _fail(self, exc: BaseException) -> None:
        try:
            self._on_error(exc)
        finally:
            self._finished.set()
