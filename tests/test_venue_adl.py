"""The ADL ranking as a named option per instrument (InstrumentSpec.adl_ranking): each venue's rule
checked against its own documentation with plain Fractions, an engine crash in which the rule
decides which short is deleveraged, and the order each rule gives is total and deterministic.

Sources quoted:
- Binance, "What Is Auto-Deleveraging (ADL) and How Does It Work"
  (https://www.binance.com/en/support/faq/360033525471): traders "will be ranked by their margin
  ratio and unrealized PnL as a percentage of their collateral. The precise rank is known as
  'LeveragePnL', which is defined as unrealized PnL/collateral multiplied by the margin ratio."
  The formula at the end of that page, as quoted on Binance's developer forum
  (https://dev.binance.vision/t/how-to-caculating-leverage-pnl-quantile/17801):
      Pnl Percent = max(0,Unrealized Profit)/max(1,Wallet Balance)
      If (Wallet Balance+Unrealized Profit)<=0, then Margin Ratio = 0
      If (Wallet Balance+Unrealized Profit)>0, then Margin Ratio = Maintenance Margin/(Wallet
      Balance+Unrealized Profit)
      Leverage Pnl = Pnl Percent x Margin Ratio
  and its worked example: "Unrealized Profit = 40.2; Wallet Balance = 4.27 => Pnl Percent =
  max(0,40.2)/max(1,4.27) = 9.41 => Leverage Pnl = ... = 9.41 x 13.42% = 1.26" (a margin ratio of
  13.42% read from Binance's interface).
- Hyperliquid, Trading > Auto-deleveraging
  (https://hyperliquid.gitbook.io/hyperliquid-docs/trading/auto-deleveraging): "the users on the
  opposite side of the position are ranked by unrealized pnl and leverage used. [...] The specific
  sorting index to determine the affected users in profit is
  `(mark_price / entry_price) * (notional_position / account_value)`." The page has no worked
  example: the one below is computed by hand.
- BitMEX's rule (PnL% x effective leverage) and its hand-worked queues are in tests/test_adl.py;
  here it is checked that the option selects it.
"""
import random
from fractions import Fraction

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from perpcore import messages as m
from perpcore import venues
from perpcore.adl import (Holding, binance_priority, hyperliquid_priority, priority, ranking,
                          venue_ranking)
from perpcore.config import ADL_RANKINGS, LATER_FIELDS, InstrumentSpec, default_config
from perpcore.exchange import config_digest
from perpcore.messages import Side

from liquidation_venue import BTC, Venue, of, usd

USDT = 10**6        # one whole settlement asset, minor units (6 decimals)


# ---- Binance: LeveragePnL ----------------------------------------------------------------------

def test_binance_the_forum_example():
    # Unrealized Profit 40.2, Wallet Balance 4.27: margin balance 44.47; a margin ratio of 13.42%
    # is a maintenance margin of 0.1342 x 44.47 = 5.967874 USDT
    upnl, wallet, maintenance = usd("40.2"), usd("4.27"), usd("5.967874")
    pnl_percent = Fraction(40_200_000, 4_270_000)
    margin_ratio = Fraction(5_967_874, 44_470_000)
    assert margin_ratio == Fraction(1342, 10_000)
    assert round(float(pnl_percent), 2) == 9.41
    key = binance_priority(upnl, wallet + upnl, maintenance, USDT)
    assert key == pnl_percent * margin_ratio
    assert round(float(key), 2) == 1.26


def test_binance_floors_and_zeros():
    # max(1, Wallet Balance): a wallet of 0.5 USDT divides by 1 USDT
    assert binance_priority(usd(10), usd("10.5"), usd(2), USDT) == \
        Fraction(10) * Fraction(2, Fraction(21, 2))
    # no profit: max(0, loss) = 0, whatever the leverage
    assert binance_priority(-usd(5), usd(100), usd(50), USDT) == 0
    # Wallet Balance + Unrealized Profit <= 0: margin ratio 0
    assert binance_priority(usd(10), 0, usd(3), USDT) == 0
    assert binance_priority(usd(10), -usd(1), usd(3), USDT) == 0


# ---- Hyperliquid: (mark / entry) x (notional / account value) ----------------------------------

def test_hyperliquid_index_by_hand():
    mark = 60000
    # long 2 lots from 50,000 (entry value 100,000), notional 120,000, account value 30,000:
    # (60,000 / 50,000) x (120,000 / 30,000) = 6/5 x 4 = 24/5
    assert hyperliquid_priority(2, 100_000, mark, 120_000, 30_000) == (True, 0, Fraction(24, 5))
    # short 3 lots from 64,000: in profit; the price ratio read entry / mark = 16/15;
    # notional 180,000 over 45,000 = 4: 64/15
    assert hyperliquid_priority(-3, 192_000, mark, 180_000, 45_000) == (True, 0, Fraction(64, 15))
    # a losing long: after every position in profit, by the same index
    loser = hyperliquid_priority(1, 61_000, mark, 60_000, 10_000)
    assert loser == (False, 0, Fraction(60, 61) * 6)
    # account value <= 0: unbounded leverage, the head of its group
    assert hyperliquid_priority(1, 50_000, mark, 60_000, 0) == (True, 1, 0)
    holdings = [
        Holding(7, 1, 61_000, None, 60_000, 10_000, -1_000, 300),        # losing
        Holding(3, 2, 100_000, None, 120_000, 30_000, 20_000, 600),       # 24/5
        Holding(5, 1, 50_000, None, 60_000, 0, 10_000, 300),              # unbounded, in profit
        Holding(4, 1, 58_000, None, 60_000, 12_000, 2_000, 300),          # 30/29 x 5 = 5.17
    ]
    assert venue_ranking("hyperliquid", holdings, mark, USDT) == [5, 4, 3, 7]


# ---- BitMEX: the default, the same queue as perpcore.adl.ranking --------------------------------

def test_bitmex_is_the_default_and_the_option_selects_its_rule():
    [field] = [f for f in msgspec.structs.fields(InstrumentSpec) if f.name == "adl_ranking"]
    assert field.default == "bitmex"
    assert {i.adl_ranking for i in default_config().instruments.values()} == {"bitmex"}
    # tests/test_adl.py's hand-worked shorts at a mark of 60,000 (the account figures unused)
    shorts = [(11, -10, 620_000, 64000), (12, -5, 305_000, 66000), (13, -2, 118_000, 61000),
              (14, -3, 189_000, 59500), (15, -4, 236_000, 70000), (16, -1, 63_000, 62000)]
    holdings = [Holding(a, s, e, b, 0, 0, 0, 0) for a, s, e, b in shorts]
    assert venue_ranking("bitmex", holdings, 60000, USDT) == [14, 16, 11, 12, 13, 15]
    with pytest.raises(ValueError):
        venue_ranking("dydx", holdings, 60000, USDT)


# ---- the option: validated, a later field, set by the presets -----------------------------------

def test_the_option_is_validated_and_counts_in_the_digest_only_when_set():
    spec = default_config().instruments[BTC]
    with pytest.raises(ValueError, match="ADL ranking"):
        msgspec.structs.replace(spec, adl_ranking="random")
    assert "adl_ranking" in LATER_FIELDS["InstrumentSpec"]
    cfg = default_config()
    for rule in ADL_RANKINGS:
        changed = msgspec.structs.replace(cfg, instruments={
            s: msgspec.structs.replace(i, adl_ranking=rule) for s, i in cfg.instruments.items()})
        assert (config_digest(changed) == config_digest(cfg)) == (rule == "bitmex")


def test_each_preset_sets_its_venues_ranking():
    expected = {"binance_usdm": "binance", "bitmex": "bitmex", "hyperliquid": "hyperliquid",
                # dYdX walks from a pseudo-random subaccount: BitMEX's rule stands in
                "dydx_v4": "bitmex"}
    for name, rule in expected.items():
        cfg = getattr(venues, name)()
        assert {spec.adl_ranking for spec in cfg.instruments.values()} == {rule}, name


# ---- the engine: the rule decides who is deleveraged ---------------------------------------------

TRADER, A, B, L = 1, 11, 12, 21


def _two_shorts(rule: str) -> Venue:
    """A: short 0.1 BTC from 80,000 with 2,000 USD; B: short 1 BTC from 60,000 with 10,000 USD,
    against the trader's long 1 BTC (5,000 USD), no fund and no bids."""
    v = Venue(adl_ranking=rule)
    v.account(TRADER, 5_000)
    v.account(A, 2_000)
    v.account(B, 10_000)
    v.account(L, 100_000)
    v.price(BTC, 800000)
    v.trade(A, L, BTC, Side.BUY, 100, 800000)           # A pays the 0.02% maker fee: 1,998.40
    v.price(BTC, 600000)
    v.trade(B, TRADER, BTC, Side.BUY, 1000, 600000)     # B 9,988.00; the trader 4,970.00
    assert (v.cash(A), v.cash(B), v.cash(TRADER)) == (usd("1998.4"), usd(9988), usd(4970))
    return v


def _keys(mark: int, mm_a: Fraction, mm_b: Fraction) -> dict:
    """Each rule's key for A and B at a mark (USD), from the figures above, by hand."""
    cash = {A: Fraction("1998.4"), B: Fraction(9988)}
    size = {A: Fraction(1, 10), B: Fraction(1)}
    entry = {A: 80000, B: 60000}
    mm = {A: mm_a, B: mm_b}
    keys = {}
    for acc in (A, B):
        upnl = size[acc] * (entry[acc] - mark)
        equity = cash[acc] + upnl
        notional = size[acc] * mark
        keys[acc] = {
            # one position each: mark value - bankrupt value is the equity
            "bitmex": upnl / (size[acc] * entry[acc]) * notional / equity,
            "binance": upnl / cash[acc] * mm[acc] / equity,
            "hyperliquid": Fraction(entry[acc], mark) * notional / equity,
        }
    return keys


def test_the_rule_decides_which_short_is_deleveraged():
    # At a mark of 54,800 (maintenance, BTC tiers: A 5,480 x 0.40% = 21.92; B 54,800 x 0.50% - 50
    # = 224):
    #   BitMEX:      A 0.315 x 5,480 / 4,518.4 = 0.3820   B 0.08667 x 54,800 / 15,188 = 0.3127
    #   Binance:     A 2,520 / 1,998.4 x 21.92 / 4,518.4 = 0.006118
    #                B 5,200 / 9,988 x 224 / 15,188 = 0.007679
    #   Hyperliquid: A 80/54.8 x 1.2128 = 1.7705         B 60/54.8 x 3.6081 = 3.9505
    keys = _keys(54800, Fraction("21.92"), Fraction(224))
    assert keys[A]["bitmex"] > keys[B]["bitmex"]
    assert keys[B]["binance"] > keys[A]["binance"]
    assert keys[B]["hyperliquid"] > keys[A]["hyperliquid"]
    bankruptcy = 550300     # 60,000 - 4,970 = 55,030: the trader's bankruptcy price in ticks
    for rule, head in (("bitmex", A), ("binance", B), ("hyperliquid", B)):
        v = _two_shorts(rule)
        events = v.price(BTC, 548000)
        deleveraged = [(e.account, e.qty, e.price, e.liquidated_account)
                       for e in of(events, m.AutoDeleveraged)]
        if head == A:       # A's 0.1 first, then 0.9 of B's
            assert deleveraged == [(A, 100, bankruptcy, TRADER), (B, 900, bankruptcy, TRADER)]
        else:               # B's whole short covers the trader's long; A keeps its short
            assert deleveraged == [(B, 1000, bankruptcy, TRADER)]
            assert v.size(A, BTC) == -100
        assert v.size(TRADER, BTC) == 0 and v.ex.audit().ok


def test_the_indicator_follows_the_rule():
    # at 56,000 nobody is liquidated (the trader: 970 of equity, 230 of maintenance); BitMEX
    # ranks A ahead (0.3820 vs 0.2669), Binance B (0.006585 vs 0.006116)
    keys = _keys(56000, Fraction("22.4"), Fraction(230))
    assert keys[A]["bitmex"] > keys[B]["bitmex"] and keys[B]["binance"] > keys[A]["binance"]
    for rule, (first, second) in (("bitmex", (A, B)), ("binance", (B, A))):
        v = _two_shorts(rule)
        assert not of(v.price(BTC, 560000), m.LiquidationStarted)
        liq = v.ex.liquidation
        assert liq.adl_queue(BTC, -1) == [first, second]
        assert (liq.adl_indicator(first, BTC), liq.adl_indicator(second, BTC)) == (5, 3)


# ---- every ranking is a total, deterministic order ---------------------------------------------

holding = st.tuples(
    st.integers(-50, 50),                           # size (0: flat, left out)
    st.integers(1, 5_000_000),                      # entry value
    st.one_of(st.none(), st.integers(1, 200_000)),  # bankruptcy
    st.integers(0, 10**9),                          # notional
    st.integers(-10**8, 10**9),                     # equity
    st.integers(-10**8, 10**8),                     # unrealised PnL
    st.integers(0, 10**8),                          # maintenance
)


def _key(rule: str, h: Holding, mark: int):
    if rule == "bitmex":
        return priority(h.size, h.entry_value, mark, h.bankruptcy)
    if rule == "binance":
        return binance_priority(h.unrealised_pnl, h.equity, h.maintenance, USDT)
    return hyperliquid_priority(h.size, h.entry_value, mark, h.notional, h.equity)


@given(st.lists(holding, max_size=25), st.integers(1, 200_000), st.sampled_from(ADL_RANKINGS),
       st.randoms(use_true_random=False))
def test_every_ranking_is_a_total_deterministic_order(raw, mark, rule, rnd: random.Random):
    book = [Holding(account, *h) for account, h in enumerate(raw, start=1)]
    queue = venue_ranking(rule, book, mark, USDT)
    held = {h.account: h for h in book if h.size}
    # a permutation of the open positions
    assert sorted(queue) == sorted(held)
    # the same whatever order they come in
    shuffled = list(book)
    rnd.shuffle(shuffled)
    assert venue_ranking(rule, shuffled, mark, USDT) == queue
    # keys never rise along the queue; equal keys go to the lower account first
    for a, b in zip(queue, queue[1:]):
        ka, kb = _key(rule, held[a], mark), _key(rule, held[b], mark)
        assert ka > kb or (ka == kb and a < b)
    if rule == "bitmex":
        assert queue == ranking([(h.account, h.size, h.entry_value, h.bankruptcy)
                                 for h in book], mark)


# ---- the engine under each ranking: audit-clean, in its queue's order, deterministic ------------

short = st.tuples(st.integers(600, 800),        # entry, hundreds of USD (60,000..80,000)
                  st.integers(1, 10),           # size, tenths of a BTC
                  st.integers(5_000, 20_000))   # cash, USD


def _crash(rule: str, shorts: list, solvent: bool = False) -> tuple[Venue, list]:
    """Shorts opened against a deep-pocketed long (highest entry first, so the price only falls
    and no short is liquidated on the way), who then sells the whole of it to the trader at
    60,000 (5,000 USD of cash a BTC, or plenty when `solvent`), then the mark at 54,800."""
    v = Venue(adl_ranking=rule)
    total = sum(tenths for _, tenths, _ in shorts) * 100
    v.account(TRADER, 10_000_000 if solvent else total * 5)
    v.account(L, 10_000_000)
    ordered = sorted(enumerate(shorts, start=100), key=lambda s: -s[1][0])
    for account, (_, _, cash) in ordered:
        v.account(account, cash)
    for account, (entry, tenths, _) in ordered:
        v.price(BTC, entry * 1000)
        v.trade(account, L, BTC, Side.BUY, tenths * 100, entry * 1000)
    v.price(BTC, 600000)
    v.trade(L, TRADER, BTC, Side.BUY, total, 600000)
    return v, v.price(BTC, 548000)


@given(st.lists(short, min_size=1, max_size=5), st.sampled_from(ADL_RANKINGS))
def test_each_ranking_deleverages_in_its_queue_order(shorts, rule):
    v, events = _crash(rule, shorts)
    # the trader's long is every short's counterpart: all of them are closed, in one order
    deleveraged = of(events, m.AutoDeleveraged)
    assert sorted(e.account for e in deleveraged) == list(range(100, 100 + len(shorts)))
    assert sum(e.qty for e in deleveraged) == sum(t for _, t, _ in shorts) * 100
    assert all(e.size == 0 for e in deleveraged) and v.size(TRADER, BTC) == 0
    # the same book with a trader the crash leaves solvent: the shorts' figures are the same,
    # and its queue is the order the engine closed them in
    twin, quiet = _crash(rule, shorts, solvent=True)
    assert not of(quiet, m.AutoDeleveraged)
    assert [e.account for e in deleveraged] == twin.ex.liquidation.adl_queue(BTC, -1)
    assert v.ex.audit().ok and twin.ex.audit().ok
    # deterministic: the same commands, the same events
    assert _crash(rule, shorts)[1] == events
