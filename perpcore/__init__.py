"""perpcore: an embeddable exchange core for perpetual contracts and crypto margin financing."""
from perpcore import messages
from perpcore.config import RATE_SCALE, AssetSpec, InstrumentSpec, VenueConfig, default_config
from perpcore.exchange import Exchange

__version__ = "0.1.0"
__all__ = ["Exchange", "messages", "default_config", "VenueConfig", "AssetSpec", "InstrumentSpec",
           "RATE_SCALE"]
