"""The order book on the benchmark workloads: one Python call per command and the batch entry point,
the Cython book against the pure-Python reference, the standard mix, a deep book, a wide price
range, and memory per resting order."""
import pytest

from refbook import ReferenceBook     # tests/refbook.py, on the path as figures puts it

from perpcore import _book, bench, workloads

IMPLS = pytest.mark.parametrize("cls", [_book.OrderBook, ReferenceBook],
                               ids=["cython", "reference"])
ROUNDS = 5


def _calls(calls):
    for f, args in calls:
        f(*args)


def _per_call(benchmark, cls, wl, rounds):
    def setup():
        return (workloads.call_list(bench.fresh_book(cls, wl), wl.cmds),), {}
    benchmark.extra_info["commands"] = len(wl.cmds)
    benchmark.pedantic(_calls, setup=setup, rounds=rounds)


def _batch(benchmark, cls, wl, rounds):
    def setup():
        return (bench.fresh_book(cls, wl), wl.cmds), {}
    benchmark.extra_info["commands"] = len(wl.cmds)
    benchmark.pedantic(lambda book, cmds: book.process_batch(cmds), setup=setup, rounds=rounds)


@IMPLS
def test_standard_per_call(benchmark, target, cls, standard_workload):
    if cls is _book.OrderBook:
        target("book.call", commands=len(standard_workload))
    _per_call(benchmark, cls, standard_workload, ROUNDS if cls is _book.OrderBook else 1)


@IMPLS
def test_standard_batch(benchmark, target, cls, standard_workload):
    if cls is _book.OrderBook:
        target("book.batch", commands=len(standard_workload))
    _batch(benchmark, cls, standard_workload, ROUNDS if cls is _book.OrderBook else 1)


def test_deep_book_per_call(benchmark, deep_workload):
    _per_call(benchmark, _book.OrderBook, deep_workload, 3)


def test_deep_book_batch(benchmark, deep_workload):
    _batch(benchmark, _book.OrderBook, deep_workload, 3)


def test_deep_book_memory_per_order(benchmark, target, deep_workload):
    """Building the deep book, timed; bytes per resting order reported against the target."""
    book = benchmark.pedantic(bench.fresh_book, args=(_book.OrderBook, deep_workload), rounds=1)
    assert len(book) == len(deep_workload.setup)
    target("book.memory", value=book.memory_bytes() / len(book))


@IMPLS
def test_wide_range_per_call(benchmark, cls, wide_workload):
    _per_call(benchmark, cls, wide_workload, ROUNDS if cls is _book.OrderBook else 1)


def test_wide_range_batch(benchmark, wide_workload):
    _batch(benchmark, _book.OrderBook, wide_workload, ROUNDS)
