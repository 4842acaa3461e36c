"""The Exchange: one deterministic state machine that takes commands and returns events.

A command passes through fixed stages (see DESIGN.md): validation at the boundary, risk before
matching, matching in the Cython book, settlement after. A stage that refuses the command returns a
single OrderRejected and leaves every piece of state as it was, the clock included (a refusal comes
before time moves: the funding and interest of the time that passed come with the next command that
is applied); only a command that passes all the checks changes anything.

The boundary (perpcore._validate) checks every field against the schema perpcore.messages declares;
a command outside it is refused before it is sequenced (its rejection carries the last seq) and is
never journaled. A command's time may move the clock at most limits.max_time_step_ns
(TIME_STEP_TOO_LARGE); the first timed command starts it anywhere. submit() never raises: a command
that raises inside the engine is a bug that may have half-applied it, so the engine stops there
(fail-stop, perpcore.errors.Halt in `halted`) and refuses every later command with ENGINE_HALTED.
"""
from __future__ import annotations

import hashlib
from collections.abc import Callable
from functools import partial
from typing import Any, Protocol

import msgspec

import perpcore._book as _book  # this form: a type checker takes a module without stubs as Any
from perpcore import messages as m
from perpcore.config import VenueConfig, digest_form
from perpcore._exchange import ExchangeCore, Market, OrderEntry
from perpcore.errors import RejectCode, Rejection
from perpcore.messages import CancelReason
from perpcore.liquidation import Liquidation
from perpcore.margin import Margin
from perpcore.pricing import Pricing
from perpcore.triggers import Triggers
from perpcore.views import AccountView


class Component(Protocol):
    """A stateful layer of the exchange: its state as plain data, for snapshots and the hash."""

    def to_state(self) -> Any: ...

    def from_state(self, state: Any) -> None: ...


class BookView:
    """Read-only queries on one instrument's book."""
    __slots__ = ("_book",)

    def __init__(self, book: _book.OrderBook):
        self._book = book

    def best_bid(self) -> int | None:
        """The highest bid (ticks), None when there is none."""
        return self._book.best_bid()

    def best_ask(self) -> int | None:
        """The lowest offer (ticks), None when there is none."""
        return self._book.best_ask()

    def depth(self, n: int = 10):
        """([(price, qty, orders)] bids, [...] asks), best first."""
        return self._book.depth(n)

    def impact_price(self, taker_side: m.Side, notional_ticklots: int):
        """Average fill price (Fraction of ticks) of a taker order of that notional, or None."""
        return self._book.impact(int(taker_side), notional_ticklots)

    def order(self, order_id: int):
        """(order_id, account, side, price, open_qty, filled, client_id, post_only) of an open
        order, None if it is not open."""
        return self._book.order(order_id)

    def __len__(self) -> int:
        return len(self._book)


class Exchange(ExchangeCore):
    """The venue: submit() (perpcore._exchange.ExchangeCore) applies one command and returns its
    events; the rest is the handlers of the other commands, queries and snapshots.

    Threading: one thread owns an exchange. Its state is not locked; submit() refuses a call made
    while another thread's submit() is in progress (CONCURRENT_SUBMIT, nothing changed), but
    queries (account(), book(), state_hash(), snapshot()) are not guarded and must come from the
    owning thread, or be serialised with its submits by the caller (a gateway hands commands to
    the engine's thread through a queue)."""

    def __init__(self, config: VenueConfig):
        super().__init__(config)
        self.config = config
        self.markets = {symbol: Market(config, symbol) for symbol in sorted(config.instruments)}
        # The stateful layers (pricing, funding, margin, liquidation...), by name, in the order they
        # were added. Each has to_state() -> plain data and from_state(data) for snapshots and the
        # state hash.
        self.components: dict[str, Component] = {}
        pricing = self.components["pricing"] = Pricing(self)
        margin = self.components["margin"] = Margin(self)
        liquidation = self.components["liquidation"] = Liquidation(self)
        triggers = self.components["triggers"] = Triggers(self)
        # the order commands' stages 1-4 run in Cython (perpcore._exchange); its checks serve the
        # other commands too
        entry = OrderEntry(self, self.markets, margin, triggers)
        self._known_account = entry.require_account
        self._market = entry.require_market
        # the other commands' handlers (the order commands go straight to the order entry)
        handlers: dict[type, Callable[..., m.Plan | list | None]] = {
            m.CreateAccount: self._create_account,
            m.CancelAll: self._cancel_all,
            # stage 6's internal commands (perpcore.messages.InternalCommand)
            m.PlaceLiquidationOrder: entry.place_liquidation,
            m.CancelAccountOrders: self._cancel_account_orders,
            m.LiquidateLoan: liquidation.loans.liquidate_loan,
            m.AdvanceClock: self._advance_clock,
            m.SetIndexPrice: self._set_index_price,
            m.FundInsurance: liquidation.insurance.deposit,
        }
        transfers, loans = margin.transfers, margin.loans
        for command, apply in ((m.Deposit, transfers.deposit), (m.Withdraw, transfers.withdraw),
                               (m.Borrow, loans.borrow), (m.Repay, loans.repay),
                               (m.SetLeverage, margin.set_leverage)):
            handlers[command] = partial(self._account_command, apply)
        self._compose(pricing, margin, liquidation, triggers, entry, handlers)

    # ---- the entry point -----------------------------------------------------------------------

    def submit_bytes(self, payload: bytes, seq: int | None = None) -> list[m.Event]:
        """Decodes a msgpack command (validating every field) and applies it; a payload that does
        not decode is refused as MALFORMED before it is sequenced, as submit() refuses a command
        outside its schema. `seq` as in submit()."""
        try:
            cmd = m.command_decoder.decode(payload)
        except Exception as e:  # msgspec raises DecodeError/ValidationError; both mean "malformed"
            return [m.OrderRejected(self.seq, self.clock, RejectCode.MALFORMED, str(e)[:200])]
        return self.submit(cmd, seq)

    # ---- time ----------------------------------------------------------------------------------

    def _advance_clock(self, cmd: m.AdvanceClock, events: list) -> None:
        if cmd.ts == 0:
            raise Rejection(RejectCode.MALFORMED, "AdvanceClock needs a positive ts")
        self._advance_to(cmd.ts, events)

    # ---- prices --------------------------------------------------------------------------------

    def _set_index_price(self, cmd: m.SetIndexPrice, events: list) -> None:
        refusal = self._pricing.refusal(cmd)
        if refusal is not None:
            raise Rejection(*refusal)
        self._advance_to(cmd.ts, events)
        self._pricing.set_index(cmd.symbol, cmd.source, cmd.price, events)

    # ---- accounts ------------------------------------------------------------------------------

    def _create_account(self, cmd: m.CreateAccount, events: list) -> None:
        if cmd.account == 0:
            raise Rejection(RejectCode.MALFORMED, "account must be positive")
        if cmd.account in self.margin.accounts:
            raise Rejection(RejectCode.DUPLICATE_ACCOUNT, f"account {cmd.account} already exists")
        self._advance_to(cmd.ts, events)
        self.margin.open_account(cmd.account, cmd.professional)
        events.append(m.AccountCreated(self.seq, self.clock, cmd.account, cmd.professional))

    def _account_command(self, apply, cmd, events: list) -> m.Plan | None:
        """Deposit, Withdraw, Borrow, Repay, SetLeverage: the margin layer validates and applies
        (Repay's is a plan, perpcore.lending.Loans.repay, which the pipeline runs)."""
        self._known_account(cmd.account)
        return apply(cmd, events)

    # ---- orders --------------------------------------------------------------------------------

    def _cancel_all(self, cmd: m.CancelAll, events: list) -> None:
        self._known_account(cmd.account)
        if cmd.symbol:
            self._market(cmd.symbol)
        self._advance_to(cmd.ts, events)
        self._cancel_account_orders(
            m.CancelAccountOrders(cmd.account, CancelReason.CANCEL_ALL, cmd.symbol), events)

    def _cancel_account_orders(self, cmd: m.CancelAccountOrders, events: list) -> None:
        """CancelAll once checked, and stage 6's cancels: each open order, then each conditional
        one, of each symbol in turn."""
        account, reason = cmd.account, cmd.reason
        for symbol, market in self.markets.items():
            if cmd.symbol and symbol != cmd.symbol:
                continue
            # by order id: the book's own order (arrival) is not kept by a snapshot's load(), so
            # after a restore it would differ, and it must not reach the events
            for order_id, side, price, open_qty in sorted(market.book.cancel_account(account)):
                self.margin.order_closed(order_id, account, symbol, side, price, open_qty)
                events.append(m.OrderCancelled(self.seq, self.clock, account, symbol, order_id,
                                               open_qty, reason))
            self.triggers.cancel_account(account, symbol, reason, events)

    # ---- queries -------------------------------------------------------------------------------

    def account(self, account: int) -> AccountView:
        """Balances, collateral, equity, margins, margin ratio, what may be withdrawn, and per
        position its liquidation price (see perpcore.margin). KeyError for an unknown account."""
        return self.margin.view(account)

    def audit(self):
        """The conservation proof per asset (perpcore.ledger.Audit; .ok, .check() raises)."""
        return self.margin.audit()

    def insurance_fund(self, asset: str) -> int:
        """The insurance fund's balance of an asset, in its minor units."""
        return self.margin.insurance_fund(asset)

    def book(self, symbol: str) -> BookView:
        """Read-only queries on one instrument's order book."""
        return BookView(self.markets[symbol].book)

    def index_price(self, symbol: str) -> int | None:
        """The index in ticks (its last value while stale), None before any constituent price."""
        return self._pricing.index_price(symbol)

    def mark_price(self, symbol: str) -> int | None:
        """The mark in ticks, None before any index price."""
        return self._pricing.mark_price(symbol)

    def funding_rate(self, symbol: str) -> int:
        """The rate the next funding time pays, at RATE_SCALE: the running interval's predicted
        rate, or, under PricingSpec.funding_rate_window "previous", the rate announced at the last
        funding time."""
        return self._pricing.funding_rate(symbol)

    def accounts(self) -> list[int]:
        """Every account id, ascending."""
        return sorted(self.margin.accounts)

    def to_state(self) -> dict:
        """The whole business state as plain data (ints, strings, lists, dicts with sorted keys);
        each layer contributes its own part under its name in `self.components`."""
        state = {
            "clock": self.clock,
            "next_order_id": self.next_order_id,
            "accounts": [(a, acc.professional) for a, acc in sorted(self.margin.accounts.items())],
            # every field that decides a resting order's future (filled quantity, STP mode) and
            # its place in the queue
            "books": [(symbol, market.book.dump()) for symbol, market in self.markets.items()],
        }
        for name, component in self.components.items():
            state[name] = component.to_state()
        return state

    def state_hash(self) -> str:
        """A digest of the whole business state (not of the sequence counter): equal states give
        equal hashes on any machine, whatever path led to them."""
        return _state_hash(m.encoder.encode(self.to_state()))

    # ---- snapshots -----------------------------------------------------------------------------

    def snapshot(self) -> bytes:
        """The whole state and the sequence number as msgpack bytes; restore() rebuilds from them
        an exchange that behaves exactly as this one does from here on. The state is embedded as
        bytes with their checksum and the state hash, which restore() checks. A halted exchange
        (perpcore.errors) has none: its state may be half-applied."""
        if self.halted is not None:
            raise ValueError(f"no snapshot of a halted exchange: {self.halted.cause}")
        state = m.encoder.encode(self.to_state())
        return m.encoder.encode({"format": SNAPSHOT_FORMAT, "config": config_digest(self.config),
                                 "seq": self.seq, "state": state, "checksum": _checksum(state),
                                 "state_hash": _state_hash(state)})

    @classmethod
    def restore(cls, config: VenueConfig, data: bytes) -> "Exchange":
        """An exchange in the state a snapshot() recorded. The venue config must be the one the
        snapshot was taken under, the state bytes must match their checksum (checked before
        anything is built), the snapshot must cover exactly this build's components, and the
        rebuilt exchange must have the recorded state hash; anything else raises ValueError
        (never a half-restored exchange)."""
        try:
            snap = msgspec.msgpack.decode(data)
        except msgspec.DecodeError as e:
            raise ValueError(f"not a perpcore snapshot ({e})") from e
        if not isinstance(snap, dict) or snap.get("format") != SNAPSHOT_FORMAT:
            raise ValueError("not a perpcore snapshot of a known format")
        if snap.get("config") != config_digest(config):
            raise ValueError("the snapshot was taken under a different venue config")
        raw = snap.get("state")
        if type(raw) is not bytes or _checksum(raw) != snap.get("checksum"):
            raise ValueError("the snapshot's state is damaged (checksum mismatch)")
        ex = cls(config)
        state = msgspec.msgpack.decode(raw)
        expected = {"clock", "next_order_id", "accounts", "books", *ex.components}
        parts = sorted(state) if isinstance(state, dict) else []
        if set(parts) != expected:
            raise ValueError(f"snapshot parts {parts} do not match this exchange's "
                             f"{sorted(expected)}")
        if [symbol for symbol, _ in state["books"]] != list(ex.markets):
            raise ValueError("the snapshot's instruments differ from the config's")
        ex._restore_counters(snap["seq"], state["clock"], state["next_order_id"])
        for symbol, orders in state["books"]:
            ex.markets[symbol].book.load(orders)
        for name, component in ex.components.items():
            component.from_state(state[name])
        if ex.state_hash() != snap.get("state_hash"):
            raise ValueError("the snapshot restores to a different state than it recorded")
        return ex


SNAPSHOT_FORMAT = 3


def _state_hash(state: bytes) -> str:
    return hashlib.blake2b(state, digest_size=32).hexdigest()


def _checksum(data: bytes) -> str:
    """A snapshot's check of its state bytes."""
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def config_digest(config: VenueConfig) -> str:
    """A short digest of a venue config: a snapshot or journal records the config it belongs to.
    Fields added in later versions count only when set away from their default
    (perpcore.config.LATER_FIELDS)."""
    return hashlib.blake2b(m.encoder.encode(digest_form(config)), digest_size=16).hexdigest()
