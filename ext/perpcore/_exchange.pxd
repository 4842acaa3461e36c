# The contract of perpcore._exchange: the Exchange's command path.
# ExchangeCore (the base of perpcore.exchange.Exchange) sequences each command, checks its time,
# dispatches it to its handler and runs the stages after it (prices, triggers, loans, liquidation);
# a refusal (a code returned by order entry, or a perpcore.errors.Rejection raised by a handler in
# Python) before the command changed anything becomes its one OrderRejected.
# Every refusal comes before time moves: a handler checks all it may refuse (the book's own refusals
# too: OrderBook._precheck_place / _precheck_amend) and only then advances the clock to the command's
# ts, so a rejection leaves the whole state as it was, clock included, and the funding and interest
# of the time that passed come with the next command accepted.
# OrderEntry is the handler of the order commands. PlaceOrder, CancelOrder and AmendOrder go through
# validation (stage 1), the pre-trade margin check (stage 2, perpcore._margin), matching (stage 3,
# perpcore._book) and settlement of each fill (stage 4, perpcore._margin) here, in that order; a
# stage that refuses returns its code before anything changed (no exception on this path). The
# Exchange keeps the sequence, the clock, the accounts and the later stages (prices, triggers,
# loans, liquidation) and calls in per command.
#
# The events, the checks and their reject codes are exactly those documented in perpcore.exchange.

from libc.stdint cimport int64_t

from perpcore._book cimport Order, OrderBook
from perpcore._liquidation cimport LiquidationCore
from perpcore._pricing cimport PricingCore
from perpcore._margin cimport MarginCore, Slots, SymbolRisk


cdef class Market:
    """What the exchange keeps per instrument: its spec, its book and the limits order entry
    checks, read once from the spec."""
    cdef readonly object spec          # perpcore.config.InstrumentSpec
    cdef readonly OrderBook book
    cdef readonly str symbol
    cdef readonly int64_t units_per_ticklot, min_notional_units
    cdef readonly int64_t max_price, price_step, max_qty, qty_step
    cdef readonly int64_t market_protection     # RATE_SCALE
    cdef readonly bint professional_only
    cdef readonly SymbolRisk risk      # the margin layer's state of the symbol (OrderEntry sets it)


cdef class OrderEntry


cdef class Waiting:
    """The count of conditional orders waiting, perpcore.triggers.Triggers' (its base class): a C
    field, which order entry and stage 5 read on every command."""
    cdef public int64_t live


cdef class ExchangeCore:
    cdef readonly int64_t seq          # last sequence number assigned
    cdef readonly int64_t clock        # exchange time, ns, from the command stream
    cdef readonly int64_t max_time_step     # config.limits.max_time_step_ns
    cdef readonly object halted        # None, or the perpcore.errors.Halt that stopped it
    cdef bint busy                     # a submit is in progress (the one-writer guard)
    cdef readonly int64_t next_order_id     # the id the next order accepted gets
    # the layers, wired once by the Exchange (_compose)
    cdef readonly dict _handlers       # command type -> handler(cmd, events), order commands aside
    cdef readonly object triggers
    cdef Waiting waiting               # the triggers' count (the same object)
    cdef readonly PricingCore _pricing     # perpcore.pricing.Pricing
    cdef readonly OrderEntry _entry        # the order commands' handler
    cdef readonly LiquidationCore liquidation
    cdef readonly MarginCore margin

    cdef int64_t take_order_id(self)   # the next order id, now taken (take_order_id() in Python)

    # _advance_to(): time moves to ts (if later); a first ts further from 0 than
    # config.limits.max_time_step_ns starts the clock, nothing due before it (Pricing.start)
    cdef advance(self, ts, list events)
    # submit() in parts, for a caller that works between them (perpcore._journal): with busy
    # set, expect_account() begins the lookups of an order or a cancel (prefetches of its
    # account's record and its book's index cells, so that the memory's answers come while the
    # command is read), refusal() is the halted state's or the boundary's rejection (None: go
    # on), apply() sequences and applies a command that passed it, halt() stops the engine over
    # `error`
    cdef list concurrent(self, cmd)
    cdef void expect_account(self, cmd) noexcept
    cdef list refusal(self, cmd, tuple fields)
    cdef list apply(self, cmd, seq, tuple fields)
    cdef list halt(self, int64_t seq, cmd, error)
    cdef list order_refused(self, cmd, tuple f, code, str reason)     # order entry's refusals
    # the stages after order entry: trimming reduce-only orders and stage 5 (prices) over the
    # events from `start` (a command's, a round of liquidations'), and the conditional orders
    # prices crossed, each fired as a new order through order entry
    cdef post_trade(self, list events, Py_ssize_t start)
    cdef fire_triggers(self, list events)
    # stage 6: the liquidation engine's rounds, each one's plan run, then post_trade
    cdef liquidate(self, list events)
    # a layer's plan (perpcore.messages.Plan: stage 6's liquidations, the loans' checks on the
    # clock and after a command, Repay's): each internal command it yields run through its
    # handler, the result sent back; re-entering work never calls back into an earlier stage
    cdef run_internal(self, plan, list events)


cdef class OrderEntry:
    cdef ExchangeCore ex               # the Exchange: seq, clock, _next_order_id, advance
    cdef dict markets                  # symbol -> perpcore.exchange.Market
    cdef Slots slots                   # the margin layer's: account -> slot, its flags
    cdef MarginCore margin
    cdef object triggers
    cdef Waiting waiting               # the triggers' count (the same object)
    # A refusal is the code the refusing call returns (0: none) with its reason here: no
    # exception on the order path; apply() makes it the command's one OrderRejected
    cdef readonly str reason

    cdef int refuse(self, int code, str reason) except -1
    cdef int unknown_symbol(self, symbol) except -1
    cdef int unknown_account(self, account) except -1
    cdef int price_refusal(self, Market market, int64_t price, str what) except -1
    cdef int price_qty_refusal(self, Market market, int64_t price, int64_t qty) except -1
    # the one validation of an order, live or conditional (stage 1's semantic half)
    cdef int order_refusal(self, Market market, account, bint professional, int64_t price,
                           int64_t qty, int64_t notional_price, client_id) except -1
    cdef int book_refusal(self, int status) except -1         # a book's ST_* refusal
    cdef int margin_refusal(self, int code) except -1         # MarginCore.check's
    cdef Order* owned_order(self, Market market, account, order_id, client_id)
    # the order commands: 0 once applied, or the code of the refusal (nothing changed)
    # (`fields`: the command's, perpcore._validate.fields_of, read once at the boundary)
    cdef int place(self, cmd, tuple fields, list events, order_id) except -1
    cdef int cancel(self, cmd, tuple fields, list events) except -1
    cdef int amend(self, cmd, list events) except -1
    # after trades: the reduce-only orders the positions no longer allow, shrunk or cancelled
    cdef trim_reduce_only(self, list events)
    # the taker's slot in the margin layer: `taker`
    cdef int64_t fill_events(self, Market market, OrderBook book, taker_side, int64_t taker_qty,
                             Py_ssize_t taker, list events, taker_fee) except? -1
