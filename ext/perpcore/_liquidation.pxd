# The contract of ext/perpcore/_liquidation.pyx (the extension perpcore._liquidation): stage 6 of a
# command up to the decision to liquidate, in C: the breach index, each account's reserve and terms,
# and the keying of its triggers (perpcore.liquidation, the base of its Liquidation class, which
# keeps the liquidation itself: orders, takeovers, ADL, deficits, loans).
#
# The Exchange runs stage 6 (perpcore._exchange ExchangeCore.liquidate). first_round(events)
# passes over a command none of whose events can concern stage 6 (WATCHED) without calling into
# Python, and otherwise reads its events once (read): each fill steps its account's reserve (the
# slack at the corner of its triggers, see perpcore.liquidation "The reserve") from the fill
# alone; an account whose step cannot show it sound, or that any other money movement touched,
# funding payers and fresh price moves go to the rounds, which are not run at all when a
# command's fills all stepped and its price moves reach no trigger. A round looks at its
# candidates in account order (_sound, then _examine, which keys an account again at once) and
# returns the accounts in breach; the Python layer plans their liquidation (liquidate), a
# generator of the orders and cancels it needs, which the Exchange runs through order entry like
# any other command (no call back up into an earlier stage). A funding settlement (the one way
# another layer changes the insurance fund) has the fund's change recorded (_record_external)
# first.
#
# Units as in perpcore.risk: prices in ticks, sizes in lots, money in minor units of the settlement
# asset. Reserves and terms are 128-bit integers: every figure of an account is bounded by the
# venue's money limit (2**62 a balance) and risk limits, far inside them; a product that could
# leave them (collateral of extreme amounts, the budget's share at extreme prices) is computed over
# Python integers instead, so every figure is exact.

cimport cython
from libc.stdint cimport int16_t, int32_t, int64_t, uint32_t

from perpcore._ledger cimport CashTable
from perpcore._margin cimport MarginCore, PosC, Step, int128_t

cpdef enum Direction:
    DOWN = 0            # fires when the price falls to the trigger or below (a long, collateral)
    UP = 1              # fires when the price rises to the trigger or above (a short)


cdef enum:
    MAX_SYMBOLS = 32    # instruments a venue may have (two price dimensions each)


cdef enum:
    FAN = 64            # keys a leaf of the trees holds, children an inner node has
    MAX_DEPTH = 16      # levels a tree may have (at least FAN / 2 children a level: ample)


ctypedef struct Key:
    int64_t price
    int64_t account


ctypedef struct Node:
    # a node of a (dimension, direction) tree, a B+ tree of (price, account) keys whose leaves are
    # chained in key order. A leaf holds n sorted keys; an inner node n children, keys[i] (i >= 1)
    # at most every key under child i and above every key under child i - 1
    int32_t n
    int32_t leaf
    uint32_t prev, next      # leaves: the neighbours, 0: none (free nodes: next)
    Key keys[FAN]
    uint32_t child[FAN]


ctypedef struct Entry:
    # one of an account's triggers, in the order they were set
    int64_t price            # ticks; ANY_DOWN / ANY_UP: fires on any update of the dimension
    int32_t dim
    int16_t direction


ctypedef struct Term:
    # a position's term of its account's reserve, with the corner prices it was taken at
    int128_t term
    int64_t below, above     # NO_PRICE: no trigger on that side


ctypedef struct Keyed:
    # an account's stage 6 state beside its triggers (a slot's payload, then one Term per symbol)
    int128_t reserve         # a lower bound of its slack at every price strictly inside them
    int64_t has_terms        # its reserve is its corner's slack: fills may step it
    int64_t term_mask        # bit k: symbol k's Term is kept


ctypedef struct Dim:
    # one exposure of an account: a price dimension, the adverse direction, the price now and an
    # upper bound of the slack lost per tick of adverse move
    int dim
    int direction
    bint priced
    int64_t price
    int128_t per_tick


@cython.final
cdef class BreachIndex:
    """Accounts by the prices at which a move could breach them, per price dimension."""
    cdef readonly int ndims              # price dimensions, numbered 0 .. ndims - 1
    cdef readonly int width              # triggers an account may have (one per dim, direction)
    cdef readonly Py_ssize_t slots       # accounts that have a slot (kept until clear())
    cdef readonly Py_ssize_t indexed     # accounts with triggers
    cdef Py_ssize_t payload              # bytes of the owner's state per slot (a Keyed and more)
    # an account's slot is its row in the register, whose records hold the index's area at
    # `offset`: the count of triggers and a mark that the slot is taken (int32 each, padded to
    # 16), the entries, then the payload
    cdef CashTable register
    cdef Py_ssize_t offset
    cdef bint own                        # the register is the index's own: it opens its rows
    cdef Node* nodes                     # node 0 unused (none)
    cdef uint32_t n_nodes, cap_nodes, free_nodes
    cdef int height                      # the trees' deepest path so far (their paths' room)
    cdef uint32_t* roots                 # [dim * 2 + direction]
    cdef int64_t* found                  # crossed()'s scratch
    cdef Py_ssize_t n_found, cap_found

    cdef int reset(self) except -1
    cdef int32_t* head(self, Py_ssize_t slot) noexcept nogil          # its count, its mark
    cdef Py_ssize_t find(self, int64_t account) noexcept nogil         # its slot, -1: none
    cdef Py_ssize_t slot(self, int64_t account) except -1              # made if new
    cdef Py_ssize_t take(self, Py_ssize_t row) noexcept nogil          # the row's slot, made if new
    cdef Py_ssize_t taken(self, Py_ssize_t row) noexcept nogil         # the row's slot, -1: none
    cdef int count(self, Py_ssize_t slot) noexcept nogil
    cdef Entry* entries(self, Py_ssize_t slot) noexcept nogil
    cdef void* state(self, Py_ssize_t slot) noexcept nogil             # the owner's payload
    cdef uint32_t node(self, bint leaf) except 0
    cdef int insert(self, uint32_t* root, int64_t price, int64_t account) except -1
    cdef int remove(self, uint32_t* root, int64_t price, int64_t account) except -1
    cdef uint32_t edge(self, uint32_t t, bint last) noexcept nogil    # its first or last leaf
    cdef int put(self, Py_ssize_t slot, Entry* new, int n, bint keep_earlier) except -1
    cdef int add(self, int64_t account) except -1                      # to found
    cdef int collect(self, int dim, int64_t price) except -1           # into found, unsorted
    cdef list sorted_found(self)
    cdef bint reaches_c(self, int dim, int64_t price) noexcept nogil
    cdef int dimension(self, dim) except -1


cdef class LiquidationCore:
    cdef readonly dict fund            # the insurance fund's balances (the ledger's bucket)
    cdef readonly dict _fund_seen      # the fund as the engine last recorded it
    cdef readonly dict socialized      # account -> bad debt left with it
    cdef public bint shortcuts         # False: every account a command touched is examined in full
    cdef public bint enabled           # False: stage 6 is off (a study of margin without it)
    cdef readonly BreachIndex index    # every keyed account, dimensions as _dim_name() names them
    cdef readonly MarginCore margin
    cdef readonly set _dirty           # accounts liquidated and not keyed since
    cdef readonly tuple symbols        # instrument symbols, by number k: mark dim k, index nsym + k
    cdef readonly dict number          # symbol -> k
    cdef int nsym, ncoll
    cdef list risks                    # perpcore._margin.SymbolRisk by k
    cdef list coll                     # perpcore.risk.CollateralPrice, by asset
    cdef tuple coll_assets             # their assets
    cdef int coll_k[MAX_SYMBOLS]       # the symbol number of each collateral's index
    cdef int128_t coll_num[MAX_SYMBOLS]
    cdef int128_t coll_keep[MAX_SYMBOLS]
    cdef int128_t coll_den[MAX_SYMBOLS]   # den x RATE_SCALE
    cdef int128_t short_rate[MAX_SYMBOLS]  # RATE_SCALE + the top maintenance rate
    cdef Keyed* scratch                # a Keyed and its Terms being made

    cdef Py_ssize_t step_at            # the next of margin.steps to read, this command
    # the rounds of a command's stage 6, which the Exchange runs (ExchangeCore.liquidate): the
    # first round's accounts in breach (None: the command's events concern no one), each later
    # round's from the events the last one added (from `start`), and the end of the stage
    cdef list first_round(self, list events)
    cdef list next_round(self, list events, Py_ssize_t start)
    cdef list breached(self, set touched, list moves, dict paid)
    cdef end_rounds(self)
    # the C half of scan() (not overridable, so a Python subclass costs no lookup)
    cdef bint read(self, list events, Py_ssize_t start, set touched, list moves,
                   dict paid) except -1
    cdef Step* next_step(self, int64_t account) noexcept
    cdef bint step(self, Step* fill) except -1
    cdef bint reached(self, list moves) except -1     # some move reaches a trigger
    cdef bint unpriced(self, int64_t account, int k) except -1   # a fill with nothing to look at

    # the Python layer plans a round's liquidations: a generator of the internal commands
    # (perpcore.messages.InternalCommand) they need, which the Exchange runs, sending each result
    cpdef liquidate(self, list breached, list events)
    # ... and records the fund's changes other layers made (a funding remainder) before the rounds
    cpdef _record_external(self, list events)
    # the rounds' looks at one account (overridable, as tests watch them)
    cpdef bint _sound(self, account) except -1
    cpdef bint _examine(self, account, bint keep_earlier=*) except -1
    cpdef list _uncovered(self, dict paid, set touched)

    # the keying, in C: `acc` is the account's slot in the margin layer (MarginCore.slots)
    cdef int128_t debt(self, Py_ssize_t acc) except? -1
    cdef bint price(self, int dim, int64_t* out) except -1
    cdef Keyed* keyed(self, Py_ssize_t slot) noexcept nogil
    cdef int corner(self, Py_ssize_t acc, Entry* entries, int n, Keyed* terms, int* missing,
                    int128_t* slack) except -1
    cdef bint key_position(self, Py_ssize_t acc, Py_ssize_t slot, int128_t rest, int k,
                           PosC* pos) except -1
    cdef int dims(self, Py_ssize_t acc, Dim* out) except -1
    cdef int figures(self, Py_ssize_t acc, int128_t* equity, int128_t* mm) except -1
    cdef int key(self, Py_ssize_t acc, int128_t equity, int128_t mm, int128_t slack, Dim* dims,
                 int n, bint keep_earlier) except -1
    cdef int triggers(self, Py_ssize_t acc, int128_t equity, int128_t mm, int128_t slack, Dim* dims,
                      int n, Entry* out) except -1
    cdef int128_t collateral(self, int j, amount, int64_t index, bint up) except? -1
