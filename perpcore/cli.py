"""The `perpcore` command line: simulate (and, as they land, bench, replay, stress)."""
from __future__ import annotations

import functools
import json
import platform
import re

import click
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

import perpcore
from perpcore import simulate as sim
from perpcore.journal import JournalError
from perpcore.snapshot import SnapshotError


class _Group(click.Group):
    """The top group: whatever a command raises is one line ("Error: ...", exit status 1) unless
    --debug asks for the traceback."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except Exception as e:
            if ctx.params.get("debug"):
                raise
            text = " ".join(str(e).split())        # one line, whatever the message holds
            if not isinstance(e, _INPUT_ERRORS):   # not the input's fault: a bug, say where to look
                text = (f"unexpected {type(e).__name__}: {text} (perpcore --debug ... shows the "
                        f"traceback)")
            raise click.ClickException(text or type(e).__name__) from e


# OSError covers missing files and gzip's BadGzipFile, EOFError a stream cut short; the readers
# raise ValueError (msgspec's DecodeError is one) for a file of the wrong kind
_INPUT_ERRORS = (JournalError, SnapshotError, OSError, EOFError, ValueError)


@click.group(cls=_Group)
@click.version_option(perpcore.__version__, prog_name="perpcore")
@click.option("--debug", is_flag=True, help="Show the traceback of an error (default: one line).")
def main(debug: bool):
    """perpcore: an embeddable exchange core for perpetual contracts and margin financing."""


def _venue(config_path: str | None, venue_name: str | None):
    """The venue a --config FILE holds, or the --venue NAME preset (the built-in default venue
    without either)."""
    from perpcore.config import ConfigError, default_config, load_config
    from perpcore.venues import venue

    ctx = click.get_current_context()
    if config_path is not None and venue_name is not None:
        raise click.UsageError("give --config FILE or --venue NAME, not both")
    if venue_name is not None:
        ctx.meta["perpcore.venue"] = venue_name      # for output names that tell venues apart
        return venue(venue_name)
    if config_path is None:
        return default_config()
    ctx.meta["perpcore.config_path"] = config_path
    try:
        return load_config(config_path)
    except ConfigError as e:
        raise click.BadParameter(str(e), param_hint="'--config'") from e


def _config_option(command):
    """--config FILE / --venue NAME, passed to the command as its `config` (a VenueConfig)."""
    from perpcore.venues import VENUES

    @functools.wraps(command)
    def run(*args, config_path: str | None, venue_name: str | None, **kwargs):
        return command(*args, config=_venue(config_path, venue_name), **kwargs)

    run = click.option(
        "--venue", "venue_name", type=click.Choice(list(VENUES)),
        help="The venue: a preset of perpcore.venues (default: the built-in venue; not with "
             "--config).")(run)
    return click.option(
        "--config", "config_path", type=click.Path(exists=True, dir_okay=False),
        help="The venue: a VenueConfig in a TOML or JSON file (e.g. docs/venue.toml; default: "
             "the built-in venue).")(run)


@main.command()
@click.option("--steps", default=100_000, show_default=True, envvar="PERPCORE_SIMULATE_STEPS",
              type=click.IntRange(min=1),
              help="Commands in the session (env PERPCORE_SIMULATE_STEPS).")
@click.option("--seed", default=7, show_default=True, help="Seed of the session's randomness.")
@_config_option
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def simulate(steps: int, seed: int, config, as_json: bool):
    """Run a seeded simulated session on a venue (the built-in one by default) and summarise it."""
    console = Console(stderr=as_json)
    if as_json:
        _, report = sim.run(steps=steps, seed=seed, config=config)
        out = {k: v for k, v in vars(report).items()}
        out["commands_per_s"] = round(report.commands_per_s)
        click.echo(json.dumps(out, default=list))
        return
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("simulating", total=steps)
        ex, report = sim.run(steps=steps, seed=seed, config=config,
                             progress=lambda i: progress.update(task, completed=i))
    # one column per symbol, one row per figure: fits a narrow terminal
    table = Table(title=f"perpcore simulate — seed {seed}, {steps:,} commands")
    table.add_column("")
    rows: dict[str, list[str]] = {name: [] for name in (
        "trades", "volume", "notional", "best bid", "best ask", "depth (5 levels) bid/ask",
        "price levels bid/ask")}
    for symbol, (bids, asks) in report.depth.items():
        spec = ex.config.instruments[symbol]
        book = ex.markets[symbol].book
        table.add_column(symbol, justify="right")
        rows["trades"].append(f"{book.trade_count:,}")
        rows["volume"].append(f"{spec.from_lots(report.volume_lots[symbol])} {spec.base}")
        rows["notional"].append(f"{float(report.notional[symbol]):,.2f} {spec.settle}")
        for name, side in (("best bid", bids), ("best ask", asks)):
            rows[name].append(f"{spec.from_ticks(side[0][0])} × {spec.from_lots(side[0][1])}"
                              if side else "-")
        rows["depth (5 levels) bid/ask"].append(
            f"{spec.from_lots(sum(q for _, q, _ in bids))} / "
            f"{spec.from_lots(sum(q for _, q, _ in asks))}")
        rows["price levels bid/ask"].append(f"{book.level_count(0)} / {book.level_count(1)}")
    for name, cells in rows.items():
        table.add_row(name, *cells)
    console.print(table)
    fund = report.insurance_fund
    console.print(f"crash {-sim.CRASH_BP / 100:.0f}% at step {int(steps * sim.CRASH_AT):,}: "
                  f"{report.liquidated_accounts:,} accounts liquidated "
                  f"({report.liquidations:,} liquidations) · auto-deleveraged "
                  f"{report.auto_deleveraged:,} · insurance fund {fund['start']} → {fund['end']} "
                  f"(paid in {fund['paid_in']}, losses covered {fund['paid_out']}, "
                  f"low {fund['low']}) · socialised loss {report.socialized}")
    settle = ex.config.settlement_asset
    console.print("margin: open interest " + ", ".join(
        f"{symbol} {oi} {ex.config.instruments[symbol].base}"
        for symbol, oi in report.open_interest.items())
        + f" · fees {report.fees} {settle} · audit "
        + ("balanced" if report.audit_ok else "[bold red]BROKEN[/]"))
    console.print(f"trades {report.trades:,} · rejected {report.rejected:,} · "
                  f"throughput {report.commands_per_s:,.0f} commands/s "
                  f"(Exchange.submit, {platform.python_implementation()} "
                  f"{platform.python_version()})")
    console.print(f"state hash {report.state_hash}")


_BENCH_SEED = 1


@main.command()
@click.option("--quick", is_flag=True,
              help="Smaller sizes and short open-loop runs (under a minute).")
@click.option("--seed", default=_BENCH_SEED, show_default=True, type=click.IntRange(min=0),
              help="Seed of the workloads (numpy's generators take no negative seed); another "
                   "than the default is part of the results' names (...-seed2.json).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON instead of tables.")
@click.option("--out", "out_dir", default="bench-results", show_default=True,
              type=click.Path(file_okay=False), help="Where <date>-<commit>.json and .png go.")
@click.argument("what", required=False, type=click.Choice(["gateway", "replication"]))
def bench(quick: bool, seed: int, as_json: bool, out_dir: str, what: str | None):
    """Latency and throughput of the matching core and the engine, closed and open loop.
    `perpcore bench gateway`: signed orders acknowledged per second by `perpcore serve`.
    `perpcore bench replication`: the replicated log on a local 3-node JetStream cluster beside
    the local journal (needs the `replication` extra)."""
    if what == "gateway":
        _bench_gateway(quick, as_json)
        return
    if what == "replication":
        _bench_replication(quick, as_json)
        return
    report, stem = run_bench(quick, seed, out_dir, as_json)
    show_bench(report, stem, as_json)


def run_bench(quick: bool, seed: int, out_dir: str, as_json: bool, reference=None):
    """One benchmark run under a progress line, its plot written: (report, the results' path
    without suffix). bench/figures.py runs it with the tests' reference book."""
    import sys
    import time
    from pathlib import Path

    from perpcore import bench as runner

    started = time.perf_counter()
    # the tables are wide: when piped (no terminal width to respect), do not squeeze them to 80
    console = Console(stderr=as_json, width=None if sys.stdout.isatty() else 180)
    with console.status("benchmarking") as status:
        report = runner.run(quick=quick, seed=seed, progress=status.update, reference=reference)
    # the default seed's names stay those of the results already kept (bench-results/)
    stem = Path(out_dir) / (runner.result_stem(report)
                            + ("" if seed == _BENCH_SEED else f"-seed{seed}"))
    report["plot"] = str(runner.plot(report, stem.with_suffix(".png")))
    report["elapsed_s"] = time.perf_counter() - started       # the whole command, plots included
    return report, stem


def show_bench(report: dict, stem, as_json: bool, more=None) -> None:
    """Saves a run's report beside its plot and prints it: the JSON, or the tables (and what
    `more(console)` adds)."""
    import sys

    from perpcore import bench as runner

    stem.with_suffix(".json").write_text(json.dumps(report, indent=1))
    if as_json:
        click.echo(json.dumps(report))
        return
    console = Console(width=None if sys.stdout.isatty() else 180)
    runner.render(report, console)
    if more:
        more(console)
    console.print(f"results {stem.with_suffix('.json')} · plot {report['plot']}")


def _bench_gateway(quick: bool, as_json: bool) -> None:
    from perpcore.gateway import loadgen

    console = Console(stderr=True)
    with console.status("benchmarking the gateway") as status:
        rep = loadgen.report(orders=4_000 if quick else 20_000,
                             ccxt_orders=500 if quick else 2_000, progress=status.update)
    if as_json:
        click.echo(loadgen.as_json(rep))
        return
    click.echo(f"{rep['date']} · {rep['cpus']} CPUs · load {rep['load'][0]:.2f}")
    click.echo(loadgen.main_table(rep))


def _bench_replication(quick: bool, as_json: bool) -> None:
    try:
        from perpcore.replication import bench as replication
    except ImportError as e:
        raise click.ClickException(f"perpcore bench replication needs the replication extra "
                                   f"(pip install 'perpcore[replication]'): {e}") from e
    console = Console(stderr=True)
    with console.status("benchmarking the replicated log") as status:
        rep = replication.run(quick=quick, progress=status.update)
    click.echo(json.dumps(rep) if as_json else replication.table(rep))


@main.group()
def replay():
    """Replay a perpcore journal, LOBSTER order flow or Binance captures through the engine.

    lobster and binance take --workers N (a local Dask cluster of N processes) or --scheduler
    ADDRESS (an existing one): each file or symbol is its own book, replayed as its own task,
    the results merged in input order and equal to the sequential run's. A journal is one ordered
    log of one venue: it is replayed in order, never split."""


def _fanout_options(command):
    """--workers / --scheduler: independent inputs fanned out over Dask (perpcore.fanout)."""
    command = click.option(
        "--scheduler", metavar="ADDRESS",
        help="Fan the inputs out over the Dask cluster whose scheduler listens here (e.g. "
             "tcp://127.0.0.1:8786); its workers need perpcore and the input files.")(command)
    return click.option(
        "--workers", default=0, show_default=True, type=click.IntRange(min=0),
        help="Fan the independent inputs out over a local Dask cluster of this many worker "
             "processes (needs the replay extra; 0: one after another in this process). The "
             "results are the sequential run's, merged in input order.")(command)


def _pool(workers: int, scheduler: str | None):
    """The fan-out pool of --workers / --scheduler (a context manager)."""
    from perpcore import fanout

    if workers and scheduler:
        raise click.UsageError("give --workers (a local Dask cluster) or --scheduler (an "
                               "existing one), not both")
    if workers or scheduler:
        try:
            import distributed  # noqa: F401
        except ImportError as e:
            raise click.ClickException(f"--workers and --scheduler need Dask (pip install "
                                       f"'perpcore[replay]'): {e}") from e
    return fanout.pool(workers, scheduler)


def _replay_run(run, label: str, as_json: bool, workers: int = 0,
                scheduler: str | None = None) -> None:
    """Runs one replay (run(progress, pool)) under a progress bar on the pool of --workers /
    --scheduler, prints its summary (tables, or JSON on stdout) and exits with status 1 if a
    verification disagreed."""
    import sys

    from perpcore import replay as rp

    # when piped there is no terminal width to respect: do not squeeze the tables to 80
    console = Console(stderr=as_json, width=None if sys.stdout.isatty() else 160)
    with _pool(workers, scheduler) as pool, \
            Progress(console=console, transient=True, disable=as_json) as progress:
        task = progress.add_task(label, total=None)
        summary = run(lambda done, total: progress.update(task, completed=done, total=total),
                      pool)
    if as_json:
        click.echo(json.dumps(summary.as_dict(), default=str))
    else:
        rp.render(summary, console)
    if not summary.ok:
        raise SystemExit(1)


_events_option = click.option("--events", "events_path", type=click.Path(dir_okay=False),
                              help="Write every event to this file (JSON lines).")
_json_option = click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")


def _state_hash(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is not None and not re.fullmatch(r"[0-9a-f]{64}", value):
        raise click.BadParameter(f"{value!r} is not a state hash (64 lowercase hex digits)")
    return value


@replay.command("journal")
@click.argument("path", type=click.Path(exists=True))
@click.option("--verify", is_flag=True,
              help="Check the replayed state hash at every snapshot and against the store's "
                   "recovery (newest snapshot + journal tail).")
@click.option("--expect-hash", callback=_state_hash,
              help="Check the final state hash (64 hex digits) against this one.")
@_config_option
@_events_option
@_json_option
@click.option("--workers", type=int, default=None, hidden=True)
@click.option("--scheduler", default=None, hidden=True)
def replay_journal(path: str, verify: bool, expect_hash: str | None, config,
                   events_path: str | None, as_json: bool, workers: int | None,
                   scheduler: str | None):
    """Replay a store directory (snapshots + journal) or one journal file, reproducing every
    event and the final state hash. A journal is one ordered log: replayed in order on one
    engine, never split across workers (--workers is for lobster, binance and stress)."""
    from perpcore import replay as rp

    if workers is not None or scheduler is not None:
        raise click.ClickException("a journal is one ordered log of one venue: its commands are "
                                   "replayed in order on one engine, never split across workers "
                                   "(--workers and --scheduler fan out lobster files, binance "
                                   "symbols and stress shocks)")
    _replay_run(lambda progress, pool: rp.replay_journal(path, config, verify=verify,
                                                   expect_hash=expect_hash,
                                                   events_path=events_path, progress=progress),
                "replaying journal", as_json)


@replay.command("lobster")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("--no-orderbook", is_flag=True,
              help="Ignore the orderbook files (replay from the messages alone).")
@_events_option
@_json_option
@_fanout_options
def replay_lobster(paths: tuple[str, ...], no_orderbook: bool, events_path: str | None,
                   as_json: bool, workers: int, scheduler: str | None):
    """Replay LOBSTER message files (or the directories holding them) as order flow, each file
    through its own book."""
    from perpcore import replay as rp

    _replay_run(lambda progress, pool: rp.replay_lobster(paths, events_path=events_path,
                                                         progress=progress,
                                                         use_orderbook=not no_orderbook,
                                                         pool=pool),
                "replaying LOBSTER", as_json, workers, scheduler)


# a fall of 100% leaves no price; a rise beyond tenfold is no longer a shock but a different market
_SHOCK = click.IntRange(-99, 1000)


class _Shocks(click.ParamType):
    """low:high:step in percent, low <= high, step >= 1: (low, high, step)."""
    name = "LOW:HIGH:STEP"

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):        # click converts a converted value again, e.g. a default
            return value
        parts = value.split(":")
        if len(parts) != 3 or not all(re.fullmatch(r"[+-]?\d+", p.strip()) for p in parts):
            self.fail(f"{value!r} is not low:high:step in whole percent, e.g. -40:40:5", param, ctx)
        low, high, step = (_SHOCK.convert(p, param, ctx) for p in parts)
        if low > high:
            self.fail(f"{value!r}: low {low} is above high {high}", param, ctx)
        if step < 1:
            self.fail(f"{value!r}: the step must be at least 1", param, ctx)
        return low, high, step


@main.command()
@click.option("--accounts", default=2_000, show_default=True, type=click.IntRange(min=1),
              help="Size of the generated population of accounts.")
@click.option("--seed", default=1, show_default=True, help="Seed of the population (or session).")
@click.option("--from-simulate", "sim_steps", type=click.IntRange(min=1), default=None,
              help="Stress the state a simulated session of this many steps leaves instead.")
@click.option("--shocks", default="-40:40:5", show_default=True, type=_Shocks(),
              help="Shocks in percent: low:high:step (each from -99 to 1000).")
@click.option("--flash", default=-30, show_default=True, type=_SHOCK,
              help="Depth of the flash crash with recovery, percent (0: none).")
@click.option("--path-steps", default=8, show_default=True, type=click.IntRange(min=1),
              help="Steps (a second apart) in which each shock reaches its level.")
@click.option("--out", "out_dir", default="stress-results", show_default=True,
              type=click.Path(file_okay=False),
              help="Where the PNG chart, the HTML page and the JSON go, named after the "
                   "options that shape the run (e.g. "
                   "stress-2000-seed1-shocks-40to40by5-flash-30-steps8.png, then -<stem> of a "
                   "--config file), so that runs with different options keep their own files.")
@_config_option
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@_fanout_options
def stress(accounts: int, seed: int, sim_steps: int | None, shocks: tuple[int, int, int],
           flash: int, path_steps: int, out_dir: str, config, as_json: bool, workers: int,
           scheduler: str | None):
    """Price shocks on a venue state: liquidations, volume closed, insurance fund, ADL, losses.
    Each shock starts from the same state: --workers / --scheduler run them as Dask tasks."""
    import sys
    from pathlib import Path

    from perpcore import stress as st

    low, high, step = shocks
    paths = st.shock_paths(low, high, step, path_steps, flash or None)
    if not paths:
        raise click.UsageError("nothing to run: every shock in --shocks is 0% and --flash is 0")
    console = Console(stderr=as_json, width=None if sys.stdout.isatty() else 180)
    with console.status("building the venue state") as status:
        if sim_steps is not None:
            ex = st.from_simulation(steps=sim_steps, seed=seed, config=config)
            source = f"simulated session, {sim_steps:,} steps, seed {seed}"
        else:
            ex = st.population(accounts=accounts, seed=seed, config=config)
            source = f"generated population of {accounts:,} accounts, seed {seed}"
        status.update(f"{len(paths)} shocks")
        with _pool(workers, scheduler) as pool:
            report = st.run(ex, source, paths, pool=pool, progress=lambda done, total:
                            status.update(f"shocks: {done} of {total} done"))
    stem = Path(out_dir) / ((f"stress-sim{sim_steps}" if sim_steps is not None
                             else f"stress-{accounts}") + f"-seed{seed}-shocks{low}to{high}by{step}"
                            f"-flash{flash}-steps{path_steps}" + _venue_suffix())
    report.chart = str(st.plot(report, stem.with_suffix(".png")))
    report.page = str(st.html_page(report, Path(report.chart), stem.with_suffix(".html")))
    stem.with_suffix(".json").write_text(json.dumps(report.to_json(), indent=1))
    if as_json:
        click.echo(json.dumps(report.to_json()))
        return
    st.render(report, console)
    console.print(f"chart {report.chart} · page {report.page} · data "
                  f"{stem.with_suffix('.json')}")


def _venue_suffix() -> str:
    """"-<file stem>" of the --config file or "-<name>" of the --venue preset, if any: a run on
    another venue keeps its own files."""
    from pathlib import Path

    meta = click.get_current_context().meta
    path = meta.get("perpcore.config_path")
    if path:
        return f"-{Path(path).stem}"
    return f"-{meta['perpcore.venue']}" if "perpcore.venue" in meta else ""


@main.group()
def compare():
    """The same command stream under several venue presets, side by side: liquidations, the
    insurance fund's path, auto-deleveraging, funding paid (perpcore.compare).

    The stream is a simulated session or a stress path built on the built-in venue, or a
    journal's commands; each venue is fed the same commands re-expressed on its own tick and lot
    grid (prices to the nearest tick a limit order may take without becoming more aggressive,
    quantities and amounts rounded down)."""


def _compare_options(command):
    """--venues, --json, --chart and the fan-out options of every `perpcore compare` command."""
    from perpcore.venues import VENUES

    for option in (
            click.option("--venues", "names", default=",".join(VENUES), show_default=True,
                         help="The presets to compare, comma-separated."),
            click.option("--json", "as_json", is_flag=True,
                         help="Print the comparison as JSON."),
            click.option("--chart", "chart", type=click.Path(dir_okay=False),
                         help="Write the chart (PNG) here."),
            _fanout_options):
        command = option(command)
    return command


def _compare_run(flow, names: str, as_json: bool, chart: str | None, workers: int,
                 scheduler: str | None) -> None:
    """Runs `flow()` (the command stream) under each of --venues and prints the comparison."""
    import sys
    from pathlib import Path

    from perpcore import compare as cp

    try:
        venues = cp.parse_names(names)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="'--venues'") from e
    if chart is not None and not chart.lower().endswith(".png"):
        raise click.BadParameter(f"{chart!r} is not a .png file", param_hint="'--chart'")
    console = Console(stderr=as_json, width=None if sys.stdout.isatty() else 180)
    with console.status("building the command stream") as status:
        stream = flow()
        status.update(f"{len(venues)} venues")
        with _pool(workers, scheduler) as pool:
            result = cp.compare(stream, venues, pool=pool, progress=lambda done, total:
                                status.update(f"venues: {done} of {total} done"))
    if chart is not None:
        cp.plot(result, Path(chart))
    if as_json:
        click.echo(json.dumps(result.to_json()))
        return
    cp.render(result, console)
    if chart is not None:
        console.print(f"chart {chart}")


@compare.command("simulate")
@click.option("--steps", default=100_000, show_default=True, type=click.IntRange(min=1),
              help="Steps of the simulated session (perpcore simulate's, crash included).")
@click.option("--seed", default=7, show_default=True, help="Seed of the session.")
@_compare_options
def compare_simulate(steps: int, seed: int, names: str, as_json: bool, chart: str | None,
                     workers: int, scheduler: str | None):
    """A seeded simulated session, then eight hours of funding, under each venue."""
    from perpcore import compare as cp

    _compare_run(lambda: cp.simulated(steps=steps, seed=seed), names, as_json, chart, workers,
                 scheduler)


@compare.command("stress")
@click.option("--accounts", default=500, show_default=True, type=click.IntRange(min=1),
              help="Size of the generated population (perpcore stress's).")
@click.option("--seed", default=1, show_default=True, help="Seed of the population.")
@click.option("--shock", default=-30, show_default=True, type=_SHOCK,
              help="The index move in percent (-99 to 1000, not 0).")
@click.option("--flash", is_flag=True, help="Go down (or up) to --shock and back again.")
@click.option("--path-steps", default=8, show_default=True, type=click.IntRange(min=1),
              help="Steps (a second apart) in which the shock reaches its level.")
@_compare_options
def compare_stress(accounts: int, seed: int, shock: int, flash: bool, path_steps: int,
                   names: str, as_json: bool, chart: str | None, workers: int,
                   scheduler: str | None):
    """A generated population, one price shock, then eight hours of funding, under each venue."""
    from perpcore import compare as cp

    if not shock:
        raise click.BadParameter("a shock of 0% moves nothing", param_hint="'--shock'")
    _compare_run(lambda: cp.stressed(accounts=accounts, seed=seed, shock=shock, flash=flash,
                                     path_steps=path_steps), names, as_json, chart, workers,
                 scheduler)


@compare.command("journal")
@click.argument("path", type=click.Path(exists=True))
@_config_option
@_compare_options
def compare_journal(path: str, config, names: str, as_json: bool, chart: str | None,
                    workers: int, scheduler: str | None):
    """A journal's commands (a segment file, or a store directory whose journal starts at its
    first command) under each venue. --config / --venue name the venue it was written under (the
    built-in one by default)."""
    from perpcore import compare as cp

    _compare_run(lambda: cp.journaled(path, config), names, as_json, chart, workers, scheduler)


@replay.command("binance")
@click.argument("data_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--symbol", "symbols", multiple=True,
              help="A symbol to replay (repeatable; default: every capture found).")
@click.option("--plots", "plots_dir", default="replay-plots", show_default=True,
              type=click.Path(file_okay=False),
              help="Where the PNG plots go, one per capture, named after its file "
                   "(btcusdt_20240808.png), so that the plots of different captures do not "
                   "overwrite each other.")
@_json_option
@_fanout_options
def replay_binance(data_dir: str, symbols: tuple[str, ...], plots_dir: str, as_json: bool,
                   workers: int, scheduler: str | None):
    """Replay Binance USDⓈ-M captures (DATA_DIR holds usdm/ and spot/): the rebuilt book against
    bookTicker, and mark, index, premium and predicted funding through the window; each symbol
    through its own book."""
    from perpcore import replay as rp

    _replay_run(lambda progress, pool: rp.replay_binance(data_dir, symbols, plots_dir=plots_dir,
                                                         progress=progress, pool=pool),
                "replaying Binance captures", as_json, workers, scheduler)


@main.group()
def store():
    """Check and repair a store directory (snapshots + journal segments)."""


def _seqs(seqs) -> str:
    if not seqs:
        return ""
    first, last = seqs
    return f" [commands {first}-{last if last is not None else ''} at risk]"


@store.command("verify")
@click.argument("directory", type=click.Path(exists=True, file_okay=False))
@_config_option
@_json_option
def store_verify(directory: str, config, as_json: bool):
    """Check every snapshot and journal segment, the manifest and the chain between them, and
    what the store recovers to. Exit status 0 when healthy (a torn tail, which opening the store
    moves aside, is healthy), 1 otherwise."""
    import msgspec

    from perpcore import snapshot as sn

    check = sn.verify_store(directory, config)
    if not (check.manifest or check.snapshots or check.segments or check.problems
            or check.set_aside):
        raise click.ClickException(f"{directory} is not a perpcore store: no manifest, snapshots "
                                   f"or journal segments")
    if as_json:
        out = msgspec.to_builtins(check)
        out["healthy"] = check.healthy
        click.echo(json.dumps(out, default=str))
    else:
        m = check.manifest
        click.echo(f"store {check.directory}")
        click.echo("manifest: " + ("missing or damaged" if m is None else
                                   f"newest segment {m.segment} (from command {m.first_seq}), "
                                   + (f"known to hold up to command {m.end_seq}"
                                      if m.end_seq >= 0 else "no end recorded yet")))
        for s in check.snapshots:
            click.echo(f"snapshot {s.file}: command {s.seq}, " + (s.error or "ok"))
        for s in check.segments:
            span = (f"commands {s.first_seq}-{s.last_seq}" if s.last_seq is not None
                    else f"from command {s.first_seq}")
            click.echo(f"segment {s.file}: {span}, {s.bytes} bytes"
                       + (f", torn tail: {s.torn_tail}" if s.torn_tail else "")
                       + (f", DAMAGED: {s.error}" if s.error else ""))
        for name in check.set_aside:
            click.echo(f"set aside: {name}")
        if check.opens:
            click.echo(f"recovers to command {check.last_seq} from "
                       f"{check.recovered_from or 'an empty exchange'}")
        if check.halted is not None:
            h = check.halted
            click.echo(f"ENGINE HALTED at command {getattr(h, 'seq', '?')} "
                       f"({getattr(h, 'command', '?')}): {getattr(h, 'cause', h)}")
        for p in check.problems:
            click.echo(f"PROBLEM: {p.message}" + (f" (file {p.file}, offset {p.offset})"
                                                  if p.file and p.offset is not None else "")
                       + _seqs(p.seqs))
        click.echo("healthy" if check.healthy else
                   f"NOT HEALTHY: {len(check.problems)} problem(s)"
                   + ("" if check.opens else "; the store does not open"))
    if not check.healthy:
        raise SystemExit(1)


@store.command("repair")
@click.argument("directory", type=click.Path(exists=True, file_okay=False))
@click.option("--truncate-after", "seq", type=click.IntRange(min=0), required=True,
              help="The last command to keep; the journal after it is cut (and kept aside).")
@click.option("--move-snapshots", is_flag=True,
              help="Also move aside the snapshots after SEQ (refused without it).")
@_config_option
@_json_option
def store_repair(directory: str, seq: int, move_snapshots: bool, config, as_json: bool):
    """Cut the journal after command SEQ so that the store opens again. Everything cut or moved
    is kept in a new repaired-<UTC time>/ folder of the store; nothing is deleted. Refused if the
    journal was written under another venue (the built-in one, or --config's); afterwards, what
    the store recovers to on that venue. Exit status 1 if it still does not open healthy."""
    import msgspec

    from perpcore import snapshot as sn

    foreign = _segments_of_another_venue(directory, config)
    if foreign:
        meta = click.get_current_context().meta
        venue = meta.get("perpcore.config_path") or (
            f"the {meta['perpcore.venue']} preset" if "perpcore.venue" in meta
            else "the built-in one")
        raise click.ClickException(
            f"repair refused, nothing changed: {', '.join(foreign)} written under another venue "
            f"config than {venue} (give the store's own with --config)")
    try:
        report = sn.repair_store(directory, seq, move_snapshots)
    except sn.RepairRefused as e:
        raise click.ClickException(f"repair refused, nothing changed: {e}") from e
    check = sn.verify_store(directory, config)
    if as_json:
        click.echo(json.dumps({**msgspec.to_builtins(report), "healthy": check.healthy,
                               "recovers_to": check.last_seq if check.opens else None}))
    else:
        click.echo(f"journal now ends after command {report.truncate_after} in {report.segment}")
        click.echo(f"cut {report.cut_bytes} bytes off {report.segment}; moved "
                   f"{', '.join(report.moved) or 'nothing else'}; all kept in {report.kept_in}/")
        click.echo(f"the store recovers to command {check.last_seq}" if check.healthy else
                   "NOT HEALTHY yet: " + "; ".join(p.message for p in check.problems)
                   + ("" if check.opens else "; the store does not open"))
    if not check.healthy:
        raise SystemExit(1)


def _segments_of_another_venue(directory: str, config) -> list[str]:
    """The store's journal segments whose header names another venue config (a header too
    damaged to read is left for the repair to judge)."""
    from perpcore import journal as jr
    from perpcore import snapshot as sn
    from perpcore.exchange import config_digest

    digest = config_digest(config)
    out = []
    for _, path in sn.list_segments(directory):
        with open(path, "rb") as f:
            head = f.read(jr.HEADER_SIZE)
        try:
            if jr.read_header(head, path).digest != digest:
                out.append(path.name)
        except jr.JournalError:
            continue
    return out


@main.command()
@click.argument("directory", type=click.Path(file_okay=False))
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(0, 65535),
              help="Port to listen on (0: any free port, printed).")
@click.option("--sync", type=click.Choice(["group", "always", "none"]), default="group",
              show_default=True, help="Journal durability: group commits once per batch.")
@click.option("--admin-token", envvar="PERPCORE_ADMIN_TOKEN", default=None,
              help="Token of the admin routes (default: the one kept in the store).")
@click.option("--weight-per-minute", default=2400, show_default=True,
              type=click.IntRange(min=1), help="Request weight each API key may use a minute.")
@click.option("--checkpoint-every", default=100_000, show_default=True,
              type=click.IntRange(min=0), help="Commands between checkpoints of the store and "
              "the read models (0: never), which bound the replay at start.")
@click.option("--demo", is_flag=True,
              help="Simulated index feeds and a market maker; prints a trader's API key.")
@click.option("--replicate", metavar="URL", default=None,
              help="Be the sequencer of a replicated venue: NATS URL(s) of the JetStream "
                   "cluster (nats://h1:4222,nats://h2:4222) holding its log (needs the "
                   "`replication` extra; docs/replication.md).")
@click.option("--stream", default="perpcore", show_default=True,
              help="The venue's JetStream stream (with --replicate).")
@_config_option
def serve(directory: str, host: str, port: int, sync: str, admin_token: str | None,
          weight_per_minute: int, checkpoint_every: int, demo: bool, replicate: str | None,
          stream: str, config):
    """Serve the venue in store DIRECTORY over a Binance USDⓈ-M-compatible REST API (needs the
    `gateway` extra). Stops on SIGINT or SIGTERM, closing the store cleanly; with --replicate,
    also when the log stops it (another writer took it over: exit status 3)."""
    import asyncio
    import signal
    import sys

    try:
        from perpcore.gateway import Venue
    except ImportError as e:
        raise click.ClickException(f"perpcore serve needs the gateway extra "
                                   f"(pip install 'perpcore[gateway]'): {e}") from e

    async def run():
        venue = Venue(directory, config, sync=sync, admin_token=admin_token,
                      weight_per_minute=weight_per_minute, checkpoint_every=checkpoint_every,
                      replicate=replicate, stream=stream)
        bound = await venue.start(host, port)
        click.echo(f"perpcore serving {directory} on http://{host}:{bound}")
        feed = None
        if demo:
            from perpcore.gateway.demo import Demo
            feed = Demo(venue)
            info = await feed.start()
            click.echo(f"demo: apiKey {info['apiKey']} secret {info['secretKey']} (account "
                       f"{info['trader']}); point ccxt binanceusdm's fapi URLs at "
                       f"http://{host}:{bound}")
        sys.stdout.flush()          # a supervisor reading the port must see it now
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        if venue.log is not None:       # fenced or unavailable: stop at once, saying why
            venue.log.failed.add_done_callback(lambda _: loop.call_soon_threadsafe(stop.set))
        try:
            await stop.wait()
        finally:
            if feed is not None:
                await feed.stop()
            await venue.stop()
        if venue.log is not None and venue.log.failed.done():
            click.echo(f"perpcore serve stopped: {venue.log.failed.exception()}", err=True)
            sys.exit(3)

    try:
        import uvloop       # when installed: the event loop's own cost per request falls by half
    except ImportError:
        asyncio.run(run())
    else:
        uvloop.run(run())


@main.command()
@click.option("--nats", "url", required=True, metavar="URL",
              help="NATS URL(s) of the JetStream cluster holding the venue's log.")
@click.option("--store", "directory", required=True, type=click.Path(file_okay=False),
              help="The replica's own store (created if new; promote it with `serve`).")
@click.option("--stream", default="perpcore", show_default=True, help="The venue's stream.")
@click.option("--name", default=None, help="The replica's name in its checkpoints "
              "(default: the store's directory name).")
@click.option("--snapshot-every", default=100_000, show_default=True,
              type=click.IntRange(min=1), help="Commands between the replica's snapshots.")
@click.option("--sync", type=click.Choice(["group", "always", "none"]), default="group",
              show_default=True, help="The replica's own journal durability.")
@_config_option
def replica(url: str, directory: str, stream: str, name: str | None, snapshot_every: int,
            sync: str, config):
    """Follow a replicated venue's log into a store of its own: apply every command in order,
    snapshot periodically, publish (seq, state_hash) checkpoints on <stream>.checkpoints. Halts
    (exit status 2) rather than diverge from the sequencer; stops on SIGINT or SIGTERM."""
    import asyncio
    import signal
    import sys
    from pathlib import Path

    try:
        from perpcore.replication.replica import Replica, ReplicaHalted
    except ImportError as e:
        raise click.ClickException(f"perpcore replica needs the replication extra "
                                   f"(pip install 'perpcore[replication]'): {e}") from e

    async def run() -> str | None:
        node = Replica(directory, config, url, stream, name or Path(directory).name,
                       snapshot_every=snapshot_every, sync=sync)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, node.stop)
        click.echo(f"replica {node.name} following {stream} from entry "
                   f"{node.started_from.entry_seq} (command {node.ex.seq})")
        sys.stdout.flush()
        try:
            seq = await node.run()
        except ReplicaHalted as e:
            return str(e)
        finally:
            await node.close()
        click.echo(f"replica {node.name} stopped at command {seq}")
        return None

    halted = asyncio.run(run())
    if halted:
        click.echo(halted, err=True)
        sys.exit(2)
