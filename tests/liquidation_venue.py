"""Helpers shared by the liquidation tests: a venue whose mark is exactly the index (BitMEX fair
price with no interest and no premium sample, since no test clock moves), money in USD."""
from decimal import Decimal

import msgspec

from perpcore import Exchange, default_config
from perpcore import messages as m

BTC = "BTC-PERP"
ETH = "ETH-PERP"


def venue_config(**instrument):
    cfg = default_config()
    return msgspec.structs.replace(cfg, instruments={
        s: msgspec.structs.replace(
            spec, pricing=msgspec.structs.replace(spec.pricing, mark_method="bitmex",
                                                  interest_rate=0), **instrument)
        for s, spec in cfg.instruments.items()})


def usd(x) -> int:
    """USD in minor units (6 decimals)."""
    return int(Decimal(str(x)) * 10**6)


def of(events, cls):
    return [e for e in events if type(e) is cls]


class Venue:
    """An exchange plus terse commands; every submit must be accepted unless said otherwise."""

    def __init__(self, **instrument):
        self.ex = Exchange(venue_config(**instrument))

    def submit(self, cmd, ok=True):
        events = self.ex.submit(cmd)
        if ok:
            assert not of(events, m.OrderRejected), events
        return events

    def account(self, account, usd_amount=0, **assets):
        self.submit(m.CreateAccount(account=account))
        if usd_amount:
            self.submit(m.Deposit(account=account, asset="USD", amount=usd(usd_amount)))
        for asset, amount in assets.items():
            self.submit(m.Deposit(account=account, asset=asset, amount=amount))

    def price(self, symbol, ticks):
        return self.submit(m.SetIndexPrice(source="x", symbol=symbol, price=ticks))

    def order(self, account, symbol, side, qty, price, tif=m.TimeInForce.GTC):
        return self.submit(m.PlaceOrder(account=account, symbol=symbol, side=side, qty=qty,
                                        price=price, tif=tif))

    def trade(self, maker, taker, symbol, taker_side, qty, price):
        """maker rests qty at price, taker takes it all."""
        self.order(maker, symbol, m.Side(1 - taker_side), qty, price)
        events = self.order(taker, symbol, taker_side, qty, price, m.TimeInForce.IOC)
        assert sum(e.qty for e in of(events, m.OrderFilled)) == qty
        return events

    def fund(self, usd_amount):
        return self.submit(m.FundInsurance(asset="USD", amount=usd(usd_amount)))

    def cash(self, account):
        return self.ex.account(account).balances["USD"]

    def size(self, account, symbol):
        for p in self.ex.account(account).positions:
            if p.symbol == symbol:
                return p.size
        return 0
