"""The benchmark suite: pytest-benchmark cases of the workloads in perpcore.workloads.

Run it with one command from the repository root:

    pytest bench/ --benchmark-only                     # timed
    pytest bench/ --benchmark-json=bench-results/suite.json \
        && python bench/figures.py --suite bench-results/suite.json

It stays out of the default test run (testpaths is tests/). Files here are named bench_*.py and
collected by the hook below; their test functions are named test_* as usual. Sizes scale with the
environment variable PERPCORE_BENCH_SCALE (default 1.0): tests/test_bench.py runs the suite once at
a tiny scale with --benchmark-disable, so no benchmark can rot.

A benchmark that measures one of the issues' targets says so with the `target` fixture, under a key
of figures.TARGETS (bench/figures.py); `python bench/figures.py --suite` then shows its median
beside the target (and writes it into the README's Figures section with --readme):

    def test_funding_settlement(benchmark, target):
        target("funding.settlement")                         # seconds per round, the median
        benchmark(settle)

    def test_journal_replay(benchmark, target, scaled):
        n = scaled(500_000)
        target("journal.replay", commands=n)                 # a rate: n / median seconds
        benchmark.pedantic(replay, setup=..., rounds=5)

    target("journal.group_commit", value=0.12)              # or a figure computed by the test
"""
import os

import pytest

from figures import TARGETS

from perpcore import workloads

SCALE = float(os.environ.get("PERPCORE_BENCH_SCALE", "1"))


def scale(n: int, floor: int = 100) -> int:
    """n at the suite's scale, never below `floor` (a workload needs a few commands to be one)."""
    return max(floor, int(n * SCALE))


def pytest_collect_file(file_path, parent):
    """Collects bench_*.py under bench/ as test modules (pytest's default pattern is test_*.py;
    a file named on the command line pytest collects by itself)."""
    if (file_path.suffix == ".py" and file_path.name.startswith("bench_")
            and not parent.session.isinitpath(file_path)):
        return pytest.Module.from_parent(parent, path=file_path)
    return None


@pytest.fixture(scope="session")
def scaled():
    return scale


@pytest.fixture
def target(benchmark):
    """Declares which target of figures.TARGETS this benchmark measures."""
    def declare(key: str, *, commands: int | None = None, per_round: int | None = None,
                value: float | None = None):
        if key not in TARGETS:
            raise KeyError(f"unknown target {key!r}; known: {sorted(TARGETS)}")
        benchmark.extra_info["target"] = key
        for name, given in (("commands", commands), ("per_round", per_round), ("value", value)):
            if given is not None:
                benchmark.extra_info[name] = given
    return declare


def standard(n: int):
    """The standard mix of n commands (already scaled), its set-up (accounts, prefill) scaled
    too."""
    return workloads.standard(n, prefill=scale(20_000), accounts=scale(10_000))


@pytest.fixture(scope="session")
def standard_mix():
    """standard(n): the standard mix with its set-up at the suite's scale (a tiny suite run must
    not set up 10,000 accounts and 20,000 resting orders per round)."""
    return standard


@pytest.fixture(scope="session")
def standard_workload():
    return standard(scale(200_000))


@pytest.fixture(scope="session")
def deep_workload():
    return workloads.deep_book(scale(100_000), resting=scale(1_000_000, floor=1_000),
                               accounts=scale(10_000))


@pytest.fixture(scope="session")
def wide_workload():
    return workloads.wide_range(scale(100_000), prefill=scale(20_000, floor=1_000),
                                accounts=scale(10_000))
