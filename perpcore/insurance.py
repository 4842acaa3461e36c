"""The insurance fund: its changes, their events and its recent history.

This module owns the record of the venue's insurance fund (the ledger's "insurance_fund" bucket,
by asset): every change, by the liquidation engine or another layer (funding remainders), is one
InsuranceFundChanged event and one entry of history() (the newest limits.history_kept), and a
FundInsurance command pays the venue's capital in. The liquidation engine (perpcore.liquidation)
decides when money moves into or out of the fund; this module moves it and records it.
"""
from __future__ import annotations

from collections import deque

import msgspec

from perpcore import messages as m
from perpcore._ledger import move
from perpcore.errors import RejectCode, Rejection
from perpcore.messages import FundReason


class FundEntry(msgspec.Struct, frozen=True):
    """One change of the insurance fund."""
    seq: int
    ts: int
    asset: str
    delta: int
    balance: int                        # afterwards
    reason: FundReason
    account: int = 0                    # the account concerned, 0: none
    symbol: str = ""


class InsuranceFund:
    """The fund of an Exchange (ex.liquidation.insurance)."""

    def __init__(self, exchange, ledger):
        self.exchange = exchange
        self.ledger = ledger
        self.settle = exchange.config.settlement_asset
        self.balances = ledger.venue["insurance_fund"]      # by asset
        # the recent changes for history(); the journal's events hold them all, so they stay
        # out of the state (a restored exchange's window starts at its snapshot)
        self.entries: deque[FundEntry] = deque(maxlen=exchange.config.limits.history_kept)
        # the fund as last recorded (the liquidation core compares it with the balances after
        # every command: LiquidationCore._fund_seen is this dict)
        self.seen = dict(self.balances)

    def change(self, counterpart: dict, delta: int, reason: FundReason, account: int,
               symbol: str, events: list) -> None:
        """delta into the fund from the counterpart's balances (< 0: out of the fund to them)."""
        asset = self.settle
        self.seen[asset] = balance = move(counterpart, self.balances, asset, delta)
        self._record(asset, delta, balance, reason, account, symbol, events)

    def _record(self, asset, delta, balance, reason, account, symbol, events) -> None:
        ex = self.exchange
        self.entries.append(FundEntry(ex.seq, ex.clock, asset, delta, balance, reason, account,
                                      symbol))
        events.append(m.InsuranceFundChanged(ex.seq, ex.clock, asset, delta, balance, reason,
                                             account, symbol))

    def record_external(self, events: list) -> None:
        """Changes other layers made (funding remainders, with their FundingSettled): recorded so
        the history is whole."""
        funding = sum(e.insurance for e in events if type(e) is m.FundingSettled)
        for asset in sorted(self.balances):
            delta = self.balances[asset] - self.seen.get(asset, 0)
            if delta:
                reason = FundReason.FUNDING if asset == self.settle and delta == funding \
                    else FundReason.OTHER
                self.seen[asset] = self.balances[asset]
                self._record(asset, delta, self.balances[asset], reason, 0, "", events)

    def deposit(self, cmd: m.FundInsurance, events: list) -> None:
        """FundInsurance: the venue pays capital into its insurance fund."""
        if cmd.asset not in self.balances:
            raise Rejection(RejectCode.UNKNOWN_ASSET, f"unknown asset {cmd.asset!r}")
        if cmd.amount <= 0:
            raise Rejection(RejectCode.INVALID_AMOUNT, f"amount {cmd.amount} must be positive")
        room = self.ledger.room(cmd.asset, self.balances[cmd.asset])
        if cmd.amount > room:
            raise Rejection(RejectCode.AMOUNT_TOO_LARGE,
                            f"{cmd.amount} {cmd.asset} would pass the venue's range (room {room})")
        ex = self.exchange
        ex._advance_to(cmd.ts, events)
        self.ledger.deposit_venue("insurance_fund", cmd.asset, cmd.amount)
        self.seen[cmd.asset] = self.balances[cmd.asset]
        self._record(cmd.asset, cmd.amount, self.balances[cmd.asset], FundReason.DEPOSIT, 0, "",
                     events)

    def history(self, asset: str | None = None) -> list[FundEntry]:
        """The recent changes of the insurance fund, oldest first (of one asset, or all): the newest
        limits.history_kept of all assets, since the exchange was created or restored. Older ones
        are the journal's InsuranceFundChanged events."""
        return [e for e in self.entries if asset is None or e.asset == asset]

    def to_state(self) -> list:
        return sorted(self.seen.items())

    def from_state(self, seen: list) -> None:
        self.entries.clear()
        self.seen.clear()           # in place: the liquidation core holds this dict
        self.seen.update(seen)
