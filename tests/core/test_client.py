from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from s3torch_async import AsyncS3Client, S3ClientConfig, S3Exception
from s3torch_async._core._session import resolve_endpoint, wants_path_style
from s3torch_async._core.client import ClientState
from tests._faultproxy import Fault, FaultProxy, FaultRule
from tests._forwardproxy import ForwardProxy

REGION = "us-east-1"


@pytest.fixture
async def client(endpoint):
    async with AsyncS3Client(
        REGION, endpoint=endpoint, s3client_config=S3ClientConfig(max_attempts=1)
    ) as c:
        yield c


def test_construction_does_no_io():
    c = AsyncS3Client(REGION, endpoint="http://127.0.0.1:9")  # nothing listens there
    assert c.state is ClientState.UNOPENED
    assert c.region == REGION


@pytest.mark.parametrize(
    ("arg", "env", "expected"),
    [
        (
            "http://arg",
            {"AWS_ENDPOINT_URL_S3": "http://s3env", "AWS_ENDPOINT_URL": "http://env"},
            "http://arg",
        ),
        (
            None,
            {"AWS_ENDPOINT_URL_S3": "http://s3env", "AWS_ENDPOINT_URL": "http://env"},
            "http://s3env",
        ),
        (None, {"AWS_ENDPOINT_URL": "http://env"}, "http://env"),
        (None, {}, None),
        ("", {"AWS_ENDPOINT_URL": "http://env"}, "http://env"),
    ],
)
def test_endpoint_precedence(arg, env, expected):
    assert resolve_endpoint(arg, env) == expected


def test_endpoint_env_var_is_used_by_client(monkeypatch, endpoint, bucket):
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", endpoint)

    async def main():
        async with AsyncS3Client(REGION) as c:
            assert c.endpoint == endpoint
            await c.put_object_bytes(bucket, "k", b"via env")
            return (await c.get_range(bucket, "k")).data

    assert asyncio.run(main()) == b"via env"


@pytest.mark.parametrize(
    ("endpoint", "forced", "expected"),
    [
        ("http://127.0.0.1:9000", False, True),
        ("http://localhost:9000", False, True),
        ("http://[::1]:9000", False, True),
        ("https://minio.example.com", False, False),
        ("https://minio.example.com", True, True),
        (None, False, False),
    ],
)
def test_path_style_when_forced_or_ip_or_localhost(endpoint, forced, expected):
    assert wants_path_style(endpoint, forced) is expected


async def test_put_get_head_roundtrip(client, bucket):
    etag = await client.put_object_bytes(bucket, "a/b.bin", b"hello world")
    head = await client.head_object(bucket, "a/b.bin")
    assert head.size == 11
    assert head.etag == etag
    got = await client.get_range(bucket, "a/b.bin")
    assert got.data == b"hello world"
    assert got.object_size == 11
    part = await client.get_range(bucket, "a/b.bin", 6, 11)
    assert part.data == b"world"
    assert part.object_size == 11


async def test_get_range_into_fills_caller_buffer(client, bucket):
    data = bytes(range(256)) * 1000
    await client.put_object_bytes(bucket, "blob", data)
    buf = bytearray(5000)
    meta = await client.get_range_into(bucket, "blob", 100, memoryview(buf))
    assert meta.nbytes == 5000
    assert meta.object_size == len(data)
    assert bytes(buf) == data[100:5100]
    tail = bytearray(1000)
    meta = await client.get_range_into(bucket, "blob", len(data) - 10, tail)
    assert meta.nbytes == 10
    assert bytes(tail[:10]) == data[-10:]


async def test_whole_gets_keep_their_bytes_while_receive_buffers_are_reused(
    client, bucket
):
    # Bodies are received into buffers kept for the next GETs: every result must be its
    # own bytes, intact after many more GETs of the same and other sizes went through.
    sizes = [0, 1, 1000, 65_536, 65_537, 131_072, 131_072, 131_072, 300_000, 140_000]
    objects = {f"reuse/{n}": os.urandom(size) for n, size in enumerate(sizes * 4)}
    await asyncio.gather(
        *(client.put_object_bytes(bucket, k, v) for k, v in objects.items())
    )
    kept = []
    for _ in range(2):
        kept.append(
            await asyncio.gather(*(client.get_range(bucket, k) for k in objects))
        )
        # one at a time too: each buffer goes straight back and out again
        kept.append([await client.get_range(bucket, k) for k in objects])
    for results in kept:
        assert [r.data for r in results] == list(objects.values())
        assert all(type(r.data) is bytes for r in results)


async def test_whole_get_of_a_body_that_pauses_midway_is_exact(moto_endpoint, bucket):
    data = os.urandom(200_000)
    async with AsyncS3Client(REGION, endpoint=moto_endpoint) as c:
        await c.put_object_bytes(bucket, "paused", data)
    with FaultProxy(moto_endpoint) as proxy:
        # headers and 70,000 bytes, 0.3 s of silence, then the connection closes: the
        # rest comes from a resumed range GET
        proxy.add_fault(
            FaultRule(Fault.stall(70_000, 0.3), method="GET", path_contains="/paused")
        )
        async with AsyncS3Client(
            REGION, endpoint=proxy.url, s3client_config=S3ClientConfig(max_attempts=3)
        ) as c:
            got = await c.get_range(bucket, "paused")
    assert got.data == data
    assert got.object_size == len(data)


async def test_if_match_mismatch_raises(client, bucket):
    await client.put_object_bytes(bucket, "v", b"version one")
    first = await client.get_range(bucket, "v", 0, 4)
    await client.put_object_bytes(bucket, "v", b"version two!")
    with pytest.raises(S3Exception) as info:
        await client.get_range(bucket, "v", 4, 8, if_match=first.etag)
    assert info.value.status == 412
    assert info.value.key == "v"


async def test_missing_key_message(client, bucket):
    with pytest.raises(S3Exception) as info:
        await client.get_range(bucket, "nope")
    assert str(info.value) == "Service error: The key does not exist"
    assert (info.value.bucket, info.value.key, info.value.operation) == (
        bucket,
        "nope",
        "GetObject",
    )
    assert info.value.code == "NoSuchKey"
    assert info.value.status == 404


async def test_missing_bucket_messages(client):
    with pytest.raises(
        S3Exception, match=r"^Service error: The bucket does not exist(\n|$)"
    ):
        await client.get_range("no-such-bucket-xyz", "k")
    with pytest.raises(
        S3Exception, match=r"^Service error: The bucket does not exist(\n|$)"
    ):
        async for _ in client.list_objects("no-such-bucket-xyz"):
            pass
    with pytest.raises(
        S3Exception, match=r"^Service error: The bucket does not exist(\n|$)"
    ):
        await client.delete_object("no-such-bucket-xyz", "k")


async def test_head_and_copy_of_missing_object(client, bucket):
    with pytest.raises(
        S3Exception, match=r"^Service error: The object was not found(\n|$)"
    ):
        await client.head_object(bucket, "nope")
    with pytest.raises(
        S3Exception, match=r"^Service error: The object was not found(\n|$)"
    ):
        await client.copy_object(bucket, "nope", bucket, "dst")
    await client.put_object_bytes(bucket, "src", b"x")
    with pytest.raises(
        S3Exception, match=r"^Service error: The object was not found(\n|$)"
    ):
        await client.copy_object(bucket, "src", "no-such-bucket-xyz", "dst")


async def test_delete_is_idempotent_and_copy_copies(client, bucket):
    await client.delete_object(bucket, "never-existed")
    await client.put_object_bytes(bucket, "src", b"payload")
    await client.copy_object(bucket, "src", bucket, "dst")
    assert (await client.get_range(bucket, "dst")).data == b"payload"
    await client.delete_object(bucket, "src")
    with pytest.raises(S3Exception, match="The object was not found"):
        await client.head_object(bucket, "src")


async def test_multipart_primitives(client, bucket):
    part = b"a" * (5 * 1024 * 1024)
    upload_id = await client.create_multipart_upload(bucket, "mp")
    assert await client.list_multipart_uploads(bucket) == [("mp", upload_id)]
    e1 = await client.upload_part(bucket, "mp", upload_id, 1, part)
    e2 = await client.upload_part(bucket, "mp", upload_id, 2, memoryview(b"tail"))
    await client.complete_multipart_upload(bucket, "mp", upload_id, [(1, e1), (2, e2)])
    head = await client.head_object(bucket, "mp")
    assert head.size == len(part) + 4
    assert await client.list_multipart_uploads(bucket) == []
    upload_id = await client.create_multipart_upload(bucket, "aborted")
    await client.abort_multipart_upload(bucket, "aborted", upload_id)
    assert await client.list_multipart_uploads(bucket) == []


async def test_if_none_match_refuses_overwrite(client, bucket):
    await client.put_object_bytes(bucket, "once", b"1", if_none_match=True)
    with pytest.raises(S3Exception) as info:
        await client.put_object_bytes(bucket, "once", b"2", if_none_match=True)
    assert info.value.status == 412
    assert (await client.get_range(bucket, "once")).data == b"1"


async def test_listing_pages_and_resumes_from_continuation_token(
    client, bucket, boto_s3
):
    keys = [f"data/{i:05d}" for i in range(1100)]

    def upload(k):
        boto_s3.put_object(Bucket=bucket, Key=k, Body=b"")

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(upload, keys))
    boto_s3.put_object(Bucket=bucket, Key="other", Body=b"")

    pager = client.list_objects(bucket, "data/")
    first = await pager.__anext__()
    assert len(first.object_info) == 1000
    assert not pager.complete
    token = pager.continuation_token
    assert token
    resumed = client.list_objects(bucket, "data/", continuation_token=token)
    rest = [info.key async for info in resumed.objects()]
    assert [o.key for o in first.object_info] + rest == keys
    assert resumed.complete


async def test_listing_with_delimiter_returns_common_prefixes(client, bucket):
    for k in ("a/1", "a/2", "b/1", "top"):
        await client.put_object_bytes(bucket, k, b"x")
    pages = [p async for p in client.list_objects(bucket, delimiter="/")]
    assert [o.key for p in pages for o in p.object_info] == ["top"]
    assert sorted(cp for p in pages for cp in p.common_prefixes) == ["a/", "b/"]


@pytest.mark.parametrize(
    ("kwargs", "exc"),
    [
        ({"bucket": 3}, TypeError),
        ({"bucket": ""}, ValueError),
        ({"bucket": "b", "max_keys": 0}, ValueError),
        ({"bucket": "b", "max_keys": "10"}, TypeError),
        ({"bucket": "b", "prefix": None}, TypeError),
    ],
)
def test_listing_argument_errors_before_io(kwargs, exc):
    c = AsyncS3Client(REGION, endpoint="http://127.0.0.1:9")
    with pytest.raises(exc):
        c.list_objects(**kwargs)


async def test_invalid_part_size_fails_at_first_use_not_construction(endpoint, bucket):
    c = AsyncS3Client(
        REGION, endpoint=endpoint, s3client_config=S3ClientConfig(part_size=756)
    )
    with pytest.raises(S3Exception, match="part size must be at between 5MiB and 5GiB"):
        await c.head_object(bucket, "k")
    await c.aclose()


async def test_use_after_close_raises_runtime_error(endpoint, bucket):
    c = AsyncS3Client(REGION, endpoint=endpoint)
    await c.put_object_bytes(bucket, "k", b"x")
    await c.aclose()
    await c.aclose()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        await c.head_object(bucket, "k")


def test_use_from_another_loop_raises_runtime_error(endpoint, bucket):
    c = AsyncS3Client(REGION, endpoint=endpoint)
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(c.put_object_bytes(bucket, "k", b"x"))

        def other_thread():
            return asyncio.run(c.head_object(bucket, "k"))

        errors = []

        def runner():
            try:
                other_thread()
            except RuntimeError as exc:
                errors.append(exc)

        t = threading.Thread(target=runner)
        t.start()
        t.join(30)
        assert errors
        assert "different event loop" in str(errors[0])
    finally:
        loop.run_until_complete(c.aclose())
        loop.close()


async def test_bad_argument_types(client):
    with pytest.raises(TypeError, match="bucket"):
        await client.head_object(None, "k")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="key"):
        await client.head_object("b", "")
    with pytest.raises(TypeError, match="region"):
        AsyncS3Client(None)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="s3client_config"):
        AsyncS3Client(REGION, s3client_config={"part_size": 1})  # type: ignore[arg-type]


async def test_connection_pool_is_sized_from_config(endpoint):
    async with AsyncS3Client(
        REGION,
        endpoint=endpoint,
        s3client_config=S3ClientConfig(throughput_target_gbps=100),
    ) as c:
        assert c.max_concurrency > 10
        transport = c._transport
        if transport.name == "lean":
            assert transport._http.limit >= c.max_concurrency
            transport = await transport._fallback()  # botocore's side, opened if needed
        assert transport._s3.meta.config.max_pool_connections >= c.max_concurrency


def _put_headers(proxy):
    return [
        {k.lower(): v for k, v in h.items()} for m, _, h in proxy.requests if m == "PUT"
    ]


async def test_user_agent_names_package(moto_endpoint, bucket):
    with FaultProxy(moto_endpoint) as proxy:
        async with AsyncS3Client(REGION, endpoint=proxy.url) as c:
            await c.put_object_bytes(bucket, "k", b"x")
    assert "s3torch-async/" in _put_headers(proxy)[-1]["user-agent"]


async def test_requester_pays_header_is_sent(moto_endpoint, bucket):
    cfg = S3ClientConfig(requester_pays=True)
    with FaultProxy(moto_endpoint) as proxy:
        async with AsyncS3Client(REGION, endpoint=proxy.url, s3client_config=cfg) as c:
            await c.put_object_bytes(bucket, "k", b"x")
    assert _put_headers(proxy)[-1]["x-amz-request-payer"] == "requester"


async def test_unsigned_requests_carry_no_signature(moto_endpoint, bucket):
    with FaultProxy(moto_endpoint) as proxy:
        async with AsyncS3Client(
            REGION, endpoint=proxy.url, s3client_config=S3ClientConfig(unsigned=True)
        ) as c:
            # The server may refuse an anonymous write; either way no signature was sent.
            with contextlib.suppress(S3Exception):
                await c.put_object_bytes(bucket, "k", b"x")
    assert "authorization" not in _put_headers(proxy)[-1]


async def test_put_payload_is_not_hashed_on_the_fast_path(
    s3_transport, moto_endpoint, bucket
):
    with FaultProxy(moto_endpoint) as proxy:
        async with AsyncS3Client(REGION, endpoint=proxy.url) as c:
            await c.put_object_bytes(bucket, "k", b"x" * 1000)
            assert (await c.get_range(bucket, "k")).data == b"x" * 1000
    sha = _put_headers(proxy)[-1]["x-amz-content-sha256"]
    if s3_transport == "lean":
        assert sha == "UNSIGNED-PAYLOAD"
    else:  # botocore hashes bodies over plain HTTP
        assert len(sha) == 64


async def test_listing_and_reading_keys_with_special_characters(client, bucket):
    keys = sorted(["a b", "a+b", "ü/ñ", "100%", "x?y=z&w", "tilde~", "sp ace/+plus"])
    for k in keys:
        await client.put_object_bytes(bucket, k, k.encode())
    listed = [o.key async for o in client.list_objects(bucket).objects()]
    assert listed == keys
    for k in keys:
        assert (await client.get_range(bucket, k)).data == k.encode()
        assert (await client.head_object(bucket, k)).size == len(k.encode())


async def test_requests_honour_http_proxy_environment(
    monkeypatch, moto_endpoint, bucket
):
    """Both transports go through HTTP_PROXY, as botocore does (the lean path steps aside)."""
    for name in ("NO_PROXY", "no_proxy", "HTTP_PROXY", "http_proxy"):
        monkeypatch.delenv(name, raising=False)
    with ForwardProxy() as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        async with AsyncS3Client(REGION, endpoint=moto_endpoint) as c:
            await c.put_object_bytes(bucket, "via-proxy", b"payload")
            assert (await c.get_range(bucket, "via-proxy")).data == b"payload"
            assert (await c.head_object(bucket, "via-proxy")).size == 7
        methods = [method for method, _ in proxy.requests]
    assert methods.count("PUT") == 1
    assert methods.count("GET") >= 1
    assert methods.count("HEAD") == 1


async def test_no_credentials_is_the_reference_message(monkeypatch, endpoint, bucket):
    # Credentials come from the session's public API on both transports; none found here
    # (config files empty, instance metadata disabled by the hermetic environment).
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    async with AsyncS3Client(
        REGION, endpoint=endpoint, s3client_config=S3ClientConfig(max_attempts=1)
    ) as c:
        with pytest.raises(S3Exception) as info:
            await c.get_range(bucket, "k")
    assert str(info.value) == "Client error: No signing credentials found"
