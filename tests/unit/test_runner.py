"""The runner's contract, one test per rule (DESIGN.md §5.4); no S3 involved."""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import threading
import time
import warnings

import pytest

from s3torch_async._runner import THREAD_NAME, LoopRunner, get_runner


@pytest.fixture
def runner():
    r = LoopRunner()
    yield r
    r.close()


async def _add(a, b):
    await asyncio.sleep(0)
    return a + b


def _runner_threads():
    return [t for t in threading.enumerate() if t.name == THREAD_NAME]


def test_runs_coroutine_function_with_args(runner):
    assert runner.run(_add, 2, b=3) == 5


def test_exceptions_propagate_with_their_type(runner):
    async def boom():
        raise KeyError("missing")

    with pytest.raises(KeyError, match="missing"):
        runner.run(boom)


def test_starts_lazily_as_named_daemon_thread():
    r = LoopRunner()
    before = len(_runner_threads())
    assert not r.is_running
    assert len(_runner_threads()) == before
    r.run(_add, 1, 1)
    try:
        assert r.is_running
        threads = [t for t in _runner_threads() if t.is_alive()]
        assert len(threads) == before + 1
        assert all(t.daemon for t in threads)
    finally:
        r.close()
    assert not r.is_running


def test_refuses_calls_from_its_own_thread_without_leaking_a_coroutine(runner):
    async def nested():
        return runner.run(_add, 1, 2)

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(
            RuntimeError,
            match="cannot be called from the s3torch-async event loop thread",
        ):
            runner.run(nested)
        gc.collect()


async def test_blocks_a_caller_thread_that_runs_another_loop(runner):
    # We are inside pytest-asyncio's loop: the call blocks it and returns.
    assert asyncio.get_running_loop() is not None
    assert runner.run(_add, 20, 22) == 42


def test_lock_is_not_held_while_waiting(runner):
    release = threading.Event()

    async def wait_for_release():
        while not release.is_set():  # noqa: ASYNC110 - the event is a threading.Event
            await asyncio.sleep(0.01)
        return "released"

    results = []
    t = threading.Thread(target=lambda: results.append(runner.run(wait_for_release)))
    t.start()
    time.sleep(0.1)
    # A second call proceeds while the first is still waiting.
    assert runner.run(_add, 1, 2) == 3
    assert runner._lock.acquire(timeout=1)
    runner._lock.release()
    release.set()
    t.join(10)
    assert results == ["released"]


def test_keyboard_interrupt_cancels_the_work_and_runs_shielded_cleanup(
    runner, default_sigint
):
    import anyio

    state = {"cancelled": False, "cleanup_done": False}

    async def long_work():
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            state["cancelled"] = True
            with anyio.CancelScope(shield=True):
                await asyncio.sleep(0.1)
                state["cleanup_done"] = True
            raise

    # A real SIGINT, as Ctrl-C sends (interrupt_main only sets a flag).
    timer = threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        runner.run(long_work)
    assert time.monotonic() - started < 10
    assert state == {"cancelled": True, "cleanup_done": True}
    # The runner keeps working afterwards.
    assert runner.run(_add, 1, 1) == 2


def test_work_cancelled_on_the_loop_raises_cancelled_error_in_the_caller(runner):
    started = threading.Event()

    async def sleep_long():
        started.set()
        await asyncio.sleep(30)

    outcome = []

    def call():
        try:
            runner.run(sleep_long)
        except BaseException as exc:  # recorded for the assertion
            outcome.append(exc)

    caller = threading.Thread(target=call)
    caller.start()
    assert started.wait(5)

    async def cancel_the_other():
        for task in asyncio.all_tasks():
            if task is not asyncio.current_task():
                task.cancel()

    runner.run(cancel_the_other)
    caller.join(5)
    assert not caller.is_alive()
    assert len(outcome) == 1
    assert isinstance(outcome[0], asyncio.CancelledError)


def test_a_call_cancelled_before_its_first_step_releases_its_caller(runner):
    from s3torch_async._runner import _Call

    runner.run(_add, 0, 0)
    loop = runner.loop
    call = _Call(loop, _add, (1, 2), {})

    def start_and_cancel():
        call.start()
        call.cancel()  # before the task's first step: _main never runs

    loop.call_soon_threadsafe(start_and_cancel)
    assert call.waiter.acquire(timeout=5)
    with pytest.raises(asyncio.CancelledError):
        call.outcome()


def test_iterate_drives_an_async_generator(runner):
    async def gen(n):
        for i in range(n):
            await asyncio.sleep(0)
            yield i

    assert list(runner.iterate(gen, 5)) == [0, 1, 2, 3, 4]


def test_iterate_closes_an_abandoned_generator(runner):
    closed = []

    async def gen():
        try:
            for i in range(100):
                yield i
        finally:
            closed.append(True)

    it = runner.iterate(gen)
    assert next(it) == 0
    it.close()
    assert closed == [True]


def test_close_drains_registered_resources():
    r = LoopRunner()

    class Resource:
        def __init__(self):
            self.closed_on = None

        async def aclose(self):
            self.closed_on = threading.current_thread().name

    res = Resource()

    async def register():
        r.register(res)

    r.run(register)
    r.close()
    assert res.closed_on == THREAD_NAME
    assert not r.is_running
    # Restarts lazily after close.
    assert r.run(_add, 2, 2) == 4
    r.close()


def test_close_soon_schedules_without_blocking(runner):
    done = threading.Event()

    class Resource:
        async def aclose(self):
            done.set()

    runner.run(_add, 0, 0)
    runner.close_soon(Resource())
    assert done.wait(5)


def test_get_runner_is_process_wide():
    assert get_runner() is get_runner()
