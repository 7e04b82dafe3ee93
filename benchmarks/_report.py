"""Turn raw worker records into medians, ratios, target checks, a table, JSON and a chart."""

from __future__ import annotations

import json
import statistics
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from ._cases import FAMILIES, Bench

_MB = 1e6
_MiB = float(1 << 20)

#: unit -> (label of the CPU column, CPU figure from (cpu_s, nbytes, nobjects))
_CPU_UNITS: Dict[str, Tuple[str, Callable[[float, int, int], Optional[float]]]] = {
    "MB/s": (
        "CPU-s/GB",
        lambda cpu, nbytes, _: cpu / (nbytes / 1e9) if nbytes else None,
    ),
    "obj/s": ("CPU-ms/obj", lambda cpu, _, n: cpu * 1e3 / n if n else None),
    "keys/s": ("CPU-us/key", lambda cpu, _, n: cpu * 1e6 / n if n else None),
    # case 7: CPU of the fresh process over import and first call (see cpu_per_unit)
    "ms": ("CPU-ms/start", lambda cpu, _, __: cpu * 1e3),
}


def throughput(unit: str, record: Dict[str, Any]) -> Optional[float]:
    """MB/s (10^6 bytes), objects/s or keys/s of one run; for ``ms``, the timed figure."""
    if unit == "ms":
        value = (record.get("extra") or {}).get("first_ms")
        return None if value is None else float(value)
    wall = float(record.get("wall_s") or 0.0)
    if not wall:
        return None
    if unit == "MB/s":
        return float(record["nbytes"]) / _MB / wall
    return float(record["nobjects"]) / wall


def cpu_per_unit(unit: str, record: Dict[str, Any]) -> Optional[float]:
    """Client CPU per GB, per object or per key of one run (case 7: per start)."""
    if unit == "ms":  # the child's own CPU over import and first call
        value = (record.get("extra") or {}).get("cpu_ms")
        return None if value is None else float(value)
    cpu, nbytes, nobjects = record["cpu_s"], record["nbytes"], record["nobjects"]
    return _CPU_UNITS[unit][1](float(cpu), int(nbytes), int(nobjects))


def cpu_label(unit: str) -> str:
    """The CPU column's unit for a throughput unit."""
    return _CPU_UNITS[unit][0]


def _median(values: Sequence[Optional[float]]) -> Optional[float]:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def _ratio(a: Optional[float], b: Optional[float]) -> Optional[float]:
    if a is None or b is None or b == 0:
        return None
    return a / b


@dataclass
class Row:
    """Medians of one (benchmark, variant) over the repetitions."""

    bench: str
    case: int
    title: str
    unit: str
    family: str
    variant: str
    status: str
    note: str = ""
    reps: int = 0
    throughput: Optional[float] = None
    throughput_all: List[float] = field(default_factory=list)
    wall_s: Optional[float] = None
    cpu_s: Optional[float] = None
    cpu_per_unit: Optional[float] = None
    cpu_unit: str = ""
    peak_rss_mib: Optional[float] = None
    delta_rss_mib: Optional[float] = None
    children_peak_rss_mib: Optional[float] = None
    server_cpu_s: Optional[float] = None
    requests: Optional[float] = None
    nbytes: Optional[int] = None
    nobjects: Optional[int] = None
    extra: Dict[str, Any] = field(default_factory=dict)
    reference: bool = False
    ratio: Optional[float] = None
    cpu_ratio: Optional[float] = None
    rss_ratio: Optional[float] = None

    @property
    def id(self) -> str:
        """``family/variant``."""
        return f"{self.family}/{self.variant}"


def summarise(benches: Sequence[Bench], records: Sequence[Dict[str, Any]]) -> List[Row]:
    """One row per (benchmark, variant), with medians and ratios to the reference."""
    rows: List[Row] = []
    for bench in benches:
        bench_rows = []
        for variant in bench.variants:
            mine = [
                r
                for r in records
                if r["bench"] == bench.id and r["variant"] == variant.id
            ]
            bench_rows.append(_row(bench, variant.family, variant.name, mine))
            bench_rows[-1].reference = variant.reference
        ref = next((r for r in bench_rows if r.reference and r.status == "ok"), None)
        for row in bench_rows:
            if ref is not None and row.status == "ok":
                row.ratio = _ratio(row.throughput, ref.throughput)
                row.cpu_ratio = _ratio(row.cpu_per_unit, ref.cpu_per_unit)
                row.rss_ratio = _ratio(row.peak_rss_mib, ref.peak_rss_mib)
        rows.extend(bench_rows)
    return rows


def _row(bench: Bench, family: str, name: str, records: List[Dict[str, Any]]) -> Row:
    row = Row(
        bench.id,
        bench.case,
        bench.title,
        bench.unit,
        family,
        name,
        status="not run",
        cpu_unit=cpu_label(bench.unit),
    )
    ok = [r for r in records if r.get("status") == "ok"]
    if not ok:
        first = records[0] if records else {}
        row.status = first.get("status", "not run")
        row.note = first.get("note") or first.get("error", "")
        return row
    row.status = "ok"
    failed = [r for r in records if r.get("status") == "error"]
    if failed:
        row.note = (
            f"{len(failed)} of {len(records)} runs failed: {failed[0].get('error')}"
        )
    row.reps = len(ok)
    tputs = [throughput(bench.unit, r) for r in ok]
    row.throughput_all = [t for t in tputs if t is not None]
    row.throughput = _median(tputs)
    row.wall_s = _median([r["wall_s"] for r in ok])
    row.cpu_s = _median([r["cpu_s"] for r in ok])
    row.cpu_per_unit = _median([cpu_per_unit(bench.unit, r) for r in ok])
    row.peak_rss_mib = _median([r["peak_rss_bytes"] / _MiB for r in ok])
    row.delta_rss_mib = _median(
        [
            max(0, r["peak_rss_bytes"] - r["baseline_rss_bytes"]) / _MiB
            for r in ok
            if r.get("peak_rss_reset")
        ]
    )
    children = [r["children_peak_rss_bytes"] / _MiB for r in ok]
    row.children_peak_rss_mib = _median(children) if any(children) else None
    row.server_cpu_s = _median([r.get("server_cpu_s") for r in ok])
    row.requests = _median([r.get("requests") for r in ok])
    row.nbytes = ok[0]["nbytes"]
    row.nobjects = ok[0]["nobjects"]
    row.extra = ok[0].get("extra", {})
    if bench.unit == "ms":
        imports = _median([(r.get("extra") or {}).get("import_ms") for r in ok])
        if imports is not None:
            row.extra = {**row.extra, "import_ms_median": imports}
            row.note = "; ".join(filter(None, (f"import {imports:.0f} ms", row.note)))
    return row


# -- targets ----------------------------------------------------------------------------------


@dataclass
class TargetCheck:
    """One of the issue's performance targets, evaluated on this run."""

    target: str
    value: Optional[float]
    threshold: float
    met: Optional[bool]
    note: str = ""


def _find(rows: Sequence[Row], bench: str, variant: str) -> Optional[Row]:
    return next(
        (r for r in rows if r.bench == bench and r.id == variant and r.status == "ok"),
        None,
    )


def _check(
    name: str, value: Optional[float], threshold: float, *, at_least: bool, missing: str
) -> TargetCheck:
    if value is None:
        return TargetCheck(name, None, threshold, None, missing)
    met = value >= threshold if at_least else value <= threshold
    return TargetCheck(name, value, threshold, met)


def _nbytes(row: Row) -> float:
    return float(row.nbytes or 0)


def _writer_bound(row: Row) -> float:
    return float(row.extra.get("rss_bound_bytes") or 0)


def _figure(row: Optional[Row], attr: str) -> Optional[float]:
    if row is None:
        return None
    value = getattr(row, attr)
    return None if value is None else float(value)


#: (benchmark, s3torch-async variant, peer variant, figure, threshold, at least?, label)
_RELATIVE_TARGETS = (
    ("1", "sequential", "s3torchconnector/sequential", "throughput", 1.5, True,
     "case 1 read, default reader: throughput >= 1.5x s3torchconnector"),
    ("1", "sequential", "s3torchconnector/sequential", "cpu_per_unit", 0.65, False,
     "case 1 read, default reader: CPU per GB <= 0.65x s3torchconnector"),
    ("1", "sequential", "boto3/download_fileobj", "throughput", 1.0, True,
     "case 1 read, default reader: throughput >= 1.0x boto3 download_fileobj"),
    ("2-w0", "S3IterableDataset", "s3torchconnector/S3IterableDataset", "throughput",
     1.0, True, "case 2 S3IterableDataset, num_workers=0: >= 1.0x s3torchconnector"),
    ("2-w2", "S3IterableDataset-w2", "s3torchconnector/S3IterableDataset-w2",
     "throughput", 1.0, True,
     "case 2 S3IterableDataset, num_workers=2: >= 1.0x s3torchconnector"),
    ("3", "S3Writer", "s3torchconnector/S3Writer", "throughput", 1.0, True,
     "case 3 write: throughput >= 1.0x s3torchconnector"),
    ("4", "list_objects", "s3torchconnector/list_objects", "throughput", 1.0, True,
     "case 4 listing: throughput >= 1.0x s3torchconnector"),
)  # fmt: skip


def _dataset_targets(dataset: str) -> Tuple[Tuple[str, str, str, str, float, str], ...]:
    """Issue 16's S3-like targets of one dataset class, num_workers 0 and 2."""
    out: List[Tuple[str, str, str, str, float, str]] = []
    for workers, suffix in ((0, ""), (2, "-w2")):
        bench, ours = f"2-w{workers}", f"{dataset}{suffix}"
        label = f"S3-like: {dataset}, num_workers={workers} >= "
        out += [
            (f"{bench}@s3like", ours, bench, f"s3torch-async/{ours}", 0.8,
             label + "0.8x its own loopback rate"),
            (f"{bench}@s3like", ours, "2-w0@s3like", "obstore/loop16", 2.0,
             label + "2x obstore with 16 in flight"),
        ]  # fmt: skip
    return tuple(out)


#: Issue 16's targets, each a ratio of two rows that may sit on different profiles:
#: (benchmark, s3torch-async variant, peer benchmark, peer variant, threshold, label).
_PROFILE_TARGETS = (
    *_dataset_targets("S3IterableDataset"),
    *_dataset_targets("S3MapDataset"),
    ("1@s3like", "sequential", "1", "s3torch-async/sequential", 0.8,
     "S3-like: 1 GiB read >= 0.8x our loopback rate"),
    ("1@s3like", "sequential", "1@s3like", "boto3/download_fileobj", 2.0,
     "S3-like: 1 GiB read >= 2x boto3 download_fileobj"),
    ("3@s3like", "S3Writer", "3@s3like", "s3torchconnector/S3Writer", 1.5,
     "S3-like: 1 GiB write >= 1.5x s3torchconnector"),
    ("4@s3like", "list_partitioned", "4@s3like", "obstore/list", 3.0,
     "S3-like: partitioned listing >= 3x obstore's listing (on 10k keys, 10 pages; the "
     "issue's target is on 100k keys: python -m benchmarks.listing_partitioned)"),
    ("4", "list_objects", "4", "obstore/list", 1.0,
     "loopback: listing >= 1.0x obstore"),
    ("2-w0", "S3IterableDataset", "2-w0", "obstore/loop", 1.2,
     "loopback: S3IterableDataset, num_workers=0 >= 1.2x obstore's loop"),
    ("1", "sequential", "1", "boto3/get_object", 1.0,
     "loopback: 1 GiB read >= 1.0x boto3 get_object"),
)  # fmt: skip

#: Targets on times, lower is better: (benchmark, variant, peer, threshold, label).
_TIME_TARGETS = (
    ("7", "S3Client.get_object", "obstore/get", 1.0,
     "loopback: cold start, first call to first byte <= 1.0x obstore"),
)  # fmt: skip


def profile_ratios(rows: Sequence[Row]) -> List[Tuple[str, str, float]]:
    """``(benchmark, variant, s3like / loopback throughput)`` for every row run on both."""
    out = []
    for row in rows:
        if row.status != "ok" or not row.bench.endswith("@s3like") or row.unit == "ms":
            continue
        twin = _find(rows, row.bench[: -len("@s3like")], row.id)
        value = _ratio(row.throughput, _figure(twin, "throughput"))
        if value is not None:
            out.append((row.bench, row.id, value))
    return out


def profile_ratios_text(
    ratios: Sequence[Tuple[str, str, float]], *, markdown: bool = False
) -> str:
    """One line per row of :func:`profile_ratios`."""
    bullet = "- " if markdown else "  "
    return "\n".join(
        f"{bullet}{bench} {variant}: {value:.2f}" for bench, variant, value in ratios
    )


def evaluate_targets(
    benches: Sequence[Bench], rows: Sequence[Row]
) -> List[TargetCheck]:
    """The issue's targets, where this run has the figures to judge them."""
    ran = {b.id for b in benches}
    checks: List[TargetCheck] = []

    def relative(
        bench: str, ours_id: str, theirs_id: str, attr: str
    ) -> Tuple[Optional[float], str]:
        ours, theirs = _find(rows, bench, ours_id), _find(rows, bench, theirs_id)
        missing = [n for n, r in ((ours_id, ours), (theirs_id, theirs)) if r is None]
        note = "no figures for " + " and ".join(missing) if missing else ""
        return _ratio(_figure(ours, attr), _figure(theirs, attr)), note

    for bench, ours, theirs, attr, threshold, at_least, label in _RELATIVE_TARGETS:
        if bench in ran:
            value, note = relative(bench, f"s3torch-async/{ours}", theirs, attr)
            checks.append(
                _check(label, value, threshold, at_least=at_least, missing=note)
            )
    for bench, ours, peer_bench, theirs, threshold, label in _PROFILE_TARGETS:
        if bench not in ran or peer_bench not in ran:
            continue
        ours_row = _find(rows, bench, f"s3torch-async/{ours}")
        theirs_row = _find(rows, peer_bench, theirs)
        missing = [
            f"{b} {n}"
            for b, n, r in (
                (bench, f"s3torch-async/{ours}", ours_row),
                (peer_bench, theirs, theirs_row),
            )
            if r is None
        ]
        value = _ratio(
            _figure(ours_row, "throughput"), _figure(theirs_row, "throughput")
        )
        note = "no figures for " + " and ".join(missing) if missing else ""
        checks.append(_check(label, value, threshold, at_least=True, missing=note))
    for bench, ours, theirs, threshold, label in _TIME_TARGETS:
        if bench in ran:
            value, note = relative(bench, f"s3torch-async/{ours}", theirs, "throughput")
            checks.append(_check(label, value, threshold, at_least=False, missing=note))
    # Memory: peak RSS growth during the run against what the design allows.
    for bench, variant, label, threshold, bound_of in (
        ("1", "sequential", "case 1 read: peak RSS growth <= 1.15x object size", 1.15,
         _nbytes),
        ("3", "S3Writer",
         "case 3 write: peak RSS growth <= part size x (parts in flight + 2)", 1.0,
         _writer_bound),
    ):  # fmt: skip
        if bench not in ran:
            continue
        row = _find(rows, bench, f"s3torch-async/{variant}")
        bound = bound_of(row) / _MiB if row is not None else None
        value = _ratio(_figure(row, "delta_rss_mib"), bound or None)
        checks.append(
            _check(label, value, threshold, at_least=False, missing="no RSS figures")
        )
    for spec in benches:
        s3fs_row = next(
            (r for r in rows if r.bench == spec.id and r.family == "s3fs"), None
        )
        if spec.primary is None or s3fs_row is None:
            continue
        value, note = relative(spec.id, spec.primary, s3fs_row.id, "throughput")
        label = (
            f"case {spec.id} {spec.primary.split('/', 1)[1]}: >= 2x s3fs "
            f"{s3fs_row.variant}"
        )
        checks.append(_check(label, value, 2.0, at_least=True, missing=note))
    return checks


# -- rendering --------------------------------------------------------------------------------


def _fmt(value: Optional[float], digits: int = 0, suffix: str = "") -> str:
    if value is None:
        return "-"
    if digits == 0:
        return f"{value:,.0f}{suffix}"
    return f"{value:,.{digits}f}{suffix}"


def _cpu_fmt(row: Row) -> str:
    if row.cpu_per_unit is None:
        return "-"
    digits = 2 if row.cpu_per_unit < 10 else 1 if row.cpu_per_unit < 100 else 0
    return f"{_fmt(row.cpu_per_unit, digits)} {row.cpu_unit}"


HEADERS = (
    "case",
    "client",
    "variant",
    "throughput",
    "vs s3tc",
    "client CPU",
    "CPU vs s3tc",
    "peak RSS MiB",
    "RSS growth MiB",
    "server CPU-s",
    "requests",
    "note",
)


def table_cells(rows: Sequence[Row]) -> List[List[str]]:
    """The summary table as strings, one list per row."""
    cells = []
    for row in rows:
        if row.status != "ok":
            cells.append(
                [row.bench, row.family, row.variant, row.status]
                + ["-"] * 7
                + [row.note]
            )
            continue
        cells.append(
            [
                row.bench,
                row.family,
                row.variant,
                f"{_fmt(row.throughput, 1 if row.throughput and row.throughput < 100 else 0)} {row.unit}",
                "ref" if row.reference else _fmt(row.ratio, 2, "x"),
                _cpu_fmt(row),
                "ref" if row.reference else _fmt(row.cpu_ratio, 2, "x"),
                _fmt(row.peak_rss_mib),
                _fmt(row.delta_rss_mib),
                _fmt(row.server_cpu_s, 2),
                _fmt(row.requests),
                row.note,
            ]
        )
    return cells


def text_table(rows: Sequence[Row]) -> str:
    """A plain-text table for stdout."""
    cells = [list(HEADERS), *table_cells(rows)]
    widths = [max(len(c[i]) for c in cells) for i in range(len(HEADERS) - 1)]
    lines = []
    previous = None
    for i, line in enumerate(cells):
        if i > 1 and line[0] != previous:
            lines.append("")
        previous = line[0] if i else None
        padded = [c.ljust(w) for c, w in zip(line[:-1], widths)]
        lines.append("  ".join([*padded, line[-1]]).rstrip())
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def markdown_table(rows: Sequence[Row]) -> str:
    """The summary as a GitHub markdown table."""
    lines = [
        "| " + " | ".join(HEADERS) + " |",
        "|" + "|".join("---" for _ in HEADERS) + "|",
    ]
    lines.extend(
        "| " + " | ".join(c.replace("|", "\\|") for c in line) + " |"
        for line in table_cells(rows)
    )
    return "\n".join(lines)


def targets_text(checks: Sequence[TargetCheck], *, markdown: bool = False) -> str:
    """The target checks, one per line."""
    lines = []
    for check in checks:
        if check.met is None:
            mark, value = "n/a ", check.note
        else:
            mark = "MET " if check.met else "MISS"
            value = f"{check.value:.2f} (target {check.threshold:g})"
        lines.append(
            f"- {mark} {check.target}: {value}"
            if markdown
            else f"  [{mark}] {check.target}: {value}"
        )
    return "\n".join(lines)


def write_json(path: str, payload: Dict[str, Any]) -> None:
    """Write the run's JSON (raw records, summary, targets, environment)."""
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(payload, fh, indent=2, sort_keys=False, default=str)
        fh.write("\n")


def rows_as_dicts(rows: Sequence[Row]) -> List[Dict[str, Any]]:
    """Rows for the JSON file."""
    return [asdict(r) for r in rows]


def write_chart(path: str, rows: Sequence[Row], title: str) -> Optional[str]:
    """A horizontal bar chart of throughput ratios to s3torchconnector.

    Returns:
        ``None`` when the chart was written, else why it was skipped.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed; chart skipped"
    # Times (lower is better) would read backwards on a throughput chart.
    shown = [
        r for r in rows if r.status == "ok" and r.ratio is not None and r.unit != "ms"
    ]
    if not shown:
        return "no ratios to chart (s3torchconnector missing or no results)"
    colors = dict(
        zip(FAMILIES, ("#d62728", "#7f7f7f", "#1f77b4", "#2ca02c", "#9467bd"))
    )
    labels = [f"{r.bench}  {r.family} {r.variant}" for r in shown]
    values = [r.ratio or 0.0 for r in shown]
    fig, ax = plt.subplots(figsize=(10, 0.32 * len(shown) + 1.5))
    positions = list(range(len(shown)))[::-1]
    ax.barh(positions, values, color=[colors.get(r.family, "#17becf") for r in shown])
    ax.set_yticks(positions)
    ax.set_yticklabels(labels, fontsize=8)
    ax.set_ylim(-0.6, len(shown) - 0.4)
    ax.axvline(1.0, color="black", linewidth=0.8)
    for pos, value in zip(positions, values):
        ax.text(value, pos, f" {value:.2f}x", va="center", fontsize=7)
    ax.set_xlabel("throughput relative to s3torchconnector (higher is better)")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return None
