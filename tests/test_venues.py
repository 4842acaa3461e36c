"""The venue presets against the venues' own pages: each figure below is copied from the source
named beside it (the text as the page gives it) and turned into perpcore's numbers here, apart
from perpcore.venues; every preset builds, and `perpcore simulate` and `perpcore stress` run on
each through the command line and leave the books balanced."""
import json
from decimal import Decimal
from fractions import Fraction

import pytest
from click.testing import CliRunner

from perpcore import Exchange, venues
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


def engine_caps(cfg) -> dict[str, int]:
    """The funding cap per interval each instrument's pricing layer applies."""
    return {s: p.cap for s, p in Exchange(cfg).components["pricing"].symbols.items()}


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
        # F = [P + clamp(I - P, +-0.05%)] x N/8 since September 2025; a short opened at the
        # assuming price
        assert p.funding_scaling == "whole_rate" and p.premium_average == "time_weighted"
        assert spec.sell_order_margin == "assuming_price"
    # multi-assets mode; the margin ratio liquidates on reaching 100%; Binance Loans: "If it
    # reaches or goes beyond the Liquidation LTV ... the liquidation process", the rest returned
    assert cfg.margin.multi_assets and cfg.margin.maintenance_trigger_at == "reaching"
    assert (cfg.margin.trigger_at, cfg.margin.loan_liquidation) == ("reaching", "repay_in_full")
    # funding cap 0.75 x the first tier's maintenance rate: 0.75 x 0.40% for BTCUSDT
    assert engine_caps(cfg)["BTCUSDT"] == pct("0.30%")


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
        # a plain mean of minute samples; the rate paid is the one fixed at the previous time
        assert (spec.pricing.premium_average, spec.pricing.funding_rate_window) == \
            ("plain", "previous")
    # 75% x (initial - maintenance): 0.75 x (1.00% - 0.50%), 0.75 x (2.00% - 0.80%)
    assert engine_caps(cfg) == {"XBTUSDT": pct("0.375%"), "ETHUSDT": pct("0.90%")}


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
        # marked and funded at the oracle price; an 8-hour rate, 1/8 of it paid every hour
        assert (p.mark_method, p.funding_price) == ("index", "index")
        assert p.funding_interval_ns == HOUR_NS and p.funding_scaling == "whole_rate"
        # "If a trader's margin fraction exceeds the maintenance margin fraction ..."
        assert cfg.margin.maintenance_trigger_at == "passing"
    # the cap: 600% x (IMF - MMF) per 8 hours, paid hourly
    caps = engine_caps(cfg)
    assert {Fraction(cap, RATE_SCALE) for cap in caps.values()} == {6 * (imf - mmf) / 8}


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
        # an 8-hour rate paid at 1/8 an hour, valued at the oracle price, the premium's samples
        # averaged plainly over the hour
        assert (p.funding_scaling, p.funding_price, p.premium_average) == \
            ("whole_rate", "index", "plain")
        # "0.01% every 8 hours ... approximately 0.00125% per hour"
        assert p.scaled(p.interest_rate) == pct("0.00125%")
        assert p.impact_notional == Decimal(20_000) and spec.liquidation_fee == 0
    assert cfg.instruments["BTC"].lot_size == Decimal("0.00001")       # szDecimals 5
    assert engine_caps(cfg) == {"BTC": pct("4%"), "ETH": pct("4%")}
    # "When your margin falls below the maintenance margin requirement ..."
    assert cfg.margin.maintenance_trigger_at == "passing"


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


# ---- the venues' worked examples, on the presets themselves ------------------------------------

def btc_market(name: str, index: str, bid: str, ask: str, long: str):
    """The preset's BTC perpetual (its index kept fresh for the test's hour) indexed at `index`
    from 1 s; account 1 bids 5 BTC at `bid`, account 2 offers 15 BTC at `ask`, account 3 buys
    `long` BTC from the offer at 2 s."""
    import msgspec

    from perpcore import messages as m

    cfg = venues.venue(name)
    symbol = cfg.collateral_symbol("BTC")
    spec = cfg.instruments[symbol]
    fresh = msgspec.structs.replace(spec.pricing, index_stale_ns=10 * HOUR_NS)
    cfg = msgspec.structs.replace(cfg, instruments={
        **cfg.instruments, symbol: msgspec.structs.replace(spec, pricing=fresh)})
    ex = Exchange(cfg)
    settle = cfg.assets[cfg.settlement_asset]
    for a in (1, 2, 3):
        ex.submit(m.CreateAccount(account=a))
        ex.submit(m.Deposit(account=a, asset=settle.name, amount=settle.to_units(10**7)))
    ex.submit(m.SetIndexPrice(source="oracle", symbol=symbol, price=spec.to_ticks(index),
                              ts=10**9))
    for account, side, price, qty in ((1, m.Side.BUY, bid, "5"), (2, m.Side.SELL, ask, "15")):
        ex.submit(m.PlaceOrder(account=account, symbol=symbol, side=side, qty=spec.to_lots(qty),
                               price=spec.to_ticks(price), ts=10**9))
    ev = ex.submit(m.PlaceOrder(account=3, symbol=symbol, side=m.Side.BUY, qty=spec.to_lots(long),
                                price=spec.to_ticks(ask), tif=m.TimeInForce.IOC, ts=2 * 10**9))
    assert [e.qty for e in ev if type(e) is m.OrderFilled] == [spec.to_lots(long)]
    return ex, symbol, settle


def hour_of_funding(ex):
    """{account: amount paid (< 0) or received} and the rate of the first funding hour."""
    from perpcore import messages as m

    ev = ex.submit(m.AdvanceClock(ts=HOUR_NS))
    [settled] = [e for e in ev if type(e) is m.FundingSettled]
    ex.audit().check()
    return {e.account: e.amount for e in ev if type(e) is m.FundingPaid}, settled


def test_hyperliquids_worked_example_on_the_preset():
    # Hyperliquid docs, Funding: "interest rate 0.01%, impact bid $10,100, spot $10,000, 10 BTC
    # long: premium 1% ... rate 0.95%", an 8-hour rate "paid every hour at one eighth", on
    # "position_size x oracle_price x funding_rate"
    ex, symbol, usdc = btc_market("hyperliquid", "10000", "10100", "10200", "10")
    rate_8h = Fraction(1, 100) + max(min(Fraction(1, 10_000) - Fraction(1, 100),
                                         Fraction(5, 10_000)), -Fraction(5, 10_000))
    assert rate_8h == Fraction(95, 10_000)
    due = 10 * 10_000 * rate_8h / 8                     # 118.75 USDC, at the oracle price
    payments, settled = hour_of_funding(ex)
    assert Fraction(settled.rate, RATE_SCALE) == rate_8h / 8
    assert payments == {3: -usdc.to_units(Decimal(due.numerator) / due.denominator),
                        2: usdc.to_units(Decimal(due.numerator) / due.denominator)}
    assert ex.mark_price(symbol) != ex.index_price(symbol)      # the mark is not what funding uses


@pytest.mark.parametrize("bid, hourly", [("10200", Fraction(2, 100) / 8),      # 2%: under the cap
                                         ("10800", 6 * Fraction(8, 1000) / 8)])  # 8%: capped
def test_dydx_funding_on_the_preset(bid, hourly):
    # "funding rate = premium + default funding" (0), "|R| <= clamp_factor x (initial margin -
    # maintenance margin)" with clamp_factor 600%: 6 x (2% - 1.2%) = 4.8% per 8 hours, paid
    # pro rata hourly; valued at the oracle, which is also the mark
    ex, symbol, usdc = btc_market("dydx_v4", "10000", bid, str(int(bid) + 100), "1")
    payments, settled = hour_of_funding(ex)
    assert Fraction(settled.rate, RATE_SCALE) == hourly
    due = 1 * 10_000 * hourly
    assert payments == {3: -usdc.to_units(Decimal(due.numerator) / due.denominator),
                        2: usdc.to_units(Decimal(due.numerator) / due.denominator)}
    assert ex.mark_price(symbol) == ex.index_price(symbol)
