"""Helpers shared by the margin tests: a venue whose mark is exactly the index (BitMEX fair price
with no interest rate and no premium sample unless a test's clock passes 5 s with a book), and
terse commands that must be accepted unless a test says otherwise."""
from decimal import Decimal

import msgspec

from perpcore import Exchange, default_config
from perpcore import messages as m
from perpcore.lending import amount_for_proceeds  # noqa: F401  (test_risk's property test)

BTC = "BTC-PERP"
ETH = "ETH-PERP"
S = 1_000_000_000
HOUR = 3600 * S


def venue_config(margin=None, preset=None, **instrument):
    """The built-in venue (or `preset`, a VenueConfig) with its mark at the index, changed by
    `margin` (MarginSpec fields) and `instrument` (InstrumentSpec fields of every instrument)."""
    cfg = preset or default_config()
    cfg = msgspec.structs.replace(cfg, instruments={
        s: msgspec.structs.replace(
            spec, pricing=msgspec.structs.replace(spec.pricing, mark_method="bitmex",
                                                  interest_rate=0), **instrument)
        for s, spec in cfg.instruments.items()})
    if margin:
        cfg = msgspec.structs.replace(cfg, margin=msgspec.structs.replace(cfg.margin, **margin))
    return cfg


def usd(x) -> int:
    """USD in minor units (6 decimals), exactly."""
    return default_config().assets["USD"].to_units(Decimal(str(x)))


def sats(x) -> int:
    """BTC or ETH in minor units (8 decimals), exactly."""
    return default_config().assets["BTC"].to_units(Decimal(str(x)))


def of(events, cls):
    return [e for e in events if type(e) is cls]


def rejection(events):
    assert len(events) == 1 and type(events[0]) is m.OrderRejected, events
    return events[0]


class Venue:
    def __init__(self, margin=None, preset=None, **instrument):
        self.ex = Exchange(venue_config(margin, preset, **instrument))
        self.cfg = self.ex.config

    def submit(self, cmd, ok=True):
        events = self.ex.submit(cmd)
        if ok:
            assert not of(events, m.OrderRejected), events
        return events

    def refuse(self, cmd):
        """Submits a command that must be refused, and checks it changed nothing."""
        before = self.ex.state_hash()
        rej = rejection(self.ex.submit(cmd))
        assert self.ex.state_hash() == before
        return rej.code

    def account(self, account, professional=True, **deposits):
        self.submit(m.CreateAccount(account=account, professional=professional))
        for asset, amount in deposits.items():
            self.submit(m.Deposit(account=account, asset=asset, amount=amount))

    def price(self, symbol, ticks, ts=0):
        return self.submit(m.SetIndexPrice(source="x", symbol=symbol, price=ticks, ts=ts))

    def order(self, account, symbol, side, qty, price, ok=True, **kw):
        return self.submit(m.PlaceOrder(account=account, symbol=symbol, side=side, qty=qty,
                                        price=price, **kw), ok)

    def trade(self, maker, taker, symbol, taker_side, qty, price):
        """maker rests qty at price, taker takes it all (IOC)."""
        self.order(maker, symbol, m.Side(1 - taker_side), qty, price)
        events = self.order(taker, symbol, taker_side, qty, price, tif=m.TimeInForce.IOC)
        assert sum(e.qty for e in of(events, m.OrderFilled)) == qty
        return events

    def view(self, account):
        return self.ex.account(account)

    def position(self, account, symbol):
        for p in self.ex.account(account).positions:
            if p.symbol == symbol:
                return p
        return None


def repay_in_full(ex) -> None:
    """Installs the engine's repay-in-full loan policy (MarginSpec.loan_liquidation
    "repay_in_full", the venue's own fee) as the exchange's LiquidateLoan handler, for tests that
    isolate the margin layer: the loan repaid from cash, then from collateral sold to the platform
    at index less the conversion penalty, only as much as the loan needs. Emits Repaid and
    CollateralConverted."""
    loans = ex.components["liquidation"].loans

    def liquidate_loan(cmd: m.LiquidateLoan, events: list) -> None:
        loans.repay_in_full(ex.margin.accounts[cmd.account], events)

    ex._handlers[m.LiquidateLoan] = liquidate_loan


def loan_at_85(policy: str, trigger_at: str = "reaching", fee: int = 2_000_000) -> Venue:
    """Bit2Me's terms: liquidation when the LTV reaches 85%, a 2% fee on the loan, the collateral
    sold at market (no penalty). Account 1 holds 1 BTC bought at 60,160 x 65% = 39,104 of room and
    borrows 39,100, which it withdraws."""
    v = Venue(margin={"liquidation_ltv": 85_000_000, "loan_liquidation": policy,
                      "loan_liquidation_fee": fee, "conversion_penalty": 0,
                      "trigger_at": trigger_at})
    v.account(1, BTC=sats(1))
    v.price(BTC, 601600)
    v.submit(m.Borrow(account=1, asset="USD", amount=usd(39_100)))
    v.submit(m.Withdraw(account=1, asset="USD", amount=usd(39_100)))
    return v
