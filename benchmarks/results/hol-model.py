"""Virtual-time model of case 2's client (issue 16, hol), independent of the machine's load.

One core (a FIFO lock) is shared by the event loop's work per GET and the consumer. A GET on a
new connection takes 4 connect steps of 35 us on the core, each re-queued behind every other
connect (as asyncio steps concurrent connects in turn); on a reused connection one 30 us step.
Then the store's latency: 20 ms +-20 %, or with probability TAIL_P a straggler of TAIL_S
seconds. Then 0.1 ms on the core to receive. The consumer takes 0.08 ms of core per item, in
batches of 16, as ``S3IterableDataset`` does. 2,000 items of 128 KiB, window 32 growing to at
most 256, 64 MiB budget; 5 seeds. Prints the virtual end time per seed, the final window and
the hedges sent (when the tree's ``Prefetcher`` can hedge).

    cd /tmp && PYTHONPATH=<tree> python <this file> <tree> [TAIL_P TAIL_S]
"""

import asyncio
import inspect
import random
import statistics
import sys

root = sys.argv[1]
TAIL_P, TAIL_S = (
    (float(sys.argv[2]), float(sys.argv[3])) if len(sys.argv) > 3 else (0, 0)
)
sys.path.insert(0, root)

from s3torch_async._core.prefetch import Prefetcher, iterate_items  # noqa: E402
from tests.core.test_prefetch import run_virtual  # noqa: E402

HEDGE = {"hedge": True} if "hedge" in inspect.signature(Prefetcher).parameters else {}


async def core(lock, seconds):
    async with lock:
        await asyncio.sleep(seconds)


async def main(seed, n=2000):
    rng = random.Random(seed)
    lock = asyncio.Lock()
    idle = [0]  # reusable connections
    loop = asyncio.get_running_loop()

    async def fetch(item):
        if idle[0] > 0:
            idle[0] -= 1
            await core(lock, 0.03e-3)
        else:
            for _ in range(4):
                await core(lock, 0.035e-3)
        straggles = TAIL_P and rng.random() < TAIL_P
        await asyncio.sleep(TAIL_S if straggles else 0.02 * rng.uniform(0.8, 1.2))
        await core(lock, 0.1e-3)
        idle[0] += 1
        return b"x", "e"

    pf = Prefetcher(
        iterate_items(range(n)),
        fetch,
        lambda _i: 131072,
        budget_bytes=64 << 20,
        max_items=32,
        adaptive_cap=256,
        **HEDGE,
    )
    while True:
        got = await pf.next_batch(16)
        if not got:
            break
        await core(lock, 0.08e-3 * len(got))
    state = (pf.max_items, getattr(pf, "hedges", 0))
    await pf.aclose()
    return loop.time(), state


res = [run_virtual(main(s)) for s in range(5)]
print(
    root,
    f"tail {TAIL_P} x {TAIL_S} s:",
    "virtual ms",
    " ".join(f"{t * 1e3:.0f}" for t, _ in res),
    f"median {statistics.median(t for t, _ in res) * 1e3:.0f}",
    "(window, hedges)",
    [s for _, s in res],
)
