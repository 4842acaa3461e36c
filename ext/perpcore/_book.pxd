# The contract of ext/perpcore/_book.pyx (the extension perpcore._book): one price-time-priority limit order book for one instrument.
#
# Units: prices are int64 ticks (> 0), quantities int64 lots (> 0). The book knows nothing of money,
# accounts' balances or instruments; it takes integers and reports what happened.
#
# Storage: orders are C structs in one growable pool with a free list; an open-addressing index maps
# order id -> slot and (account, client id) -> slot, storing only slots and comparing keys against the
# pool, so an order costs its struct plus a few bytes of index. Each side keeps its non-empty price
# levels in sorted chunks with the best price last: the best price is read and popped in O(1), a
# price is found by binary search over chunks of up to CHUNK_CAP levels, and inserting or removing a
# level moves at most one chunk's entries, however deep or wide the book.
#
# Semantics (perpcore.refbook.ReferenceBook implements the same in plain Python; tests compare them):
# - place(): a GTC limit rests what it cannot fill; IOC fills what it can and expires the rest; FOK
#   fills completely or is rejected before any fill (FOK_UNFILLABLE); POST_ONLY is rejected
#   (POST_ONLY_WOULD_TAKE) if it would take, else rests. A market order is an IOC whose price is its
#   protection price (worst acceptable), so it never sweeps without limit.
# - Self-trade prevention, by the taker's mode, when the taker meets a maker of the same account:
#   STP_NONE trades; STP_EXPIRE_TAKER expires the taker's remainder (the maker stays); STP_EXPIRE_MAKER
#   expires that maker (an EV_MAKER_EXPIRED record) and goes on matching; STP_EXPIRE_BOTH does both.
#   The FOK check counts only quantity that would really trade under the taker's STP mode.
# - amend(id, price, qty): qty is the new total (filled + open) and must exceed what has filled.
#   Same price and a smaller or equal total keeps time priority; a price change or a larger total
#   loses it: the order leaves the book and re-enters as a new arrival with the same id (a GTC may then
#   trade; a post-only that would take is rejected and left unchanged).
# - Records of one call (trades and STP expiries) are read with fills() / fill_count until the next
#   mutating call clears them; process_batch() keeps the records of the whole batch.

from libc.stdint cimport int8_t, int32_t, int64_t, uint8_t

cdef enum:
    SIDE_BUY = 0
    SIDE_SELL = 1

cdef enum:
    TIF_GTC = 0
    TIF_IOC = 1
    TIF_FOK = 2
    TIF_POST_ONLY = 3

cdef enum:
    STP_NONE = 0
    STP_EXPIRE_TAKER = 1
    STP_EXPIRE_MAKER = 2
    STP_EXPIRE_BOTH = 3

# Outcomes of place()/amend(): >= 0 accepted, < 0 rejected with no change to the book. cancel()
# returns the open quantity it withdrew (> 0) or ST_UNKNOWN_ORDER.
cdef enum:
    ST_RESTING = 0          # some or all of the order rests in the book
    ST_FILLED = 1           # filled completely
    ST_EXPIRED = 2          # IOC/market remainder expired (maybe after partial fills)
    ST_STP_EXPIRED = 3      # remainder expired by self-trade prevention
    ST_POST_ONLY_WOULD_TAKE = -1
    ST_FOK_UNFILLABLE = -2
    ST_DUPLICATE_ORDER_ID = -3
    ST_DUPLICATE_CLIENT_ID = -4
    ST_UNKNOWN_ORDER = -5
    ST_INVALID = -6         # non-positive price or qty, bad side/tif/stp, amend qty <= filled

# Kinds of fill record.
cdef enum:
    EV_TRADE = 0
    EV_MAKER_EXPIRED = 1    # qty is the maker's expired remainder, price its limit

# Batch ops.
cdef enum:
    OP_PLACE = 0
    OP_CANCEL = 1
    OP_AMEND = 2

cdef enum:
    NIL = -1                # empty slot / end of a list
    ST_ERROR = -100         # internal: an allocation failed and an exception is set

ctypedef struct Order:
    int64_t id
    int64_t client_id       # 0 = none
    int64_t account
    int64_t price
    int64_t qty             # open quantity
    int64_t filled          # filled so far
    int32_t prev            # FIFO neighbours within the price level
    int32_t next
    int32_t acc_prev        # circular list of the account's orders in this book, oldest first
    int32_t acc_next
    int32_t level           # slot of the level; also the free-list link while the slot is free
    uint8_t side
    uint8_t stp
    uint8_t post_only
    uint8_t live

ctypedef struct Level:
    int64_t price
    int64_t qty             # aggregate open quantity
    int32_t count
    int32_t head
    int32_t tail
    int32_t next_free

ctypedef struct Fill:
    int64_t kind
    int64_t maker_id
    int64_t taker_id
    int64_t maker_account
    int64_t taker_account
    int64_t price
    int64_t qty
    int64_t maker_remaining
    int64_t taker_remaining

# One command of a batch (matches perpcore._book.CMD_DTYPE, 56 bytes).
ctypedef struct BatchCmd:
    uint8_t op
    uint8_t side
    uint8_t tif
    uint8_t stp
    int32_t _pad
    int64_t order_id
    int64_t account
    int64_t price
    int64_t qty
    int64_t client_id
    int64_t _reserved

cdef enum:
    CHUNK_CAP = 128         # levels per chunk

# A side's levels sorted by key (the price for bids, minus the price for asks), so that the best level
# is always the last of the last chunk. Chunks are the leaves of a one-level B-tree: a binary search
# over first_keys finds the chunk, a binary search inside it the position, and an insert or removal
# moves at most one chunk's entries. A full chunk splits; a sparse one joins its neighbour.
ctypedef struct Chunk:
    int32_t n
    int32_t slots[CHUNK_CAP]
    int64_t keys[CHUNK_CAP]

ctypedef struct SideLevels:
    Chunk** chunks
    int64_t* first_keys     # each chunk's lowest key
    int32_t nchunks
    int32_t cap
    int64_t n               # levels on this side


cdef class OrderBook:
    cdef Order* orders
    cdef int32_t order_cap
    cdef int32_t order_free
    cdef int32_t n_orders
    cdef Level* levels
    cdef int32_t level_cap
    cdef int32_t level_free
    cdef SideLevels sides[2]
    cdef int32_t* id_index          # hash of order id -> order slot (NIL = empty)
    cdef int32_t* client_index      # hash of (account, client id) -> order slot
    cdef int32_t* account_index     # hash of account -> slot of its oldest order
    cdef int64_t index_mask
    cdef Fill* fills_buf
    cdef int64_t n_fills
    cdef int64_t fills_cap
    cdef readonly int64_t trade_count
    cdef readonly int64_t traded_qty

    cdef int _add_order_slots(self, int32_t new_cap) except -1 nogil
    cdef int _add_level_slots(self, int32_t new_cap) except -1 nogil
    cdef int _alloc_indexes(self, int32_t capacity) except -1 nogil
    cdef int _grow_orders(self) except -1 nogil
    cdef int64_t _probe(self, int32_t* table, int which, int64_t a, int64_t b) noexcept nogil
    cdef int32_t _find(self, int32_t* table, int which, int64_t a, int64_t b) noexcept nogil
    cdef void _index_put(self, int32_t* table, int which, int32_t slot) noexcept nogil
    cdef void _index_del(self, int32_t* table, int which, int64_t pos) noexcept nogil
    cdef int32_t _chunk_of(self, SideLevels* sl, int64_t key) noexcept nogil
    cdef int _insert_chunk(self, SideLevels* sl, int32_t at) except -1 nogil
    cdef void _drop_chunk(self, SideLevels* sl, int32_t at) noexcept nogil
    cdef int32_t _level_at(self, int side, int64_t price) except -2 nogil
    cdef void _remove_level(self, int side, int32_t lslot) noexcept nogil
    cdef int _rest(self, int64_t order_id, int64_t account, int side, int64_t price, int64_t qty,
                   int stp, bint post_only, int64_t client_id, int64_t filled) except -1 nogil
    cdef void _remove(self, int32_t slot) noexcept nogil
    cdef int _record(self, int64_t kind, Order* maker, int64_t taker_id, int64_t taker_account,
                     int64_t qty, int64_t maker_remaining, int64_t taker_remaining) except -1 nogil
    cdef int64_t _fillable(self, int side, int64_t price, int64_t qty, int64_t account,
                           int stp) noexcept nogil
    cdef int _match(self, int64_t taker_id, int64_t account, int side, int64_t price,
                    int64_t* qty, int stp) except -1 nogil
    # The status _place / _amend would return if it is a refusal (< 0), else 0; changes nothing.
    cdef int _precheck_place(self, int64_t order_id, int64_t account, int side, int64_t price,
                             int64_t qty, int tif, int stp, int64_t client_id) noexcept nogil
    cdef int _precheck_amend(self, int64_t order_id, int64_t price, int64_t qty) noexcept nogil
    cdef int _place(self, int64_t order_id, int64_t account, int side, int64_t price, int64_t qty,
                    int tif, int stp, int64_t client_id, int64_t filled) except ST_ERROR nogil
    # _place after _precheck_place accepted it, the book unchanged since: the work, no checks again
    cdef int _place_prechecked(self, int64_t order_id, int64_t account, int side, int64_t price,
                               int64_t qty, int tif, int stp, int64_t client_id,
                               int64_t filled) except ST_ERROR nogil
    cdef int64_t _cancel(self, int64_t order_id) noexcept nogil
    cdef int _amend(self, int64_t order_id, int64_t price, int64_t qty) except ST_ERROR nogil
    cdef tuple _order_tuple(self, int32_t slot)
    cdef Order* _order_of(self, int64_t order_id) noexcept nogil    # a resting order, or NULL
    # an order or an account about to be looked up: its cell in the index is asked for now (a
    # prefetch), so that the miss overlaps the work before the lookup
    cdef void _expect_order(self, int64_t order_id) noexcept nogil
    cdef void _expect_account(self, int64_t account) noexcept nogil
    cdef list _level_slots(self, int side, int64_t limit)
    cdef list _resting_slots(self)
    cdef int64_t _set_open(self, int64_t order_id, int64_t qty) noexcept nogil
