"""The ``s3torch-async`` command: ``demo``, ``ls`` and ``bench`` (argparse).

Exit codes: 0 success, 1 an S3 request failed, 2 usage error (argparse's convention),
130 interrupted. Nothing heavy is imported until a subcommand needs it, so ``--help`` and
``--version`` answer at once; torch is imported only by ``demo``.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import os
import sys
from typing import Any, Callable, List, Optional, Sequence, TextIO

from ._config import S3ClientConfig
from ._core import AsyncS3Client
from ._core._session import resolve_endpoint
from ._errors import S3Exception, location_note
from ._uri import parse_s3_uri
from ._version import __version__

__all__ = ["UsageError", "build_parser", "default_region", "main"]

PROG = "s3torch-async"
DEFAULT_REGION = "us-east-1"

BENCH_NOT_FOUND = (
    f"{PROG} bench: the benchmarks are not importable here.\n"
    "They live in the source repository (benchmarks/), not in the installed package.\n"
    "From the root of a checkout of the repository, run one of:\n"
    "    python -m s3torch_async bench --quick\n"
    "    python -m benchmarks.run --quick\n"
    "    nox -s bench -- --quick\n"
)


class UsageError(Exception):
    """A command's arguments do not fit together; reported like argparse's errors (exit 2)."""


def default_region() -> str:
    """``AWS_REGION``, else ``AWS_DEFAULT_REGION``, else ``us-east-1``."""
    return (
        os.environ.get("AWS_REGION")
        or os.environ.get("AWS_DEFAULT_REGION")
        or DEFAULT_REGION
    )


def add_connection_options(parser: argparse.ArgumentParser) -> None:
    """``--endpoint``, ``--region`` and ``--path-style``, shared by the subcommands."""
    parser.add_argument(
        "--endpoint",
        metavar="URL",
        help="S3 endpoint URL (default: AWS_ENDPOINT_URL_S3, then AWS_ENDPOINT_URL, then AWS)",
    )
    parser.add_argument(
        "--region",
        default=None,
        help="region (default: AWS_REGION, then AWS_DEFAULT_REGION, then us-east-1)",
    )
    parser.add_argument(
        "--path-style",
        action="store_true",
        help="path-style addressing (MinIO, Ceph; automatic for IP and localhost endpoints)",
    )


def build_parser() -> argparse.ArgumentParser:
    """The command line, with one subparser per command."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Pure-Python, asyncio-first S3 connector for PyTorch.",
    )
    parser.add_argument(
        "--version", action="version", version=f"%(prog)s {__version__}"
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    demo = commands.add_parser(
        "demo",
        help="run the main job end to end (embedded local S3 unless an endpoint is given)",
        description="Write a synthetic image dataset to S3, train a tiny model for one epoch "
        "with a DataLoader over S3IterableDataset, checkpoint it with S3Checkpoint and with "
        "DCP, reload both and print a summary. With no endpoint and no bucket, an embedded "
        "S3 server (moto, from the 'demo' extra) is started on a free loopback port.",
    )
    add_connection_options(demo)
    demo.add_argument(
        "--bucket",
        help="existing bucket to use; the demo writes under s3torch-async-demo/ and "
        "deletes what it wrote",
    )
    demo.add_argument(
        "--samples",
        type=_positive_int,
        default=2000,
        help="number of images (default 2000)",
    )
    demo.add_argument(
        "--workers", type=_non_negative_int, default=2, help="DataLoader workers (2)"
    )
    demo.add_argument(
        "--batch-size", type=_positive_int, default=64, help="batch size (64)"
    )
    demo.add_argument(
        "--start-method",
        choices=("fork", "spawn", "forkserver"),
        help="multiprocessing start method of the DataLoader workers (default: the "
        "platform's)",
    )
    demo.add_argument(
        "--keep", action="store_true", help="leave the demo's objects in the bucket"
    )
    demo.add_argument(
        "--no-progress", action="store_true", help="no progress bars (stderr)"
    )
    demo.set_defaults(handler=_run_demo)

    ls = commands.add_parser(
        "ls",
        help="list objects under s3://bucket/prefix (checks credentials and endpoint)",
        description="List the objects and common prefixes under an S3 URI, like 'aws s3 ls'.",
    )
    ls.add_argument("uri", metavar="s3://bucket/prefix", type=_s3_uri)
    add_connection_options(ls)
    ls.add_argument(
        "-r", "--recursive", action="store_true", help="list every key below the prefix"
    )
    ls.set_defaults(handler=_run_ls)

    bench = commands.add_parser(
        "bench",
        add_help=False,
        help="side-by-side benchmarks (source checkout only; 'bench --help' for options)",
        description="Runs benchmarks.run from a source checkout.",
    )
    bench.set_defaults(handler=None)
    return parser


def _positive_int(text: str) -> int:
    value = _non_negative_int(text)
    if value == 0:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {text!r}")
    return value


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text!r}")
    return value


def _s3_uri(text: str) -> tuple[str, str]:
    try:
        return parse_s3_uri(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{exc}: {text!r}") from None


def _client_config(args: argparse.Namespace) -> S3ClientConfig:
    """The client configuration the connection options ask for."""
    return S3ClientConfig(force_path_style=bool(args.path_style))


def _run_ls(args: argparse.Namespace, out: TextIO) -> int:
    bucket, prefix = args.uri
    return asyncio.run(
        _ls(
            bucket,
            prefix,
            recursive=args.recursive,
            region=args.region or default_region(),
            endpoint=args.endpoint,
            config=_client_config(args),
            out=out,
        )
    )


async def _ls(
    bucket: str,
    prefix: str,
    *,
    recursive: bool,
    region: str,
    endpoint: Optional[str],
    config: S3ClientConfig,
    out: TextIO,
) -> int:
    async with AsyncS3Client(
        region, endpoint=endpoint, s3client_config=config
    ) as client:
        pages = client.list_objects(bucket, prefix, "" if recursive else "/")
        async for page in pages:
            for common in page.common_prefixes:
                out.write(f"{'PRE':>12}  {common}\n")
            for info in page.object_info:
                out.write(f"{info.size:>12}  {info.key}\n")
    return 0


def _run_demo(args: argparse.Namespace, out: TextIO) -> int:
    from ._demo import DemoOptions, run_demo  # imports torch: only for this command

    if resolve_endpoint(args.endpoint) is not None and not args.bucket:
        raise UsageError(
            "demo: an endpoint needs --bucket NAME (an existing bucket; the demo writes "
            "under s3torch-async-demo/ and deletes what it wrote)"
        )
    options = DemoOptions(
        endpoint=args.endpoint,
        bucket=args.bucket,
        region=args.region or default_region(),
        path_style=bool(args.path_style),
        samples=args.samples,
        workers=args.workers,
        batch_size=args.batch_size,
        start_method=args.start_method,
        keep=args.keep,
        progress=not args.no_progress,
    )
    return run_demo(options, out)


def _bench_main() -> Optional[Callable[[List[str]], Any]]:
    """``benchmarks.run.main`` when the benchmarks are importable (a source checkout)."""
    try:
        module = importlib.import_module("benchmarks.run")
    except ModuleNotFoundError as exc:
        if exc.name not in ("benchmarks", "benchmarks.run"):
            raise
        return None
    entry = getattr(module, "main", None)
    return entry if callable(entry) else None


def _report_failure(exc: S3Exception, command: str) -> None:
    notes = list(getattr(exc, "__notes__", ()))
    if not notes:  # Python < 3.11 has no notes; say where all the same
        notes = [note for note in (location_note(exc),) if note]
    lines = [f"{PROG} {command}: {exc}", *(f"  {note}" for note in notes)]
    sys.stderr.write("\n".join(lines) + "\n")


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of the ``s3torch-async`` command.

    Args:
        argv: Arguments after the program name; ``sys.argv[1:]`` by default.

    Returns:
        The exit code (0 success, 1 S3 failure, 2 usage error, 130 interrupted).
    """
    args_list = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args, extra = parser.parse_known_args(args_list)
    if args.command is None:
        parser.print_usage(sys.stderr)
        sys.stderr.write(f"{PROG}: error: a command is required (see '{PROG} -h')\n")
        return 2
    if args.command == "bench":
        bench_main = _bench_main()
        if bench_main is None:
            sys.stderr.write(BENCH_NOT_FOUND)
            return 2
        code = bench_main(extra)
        return code if isinstance(code, int) else 0
    if extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        code = args.handler(args, sys.stdout)
    except UsageError as exc:
        parser.error(str(exc))
    except S3Exception as exc:
        _report_failure(exc, args.command)
        return 1
    except KeyboardInterrupt:
        sys.stderr.write(f"{PROG}: interrupted\n")
        return 130
    return int(code)
