"""Exchange.submit with message objects on the standard mix (accounts, deposits where the venue
takes them, and the prefill are set up untimed), on the two-perp mix of accounts holding positions,
and ex.account() on those accounts."""
import pytest

from perpcore import bench, workloads
from perpcore import messages as m


@pytest.fixture(scope="module")
def exchange_workload(scaled, standard_mix):
    return workloads.exchange_workload(standard_mix(scaled(100_000)))


def _submit_all(submit, cmds):
    for cmd in cmds:
        submit(cmd)


def test_standard_submit(benchmark, target, exchange_workload):
    target("exchange.submit", commands=len(exchange_workload))

    def setup():
        return (bench.fresh_exchange(exchange_workload).submit, exchange_workload.cmds), {}
    benchmark.pedantic(_submit_all, setup=setup, rounds=3)


@pytest.fixture(scope="module")
def cross_margin(scaled):
    if not hasattr(m, "Deposit"):
        pytest.skip("the margin layer is not in this build")
    return workloads.cross_margin(scaled(100_000), accounts=scaled(10_000),
                                  prefill=scaled(20_000))


def test_cross_margin_submit(benchmark, target, cross_margin):
    """Every order through the pre-trade margin check, every fill settled, on accounts holding
    positions in both perps."""
    target("margin.submit", commands=len(cross_margin))

    def setup():
        return (bench.fresh_exchange(cross_margin).submit, cross_margin.cmds), {}
    benchmark.pedantic(_submit_all, setup=setup, rounds=3)


def test_account_view(benchmark, target, cross_margin, scaled):
    ex = bench.fresh_exchange(cross_margin)
    _submit_all(ex.submit, cross_margin.cmds)
    accounts = list(range(1, scaled(10_000) + 1, 7))
    target("margin.account", per_round=len(accounts))

    def view_all():
        for a in accounts:
            ex.account(a)
    benchmark.pedantic(view_all, rounds=5)
