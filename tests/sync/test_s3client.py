from __future__ import annotations

import asyncio
import logging
import pickle
from concurrent.futures import ThreadPoolExecutor

import pytest

from s3torch_async import S3ClientConfig, S3Exception
from s3torch_async._s3client import S3Client
from s3torch_async._user_agent import UserAgent

REGION = "us-east-1"


@pytest.fixture
def client(endpoint):
    return S3Client(
        REGION, endpoint=endpoint, s3client_config=S3ClientConfig(max_attempts=1)
    )


def test_properties(endpoint):
    cfg = S3ClientConfig(part_size=16 * 1024 * 1024)
    c = S3Client(
        REGION, endpoint=endpoint, s3client_config=cfg, user_agent=UserAgent(["x"])
    )
    assert c.region == REGION
    assert c.s3client_config is cfg
    assert c.user_agent_prefix == UserAgent(["x"]).prefix
    assert S3Client(REGION).s3client_config == S3ClientConfig()


def test_list_head_copy_delete(client, bucket, put, caplog):
    for i in range(5):
        put(f"p/{i}", b"x" * i)
    with caplog.at_level(logging.DEBUG, logger="s3torch_async"):
        pages = list(client.list_objects(bucket, "p/"))
    assert f"ListObjects s3://{bucket}/p/" in caplog.text
    infos = [o for page in pages for o in page.object_info]
    assert [(o.key, o.size) for o in infos] == [(f"p/{i}", i) for i in range(5)]
    head = client.head_object(bucket, "p/3")
    assert head.size == 3
    assert head.etag == infos[3].etag
    client.copy_object(bucket, "p/3", bucket, "q/3")
    assert client.head_object(bucket, "q/3").size == 3
    client.delete_object(bucket, "q/3")
    client.delete_object(bucket, "q/3")
    with pytest.raises(
        S3Exception, match=r"^Service error: The object was not found(\n|$)"
    ):
        client.head_object(bucket, "q/3")


def test_listing_is_lazy_and_errors_on_first_next(client):
    stream = client.list_objects("no-such-bucket-xyz")  # no request yet
    with pytest.raises(
        S3Exception, match=r"^Service error: The bucket does not exist(\n|$)"
    ):
        next(stream)


def test_pickled_listing_resumes_at_next_page(client, bucket, put):
    for i in range(7):
        put(f"k{i}", b"")
    stream = client.list_objects(bucket, max_keys=3)
    first = next(stream)
    clone = pickle.loads(pickle.dumps(stream))
    rest = [o.key for page in clone for o in page.object_info]
    assert [o.key for o in first.object_info] + rest == [f"k{i}" for i in range(7)]


def test_a_finished_listing_asks_nothing_more_of_the_event_loop(client, bucket, put):
    from s3torch_async._runner import get_runner

    for i in range(4):
        put(f"k{i}", b"")
    stream = client.list_objects(bucket, max_keys=3)
    assert [o.key for page in stream for o in page.object_info] == [
        f"k{i}" for i in range(4)
    ]
    assert stream.complete
    get_runner().close()  # what a fork does to an idle runner
    with pytest.raises(StopIteration):
        next(stream)  # answered here: no thread crossing, the loop is not started again
    assert not get_runner().is_running


def test_get_object_stream_yields_part_sized_chunks(endpoint, bucket, put):
    c = S3Client(
        REGION,
        endpoint=endpoint,
        s3client_config=S3ClientConfig(part_size=5 * 1024 * 1024),
    )
    data = bytes(range(256)) * (45 * 1024)  # 11.25 MiB
    put("big", data)
    chunks = list(c._get_object_stream(bucket, "big"))
    assert [len(x) for x in chunks] == [
        5 * 1024 * 1024,
        5 * 1024 * 1024,
        len(data) - 10 * 1024 * 1024,
    ]
    assert b"".join(chunks) == data
    assert b"".join(c._get_object_stream(bucket, "big", 100, 200)) == data[100:200]
    put("empty", b"")
    assert list(c._get_object_stream(bucket, "empty")) == []


def test_client_pickles_configuration_only(client, bucket, put):
    put("k", b"v")
    client.head_object(bucket, "k")  # builds the async client
    data = pickle.dumps(client)
    assert b"AsyncS3Client" not in data
    clone = pickle.loads(data)
    assert clone.head_object(bucket, "k").size == 1


def test_concurrent_use_from_threads(client, bucket, put):
    for i in range(16):
        put(f"t{i}", b"z" * i)
    with ThreadPoolExecutor(8) as pool:
        sizes = list(
            pool.map(lambda i: client.head_object(bucket, f"t{i}").size, range(16))
        )
    assert sizes == list(range(16))


async def test_sync_client_works_inside_a_running_loop(client, bucket, put):
    put("k", b"abc")
    assert asyncio.get_running_loop()
    assert client.head_object(bucket, "k").size == 3


def test_invalid_part_size_is_lazy(endpoint, bucket):
    c = S3Client(
        REGION, endpoint=endpoint, s3client_config=S3ClientConfig(part_size=8000)
    )
    with pytest.raises(S3Exception, match="part size must be at between 5MiB and 5GiB"):
        c.head_object(bucket, "k")


def test_bad_arguments_fail_before_io():
    c = S3Client(REGION, endpoint="http://127.0.0.1:9")
    with pytest.raises(TypeError, match="bucket"):
        c.list_objects(None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_keys"):
        c.list_objects("b", max_keys=5000)
    with pytest.raises(TypeError, match="region"):
        S3Client(3)  # type: ignore[arg-type]


def test_shared_client_follows_a_changed_endpoint_environment(
    moto_endpoint, bucket, put, monkeypatch
):
    # Sync clients share an AsyncS3Client per configuration; an endpoint taken from the
    # environment is part of that configuration, so changing it must not reuse the old one.
    from tests._faultproxy import FaultProxy

    put("k", b"data")
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
    client = S3Client(REGION, s3client_config=S3ClientConfig(max_attempts=1))
    with FaultProxy(moto_endpoint) as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
        assert client.head_object(bucket, "k").size == 4
        assert proxy.requests == []
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
        assert client.head_object(bucket, "k").size == 4
        assert [method for method, _, _ in proxy.requests] == ["HEAD"]
