"""The real-data samples' skip: a test that needs a missing file says which, and where to read
about it; with ../shared/data in place, every file the tests name is found."""
import pytest

from real_data import (BINANCE, BINANCE_FILES, DATA, LOBSTER, LOBSTER_FILES, missing_reason,
                       needs)


def test_a_missing_sample_is_named_in_the_skip_reason(tmp_path):
    (tmp_path / "usdm").mkdir()
    (tmp_path / "usdm" / "btcusdt_20240808.gz").write_bytes(b"")
    reason = missing_reason(tmp_path, ("usdm/btcusdt_20240808.gz", "spot/btcusdt_20240808.gz"))
    assert reason == (f"real-data sample missing: spot/btcusdt_20240808.gz in {tmp_path} (see "
                      f"the README's 'Real-data samples' for their source and layout)")
    mark = needs(tmp_path, ("x.csv",))
    assert mark.args == (True,) and "x.csv" in mark.kwargs["reason"]


@pytest.mark.skipif(not DATA.is_dir(), reason=f"no real-data samples in {DATA}")
def test_the_samples_the_tests_name_are_the_ones_there():
    assert missing_reason(LOBSTER, LOBSTER_FILES) is None
    assert missing_reason(BINANCE, BINANCE_FILES) is None
