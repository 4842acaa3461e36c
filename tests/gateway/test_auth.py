"""perpcore.gateway.auth: Binance's signature examples, parameter decoding, the token bucket."""
from perpcore.gateway.auth import TokenBucket, signature_ok, signed_payload

# Binance's documented example key and signatures (its API docs, "SIGNED endpoint examples")
SECRET = "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j"
QUERY = ("symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=0.1"
         "&recvWindow=5000&timestamp=1499827319559")


def test_binance_examples_verify():
    sig = "c8db56825ae71d6d79447849e617115f4a920fa2acdcab2b053c4b2838bd6b71"
    payload, got, params = signed_payload(f"{QUERY}&signature={sig}", "")
    assert payload == QUERY and got == sig and params["price"] == "0.1"
    assert signature_ok(SECRET, payload, sig)
    assert not signature_ok(SECRET, payload.replace("0.1", "0.2"), sig)
    # query and body together: the signature covers the query followed by the body
    payload, got, params = signed_payload(
        "symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC",
        "quantity=1&price=0.1&recvWindow=5000&timestamp=1499827319559&signature="
        "0fd168b8ddb4876a0358a8d14d0c9f3da0e9b20c5d52b2a00fcf7d1c602f9a77")
    assert signature_ok(SECRET, payload, got) and params["quantity"] == "1"


def test_encoded_values_are_decoded_but_signed_as_sent():
    payload, sig, params = signed_payload("", "newClientOrderId=a%3Ab%2Fc&x=1+2&signature=ab")
    assert params == {"newClientOrderId": "a:b/c", "x": "1 2"} and sig == "ab"
    assert payload == "newClientOrderId=a%3Ab%2Fc&x=1+2"


def test_token_bucket_refills_at_its_rate():
    now = [0.0]
    bucket = TokenBucket(10, 1, clock=lambda: now[0])
    assert bucket.take(6) and bucket.take(4) and not bucket.take(1)
    now[0] = 3.0
    assert bucket.take(3) and not bucket.take(1)
    now[0] = 1000.0                         # never above capacity
    assert bucket.take(10) and not bucket.take(1)
