"""Types of perpcore._clock (ext/perpcore/_clock.pyx), checked against the built module by
mypy's stubtest (tests/test_packaging.py)."""

from typing import Any

class Clocked:
    due: Any
    def __new__(cls) -> Clocked: ...
    def advance(self, t_end: Any, events: list[Any]) -> Any: ...
    def start(self, t: Any, events: list[Any]) -> Any: ...
