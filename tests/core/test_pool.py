"""The connection pool is wide enough for what the prefetch window puts in flight.

Runs on both transports against a scripted server that holds every GET until the number it
expects is waiting at once, so a pool narrower than that shows as a lower peak.
"""

from __future__ import annotations

import asyncio
import threading

from s3torch_async import AsyncS3Client, S3ClientConfig
from s3torch_async._core._planning import MAX_WINDOW_ITEMS
from tests._scripted import Request, ScriptedServer, response

REGION = "us-east-1"


def test_a_full_prefetch_window_of_gets_is_in_flight_at_once(s3_transport: str) -> None:
    # The default configuration (10 Gbps: 13 transfers) used to size the pool at
    # 2 x 13 + 8 = 34 connections; the window may want up to MAX_WINDOW_ITEMS small GETs.
    wanted = 96
    assert wanted <= MAX_WINDOW_ITEMS
    cond = threading.Condition()
    waiting = 0
    peak = 0

    def handler(req: Request) -> bytes:
        nonlocal waiting, peak
        if req.path.endswith("/warm"):
            return response(200, b"warm", {"ETag": '"e0"'})
        with cond:
            waiting += 1
            peak = max(peak, waiting)
            cond.notify_all()
            # Answer once all are here (or give up after a while, so a narrow pool still
            # finishes and the assertion below reports the peak it reached).
            cond.wait_for(lambda: peak >= wanted, timeout=5)
            waiting -= 1
        return response(200, b"data", {"ETag": '"e1"'})

    async def fetch_all() -> list[bytes]:
        async with AsyncS3Client(
            REGION,
            endpoint=srv.url,
            s3client_config=S3ClientConfig(max_attempts=1),
        ) as client:
            # One answer first: until an endpoint has answered, requests go one at a time.
            assert (await client.get_range("bkt", "warm")).data == b"warm"
            got = await asyncio.gather(
                *(client.get_range("bkt", f"k{i}") for i in range(wanted))
            )
        return [g.data for g in got]

    with ScriptedServer(handler) as srv:
        assert asyncio.run(fetch_all()) == [b"data"] * wanted
    assert peak == wanted
