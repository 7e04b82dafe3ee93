"""The catalogue: which benchmarks each case runs, with which client variants.

A *case* is one of the issue's scenarios; it runs one or more *benchmarks* (case 2 once
with ``num_workers=0`` and once with 2 workers, cases 5 and 6 once to save and once to load).
Each benchmark lists client *variants*; the s3torchconnector variant marked ``reference``
is what the ratios divide by.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field, replace
from typing import Any, Dict, List, Optional, Sequence, Tuple

#: Client families in the order the table shows them.
FAMILIES = ("s3torch-async", "s3torchconnector", "boto3", "s3fs", "obstore")

_CONNECTOR = "benchmarks.clients.connector"
_ASYNC = "benchmarks.clients.async_api"
_BOTO3 = "benchmarks.clients.boto3_client"
_S3FS = "benchmarks.clients.s3fs_client"
_OBSTORE = "benchmarks.clients.obstore_client"
_DCP_RANKS = "benchmarks.clients.dcp_ranks"
_COLD = "benchmarks.clients.coldstart:first_byte"

_OURS = {"package": "s3torch_async"}
_REF = {"package": "s3torchconnector"}


@dataclass(frozen=True)
class Variant:
    """One way of doing a benchmark with one client.

    Attributes:
        family: Client family (``s3torch-async``, ``boto3``...).
        name: Variant name within the family (``sequential``, ``download_fileobj``...).
        function: ``module:function`` that prepares the timed callable.
        options: Keyword arguments for that function.
        requires: Modules that must be importable (installed packages, landed APIs).
        reference: This is the s3torchconnector variant the ratios divide by.
        count_requests: Requests can be counted cheaply (aiohttp/urllib3 in this process).
        env: Environment variables set for this variant's worker process only.
    """

    family: str
    name: str
    function: str
    options: Dict[str, Any] = field(default_factory=dict)
    requires: Tuple[str, ...] = ()
    reference: bool = False
    count_requests: bool = True
    env: Dict[str, str] = field(default_factory=dict)

    @property
    def id(self) -> str:
        """``family/name``."""
        return f"{self.family}/{self.name}"


@dataclass(frozen=True)
class Bench:
    """One measured operation of a case.

    Attributes:
        id: ``"1"``, ``"2-w0"``, ``"5-save"``...
        case: The case number (1-7).
        title: Human description.
        unit: ``"MB/s"``, ``"obj/s"`` or ``"keys/s"``: what throughput means here; or
            ``"ms"``: a time, lower is better (case 7's first call).
        variants: The client variants.
        writes: Key this benchmark writes (checked and deleted by the runner), if any.
        primary: The s3torch-async variant that carries the targets.
        profile: The server profile it runs against (``loopback`` or ``s3like``).
    """

    id: str
    case: int
    title: str
    unit: str
    variants: Tuple[Variant, ...]
    writes: Optional[str] = None
    primary: Optional[str] = None
    profile: str = "loopback"

    @property
    def reference(self) -> Optional[Variant]:
        """The variant ratios are relative to."""
        return next((v for v in self.variants if v.reference), None)


def _ours(
    name: str,
    fn: str,
    requires: str,
    env: Optional[Dict[str, str]] = None,
    **options: Any,
) -> Variant:
    return Variant(
        "s3torch-async",
        name,
        f"{_CONNECTOR}:{fn}",
        {**_OURS, **options},
        requires=(requires,),
        count_requests=options.get("num_workers", 0) == 0,
        env=dict(env or {}),
    )


def _checksum_variants(name: str, fn: str, requires: str) -> Tuple[Variant, ...]:
    """Variants showing what the upload checksum costs.

    The stdlib CRC32 (no ``fast-crc`` extra), the CRC32 in an ``aws-chunked`` trailer (the
    default for AWS S3 over HTTPS; this plain-HTTP server gets it only when asked), and no
    checksum at all (botocore's switch, as for stores that reject the headers).
    """
    return (
        _ours(f"{name}-zlib-crc", fn, requires, env={"S3TORCH_ASYNC_CRC32": "zlib"}),
        _ours(
            f"{name}-trailer-crc",
            fn,
            requires,
            env={"S3TORCH_ASYNC_CHECKSUM_TRAILER": "1"},
        ),
        _ours(
            f"{name}-no-crc",
            fn,
            requires,
            env={"AWS_REQUEST_CHECKSUM_CALCULATION": "when_required"},
        ),
    )


def _ref(name: str, fn: str, requires: str, **options: Any) -> Variant:
    return Variant(
        "s3torchconnector",
        name,
        f"{_CONNECTOR}:{fn}",
        {**_REF, **options},
        requires=("s3torchconnector", requires),
        reference=True,
        count_requests=False,
    )


def _alt_ref(name: str, fn: str, requires: str, **options: Any) -> Variant:
    """An s3torchconnector variant that is not the reference."""
    variant = _ref(name, fn, requires, **options)
    return Variant(
        variant.family,
        variant.name,
        variant.function,
        variant.options,
        requires=variant.requires,
        count_requests=False,
    )


def _async(
    name: str, fn: str, requires: str = "s3torch_async._core", **options: Any
) -> Variant:
    return Variant(
        "s3torch-async", name, f"{_ASYNC}:{fn}", options, requires=(requires,)
    )


def _boto3(name: str, fn: str) -> Variant:
    return Variant("boto3", name, f"{_BOTO3}:{fn}", requires=("boto3",))


def _s3fs(name: str, fn: str) -> Variant:
    return Variant("s3fs", name, f"{_S3FS}:{fn}", requires=("s3fs",))


def _obstore(name: str, fn: str) -> Variant:
    return Variant(
        "obstore", name, f"{_OBSTORE}:{fn}", requires=("obstore",), count_requests=False
    )


_READER = "s3torch_async.s3reader"
_DATASET = "s3torch_async.s3iterable_dataset"
_MAP = "s3torch_async.s3map_dataset"
_CHECKPOINT = "s3torch_async.s3checkpoint"
_DCP = "s3torch_async.dcp"


def _map_variants(num_workers: int) -> Tuple[Variant, ...]:
    """``S3MapDataset`` through a ``DataLoader(batch_size=32)``: ours, ours shuffled, theirs.

    The ``DataLoader(shuffle=True)`` variant shows random access; it carries no target.
    """
    suffix = f"-w{num_workers}" if num_workers else ""
    return (
        _ours(f"S3MapDataset{suffix}", "map_dataset", _MAP, num_workers=num_workers),
        _ours(
            f"S3MapDataset-shuffle{suffix}",
            "map_dataset",
            _MAP,
            num_workers=num_workers,
            shuffle=True,
        ),
        _alt_ref(
            f"S3MapDataset{suffix}",
            "map_dataset",
            "s3torchconnector",
            num_workers=num_workers,
        ),
    )


def catalogue() -> List[Bench]:
    """Every benchmark, in run order."""
    return [
        Bench(
            "1",
            1,
            "one large object read fully into memory",
            "MB/s",
            (
                _ours("sequential", "read", _READER, reader="sequential"),
                _ours("range_based", "read", _READER, reader="range_based"),
                _async("AsyncS3Client", "read"),
                _ref("sequential", "read", "s3torchconnector", reader="sequential"),
                _alt_ref(
                    "range_based", "read", "s3torchconnector", reader="range_based"
                ),
                _boto3("get_object", "get_object"),
                _boto3("download_fileobj", "download_fileobj"),
                _s3fs("cat_file", "cat_file"),
                _obstore("get", "get"),
            ),
            primary="s3torch-async/sequential",
        ),
        Bench(
            "2-w0",
            2,
            "small objects, one process (num_workers=0)",
            "obj/s",
            (
                _ours("S3IterableDataset", "dataset", _DATASET, num_workers=0),
                _async(
                    "AsyncS3Dataset", "dataset", requires="s3torch_async.async_dataset"
                ),
                _ref(
                    "S3IterableDataset",
                    "dataset",
                    "s3torchconnector",
                    num_workers=0,
                ),
                *_map_variants(0),
                _boto3("loop", "loop"),
                _s3fs("loop", "loop"),
                _obstore("loop", "loop"),
                _obstore("loop16", "loop16"),
            ),
            primary="s3torch-async/S3IterableDataset",
        ),
        Bench(
            "2-w2",
            2,
            "small objects, DataLoader num_workers=2",
            "obj/s",
            (
                _ours("S3IterableDataset-w2", "dataset", _DATASET, num_workers=2),
                _ref(
                    "S3IterableDataset-w2",
                    "dataset",
                    "s3torchconnector",
                    num_workers=2,
                ),
                *_map_variants(2),
            ),
            primary="s3torch-async/S3IterableDataset-w2",
        ),
        Bench(
            "3",
            3,
            "one large object written",
            "MB/s",
            (
                _ours("S3Writer", "write", "s3torch_async.s3writer"),
                *_checksum_variants("S3Writer", "write", "s3torch_async.s3writer"),
                _async("AsyncS3Writer", "write"),
                _ref("S3Writer", "write", "s3torchconnector"),
                _boto3("upload_fileobj", "upload_fileobj"),
                _s3fs("pipe", "pipe"),
                _obstore("put", "put"),
            ),
            writes="write_object",
            primary="s3torch-async/S3Writer",
        ),
        Bench(
            "4",
            4,
            "listing keys",
            "keys/s",
            (
                _ours("list_objects", "list_keys", "s3torch_async._s3client"),
                _async("AsyncS3Client.list_objects", "list_keys"),
                _async(
                    "list_partitioned",
                    "list_keys",
                    "s3torch_async._core.listing",
                    partitioned=True,
                ),
                _ref("list_objects", "list_keys", "s3torchconnector"),
                _boto3("paginator", "list_keys"),
                _s3fs("find", "list_keys"),
                _obstore("list", "list_keys"),
            ),
            primary="s3torch-async/list_objects",
        ),
        Bench(
            "5-save",
            5,
            "torch.save of a state dict",
            "MB/s",
            (
                _ours("S3Checkpoint", "checkpoint_save", _CHECKPOINT),
                *_checksum_variants("S3Checkpoint", "checkpoint_save", _CHECKPOINT),
                _ref("S3Checkpoint", "checkpoint_save", "s3torchconnector"),
                _boto3("BytesIO+upload_fileobj", "checkpoint_save"),
                _s3fs("open-wb", "checkpoint_save"),
                _obstore("BytesIO+put", "checkpoint_save"),
            ),
            writes="checkpoint_save",
            primary="s3torch-async/S3Checkpoint",
        ),
        Bench(
            "5-load",
            5,
            "torch.load of a state dict",
            "MB/s",
            (
                _ours("S3Checkpoint", "checkpoint_load", _CHECKPOINT),
                _ref("S3Checkpoint", "checkpoint_load", "s3torchconnector"),
                _boto3("download_fileobj+BytesIO", "checkpoint_load"),
                _s3fs("open-rb", "checkpoint_load"),
                _obstore("get+BytesIO", "checkpoint_load"),
            ),
            primary="s3torch-async/S3Checkpoint",
        ),
        Bench(
            "6-save",
            6,
            "DCP save of a state dict",
            "MB/s",
            (
                _ours("S3StorageWriter", "dcp_save", _DCP),
                _ref("S3StorageWriter", "dcp_save", "s3torchconnector.dcp"),
            ),
            writes="dcp_save",
            primary="s3torch-async/S3StorageWriter",
        ),
        Bench(
            "6-load",
            6,
            "DCP load of a state dict",
            "MB/s",
            (
                _ours("S3StorageReader", "dcp_load", _DCP),
                _ref("S3StorageReader", "dcp_load", "s3torchconnector.dcp"),
            ),
            primary="s3torch-async/S3StorageReader",
        ),
        Bench(
            "6-save-2r",
            6,
            "DCP save of a state dict from 2 ranks (gloo)",
            "MB/s",
            (
                _ranks(_ours("S3StorageWriter", "dcp_save", _DCP), "dcp_save_ranks"),
                _ranks(
                    _ref("S3StorageWriter", "dcp_save", "s3torchconnector.dcp"),
                    "dcp_save_ranks",
                ),
            ),
            writes="dcp_save",
            primary="s3torch-async/S3StorageWriter",
        ),
        Bench(
            "6-load-2r",
            6,
            "DCP load of a state dict into 2 ranks (gloo; bytes counted per rank)",
            "MB/s",
            (
                _ranks(_ours("S3StorageReader", "dcp_load", _DCP), "dcp_load_ranks"),
                _ranks(
                    _ref("S3StorageReader", "dcp_load", "s3torchconnector.dcp"),
                    "dcp_load_ranks",
                ),
            ),
            primary="s3torch-async/S3StorageReader",
        ),
        Bench(
            "7",
            7,
            "cold start: fresh process, first call to first object's bytes "
            "(lower is better; import time in the note)",
            "ms",
            (
                _cold("s3torch-async", "S3Client.get_object", "s3torch_async.S3Client"),
                _cold("s3torch-async", "S3MapDataset[0]", "s3torch_async.S3MapDataset"),
                _cold(
                    "s3torchconnector",
                    "S3Client.get_object",
                    "s3torchconnector.S3Client",
                    reference=True,
                ),
                _cold("boto3", "get_object", "boto3"),
                _cold("obstore", "get", "obstore"),
            ),
            primary="s3torch-async/S3Client.get_object",
        ),
    ]


def _cold(family: str, name: str, client: str, *, reference: bool = False) -> Variant:
    """A case 7 variant: the timed child process runs ``client``'s script."""
    return Variant(
        family,
        name,
        _COLD,
        {"client": client},
        requires=(client.split(".")[0],),
        reference=reference,
        count_requests=False,  # the requests are the child's
    )


def _ranks(variant: Variant, fn: str) -> Variant:
    """``variant`` run by the rank pool of ``benchmarks.clients.dcp_ranks`` (2 ranks)."""
    return replace(
        variant,
        function=f"{_DCP_RANKS}:{fn}",
        options={**variant.options, "world_size": 2},
        count_requests=False,
    )


def select(
    benches: Sequence[Bench],
    cases: Optional[Sequence[int]] = None,
    clients: Optional[Sequence[str]] = None,
) -> List[Bench]:
    """Keep the benchmarks of ``cases`` and the variants matching ``clients``.

    A client entry matches a whole family (``boto3``) or one variant (``boto3/get_object``).
    Benchmarks left without variants are dropped.
    """
    out = []
    for bench in benches:
        if cases and bench.case not in cases:
            continue
        variants = tuple(
            v
            for v in bench.variants
            if not clients or v.family in clients or v.id in clients
        )
        if variants:
            out.append(Bench(**{**bench.__dict__, "variants": variants}))
    return out


#: The server profiles a run can use, in the order they run.
PROFILES = ("loopback", "s3like")


def profile_id(bench_id: str, profile: str) -> str:
    """A benchmark's id on a profile: ``"1"`` on loopback, ``"1@s3like"`` on the S3-like one."""
    return bench_id if profile == "loopback" else f"{bench_id}@{profile}"


def with_profiles(benches: Sequence[Bench], profiles: Sequence[str]) -> List[Bench]:
    """Every benchmark once per profile, each case's profiles next to each other."""
    return [
        Bench(
            **{
                **bench.__dict__,
                "id": profile_id(bench.id, profile),
                "profile": profile,
            }
        )
        for bench in benches
        for profile in profiles
    ]


def missing(requires: Sequence[str]) -> Optional[str]:
    """Why a variant cannot run here (``None`` when every required module is importable)."""
    for module in requires:
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            if module.split(".")[0] == "s3torch_async":
                return f"{module} has not landed yet"
            return f"{module.split('.')[0]} is not installed"
    return None
