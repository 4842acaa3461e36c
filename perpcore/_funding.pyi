"""Types of perpcore._funding (ext/perpcore/_funding.pyx), checked against the built module by
mypy's stubtest (tests/test_packaging.py)."""

from typing import Any

RATE_SCALE: int

def begin(margin: Any, sr: Any, ts: Any, mark: int, rate: int, per_lot: int) -> Any: ...
def open_positions(sr: Any) -> Any: ...
def restore(margin: Any, transit: list[Any]) -> Any: ...
def settle(
    margin: Any,
    symbol: str,
    mark: Any,
    rate: Any,
    units_per_ticklot: Any,
    seq: Any,
    ts: Any,
    events: list[Any],
) -> Any: ...
def sweep(
    margin: Any, sr: Any, ids: Any, budget: int, events: list[Any], seq: Any, ts: Any
) -> Any: ...
