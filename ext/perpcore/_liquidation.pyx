# Stage 6 up to the decision to liquidate, in C. See perpcore._liquidation.pxd for the contract and
# perpcore.liquidation (its module docstring: "Finding the accounts", "The reserve", "Funding") for
# the rules this implements: the triggers, the reserve, the corner, the grid and the spares.

from cpython.dict cimport PyDict_GetItem, PyDict_Next
from cpython.ref cimport PyObject
from libc.stdint cimport INT64_MAX, INT64_MIN, int64_t, uint32_t, uint64_t
from cpython.mem cimport PyMem_Free
from libc.stdlib cimport free, malloc, qsort, realloc
from libc.string cimport memcpy, memmove, memset

from perpcore._ledger cimport CashTable, id_at, record_of
from perpcore._margin cimport (Account, PosC, Prices, Step, Sums, SymbolRisk, TierTable, int128_t,
                               pos_at, py_int)

from perpcore import messages as m
from perpcore.config import RATE_SCALE

cdef extern from *:
    bint mul_overflow "__builtin_mul_overflow"(int128_t a, int128_t b, int128_t* out) noexcept nogil
    int clzll "__builtin_clzll"(unsigned long long x) noexcept nogil

cdef int64_t RS = RATE_SCALE
# a trigger that fires on any update of its dimension (an account to look at whatever the price):
# a DOWN trigger above every price, an UP one below every price
cdef int64_t ANY_DOWN = INT64_MAX
cdef int64_t ANY_UP = INT64_MIN
cdef int64_t NO_PRICE = INT64_MIN          # a Term's corner where there is no trigger

# The events after which an account's money or positions may have changed: it is looked at again
# (FundingPaid is not among them: a payment only moves equity, see perpcore.liquidation's Funding
# paragraph; PositionChanged is, and is first stepped from the fill alone).
TOUCHING = frozenset({m.PositionChanged, m.InterestAccrued, m.Deposited, m.Withdrawn, m.Borrowed,
                      m.Repaid, m.CollateralConverted, m.CollateralExchanged})
# Everything stage 6 reads: a command with none of these (most orders, cancels and amends) moved no
# price and no account's money. FundingSettled: the one way another layer changes the insurance fund
# (its rounding remainder, perpcore.margin.settle_funding), recorded then.
WATCHED = TOUCHING | {m.FundingPaid, m.FundingSettled, m.MarkPriceUpdated, m.IndexPriceUpdated}

cdef object POSITION_CHANGED = m.PositionChanged
cdef object FUNDING_PAID = m.FundingPaid
cdef object FUNDING_SETTLED = m.FundingSettled
cdef object MARK_MOVED = m.MarkPriceUpdated
cdef object INDEX_MOVED = m.IndexPriceUpdated
cdef frozenset C_TOUCHING = TOUCHING
# WATCHED as a C array of its types (held by the tuple): after() tests every event against it
cdef tuple WATCHED_TYPES = tuple(WATCHED)
cdef PyObject* C_WATCHED[16]
cdef Py_ssize_t N_WATCHED = 0


cdef int watch_types() except -1:
    global N_WATCHED
    for t in WATCHED_TYPES[:16]:
        C_WATCHED[N_WATCHED] = <PyObject*>t
        N_WATCHED += 1
    assert N_WATCHED == len(WATCHED_TYPES)
    return 0


watch_types()


cdef inline bint watched(object t) noexcept:
    cdef Py_ssize_t i
    for i in range(N_WATCHED):
        if <PyObject*>t == C_WATCHED[i]:
            return True
    return False


# ---- the trees -----------------------------------------------------------------------------------

cdef inline bint before(Key* k, int64_t price, int64_t account) noexcept nogil:
    return k.price < price or k.price == price and k.account < account


cdef inline int lower(Key* keys, int lo, int hi, int64_t price, int64_t account) noexcept nogil:
    """The first position in keys[lo:hi] whose key is not before (price, account)."""
    cdef int mid
    while lo < hi:
        mid = (lo + hi) >> 1
        if before(&keys[mid], price, account):
            lo = mid + 1
        else:
            hi = mid
    return lo


cdef inline int below(Node* t, int64_t price, int64_t account) noexcept nogil:
    """The child of an inner node whose keys may hold (price, account): the last one whose least
    key is not after it."""
    cdef int lo = 1, hi = t.n, mid
    while lo < hi:
        mid = (lo + hi) >> 1
        if before(&t.keys[mid], price, account) or t.keys[mid].price == price \
                and t.keys[mid].account == account:
            lo = mid + 1
        else:
            hi = mid
    return lo - 1


cdef int by_value(const void* a, const void* b) noexcept nogil:
    cdef int64_t x = (<int64_t*>a)[0], y = (<int64_t*>b)[0]
    return (x > y) - (x < y)


cdef inline bint same(Entry* a, Entry* b) noexcept nogil:
    return a.dim == b.dim and a.direction == b.direction and a.price == b.price


cdef int held(Entry* entries, int n, Entry* e) noexcept nogil:
    """The position of an entry equal to e among entries, -1: none."""
    cdef int i
    for i in range(n):
        if same(&entries[i], e):
            return i
    return -1


cdef bint earlier(Entry* old, int n_old, Entry* new, int n) noexcept nogil:
    """Each old trigger is for the same exposure as the new one and fires no later (an 'any move'
    trigger fires on any update: no later than any other)."""
    cdef int i
    if n_old != n or n == 0:
        return False
    for i in range(n):
        if old[i].dim != new[i].dim or old[i].direction != new[i].direction:
            return False
        if old[i].price < new[i].price if old[i].direction == DOWN else old[i].price > new[i].price:
            return False
    return True


cdef class BreachIndex:
    """Accounts (int64 ids) by the prices at which a move could breach them.

    A price dimension (numbered; perpcore.liquidation's are a symbol's mark and a collateral's
    index) keeps two trees of (trigger, account): DOWN triggers (a long, collateral) fire when the
    price falls to the trigger or below, UP ones (a short) when it rises to it or above; a trigger
    of None fires on any update of its dimension. An account has at most one trigger per
    dimension and direction, kept in the order set. crossed() finds exactly the accounts a new
    price reaches in O(log n + k) (then sorts them); set() moves only the entries that change, in
    O(log n) each. No Python object per entry: an account's triggers and, after them, `payload`
    bytes of its owner's state (zero when the slot is made) are an area of the account's record in
    a register (perpcore._ledger.CashTable: the ledger's, so that an account's state lies in one
    record, or the index's own), its slot the record's row."""

    def __cinit__(self, int ndims, int width=0, Py_ssize_t payload=0, CashTable register=None):
        if ndims <= 0 or ndims > 2 * MAX_SYMBOLS:
            raise ValueError(f"1 to {2 * MAX_SYMBOLS} price dimensions, not {ndims}")
        self.ndims = ndims
        self.width = width if width > 0 else 2 * ndims
        if self.width > 2 * ndims:
            raise ValueError(f"at most {2 * ndims} triggers an account, not {self.width}")
        self.payload = payload
        self.own = register is None
        self.register = CashTable(()) if self.own else register
        # the count and the mark, the entries, then the payload (16-byte aligned for its integers)
        self.offset = self.register.reserve(16 + self.width * sizeof(Entry) + payload)
        self.roots = <uint32_t*>malloc(2 * ndims * sizeof(uint32_t))
        if self.roots == NULL:
            raise MemoryError()
        self.reset()

    def __dealloc__(self):
        free(self.nodes)
        free(self.roots)
        free(self.found)

    cdef int reset(self) except -1:
        cdef Py_ssize_t r
        free(self.nodes)
        self.nodes = NULL
        if self.own:
            self.register.clear()
        else:
            for r in range(self.register.rows):
                memset(self.head(r), 0, 16 + self.width * sizeof(Entry) + self.payload)
        self.slots = self.indexed = 0
        self.n_nodes = self.cap_nodes = 0
        self.free_nodes = 0
        self.height = 0
        memset(self.roots, 0, 2 * self.ndims * sizeof(uint32_t))
        return 0

    # ---- slots -----------------------------------------------------------------------------

    cdef int32_t* head(self, Py_ssize_t slot) noexcept nogil:
        return <int32_t*>(record_of(self.register, slot) + self.offset)

    cdef Py_ssize_t taken(self, Py_ssize_t row) noexcept nogil:
        return row if row >= 0 and self.head(row)[1] else -1

    cdef Py_ssize_t take(self, Py_ssize_t row) noexcept nogil:
        if not self.head(row)[1]:
            self.head(row)[1] = 1       # its area is zero until now (the record's or reset()'s)
            self.slots += 1
        return row

    cdef Py_ssize_t find(self, int64_t account) noexcept nogil:
        return self.taken(self.register.find(account))

    cdef Py_ssize_t slot(self, int64_t account) except -1:
        cdef Py_ssize_t row = self.register.find(account)
        if row < 0:
            if not self.own:
                raise KeyError(f"account {account} has no record")
            row = self.register.open(account)
        return self.take(row)

    cdef int count(self, Py_ssize_t slot) noexcept nogil:
        return self.head(slot)[0]

    cdef Entry* entries(self, Py_ssize_t slot) noexcept nogil:
        return <Entry*>(<char*>self.head(slot) + 16)

    cdef void* state(self, Py_ssize_t slot) noexcept nogil:
        return <char*>self.head(slot) + 16 + self.width * sizeof(Entry)

    # ---- the trees -------------------------------------------------------------------------

    cdef uint32_t node(self, bint leaf) except 0:
        """A new, empty node."""
        cdef uint32_t n = self.free_nodes, size
        cdef Node* nodes
        if n:
            self.free_nodes = self.nodes[n].next
        else:
            if self.n_nodes + 1 >= self.cap_nodes:
                size = self.cap_nodes * 2 if self.cap_nodes else 64
                nodes = <Node*>realloc(self.nodes, size * sizeof(Node))
                if nodes == NULL:
                    raise MemoryError()
                self.nodes = nodes
                self.cap_nodes = size
                if self.n_nodes == 0:
                    self.n_nodes = 1        # node 0 is none
            n = self.n_nodes
            self.n_nodes += 1
        self.nodes[n].n, self.nodes[n].leaf = 0, leaf
        self.nodes[n].prev = self.nodes[n].next = 0
        return n

    cdef int insert(self, uint32_t* root, int64_t price, int64_t account) except -1:
        """Adds the key (price, account) to the tree at *root: into its leaf, which splits in two
        when full, its new half going into the parent, which splits likewise, up to a new root."""
        cdef uint32_t path[MAX_DEPTH]
        cdef int depth = 0, i, half = FAN // 2
        cdef uint32_t t = root[0], r, up
        cdef Key sep
        cdef Node* a
        cdef Node* b
        if t == 0:
            t = root[0] = self.node(True)
            if self.height < 1:
                self.height = 1
        while not self.nodes[t].leaf:
            path[depth] = t
            depth += 1
            t = self.nodes[t].child[below(&self.nodes[t], price, account)]
        a = &self.nodes[t]
        i = lower(a.keys, 0, a.n, price, account)
        memmove(&a.keys[i + 1], &a.keys[i], (a.n - i) * sizeof(Key))
        a.keys[i].price, a.keys[i].account = price, account
        a.n += 1
        if a.n < FAN:
            return 0
        r = self.node(True)                 # the leaf's upper half, chained after it
        a, b = &self.nodes[t], &self.nodes[r]
        memcpy(b.keys, &a.keys[half], (FAN - half) * sizeof(Key))
        b.n, a.n = FAN - half, half
        b.next, b.prev, a.next = a.next, t, r
        if b.next:
            self.nodes[b.next].prev = r
        sep = b.keys[0]
        while depth:                        # the new node goes into its parent, after t
            depth -= 1
            up = path[depth]
            a = &self.nodes[up]
            i = below(a, sep.price, sep.account) + 1
            memmove(&a.child[i + 1], &a.child[i], (a.n - i) * sizeof(uint32_t))
            memmove(&a.keys[i + 1], &a.keys[i], (a.n - i) * sizeof(Key))
            a.child[i], a.keys[i] = r, sep
            a.n += 1
            if a.n < FAN:
                return 0
            t = up
            r = self.node(False)
            a, b = &self.nodes[t], &self.nodes[r]
            memcpy(b.child, &a.child[half], (FAN - half) * sizeof(uint32_t))
            memcpy(b.keys, &a.keys[half], (FAN - half) * sizeof(Key))
            b.n, a.n = FAN - half, half
            sep = b.keys[0]
        up = self.node(False)               # the root split: a new root above both halves
        a = &self.nodes[up]
        a.n, a.child[0], a.child[1], a.keys[1] = 2, root[0], r, sep
        root[0] = up
        self.height += 1
        if self.height >= MAX_DEPTH:
            raise MemoryError("the breach index's trees are too deep")
        return 0

    cdef int remove(self, uint32_t* root, int64_t price, int64_t account) except -1:
        """Takes the key (price, account), which the tree holds, out of it. Nodes are not merged
        as they thin out (an empty one is freed, and a root left with one child gives way to it):
        the trees stay no deeper than at their largest."""
        cdef uint32_t path[MAX_DEPTH]
        cdef int at[MAX_DEPTH]
        cdef int depth = 0, i
        cdef uint32_t t = root[0]
        cdef Node* a
        while not self.nodes[t].leaf:
            path[depth] = t
            at[depth] = i = below(&self.nodes[t], price, account)
            depth += 1
            t = self.nodes[t].child[i]
        a = &self.nodes[t]
        i = lower(a.keys, 0, a.n, price, account)
        if i == a.n or a.keys[i].price != price or a.keys[i].account != account:
            raise KeyError(f"({price}, {account}) is not in the breach index")   # a bug
        a.n -= 1
        memmove(&a.keys[i], &a.keys[i + 1], (a.n - i) * sizeof(Key))
        if a.n:
            return 0
        if a.prev:                          # an empty leaf leaves the chain and its parent
            self.nodes[a.prev].next = a.next
        if a.next:
            self.nodes[a.next].prev = a.prev
        while True:
            self.nodes[t].next = self.free_nodes
            self.free_nodes = t
            if depth == 0:
                root[0] = 0
                return 0
            depth -= 1
            t = path[depth]
            a = &self.nodes[t]
            i = at[depth]
            a.n -= 1
            memmove(&a.child[i], &a.child[i + 1], (a.n - i) * sizeof(uint32_t))
            memmove(&a.keys[i], &a.keys[i + 1], (a.n - i) * sizeof(Key))
            if a.n:
                break
        while depth == 0 and not self.nodes[t].leaf and self.nodes[t].n == 1:
            root[0] = self.nodes[t].child[0]        # a root with one child gives way to it
            self.nodes[t].next = self.free_nodes
            self.free_nodes = t
            t = root[0]
        return 0

    cdef uint32_t edge(self, uint32_t t, bint last) noexcept nogil:
        while t and not self.nodes[t].leaf:
            t = self.nodes[t].child[self.nodes[t].n - 1 if last else 0]
        return t

    cdef int put(self, Py_ssize_t slot, Entry* new, int n, bint keep_earlier) except -1:
        """Replaces the slot's triggers with new[:n] (one per dimension and direction). With
        keep_earlier, triggers for the same exposures that each fire no later than the new ones
        stay as they are (still a safe bound, and no tree is touched). Only the entries that
        change move in the trees."""
        cdef Entry* old = self.entries(slot)
        cdef int n_old = self.count(slot), i
        cdef int64_t account = id_at(self.register, slot)
        if n_old == n:
            for i in range(n):
                if not same(&old[i], &new[i]):
                    break
            else:
                return 0
        if keep_earlier and earlier(old, n_old, new, n):
            return 0
        for i in range(n_old):
            if held(new, n, &old[i]) < 0:
                self.remove(&self.roots[old[i].dim * 2 + old[i].direction], old[i].price, account)
        for i in range(n):
            if held(old, n_old, &new[i]) < 0:
                self.insert(&self.roots[new[i].dim * 2 + new[i].direction], new[i].price, account)
        memcpy(old, new, n * sizeof(Entry))
        self.head(slot)[0] = n
        self.indexed += (n > 0) - (n_old > 0)
        return 0

    # ---- queries ---------------------------------------------------------------------------

    cdef int add(self, int64_t account) except -1:
        cdef int64_t* grown
        if self.n_found == self.cap_found:
            self.cap_found = self.cap_found * 2 if self.cap_found else 64
            grown = <int64_t*>realloc(self.found, self.cap_found * sizeof(int64_t))
            if grown == NULL:
                raise MemoryError()
            self.found = grown
        self.found[self.n_found] = account
        self.n_found += 1
        return 0

    cdef int collect(self, int dim, int64_t price) except -1:
        """Appends to found the accounts whose trigger in dim the price reaches (an account
        once per direction): DOWN triggers >= price, UP triggers <= price, along the leaves."""
        cdef uint32_t t = self.roots[dim * 2 + DOWN]
        cdef int i
        while t and not self.nodes[t].leaf:         # the leaf where triggers >= price begin
            t = self.nodes[t].child[below(&self.nodes[t], price, INT64_MIN)]
        if t:
            i = lower(self.nodes[t].keys, 0, self.nodes[t].n, price, INT64_MIN)
            while t:
                while i < self.nodes[t].n:
                    self.add(self.nodes[t].keys[i].account)
                    i += 1
                t, i = self.nodes[t].next, 0
        t = self.edge(self.roots[dim * 2 + UP], False)
        while t:
            for i in range(self.nodes[t].n):
                if self.nodes[t].keys[i].price > price:
                    return 0
                self.add(self.nodes[t].keys[i].account)
            t = self.nodes[t].next
        return 0

    cdef bint reaches_c(self, int dim, int64_t price) noexcept nogil:
        cdef uint32_t t = self.edge(self.roots[dim * 2 + DOWN], True)
        if t and self.nodes[t].keys[self.nodes[t].n - 1].price >= price:   # the highest DOWN
            return True
        t = self.edge(self.roots[dim * 2 + UP], False)
        return t != 0 and self.nodes[t].keys[0].price <= price             # the lowest UP

    # ---- the Python surface ----------------------------------------------------------------

    cdef int dimension(self, dim) except -1:
        if not 0 <= dim < self.ndims:
            raise ValueError(f"dimension {dim} is not among the index's 0..{self.ndims - 1}")
        return dim

    def set(self, int64_t account, entries, bint keep_earlier=False):
        """Replaces the account's triggers with (dim, DOWN/UP, price or None) entries, at most
        one per dimension and direction (an entry given twice counts once). With keep_earlier,
        triggers for the same exposures that each fire no later than the new ones stay."""
        cdef Entry new[2 * 2 * MAX_SYMBOLS]
        cdef Entry e
        cdef int n = 0, i
        for dim, direction, price in entries:
            e.dim = self.dimension(dim)
            if direction != DOWN and direction != UP:
                raise ValueError(f"direction {direction} is neither DOWN nor UP")
            e.direction = direction
            if price is None:
                e.price = ANY_DOWN if direction == DOWN else ANY_UP
            elif INT64_MIN < price < INT64_MAX:
                e.price = price
            else:
                raise ValueError(f"trigger {price} out of range")
            if held(new, n, &e) >= 0:
                continue
            for i in range(n):
                if new[i].dim == e.dim and new[i].direction == e.direction:
                    raise ValueError(f"two triggers for dimension {dim}, direction {direction}")
            if n == self.width:
                raise ValueError(f"more than the {self.width} triggers an account may have")
            new[n] = e
            n += 1
        if n == 0 and self.find(account) < 0:
            return
        self.put(self.slot(account), new, n, keep_earlier)

    def discard(self, int64_t account):
        """Removes the account's triggers."""
        cdef Py_ssize_t slot = self.find(account)
        if slot >= 0:
            self.put(slot, NULL, 0, False)

    def crossed(self, dim, int64_t price) -> list:
        """The accounts whose trigger in `dim` the price reaches, sorted by id."""
        self.n_found = 0
        self.collect(self.dimension(dim), price)
        return self.sorted_found()

    cdef list sorted_found(self):
        cdef list out = []
        cdef Py_ssize_t i
        qsort(self.found, self.n_found, sizeof(int64_t), by_value)
        for i in range(self.n_found):
            if i == 0 or self.found[i] != self.found[i - 1]:
                out.append(self.found[i])
        return out

    def reaches(self, dim, int64_t price) -> bool:
        """True when crossed(dim, price) would find someone, in O(log n)."""
        return self.reaches_c(self.dimension(dim), price)

    def triggers(self, int64_t account) -> tuple:
        """The account's (dim, direction, price or None) entries, as set (empty if none)."""
        cdef Py_ssize_t slot = self.find(account)
        cdef Entry* e
        cdef int i
        if slot < 0:
            return ()
        e = self.entries(slot)
        return tuple((e[i].dim, e[i].direction,
                      None if e[i].price == (ANY_DOWN if e[i].direction == DOWN else ANY_UP)
                      else e[i].price) for i in range(self.count(slot)))

    def clear(self):
        """Forgets every account (and its owner's state)."""
        self.reset()

    def __len__(self):
        return self.indexed

    def __contains__(self, int64_t account):
        cdef Py_ssize_t slot = self.find(account)
        return slot >= 0 and self.count(slot) > 0


# ---- the keying's arithmetic ---------------------------------------------------------------------

cdef inline int128_t position_term(SymbolRisk sr, int64_t size, int64_t cost,
                                   int64_t price) noexcept:
    """A position's part of equity - maintenance at mark `price`: its value less its entry value
    less its maintenance; 0 when flat."""
    cdef int128_t upt = sr.upt
    cdef int128_t notional = upt * size * price
    if size > 0:
        return notional - cost * upt - sr.tiers.mm(notional)
    if size < 0:
        return notional + cost * upt - sr.tiers.mm(-notional)
    return 0


cdef int128_t muldiv(int128_t a, int128_t b, int128_t d, bint up) except? -1:
    """a x b / d (a, b >= 0, d > 0) rounded down (up: up), exact: over Python integers when the
    product leaves 128 bits."""
    cdef int128_t p, q
    if not mul_overflow(a, b, &p):
        q = p // d
        return q + 1 if up and q * d != p else q
    if up:
        return -(-py_int(a) * py_int(b) // py_int(d))
    return py_int(a) * py_int(b) // py_int(d)


cdef inline int64_t toward(int64_t trigger, int64_t price, int direction):
    """The trigger moved toward the price onto a power-of-two grid of 1/16 to 1/8 of their
    distance: it fires a little earlier (never later), and small changes of an account leave it
    where it was, so keying it again rarely touches the trees."""
    cdef int64_t distance = price - trigger if direction == DOWN else trigger - price, grid
    if distance < 16:
        return trigger
    grid = (<int64_t>1) << (64 - clzll(<unsigned long long>distance) - 4)
    if direction == DOWN:
        return (trigger + grid - 1) // grid * grid          # trigger >= 0: up
    return trigger // grid * grid


cdef int64_t place(int128_t trigger, int64_t price, int direction) except? -1:
    """Where a trigger goes: a DOWN one no lower than 0 (below 1 it never fires), an UP one no
    higher than twice the price (beyond, it would only make the corner's figures huge), then
    toward the price. Each step moves it toward the price: it fires earlier, never later."""
    if direction == DOWN:
        if trigger < 0:
            trigger = 0
    elif trigger > 2 * <int128_t>price:
        trigger = 2 * <int128_t>price
    if not INT64_MIN < trigger < INT64_MAX:
        raise OverflowError(f"trigger {py_int(trigger)} beyond 64 bits")
    return toward(<int64_t>trigger, price, direction)


cdef inline int with_spare(Entry* out, int dim, int direction, int64_t trigger,
                           int64_t price) except -1:
    """A position's trigger and a spare on its other side, as far from the price (within
    place()'s bounds): a fill that flips the position then needs no new trigger (see step)."""
    cdef int other = UP if direction == DOWN else DOWN
    out[0].dim, out[0].direction, out[0].price = dim, direction, trigger
    out[1].dim, out[1].direction = dim, other
    out[1].price = place(2 * <int128_t>price - trigger, price, other)
    return 2


cdef inline void any_move(Entry* out, Dim* d) noexcept:
    out.dim, out.direction = d.dim, d.direction
    out.price = ANY_DOWN if d.direction == DOWN else ANY_UP


cdef inline int128_t as128(x) except? -1:
    return x


cdef class LiquidationCore:
    """The base of perpcore.liquidation.Liquidation: stage 6's entry, its scan of events, the
    breach index and the keying of accounts' triggers, reserves and terms."""

    def __cinit__(self, *args, **kwargs):
        self.shortcuts = True
        self.enabled = True

    def __init__(self, MarginCore margin, insurance):
        """Over the margin layer's accounts, symbols and collateral, and the insurance fund's
        balances (perpcore.insurance.InsuranceFund: the ledger's bucket, and the fund as it last
        recorded it)."""
        self.margin = margin
        self.fund, self._fund_seen = insurance.balances, insurance.seen
        self.symbols = tuple(margin.symbols)
        self.nsym = len(self.symbols)
        self.coll = list(margin.collateral)
        self.coll_assets = tuple(c.asset for c in self.coll)
        self.ncoll = len(self.coll)
        if not 0 < self.nsym <= MAX_SYMBOLS or self.ncoll > self.nsym:
            raise ValueError(f"1 to {MAX_SYMBOLS} instruments, a collateral index among them")
        self.number = {s: k for k, s in enumerate(self.symbols)}
        self.risks = [margin.symbols[s] for s in self.symbols]
        cdef int k, j
        cdef TierTable tiers
        for k in range(self.nsym):
            tiers = (<SymbolRisk>self.risks[k]).tiers
            # a short loses its size per tick in equity and at most the top rate more in margin
            self.short_rate[k] = RS + max(tiers.rates)
        for j, c in enumerate(self.coll):
            self.coll_k[j] = self.number[c.symbol]
            self.coll_num[j], self.coll_keep[j], self.coll_den[j] = c.num, c.keep, c.den * RS
        cdef Py_ssize_t payload = sizeof(Keyed) + self.nsym * sizeof(Term)
        free(self.scratch)
        self.scratch = <Keyed*>malloc(payload)
        if self.scratch == NULL:
            raise MemoryError()
        # positions have a trigger and a spare in their mark; collateral one in its index
        self.index = BreachIndex(2 * self.nsym, 2 * self.nsym + self.ncoll, payload, margin.cash)
        self._dirty = set()
        self.socialized = {}

    def __dealloc__(self):
        free(self.scratch)

    # ---- stage 6: the rounds (the Exchange runs them, ExchangeCore.liquidate) -------------------

    cdef list first_round(self, list events):
        cdef Py_ssize_t i, n = len(events)
        self.step_at = 0
        if not self.enabled:
            return None
        for i in range(n):
            if watched(type(events[i])):
                break
        else:
            return None
        cdef set touched = set()
        cdef list moves = []
        cdef dict paid = {}
        if self.read(events, 0, touched, moves, paid) and self.fund != self._fund_seen:
            self._record_external(events)
        # price moves alone that reach nobody's trigger (most trades) leave nothing to do
        if touched or paid or self._dirty or moves and self.reached(moves):
            return self.breached(touched, moves, paid)
        return None

    cdef list next_round(self, list events, Py_ssize_t start):
        cdef set touched = set()
        cdef list moves = []
        cdef dict paid = {}
        self.read(events, start, touched, moves, paid)
        return self.breached(touched, moves, paid)

    cdef list breached(self, set touched, list moves, dict paid):
        """A round's accounts in breach, in account order, from what its events showed: `touched`
        accounts to look at, price `moves`, funding `paid`."""
        cdef Py_ssize_t i
        cdef BreachIndex index = self.index
        cdef set crossed = set()
        cdef bint hit
        # the accounts a price reached, by their triggers as they stood before this round
        if moves:
            index.n_found = 0
            for dim, price in moves:
                index.collect(dim, price)
            for i in range(index.n_found):
                crossed.add(index.found[i])
        if paid:        # the payers funding did not leave sound
            touched.update(self._uncovered(paid, touched))
        # each candidate, in account order: its triggers as they stand may still keep it
        # sound; if not, it is examined in full (and keyed again at once unless in breach)
        cdef list breached = []
        for account in sorted(touched | crossed) if crossed else sorted(touched):
            hit = account in crossed
            if (hit or not self._sound(account)) and self._examine(account, not hit):
                breached.append(account)
        return breached

    cdef end_rounds(self):
        if self._dirty:
            accounts = self.margin.accounts
            for account in sorted(self._dirty):     # liquidated, and not keyed since
                self._key(accounts[account])
        self.margin.n_steps = 0     # read (or of no concern): the next command starts afresh

    cpdef liquidate(self, list breached, list events):
        """The plan of a round's liquidations (the Python layer's): a generator that yields each
        internal command they need and is sent its result."""
        raise NotImplementedError("perpcore.liquidation.Liquidation liquidates")

    cpdef _record_external(self, list events):
        """Records the insurance fund's changes another layer made (the Python layer's)."""
        raise NotImplementedError("perpcore.liquidation.Liquidation records the fund")

    cdef bint reached(self, list moves) except -1:
        for dim, price in moves:
            if self.index.reaches_c(dim, price):
                return True
        return False

    def scan(self, list events, Py_ssize_t start, set touched, list moves, dict paid):
        """Reads events[start:]: each fill steps its account's reserve; an account whose step fails,
        or that another money movement touched, goes into `touched`; what each funding payer paid
        into `paid` (a receiver only gained slack); each move of a price on a fresh index into
        `moves` as (dimension, price). True if a funding settlement is among them."""
        return self.read(events, start, touched, moves, paid)

    cdef bint read(self, list events, Py_ssize_t start, set touched, list moves,
                   dict paid) except -1:
        cdef Py_ssize_t i
        cdef bint settled = False
        cdef Step* step
        for i in range(start, len(events)):
            e = events[i]
            t = type(e)
            if t is POSITION_CHANGED:
                account = e.account
                step = self.next_step(account)
                if touched and account in touched or step == NULL or not self.step(step):
                    touched.add(account)
            elif t is FUNDING_PAID:
                amount = e.amount
                if amount < 0:
                    account = e.account
                    paid[account] = paid.get(account, 0) - amount
            elif t in C_TOUCHING:
                touched.add(e.account)
            elif t is MARK_MOVED:
                if not e.index_stale:
                    moves.append((self.number[e.symbol], e.price))
            elif t is INDEX_MOVED:
                moves.append((self.nsym + <int>self.number[e.symbol], e.price))
            elif t is FUNDING_SETTLED:
                settled = True
        return settled

    cpdef list _uncovered(self, dict paid, set touched):
        """The payers of `paid` that must be looked at: those whose reserve does not cover the
        payment, or whose triggers are out of date; the others' reserves are lowered by it
        (perpcore.liquidation's Funding paragraph)."""
        cdef set dirty = self._dirty
        cdef list out = []
        cdef Py_ssize_t i = 0, slot
        cdef PyObject* account
        cdef PyObject* amount
        cdef int128_t left
        cdef Keyed* kept
        while PyDict_Next(paid, &i, &account, &amount):
            if touched and <object>account in touched:
                continue            # looked at anyway
            slot = self.index.find(<object>account)
            kept = self.keyed(slot) if slot >= 0 else NULL
            left = (kept.reserve if kept != NULL else 0) - as128(<object>amount)
            if self.shortcuts and kept != NULL and left >= 1 \
                    and not (dirty and <object>account in dirty):
                kept.reserve = left
            else:
                out.append(<object>account)
        return out

    # ---- a fill --------------------------------------------------------------------------------

    cdef bint unpriced(self, int64_t account, int k) except -1:
        """True when an account without terms (some trigger of it fires on any move) filled in a
        symbol that has no index yet needs no look: it cannot be liquidated in this command (that
        exposure is stale, so a breach is deferred) and its keying would stay as it is, a trigger
        on any move of that symbol's mark among its triggers. Not so for an account awaiting its
        keying after a liquidation."""
        cdef Py_ssize_t slot
        cdef Entry* e
        cdef int i
        if (<SymbolRisk>self.risks[k]).prices.index is not None:
            return False
        if self._dirty and account in self._dirty:
            return False
        slot = self.index.find(account)
        if slot < 0:
            return False
        e = self.index.entries(slot)
        for i in range(self.index.count(slot)):
            if e[i].dim == k and e[i].price == (ANY_DOWN if e[i].direction == DOWN else ANY_UP):
                return True
        return False

    cdef Step* next_step(self, int64_t account) noexcept:
        """The settlement's record of the next PositionChanged, which is the account's (NULL:
        none, or out of step: the account is examined in full)."""
        cdef Step* step
        if self.step_at >= self.margin.n_steps:
            return NULL
        step = &self.margin.steps[self.step_at]
        self.step_at += 1
        return step if step.account == account else NULL

    cdef bint step(self, Step* fill) except -1:
        """The fill's account's reserve brought up to date from the fill alone: True when it stays
        >= 1 (the account is sound and keeps its triggers), False when the account must be looked
        at (no terms kept, unless unpriced() shows there is nothing to look at; no trigger on the
        position's new side; or too little reserve left).

        A fill changes the account's cash by realised PnL - fee and this position's term at the
        corner from the old one to one of the new size and entry value: every other term stays.
        The terms are exact, so the reserve stays the corner's slack, less the funding paid since
        (a receipt, not counted, only leaves it lower)."""
        if not self.shortcuts:
            return False
        cdef int k = fill.k
        cdef int64_t a = fill.account
        cdef Py_ssize_t slot = self.index.find(a)
        cdef Keyed* kept = self.keyed(slot) if slot >= 0 else NULL
        if kept == NULL or not kept.has_terms:
            return self.unpriced(a, k)
        if not kept.term_mask >> k & 1:
            return False
        cdef Term* term = <Term*>(kept + 1) + k
        cdef int64_t size = fill.size
        cdef int64_t at = term.below if size > 0 else term.above if size < 0 else 0
        if at == NO_PRICE:
            return False
        cdef int128_t now = position_term(self.risks[k], size, fill.cost, at)
        cdef int128_t reserve = kept.reserve + fill.cash + (now - term.term)
        if reserve < 1:
            return False
        kept.reserve = reserve
        term.term = now
        return True

    # ---- finding accounts ----------------------------------------------------------------------

    cdef Keyed* keyed(self, Py_ssize_t slot) noexcept nogil:
        return <Keyed*>self.index.state(slot)

    cdef bint price(self, int dim, int64_t* out) except -1:
        """The price of a dimension now (a mark, an index); False: none yet."""
        cdef Prices prices = (<SymbolRisk>self.risks[dim % self.nsym]).prices
        p = prices.mark if dim < self.nsym else prices.index
        if p is None:
            return False
        out[0] = p
        return True

    cdef int128_t collateral(self, int j, amount, int64_t index, bint up) except? -1:
        """Collateral j's value after the haircut at `index` (> 0), rounded down as
        CollateralPrice.value does (up: up), of an amount > 0: over Python integers for an amount
        beyond 64 bits or a product beyond 128."""
        cdef int128_t p, q
        if amount < INT64_MAX and not mul_overflow(<int64_t>amount, index, &p) \
                and not mul_overflow(p, self.coll_num[j], &p) \
                and not mul_overflow(p, self.coll_keep[j], &p):
            q = p // self.coll_den[j]
            return q + 1 if up and q * self.coll_den[j] != p else q
        c = self.coll[j]
        if up:
            return -(-amount * index * c.num * c.keep // (c.den * RATE_SCALE))
        return c.value(amount, index)

    cpdef bint _sound(self, account) except -1:
        """True when the account's triggers, as they stand, still keep it sound (the slack at their
        corner is positive, see corner()): it is sound now, at prices strictly inside them, and
        its triggers stay; its reserve becomes that slack. A position without a trigger on its
        side (opened or flipped since) gets one, the others staying (key_position). False: the
        account is examined in full."""
        if not self.shortcuts:
            return False
        cdef Py_ssize_t acc = self.margin.slots.find(account)
        if acc < 0:
            return False
        cdef Py_ssize_t slot = self.index.taken(acc)
        cdef int missing[2]
        cdef int128_t slack
        if not self.corner(acc, self.index.entries(slot) if slot >= 0 else NULL,
                           self.index.count(slot) if slot >= 0 else 0, self.scratch, missing,
                           &slack):
            return False
        if missing[0]:
            return missing[0] == 1 and self.key_position(
                acc, slot, slack, missing[1],
                pos_at(<SymbolRisk>self.risks[missing[1]], acc))
        if slack < 1:
            return False
        self.scratch.reserve, self.scratch.has_terms = slack, True
        memcpy(self.keyed(self.index.take(acc)), self.scratch, self.index.payload)
        return True

    cdef int corner(self, Py_ssize_t acc, Entry* entries, int n, Keyed* terms, int* missing,
                    int128_t* slack) except -1:
        """1 with the account's equity - maintenance with each price one tick inside its trigger
        (a DOWN trigger below 1: at 1; a position's price inside the trigger on its side) in
        *slack; 0 when the triggers do not cover it: an exposure without a trigger on its side,
        a trigger on any move, or a price not strictly inside a trigger. With `missing`,
        positions without a trigger on their side are counted in missing[0] (the first one's
        symbol in missing[1]) instead, and left out of the sum. With `terms`, each position's
        term is kept there.

        It is the least slack at any prices strictly inside the triggers (the slack itself without
        positions is more by the bad debt + 1). Equity - maintenance is a sum of terms of one price
        each: a long's value less its maintenance (which rises by at most ceil(notional change x
        rate) <= the value's change, rates < 100%) never falls as its mark rises; a short's value
        falls and its maintenance rises with its mark; collateral's value (rounded down) never
        falls as its index rises. So each term is least at its trigger's inner neighbour, whatever
        the other prices are."""
        cdef int64_t below[2 * MAX_SYMBOLS]
        cdef int64_t above[2 * MAX_SYMBOLS]
        cdef int64_t price, at, size
        cdef int i, k, j
        cdef int128_t total, term
        cdef Term* t
        cdef PosC* pos
        for i in range(self.index.ndims):
            below[i] = above[i] = NO_PRICE
        for i in range(n):
            if entries[i].price == (ANY_DOWN if entries[i].direction == DOWN else ANY_UP):
                return 0
            if not self.price(entries[i].dim, &price):
                return 0
            if entries[i].direction == DOWN:
                if price <= entries[i].price:
                    return 0
                below[entries[i].dim] = entries[i].price + 1 if entries[i].price > 0 else 1
            else:
                if price >= entries[i].price:
                    return 0
                above[entries[i].dim] = entries[i].price - 1
        cdef int64_t* cash = self.margin.cash_of(acc)
        total = cash[self.margin.settle_column] - self.debt(acc)
        if missing != NULL:
            missing[0] = 0
        if terms != NULL:
            terms.term_mask = 0
        for k in range(self.nsym):
            pos = pos_at(<SymbolRisk>self.risks[k], acc)
            if not pos.held:
                continue
            size = pos.size
            at = below[k] if size > 0 else above[k] if size < 0 else 0
            if at == NO_PRICE:
                if missing == NULL:
                    return 0
                if missing[0] == 0:
                    missing[1] = k
                missing[0] += 1
                term = 0
            else:
                term = position_term(self.risks[k], size, pos.cost, at)
                total += term
                if below[k] == NO_PRICE and above[k] == NO_PRICE:
                    continue
            if terms != NULL:
                t = <Term*>(terms + 1) + k
                t.below, t.above, t.term = below[k], above[k], term
                terms.term_mask |= (<int64_t>1) << k
        for j in range(self.ncoll):
            amount = cash[<Py_ssize_t>self.margin.collateral_columns[j]]
            if amount > 0 and (<SymbolRisk>self.risks[self.coll_k[j]]).prices.index is not None:
                at = below[self.nsym + self.coll_k[j]]
                if at == NO_PRICE:
                    return 0
                total += self.collateral(j, amount, at, False)
        slack[0] = total + self.margin.maintenance_shift
        return 1

    cdef bint key_position(self, Py_ssize_t acc, Py_ssize_t slot, int128_t rest, int k,
                           PosC* pos) except -1:
        """Gives one position (symbol k, its terms in scratch) a trigger on its side, the account's
        other triggers staying (one on the position's other side stays too, spare: a fill that
        flips it back needs nothing new). `rest` is the corner's equity - maintenance without
        this position, so the account's is a function of this position's mark alone, solved
        exactly as a lone position's (see triggers), keeping half of it at the mark as room.
        False when it is not positive at the mark."""
        cdef int64_t mark, size = pos.size, cost = pos.cost
        cdef SymbolRisk sr = self.risks[k]
        cdef Entry new[2 * 2 * MAX_SYMBOLS]
        cdef int n = 0, added, i
        cdef int128_t now, base, tick
        if not self.price(k, &mark):
            return False
        now = rest + position_term(sr, size, cost, mark)
        if now < 1:
            return False
        cdef int direction = DOWN if size > 0 else UP
        # at a price x: rest + size x upt x x - its entry value - maintenance at x
        base = rest - <int128_t>(cost if size > 0 else -cost) * sr.upt
        if not sr.tiers.liquidation_tick(size, sr.upt, base - now // 2, &tick):
            tick = 0
        cdef int64_t trigger = place(tick, mark, direction)
        cdef Term* t = <Term*>(self.scratch + 1) + k
        if slot >= 0:
            n = self.index.count(slot)
            memcpy(new, self.index.entries(slot), n * sizeof(Entry))
        if (t.above if direction == DOWN else t.below) == NO_PRICE:
            added = with_spare(&new[n], k, direction, trigger, mark)   # nothing on the other side
        else:
            new[n].dim, new[n].direction, new[n].price = k, direction, trigger
            added = 1
        slot = self.index.take(acc)
        self.index.put(slot, new, n + added, False)
        for i in range(n, n + added):
            if new[i].direction == DOWN:
                t.below = new[i].price + 1
            else:
                t.above = new[i].price - 1
        t.term = position_term(sr, size, cost, t.below if direction == DOWN else t.above)
        self.scratch.reserve = rest + t.term
        self.scratch.has_terms = True
        memcpy(self.keyed(slot), self.scratch, self.index.payload)
        return True

    cpdef bint _examine(self, account, bint keep_earlier=False) except -1:
        """The full examination: True if the account must be liquidated now; otherwise it is keyed
        again at once (with keep_earlier, triggers that fire no later than the fresh ones stay)."""
        cdef Py_ssize_t acc = self.margin.slots.find(account)
        if acc < 0:
            return False
        cdef int128_t equity, mm, slack
        cdef Dim dims[2 * MAX_SYMBOLS]
        cdef int n, i
        cdef Prices prices
        self.figures(acc, &equity, &mm)
        slack = equity - mm if mm > 0 else equity + as128(self.socialized.get(account, 0)) + 1
        n = self.dims(acc, dims)
        if slack <= 0:
            for i in range(n):
                prices = (<SymbolRisk>self.risks[dims[i].dim % self.nsym]).prices
                if prices.index is None or prices.index_stale:
                    break       # in breach, but a stale index holds it back
            else:
                return True
        self.key(acc, equity, mm, slack, dims, n, keep_earlier)
        return False

    cdef int128_t debt(self, Py_ssize_t acc) except? -1:
        """The account's margin loan (minor units), 0: none."""
        if not self.margin.debts:
            return 0
        return as128(self.margin.debts.get(id_at(self.margin.cash, acc), 0))

    cdef int figures(self, Py_ssize_t acc, int128_t* equity, int128_t* mm) except -1:
        """The account's equity and maintenance margin now (perpcore.margin's definitions); with
        positions, the equity plus the maintenance shift (breach: equity <= maintenance)."""
        cdef Sums sums
        cdef int j
        cdef int64_t* cash = self.margin.cash_of(acc)
        self.margin.sums_of(acc, &sums)
        cdef int128_t total = cash[self.margin.settle_column] + sums.upnl - self.debt(acc)
        for j in range(self.ncoll):
            amount = cash[<Py_ssize_t>self.margin.collateral_columns[j]]
            if amount > 0:
                index = (<SymbolRisk>self.risks[self.coll_k[j]]).prices.index
                if index is not None:
                    total += self.collateral(j, amount, index, False)
        if sums.mm > 0:
            total += self.margin.maintenance_shift
        equity[0], mm[0] = total, sums.mm
        return 0

    cdef int dims(self, Py_ssize_t acc, Dim* out) except -1:
        """The account's exposures: each position in its mark (a long DOWN, losing size x upt a
        tick; a short UP, that x (1 + the top maintenance rate)), each priced collateral in its
        index (DOWN, its post-haircut value of one tick). Returns their number."""
        cdef int n = 0, k, j
        cdef int64_t size
        cdef SymbolRisk sr
        cdef int64_t* cash = self.margin.cash_of(acc)
        for k in range(self.nsym):
            sr = self.risks[k]
            size = pos_at(sr, acc).size
            if size:
                out[n].dim = k
                out[n].priced = self.price(k, &out[n].price)
                if size > 0:
                    out[n].direction = DOWN
                    out[n].per_tick = <int128_t>size * sr.upt
                else:
                    out[n].direction = UP
                    out[n].per_tick = muldiv(-<int128_t>size * sr.upt, self.short_rate[k], RS,
                                             True)
                n += 1
        for j in range(self.ncoll):
            amount = cash[<Py_ssize_t>self.margin.collateral_columns[j]]
            if amount > 0:
                k = self.coll_k[j]
                index = (<SymbolRisk>self.risks[k]).prices.index
                if index is not None:       # unpriced collateral counts for nothing: no exposure
                    out[n].dim, out[n].direction, out[n].priced = self.nsym + k, DOWN, True
                    out[n].price = index
                    out[n].per_tick = self.collateral(j, amount, 1, True)
                    n += 1
        return n

    cdef int key(self, Py_ssize_t acc, int128_t equity, int128_t mm, int128_t slack, Dim* dims,
                 int n, bint keep_earlier) except -1:
        """Sets the account's triggers, its reserve (their corner's slack) and its terms."""
        cdef Entry new[2 * 2 * MAX_SYMBOLS]
        cdef int128_t corner
        cdef int count = self.triggers(acc, equity, mm, slack, dims, n, new)
        cdef Py_ssize_t slot = self.index.take(acc)
        self.index.put(slot, new, count, keep_earlier)
        cdef Keyed* kept = self.keyed(slot)
        if self.corner(acc, self.index.entries(slot), self.index.count(slot), self.scratch, NULL,
                       &corner) and corner > 0:
            self.scratch.reserve, self.scratch.has_terms = corner, True
            memcpy(kept, self.scratch, self.index.payload)
        else:
            kept.reserve = 0        # examined at any payment
            kept.has_terms = kept.term_mask = 0
        if self._dirty:
            self._dirty.discard(id_at(self.margin.cash, acc))
        return 0

    cdef int triggers(self, Py_ssize_t acc, int128_t equity, int128_t mm, int128_t slack, Dim* dims,
                      int n, Entry* out) except -1:
        """Triggers inside which the account keeps more than half its slack (the rest is room for
        later fills to spend without new triggers: see step). Returns their number."""
        cdef int i, count = 0, k
        cdef int128_t room, budget, total = 0, w, allowed, tick, notional
        cdef int64_t trigger, mark, size
        cdef SymbolRisk sr
        cdef PosC* pos
        if n == 0:
            return 0
        if slack <= 0:
            # in breach but deferred (a stale index): look again at any move
            for i in range(n):
                any_move(&out[i], &dims[i])
            return n
        room = slack // 2
        if n == 1 and dims[0].dim < self.nsym and dims[0].priced:
            # one position and nothing else: exactly where its slack falls to the room (the
            # liquidation price of the account with `room` less equity); a long that no positive
            # price takes there: 0, never
            k, mark = dims[0].dim, dims[0].price
            sr = self.risks[k]
            pos = pos_at(sr, acc)
            size = pos.size
            notional = <int128_t>size * mark * sr.upt
            # equity less the position's value at price 0, less the others' maintenance
            tick = equity - notional - (mm - sr.tiers.mm(notional if size > 0 else -notional))
            if not sr.tiers.liquidation_tick(size, sr.upt, tick - room, &tick):
                tick = 0
            return with_spare(out, k, dims[0].direction, place(tick, mark, dims[0].direction),
                              mark)
        budget = slack - room - n - 1
        for i in range(n):
            if not dims[i].priced:
                budget = -1
        if budget < 0:
            for i in range(n):
                any_move(&out[i], &dims[i])
            return n
        # the same fraction of its price for every dimension: sum(w x allowed move) <= budget
        for i in range(n):
            if mul_overflow(dims[i].per_tick, dims[i].price, &w) or total + w < total:
                raise OverflowError("the exposures' loss a tick is beyond 128 bits")
            total += w
        for i in range(n):
            allowed = muldiv(budget, dims[i].price, total, False)
            if dims[i].direction == DOWN:
                trigger = place(<int128_t>dims[i].price - allowed - 1, dims[i].price, DOWN)
            else:
                trigger = place(<int128_t>dims[i].price + allowed + 1, dims[i].price, UP)
            if dims[i].dim < self.nsym:
                count += with_spare(&out[count], dims[i].dim, dims[i].direction, trigger,
                                    dims[i].price)
            else:
                out[count].dim, out[count].direction = dims[i].dim, dims[i].direction
                out[count].price = trigger
                count += 1
        return count

    # ---- the Python layer's view ---------------------------------------------------------------

    def term(self, str symbol, int64_t size, int64_t cost, int64_t price):
        """A position's part of equity - maintenance at mark `price`: its value less its entry value
        (its unrealised PnL) less its maintenance; 0 when flat."""
        return py_int(position_term(self.risks[self.number[symbol]], size, cost, price))

    def liquidation_price(self, str symbol, int64_t size, base):
        """TierTable.liquidation_price of the symbol's tiers as the keying solves it, over 128-bit
        integers (TierTable.liquidation_tick): the tick at which a position of `size` lots with
        `base` (equity less the others' maintenance, less its value at price 0) is liquidated."""
        cdef SymbolRisk sr = self.risks[self.number[symbol]]
        cdef int128_t tick
        if sr.tiers.liquidation_tick(size, sr.upt, base, &tick):
            return py_int(tick)
        return None

    def _key(self, Account acc):
        """Keys the account from its figures now (after a liquidation, a restore)."""
        cdef int128_t equity, mm, slack
        cdef Dim dims[2 * MAX_SYMBOLS]
        self.figures(acc.slot, &equity, &mm)
        slack = equity - mm if mm > 0 else equity + as128(self.socialized.get(acc.id, 0)) + 1
        self.key(acc.slot, equity, mm, slack, dims, self.dims(acc.slot, dims), False)

    def _forget(self, account):
        """The account is being liquidated: its triggers, reserve and terms say nothing any more
        until it is keyed again, before the command ends."""
        self._dirty.add(account)
        cdef Py_ssize_t slot = self.index.find(account)
        if slot >= 0:
            self.keyed(slot).has_terms = self.keyed(slot).term_mask = 0

    def reset(self):
        """Forgets every account's triggers, reserve and terms (a restore keys them again)."""
        self.index.reset()
        self._dirty.clear()

    def dimension(self, int dim) -> tuple:
        """The name of a price dimension: ("mark", symbol) or ("index", symbol)."""
        return ("mark" if dim < self.nsym else "index", self.symbols[dim % self.nsym])

    def triggers_of(self, account) -> tuple:
        """The account's triggers as (dimension name, DOWN/UP, price or None), in order."""
        return tuple((self.dimension(d), direction, price)
                     for d, direction, price in self.index.triggers(account))

    def reserve(self, account):
        """The account's reserve (None: never keyed)."""
        cdef Py_ssize_t slot = self.index.find(account)
        return py_int(self.keyed(slot).reserve) if slot >= 0 else None

    def set_reserve(self, account, reserve):
        """Sets the account's reserve (a study of the payer pass)."""
        self.keyed(self.index.slot(account)).reserve = as128(reserve)

    def reserves(self) -> dict:
        """Every keyed account's reserve, by account."""
        cdef Py_ssize_t slot
        return {id_at(self.margin.cash, slot): py_int(self.keyed(slot).reserve)
                for slot in range(self.margin.cash.rows) if self.index.taken(slot) >= 0}

    def terms(self, account):
        """{symbol: [corner below, corner above (None: no trigger there), the position's term]}
        while the account's reserve is its corner's slack (fills step it); None otherwise."""
        cdef Py_ssize_t slot = self.index.find(account)
        cdef Keyed* kept = self.keyed(slot) if slot >= 0 else NULL
        cdef Term* t
        cdef int k
        if kept == NULL or not kept.has_terms:
            return None
        out = {}
        for k in range(self.nsym):
            if kept.term_mask >> k & 1:
                t = <Term*>(kept + 1) + k
                out[self.symbols[k]] = [None if t.below == NO_PRICE else t.below,
                                        None if t.above == NO_PRICE else t.above,
                                        py_int(t.term)]
        return out

    def _dims(self, Account acc) -> list:
        """[(dimension name, direction, price or None, adverse loss bound per tick)] of the
        account's exposures."""
        cdef Dim dims[2 * MAX_SYMBOLS]
        cdef int i, n = self.dims(acc.slot, dims)
        return [(self.dimension(dims[i].dim), dims[i].direction,
                 dims[i].price if dims[i].priced else None, py_int(dims[i].per_tick))
                for i in range(n)]
