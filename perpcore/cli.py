"""The `perpcore` command line: simulate (and, as they land, bench, replay, stress)."""
from __future__ import annotations

import json
import platform

import click
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

import perpcore
from perpcore import simulate as sim


@click.group()
@click.version_option(perpcore.__version__, prog_name="perpcore")
def main():
    """perpcore: an embeddable exchange core for perpetual contracts and margin financing."""


@main.command()
@click.option("--steps", default=100_000, show_default=True, envvar="PERPCORE_SIMULATE_STEPS",
              help="Commands in the session (env PERPCORE_SIMULATE_STEPS).")
@click.option("--seed", default=7, show_default=True, help="Seed of the session's randomness.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def simulate(steps: int, seed: int, as_json: bool):
    """Run a seeded simulated session on the built-in default venue and summarise it."""
    console = Console(stderr=as_json)
    if as_json:
        _, report = sim.run(steps=steps, seed=seed)
        out = {k: v for k, v in vars(report).items()}
        out["commands_per_s"] = round(report.commands_per_s)
        click.echo(json.dumps(out, default=list))
        return
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("simulating", total=steps)
        ex, report = sim.run(steps=steps, seed=seed,
                             progress=lambda i: progress.update(task, completed=i))
    table = Table(title=f"perpcore simulate — seed {seed}, {steps:,} commands")
    table.add_column("symbol")
    table.add_column("trades", justify="right")
    table.add_column("volume", justify="right")
    table.add_column("notional", justify="right")
    table.add_column("best bid × qty", justify="right")
    table.add_column("best ask × qty", justify="right")
    table.add_column("levels bid/ask", justify="right")
    for symbol, (bids, asks) in report.depth.items():
        spec = ex.config.instruments[symbol]
        book = ex.markets[symbol].book
        table.add_row(
            symbol, f"{book.trade_count:,}", f"{spec.from_lots(report.volume_lots[symbol])} {spec.base}",
            f"{float(report.notional[symbol]):,.2f} {spec.settle}",
            f"{spec.from_ticks(bids[0][0])} × {spec.from_lots(bids[0][1])}" if bids else "-",
            f"{spec.from_ticks(asks[0][0])} × {spec.from_lots(asks[0][1])}" if asks else "-",
            f"{book.level_count(0)}/{book.level_count(1)}",
        )
    console.print(table)
    console.print(f"trades {report.trades:,} · rejected {report.rejected:,} · "
                  f"throughput {report.commands_per_s:,.0f} commands/s "
                  f"(Exchange.submit, {platform.python_implementation()} {platform.python_version()})")
    console.print(f"state hash {report.state_hash}")
