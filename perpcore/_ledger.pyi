"""Types of perpcore._ledger (ext/perpcore/_ledger.pyx), checked against the built module by
mypy's stubtest (tests/test_packaging.py)."""

from typing import Any

def move(source: dict[Any, Any], target: dict[Any, Any], asset: str, amount: Any) -> Any: ...
def realise(cash: dict[Any, Any], asset: str, amount: Any) -> Any: ...
