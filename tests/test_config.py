from decimal import Decimal
from pathlib import Path

import msgspec
import pytest

from perpcore import config as cf
from perpcore.config import (RATE_SCALE, AssetSpec, ConfigError, InstrumentSpec, MarginSpec,
                             MarginTier, VenueConfig, default_config, load_config, rate,
                             rate_to_decimal)
from perpcore.exchange import config_digest


def test_default_venue_has_both_perps_and_three_assets():
    cfg = default_config()
    assert sorted(cfg.instruments) == ["BTC-PERP", "ETH-PERP"]
    assert sorted(cfg.assets) == ["BTC", "ETH", "USD"]
    assert cfg.settlement_asset == "USD"


def test_ticks_lots_and_units_round_trip_exactly():
    cfg = default_config()
    btc = cfg.instruments["BTC-PERP"]
    assert btc.to_ticks("65000.5") == 650005
    assert btc.from_ticks(650005) == Decimal("65000.5")
    assert btc.to_lots("0.25") == 250
    assert btc.from_lots(250) == Decimal("0.25")
    usd = cfg.assets["USD"]
    assert usd.to_units("100000") == 100_000_000_000
    assert usd.from_units(1) == Decimal("0.000001")


@pytest.mark.parametrize("value", ["65000.55", "0.00001", "1e-9"])
def test_conversions_refuse_values_between_grid_points(value):
    btc = default_config().instruments["BTC-PERP"]
    with pytest.raises(ValueError, match="not a multiple"):
        btc.to_ticks(value) if value == "65000.55" else btc.to_lots(value)


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity"])
def test_conversions_refuse_non_finite_values(value):
    with pytest.raises(ValueError, match="finite"):
        default_config().assets["USD"].to_units(value)


def test_rates_are_fixed_point_at_1e8():
    assert RATE_SCALE == 10**8
    assert rate("0.0001") == 10_000
    assert rate_to_decimal(10_000) == Decimal("0.0001")
    with pytest.raises(ValueError):
        rate("0.000000001")


def test_one_tick_times_one_lot_is_a_whole_number_of_minor_units():
    cfg = default_config()
    # 0.1 USD x 0.001 BTC = 0.0001 USD = 100 micro-dollars
    assert cfg.units_per_ticklot("BTC-PERP") == 100
    assert cfg.units_per_ticklot("ETH-PERP") == 100


def test_a_venue_whose_trade_value_would_round_is_refused():
    with pytest.raises(ValueError, match="tick x lot"):
        VenueConfig(
            settlement_asset="USD",
            assets={"USD": AssetSpec("USD", 2)},
            instruments={"X-PERP": InstrumentSpec(
                symbol="X-PERP", base="X", settle="USD", tick_size=Decimal("0.1"),
                lot_size=Decimal("0.001"), min_notional=Decimal("5"), max_qty=10, max_price=10)},
        )


def test_config_round_trips_through_msgpack():
    cfg = default_config()
    data = msgspec.msgpack.encode(cfg)
    assert msgspec.msgpack.decode(data, type=VenueConfig) == cfg


# The built-in venue's digest as stores have recorded it since the first wave: a field added to
# the config without an entry in LATER_FIELDS changes it, and every existing store would then
# refuse to open.
STORED_DEFAULT_DIGEST = "841ea0f03ee0ee07e1e53a18f416d48f"


def test_the_built_in_venue_keeps_the_digest_its_stores_recorded():
    assert config_digest(default_config()) == STORED_DEFAULT_DIGEST


class _Before(msgspec.Struct, frozen=True):
    rate: int
    tiers: tuple[int, ...] = ()


class _After(msgspec.Struct, frozen=True):
    rate: int
    tiers: tuple[int, ...] = ()
    policy: str = "as before"
    limits: list[int] = msgspec.field(default_factory=list)


def test_a_later_field_counts_in_the_digest_only_away_from_its_default(monkeypatch):
    monkeypatch.setattr(cf, "LATER_FIELDS", {"_After": frozenset({"policy", "limits"})})
    before = msgspec.msgpack.encode(_Before(5, (1, 2)))
    assert msgspec.msgpack.encode(cf.digest_form(_After(5, (1, 2)))) == before
    assert msgspec.msgpack.encode(cf.digest_form({"x": [_After(5, (1, 2))]})) == \
        msgspec.msgpack.encode({"x": [_Before(5, (1, 2))]})
    assert msgspec.msgpack.encode(cf.digest_form(_After(5, (1, 2), policy="new"))) != before
    assert msgspec.msgpack.encode(cf.digest_form(_After(5, (1, 2), limits=[3]))) != before
    # a field not listed counts even at its default: the registry, not the default, decides
    monkeypatch.setattr(cf, "LATER_FIELDS", {})
    assert msgspec.msgpack.encode(cf.digest_form(_After(5, (1, 2)))) != before


# ---- margin: tiers, fees, collateral, loans ----------------------------------------------------

def test_default_margin_terms():
    cfg = default_config()
    btc, eth = cfg.instruments["BTC-PERP"], cfg.instruments["ETH-PERP"]
    assert [t.max_leverage for t in btc.tiers] == [125, 100, 50, 20, 10]
    assert [t.max_leverage for t in eth.tiers] == [100, 75, 50, 20, 10]
    assert (btc.maker_fee, btc.taker_fee, btc.default_leverage) == (20_000, 50_000, 20)
    assert cfg.margin.haircuts == {"BTC": 5_000_000, "ETH": 5_000_000}
    assert (cfg.margin.max_ltv, cfg.margin.warning_ltv, cfg.margin.liquidation_ltv) == \
        (65_000_000, 75_000_000, 83_000_000)
    assert cfg.collateral_symbol("BTC") == "BTC-PERP" and cfg.collateral_symbol("ETH") == "ETH-PERP"


@pytest.mark.parametrize("change,match", [
    ({"tiers": ()}, "at least one"),
    ({"tiers": (MarginTier(Decimal("100"), 10, 10_000_000),)}, "below 1 / max leverage"),
    ({"tiers": (MarginTier(Decimal("100"), 10, 100_000), MarginTier(Decimal("50"), 5, 200_000))},
     "rise in notional"),
    ({"tiers": (MarginTier(Decimal("100"), 10, 100_000), MarginTier(Decimal("500"), 20, 200_000))},
     "fall in leverage"),
    ({"default_leverage": 126}, "default leverage"),
    ({"taker_fee": 10_000, "maker_fee": -20_000}, "fees"),
])
def test_bad_instrument_margin_terms_are_refused(change, match):
    spec = default_config().instruments["BTC-PERP"]
    with pytest.raises(ValueError, match=match):
        msgspec.structs.replace(spec, **change)


@pytest.mark.parametrize("change,match", [
    ({"max_ltv": 80_000_000}, "max LTV"),
    ({"liquidation_ltv": 70_000_000}, "max LTV"),
    ({"conversion_penalty": RATE_SCALE}, "financing"),
    ({"haircuts": {"BTC": RATE_SCALE}}, "haircuts"),
    ({"leverage_caps": {"professional": 125}}, "leverage caps"),
])
def test_bad_financing_terms_are_refused(change, match):
    with pytest.raises(ValueError, match=match):
        msgspec.structs.replace(MarginSpec(), **change)


def test_collateral_needs_an_instrument_to_price_it():
    cfg = default_config()
    with pytest.raises(ValueError, match="no instrument has base"):
        msgspec.structs.replace(cfg, margin=MarginSpec(haircuts={"BTC": 0, "SOL": 0}),
                                assets={**cfg.assets, "SOL": AssetSpec("SOL", 9)})
    with pytest.raises(ValueError, match="non-settlement"):
        msgspec.structs.replace(cfg, margin=MarginSpec(haircuts={"USD": 0}))


# ---- config files: TOML or JSON, VenueConfig's schema ------------------------------------------

DOCS_VENUE = Path(__file__).resolve().parents[1] / "docs" / "venue.toml"


def test_the_documented_toml_is_the_built_in_venue():
    assert load_config(DOCS_VENUE) == default_config()


def test_a_json_config_in_the_same_schema(tmp_path):
    cfg = msgspec.structs.replace(default_config(), margin=MarginSpec(max_ltv=50_000_000))
    path = tmp_path / "venue.json"
    path.write_bytes(msgspec.json.encode(cfg))
    assert load_config(path) == cfg


def _edited(tmp_path, edit, suffix=".json"):
    raw = msgspec.to_builtins(default_config())
    edit(raw)
    path = tmp_path / f"venue{suffix}"
    path.write_bytes(msgspec.json.encode(raw))
    return path


def _set(keys, value):
    def edit(raw):
        for key in keys[:-1]:
            raw = raw[key]
        raw[keys[-1]] = value
    return edit


@pytest.mark.parametrize("edit, says", [
    (_set(["instruments", "BTC-PERP", "tiers", 1, "max_leverage"], "x"),
     "instruments.BTC-PERP.tiers[1].max_leverage: Expected `int`, got `str`"),
    (_set(["instruments", "ETH-PERP", "max_qty"], 1.5),
     "instruments.ETH-PERP.max_qty: Expected `int`, got `float`"),
    (_set(["instruments", "BTC-PERP", "tiers", 1, "max_leverage"], 200),
     "instruments.BTC-PERP: BTC-PERP: maintenance rate must be below 1 / max leverage"),
    (_set(["margin", "max_ltvv"], 1), "margin: Object contains unknown field `max_ltvv`"),
    (_set(["assets", "USD", "decimals"], None), "assets.USD.decimals: Expected `int`, got `null`"),
    (_set(["settlement_asset"], "EUR"), ": settlement asset EUR is not among the assets"),
    (_set(["assets", "USDT"], {"name": "USD", "decimals": 6}), "asset USDT is named USD"),
    (lambda raw: raw["instruments"]["BTC-PERP"].pop("tick_size"),
     "instruments.BTC-PERP: Object missing required field `tick_size`"),
])
def test_a_bad_config_file_is_one_line_naming_the_file_and_field(tmp_path, edit, says):
    path = _edited(tmp_path, edit)
    with pytest.raises(ConfigError) as e:
        load_config(path)
    assert str(e.value).startswith(f"{path}: ") and says in str(e.value)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("name, content, says", [
    ("venue.toml", b"settlement_asset = \n", "not valid TOML"),
    ("venue.json", b"{", "not valid JSON"),
    ("venue.json", b"[1, 2]", "holds no table of the venue's fields"),
    ("venue.yaml", b"a: 1", "a venue config is a .toml or a .json file"),
])
def test_a_config_file_of_the_wrong_kind(tmp_path, name, content, says):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ConfigError, match=says):
        load_config(path)
