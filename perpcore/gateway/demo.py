"""`perpcore serve --demo`: the built-in venue brought to life, for a newcomer to point ccxt at.

A seeded random walk feeds each symbol's index once a second (source "demo"), and a market maker
(account 1) requotes five levels a side around it; account 2 is the newcomer's, with an API key
printed at start. Both are created on the first start and kept in the store (`gateway-demo.json`),
so a restart resumes the same venue.
"""
from __future__ import annotations

import asyncio
import json
import random

from perpcore import messages as m

DEMO_FILE = "gateway-demo.json"
START = {"BTC": "65000", "ETH": "3000"}        # first index price by base asset
LEVELS = 5


class Demo:
    """Index feeds and a market maker driving a started Venue through its runner."""

    def __init__(self, venue, seed: int = 1, interval: float = 1.0):
        self.venue = venue
        self.rng = random.Random(seed)
        self.interval = interval
        self.task: asyncio.Task | None = None

    async def start(self) -> dict:
        """Creates (or finds) the demo accounts; starts the feed; the trader's key and secret."""
        path = self.venue.dir / DEMO_FILE
        if path.exists():
            info = json.loads(path.read_text())
        else:
            runner, usd = self.venue.runner, self.venue.config.assets["USD"]
            for account, amount in ((1, "100000000"), (2, "100000")):
                await runner.submit(m.CreateAccount(account=account))
                await runner.submit(m.Deposit(account=account, asset="USD",
                                              amount=usd.to_units(amount)))
            key = self.venue.gateway.keys.create(2)
            info = {"maker": 1, "trader": 2, "apiKey": key.key, "secretKey": key.secret}
            path.write_text(json.dumps(info))
        self.prices = {}
        for symbol, spec in self.venue.config.instruments.items():
            last = await self.venue.runner.query(lambda ex, s=symbol: ex.index_price(s))
            self.prices[symbol] = last or spec.to_ticks(START.get(spec.base, "100"))
        self.maker = info["maker"]
        await self._step()                  # quotes in the book before anyone is told the key
        self.task = asyncio.ensure_future(self._run())
        return info

    async def stop(self) -> None:
        """Stops the feed (the venue goes on)."""
        if self.task is not None:
            self.task.cancel()
            try:
                await self.task
            except asyncio.CancelledError:
                pass

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            await self._step()

    async def _step(self) -> None:
        """One tick: each index moves, and the maker requotes around it."""
        runner, maker = self.venue.runner, self.maker
        for symbol, spec in sorted(self.venue.config.instruments.items()):
            price = self.prices[symbol]
            price = max(spec.price_step, int(price * (1 + self.rng.gauss(0, 0.0005))))
            price -= price % spec.price_step
            self.prices[symbol] = price
            await runner.submit(m.SetIndexPrice(source="demo", symbol=symbol, price=price))
            await runner.submit(m.CancelAll(account=maker, symbol=symbol))
            step = max(spec.price_step, price // 5000 // spec.price_step * spec.price_step)
            qty = spec.to_lots("0.05") if spec.base == "BTC" else spec.to_lots("0.5")
            await runner.submit_many(
                m.PlaceOrder(account=maker, symbol=symbol, side=side, qty=qty,
                             price=price + sign * level * step, tif=m.TimeInForce.POST_ONLY)
                for level in range(1, LEVELS + 1)
                for side, sign in ((m.Side.BUY, -1), (m.Side.SELL, 1)))
