"""The venue presets against the venues' own pages: each figure below is copied from the source
named beside it (the text as the page gives it) and turned into perpcore's numbers here, apart
from perpcore.venues; every preset builds, and `perpcore simulate` and `perpcore stress` run on
each through the command line and leave the books balanced."""
import json
from decimal import Decimal
from fractions import Fraction

import pytest
from click.testing import CliRunner

from perpcore import venues
from perpcore.cli import main
from perpcore.config import HOUR_NS, RATE_SCALE
from perpcore.risk import TierTable

PRESETS = ("binance_usdm", "bitmex", "dydx_v4", "hyperliquid")


def pct(text: str) -> int:
    """'0.40%' as a rate at RATE_SCALE."""
    return int(Decimal(text.rstrip("%")) * RATE_SCALE / 100)


def notional(text: str) -> Decimal:
    """'50,000' or '150M' as a Decimal."""
    text = text.replace(",", "")
    return Decimal(text[:-1]) * 10**6 if text.endswith("M") else Decimal(text)


def rows(spec):
    return [(t.max_notional, t.max_leverage, t.maintenance_rate) for t in spec.tiers]


# https://www.binance.com/en/support/announcement/86cf9aa472574b8cb2e05bb751c2a9a6
# "Updates to Leverage and Margin Tiers of Binance Futures Contracts (2021-03-18)", BTCUSDT 125x
BINANCE_BTCUSDT_PAGE = """\
0 < Position ≤ 50,000|125x|0.40%|0.80%
50,000 < Position ≤ 250,000|100x|0.50%|1.00%
250,000 < Position ≤ 1,000,000|50x|1.00%|2.00%
1,000,000 < Position ≤ 10,000,000|20x|2.50%|5.00%
10,000,000 < Position ≤ 20,000,000|10x|5.00%|10.00%
20,000,000 < Position ≤ 50,000,000|5x|10.00%|20.00%
50,000,000 < Position ≤ 100,000,000|4x|12.50%|25.00%
100,000,000 < Position ≤ 200,000,000|3x|15.00%|33.30%
200,000,000 < Position ≤ 300,000,000|2x|25.00%|50.00%
300,000,000 < Position ≤ 500,000,000|1x|50.00%|100.00%"""


def test_binance_btcusdt_tiers_are_the_published_table():
    cfg = venues.binance_usdm()
    spec = cfg.instruments["BTCUSDT"]
    expected = []
    for line in BINANCE_BTCUSDT_PAGE.splitlines():
        position, leverage, maintenance, initial = line.split("|")
        lev = int(leverage.rstrip("x"))
        expected.append((notional(position.split("≤")[1].strip()), lev, pct(maintenance)))
        # the page's initial margin is 1 / leverage (33.30% for 3x, rounded on the page)
        assert abs(Fraction(pct(initial), RATE_SCALE) - Fraction(1, lev)) < Fraction(1, 1000)
    assert rows(spec) == expected
    # perpcore's continuous maintenance (notional x rate - amount) is the page's formula: at the
    # top of tier 2, 250,000 x 0.50% - 50,000 x (0.50% - 0.40%) = 1,250 - 50 = 1,200 USDT
    assert TierTable(spec, cfg).maintenance(250_000 * 10**6) == 1_200 * 10**6


def test_binance_fees_funding_and_grid():
    cfg = venues.binance_usdm()
    assert cfg.settlement_asset == "USDT"
    for symbol, tick in (("BTCUSDT", "0.1"), ("ETHUSDT", "0.01")):
        spec = cfg.instruments[symbol]
        assert (spec.maker_fee, spec.taker_fee) == (pct("0.02%"), pct("0.05%"))
        assert (spec.tick_size, spec.lot_size) == (Decimal(tick), Decimal("0.001"))
        p = spec.pricing
        assert p.mark_method == "binance" and p.funding_interval_ns == 8 * HOUR_NS
        assert (p.interest_rate, p.funding_clamp) == (pct("0.01%"), pct("0.05%"))
        assert p.impact_margin == Decimal(200) and p.premium_sample_ns == 5 * 10**9
        assert spec.default_leverage == 20         # "it will be set at 20x by default"


# https://www.bitmex.com/app/riskLimitsExamples: "At each step, the maintenance and initial
# margin are raised by the base maintenance margin ... with XBTUSD the base maintenance and
# initial margin are 0.50% and 1.00% respectively"; risk step 150 XBT (31 August 2021), base risk
# limit 200 XBT; at 65,000 USDT per XBT: 13,000,000 and 9,750,000 USDT
def test_bitmex_risk_limit_steps():
    spec = venues.bitmex().instruments["XBTUSDT"]
    assert rows(spec)[:4] == [
        (Decimal(13_000_000), 100, pct("0.50%")),      # base: 1.00% initial
        (Decimal(22_750_000), 66, pct("1.00%")),       # 1.50% initial: 66.7x, rounded down
        (Decimal(32_500_000), 50, pct("1.50%")),       # 2.00%
        (Decimal(42_250_000), 40, pct("2.00%")),       # 2.50%
    ]
    eth = venues.bitmex().instruments["ETHUSDT"]       # ETHUSD base 2.00% / 0.80% (5 May 2020)
    assert rows(eth)[:2] == [(Decimal(3_250_000), 50, pct("0.80%")),
                             (Decimal(9_750_000), 35, pct("1.60%"))]     # 2.80% initial


def test_bitmex_fees_funding_mark():
    cfg = venues.bitmex()
    # "the BitMEX Taker Fee has been lowered ... to 5bps (0.05%) ... the Maker Rebate has been
    # adjusted ... to 1bp (0.01%)"
    for spec in cfg.instruments.values():
        assert (spec.maker_fee, spec.taker_fee) == (-pct("0.01%"), pct("0.05%"))
        assert spec.pricing.mark_method == "bitmex"
        assert spec.pricing.funding_interval_ns == 8 * HOUR_NS    # 04:00, 12:00, 20:00 UTC
        assert spec.pricing.premium_sample_ns == 60 * 10**9       # minute samples
    # 75% x (initial - maintenance): 0.75 x (1.00% - 0.50%), 0.75 x (2.00% - 0.80%)
    assert cfg.instruments["XBTUSDT"].pricing.funding_cap == pct("0.375%")
    assert cfg.instruments["ETHUSDT"].pricing.funding_cap == pct("0.90%")


# https://docs.dydx.community/dydx-unlimited/modules/governance/governance-adjustable-parameters/markets
# liquidity tier 0: initial_margin_ppm "20000 [0.02]", maintenance_fraction_ppm "600000 [0.6]",
# impact notional "10000000000 [10,000 USDC]"; fee tier 0: maker "100 [1.0]", taker "500 [5.0]"
def test_dydx_margin_fractions_funding_and_fees():
    cfg = venues.dydx_v4()
    imf = Fraction(20000, 10**6)
    mmf = imf * Fraction(600000, 10**6)
    assert cfg.settlement_asset == "USDC" and not cfg.margin.haircuts
    for symbol in ("BTC-USD", "ETH-USD"):
        spec = cfg.instruments[symbol]
        [(_, leverage, maintenance)] = rows(spec)
        assert leverage == 1 / imf == 50
        assert Fraction(maintenance, RATE_SCALE) == mmf == Fraction(12, 1000)
        assert (spec.maker_fee, spec.taker_fee) == (100 * RATE_SCALE // 10**6,
                                                    500 * RATE_SCALE // 10**6)
        p = spec.pricing
        assert p.impact_notional == Decimal(10_000)      # as set (500 USDC / IMF at 5%)
        assert p.mark_method == "bitmex"      # the oracle price: perpcore's nearest method
        assert p.funding_interval_ns == HOUR_NS
        # the cap: 600% x (IMF - MMF) per 8 hours, paid hourly
        assert Fraction(p.funding_cap, RATE_SCALE) == 6 * (imf - mmf) / 8


# https://hyperliquid.gitbook.io/hyperliquid-docs/trading/margin-tiers: "BTC 0-150M 40 >150M 20;
# ETH 0-100M 25 >100M 15"; "maintenance_margin_rate(tier = n) = (Initial Margin Rate at Maximum
# leverage at tier n) / 2. For example, at 20x max leverage, maintenance_margin_rate = 2.5%"
HYPERLIQUID_PAGE = {"BTC": (("0-150M", 40), (">150M", 20)), "ETH": (("0-100M", 25), (">100M", 15))}


def test_hyperliquid_tiers_are_half_the_initial_margin():
    cfg = venues.hyperliquid()
    for symbol, page in HYPERLIQUID_PAGE.items():
        spec = cfg.instruments[symbol]
        got = rows(spec)
        assert [lev for _, lev, _ in got] == [lev for _, lev in page]
        assert got[0][0] == notional(page[0][0].split("-")[1])
        for (_, lev, mmr) in got:
            # half of 1 / leverage, rounded up to perpcore's 1e-8 at most
            assert 0 <= Fraction(mmr, RATE_SCALE) - Fraction(1, 2 * lev) < Fraction(1, RATE_SCALE)
    assert rows(cfg.instruments["BTC"])[1][2] == pct("2.5%")       # the page's 20x example


def test_hyperliquid_fees_and_funding():
    cfg = venues.hyperliquid()
    for spec in cfg.instruments.values():
        # base tier: "Perpetuals | 4.5 bps (0.045%) | 1.5 bps (0.015%)"
        assert (spec.taker_fee, spec.maker_fee) == (pct("0.045%"), pct("0.015%"))
        p = spec.pricing
        assert p.mark_method == "hyperliquid" and p.funding_interval_ns == HOUR_NS
        assert p.funding_cap == pct("4%")                               # "Cap: 4% per hour"
        # "0.01% every 8 hours ... approximately 0.00125% per hour"
        assert p.scaled(p.interest_rate) == pct("0.00125%")
        assert p.impact_notional == Decimal(20_000) and spec.liquidation_fee == 0
    assert cfg.instruments["BTC"].lot_size == Decimal("0.00001")       # szDecimals 5


@pytest.mark.parametrize("name", list(venues.VENUES))
def test_every_preset_builds_with_a_btc_and_an_eth_perpetual(name):
    cfg = venues.venue(name)
    assert sorted(spec.base for spec in cfg.instruments.values()) == ["BTC", "ETH"]
    for symbol, spec in cfg.instruments.items():
        assert cfg.units_per_ticklot(symbol) >= 1
        assert spec.max_qty * spec.max_price * cfg.units_per_ticklot(symbol) < 2**63
        assert spec.to_ticks("65000" if spec.base == "BTC" else "3400") > 0


def test_an_unknown_preset_names_the_presets():
    with pytest.raises(ValueError, match="unknown venue 'nope': the presets are default, "
                                         "binance_usdm, bitmex, dydx_v4, hyperliquid"):
        venues.venue("nope")


# ---- through the command line ------------------------------------------------------------------

def invoke(*args):
    result = CliRunner().invoke(main, list(args))
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.mark.parametrize("name", PRESETS)
def test_simulate_and_stress_run_audit_clean_on_every_preset(name, tmp_path):
    cfg = venues.venue(name)
    out = invoke("simulate", "--venue", name, "--steps", "6000", "--json")
    assert out["audit_ok"] and out["trades"] > 1000 and out["liquidations"] > 0
    assert sorted(out["volume_lots"]) == sorted(cfg.instruments)
    default = invoke("simulate", "--steps", "6000", "--json")
    assert out["state_hash"] != default["state_hash"]
    # the shocks' audit is checked in each (perpcore.stress.apply_shock): a run that ends is clean
    report = invoke("stress", "--venue", name, "--accounts", "150", "--shocks", "-30:-30:1",
                    "--flash", "0", "--out", str(tmp_path), "--json")
    [shock] = report["shocks"]
    assert report["currency"] == cfg.settlement_asset and shock["liquidated"] > 0
    assert list(tmp_path.glob(f"*-{name}.json"))        # the preset's own output files


def test_venue_and_config_exclude_each_other():
    result = CliRunner().invoke(main, ["simulate", "--venue", "bitmex", "--config",
                                       "docs/venue.toml"])
    assert result.exit_code == 2 and "give --config FILE or --venue NAME, not both" in \
        result.output
    result = CliRunner().invoke(main, ["stress", "--venue", "kraken"])
    assert result.exit_code == 2
    assert "'kraken' is not one of 'default', 'binance_usdm', 'bitmex'" in result.output
