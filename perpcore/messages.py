"""Commands (verbs) and events (past tense) exchanged with the Exchange.

Every message is a frozen msgspec Struct tagged with its class name; on the wire it is an array (the
tag first), so a record is compact and the decoder checks every field's type. A command's fields
carry their range (Id, Int64, Time, Text below): the decoder enforces it on bytes, and the
exchange's boundary (perpcore._validate) on objects built in Python, whose constructors do no
validation (they are on the hot path). A command outside its schema is refused before it is
sequenced or journaled.

Integers throughout: prices in ticks, quantities in lots, money in minor units of its asset, rates
in fixed point at perpcore.config.RATE_SCALE. Every command may carry `ts` (command time, ns); 0
means "now", the exchange clock.
"""
from __future__ import annotations

from enum import IntEnum
from collections.abc import Generator
from typing import TYPE_CHECKING, Annotated, Any, Union

import msgspec

from perpcore.errors import RejectCode

INT64_MAX = 2**63 - 1
MAX_TEXT = 64               # characters of a symbol, asset or index source

# The ranges of command fields: every integer the engine keeps fits a C int64.
Int64 = Annotated[int, msgspec.Meta(ge=-INT64_MAX - 1, le=INT64_MAX)]
Id = Annotated[int, msgspec.Meta(ge=0, le=INT64_MAX)]        # accounts, orders, transfers; 0: none
Time = Annotated[int, msgspec.Meta(ge=0, le=INT64_MAX)]      # ns of exchange time; 0: now
Text = Annotated[str, msgspec.Meta(max_length=MAX_TEXT)]


class Side(IntEnum):
    BUY = 0
    SELL = 1


class OrderType(IntEnum):
    LIMIT = 0
    MARKET = 1


class TimeInForce(IntEnum):
    GTC = 0
    IOC = 1
    FOK = 2
    POST_ONLY = 3


class SelfTradePrevention(IntEnum):
    NONE = 0
    EXPIRE_TAKER = 1
    EXPIRE_MAKER = 2
    EXPIRE_BOTH = 3


class TriggerKind(IntEnum):
    """A conditional order's kind (Binance's STOP / TAKE_PROFIT). With the side it fixes the
    direction the reference price must cross: a stop buys on a rise (price >= trigger) and sells on
    a fall (price <= trigger); a take-profit sells on a rise and buys on a fall. With order_type it
    makes stop-market, stop-limit, take-profit-market and take-profit-limit."""
    NONE = 0            # an ordinary order, live at once
    STOP = 1
    TAKE_PROFIT = 2


class TriggerSource(IntEnum):
    """The price a conditional order watches."""
    MARK = 0
    LAST = 1            # the last trade in the book


class CancelReason(IntEnum):
    USER = 0            # CancelOrder
    CANCEL_ALL = 1      # CancelAll
    EXPIRED = 2         # IOC / FOK / market remainder
    SELF_TRADE = 3      # self-trade prevention
    LIQUIDATION = 4     # the liquidation engine cleared the account's orders
    REDUCE_ONLY = 5     # the position shrank: a reduce-only order could have increased it


class LiquidationReason(IntEnum):
    MAINTENANCE = 0     # equity at or below maintenance margin, at the mark
    LOAN = 1            # loan-to-value past the liquidation level: collateral is sold
    DEFICIT = 2         # no positions left and equity below zero: the fund or a socialised loss


class FundReason(IntEnum):
    """Why the insurance fund changed."""
    DEPOSIT = 0             # FundInsurance: capital paid in
    LIQUIDATION_FEE = 1     # the surplus of a liquidation fill better than bankruptcy
    LOSS_COVERED = 2        # a takeover sold worse than bankruptcy
    COLLATERAL_PENALTY = 3  # the penalty of a forced collateral sale
    DEFICIT_COVERED = 4     # an account left below zero was made whole
    FUNDING = 5             # the rounding remainder of a funding settlement
    OTHER = 6


class Message(msgspec.Struct, frozen=True, tag=True, array_like=True, gc=False):
    """The one base of every command and event. Messages hold only scalars, so they can never be
    part of a reference cycle: the cyclic collector need not track them (gc=False), which keeps the
    events of a busy venue from driving collections."""


class Command(Message, frozen=True):
    """An instruction to the venue (a verb). Its `ts`, where it has one, is the exchange time it
    happens at (0: now); the engine never reads a clock of its own."""


class Event(Message, frozen=True):
    """Every event carries the global sequence number of the command that caused it and the
    exchange time at which it happened."""
    seq: int
    ts: int


# ---- commands ------------------------------------------------------------------------------------

class CreateAccount(Command, frozen=True):
    """Opens an account; `professional` decides what it may trade and its leverage cap."""
    account: Id
    professional: bool = True
    ts: Time = 0


class PlaceOrder(Command, frozen=True):
    """A new order: limit or market, with its time in force, self-trade prevention and
    reduce-only flag; with `trigger` set, a conditional order that waits for its trigger price.
    Prices in ticks, quantities in lots."""
    account: Id
    symbol: Text
    side: Side
    qty: Int64
    # the limit price; for a market order its protection price (0: the default band)
    price: Int64 = 0
    order_type: OrderType = OrderType.LIMIT
    tif: TimeInForce = TimeInForce.GTC
    stp: SelfTradePrevention = SelfTradePrevention.NONE
    client_order_id: Id = 0             # 0: none; unique among the account's open orders
    reduce_only: bool = False
    ts: Time = 0
    # a conditional order (see TriggerKind): it waits, reserving no margin, until trigger_by's
    # price crosses trigger_price (ticks), then enters as the order above; NONE: live at once
    trigger: TriggerKind = TriggerKind.NONE
    trigger_price: Int64 = 0
    trigger_by: TriggerSource = TriggerSource.MARK


class CancelOrder(Command, frozen=True):
    """Cancels by order_id, or by client_order_id when order_id is 0."""
    account: Id
    symbol: Text
    order_id: Id = 0
    client_order_id: Id = 0
    ts: Time = 0


class AmendOrder(Command, frozen=True):
    """New price and new total quantity (filled + open). A smaller total at the same price keeps
    time priority; anything else loses it."""
    account: Id
    symbol: Text
    order_id: Id
    price: Int64
    qty: Int64
    ts: Time = 0


class CancelAll(Command, frozen=True):
    """Cancels all of an account's open orders, in one symbol or (symbol "") in all."""
    account: Id
    symbol: Text = ""
    ts: Time = 0


class AdvanceClock(Command, frozen=True):
    """Moves exchange time to `ts`: funding, mark samples and interest due by then happen."""
    ts: Time


class SetIndexPrice(Command, frozen=True):
    """A constituent spot price for a symbol's index, from one source, in the symbol's ticks."""
    source: Text
    symbol: Text
    price: Int64
    ts: Time = 0


class Deposit(Command, frozen=True):
    """Credits `amount` minor units of `asset`. transfer_id, when non-zero, is the custody
    system's id of the transfer: a second Deposit or Withdraw of the account with the same id,
    while the id is in the venue's window (limits.transfer_ids_kept and transfer_id_ttl_ns), is
    rejected as DUPLICATE_TRANSFER, so a retried message is not applied twice. 0: no id (each
    command is a transfer of its own). A deposit that would take the account's balance or the
    venue's money in the asset past 2**62 minor units is AMOUNT_TOO_LARGE."""
    account: Id
    asset: Text
    amount: Int64
    transfer_id: Id = 0
    ts: Time = 0


class Withdraw(Command, frozen=True):
    """Debits `amount` of `asset` if the account keeps its initial margin and loan-to-value;
    transfer_id as for Deposit."""
    account: Id
    asset: Text
    amount: Int64
    transfer_id: Id = 0
    ts: Time = 0


class Borrow(Command, frozen=True):
    """Borrows `amount` of the settlement asset from the lending pool against collateral."""
    account: Id
    asset: Text
    amount: Int64
    ts: Time = 0


class Repay(Command, frozen=True):
    """Repays `amount` of the account's loan (interest included) from its cash."""
    account: Id
    asset: Text
    amount: Int64
    ts: Time = 0


class SetLeverage(Command, frozen=True):
    """The leverage of the account's position in `symbol`: its initial margin is notional /
    leverage, and the leverage caps the position's notional at the highest tier allowing it."""
    account: Id
    symbol: Text
    leverage: Int64
    ts: Time = 0


class FundInsurance(Command, frozen=True):
    """The venue pays `amount` of `asset` into its insurance fund (money entering the venue, like a
    Deposit)."""
    asset: Text
    amount: Int64
    ts: Time = 0


# ---- the engine's own commands -------------------------------------------------------------------

class InternalCommand(Message, frozen=True):
    """Work a later stage hands back to the pipeline inside the command that caused it (stage 6's
    liquidation orders and cancels): it runs through the same stages as a client's command, with
    its own events. Never accepted from outside (not among Commands) and never journaled: the
    journaled command that caused it causes it again on replay."""


class PlaceLiquidationOrder(InternalCommand, frozen=True):
    """An IOC limit order the liquidation engine places for an account in breach: no pre-trade
    check, no trading fee (the liquidation fee replaces it). Its result is its fills."""
    account: Id
    symbol: Text
    side: Side
    price: Int64
    qty: Int64


class LiquidateLoan(InternalCommand, frozen=True):
    """An account's loan past the liquidation LTV, for the liquidation engine
    (perpcore.loan_liquidation): repaid from cash, then collateral sold by
    MarginSpec.loan_liquidation."""
    account: Id


class CancelAccountOrders(InternalCommand, frozen=True):
    """Cancels every open order of an account, in the book and waiting to fire, in one symbol or
    (symbol "") in all; `reason` is their OrderCancelled's."""
    account: Id
    reason: CancelReason
    symbol: Text = ""


# a layer's plan: a generator that yields the internal commands its work needs, in order, and is
# sent each one's result (an order's fills; None) once the Exchange has run it
Plan = Generator[InternalCommand, Any, None]


# ---- events --------------------------------------------------------------------------------------

class AccountCreated(Event, frozen=True):
    """An account was opened."""
    account: int
    professional: bool


class OrderAccepted(Event, frozen=True):
    """An order entered the book's matching (a taker's fills follow it, in order)."""
    account: int
    symbol: str
    order_id: int
    client_order_id: int
    side: Side
    price: int
    qty: int
    order_type: OrderType
    tif: TimeInForce


class TriggerOrderAccepted(Event, frozen=True):
    """A conditional order is waiting for its trigger (its order id is the one it will trade
    under); it holds no margin and is not in the book."""
    account: int
    symbol: str
    order_id: int
    client_order_id: int
    side: Side
    price: int
    qty: int
    order_type: OrderType
    tif: TimeInForce
    reduce_only: bool
    trigger: TriggerKind
    trigger_price: int
    trigger_by: TriggerSource


class OrderTriggered(Event, frozen=True):
    """The reference price crossed a conditional order's trigger: the order now enters the normal
    path (OrderAccepted and its fills, or OrderRejected if a check refuses it then)."""
    account: int
    symbol: str
    order_id: int
    client_order_id: int
    trigger_price: int
    trigger_by: TriggerSource
    price: int                          # the reference price that fired it


class OrderRejected(Event, frozen=True):
    """A command was refused: its code (perpcore.errors.RejectCode) and reason, with the
    fields that identify it. Nothing else changed."""
    code: RejectCode
    reason: str
    account: int = 0
    symbol: str = ""
    order_id: int = 0
    client_order_id: int = 0


class OrderFilled(Event, frozen=True):
    """One trade: a taker order against one resting maker order, at the maker's price."""
    symbol: str
    price: int
    qty: int
    taker_side: Side
    maker_order_id: int
    taker_order_id: int
    maker_account: int
    taker_account: int
    maker_remaining: int
    taker_remaining: int


class OrderCancelled(Event, frozen=True):
    """An open order left the book without trading its `open_qty`, for `reason`."""
    account: int
    symbol: str
    order_id: int
    open_qty: int                       # the quantity that was still open and is now withdrawn
    reason: CancelReason


class OrderAmended(Event, frozen=True):
    """An open order's price and total quantity changed; `priority_kept` tells whether
    it kept its place in the queue."""
    account: int
    symbol: str
    order_id: int
    price: int
    qty: int
    priority_kept: bool


class Deposited(Event, frozen=True):
    """Money came into an account."""
    account: int
    asset: str
    amount: int
    transfer_id: int
    balance: int                        # the account's balance of the asset afterwards


class Withdrawn(Event, frozen=True):
    """Money left an account."""
    account: int
    asset: str
    amount: int
    transfer_id: int
    balance: int


class Borrowed(Event, frozen=True):
    """A margin loan was drawn (or grown) against the account's collateral."""
    account: int
    asset: str
    amount: int
    debt: int                           # the loan outstanding afterwards, interest included
    ltv: int                            # loan-to-value afterwards (RATE_SCALE)


class Repaid(Event, frozen=True):
    """Part or all of a margin loan was repaid."""
    account: int
    asset: str
    amount: int
    debt: int


class InterestAccrued(Event, frozen=True):
    """Interest of one interval, added to the loan (owed to the lending pool)."""
    account: int
    asset: str
    amount: int
    debt: int


class LeverageSet(Event, frozen=True):
    """An account's leverage in a symbol changed."""
    account: int
    symbol: str
    leverage: int
    max_notional: int                   # the largest position notional this leverage allows


class PositionChanged(Event, frozen=True):
    """One side of a fill settled: the account's position afterwards, the PnL it realised and the
    fee it paid (negative: a rebate), both in minor units of the settlement asset."""
    account: int
    symbol: str
    order_id: int
    size: int                           # signed lots
    entry_value: int                    # ticks x lots of the open position, exact
    realised_pnl: int
    fee: int
    balance: int                        # settlement asset balance afterwards


class MarginCall(Event, frozen=True):
    """The account's loan-to-value passed the warning level (once per crossing)."""
    account: int
    ltv: int | None                     # RATE_SCALE; None: no collateral value left at all
    debt: int
    collateral_value: int               # collateral at index, before haircuts


class CollateralConverted(Event, frozen=True):
    """Collateral sold to the platform at index less the penalty; the proceeds repaid the loan."""
    account: int
    asset: str
    amount: int
    price: int                          # the index, in ticks of the asset's instrument
    proceeds: int                       # settlement asset received
    repaid: int
    debt: int


class CollateralExchanged(Event, frozen=True):
    """Multi-assets mode's auto-exchange (MarginSpec.multi_assets): the settlement-asset balance
    was below the threshold, and collateral was sold to the platform at index less the
    auto-exchange discount to bring it back to zero."""
    account: int
    asset: str
    amount: int
    price: int                          # the index, in ticks of the asset's instrument
    proceeds: int                       # settlement asset received
    balance: int                        # settlement asset balance afterwards


class IndexPriceUpdated(Event, frozen=True):
    """The index moved (or became fresh again): `sources` fresh constituents made it."""
    symbol: str
    price: int
    sources: int


class IndexStale(Event, frozen=True):
    """No constituent is fresh: the index keeps its last price, which triggers no liquidation."""
    symbol: str
    price: int


class MarkPriceUpdated(Event, frozen=True):
    """A symbol's published mark price (and the index it was derived from) changed."""
    symbol: str
    price: int
    index_price: int
    index_stale: bool


class FundingRateUpdated(Event, frozen=True):
    """The predicted rate of the running interval (RATE_SCALE), payable at next_funding_ts."""
    symbol: str
    rate: int
    next_funding_ts: int


class FundingPaid(Event, frozen=True):
    """One account's funding at a settlement: amount > 0 received, < 0 paid (minor units)."""
    symbol: str
    account: int
    position: int
    mark_price: int
    rate: int
    amount: int


class FundingSettled(Event, frozen=True):
    """A settlement's totals: paid == received + insurance (the rounding remainder). Only while
    positions are open: an interval nobody holds the symbol through settles nothing."""
    symbol: str
    rate: int
    mark_price: int
    positions: int
    paid: int
    received: int
    insurance: int


class LiquidationStarted(Event, frozen=True):
    """The liquidation engine took over the account (figures at the mark, before any action)."""
    account: int
    equity: int
    maintenance_margin: int
    reason: LiquidationReason


class PositionLiquidated(Event, frozen=True):
    """One step of a liquidation: `qty` lots of the position closed by a `side` trade, in the book
    at the bankruptcy price or better (book_*), taken over by the insurance fund and sold worse than
    bankruptcy (fund_*, the fund paying the difference), and deleveraged at the bankruptcy price
    (adl_qty). Values are sum(price x qty) in ticks x lots; money in minor units."""
    account: int
    symbol: str
    side: Side
    qty: int
    size: int                           # the position afterwards, signed lots
    mark_price: int
    bankruptcy_price: int               # the price of the step (the mark if none exists)
    book_qty: int
    book_value: int
    fund_qty: int
    fund_value: int
    adl_qty: int
    fee: int                            # liquidation fee paid into the insurance fund
    fund_delta: int                     # the fund's change: fee - loss covered


class AutoDeleveraged(Event, frozen=True):
    """An opposite position closed at the liquidated position's bankruptcy price."""
    account: int                        # the deleveraged account
    symbol: str
    qty: int
    price: int
    size: int                           # its position afterwards
    liquidated_account: int


class InsuranceFundChanged(Event, frozen=True):
    """The insurance fund of an asset changed by `delta`, for `reason`."""
    asset: str
    delta: int
    balance: int                        # afterwards
    reason: FundReason
    account: int                        # the account concerned, 0: none
    symbol: str


class SocializedLoss(Event, frozen=True):
    """The last resort: a deficit neither the account, the insurance fund nor deleveraging could
    cover stays with the account as the venue's bad debt."""
    account: int
    asset: str
    amount: int
    total: int                          # the account's socialised loss so far


def _all_subclasses(base: type) -> tuple[type, ...]:
    found, todo = [], list[type](base.__subclasses__())
    while todo:
        cls = todo.pop(0)
        found.append(cls)
        todo.extend(cls.__subclasses__())
    return tuple(found)


# Unions per channel: what a gateway sends in, and what the exchange publishes. Built from the
# classes above, so a new message type needs no second edit here.
if TYPE_CHECKING:     # a union built at run time: to a type checker, any of the kind
    Commands = Command
    Events = Event
else:
    Commands = Union[_all_subclasses(Command)]
    Events = Union[_all_subclasses(Event)]

# Reused codecs: building an Encoder/Decoder per message would dominate small messages.
encoder = msgspec.msgpack.Encoder()
command_decoder = msgspec.msgpack.Decoder(Commands)
event_decoder = msgspec.msgpack.Decoder(Events)

