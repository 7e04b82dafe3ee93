"""``s3torch-async demo``: the library's main job end to end, with a summary table.

With no endpoint and no bucket, an embedded S3 server (moto, from the ``demo`` extra) runs on
a free loopback port with dummy credentials; otherwise the demo runs against the given
endpoint (or AWS) and bucket, writes under a fresh ``s3torch-async-demo/...`` prefix and
deletes what it wrote unless asked to keep it.
"""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, List, Optional, TextIO, Tuple

from .._config import S3ClientConfig
from .._core._session import resolve_endpoint

__all__ = ["DemoOptions", "run_demo"]

EMBEDDED_BUCKET = "s3torch-async-demo"
_INSTALL_HINT = 'the demo needs its extra: pip install "s3torch-async[demo]"'
_MB = 1_000_000


@dataclass(frozen=True)
class DemoOptions:
    """What ``s3torch-async demo`` was asked to do (see ``s3torch-async demo --help``)."""

    endpoint: Optional[str] = None
    bucket: Optional[str] = None
    region: str = "us-east-1"
    path_style: bool = False
    samples: int = 2000
    workers: int = 2
    batch_size: int = 64
    start_method: Optional[str] = None
    keep: bool = False
    progress: bool = True

    @property
    def embedded(self) -> bool:
        """No endpoint (argument or environment) and no bucket: use the embedded server."""
        return self.bucket is None and resolve_endpoint(self.endpoint) is None


@contextlib.contextmanager
def _dummy_credentials() -> Iterator[None]:
    """Credentials for the embedded server, inherited by the workers; never a real chain.

    Without them botocore would look further (profiles, the instance metadata service).
    """
    changes = {
        "AWS_ACCESS_KEY_ID": "s3torch-async-demo",
        "AWS_SECRET_ACCESS_KEY": "s3torch-async-demo",
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_SESSION_TOKEN": None,
        "AWS_PROFILE": None,
    }
    saved = {name: os.environ.get(name) for name in changes}
    try:
        for name, value in changes.items():
            _set_env(name, value)
        yield
    finally:
        for name, value in saved.items():
            _set_env(name, value)


def _set_env(name: str, value: Optional[str]) -> None:
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value


def _import_extras() -> Tuple[Any, Any]:
    try:
        import tqdm

        from . import _job
    except ImportError as exc:
        raise SystemExit(f"s3torch-async demo: {exc}; {_INSTALL_HINT}") from exc
    return tqdm, _job


def run_demo(options: DemoOptions, out: TextIO) -> int:
    """Run the demo and print its summary to ``out``; returns the exit code.

    Raises:
        S3Exception: A request failed.
        ValueError: An endpoint is configured but no bucket is given.
        SystemExit: The ``demo`` extra is not installed.
    """
    if not options.embedded:
        if not options.bucket:
            raise ValueError("the demo needs a bucket when an endpoint is configured")
        prefix = f"s3torch-async-demo/{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:8]}/"
        return _run(options, options.bucket, prefix, None, out)
    try:
        from ._server import EmbeddedS3

        server = EmbeddedS3()
    except ImportError as exc:
        raise SystemExit(f"s3torch-async demo: {exc}; {_INSTALL_HINT}") from exc
    with _dummy_credentials(), server:
        server.create_bucket(EMBEDDED_BUCKET)
        return _run(options, EMBEDDED_BUCKET, "demo/", server, out)


def _run(
    options: DemoOptions, bucket: str, prefix: str, server: Any, out: TextIO
) -> int:
    tqdm, job = _import_extras()
    import torch

    from .._s3client import S3Client

    endpoint = server.endpoint if server is not None else options.endpoint
    conn = job.Connection(
        region=options.region,
        endpoint=endpoint,
        bucket=bucket,
        prefix=prefix,
        config=S3ClientConfig(force_path_style=options.path_style),
    )
    client = S3Client(conn.region, endpoint=conn.endpoint, s3client_config=conn.config)

    def listing(list_prefix: str) -> Tuple[int, int]:
        infos = [
            info
            for page in client.list_objects(bucket, list_prefix)
            for info in page.object_info
        ]
        return len(infos), sum(info.size for info in infos)

    where = (
        f"embedded S3 (moto) at {endpoint}"
        if server is not None
        else f"{endpoint or 'AWS S3'} (region {conn.region})"
    )
    out.write(f"s3torch-async demo: {where}, s3://{bucket}/{prefix}\n")
    out.flush()
    bar = _bars(tqdm, options.progress)
    started = time.perf_counter()
    steps = []
    try:
        with bar(total=options.samples, desc="upload", unit="obj") as progress:
            steps.append(job.upload_dataset(conn, options.samples, progress))

        # One intra-op thread: the workers and the embedded server share the cores, and
        # spinning torch threads on an oversubscribed machine made steps ~25x slower here.
        torch.set_num_threads(1)
        torch.manual_seed(0)
        model = job.TinyNet()
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        loader = job.make_loader(
            conn, options.batch_size, options.workers, options.start_method
        )
        with bar(total=options.samples, desc="epoch", unit="img") as progress:
            epoch, losses, seen = job.train_one_epoch(
                model, optimizer, loader, progress
            )
        epoch.name = f"epoch (DataLoader, {options.workers} workers)"
        steps.append(epoch)

        state = {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "epoch": 1,
        }
        with bar(total=4, desc="checkpoint", unit="step") as progress:
            save, load, torch_ok = job.checkpoint_round_trip(conn, state, listing)
            progress.update(2)
            dcp_save, dcp_load, dcp_ok = job.dcp_round_trip(conn, model, listing)
            progress.update(2)
        steps += [save, load, dcp_save, dcp_load]
        total = time.perf_counter() - started
    finally:
        if server is None and not options.keep:
            _delete_prefix(client, bucket, prefix)

    _summary(out, steps, losses, seen, options.samples, server, total)
    checks_ok = torch_ok and dcp_ok and seen == options.samples
    out.write(
        f"checks: every image seen once {'yes' if seen == options.samples else 'NO'}"
        f" ({seen}/{options.samples}); S3Checkpoint reload equal "
        f"{'yes' if torch_ok else 'NO'}; DCP reload equal {'yes' if dcp_ok else 'NO'}\n"
    )
    if server is None:
        out.write(
            f"objects under s3://{bucket}/{prefix}: "
            f"{'kept' if options.keep else 'deleted'}\n"
        )
    return 0 if checks_ok else 1


def _bars(tqdm: Any, enabled: bool) -> Any:
    def bar(**kwargs: Any) -> Any:
        return tqdm.tqdm(disable=not enabled, leave=True, dynamic_ncols=True, **kwargs)

    return bar


def _delete_prefix(client: Any, bucket: str, prefix: str) -> None:
    for page in client.list_objects(bucket, prefix):
        for info in page.object_info:
            client.delete_object(bucket, info.key)


def _rate(amount: float, seconds: float) -> str:
    return f"{amount / seconds:,.1f}" if seconds > 0 else "-"


def _summary(
    out: TextIO,
    steps: List[Any],
    losses: List[float],
    seen: int,
    samples: int,
    server: Any,
    total: float,
) -> None:
    header = ("step", "objects", "MB", "seconds", "objects/s", "MB/s")
    rows = [
        (
            s.name,
            f"{s.objects:,}",
            f"{s.nbytes / _MB:,.2f}",
            f"{s.seconds:.2f}",
            _rate(s.objects, s.seconds),
            _rate(s.nbytes / _MB, s.seconds),
        )
        for s in steps
    ]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: Tuple[str, ...]) -> str:
        first = cells[0].ljust(widths[0])
        rest = "  ".join(c.rjust(w) for c, w in zip(cells[1:], widths[1:]))
        return f"{first}  {rest}\n"

    out.write("\n" + line(header))
    out.write("  ".join("-" * w for w in widths) + "\n")
    for row in rows:
        out.write(line(row))
    out.write("\n")
    if server is not None:
        counts = server.counts.snapshot()
        detail = ", ".join(f"{k} {v:,}" for k, v in sorted(counts.items()))
        out.write(f"requests: {sum(counts.values()):,} ({detail})\n")
        out.write(
            f"retries: {server.counts.retried} (answers the client retries: 429/5xx)\n"
        )
    else:
        out.write(
            "requests, retries: counted by the embedded server only (not for a remote "
            "endpoint)\n"
        )
    if losses:
        head = sum(losses[:5]) / len(losses[:5])
        tail = sum(losses[-5:]) / len(losses[-5:])
        out.write(f"loss: {head:.3f} (first batches) -> {tail:.3f} (last batches)\n")
    out.write(f"total: {total:.1f} s\n")
