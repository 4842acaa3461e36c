"""perpcore: an embeddable exchange core for perpetual contracts and crypto margin financing."""
from pathlib import Path as _Path

# The compiled half (ext/perpcore/_<name>.pyx). Without it the first `from perpcore import _book`
# below fails as a "circular import", which hides the usual cause: an unbuilt source tree shadowing
# the install.
_EXTENSIONS = ("_binance", "_book", "_clock", "_exchange", "_funding", "_journal", "_ledger",
               "_liquidation", "_margin", "_pricing", "_validate")


def _require_extensions():
    import sys
    from importlib.util import find_spec

    missing = [name for name in _EXTENSIONS if find_spec(f"{__name__}.{name}") is None]
    if not missing:
        return
    here = _Path(__file__).resolve().parent
    if (here.parent / "setup.py").is_file():
        remedy = ("this is perpcore's source tree, which shadows any installed perpcore: build it "
                  "in place with `pip install -e .`, or run from outside the source tree")
    else:
        remedy = "this installation lacks them: reinstall perpcore"
    raise ImportError(f"perpcore's compiled extensions ({', '.join(missing)}) are not built for "
                      f"this Python ({sys.implementation.cache_tag}) in {here}: {remedy}",
                      name=__name__)


_require_extensions()

from perpcore import messages
from perpcore.config import RATE_SCALE, AssetSpec, InstrumentSpec, VenueConfig, default_config
from perpcore.exchange import Exchange

__version__ = "0.1.0"
__all__ = ["Exchange", "messages", "default_config", "VenueConfig", "AssetSpec", "InstrumentSpec",
           "RATE_SCALE"]
