# The contract of ext/perpcore/_exchange.pyx (the extension perpcore._exchange): the Exchange's command path.
# ExchangeCore (the base of perpcore.exchange.Exchange) sequences each command, checks its time,
# dispatches it to its handler and runs the stages after it (prices, triggers, loans, liquidation);
# a Rejection raised anywhere before the command changed anything becomes one OrderRejected.
# Every refusal comes before time moves: a handler checks all it may refuse (the book's own refusals
# too: OrderBook._precheck_place / _precheck_amend) and only then advances the clock to the command's
# ts, so a rejection leaves the whole state as it was, clock included, and the funding and interest
# of the time that passed come with the next command accepted.
# OrderEntry is the handler of the order commands. PlaceOrder, CancelOrder and AmendOrder go through validation (stage 1), the pre-trade
# margin check (stage 2, perpcore._margin), matching (stage 3, perpcore._book) and settlement of each
# fill (stage 4, perpcore._margin) here, in that order; a stage that refuses raises
# perpcore.exchange.Rejection before anything changed. The Exchange keeps the sequence, the clock,
# the accounts and the later stages (prices, triggers, loans, liquidation) and calls in per command.
#
# The events, the checks and their reject codes are exactly those documented in perpcore.exchange.

from libc.stdint cimport int64_t

from perpcore._book cimport Order, OrderBook
from perpcore._liquidation cimport LiquidationCore
from perpcore._pricing cimport PricingCore
from perpcore._margin cimport MarginCore


cdef class Market:
    """What the exchange keeps per instrument: its spec, its book and the limits order entry
    checks, read once from the spec."""
    cdef readonly object spec          # perpcore.config.InstrumentSpec
    cdef readonly OrderBook book
    cdef readonly str symbol
    cdef readonly int64_t units_per_ticklot, min_notional_units
    cdef readonly int64_t max_price, price_step, max_qty, qty_step
    cdef readonly object market_protection
    cdef readonly bint professional_only


cdef class OrderEntry


cdef class ExchangeCore:
    cdef public int64_t seq            # last sequence number assigned
    cdef public int64_t clock          # exchange time, ns, from the command stream
    cdef readonly int64_t max_time_step     # config.limits.max_time_step_ns
    cdef readonly object halted        # None, or the perpcore.errors.Halt that stopped it
    cdef bint busy                     # a submit is in progress (the one-writer guard)
    cdef public int64_t _next_order_id
    cdef public dict _handlers         # command type -> handler(cmd, events), order commands aside
    cdef public object triggers
    cdef public PricingCore _pricing   # perpcore.pricing.Pricing
    cdef public OrderEntry _entry      # the order commands' handler
    cdef public LiquidationCore liquidation
    cdef public MarginCore margin

    # _advance_to(): time moves to ts (if later); a first ts further from 0 than
    # config.limits.max_time_step_ns starts the clock, nothing due before it (Pricing.start)
    cdef advance(self, ts, list events)
    # submit() in parts, for a caller that works between them (perpcore._journal): with busy
    # set, refusal() is the halted state's or the boundary's rejection (None: go on), apply()
    # sequences and applies a command that passed it, halt() stops the engine over `error`
    cdef list concurrent(self, cmd)
    cdef list refusal(self, cmd)
    cdef list apply(self, cmd, seq)
    cdef list halt(self, int64_t seq, cmd, error)


cdef class OrderEntry:
    cdef ExchangeCore ex                     # the Exchange: seq, clock, _next_order_id, _advance_to
    cdef dict markets                  # symbol -> perpcore.exchange.Market
    cdef dict professional             # account -> professional (the Exchange's own dict)
    cdef MarginCore margin
    cdef object triggers

    cdef Market market_of(self, symbol)
    cdef bint known_account(self, account) except -1    # True: a professional investor's
    cdef void check_price_qty(self, Market market, int64_t price, int64_t qty) except *
    cpdef place(self, cmd, list events, order_id=*)
    cpdef cancel(self, cmd, list events)
    cpdef amend(self, cmd, list events)
    cdef Order* owned_order(self, Market market, account, order_id, client_id) except NULL
    cdef int64_t fill_events(self, Market market, OrderBook book, taker_side, int64_t taker_qty,
                             list events, taker_fee) except? -1
