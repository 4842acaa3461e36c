"""Unmodified ccxt binanceusdm trading on `perpcore serve`: each call's parsed unified fields."""
import pytest
import requests

from .conftest import ccxt

BTC = "BTC/USD:USD"


@pytest.fixture
def traders(served):
    """Two funded traders with ccxt clients whose markets are loaded."""
    clients = []
    for _ in range(2):
        account, key, secret = served.trader(usd="100000")
        client = served.client(key, secret)
        client.load_markets()
        clients.append(client)
    return clients


def test_load_markets(served):
    markets = served.client().load_markets()
    btc = markets[BTC]
    assert (btc["id"], btc["base"], btc["quote"], btc["settle"]) == ("BTCUSD", "BTC", "USD", "USD")
    assert btc["swap"] and btc["linear"] and btc["active"] and btc["contract"]
    assert btc["precision"]["price"] == 0.1 and btc["precision"]["amount"] == 0.001
    assert btc["limits"]["amount"]["min"] == 0.001 and btc["limits"]["cost"]["min"] == 5
    assert markets["ETH/USD:USD"]["precision"]["price"] == 0.01


def test_order_book_and_trades(served, traders):
    maker, taker = traders
    maker.create_order(BTC, "limit", "sell", 0.02, 65010)
    maker.create_order(BTC, "limit", "sell", 0.01, 65020)
    maker.create_order(BTC, "limit", "buy", 0.03, 64990)
    book = maker.fetch_order_book(BTC)
    assert book["asks"] == [[65010.0, 0.02], [65020.0, 0.01]]
    assert book["bids"] == [[64990.0, 0.03]]
    rest = requests.get(f"{served.base}/fapi/v1/depth", params={"symbol": "BTCUSD"}).json()
    assert book["nonce"] == rest["lastUpdateId"]
    taker.create_order(BTC, "market", "buy", 0.025)
    assert maker.fetch_order_book(BTC)["asks"] == [[65020.0, 0.005]]
    trades = taker.fetch_trades(BTC)
    assert [(t["price"], t["amount"], t["side"]) for t in trades] == \
        [(65010.0, 0.02, "buy"), (65020.0, 0.005, "buy")]


def test_limit_order_life(traders):
    maker, taker = traders
    order = maker.create_order(BTC, "limit", "buy", 0.01, 64000.5,
                               {"newClientOrderId": "my-order_1"})
    assert (order["status"], order["type"], order["side"]) == ("open", "limit", "buy")
    assert (order["price"], order["amount"], order["filled"], order["remaining"]) == \
        (64000.5, 0.01, 0.0, 0.01)
    assert order["clientOrderId"] == "my-order_1" and order["timeInForce"] == "GTC"
    fetched = maker.fetch_order(order["id"], BTC)
    assert fetched["id"] == order["id"] and fetched["status"] == "open"
    by_client = maker.fetch_order(None, BTC, {"origClientOrderId": "my-order_1"})
    assert by_client["id"] == order["id"]
    assert [o["id"] for o in maker.fetch_open_orders(BTC)] == [order["id"]]
    # a partial fill shows in the order
    taker.create_order(BTC, "market", "sell", 0.004)
    fetched = maker.fetch_order(order["id"], BTC)
    assert (fetched["status"], fetched["filled"], fetched["remaining"], fetched["average"]) == \
        ("open", 0.004, 0.006, 64000.5)
    edited = maker.edit_order(order["id"], BTC, "limit", "buy", 0.008, 64000.5)
    assert (edited["id"], edited["amount"], edited["filled"], edited["remaining"]) == \
        (order["id"], 0.008, 0.004, 0.004)
    assert maker.fetch_order_book(BTC)["bids"] == [[64000.5, 0.004]]
    with pytest.raises(ccxt.BadRequest, match="-4014"):     # ccxt would round the price
        maker.fapiPrivatePutOrder({"symbol": "BTCUSD", "orderId": order["id"], "side": "BUY",
                                   "quantity": "0.008", "price": "64000.55"})
    cancelled = maker.cancel_order(order["id"], BTC)
    assert cancelled["status"] == "canceled" and cancelled["filled"] == 0.004
    assert cancelled["amount"] == 0.008
    assert maker.fetch_open_orders(BTC) == []
    assert maker.fetch_order(order["id"], BTC)["status"] == "canceled"
    assert [(o["id"], o["status"]) for o in maker.fetch_orders(BTC)] == \
        [(order["id"], "canceled")]
    assert [o["status"] for o in taker.fetch_closed_orders(BTC)] == ["closed"]


def test_market_ioc_fok_post_only_reduce_only(traders):
    maker, taker = traders
    maker.create_order(BTC, "limit", "sell", 0.05, 65000)
    market = taker.create_order(BTC, "market", "buy", 0.01)
    assert (market["status"], market["filled"], market["average"]) == ("closed", 0.01, 65000.0)
    # IOC: what does not fill at once expires
    ioc = taker.create_order(BTC, "limit", "buy", 0.1, 65000, {"timeInForce": "IOC"})
    assert (ioc["status"], ioc["filled"], ioc["timeInForce"]) == ("expired", 0.04, "IOC")
    maker.create_order(BTC, "limit", "sell", 0.02, 65100)
    fok = taker.create_order(BTC, "limit", "buy", 0.02, 65100, {"timeInForce": "FOK"})
    assert (fok["status"], fok["filled"], fok["timeInForce"]) == ("closed", 0.02, "FOK")
    # post-only: refused if it would take, resting otherwise
    maker.create_order(BTC, "limit", "sell", 0.01, 65200)
    with pytest.raises(ccxt.OrderNotFillable):      # -5022
        taker.create_order(BTC, "limit", "buy", 0.01, 65200, {"postOnly": True})
    post = taker.create_order(BTC, "limit", "buy", 0.01, 64000, {"postOnly": True})
    assert post["postOnly"] and post["timeInForce"] == "PO" and post["status"] == "open"
    # taker is long 0.07: a reduce-only sell is accepted, a reduce-only buy refused
    reduce = taker.create_order(BTC, "limit", "sell", 0.03, 65300, {"reduceOnly": True})
    assert reduce["reduceOnly"] and reduce["status"] == "open"
    with pytest.raises(ccxt.InvalidOrder):           # -2022
        taker.create_order(BTC, "limit", "buy", 0.01, 64000, {"reduceOnly": True})
    with pytest.raises(ccxt.OrderNotFillable):      # -5021: only 0.01 rests at or below 65200
        taker.create_order(BTC, "limit", "buy", 0.02, 65200, {"timeInForce": "FOK"})


def test_cancel_all_orders(traders):
    maker, _ = traders
    for price in (64000, 64100, 64200):
        maker.create_order(BTC, "limit", "buy", 0.01, price)
    eth = maker.create_order("ETH/USD:USD", "limit", "buy", 0.1, 2900)
    maker.cancel_all_orders(BTC)
    assert [o["id"] for o in maker.fetch_open_orders()] == [eth["id"]]


def test_balance_positions_leverage_trades_funding(served, traders):
    maker, taker = traders
    maker.create_order(BTC, "limit", "sell", 0.1, 65000)
    order = taker.create_order(BTC, "market", "buy", 0.1)
    balance = taker.fetch_balance()
    fee = 65000 * 0.1 * 0.0005
    assert balance["USD"]["total"] == pytest.approx(100000 - fee)
    assert balance["USD"]["used"] == pytest.approx(65000 * 0.1 / 20)     # default leverage 20
    assert balance["USD"]["free"] > 0
    (position,) = taker.fetch_positions()
    assert (position["symbol"], position["side"], position["contracts"]) == (BTC, "long", 0.1)
    assert position["entryPrice"] == 65000 and position["leverage"] == 20
    assert position["marginMode"] == "cross"
    lev = taker.set_leverage(10, BTC)
    assert lev["leverage"] == 10
    assert taker.fetch_positions()[0]["leverage"] == 10
    with pytest.raises(ccxt.BadRequest):
        taker.set_leverage(500, BTC)
    (fill,) = taker.fetch_my_trades(BTC)
    assert (fill["order"], fill["side"], fill["takerOrMaker"], fill["amount"]) == \
        (order["id"], "buy", "taker", 0.1)
    assert fill["fee"] == {"currency": "USD", "cost": pytest.approx(fee)}
    (maker_fill,) = maker.fetch_my_trades(BTC)
    assert maker_fill["takerOrMaker"] == "maker" and maker_fill["id"] == fill["id"]
    funding = taker.fetch_funding_rate(BTC)
    assert funding["markPrice"] == 65000 and funding["indexPrice"] == 65000
    assert funding["fundingRate"] == 0.0001 and funding["fundingTimestamp"] > 0


def test_conditional_orders(served, traders):
    """Stop and take-profit orders go through Binance's algo order API (as ccxt sends them)."""
    maker, taker = traders
    maker.create_order(BTC, "limit", "sell", 0.05, 66000)
    stop = taker.create_order(BTC, "market", "buy", 0.01, None,
                              {"stopPrice": 65500, "workingType": "MARK_PRICE"})
    assert (stop["status"], stop["triggerPrice"], stop["amount"]) == ("open", 65500.0, 0.01)
    assert stop["info"]["orderType"] == "STOP_MARKET"
    take = taker.create_order(BTC, "limit", "sell", 0.01, 70000,
                              {"takeProfitPrice": 69000, "workingType": "MARK_PRICE"})
    assert take["info"]["orderType"] == "TAKE_PROFIT" and take["status"] == "open"
    waiting = taker.fetch_open_orders(BTC, params={"trigger": True})
    assert {o["id"] for o in waiting} == {stop["id"], take["id"]}
    assert taker.fetch_open_orders(BTC) == []               # no order in the book yet
    assert taker.fetch_order_book(BTC)["bids"] == []
    served.admin("indexPrice", {"symbol": "BTCUSD", "price": "65600"})   # the mark passes 65500
    fired = taker.fetch_order(stop["id"], BTC, {"trigger": True})
    assert fired["status"] == "closed" and fired["info"]["algoStatus"] == "TRIGGERED"
    filled = taker.fetch_order(fired["info"]["actualOrderId"], BTC)
    assert (filled["status"], filled["filled"], filled["average"]) == ("closed", 0.01, 66000.0)
    cancelled = taker.cancel_order(take["id"], BTC, {"trigger": True})
    assert cancelled["status"] == "canceled"
    assert taker.fetch_open_orders(BTC, params={"trigger": True}) == []
    assert taker.fetch_positions()[0]["contracts"] == 0.01


def test_funding_history_after_a_settlement(served, traders):
    """Time moved past a funding time (an admin command in named JSON) settles funding; ccxt's
    funding-rate history and the payer's balance show it."""
    maker, taker = traders
    maker.create_order(BTC, "limit", "sell", 0.1, 65000)
    taker.create_order(BTC, "market", "buy", 0.1)
    due = taker.fetch_funding_rate(BTC)["fundingTimestamp"]
    before = taker.fetch_balance()["USD"]["total"]
    answer = served.admin("command", {"type": "AdvanceClock", "ts": due * 1_000_000 + 1}).json()
    settled = [e for e in answer if e["type"] == "FundingSettled"]
    assert settled and settled[0]["symbol"] == "BTC-PERP" and settled[0]["positions"] == 2
    (entry,) = taker.fetch_funding_rate_history(BTC)
    assert entry["timestamp"] == due and entry["fundingRate"] == settled[0]["rate"] / 1e8
    paid = 65000 * 0.1 * entry["fundingRate"]
    assert taker.fetch_balance()["USD"]["total"] == pytest.approx(before - paid, abs=0.01)
    bad = served.admin("command", {"type": "AdvanceClock", "ts": -1})
    assert bad.status_code == 400 and bad.json()["code"] == -1130
