"""Types of perpcore._margin (ext/perpcore/_margin.pyx), checked against the built module by
mypy's stubtest (tests/test_packaging.py)."""

from typing import Any

RATE_SCALE: int

def order_margin(
    position: int, lots: int, value: int, mark: Any, buy: bool, upt: int, leverage: int
) -> Any: ...

class Account:
    cash: dict[Any, Any]
    @property
    def id(self) -> Any: ...
    leverage_cap: int
    positions: dict[Any, Any]
    professional: bool
    def __init__(
        self, account: Any, professional: bool, cash: dict[Any, Any], cap: int
    ) -> None: ...

class Interval:
    cursor: Any
    @property
    def mark(self) -> int: ...
    @property
    def number(self) -> int: ...
    @property
    def payer_long(self) -> bool: ...
    @property
    def positions(self) -> int: ...
    @property
    def rate(self) -> int: ...
    receiving: bool
    @property
    def ts(self) -> Any: ...
    def __init__(
        self,
        number: int,
        ts: Any,
        mark: int,
        rate: int,
        per_lot: int,
        receiving: bool = ...,
        cursor: Any = ...,
        paid: int = ...,
        received: int = ...,
        positions: int = ...,
    ) -> None: ...
    def to_state(self) -> Any: ...
    def totals(self) -> Any: ...

class MarginCore:
    _index: Any
    _mark: Any
    accounts: dict[Any, Any]
    auto_exchange: bool
    @property
    def checked(self) -> Account: ...
    collateral: list[Any]
    debts: dict[Any, Any]
    exchange: Any
    fees: dict[Any, Any]
    funding: dict[Any, Any]
    @property
    def in_transit(self) -> int: ...
    lending: Any
    maintenance_shift: int
    @property
    def reason(self) -> str: ...
    reduce_only_dirty: set[Any]
    reduce_only_ids: dict[Any, Any]
    reduce_only_orders: dict[Any, Any]
    settle: str
    symbols: dict[Any, Any]
    def _figures(self, acc: Account) -> Any: ...
    def _leverage_default(self, acc: Account, sr: SymbolRisk) -> Any: ...
    def _position(self, acc: Account, sr: SymbolRisk) -> Any: ...
    @staticmethod
    def _worst_notional(
        pos: Position, sr: SymbolRisk, price: Any, buy: bool, lots: int, value: int
    ) -> Any: ...
    def order_changed(
        self,
        order_id: Any,
        account: Any,
        symbol: Any,
        side: int,
        old_price: int,
        old_qty: int,
        state: Any,
    ) -> Any: ...
    def order_closed(
        self, order_id: Any, account: Any, symbol: Any, side: int, price: int, qty: int
    ) -> Any: ...
    def pending(self, acc: Account) -> Any: ...
    def touch(self, acc: Account, events: list[Any]) -> Any: ...
    def trade(
        self,
        sr: SymbolRisk,
        account: Any,
        buy: bool,
        price: int,
        qty: int,
        fee_rate: int,
        order_id: Any,
        events: list[Any],
    ) -> Any: ...

class Position:
    buy_qty: int
    buy_value: int
    cost: int
    funded: int
    leverage: int
    reduce_only: int
    sell_qty: int
    sell_value: int
    size: int
    def __init__(self, leverage: int) -> None: ...
    def idle(self, default_leverage: int) -> Any: ...
    def signed_cost(self) -> Any: ...

class SymbolRisk:
    @property
    def assuming_buffer(self) -> int: ...
    @property
    def assuming_price(self) -> bool: ...
    @property
    def default_leverage(self) -> int: ...
    intervals: int
    @property
    def maker_fee(self) -> int: ...
    @property
    def max_leverage(self) -> int: ...
    positions: dict[Any, Any]
    prices: Any
    @property
    def symbol(self) -> str: ...
    @property
    def taker_fee(self) -> int: ...
    @property
    def tiers(self) -> TierTable: ...
    transit: Interval
    @property
    def upt(self) -> int: ...
    def __init__(self, config: Any, symbol: str) -> None: ...
    def count_open_interest(self) -> Any: ...
    def open_interest(self) -> Any: ...

class TierTable:
    @property
    def amounts(self) -> tuple[Any, ...]: ...
    @property
    def cap0(self) -> Any: ...
    @property
    def caps(self) -> tuple[Any, ...]: ...
    @property
    def leverages(self) -> tuple[Any, ...]: ...
    @property
    def rate0(self) -> Any: ...
    @property
    def rates(self) -> tuple[Any, ...]: ...
    def __init__(self, spec: Any, config: Any) -> None: ...
    def _price_range(self, k: Any, per_tick: Any) -> Any: ...
    def liquidation_price(self, size: Any, upt: Any, base: Any) -> Any: ...
    def maintenance(self, notional: int) -> Any: ...
    def max_notional(self, leverage: int) -> Any: ...
    def tier(self, notional: Any) -> Any: ...
