"""Conditional orders (perpcore.triggers): stop and take-profit, market and limit, by mark or last
trade; refusals at the boundary, cancels, snapshots, journal replay, cascades, and a property test
against a plain model of which orders fire and in what order.

The venue's mark is exactly the index (margin_venue: BitMEX fair price, no interest), so an index
move sets the mark to the tick."""
from hypothesis import given, settings, strategies as st

from perpcore import Exchange
from perpcore import journal as jr
from perpcore import messages as m
from perpcore.exchange import config_digest
from perpcore.messages import CancelReason, RejectCode, Side, TriggerKind, TriggerSource

from margin_venue import BTC, ETH, Venue, of, usd

STOP, TP = TriggerKind.STOP, TriggerKind.TAKE_PROFIT
MARK, LAST = TriggerSource.MARK, TriggerSource.LAST
MKT, LMT = m.OrderType.MARKET, m.OrderType.LIMIT
LOT = 1000                     # lots per BTC
P = 650_000                    # 65,000.0 USD in ticks (0.1 USD each)


def venue(**instrument) -> Venue:
    v = Venue(**instrument)
    for account in (1, 2, 3):
        v.account(account, USD=usd(1_000_000))
    v.price(BTC, P)
    return v


def conditional(account, side, qty, trigger, trigger_price, price=0, order_type=MKT, by=MARK,
                symbol=BTC, **kw):
    return m.PlaceOrder(account=account, symbol=symbol, side=side, qty=qty, price=price,
                        order_type=order_type, trigger=trigger, trigger_price=trigger_price,
                        trigger_by=by, **kw)


def move(v: Venue, price: int) -> list:
    """Moves the index (so the mark) to `price`; fired orders may be refused."""
    return v.ex.submit(m.SetIndexPrice(source="x", symbol=BTC, price=price))


def accepted_id(events) -> int:
    (e,) = of(events, m.TriggerOrderAccepted)
    return e.order_id


# ---- firing ------------------------------------------------------------------------------------

def test_stop_market_sell_fires_on_the_mark_and_trades_under_its_id():
    v = venue()
    v.order(2, BTC, Side.BUY, 2 * LOT, 630_000)              # the bid it will sell into
    im_before = v.ex.account(1).initial_margin
    oid = accepted_id(v.submit(conditional(1, Side.SELL, LOT, STOP, 640_000)))
    # waiting: nothing reserved, nothing in the book
    assert v.ex.account(1).initial_margin == im_before
    assert v.ex.book(BTC).order(oid) is None and v.ex.book(BTC).best_ask() is None
    assert not of(v.price(BTC, 640_100), m.OrderTriggered)  # above the trigger: still waiting
    events = v.price(BTC, 640_000)                            # at the trigger: fires
    kinds = [type(e) for e in events]
    assert kinds.index(m.MarkPriceUpdated) < kinds.index(m.OrderTriggered) \
        < kinds.index(m.OrderAccepted) < kinds.index(m.OrderFilled)
    (t,) = of(events, m.OrderTriggered)
    assert (t.order_id, t.account, t.trigger_price, t.trigger_by, t.price) == \
        (oid, 1, 640_000, MARK, 640_000)
    (a,) = of(events, m.OrderAccepted)
    assert (a.order_id, a.order_type, a.tif) == (oid, MKT, m.TimeInForce.IOC)
    (f,) = of(events, m.OrderFilled)
    assert (f.taker_order_id, f.price, f.qty, f.taker_side) == (oid, 630_000, LOT, Side.SELL)
    assert v.ex.account(1).positions[0].size == -LOT
    assert v.ex.triggers.to_state() == [] and v.ex.triggers.live == 0
    assert v.ex.audit().ok


def test_stop_limit_buy_rests_at_its_limit_after_the_trigger():
    v = venue()
    oid = accepted_id(v.submit(conditional(1, Side.BUY, LOT, STOP, 660_000, price=661_000,
                                           order_type=LMT, client_order_id=5)))
    assert v.ex.account(1).initial_margin == 0
    events = v.price(BTC, 660_500)
    assert [e.order_id for e in of(events, m.OrderTriggered)] == [oid]
    assert not of(events, m.OrderFilled)
    state = v.ex.book(BTC).order(oid)
    assert state[1:5] == (1, Side.BUY, 661_000, LOT)
    assert v.ex.book(BTC).best_bid() == 661_000
    # now an ordinary resting order: its margin is held and its client id cancels it
    assert v.ex.account(1).initial_margin > 0
    cancel = v.submit(m.CancelOrder(account=1, symbol=BTC, client_order_id=5))
    assert [(e.order_id, e.open_qty) for e in of(cancel, m.OrderCancelled)] == [(oid, LOT)]


def test_take_profit_sell_fires_on_a_rise_and_take_profit_buy_on_a_fall():
    v = venue()
    v.order(2, BTC, Side.BUY, LOT, 669_000)
    v.order(2, BTC, Side.SELL, LOT, 671_000)
    tp_sell = accepted_id(v.submit(conditional(1, Side.SELL, LOT, TP, 670_000, price=669_000,
                                               order_type=LMT)))
    tp_buy = accepted_id(v.submit(conditional(3, Side.BUY, LOT, TP, 600_000)))
    events = v.price(BTC, 670_000)
    assert [e.order_id for e in of(events, m.OrderTriggered)] == [tp_sell]
    (f,) = of(events, m.OrderFilled)
    assert (f.taker_order_id, f.price, f.qty) == (tp_sell, 669_000, LOT)
    events = v.price(BTC, 599_000)
    assert [e.order_id for e in of(events, m.OrderTriggered)] == [tp_buy]
    (f,) = of(events, m.OrderFilled)
    assert (f.taker_order_id, f.taker_side, f.price) == (tp_buy, Side.BUY, 671_000)


def test_last_price_source_ignores_the_mark_and_fires_on_a_trade():
    v = venue()
    v.order(2, BTC, Side.BUY, LOT, 650_000)
    v.order(3, BTC, Side.SELL, LOT, 650_000)                  # a trade: last = 650,000
    oid = accepted_id(v.submit(conditional(1, Side.BUY, LOT, STOP, 655_000, price=656_000,
                                           order_type=LMT, by=LAST)))
    assert not of(v.price(BTC, 700_000), m.OrderTriggered)    # the mark alone does not fire it
    v.order(2, BTC, Side.SELL, LOT, 655_000)
    events = v.order(3, BTC, Side.BUY, LOT, 655_000)          # last trade reaches 655,000
    (t,) = of(events, m.OrderTriggered)
    assert (t.order_id, t.trigger_by, t.price) == (oid, LAST, 655_000)
    assert v.ex.book(BTC).order(oid)[3] == 656_000


def test_cascade_of_last_price_stops_in_one_command():
    v = venue()
    # bids one below the other; each stop's sale prints lower and fires the next stop
    for price in (649_000, 648_000, 647_000):
        v.order(2, BTC, Side.BUY, LOT, price)
    v.order(3, BTC, Side.SELL, LOT // 2, 650_000)
    v.order(2, BTC, Side.BUY, LOT // 2, 650_000)               # last = 650,000
    first = accepted_id(v.submit(conditional(1, Side.SELL, LOT, STOP, 649_500, by=LAST)))
    second = accepted_id(v.submit(conditional(3, Side.SELL, LOT, STOP, 648_500, by=LAST)))
    third = accepted_id(v.submit(conditional(1, Side.SELL, LOT, STOP, 647_500, by=LAST)))
    events = v.order(3, BTC, Side.SELL, LOT // 2, 649_000, tif=m.TimeInForce.IOC)
    ioc = of(events, m.OrderAccepted)[0].order_id
    # each round fires only what the previous round's prints crossed
    assert [e.order_id for e in of(events, m.OrderTriggered)] == [first, second, third]
    assert [(f.taker_order_id, f.price, f.qty) for f in of(events, m.OrderFilled)] == [
        (ioc, 649_000, 500), (first, 649_000, 500), (first, 648_000, 500),
        (second, 648_000, 500), (second, 647_000, 500), (third, 647_000, 500)]
    (left,) = of(events, m.OrderCancelled)                     # the book ran out under the third
    assert (left.order_id, left.open_qty, left.reason) == (third, 500, CancelReason.EXPIRED)
    assert v.ex.triggers.live == 0 and v.ex.audit().ok


def test_orders_crossed_together_fire_nearest_trigger_first_then_by_arrival():
    v = venue()
    ids = [accepted_id(v.submit(conditional(a, Side.SELL, LOT, STOP, t)))
           for a, t in ((1, 640_000), (2, 645_000), (3, 640_000), (1, 645_000))]
    events = move(v, 630_000)
    assert [e.order_id for e in of(events, m.OrderTriggered)] == [ids[1], ids[3], ids[0], ids[2]]
    # no liquidity: each is refused as it fires, under its id, and dropped
    assert [(e.order_id, e.code) for e in of(events, m.OrderRejected)] == [
        (i, RejectCode.NO_LIQUIDITY) for i in (ids[1], ids[3], ids[0], ids[2])]
    assert v.ex.triggers.live == 0


def test_reduce_only_stop_after_the_position_closed_is_refused_when_it_fires():
    v = venue()
    v.trade(2, 1, BTC, Side.BUY, LOT, 650_000)                 # account 1 long 1 BTC
    oid = accepted_id(v.submit(conditional(1, Side.SELL, LOT, STOP, 640_000, reduce_only=True)))
    v.trade(2, 1, BTC, Side.SELL, LOT, 650_000)                # closed by hand
    v.order(2, BTC, Side.BUY, LOT, 630_000)
    events = move(v, 639_000)
    assert [e.order_id for e in of(events, m.OrderTriggered)] == [oid]
    (r,) = of(events, m.OrderRejected)
    assert (r.order_id, r.account, r.code) == (oid, 1, RejectCode.REDUCE_ONLY_WOULD_INCREASE)
    assert not of(events, m.OrderFilled) and not of(events, m.OrderAccepted)
    assert all(p.size == 0 for p in v.ex.account(1).positions)
    assert v.ex.triggers.live == 0


def test_fired_order_refused_for_margin_is_dropped_and_nothing_else_changes():
    v = venue()
    v.account(4, USD=usd(100))
    v.order(2, BTC, Side.SELL, 10 * LOT, 671_000)
    oid = accepted_id(v.submit(conditional(4, Side.BUY, 10 * LOT, STOP, 660_000)))
    events = move(v, 661_000)
    (r,) = of(events, m.OrderRejected)
    assert (r.order_id, r.code) == (oid, RejectCode.INSUFFICIENT_MARGIN)
    assert not of(events, m.OrderFilled)
    assert v.ex.book(BTC).best_ask() == 671_000 and v.ex.triggers.live == 0


# ---- refusals at the boundary ------------------------------------------------------------------

def test_refusals_change_nothing():
    v = venue(price_step=10)
    v.submit(conditional(1, Side.SELL, LOT, STOP, 640_000, client_order_id=9))
    cases = [
        (conditional(1, Side.SELL, LOT, STOP, 650_000), RejectCode.WOULD_TRIGGER_IMMEDIATELY),
        (conditional(1, Side.SELL, LOT, STOP, 660_000), RejectCode.WOULD_TRIGGER_IMMEDIATELY),
        (conditional(1, Side.BUY, LOT, STOP, 640_000), RejectCode.WOULD_TRIGGER_IMMEDIATELY),
        (conditional(1, Side.SELL, LOT, TP, 640_000), RejectCode.WOULD_TRIGGER_IMMEDIATELY),
        (conditional(1, Side.BUY, LOT, TP, 650_000), RejectCode.WOULD_TRIGGER_IMMEDIATELY),
        (conditional(1, Side.SELL, LOT, STOP, 640_000, by=LAST), RejectCode.NO_REFERENCE_PRICE),
        (conditional(1, Side.SELL, LOT, STOP, 640_000, symbol=ETH), RejectCode.NO_REFERENCE_PRICE),
        (conditional(1, Side.SELL, LOT, STOP, 0), RejectCode.INVALID_PRICE),
        (conditional(1, Side.SELL, LOT, STOP, -10), RejectCode.INVALID_PRICE),
        (conditional(1, Side.SELL, LOT, STOP, 640_005), RejectCode.PRICE_NOT_TICK_MULTIPLE),
        (conditional(1, Side.BUY, LOT, STOP, 100_000_010), RejectCode.PRICE_OUT_OF_RANGE),
        (conditional(1, Side.SELL, LOT, STOP, 640_000, client_order_id=9),
         RejectCode.DUPLICATE_CLIENT_ORDER_ID),
        (m.PlaceOrder(1, BTC, Side.SELL, LOT, 640_000, client_order_id=9),
         RejectCode.DUPLICATE_CLIENT_ORDER_ID),
        (conditional(1, Side.SELL, LOT, STOP, 640_000, price=640_005, order_type=LMT),
         RejectCode.PRICE_NOT_TICK_MULTIPLE),
        (conditional(1, Side.SELL, 0, STOP, 640_000), RejectCode.INVALID_QTY),
        (conditional(1, Side.SELL, LOT, 3, 640_000), RejectCode.MALFORMED),
        (conditional(1, Side.SELL, LOT, STOP, 640_000, by=2), RejectCode.MALFORMED),
        (conditional(1, Side.SELL, LOT, STOP, 640_000.0), RejectCode.MALFORMED),
        (m.CancelOrder(account=2, symbol=BTC, client_order_id=9), RejectCode.UNKNOWN_ORDER),
        (m.CancelOrder(account=1, symbol=ETH, order_id=1), RejectCode.UNKNOWN_ORDER),
    ]
    for cmd, code in cases:
        assert v.refuse(cmd) == code, cmd


# ---- cancels -----------------------------------------------------------------------------------

def test_cancel_by_id_by_client_id_and_cancel_all():
    v = venue()
    a = accepted_id(v.submit(conditional(1, Side.SELL, LOT, STOP, 640_000)))
    b = accepted_id(v.submit(conditional(1, Side.SELL, LOT, STOP, 639_000, client_order_id=7)))
    c = accepted_id(v.submit(conditional(1, Side.BUY, LOT, STOP, 660_000)))
    d = accepted_id(v.submit(conditional(2, Side.BUY, LOT, STOP, 660_000)))
    resting = v.order(1, BTC, Side.BUY, LOT, 600_000)[0].order_id
    events = v.submit(m.CancelOrder(account=1, symbol=BTC, order_id=a))
    assert [(e.order_id, e.open_qty, e.reason) for e in events] == [(a, LOT, CancelReason.USER)]
    events = v.submit(m.CancelOrder(account=1, symbol=BTC, client_order_id=7))
    assert [(e.order_id, e.reason) for e in events] == [(b, CancelReason.USER)]
    # the client id is free again
    again = accepted_id(v.submit(conditional(1, Side.SELL, LOT, STOP, 639_000, client_order_id=7)))
    events = v.submit(m.CancelAll(account=1))
    assert sorted((e.order_id, e.reason) for e in events) == [
        (c, CancelReason.CANCEL_ALL), (resting, CancelReason.CANCEL_ALL),
        (again, CancelReason.CANCEL_ALL)]
    assert [o[0] for o in v.ex.triggers.to_state()] == [d]
    assert not of(v.price(BTC, 630_000), m.OrderTriggered)    # the cancelled never fire


def test_liquidation_drops_the_accounts_conditional_orders():
    v = venue()
    v.account(4, USD=usd(7_000))
    v.trade(2, 4, BTC, Side.BUY, LOT, 650_000)                  # ~10x long
    v.order(2, BTC, Side.BUY, 5 * LOT, 500_000)                 # liquidity for the engine
    take_profit = accepted_id(v.submit(conditional(4, Side.SELL, LOT, TP, 700_000,
                                                   reduce_only=True)))
    events = move(v, 582_000)
    assert of(events, m.LiquidationStarted)
    assert (take_profit, CancelReason.LIQUIDATION) in [
        (e.order_id, e.reason) for e in of(events, m.OrderCancelled)]
    assert v.ex.triggers.live == 0


# ---- state: snapshots and the journal ----------------------------------------------------------

def _session() -> list:
    cmds = [m.CreateAccount(account=a) for a in (1, 2, 3)]
    cmds += [m.Deposit(account=a, asset="USD", amount=usd(1_000_000)) for a in (1, 2, 3)]
    cmds += [m.SetIndexPrice(source="x", symbol=BTC, price=P),
             m.PlaceOrder(2, BTC, Side.BUY, 3 * LOT, 630_000),
             m.PlaceOrder(3, BTC, Side.SELL, LOT, 630_000),
             conditional(1, Side.SELL, LOT, STOP, 640_000, client_order_id=3),
             conditional(3, Side.BUY, LOT, STOP, 660_000, price=661_000, order_type=LMT),
             conditional(1, Side.SELL, LOT, TP, 640_000, by=LAST, reduce_only=True)]
    return cmds


def test_snapshot_round_trip_with_waiting_orders(tmp_path):
    v = Venue()
    for cmd in _session():
        v.submit(cmd)
    assert v.ex.triggers.live == 3
    copy = Exchange.restore(v.cfg, v.ex.snapshot())
    assert copy.state_hash() == v.ex.state_hash() and copy.triggers.live == 3
    # both behave alike from here: a move fires the same orders with the same events
    for cmd in (m.SetIndexPrice(source="x", symbol=BTC, price=639_000),
                m.CancelOrder(account=1, symbol=BTC, client_order_id=3),
                m.SetIndexPrice(source="x", symbol=BTC, price=665_000)):
        assert copy.submit(cmd) == v.ex.submit(cmd)
        assert copy.state_hash() == v.ex.state_hash()


def test_journal_replay_reproduces_triggers(tmp_path):
    cmds = _session() + [m.SetIndexPrice(source="x", symbol=BTC, price=639_000),
                         m.SetIndexPrice(source="x", symbol=BTC, price=665_000)]
    path = tmp_path / "j.pcj"
    cfg = Venue().cfg
    je = jr.JournaledExchange(Exchange(cfg), jr.Journal(path, config_digest(cfg), sync="none"))
    live = []
    for cmd in cmds:
        live += je.submit(cmd)
    live += je.close()
    assert of(live, m.OrderTriggered)
    ex = Exchange(cfg)
    replayed = []
    jr.replay(path, ex, replayed.extend)
    assert replayed == live and ex.state_hash() == je.ex.state_hash()


# ---- property: which orders fire, and in what order, against a plain model ----------------------

@st.composite
def _script(draw):
    steps = []
    for _ in range(draw(st.integers(1, 30))):
        kind = draw(st.sampled_from(["order", "order", "move", "cancel"]))
        if kind == "order":
            steps.append(("order", draw(st.sampled_from([Side.BUY, Side.SELL])),
                          draw(st.sampled_from([STOP, TP])), draw(st.integers(600, 700)) * 1000))
        elif kind == "move":
            steps.append(("move", draw(st.integers(600, 700)) * 1000))
        else:
            steps.append(("cancel", draw(st.integers(0, 40))))
    return steps


@settings(max_examples=60, deadline=None)
@given(_script())
def test_firing_matches_a_plain_model(script):
    """An empty book: every fired market order is refused for liquidity, so only the mark decides
    what fires. The model keeps (order id, rises, trigger) and fires, at each move, the rising ones
    at or below the mark (lowest first) then the falling ones at or above (highest first)."""
    v = venue()
    mark = P
    model: dict[int, tuple[bool, int]] = {}
    for step in script:
        if step[0] == "order":
            _, side, kind, trigger = step
            rises = (kind == STOP) == (side == Side.BUY)
            events = v.ex.submit(conditional(1, side, LOT, kind, trigger))
            if (mark >= trigger) if rises else (mark <= trigger):
                assert events[0].code == RejectCode.WOULD_TRIGGER_IMMEDIATELY
            else:
                model[accepted_id(events)] = (rises, trigger)
        elif step[0] == "move":
            mark = step[1]
            events = v.ex.submit(m.SetIndexPrice(source="x", symbol=BTC, price=mark))
            up = sorted((t, i) for i, (r, t) in model.items() if r and t <= mark)
            down = sorted((-t, i) for i, (r, t) in model.items() if not r and t >= mark)
            expected = [i for _, i in up + down]
            assert [e.order_id for e in of(events, m.OrderTriggered)] == expected
            assert [e.order_id for e in of(events, m.OrderRejected)] == expected
            for i in expected:
                del model[i]
        else:
            ids = sorted(model)
            if ids:
                target = ids[step[1] % len(ids)]
                assert v.submit(m.CancelOrder(account=1, symbol=BTC, order_id=target))
                del model[target]
        assert sorted(o[0] for o in v.ex.triggers.to_state()) == sorted(model)
        assert v.ex.triggers.live == len(model)
