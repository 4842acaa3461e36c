"""Money: every balance the venue holds, per asset, and the audit that proves none was created.

Holders: each account, and four venue buckets (the insurance fund, the fee account, the lending
pool's cash and the platform's own book, which buys converted collateral). The venue buckets are
signed: a lending pool that has lent out more than it has been repaid, or a platform that paid for
collateral, holds a negative balance, the capital the venue itself has put in. Money enters only
by Deposit and leaves only by Withdraw; everything else is a transfer between holders.

One more term closes the books in the settlement asset: realised PnL is credited when a position
closes, but the matching gain or loss of the counterparty stays in its open position's entry value
until that one closes too. So the audit counts, beside the balances, minus the entry value of every
open long plus that of every open short ("open_entry_value"): with it the sum is exact after every
event, not only once all positions are flat.
"""
from __future__ import annotations

import msgspec

BUCKETS = ("insurance_fund", "fee_account", "lending_pool", "platform")


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

    @property
    def held(self) -> int:
        return (self.accounts + self.insurance_fund + self.fee_account + self.lending_pool
                + self.platform + self.open_entry_value)

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


class Ledger:
    """Balances per holder and asset, and the external flows. Accounts' balance dicts are shared
    with the margin layer (it reads and moves cash on the hot path without a second lookup)."""

    def __init__(self, assets: list[str]):
        self.assets = list(assets)
        self.balances: dict[int, dict[str, int]] = {}
        self.venue = {bucket: dict.fromkeys(self.assets, 0) for bucket in BUCKETS}
        self.deposits = dict.fromkeys(self.assets, 0)
        self.withdrawals = dict.fromkeys(self.assets, 0)
        self.transfers: set[tuple[int, int]] = set()   # (account, transfer_id) seen

    def open(self, account: int) -> dict[str, int]:
        return self.balances.setdefault(account, dict.fromkeys(self.assets, 0))

    def seen(self, account: int, transfer_id: int) -> bool:
        return transfer_id != 0 and (account, transfer_id) in self.transfers

    def deposit(self, account: int, asset: str, amount: int, transfer_id: int) -> int:
        if transfer_id:
            self.transfers.add((account, transfer_id))
        self.deposits[asset] += amount
        self.balances[account][asset] += amount
        return self.balances[account][asset]

    def withdraw(self, account: int, asset: str, amount: int, transfer_id: int) -> int:
        if transfer_id:
            self.transfers.add((account, transfer_id))
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
                accounts=sum(b[asset] for b in self.balances.values()),
                insurance_fund=self.venue["insurance_fund"][asset],
                fee_account=self.venue["fee_account"][asset],
                lending_pool=self.venue["lending_pool"][asset],
                platform=self.venue["platform"][asset],
                open_entry_value=open_entry_value.get(asset, 0),
                deposits=self.deposits[asset], withdrawals=self.withdrawals[asset],
                loans=loans.get(asset, 0), pool_receivable=receivable.get(asset, 0)))
        return Audit(tuple(out))

    def to_state(self) -> dict:
        return {
            "balances": [(account, [b[a] for a in self.assets])
                         for account, b in sorted(self.balances.items())],
            "venue": [(bucket, [self.venue[bucket][a] for a in self.assets]) for bucket in BUCKETS],
            "deposits": [self.deposits[a] for a in self.assets],
            "withdrawals": [self.withdrawals[a] for a in self.assets],
            "transfers": sorted(self.transfers),
        }

    def from_state(self, state: dict) -> None:
        """Refills the ledger in place: the margin layer's accounts keep their dict objects."""
        for account, values in state["balances"]:
            self.open(account).update(zip(self.assets, values))
        for bucket, values in state["venue"]:
            self.venue[bucket].update(zip(self.assets, values))
        self.deposits.update(zip(self.assets, state["deposits"]))
        self.withdrawals.update(zip(self.assets, state["withdrawals"]))
        self.transfers = {tuple(t) for t in state["transfers"]}
