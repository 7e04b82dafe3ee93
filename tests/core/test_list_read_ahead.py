"""Listing read-ahead: from the second page on, the next page is requested while one is used.

A caller who takes only the first page sends one LIST; one who stops later sends at most one
more, which is cancelled when the pager is closed or dropped, without warnings. Keys keep
their order and a page read ahead reports its error when the caller reaches it. Requests are
counted, and errors injected, by the real fault proxy in front of moto.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import pickle
import time
import warnings
from typing import Any, Callable, List

import pytest

from s3torch_async import AsyncS3Client, S3ClientConfig, S3Exception
from s3torch_async._core.client import ListingCursor
from s3torch_async._core.prefetch import list_ahead
from s3torch_async._s3client import S3Client
from tests._faultproxy import Fault, FaultProxy, FaultRule

REGION = "us-east-1"
KEYS = [f"k/{i:03d}" for i in range(50)]
PAGE = 10  # 5 pages


@pytest.fixture
def proxy(moto_endpoint):
    with FaultProxy(moto_endpoint) as p:
        yield p


@pytest.fixture
def listed(bucket, boto_s3):
    for key in KEYS:
        boto_s3.put_object(Bucket=bucket, Key=key, Body=b"x")
    return bucket


def _client(proxy: FaultProxy) -> AsyncS3Client:
    config = S3ClientConfig(max_attempts=1)
    return AsyncS3Client(REGION, endpoint=proxy.url, s3client_config=config)


def _lists(proxy: FaultProxy) -> int:
    return sum(1 for method, path, _ in proxy.requests if "list-type=2" in path)


async def _until(check: Callable[[], bool]) -> None:
    for _ in range(500):
        if check():
            return
        await asyncio.sleep(0.01)


def _wait(check: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 5
    while not check() and time.monotonic() < deadline:
        time.sleep(0.01)


def _ahead_answered(cursor: ListingCursor) -> bool:
    """The page read ahead has its answer (parsed when asked for, on the lean transport)."""
    ahead = cursor._ahead
    return ahead is not None and (ahead.task.done() or ahead.hint is not None)


def _keys(pages: List[Any]) -> List[str]:
    return [info.key for page in pages for info in page.object_info]


async def _tokens(proxy: FaultProxy, bucket: str) -> List[str]:
    """The continuation tokens of the listing, in page order (moto's are stable)."""
    async with _client(proxy) as c:
        pager = c.list_objects(bucket, "k/", max_keys=PAGE)
        tokens = [pager.continuation_token async for _ in pager]
        return [token for token in tokens if token is not None]


async def test_the_next_page_is_read_ahead_from_the_second_page_on(proxy, listed):
    async with _client(proxy) as c:
        pager = c.list_objects(listed, "k/", max_keys=PAGE)
        pages = [await pager.__anext__()]
        assert _lists(proxy) == 1
        assert pager._ahead is None
        pages.append(await pager.__anext__())
        await _until(lambda: _ahead_answered(pager))
        assert _lists(proxy) == 3  # page 3 asked for while page 2 is used, page 4 not
        pages += [page async for page in pager]
    assert _keys(pages) == KEYS
    assert _lists(proxy) == 5  # every page once, nothing past the last


def test_the_sync_stream_reads_one_page_ahead_too(proxy, listed):
    client = S3Client(REGION, endpoint=proxy.url)
    stream = client.list_objects(listed, "k/", max_keys=PAGE)
    pages = [next(stream)]
    assert _lists(proxy) == 1
    pages.append(next(stream))
    _wait(lambda: _ahead_answered(stream))
    assert _lists(proxy) == 3
    # a pickled stream carries no request: its copy asks for page 3 itself
    copy = pickle.loads(pickle.dumps(stream))
    assert _keys(list(copy)) == KEYS[2 * PAGE :]
    assert _lists(proxy) == 6
    pages += list(stream)
    assert _keys(pages) == KEYS
    assert _lists(proxy) == 8


async def test_list_ahead_reads_ahead_from_the_first_page(proxy, listed):
    async with _client(proxy) as c:
        listing = list_ahead(c, listed, "k/", max_keys=PAGE)
        assert (await listing.__anext__()).key == KEYS[0]
        await _until(lambda: _lists(proxy) == 2)
        assert _lists(proxy) == 2
        assert [KEYS[0]] + [info.key async for info in listing] == KEYS
    assert _lists(proxy) == 5


async def test_an_abandoned_list_ahead_cancels_its_page_read_ahead(
    proxy, listed, strict
):
    tokens = await _tokens(proxy, listed)
    before = _lists(proxy)
    proxy.add_fault(FaultRule(Fault.delay(30), query_contains=tokens[0]))
    async with _client(proxy) as c:
        listing = list_ahead(c, listed, "k/", max_keys=PAGE)
        assert (await listing.__anext__()).key == KEYS[0]
        await _until(lambda: _lists(proxy) == before + 2)  # page 2, held at the proxy
        await listing.aclose()
        pending = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        assert not [t for t in pending if "_PageFetch" in repr(t)]
    assert _lists(proxy) == before + 2


@pytest.fixture
def strict(caplog):
    """Fail on any warning, and on asyncio's "destroyed"/"never retrieved" error logs."""
    caplog.set_level(logging.ERROR, logger="asyncio")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield
        gc.collect()
    assert not [r for r in caplog.records if r.name == "asyncio"]


async def test_stopping_early_cancels_the_page_read_ahead(proxy, listed, strict):
    tokens = await _tokens(proxy, listed)
    before = _lists(proxy)
    # page 3 is held at the proxy, so it is in flight when the caller stops
    proxy.add_fault(FaultRule(Fault.delay(30), query_contains=tokens[1]))
    async with _client(proxy) as c:
        pager = c.list_objects(listed, "k/", max_keys=PAGE)
        count = 0
        async for _ in pager:
            count += 1
            if count == 2:
                await _until(lambda: _lists(proxy) == before + 3)
                break
        ahead = pager._ahead
        assert ahead is not None
        assert not ahead.task.done()
        del pager  # dropped after the break: its request for page 3 is cancelled
        await _until(ahead.task.done)
        assert ahead.task.cancelled()
    assert _lists(proxy) == before + 3


async def test_aclose_ends_the_page_read_ahead(proxy, listed, strict):
    async with _client(proxy) as c:
        pager = c.list_objects(listed, "k/", max_keys=PAGE)
        await pager.__anext__()
        await pager.__anext__()
        await _until(lambda: _lists(proxy) == 3)
        ahead = pager._ahead
        await pager.aclose()
        assert ahead is not None
        assert ahead.task.done()
        # the pager is still usable: it asks for page 3 again
        assert _keys([page async for page in pager]) == KEYS[2 * PAGE :]


def test_a_dropped_sync_stream_cancels_its_page_read_ahead(proxy, listed, strict):
    tokens: List[str] = asyncio.run(_tokens(proxy, listed))
    before = _lists(proxy)
    proxy.add_fault(FaultRule(Fault.delay(5), query_contains=tokens[1]))
    client = S3Client(REGION, endpoint=proxy.url)
    stream = client.list_objects(listed, "k/", max_keys=PAGE)
    next(stream)
    next(stream)
    _wait(lambda: _lists(proxy) == before + 3)
    ahead = stream._ahead
    assert ahead is not None
    assert not ahead.task.done()
    del stream
    gc.collect()
    _wait(ahead.task.done)
    assert ahead.task.cancelled()
    assert _lists(proxy) == before + 3


async def test_a_page_read_ahead_reports_its_error_when_the_caller_reaches_it(
    proxy, listed
):
    tokens = await _tokens(proxy, listed)
    proxy.add_fault(
        FaultRule(Fault.status(403, "AccessDenied"), query_contains=tokens[1])
    )
    async with _client(proxy) as c:
        pager = c.list_objects(listed, "k/", max_keys=PAGE)
        pages = [await pager.__anext__(), await pager.__anext__()]
        await _until(lambda: proxy.faults_injected == 1)
        assert (
            proxy.faults_injected == 1
        )  # page 3 failed while page 2 is in the caller's hands
        with pytest.raises(S3Exception, match="ListObjectsV2"):
            await pager.__anext__()
        # the cursor did not move: asking again gets page 3 and the rest
        assert pager.continuation_token == tokens[1]
        pages += [page async for page in pager]
    assert _keys(pages) == KEYS


async def test_a_failing_second_page_fails_there_and_the_listing_resumes(proxy, listed):
    tokens = await _tokens(proxy, listed)
    proxy.add_fault(
        FaultRule(Fault.status(403, "AccessDenied"), query_contains=tokens[0])
    )
    async with _client(proxy) as c:
        pager = c.list_objects(listed, "k/", max_keys=PAGE)
        pages = [await pager.__anext__()]
        with pytest.raises(S3Exception, match="ListObjectsV2"):
            await pager.__anext__()
        pages += [page async for page in pager]
    assert _keys(pages) == KEYS
