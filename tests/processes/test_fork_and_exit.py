"""Runner fork/exit rules, exercised in fresh interpreters so no test-process thread is forked."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

pytestmark = [
    pytest.mark.process,
    pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork"),
]

PRELUDE = """
import os, sys, threading, time
from s3torch_async._s3client import S3Client
from s3torch_async import S3ClientConfig
from s3torch_async import _runner
client = S3Client("us-east-1", endpoint=os.environ["TEST_ENDPOINT"], s3client_config=S3ClientConfig(max_attempts=1))
BUCKET = os.environ["TEST_BUCKET"]
def size(key="obj"):
    return client.head_object(BUCKET, key).size
"""


def run_script(
    body: str, endpoint: str, bucket: str, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    env = dict(
        os.environ,
        TEST_ENDPOINT=endpoint,
        TEST_BUCKET=bucket,
        PYTHONWARNINGS="error::ResourceWarning",
    )
    return subprocess.run(
        [sys.executable, "-c", PRELUDE + textwrap.dedent(body)],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def assert_clean(proc: subprocess.CompletedProcess[str]) -> None:
    assert proc.returncode == 0, proc.stderr
    for marker in (
        "Unclosed client session",
        "Unclosed connector",
        "Task was destroyed",
        "Traceback",
    ):
        assert marker not in proc.stderr, proc.stderr


@pytest.fixture
def obj(bucket, put):
    put("obj", b"12345")
    return bucket


def test_process_reads_and_exits_cleanly(endpoint, obj):
    proc = run_script(
        """
        assert size() == 5
        print("ok")
        """,
        endpoint,
        obj,
    )
    assert_clean(proc)
    assert proc.stdout.strip() == "ok"


def test_fork_after_runner_started_parent_and_child_both_work(endpoint, obj):
    proc = run_script(
        """
        assert size() == 5
        parent_runner = _runner.get_runner()
        pid = os.fork()
        if pid == 0:
            try:
                child_runner = _runner.get_runner()
                assert child_runner is not parent_runner
                assert size() == 5
                assert _runner.runner_generation() == 1
                code = 0
            except BaseException as exc:
                print("child failed:", repr(exc), file=sys.stderr)
                code = 1
            os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert size() == 5
        print("ok")
        """,
        endpoint,
        obj,
    )
    assert_clean(proc)
    assert proc.stdout.strip() == "ok"


def test_idle_runner_is_stopped_before_fork(endpoint, obj):
    proc = run_script(
        """
        assert size() == 5
        assert _runner.get_runner().is_running
        pid = os.fork()
        if pid == 0:
            # The child inherited a stopped runner state: no loop thread was copied mid-flight.
            names = [t.name for t in threading.enumerate()]
            os._exit(0 if "s3torch-async-io" not in names else 3)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0, status
        print("ok")
        """,
        endpoint,
        obj,
    )
    assert_clean(proc)


def test_fork_while_runner_lock_is_held_does_not_deadlock_child(endpoint, obj):
    proc = run_script(
        """
        assert size() == 5
        runner = _runner.get_runner()
        held = threading.Event()
        def hold():
            with runner._lock:
                held.set()
                time.sleep(0.5)
        t = threading.Thread(target=hold)
        t.start()
        held.wait()
        pid = os.fork()   # waits for the holder in the before-fork hook
        if pid == 0:
            try:
                assert size() == 5
                code = 0
            except BaseException as exc:
                print("child failed:", repr(exc), file=sys.stderr)
                code = 1
            os._exit(code)
        t.join()
        deadline = time.time() + 30
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            assert time.time() < deadline, "child hung"
            time.sleep(0.05)
        assert os.waitstatus_to_exitcode(status) == 0
        assert size() == 5
        print("ok")
        """,
        endpoint,
        obj,
    )
    assert_clean(proc)


def test_fork_while_a_call_is_in_flight_child_gets_fresh_runner(endpoint, obj):
    proc = run_script(
        """
        import asyncio
        assert size() == 5
        runner = _runner.get_runner()
        async def slow():
            await asyncio.sleep(1.0)
            return "slow done"
        results = []
        t = threading.Thread(target=lambda: results.append(runner.run(slow)))
        t.start()
        time.sleep(0.2)
        pid = os.fork()   # runner busy: not drained; the child abandons the inherited loop
        if pid == 0:
            try:
                assert _runner.get_runner() is not runner
                assert size() == 5
                code = 0
            except BaseException as exc:
                print("child failed:", repr(exc), file=sys.stderr)
                code = 1
            os._exit(code)
        _, status = os.waitpid(pid, 0)
        t.join()
        assert results == ["slow done"]
        assert os.waitstatus_to_exitcode(status) == 0
        print("ok")
        """,
        endpoint,
        obj,
    )
    assert_clean(proc)


def test_unclosed_writer_is_committed_before_exit(endpoint, bucket, boto_s3):
    env = dict(os.environ, TEST_ENDPOINT=endpoint, TEST_BUCKET=bucket)
    body = """
        import warnings
        warnings.simplefilter("ignore", ResourceWarning)
        w = client.put_object(BUCKET, "unclosed")
        w.write(b"hello from a writer nobody closed")
        del w   # committed in the background; interpreter exit waits for it
        """
    proc = subprocess.run(
        [sys.executable, "-c", PRELUDE + textwrap.dedent(body)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert_clean(proc)
    got = boto_s3.get_object(Bucket=bucket, Key="unclosed")["Body"].read()
    assert got == b"hello from a writer nobody closed"
