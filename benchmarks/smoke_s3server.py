"""Smoke-test and measure ``benchmarks.s3server`` with boto3.

Run from the repo root::

    python -m benchmarks.smoke_s3server [--big-mib 1024] [--small-count 2000]

Every supported operation is exercised twice, once with a boto3 client that
only sends checksums when required and once with boto3's defaults (CRC32
checksums; over plain HTTP those go in a header).  boto3 only switches to
``aws-chunked`` bodies with trailing checksums over HTTPS, so a third pass
makes botocore believe the endpoint is HTTPS (it then sends exactly what it
sends to AWS), and a hand-made SigV4 streaming body with chunk signatures is
sent with http.client.  Then it measures a large GET and many small GETs and
prints the numbers, including the server process's own CPU seconds.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import hashlib
import http.client
import io
import os
import random
import socket
import statistics
import time
from functools import partial
from typing import Any, Callable, Dict, Iterator, List, Tuple
from unittest import mock
from urllib.parse import urlparse

import boto3
import botocore.httpchecksum
from botocore.config import Config
from botocore.exceptions import ClientError

from benchmarks.s3server import S3Server, ServerProcess, _decode_aws_chunked

MIB = 1 << 20


def make_client(url: str, *, default_checksums: bool) -> Any:
    extra: Dict[str, Any] = {}
    if not default_checksums:
        extra = {
            "request_checksum_calculation": "when_required",
            "response_checksum_validation": "when_required",
        }
    cfg = Config(
        s3={"addressing_style": "path"},
        retries={"max_attempts": 1},
        max_pool_connections=16,
        **extra,
    )
    return boto3.client(
        "s3",
        endpoint_url=url,
        aws_access_key_id="bench",
        aws_secret_access_key="bench",
        region_name="us-east-1",
        config=cfg,
    )


def expect_error(code: str, status: int, fn: Callable[..., Any], **kwargs: Any) -> None:
    try:
        fn(**kwargs)
    except ClientError as err:
        got_code = err.response["Error"]["Code"]
        got_status = err.response["ResponseMetadata"]["HTTPStatusCode"]
        assert (got_code, got_status) == (code, status), (
            got_code,
            got_status,
            code,
            status,
        )
        return
    raise AssertionError(f"expected {code} ({status})")


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def payload(size: int, seed: int = 0) -> bytes:
    # a random block of odd length repeated: cheap, and a misplaced range
    # would only go unnoticed if off by a multiple of 1,000,003 bytes
    block = random.Random(seed).randbytes(1_000_003)
    reps = size // len(block) + 1
    return (block * reps)[:size]


@contextlib.contextmanager
def pretend_https() -> Iterator[None]:
    """Make botocore use aws-chunked trailer checksums over plain HTTP."""
    real = botocore.httpchecksum.urlparse

    def fake(url: str, *args: Any, **kwargs: Any) -> Any:
        return real(url.replace("http://", "https://", 1), *args, **kwargs)

    with mock.patch.object(botocore.httpchecksum, "urlparse", fake):
        yield


# --------------------------------------------------------------------------- #
# functional checks
# --------------------------------------------------------------------------- #


def check_objects(s3: Any, bucket: str) -> None:
    s3.create_bucket(Bucket=bucket)
    s3.head_bucket(Bucket=bucket)
    assert bucket in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    expect_error("404", 404, s3.head_bucket, Bucket=bucket + "-missing")
    expect_error(
        "NoSuchBucket", 404, s3.get_object, Bucket=bucket + "-missing", Key="k"
    )

    data = payload(100_000, 1)
    put = s3.put_object(
        Bucket=bucket,
        Key="dir/obj",
        Body=data,
        ContentType="application/x-test",
        Metadata={"color": "blue"},
    )
    assert put["ETag"] == f'"{md5(data)}"', put["ETag"]
    got = s3.get_object(Bucket=bucket, Key="dir/obj")
    assert got["Body"].read() == data
    assert got["ETag"] == put["ETag"]
    assert got["ContentLength"] == len(data)
    assert got["AcceptRanges"] == "bytes"
    assert got["ContentType"] == "application/x-test"
    assert got["Metadata"] == {"color": "blue"}
    head = s3.head_object(Bucket=bucket, Key="dir/obj")
    assert head["ContentLength"] == len(data)
    assert head["ETag"] == put["ETag"]
    assert head["LastModified"] == got["LastModified"]
    assert head["Metadata"] == {"color": "blue"}

    # ranges
    for rng, lo, hi in (
        ("bytes=10-19", 10, 19),
        ("bytes=99990-", 99990, 99999),
        ("bytes=-7", 99993, 99999),
        ("bytes=5-999999", 5, 99999),
        ("bytes=-500000", 0, 99999),
    ):
        part = s3.get_object(Bucket=bucket, Key="dir/obj", Range=rng)
        assert part["ResponseMetadata"]["HTTPStatusCode"] == 206, rng
        assert part["ContentRange"] == f"bytes {lo}-{hi}/{len(data)}", (
            rng,
            part["ContentRange"],
        )
        assert part["Body"].read() == data[lo : hi + 1], rng
    expect_error(
        "InvalidRange",
        416,
        s3.get_object,
        Bucket=bucket,
        Key="dir/obj",
        Range="bytes=100000-",
    )
    expect_error(
        "InvalidRange",
        416,
        s3.get_object,
        Bucket=bucket,
        Key="dir/obj",
        Range="bytes=-0",
    )
    s3.put_object(Bucket=bucket, Key="empty", Body=b"")
    assert s3.get_object(Bucket=bucket, Key="empty")["Body"].read() == b""
    expect_error(
        "InvalidRange", 416, s3.get_object, Bucket=bucket, Key="empty", Range="bytes=0-"
    )

    # large body (zero-copy path) incl. a range inside it
    big = payload(9 * MIB + 3, 2)
    s3.put_object(Bucket=bucket, Key="big", Body=big)
    assert s3.get_object(Bucket=bucket, Key="big")["Body"].read() == big
    lo, hi = 1 * MIB + 17, 8 * MIB + 5
    part = s3.get_object(Bucket=bucket, Key="big", Range=f"bytes={lo}-{hi}")
    assert part["Body"].read() == big[lo : hi + 1]

    # conditionals
    etag = put["ETag"]
    expect_error(
        "PreconditionFailed",
        412,
        s3.get_object,
        Bucket=bucket,
        Key="dir/obj",
        IfMatch='"0000"',
    )
    expect_error(
        "412", 412, s3.head_object, Bucket=bucket, Key="dir/obj", IfMatch='"0000"'
    )
    assert (
        s3.get_object(Bucket=bucket, Key="dir/obj", IfMatch=etag)["Body"].read() == data
    )
    expect_error(
        "304", 304, s3.head_object, Bucket=bucket, Key="dir/obj", IfNoneMatch=etag
    )
    expect_error(
        "PreconditionFailed",
        412,
        s3.put_object,
        Bucket=bucket,
        Key="dir/obj",
        Body=b"x",
        IfNoneMatch="*",
    )
    s3.put_object(Bucket=bucket, Key="fresh", Body=b"first", IfNoneMatch="*")
    assert s3.get_object(Bucket=bucket, Key="fresh")["Body"].read() == b"first"

    # copy (source with characters that need escaping)
    odd = "odd key +&<>%?#=ü/ä ß"
    s3.put_object(Bucket=bucket, Key=odd, Body=b"odd-bytes")
    assert s3.get_object(Bucket=bucket, Key=odd)["Body"].read() == b"odd-bytes"
    copied = s3.copy_object(
        Bucket=bucket, Key="copy1", CopySource={"Bucket": bucket, "Key": odd}
    )
    assert copied["CopyObjectResult"]["ETag"] == f'"{md5(b"odd-bytes")}"'
    assert s3.get_object(Bucket=bucket, Key="copy1")["Body"].read() == b"odd-bytes"
    s3.copy_object(Bucket=bucket, Key="copy2", CopySource=f"{bucket}/dir/obj")
    copy2 = s3.get_object(Bucket=bucket, Key="copy2")
    assert copy2["Body"].read() == data
    assert copy2["Metadata"] == {"color": "blue"}
    expect_error(
        "NoSuchKey",
        404,
        s3.copy_object,
        Bucket=bucket,
        Key="copy3",
        CopySource={"Bucket": bucket, "Key": "nope"},
    )

    # delete
    s3.delete_object(Bucket=bucket, Key="copy2")
    expect_error("NoSuchKey", 404, s3.get_object, Bucket=bucket, Key="copy2")
    expect_error("404", 404, s3.head_object, Bucket=bucket, Key="copy2")
    s3.delete_object(Bucket=bucket, Key="copy2")  # idempotent
    for i in range(3):
        s3.put_object(Bucket=bucket, Key=f"del/{i}", Body=b"x")
    res = s3.delete_objects(
        Bucket=bucket,
        Delete={
            "Objects": [{"Key": f"del/{i}"} for i in range(3)] + [{"Key": "del/none"}]
        },
    )
    assert sorted(d["Key"] for d in res["Deleted"]) == [
        "del/0",
        "del/1",
        "del/2",
        "del/none",
    ]
    assert s3.list_objects_v2(Bucket=bucket, Prefix="del/")["KeyCount"] == 0
    listed = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]]
    assert listed == sorted(["big", "copy1", "dir/obj", "empty", "fresh", odd]), listed


def check_multipart(s3: Any, bucket: str) -> None:
    parts_data = [payload(5 * MIB, 10 + i) for i in range(3)] + [payload(12345, 13)]
    mpu = s3.create_multipart_upload(
        Bucket=bucket, Key="mpu/obj", ContentType="application/x-mpu"
    )
    uid = mpu["UploadId"]
    uploads = s3.list_multipart_uploads(Bucket=bucket)["Uploads"]
    assert [(u["Key"], u["UploadId"]) for u in uploads] == [("mpu/obj", uid)]
    etags = []
    for number, chunk in enumerate(parts_data, 1):
        up = s3.upload_part(
            Bucket=bucket, Key="mpu/obj", UploadId=uid, PartNumber=number, Body=chunk
        )
        assert up["ETag"] == f'"{md5(chunk)}"'
        etags.append(up["ETag"])
    done = s3.complete_multipart_upload(
        Bucket=bucket,
        Key="mpu/obj",
        UploadId=uid,
        MultipartUpload={
            "Parts": [{"PartNumber": n, "ETag": e} for n, e in enumerate(etags, 1)]
        },
    )
    expected_etag = hashlib.md5(
        b"".join(bytes.fromhex(md5(p)) for p in parts_data)
    ).hexdigest()
    assert done["ETag"] == f'"{expected_etag}-4"', done["ETag"]
    whole = b"".join(parts_data)
    got = s3.get_object(Bucket=bucket, Key="mpu/obj")
    assert got["ETag"] == done["ETag"]
    assert got["ContentType"] == "application/x-mpu"
    assert got["Body"].read() == whole
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    expect_error(
        "NoSuchUpload",
        404,
        s3.upload_part,
        Bucket=bucket,
        Key="mpu/obj",
        UploadId=uid,
        PartNumber=1,
        Body=b"x",
    )

    # abort
    uid2 = s3.create_multipart_upload(Bucket=bucket, Key="mpu/aborted")["UploadId"]
    s3.upload_part(
        Bucket=bucket, Key="mpu/aborted", UploadId=uid2, PartNumber=1, Body=b"abc"
    )
    s3.abort_multipart_upload(Bucket=bucket, Key="mpu/aborted", UploadId=uid2)
    expect_error(
        "NoSuchUpload",
        404,
        s3.complete_multipart_upload,
        Bucket=bucket,
        Key="mpu/aborted",
        UploadId=uid2,
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": '"x"'}]},
    )
    expect_error("NoSuchKey", 404, s3.get_object, Bucket=bucket, Key="mpu/aborted")

    # too-small non-final part, wrong etag
    uid3 = s3.create_multipart_upload(Bucket=bucket, Key="mpu/small")["UploadId"]
    e1 = s3.upload_part(
        Bucket=bucket, Key="mpu/small", UploadId=uid3, PartNumber=1, Body=b"a"
    )["ETag"]
    e2 = s3.upload_part(
        Bucket=bucket, Key="mpu/small", UploadId=uid3, PartNumber=2, Body=b"b"
    )["ETag"]
    expect_error(
        "EntityTooSmall",
        400,
        s3.complete_multipart_upload,
        Bucket=bucket,
        Key="mpu/small",
        UploadId=uid3,
        MultipartUpload={
            "Parts": [{"PartNumber": 1, "ETag": e1}, {"PartNumber": 2, "ETag": e2}]
        },
    )
    expect_error(
        "InvalidPart",
        400,
        s3.complete_multipart_upload,
        Bucket=bucket,
        Key="mpu/small",
        UploadId=uid3,
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": '"beef"'}]},
    )
    s3.abort_multipart_upload(Bucket=bucket, Key="mpu/small", UploadId=uid3)

    # UploadPartCopy (boto3's managed copy of a large object uses it)
    s3.copy(
        {"Bucket": bucket, "Key": "mpu/obj"},
        bucket,
        "mpu/copy",
        Config=boto3.s3.transfer.TransferConfig(
            multipart_threshold=8 * MIB, multipart_chunksize=8 * MIB
        ),
    )
    assert s3.get_object(Bucket=bucket, Key="mpu/copy")["Body"].read() == whole


def check_listing(s3: Any, bucket: str) -> None:
    s3.create_bucket(Bucket=bucket)
    keys = [f"d{i % 5}/k{i:05d}" for i in range(2500)] + ["top1", "top2"]
    for key in keys:
        s3.put_object(Bucket=bucket, Key=key, Body=b"")
    pages = list(s3.get_paginator("list_objects_v2").paginate(Bucket=bucket))
    assert len(pages) == 3, len(pages)
    assert [p["KeyCount"] for p in pages] == [1000, 1000, 502]
    assert [p["IsTruncated"] for p in pages] == [True, True, False]
    listed = [o["Key"] for p in pages for o in p["Contents"]]
    assert listed == sorted(keys)
    first = pages[0]["Contents"][0]
    assert first["Size"] == 0
    assert first["StorageClass"] == "STANDARD"
    assert first["ETag"] == f'"{md5(b"")}"'

    pages = list(
        s3.get_paginator("list_objects_v2").paginate(
            Bucket=bucket, PaginationConfig={"PageSize": 300}
        )
    )
    assert len(pages) == 9
    assert [o["Key"] for p in pages for o in p["Contents"]] == sorted(keys)

    res = s3.list_objects_v2(Bucket=bucket, Delimiter="/")
    assert [p["Prefix"] for p in res["CommonPrefixes"]] == [f"d{i}/" for i in range(5)]
    assert [o["Key"] for o in res["Contents"]] == ["top1", "top2"]
    assert res["KeyCount"] == 7
    # truncation in the middle of common prefixes
    res = s3.list_objects_v2(Bucket=bucket, Delimiter="/", MaxKeys=2)
    assert [p["Prefix"] for p in res["CommonPrefixes"]] == ["d0/", "d1/"]
    res = s3.list_objects_v2(
        Bucket=bucket,
        Delimiter="/",
        MaxKeys=2,
        ContinuationToken=res["NextContinuationToken"],
    )
    assert [p["Prefix"] for p in res["CommonPrefixes"]] == ["d2/", "d3/"]

    res = s3.list_objects_v2(
        Bucket=bucket, Prefix="d3/", MaxKeys=10, StartAfter="d3/k00100"
    )
    assert [o["Key"] for o in res["Contents"]] == [
        f"d3/k{i:05d}" for i in range(103, 153, 5)
    ]
    assert res["IsTruncated"]
    assert res["MaxKeys"] == 10
    res = s3.list_objects_v2(Bucket=bucket, Prefix="nothing/")
    assert res["KeyCount"] == 0
    assert "Contents" not in res
    v1 = s3.list_objects(Bucket=bucket, Prefix="d1/", MaxKeys=3)
    assert [o["Key"] for o in v1["Contents"]] == ["d1/k00001", "d1/k00006", "d1/k00011"]
    assert v1["IsTruncated"]
    v1 = s3.list_objects(Bucket=bucket, Prefix="d1/", MaxKeys=3, Marker="d1/k00011")
    assert v1["Contents"][0]["Key"] == "d1/k00016"


def check_aws_chunked(url: str, bucket: str) -> None:
    s3 = make_client(url, default_checksums=True)
    s3.create_bucket(Bucket=bucket)
    data = payload(3 * MIB + 77, 20)  # several 1 MiB aws-chunks plus a short one
    with pretend_https():
        put = s3.put_object(Bucket=bucket, Key="chunked", Body=data)
        put_io = s3.put_object(
            Bucket=bucket, Key="chunked-io", Body=io.BytesIO(b"small body")
        )
        uid = s3.create_multipart_upload(Bucket=bucket, Key="chunked-mpu")["UploadId"]
        p1 = s3.upload_part(
            Bucket=bucket,
            Key="chunked-mpu",
            UploadId=uid,
            PartNumber=1,
            Body=payload(5 * MIB, 21),
        )
        p2 = s3.upload_part(
            Bucket=bucket, Key="chunked-mpu", UploadId=uid, PartNumber=2, Body=data
        )
        s3.complete_multipart_upload(
            Bucket=bucket,
            Key="chunked-mpu",
            UploadId=uid,
            MultipartUpload={
                "Parts": [
                    {"PartNumber": 1, "ETag": p1["ETag"]},
                    {"PartNumber": 2, "ETag": p2["ETag"]},
                ]
            },
        )
    assert put["ETag"] == f'"{md5(data)}"'
    assert s3.get_object(Bucket=bucket, Key="chunked")["Body"].read() == data
    assert put_io["ETag"] == f'"{md5(b"small body")}"'
    assert (
        s3.get_object(Bucket=bucket, Key="chunked-io")["Body"].read() == b"small body"
    )
    whole = s3.get_object(Bucket=bucket, Key="chunked-mpu")["Body"].read()
    assert whole == payload(5 * MIB, 21) + data

    # SigV4 streaming with chunk signatures (what signed-payload clients send)
    body = b"".join(
        b"%x;chunk-signature=%s\r\n%s\r\n" % (len(c), b"0" * 64, c)
        for c in (data[:65536], data[65536:70000])
    )
    body += b"0;chunk-signature=" + b"0" * 64 + b"\r\n\r\n"
    parsed = urlparse(url)
    conn = http.client.HTTPConnection(parsed.hostname or "127.0.0.1", parsed.port)
    conn.request(
        "PUT",
        f"/{bucket}/signed-chunks",
        body=body,
        headers={
            "x-amz-content-sha256": "STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
            "Content-Encoding": "aws-chunked",
            "x-amz-decoded-content-length": "70000",
            "Authorization": "AWS4-HMAC-SHA256 Credential=x/20250101/us-east-1/s3/aws4_request, "
            "SignedHeaders=host, Signature=" + "0" * 64,
        },
    )
    resp = conn.getresponse()
    resp.read()
    assert resp.status == 200, resp.status
    assert resp.getheader("ETag") == f'"{md5(data[:70000])}"'
    conn.close()
    assert (
        s3.get_object(Bucket=bucket, Key="signed-chunks")["Body"].read() == data[:70000]
    )


def check_multipart_reads(s3: Any, bucket: str) -> None:
    """Ranges across part boundaries, ListParts, concurrent large GETs."""
    parts_data = [payload(5 * MIB + 1000 * i, 40 + i) for i in range(4)]
    whole = b"".join(parts_data)
    uid = s3.create_multipart_upload(Bucket=bucket, Key="mpu/ranges")["UploadId"]
    etags = [
        s3.upload_part(
            Bucket=bucket, Key="mpu/ranges", UploadId=uid, PartNumber=n, Body=chunk
        )["ETag"]
        for n, chunk in enumerate(parts_data, 1)
    ]
    listed = s3.list_parts(Bucket=bucket, Key="mpu/ranges", UploadId=uid)["Parts"]
    assert [(p["PartNumber"], p["ETag"], p["Size"]) for p in listed] == [
        (n, e, len(c)) for n, (e, c) in enumerate(zip(etags, parts_data), 1)
    ]
    s3.complete_multipart_upload(
        Bucket=bucket,
        Key="mpu/ranges",
        UploadId=uid,
        MultipartUpload={
            "Parts": [{"PartNumber": n, "ETag": e} for n, e in enumerate(etags, 1)]
        },
    )
    rng = random.Random(7)
    boundary = len(parts_data[0])
    cases = [(boundary - 10, boundary + 10), (0, len(whole) - 1), (boundary, boundary)]
    for _ in range(20):
        lo = rng.randrange(len(whole))
        cases.append(
            (lo, min(len(whole) - 1, lo + rng.choice((1, 100, 70_000, 3 * MIB))))
        )
    for lo, hi in cases:
        got = s3.get_object(Bucket=bucket, Key="mpu/ranges", Range=f"bytes={lo}-{hi}")
        assert got["Body"].read() == whole[lo : hi + 1], (lo, hi)

    def fetch(i: int) -> bool:
        lo = i * 2 * MIB
        hi = min(len(whole), lo + 6 * MIB) - 1
        got = s3.get_object(Bucket=bucket, Key="mpu/ranges", Range=f"bytes={lo}-{hi}")
        whole_obj = s3.get_object(Bucket=bucket, Key="mpu/ranges")["Body"].read()
        ranged: bytes = got["Body"].read()
        return ranged == whole[lo : hi + 1] and whole_obj == whole

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        assert all(pool.map(fetch, range(10)))


def check_robustness(url: str, s3: Any, bucket: str) -> None:
    """Client hang-up mid-body, unsupported subresources, raw aws-chunked splits."""
    parsed = urlparse(url)
    big = payload(24 * MIB, 50)
    s3.put_object(Bucket=bucket, Key="hangup", Body=big)
    for _ in range(3):
        with socket.create_connection((parsed.hostname, parsed.port or 80)) as sock:
            sock.sendall(f"GET /{bucket}/hangup HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            sock.recv(65536)
    assert s3.get_object(Bucket=bucket, Key="hangup")["Body"].read() == big
    expect_error(
        "NotImplemented", 501, s3.get_object_tagging, Bucket=bucket, Key="hangup"
    )

    rng = random.Random(3)
    data = payload(300_000, 51)
    pieces = [data[:1], data[1:70_000], data[70_000:70_001], data[70_001:]]
    encoded = b"".join(
        b"%x;chunk-signature=%s\r\n%s\r\n" % (len(c), b"f" * 64, c) for c in pieces
    )
    encoded += b"0\r\nx-amz-checksum-crc32:AAAAAA==\r\n\r\n"
    for _ in range(200):
        cuts = sorted(rng.sample(range(1, len(encoded)), rng.randrange(0, 30)))
        chunks = [encoded[a:b] for a, b in zip([0, *cuts], [*cuts, len(encoded)])]
        assert b"".join(_decode_aws_chunked(chunks)) == data


def check_in_thread_server() -> None:
    with S3Server() as srv:
        s3 = make_client(srv.url, default_checksums=False)
        s3.create_bucket(Bucket="t")
        s3.put_object(Bucket="t", Key="k", Body=b"v")
        assert s3.get_object(Bucket="t", Key="k")["Body"].read() == b"v"


# --------------------------------------------------------------------------- #
# measurements
# --------------------------------------------------------------------------- #


def raw_get(host: str, port: int, path: str, buf: bytearray) -> None:
    """GET into a preallocated buffer: measures the server, not an HTTP client."""
    with socket.create_connection((host, port)) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        head = b""
        while b"\r\n\r\n" not in head:
            head += sock.recv(65536)
        head, rest = head.split(b"\r\n\r\n", 1)
        assert head.startswith(b"HTTP/1.1 200"), head[:100]
        view = memoryview(buf)
        view[: len(rest)] = rest
        got = len(rest)
        while got < len(buf):
            n = sock.recv_into(view[got:], min(len(buf) - got, 4 * MIB))
            if not n:
                raise ConnectionError("short body")
            got += n


def raw_put(host: str, port: int, path: str, body: bytes) -> None:
    conn = http.client.HTTPConnection(host, port)
    conn.request("PUT", path, body=body)
    resp = conn.getresponse()
    resp.read()
    conn.close()
    assert resp.status == 200, resp.status


def timed(srv: ServerProcess, fn: Callable[[], object]) -> Tuple[float, float, float]:
    """Run *fn*; return (wall s, server CPU s, client CPU s)."""
    c0, p0, t0 = srv.cpu_seconds(), time.process_time(), time.perf_counter()
    fn()
    return (
        time.perf_counter() - t0,
        srv.cpu_seconds() - c0,
        time.process_time() - p0,
    )


def report(label: str, size: int, runs: List[Tuple[float, float, float]]) -> None:
    gib = size / (1 << 30)
    rates = [size / wall / 1e6 for wall, _, _ in runs]
    server = statistics.median(cpu for _, cpu, _ in runs) / gib
    client = statistics.median(cpu for _, _, cpu in runs) / gib
    print(
        f"{label}: median {statistics.median(rates):.0f} MB/s "
        f"(best {max(rates):.0f}, {len(runs)} runs); CPU per GiB: "
        f"server {server:.2f} s, client {client:.2f} s"
    )


def measure(srv: ServerProcess, big_mib: int, small_count: int) -> None:
    s3 = make_client(srv.url, default_checksums=False)
    host, port = urlparse(srv.url).hostname or "127.0.0.1", urlparse(srv.url).port or 80
    bucket = "bench"
    s3.create_bucket(Bucket=bucket)
    size = big_mib * MIB
    body = payload(size, 60)
    report(
        f"PUT {big_mib} MiB, boto3 put_object (md5 ETag)",
        size,
        [timed(srv, partial(s3.put_object, Bucket=bucket, Key="big", Body=body))],
    )
    report(
        f"PUT {big_mib} MiB, http.client (md5 ETag)",
        size,
        [
            timed(srv, partial(raw_put, host, port, f"/{bucket}/big", body))
            for _ in range(3)
        ],
    )
    del body

    def boto_get() -> None:
        assert len(s3.get_object(Bucket=bucket, Key="big")["Body"].read()) == size

    boto_get()  # warm-up
    report(
        f"GET {big_mib} MiB, boto3 get_object()['Body'].read()",
        size,
        [timed(srv, boto_get) for _ in range(5)],
    )
    buf = bytearray(size)
    raw_get(host, port, f"/{bucket}/big", buf)  # warm-up (faults the buffer in)
    report(
        f"GET {big_mib} MiB, raw socket into a reused buffer",
        size,
        [
            timed(srv, partial(raw_get, host, port, f"/{bucket}/big", buf))
            for _ in range(5)
        ],
    )
    del buf

    small = payload(128 << 10, 61)
    for i in range(small_count):
        s3.put_object(Bucket=bucket, Key=f"small/{i:05d}", Body=small)
    for i in range(20):  # warm the connection pool
        s3.get_object(Bucket=bucket, Key=f"small/{i:05d}")["Body"].read()

    def small_gets() -> None:
        for i in range(small_count):
            got = s3.get_object(Bucket=bucket, Key=f"small/{i:05d}")["Body"].read()
            assert len(got) == len(small)

    wall, server, client = timed(srv, small_gets)
    print(
        f"{small_count} x 128 KiB GETs, sequential, boto3: "
        f"{small_count / wall:.0f} objects/s; CPU per request: "
        f"server {server * 1e3 / small_count:.2f} ms, client {client * 1e3 / small_count:.2f} ms"
    )


def measure_fast_etag_put(big_mib: int) -> None:
    with ServerProcess(etag_mode="fast") as srv:
        host, port = urlparse(srv.url).hostname or "", urlparse(srv.url).port or 80
        raw_put(host, port, "/bench", b"")
        body = payload(big_mib * MIB, 62)
        report(
            f"PUT {big_mib} MiB, http.client (--fast-etag)",
            len(body),
            [
                timed(srv, partial(raw_put, host, port, "/bench/big", body))
                for _ in range(3)
            ],
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n", 1)[0] if __doc__ else None
    )
    parser.add_argument(
        "--big-mib", type=int, default=1024, help="size of the large GET"
    )
    parser.add_argument(
        "--small-count", type=int, default=2000, help="number of 128 KiB GETs"
    )
    parser.add_argument("--skip-bench", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")

    t0 = time.perf_counter()
    check_in_thread_server()
    with ServerProcess() as srv:
        print(f"server {srv.url} (pid {srv.pid})")
        for label, default in (("strict", False), ("default", True)):
            s3 = make_client(srv.url, default_checksums=default)
            check_objects(s3, f"objects-{label}")
            check_multipart(s3, f"objects-{label}")
            check_listing(s3, f"listing-{label}")
            check_multipart_reads(s3, f"objects-{label}")
            print(f"functional checks passed with {label} checksum settings")
        check_aws_chunked(srv.url, "chunked")
        check_robustness(
            srv.url, make_client(srv.url, default_checksums=False), "chunked"
        )
        print(
            "aws-chunked uploads decoded correctly (boto3 trailer checksums, SigV4 chunk signatures)"
        )
        print(
            f"all functional checks passed in {time.perf_counter() - t0:.1f} s; server CPU {srv.cpu_seconds():.2f} s"
        )

    if args.skip_bench:
        return
    with ServerProcess() as srv:
        measure(srv, args.big_mib, args.small_count)
    print(
        f"server CPU over the benchmark server's lifetime: {srv.final_cpu_seconds:.2f} s"
    )
    measure_fast_etag_put(args.big_mib)


if __name__ == "__main__":
    main()
