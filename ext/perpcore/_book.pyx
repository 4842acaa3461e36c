# The order book and matching engine. See perpcore._book.pxd for the data layout and the semantics.
from fractions import Fraction

from libc.stdint cimport int32_t, int64_t, uint8_t, uint64_t
from libc.stdlib cimport free, malloc, realloc
from libc.string cimport memmove, memset

cdef extern from *:
    void prefetch "__builtin_prefetch"(const void* address) noexcept nogil

# The batch entry point (process_batch, fills_array) takes and returns numpy arrays; numpy is
# imported on its first use, so an engine that never batches (Exchange, Store) runs without it.
_numpy = None


def _np():
    """numpy, imported once; CMD_DTYPE and FILL_DTYPE are defined with it."""
    global _numpy, CMD_DTYPE, FILL_DTYPE
    if _numpy is None:
        try:
            import numpy
        except ImportError as e:
            raise ImportError("the order book's batch entry point takes numpy arrays, and numpy "
                              "is not installed: pip install numpy") from e
        CMD_DTYPE = numpy.dtype([
            ("op", "u1"), ("side", "u1"), ("tif", "u1"), ("stp", "u1"), ("_pad", "i4"),
            ("order_id", "i8"), ("account", "i8"), ("price", "i8"), ("qty", "i8"),
            ("client_id", "i8"), ("_reserved", "i8"),
        ])
        FILL_DTYPE = numpy.dtype([
            ("kind", "i8"), ("maker_id", "i8"), ("taker_id", "i8"), ("maker_account", "i8"),
            ("taker_account", "i8"), ("price", "i8"), ("qty", "i8"), ("maker_remaining", "i8"),
            ("taker_remaining", "i8"),
        ])
        _numpy = numpy
    return _numpy


def __getattr__(name):
    # `from perpcore._book import CMD_DTYPE` imports numpy then (PEP 562)
    if name in ("CMD_DTYPE", "FILL_DTYPE"):
        _np()
        return globals()[name]
    raise AttributeError(f"module 'perpcore._book' has no attribute {name!r}")

# Python-visible names of the enums in _book.pxd.
BUY, SELL = SIDE_BUY, SIDE_SELL
GTC, IOC, FOK, POST_ONLY = TIF_GTC, TIF_IOC, TIF_FOK, TIF_POST_ONLY
STP_MODES = {"none": STP_NONE, "expire_taker": STP_EXPIRE_TAKER,
             "expire_maker": STP_EXPIRE_MAKER, "expire_both": STP_EXPIRE_BOTH}
RESTING, FILLED, EXPIRED, STP_EXPIRED = ST_RESTING, ST_FILLED, ST_EXPIRED, ST_STP_EXPIRED
POST_ONLY_WOULD_TAKE, FOK_UNFILLABLE, DUPLICATE_ORDER_ID, DUPLICATE_CLIENT_ID = (
    ST_POST_ONLY_WOULD_TAKE, ST_FOK_UNFILLABLE, ST_DUPLICATE_ORDER_ID, ST_DUPLICATE_CLIENT_ID)
UNKNOWN_ORDER, INVALID = ST_UNKNOWN_ORDER, ST_INVALID
TRADE, MAKER_EXPIRED = EV_TRADE, EV_MAKER_EXPIRED
PLACE, CANCEL, AMEND = OP_PLACE, OP_CANCEL, OP_AMEND
LEVELS_PER_CHUNK = CHUNK_CAP

# Which key an index compares: the order id, (account, client id), or the account.
cdef enum:
    BY_ID = 0
    BY_CLIENT = 1
    BY_ACCOUNT = 2


cdef inline uint64_t _mix(uint64_t x) noexcept nogil:
    # splitmix64 finalizer: sequential ids spread evenly over the table
    x ^= x >> 30
    x *= <uint64_t>0xbf58476d1ce4e5b9
    x ^= x >> 27
    x *= <uint64_t>0x94d049bb133111eb
    x ^= x >> 31
    return x


cdef inline uint64_t _hash_key(int which, int64_t a, int64_t b) noexcept nogil:
    if which == BY_CLIENT:
        return _mix(<uint64_t>a * <uint64_t>0x9e3779b97f4a7c15 ^ <uint64_t>b)
    return _mix(<uint64_t>a)


cdef inline uint64_t _hash_order(int which, Order* o) noexcept nogil:
    if which == BY_ID:
        return _hash_key(BY_ID, o.id, 0)
    if which == BY_CLIENT:
        return _hash_key(BY_CLIENT, o.account, o.client_id)
    return _hash_key(BY_ACCOUNT, o.account, 0)


cdef inline bint _matches(int which, Order* o, int64_t a, int64_t b) noexcept nogil:
    if which == BY_ID:
        return o.id == a
    if which == BY_CLIENT:
        return o.account == a and o.client_id == b
    return o.account == a


cdef inline int64_t _key(int side, int64_t price) noexcept nogil:
    # levels sort ascending by key with the best last: bids by price, asks by -price
    return price if side == SIDE_BUY else -price


cdef inline bint _crosses(int taker_side, int64_t limit, int64_t level_price) noexcept nogil:
    if taker_side == SIDE_BUY:
        return level_price <= limit
    return level_price >= limit


cdef inline int32_t _lower_bound(Chunk* ch, int64_t key) noexcept nogil:
    """First position in the chunk whose key is >= key."""
    cdef int32_t lo = 0, hi = ch.n, mid
    while lo < hi:
        mid = (lo + hi) >> 1
        if ch.keys[mid] < key:
            lo = mid + 1
        else:
            hi = mid
    return lo


cdef inline int32_t _best_slot(SideLevels* sl) noexcept nogil:
    cdef Chunk* ch = sl.chunks[sl.nchunks - 1]
    return ch.slots[ch.n - 1]


cdef inline bint _next_worse(SideLevels* sl, int32_t* c, int32_t* j) noexcept nogil:
    """Steps a (chunk, position) cursor one level away from the best; False past the worst.
    Start it at c = nchunks - 1, j = that chunk's n."""
    if j[0] > 0:
        j[0] -= 1
        return True
    c[0] -= 1
    if c[0] < 0:
        return False
    j[0] = sl.chunks[c[0]].n - 1
    return True


cdef inline _check_side(int side):
    if side != SIDE_BUY and side != SIDE_SELL:
        raise ValueError(f"side must be BUY (0) or SELL (1), not {side}")


cdef void* _grow(void* ptr, int64_t count, size_t size) noexcept nogil:
    return realloc(ptr, <size_t>count * size)


# The refusals of place() and amend(), apart from the work, so that a caller can learn them before
# anything else moves (perpcore._exchange checks them before the exchange clock advances).

cdef inline int _place_refusal(OrderBook book, int64_t order_id, int64_t account, int side,
                               int64_t price, int64_t qty, int tif, int stp,
                               int64_t client_id) noexcept nogil:
    cdef SideLevels* opp
    if qty <= 0 or price <= 0 or side < 0 or side > 1 or tif < 0 or tif > 3 or stp < 0 or stp > 3:
        return ST_INVALID
    if book._find(book.id_index, BY_ID, order_id, 0) != NIL:
        return ST_DUPLICATE_ORDER_ID
    if client_id != 0 and book._find(book.client_index, BY_CLIENT, account, client_id) != NIL:
        return ST_DUPLICATE_CLIENT_ID
    if tif == TIF_POST_ONLY:
        opp = &book.sides[1 - side]
        if opp.n > 0 and _crosses(side, price, book.levels[_best_slot(opp)].price):
            return ST_POST_ONLY_WOULD_TAKE
    elif tif == TIF_FOK:
        if book._fillable(side, price, qty, account, stp) < qty:
            return ST_FOK_UNFILLABLE
    return 0


cdef inline int _amend_refusal(OrderBook book, int32_t slot, int64_t price,
                               int64_t qty) noexcept nogil:
    cdef Order* o
    cdef SideLevels* opp
    if slot == NIL:
        return ST_UNKNOWN_ORDER
    o = &book.orders[slot]
    if price <= 0 or qty <= o.filled:
        return ST_INVALID
    if price == o.price and qty <= o.filled + o.qty:
        return 0        # it keeps its priority: nothing to refuse
    if o.post_only:
        opp = &book.sides[1 - o.side]
        if opp.n > 0 and _crosses(o.side, price, book.levels[_best_slot(opp)].price):
            return ST_POST_ONLY_WOULD_TAKE
    return 0


cdef class OrderBook:
    """A price-time priority order book for one instrument (int64 ticks and lots)."""

    def __cinit__(self, int32_t capacity=1024):
        cdef int s
        capacity = max(capacity, 16)
        self.orders = <Order*>malloc(capacity * sizeof(Order))
        self.levels = <Level*>malloc(256 * sizeof(Level))
        self.fills_buf = <Fill*>malloc(256 * sizeof(Fill))
        if self.orders == NULL or self.levels == NULL or self.fills_buf == NULL:
            raise MemoryError()
        self.order_cap = 0
        self.order_free = NIL
        self._add_order_slots(capacity)
        self.level_cap = 0
        self.level_free = NIL
        self._add_level_slots(256)
        self.fills_cap = 256
        for s in range(2):
            self.sides[s].chunks = <Chunk**>malloc(16 * sizeof(Chunk*))
            self.sides[s].first_keys = <int64_t*>malloc(16 * sizeof(int64_t))
            if self.sides[s].chunks == NULL or self.sides[s].first_keys == NULL:
                raise MemoryError()
            self.sides[s].nchunks = 0
            self.sides[s].cap = 16
            self.sides[s].n = 0
        self._alloc_indexes(capacity)

    def __dealloc__(self):
        free(self.orders)
        free(self.levels)
        free(self.fills_buf)
        free(self.id_index)
        free(self.client_index)
        free(self.account_index)
        for s in range(2):
            for c in range(self.sides[s].nchunks):
                free(self.sides[s].chunks[c])
            free(self.sides[s].chunks)
            free(self.sides[s].first_keys)

    # ---- storage -------------------------------------------------------------------------------

    cdef int _add_order_slots(self, int32_t new_cap) except -1 nogil:
        cdef Order* grown = <Order*>_grow(self.orders, new_cap, sizeof(Order))
        cdef int32_t i
        if grown == NULL:
            with gil:
                raise MemoryError()
        self.orders = grown
        # new slots go on the free list lowest first, so slot use is deterministic
        for i in range(new_cap - 1, self.order_cap - 1, -1):
            self.orders[i].live = 0
            self.orders[i].level = self.order_free
            self.order_free = i
        self.order_cap = new_cap
        return 0

    cdef int _add_level_slots(self, int32_t new_cap) except -1 nogil:
        cdef Level* grown = <Level*>_grow(self.levels, new_cap, sizeof(Level))
        cdef int32_t i
        if grown == NULL:
            with gil:
                raise MemoryError()
        self.levels = grown
        for i in range(new_cap - 1, self.level_cap - 1, -1):
            self.levels[i].next_free = self.level_free
            self.level_free = i
        self.level_cap = new_cap
        return 0

    cdef int _alloc_indexes(self, int32_t capacity) except -1 nogil:
        """Fresh empty indexes for a pool of that capacity (at most half full)."""
        cdef int64_t size = 16
        while size < 2 * <int64_t>capacity:
            size <<= 1
        self.id_index = <int32_t*>malloc(size * sizeof(int32_t))
        self.client_index = <int32_t*>malloc(size * sizeof(int32_t))
        self.account_index = <int32_t*>malloc(size * sizeof(int32_t))
        if self.id_index == NULL or self.client_index == NULL or self.account_index == NULL:
            with gil:
                raise MemoryError()
        # NIL is -1: every byte 0xff
        memset(self.id_index, 0xff, size * sizeof(int32_t))
        memset(self.client_index, 0xff, size * sizeof(int32_t))
        memset(self.account_index, 0xff, size * sizeof(int32_t))
        self.index_mask = size - 1
        return 0

    cdef int _grow_orders(self) except -1 nogil:
        """Doubles the order pool and rehashes the indexes into tables twice the size."""
        cdef int32_t* old_accounts = self.account_index
        cdef int64_t old_size = self.index_mask + 1
        cdef int64_t i
        cdef Order* o
        free(self.id_index)
        free(self.client_index)
        self._add_order_slots(self.order_cap * 2)
        self._alloc_indexes(self.order_cap)
        for i in range(self.order_cap):
            o = &self.orders[i]
            if o.live:
                self._index_put(self.id_index, BY_ID, <int32_t>i)
                if o.client_id != 0:
                    self._index_put(self.client_index, BY_CLIENT, <int32_t>i)
        # slots survive the realloc, so each account keeps the head (oldest order) it had
        for i in range(old_size):
            if old_accounts[i] != NIL:
                self._index_put(self.account_index, BY_ACCOUNT, old_accounts[i])
        free(old_accounts)
        return 0

    # ---- indexes: open addressing, linear probing, slots only --------------------------------

    cdef int64_t _probe(self, int32_t* table, int which, int64_t a, int64_t b) noexcept nogil:
        """Position of the key in the table, or of the empty bucket where it would go."""
        cdef int64_t pos = <int64_t>(_hash_key(which, a, b) & <uint64_t>self.index_mask)
        cdef int32_t slot
        while True:
            slot = table[pos]
            if slot == NIL or _matches(which, &self.orders[slot], a, b):
                return pos
            pos = (pos + 1) & self.index_mask

    cdef int32_t _find(self, int32_t* table, int which, int64_t a, int64_t b) noexcept nogil:
        return table[self._probe(table, which, a, b)]

    cdef void _index_put(self, int32_t* table, int which, int32_t slot) noexcept nogil:
        cdef Order* o = &self.orders[slot]
        cdef int64_t pos
        if which == BY_ID:
            pos = self._probe(table, which, o.id, 0)
        elif which == BY_CLIENT:
            pos = self._probe(table, which, o.account, o.client_id)
        else:
            pos = self._probe(table, which, o.account, 0)
        table[pos] = slot

    cdef void _index_del(self, int32_t* table, int which, int64_t pos) noexcept nogil:
        """Backward-shift deletion: keeps every probe chain unbroken without tombstones."""
        cdef int64_t i = pos, j = pos, k
        table[i] = NIL
        while True:
            j = (j + 1) & self.index_mask
            if table[j] == NIL:
                return
            k = <int64_t>(_hash_order(which, &self.orders[table[j]]) & <uint64_t>self.index_mask)
            if (i <= j and i < k <= j) or (i > j and (i < k or k <= j)):
                continue
            table[i] = table[j]
            table[j] = NIL
            i = j

    # ---- price levels ------------------------------------------------------------------------

    cdef int32_t _chunk_of(self, SideLevels* sl, int64_t key) noexcept nogil:
        """The chunk a key belongs in: the last whose first key is <= key (else the first)."""
        cdef int32_t lo = 0, hi = sl.nchunks, mid
        while lo < hi:
            mid = (lo + hi) >> 1
            if sl.first_keys[mid] <= key:
                lo = mid + 1
            else:
                hi = mid
        return lo - 1 if lo > 0 else 0

    cdef int _insert_chunk(self, SideLevels* sl, int32_t at) except -1 nogil:
        """A new empty chunk at position `at` of the chunk list."""
        cdef Chunk* ch = <Chunk*>malloc(sizeof(Chunk))
        if ch == NULL:
            with gil:
                raise MemoryError()
        if sl.nchunks == sl.cap:
            sl.chunks = <Chunk**>_grow(sl.chunks, sl.cap * 2, sizeof(Chunk*))
            sl.first_keys = <int64_t*>_grow(sl.first_keys, sl.cap * 2, sizeof(int64_t))
            if sl.chunks == NULL or sl.first_keys == NULL:
                with gil:
                    raise MemoryError()
            sl.cap *= 2
        memmove(&sl.chunks[at + 1], &sl.chunks[at], (sl.nchunks - at) * sizeof(Chunk*))
        memmove(&sl.first_keys[at + 1], &sl.first_keys[at], (sl.nchunks - at) * sizeof(int64_t))
        ch.n = 0
        sl.chunks[at] = ch
        sl.nchunks += 1
        return 0

    cdef void _drop_chunk(self, SideLevels* sl, int32_t at) noexcept nogil:
        free(sl.chunks[at])
        memmove(&sl.chunks[at], &sl.chunks[at + 1], (sl.nchunks - at - 1) * sizeof(Chunk*))
        memmove(&sl.first_keys[at], &sl.first_keys[at + 1], (sl.nchunks - at - 1) * sizeof(int64_t))
        sl.nchunks -= 1

    cdef int32_t _level_at(self, int side, int64_t price) except -2 nogil:
        """The level slot for a price on a side, created if absent."""
        cdef SideLevels* sl = &self.sides[side]
        cdef int64_t key = _key(side, price)
        cdef int32_t c, j, lslot, half = CHUNK_CAP // 2
        cdef Chunk* ch
        cdef Chunk* upper
        cdef Level* lv
        if sl.nchunks == 0:
            self._insert_chunk(sl, 0)
            c = 0
            j = 0
        else:
            c = sl.nchunks - 1
            ch = sl.chunks[c]
            if ch.keys[ch.n - 1] == key:
                return ch.slots[ch.n - 1]
            if ch.keys[ch.n - 1] < key:
                j = ch.n                    # a new best: append
            else:
                c = self._chunk_of(sl, key)
                ch = sl.chunks[c]
                j = _lower_bound(ch, key)
                if j < ch.n and ch.keys[j] == key:
                    return ch.slots[j]
            if ch.n == CHUNK_CAP:
                if j == CHUNK_CAP and c == sl.nchunks - 1:
                    # a run of new bests fills fresh chunks instead of leaving half-empty ones
                    self._insert_chunk(sl, c + 1)
                    c += 1
                    j = 0
                else:
                    self._insert_chunk(sl, c + 1)
                    upper = sl.chunks[c + 1]
                    memmove(upper.keys, &ch.keys[half], half * sizeof(int64_t))
                    memmove(upper.slots, &ch.slots[half], half * sizeof(int32_t))
                    upper.n = half
                    ch.n = half
                    sl.first_keys[c + 1] = upper.keys[0]
                    if j > half:
                        c += 1
                        j -= half
        if self.level_free == NIL:
            self._add_level_slots(self.level_cap * 2)
        lslot = self.level_free
        lv = &self.levels[lslot]
        self.level_free = lv.next_free
        lv.price = price
        lv.qty = 0
        lv.count = 0
        lv.head = NIL
        lv.tail = NIL
        ch = sl.chunks[c]
        memmove(&ch.keys[j + 1], &ch.keys[j], (ch.n - j) * sizeof(int64_t))
        memmove(&ch.slots[j + 1], &ch.slots[j], (ch.n - j) * sizeof(int32_t))
        ch.keys[j] = key
        ch.slots[j] = lslot
        ch.n += 1
        if j == 0:
            sl.first_keys[c] = key
        sl.n += 1
        return lslot

    cdef void _remove_level(self, int side, int32_t lslot) noexcept nogil:
        cdef SideLevels* sl = &self.sides[side]
        cdef int32_t c = sl.nchunks - 1, j
        cdef Chunk* ch = sl.chunks[c]
        cdef Chunk* right
        cdef int64_t key
        if ch.slots[ch.n - 1] == lslot:
            j = ch.n - 1                    # the best level: the common case
        else:
            key = _key(side, self.levels[lslot].price)
            c = self._chunk_of(sl, key)
            ch = sl.chunks[c]
            j = _lower_bound(ch, key)
        memmove(&ch.keys[j], &ch.keys[j + 1], (ch.n - j - 1) * sizeof(int64_t))
        memmove(&ch.slots[j], &ch.slots[j + 1], (ch.n - j - 1) * sizeof(int32_t))
        ch.n -= 1
        sl.n -= 1
        self.levels[lslot].next_free = self.level_free
        self.level_free = lslot
        if ch.n == 0:
            self._drop_chunk(sl, c)
            return
        sl.first_keys[c] = ch.keys[0]
        if ch.n < CHUNK_CAP // 4 and sl.nchunks > 1:
            # a sparse chunk joins a neighbour, so chunks stay at least a quarter full on average
            if c == sl.nchunks - 1:
                c -= 1
            ch = sl.chunks[c]
            right = sl.chunks[c + 1]
            if ch.n + right.n <= CHUNK_CAP * 3 // 4:
                memmove(&ch.keys[ch.n], right.keys, right.n * sizeof(int64_t))
                memmove(&ch.slots[ch.n], right.slots, right.n * sizeof(int32_t))
                ch.n += right.n
                self._drop_chunk(sl, c + 1)

    # ---- orders ------------------------------------------------------------------------------

    cdef int _rest(self, int64_t order_id, int64_t account, int side, int64_t price, int64_t qty,
                   int stp, bint post_only, int64_t client_id, int64_t filled) except -1 nogil:
        cdef int32_t slot, lslot, head
        cdef int64_t pos
        cdef Order* o
        cdef Level* lv
        if self.order_free == NIL:
            self._grow_orders()
        lslot = self._level_at(side, price)
        slot = self.order_free
        o = &self.orders[slot]
        self.order_free = o.level
        o.id = order_id
        o.client_id = client_id
        o.account = account
        o.price = price
        o.qty = qty
        o.filled = filled
        o.side = side
        o.stp = stp
        o.post_only = post_only
        o.live = 1
        o.level = lslot
        lv = &self.levels[lslot]
        o.prev = lv.tail
        o.next = NIL
        if lv.tail != NIL:
            self.orders[lv.tail].next = slot
        else:
            lv.head = slot
        lv.tail = slot
        lv.qty += qty
        lv.count += 1
        self._index_put(self.id_index, BY_ID, slot)
        if client_id != 0:
            self._index_put(self.client_index, BY_CLIENT, slot)
        pos = self._probe(self.account_index, BY_ACCOUNT, account, 0)
        head = self.account_index[pos]
        if head == NIL:
            o.acc_prev = slot
            o.acc_next = slot
            self.account_index[pos] = slot
        else:
            # append before the head of the circular list: the newest order
            o.acc_next = head
            o.acc_prev = self.orders[head].acc_prev
            self.orders[o.acc_prev].acc_next = slot
            self.orders[head].acc_prev = slot
        self.n_orders += 1
        return 0

    cdef void _remove(self, int32_t slot) noexcept nogil:
        """Takes a resting order out of its level, the indexes and its account's list."""
        cdef Order* o = &self.orders[slot]
        cdef Level* lv = &self.levels[o.level]
        cdef int64_t pos
        if o.prev != NIL:
            self.orders[o.prev].next = o.next
        else:
            lv.head = o.next
        if o.next != NIL:
            self.orders[o.next].prev = o.prev
        else:
            lv.tail = o.prev
        lv.qty -= o.qty
        lv.count -= 1
        if lv.count == 0:
            self._remove_level(o.side, o.level)
        self._index_del(self.id_index, BY_ID, self._probe(self.id_index, BY_ID, o.id, 0))
        if o.client_id != 0:
            self._index_del(self.client_index, BY_CLIENT,
                            self._probe(self.client_index, BY_CLIENT, o.account, o.client_id))
        pos = self._probe(self.account_index, BY_ACCOUNT, o.account, 0)
        if o.acc_next == slot:
            self._index_del(self.account_index, BY_ACCOUNT, pos)
        else:
            self.orders[o.acc_prev].acc_next = o.acc_next
            self.orders[o.acc_next].acc_prev = o.acc_prev
            if self.account_index[pos] == slot:
                self.account_index[pos] = o.acc_next
        o.live = 0
        o.level = self.order_free
        self.order_free = slot
        self.n_orders -= 1

    cdef int _record(self, int64_t kind, Order* maker, int64_t taker_id, int64_t taker_account,
                     int64_t qty, int64_t maker_remaining, int64_t taker_remaining) except -1 nogil:
        cdef Fill* f
        if self.n_fills == self.fills_cap:
            f = <Fill*>_grow(self.fills_buf, self.fills_cap * 2, sizeof(Fill))
            if f == NULL:
                with gil:
                    raise MemoryError()
            self.fills_buf = f
            self.fills_cap *= 2
        f = &self.fills_buf[self.n_fills]
        self.n_fills += 1
        f.kind = kind
        f.maker_id = maker.id
        f.taker_id = taker_id
        f.maker_account = maker.account
        f.taker_account = taker_account
        f.price = maker.price
        f.qty = qty
        f.maker_remaining = maker_remaining
        f.taker_remaining = taker_remaining
        return 0

    # ---- matching ----------------------------------------------------------------------------

    cdef int64_t _fillable(self, int side, int64_t price, int64_t qty, int64_t account,
                           int stp) noexcept nogil:
        """Quantity a taker could really trade up to qty (for the FOK check)."""
        cdef SideLevels* opp = &self.sides[1 - side]
        cdef int64_t total = 0
        cdef int32_t s, c = opp.nchunks - 1, j = opp.chunks[c].n if c >= 0 else 0
        cdef Level* lv
        cdef Order* o
        while total < qty and _next_worse(opp, &c, &j):
            lv = &self.levels[opp.chunks[c].slots[j]]
            if not _crosses(side, price, lv.price):
                break
            if stp == STP_NONE:
                total += lv.qty
            else:
                s = lv.head
                while s != NIL and total < qty:
                    o = &self.orders[s]
                    if o.account == account:
                        if stp != STP_EXPIRE_MAKER:
                            return total
                    else:
                        total += o.qty
                    s = o.next
        return total

    cdef int _match(self, int64_t taker_id, int64_t account, int side, int64_t price,
                    int64_t* qty, int stp) except -1 nogil:
        """Trades the taker against the opposite side; 1 if STP expired the taker, else 0."""
        cdef SideLevels* opp = &self.sides[1 - side]
        cdef int32_t lslot, s
        cdef Level* lv
        cdef Order* o
        cdef int64_t t
        while qty[0] > 0 and opp.n > 0:
            lslot = _best_slot(opp)
            lv = &self.levels[lslot]
            if not _crosses(side, price, lv.price):
                return 0
            s = lv.head
            o = &self.orders[s]
            if o.account == account and stp != STP_NONE:
                if stp == STP_EXPIRE_TAKER:
                    return 1
                self._record(EV_MAKER_EXPIRED, o, taker_id, account, o.qty, 0, qty[0])
                self._remove(s)
                if stp == STP_EXPIRE_BOTH:
                    return 1
                continue
            t = o.qty if o.qty < qty[0] else qty[0]
            o.qty -= t
            o.filled += t
            lv.qty -= t
            qty[0] -= t
            self.trade_count += 1
            self.traded_qty += t
            self._record(EV_TRADE, o, taker_id, account, t, o.qty, qty[0])
            if o.qty == 0:
                self._remove(s)
        return 0

    cdef int _precheck_place(self, int64_t order_id, int64_t account, int side, int64_t price,
                             int64_t qty, int tif, int stp, int64_t client_id) noexcept nogil:
        return _place_refusal(self, order_id, account, side, price, qty, tif, stp, client_id)

    cdef int _place(self, int64_t order_id, int64_t account, int side, int64_t price, int64_t qty,
                    int tif, int stp, int64_t client_id, int64_t filled) except ST_ERROR nogil:
        cdef int status = _place_refusal(self, order_id, account, side, price, qty, tif, stp,
                                         client_id)
        if status < 0:
            return status
        return self._place_prechecked(order_id, account, side, price, qty, tif, stp, client_id,
                                      filled)

    cdef int _place_prechecked(self, int64_t order_id, int64_t account, int side, int64_t price,
                               int64_t qty, int tif, int stp, int64_t client_id,
                               int64_t filled) except ST_ERROR nogil:
        cdef int64_t remaining = qty
        if self._match(order_id, account, side, price, &remaining, stp):
            return ST_STP_EXPIRED
        if remaining == 0:
            return ST_FILLED
        if tif == TIF_IOC or tif == TIF_FOK:
            return ST_EXPIRED
        self._rest(order_id, account, side, price, remaining, stp, tif == TIF_POST_ONLY, client_id,
                   filled + qty - remaining)
        return ST_RESTING

    cdef int64_t _cancel(self, int64_t order_id) noexcept nogil:
        cdef int32_t slot = self._find(self.id_index, BY_ID, order_id, 0)
        cdef int64_t open_qty
        if slot == NIL:
            return ST_UNKNOWN_ORDER
        open_qty = self.orders[slot].qty
        self._remove(slot)
        return open_qty

    cdef int _precheck_amend(self, int64_t order_id, int64_t price, int64_t qty) noexcept nogil:
        return _amend_refusal(self, self._find(self.id_index, BY_ID, order_id, 0), price, qty)

    cdef int _amend(self, int64_t order_id, int64_t price, int64_t qty) except ST_ERROR nogil:
        cdef int32_t slot = self._find(self.id_index, BY_ID, order_id, 0)
        cdef Order* o
        cdef Order saved
        cdef int64_t cut
        cdef int status = _amend_refusal(self, slot, price, qty)
        if status < 0:
            return status
        o = &self.orders[slot]
        if price == o.price and qty <= o.filled + o.qty:
            cut = o.filled + o.qty - qty
            o.qty -= cut
            self.levels[o.level].qty -= cut
            return ST_RESTING
        saved = o[0]
        self._remove(slot)
        # _amend_refusal checked the new price as _place would (its ids are its own, now free)
        return self._place_prechecked(saved.id, saved.account, saved.side, price,
                                      qty - saved.filled,
                                      TIF_POST_ONLY if saved.post_only else TIF_GTC, saved.stp,
                                      saved.client_id, saved.filled)

    cdef int64_t _set_open(self, int64_t order_id, int64_t qty) noexcept nogil:
        """Sets a resting order's open quantity to qty (> 0) where it rests, keeping its place in
        the queue even when it grows (an amend up loses it): for a book of one order per level,
        a depth feed's (perpcore._binance), where that place means nothing. Returns the open
        quantity it had, or ST_UNKNOWN_ORDER."""
        cdef int32_t slot = self._find(self.id_index, BY_ID, order_id, 0)
        cdef Order* o
        cdef int64_t had
        if slot == NIL:
            return ST_UNKNOWN_ORDER
        o = &self.orders[slot]
        had = o.qty
        o.qty = qty
        self.levels[o.level].qty += qty - had
        return had

    # ---- Python API --------------------------------------------------------------------------

    def place(self, int64_t order_id, int64_t account, int side, int64_t price, int64_t qty,
              int tif=TIF_GTC, int stp=STP_NONE, int64_t client_id=0):
        """Enters an order; returns an ST_* status. Its trades are then in fills()."""
        self.n_fills = 0
        return self._place(order_id, account, side, price, qty, tif, stp, client_id, 0)

    def cancel(self, int64_t order_id):
        """Cancels a resting order; returns its open quantity, or UNKNOWN_ORDER."""
        self.n_fills = 0
        return self._cancel(order_id)

    def amend(self, int64_t order_id, int64_t price, int64_t qty):
        """Changes price and/or total quantity; returns an ST_* status (trades in fills())."""
        self.n_fills = 0
        return self._amend(order_id, price, qty)

    def cancel_account(self, int64_t account):
        """Cancels every resting order of an account; returns [(order_id, side, price, open_qty)],
        oldest first."""
        cdef list out = []
        cdef int32_t slot
        self.n_fills = 0
        while True:
            slot = self._find(self.account_index, BY_ACCOUNT, account, 0)
            if slot == NIL:
                return out
            out.append((self.orders[slot].id, self.orders[slot].side, self.orders[slot].price,
                        self.orders[slot].qty))
            self._remove(slot)

    def find_client(self, int64_t account, int64_t client_id):
        """The id of the account's resting order with that client id, or None."""
        if client_id == 0:
            return None
        cdef int32_t slot = self._find(self.client_index, BY_CLIENT, account, client_id)
        return None if slot == NIL else self.orders[slot].id

    cdef void _expect_order(self, int64_t order_id) noexcept nogil:
        prefetch(&self.id_index[_hash_key(BY_ID, order_id, 0) & <uint64_t>self.index_mask])

    cdef void _expect_account(self, int64_t account) noexcept nogil:
        prefetch(&self.account_index[_hash_key(BY_ACCOUNT, account, 0)
                                     & <uint64_t>self.index_mask])

    cdef Order* _order_of(self, int64_t order_id) noexcept nogil:
        cdef int32_t slot = self._find(self.id_index, BY_ID, order_id, 0)
        return NULL if slot == NIL else &self.orders[slot]

    def order(self, int64_t order_id):
        """(order_id, account, side, price, open_qty, filled, client_id, post_only) or None."""
        cdef int32_t slot = self._find(self.id_index, BY_ID, order_id, 0)
        if slot == NIL:
            return None
        return self._order_tuple(slot)

    cdef tuple _order_tuple(self, int32_t slot):
        cdef Order* o = &self.orders[slot]
        return (o.id, o.account, o.side, o.price, o.qty, o.filled, o.client_id, bool(o.post_only))

    def best_bid(self):
        cdef SideLevels* sl = &self.sides[SIDE_BUY]
        return self.levels[_best_slot(sl)].price if sl.n else None

    def best_ask(self):
        cdef SideLevels* sl = &self.sides[SIDE_SELL]
        return self.levels[_best_slot(sl)].price if sl.n else None

    def depth(self, int n=10):
        """Aggregated levels, best first: ([(price, qty, count)] bids, [...] asks)."""
        cdef list out = [[], []]
        cdef int side
        cdef Level* lv
        for side in range(2):
            for lslot in self._level_slots(side, n):
                lv = &self.levels[<int32_t>lslot]
                out[side].append((lv.price, lv.qty, lv.count))
        return out[0], out[1]

    cdef list _level_slots(self, int side, int64_t limit):
        """Slots of up to `limit` levels of a side, best first."""
        cdef SideLevels* sl = &self.sides[side]
        cdef int32_t c = sl.nchunks - 1, j = sl.chunks[c].n if c >= 0 else 0
        cdef list out = []
        while len(out) < limit and _next_worse(sl, &c, &j):
            out.append(sl.chunks[c].slots[j])
        return out

    def level_count(self, int side):
        _check_side(side)
        return self.sides[side].n

    def impact(self, int taker_side, notional):
        """Average price (a Fraction, in ticks) at which a taker on taker_side would fill a
        notional given in tick x lot units; None if the book cannot absorb it."""
        _check_side(taker_side)
        cdef SideLevels* opp = &self.sides[1 - taker_side]
        cdef int32_t c = opp.nchunks - 1, j = opp.chunks[c].n if c >= 0 else 0
        cdef Level* lv
        qty_done = 0
        need = notional
        if need <= 0:
            return None
        while _next_worse(opp, &c, &j):
            lv = &self.levels[opp.chunks[c].slots[j]]
            level_cost = <object>lv.price * <object>lv.qty      # Python ints: no overflow
            if level_cost >= need:
                # the last level is taken in part: a fractional quantity need / price
                return Fraction(notional) / (qty_done + Fraction(need, lv.price))
            need -= level_cost
            qty_done += lv.qty
        return None

    @property
    def fill_count(self):
        return self.n_fills

    def fills(self):
        """The records of the last call: (kind, maker_id, taker_id, maker_account, taker_account,
        price, qty, maker_remaining, taker_remaining)."""
        cdef int64_t i
        cdef Fill* f
        out = []
        for i in range(self.n_fills):
            f = &self.fills_buf[i]
            out.append((f.kind, f.maker_id, f.taker_id, f.maker_account, f.taker_account,
                        f.price, f.qty, f.maker_remaining, f.taker_remaining))
        return out

    def fills_array(self):
        """The records of the last call as a numpy array of FILL_DTYPE (a copy)."""
        np = _np()
        out = np.empty(self.n_fills, dtype=FILL_DTYPE)
        cdef int64_t[:, ::1] view = out.view(np.int64).reshape(self.n_fills, 9)
        cdef int64_t i
        for i in range(self.n_fills):
            view[i, 0] = self.fills_buf[i].kind
            view[i, 1] = self.fills_buf[i].maker_id
            view[i, 2] = self.fills_buf[i].taker_id
            view[i, 3] = self.fills_buf[i].maker_account
            view[i, 4] = self.fills_buf[i].taker_account
            view[i, 5] = self.fills_buf[i].price
            view[i, 6] = self.fills_buf[i].qty
            view[i, 7] = self.fills_buf[i].maker_remaining
            view[i, 8] = self.fills_buf[i].taker_remaining
        return out

    def process_batch(self, cmds, bint keep_fills=True):
        """Runs an array of CMD_DTYPE commands in one call, without the GIL.

        Returns an int64 array: per command its ST_* status (for a cancel, the open quantity it
        cancelled or UNKNOWN_ORDER). With keep_fills the records of the whole batch stay readable in
        fills(); without, each command's records are dropped when the next one starts, so memory
        stays constant and only the last command's records remain."""
        np = _np()
        if cmds.dtype != CMD_DTYPE:
            raise TypeError("cmds must be a numpy array of CMD_DTYPE")
        cmds = np.ascontiguousarray(cmds)
        cdef int64_t n = len(cmds)
        out = np.empty(n, dtype=np.int64)
        cdef int64_t[::1] status = out
        cdef const uint8_t[::1] raw = cmds.view(np.uint8).reshape(-1)
        cdef const BatchCmd* c
        cdef int64_t i
        self.n_fills = 0
        if n == 0:
            return out
        c = <const BatchCmd*>&raw[0]
        with nogil:
            for i in range(n):
                if not keep_fills:
                    self.n_fills = 0
                if c[i].op == OP_PLACE:
                    status[i] = self._place(c[i].order_id, c[i].account, c[i].side, c[i].price,
                                            c[i].qty, c[i].tif, c[i].stp, c[i].client_id, 0)
                elif c[i].op == OP_CANCEL:
                    status[i] = self._cancel(c[i].order_id)
                elif c[i].op == OP_AMEND:
                    status[i] = self._amend(c[i].order_id, c[i].price, c[i].qty)
                else:
                    status[i] = ST_INVALID
        return out

    cdef list _resting_slots(self):
        """Slots of every resting order in priority order: bids best first, then asks."""
        cdef list out = []
        cdef int side
        cdef int32_t s
        for side in range(2):
            for lslot in self._level_slots(side, self.sides[side].n):
                s = self.levels[<int32_t>lslot].head
                while s != NIL:
                    out.append(s)
                    s = self.orders[s].next
        return out

    def resting(self):
        """Every resting order in priority order (bids best first, then asks best first), as
        order() tuples."""
        return [self._order_tuple(s) for s in self._resting_slots()]

    def dump(self):
        """Every resting order in priority order with every field that decides its future:
        (order_id, account, side, price, open_qty, filled, client_id, post_only, stp). load() of
        this into an empty book gives back the same book."""
        cdef Order* o
        out = []
        for s in self._resting_slots():
            o = &self.orders[<int32_t>s]
            out.append((o.id, o.account, o.side, o.price, o.qty, o.filled, o.client_id,
                        bool(o.post_only), o.stp))
        return out

    def load(self, orders):
        """Rests the rows of dump() into this empty book, in the order given (their time priority
        within each level), without matching. Everything is checked before the first order goes
        in, so a bad list leaves the book empty; ValueError names the first offending row."""
        if self.n_orders:
            raise ValueError("load() needs an empty book")
        ids, client_ids = set(), set()
        best = [None, None]
        rows = [tuple(row) for row in orders]
        for row in rows:
            if len(row) != 9:
                raise ValueError(f"order row {row!r} does not have 9 fields")
            order_id, account, side, price, qty, filled, client_id, post_only, stp = row
            if side not in (SIDE_BUY, SIDE_SELL) or price <= 0 or qty <= 0 or filled < 0 \
                    or client_id < 0 or not 0 <= stp <= 3:
                raise ValueError(f"order {order_id}: field out of range")
            if order_id in ids or (client_id and (account, client_id) in client_ids):
                raise ValueError(f"order {order_id}: its order id or client id appears twice")
            ids.add(order_id)
            if client_id:
                client_ids.add((account, client_id))
            if best[side] is None or _key(side, price) > _key(side, best[side]):
                best[side] = price
        if best[0] is not None and best[1] is not None and best[0] >= best[1]:
            raise ValueError(f"the orders cross: bid {best[0]} >= ask {best[1]}")
        for order_id, account, side, price, qty, filled, client_id, post_only, stp in rows:
            self._rest(order_id, account, side, price, qty, stp, post_only, client_id, filled)

    def memory_bytes(self):
        """Bytes the book holds in C allocations (pools, indexes, level arrays, fill buffer)."""
        return (self.order_cap * sizeof(Order) + self.level_cap * sizeof(Level)
                + 3 * (self.index_mask + 1) * sizeof(int32_t) + self.fills_cap * sizeof(Fill)
                + sum(self.sides[s].nchunks * sizeof(Chunk)
                      + self.sides[s].cap * (sizeof(Chunk*) + sizeof(int64_t)) for s in range(2)))

    def __len__(self):
        return self.n_orders
