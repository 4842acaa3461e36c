"""perpcore compare: the same flow under several presets. Each venue is fed every command of the
flow, re-expressed on its own grid and nothing else changed; the reference venue replays the flow
exactly; the JSON is the same on every run; the table and the chart are produced; a journal's
commands compare too; bad venue names and a journal of another venue are refused, saying why."""
import json
from decimal import Decimal

import msgspec
import pytest
from click.testing import CliRunner

from perpcore import Exchange
from perpcore import compare as cp
from perpcore import messages as m
from perpcore import venues
from perpcore.cli import main
from test_journal import journaled, session_commands

PRESETS = cp.PRESETS


@pytest.fixture(scope="module")
def flow():
    return cp.simulated(steps=4000, seed=3)


@pytest.mark.parametrize("name", PRESETS)
def test_each_venue_gets_the_same_flow_on_its_own_grid(flow, name):
    ref, cfg = flow.reference, venues.venue(name)
    translate = cp.Translator(ref, cfg)
    for cmd in flow.commands:
        out = translate(cmd)
        assert type(out) is type(cmd)
        changed = {f for f in cmd.__struct_fields__ if getattr(cmd, f) != getattr(out, f)}
        assert changed <= {"symbol", "price", "qty", "asset", "amount", "trigger_price"}
        if hasattr(cmd, "symbol") and cmd.symbol:
            spec, mine = ref.instruments[cmd.symbol], cfg.instruments[out.symbol]
            assert mine.base == spec.base
            if hasattr(cmd, "qty"):         # the presets' lots divide the reference's
                assert mine.from_lots(out.qty) == spec.from_lots(cmd.qty)
            if getattr(cmd, "price", 0):
                want, got = spec.from_ticks(cmd.price), mine.from_ticks(out.price)
                assert abs(got - want) < mine.tick_size
                if type(cmd) is m.PlaceOrder:       # never more aggressive than the reference
                    assert (got <= want) if cmd.side == m.Side.BUY else (got >= want)
                else:
                    assert abs(got - want) <= mine.tick_size / 2
        if hasattr(cmd, "asset"):
            if cmd.asset == ref.settlement_asset:
                assert out.asset == cfg.settlement_asset
                assert cfg.assets[out.asset].from_units(out.amount) == \
                    ref.assets[cmd.asset].from_units(cmd.amount)
            else:
                assert out.asset == cmd.asset


def test_the_reference_venue_replays_the_flow_exactly(flow):
    result = cp.run_venue(flow, "default")
    ex = Exchange(flow.reference)
    for cmd in flow.commands:
        ex.submit(cmd)
    assert result.state_hash == ex.state_hash()
    assert Decimal(result.fund_end) == flow.reference.assets["USD"].from_units(
        ex.insurance_fund("USD"))


def test_the_funding_tail_settles_every_venue(flow):
    result = cp.compare(flow, ("bitmex", "hyperliquid"))
    eight_hourly, hourly = result.venues
    assert eight_hourly.funding_settlements == 2                # BTC and ETH, once
    assert hourly.funding_settlements == 2 * cp.FUNDING_HOURS
    for r in result.venues:
        # every sweep completed: what the payers paid is what the receivers got and the fund kept
        assert Decimal(r.funding_paid) == Decimal(r.funding_received) + Decimal(r.funding_to_fund)
        assert Decimal(r.funding_paid) > 0 and r.audit_ok
        assert len(r.fund_path) == cp.FUND_POINTS


def compare_json(*args):
    result = CliRunner().invoke(main, ["compare", *args, "--json"])
    assert result.exit_code == 0, result.output
    return result.stdout


def test_the_json_is_the_same_on_every_run_and_holds_no_wall_time():
    args = ("simulate", "--steps", "3000", "--seed", "5", "--venues", "binance_usdm,dydx_v4")
    first = compare_json(*args)
    assert compare_json(*args) == first
    out = json.loads(first)
    assert [v["venue"] for v in out["venues"]] == ["binance_usdm", "dydx_v4"]
    assert not any("elapsed" in key or "_s" == key[-2:] for v in out["venues"] for key in v)
    assert all(v["audit_ok"] and v["liquidated_accounts"] > 0 for v in out["venues"])
    # dYdX takes only USDC: the takers' BTC and ETH deposits are refused there
    binance, dydx = out["venues"]
    assert dydx["rejected"] > binance["rejected"]


def test_a_stress_path_compares_with_a_table_and_a_chart(tmp_path):
    chart = tmp_path / "compare.png"
    result = CliRunner().invoke(main, ["compare", "stress", "--accounts", "200", "--shock", "-25",
                                       "--venues", ",".join(PRESETS), "--chart", str(chart)])
    assert result.exit_code == 0, result.output
    for text in (*PRESETS, "accounts liquidated", "insurance fund end", "ADL positions",
                 "funding paid", "XBTUSDT", "BTC-USD"):
        assert text in result.output
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and chart.stat().st_size > 20_000


def test_a_journal_compares_from_its_commands(tmp_path):
    cmds = session_commands(seed=11, steps=1500)
    journaled(tmp_path / "j.seg", cmds)
    out = json.loads(compare_json("journal", str(tmp_path / "j.seg"), "--venues",
                                  "default,hyperliquid"))
    assert out["commands"] == len(cmds)
    default, hyper = out["venues"]
    ex = Exchange(venues.venue("default"))
    for cmd in cmds:
        ex.submit(cmd)
    assert default["state_hash"] == ex.state_hash()
    assert hyper["currency"] == "USDC" and hyper["trades"] > 0 and hyper["audit_ok"]
    # written under the built-in venue, not BitMEX's: refused, saying so
    result = CliRunner().invoke(main, ["compare", "journal", str(tmp_path / "j.seg"), "--venue",
                                       "bitmex"])
    assert result.exit_code == 1 and "written under another venue config" in result.output


@pytest.mark.parametrize("names, says", [
    ("binance_usdm,nope", "unknown venue 'nope': the presets are default, binance_usdm, bitmex, "
                          "dydx_v4, hyperliquid"),
    ("bitmex,bitmex", "a venue is named twice"),
    (",", "no venue named"),
])
def test_bad_venue_names_are_refused(names, says):
    result = CliRunner().invoke(main, ["compare", "simulate", "--steps", "10", "--venues", names])
    assert result.exit_code == 2 and says in result.output, result.output


def test_a_chart_must_be_a_png():
    result = CliRunner().invoke(main, ["compare", "simulate", "--steps", "10", "--chart", "x.svg"])
    assert result.exit_code == 2 and "'x.svg' is not a .png file" in result.output


def test_a_command_of_a_symbol_the_venue_lacks_is_passed_on_to_be_refused():
    ref = venues.venue("default")
    one = msgspec.structs.replace(
        ref, instruments={"BTC-PERP": ref.instruments["BTC-PERP"]},
        margin=msgspec.structs.replace(ref.margin, haircuts={"BTC": 5_000_000}))
    translate = cp.Translator(ref, one)
    cmd = m.PlaceOrder(account=1, symbol="ETH-PERP", side=m.Side.BUY, qty=3, price=34_000)
    assert translate(cmd) == cmd


def test_venues_fanned_out_on_dask_give_the_sequential_json(flow):
    pytest.importorskip("distributed")
    from perpcore import fanout
    with fanout.pool(workers=1) as pool:
        spread = cp.compare(flow, ("bitmex", "hyperliquid"), pool=pool)
    assert spread.to_json() == cp.compare(flow, ("bitmex", "hyperliquid")).to_json()


def test_a_store_directory_compares_from_its_journal(tmp_path):
    from test_replay import make_store
    cmds = session_commands(seed=12, steps=800)
    make_store(tmp_path / "store", cmds, checkpoints={400})
    out = json.loads(compare_json("journal", str(tmp_path / "store"), "--venues", "default"))
    ex = Exchange(venues.venue("default"))
    for cmd in cmds:
        ex.submit(cmd)
    assert out["commands"] == len(cmds) and out["venues"][0]["state_hash"] == ex.state_hash()


def test_a_flash_crash_goes_down_and_back_and_a_zero_shock_is_refused():
    flow = cp.stressed(accounts=60, shock=-20, flash=True, path_steps=4)
    assert "shock flash -20%" in flow.source
    moves = [cmd.price for cmd in flow.commands if type(cmd) is m.SetIndexPrice
             and cmd.source == "index" and cmd.symbol == "BTC-PERP"]
    start = moves[0]
    shocked = moves[-(2 * 4) - cp.FUNDING_HOURS:-cp.FUNDING_HOURS]   # the path, then the tail
    assert min(shocked) == start * 80 // 100 and shocked[-1] == start
    result = CliRunner().invoke(main, ["compare", "stress", "--shock", "0"])
    assert result.exit_code == 2 and "a shock of 0% moves nothing" in result.output


def test_a_stress_flows_fund_path_follows_the_shock_not_the_set_up():
    flow = cp.stressed(accounts=60, shock=-20, path_steps=4)
    # the set-up builds the population and funds the insurance fund; the shock's index moves
    # follow it (one per symbol and step), then the funding tail (index refreshes, the clock)
    shock = flow.commands[flow.watched_from:flow.watched_from + 2 * 4]
    assert all(type(cmd) is m.SetIndexPrice for cmd in shock)
    assert {type(cmd) for cmd in flow.commands[flow.watched_from:]} == \
        {m.SetIndexPrice, m.AdvanceClock}
    assert type(flow.commands[flow.watched_from - 1]) is not m.SetIndexPrice
    assert 0 < flow.watched_from < len(flow.commands) - 2 * 4
    points = cp.fund_points(flow.watched_from, len(flow.commands))
    assert len(points) == cp.FUND_POINTS and points[-1] == len(flow.commands)
    assert flow.watched_from <= points[0] and points == sorted(points)
    result = cp.compare(flow, ("bitmex",))
    [venue] = result.venues
    # sampled from the shock on: the fund is already funded at the first point
    assert Decimal(venue.fund_path[0]) > 0
    assert result.to_json()["fund_points"] == points


def test_a_flow_shorter_than_the_fund_points_still_gives_every_point():
    flow = cp.stressed(accounts=60, shock=-20, path_steps=4)
    points = cp.fund_points(flow.watched_from, len(flow.commands))
    assert len(set(points)) < cp.FUND_POINTS        # fewer watched commands than points
    [venue] = cp.compare(flow, ("bitmex",)).venues
    assert len(venue.fund_path) == cp.FUND_POINTS
    # each point holds the fund after its own command: the last is the fund at the end
    assert venue.fund_path[-1] == venue.fund_end
    at = {}
    for point, fund in zip(points, venue.fund_path):
        assert at.setdefault(point, fund) == fund     # one command, one figure
