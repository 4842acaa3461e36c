"""The issues' performance targets and the README's Figures section: a development tool beside
the benchmark suite, not part of the installed package.

    python bench/figures.py --quick                        # a quick run, its targets judged
    pytest bench/ --benchmark-only --benchmark-json=bench-results/suite.json
    python bench/figures.py --suite bench-results/suite.json --also bench-results/<quick>.json \
        --readme README.md                                 # a full run, the README rewritten

It runs `perpcore bench` (perpcore.bench, the installed command's runner) with the tests'
pure-Python reference book (tests/refbook.py) beside the Cython one, judges every target of the
issues against the run, the bench/ suite's pytest-benchmark JSON (--suite) and an earlier run's
figures (--also), prints them and writes the README's Figures section (--readme).
"""
from __future__ import annotations

import importlib
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import click

from perpcore.bench import _latency_cells, _outcome, _rate_cell, find, fmt_ns, machine_line

# the reference book is test support code (tests/refbook.py)
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
ReferenceBook = importlib.import_module("refbook").ReferenceBook


@dataclass(frozen=True)
class Target:
    """A performance target of one of the issues. `kind` says how a measured value is judged:
    "rate" (commands/s, at least `limit`), "seconds" (at most `limit`), "fraction" (at most
    `limit`), "bytes" (below `limit`)."""
    key: str
    issue: int
    what: str
    kind: str
    limit: float
    text: str

    def judge(self, value: float, note: str = "") -> dict:
        """The target beside a measured value; `note` says how the measurement differs from the
        target's own conditions (a smaller population in a quick run)."""
        if self.kind == "rate":
            reached, met = f"{value:,.0f} commands/s", value >= self.limit
        elif self.kind == "seconds":
            reached, met = fmt_ns(value * 1e9), value <= self.limit
        elif self.kind == "fraction":
            reached, met = f"{value:.1%}", value <= self.limit
        else:
            reached, met = f"{value:.1f} bytes", value < self.limit
        if note:
            reached += f" ({note})"
        return {"key": self.key, "issue": self.issue, "what": self.what, "target": self.text,
                "value": value, "reached": reached, "met": met}

    def missing(self) -> dict:
        return {"key": self.key, "issue": self.issue, "what": self.what, "target": self.text,
                "value": None, "reached": "not yet measured", "met": None}


# Every target of issues 2-7, 12 and 13, by key. Benchmarks in bench/ declare which one they measure
# with the `target` fixture of bench/conftest.py, under these keys.
TARGETS = {t.key: t for t in (
    Target("book.call", 2, "book, one Python call per command", "rate", 2_000_000,
           "≥ 2,000,000 commands/s"),
    Target("book.call.p99", 2, "book, one Python call per command: p99 latency", "seconds", 2e-6,
           "< 2 µs"),
    Target("book.batch", 2, "book, batch entry point", "rate", 4_000_000, "≥ 4,000,000 commands/s"),
    Target("exchange.submit", 2, "Exchange.submit with message objects", "rate", 300_000,
           "≥ 300,000 commands/s"),
    Target("book.memory", 2, "memory per resting order, 1,000,000 resting", "bytes", 200,
           "< 200 bytes"),
    Target("funding.settlement", 3, "funding settlement over 100,000 open positions", "seconds",
           0.2, "< 200 ms"),
    Target("funding.longest", 13, "funding settlement at 1,000,000 open positions: its longest "
           "command (CPU time)", "seconds", 1e-3, "≤ 1 ms"),
    Target("mark.update", 3, "mark update liquidating nobody, 100,000 positions", "seconds",
           100e-6, "< 100 µs"),
    Target("margin.submit", 4,
           "Exchange.submit with pre-trade margin checks, positions in both perps", "rate",
           200_000, "≥ 200,000 commands/s"),
    Target("margin.account", 4, "ex.account() on an account with positions in both perps, median",
           "seconds", 100e-6, "microseconds (< 100 µs)"),
    Target("liquidation.quiet", 5, "mark move liquidating nobody, 100,000 accounts with positions",
           "seconds", 100e-6, "< 100 µs"),
    Target("liquidation.cascade", 5, "mark move liquidating 1,000 accounts in a cascade", "seconds",
           1.0, "< 1 s"),
    Target("journal.replay", 6, "journal replay: read, check and decode every record (not applied)",
           "rate", 500_000, "≥ 500,000 commands/s"),
    Target("journal.group_commit", 6, "journaling with group commit: throughput cost", "fraction",
           0.2, "≤ 20%"),
    Target("journal.real_files", 6, "slowest real data file replay", "seconds", 1.0, "< 1 s"),
    Target("bench.quick", 7, "perpcore bench --quick, wall time", "seconds", 60.0, "< 1 minute"),
    Target("state.hash", 12, "state_hash() after 1,000,000 commands / after 10,000 (open state "
           "equal)", "fraction", 1.25, "≤ 125% (no growth with history)"),
    Target("hostile.fuzz", 12, "hostile-input fuzzer, every outcome checked: 0 raises, 0 state "
           "changes on reject (1,000,000 cases)", "rate", 1_000, "runs clean"),
    Target("state.checkpoint", 12, "Store.checkpoint() after 1,000,000 commands / after 10,000 "
           "(open state equal)", "fraction", 1.25, "≤ 125% (no growth with history)"),
)}


def targets(report: dict) -> dict[str, dict]:
    """The targets this run measured, judged, by key."""
    out = {}
    call = find(report, "book.call")
    batch = find(report, "book.batch")
    submit = find(report, "exchange.submit")
    memory = report["memory"].get("cython")
    if call:
        out["book.call"] = TARGETS["book.call"].judge(call["throughput"])
        out["book.call.p99"] = TARGETS["book.call.p99"].judge(call["latency_ns"]["p99"] / 1e9)
    if batch:
        out["book.batch"] = TARGETS["book.batch"].judge(batch["throughput"])
    if submit:
        out["exchange.submit"] = TARGETS["exchange.submit"].judge(submit["throughput"])
    if memory:
        out["book.memory"] = TARGETS["book.memory"].judge(memory["bytes_per_order"])
    margin_submit = find(report, "exchange.submit", workload="cross_margin")
    if margin_submit:
        out["margin.submit"] = TARGETS["margin.submit"].judge(margin_submit["throughput"])
    account = find(report, "exchange.account", workload="cross_margin")
    if account:
        out["margin.account"] = TARGETS["margin.account"].judge(account["latency_ns"]["p50"] / 1e9)
    quiet = find(report, "mark move, nobody liquidated", workload="population")
    if quiet:
        note = "" if quiet["accounts"] >= 100_000 else f"{quiet['accounts']:,} accounts"
        for key in ("mark.update", "liquidation.quiet"):
            out[key] = TARGETS[key].judge(quiet["latency_ns"]["p50"] / 1e9, note)
        funding = find(report, "funding settlement", workload="population")
        out["funding.settlement"] = TARGETS["funding.settlement"].judge(funding["seconds"], note)
        cascade = find(report, "liquidation cascade", workload="population")
        hot = f"{cascade['liquidated'][0]:,} liquidated" if len(cascade["liquidated"]) == 1 else \
            f"liquidated {cascade['liquidated']}"
        out["liquidation.cascade"] = TARGETS["liquidation.cascade"].judge(
            cascade["seconds"], f"{note}, {hot}" if note else hot)
    decode = find(report, "journal.decode")
    if decode:
        out["journal.replay"] = TARGETS["journal.replay"].judge(decode["throughput"])
    grouped = find(report, "exchange.submit+journal(group)")
    if grouped:
        out["journal.group_commit"] = TARGETS["journal.group_commit"].judge(grouped["journal_cost"])
    if report.get("quick") and "elapsed_s" in report:
        out["bench.quick"] = TARGETS["bench.quick"].judge(report["elapsed_s"])
    return out


def suite_targets(benchmark_json: dict) -> dict[str, dict]:
    """Targets measured by the bench/ suite, from a pytest-benchmark JSON file: each benchmark that
    declared a target key contributes its median (seconds per round, or commands / median for a
    rate, or the value it stated itself)."""
    out = {}
    for b in benchmark_json.get("benchmarks", []):
        info = b.get("extra_info", {})
        target = TARGETS.get(info.get("target", ""))
        if target is None:
            continue
        if "value" in info:
            value = info["value"]
        elif target.kind == "rate":
            value = info.get("commands", 1) / b["stats"]["median"]
        else:
            value = b["stats"]["median"] / info.get("per_round", 1)
        out[target.key] = {**target.judge(value), "source": b["fullname"]}
    return out


def earlier_run_targets(earlier: dict, report: dict) -> dict[str, dict]:
    """The targets an earlier run measured and this one did not (a --quick run's wall time beside
    a full run's figures), each marked with the run it comes from."""
    label = ("bench/figures.py" + (" --quick" if earlier.get("quick") else "")
             + f", {earlier['machine']['date'][:16]}")
    return {key: {**row, "source": label} for key, row in earlier.get("targets", {}).items()
            if key not in report["targets"]}


def all_targets(report: dict, suite: dict | None = None) -> list[dict]:
    """Every target of issues 2-7: this run's figure and the bench/ suite's (both, when both
    measured it: they may measure it differently), or "not yet measured"."""
    suite = suite or {}
    out = []
    for key, target in TARGETS.items():
        found = [row for row in (report["targets"].get(key), suite.get(key)) if row]
        out += found or [target.missing()]
    return out


def markdown(report: dict, suite: dict | None = None, plot_path: str | None = None,
             commands: list[str] | None = None) -> str:
    """The README's Figures section, from a run (and the bench/ suite's figures, if given);
    `commands` are the command lines that produced it."""
    std = report["workloads"]["standard"]
    commands = commands or ["python bench/figures.py" + (" --quick" if report["quick"] else "")
                            + " --readme README.md"]
    out = ["## Figures", "",
           "Generated from one run on " + machine_line(report) + ", by", "", "```bash", *commands,
           "```", "",
           f"Workloads are seeded (seed {report['seed']}); every throughput is the median of "
           "its runs and latencies are HDR-histogram percentiles. A figure marked *(suite)* is the "
           "median of the layer's own benchmark in bench/. This is a shared 2-core virtual machine "
           "(the load average above counts the other work on it): the tails are upper bounds.", "",
           "| issue | what | target | reached | |", "|---|---|---|---|---|"]
    for t in all_targets(report, suite):
        verdict = "" if t["met"] is None else ("met" if t["met"] else "**missed**")
        source = t.get("source", "")
        reached = t["reached"] + (" *(suite)*" if "::" in source else
                                  f" *({source})*" if source else "")
        out.append(f"| {t['issue']} | {t['what']} | {t['target']} | {reached} | {verdict} |")
    counts = ", ".join(f"{v:,} {k}" for k, v in std["counts"].items())
    out += ["", f"Standard mix: {counts} after {std['prefill']:,} resting orders, "
            f"{std['accounts']:,} accounts, the mid drifting. Closed loop (service time per "
            f"command, {report['timer_overhead_ns']} ns of timer included):", "",
            "| case | workload | impl | commands/s | × reference | p50 | p90 | p99 | p99.9 "
            "| p99.99 | max |",
            "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for c in report["cases"]:
        if c["mode"] == "closed" and "seconds" not in c:
            ratio = f"{c['vs_reference']:.1f}×" if c.get("vs_reference") else ""
            out.append(f"| {c['case']} | {c['workload']} | {c['impl']} | {_rate_cell(c)} | "
                       f"{ratio} | " + " | ".join(_latency_cells(c)) + " |")
    single = [c for c in report["cases"] if "seconds" in c]
    if single:
        out += ["", "One command on a population of accounts holding positions (the whole submit):",
                "", "| case | accounts | median | runs | outcome |", "|---|---:|---:|---|---|"]
        out += [f"| {c['case']} | {c['accounts']:,} | {fmt_ns(c['seconds'] * 1e9)} | "
                + ", ".join(fmt_ns(t * 1e9) for t in c["seconds_runs"]) + f" | {_outcome(c)} |"
                for c in single]
    out += ["", "Open loop (latency from each command's intended send time, so stalls are not "
            "hidden; CPU is the share of the run the process was on a CPU: below 100% the machine "
            "ran something else while commands queued):", "",
            "| case | offered/s | achieved/s | p50 | p90 | p99 | p99.9 | p99.99 | max | CPU |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for c in report["cases"]:
        if c["mode"] == "open":
            note = " (saturated)" if c["saturated"] else ""
            out.append(f"| {c['case']} | {c['offered']:,}{note} | {c['achieved']:,.0f} | "
                       + " | ".join(_latency_cells(c)) + f" | {c['cpu_share']:.0%} |")
    mem = report["memory"]
    out += ["", "Memory per resting order: " + "; ".join(
        f"{impl} {m_['bytes_per_order']:.1f} bytes ({m_['resting']:,} resting)"
        for impl, m_ in mem.items()) + "."]
    if plot_path:
        out += ["", f"![latency percentiles]({plot_path})"]
    return "\n".join(out) + "\n"


def update_readme(path: Path, report: dict, suite: dict | None = None,
                  plot_path: str | None = None, commands: list[str] | None = None) -> None:
    """Replaces the README's "## Figures" section (up to the next "## " heading) with this run's."""
    lines = path.read_text().splitlines(keepends=True)
    section = markdown(report, suite, plot_path, commands)
    start = next((i for i, line in enumerate(lines) if line.rstrip() == "## Figures"), None)
    if start is None:
        path.write_text("".join(lines).rstrip("\n") + "\n\n" + section)
        return
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    tail = "".join(lines[end:])
    path.write_text("".join(lines[:start]) + section + ("\n" + tail if tail else ""))


def render_targets(report: dict, console, suite: dict | None = None) -> None:
    """Every target with this run's figure, the suite's, or "not yet measured", as a rich table."""
    from rich.table import Table

    goals = Table(title="Targets")
    for col in ("issue", "what", "target", "reached", ""):
        goals.add_column(col)
    for t in all_targets(report, suite):
        mark = ("" if t["met"] is None
                else "[green]met[/green]" if t["met"] else "[red]missed[/red]")
        goals.add_row(str(t["issue"]), t["what"], t["target"], t["reached"], mark)
    console.print(goals)


def _read_json(path: str, option: str, key: str) -> dict:
    """The JSON object in the file an option names (`option` quoted as click quotes it), refused
    unless it holds `key`."""
    try:
        data = json.loads(Path(path).read_text())
    except ValueError as e:
        raise click.BadParameter(f"{path} is not JSON ({e})", param_hint=option) from e
    if not isinstance(data, dict) or key not in data:
        raise click.BadParameter(f"{path} holds no {key!r}: not the JSON this option takes",
                                 param_hint=option)
    return data


@click.command()
@click.option("--quick", is_flag=True, help="perpcore bench --quick's sizes (under a minute).")
@click.option("--seed", default=1, show_default=True, type=click.IntRange(min=0),
              help="Seed of the workloads.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON instead of tables.")
@click.option("--out", "out_dir", default="bench-results", show_default=True,
              type=click.Path(file_okay=False), help="Where <date>-<commit>.json and .png go.")
@click.option("--suite", type=click.Path(dir_okay=False, exists=True),
              help="pytest-benchmark JSON of bench/ (--benchmark-json): the other layers' targets.")
@click.option("--also", "earlier", type=click.Path(dir_okay=False, exists=True),
              help="The JSON of an earlier run (a --quick one): its figures for targets this run "
                   "does not measure.")
@click.option("--readme", type=click.Path(dir_okay=False, exists=True),
              help="Rewrite the Figures section of this README (plot in docs/) from the run.")
def main(quick: bool, seed: int, as_json: bool, out_dir: str, suite: str | None,
         earlier: str | None, readme: str | None):
    """A benchmark run against the reference book, judged against the issues' targets."""
    from perpcore import bench as runner
    from perpcore.cli import run_bench, show_bench

    # read before the run, which takes minutes: a wrong file is refused at once
    suite_figures = suite_targets(_read_json(suite, "'--suite'", "benchmarks")) if suite else {}
    earlier_run = _read_json(earlier, "'--also'", "targets") if earlier else None
    report, stem = run_bench(quick, seed, out_dir, as_json, reference=ReferenceBook)
    report["targets"] = targets(report)
    if earlier_run:
        suite_figures.update(earlier_run_targets(earlier_run, report))
    if readme:
        readme_plot = Path(readme).parent / "docs" / "bench-latency.png"
        runner.plot(report, readme_plot)
        # the command lines that made the section: the suite's, an earlier run's, this one
        this = ["python bench/figures.py"] + (["--quick"] if quick else []) + \
            [f"--{name} {value}" for name, value in (("suite", suite), ("also", earlier)) if value]
        made = ([f"pytest bench/ --benchmark-only --benchmark-json={suite}"] if suite else []) + \
            (["python bench/figures.py --quick"] if earlier else []) + \
            [" ".join(this + [f"--readme {readme}"])]
        update_readme(Path(readme), report, suite_figures, "docs/bench-latency.png", made)
    show_bench(report, stem, as_json, lambda console: render_targets(report, console,
                                                                     suite_figures))


if __name__ == "__main__":
    main()
