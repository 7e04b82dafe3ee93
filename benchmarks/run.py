"""Side-by-side benchmarks: ``python -m benchmarks.run [--quick] ...`` (or ``s3torch-async bench``).

By default a local in-memory S3 server is started on a free loopback port, the data is laid
out, every case runs for every installed client (each measurement in its own process, clients
interleaved within each repetition), the server is stopped, and the results are printed and
written to ``benchmarks/results/`` as JSON, markdown and a PNG chart.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import importlib.metadata
import json
import logging
import os
import platform
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from . import _report
from ._cases import PROFILES, Bench, Variant, catalogue, missing, select, with_profiles
from ._layout import Layout
from ._model import (
    FULL,
    LOCAL_BUCKET,
    QUICK,
    REGION,
    Job,
    Keys,
    Sizes,
    Target,
    parse_size,
)
from ._servers import Store, hermetic_env, open_store
from ._worker import MARKER

logger = logging.getLogger("benchmarks.run")

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO_ROOT / "benchmarks" / "results"
_PEERS = (
    "s3torch-async",
    "s3torchconnector",
    "s3torchconnectorclient",
    "torch",
    "aiobotocore",
    "botocore",
    "boto3",
    "aiohttp",
    "s3fs",
    "fsspec",
    "obstore",
    "matplotlib",
)


def build_parser() -> argparse.ArgumentParser:
    """The command line (shared with ``s3torch-async bench``)."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.run",
        description="Measure s3torch-async side by side with s3torchconnector, boto3, s3fs "
        "and obstore against one S3 store.",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="small sizes and one repetition: a smoke run of a few minutes",
    )
    parser.add_argument(
        "--endpoint", help="S3 endpoint to measure instead of a local server"
    )
    parser.add_argument(
        "--bucket",
        help="existing bucket to use with --endpoint (data goes under "
        "s3torch-async-bench/)",
    )
    parser.add_argument("--region", default=REGION, help="region (default us-east-1)")
    parser.add_argument(
        "--server",
        choices=("local", "moto"),
        default="local",
        help="server to start when no --endpoint is given (default: local, the fast "
        "in-memory benchmarks.s3server; moto is far slower)",
    )
    parser.add_argument(
        "--profile",
        choices=("loopback", "s3like", "both"),
        default="loopback",
        help="server profile: loopback (no latency, CPU per request), s3like (S3's "
        "first-byte latency and per-connection bandwidth, see benchmarks/s3server.py) or "
        "both (every case on each, side by side in one run; the local server only)",
    )
    parser.add_argument(
        "--cases",
        type=_cases_arg,
        help="comma-separated case numbers 1-7 (default: all)",
    )
    parser.add_argument(
        "--clients",
        help="comma-separated client families or family/variant ids (default: all); "
        "families: s3torch-async, s3torchconnector, boto3, s3fs, obstore",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        help="repetitions; medians are reported (default 3, 1 with --quick)",
    )
    parser.add_argument(
        "--size",
        action="append",
        default=[],
        metavar="NAME=SIZE",
        help="override a size, e.g. read_size=256MiB or small_count=500; names: "
        + ", ".join(Sizes.__dataclass_fields__),
    )
    parser.add_argument(
        "--out", default=str(DEFAULT_OUT), help="directory for JSON/markdown/PNG"
    )
    parser.add_argument(
        "--name",
        help="file name stem of the outputs (default: derived from the options)",
    )
    parser.add_argument(
        "--timeout", type=float, default=900.0, help="seconds allowed per measurement"
    )
    parser.add_argument(
        "--no-torch-baseline",
        action="store_true",
        help="do not import torch in workers that do not need it (faster start-up; peak "
        "RSS is then not comparable between clients)",
    )
    parser.add_argument(
        "--list", action="store_true", help="list benchmarks and variants, then exit"
    )
    return parser


def _csv_ints(text: Optional[str]) -> List[int]:
    return [int(x) for x in text.split(",") if x.strip()] if text else []


def _cases_arg(text: str) -> str:
    """Validate ``--cases`` while parsing, so a bad value is a usage error (exit 2)."""
    try:
        numbers = _csv_ints(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated case numbers, got {text!r}"
        ) from None
    known = sorted({bench.case for bench in catalogue()})
    unknown = [n for n in numbers if n not in known]
    if unknown or not numbers:
        raise argparse.ArgumentTypeError(
            f"unknown case number(s) {unknown or text!r}; known: "
            + ",".join(map(str, known))
        )
    return text


def _csv(text: Optional[str]) -> List[str]:
    return [x.strip() for x in text.split(",") if x.strip()] if text else []


def resolve_sizes(quick: bool, overrides: Sequence[str]) -> Sizes:
    """The run's sizes: full or quick defaults with ``NAME=SIZE`` overrides."""
    sizes = QUICK if quick else FULL
    for item in overrides:
        name, sep, value = item.partition("=")
        if not sep or name not in Sizes.__dataclass_fields__:
            raise SystemExit(
                f"--size {item!r}: expected NAME=SIZE with NAME one of "
                + ", ".join(Sizes.__dataclass_fields__)
            )
        sizes = sizes.replace(**{name: parse_size(value)})
    return sizes


@contextlib.contextmanager
def patched_environ(env: Dict[str, str]) -> Iterator[None]:
    """Use ``env`` as ``os.environ`` inside the block (the layout's boto3 reads it)."""
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _load_average() -> Optional[List[float]]:
    """1/5/15-minute load averages: other work on the machine skews throughput figures."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def _version(name: str) -> Optional[str]:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def environment(store: Store, sizes: Sizes) -> Dict[str, Any]:
    """Versions, machine and store, for the JSON."""
    versions = {name: _version(name) for name in _PEERS}
    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "load_average_at_start": _load_average(),
        "versions": versions,
        "server": {
            "kind": store.kind,
            "url": store.url,
            "etag_mode": getattr(store, "etag_mode", None),
        },
        "sizes": sizes.__dict__,
    }


def _profile_info(profile: str) -> Dict[str, Any]:
    """The profile's parameters, for the JSON."""
    from .s3server import PROFILES as SERVER_PROFILES

    return dict(SERVER_PROFILES[profile].__dict__)


def run_worker(job: Job, env: Dict[str, str], timeout: float) -> Dict[str, Any]:
    """Measure ``job`` in a fresh ``python -m benchmarks._worker`` process."""
    cmd = [sys.executable, "-m", "benchmarks._worker", "--job", job.to_json()]
    try:
        proc = subprocess.run(
            cmd,
            cwd=str(REPO_ROOT),
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return {"status": "error", "error": f"timed out after {timeout:.0f} s"}
    for line in proc.stdout.splitlines():
        if line.startswith(MARKER):
            record: Dict[str, Any] = json.loads(line[len(MARKER) :])
            if record.get("status") == "error":
                logger.debug("worker traceback:\n%s", record.get("traceback"))
            return record
    tail = (proc.stderr or "").strip().splitlines()[-3:]
    return {
        "status": "error",
        "error": f"worker exited with code {proc.returncode}: {' | '.join(tail)}",
    }


def _progress(
    rep: int, reps: int, bench: Bench, variant: Variant, record: Dict[str, Any]
) -> None:
    if record.get("status") == "ok":
        value = _report.throughput(bench.unit, record)
        what = f"{value:,.1f} {bench.unit}" if value is not None else "?"
    else:
        what = f"{record.get('status')}: {record.get('error') or record.get('note')}"
    sys.stderr.write(f"[{rep + 1}/{reps}] {bench.id:<6} {variant.id:<45} {what}\n")
    sys.stderr.flush()


def measure_all(
    benches: Sequence[Bench],
    *,
    targets: Dict[str, Target],
    sizes: Sizes,
    store: Store,
    layout: Layout,
    env: Dict[str, str],
    repeat: int,
    timeout: float,
    skipped: Dict[str, str],
    import_torch: bool = True,
) -> List[Dict[str, Any]]:
    """Every repetition of every runnable variant; clients interleaved within a repetition.

    ``targets`` maps each benchmark's profile to the store URL serving it.
    """
    records: List[Dict[str, Any]] = []
    keys = Keys(sizes)
    for rep in range(repeat):
        for bench in benches:
            runnable = [v for v in bench.variants if v.id not in skipped]
            if runnable:
                shift = rep % len(runnable)  # rotate, so no client always goes first
                runnable = runnable[shift:] + runnable[:shift]
            for variant in runnable:
                job = Job(
                    bench=bench.id,
                    variant=variant.id,
                    function=variant.function,
                    target=targets[bench.profile],
                    sizes=sizes,
                    options=dict(variant.options),
                    server_pid=store.pid,
                    count_requests=variant.count_requests,
                    import_torch=import_torch,
                )
                record = run_worker(job, {**env, **variant.env}, timeout)
                if record.get("status") == "ok" and bench.writes:
                    record = _check_write(bench, keys, sizes, layout, record)
                record.update(bench=bench.id, variant=variant.id, rep=rep)
                records.append(record)
                _progress(rep, repeat, bench, variant, record)
    return records


def _check_write(
    bench: Bench, keys: Keys, sizes: Sizes, layout: Layout, record: Dict[str, Any]
) -> Dict[str, Any]:
    key = getattr(keys, str(bench.writes))
    try:
        if key.endswith("/"):
            layout.check_written(key + ".metadata", None)
            layout.delete_prefix(key)
        else:
            layout.check_written(key, sizes.write_size if bench.case == 3 else None)
            layout.delete(key)
    except AssertionError as exc:
        return {"status": "error", "error": f"written object is wrong: {exc}"}
    return record


def output_stem(args: argparse.Namespace) -> str:
    """File name stem: ``bench-quick`` / ``bench-full``, marked when only part ran."""
    if args.name:
        return str(args.name)
    stem = "bench-quick" if args.quick else "bench-full"
    if args.profile != "loopback":
        stem += "-" + args.profile
    if args.cases:
        stem += "-cases" + "".join(str(c) for c in sorted(_csv_ints(args.cases)))
    if args.clients or args.size:
        stem += "-custom"
    return stem


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the benchmarks; return the exit code (0 ok, 1 some measurement failed)."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger("benchmarks").setLevel(logging.INFO)
    sizes = resolve_sizes(args.quick, args.size)
    repeat = args.repeat if args.repeat is not None else (1 if args.quick else 3)
    if repeat < 1:
        raise SystemExit("--repeat must be >= 1")
    if args.endpoint and not args.bucket:
        raise SystemExit("--endpoint needs --bucket (an existing bucket)")
    profiles = PROFILES if args.profile == "both" else (args.profile,)
    if profiles != ("loopback",) and (args.endpoint or args.server != "local"):
        raise SystemExit(
            "--profile s3like/both needs the local server (no --endpoint, --server local)"
        )
    benches = with_profiles(
        select(catalogue(), _csv_ints(args.cases), _csv(args.clients)), profiles
    )
    if args.list:
        for bench in benches:
            print(f"{bench.id:<7} {bench.title} [{bench.unit}]")
            for variant in bench.variants:
                note = missing(variant.requires)
                print(
                    f"        {variant.id}{'  (skipped: ' + note + ')' if note else ''}"
                )
        return 0
    if not benches:
        raise SystemExit("nothing selected: check --cases and --clients")
    skipped = {
        v.id: note
        for b in benches
        for v in b.variants
        if (note := missing(v.requires)) is not None
    }
    for variant_id, note in sorted(skipped.items()):
        sys.stderr.write(f"skipping {variant_id}: {note}\n")

    started = time.time()
    store = open_store(args.server, args.endpoint, profiles)
    env = hermetic_env(for_local_store=args.endpoint is None)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(REPO_ROOT), env.get("PYTHONPATH")) if p
    )
    with patched_environ(env), store:
        targets = {
            profile: Target(
                endpoint=store.url_for(profile),
                bucket=args.bucket or LOCAL_BUCKET,
                region=args.region,
            )
            for profile in profiles
        }
        # Laid out once, through the loopback port: every port serves the same buckets.
        layout_target = Target(
            endpoint=store.url_for("loopback"),
            bucket=args.bucket or LOCAL_BUCKET,
            region=args.region,
        )
        layout = Layout(layout_target, Keys(sizes), create_bucket=args.endpoint is None)
        runnable = [b for b in benches if any(v.id not in skipped for v in b.variants)]
        t0 = time.perf_counter()
        layout.prepare(runnable)
        sys.stderr.write(
            f"store {store.kind} at {store.url}; data laid out in "
            f"{time.perf_counter() - t0:.1f} s\n"
        )
        env_info = environment(store, sizes)
        env_info["profiles"] = {p: _profile_info(p) for p in profiles}
        records = measure_all(
            runnable,
            targets=targets,
            sizes=sizes,
            store=store,
            layout=layout,
            env=env,
            repeat=repeat,
            timeout=args.timeout,
            skipped=skipped,
            import_torch=not args.no_torch_baseline,
        )
    server_cpu_total = store.stop()
    for bench in benches:
        for variant in bench.variants:
            if variant.id in skipped:
                records.append(
                    {
                        "bench": bench.id,
                        "variant": variant.id,
                        "status": "skipped",
                        "note": skipped[variant.id],
                    }
                )

    rows = _report.summarise(benches, records)
    checks = _report.evaluate_targets(benches, rows)
    command = "python -m benchmarks.run " + " ".join(
        sys.argv[1:] if argv is None else list(argv)
    )
    kind = ("quick" if args.quick else "full") + (
        " (custom sizes)" if args.size else ""
    )
    load = _load_average()
    header = (
        f"{kind} run, {store.kind} server ({' + '.join(profiles)} profile), "
        f"medians of {repeat}, {os.cpu_count()} CPUs"
        + (f" (load average {load[1]:.1f})" if load else "")
        + ", "
        f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC"
    )
    print(header)
    print(_report.text_table(rows))
    kept = _report.profile_ratios(rows)
    if kept:
        print(
            "\nS3-like throughput as a share of the same client's loopback throughput:"
        )
        print(_report.profile_ratios_text(kept))
    print("\nTargets (ratios to s3torchconnector unless named):")
    print(_report.targets_text(checks))

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = output_stem(args)
    payload = {
        "command": command.strip(),
        "header": header,
        "started": datetime.datetime.fromtimestamp(
            started, datetime.timezone.utc
        ).isoformat(),
        "duration_s": time.time() - started,
        "repeat": repeat,
        "environment": env_info,
        "server_cpu_s_total": server_cpu_total,
        "load_average_at_end": load,
        "summary": _report.rows_as_dicts(rows),
        "targets": [c.__dict__ for c in checks],
        "runs": records,
    }
    _report.write_json(str(out / f"{stem}.json"), payload)
    chart_note = _report.write_chart(str(out / f"{stem}.png"), rows, header)
    with open(out / f"{stem}.md", "w", encoding="utf-8") as fh:
        fh.write(f"`{command.strip()}`\n\n{header}\n\n")
        fh.write(_report.markdown_table(rows) + "\n\n")
        if kept:
            fh.write(
                "S3-like throughput as a share of the same client's loopback "
                "throughput:\n\n"
                + _report.profile_ratios_text(kept, markdown=True)
                + "\n\n"
            )
        fh.write("Targets (ratios to s3torchconnector unless named):\n\n")
        fh.write(_report.targets_text(checks, markdown=True) + "\n")
    written = [f"{stem}.json", f"{stem}.md"] + ([] if chart_note else [f"{stem}.png"])
    print(f"\nwrote {', '.join(str(out / w) for w in written)}")
    if chart_note:
        print(f"note: {chart_note}")
    failed = [r for r in records if r.get("status") == "error"]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
