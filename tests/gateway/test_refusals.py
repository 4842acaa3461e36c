"""Refusals: each a clear Binance-style error that ccxt types, and no state change."""
import pytest
import requests

from .conftest import ADMIN, ServedVenue, ccxt

BTC = "BTC/USD:USD"


def state(served):
    return served.admin_get("stateHash")["stateHash"]


@pytest.fixture
def trader(served):
    account, key, secret = served.trader()
    client = served.client(key, secret)
    client.load_markets()
    return client


def test_authentication(served, trader):
    before = state(served)
    forged = served.client(trader.apiKey, "0" * 64)
    with pytest.raises(ccxt.AuthenticationError, match="-1022"):
        forged.create_order(BTC, "limit", "buy", 0.01, 60000)
    unknown = served.client("no-such-key", trader.secret)
    with pytest.raises(ccxt.AuthenticationError, match="-2015"):
        unknown.fetch_balance()
    stale = served.client(trader.apiKey, trader.secret)
    stale.options["timeDifference"] = 120_000       # its timestamps two minutes old
    with pytest.raises(ccxt.InvalidNonce, match="-1021"):
        stale.create_order(BTC, "limit", "buy", 0.01, 60000)
    wide = served.client(trader.apiKey, trader.secret, recvWindow=60_001)
    with pytest.raises(ccxt.BadRequest, match="-1130"):
        wide.fetch_balance()
    no_key = requests.get(f"{served.base}/fapi/v2/balance", params={"timestamp": 1})
    assert no_key.status_code == 401 and no_key.json()["code"] == -2014
    assert trader.fetch_open_orders(BTC) == [] and state(served) == before


def test_read_only_key_cannot_trade(served):
    account = served.admin("account", {}).json()["account"]
    key = served.admin("apiKey", {"account": account, "permissions": ["read"]}).json()
    client = served.client(key["apiKey"], key["secretKey"])
    assert client.fetch_open_orders(BTC) == []
    with pytest.raises(ccxt.AuthenticationError, match="-2015"):
        client.create_order(BTC, "limit", "buy", 0.01, 60000)


def test_admin_side_takes_no_trading_key(served, trader):
    for headers in ({"X-PERPCORE-ADMIN": trader.apiKey}, {"X-MBX-APIKEY": trader.apiKey}, {}):
        answer = requests.post(f"{served.base}/admin/v1/deposit", headers=headers, timeout=30,
                               json={"account": 1, "asset": "USD", "amount": "1000000"})
        assert answer.status_code == 401 and answer.json()["code"] == -2015
    assert trader.fetch_balance()["USD"]["total"] == 100000
    bad = served.admin("deposit", {"account": 1, "asset": "USD", "amount": "0.0000001"})
    assert bad.status_code == 400 and bad.json()["code"] == -1130
    assert served.admin("deposit", {"account": 1, "asset": "USD", "amount": "5"},
                        token=ADMIN + "x").status_code == 401


def test_another_accounts_order_does_not_exist(served, trader):
    _, key, secret = served.trader()
    other = served.client(key, secret)
    order = trader.create_order(BTC, "limit", "buy", 0.01, 60000, {"newClientOrderId": "mine"})
    before = state(served)
    with pytest.raises(ccxt.OrderNotFound, match="-2013"):
        other.fetch_order(order["id"], BTC)
    with pytest.raises(ccxt.OrderNotFound, match="-2013"):
        other.fetch_order(None, BTC, {"origClientOrderId": "mine"})
    with pytest.raises(ccxt.OrderNotFound, match="-2011"):
        other.cancel_order(order["id"], BTC)
    assert other.fetch_open_orders() == [] and other.fetch_my_trades(BTC) == []
    assert state(served) == before
    other.cancel_all_orders(BTC)                    # cancels nothing of another account's
    assert [o["id"] for o in trader.fetch_open_orders(BTC)] == [order["id"]]


@pytest.mark.parametrize("params, code, error", [
    ({"quantity": "0.0015"}, -4023, ccxt.BadRequest),             # not a lot multiple
    ({"price": "65000.05"}, -4014, ccxt.BadRequest),              # not a tick multiple
    ({"price": "-1"}, -4001, ccxt.ExchangeError),
    ({"quantity": "abc"}, -1130, ccxt.BadRequest),
    ({"quantity": None}, -1102, ccxt.BadRequest),                 # missing
    ({"side": "UP"}, -1117, ccxt.BadRequest),
    ({"type": "TRAILING_STOP_MARKET"}, -1116, ccxt.BadRequest),
    ({"type": "STOP_MARKET", "price": None}, -1102, ccxt.BadRequest),     # no stopPrice
    ({"timeInForce": "GTD"}, -1115, ccxt.BadRequest),
    ({"symbol": "NOPEUSD"}, -1121, ccxt.BadSymbol),
    ({"newClientOrderId": "has space"}, -4015, ccxt.BadRequest),
    ({"quantity": "0.001", "price": "1000"}, -4164, ccxt.InvalidOrder),   # under 5 USD
    ({"quantity": "100"}, -2019, ccxt.InsufficientFunds),
    ({"positionSide": "LONG"}, -4061, ccxt.ExchangeError),
])
def test_malformed_orders(served, trader, params, code, error):
    request = {"symbol": "BTCUSD", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC",
               "quantity": "0.01", "price": "65000", **params}
    request = {k: v for k, v in request.items() if v is not None}
    before = state(served)
    with pytest.raises(error, match=str(code)):
        trader.fapiPrivatePostOrder(request)        # ccxt's raw call: signed, sent as given
    assert trader.fetch_open_orders() == [] and state(served) == before


def test_rate_limit_per_key(tmp_path):
    venue = ServedVenue(tmp_path / "store", weight_per_minute=20)
    try:
        _, key, secret = venue.trader()
        client = venue.client(key, secret)
        for _ in range(4):                          # weight 5 each: the budget
            client.fetch_balance()
        with pytest.raises(ccxt.DDoSProtection, match="-1003"):    # ccxt's type for HTTP 429
            client.fetch_balance()
        answer = requests.get(f"{venue.base}/fapi/v2/balance", headers={"X-MBX-APIKEY": key})
        assert answer.status_code == 429 and answer.json()["code"] == -1003
        _, key2, secret2 = venue.trader()           # another key has its own budget
        assert venue.client(key2, secret2).fetch_balance()["USD"]["total"] == 100000
    finally:
        venue.stop()


def test_error_table_is_documented():
    """docs/gateway.md lists every reject code with the Binance code the gateway answers."""
    from pathlib import Path

    from perpcore.gateway.codes import BINANCE_ERRORS
    from perpcore.messages import RejectCode

    doc = (Path(__file__).resolve().parents[2] / "docs" / "gateway.md").read_text()
    assert set(BINANCE_ERRORS) == set(RejectCode)
    for code, (number, _) in BINANCE_ERRORS.items():
        assert f"| `{code.name}` ({int(code)}) | {number} |" in doc, code
