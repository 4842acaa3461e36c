"""The real-data samples some tests replay: public captures in ../shared/data next to the
project (the README's "Real-data samples" says where they come from and the layout). A test that
needs one is skipped, with the missing files named, when it is not there."""
from pathlib import Path

import pytest

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
LOBSTER = DATA / "lobster"
BINANCE = DATA / "binance"
LOBSTER_FILES = ("AMZN_2012-06-21_34200000_57600000_message_1.csv",
                 "AMZN_2012-06-21_34200000_57600000_orderbook_1.csv",
                 "AMZN_2021-04-12_34200000_57600000_message_10.csv")
BINANCE_FILES = tuple(f"{market}/{coin}usdt_20240808.gz" for market in ("usdm", "spot")
                      for coin in ("btc", "eth"))


def missing_reason(folder: Path, names: tuple[str, ...]) -> str | None:
    """Why a test of these files cannot run (the files missing, and where to read about them),
    or None when all are there."""
    missing = [name for name in names if not (folder / name).is_file()]
    if not missing:
        return None
    return (f"real-data sample missing: {', '.join(missing)} in {folder} (see the README's "
            f"'Real-data samples' for their source and layout)")


def needs(folder: Path, names: tuple[str, ...]) -> pytest.MarkDecorator:
    reason = missing_reason(folder, names)
    return pytest.mark.skipif(reason is not None, reason=reason or "")


needs_lobster = needs(LOBSTER, LOBSTER_FILES)
needs_binance = needs(BINANCE, BINANCE_FILES)
