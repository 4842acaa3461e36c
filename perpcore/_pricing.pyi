"""Types of perpcore._pricing (ext/perpcore/_pricing.pyx), checked against the built module by
mypy's stubtest (tests/test_packaging.py)."""

from typing import Any
from perpcore._clock import Clocked

class PricingCore(Clocked):
    book_moves: bool
    exchange: Any
    median_mark: Any
    symbols: dict[Any, Any]
    def __new__(cls) -> PricingCore: ...
    def after_command(self, events: list[Any]) -> Any: ...
    def carry(self, events: list[Any]) -> Any: ...
    def sweep(self, sr: Any, events: list[Any]) -> Any: ...
