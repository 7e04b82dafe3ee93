"""The bad-input catalogue: every public entry point fed its plausible wrong inputs.

Each row names the entry point, the wrong input, the exception type and its exact message
(``…`` at the end: the message starts with that text), and must raise within ``QUICK`` seconds:
no retry storm, not even against an endpoint that refuses connections. Messages the reference
defines (/work/shared/reference-behaviour.md) are reproduced exactly and marked ``ref``.

``docs/errors.md`` holds the same table; ``test_docs_table_matches`` fails when they disagree.
Regenerate it with ``PYTHONPATH=. python -m tests.api.test_bad_input``.
"""

from __future__ import annotations

import io
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pytest

from s3torch_async import (
    AsyncS3Client,
    S3ClientConfig,
    S3Exception,
    S3ReaderConstructor,
)
from s3torch_async._s3client import S3Client
from s3torch_async._user_agent import UserAgent

REGION = "us-east-1"
QUICK = 3.0  # seconds: a misuse error must not wait for retries or timeouts
DOCS = Path(__file__).resolve().parents[2] / "docs" / "errors.md"
START, END = "<!-- bad-input-table:start -->", "<!-- bad-input-table:end -->"
REQUESTER_PAYS_UNSIGNED = (
    "requester_pays=True requires authenticated requests and cannot be combined with "
    "unsigned=True. For more information, see "
    "https://docs.aws.amazon.com/AmazonS3/latest/userguide/RequesterPaysBuckets.html"
)


@dataclass
class Ctx:
    """What a row's call may use: a live endpoint and bucket, and one that refuses."""

    endpoint: str
    bucket: str
    refused: str

    def client(self, **config: Any) -> S3Client:
        return S3Client(
            REGION, endpoint=self.endpoint, s3client_config=S3ClientConfig(**config)
        )

    def reader(self, kind: str = "sequential") -> Any:
        constructor = getattr(S3ReaderConstructor, kind)()
        return self.client().get_object(
            self.bucket, "obj", reader_constructor=constructor
        )


@dataclass(frozen=True)
class Case:
    entry: str
    wrong: str
    raises: type[BaseException]
    message: str
    call: Callable[[Ctx], Any]
    ref: bool = False


def _closed_reader(ctx: Ctx) -> Any:
    reader = ctx.reader()
    reader.close()
    with reader:
        pass


def _closed_writer(ctx: Ctx) -> Any:
    writer = ctx.client().put_object(ctx.bucket, "w")
    writer.close()
    writer.write(b"x")


def _writer(ctx: Ctx) -> Any:
    return ctx.client().put_object(ctx.bucket, "w2")


def _aborting(ctx: Ctx, action: Callable[[Any], Any]) -> Any:
    writer = _writer(ctx)
    try:
        action(writer)
    finally:
        writer._abort()  # nothing is committed


def _dataset(ctx: Ctx, uri: str, kind: str = "iterable", **kw: Any) -> Any:
    from s3torch_async import S3IterableDataset, S3MapDataset

    if kind == "iterable":
        return list(
            S3IterableDataset.from_prefix(
                uri, region=REGION, endpoint=ctx.endpoint, **kw
            )
        )
    return S3MapDataset.from_prefix(uri, region=REGION, endpoint=ctx.endpoint, **kw)[0]


def _checkpoint(ctx: Ctx) -> Any:
    from s3torch_async import S3Checkpoint

    return S3Checkpoint(REGION, endpoint=ctx.endpoint)


def _filesystem(ctx: Ctx) -> Any:
    from s3torch_async.dcp import S3FileSystem

    return S3FileSystem(REGION, s3_client=ctx.client())


def _create_stream(ctx: Ctx) -> Any:
    with _filesystem(ctx).create_stream(f"s3://{ctx.bucket}/x", "ab"):  # type: ignore[arg-type]
        pass


def _lightning(ctx: Ctx) -> Any:
    from s3torch_async.lightning import S3LightningCheckpoint

    return S3LightningCheckpoint(REGION, endpoint=ctx.endpoint)


async def _async_range(ctx: Ctx) -> Any:
    async with AsyncS3Client(REGION, endpoint=ctx.endpoint) as c:
        await c.get_range(ctx.bucket, "obj", 5, 5)


async def _async_closed_client(ctx: Ctx) -> Any:
    c = AsyncS3Client(REGION, endpoint=ctx.endpoint)
    await c.aclose()
    await c.head_object(ctx.bucket, "obj")


def _refused(ctx: Ctx) -> Any:
    S3Client(
        REGION, endpoint=ctx.refused, s3client_config=S3ClientConfig(max_attempts=1)
    ).get_object(ctx.bucket, "obj").read()


CASES: list[Case] = [
    # -- configuration and clients ------------------------------------------------------------
    Case(
        "S3ClientConfig",
        "requester_pays=True, unsigned=True",
        ValueError,
        REQUESTER_PAYS_UNSIGNED,
        lambda ctx: S3ClientConfig(requester_pays=True, unsigned=True),
        ref=True,
    ),
    Case(
        "S3Client (first request)",
        "part_size=1",
        S3Exception,
        "invalid configuration: part size must be at between 5MiB and 5GiB…",
        lambda ctx: ctx.client(part_size=1).get_object(ctx.bucket, "obj").read(),
        ref=True,
    ),
    Case(
        "S3Client (first request)",
        "part_size=6 GiB",
        S3Exception,
        "invalid configuration: part size must be at between 5MiB and 5GiB…",
        lambda ctx: ctx.client(part_size=6 << 30).head_object(ctx.bucket, "obj"),
        ref=True,
    ),
    Case(
        "S3Client (first request)",
        "max_attempts=0",
        S3Exception,
        "invalid configuration: max_attempts must be >= 1 (got max_attempts=0)",
        lambda ctx: ctx.client(max_attempts=0).head_object(ctx.bucket, "obj"),
    ),
    Case(
        "S3Client",
        "region=1",
        TypeError,
        "region must be a str, got int",
        lambda ctx: S3Client(1).head_object(ctx.bucket, "obj"),  # type: ignore[arg-type]
    ),
    Case(
        "S3Client (first request)",
        'endpoint="INVALID"',
        S3Exception,
        "Client error: Failed to construct request: Invalid S3 endpoint: endpoint could not "
        "be resolved: Custom endpoint `INVALID` was not a valid URI",
        lambda ctx: S3Client(REGION, endpoint="INVALID").head_object(ctx.bucket, "obj"),
        ref=True,
    ),
    Case(
        "S3Client.get_object(...).read()",
        "an endpoint that refuses connections (max_attempts=1)",
        S3Exception,
        # The rest differs by transport (our HTTP client's or botocore's wording).
        "Client error: GetObject s3://{bucket}/obj failed: connection refused: …",
        _refused,
    ),
    Case(
        "UserAgent",
        "comments=0",
        ValueError,
        "Argument comments must be a List[str]",
        lambda ctx: UserAgent(comments=0),  # type: ignore[arg-type]
        ref=True,
    ),
    Case(
        "AsyncS3Client.get_range",
        "start == end",
        ValueError,
        "empty or inverted range [5, 5) for s3://{bucket}/obj",
        _async_range,
    ),
    Case(
        "AsyncS3Client (after aclose)",
        "any request",
        RuntimeError,
        "AsyncS3Client is closed; create a new client",
        _async_closed_client,
    ),
    Case(
        "S3Client.list_objects",
        "max_keys=0",
        ValueError,
        "max_keys must be between 1 and 1000, got 0",
        lambda ctx: ctx.client().list_objects(ctx.bucket, max_keys=0),
    ),
    # -- names and URIs -----------------------------------------------------------------------
    Case(
        "S3Client.get_object",
        'bucket=""',
        ValueError,
        "Bucket should be specified",
        lambda ctx: ctx.client().get_object("", "obj"),
        ref=True,
    ),
    Case(
        "S3Client.get_object(...).read()",
        "missing key",
        S3Exception,
        "Service error: The key does not exist",
        lambda ctx: ctx.client().get_object(ctx.bucket, "missing").read(),
        ref=True,
    ),
    Case(
        "S3Client.get_object(...).read()",
        "missing bucket",
        S3Exception,
        "Service error: The bucket does not exist",
        lambda ctx: ctx.client().get_object("no-such-bucket-x", "k").read(),
        ref=True,
    ),
    Case(
        "S3Client.head_object",
        "missing key",
        S3Exception,
        "Service error: The object was not found",
        lambda ctx: ctx.client().head_object(ctx.bucket, "missing"),
        ref=True,
    ),
    Case(
        "S3Client.put_object",
        "bucket=1",
        TypeError,
        "bucket must be a str, got int",
        lambda ctx: ctx.client().put_object(1, "k"),  # type: ignore[arg-type]
    ),
    Case(
        "S3IterableDataset.from_prefix (iteration)",
        '"http://bucket/x"',
        ValueError,
        "Only s3:// URIs are supported",
        lambda ctx: _dataset(ctx, "http://bucket/x"),
        ref=True,
    ),
    Case(
        "S3IterableDataset.from_prefix (iteration)",
        '""',
        ValueError,
        "Only s3:// URIs are supported",
        lambda ctx: _dataset(ctx, ""),
        ref=True,
    ),
    Case(
        "S3MapDataset.from_prefix (first item)",
        '"s3://"',
        ValueError,
        "Bucket name must be non-empty",
        lambda ctx: _dataset(ctx, "s3://", kind="map"),
        ref=True,
    ),
    Case(
        "S3Checkpoint.reader",
        '"s3:///key"',
        ValueError,
        "Bucket name must be non-empty",
        lambda ctx: _checkpoint(ctx).reader("s3:///key"),
        ref=True,
    ),
    Case(
        "S3Checkpoint.writer",
        '"/local/path"',
        ValueError,
        "Only s3:// URIs are supported",
        lambda ctx: _checkpoint(ctx).writer("/local/path"),
        ref=True,
    ),
    Case(
        "S3LightningCheckpoint.save_checkpoint",
        "path=Path(...)",
        TypeError,
        "'PosixPath' is not a supported type for 'path'. Must be a string formatted as an "
        "S3 uri.",
        lambda ctx: _lightning(ctx).save_checkpoint({}, Path("/tmp/x")),
        ref=True,
    ),
    # -- readers ------------------------------------------------------------------------------
    Case(
        "S3Reader.read",
        'size="3"',
        TypeError,
        "argument should be integer or None, not <class 'str'>",
        lambda ctx: ctx.reader().read("3"),
        ref=True,
    ),
    Case(
        "S3Reader.seek",
        "offset=-1",
        ValueError,
        "negative seek value -1",
        lambda ctx: ctx.reader().seek(-1),
        ref=True,
    ),
    Case(
        "S3Reader.seek",
        "whence=5",
        ValueError,
        "Seek must be passed SEEK_CUR, SEEK_SET, or SEEK_END",
        lambda ctx: ctx.reader().seek(0, 5),
        ref=True,
    ),
    Case(
        "S3Reader.seek",
        'whence="foo"',
        TypeError,
        "integer argument expected, got <class 'str'>",
        lambda ctx: ctx.reader().seek(0, "foo"),
        ref=True,
    ),
    Case(
        "S3Reader.seek",
        "offset=1.0",
        TypeError,
        "integer argument expected, got <class 'float'>",
        lambda ctx: ctx.reader("range_based").seek(1.0),
        ref=True,
    ),
    Case(
        "S3Reader.readinto (sequential)",
        "a read-only bytes",
        TypeError,
        "readinto() argument must be read-write bytes-like object, not bytes",
        lambda ctx: ctx.reader().readinto(b"abc"),
        ref=True,
    ),
    Case(
        "S3Reader.readinto (range-based)",
        "a read-only bytes",
        TypeError,
        "argument must be a writable bytes-like object, not bytes",
        lambda ctx: ctx.reader("range_based").readinto(b"abc"),
        ref=True,
    ),
    Case(
        "S3Reader.__enter__",
        "a closed reader",
        ValueError,
        "I/O operation on closed file.",
        _closed_reader,
        ref=True,
    ),
    Case(
        "S3Reader.fileno",
        "any call",
        io.UnsupportedOperation,
        "fileno",
        lambda ctx: ctx.reader().fileno(),
        ref=True,
    ),
    Case(
        "S3ReaderConstructor.dcp_optimized",
        "max_gap_size=-1",
        ValueError,
        "max_gap_size must be non-negative",
        lambda ctx: S3ReaderConstructor.dcp_optimized(max_gap_size=-1),
        ref=True,
    ),
    Case(
        "S3ReaderConstructor.dcp_optimized",
        'max_gap_size="1"',
        TypeError,
        "max_gap_size must be int or float, got str",
        lambda ctx: S3ReaderConstructor.dcp_optimized(max_gap_size="1"),  # type: ignore[arg-type]
    ),
    Case(
        "S3Client.get_object",
        "reader_constructor=42 (not callable)",
        TypeError,
        "'int' object is not callable",
        lambda ctx: ctx.client().get_object(ctx.bucket, "obj", reader_constructor=42),  # type: ignore[arg-type]
    ),
    # -- writers ------------------------------------------------------------------------------
    Case(
        "S3Writer.write",
        "a closed writer",
        ValueError,
        "I/O operation on closed file.",
        _closed_writer,
        ref=True,
    ),
    Case(
        "S3Writer.write",
        'data="text"',
        TypeError,
        "a bytes-like object is required, not 'str'",
        lambda ctx: _aborting(ctx, lambda w: w.write("text")),
    ),
    Case(
        "S3Writer.read",
        "any call",
        io.UnsupportedOperation,
        "read",
        lambda ctx: _aborting(ctx, lambda w: w.read()),
        ref=True,
    ),
    Case(
        "S3Writer.seek",
        "any call",
        io.UnsupportedOperation,
        "seek",
        lambda ctx: _aborting(ctx, lambda w: w.seek(0)),
        ref=True,
    ),
    # -- DCP ----------------------------------------------------------------------------------
    Case(
        "S3FileSystem.create_stream",
        'mode="ab"',
        ValueError,
        "Invalid mode='ab' mode argument: create_stream only supports rb (read mode) & wb "
        "(write mode)",
        _create_stream,
        ref=True,
    ),
    Case(
        "S3FileSystem.rename",
        "different buckets",
        ValueError,
        "Source and destination buckets cannot be different (rename does not support "
        "cross-buckets operations)",
        lambda ctx: _filesystem(ctx).rename("s3://a/x", "s3://b/x"),
        ref=True,
    ),
    Case(
        "RoundRobinPrefixStrategy",
        "user_prefixes=[]",
        ValueError,
        "user_prefixes must not be empty",
        lambda ctx: __import__(
            "s3torch_async.dcp", fromlist=["x"]
        ).RoundRobinPrefixStrategy([]),
        ref=True,
    ),
    Case(
        "HexPrefixStrategy",
        "min_prefix_length=0",
        ValueError,
        "Minimum prefix length must be positive, got 0",
        lambda ctx: __import__("s3torch_async.dcp", fromlist=["x"]).HexPrefixStrategy(
            min_prefix_length=0
        ),
        ref=True,
    ),
]


def _id(case: Case) -> str:
    return f"{case.entry}: {case.wrong}"


@pytest.fixture(scope="module")
def refused_endpoint() -> str:
    # A port that was just free: nothing listens there, so connections are refused.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def imported() -> None:
    # torch and friends import in seconds: not inside the timed calls.
    import s3torch_async.dcp
    import s3torch_async.lightning
    import s3torch_async.s3checkpoint
    import s3torch_async.s3iterable_dataset
    import s3torch_async.s3map_dataset  # noqa: F401


@pytest.fixture
def ctx(
    endpoint: str, bucket: str, put: Any, refused_endpoint: str, imported: None
) -> Ctx:
    put("obj", b"0123456789")
    return Ctx(endpoint, bucket, refused_endpoint)


@pytest.mark.parametrize("case", CASES, ids=[_id(c) for c in CASES])
async def test_bad_input(case: Case, ctx: Ctx) -> None:
    import asyncio
    import inspect

    async def call() -> None:
        result = await asyncio.to_thread(case.call, ctx)
        if inspect.isawaitable(result):
            await result

    started = time.monotonic()
    with pytest.raises(case.raises) as info:
        await call()
    elapsed = time.monotonic() - started
    expected = case.message.replace("{bucket}", ctx.bucket)
    message = str(info.value)
    if expected.endswith("…"):
        assert message.startswith(expected[:-1]), message
    else:
        assert message == expected
    assert type(info.value) is case.raises or case.raises is io.UnsupportedOperation
    assert elapsed < QUICK, f"{elapsed:.1f} s"


def render() -> str:
    """The catalogue as the Markdown table ``docs/errors.md`` carries."""
    lines = [
        "| Entry point | Wrong input | Exception | Message |",
        "|---|---|---|---|",
    ]
    for case in CASES:
        message = case.message.replace("|", "\\|")
        code = f"`` {message} ``" if "`" in message else f"`{message}`"
        ref = " (reference)" if case.ref else ""
        lines.append(
            f"| `{case.entry}` | {case.wrong} | `{case.raises.__name__}` | {code}{ref} |"
        )
    return "\n".join(lines)


def test_docs_table_matches() -> None:
    text = DOCS.read_text()
    table = text.split(START, 1)[1].split(END, 1)[0].strip()
    assert table == render(), (
        "docs/errors.md is out of date: run `PYTHONPATH=. python -m tests.api.test_bad_input`"
    )


def _write_docs() -> None:
    text = DOCS.read_text()
    head, rest = text.split(START, 1)
    tail = rest.split(END, 1)[1]
    DOCS.write_text(f"{head}{START}\n{render()}\n{END}{tail}")


if __name__ == "__main__":
    _write_docs()
