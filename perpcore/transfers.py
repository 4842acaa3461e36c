"""Accounts and transfers: opening an account, and money in and out of it.

This module owns the accounts' entry into the venue (CreateAccount's opening in the ledger and the
margin layer) and their transfers: Deposit and Withdraw, each checked (a known asset, a positive
amount, a transfer id not applied before, the venue's range; a withdrawal within what the margin
layer says is available) before the clock advances and the ledger moves the money. What an account
may withdraw is perpcore.margin's to say; loans are perpcore.lending's.
"""
from __future__ import annotations

from perpcore import messages as m
from perpcore.errors import RejectCode, reject
from perpcore.ledger import Ledger


def known_asset(ledger: Ledger, asset) -> str:
    """The asset, refused unless the venue keeps it."""
    if asset not in ledger.deposits:
        reject(RejectCode.UNKNOWN_ASSET, f"unknown asset {asset!r}")
    return asset


def positive(amount) -> int:
    """The amount, refused unless it is above zero."""
    if amount <= 0:
        reject(RejectCode.INVALID_AMOUNT, f"amount {amount} must be positive")
    return amount


class Transfers:
    """The accounts and transfers of an Exchange's margin layer (ex.margin.transfers)."""

    def __init__(self, margin):
        self.margin = margin
        self.exchange = margin.exchange
        self.ledger: Ledger = margin.ledger

    def open_account(self, account: int, professional: bool) -> None:
        margin = self.margin
        self.ledger.open(account)
        margin.new_account(account, professional)
        margin.account_ids.add(account)

    def _transfer_id(self, account: int, transfer_id) -> int:
        if self.ledger.seen(account, transfer_id, self.exchange.clock):
            reject(RejectCode.DUPLICATE_TRANSFER,
                    f"transfer {transfer_id} of account {account} was already applied")
        return transfer_id

    # ---- commands (the exchange checked the account exists; each validates, then advances the
    # ---- clock, then applies)

    def deposit(self, cmd: m.Deposit, events: list) -> None:
        margin = self.margin
        asset = known_asset(self.ledger, cmd.asset)
        amount = positive(cmd.amount)
        tid = self._transfer_id(cmd.account, cmd.transfer_id)
        room = self.ledger.room(asset, margin.accounts[cmd.account].cash[asset])
        if amount > room:
            reject(RejectCode.AMOUNT_TOO_LARGE,
                    f"deposit of {amount} {asset} would pass the venue's range (room {room})")
        ex = self.exchange
        ex._advance_to(cmd.ts, events)
        margin.touch(margin.accounts[cmd.account], events)
        balance = self.ledger.deposit(cmd.account, asset, amount, tid, ex.clock)
        events.append(m.Deposited(ex.seq, ex.clock, cmd.account, asset, amount, tid, balance))

    def withdraw(self, cmd: m.Withdraw, events: list) -> None:
        margin = self.margin
        asset = known_asset(self.ledger, cmd.asset)
        amount = positive(cmd.amount)
        tid = self._transfer_id(cmd.account, cmd.transfer_id)
        acc = margin.accounts[cmd.account]
        cash = margin.balances(acc)[asset]
        if amount > cash:
            reject(RejectCode.INSUFFICIENT_BALANCE,
                    f"withdrawal of {amount} exceeds the {asset} balance {max(cash, 0)}")
        available = margin.available(acc, margin._figures(acc))[asset]
        if amount > available:
            reject(RejectCode.WITHDRAWAL_BREAKS_MARGIN,
                    f"withdrawal of {amount} {asset} would break initial margin or loan-to-value "
                    f"(available {available})")
        ex = self.exchange
        ex._advance_to(cmd.ts, events)
        margin.touch(acc, events)
        balance = self.ledger.withdraw(cmd.account, asset, amount, tid, ex.clock)
        events.append(m.Withdrawn(ex.seq, ex.clock, cmd.account, asset, amount, tid, balance))
