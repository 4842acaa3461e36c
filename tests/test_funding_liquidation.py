"""Funding settlements and the liquidation engine (perpcore.liquidation's Funding paragraph): a payer
pushed under maintenance by funding is liquidated in the same command, receivers and payers whose
reserve covers the payment are not examined, and over random populations the engine decides as one
that examines every account, leaving nobody under maintenance.

The venue: BitMEX's mark (P1 = index x (1 + rate x time to funding / interval)), the index never
stale, no premium sample (no book, or bids below and asks above the index), so the rate is the
interest rate; at the settlement instant the time to funding is 0 and the payment is at the index."""
import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from perpcore import Exchange, default_config
from perpcore import messages as m
from perpcore.breach_index import DOWN, UP
from perpcore.messages import LiquidationReason, Side

from liquidation_venue import BTC, of, usd

INTERVAL = 8 * 3600 * 10**9
TRADER, MAKER, RICH, BIDDER = 1, 2, 3, 4


def config(interest: int = 10_000, cap: int = 0):
    """interest: the rate per 8 h (RATE_SCALE) every settlement pays, longs paying when > 0."""
    cfg = default_config()
    return msgspec.structs.replace(cfg, instruments={
        s: msgspec.structs.replace(spec, pricing=msgspec.structs.replace(
            spec.pricing, mark_method="bitmex", interest_rate=interest, index_stale_ns=10**18,
            funding_clamp=max(spec.pricing.funding_clamp, abs(interest)),
            funding_cap=cap or spec.pricing.funding_cap))
        for s, spec in cfg.instruments.items()})


def accepted(ex, cmd):
    events = ex.submit(cmd)
    assert not of(events, m.OrderRejected), events
    return events


def open_account(ex, account, amount):
    accepted(ex, m.CreateAccount(account=account))
    accepted(ex, m.Deposit(account=account, asset="USD", amount=amount))


def trade(ex, long, short, qty, price):
    """short rests qty at price, long takes it all."""
    accepted(ex, m.PlaceOrder(account=short, symbol=BTC, side=Side.SELL, qty=qty, price=price))
    events = accepted(ex, m.PlaceOrder(account=long, symbol=BTC, side=Side.BUY, qty=qty,
                                       price=price, tif=m.TimeInForce.IOC))
    assert sum(e.qty for e in of(events, m.OrderFilled)) == qty


def counting(ex) -> list[int]:
    """The accounts the engine examines in full from now on, in order."""
    liq = ex.liquidation
    examined = []
    full = liq._examine

    def examine(account, keep_earlier=False):
        examined.append(account)
        return full(account, keep_earlier)
    liq._examine = examine
    return examined


def near_maintenance_venue() -> Exchange:
    """TRADER long 1 BTC bought at 65,000 with 5,276.83 USD, the index then at 60,000; MAKER short
    it; RICH long 0.1 BTC with 100,000 USD; BIDDER bids 1 BTC at 59,900."""
    ex = Exchange(config())
    for account, amount in ((TRADER, usd("5276.83")), (MAKER, usd(10**6)), (RICH, usd(10**5)),
                            (BIDDER, usd(10**6))):
        open_account(ex, account, amount)
    accepted(ex, m.SetIndexPrice(source="x", symbol=BTC, price=650000))
    trade(ex, TRADER, MAKER, 1000, 650000)                  # taker fee 0.05% of 65,000: 32.50
    trade(ex, RICH, MAKER, 100, 650000)
    accepted(ex, m.PlaceOrder(account=BIDDER, symbol=BTC, side=Side.BUY, qty=1000, price=599000))
    # mark = 60,000 x (1 + 0.01% x 8 h / 8 h) = 60,006 (the clock is at 0, funding at 8 h)
    accepted(ex, m.SetIndexPrice(source="x", symbol=BTC, price=600000))
    return ex


def test_funding_pushes_a_payer_under_maintenance_and_it_is_liquidated_at_once():
    ex = near_maintenance_venue()
    assert ex.components["pricing"].mark_price(BTC) == 600060
    # equity 5,276.83 - 32.50 + (60,006 - 65,000) = 250.33; maintenance in the 0.5% tier:
    # 0.5% x 60,006 - 50 = 250.03: sound by 0.30 USD
    trader = ex.account(TRADER)
    assert (trader.equity, trader.maintenance_margin) == (usd("250.33"), usd("250.03"))
    assert not trader.liquidatable
    examined = counting(ex)
    events = ex.submit(m.AdvanceClock(ts=INTERVAL))
    # paid at the index (no time left to funding): 1 BTC x 60,000 x 0.01% = 6.00 USD; the mark
    # is 60,006 again afterwards (a full interval to the next funding): no price moved
    assert not of(events, m.MarkPriceUpdated)
    paid = {e.account: e.amount for e in of(events, m.FundingPaid)}
    assert paid == {TRADER: -usd(6), MAKER: usd("6.6"), RICH: -usd("0.6")}
    assert of(events, m.LiquidationStarted) == [m.LiquidationStarted(
        events[0].seq, INTERVAL, TRADER, usd("244.33"), usd("250.03"),
        LiquidationReason.MAINTENANCE)]
    # the receiver and the payer whose reserve covers 0.60 USD were not examined
    assert examined[0] == TRADER and MAKER not in examined and RICH not in examined
    assert not any(ex.margin.liquidatable(a) for a in (TRADER, MAKER, RICH, BIDDER))
    ex.audit().check()


def test_a_payer_that_stays_sound_is_not_liquidated():
    """The same trader with 5.75 USD more: 0.05 USD above maintenance after paying 6.00."""
    ex = near_maintenance_venue()
    liq = ex.liquidation
    # its slack, 0.30 USD at 60,006, falls by 0.0995 a tick (0.10 of value less 0.0005 of
    # maintenance in the 0.5% tier): at 60,005.9 it is 250.23 - (300.0295 - 50) = 0.2005, above
    # half of 0.30; at 60,005.8, 250.13 - 250.029 = 0.101: the trigger, keeping half as room. The
    # spare on the other side, as far from the mark
    assert liq.index.triggers(TRADER) == ((("mark", BTC), DOWN, 600058),
                                          (("mark", BTC), UP, 600062))
    assert liq._reserve[TRADER] == usd("0.2005")    # the slack a tick inside the trigger
    assert ex.account(TRADER).positions[0].liquidation_price == 600056
    accepted(ex, m.Deposit(account=TRADER, asset="USD", amount=usd("5.75")))
    assert liq._reserve[TRADER] == usd("5.9505")    # the triggers stay
    examined = counting(ex)
    events = ex.submit(m.AdvanceClock(ts=INTERVAL))
    assert examined == [TRADER]         # 5.9505 USD does not cover 6.00: examined, and sound
    assert not of(events, m.LiquidationStarted)
    trader = ex.account(TRADER)
    assert (trader.equity, trader.maintenance_margin) == (usd("250.08"), usd("250.03"))
    # keyed again at once: half of the 0.05 USD of slack is reached just below 60,006, so the
    # trigger is the tick below the mark and the reserve the slack at the mark
    assert liq.index.triggers(TRADER)[0] == (("mark", BTC), DOWN, 600059)
    assert liq._reserve[TRADER] == usd("0.05")


def test_a_receiver_is_never_examined_and_a_covered_payer_only_its_reserve_lowered():
    ex = near_maintenance_venue()
    liq = ex.liquidation
    before = liq._reserve[RICH]
    examined = counting(ex)
    for k in (1, 2, 3):
        ex.submit(m.AdvanceClock(ts=k * INTERVAL))
        assert MAKER not in examined and RICH not in examined
        assert liq._reserve[RICH] == before - k * usd("0.6")
    # no positive mark takes half its slack: its trigger never fires
    assert liq.index.triggers(RICH)[0] == (("mark", BTC), DOWN, 0)


def test_a_fill_updates_the_reserve_and_keeps_the_triggers():
    """A fill brings the account's reserve up to date from the fill alone: its triggers stay, it
    is not examined, and the next settlement passes it by as a covered payer."""
    ex = near_maintenance_venue()
    liq = ex.liquidation
    triggers, before = liq.index.triggers(RICH), liq._reserve[RICH]
    examined = counting(ex)
    trade(ex, RICH, MAKER, 100, 600060)
    # 0.1 BTC more at 60,006, valued at its corner, a mark of 1 tick (its trigger is 0): worth
    # 0.01, for 6,000.60 of entry value and the taker fee 0.05% of it (3.0003); 0.4% of 0.01 more
    # maintenance
    assert liq._reserve[RICH] == \
        before + usd("0.01") - usd("6000.6") - usd("3.0003") - usd("0.00004")
    assert liq.index.triggers(RICH) == triggers and examined == []
    ex.submit(m.AdvanceClock(ts=INTERVAL))
    assert RICH not in examined


# ---- random populations ----------------------------------------------------------------------

def slack_at(ex, account: int, price: int) -> int:
    """Reference: equity - maintenance of an account with one BTC position and only USD, at mark
    `price` (cash + (size x price - signed entry value) x upt - maintenance of the notional)."""
    acc = ex.margin.accounts[account]
    pos = acc.positions[BTC]
    sr = ex.margin.symbols[BTC]
    entry = pos.cost if pos.size > 0 else -pos.cost
    equity = acc.cash["USD"] + (pos.size * price - entry) * sr.upt
    return equity - sr.tiers.maintenance(abs(pos.size) * price * sr.upt)


def check_reserves(ex) -> None:
    """Every single-position account: its reserve is at most its slack at the worst price strictly
    inside its trigger on its side (the trigger's neighbour; 1 tick for a trigger of 0)."""
    liq = ex.liquidation
    for account, reserve in liq._reserve.items():
        acc = ex.margin.accounts[account]
        dims = liq._dims(acc)
        if account in liq._dirty or reserve <= 0 or len(dims) != 1:
            continue            # no position: nothing to pay; other assets are not dealt here
        [(dim, direction, price, _)] = dims
        [trigger] = [t for d, side, t in liq.index.triggers(account) if side == direction]
        worst = max(trigger + 1, 1) if direction == DOWN else trigger - 1
        assert slack_at(ex, account, worst) >= reserve, (account, reserve, dims)


def examine_everyone(ex) -> None:
    """The reference engine: whenever funding is paid, every account is examined in full, as is
    every account a fill or any other money movement touched (no reserve or corner shortcut)."""
    liq = ex.liquidation
    liq.shortcuts = False
    liq._uncovered = lambda paid, touched: sorted(ex.margin.accounts)


steps = st.lists(st.one_of(
    st.tuples(st.just("index"), st.integers(-120, 120)),          # per mille from the start
    st.tuples(st.just("settle"), st.just(0)),                       # to the next funding time
    st.tuples(st.just("settle"), st.just(0)),                       # (twice as likely)
    st.tuples(st.just("clock"), st.integers(1, 3 * INTERVAL // 2)),
    st.tuples(st.just("trade"), st.integers(0, 10**6)),             # a random pair trades
    st.tuples(st.just("withdraw"), st.integers(0, 10**6)),
), min_size=3, max_size=14)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(n=st.integers(2, 6), interest=st.integers(-600_000, 600_000), seed=st.integers(0, 10**9),
       leverage=st.lists(st.integers(2, 50), min_size=12, max_size=12),
       deposits=st.lists(st.integers(200, 5_000), min_size=12, max_size=12),
       lots=st.lists(st.integers(10, 1500), min_size=6, max_size=6), steps=steps)
def test_fast_path_decides_as_examining_everyone(n, interest, seed, leverage, deposits, lots,
                                                 steps):
    """n pairs (a long and a short) at random leverage and deposits, a maker bidding and offering
    far from the index and the insurance fund, then random index moves, settlements (rates up to
    0.6% an interval either way, the cap raised to allow them), clock jumps, fills and withdrawals.
    After every command: the same events as the reference engine, nobody under maintenance, every
    reserve a true bound."""
    cfg = config(interest, cap=1_000_000)
    fast, ref = Exchange(cfg), Exchange(cfg)
    examine_everyone(ref)
    clock = 0

    def submit(cmd):
        events = fast.submit(cmd)
        assert events == ref.submit(cmd)
        for account in fast.margin.accounts:
            assert not fast.margin.liquidatable(account), (account, cmd)
        check_reserves(fast)
        return events

    price = 650000
    maker = 2 * n + 1
    for a in range(1, 2 * n + 1):
        submit(m.CreateAccount(account=a))
        submit(m.Deposit(account=a, asset="USD", amount=usd(deposits[a - 1])))
        submit(m.SetLeverage(account=a, symbol=BTC, leverage=leverage[a - 1]))
    submit(m.CreateAccount(account=maker))
    submit(m.Deposit(account=maker, asset="USD", amount=usd(10**8)))
    submit(m.FundInsurance(asset="USD", amount=usd(10**6)))
    submit(m.SetIndexPrice(source="x", symbol=BTC, price=price))
    for k in range(n):
        qty = lots[k]
        submit(m.PlaceOrder(account=2 * k + 2, symbol=BTC, side=Side.SELL, qty=qty, price=price))
        submit(m.PlaceOrder(account=2 * k + 1, symbol=BTC, side=Side.BUY, qty=qty, price=price,
                            tif=m.TimeInForce.IOC))
    submit(m.PlaceOrder(account=maker, symbol=BTC, side=Side.BUY, qty=50_000, price=price // 2))
    submit(m.PlaceOrder(account=maker, symbol=BTC, side=Side.SELL, qty=50_000, price=price * 2))
    pricing = fast.components["pricing"]
    for i, (kind, x) in enumerate(steps):
        if kind == "index":
            submit(m.SetIndexPrice(source="x", symbol=BTC, price=price * (1000 + x) // 1000,
                                   ts=clock))
        elif kind == "settle":
            clock = pricing.next_funding_time(BTC)
            submit(m.AdvanceClock(ts=clock))
        elif kind == "clock":
            clock += x
            submit(m.AdvanceClock(ts=clock))
        else:
            a = (seed + x + i) % (2 * n) + 1
            if kind == "trade":
                # a small fill against the maker's resting quotes is too far away: a pair trades
                b = a + 1 if a % 2 else a - 1
                mark = pricing.mark_price(BTC)
                submit(m.PlaceOrder(account=b, symbol=BTC, side=Side.SELL, qty=10, price=mark,
                                    ts=clock))
                submit(m.PlaceOrder(account=a, symbol=BTC, side=Side.BUY, qty=10, price=mark,
                                    tif=m.TimeInForce.IOC, ts=clock))
            else:
                submit(m.Withdraw(account=a, asset="USD", amount=1 + x % usd(50), ts=clock))
    fast.audit().check()
