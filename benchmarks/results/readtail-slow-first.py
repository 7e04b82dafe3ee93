"""Issue 16 (readtail): an unknown-size S3-like read whose size-telling GET is slower, in virtual time.

The link of tests/core/test_read_widening.py at S3-like figures (20 ms to the first byte, 8 MiB
parts at 90 MB/s, limit 18, bound 36), 129 parts; the first GET's connection carries a
factor of the others' rate. Prints the read's end, its GETs and the streams in flight per
tenth. Run from a tree's root: ``PYTHONPATH=$PWD python benchmarks/results/readtail-slow-first.py``.
"""

from __future__ import annotations

from tests.core.test_read_widening import _read, _s3like


def _tenths(times: list) -> list:
    end = max(done for _, _, done in times)
    out = []
    for i in range(10):
        t0, t1 = end * i / 10, end * (i + 1) / 10
        busy = sum(max(0.0, min(done, t1) - max(sent, t0)) for _, sent, done in times)
        out.append(round(busy / (t1 - t0)))
    return out


for factor in (1.0, 0.8, 0.7, 0.5, 0.35):
    link = _s3like(129)
    rates = iter(
        [link.per_stream * factor]
    )  # the first GET's connection, then the rest

    def stream_rate(link=link, rates=rates) -> float:
        return next(rates, link.per_stream)

    link.stream_rate = stream_rate  # type: ignore[method-assign]
    got, _ = _read(link, known_size=False)
    assert got == link.data
    end = max(done for _, _, done in link.times)
    print(
        f"first GET x{factor}: {end * 1e3:.0f} ms, {link.gets} GETs, {_tenths(link.times)}"
    )
