"""WebSocket streams with unmodified ccxt.pro: a local book kept from depth diffs equals REST
depth through trades; the user-data stream shows an account's orders fill."""
import asyncio

import msgspec
import requests

from .conftest import pro_client

BTC = "BTC/USD:USD"
WAIT = 60           # a safety net against a hang, not a timing assertion


async def book_at(pro, seq):
    """The watched book once it has caught up with sequence number `seq`. A watch returns at
    the next update, so the local book is read first (no await in between: an update cannot
    slip past unseen)."""
    book = pro.orderbooks[BTC]
    while book["nonce"] < seq:
        book = await pro.watch_order_book(BTC)
    return book


def test_watch_order_book_follows_rest_depth(served):
    _, mk, ms = served.trader()
    _, tk, ts = served.trader()

    async def main():
        watcher, maker, taker = pro_client(served), pro_client(served, mk, ms), \
            pro_client(served, tk, ts)
        try:
            await maker.create_order(BTC, "limit", "sell", 0.05, 65100)
            await watcher.watch_order_book(BTC)
            steps = [(maker, "limit", "sell", 0.03, 65050), (maker, "limit", "buy", 0.02, 64900),
                     (taker, "market", "buy", 0.04, None), (maker, "limit", "buy", 0.01, 64950),
                     (taker, "limit", "sell", 0.025, 64900), (taker, "market", "buy", 0.01, None)]
            for client, kind, side, amount, price in steps:
                await client.create_order(BTC, kind, side, amount, price)
                rest = requests.get(f"{served.base}/fapi/v1/depth",
                                    params={"symbol": "BTCUSD", "limit": 1000}).json()
                book = await asyncio.wait_for(book_at(watcher, rest["lastUpdateId"]), WAIT)
                assert book["nonce"] == rest["lastUpdateId"]
                assert book["bids"] == [[float(p), float(q)] for p, q in rest["bids"]]
                assert book["asks"] == [[float(p), float(q)] for p, q in rest["asks"]]
            assert book["asks"] == [[65100.0, 0.03]] and book["bids"] == [[64900.0, 0.005]]
        finally:
            for client in (watcher, maker, taker):
                await client.close()
    asyncio.run(main())


async def connected(served, account):
    while not served.venue.gateway.streams.by_account.get(account):
        await asyncio.sleep(0.01)


def test_watch_orders_sees_fills(served):
    account, mk, ms = served.trader()
    _, tk, ts = served.trader()

    async def main():
        maker, taker = pro_client(served, mk, ms), pro_client(served, tk, ts)
        try:
            resting = await maker.create_order(BTC, "limit", "sell", 0.05, 65000)
            watching = asyncio.ensure_future(maker.watch_orders(BTC))
            # the fill must come after the venue has the maker's user-data connection
            await asyncio.wait_for(connected(served, account), WAIT)
            await taker.create_order(BTC, "market", "buy", 0.02)
            orders = await asyncio.wait_for(watching, WAIT)
            while not any(o["filled"] == 0.02 for o in orders):
                orders = await asyncio.wait_for(maker.watch_orders(BTC), WAIT)
            seen = [o for o in orders if o["id"] == resting["id"]][-1]
            assert (seen["status"], seen["filled"], seen["remaining"]) == ("open", 0.02, 0.03)
            assert seen["trades"] == [] or seen["trades"][0]["amount"] == 0.02
        finally:
            await maker.close()
            await taker.close()
    asyncio.run(main())


def test_subscribe_protocol_and_mark_price(served):
    """A raw client: SUBSCRIBE is answered, and a new index price reaches @markPrice."""
    import aiohttp

    async def main():
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(served.base + "/market/ws") as ws:
                await ws.send_json({"method": "SUBSCRIBE", "params": ["btcusd@markPrice"],
                                    "id": 7})
                assert msgspec.json.decode((await ws.receive()).data) == {"result": None,
                                                                          "id": 7}
                await asyncio.to_thread(served.admin, "indexPrice",
                                        {"symbol": "BTCUSD", "price": "65500"})
                update = msgspec.json.decode((await asyncio.wait_for(ws.receive(), WAIT)).data)
                assert update["e"] == "markPriceUpdate" and update["s"] == "BTCUSD"
                assert update["i"] == "65500.0" and update["T"] > 0
                await ws.send_json({"method": "LIST_SUBSCRIPTIONS", "id": 8})
                assert msgspec.json.decode((await ws.receive()).data)["result"] == \
                    ["btcusd@markPrice"]
    asyncio.run(main())


def test_liquidation_reaches_force_order_and_user_streams(served):
    """A leveraged long liquidated by a falling index: @forceOrder shows it, and the account's
    user-data stream shows its position open and then closed."""
    import aiohttp

    _, mk, ms = served.trader(usd="10000000")
    account, tk, ts = served.trader(usd="1000")
    maker, taker = served.client(mk, ms), served.client(tk, ts)
    listen = requests.post(f"{served.base}/fapi/v1/listenKey",
                           headers={"X-MBX-APIKEY": tk}).json()["listenKey"]

    async def next_of(ws, kind):
        while True:
            data = msgspec.json.decode((await asyncio.wait_for(ws.receive(), WAIT)).data)
            if data.get("e") == kind:
                return data

    async def main():
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(f"{served.base}/ws/btcusd@forceOrder") as market, \
                    session.ws_connect(f"{served.base}/private/ws?listenKey={listen}") as user:
                await asyncio.wait_for(connected(served, account), WAIT)
                await asyncio.to_thread(maker.create_order, BTC, "limit", "sell", 0.3, 65000)
                await asyncio.to_thread(taker.create_order, BTC, "market", "buy", 0.3)
                opened = await next_of(user, "ACCOUNT_UPDATE")
                assert opened["a"]["m"] == "ORDER"
                assert opened["a"]["P"][0]["pa"] == "0.300" and opened["a"]["P"][0]["ep"] \
                    == "65000.0"
                await asyncio.to_thread(maker.create_order, BTC, "limit", "buy", 1, 60000)
                await asyncio.to_thread(served.admin, "indexPrice",
                                        {"symbol": "BTCUSD", "price": "61000"})
                forced = await next_of(market, "forceOrder")
                assert forced["o"]["s"] == "BTCUSD" and forced["o"]["S"] == "SELL"
                assert forced["o"]["q"] == "0.300" and forced["o"]["X"] == "FILLED"
                closed = await next_of(user, "ACCOUNT_UPDATE")
                while closed["a"]["P"][0]["pa"] != "0.000":
                    closed = await next_of(user, "ACCOUNT_UPDATE")
    asyncio.run(main())
    assert taker.fetch_positions() == []


def test_combined_streams_and_depth_tracking(served):
    """/stream?streams=a/b wraps each message with its stream's name; a book's diffs are
    computed while someone watches its depth, and stop with the last watcher."""
    import aiohttp

    _, mk, ms = served.trader()
    maker = served.client(mk, ms)
    streams = served.venue.gateway.streams

    async def main():
        async with aiohttp.ClientSession() as session:
            url = f"{served.base}/stream?streams=btcusd@depth/btcusd@trade"
            async with session.ws_connect(url) as ws:
                # a runner query, so after the one that started the book's diffs
                await asyncio.to_thread(served.admin_get, "stateHash")
                assert "BTC-PERP" in streams._depth
                await asyncio.to_thread(maker.create_order, BTC, "limit", "sell", 0.01, 65000)
                wrapped = msgspec.json.decode((await asyncio.wait_for(ws.receive(), WAIT)).data)
                assert wrapped["stream"] == "btcusd@depth"
                assert wrapped["data"]["e"] == "depthUpdate"
                assert wrapped["data"]["a"] == [["65000.0", "0.010"]]
                await ws.send_json({"method": "UNSUBSCRIBE", "params": ["btcusd@depth"],
                                    "id": 1})
                assert msgspec.json.decode((await ws.receive()).data) == {"result": None,
                                                                          "id": 1}
    asyncio.run(main())
    served.admin_get("stateHash")       # a runner query after the one that stopped them
    assert "BTC-PERP" not in streams._depth
