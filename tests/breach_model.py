"""The reference model of perpcore._liquidation.BreachIndex: the breach index the engine kept in
Python, over SortedLists, before the C one (tests/test_breach_index.py runs both on the same
streams).

A price dimension is anything one price moves (a symbol's mark, a collateral's index). Each account
has, per dimension it is exposed to, one trigger: DOWN (a long, collateral) fires when the price
falls to the trigger or below, UP (a short) when it rises to the trigger or above; a trigger of None
fires on any update of that dimension (an account that must be looked at whatever the price: already
in breach but deferred, or valued without a price yet). When a dimension's price moves, crossed()
returns exactly the accounts whose trigger the new price reaches, in O(log n + k).
"""
from __future__ import annotations

from typing import Hashable, Iterable

from sortedcontainers import SortedList

DOWN = 0
UP = 1


def _earlier(old: tuple, new: tuple) -> bool:
    """Each old trigger is for the same exposure as the new one and fires no later."""
    if len(old) != len(new) or not new:
        return False
    for (dim, direction, was), (dim2, direction2, now) in zip(old, new):
        if dim != dim2 or direction != direction2:
            return False
        if was is None:
            continue
        if now is None or (was < now if direction == DOWN else was > now):
            return False
    return True


class BreachIndex:
    __slots__ = ("_down", "_up", "_any", "_entries")

    def __init__(self):
        self._down: dict[Hashable, SortedList] = {}     # dim -> (trigger, account)
        self._up: dict[Hashable, SortedList] = {}
        # (dim, direction) -> accounts to look at on any move (the engine's index kept one set per
        # dim, which lost an account whose two 'any move' entries there became one)
        self._any: dict[tuple, set[int]] = {}
        self._entries: dict[int, tuple] = {}    # account -> ((dim, direction, trigger), ...)

    def set(self, account: int, triggers: Iterable[tuple[Hashable, int, int | None]],
            keep_earlier: bool = False) -> None:
        """Replaces the account's triggers with (dim, DOWN/UP, price or None) entries. With
        keep_earlier, triggers for the same exposures that each fire no later than the new ones
        stay as they are (still a safe bound, and no sorted list is touched). Only the entries
        that change move in the sorted lists (an entry given twice counts once)."""
        entries = tuple(dict.fromkeys(triggers))
        old = self._entries.get(account, ())
        if old == entries or keep_earlier and _earlier(old, entries):
            return
        for entry in old:
            if entry not in entries:
                self._remove(account, *entry)
        for entry in entries:
            if entry not in old:
                self._add(account, *entry)
        if entries:
            self._entries[account] = entries
        else:
            del self._entries[account]

    def _add(self, account: int, dim: Hashable, direction: int, price: int | None) -> None:
        if price is None:
            self._any.setdefault((dim, direction), set()).add(account)
            return
        side = self._down if direction == DOWN else self._up
        lst = side.get(dim)
        if lst is None:
            lst = side[dim] = SortedList()
        lst.add((price, account))

    def _remove(self, account: int, dim: Hashable, direction: int, price: int | None) -> None:
        if price is None:
            self._any[dim, direction].discard(account)
        else:
            (self._down if direction == DOWN else self._up)[dim].remove((price, account))

    def discard(self, account: int) -> None:
        for entry in self._entries.pop(account, ()):
            self._remove(account, *entry)

    def crossed(self, dim: Hashable, price: int) -> list[int]:
        """The accounts whose trigger in `dim` the price reaches, sorted by id."""
        found = set(self._any.get((dim, DOWN), ())) | self._any.get((dim, UP), set())
        down = self._down.get(dim)
        if down:
            # triggers >= price: (price,) sorts before every (price, account)
            found.update(account for _, account in down.islice(down.bisect_left((price,))))
        up = self._up.get(dim)
        if up:
            # triggers <= price: (price + 1,) sorts after every (price, account)
            found.update(account for _, account in up.islice(0, up.bisect_left((price + 1,))))
        return sorted(found)

    def reaches(self, dim: Hashable, price: int) -> bool:
        """True when crossed(dim, price) would find someone, in O(1): the highest DOWN trigger or
        the lowest UP trigger is reached, or an account is to be looked at on any move."""
        if self._any.get((dim, DOWN)) or self._any.get((dim, UP)):
            return True
        down = self._down.get(dim)
        if down and down[-1][0] >= price:
            return True
        up = self._up.get(dim)
        return bool(up) and up[0][0] <= price

    def triggers(self, account: int) -> tuple:
        """The account's entries, as set (empty if none)."""
        return self._entries.get(account, ())

    def clear(self) -> None:
        self._down.clear()
        self._up.clear()
        self._any.clear()
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, account: int) -> bool:
        return account in self._entries
