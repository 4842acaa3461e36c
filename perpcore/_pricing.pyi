"""Types of perpcore._pricing (ext/perpcore/_pricing.pyx), checked against the built module by
mypy's stubtest (tests/test_packaging.py)."""

from typing import Any
from perpcore._clock import Clocked
from perpcore._margin import Prices

def median_mark_c(method: str, index: int, p1: int, p2: int, last: int) -> int | None: ...

class PricingState(Prices):
    @property
    def book_moves(self) -> bool: ...
    @property
    def method(self) -> int: ...
    next_funding: Any
    p1: Any
    p2: Any
    p_from: Any
    p_until: Any
    predicted: Any
    published: tuple[Any, Any, Any]
    def set_mark_method(self, method: str) -> Any: ...

class PricingCore(Clocked):
    book_moves: bool
    exchange: Any
    symbols: dict[Any, Any]
    def __new__(cls) -> PricingCore: ...
    def after_command(self, events: list[Any]) -> Any: ...
    def carry(self, events: list[Any]) -> Any: ...
    def market_moved(self, symbol: Any, last_trade: Any, events: list[Any]) -> Any: ...
    def sweep(self, sr: Any, events: list[Any]) -> Any: ...
