"""The gateway: `perpcore serve`, a Binance USDⓈ-M-compatible venue on the engine runner.

Needs the optional extra: `pip install 'perpcore[gateway]'` (aiohttp).
"""
from perpcore.gateway.server import Venue

__all__ = ["Venue"]
