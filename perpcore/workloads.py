"""Seeded workloads for benchmarks, shared by `perpcore bench` and the bench/ suite.

A workload is generated once, deterministically from its seed, and then replayed unchanged through
every implementation being measured: the Cython book (one call per command, or the batch entry
point), the pure-Python reference book, and the Exchange (as perpcore.messages commands). The
generator drives its own Cython book while it generates, so a cancel or an amend always names an
order that is really live at that point of the stream, and a "passive" limit never crosses.

The standard matching mix (the matching-core issue): about 38% cancels of live orders, 3% amends
(size down, keeping priority), 52% passive GTC limits 1-60 ticks from mid (exponentially denser near
the top), 5.5% IOC limits crossing up to 5 ticks, 1.5% market orders; 10,000 accounts; the mid
drifts slowly. The deep-book and wide-range workloads are the same mix on other books.
"""
from __future__ import annotations

import importlib
import math
from dataclasses import dataclass, field

import numpy as np

from perpcore import _book
from perpcore._exchange import protection_price
from perpcore import messages as m
from perpcore.config import InstrumentSpec, default_config
from perpcore.exchange import Exchange, config_digest

# What each command of a workload is (a parallel uint8 array; the book array only knows ops).
PASSIVE, CANCEL, AMEND, IOC, MARKET = range(5)
KIND_NAMES = ("passive", "cancel", "amend", "ioc", "market")
STANDARD_MIX = {"cancel": 0.38, "amend": 0.03, "passive": 0.52, "ioc": 0.055, "market": 0.015}

SYMBOL = "BTC-PERP"
START_MIDS = {"BTC-PERP": 650_000, "ETH-PERP": 340_000}      # ticks: 65,000.0 and 3,400.00 USD
TS_STEP_NS = 1_000              # one command per microsecond of exchange time


@dataclass(frozen=True)
class MixParams:
    """The knobs of a matching-mix workload. The defaults are the standard mix."""
    mix: tuple[tuple[str, float], ...] = tuple(STANDARD_MIX.items())
    accounts: int = 10_000
    prefill: int = 20_000           # resting orders placed before the measured commands
    start_mid: int = 650_000        # ticks (BTC-PERP: 65,000.0 USD at a 0.1 tick)
    max_offset: int = 60            # passive limits rest 1..max_offset ticks from mid
    offset_scale: float = 8.0       # mean of the exponential offset: denser near the top
    wide: bool = False              # offsets log-uniform over 1..max_offset instead (sparse levels)
    max_cross: int = 5              # IOC limits cross the touch by 0..max_cross ticks
    maker_qty: float = 4.0          # mean extra lots of a passive order (1 + exponential)
    taker_qty: float = 8.0          # mean extra lots of an IOC or market order
    drift: float = 0.02             # chance per command that the mid moves one tick
    protection: int = 5_000_000     # market protection band (RATE_SCALE), as the venue's


@dataclass
class Workload:
    """A generated stream: `setup` (placed untimed) then `cmds` (measured), both CMD_DTYPE arrays,
    with `kinds` saying what each measured command is."""
    name: str
    seed: int
    params: MixParams
    setup: np.ndarray
    cmds: np.ndarray
    kinds: np.ndarray
    final_resting: int = 0          # resting orders after the whole stream (as generated)
    meta: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.cmds)

    def counts(self) -> dict[str, int]:
        found = np.bincount(self.kinds, minlength=len(KIND_NAMES))
        return {name: int(found[k]) for k, name in enumerate(KIND_NAMES)}

    def describe(self) -> dict:
        """Plain data for a benchmark report: what was run, so results can be compared."""
        p = self.params
        return {"name": self.name, "seed": self.seed, "commands": len(self.cmds),
                "prefill": len(self.setup), "accounts": p.accounts, "mix": dict(p.mix),
                "counts": self.counts(), "max_offset": p.max_offset, "wide": p.wide,
                "final_resting": self.final_resting, **self.meta}


def _offsets(rng: np.random.Generator, n: int, p: MixParams) -> np.ndarray:
    if p.wide:
        # log-uniform: every decade of distance from mid as likely, so the levels are sparse
        return np.minimum(np.exp(rng.uniform(0, math.log(p.max_offset + 1), n)).astype(np.int64),
                          p.max_offset)
    return np.minimum(1 + rng.exponential(p.offset_scale, n).astype(np.int64), p.max_offset)


def _prefill(rng: np.random.Generator, p: MixParams) -> np.ndarray:
    """p.prefill passive GTC orders around start_mid: bids below, asks above, so none trades."""
    n = p.prefill
    out = np.zeros(n, dtype=_book.CMD_DTYPE)
    side = rng.integers(0, 2, n)
    off = _offsets(rng, n, p)
    out["op"] = _book.PLACE
    out["side"] = side
    out["tif"] = _book.GTC
    out["order_id"] = np.arange(1, n + 1)
    out["account"] = rng.integers(1, p.accounts + 1, n)
    out["price"] = np.where(side == _book.BUY, p.start_mid - off, p.start_mid + off)
    out["qty"] = 1 + rng.exponential(p.maker_qty, n).astype(np.int64)
    return out


def matching_mix(n: int, seed: int = 1, params: MixParams | None = None,
                 name: str = "standard") -> Workload:
    """n measured commands of a matching mix after params.prefill resting orders."""
    p = params or MixParams()
    spec = instrument()
    rng = np.random.default_rng(seed)
    setup = _prefill(rng, p)
    names = [k for k, _ in p.mix]
    probs = np.array([w for _, w in p.mix], dtype=float)
    kind_of = {"passive": PASSIVE, "cancel": CANCEL, "amend": AMEND, "ioc": IOC, "market": MARKET}
    draw = np.array([kind_of[k] for k in names], dtype=np.uint8)[
        rng.choice(len(names), size=n, p=probs / probs.sum())]
    # all randomness is drawn up front, vectorised; the loop only applies it
    sides = rng.integers(0, 2, n).tolist()
    offsets = _offsets(rng, n, p).tolist()
    maker_qty = (1 + rng.exponential(p.maker_qty, n).astype(np.int64)).tolist()
    taker_qty = (1 + rng.exponential(p.taker_qty, n).astype(np.int64)).tolist()
    accounts = rng.integers(1, p.accounts + 1, n).tolist()
    picks = rng.random(n).tolist()
    crosses = rng.integers(0, p.max_cross + 1, n).tolist()
    moves = rng.random(n).tolist()
    kinds = draw.tolist()

    model = _book.OrderBook(max(1024, 2 * (p.prefill + n)))
    model.process_batch(setup, keep_fills=False)
    # ids are 1, 2, 3... in order of placement, so plain lists indexed by id serve as maps
    live = setup["order_id"].tolist()            # ids of live orders, any order (swap-remove)
    where = [0] + list(range(p.prefill)) + [0] * n        # id -> its index in `live`
    owner = [0] + setup["account"].tolist() + [0] * n     # id -> account
    next_id = p.prefill + 1
    mid = p.start_mid
    half_drift = p.drift / 2

    def drop(oid):
        i = where[oid]
        last = live.pop()
        if last != oid:
            live[i] = last
            where[last] = i

    ops = [0] * n
    out_side = [0] * n
    out_tif = [0] * n
    out_id = [0] * n
    out_acc = [0] * n
    out_price = [0] * n
    out_qty = [0] * n
    best_bid, best_ask, place, cancel, amend, order = (
        model.best_bid, model.best_ask, model.place, model.cancel, model.amend, model.order)
    for i in range(n):
        mv = moves[i]
        if mv < half_drift:
            mid -= 1
        elif mv < p.drift:
            mid += 1
        kind = kinds[i]
        if (kind == CANCEL or kind == AMEND) and not live:
            kind = PASSIVE
        side = sides[i]
        if kind == MARKET or kind == IOC:
            touch = best_ask() if side == _book.BUY else best_bid()
            if touch is None:
                kind = PASSIVE              # nothing to take: rest instead
        if kind == PASSIVE:
            if side == _book.BUY:
                price = mid - offsets[i]
                ask = best_ask()
                if ask is not None and price >= ask:
                    price = ask - 1
            else:
                price = mid + offsets[i]
                bid = best_bid()
                if bid is not None and price <= bid:
                    price = bid + 1
            oid, acc, qty = next_id, accounts[i], maker_qty[i]
            next_id += 1
            place(oid, acc, side, price, qty)
            where[oid] = len(live)
            live.append(oid)
            owner[oid] = acc
            ops[i], out_tif[i] = _book.PLACE, _book.GTC
        elif kind == CANCEL:
            oid = live[int(picks[i] * len(live))]
            cancel(oid)
            drop(oid)
            acc, side, price, qty = owner[oid], 0, 0, 0
            ops[i] = _book.CANCEL
        elif kind == AMEND:
            oid = live[int(picks[i] * len(live))]
            _, acc, side, price, open_qty, filled, _, _ = order(oid)
            # half the open quantity, same price: a size-down that keeps time priority
            qty = filled + (open_qty + 1) // 2
            amend(oid, price, qty)
            ops[i] = _book.AMEND
        else:
            if kind == IOC:
                price = touch + crosses[i] if side == _book.BUY else max(touch - crosses[i], 1)
            else:
                # the worst price a market order accepts, as the Exchange derives it
                price = protection_price(side, touch, p.protection, spec.max_price,
                                         spec.price_step)
            oid, acc, qty = next_id, accounts[i], taker_qty[i]
            next_id += 1
            place(oid, acc, side, price, qty, _book.IOC)
            for rec in model.fills():
                if rec[7] == 0:             # the maker is used up: no longer live
                    drop(rec[1])
            ops[i], out_tif[i] = _book.PLACE, _book.IOC
        kinds[i] = kind
        out_side[i], out_id[i], out_acc[i], out_price[i], out_qty[i] = side, oid, acc, price, qty

    cmds = np.zeros(n, dtype=_book.CMD_DTYPE)
    for col, values in (("op", ops), ("side", out_side), ("tif", out_tif), ("order_id", out_id),
                        ("account", out_acc), ("price", out_price), ("qty", out_qty)):
        cmds[col] = values
    return Workload(name=name, seed=seed, params=p, setup=setup, cmds=cmds,
                    kinds=np.array(kinds, dtype=np.uint8), final_resting=len(model),
                    meta={"end_mid": mid, "trades": model.trade_count})


def standard(n: int, seed: int = 1, **overrides) -> Workload:
    """The standard matching mix."""
    return matching_mix(n, seed, MixParams(**overrides), name="standard")


def deep_book(n: int, seed: int = 1, resting: int = 1_000_000, **overrides) -> Workload:
    """The standard mix on a book already holding `resting` orders (1,000,000 by default)."""
    overrides.setdefault("offset_scale", 400.0)
    overrides.setdefault("max_offset", 5_000)
    return matching_mix(n, seed, MixParams(prefill=resting, **overrides), name="deep_book")


def wide_range(n: int, seed: int = 1, **overrides) -> Workload:
    """The standard mix with passive offsets log-uniform over 1..200,000 ticks (up to 30% from
    mid): tens of thousands of sparse levels, so best-price moves must not scan empty ticks."""
    overrides.setdefault("max_offset", 200_000)
    return matching_mix(n, seed, MixParams(wide=True, **overrides), name="wide_range")


# ---- the same stream for the Exchange ---------------------------------------------------------

def call_list(book, cmds: np.ndarray) -> list[tuple]:
    """(bound method, args) per command: the cheapest way to make one Python call per command."""
    place, cancel, amend = book.place, book.cancel, book.amend
    out = []
    append = out.append
    for op, side, tif, stp, _, oid, acc, price, qty, cid, _ in cmds.tolist():
        if op == _book.PLACE:
            append((place, (oid, acc, side, price, qty, tif, stp, cid)))
        elif op == _book.CANCEL:
            append((cancel, (oid,)))
        else:
            append((amend, (oid, price, qty)))
    return out


def to_messages(cmds: np.ndarray, kinds: np.ndarray | None = None, symbol: str = SYMBOL,
                ts0: int = 1_000_000_000, ts_step: int = TS_STEP_NS, ts: np.ndarray | None = None,
                id_map: np.ndarray | None = None) -> list[m.Command]:
    """The book commands as perpcore.messages commands, one exchange-time step apart (or at the
    times `ts` gives, one per command).

    A market order (kind MARKET) becomes an OrderType.MARKET with price 0, so the Exchange derives
    the same protection price from the touch that the book stream carries. Order ids match the
    Exchange's own as long as it accepts every placement (ids are assigned in order from 1);
    `id_map[book id]`, when given, is the Exchange's id instead (streams merged with others)."""
    if kinds is None:
        kinds = np.full(len(cmds), PASSIVE, dtype=np.uint8)
    times = (ts0 + ts_step * np.arange(len(cmds), dtype=np.int64) if ts is None else ts).tolist()
    ids = cmds["order_id"] if id_map is None else id_map[cmds["order_id"]]
    out = []
    append = out.append
    sides = (m.Side.BUY, m.Side.SELL)
    tifs = {_book.GTC: m.TimeInForce.GTC, _book.IOC: m.TimeInForce.IOC}
    for op, side, tif, oid, acc, price, qty, kind, t in zip(
            cmds["op"].tolist(), cmds["side"].tolist(), cmds["tif"].tolist(), ids.tolist(),
            cmds["account"].tolist(), cmds["price"].tolist(), cmds["qty"].tolist(),
            kinds.tolist(), times):
        if op == _book.PLACE:
            if kind == MARKET:
                append(m.PlaceOrder(account=acc, symbol=symbol, side=sides[side], qty=qty,
                                    order_type=m.OrderType.MARKET, tif=m.TimeInForce.IOC, ts=t))
            else:
                append(m.PlaceOrder(account=acc, symbol=symbol, side=sides[side], qty=qty,
                                    price=price, tif=tifs[tif], ts=t))
        elif op == _book.CANCEL:
            append(m.CancelOrder(account=acc, symbol=symbol, order_id=oid, ts=t))
        else:
            append(m.AmendOrder(account=acc, symbol=symbol, order_id=oid, price=price, qty=qty,
                                ts=t))
    return out


def account_setup(accounts: int, deposit: str = "10000000") -> list[m.Command]:
    """Accounts 1..accounts, each funded with `deposit` USD where the venue has deposits."""
    cfg = default_config()
    out: list[m.Command] = [m.CreateAccount(account=a, professional=True)
                            for a in range(1, accounts + 1)]
    deposit_cls = getattr(m, "Deposit", None)
    if deposit_cls is not None:
        units = cfg.assets["USD"].to_units(deposit)
        out += [deposit_cls(account=a, asset="USD", amount=units) for a in range(1, accounts + 1)]
    return out


@dataclass
class ExchangeWorkload:
    """A workload as Exchange commands: `setup` (accounts, funding, the prefill) then `cmds`."""
    book: Workload
    setup: list
    cmds: list

    def __len__(self) -> int:
        return len(self.cmds)

    def head(self, n: int) -> ExchangeWorkload:
        """The same set-up and the first n commands."""
        return ExchangeWorkload(self.book, self.setup, self.cmds[:n])


def cross_margin(n: int, seed: int = 1, accounts: int = 10_000, prefill: int = 20_000,
                 lots: int = 5) -> ExchangeWorkload:
    """Accounts holding positions in both perps, then the standard mix in both, interleaved.

    Set-up: the accounts (and a maker, the last account) are created and funded and the index of
    each symbol is set at its mid; every account then takes 1..`lots` lots from the maker in each
    perp, odd accounts long BTC-PERP and short ETH-PERP, even ones the reverse (so a trader's
    margin nets across the two); the maker's orders are exactly used up. Then each perp gets its
    `prefill` resting orders and the n measured commands are the standard mix of the two perps in
    a seeded random interleaving, with the Exchange's order ids (assigned in order of placement
    across both books) mapped in."""
    rng = np.random.default_rng(seed)
    symbols = tuple(START_MIDS)
    which = rng.integers(0, len(symbols), n)            # the perp of each measured command
    sizes = rng.integers(1, lots + 1, (len(symbols), accounts)).tolist()
    maker = accounts + 1
    setup = account_setup(accounts + 1)
    setup += [m.SetIndexPrice(source="bench", symbol=s, price=START_MIDS[s]) for s in symbols]
    placed = 0
    for k, symbol in enumerate(symbols):
        mid = START_MIDS[symbol]
        long = [(a + k) % 2 == 1 for a in range(1, accounts + 1)]
        bought = sum(q for q, is_long in zip(sizes[k], long) if is_long)
        sold = sum(sizes[k]) - bought
        setup += [m.PlaceOrder(account=maker, symbol=symbol, side=m.Side.SELL, qty=bought,
                               price=mid),
                  m.PlaceOrder(account=maker, symbol=symbol, side=m.Side.BUY, qty=sold,
                               price=mid - 1)]
        setup += [m.PlaceOrder(account=a, symbol=symbol, qty=q, tif=m.TimeInForce.IOC,
                               side=m.Side.BUY if is_long else m.Side.SELL,
                               price=mid if is_long else mid - 1)
                  for a, q, is_long in zip(range(1, accounts + 1), sizes[k], long)]
        placed += 2 + accounts
    books = [matching_mix(int((which == k).sum()), seed + 1 + k,
                          MixParams(accounts=accounts, prefill=prefill, start_mid=START_MIDS[s]),
                          name="cross_margin") for k, s in enumerate(symbols)]
    # Exchange ids: the set-up's placements, then each book's prefill, then the measured
    # placements in merged order
    places = np.zeros(n, dtype=bool)
    for k, wl in enumerate(books):
        places[which == k] = wl.cmds["op"] == _book.PLACE
    global_id = placed + len(symbols) * prefill + np.cumsum(places)
    ts_all = 1_000_000_000 + TS_STEP_NS * np.arange(n, dtype=np.int64)
    streams = []
    for k, (symbol, wl) in enumerate(zip(symbols, books)):
        mine = which == k
        id_map = np.zeros(prefill + len(wl.cmds) + 1, dtype=np.int64)
        id_map[1:prefill + 1] = placed + k * prefill + np.arange(1, prefill + 1)
        own_places = wl.cmds["op"] == _book.PLACE
        id_map[wl.cmds["order_id"][own_places]] = global_id[mine][own_places]
        setup += to_messages(wl.setup, symbol=symbol, ts0=1_000_000, ts_step=0, id_map=id_map)
        streams.append(iter(to_messages(wl.cmds, wl.kinds, symbol=symbol, ts=ts_all[mine],
                                        id_map=id_map)))
    cmds = [next(streams[k]) for k in which.tolist()]
    return ExchangeWorkload(book=books[0], setup=setup, cmds=cmds)


def exchange_workload(wl: Workload, symbol: str = SYMBOL) -> ExchangeWorkload:
    setup = account_setup(wl.params.accounts)
    setup += to_messages(wl.setup, symbol=symbol, ts0=1_000_000, ts_step=0)
    cmds = to_messages(wl.cmds, wl.kinds, symbol=symbol)
    return ExchangeWorkload(book=wl, setup=setup, cmds=cmds)


def instrument(symbol: str = SYMBOL) -> InstrumentSpec:
    return default_config().instruments[symbol]


# ---- workloads of the layers above the matching core -------------------------------------------

class LayerMissing(Exception):
    """A workload needs a layer (margin, liquidation, journal...) that this build does not have."""


def layer(module: str):
    """The module of a layer, or LayerMissing (so a benchmark of it is skipped, not failed)."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise LayerMissing(f"{module} is not available ({e})") from None


def write_journal(xw: ExchangeWorkload, path, sync: str = "none") -> int:
    """Runs the workload (set-up and commands) through a JournaledExchange into a journal file at
    `path`; returns the number of records."""
    journal = layer("perpcore.journal")
    ex = Exchange(default_config())
    jx = journal.JournaledExchange(ex, journal.Journal(path, config_digest(ex.config), sync=sync))
    for cmd in xw.setup:
        jx.submit(cmd)
    for cmd in xw.cmds:
        jx.submit(cmd)
    jx.close()
    return ex.seq


def population_config():
    """The default venue, its BTC-PERP index never going stale: a funding settlement hours of
    exchange time later then needs no index feed in between."""
    import msgspec

    cfg = default_config()
    spec = cfg.instruments[SYMBOL]
    pricing = msgspec.structs.replace(spec.pricing, index_stale_ns=10**18)
    return msgspec.structs.replace(cfg, instruments={
        **cfg.instruments, SYMBOL: msgspec.structs.replace(spec, pricing=pricing)})


CASCADE_FALL = 22       # per mille: the index fall that liquidates a population's hot longs


def population(accounts: int, hot: int = 0, seed: int = 1) -> list[m.Command]:
    """Set-up commands of `accounts` accounts holding BTC-PERP positions, for mark moves, funding
    and liquidation: accounts / 2 pairs, each a long and a short of 0.1 BTC opened against each
    other at the index, 2-16x leverage (liquidated only by a move of 5.7% or more); the first
    `hot` longs at 50x with 150-160 USD (liquidated by a fall of 1.8-2%, so CASCADE_FALL takes
    them all in one cascade), and a maker bidding 1.5-1.7% down for all their closing sales.
    Run it on population_config()."""
    rng = np.random.default_rng(seed)
    price = START_MIDS[SYMBOL]
    out: list[m.Command] = [m.SetIndexPrice(source="bench", symbol=SYMBOL, price=price)]
    deposits = rng.integers(400, 3001, accounts).tolist()
    hot_deposits = rng.integers(150, 161, accounts).tolist()
    lots = 100                                  # 0.1 BTC
    for a in range(1, accounts, 2):
        is_hot = a < 2 * hot
        for acc in (a, a + 1):
            usd = hot_deposits[acc - 1] if is_hot and acc == a else deposits[acc - 1]
            out += [m.CreateAccount(account=acc),
                    m.Deposit(account=acc, asset="USD", amount=usd * 10**6)]
        if is_hot:
            out.append(m.SetLeverage(account=a, symbol=SYMBOL, leverage=50))
        out += [m.PlaceOrder(account=a + 1, symbol=SYMBOL, side=m.Side.SELL, qty=lots, price=price),
                m.PlaceOrder(account=a, symbol=SYMBOL, side=m.Side.BUY, qty=lots, price=price,
                             tif=m.TimeInForce.IOC)]
    maker = accounts + 1
    out += [m.CreateAccount(account=maker), m.Deposit(account=maker, asset="USD", amount=10**13)]
    out += [m.PlaceOrder(account=maker, symbol=SYMBOL, side=m.Side.BUY, qty=hot * lots // 20 + 100,
                         price=price * (10_000 - 150 - k) // 10_000) for k in range(20)]
    return out
