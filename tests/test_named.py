"""perpcore.named: JSON objects with field names for every command and event."""
import msgspec
import pytest

from perpcore import messages as m, named


def test_commands_round_trip_with_names():
    cmd = m.PlaceOrder(account=3, symbol="BTC-PERP", side=m.Side.SELL, qty=5, price=650000,
                       tif=m.TimeInForce.IOC, client_order_id=9, ts=11)
    data = named.encode(cmd)
    obj = msgspec.json.decode(data)
    assert obj["type"] == "PlaceOrder" and obj["account"] == 3 and obj["tif"] == 1
    assert named.decode_command(data) == cmd
    # defaults apply to what an object leaves out
    assert named.decode_command(b'{"type":"CreateAccount","account":7}') == \
        m.CreateAccount(account=7)


def test_events_round_trip():
    events = [m.AccountCreated(1, 2, 3, True),
              m.OrderRejected(4, 5, m.RejectCode.MALFORMED, "why", account=1),
              m.MarginCall(6, 7, 1, None, 10, 20)]
    for ev in events:
        assert named.decode_event(named.encode(ev)) == ev
    assert [d["type"] for d in msgspec.json.decode(named.encode_many(events))] == \
        ["AccountCreated", "OrderRejected", "MarginCall"]
    assert named.to_builtins(events[0]) == {"type": "AccountCreated", "seq": 1, "ts": 2,
                                            "account": 3, "professional": True}


@pytest.mark.parametrize("data", [
    b'{"type":"CreateAccount","account":-1}',           # outside Id
    b'{"type":"CreateAccount","account":1,"extra":2}',  # unknown field
    b'{"type":"Nope","account":1}',                     # unknown command
    b'{"type":"Deposit","account":1,"asset":"USD"}',    # missing amount
    b'["CreateAccount",1,true,0]',                      # positional is not the named form
])
def test_decoder_validates(data):
    with pytest.raises((msgspec.ValidationError, msgspec.DecodeError)):
        named.decode_command(data)


def test_schemas_name_every_field():
    defs = named.command_schema()["$defs"]
    assert set(defs["Deposit"]["properties"]) == {"type", "account", "asset", "amount",
                                                  "transfer_id", "ts"}
    assert defs["Deposit"]["properties"]["account"]["minimum"] == 0
    assert "maker_order_id" in named.event_schema()["$defs"]["OrderFilled"]["properties"]
