"""Virtual-time model of case 2's opening (issue 16, ramp), independent of the machine's load.

As ``hol-model.py`` (one core shared by the loop's work per GET and the consumer; a GET on a
new connection takes 4 connect steps of 35 us re-queued behind every other connect, on a reused
one a 30 us step; 0.1 ms to receive; the consumer takes 0.08 ms per item in batches of 16),
plus the listing: the source's first item comes after the first page (PAGE s +-20 %, then
5 ms of parsing on the core). While the page is awaited, the 32 connections the datasets open
ahead (``opening_requests``) are opened, their connect steps on the then idle core. GETs wait
LAT s +-20 %. Prints, per profile, the median of 5 seeds: virtual ms to the end, first item,
most items in flight, connections opened, and the mean MiB held by the window (fetched or
in flight, 128 KiB each) over the run.

    cd /tmp && python <this file> <tree> [PAGE LAT [CONSUME]]   # 0.040 0.020 0.00008: S3-like
"""

import asyncio
import random
import statistics
import sys

root = sys.argv[1]
PAGE, LAT = (float(sys.argv[2]), float(sys.argv[3])) if len(sys.argv) > 3 else (0.04, 0.02)
CONSUME = float(sys.argv[4]) if len(sys.argv) > 4 else 0.08e-3
sys.path.insert(0, root)

from s3torch_async._core.prefetch import Prefetcher  # noqa: E402
from tests.core.test_prefetch import run_virtual  # noqa: E402


class Core:
    """The one core: work on it queues (FIFO) behind work already there."""

    def __init__(self):
        self.lock = asyncio.Lock()

    async def __call__(self, seconds):
        async with self.lock:
            await asyncio.sleep(seconds)


async def main(seed, n=2000):
    core, rng = Core(), random.Random(seed)
    idle = [0]
    conns = [0]
    loop = asyncio.get_running_loop()
    started = loop.time()
    page = PAGE * rng.uniform(0.8, 1.2)
    tasks = []

    async def connect():
        conns[0] += 1
        for _ in range(4):
            await core(0.035e-3)

    async def ahead():
        await connect()
        idle[0] += 1

    def preconnect(count):
        for _ in range(max(0, count - conns[0])):
            tasks.append(asyncio.ensure_future(ahead()))

    async def source():
        preconnect(32)
        await asyncio.sleep(page)
        await core(0.005)
        for i in range(n):
            yield i

    async def fetch(item):
        if idle[0] > 0:
            idle[0] -= 1
            await core(0.03e-3)
        else:
            await connect()
        await asyncio.sleep(LAT * rng.uniform(0.8, 1.2))
        await core(0.1e-3)
        idle[0] += 1
        return b"x", "e"

    pf = Prefetcher(
        source(),
        fetch,
        lambda _i: 131072,
        budget_bytes=64 << 20,
        max_items=32,
        adaptive_cap=256,
        hedge=True,
    )
    first = None
    most = 0
    held = 0.0  # item-seconds in the window
    last = loop.time()
    while True:
        got = await pf.next_batch(16)
        now = loop.time()
        held += pf.in_flight_items * (now - last)
        last = now
        most = max(most, pf.in_flight_items)
        if not got:
            break
        if first is None:
            first = now - started
        await core(CONSUME * len(got))
    await pf.aclose()
    for t in tasks:
        t.cancel()
    end = loop.time() - started
    return end, first, most, conns[0], held / end * 0.125


res = [run_virtual(main(s)) for s in range(5)]
med = [statistics.median(r[i] for r in res) for i in range(5)]
print(
    f"{root} page {PAGE * 1e3:.0f} ms, GET {LAT * 1e3:.1f} ms,"
    f" consumer {CONSUME * 1e3:.2f} ms: end {med[0] * 1e3:.0f} ms,"
    f" first item {med[1] * 1e3:.1f} ms, most in flight {med[2]:.0f},"
    f" connections {med[3]:.0f}, mean window {med[4]:.1f} MiB"
)
