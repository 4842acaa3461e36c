"""Venue presets: Binance USDⓈ-M, BitMEX, dYdX v4 and Hyperliquid rules as VenueConfigs.

Each preset lists a BTC and an ETH linear perpetual under the venue's own symbols, settled in the
venue's stablecoin, with the venue's published margin tiers (or margin fractions mapped onto
perpcore's MarginTier rows), base-tier maker/taker fees, funding interval, cap and impact notional,
mark method, liquidation fee, and tick and lot sizes close to the venue's (perpcore needs one tick
per instrument, and tick x lot a whole number of the settlement asset's minor units). The sources
are in each preset's docstring; a figure that could not be found there is said to be an
assumption.

What perpcore cannot express is named, not approximated by a hidden branch:
- auto-deleveraging ranks by the venue's rule (InstrumentSpec.adl_ranking, perpcore.adl) for
  Binance, BitMEX and Hyperliquid; dYdX's walk from a pseudo-random subaccount is not
  reproducible by a deterministic engine, so its preset ranks by BitMEX's rule;
- maintenance margin is Binance's continuous form (rate x notional less the tier's maintenance
  amount), which Hyperliquid also publishes; BitMEX charges a risk-limit step's rate on the whole
  position, dYdX one fraction on any size;
- the mark is one of perpcore's methods (PricingSpec.mark_method).

The venues' rule options (PricingSpec's funding_scaling, premium_average, funding_rate_window,
funding_cap_rule, funding_price; InstrumentSpec's sell_order_margin and adl_ranking;
MarginSpec's multi_assets, trigger_at, maintenance_trigger_at, loan_liquidation) are set in one
place per preset: its `_pricing` / `_margin` arguments and the instrument keywords beside them;
what a preset does not set keeps perpcore's default (the docstrings say which).

`VENUES` maps a name to its preset (with "default", the built-in venue); `venue(name)` looks one up
and names the choices when it is not there.
"""
from __future__ import annotations

from decimal import Decimal
from typing import Callable

from perpcore.config import (HOUR_NS, RATE_SCALE, AssetSpec, InstrumentSpec, MarginSpec,
                             MarginTier, PricingSpec, VenueConfig, default_config, rate)


# The largest order an instrument admits, by base asset: (price, quantity), quote and base units
ORDER_LIMITS = {"BTC": ("10000000", "1000"), "ETH": ("1000000", "10000")}


def _venue(settle: str, instruments, *, fees: tuple[str, str], min_notional: str,
           margin: MarginSpec, **rules) -> VenueConfig:
    """A venue settled in `settle` (6 decimals; its collateral assets 8) of the linear perpetuals
    (symbol, base, tick, lot, tier rows, pricing, liquidation fee in percent), each with the
    (maker, taker) fees in percent and the minimum notional; `rules` are the instruments' rule
    options."""
    specs = {}
    for symbol, base, tick, lot, tier_rows, pricing, liquidation_fee in instruments:
        tiers = _tiers(tier_rows)
        max_price, max_qty = ORDER_LIMITS[base]
        specs[symbol] = InstrumentSpec(
            symbol=symbol, base=base, settle=settle, tick_size=Decimal(tick),
            lot_size=Decimal(lot), min_notional=Decimal(min_notional),
            max_price=int(Decimal(max_price) / Decimal(tick)),
            max_qty=int(Decimal(max_qty) / Decimal(lot)), pricing=pricing, tiers=tiers,
            maker_fee=_pct(fees[0]), taker_fee=_pct(fees[1]),
            liquidation_fee=_pct(liquidation_fee),
            default_leverage=min(20, tiers[0].max_leverage), **rules)
    assets = {settle: AssetSpec(settle, 6), **{a: AssetSpec(a, 8) for a in margin.haircuts}}
    return VenueConfig(settlement_asset=settle, assets=assets, instruments=specs, margin=margin)


def _pct(text: str) -> int:
    """'0.05' (percent) as a rate at RATE_SCALE."""
    return rate(Decimal(text) / 100)


def _tiers(rows) -> tuple[MarginTier, ...]:
    """(max notional, max leverage, maintenance rate in percent) rows as MarginTiers."""
    return tuple(MarginTier(Decimal(notional), leverage, _pct(mmr))
                 for notional, leverage, mmr in rows)


# ---- Binance USDⓈ-M -------------------------------------------------------------------------

# BTCUSDT, "Updates to Leverage and Margin Tiers of Binance Futures Contracts (2021-03-18)":
# position notional (USDT) up to, max leverage, maintenance margin rate (%)
BINANCE_BTCUSDT = (
    ("50000", 125, "0.40"), ("250000", 100, "0.50"), ("1000000", 50, "1.00"),
    ("10000000", 20, "2.50"), ("20000000", 10, "5.00"), ("50000000", 5, "10.00"),
    ("100000000", 4, "12.50"), ("200000000", 3, "15.00"), ("300000000", 2, "25.00"),
    ("500000000", 1, "50.00"),
)
# ETHUSDT: no published table was found among the sources; perpcore's built-in ETH tiers
# (perpcore.config.ETH_TIERS, Binance's shape) stand in for it
BINANCE_ETHUSDT = (
    ("50000", 100, "0.50"), ("500000", 75, "0.65"), ("2000000", 50, "1.00"),
    ("10000000", 20, "2.50"), ("30000000", 10, "5.00"),
)


def binance_usdm() -> VenueConfig:
    """Binance USDⓈ-M Futures: BTCUSDT and ETHUSDT, settled in USDT (6 decimals here).

    - Tiers: BTCUSDT's published leverage and margin tiers (BINANCE_BTCUSDT, the 2021-03-18
      table, ten tiers from 125x/0.40% to 1x/50%); maintenance = notional x rate - the tier's
      maintenance amount, as perpcore computes it. ETHUSDT's table was not found: perpcore's
      built-in ETH tiers stand in (BINANCE_ETHUSDT).
    - Fees: the regular (VIP 0) USDⓈ-M rate, maker 0.02%, taker 0.05%.
    - Funding: every 8 h, interest 0.01% per 8 h, premium clamp +-0.05%, cap 0.75 x the first
      tier's maintenance rate (0.30% for BTCUSDT), impact notional 200 USDT / the initial margin
      rate at maximum leverage, premium sampled every 5 s and time-weighted; the whole rate
      scaled by N/8 for an interval of N < 8 hours (funding_scaling "whole_rate", Binance's
      formula since September 2025; at 8 hours the same); mark = median(P1, P2, last price)
      ("binance"). Index: capped constituents, as perpcore's default.
    - Margin: a short's initial margin at the assuming price (sell_order_margin); multi-assets
      mode (BTC/ETH auto-exchanged below the negative threshold, perpcore's defaults -10,000 USDT
      and 2.5%); liquidation on reaching maintenance (margin ratio 100%); Binance Loans: the
      loan levels on reaching them (trigger_at "reaching"), a loan past its liquidation LTV
      repaid in full from the collateral, the rest returned (loan_liquidation "repay_in_full";
      no loan liquidation fee was found, none is charged).
    - Liquidation: the fund takes at most 1% of a liquidation fill's notional (the clearance fee;
      Binance's per-symbol figure was not found among the sources: perpcore's default is kept).
    - ADL: Binance's LeveragePnL (adl_ranking "binance"): max(0, unrealised PnL) / max(1,
      wallet balance) x margin ratio (maintenance margin / margin balance), of the account.
    - Tick 0.1 / 0.01 USDT, lot 0.001 BTC / ETH (as perpcore.binance lists them), min notional
      5 USDT. Collateral: BTC and ETH at a 5% haircut.

    Sources:
    https://www.binance.com/en/support/announcement/86cf9aa472574b8cb2e05bb751c2a9a6
    (BTCUSDT tiers, 2021-03-18);
    https://www.binance.com/en/futures/trading-rules/perpetual/portfolio-margin/notional-limit
    (maintenance margin = notional x rate - maintenance amount);
    https://www.binance.com/en/support/faq/360033525371 (insurance fund);
    http://www.binance-register.co/en/issues/item/2948.html ("Leverage and Margin of USDⓈ-M
    Futures", default leverage 20x);
    https://www.binance.com/en/support/faq/87fa7ee33b574f7084d42bd2ce2e463b (the cost to open a
    position: a short at the assuming price);
    https://www.binance.com/en/support/faq/f80415bea8124f6494566f23c0bf9c38 (multi-assets mode);
    https://bitcointalk.org/index.php?topic=5248835 (Binance Loans' FAQ quoted: liquidation when
    the LTV "reaches or goes beyond" the liquidation LTV);
    https://www.binance.com/en/support/faq/360033525471 ("What Is Auto-Deleveraging (ADL) and
    How Does It Work": LeveragePnL = unrealised PnL / collateral x margin ratio, the formula
    as https://dev.binance.vision/t/how-to-caculating-leverage-pnl-quantile/17801 quotes it)."""
    pricing = _pricing(interval_h=8, funding_scaling="whole_rate")
    return _venue("USDT", (
        ("BTCUSDT", "BTC", "0.1", "0.001", BINANCE_BTCUSDT, pricing, "1"),
        ("ETHUSDT", "ETH", "0.01", "0.001", BINANCE_ETHUSDT, pricing, "1"),
    ), fees=("0.02", "0.05"), min_notional="5", sell_order_margin="assuming_price",
        adl_ranking="binance",
        margin=_margin(multi_assets=True, trigger_at="reaching", loan_liquidation="repay_in_full"))


# ---- BitMEX ---------------------------------------------------------------------------------

def bitmex_steps(base_limit: str, step: str, base_im: str, base_mm: str,
                 steps: int) -> tuple[tuple[str, int, str], ...]:
    """BitMEX's risk limits as tier rows: up to the base risk limit the base initial and
    maintenance margins; each further step of `step` notional raises both by the base
    maintenance margin (percentages). Max leverage = 1 / initial margin, rounded down."""
    rows = []
    for k in range(steps):
        im = Decimal(base_im) + k * Decimal(base_mm)
        mm = Decimal(base_mm) + k * Decimal(base_mm)
        rows.append((str(Decimal(base_limit) + k * Decimal(step)), int(100 / im), str(mm)))
    return tuple(rows)


# XBTUSD's published base margins (riskLimitsExamples: 0.50% maintenance, 1.00% initial) and
# risk limit / step (200 XBT, 150 XBT from 31 August 2021), in USDT at 65,000 USDT per XBT;
# ETHUSD's base margins (0.80% / 2.00%, 5 May 2020), base risk limit 50 XBT and step 100 XBT.
# BitMEX's own XBTUSDT / ETHUSDT figures were not found among the sources.
BITMEX_XBTUSDT = bitmex_steps("13000000", "9750000", "1.00", "0.50", 10)
BITMEX_ETHUSDT = bitmex_steps("3250000", "6500000", "2.00", "0.80", 10)


def bitmex() -> VenueConfig:
    """BitMEX linear perpetuals: XBTUSDT and ETHUSDT, settled in USDT.

    - Tiers: risk limits (bitmex_steps): the base initial / maintenance margin up to the base
      risk limit, both raised by the base maintenance margin at each risk step. BitMEX applies
      a step's rates to the whole position; perpcore's tiers add the maintenance amount that
      keeps maintenance continuous (not configurable), so above the first step perpcore asks
      less maintenance than BitMEX. The XBTUSDT / ETHUSDT figures themselves were not found:
      XBTUSD's (1.00% / 0.50%, risk limit 200 XBT, step 150 XBT) and ETHUSD's (2.00% / 0.80%,
      50 XBT, step 100 XBT) stand in, converted at 65,000 USDT per XBT.
    - Fees: taker 0.05%, maker rebate 0.01% (the revamped schedule).
    - Funding: every 8 h, interest 0.01% per 8 h, premium clamp +-0.05%; the premium a plain
      mean of minute samples (premium_average "plain"), the rate paid at a funding time the one
      fixed over the interval that ended at the previous (funding_rate_window "previous"); cap
      75% x (initial - maintenance margin) of the first tier (funding_cap_rule
      "margin_fraction_span", k 0.75) = 0.375% for XBTUSDT, 0.90% for ETHUSDT (BitMEX's rule as
      its Perpetual Contracts Guide states it; the page was not among the sources found). Mark:
      fair price, index x (1 + funding basis) ("bitmex").
    - Margin: sell orders keep perpcore's open-loss rule (BitMEX charges a sell at max(its
      price, best bid), neither of perpcore's options); the liquidation and loan triggers
      perpcore's defaults (BitMEX's were not among the sources).
    - Liquidation: BitMEX's insurance fund keeps whatever margin is left between the liquidation
      and the bankruptcy price; the liquidation fee is set to the base maintenance margin
      (0.50% / 0.80%), the most a first-tier liquidation leaves.
    - ADL: PnL% x effective leverage for profitable positions, PnL% / effective leverage for
      the others (adl_ranking "bitmex", perpcore's default).
    - Tick 0.5 / 0.05 USDT, lot 0.001 XBT / 0.01 ETH (not found among the sources: chosen close
      to the venue's contract sizes). Collateral: BTC and ETH at a 5% haircut (perpcore's
      default; BitMEX's haircut matrix was not found).

    Sources:
    https://www.bitmex.com/app/riskLimitsExamples (risk limits, XBTUSD base margins);
    https://www.bitmex.com/app/exchangeGuide (initial margin of orders, fair price marking);
    https://cryptomak.co.uk/?p=263944 (BitMEX blog, risk steps from 31 August 2021);
    https://cryptomak.co.uk/?p=156497 (BitMEX blog, base margins from 5 May 2020);
    https://blog.bitmex.com/site_announcement/now-live-revamp-of-bitmex-fee-structures-for-increased-trader-rewards/
    (taker 0.05%, maker rebate 0.01%);
    https://www.tradingcenter.org/index.php/trade/cryptocurrency/325-bitmex-funding-rate
    (funding every 8 h, interest and premium components)."""
    # the cap: 75% x (initial - maintenance margin) of the first tier, per 8 h
    pricing = _pricing(interval_h=8, mark_method="bitmex", premium_sample_ns=60_000_000_000,
                       premium_average="plain", funding_rate_window="previous",
                       funding_cap_rule="margin_fraction_span", funding_cap_k=75_000_000)
    return _venue("USDT", (
        ("XBTUSDT", "BTC", "0.5", "0.001", BITMEX_XBTUSDT, pricing, "0.50"),
        ("ETHUSDT", "ETH", "0.05", "0.01", BITMEX_ETHUSDT, pricing, "0.80"),
    ), fees=("-0.01", "0.05"), min_notional="1", adl_ranking="bitmex", margin=_margin())


# ---- dYdX v4 --------------------------------------------------------------------------------

# The Large-Cap liquidity tier (BTC-USD, ETH-USD): initial margin fraction 2% (50x), maintenance
# 60% of it (1.2%), impact notional 10,000 USDC; dYdX has no position-size tiers (its IMF rises
# with the market's open interest, which perpcore cannot express), so one row up to a bound
DYDX_LARGE_CAP = (("500000000", 50, "1.2"),)
DYDX_IMPACT_NOTIONAL = Decimal("10000")


def dydx_v4() -> VenueConfig:
    """dYdX Chain (v4): BTC-USD and ETH-USD, settled in USDC, USDC the only collateral.

    - Margin: the Large-Cap liquidity tier, IMF 2% (50x), MMF = 0.6 x IMF = 1.2%, one MarginTier
      (max leverage 1 / IMF, maintenance rate MMF) up to 500M USDC, a bound perpcore needs (dYdX
      has none per position). The open-interest-based IMF increase is not expressible.
    - Fees: the first fee tier, maker 0.01%, taker 0.05%.
    - Funding: an 8-hour rate, premium + default funding (0: no interest, no clamp), 1/8 of it
      paid every hour (interval 1 h, funding_scaling "whole_rate"), its premium a plain mean of
      minute samples against the oracle, valued at the oracle price
      (funding_price "index"); cap 600% x (IMF - MMF) per 8 h = 4.8% per 8 h = 0.6% per hour
      (funding_cap_rule "margin_fraction_span", per interval: k = 600% / 8 = 75% an hour);
      impact notional 10,000 USDC, the tier's value as set (the docs recommend 500 USDC / IMF,
      which gave it at the earlier 5% IMF). Mark: the oracle price itself (mark_method "index").
    - Liquidation trigger: when the margin fraction exceeds the maintenance fraction, i.e.
      equity below maintenance (maintenance_trigger_at "passing").
    - Liquidation: a liquidation fee of at least 1% is assessed; the fund takes at most 1.5% of
      a liquidation fill (dYdX's maximum liquidation fee; the figure is from its liquidations
      config, not found among the sources).
    - ADL: dYdX offsets a bankrupt position against the subaccounts with opposite positions in
      the order it holds them, starting from a pseudo-random one (x/clob/keeper/deleveraging.go,
      OffsetSubaccountPerpetualPosition): no ranking a deterministic engine can reproduce, so
      adl_ranking "bitmex", perpcore's default, stands in.
    - Tick 1 / 0.1 USD, step 0.0001 BTC / 0.001 ETH (dYdX's market parameters as commonly
      listed; not found among the sources). No margin loans.

    Sources:
    https://docs.dydx.community/dydx-unlimited/modules/governance/governance-adjustable-parameters/markets
    (liquidity tiers: initial_margin_ppm 20000, maintenance_fraction_ppm 600000, impact notional);
    https://help.dydx.trade/en/articles/166975-default-liquidity-tiers-on-dydx-chain
    (IMF / MMF, liquidation fee of at least 1%);
    https://v4-teacher.vercel.app/concepts-trading/margin (margin requirement, OI-based IMF);
    https://docs.dydx.community/dydx-unlimited/~gitbook/pdf?only=yes&page=CMuWy1Lpiunhhsdt3w2i
    (fee tiers: maker 1.0 bps, taker 5.0 bps);
    https://github.com/dydxprotocol/v4-chain (x/perpetuals/keeper/perpetual.go: "funding rate =
    premium + default funding", |R| <= clamp_factor x (initial - maintenance margin), the 8-hour
    rate paid pro rata hourly); help.dydx.trade "Funding Rates on dYdX Chain" (the hour's premium
    the mean of 60 minute samples). The token-migration copy of the governance docs lists the
    Large-Cap tier at initial_margin_ppm 50000 (5%): an earlier setting; the dYdX Unlimited copy's
    20000 (2%) is used."""
    pricing = _pricing(interval_h=1, mark_method="index", funding_price="index",
                       interest_rate=0, funding_clamp=0, funding_scaling="whole_rate",
                       premium_average="plain",
                       premium_sample_ns=60_000_000_000, funding_cap_rule="margin_fraction_span",
                       funding_cap_k=6 * RATE_SCALE // 8, impact_notional=DYDX_IMPACT_NOTIONAL)
    return _venue("USDC", (
        ("BTC-USD", "BTC", "1", "0.0001", DYDX_LARGE_CAP, pricing, "1.5"),
        ("ETH-USD", "ETH", "0.1", "0.001", DYDX_LARGE_CAP, pricing, "1.5"),
    ), fees=("0.01", "0.05"), min_notional="1", adl_ranking="bitmex",
        margin=_margin(haircuts={}, lending_limit=Decimal(0), maintenance_trigger_at="passing"))


# ---- Hyperliquid ----------------------------------------------------------------------------

def hyperliquid_tiers(rows) -> tuple[tuple[str, int, str], ...]:
    """Hyperliquid's (notional up to, max leverage) rows with maintenance = half the initial
    margin at the tier's max leverage, 1 / (2 x leverage), in percent rounded up to perpcore's
    1e-8 (15x: 3.33333334%)."""
    out = []
    for notional, leverage in rows:
        mmr = -(-RATE_SCALE // (2 * leverage))          # rounded up: never below the venue's
        out.append((notional, leverage, str(Decimal(mmr) / (RATE_SCALE // 100))))
    return tuple(out)


# "Mainnet Margin Tiers": BTC 0-150M 40x, >150M 20x; ETH 0-100M 25x, >100M 15x (USDC). The top
# tier is open-ended; perpcore needs the largest position an instrument admits: 1B USDC
HYPERLIQUID_BTC = hyperliquid_tiers((("150000000", 40), ("1000000000", 20)))
HYPERLIQUID_ETH = hyperliquid_tiers((("100000000", 25), ("1000000000", 15)))
HYPERLIQUID_IMPACT_NOTIONAL = Decimal("20000")


def hyperliquid() -> VenueConfig:
    """Hyperliquid perpetuals: BTC and ETH, settled in USDC, USDC the only collateral.

    - Tiers: the mainnet margin tiers (HYPERLIQUID_BTC / _ETH), maintenance rate = half the
      initial margin rate at the tier's max leverage (BTC 1.25% then 2.5%, ETH 2% then 3.33%),
      maintenance deduction as Binance's maintenance amount (the same formula).
    - Fees: base tier (14-day volume under 5M), taker 0.045%, maker 0.015%.
    - Funding: hourly, an 8-hour rate paid at 1/8 an hour: interest 0.01% per 8 h (0.00125% an
      hour), clamp +-0.05% per 8 h (funding_scaling "whole_rate": 1/8 of the 8-hour rate);
      cap 4% per hour; premium from the impact prices at 20,000 USDC against the oracle (index),
      sampled every 5 s and averaged plainly over the hour; paid on size x oracle price
      (funding_price "index"). Mark:
      median(oracle + EMA of (mid - oracle), median(bid, ask, last), index) ("hyperliquid";
      Hyperliquid's third term is other venues' mids, here the index).
    - Liquidation: when the margin falls below maintenance (maintenance_trigger_at
      "passing"); no liquidation fee on book liquidations (the rest of the margin stays with
      the trader), so the fund takes nothing; the backstop vault keeping the margin of an
      account below 2/3 of maintenance is not expressible.
    - ADL: Hyperliquid's index (adl_ranking "hyperliquid"): (mark / entry) x (notional /
      account value), positions in profit first (a short's price ratio read as entry / mark).
    - Tick 1 / 0.1 USDC (prices of five significant figures at 65,000 / 3,400), lot 0.00001 BTC /
      0.0001 ETH (szDecimals 5 / 4), minimum order value 10 USDC. No margin loans.

    Sources:
    https://hyperliquid.gitbook.io/hyperliquid-docs/trading/margin-tiers (tiers, maintenance =
    half the initial margin at max leverage, maintenance deduction);
    https://hyperliquid.gitbook.io/hyperliquid-docs/trading/fees;
    https://hypernode-docs.polynode.dev/research/fees (base tier: 4.5 / 1.5 bps);
    https://hyperliquid-co.gitbook.io/community-docs/technology-breakdown/hyperliquid-l1/dex/clearinghouse/funding
    (hourly funding, interest 0.01% per 8 h, premium sampled every 5 s, impact notional);
    https://www.cortex-vigil.com/wiki/funding-rates (formula, cap 4% per hour);
    https://docs.byreal.io/products/perp/risk-and-liquidation (partial and backstop
    liquidation);
    https://hyperliquid.gitbook.io/hyperliquid-docs/trading/auto-deleveraging (the ADL index)."""
    pricing = _pricing(interval_h=1, mark_method="hyperliquid", funding_cap=_pct("4"),
                       funding_scaling="whole_rate", premium_average="plain",
                       funding_price="index", impact_notional=HYPERLIQUID_IMPACT_NOTIONAL)
    return _venue("USDC", (
        ("BTC", "BTC", "1", "0.00001", HYPERLIQUID_BTC, pricing, "0"),
        ("ETH", "ETH", "0.1", "0.0001", HYPERLIQUID_ETH, pricing, "0"),
    ), fees=("0.015", "0.045"), min_notional="10", adl_ranking="hyperliquid",
        margin=_margin(haircuts={}, lending_limit=Decimal(0), maintenance_trigger_at="passing"))


# ---- the rule options, one place per module -------------------------------------------------

def _pricing(interval_h: int, **fields) -> PricingSpec:
    """A preset's PricingSpec: the funding interval, and what differs from perpcore's default."""
    return PricingSpec(funding_interval_ns=interval_h * HOUR_NS, **fields)


def _margin(**fields) -> MarginSpec:
    """A preset's MarginSpec: what differs from perpcore's default."""
    return MarginSpec(**fields)


VENUES: dict[str, Callable[[], VenueConfig]] = {
    "default": default_config,
    "binance_usdm": binance_usdm,
    "bitmex": bitmex,
    "dydx_v4": dydx_v4,
    "hyperliquid": hyperliquid,
}


def venue(name: str) -> VenueConfig:
    """The preset called `name`; ValueError naming the presets when there is none."""
    try:
        preset = VENUES[name]
    except KeyError:
        raise ValueError(f"unknown venue {name!r}: the presets are "
                         f"{', '.join(VENUES)}") from None
    return preset()
