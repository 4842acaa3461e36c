"""Memory per account (issue 13: at most 600 bytes per account holding positions in both perps,
measured at 1,000,000 accounts). The resident set grows by what the engine keeps per account,
Python objects and C arrays alike (tracemalloc would miss the C side): accounts are created,
funded and given a position in each perp (pairs_setup), and the growth of the process's resident
set is divided by their number. Run it at scale with PERPCORE_BENCH_SCALE (1.0: 100,000 accounts;
10: 1,000,000)."""
import gc
import os

from perpcore import Exchange, default_config, workloads
from perpcore import messages as m

PAGE = os.sysconf("SC_PAGE_SIZE")


def resident_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * PAGE


def pairs_setup(accounts: int) -> list:
    """Accounts 1..accounts (even), funded, each holding a position in both perps: in each perp,
    account 2i rests an offer of one lot at the mid and account 2i - 1 takes it (odd accounts
    long, even short; no market maker, whose one position would pass its risk limit at scale).
    1M USD each keeps a million accounts inside the venue's money limit (2**62 units)."""
    setup = workloads.account_setup(accounts, deposit="1000000")
    mids = workloads.START_MIDS
    setup += [m.SetIndexPrice(source="bench", symbol=s, price=p) for s, p in mids.items()]
    for a in range(1, accounts, 2):
        for symbol, mid in mids.items():
            setup += [m.PlaceOrder(account=a + 1, symbol=symbol, side=m.Side.SELL, price=mid,
                                   qty=1),
                      m.PlaceOrder(account=a, symbol=symbol, side=m.Side.BUY, price=mid, qty=1,
                                   tif=m.TimeInForce.IOC)]
    return setup


def bytes_per_account(accounts: int) -> float:
    setup = pairs_setup(accounts)
    ex = Exchange(default_config())
    gc.collect()
    before = resident_bytes()
    for cmd in setup:
        assert type(ex.submit(cmd)[-1]) is not m.OrderRejected, cmd
    gc.collect()
    grown = resident_bytes() - before
    assert ex.audit().ok
    assert all(len(ex.margin.accounts[a].positions) == 2 for a in (1, 2, accounts))
    return grown / accounts


def test_bytes_per_account(benchmark, scaled):
    accounts = scaled(100_000, floor=1_000) // 2 * 2
    figure = bytes_per_account(accounts)
    benchmark.extra_info.update({"accounts": accounts, "bytes_per_account": round(figure)})
    print(f"\n{accounts:,} accounts holding both perps: {figure:,.0f} bytes per account")
    benchmark.pedantic(lambda: None, rounds=1)
