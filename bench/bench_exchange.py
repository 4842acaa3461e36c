"""Exchange.submit with message objects on the standard mix (accounts, deposits where the venue
takes them, and the prefill are set up untimed)."""
import pytest

from perpcore import bench, workloads


@pytest.fixture(scope="module")
def exchange_workload(scaled):
    return workloads.exchange_workload(workloads.standard(scaled(100_000)))


def _submit_all(submit, cmds):
    for cmd in cmds:
        submit(cmd)


def test_standard_submit(benchmark, target, exchange_workload):
    target("exchange.submit", commands=len(exchange_workload))

    def setup():
        return (bench.fresh_exchange(exchange_workload).submit, exchange_workload.cmds), {}
    benchmark.pedantic(_submit_all, setup=setup, rounds=3)
