"""The targets of issue 11 (speed), judged on a run's results, and the Markdown table of the run."""

from __future__ import annotations

from typing import Any

from benchmarks import bootstrap_bench

# name -> (what, target value); a "vs" target is a ratio to a reference measured in the same run
TARGETS = {
    "capture_multi_row": ("capture, 1000-row statements (rows/s)", 200_000),
    "capture_multi_row_vs_mariadb_binlog": ("capture, 1000-row statements / `mariadb-binlog -v`", 0.35),
    "capture_single_row_vs_mariadb_binlog": ("capture, single-row transactions / `mariadb-binlog -v`", 1.0),
    "postgresql_apply": ("PostgreSQL apply from Kafka (rows/s)", 150_000),
    "iceberg_apply": ("Iceberg history apply from Kafka (rows/s)", 300_000),
    "sqlite_apply_vs_reference": ("SQLite apply from Kafka / its bulk load", 0.30),
    "mariadb_apply_vs_reference": ("MariaDB apply from Kafka / its bulk load", 0.30),
    "e2e_p99": ("end to end p99 at 10k changes/s (s, at most)", 0.1),
    "e2e_max_rate": ("end to end, highest rate held (changes/s)", 100_000),
    "memory_flat": ("capture peak RSS flat from the small to the large transaction", True),
}
_AT_MOST = {"e2e_p99"}


def targets(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    cap = result["capture"]
    bulk = cap["bulk"]["headwater"]["rows_per_s"]
    sinks = result["sinks"]

    def vs_reference(target: str) -> float:
        return float(sinks[target]["kafka"]["rows_per_s"] / sinks[target]["reference"]["rows_per_s"])

    values: dict[str, Any] = {
        "capture_multi_row": bulk,
        "capture_multi_row_vs_mariadb_binlog": bulk / cap["bulk"]["mariadb_binlog"]["rows_per_s"],
        "capture_single_row_vs_mariadb_binlog": cap["single"]["headwater"]["rows_per_s"]
        / cap["single"]["mariadb_binlog"]["rows_per_s"],
        "postgresql_apply": sinks["postgresql"]["kafka"]["rows_per_s"],
        "iceberg_apply": sinks["iceberg"]["kafka"]["rows_per_s"],
        "sqlite_apply_vs_reference": vs_reference("sqlite"),
        "mariadb_apply_vs_reference": vs_reference("mariadb"),
        "e2e_p99": result["e2e"]["p99_s"],
        "e2e_max_rate": result["e2e"].get("max_sustained_rate") or 0,
        "memory_flat": result["memory"]["flat"],
    }
    out = {}
    for name, (what, goal) in TARGETS.items():
        value = values[name]
        if isinstance(goal, bool):
            met = bool(value) is goal
        elif name in _AT_MOST:
            met = value == value and value <= goal  # NaN (nothing arrived) is a miss
        else:
            met = value >= goal
        out[name] = {"what": what, "value": value, "target": goal, "met": met}
    return out


def _rate(x: dict[str, Any]) -> str:
    return f"{x['rows_per_s']:,.0f}"


def _cpu_rate(x: dict[str, Any]) -> str:
    return f"{x['rows_per_cpu_s']:,.0f}" if "rows_per_cpu_s" in x else "-"


def _mb(x: dict[str, Any]) -> str:
    v = x.get("peak_rss_mb")
    return f"{v:,.0f}" if isinstance(v, int | float) else "-"


def _met(t: dict[str, Any]) -> str:
    return "met" if t["met"] else "**missed**"


def markdown(result: dict[str, Any]) -> str:
    m = result["machine"]
    t = result["targets"]
    cap = result["capture"]
    lines = [
        f"# Headwater benchmarks ({result['size']})",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gb']} GiB, {m['os']}, Python {m['python']};"
        f" measured processes pinned to core {m['pinned_core']} (`taskset`),"
        " the dev stack's servers unpinned;"
        f" load average at start {', '.join(f'{x:.2f}' for x in m['load_average_at_start'])}."
        " The machine is shared with other test runs: figures are noisy, compare within a run.",
        "",
        "## Capture (binlog -> Kafka, `CaptureDaemon` + `KafkaStreamWriter` + `MariaDbSource`)",
        "",
        "| workload | rows | Headwater rows/s | peak RSS MiB | `mariadb-binlog -v` rows/s"
        " | python-mysql-replication"
        " rows/s | our reader alone rows/s | our decoder alone (in memory) rows/s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for key, label in (("bulk", "multi-row statements (1000 rows)"), ("single", "single-row transactions")):
        e = cap[key]
        lines.append(
            f"| {label} | {e['range']['rows']:,} | {_rate(e['headwater'])} | {_mb(e['headwater'])} |"
            f" {_rate(e['mariadb_binlog'])} | {_rate(e['library'])} | {_rate(e['reader_only'])} |"
            f" {_rate(e['decode_only'])} |"
        )
    sinks = result["sinks"]
    lines += [
        "",
        f"## Sinks ({sinks['range']['rows']:,} row changes of the wiki mix: 95% inserts, 5% updates)",
        "",
        "| target | embedded rows/s (from the binlog) | rows per CPU-second | RSS MiB"
        " | from Kafka rows/s (`SinkRunner`) | rows per CPU-second | RSS MiB |"
        " reference: plain bulk load rows/s | reference |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    refs = {
        "postgresql": "COPY into an unkeyed table",
        "mariadb": "multi-row INSERT (pymysql executemany)",
        "sqlite": "executemany into the sink's table (its key), WAL, one transaction",
        "iceberg": "pyiceberg Arrow append",
    }
    for target, ref in refs.items():
        e = sinks[target]
        lines.append(
            f"| {target} | {_rate(e['embedded'])} | {_cpu_rate(e['embedded'])} | {_mb(e['embedded'])}"
            f" | {_rate(e['kafka'])} | {_cpu_rate(e['kafka'])} | {_mb(e['kafka'])} |"
            f" {_rate(e['reference'])} | {ref} |"
        )
    mem = result["memory"]
    lines += [
        "",
        "## Memory against transaction size (capture daemon, peak RSS = VmHWM)",
        "",
        "| one transaction of | peak RSS MiB | rows/s |",
        "|---:|---:|---:|",
        f"| {mem['txn_small']['rows']:,} rows | {mem['txn_small']['peak_rss_mb']:,.0f} |"
        f" {mem['txn_small']['rows_per_s']:,.0f} |",
        f"| {mem['txn_large']['rows']:,} rows | {mem['txn_large']['peak_rss_mb']:,.0f} |"
        f" {mem['txn_large']['rows_per_s']:,.0f} |",
    ]
    lines += ["", "Capture peak RSS against stream length (1000-row transactions):", ""]
    for part in mem.get("by_stream_size", []):
        lines.append(f"- {part['rows']:,} row changes: {part['peak_rss_mb']:,.0f} MiB")
    e2e = result["e2e"]
    rss = e2e.get("peak_rss_mb", {})
    lines += [
        "",
        "## End to end (MariaDB -> `cdc run` -> Kafka -> `cdc sink` -> PostgreSQL)",
        "",
        f"At {e2e['rate']:,} changes/s for {e2e['seconds']:.0f} s ({e2e['changes']:,} changes): latency"
        f" p50 {e2e['p50_s'] * 1000:,.0f} ms, p99 {e2e['p99_s'] * 1000:,.0f} ms,"
        f" max {e2e['max_s'] * 1000:,.0f} ms"
        f" (poll granularity 20 ms). Peak RSS: `cdc run` {rss.get('cdc_run', 0):,.0f} MiB, `cdc sink`"
        f" {rss.get('cdc_sink', 0):,.0f} MiB."
        + (
            f" The capture half (write to visible in Kafka, read_committed): p50"
            f" {e2e['kafka']['p50_s'] * 1000:,.0f} ms, p99 {e2e['kafka']['p99_s'] * 1000:,.0f} ms."
            if "kafka" in e2e
            else ""
        ),
        "",
        "| source rate changes/s | p99 in the step's second half | catch-up after the step | held |",
        "|---:|---:|---:|---|",
    ]
    for step in e2e.get("steps", []):
        lines.append(
            f"| {step['rate']:,} | {step['p99_s'] * 1000:,.0f} ms | {step['catch_up_s']:.2f} s |"
            f" {'yes' if step['held'] else 'no'} |"
        )
    lines += [f"\nHighest rate held: {e2e['max_sustained_rate']:,} changes/s."]
    if "bootstrap" in result:  # issue 9's figures; its targets join the table below
        lines += bootstrap_bench.markdown(result["bootstrap"])
        t = {**t, **bootstrap_bench.targets(result["bootstrap"])}
    lines += ["", "## Targets", ""]
    lines += ["| target | value | goal | |", "|---|---:|---:|---|"]
    for item in t.values():
        value, goal = item["value"], item["target"]
        if isinstance(goal, bool):
            shown, wanted = ("flat" if value else "grows"), "flat"
        elif isinstance(goal, float) and goal <= 2:
            shown, wanted = f"{value:.2f}", f"{goal:.2f}"
        else:
            shown, wanted = f"{value:,.0f}", f"{goal:,.0f}"
        lines.append(f"| {item['what']} | {shown} | {wanted} | {_met(item)} |")
    lines += [
        "",
        "Apply targets are judged on the Kafka path (`cdc sink`); the embedded rates are in the Sinks table.",
    ]
    lines += ["", f"Run took {result['seconds']:.0f} s. Profiles: `profiles/*.txt` beside this file.", ""]
    return "\n".join(lines)
