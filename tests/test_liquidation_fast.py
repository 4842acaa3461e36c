"""The liquidation engine's shortcuts decide as examining every account in full (perpcore.liquidation:
"The reserve"): a fill brings the account's reserve up to date from the fill alone, any other money
movement computes it again at the triggers' corner, a flip uses the spare trigger, and only what
they cannot show sound is examined.

Random accounts holding both perps (longs, shorts, flips), some with BTC collateral and loans,
trade with each other and a maker, deposit, withdraw, borrow, and the index moves, crashes and
goes stale while the clock runs through funding and interest. Two exchanges take the same commands:
one as built, one that examines every account a command touched (and every funding payer) in full.
After every command: the same events; every reserve kept is at most the account's equity -
maintenance at any prices strictly inside its triggers (their corner, the current prices and random
ones: the index never misses a breach), each position's term is exact, and nobody is left under
maintenance unless a stale index holds it back."""
import random

import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from perpcore import Exchange
from perpcore import messages as m
from perpcore.liquidation import DOWN, UP
from perpcore.messages import Side

from liquidation_venue import BTC, ETH, Venue, of, usd, venue_config

S = 1_000_000_000
START = {BTC: 650000, ETH: 340000}
MAKER = 1
TRADERS = tuple(range(2, 8))


def config(interest: int):
    """The venue of liquidation_venue with funding at `interest` per 8 h (longs pay when > 0)."""
    cfg = venue_config()
    return msgspec.structs.replace(cfg, instruments={
        s: msgspec.structs.replace(spec, pricing=msgspec.structs.replace(
            spec.pricing, interest_rate=interest, funding_cap=1_000_000,
            funding_clamp=max(spec.pricing.funding_clamp, abs(interest))))
        for s, spec in cfg.instruments.items()})


def full_examination(ex: Exchange) -> None:
    """The reference: every account a command touched, and every funding payer, examined in full."""
    ex.liquidation.shortcuts = False


def slack_at(ex: Exchange, account: int, prices: dict) -> int:
    """Equity - maintenance of the account with its positions at marks, its collateral at indices,
    from `prices` ({dim: ticks}), straight from perpcore.margin's definitions."""
    margin = ex.margin
    acc = margin.accounts[account]
    total = acc.cash["USD"] - margin.lending.debts.get(account, 0)
    for symbol, pos in acc.positions.items():
        if pos.size:
            sr = margin.symbols[symbol]
            price = prices[("mark", symbol)]
            entry = pos.cost if pos.size > 0 else -pos.cost
            total += (pos.size * price - entry) * sr.upt - \
                sr.tiers.maintenance(abs(pos.size) * price * sr.upt)
    for c in margin.collateral:
        if acc.cash[c.asset] > 0 and ex.index_price(c.symbol) is not None:
            total += c.value(acc.cash[c.asset], prices[("index", c.symbol)])
    return total


def check_reserves(ex: Exchange, rng: random.Random) -> None:
    liq = ex.liquidation
    pricing = ex.components["pricing"]
    for account, reserve in liq.reserves().items():
        terms = liq.terms(account)
        if terms is None:
            continue
        assert reserve >= 1, (account, reserve)
        sides: dict = {}
        for dim, direction, trigger in liq.triggers_of(account):
            sides.setdefault(dim, [None, None])[0 if direction == DOWN else 1] = trigger
        current = {dim: pricing.mark_price(dim[1]) if dim[0] == "mark" else pricing.index_price(dim[1])
                   for dim in sides}
        # the account's corner: each price a tick inside the trigger on its side
        acc = ex.margin.accounts[account]
        corner = dict(current)
        for dim, (down, up) in sides.items():
            size = acc.positions[dim[1]].size if dim[0] == "mark" else 1
            if size > 0:
                corner[dim] = max(down + 1, 1)
            elif size < 0:
                corner[dim] = up - 1
        assert slack_at(ex, account, corner) >= reserve, (account, reserve, sides)
        for symbol, (below, above, term) in terms.items():
            pos = acc.positions[symbol]
            at = below if pos.size > 0 else above if pos.size < 0 else 0
            assert term == liq.term(symbol, pos.size, pos.cost, at), (account, symbol)
        # any prices strictly inside the triggers, the current ones among them
        assert slack_at(ex, account, current) >= reserve, (account, reserve, current, sides)
        for _ in range(3):
            inside = {}
            for dim, (down, up) in sides.items():
                lo = max(down + 1, 1) if down is not None else 1
                hi = up - 1 if up is not None else 2 * current[dim]
                inside[dim] = rng.randint(lo, max(lo, hi))
            assert slack_at(ex, account, inside) >= reserve, (account, reserve, inside, sides)


def held_back(ex: Exchange, account: int) -> bool:
    stale = ex.components["pricing"].is_stale
    acc = ex.margin.accounts[account]
    return any(stale(s) for s, p in acc.positions.items() if p.size) or \
        any(stale(c.symbol) for c in ex.margin.collateral if acc.cash[c.asset] > 0)


steps = st.lists(st.one_of(
    st.tuples(st.just("fill"), st.integers(0, 10**6)),             # two of them trade
    st.tuples(st.just("fill"), st.integers(0, 10**6)),             # (twice as likely)
    st.tuples(st.just("take"), st.integers(0, 10**6)),             # one leverages up
    st.tuples(st.just("take"), st.integers(0, 10**6)),
    st.tuples(st.just("index"), st.integers(-30, 30)),             # per mille
    st.tuples(st.just("index"), st.sampled_from([-300, -150, -80, 80, 150, 300])),   # crashes
    st.tuples(st.just("index"), st.sampled_from([-150, -80, -40, 40, 80, 150])),
    st.tuples(st.just("clock"), st.integers(1, 3600)),             # seconds
    st.tuples(st.just("clock"), st.just(8 * 3600)),                # a funding settlement
    st.tuples(st.just("money"), st.integers(0, 10**6)),            # deposit, withdraw, borrow
), min_size=8, max_size=40)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(deposits=st.lists(st.integers(300, 20_000), min_size=len(TRADERS), max_size=len(TRADERS)),
       btc=st.lists(st.booleans(), min_size=len(TRADERS), max_size=len(TRADERS)),
       interest=st.integers(-300_000, 300_000), seed=st.integers(0, 10**9), steps=steps)
def test_shortcuts_decide_as_examining_in_full(deposits, btc, interest, seed, steps):
    cfg = config(interest)
    fast, ref = Exchange(cfg), Exchange(cfg)
    full_examination(ref)
    rng = random.Random(seed)
    clock = 0

    def submit(cmd):
        events = fast.submit(cmd)
        assert events == ref.submit(cmd), cmd
        check_reserves(fast, rng)
        for account in fast.margin.accounts:
            assert not fast.margin.liquidatable(account) or held_back(fast, account), account
        return events

    submit(m.CreateAccount(account=MAKER))
    submit(m.Deposit(account=MAKER, asset="USD", amount=usd(10**8)))
    submit(m.FundInsurance(asset="USD", amount=usd(10**5)))
    for symbol, price in START.items():
        submit(m.SetIndexPrice(source="x", symbol=symbol, price=price))
    for a, amount, has_btc in zip(TRADERS, deposits, btc):
        submit(m.CreateAccount(account=a))
        submit(m.Deposit(account=a, asset="USD", amount=usd(amount)))
        if has_btc:
            submit(m.Deposit(account=a, asset="BTC", amount=20_000_000))     # 0.2 BTC
    for symbol in START:        # the maker's far quotes: what liquidations sell into
        mark = fast.mark_price(symbol)
        submit(m.PlaceOrder(account=MAKER, symbol=symbol, side=Side.BUY, qty=50_000,
                            price=mark * 7 // 10))
        submit(m.PlaceOrder(account=MAKER, symbol=symbol, side=Side.SELL, qty=50_000,
                            price=mark * 13 // 10))
    for kind, x in steps:
        a = TRADERS[x % 6]
        symbol = (BTC, ETH)[x // 6 % 2]
        side = Side(x // 12 % 2)
        mark = fast.mark_price(symbol)
        if kind == "fill":          # a small fill between two traders: flips, closes, adds
            b = TRADERS[(x // 24 % 5 + 1 + x) % 6]
            qty = 10 + x // 120 % 1000
            if b != a:
                submit(m.PlaceOrder(account=b, symbol=symbol, side=Side(1 - side), qty=qty,
                                    price=mark, ts=clock))
                submit(m.PlaceOrder(account=a, symbol=symbol, side=side, qty=qty, price=mark,
                                    tif=m.TimeInForce.IOC, ts=clock))
        elif kind == "take":        # from the maker, most of what its equity allows at a leverage
            leverage = 5 + x // 24 % 46
            submit(m.SetLeverage(account=a, symbol=symbol, leverage=leverage, ts=clock))
            per_lot = mark * fast.config.units_per_ticklot(symbol)
            qty = max(10, fast.account(a).equity * leverage * 9 // (10 * per_lot))
            submit(m.PlaceOrder(account=MAKER, symbol=symbol, side=Side(1 - side), qty=qty,
                                price=mark, ts=clock))
            submit(m.PlaceOrder(account=a, symbol=symbol, side=side, qty=qty, price=mark,
                                tif=m.TimeInForce.IOC, ts=clock))
        elif kind == "index":
            price = max(1, fast.index_price(symbol) * (1000 + x) // 1000)
            submit(m.SetIndexPrice(source="x", symbol=symbol, price=price, ts=clock))
        elif kind == "clock":
            clock += x * S
            submit(m.AdvanceClock(ts=clock))
        else:
            cmd = (m.Deposit, m.Withdraw, m.Borrow)[x // 6 % 3]
            submit(cmd(account=a, asset="USD", amount=usd(1 + x // 24 % 3000), ts=clock))
    assert fast.state_hash() == ref.state_hash()
    fast.audit().check()


def test_a_flip_uses_the_spare_trigger():
    """A long sold into a short needs no new trigger: the spare above the mark becomes the one on
    its side, and the reserve is brought up to date from the fill alone."""
    v = Venue()
    v.account(1, 50_000)
    v.account(2, 1_000_000)
    v.price(BTC, 650000)
    v.trade(2, 1, BTC, Side.BUY, 1000, 650000)
    liq = v.ex.liquidation
    triggers = liq.triggers_of(1)
    assert [side for _, side, _ in triggers] == [DOWN, UP]
    examined = []
    full = liq._examine
    liq._examine = lambda account, keep_earlier=False: examined.append(account) or \
        full(account, keep_earlier)
    v.trade(2, 1, BTC, Side.SELL, 1500, 650000)               # long 1 BTC -> short 0.5 BTC
    assert v.size(1, BTC) == -500
    assert liq.triggers_of(1) == triggers and examined == []
    below, above, term = liq.terms(1)[BTC]
    assert term == liq.term(BTC, -500, v.ex.margin.accounts[1].positions[BTC].cost, above)
    corner = {("mark", BTC): above}
    assert liq.reserve(1) == slack_at(v.ex, 1, corner)
    # and the short is liquidated when the mark reaches its liquidation price
    price = v.ex.account(1).positions[0].liquidation_price
    v.order(2, BTC, Side.SELL, 1000, price)
    assert not of(v.price(BTC, price - 1), m.LiquidationStarted)
    assert [e.account for e in of(v.price(BTC, price), m.LiquidationStarted)] == [1]


def test_fills_in_a_symbol_without_an_index_are_looked_at_once():
    """Before its first index price a symbol's exposures cannot be liquidated (a breach there is
    deferred) and are keyed to be looked at on any move of its mark: an account's first fill there
    is looked at, its later fills are not, and the engine decides as examining every fill in full,
    the first price included."""
    cfg = venue_config()
    fast, ref = Exchange(cfg), Exchange(cfg)
    full_examination(ref)
    looked = []                         # accounts the rounds look at (_sound, then _examine)
    sound = fast.liquidation._sound
    fast.liquidation._sound = lambda account: looked.append(account) or sound(account)

    def submit(cmd):
        events = fast.submit(cmd)
        assert events == ref.submit(cmd), cmd
        return events

    submit(m.SetIndexPrice(source="x", symbol=BTC, price=START[BTC]))     # ETH has no index
    for a, amount in ((1, 10**6), (2, 200)):
        submit(m.CreateAccount(account=a))
        submit(m.Deposit(account=a, asset="USD", amount=usd(amount)))
    submit(m.SetLeverage(account=2, symbol=ETH, leverage=20))
    for fill in range(3):               # account 2 buys 1,020 USD of ETH on 200, in three fills
        submit(m.PlaceOrder(account=1, symbol=ETH, side=Side.SELL, qty=10, price=340000))
        events = submit(m.PlaceOrder(account=2, symbol=ETH, side=Side.BUY, qty=10, price=340000,
                                     tif=m.TimeInForce.IOC))
        assert [e.account for e in of(events, m.PositionChanged)] == [1, 2]
        if fill == 0:
            assert set(looked) == {1, 2}           # the first fill keys ETH's mark for both
            looked.clear()
    assert looked == [] and fast.mark_price(ETH) is None and fast.account(2).positions
    # the first index price, far below their entry: account 2 is liquidated as a full look finds
    events = submit(m.SetIndexPrice(source="x", symbol=ETH, price=START[ETH] * 6 // 10))
    assert [e.account for e in of(events, m.LiquidationStarted)] == [2]
    assert fast.state_hash() == ref.state_hash()
    fast.audit().check()


def test_stage_6_reads_a_fill_from_settlement_and_looks_in_full_without_it():
    """Settlement records each PositionChanged (perpcore._margin.Step) for stage 6 to step the
    reserve from; the record is read and emptied as the command ends. A PositionChanged stage 6 has
    no record of (events handed to it again, outside a command) is never stepped from stale
    figures: its account is looked at in full."""
    v = Venue()
    v.account(1, 50_000)
    v.account(2, 1_000_000)
    v.price(BTC, 650000)
    v.trade(2, 1, BTC, Side.BUY, 1000, 650000)                 # both keyed: 1 long, 2 short
    liq = v.ex.liquidation
    looked = []
    sound = liq._sound
    liq._sound = lambda account: looked.append(account) or sound(account)
    events = v.trade(2, 1, BTC, Side.BUY, 100, 650000)         # stepped from the records
    assert looked == [] and v.ex.margin.n_steps == 0
    v.ex._liquidate(of(events, m.PositionChanged))
    assert sorted(looked) == [1, 2]
