"""How ``S3IterableDataset`` hands finished items from the event loop to the consumer's thread.

A pump on the loop queues items in order as they finish; the consumer takes a ready item
without a call to the loop and waits only for one that is not done. What must hold: the
order, errors at their item, a bound on the items held outside the prefetch window, closing
an abandoned iteration without blocking, and resuming after the loop goes away (runner
restart, fork) after the last item delivered.
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from s3torch_async import S3Exception
from s3torch_async._bridge import PrefetchSession
from s3torch_async._core import prefetch
from s3torch_async._runner import get_runner
from s3torch_async.s3iterable_dataset import S3IterableDataset
from tests._faultproxy import Fault, FaultRule
from tests.datasets._helpers import CONFIG, REGION, key_of, read_all


def from_prefix(uri, endpoint, **kwargs):
    kwargs.setdefault("s3client_config", CONFIG)
    return S3IterableDataset.from_prefix(
        uri, region=REGION, endpoint=endpoint, **kwargs
    )


def test_order_is_kept_when_the_first_get_finishes_last(proxy, bucket, objects):
    made = objects(20)
    # data/000's GET answers long after every other (hedging needs 8 peers done first)
    proxy.add_fault(
        FaultRule(Fault.delay(0.5), method="GET", path_contains="data/000", times=1)
    )
    ds = from_prefix(f"s3://{bucket}/data/", proxy.url, transform=read_all)
    assert list(ds) == list(made.items())


def test_a_listing_error_is_raised_after_every_item_before_it(
    monkeypatch, proxy, bucket, objects
):
    made = objects(12)
    # pages of 5 keys, so the listing's second page comes after 5 items
    monkeypatch.setattr(
        prefetch, "list_ahead", functools.partial(prefetch.list_ahead, max_keys=5)
    )
    proxy.add_fault(
        FaultRule(
            Fault.status(500, "InternalError"),
            query_contains="continuation-token",
            times=None,
        )
    )
    ds = from_prefix(f"s3://{bucket}/data/", proxy.url, transform=key_of)
    it = iter(ds)
    assert [next(it) for _ in range(5)] == list(made)[:5]
    with pytest.raises(S3Exception, match="InternalError"):
        next(it)


def test_items_outside_the_window_stay_within_half_the_prefetch_count(
    monkeypatch, endpoint, bucket, objects
):
    objects(40)
    out = []
    next_item = PrefetchSession.next_item

    def counting(self):
        item = next_item(self)
        # queued for the consumer plus the one it now holds
        out.append(self._pushed - self._returned)
        return item

    monkeypatch.setattr(PrefetchSession, "next_item", counting)

    def slow(reader):
        time.sleep(0.005)  # a consumer slower than the fetches: the queue fills
        return reader.key

    ds = from_prefix(f"s3://{bucket}/data/", endpoint, transform=slow, prefetch_count=8)
    assert len(list(ds)) == 40
    assert max(out) == 4  # 8 // 2, reached and never passed


def test_breaking_out_while_a_get_is_held_stops_the_pump_and_the_pipeline(
    monkeypatch, proxy, bucket, objects
):
    objects(12)
    proxy.add_fault(
        FaultRule(Fault.delay(30), method="GET", path_contains="data/004", times=1)
    )
    stopped = []
    aclose = PrefetchSession.aclose

    async def recording_aclose(self):
        pump = self._pump
        await aclose(self)
        stopped.append((pump is not None and pump.done(), self._pipeline._closed))

    monkeypatch.setattr(PrefetchSession, "aclose", recording_aclose)
    ds = from_prefix(
        f"s3://{bucket}/data/", proxy.url, transform=key_of, prefetch_count=4
    )
    it = iter(ds)
    assert [next(it) for _ in range(3)] == ["data/000", "data/001", "data/002"]
    it.close()  # type: ignore[attr-defined]  # never waits for data/004
    deadline = time.monotonic() + 10
    while not stopped and time.monotonic() < deadline:
        time.sleep(0.01)
    assert stopped == [(True, True)]


@pytest.mark.parametrize("source", ["prefix", "callable"])
def test_a_consumer_waiting_for_an_item_resumes_when_the_runner_stops(
    proxy, bucket, objects, source
):
    made = objects(6)  # too few peers to hedge: the held GET is waited for
    proxy.add_fault(
        FaultRule(Fault.delay(3), method="GET", path_contains="data/003", times=1)
    )
    if source == "prefix":
        ds = from_prefix(f"s3://{bucket}/data/", proxy.url, transform=read_all)
    else:
        from s3torch_async._s3bucket_key_data import S3BucketKeyData

        def items(client):
            return (S3BucketKeyData(bucket, k) for k in made)

        ds = S3IterableDataset(
            REGION, items, proxy.url, transform=read_all, s3client_config=CONFIG
        )
    it = iter(ds)
    first = [next(it) for _ in range(3)]
    # stop the loop from another thread while this one waits for data/003
    stopper = threading.Timer(0.3, get_runner().close)
    stopper.start()
    rest = list(it)
    stopper.join()
    assert first + rest == list(made.items())


FORK_SCRIPT = """
import os, sys, threading, asyncio
from s3torch_async import S3ClientConfig
from s3torch_async._runner import get_runner
from s3torch_async.s3iterable_dataset import S3IterableDataset

ds = S3IterableDataset.from_prefix(
    f"s3://{os.environ['TEST_BUCKET']}/data/", region="us-east-1",
    endpoint=os.environ["TEST_ENDPOINT"], s3client_config=S3ClientConfig(max_attempts=1),
    transform=lambda r: (r.key, r.read()), prefetch_count=4,
)
it = iter(ds)
first = [next(it)[0] for _ in range(5)]
busy = None
if os.environ["RUNNER"] == "busy":
    # another thread is inside a call: the runner is not stopped before the fork
    busy = threading.Thread(target=get_runner().run, args=(asyncio.sleep, 1.0))
    busy.start()
    import time; time.sleep(0.2)
pid = os.fork()
rest = [key for key, _ in it]
print(("child " if pid == 0 else "parent ") + ",".join(first + rest), flush=True)
assert ds.state_dict()["yielded"] == 20
if pid == 0:
    os._exit(0)
_, status = os.waitpid(pid, 0)
assert os.waitstatus_to_exitcode(status) == 0
if busy is not None:
    busy.join()
"""


@pytest.mark.process
@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
@pytest.mark.parametrize("runner", ["idle", "busy"])
def test_parent_and_child_both_resume_after_a_fork_mid_iteration(
    endpoint, bucket, objects, runner
):
    made = objects(20)
    env = dict(os.environ, TEST_ENDPOINT=endpoint, TEST_BUCKET=bucket, RUNNER=runner)
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(FORK_SCRIPT)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    want = ",".join(made)
    assert sorted(proc.stdout.splitlines()) == [f"child {want}", f"parent {want}"]
