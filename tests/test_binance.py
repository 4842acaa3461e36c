"""perpcore.binance: the depth-diff book on a hand-made feed, then the real captures of 2024-08-08
23:54-24:00 UTC through the book and the pricing layer.

Figures on the real data (perpcore's own valuation; Binance's index is a basket of spot venues, here
Binance spot trades alone, and only the window's minutes are averaged, not the 8 h interval):

                                     BTCUSDT                 ETHUSDT
  depth diffs applied, gaps          6547, 0                 6581, 0
  bookTicker sharing a diff's id     629 of 66046            551 of 53960
  top of book agreement              100% (prices and qty)   100%
  index / mark at the end            61686.0 / 61663.0       2682.50 / 2681.38
  mark - index, mean                 -3.40 bp                -4.18 bp
  premium index samples              -0.0521% .. -0.0269%    -0.0539% .. -0.0281%
  average premium (time-weighted)    -0.0376%                -0.0419%
  predicted funding at the end       0.0100% (the interest:  0.0081% (P + the 0.05%
                                     I - P within the clamp)  clamp, which binds)
"""

import numpy as np
import pytest

from perpcore import _book
from perpcore import binance as bn

from real_data import BINANCE as DATA
from real_data import BINANCE_FILES, missing_reason
MIDNIGHT = 1_723_161_600 * 10**9           # 2024-08-09 00:00 UTC, the next settlement


# ---- the level book on a hand-made feed ----------------------------------------------------------

def level_book():
    config = bn.binance_config()
    return bn.LevelBook(config.instruments["BTCUSDT"], _book.OrderBook())


def test_level_book_follows_snapshot_and_diffs():
    lb = level_book()
    lb.load_snapshot({"lastUpdateId": 100, "bids": [["100.0", "1.000"], ["99.9", "2.000"]],
                      "asks": [["100.1", "0.500"], ["100.2", "3.000"]]})
    assert lb.top() == (1000, 1000, 1001, 500)
    # older than the snapshot: dropped
    assert not lb.apply({"U": 90, "u": 99, "pu": 89, "b": [["100.0", "0"]], "a": []})
    # spans the snapshot: applied; the best ask goes, a new bid level appears at 100.1, which
    # would cross the old ask unless removals go first
    assert lb.apply({"U": 95, "u": 105, "pu": 94, "b": [["100.1", "0.250"], ["99.9", "0"]],
                     "a": [["100.1", "0"], ["100.3", "1.000"]]})
    assert lb.top() == (1001, 250, 1002, 3000) and lb.gaps == 0
    assert lb.book.depth(5) == ([(1001, 250, 1), (1000, 1000, 1)],
                                [(1002, 3000, 1), (1003, 1000, 1)])
    # continues the chain (pu = last u): a quantity change in place
    assert lb.apply({"U": 106, "u": 110, "pu": 105, "b": [["100.0", "4.000"]], "a": []})
    assert lb.book.depth(1)[0] == [(1001, 250, 1)] and lb.book.depth(2)[0][1] == (1000, 4000, 1)
    # a diff that does not continue the chain counts as a gap
    lb.apply({"U": 120, "u": 125, "pu": 118, "b": [], "a": []})
    assert lb.gaps == 1 and lb.last_update == 125


def test_a_crossing_level_is_refused_not_traded():
    lb = level_book()
    lb.load_snapshot({"lastUpdateId": 1, "bids": [["100.0", "1.000"]],
                      "asks": [["100.1", "1.000"]]})
    with pytest.raises(ValueError):
        lb.apply({"U": 1, "u": 2, "pu": 0, "b": [["100.2", "1.000"]], "a": []})
    assert lb.book.trade_count == 0


def test_capture_paths_need_both_markets(tmp_path):
    (tmp_path / "usdm").mkdir()
    (tmp_path / "spot").mkdir()
    for name in ("usdm/btcusdt_20240101.gz", "usdm/btcusdt_20240102.gz",
                 "spot/btcusdt_20240102.gz"):
        (tmp_path / name).touch()
    assert bn.capture_paths(tmp_path, "BTCUSDT") == (tmp_path / "usdm/btcusdt_20240102.gz",
                                                     tmp_path / "spot/btcusdt_20240102.gz")
    with pytest.raises(FileNotFoundError):
        bn.capture_paths(tmp_path, "ETHUSDT")


# ---- the real captures ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def replays():
    if reason := missing_reason(DATA, BINANCE_FILES):
        pytest.skip(reason)
    return {symbol: bn.replay(*bn.capture_paths(DATA, symbol), symbol)
            for symbol in ("BTCUSDT", "ETHUSDT")}


def test_the_rebuilt_book_agrees_with_every_comparable_book_ticker(replays):
    btc, eth = replays["BTCUSDT"], replays["ETHUSDT"]
    assert (btc.diffs_applied, btc.gaps, eth.diffs_applied, eth.gaps) == (6547, 0, 6581, 0)
    assert (btc.agreement.tickers, btc.agreement.compared, btc.agreement.agree) == (66046, 629, 629)
    assert (eth.agreement.tickers, eth.agreement.compared, eth.agreement.agree) == (53960, 551, 551)


def test_index_mark_premium_and_funding_over_the_window(replays):
    btc, eth = replays["BTCUSDT"], replays["ETHUSDT"]
    assert (btc.spot_trades, btc.perp_trades, eth.spot_trades, eth.perp_trades) == \
        (9757, 21313, 6106, 14076)
    assert len(btc.time_ns) == 346 and btc.next_funding_ns == eth.next_funding_ns == MIDNIGHT
    assert (btc.index[-1], btc.mark[-1]) == (61686.0, 61663.0)
    assert (eth.index[-1], eth.mark[-1]) == pytest.approx((2682.50, 2681.38))
    # the perpetual traded below spot all window: every premium sample is negative
    for r, lo, hi in ((btc, -0.000521, -0.000269), (eth, -0.000539, -0.000281)):
        p = r.premium[~np.isnan(r.premium)]
        assert lo - 1e-9 <= p.min() and p.max() <= hi + 1e-9 and p.min() < p.max()
    assert (btc.average_premium, eth.average_premium) == (-0.00037562, -0.00041909)
    # BTC: I - P = 0.0476% is inside the 0.05% clamp, so F is the interest rate
    assert btc.funding_rate[-1] == 0.0001
    # ETH: I - P = 0.0519% is clamped to 0.05%, so F = P + 0.05%
    assert eth.funding_rate[-1] == pytest.approx(eth.average_premium + 0.0005, abs=1e-12)
    assert eth.funding_rate[-1] == pytest.approx(0.00008091, abs=1e-11)
    # the mark follows the perpetual, not spot: within 2 bp of the mid while the spot basis is
    # about 3.7 bp
    for r in (btc, eth):
        ok = ~np.isnan(r.mark) & ~np.isnan(r.mid)
        assert np.max(np.abs(r.mark[ok] - r.mid[ok]) / r.mid[ok]) < 2e-4
        assert np.mean((r.index[ok] - r.mid[ok]) / r.mid[ok]) > 3e-4


def test_figures_and_plot(replays, tmp_path):
    r = replays["BTCUSDT"]
    assert r.figures["top of book agreement"] == "100.0000%"
    assert r.figures["predicted funding (last, %)"] == "0.0100"
    path = bn.plot(r, tmp_path / "btc.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
