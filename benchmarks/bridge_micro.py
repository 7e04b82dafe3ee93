"""Cost of one sync call through the runner: a no-op coroutine run from the caller's thread.

Every blocking call of the sync API (a listing page, a batch of a dataset's objects, a reader's
part) crosses to the event-loop thread and back once. This times ``LoopRunner.run`` of a
coroutine that does nothing, so what is left is the crossing itself; best of ``--repeat``
rounds of ``--calls`` calls, wall and process CPU per call. Run from each checkout to compare::

    PYTHONPATH=/path/to/checkout python benchmarks/bridge_micro.py [--calls 5000] [--repeat 7]
"""

from __future__ import annotations

import argparse
import time


async def _noop(value: int) -> int:
    return value


def main() -> None:
    """CLI entry point."""
    parser = argparse.ArgumentParser(prog="python benchmarks/bridge_micro.py")
    parser.add_argument("--calls", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    from s3torch_async._runner import get_runner

    runner = get_runner()
    runner.run(_noop, 0)
    walls, cpus = [], []
    for _ in range(args.repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        for i in range(args.calls):
            runner.run(_noop, i)
        walls.append((time.perf_counter() - wall) / args.calls)
        cpus.append((time.process_time() - cpu) / args.calls)
    print(f"wall {min(walls) * 1e6:.1f} us/call  CPU {min(cpus) * 1e6:.1f} us/call")


if __name__ == "__main__":
    main()
