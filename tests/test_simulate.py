import pytest
from click.testing import CliRunner

from perpcore import simulate
from perpcore.cli import main
from perpcore.venues import VENUES, venue


@pytest.mark.parametrize("name", list(VENUES))
def test_session_is_deterministic_by_seed_and_trades(name):
    _, a = simulate.run(steps=3_000, seed=3, config=venue(name))
    _, b = simulate.run(steps=3_000, seed=3, config=venue(name))
    _, c = simulate.run(steps=3_000, seed=4, config=venue(name))
    assert a.state_hash == b.state_hash and a.trades == b.trades
    assert a.state_hash != c.state_hash
    assert a.trades > 100
    assert all(v > 0 for v in a.volume_lots.values())
    assert a.rejected < a.commands * 0.01


def test_both_sides_of_both_books_are_quoted():
    ex, report = simulate.run(steps=3_000, seed=5)
    for symbol, (bids, asks) in report.depth.items():
        assert bids and asks, symbol
        assert bids[0][0] < asks[0][0]


def test_the_session_keeps_the_books_balanced_and_reports_margin_figures():
    ex, report = simulate.run(steps=3_000, seed=5)
    assert report.audit_ok and ex.audit().ok
    assert report.fees == str(ex.config.assets["USD"].from_units(ex.audit()["USD"].fee_account))
    for symbol, oi in report.open_interest.items():
        longs = sum(size for _, size in ex.margin.open_positions(symbol) if size > 0)
        shorts = -sum(size for _, size in ex.margin.open_positions(symbol) if size < 0)
        assert longs == shorts > 0 and oi == str(ex.config.instruments[symbol].from_lots(longs))


def test_simulate_command_prints_a_summary():
    result = CliRunner().invoke(main, ["simulate", "--steps", "2000", "--seed", "1"])
    assert result.exit_code == 0, result.output
    assert "BTC-PERP" in result.output and "commands/s" in result.output
    assert "state hash" in result.output and "audit balanced" in result.output


def test_simulate_json():
    import json
    result = CliRunner().invoke(main, ["simulate", "--steps", "1000", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["commands"] == 1000 and data["trades"] > 0


def test_the_crash_liquidates_punters_and_puts_the_fund_and_adl_to_work():
    ex, report = simulate.run(steps=3_000, seed=4)
    assert report.liquidated_accounts > 0 and report.auto_deleveraged > 0
    fund = report.insurance_fund
    assert float(fund["end"]) > float(fund["start"]) and float(fund["paid_in"]) > 0
    assert ex.audit().ok
    _, calm = simulate.run(steps=3_000, seed=4, crash=False)
    assert calm.liquidations == 0 and calm.insurance_fund["end"] == calm.insurance_fund["start"]


def test_simulate_summary_shows_the_crash():
    result = CliRunner().invoke(main, ["simulate", "--steps", "2000", "--seed", "4"])
    assert result.exit_code == 0, result.output
    assert "accounts liquidated" in result.output and "auto-deleveraged" in result.output
    assert "insurance fund" in result.output and "socialised loss" in result.output
