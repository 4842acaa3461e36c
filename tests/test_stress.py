"""Stress testing: the shock paths, one shock on a hand-built venue (hand-computed figures), a
generated population (deterministic, with the leverage it promises), the report on it, and the
`perpcore stress` command's table, chart and JSON."""
import json
import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import msgspec
import pytest
from click.testing import CliRunner

from perpcore import stress
from perpcore.cli import main
from perpcore.config import default_config
from perpcore.messages import FundReason, Side

from liquidation_venue import BTC, Venue


def test_shock_paths():
    paths = dict(stress.shock_paths(-40, 40, 5, steps=8, flash=-30))
    assert len(paths) == 17                   # 16 moves (no 0%) and the flash crash
    assert paths["-40%"] == [-500, -1000, -1500, -2000, -2500, -3000, -3500, -4000]
    assert paths["+5%"][-1] == 500 and len(paths["+5%"]) == 8
    flash = paths["flash -30%"]
    assert min(flash) == -3000 and flash[-1] == 0 and flash[:8] == paths["-30%"]
    assert "flash" not in " ".join(dict(stress.shock_paths(-10, 10, 10, flash=None)))


def test_one_shock_by_hand():
    """The fund-covered loss of the scenario tests, as a shock: long 1 BTC on 9,967.50, bankrupt at
    55,032.5; the index falls 15.7% to 54,795, one bid at 54,500; the fund (1,000) pays 532.50."""
    v = Venue()
    v.account(1, 10_000)
    v.account(2, 1_000_000)
    v.account(3, 1_000_000)
    v.fund(1_000)
    v.price(BTC, 650000)
    v.trade(2, 1, BTC, Side.BUY, 1000, 650000)
    v.order(3, BTC, Side.BUY, 1000, 545000)
    r = stress.apply_shock(v.ex.config, v.ex.snapshot(), "-15.7%", [-1570])
    assert (r.liquidated, r.liquidations, r.steps, r.adl_count) == (1, 1, 1, 0)
    assert r.closed_lots == {BTC: 1000, "ETH-PERP": 0}
    assert Decimal(r.closed_notional) == 54_500
    assert Decimal(r.fund_start) == 1000 and Decimal(r.fund_end) == Decimal("467.5")
    assert Decimal(r.fund_drawdown) == Decimal("532.5") and Decimal(r.socialized) == 0
    # the state it started from is untouched: shocks restore their own copy
    assert v.size(1, BTC) == 1000


@pytest.fixture(scope="module")
def small():
    return stress.population(accounts=150, seed=3)


def test_population_is_deterministic_and_levered(small):
    again = stress.population(accounts=150, seed=3)
    assert again.state_hash() == small.state_hash()
    assert stress.population(accounts=150, seed=4).state_hash() != small.state_hash()
    holders, lev = stress._leverage(small)
    assert holders >= 140                      # nearly every trader opened its position
    assert 1.5 < lev["median"] < 12 and lev["p90"] > 8 and lev["max"] <= 125
    assert small.insurance_fund("USD") > 0 and small.audit().ok
    bids, asks = small.book(BTC).depth(100)
    assert len(bids) == len(asks) == 40        # the makers' ladder, 0.25% apart


def test_report_on_a_population(small):
    paths = stress.shock_paths(-30, 30, 60, steps=4, flash=-30)
    report = stress.run(small, "150 accounts", paths)
    by_name = {r.name: r for r in report.shocks}
    assert set(by_name) == {"-30%", "+30%", "flash -30%"}
    for r in report.shocks:
        assert r.liquidated > 0 and Decimal(r.fund_end) >= 0
        assert Decimal(r.fund_drawdown) >= 0 and Decimal(r.closed_notional) > 0
    # the crash liquidates the longs it reaches whether or not the price comes back
    assert by_name["flash -30%"].liquidated >= by_name["-30%"].liquidated
    assert report.accounts >= 140 and Decimal(report.open_interest) > 0
    # the same state and paths give the same figures
    again = stress.run(small, "150 accounts", paths)
    def strip(results):
        return [{**vars(r), "elapsed_s": 0} for r in results]

    assert strip(again.shocks) == strip(report.shocks)


def test_stress_command_writes_the_table_chart_and_json(tmp_path):
    result = CliRunner().invoke(main, ["stress", "--accounts", "120", "--shocks=-20:20:20",
                                       "--flash", "-20", "--path-steps", "4",
                                       "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    for text in ("-20%", "+20%", "flash -20%", "liquidated", "fund drawdown", "ADL",
                 "socialised", "effective leverage"):
        assert text in result.output
    png = tmp_path / "stress-120-seed1-shocks-20to20by20-flash-20-steps4.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    data = json.loads(png.with_suffix(".json").read_text())
    assert [s["name"] for s in data["shocks"]] == ["-20%", "+20%", "flash -20%"]
    result = CliRunner().invoke(main, ["stress", "--accounts", "120", "--shocks=-20:20:40",
                                       "--flash", "0", "--out", str(tmp_path), "--json"])
    assert result.exit_code == 0
    assert [s["name"] for s in json.loads(result.stdout)["shocks"]] == ["-20%", "+20%"]


def test_the_simulated_session_as_the_venue_state():
    ex = stress.from_simulation(steps=2_000, seed=4)
    # the session without its crash: the fund holds its seed and nothing else happened to it
    assert [e.reason for e in ex.liquidation.fund_history()] == [FundReason.DEPOSIT]
    report = stress.run(ex, "session", stress.shock_paths(-30, -30, 10, steps=4, flash=None))
    [shock] = report.shocks
    assert report.accounts > 0 and shock.liquidated > 0
    assert Decimal(shock.fund_end) >= 0


def _within_risk_limits(ex) -> None:
    """Every position of the venue within the notional its leverage allows (its tier)."""
    for account in ex.accounts():
        for p in ex.account(account).positions:
            cap = ex.margin.symbols[p.symbol].tiers.max_notional(p.leverage)
            assert p.notional <= cap, (account, p)


def test_a_large_population_is_built_within_the_venues_rules():
    """10,000 traders used to push the ten makers past their risk limit at 20x (the set-up was
    refused): the makers trade at their last tier's leverage, within 80% of its limit."""
    ex = stress.population(accounts=10_000, seed=1)
    holders, _ = stress._leverage(ex)
    assert holders >= 9_900 and ex.audit().ok
    _within_risk_limits(ex)


def test_makers_join_when_the_venues_risk_limits_are_small():
    """On a venue whose largest BTC position is 2,000,000, more makers take the traders' other
    side, each within its limit."""
    cfg = default_config()
    btc = cfg.instruments[BTC]
    small = tuple(msgspec.structs.replace(t, max_notional=t.max_notional / 25) for t in btc.tiers)
    cfg = msgspec.structs.replace(cfg, instruments={
        **cfg.instruments, BTC: msgspec.structs.replace(btc, tiers=small)})
    ex = stress.population(accounts=2_000, seed=2, config=cfg)
    makers = [a for a in ex.accounts() if a < stress.FIRST_TRADER]
    assert len(makers) > stress.MAKERS
    _within_risk_limits(ex)
    assert stress._leverage(ex)[0] >= 1_950


def test_stress_on_twenty_thousand_accounts_as_a_process(tmp_path):
    done = subprocess.run(
        [sys.executable, "-c", "from perpcore.cli import main; main()", "stress",
         "--accounts", "20000", "--shocks=-10:-10:1", "--flash", "0", "--path-steps", "2",
         "--out", str(tmp_path), "--json"],
        env={**os.environ, "PYTHONPATH": str(Path(stress.__file__).parents[1])},
        capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["accounts"] >= 19_800 and report["shocks"][0]["liquidated"] > 0


# ---- the report a risk officer reads: the waterfall, its reasons, units, HTML ------------------

def _long_and_fund(fund: int) -> Venue:
    """Account 1 long 1 BTC from 65,000 on 10,000 (bankrupt at 55,032.5) against account 2's
    short, and an insurance fund of `fund`."""
    v = Venue()
    v.account(1, 10_000)
    v.account(2, 1_000_000)
    v.account(3, 1_000_000)
    v.fund(fund)
    v.price(BTC, 650000)
    v.trade(2, 1, BTC, Side.BUY, 1000, 650000)
    return v


def test_adl_with_a_rich_fund_is_explained_by_the_empty_book():
    """No bid within the 5% band: the fund, however rich, cannot sell the position, so it is
    deleveraged against the short, and the fund never moves."""
    v = _long_and_fund(1_000_000)
    r = stress.apply_shock(v.ex.config, v.ex.snapshot(), "-15.7%", [-1570])
    assert (r.liquidated, r.adl_count, r.adl_causes) == (1, 1, {"book": 1})
    assert Decimal(r.fund_drawdown) == 0 and Decimal(r.fund_covered) == 0
    assert Decimal(r.book_notional) == Decimal(r.fund_notional) == 0
    assert Decimal(r.adl_notional) == Decimal("55032.5")
    # the short gave up its profit between the bankruptcy price and the mark (54,795)
    assert Decimal(r.adl_forgone) == Decimal("237.5")
    assert "1 steps because the book held no more orders between its bankruptcy price and 5% " \
           "from the mark" in r.explanation
    assert "the fund never fell: deleveraging was not for want of money" in r.explanation
    assert stress.why(r) == "book ran out; ADL ×1: book empty within the band; fund never fell"


def test_adl_past_a_poor_fund_is_explained_by_the_fund():
    """A bid at 53,000 inside the band, but the fund of 100 can carry 100 of loss per BTC (down
    to 54,932.5): it takes nothing over and the position is deleveraged."""
    v = _long_and_fund(100)
    v.order(3, BTC, Side.BUY, 1000, 530000)
    r = stress.apply_shock(v.ex.config, v.ex.snapshot(), "-15.7%", [-1570])
    assert r.adl_causes == {"fund": 1}
    assert "because the insurance fund could not carry a larger loss" in r.explanation


def test_the_waterfall_of_a_covered_loss():
    """The hand-computed fund-covered loss: no ADL, the fund pays 532.50."""
    v = _long_and_fund(1_000)
    v.order(3, BTC, Side.BUY, 1000, 545000)
    r = stress.apply_shock(v.ex.config, v.ex.snapshot(), "-15.7%", [-1570])
    assert Decimal(r.fund_notional) == 54_500 and Decimal(r.fund_covered) == Decimal("532.5")
    assert (r.adl_count, r.adl_causes, r.book_exhausted) == (0, {}, ["BTC-PERP bids"])
    assert "the fund took over 54,500.00 and covered 532.50 of losses" in r.explanation


def test_the_chart_has_units_says_when_a_panel_is_zero_and_marks_the_exhausted_book(small):
    report = stress.run(small, "150 accounts", stress.shock_paths(-30, 5, 35, steps=4,
                                                                  flash=None))
    assert [bool(r.book_exhausted) for r in report.shocks] == [True, False]
    fig = stress.figure(report)
    axes = fig.axes
    assert all(ax.get_ylabel() in ("accounts", "positions", "USD") for ax in axes)
    assert {ax.get_xlabel() for ax in axes[-2:]} == {"shock (index move)"}
    social = next(ax for ax in axes if ax.get_title() == "socialised loss")
    assert [t.get_text() for t in social.texts] == ["zero in every shock (socialised loss)"]
    volume = next(ax for ax in axes if ax.get_title().startswith("volume closed"))
    assert [bar.get_hatch() for bar in volume.patches] == ["//", None]
    assert "book exhausted" in volume.get_legend().get_texts()[0].get_text()


def test_the_stress_command_writes_a_self_contained_html_page(tmp_path):
    result = CliRunner().invoke(main, ["stress", "--accounts", "120", "--shocks=-20:-20:1",
                                       "--flash", "0", "--path-steps", "4",
                                       "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    for text in ("volume closed (USD)", "loss waterfall per shock (USD)", "fund covered",
                 "why", "* the book ran out of orders"):
        assert text in result.output
    page = (tmp_path / "stress-120-seed1-shocks-20to-20by1-flash0-steps4.html").read_text()
    assert '<img alt="the stress report\'s chart" src="data:image/png;base64,' in page
    assert "http" not in page.replace("<!DOCTYPE html>", "")   # nothing fetched from elsewhere
    data = json.loads((tmp_path / "stress-120-seed1-shocks-20to-20by1-flash0-steps4.json")
                      .read_text())
    [shock] = data["shocks"]
    assert shock["explanation"] in page.replace("&#x27;", "'")
    assert {"book_notional", "surplus_to_fund", "fund_covered", "adl_forgone",
            "adl_causes", "book_exhausted"} <= set(shock)
