"""The per-process background event-loop thread that sync objects run the async core on.

Rules (DESIGN.md §5.4), each covered by a test in tests/processes and tests/unit/test_runner.py:

* callers pass a coroutine *function* and its arguments; the coroutine is created on the loop;
* nothing starts until the first ``run()``; the thread is a daemon named ``s3torch-async-io``;
* calling ``run()`` from the loop thread raises ``RuntimeError``; a caller whose thread runs
  another event loop is simply blocked;
* the lock guards state transitions only and is never held while waiting on work;
* an interrupt (``KeyboardInterrupt``) while waiting cancels the work, waits briefly for its
  shielded cleanup, and re-raises;
* before ``fork()`` an idle runner is drained and stopped; a child starts with a fresh runner and
  never touches the loop it inherited;
* at interpreter exit the runner drains its clients and stops.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import logging
import os
import threading
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Hashable, Iterator
from typing import Any, Callable, Generic, Optional, Protocol, TypeVar

logger = logging.getLogger(__name__)

__all__ = ["LoopRunner", "get_runner", "runner_generation"]

T = TypeVar("T")
R = TypeVar("R")

THREAD_NAME = "s3torch-async-io"
_DRAIN_TIMEOUT = 5.0
_CANCEL_GRACE = 10.0


class _Closable(Protocol):
    async def aclose(self) -> None: ...


class _Call(Generic[T]):
    """One ``run()``: the caller blocks on ``waiter`` until the loop releases it.

    A bare lock is the cheapest wake-up between two threads (a ``concurrent.futures.Future``
    costs a condition variable, its notification and a state machine per call); every sync
    call crosses here, up to once per listing page or batch of objects.
    """

    __slots__ = (
        "args",
        "done",
        "error",
        "fn",
        "kwargs",
        "loop",
        "task",
        "value",
        "waiter",
    )

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        fn: Callable[..., Awaitable[T]],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> None:
        self.loop, self.fn, self.args, self.kwargs = loop, fn, args, kwargs
        self.waiter = threading.Lock()
        self.waiter.acquire()
        self.task: Optional[asyncio.Task[None]] = None
        self.done = False
        self.value: Optional[T] = None
        self.error: Optional[BaseException] = None

    def start(self) -> None:
        # On the loop: the coroutine is created here, never on the caller's thread.
        try:
            self.task = self.loop.create_task(self._main())
        except BaseException as exc:  # e.g. the loop is closing: report it, never hang
            self._finish(exc)

    async def _main(self) -> None:
        fn, args, kwargs = self.fn, self.args, self.kwargs
        self.fn = self.args = self.kwargs = None  # type: ignore[assignment]
        try:
            self.value = await fn(*args, **kwargs)
        except BaseException as exc:
            del fn, args, kwargs  # the traceback keeps this frame: not the arguments
            self._finish(exc)
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise  # asyncio hands these to the loop's owner
            return
        # Released here rather than in a done callback: one loop iteration less per call.
        self._finish(None)

    def _finish(self, error: Optional[BaseException]) -> None:
        if self.done:
            return
        self.error = error
        self.task = None
        self.done = True
        self.waiter.release()

    def cancel(self) -> None:
        task = self.task
        if task is not None:
            # A task cancelled before its first step never enters ``_main``: the callback
            # releases the waiter then.
            task.add_done_callback(lambda _t: self._finish(asyncio.CancelledError()))
            task.cancel()

    def outcome(self) -> T:
        error, self.error = self.error, None
        if error is not None:
            try:
                raise error
            finally:
                del error  # no cycle through this frame
        value, self.value = self.value, None
        return value  # type: ignore[return-value]


class LoopRunner:
    """Runs coroutine functions on a private event loop in a daemon thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._thread: Optional[threading.Thread] = None
        self._thread_id: Optional[int] = None
        self._inflight = 0
        self._resources: weakref.WeakSet[Any] = weakref.WeakSet()
        self._shared: dict[Hashable, Any] = {}
        self._pending_closes: set[asyncio.Task[None]] = set()
        self._pid = os.getpid()

    # -- state --------------------------------------------------------------------------------

    @property
    def is_running(self) -> bool:
        return self._loop is not None

    @property
    def loop(self) -> Optional[asyncio.AbstractEventLoop]:
        """The running loop, or ``None`` while stopped."""
        return self._loop

    def in_runner_thread(self) -> bool:
        return self._thread_id is not None and threading.get_ident() == self._thread_id

    def _start_locked(self) -> asyncio.AbstractEventLoop:
        if self._loop is not None:
            return self._loop
        loop = asyncio.new_event_loop()
        started = threading.Event()

        def main() -> None:
            asyncio.set_event_loop(loop)
            self._thread_id = threading.get_ident()
            loop.call_soon(started.set)
            try:
                loop.run_forever()
            finally:
                self._thread_id = None

        thread = threading.Thread(target=main, name=THREAD_NAME, daemon=True)
        thread.start()
        started.wait()
        self._loop, self._thread = loop, thread
        return loop

    def prepare_background_work(self) -> None:
        """Start the loop thread and a worker of its default executor now, if possible.

        For finalizers that hand work to a helper thread that may still run while the
        interpreter exits: CPython 3.12.0-3.12.2 refuse to start threads once the main thread
        has finished (gh-113964), so the threads that work needs (the loop's, and one
        executor worker, which aiobotocore uses to build its connector) are best started
        while the program still runs. Best effort: never raises, never waits on a busy runner.
        """
        if self.in_runner_thread():
            return
        if self._loop is None:
            if not self._lock.acquire(blocking=False):
                return
            try:
                self._start_locked()
            except RuntimeError:
                return  # already shutting down: the helper thread reports the failure
            finally:
                self._lock.release()
        loop = self._loop
        if loop is None:
            return
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(_touch_default_executor(), loop).result(5)

    # -- calls --------------------------------------------------------------------------------

    def run(self, fn: Callable[..., Awaitable[T]], /, *args: Any, **kwargs: Any) -> T:
        """Run ``fn(*args, **kwargs)`` on the loop thread and return its result.

        Raises:
            RuntimeError: Called from the runner's own thread.
        """
        if self.in_runner_thread():
            raise RuntimeError(
                "s3torch-async's blocking API cannot be called from the s3torch-async event "
                "loop thread; await the Async* API instead"
            )
        with self._lock:
            loop = self._start_locked()
            self._inflight += 1
        try:
            return self._submit_and_wait(loop, fn, args, kwargs)
        finally:
            with self._lock:
                self._inflight -= 1

    def _submit_and_wait(
        self,
        loop: asyncio.AbstractEventLoop,
        fn: Callable[..., Awaitable[T]],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> T:
        call: _Call[T] = _Call(loop, fn, args, kwargs)
        loop.call_soon_threadsafe(call.start)
        try:
            call.waiter.acquire()
        except BaseException:
            if not call.done:
                # Interrupted while waiting: cancel the work and let its shielded cleanup run.
                # ``start`` was queued first, so it has run by the time ``cancel`` does.
                loop.call_soon_threadsafe(call.cancel)
                call.waiter.acquire(timeout=_CANCEL_GRACE)
            raise
        return call.outcome()

    def iterate(
        self, fn: Callable[..., AsyncIterator[T]], /, *args: Any, **kwargs: Any
    ) -> Iterator[T]:
        """Drive the async iterator ``fn(*args, **kwargs)`` one item per thread crossing."""

        async def make() -> AsyncIterator[T]:
            return fn(*args, **kwargs)

        agen = self.run(make)
        try:
            while True:
                try:
                    item = self.run(_anext, agen)
                except StopAsyncIteration:
                    return
                yield item
        finally:
            aclose = getattr(agen, "aclose", None)
            if aclose is not None and not self.in_runner_thread() and self.is_running:
                self.run(aclose)

    # -- resources ----------------------------------------------------------------------------

    def shared(self, key: Hashable, factory: Callable[[], R]) -> R:
        """The resource stored under ``key``, created by ``factory()`` on first use.

        Call on the loop thread only. Shared resources live until the runner drains (fork,
        ``close()`` or interpreter exit), so sync objects never own a connection pool and never
        need a finalizer.
        """
        try:
            return self._shared[key]  # type: ignore[no-any-return]
        except KeyError:
            resource = self._shared[key] = factory()
            return resource

    def register(self, resource: _Closable) -> None:
        """Close ``resource`` (``await resource.aclose()``) when this runner drains."""
        self._resources.add(resource)

    def close_soon(self, resource: _Closable) -> None:
        """Schedule ``resource.aclose()`` on the loop without waiting (safe from ``__del__``)."""
        loop = self._loop
        if loop is None or loop.is_closed() or os.getpid() != self._pid:
            return

        def schedule() -> None:
            task = loop.create_task(resource.aclose())
            self._pending_closes.add(task)
            task.add_done_callback(self._pending_closes.discard)

        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
            loop.call_soon_threadsafe(schedule)

    async def _drain(self) -> None:
        closers = [r.aclose() for r in [*self._resources, *self._shared.values()]]
        self._resources = weakref.WeakSet()
        self._shared = {}
        pending = list(self._pending_closes)
        results = await asyncio.gather(*closers, *pending, return_exceptions=True)
        for res in results:
            if isinstance(res, BaseException):
                logger.debug("error while closing a client at shutdown: %r", res)

    def _stop_locked(self, timeout: float) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        try:
            asyncio.run_coroutine_threadsafe(self._drain(), loop).result(timeout)
        except BaseException as exc:  # a wedged loop must not block fork or exit
            logger.debug("runner drain did not finish: %r", exc)

        async def cancel_rest() -> None:
            current = asyncio.current_task()
            rest = [t for t in asyncio.all_tasks() if t is not current]
            for t in rest:
                t.cancel()
            await asyncio.gather(*rest, return_exceptions=True)

        threads_before = {t.native_id for t in threading.enumerate()}
        try:
            asyncio.run_coroutine_threadsafe(cancel_rest(), loop).result(timeout)
            # Join the default executor's threads too (aiobotocore builds SSL contexts there).
            asyncio.run_coroutine_threadsafe(
                loop.shutdown_default_executor(), loop
            ).result(timeout)
        except BaseException as exc:
            logger.debug("runner task cancellation did not finish: %r", exc)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout)
        if not thread.is_alive():
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()
        self._loop, self._thread = None, None
        _wait_for_os_threads_to_exit(threads_before, timeout=2.0)

    def close(self, timeout: float = _DRAIN_TIMEOUT) -> None:
        """Close every registered client, stop the loop and join the thread."""
        if self.in_runner_thread():
            raise RuntimeError(
                "LoopRunner.close() cannot be called from its own loop thread"
            )
        with self._lock:
            self._stop_locked(timeout)

    # -- fork ---------------------------------------------------------------------------------

    def _before_fork(self) -> None:
        self._lock.acquire()
        if (
            self._inflight == 0
            and self._loop is not None
            and not self.in_runner_thread()
        ):
            self._stop_locked(timeout=2.0)

    def _after_fork_in_parent(self) -> None:
        self._lock.release()


def _wait_for_os_threads_to_exit(
    native_ids: set[Optional[int]], timeout: float
) -> None:
    """Wait until threads that Python saw finish are gone from the OS as well.

    ``Thread.join()`` returns before the OS thread has run its C-level exit (OpenSSL frees its
    per-thread state under a global lock there). A fork in that gap hands the child a lock that
    is held forever, and the child's first TLS context then hangs. Linux only (``/proc``).
    """
    if not os.path.isdir("/proc/self/task"):
        return
    alive = {t.native_id for t in threading.enumerate()}
    deadline = time.monotonic() + timeout
    for tid in native_ids - alive:
        if tid is None:
            continue
        while os.path.exists(f"/proc/self/task/{tid}") and time.monotonic() < deadline:
            time.sleep(0.001)


async def _anext(agen: AsyncIterator[T]) -> T:
    return await agen.__anext__()


# -- the process-wide runner ------------------------------------------------------------------

_global_lock = threading.Lock()
_runner: Optional[LoopRunner] = None
_generation = 0
# Loops and runners inherited across fork(): referenced forever, never run or closed.
_abandoned: list[Any] = []


def get_runner() -> LoopRunner:
    """The process-wide runner (created lazily; a fork child gets a new one)."""
    global _runner
    runner = _runner
    if runner is not None:
        return runner
    with _global_lock:
        if _runner is None:
            _runner = LoopRunner()
        return _runner


def runner_generation() -> int:
    """Incremented in every fork child; sync objects compare it to know their client is stale."""
    return _generation


def _before_fork() -> None:
    _global_lock.acquire()
    if _runner is not None:
        _runner._before_fork()  # noqa: SLF001 - same module


def _after_fork_in_parent() -> None:
    if _runner is not None:
        _runner._after_fork_in_parent()  # noqa: SLF001 - same module
    _global_lock.release()


def _after_fork_in_child() -> None:
    global _global_lock, _runner, _generation
    if _runner is not None:
        _abandoned.append(_runner)
    _global_lock = threading.Lock()
    _runner = None
    _generation += 1


def _shutdown() -> None:
    runner = _runner
    if (
        runner is not None
        and runner._pid == os.getpid()  # noqa: SLF001 - same module
        and not runner.in_runner_thread()
    ):
        runner.close(_DRAIN_TIMEOUT)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(
        before=_before_fork,
        after_in_parent=_after_fork_in_parent,
        after_in_child=_after_fork_in_child,
    )
atexit.register(_shutdown)


async def _touch_default_executor() -> None:
    await asyncio.get_running_loop().run_in_executor(None, int)
