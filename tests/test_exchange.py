"""The Exchange's boundary: every refusal carries its code and changes nothing; accepted orders
produce their events in order."""
from decimal import Decimal

import msgspec
import pytest

from perpcore import Exchange, errors
from perpcore import messages as m
from perpcore.config import default_config
from perpcore.messages import CancelReason, RejectCode, Side

BTC = "BTC-PERP"


@pytest.fixture
def ex():
    exchange = Exchange(default_config())
    for account, professional in ((1, True), (2, True), (3, False)):
        exchange.submit(m.CreateAccount(account=account, professional=professional))
        # enough margin that no order here is refused for it (perpcore.margin is tested apart)
        exchange.submit(m.Deposit(account=account, asset="USD", amount=10**15))
    return exchange


def spec(ex):
    return ex.config.instruments[BTC]


def place(ex, account, side, price, qty, **kw):
    s = spec(ex)
    return ex.submit(m.PlaceOrder(account=account, symbol=BTC, side=side, price=s.to_ticks(price),
                                  qty=s.to_lots(qty), **kw))


def book_events(events):
    """The events of the book's stage, without the settlement's PositionChanged."""
    return [e for e in events if type(e) is not m.PositionChanged]


def only_rejection(events):
    assert len(events) == 1 and type(events[0]) is m.OrderRejected, events
    return events[0]


# ---- refusals: one case per reject code, each leaving the state exactly as it was --------------

def _resting_book(ex):
    place(ex, 1, Side.SELL, "65010", "1", client_order_id=77)
    place(ex, 1, Side.BUY, "64990", "1")


REFUSALS = [
    ("unknown symbol", m.PlaceOrder(1, "DOGE-PERP", Side.BUY, 100, 650000), RejectCode.UNKNOWN_SYMBOL),
    ("unknown account", m.PlaceOrder(99, BTC, Side.BUY, 100, 650000), RejectCode.UNKNOWN_ACCOUNT),
    ("zero price", m.PlaceOrder(1, BTC, Side.BUY, 100, 0), RejectCode.INVALID_PRICE),
    ("negative price", m.PlaceOrder(1, BTC, Side.BUY, 100, -5), RejectCode.INVALID_PRICE),
    ("price above range", m.PlaceOrder(1, BTC, Side.BUY, 100, 100_000_001),
     RejectCode.PRICE_OUT_OF_RANGE),
    ("zero qty", m.PlaceOrder(1, BTC, Side.BUY, 0, 650000), RejectCode.INVALID_QTY),
    ("negative qty", m.PlaceOrder(1, BTC, Side.BUY, -1, 650000), RejectCode.INVALID_QTY),
    ("oversize qty", m.PlaceOrder(1, BTC, Side.BUY, 1_000_001, 650000), RejectCode.QTY_TOO_LARGE),
    ("below min notional", m.PlaceOrder(1, BTC, Side.BUY, 1, 1000), RejectCode.BELOW_MIN_NOTIONAL),
    ("NaN qty", m.PlaceOrder(1, BTC, Side.BUY, float("nan"), 650000), RejectCode.MALFORMED),
    ("float price", m.PlaceOrder(1, BTC, Side.BUY, 100, 65000.5), RejectCode.MALFORMED),
    ("bool qty", m.PlaceOrder(1, BTC, Side.BUY, True, 650000), RejectCode.MALFORMED),
    ("bad side", m.PlaceOrder(1, BTC, 7, 100, 650000), RejectCode.MALFORMED),
    ("bad tif", m.PlaceOrder(1, BTC, Side.BUY, 100, 650000, tif=9), RejectCode.MALFORMED),
    ("non-professional", m.PlaceOrder(3, BTC, Side.BUY, 100, 650000), RejectCode.NOT_ELIGIBLE),
    ("duplicate client order id", m.PlaceOrder(1, BTC, Side.SELL, 100, 650200, client_order_id=77),
     RejectCode.DUPLICATE_CLIENT_ORDER_ID),
    ("post-only would take", m.PlaceOrder(2, BTC, Side.BUY, 100, 650100,
                                          tif=m.TimeInForce.POST_ONLY), RejectCode.POST_ONLY_WOULD_TAKE),
    ("FOK cannot fill", m.PlaceOrder(2, BTC, Side.BUY, 5000, 650100, tif=m.TimeInForce.FOK),
     RejectCode.FOK_UNFILLABLE),
    ("cancel unknown order", m.CancelOrder(1, BTC, order_id=12345), RejectCode.UNKNOWN_ORDER),
    ("cancel someone else's order", m.CancelOrder(2, BTC, order_id=1), RejectCode.UNKNOWN_ORDER),
    ("cancel unknown client id", m.CancelOrder(1, BTC, client_order_id=5), RejectCode.UNKNOWN_ORDER),
    ("amend unknown order", m.AmendOrder(1, BTC, 999, 650000, 100), RejectCode.UNKNOWN_ORDER),
    # a value outside its field's range (int64; ids and times from 0) is refused at the boundary
    ("cancel an id past 64 bits", m.CancelOrder(1, BTC, order_id=2**70), RejectCode.MALFORMED),
    ("cancel a client id past 64 bits", m.CancelOrder(1, BTC, client_order_id=2**64),
     RejectCode.MALFORMED),
    ("amend an id past 64 bits", m.AmendOrder(1, BTC, 2**63, 650000, 100), RejectCode.MALFORMED),
    ("client id past 64 bits", m.PlaceOrder(1, BTC, Side.BUY, 100, 650000, client_order_id=2**63),
     RejectCode.MALFORMED),
    ("account past 64 bits", m.PlaceOrder(2**64, BTC, Side.BUY, 100, 650000), RejectCode.MALFORMED),
    ("negative account", m.Deposit(-1, "USD", 100), RejectCode.MALFORMED),
    ("price past 64 bits", m.PlaceOrder(1, BTC, Side.BUY, 100, 2**70), RejectCode.MALFORMED),
    ("price below -2**63", m.PlaceOrder(1, BTC, Side.BUY, 100, -2**70), RejectCode.MALFORMED),
    ("qty past 64 bits", m.PlaceOrder(1, BTC, Side.BUY, 2**64, 650000), RejectCode.MALFORMED),
    ("qty below -2**63", m.PlaceOrder(1, BTC, Side.BUY, -2**64, 650000), RejectCode.MALFORMED),
    ("side past 64 bits", m.PlaceOrder(1, BTC, 2**64, 100, 650000), RejectCode.MALFORMED),
    ("side of another enum", m.PlaceOrder(1, BTC, m.TimeInForce.IOC, 100, 650000),
     RejectCode.MALFORMED),
    ("amend to a price past 64 bits", m.AmendOrder(1, BTC, 1, 2**64, 100), RejectCode.MALFORMED),
    ("deposit past 64 bits", m.Deposit(1, "USD", 2**64), RejectCode.MALFORMED),
    ("ts None", m.Deposit(1, "USD", 100, ts=None), RejectCode.MALFORMED),
    ("ts empty string", m.CancelAll(1, ts=""), RejectCode.MALFORMED),
    ("ts empty list", m.CreateAccount(5, ts=[]), RejectCode.MALFORMED),
    ("negative ts", m.AdvanceClock(ts=-1), RejectCode.MALFORMED),
    ("ts past 64 bits", m.AdvanceClock(ts=2**63), RejectCode.MALFORMED),
    ("professional not a bool", m.CreateAccount(5, professional=1), RejectCode.MALFORMED),
    ("symbol too long", m.CancelAll(1, "X" * 65), RejectCode.MALFORMED),
    ("symbol not text", m.CancelAll(1, b"BTC-PERP"), RejectCode.MALFORMED),
    ("symbol a lone surrogate", m.CancelAll(1, "\ud800"), RejectCode.MALFORMED),
    ("time step too large", m.AdvanceClock(ts=1_000 + 7 * 86_400 * 10**9 + 1),
     RejectCode.TIME_STEP_TOO_LARGE),
    ("amend to zero qty", m.AmendOrder(1, BTC, 1, 650100, 0), RejectCode.INVALID_QTY),
    ("amend to bad price", m.AmendOrder(1, BTC, 1, -1, 100), RejectCode.INVALID_PRICE),
    ("cancel-all unknown symbol", m.CancelAll(1, "XRP-PERP"), RejectCode.UNKNOWN_SYMBOL),
    ("duplicate account", m.CreateAccount(1), RejectCode.DUPLICATE_ACCOUNT),
    ("zero account id", m.CreateAccount(0), RejectCode.MALFORMED),
    ("clock backwards", m.AdvanceClock(ts=5), RejectCode.STALE_TIMESTAMP),
    ("command in the past", m.PlaceOrder(1, BTC, Side.BUY, 100, 650000, ts=5),
     RejectCode.STALE_TIMESTAMP),
    ("not a command", m.AccountCreated(1, 0, 1, True), RejectCode.UNKNOWN_COMMAND),
]


@pytest.mark.parametrize("name,cmd,code", REFUSALS, ids=[r[0] for r in REFUSALS])
def test_refusal_has_its_code_and_changes_nothing(ex, name, cmd, code):
    _resting_book(ex)
    ex.submit(m.AdvanceClock(ts=1_000))
    before = ex.state_hash()
    rejection = only_rejection(ex.submit(cmd))
    assert rejection.code == code
    assert rejection.reason
    assert ex.state_hash() == before


ORDER_REFUSALS = [r for r in REFUSALS if type(r[1]) in (m.PlaceOrder, m.CancelOrder, m.AmendOrder)
                  and r[2] not in (RejectCode.MALFORMED, RejectCode.STALE_TIMESTAMP)]


@pytest.mark.parametrize("name,cmd,code", ORDER_REFUSALS, ids=[r[0] for r in ORDER_REFUSALS])
def test_an_order_refusal_repeats_the_commands_fields(ex, name, cmd, code):
    """Order entry's OrderRejected names the account, symbol, order id and client id of the
    command it refuses (a gateway matches it to the request by them)."""
    _resting_book(ex)
    ex.submit(m.AdvanceClock(ts=1_000))
    rejection = only_rejection(ex.submit(cmd))
    assert rejection.code == code
    assert (rejection.account, rejection.symbol, rejection.order_id, rejection.client_order_id) == \
        (cmd.account, cmd.symbol, getattr(cmd, "order_id", 0), getattr(cmd, "client_order_id", 0))


@pytest.mark.parametrize("name,cmd,code", ORDER_REFUSALS, ids=[r[0] for r in ORDER_REFUSALS])
def test_order_commands_refuse_without_raising(ex, monkeypatch, name, cmd, code):
    """Order entry's refusals are status codes turned into the OrderRejected once, at the edge:
    no Rejection is ever built on that path (an exception and its traceback cost ~15,000
    instructions, ten times an accepted cancel)."""
    _resting_book(ex)
    ex.submit(m.AdvanceClock(ts=1_000))
    built = []
    monkeypatch.setattr(errors.Rejection, "__init__",
                        lambda self, *args: built.append(args) or Exception.__init__(self))
    assert only_rejection(ex.submit(cmd)).code == code
    assert built == []


def test_reject_codes_are_grouped_by_stage():
    stages = {1: "validation", 2: "risk", 3: "matching", 4: "account", 5: "persistence"}
    for code in RejectCode:
        assert code // 1000 in stages, code


def test_coarser_price_and_qty_steps_are_enforced():
    cfg = default_config()
    coarse = msgspec.structs.replace(cfg.instruments[BTC], price_step=5, qty_step=10)
    ex = Exchange(msgspec.structs.replace(cfg, instruments={**cfg.instruments, BTC: coarse}))
    ex.submit(m.CreateAccount(1))
    ex.submit(m.Deposit(1, "USD", 10**12))
    before = ex.state_hash()
    assert only_rejection(ex.submit(m.PlaceOrder(1, BTC, Side.BUY, 100, 650002))).code \
        == RejectCode.PRICE_NOT_TICK_MULTIPLE
    assert only_rejection(ex.submit(m.PlaceOrder(1, BTC, Side.BUY, 105, 650000))).code \
        == RejectCode.QTY_NOT_LOT_MULTIPLE
    assert ex.state_hash() == before
    assert type(ex.submit(m.PlaceOrder(1, BTC, Side.BUY, 100, 650005))[0]) is m.OrderAccepted


def test_malformed_bytes_are_refused_without_a_crash(ex):
    before = ex.state_hash()
    for payload in (b"", b"\xc1", b"garbage", msgspec.msgpack.encode(["PlaceOrder", 1]),
                    msgspec.msgpack.encode(["PlaceOrder", 1, BTC, 0, float("nan"), 650000]),
                    msgspec.msgpack.encode(["Teleport", 1])):
        assert only_rejection(ex.submit_bytes(payload)).code == RejectCode.MALFORMED
    assert ex.state_hash() == before


def test_well_formed_bytes_are_applied(ex):
    s = spec(ex)
    payload = m.encoder.encode(m.PlaceOrder(1, BTC, Side.BUY, s.to_lots("0.1"), s.to_ticks("64000")))
    assert type(ex.submit_bytes(payload)[0]) is m.OrderAccepted
    assert ex.book(BTC).best_bid() == s.to_ticks("64000")


# ---- sequencing and time ----------------------------------------------------------------------

def test_pre_sequenced_commands_must_be_the_next_number(ex):
    seq = ex.seq
    accepted = ex.submit(m.CreateAccount(10), seq=seq + 1)
    assert type(accepted[0]) is m.AccountCreated and accepted[0].seq == seq + 1
    before = ex.state_hash()
    assert only_rejection(ex.submit(m.CreateAccount(11), seq=seq + 1)).code \
        == RejectCode.SEQUENCE_REPLAYED
    assert only_rejection(ex.submit(m.CreateAccount(11), seq=seq + 5)).code == RejectCode.SEQUENCE_GAP
    assert ex.state_hash() == before and ex.seq == seq + 1


def test_every_event_carries_the_command_sequence_and_time(ex):
    place(ex, 1, Side.SELL, "65000", "1", ts=5_000)
    events = place(ex, 2, Side.BUY, "65000", "0.4", ts=6_000)
    assert {e.seq for e in events} == {ex.seq}
    assert {e.ts for e in events} == {6_000}
    assert ex.clock == 6_000


def test_clock_only_moves_forward(ex):
    assert ex.submit(m.AdvanceClock(ts=100)) == []
    assert ex.clock == 100
    assert only_rejection(ex.submit(m.AdvanceClock(ts=99))).code == RejectCode.STALE_TIMESTAMP
    assert ex.clock == 100


# ---- accepted orders and their events --------------------------------------------------------

def test_limit_order_crossing_rests_its_remainder(ex):
    s = spec(ex)
    place(ex, 1, Side.SELL, "65000", "0.3")
    events = place(ex, 2, Side.BUY, "65001", "0.5")
    accepted, filled = book_events(events)
    assert type(accepted) is m.OrderAccepted and accepted.order_id == 2
    assert filled == m.OrderFilled(ex.seq, 0, BTC, s.to_ticks("65000"), 300, Side.BUY, 1, 2, 1, 2, 0, 200)
    assert ex.book(BTC).best_bid() == s.to_ticks("65001")
    assert ex.book(BTC).order(2)[4] == 200


def test_ioc_remainder_is_cancelled_as_expired(ex):
    place(ex, 1, Side.SELL, "65000", "0.3")
    events = place(ex, 2, Side.BUY, "65000", "0.5", tif=m.TimeInForce.IOC)
    assert [type(e) for e in book_events(events)] == [m.OrderAccepted, m.OrderFilled,
                                                      m.OrderCancelled]
    assert events[-1].open_qty == 200 and events[-1].reason == CancelReason.EXPIRED
    assert len(ex.book(BTC)) == 0


def test_market_order_stops_at_its_protection_band(ex):
    s = spec(ex)
    place(ex, 1, Side.SELL, "65000", "0.1")
    place(ex, 1, Side.SELL, "68000", "0.1")      # 4.6% above the touch: inside the 5% band
    place(ex, 1, Side.SELL, "70000", "0.1")      # 7.7% above: outside
    events = ex.submit(m.PlaceOrder(2, BTC, Side.BUY, s.to_lots("0.3"), order_type=m.OrderType.MARKET))
    assert events[0].price == s.to_ticks("68250")          # 65000 x 1.05
    assert [e.price for e in events if type(e) is m.OrderFilled] == [650000, 680000]
    assert events[-1].reason == CancelReason.EXPIRED and events[-1].open_qty == 100
    assert ex.book(BTC).best_ask() == s.to_ticks("70000")


def test_market_order_with_explicit_protection_price(ex):
    s = spec(ex)
    place(ex, 1, Side.BUY, "65000", "0.1")
    place(ex, 1, Side.BUY, "64900", "0.1")
    events = ex.submit(m.PlaceOrder(2, BTC, Side.SELL, s.to_lots("0.2"), price=s.to_ticks("64950"),
                                    order_type=m.OrderType.MARKET))
    assert [e.price for e in events if type(e) is m.OrderFilled] == [650000]


def test_market_order_into_an_empty_side_is_refused(ex):
    before = ex.state_hash()
    rej = only_rejection(ex.submit(m.PlaceOrder(2, BTC, Side.BUY, 100, order_type=m.OrderType.MARKET)))
    assert rej.code == RejectCode.NO_LIQUIDITY and ex.state_hash() == before


def test_self_trade_prevention_reports_expired_orders(ex):
    place(ex, 1, Side.SELL, "65000", "0.2")
    place(ex, 2, Side.SELL, "65000", "0.2")
    events = place(ex, 1, Side.BUY, "65000", "0.3", stp=m.SelfTradePrevention.EXPIRE_MAKER)
    assert [type(e) for e in book_events(events)] == [m.OrderAccepted, m.OrderCancelled,
                                                      m.OrderFilled]
    cancelled = [e for e in events if type(e) is m.OrderCancelled]
    assert cancelled[0].order_id == 1 and cancelled[0].reason == CancelReason.SELF_TRADE
    fills = [e for e in events if type(e) is m.OrderFilled]
    assert [(f.maker_order_id, f.qty) for f in fills] == [(2, 200)]
    assert ex.book(BTC).order(3)[4] == 100            # the taker's remainder rests

    place(ex, 2, Side.SELL, "65100", "0.1")
    events = place(ex, 2, Side.BUY, "65100", "0.2", stp=m.SelfTradePrevention.EXPIRE_TAKER)
    assert [type(e) for e in events] == [m.OrderAccepted, m.OrderCancelled]
    assert (events[1].order_id, events[1].open_qty, events[1].reason) == (5, 200, CancelReason.SELF_TRADE)
    assert ex.book(BTC).order(4)[4] == 100            # the maker stays


def test_cancel_by_client_order_id(ex):
    place(ex, 1, Side.BUY, "64000", "0.2", client_order_id=42)
    events = ex.submit(m.CancelOrder(1, BTC, client_order_id=42))
    assert events == [m.OrderCancelled(ex.seq, 0, 1, BTC, 1, 200, CancelReason.USER)]
    # the id is free again once the order is closed
    assert type(place(ex, 1, Side.BUY, "64000", "0.2", client_order_id=42)[0]) is m.OrderAccepted


def test_amend_size_down_keeps_priority_and_price_change_loses_it(ex):
    s = spec(ex)
    place(ex, 1, Side.BUY, "64000", "0.5")
    place(ex, 2, Side.BUY, "64000", "0.5")
    events = ex.submit(m.AmendOrder(1, BTC, 1, s.to_ticks("64000"), s.to_lots("0.3")))
    assert events == [m.OrderAmended(ex.seq, 0, 1, BTC, 1, 640000, 300, True)]
    assert [o[0] for o in ex.markets[BTC].book.resting()] == [1, 2]
    events = ex.submit(m.AmendOrder(1, BTC, 1, s.to_ticks("64000"), s.to_lots("0.4")))
    assert events[0].priority_kept is False
    assert [o[0] for o in ex.markets[BTC].book.resting()] == [2, 1]


def test_amend_across_the_spread_trades(ex):
    s = spec(ex)
    place(ex, 1, Side.SELL, "65000", "0.2")
    place(ex, 2, Side.BUY, "64000", "0.5")
    events = book_events(ex.submit(m.AmendOrder(2, BTC, 2, s.to_ticks("65000"), s.to_lots("0.5"))))
    assert [type(e) for e in events] == [m.OrderAmended, m.OrderFilled]
    assert events[1].qty == 200 and events[1].taker_remaining == 300


def test_cancel_all_in_one_symbol_or_all(ex):
    place(ex, 1, Side.BUY, "64000", "0.2")
    place(ex, 1, Side.BUY, "63000", "0.2")
    place(ex, 2, Side.BUY, "63000", "0.2")
    eth = ex.config.instruments["ETH-PERP"]
    ex.submit(m.PlaceOrder(1, "ETH-PERP", Side.SELL, eth.to_lots("1"), eth.to_ticks("3500")))
    events = ex.submit(m.CancelAll(1, BTC))
    assert [(e.symbol, e.order_id, e.reason) for e in events] == \
        [(BTC, 1, CancelReason.CANCEL_ALL), (BTC, 2, CancelReason.CANCEL_ALL)]
    events = ex.submit(m.CancelAll(1))
    assert [(e.symbol, e.order_id) for e in events] == [("ETH-PERP", 4)]
    assert [o[1] for o in ex.markets[BTC].book.resting()] == [2]


def test_order_ids_are_not_consumed_by_refusals(ex):
    place(ex, 1, Side.SELL, "65000", "0.1")
    place(ex, 2, Side.BUY, "65000", "0.1", tif=m.TimeInForce.POST_ONLY)     # refused
    assert place(ex, 2, Side.BUY, "64000", "0.1")[0].order_id == 2


def test_same_commands_give_same_events_and_state_hash():
    def run():
        ex = Exchange(default_config())
        ex.submit(m.CreateAccount(1))
        ex.submit(m.CreateAccount(2))
        out = []
        for i in range(200):
            side = Side.BUY if i % 3 else Side.SELL
            out += ex.submit(m.PlaceOrder(1 + i % 2, BTC, side, 10 + i % 7, 650000 + (i * 37) % 11 - 5,
                                          ts=i * 1000))
        return out, ex.state_hash()
    assert run() == run()


def test_decimal_edge_to_engine_and_back(ex):
    s = spec(ex)
    place(ex, 1, Side.SELL, "65000.5", "0.25")
    price, qty, _ = ex.book(BTC).depth(1)[1][0]
    assert (s.from_ticks(price), s.from_lots(qty)) == (Decimal("65000.5"), Decimal("0.25"))


def test_cancel_all_gives_the_same_events_after_a_snapshot_restore(ex):
    """A restored exchange's books are rebuilt in priority order, not arrival order: the orders a
    CancelAll (or a liquidation) cancels come in order-id order, so a restore changes no event."""
    place(ex, 1, Side.SELL, "65010", "1")       # arrives first, rests after the bid in a dump
    place(ex, 1, Side.BUY, "64990", "1")
    restored = Exchange.restore(ex.config, ex.snapshot())
    cancel_all = m.CancelAll(account=1)
    events = ex.submit(cancel_all)
    assert [e.order_id for e in events] == [1, 2]
    assert restored.submit(cancel_all) == events
