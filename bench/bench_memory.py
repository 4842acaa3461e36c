"""Memory per account (issue 13: at most 600 bytes per account holding positions in both perps,
measured at 1,000,000 accounts). The resident set grows by what the engine keeps per account,
Python objects and C arrays alike (tracemalloc would miss the C side): accounts are created,
funded and given a position in each perp, and the growth of the process's resident set is
divided by their number. Run it at scale with PERPCORE_BENCH_SCALE (1.0: 100,000 accounts;
10: 1,000,000)."""
import gc
import os

from perpcore import Exchange, default_config, workloads
from perpcore import messages as m

PAGE = os.sysconf("SC_PAGE_SIZE")


def resident_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * PAGE


def bytes_per_account(accounts: int) -> float:
    # the set-up of the two-perp mix without its resting books: accounts, deposits, an index per
    # perp and each account's two positions, taken from one maker
    setup = workloads.cross_margin(100, accounts=accounts, prefill=100).setup
    ex = Exchange(default_config())
    gc.collect()
    before = resident_bytes()
    for cmd in setup:
        assert type(ex.submit(cmd)[-1]) is not m.OrderRejected, cmd
    gc.collect()
    grown = resident_bytes() - before
    # what the books keep of the 2 x 100 resting orders and the makers is noise at this scale
    assert ex.audit().ok
    return grown / accounts


def test_bytes_per_account(benchmark, scaled):
    accounts = scaled(100_000, floor=1_000)
    figure = bytes_per_account(accounts)
    benchmark.extra_info.update({"accounts": accounts, "bytes_per_account": round(figure)})
    print(f"\n{accounts:,} accounts holding both perps: {figure:,.0f} bytes per account")
    benchmark.pedantic(lambda: None, rounds=1)
