"""What a dataset does before its first item: connections opened while the listing is awaited.

A dataset over a prefix sends its first burst of GETs (one per object of the prefetch window)
as soon as the first listing page is in. The connections those GETs need are opened while
that page is awaited, so no connect is left on the path from the page to the first GET. A
scripted S3 server shows it: it answers the first listing only once it has accepted as many
connections as the window needs (or after a while, so that a client that does not open them
still finishes and the assertion reports what it saw).
"""

from __future__ import annotations

import asyncio
import time
from typing import List

import pytest

from s3torch_async import AsyncS3Dataset, S3ClientConfig
from s3torch_async.s3iterable_dataset import S3IterableDataset
from tests._scripted import Request, ScriptedServer, response

REGION = "us-east-1"
CONFIG = S3ClientConfig(max_attempts=1)
KEYS = [f"p/{i:03d}" for i in range(20)]
DATA = {key: f"{key}:".encode() * 3 for key in KEYS}
WINDOW = 8  # prefetch_count: GETs sent at once when the first page is in


def _listing(keys: List[str]) -> bytes:
    contents = "".join(
        f"<Contents><Key>{k}</Key><LastModified>2026-12-02T10:00:00.000Z</LastModified>"
        f'<ETag>"e{k[-3:]}"</ETag><Size>{len(DATA[k])}</Size>'
        "<StorageClass>STANDARD</StorageClass></Contents>"
        for k in keys
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?><ListBucketResult>'
        f"<Name>bkt</Name><Prefix>p/</Prefix><KeyCount>{len(keys)}</KeyCount>"
        f"<MaxKeys>1000</MaxKeys><IsTruncated>false</IsTruncated>{contents}"
        "</ListBucketResult>"
    ).encode()


class _Store:
    """A scripted S3 store of ``KEYS`` that holds the first listing until ``want``
    connections are accepted (or ``bound`` seconds pass) and records how many were."""

    def __init__(self, want: int = WINDOW, bound: float = 5.0) -> None:
        self.want, self.bound = want, bound
        self.accepted_at_listing: List[int] = []
        self.server = ScriptedServer(self.handler)

    def handler(self, req: Request) -> bytes:
        if "list-type=2" in req.query:
            deadline = time.monotonic() + self.bound
            while self.server.accepted < self.want and time.monotonic() < deadline:
                time.sleep(0.005)
            self.accepted_at_listing.append(self.server.accepted)
            return response(200, _listing(KEYS))
        if req.path == "/":  # a client's probe of a host that has not answered yet
            return response(200)
        key = req.path.split("/", 2)[2]
        return response(200, DATA[key], {"ETag": f'"e{key[-3:]}"'})


def _read(reader) -> bytes:
    return reader.read()


def _iterable(url: str, **options) -> S3IterableDataset:
    return S3IterableDataset.from_prefix(
        "s3://bkt/p/",
        region=REGION,
        endpoint=url,
        s3client_config=CONFIG,
        transform=_read,
        **options,
    )


def test_iterable_dataset_opens_the_windows_connections_while_listing(s3_transport):
    if s3_transport == "botocore":
        pytest.skip("botocore's pool opens a connection when a request needs one")
    store = _Store()
    with store.server as srv:
        assert list(_iterable(srv.url, prefetch_count=WINDOW)) == list(DATA.values())
    assert store.accepted_at_listing[0] == WINDOW
    # the first burst of GETs went out on those connections: none waited for a connect
    first = [r for r in srv.requests if r.path.endswith(tuple(KEYS[:WINDOW]))]
    assert len(first) == WINDOW
    assert all(r.connection <= WINDOW for r in first)


def test_async_dataset_opens_the_windows_connections_while_listing(s3_transport):
    if s3_transport == "botocore":
        pytest.skip("botocore's pool opens a connection when a request needs one")
    store = _Store()

    async def read_all(url: str) -> List[bytes]:
        async with AsyncS3Dataset.from_prefix(
            "s3://bkt/p/",
            region=REGION,
            endpoint=url,
            s3client_config=CONFIG,
            prefetch_count=WINDOW,
        ) as ds:
            return [obj.data async for obj in ds]

    with store.server as srv:
        assert asyncio.run(read_all(srv.url)) == list(DATA.values())
    assert store.accepted_at_listing[0] == WINDOW


def test_without_prefetching_no_connections_are_opened_ahead(s3_transport):
    # Held 0.3 s at most: long enough for connections opened ahead to arrive.
    store = _Store(want=2, bound=0.3)
    with store.server as srv:
        assert list(_iterable(srv.url, prefetch_bytes=0)) == list(DATA.values())
    assert store.accepted_at_listing == [1]
