"""PositionView's prices as a person reads them: the entry price in the quote currency, its tick
form beside it; the engine's integer fields unchanged."""
from decimal import Decimal

import perpcore
from perpcore import Exchange
from perpcore import messages as m


def test_the_entry_price_is_in_the_quote_currency_and_its_ticks_are_kept():
    cfg = perpcore.default_config()
    spec, usd = cfg.instruments["BTC-PERP"], cfg.assets["USD"]
    ex = Exchange(cfg)
    for account in (1, 2):
        ex.submit(m.CreateAccount(account=account))
        ex.submit(m.Deposit(account=account, asset="USD", amount=usd.to_units("100000")))
    ex.submit(m.SetIndexPrice(source="i", symbol="BTC-PERP", price=spec.to_ticks("65000")))
    for price in ("65000.5", "65000.6"):
        ex.submit(m.PlaceOrder(account=1, symbol="BTC-PERP", side=m.Side.SELL,
                               price=spec.to_ticks(price), qty=spec.to_lots("0.25")))
    ex.submit(m.PlaceOrder(account=2, symbol="BTC-PERP", side=m.Side.BUY, qty=spec.to_lots("0.3"),
                           order_type=m.OrderType.MARKET))
    [pos] = ex.account(2).positions
    # 0.25 at 65,000.5 and 0.05 at 65,000.6: 19,500.155 for 0.3 BTC
    assert pos.entry_value == 650005 * 250 + 650006 * 50
    assert pos.entry_price == Decimal("19500.155") / Decimal("0.3")
    assert str(pos.entry_price).startswith("65000.5166666")
    assert pos.entry_price_ticks == Decimal(pos.entry_value) / 300
    assert pos.entry_price == pos.entry_price_ticks * spec.tick_size
    [maker] = ex.account(1).positions
    assert (maker.size, maker.entry_price) == (-300, pos.entry_price)   # a short's is positive


def test_a_position_with_orders_only_has_no_entry_price():
    cfg = perpcore.default_config()
    ex = Exchange(cfg)
    ex.submit(m.CreateAccount(account=1))
    ex.submit(m.Deposit(account=1, asset="USD", amount=cfg.assets["USD"].to_units("1000")))
    ex.submit(m.PlaceOrder(account=1, symbol="BTC-PERP", side=m.Side.BUY, price=600000, qty=1))
    [pos] = ex.account(1).positions
    assert pos.size == 0 and pos.entry_price == pos.entry_price_ticks == 0


def test_the_edges_read_no_thread_decimal_context():
    """A host process may change its thread's decimal context (ccxt sets ROUND_HALF_UP, a platform
    may lower the precision): conversions at the edge and the prices a view shows are the same
    under any context."""
    import decimal

    from perpcore.config import rate, rate_to_decimal
    from perpcore.lending import _pct
    cfg = perpcore.default_config()
    spec, usd = cfg.instruments["BTC-PERP"], cfg.assets["USD"]

    def outcome():
        ex = Exchange(cfg)
        for account in (1, 2):
            ex.submit(m.CreateAccount(account=account))
            ex.submit(m.Deposit(account=account, asset="USD", amount=usd.to_units("100000")))
        for price in ("65000.5", "65000.6"):
            ex.submit(m.PlaceOrder(account=1, symbol="BTC-PERP", side=m.Side.SELL,
                                   price=spec.to_ticks(price), qty=spec.to_lots("0.25")))
        ex.submit(m.PlaceOrder(account=2, symbol="BTC-PERP", side=m.Side.BUY,
                               qty=spec.to_lots("0.3"), price=spec.to_ticks("65001")))
        [pos] = ex.account(2).positions
        return (pos.entry_price, pos.entry_price_ticks, usd.to_units("123456789012.345678"),
                rate("0.00125"), rate_to_decimal(123_456_789), _pct(125_000), _pct(75_016_139))

    plain = outcome()
    assert plain[5] == "0.12%"          # half to even
    for context in (decimal.Context(rounding=decimal.ROUND_HALF_UP),
                    decimal.Context(prec=6, rounding=decimal.ROUND_DOWN)):
        with decimal.localcontext(context):
            assert outcome() == plain
