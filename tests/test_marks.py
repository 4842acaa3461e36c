"""Stage 5 in C (perpcore._pricing): a trade that leaves the published mark where it was is only
recorded as the last trade; one that moves it is published. (The Fraction reference of
tests/test_pricing.py checks the whole of stage 5 against a plain pass on random venues.)"""
from perpcore import Exchange, default_config
from perpcore import messages as m

S = 1_000_000_000
BTC = "BTC-PERP"


def of(events, kind):
    return [e for e in events if type(e) is kind]


def test_a_trade_beyond_p1_and_p2_keeps_the_mark_and_moves_only_the_last_trade():
    ex = Exchange(default_config())      # binance's mark: median(P1, P2, last trade)
    for a in (1, 2, 3):
        ex.submit(m.CreateAccount(account=a))
        ex.submit(m.Deposit(account=a, asset="USD", amount=10**13))
    ex.submit(m.SetIndexPrice(source="a", symbol=BTC, price=650000, ts=S))
    state = ex.components["pricing"].symbols[BTC]
    ex.submit(m.PlaceOrder(account=2, symbol=BTC, side=m.Side.SELL, price=650500, qty=1, ts=S))
    ex.submit(m.PlaceOrder(account=2, symbol=BTC, side=m.Side.SELL, price=650600, qty=1, ts=S))
    ex.submit(m.PlaceOrder(account=3, symbol=BTC, side=m.Side.BUY, price=649000, qty=1, ts=S))

    first = ex.submit(m.PlaceOrder(account=1, symbol=BTC, side=m.Side.BUY, price=650500, qty=1,
                                   ts=S))
    # no basis sample yet: P2 is the index; P1 is above it by the interest rate's premium
    assert state.p2 == 650000 < state.p1 < 650500
    [moved] = of(first, m.MarkPriceUpdated)
    assert moved.price == state.p1 == ex.mark_price(BTC) and state.last_trade == 650500

    # a higher trade: the median is still P1; nothing is published (market_moved, which
    # publishes, is not even called), the last trade is recorded
    pricing = ex.components["pricing"]
    published = []
    market_moved = pricing.market_moved

    def recording(*args):
        published.append(args)
        market_moved(*args)
    pricing.market_moved = recording
    second = ex.submit(m.PlaceOrder(account=1, symbol=BTC, side=m.Side.BUY, price=650600, qty=1,
                                    ts=S))
    assert of(second, m.OrderFilled) and not of(second, m.MarkPriceUpdated) and not published
    assert state.last_trade == 650600 and ex.mark_price(BTC) == state.p1

    # a trade below both: the median is P2, published
    third = ex.submit(m.PlaceOrder(account=2, symbol=BTC, side=m.Side.SELL, price=649000, qty=1,
                                   ts=S))
    [moved] = of(third, m.MarkPriceUpdated)
    assert moved.price == 650000 == ex.mark_price(BTC) and state.last_trade == 649000
    assert [args[:2] for args in published] == [(BTC, 649000)]
