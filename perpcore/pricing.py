"""Valuation: the index price, the mark price and the funding clock, per instrument.

The Pricing component (ex.components["pricing"]) keeps, per symbol, the constituent spot prices, the
index made from them, the mark, and the funding state of perpcore.funding. Time comes only from the
exchange clock: Exchange._advance_to calls advance(), which walks every premium sample, mark sample,
index staleness expiry and funding settlement the clock crosses, in time order. Between those
instants the book and the index are constant (no command is applied), so runs of equal samples are
added in closed form. A settlement pays and reports (FundingPaid, FundingSettled, the history) only
while someone holds a position in the symbol; otherwise it only moves the funding clock, and a clock
jump passes any number of those in O(1) (SymbolPricing.skip). A jump thus costs one step per
staleness expiry (at most one per index source) and per settlement of a held symbol, which
limits.max_time_step_ns bounds; the first command with a time further from 0 than that starts the
clock (Pricing.start) with nothing due for the time before it.

A settlement begins an interval in transit (perpcore.funding's model): its amounts are fixed at the
funding time and its payments made then and over the next commands (PricingCore.sweep, within
each command's budget; the exchange calls PricingCore.carry once a command while one is in
transit).

P1 of the mark uses the rate payable at the next funding time (SymbolPricing.predicted): the
predicted rate of the running interval, as Binance's "lastFundingRate" (premiumIndex) is, and
the rate paid at a settlement is that interval's final predicted rate; or, where the rate is
published an interval ahead (PricingSpec.funding_rate_window "previous", BitMEX), the rate fixed
at the previous funding time, which BitMEX's fair basis uses, while the running interval's
samples make the rate of the funding time after.

Units: prices in ticks (the index and mark are rounded half to even to whole ticks), rates at
RATE_SCALE, money in minor units of the settlement asset.
"""
from __future__ import annotations

from collections import deque
from fractions import Fraction
from itertools import islice, repeat

from perpcore import _funding, funding
from perpcore._pricing import PricingCore, PricingState
from perpcore import messages as m
from perpcore.config import RATE_SCALE, PricingSpec

_NEVER = 1 << 127   # later than any clock
_SPREADABLE = 1 << 126  # open interest x per-lot amount below this: every sum fits 128 bits


def median(values: list) -> Fraction:
    """The median of a non-empty list; the mean of the two middle values for an even count."""
    v = sorted(values)
    n = len(v)
    mid = n // 2
    return Fraction(v[mid]) if n % 2 else Fraction(v[mid - 1] + v[mid], 2)


def index_price(quotes: list[tuple[int, int]], cap: int) -> int:
    """Weighted average of (price, weight) quotes after capping each at median x (1 +- cap);
    rounded half to even to a whole tick (at least 1)."""
    if len(quotes) == 1:
        return max(1, quotes[0][0])     # one source is its own median: nothing to cap or weigh
    med = median([p for p, _ in quotes])
    lo = med * (RATE_SCALE - cap) / RATE_SCALE
    hi = med * (RATE_SCALE + cap) / RATE_SCALE
    total = sum(w * min(max(Fraction(p), lo), hi) for p, w in quotes)
    return max(1, round(total / sum(w for _, w in quotes)))


def round_half_even(num: int, den: int) -> int:
    """num / den (den > 0) to the nearest integer, a tie to the even one (as round(Fraction))."""
    q, r = divmod(num, den)
    r += r
    return q + 1 if r > den or r == den and q & 1 else q


def fair_price(index: int, rate: int, time_to_funding: int, interval: int) -> int:
    """P1 (BitMEX's fair price): index x (1 + rate x time to funding / interval), rate at
    RATE_SCALE; rounded half to even."""
    scale = RATE_SCALE * interval
    return round_half_even(index * (scale + rate * time_to_funding), scale)


def fair_price_span(index: int, rate: int, time_to_funding: int,
                    interval: int) -> tuple[int, int, int]:
    """(P1, shortest, longest): the rounded fair price at time_to_funding, and the range of times
    to funding [shortest, longest] over which it is the same (P1 is linear in it)."""
    p1 = fair_price(index, rate, time_to_funding, interval)
    scale = RATE_SCALE * interval
    # 2 x scale x P1(u) = a + b x u stays in [(2 p1 - 1) x scale, (2 p1 + 1) x scale], ends
    # included when p1 is even (half to even): lo <= b x u <= hi
    a, b = 2 * index * scale, 2 * index * rate
    if not b:
        return p1, -_NEVER, _NEVER
    lo, hi = (2 * p1 - 1) * scale - a, (2 * p1 + 1) * scale - a
    if b < 0:
        lo, hi, b = -hi, -lo, -b
    if p1 & 1:      # open ends: lo < b x u < hi
        return p1, lo // b + 1, -(-hi // b) - 1
    return p1, -(-lo // b), hi // b


def basis_price(index: int, basis_sum: int, samples: int) -> int:
    """P2: index + the mean of `samples` basis samples (mid - index, in half ticks) summing to
    basis_sum, rounded half to even; the index alone with no sample."""
    return round_half_even(2 * samples * index + basis_sum, 2 * samples) if samples else index


def median_mark(method: str, index: int, p1: int, p2: int, last: int | None, bid: int | None,
                ask: int | None) -> int | None:
    """The mark by method from the rounded P1 and P2 where it is a median of three: rounding is
    monotone, so it commutes with that median (each input rounded on its own is exact). None
    where the method takes the mean of two instead (no trade yet; no bid, ask or trade)."""
    if method == "binance":
        if last is None:
            return None
        lo, hi = (p1, p2) if p1 <= p2 else (p2, p1)
        value = lo if last <= lo else hi if last >= hi else last     # the middle one of three
    elif method == "bitmex":
        value = p1
    elif method == "index":
        value = index
    else:  # hyperliquid: median(oracle + MA(mid - oracle), median(bid, ask, last), oracle)
        local = sorted(x for x in (bid, ask, last) if x is not None)
        if not local:
            return None
        # an even count's median is the mean of the two: a half tick, rounded
        near = local[len(local) // 2] if len(local) % 2 else round_half_even(local[0] + local[1], 2)
        value = sorted((p2, near, index))[1]
    return value if value > 1 else 1


def mark_price(method: str, index: int, rate: int, time_to_funding: int, interval: int,
               basis_sum: int, samples: int, last: int | None, bid: int | None,
               ask: int | None) -> int:
    """The mark by method, rounded half to even to a whole tick (at least 1), exact in integers:
    "binance" median(P1, P2, last trade), "bitmex" P1, "hyperliquid" median(P2, median(bid, ask,
    last), index), "index" the index. Missing inputs (no trade yet, an empty side) drop out of a
    median; the mean of two is rounded once, from the exact sum."""
    mark = median_mark(method, index, fair_price(index, rate, time_to_funding, interval),
                       basis_price(index, basis_sum, samples), last, bid, ask)
    if mark is not None:
        return mark
    d2 = 2 * samples or 1       # P2 = (d2 x index + basis_sum) / d2
    if not samples:
        basis_sum = 0
    if method == "binance":     # mean(P1, P2) over the denominator 2 x scale x d2
        scale = RATE_SCALE * interval
        value = round_half_even(index * (scale + rate * time_to_funding) * d2
                                + (d2 * index + basis_sum) * scale, 2 * scale * d2)
    else:                       # mean(P2, index)
        value = round_half_even(2 * d2 * index + basis_sum, 2 * d2)
    return value if value > 1 else 1


class SymbolPricing(PricingState):
    """The valuation state of one instrument (its index, mark, last trade and index_stale are
    Prices' C fields, which the margin and liquidation layers read; the mark rule, P1, P2 and
    their span, the rate and what was published are PricingState's, which stage 5 reads)."""
    __slots__ = ("symbol", "spec", "book", "units_per_ticklot", "impact_ticklots", "weights",
                 "quotes", "basis", "basis_sum", "premium", "last_premium", "last_rate",
                 "history", "interest", "clamp", "cap", "share", "ahead", "sweep")

    def __init__(self, symbol: str, spec: PricingSpec, market, impact_units: int, cap: int,
                 history_kept: int):
        self.symbol = symbol
        self.spec = spec
        self.book = market.book
        self.units_per_ticklot = market.units_per_ticklot
        # floor: a whole number of tick x lots, never more than the configured notional
        self.impact_ticklots = impact_units // market.units_per_ticklot
        self.weights = dict(spec.index_sources)
        # the interval's share of an 8-hour rate: scales I and the clamp, or the whole rate
        whole = spec.funding_scaling == "whole_rate"
        self.share = spec.share_of_8h() if whole else 1
        self.interest = spec.interest_rate if whole else spec.scaled(spec.interest_rate)
        self.clamp = spec.funding_clamp if whole else spec.scaled(spec.funding_clamp)
        self.cap = cap
        # the rate payable at a funding time is fixed one interval ahead (BitMEX)
        self.ahead = spec.funding_rate_window == "previous"
        self.quotes: dict[str, tuple[int, int]] = {}       # source -> (price, ts)
        self.index: int | None = None
        self.index_stale = False
        self.mark: int | None = None
        self.last_trade: int | None = None
        # P2's moving average of (mid - index), kept in half ticks: bid + ask - 2 x index
        self.basis: deque[int] = deque(maxlen=spec.mark_window_ns // spec.mark_sample_ns)
        self.basis_sum = 0
        self.premium = funding.PremiumAverage(rising=spec.premium_average == "time_weighted")
        self.last_premium: int | None = None
        # the rate payable at next_funding: with no interval before the first, a premium of zero
        self.predicted = self.rate_of(0)
        self.last_rate = 0
        self.next_funding = 0                               # 0 until the first index price
        # (ts, rate, mark) of the recent settlements for funding_history(); the journal's
        # FundingSettled events hold them all, so they stay out of the state
        self.history: deque[tuple[int, int, int]] = deque(maxlen=history_kept)
        self.published = (None, False, None)                # (mark, stale, (rate, next funding))
        self.set_mark_method(spec.mark_method)              # book_moves: hyperliquid's
        # the rounded P1 and P2, which hold for t in [p_from, p_until] while the index, rate,
        # funding time and basis stay; moved() empties the range when any of those changes
        self.p1 = self.p2 = 0
        self.moved()
        self.sweep = None   # PricingCore.sweep: an interval in transit's payments, in budget

    # ---- index ---------------------------------------------------------------------------------

    def fresh_quotes(self, t: int) -> list[tuple[int, int]]:
        limit = self.spec.index_stale_ns
        return [(price, self.weights.get(source, 1))
                for source, (price, ts) in sorted(self.quotes.items()) if t - ts <= limit]

    def next_expiry(self, t: int) -> int:
        """The first time after t at which a fresh quote goes stale."""
        limit = self.spec.index_stale_ns
        return min((ts + limit + 1 for _, ts in self.quotes.values() if ts + limit >= t),
                   default=_NEVER)

    def next_due(self, t: int) -> int:
        """The first time after t at which a sample, a staleness expiry or a settlement is due."""
        spec = self.spec
        return min(self.next_expiry(t), self.next_funding,
                   (t // spec.premium_sample_ns + 1) * spec.premium_sample_ns,
                   (t // spec.mark_sample_ns + 1) * spec.mark_sample_ns)

    def update_index(self, seq: int, t: int, events: list) -> bool:
        """Recomputes the index from the quotes fresh at t; True if it changed."""
        fresh = self.fresh_quotes(t)
        if not fresh:
            if self.index_stale or self.index is None:
                return False
            self.index_stale = True
            events.append(m.IndexStale(seq, t, self.symbol, self.index))
            return True
        value = index_price(fresh, self.spec.index_cap)
        if value == self.index and not self.index_stale:
            return False
        self.index = value
        self.index_stale = False
        self.moved()
        events.append(m.IndexPriceUpdated(seq, t, self.symbol, value, len(fresh)))
        return True

    # ---- samples -------------------------------------------------------------------------------

    def sample(self, a: int, b: int) -> bool:
        """Adds the premium and basis samples due in (a, b], over which the book and the index are
        constant. No sample is taken against a stale or missing index, nor a premium sample of an
        empty book (nor a basis sample of a one-sided one). True if any was added."""
        if self.index is None or self.index_stale or b <= a:
            return False
        spec = self.spec
        added = False
        k = b // spec.premium_sample_ns - a // spec.premium_sample_ns
        if k:
            book = self.book
            value = funding.premium(self.index, book.impact(1, self.impact_ticklots),
                                    book.impact(0, self.impact_ticklots))
            if value is not None:
                self.last_premium = value
                self.premium.add(value, k)
                if not self.ahead:      # ahead, the samples make the rate of the next interval
                    self.predicted = self.rate_of(self.premium.value())
                added = True
        k = b // spec.mark_sample_ns - a // spec.mark_sample_ns
        bid, ask = self.book.best_bid(), self.book.best_ask()
        if k and bid is not None and ask is not None:
            self.add_basis(bid + ask - 2 * self.index, k)
            added = True
        if added:
            self.moved()
        return added

    def add_basis(self, value: int, k: int) -> None:
        """k basis samples of one value, the window's newest (its oldest pushed out)."""
        basis = self.basis
        k = min(k, basis.maxlen)        # older ones would leave the window again
        drop = max(0, len(basis) + k - basis.maxlen)
        self.basis_sum += value * k - sum(islice(basis, drop))
        basis.extend(repeat(value, k))  # in one C call

    # ---- mark ----------------------------------------------------------------------------------

    def moved(self) -> None:
        """The index, the predicted rate, the funding time or the basis changed: P1 and P2 are
        worked out afresh at the next mark."""
        self.p_from, self.p_until = _NEVER, -_NEVER

    def compute_mark(self, t: int) -> int | None:
        index = self.index
        if index is None:
            return None
        spec = self.spec
        if not self.p_from <= t <= self.p_until:
            nf = self.next_funding
            self.p1, shortest, longest = fair_price_span(index, self.predicted, nf - t,
                                                         spec.funding_interval_ns)
            self.p_from, self.p_until = nf - longest, nf - shortest
            self.p2 = basis_price(index, self.basis_sum, len(self.basis))
        bid = ask = None
        if self.book_moves:
            bid, ask = self.book.best_bid(), self.book.best_ask()
        mark = median_mark(spec.mark_method, index, self.p1, self.p2, self.last_trade, bid, ask)
        if mark is None:    # a mean of two: exact from the unrounded inputs
            mark = mark_price(spec.mark_method, index, self.predicted, self.next_funding - t,
                              spec.funding_interval_ns, self.basis_sum, len(self.basis),
                              self.last_trade, bid, ask)
        return mark

    def publish(self, seq: int, t: int, events: list) -> None:
        """Recomputes the mark; emits MarkPriceUpdated / FundingRateUpdated for what changed."""
        mark = self.mark = self.compute_mark(t)
        old, stale, rate = self.published
        if mark != old or self.index_stale != stale:
            if mark is not None:
                events.append(m.MarkPriceUpdated(seq, t, self.symbol, mark, self.index,
                                                 self.index_stale))
        elif rate is not None and rate[0] == self.predicted and rate[1] == self.next_funding:
            return      # nothing changed (the common case: a trade at an unchanged mark)
        now_rate = (self.predicted, self.next_funding)
        if self.index is not None and now_rate != rate:
            events.append(m.FundingRateUpdated(seq, t, self.symbol, self.predicted,
                                               self.next_funding))
        self.published = (mark, self.index_stale, now_rate)

    # ---- funding -------------------------------------------------------------------------------

    def rate_of(self, avg_premium: int) -> int:
        """The funding rate per interval for an average premium."""
        return funding.funding_rate(avg_premium, self.interest, self.clamp, self.cap, self.share)

    def settle(self, seq: int, t: int, margin, events: list) -> None:
        """The funding payment at t (== next_funding) at the current mark and predicted rate: an
        interval in transit (perpcore.funding), whose payments PricingCore.sweep settles from this
        instant on; or all at once where it cannot be spread exactly. Valued at the mark, or the
        index (PricingSpec.funding_price), which the events' and the history's mark fields carry."""
        rate = self.predicted
        mark = self.index if self.spec.funding_price == "index" else self.compute_mark(t)
        symbol, append = self.symbol, events.append
        sr = margin.symbols[symbol]
        per_lot = mark * self.units_per_ticklot * abs(rate)
        self.history.append((t, rate, mark))
        self.close_interval(t)
        longs, shorts = sr.open_interest()
        # spread only what is exact: open interest netting to zero (receivers then never share
        # the pool pro rata, which needs every payer's payment first) and every product and sum
        # within 128 bits (|size| x per_lot <= open interest x per_lot)
        if per_lot and longs == shorts and longs * per_lot < _SPREADABLE and abs(rate) < 2**63:
            _funding.begin(margin, sr, t, mark, rate, per_lot)
            self.sweep(sr, events)      # the first payments at the funding time itself
            return
        # the per-position work in one C pass (perpcore._funding), exactly the plain steps below,
        # which run when a figure does not fit its 128-bit integers
        settled = _funding.settle(margin, symbol, mark, rate, self.units_per_ticklot, seq, t,
                                  events)
        if settled is None:
            positions = margin.open_positions(symbol)
            pays, remainder = funding.payments(positions, mark, rate, self.units_per_ticklot)
            margin.settle_funding(symbol, pays, remainder)
            # pays lists the non-zero positions in their order: payers first, as the C pass
            paid = 0
            sized = list(zip(pays, [size for _, size in positions if size]))
            for pays_out in (True, False):
                for (account, amount), size in sized:
                    if (amount < 0) == pays_out:
                        paid -= min(amount, 0)
                        append(m.FundingPaid(seq, t, symbol, account, size, mark, rate, amount))
            settled = len(pays), paid, remainder
        count, paid, remainder = settled
        append(m.FundingSettled(seq, t, symbol, rate, mark, count, paid, paid - remainder,
                                remainder))

    def close_interval(self, t: int) -> None:
        """The funding clock past the settlement at t: its rate recorded, a new interval begun,
        whose rate payable is the new interval's own (no sample yet) or, fixed ahead, the rate
        of the interval just ended."""
        self.last_rate = self.predicted
        self.predicted = self.rate_of(self.premium.value() if self.ahead else 0)
        self.premium.reset()
        self.next_funding = t + self.spec.funding_interval_ns
        self.moved()

    def held(self, margin) -> bool:
        """True when some account holds a position in the symbol (only then does a settlement
        move money and report: FundingPaid, FundingSettled, the history) or an interval of it is
        in transit (the next settlement completes it). Positions do not change on the clock, so
        this holds for a whole advance(). O(1): the open interest."""
        if margin is None:
            return False
        sr = margin.symbols[self.symbol]
        return sr.transit is not None or any(sr.open_interest())

    def skip(self, a: int, t: int) -> int:
        """The settlements before t of a symbol nobody holds, and the samples up to the last of
        them, in O(1): they pay nobody, so they only move the funding clock. No quote expires
        before t, so the book and the index are constant over (a, t): every sample of the stretch
        is the same, and only the last interval leaves a trace (its rate, from its own samples),
        or the last two where a rate is fixed an interval ahead (the one paid at the last
        settlement and the one fixed there). Returns the time of the last of them."""
        interval = self.spec.funding_interval_ns
        last = self.next_funding + (t - 1 - self.next_funding) // interval * interval
        first = max(self.next_funding, last - interval if self.ahead else last)
        if first > self.next_funding:
            self.sample(a, first - interval)
            self.close_interval(first - interval)
            a = first - interval
        for settlement in range(first, last + 1, interval):
            self.sample(a, settlement)
            self.close_interval(settlement)
            a = settlement
        return last

    def step(self, seq: int, a: int, t: int, expired: bool, changed: bool, held: bool, margin,
             events: list) -> None:
        """The instant t, the symbol's state being that of a: the samples strictly before t (they
        see the old index), staleness when a quote expired at t, the sample at t, a settlement
        due at t (quiet when nobody holds the symbol); the mark and rate published if anything
        changed."""
        changed |= self.sample(a, t - 1)
        if expired:
            changed |= self.update_index(seq, t, events)
        changed |= self.sample(t - 1, t)
        if t == self.next_funding:
            sr = margin.symbols[self.symbol] if held else None
            if sr is not None and sr.transit is not None:
                # a next funding time arriving first completes the interval in transit
                _funding.sweep(margin, sr, margin.account_ids, -1, events, seq, t)
            if sr is not None and any(sr.open_interest()):
                self.settle(seq, t, margin, events)
            else:
                self.close_interval(t)
            changed = True
        if changed:
            self.publish(seq, t, events)

    # ---- snapshots -----------------------------------------------------------------------------

    def to_state(self) -> dict:
        return {
            "quotes": sorted((s, p, ts) for s, (p, ts) in self.quotes.items()),
            "index": self.index, "index_stale": self.index_stale, "mark": self.mark,
            "last_trade": self.last_trade, "basis": list(self.basis),
            "premium": (self.premium.count, self.premium.weighted),
            "last_premium": self.last_premium, "predicted": self.predicted,
            "last_rate": self.last_rate, "next_funding": self.next_funding,
            "published": [self.published[0], self.published[1],
                          list(self.published[2]) if self.published[2] else None],
        }

    def from_state(self, data: dict) -> None:
        self.quotes = {s: (p, ts) for s, p, ts in data["quotes"]}
        self.index, self.index_stale = data["index"], data["index_stale"]
        self.mark, self.last_trade = data["mark"], data["last_trade"]
        self.basis.clear()
        self.basis.extend(data["basis"])
        self.basis_sum = sum(self.basis)
        self.premium.count, self.premium.weighted = data["premium"]
        self.last_premium = data["last_premium"]
        self.predicted, self.last_rate = data["predicted"], data["last_rate"]
        self.next_funding = data["next_funding"]
        self.history.clear()
        mark, stale, rate = data["published"]
        self.published = (mark, stale, tuple(rate) if rate else None)
        self.moved()


class Pricing(PricingCore):
    """The valuation layer of an Exchange: index, mark and funding for every instrument.

    It reads of the exchange only `config`, `markets[symbol].book` / `.units_per_ticklot`, `clock`,
    `seq` and `components.get("margin")` (the ledger that funding settles through, if any); it
    moves `clock` forward through the instants advance() processes."""

    def __init__(self, exchange):
        config = exchange.config
        symbols: dict[str, SymbolPricing] = {}
        for symbol, market in exchange.markets.items():
            instrument = config.instruments[symbol]
            spec = instrument.pricing
            settle = config.assets[instrument.settle]
            top = instrument.tiers[0]       # the smallest positions: highest leverage, lowest MMR
            # margin / (1 / max leverage) = margin x max leverage: exact
            impact_units = settle.to_units(spec.impact_notional or
                                           spec.impact_margin * top.max_leverage)
            cap = spec.funding_cap or funding.margin_cap(
                spec.funding_cap_rule, spec.funding_cap_k, top.max_leverage, top.maintenance_rate)
            symbols[symbol] = SymbolPricing(symbol, spec, market, impact_units, cap,
                                            config.limits.history_kept)
            symbols[symbol].sweep = self.sweep
        super().__init__(exchange, symbols)

    # ---- commands ------------------------------------------------------------------------------

    def refusal(self, cmd: m.SetIndexPrice) -> tuple[m.RejectCode, str] | None:
        """Why a SetIndexPrice must be refused (the exchange raises it), or None."""
        state = self.symbols.get(cmd.symbol)
        if state is None:
            return m.RejectCode.UNKNOWN_SYMBOL, f"unknown symbol {cmd.symbol!r}"
        if not cmd.source:
            return m.RejectCode.MALFORMED, "index source must not be empty"
        if state.weights and cmd.source not in state.weights:
            return m.RejectCode.MALFORMED, f"{cmd.source!r} is not an index source of {cmd.symbol}"
        if cmd.price <= 0:
            return m.RejectCode.INVALID_PRICE, f"price {cmd.price} must be positive"
        if cmd.price > self.exchange.markets[cmd.symbol].spec.max_price:
            return m.RejectCode.PRICE_OUT_OF_RANGE, f"price {cmd.price} out of range"
        return None

    def set_index(self, symbol: str, source: str, price: int, events: list) -> None:
        """Records a constituent price at the exchange time (already advanced to the command's)."""
        ex = self.exchange
        state = self.symbols[symbol]
        t = ex.clock
        state.quotes[source] = (price, t)
        self.due = 0
        if not state.next_funding:           # the funding clock starts with the first price
            interval = state.spec.funding_interval_ns
            state.next_funding = (t // interval + 1) * interval
            state.moved()
        if state.update_index(ex.seq, t, events):
            state.publish(ex.seq, t, events)

    # ---- the clock -----------------------------------------------------------------------------

    def advance(self, t_end: int, events: list) -> None:
        """Processes everything due in (clock, t_end], in time order: at each instant, staleness
        first, then that instant's samples, then a settlement due then. The instants are the
        staleness expiries and the settlements of held symbols; a symbol nobody holds passes its
        settlements before an instant in O(1) on the way to it (SymbolPricing.skip)."""
        if t_end < self.due:
            return      # the common case: nothing happens before the next command
        ex = self.exchange
        margin = ex.components.get("margin")
        # (state, held) for every symbol with a funding clock (an index price seen)
        states = [(s, s.next_funding <= t_end and s.held(margin))
                  for s in self.symbols.values() if s.next_funding]
        if not states:      # no index yet: nothing runs on the clock until the first price
            self.due = _NEVER
            return
        cur = ex.clock
        while cur < t_end:
            due = [(s.next_expiry(cur), s, held) for s, held in states]
            t = min(t_end, min(min(expiry, s.next_funding if held else _NEVER)
                               for expiry, s, held in due))
            ex._move_clock(t)
            for expiry, s, held in due:
                a = s.skip(cur, t) if s.next_funding < t else cur
                s.step(ex.seq, a, t, expiry == t, a != cur, held, margin, events)
            cur = t
        self.due = min((s.next_due(t_end) for s, _ in states), default=_NEVER)

    def start(self, t: int, events: list) -> None:
        """The exchange clock starts at t, further from 0 than one step may go (the first command
        of a replay at an epoch time): what was set up before it (an index, so a funding clock)
        is due from t on, and nothing for the time before it. The funding clock moves to the
        first settlement time at or after t; the index is as fresh as its quotes are at t."""
        ex = self.exchange
        ex._move_clock(t)
        margin = ex.components.get("margin")
        for s in self.symbols.values():
            if s.next_funding:
                interval = s.spec.funding_interval_ns
                s.next_funding = max(s.next_funding, -(-t // interval) * interval)
                s.moved()
                s.step(ex.seq, t - 1, t, True, False, s.held(margin), margin, events)
        self.due = 0

    # ---- queries -------------------------------------------------------------------------------

    def index_price(self, symbol: str) -> int | None:
        return self.symbols[symbol].index

    def is_stale(self, symbol: str) -> bool:
        """True when no constituent is fresh: the mark rests on an old index and must not
        liquidate anyone. Also True before the first index price."""
        s = self.symbols[symbol]
        return s.index is None or s.index_stale

    def mark_price(self, symbol: str) -> int | None:
        return self.symbols[symbol].mark

    def funding_rate(self, symbol: str) -> int:
        """The rate payable at the next funding time (RATE_SCALE): the predicted rate of the
        running interval, or the rate fixed an interval ahead (funding_rate_window "previous")."""
        return self.symbols[symbol].predicted

    def premium_index(self, symbol: str) -> int | None:
        """The last premium sample (RATE_SCALE); None before the first."""
        return self.symbols[symbol].last_premium

    def last_funding_rate(self, symbol: str) -> int:
        return self.symbols[symbol].last_rate

    def next_funding_time(self, symbol: str) -> int | None:
        return self.symbols[symbol].next_funding or None

    def funding_history(self, symbol: str) -> list[tuple[int, int, int]]:
        """[(ts, rate, mark)] of the recent settlements, oldest first: the newest
        limits.history_kept since the exchange was created or restored. Older ones are the
        journal's FundingSettled events."""
        return list(self.symbols[symbol].history)

    # ---- snapshots -----------------------------------------------------------------------------

    def to_state(self) -> dict:
        return {symbol: s.to_state() for symbol, s in sorted(self.symbols.items())}

    def from_state(self, data: dict) -> None:
        for symbol, s in self.symbols.items():
            s.from_state(data[symbol])
        self.due = 0
