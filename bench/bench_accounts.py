"""Exchange.submit on the standard mix as the number of distinct traders grows (issue 13: a cost per
command flat in the number of accounts; stage 6's keying in C): 100,000 commands over 1,000,
10,000, 100,000 and 1,000,000 accounts (scaled), each funded with 1,000,000 USD (the standard
set-up's 10,000,000 would pass the venue's 2**62 money bound at a million accounts).

Same-run comparison with another build: with PERPCORE_BASELINE set to a checkout whose extensions
are built (git worktree add ../before <commit> && python setup.py build_ext --inplace there), each
case runs on that build and on this one, one after the other, each in a fresh worker process that
imports its build (the same conditions for both: a process that has only set this case up): the
timed part is the submit loop, started and awaited through a pipe (a round trip of microseconds on
a loop of a second or more). Untimed: the workload, the accounts and the prefill. Without a
baseline, this build runs in the benchmark's own process.

    PERPCORE_BASELINE=../before pytest bench/bench_accounts.py --benchmark-only

test_flatness measures the acceptance ratio itself (issue 13: the cost per command at a million
accounts within 1.7x of that at a thousand) in PERPCORE_FLATNESS_PAIRS pairs (5) of fresh workers
of this build, a thousand accounts then a million, one right after the other: on a shared machine
the level of a whole process moves by more than the target's margin, so each ratio is taken
between neighbours, and the median of the pairs is the figure. Twice: with the accounts numbered
in sequence (the register then finds a record by arithmetic, so the command's first read asks for
the record itself) and scattered (found through the register's table: the table's cell, then the
record, two misses in a row).

    pytest bench/bench_accounts.py --benchmark-only -k flatness -s
"""
import os
import statistics
import subprocess
import sys
import time

import msgspec
import pytest

ACCOUNTS = (1_000, 10_000, 100_000, 1_000_000)
COMMANDS = 100_000
FLATNESS_COMMANDS = 300_000     # a third of a second or more a worker: a stall is a smaller part
DEPOSIT = "1000000"
BASELINE = os.environ.get("PERPCORE_BASELINE")
FLATNESS_PAIRS = int(os.environ.get("PERPCORE_FLATNESS_PAIRS", "5"))
SCATTER = 0x9E3779B97F4A7C15 >> 32 | 1     # odd: account x SCATTER is one-to-one


def workload(n: int, accounts: int, scattered: bool = False):
    """The standard mix's Exchange commands over `accounts` accounts (perpcore.workloads),
    numbered 1, 2, 3, ... as a venue numbers its accounts, or, `scattered`, each number times a
    large odd constant (a one-to-one map: the same accounts, no two in sequence)."""
    from perpcore import workloads as w
    wl = w.standard(n, accounts=accounts)
    setup = w.account_setup(accounts, deposit=DEPOSIT)
    setup += w.to_messages(wl.setup, symbol=w.SYMBOL, ts0=1_000_000, ts_step=0)
    xw = w.ExchangeWorkload(wl, setup, w.to_messages(wl.cmds, wl.kinds, symbol=w.SYMBOL))
    if scattered:
        xw.setup, xw.cmds = scatter(xw.setup), scatter(xw.cmds)
    return xw


def scatter(cmds: list) -> list:
    return [msgspec.structs.replace(c, account=c.account * SCATTER) if hasattr(c, "account")
            else c for c in cmds]


def submit_all(submit, cmds) -> None:
    for cmd in cmds:
        submit(cmd)


THIS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Worker:
    """The case in a process importing the build at `path`: it sets an exchange up, then runs the
    commands when told to and says when it is done. Its exit (and the system's reclaiming of its
    memory) is awaited when the next worker is made, outside the timing."""
    done: list = []

    def __init__(self, path: str, n: int, accounts: int, scattered: bool = False):
        while Worker.done:
            Worker.done.pop().wait()
        env = dict(os.environ, PYTHONPATH=os.path.abspath(path))
        self.proc = subprocess.Popen([sys.executable, __file__, str(n), str(accounts),
                                      str(int(scattered))], env=env,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout.readline() == "ready\n"

    def run(self) -> None:
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()
        assert self.proc.stdout.readline() == "done\n"
        Worker.done.append(self.proc)


def serve(n: int, accounts: int, scattered: bool) -> None:
    """The worker's side (this file run as a script)."""
    from perpcore import bench
    xw = workload(n, accounts, scattered)
    submit = bench.fresh_exchange(xw).submit
    print("ready", flush=True)
    assert sys.stdin.readline() == "go\n"
    submit_all(submit, xw.cmds)
    print("done", flush=True)
    os._exit(0)         # no tearing down of the exchange


@pytest.fixture(scope="module", params=ACCOUNTS, ids=lambda a: f"{a}-accounts")
def case(request, scaled):
    n, accounts = scaled(COMMANDS), scaled(request.param, floor=10)
    return n, accounts, workload(n, accounts)


@pytest.mark.parametrize("build", ["this"] + (["baseline"] if BASELINE else []))
def test_standard_submit_by_accounts(benchmark, case, build):
    from perpcore import bench
    n, accounts, xw = case
    benchmark.extra_info.update(commands=n, accounts=accounts, build=build,
                                baseline=BASELINE if build == "baseline" else None)
    if BASELINE:
        path = BASELINE if build == "baseline" else THIS
        benchmark.pedantic(Worker.run, setup=lambda: ((Worker(path, n, accounts),), {}), rounds=3)
    else:
        benchmark.pedantic(submit_all, setup=lambda: ((bench.fresh_exchange(xw).submit, xw.cmds),
                                                      {}), rounds=3)


@pytest.mark.parametrize("ids", ["in-sequence", "scattered"])
def test_flatness(benchmark, scaled, ids):
    n = scaled(FLATNESS_COMMANDS)
    small, large = scaled(ACCOUNTS[0], floor=10), scaled(ACCOUNTS[-1], floor=10)
    ratios = []

    def timed(accounts: int) -> float:
        worker = Worker(THIS, n, accounts, ids == "scattered")
        start = time.perf_counter()
        worker.run()
        return time.perf_counter() - start

    def pairs() -> None:
        for _ in range(FLATNESS_PAIRS):
            ratios.append(timed(large) / timed(small))

    benchmark.pedantic(pairs, rounds=1)
    median = statistics.median(ratios)
    benchmark.extra_info.update(commands=n, accounts=(small, large), ids=ids, ratios=ratios,
                                median=median)
    print(f"\n{large:,} / {small:,} accounts ({ids}), cost per command: "
          + " ".join(f"{r:.2f}" for r in ratios) + f"; median {median:.2f}")


if __name__ == "__main__":
    serve(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == "1")
