"""Funding settlements (perpcore.funding's model: an interval in transit, swept over the commands
after its funding time). Issue 3's target, a settlement over 100,000 open positions (< 200 ms),
is the whole settlement: the AdvanceClock that crosses the funding time (premium samples of 8 h in
closed form, the first payments) and the commands after it until FundingSettled (AdvanceClock at
that time, which does nothing else), each with its ledger transfers, FundingPaid events and the
liquidation engine's pass over the payers. Issue 13's, no single command above 1 ms at 1,000,000
open positions, is the longest of those commands, in CPU time of the engine's thread (this is a
shared machine: wall time adds whatever else ran; both are in extra_info). For the breakdown:
the sweep alone (perpcore._funding, no stage 5 or 6) and the plain payment rule
(perpcore.funding.payments, which the sweep must equal). The venue: one maker short against n
takers long one lot each."""
import time

import msgspec
import pytest

from perpcore import Exchange, _funding, default_config
from perpcore import messages as m
from perpcore.bench import quiet_gc
from perpcore.funding import payments

BTC = "BTC-PERP"
PRICE = 650000
MAKER_LOTS = 100_000    # a maker's short: 6.5M USD, within the risk limit at the default leverage


def positions_venue(n: int) -> Exchange:
    """BTC-PERP at index PRICE (a source that never goes stale), n taker accounts (2 .. n + 1)
    long one lot each against a maker short (account 1, and n + 2, n + 3, ... past 100,000 lots,
    the risk limit's reach): n + 1 open positions up to 100,000, one more a 100,000 beyond."""
    cfg = default_config()
    spec = cfg.instruments[BTC]
    pricing = msgspec.structs.replace(spec.pricing, index_stale_ns=10**18)
    ex = Exchange(msgspec.structs.replace(cfg, instruments={
        **cfg.instruments, BTC: msgspec.structs.replace(spec, pricing=pricing)}))
    submit = ex.submit
    submit(m.SetIndexPrice(source="i", symbol=BTC, price=PRICE))
    for k, maker in enumerate([1, *range(n + 2, n + 1 + makers(n))]):
        submit(m.CreateAccount(account=maker))
        submit(m.Deposit(account=maker, asset="USD", amount=10**13))
        placed = submit(m.PlaceOrder(account=maker, symbol=BTC, side=m.Side.SELL,
                                     price=PRICE + 10, qty=min(MAKER_LOTS, n - k * MAKER_LOTS)))
        assert type(placed[0]) is m.OrderAccepted, placed
    for a in range(2, n + 2):
        submit(m.CreateAccount(account=a))
        submit(m.Deposit(account=a, asset="USD", amount=100 * 10**6))
        submit(m.PlaceOrder(account=a, symbol=BTC, side=m.Side.BUY, price=PRICE + 10, qty=1,
                            tif=m.TimeInForce.IOC))
    return ex


def makers(n: int) -> int:
    return 1 + (n - 1) // MAKER_LOTS


def settlement(ex: Exchange) -> dict:
    """The next settlement, command by command until FundingSettled: its figures, and each
    command's wall and thread CPU time (ns). Callers freeze the venue's objects for the cyclic
    collector (quiet_gc, as perpcore.bench times every population case): a collection's pause
    over a million accounts is not funding's."""
    due = m.AdvanceClock(ts=ex.components["pricing"].next_funding_time(BTC))
    wall, cpu, paid = [], [], 0
    while True:
        c, w = time.thread_time_ns(), time.perf_counter_ns()
        events = ex.submit(due)
        wall.append(time.perf_counter_ns() - w)
        cpu.append(time.thread_time_ns() - c)
        paid += sum(type(e) is m.FundingPaid for e in events)
        settled = [e for e in events if type(e) is m.FundingSettled]
        if settled:
            return {"settled": settled[0], "paid": paid, "wall": wall, "cpu": cpu}


def record(benchmark, runs: list[dict]) -> None:
    """Per round, sorted: the longest command and the total."""
    benchmark.extra_info.update(
        commands=len(runs[-1]["wall"]),
        longest_cpu_ms=sorted(max(r["cpu"]) / 1e6 for r in runs),
        longest_wall_ms=sorted(max(r["wall"]) / 1e6 for r in runs),
        total_cpu_ms=sorted(sum(r["cpu"]) / 1e6 for r in runs))


@pytest.fixture(scope="module")
def venue(scaled):
    n = scaled(100_000)
    ex = positions_venue(n)
    assert len(ex.margin.open_positions(BTC)) == n + 1
    return ex, n


def test_funding_settlement(benchmark, target, venue):
    ex, n = venue
    target("funding.settlement")
    runs = []

    def settle():
        runs.append(settlement(ex))
    with quiet_gc():
        benchmark.pedantic(settle, rounds=5, iterations=1)
    record(benchmark, runs)
    last = runs[-1]
    assert last["settled"].positions == last["paid"] == n + 1 and last["settled"].rate == 10_000
    ex.audit().check()


@pytest.mark.parametrize("positions", [100_000, 1_000_000])
def test_funding_longest_command(benchmark, target, scaled, positions):
    """The longest command of a settlement (the target: its median over the rounds, CPU time);
    the benchmark's own figure is the whole settlement's wall time."""
    n = scaled(positions)
    ex = positions_venue(n)
    runs = []

    def settle():
        runs.append(settlement(ex))
    with quiet_gc():
        benchmark.pedantic(settle, rounds=4, iterations=1)
    record(benchmark, runs)
    longest = sorted(max(r["cpu"]) for r in runs)
    if positions == 1_000_000:
        target("funding.longest", value=longest[len(longest) // 2] / 1e9)
    assert runs[-1]["paid"] == n + makers(n)
    ex.audit().check()


def test_funding_sweep_alone(benchmark, venue):
    """An interval's whole sweep in one call (no budget, no stage 5 or 6): the per-position work."""
    ex, n = venue
    margin = ex.margin
    sr = margin.symbols[BTC]
    last = []

    def begun():
        last[:] = [[]]
        _funding.begin(margin, sr, ex.clock, PRICE, 10_000, PRICE * sr.upt * 10_000)
        return (margin, sr, margin.account_ids, -1, last[0], ex.seq, ex.clock), {}
    benchmark.pedantic(_funding.sweep, setup=begun, rounds=5, warmup_rounds=1)
    assert len(last[0]) == n + 2 and sr.transit is None
    ex.audit().check()


def test_funding_payments_alone(benchmark, venue):
    ex, n = venue
    positions = ex.margin.open_positions(BTC)
    pays, remainder = benchmark(payments, positions, PRICE, 10_000, 100)
    assert len(pays) == n + 1 and sum(a for _, a in pays) + remainder == 0
