"""Issue 12 item 7: state_hash() and a Store's checkpoint() cost depends on open state, not on
history. Each is measured after 10,000 commands and after 1,000,000 (a tenth of them deposits with
distinct transfer ids), the open state held equal: the same 101 accounts, one maker short against
100 takers long one lot each, no resting orders. The history between is cycles of ten commands
that leave it so: a deposit and a withdrawal (each with a new transfer id), a payment into the
insurance fund, an index price, two orders placed and cancelled, and two clock steps of 5 minutes
(a funding settlement over the same positions every 8 hours). The transfer-id window is held equal
too: limits.transfer_ids_kept = 1,000, which both runs fill (a window's own cost is 24 bytes and
about 70 ns of state_hash() per id, LimitsSpec; test_state_hash_full_window measures a full
default window of 100,000 ids). The 1,000,000 case declares its ratio to the 10,000 one, timed
in turn with it, as the figure of targets state.hash and state.checkpoint (perpcore.bench)."""
import statistics
import time

import msgspec
import pytest

from perpcore import Exchange, default_config
from perpcore import messages as m
from perpcore.config import LimitsSpec
from perpcore.snapshot import Store

BTC = "BTC-PERP"
PRICE = 650000
TAKERS = 100
STEP = 300 * 10**9
SIZES = (10_000, 1_000_000)


def venue(limits: LimitsSpec = LimitsSpec(transfer_ids_kept=1_000)) -> Exchange:
    """The open state: account 1 short TAKERS lots against accounts 2.. long one lot each."""
    cfg = default_config()
    spec = cfg.instruments[BTC]
    pricing = msgspec.structs.replace(spec.pricing, index_stale_ns=10**18)
    ex = Exchange(msgspec.structs.replace(
        cfg, instruments={**cfg.instruments, BTC: msgspec.structs.replace(spec, pricing=pricing)},
        limits=limits))
    ex.submit(m.SetIndexPrice(source="i", symbol=BTC, price=PRICE))
    for a in range(1, TAKERS + 2):
        ex.submit(m.CreateAccount(account=a))
        ex.submit(m.Deposit(account=a, asset="USD", amount=10**10))
    ex.submit(m.PlaceOrder(account=1, symbol=BTC, side=m.Side.SELL, price=PRICE, qty=TAKERS))
    for a in range(2, TAKERS + 2):
        ex.submit(m.PlaceOrder(account=a, symbol=BTC, side=m.Side.BUY, price=PRICE, qty=1,
                               tif=m.TimeInForce.IOC))
    return ex


def run_history(ex: Exchange, commands: int) -> None:
    submit = ex.submit
    ts = ex.clock
    for cycle in range(commands // 10):
        account = 2 + cycle % TAKERS
        ts += STEP
        for cmd in (
                m.Deposit(account=account, asset="USD", amount=10**6, transfer_id=2 * cycle + 1),
                m.Withdraw(account=account, asset="USD", amount=10**6, transfer_id=2 * cycle + 2),
                m.FundInsurance(asset="USD", amount=1),
                m.SetIndexPrice(source="i", symbol=BTC, price=PRICE, ts=ts),
                m.PlaceOrder(account=account, symbol=BTC, side=m.Side.BUY, price=PRICE - 100,
                             qty=1, client_order_id=1),
                m.CancelOrder(account=account, symbol=BTC, client_order_id=1),
                m.PlaceOrder(account=1, symbol=BTC, side=m.Side.SELL, price=PRICE + 100, qty=1,
                             client_order_id=1),
                m.CancelOrder(account=1, symbol=BTC, client_order_id=1),
                m.AdvanceClock(ts=ts + STEP // 2),
                m.AdvanceClock(ts=ts + STEP)):
            first = submit(cmd)[:1]
            assert not first or type(first[0]) is not m.OrderRejected, first
        ts += STEP


@pytest.fixture(scope="module")
def histories(scaled):
    """commands -> an exchange after that many (the set-up's few hundred not counted)."""
    out = {}
    for n in SIZES:
        ex = venue()
        run_history(ex, scaled(n))
        assert len(ex.margin.open_positions(BTC)) == TAKERS + 1
        assert len(ex.markets[BTC].book) == 0
        ex.audit().check()
        out[n] = ex
    return out


def interleaved(small, large, rounds: int) -> float:
    """median(large) / median(small), the two timed in turn: a change of the machine's load (a
    shared VM) hits both alike, which two benchmarks minutes apart do not."""
    times = ([], [])
    for _ in range(rounds):
        for fn, out in ((small, times[0]), (large, times[1])):
            start = time.perf_counter()
            fn()
            out.append(time.perf_counter() - start)
    return statistics.median(times[1]) / statistics.median(times[0])


def store_of(directory, ex: Exchange) -> Store:
    """A Store in a new directory, recovered from a snapshot of the exchange."""
    store = Store.seeded(directory, ex)
    assert store.engine.ex.state_hash() == ex.state_hash()
    return store


@pytest.mark.parametrize("n", SIZES)
def test_state_hash(benchmark, target, histories, n):
    """The larger history's case declares, as target state.hash, its ratio to the smaller one's."""
    ex = histories[n]
    benchmark.extra_info["commands"] = ex.seq
    benchmark.pedantic(ex.state_hash, rounds=50, iterations=1, warmup_rounds=2)
    if n == SIZES[-1]:
        target("state.hash", value=interleaved(histories[SIZES[0]].state_hash, ex.state_hash, 200))


@pytest.mark.parametrize("n", SIZES)
def test_checkpoint(benchmark, target, histories, n, tmp_path):
    """Each round commits the (empty) journal, writes a snapshot, starts a segment and prunes. The
    larger history's case declares its ratio to the smaller one's as target state.checkpoint."""
    ex = histories[n]
    benchmark.extra_info["commands"] = ex.seq
    benchmark.extra_info["snapshot_bytes"] = len(ex.snapshot())
    with store_of(tmp_path / "store", ex) as store:
        benchmark.pedantic(store.checkpoint, rounds=20, iterations=1, warmup_rounds=2)
        if n == SIZES[-1]:
            with store_of(tmp_path / "small", histories[SIZES[0]]) as small:
                target("state.checkpoint",
                       value=interleaved(small.checkpoint, store.checkpoint, 100))


def test_state_hash_full_window(benchmark, scaled):
    """The small venue with the default window full (100,000 ids; filled through the ledger, as
    a hundred thousand transfers would)."""
    ex = venue(LimitsSpec())
    window = ex.margin.ledger.transfers
    assert window.kept == LimitsSpec().transfer_ids_kept
    n = scaled(window.kept)
    for i in range(n):
        window.add(2 + i % TAKERS, i + 1, ex.clock)
    benchmark.extra_info["ids"] = n
    benchmark.pedantic(ex.state_hash, rounds=10, iterations=1, warmup_rounds=1)
