"""Money: every balance the venue holds, per asset, and the audit that proves none was created.

Holders: each account, and five venue buckets (the insurance fund, the fee account, the lending
pool's cash, the platform's own book, which buys converted collateral, and the funding in transit:
what a funding interval's payers have paid and its receivers not yet received, perpcore.funding).
The venue buckets are signed: a lending pool that has lent out more than it has been repaid, or a
platform that paid for collateral, holds a negative balance, the capital the venue itself has put
in; funding in transit only while a receiver touched before the payers were all settled has been
paid ahead of them (perpcore.funding). Money enters only
by Deposit and leaves only by Withdraw; everything else is a transfer between holders, made by
perpcore._ledger.move, the one function any layer (margin, funding, liquidation, lending) may
change a balance with; realised PnL comes in by perpcore._ledger.realise (tests/test_ledger.py
checks that no other code writes a balance).

One more term closes the books in the settlement asset: realised PnL is credited when a position
closes, but the matching gain or loss of the counterparty stays in its open position's entry value
until that one closes too. So the audit counts, beside the balances, minus the entry value of every
open long plus that of every open short ("open_entry_value"): with it the sum is exact after every
event, not only once all positions are flat.

Range. Money coming in (a Deposit, FundInsurance) is refused as AMOUNT_TOO_LARGE when it would take
the asset's money in the venue (deposits - withdrawals) or the receiving balance past MAX_MONEY,
2**62 minor units. Everything else moves money between holders, so every balance stays within
int64 (what msgpack and the C paths hold) while the money the venue itself puts out (the lending
pool's loans, bounded by margin.lending_limit, the platform's purchases, bad debt) stays below
another 2**62: a balance is at most the venue's money plus what other holders owe. Fees, funding and
realised PnL are such transfers. Loan interest moves no money: it adds to debts and the pool's
receivable, compounding from at most the lending limit (100M USD by default, 1e14 units) at the
configured rate: unpaid, it reaches 2**62 after more than a century at the default 10% a year (a
decade even at 100%), and a loan is converted or written off long before. The lifetime totals of
deposits and withdrawals grow with history and are kept exactly (Python ints, two int64 limbs each
in the state, so they never pass msgpack's range).

Transfer ids: see TransferWindow.
"""
from __future__ import annotations

import sys
from array import array

import msgspec

from perpcore._ledger import Balances, Cash, CashTable
from perpcore.config import LimitsSpec

BUCKETS = ("insurance_fund", "fee_account", "lending_pool", "platform", "funding_transit")
MAX_MONEY = 2**62
_LIMB = 2**63


class AssetAudit(msgspec.Struct, frozen=True):
    """One asset's books: accounts + venue buckets + open_entry_value must equal
    deposits - withdrawals (difference 0); loans owed to the pool must equal what it has lent
    plus interest less repayments (loans == pool_receivable)."""
    asset: str
    accounts: int
    insurance_fund: int
    fee_account: int
    lending_pool: int
    platform: int
    open_entry_value: int
    deposits: int
    withdrawals: int
    loans: int
    pool_receivable: int
    funding_transit: int = 0

    @property
    def held(self) -> int:
        return (self.accounts + self.insurance_fund + self.fee_account + self.lending_pool
                + self.platform + self.funding_transit + self.open_entry_value)

    @property
    def difference(self) -> int:
        return self.held - (self.deposits - self.withdrawals)

    @property
    def ok(self) -> bool:
        return self.difference == 0 and self.loans == self.pool_receivable


class AuditError(AssertionError):
    """The books do not balance: a bug, never a state to carry on from."""


class Audit(msgspec.Struct, frozen=True):
    assets: tuple[AssetAudit, ...]

    @property
    def ok(self) -> bool:
        return all(a.ok for a in self.assets)

    def __getitem__(self, asset: str) -> AssetAudit:
        for a in self.assets:
            if a.asset == asset:
                return a
        raise KeyError(asset)

    def check(self) -> "Audit":
        """Raises AuditError naming every asset that does not balance; returns self otherwise."""
        bad = [f"{a.asset}: held {a.held} vs deposits - withdrawals {a.deposits - a.withdrawals} "
               f"(difference {a.difference}), loans {a.loans} vs pool receivable "
               f"{a.pool_receivable}" for a in self.assets if not a.ok]
        if bad:
            raise AuditError("; ".join(bad))
        return self


class TransferWindow:
    """The transfer ids remembered for idempotency, the way custody systems keep idempotency keys:
    the newest `kept` (account, id) pairs, none applied `ttl` ns or more of exchange time ago.

    A Deposit or Withdraw repeating a remembered id is refused as DUPLICATE_TRANSFER. An id the
    window has forgotten is applied again: ids need not be monotonic, so nothing below a mark can
    be refused either; a custody system must not retry a transfer for longer than the window (30
    days and 100,000 transfers by default, LimitsSpec). Time is the exchange clock, never the
    wall clock: an id applied at time t is remembered while the clock, as a later command arrives
    (before it moves the clock), is below t + ttl.

    The entries sit in arrival order in one uint64 array (account, id, time applied; from `head`
    on; uint64 holds every account the state can), which is also their state: eviction takes the
    oldest in O(1), by count at each insertion and by time lazily (an expired entry counts for
    nothing until then), and the state is the live part's bytes, nothing sorted and no object per
    entry."""
    __slots__ = ("kept", "ttl", "ids", "entries", "head")

    def __init__(self, kept: int, ttl: int):
        self.kept = kept
        self.ttl = ttl
        self.ids: dict[int, int] = {}       # account << 64 | id -> time applied (no tuple per id)
        self.entries = array("Q")
        self.head = 0                       # the first entry not evicted, in triples

    def seen(self, account: int, transfer_id: int, now: int) -> bool:
        applied = self.ids.get(account << 64 | transfer_id)
        return applied is not None and now - applied < self.ttl

    def add(self, account: int, transfer_id: int, now: int) -> None:
        """Remembers an id seen() does not know at `now` (times never decrease)."""
        entries = self.entries
        # expired entries are the oldest: a forgotten copy of this id goes too, before it returns
        while self.head * 3 < len(entries) and now - entries[self.head * 3 + 2] >= self.ttl:
            self._evict()
        entries.extend((account, transfer_id, now))
        self.ids[account << 64 | transfer_id] = now
        if len(self.ids) > self.kept:
            self._evict()
        if self.head * 6 > len(entries):     # half of the array evicted: amortised O(1)
            del entries[:self.head * 3]
            self.head = 0

    def _evict(self) -> None:
        i = self.head * 3
        del self.ids[self.entries[i] << 64 | self.entries[i + 1]]
        self.head += 1

    def to_state(self, now: int) -> bytes:
        """The live entries, oldest first, as little-endian uint64 triples."""
        entries, ttl = self.entries, self.ttl
        lo, hi = self.head, len(entries) // 3
        while lo < hi:                      # the first live entry: times never decrease
            mid = (lo + hi) // 2
            if now - entries[mid * 3 + 2] >= ttl:
                lo = mid + 1
            else:
                hi = mid
        live = entries[lo * 3:]
        if sys.byteorder == "big":
            live.byteswap()
        return live.tobytes()

    def from_state(self, data: bytes) -> None:
        entries = array("Q", data)
        if sys.byteorder == "big":
            entries.byteswap()
        self.entries, self.head = entries, 0
        self.ids = {entries[i] << 64 | entries[i + 1]: entries[i + 2]
                    for i in range(0, len(entries), 3)}


class Ledger:
    """Balances per holder and asset, and the external flows. An account's balances are a row of
    int64 in C (perpcore._ledger.CashTable, the register of accounts: a row is the account's slot in
    the margin and liquidation layers too), read through Cash views; the venue buckets are
    dicts."""

    def __init__(self, assets: list[str], limits: LimitsSpec = LimitsSpec()):
        self.assets = list(assets)
        self.cash = CashTable(self.assets)
        self.balances = Balances(self.cash)        # account -> its Cash view
        self.venue = {bucket: dict.fromkeys(self.assets, 0) for bucket in BUCKETS}
        self.deposits = dict.fromkeys(self.assets, 0)
        self.withdrawals = dict.fromkeys(self.assets, 0)
        self.transfers = TransferWindow(limits.transfer_ids_kept, limits.transfer_id_ttl_ns)

    def open(self, account: int) -> int:
        """The account's row in the CashTable, given if new."""
        return self.cash.open(account)

    def seen(self, account: int, transfer_id: int, now: int) -> bool:
        return transfer_id != 0 and self.transfers.seen(account, transfer_id, now)

    def room(self, asset: str, balance: int) -> int:
        """The most money of `asset` that may come into a holder with this balance (MAX_MONEY)."""
        return MAX_MONEY - max(self.deposits[asset] - self.withdrawals[asset], balance)

    def deposit(self, account: int, asset: str, amount: int, transfer_id: int, now: int) -> int:
        if transfer_id:
            self.transfers.add(account, transfer_id, now)
        self.deposits[asset] += amount
        self.balances[account][asset] += amount
        return self.balances[account][asset]

    def withdraw(self, account: int, asset: str, amount: int, transfer_id: int, now: int) -> int:
        if transfer_id:
            self.transfers.add(account, transfer_id, now)
        self.withdrawals[asset] += amount
        self.balances[account][asset] -= amount
        return self.balances[account][asset]

    def deposit_venue(self, bucket: str, asset: str, amount: int) -> int:
        """Credits a venue bucket with money from outside (the venue's own capital, such as a
        payment into the insurance fund); the audit counts it as a deposit."""
        self.deposits[asset] += amount
        self.venue[bucket][asset] += amount
        return self.venue[bucket][asset]

    def audit(self, open_entry_value: dict[str, int], loans: dict[str, int],
              receivable: dict[str, int]) -> Audit:
        out = []
        for asset in self.assets:
            out.append(AssetAudit(
                asset=asset,
                accounts=self.cash.total(asset),
                insurance_fund=self.venue["insurance_fund"][asset],
                fee_account=self.venue["fee_account"][asset],
                lending_pool=self.venue["lending_pool"][asset],
                platform=self.venue["platform"][asset],
                funding_transit=self.venue["funding_transit"][asset],
                open_entry_value=open_entry_value.get(asset, 0),
                deposits=self.deposits[asset], withdrawals=self.withdrawals[asset],
                loans=loans.get(asset, 0), pool_receivable=receivable.get(asset, 0)))
        return Audit(tuple(out))

    def to_state(self, now: int) -> dict:
        """Plain data; `now` is the exchange clock (the transfer ids live at it)."""
        return {
            "balances": [(account, [b[a] for a in self.assets])
                         for account, b in sorted(self.balances.items())],
            "venue": [(bucket, [self.venue[bucket][a] for a in self.assets]) for bucket in BUCKETS],
            "deposits": [divmod(self.deposits[a], _LIMB) for a in self.assets],
            "withdrawals": [divmod(self.withdrawals[a], _LIMB) for a in self.assets],
            "transfers": self.transfers.to_state(now),
        }

    def from_state(self, state: dict) -> None:
        """Refills the ledger in place; rows are given afresh, in the state's (account) order."""
        self.cash.clear()
        for account, values in state["balances"]:
            Cash(self.cash, self.open(account)).update(zip(self.assets, values))
        for bucket, values in state["venue"]:
            self.venue[bucket].update(zip(self.assets, values))
        self.deposits.update((a, high * _LIMB + low)
                             for a, (high, low) in zip(self.assets, state["deposits"]))
        self.withdrawals.update((a, high * _LIMB + low)
                                for a, (high, low) in zip(self.assets, state["withdrawals"]))
        self.transfers.from_state(state["transfers"])
