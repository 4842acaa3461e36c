"""`perpcore serve --demo`: a newcomer points ccxt at it and trades at once."""
from .conftest import ServedVenue, ServeProcess

BTC = "BTC/USD:USD"


def test_demo_venue_quotes_and_trades(tmp_path):
    server = ServeProcess(tmp_path / "demo", "--demo")
    try:
        words = server.proc.stdout.readline().split()
        key, secret = words[words.index("apiKey") + 1], words[words.index("secret") + 1]
        venue = ServedVenue.__new__(ServedVenue)       # only its client() helper
        venue.base = server.base
        client = venue.client(key, secret)
        book = client.fetch_order_book(BTC)
        assert len(book["bids"]) == 5 and len(book["asks"]) == 5
        assert book["bids"][0][0] < book["asks"][0][0]
        order = client.create_order(BTC, "market", "buy", 0.01)
        assert order["status"] == "closed" and order["filled"] == 0.01
        assert client.fetch_positions()[0]["contracts"] == 0.01
    finally:
        assert server.stop() == 0
