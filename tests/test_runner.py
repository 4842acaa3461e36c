"""perpcore.runner: one engine thread, asyncio callers, group commit per batch."""
import asyncio
import threading

import pytest

import perpcore
from perpcore import Exchange, messages as m
from perpcore.runner import EngineRunner
from perpcore.snapshot import Store

CFG = perpcore.default_config()
SPEC = CFG.instruments["BTC-PERP"]
USD = CFG.assets["USD"]


def setup_commands():
    return [m.CreateAccount(account=1), m.CreateAccount(account=2),
            m.Deposit(account=1, asset="USD", amount=USD.to_units("1000000")),
            m.Deposit(account=2, asset="USD", amount=USD.to_units("1000000")),
            m.SetIndexPrice(source="x", symbol="BTC-PERP", price=SPEC.to_ticks("65000"))]


def order(account, side, price, cid, qty="0.01"):
    return m.PlaceOrder(account=account, symbol="BTC-PERP", side=side, qty=SPEC.to_lots(qty),
                        price=SPEC.to_ticks(price), client_order_id=cid)


def ticking_clock(start=1_000_000_000):
    t = [start]

    def clock():
        t[0] += 1000
        return t[0]
    return clock


async def concurrent_orders(runner):
    """40 orders from concurrent callers: each gets its own command's events."""
    await runner.submit_many(setup_commands())
    tasks = [asyncio.ensure_future(runner.submit(
        order(1 + i % 2, m.Side.BUY if i % 2 else m.Side.SELL, str(64000 + 50 * (i % 7)), 100 + i)))
        for i in range(40)]
    results = await asyncio.gather(*tasks)
    for i, events in enumerate(results):
        accepted = [e for e in events if isinstance(e, m.OrderAccepted)]
        assert len(accepted) == 1 and accepted[0].client_order_id == 100 + i
        assert len({e.seq for e in events}) == 1
    return results


@pytest.mark.parametrize("sync", ["none", "group", "always"])
def test_journaled_each_caller_gets_its_own_durable_events(tmp_path, sync):
    async def main():
        store = Store(tmp_path, CFG, sync=sync)
        runner = EngineRunner(store.engine, clock=ticking_clock())
        async with runner:
            results = await concurrent_orders(runner)
            committed = await runner.query(lambda ex: store.engine.journal.committed_seq)
            assert committed >= max(e.seq for events in results for e in events)
            hash_live = await runner.query(lambda ex: ex.state_hash())
        store.close()
        return hash_live
    hash_live = asyncio.run(main())
    # the stamped times are in the journal: recovery replays to the same state
    reopened = Store(tmp_path, CFG)
    assert reopened.engine.ex.state_hash() == hash_live
    reopened.close()


def test_plain_exchange():
    async def main():
        async with EngineRunner(Exchange(CFG), clock=ticking_clock()) as runner:
            await concurrent_orders(runner)
    asyncio.run(main())


def test_a_batch_is_committed_once(tmp_path):
    """Commands queued while the engine thread is busy are applied and committed as one batch."""
    async def main():
        store = Store(tmp_path, CFG, sync="group")
        runner = EngineRunner(store.engine)
        gate = threading.Event()
        async with runner:
            await runner.submit_many(setup_commands())
            blocked = runner.query(lambda ex: gate.wait())
            await asyncio.sleep(0)
            before = runner.batches
            futures = [runner.submit(order(1, m.Side.SELL, "66000", 10 + i)) for i in range(50)]
            gate.set()
            await blocked
            results = [await f for f in futures]
            assert runner.batches == before + 1
            assert [r[0].client_order_id for r in results] == list(range(10, 60))
        store.close()
    asyncio.run(main())


def test_stream_and_refusals():
    """Subscribers see every sequenced event once, in order; a refusal before sequencing answers
    only its caller."""
    async def main():
        async with EngineRunner(Exchange(CFG), clock=ticking_clock()) as runner:
            sub = runner.subscribe()
            answered = await runner.submit_many(setup_commands())
            bad = await runner.submit(m.Deposit(account=1, asset="USD", amount=1, ts=None))
            assert bad[0].code == m.RejectCode.MALFORMED
            sequenced_reject = await runner.submit(order(1, m.Side.BUY, "65000", 1, qty="0"))
            assert sequenced_reject[0].code == m.RejectCode.INVALID_QTY
            await runner.stop()
            seen = [e async for batch in sub for e in batch]
            expected = [e for events in answered for e in events] + sequenced_reject
            assert seen == expected
            assert [e.seq for e in seen] == sorted(e.seq for e in seen)
    asyncio.run(main())


def test_time_is_stamped_never_backwards():
    async def main():
        ex = Exchange(CFG)
        async with EngineRunner(ex, clock=lambda: 5) as runner:
            await runner.submit(m.AdvanceClock(ts=1_000))
            events = await runner.submit(m.CreateAccount(account=1))   # the wall clock is behind
            assert events[0].ts == 1_000
            assert (await runner.submit(m.CreateAccount(account=2, ts=2_000)))[0].ts == 2_000
    asyncio.run(main())


def test_query_errors_reach_the_caller():
    async def main():
        async with EngineRunner(Exchange(CFG)) as runner:
            with pytest.raises(KeyError):
                await runner.query(lambda ex: ex.account(99))
            assert (await runner.submit(m.CreateAccount(account=1)))[0].account == 1
    asyncio.run(main())


def test_a_slow_subscriber_is_cut_off():
    async def main():
        async with EngineRunner(Exchange(CFG), clock=ticking_clock()) as runner:
            slow, fast = runner.subscribe(maxsize=2), runner.subscribe()
            for i in range(1, 5):                       # four commits, none read yet
                await runner.submit(m.CreateAccount(account=i))
            assert slow.overflowed and not fast.overflowed
            assert [e.account for batch in [await slow.__anext__(), await slow.__anext__()]
                    for e in batch] == [1, 2]
            with pytest.raises(StopAsyncIteration):
                await slow.__anext__()
            fast.close()
            assert [e.account async for batch in fast for e in batch] == [1, 2, 3, 4]
    asyncio.run(main())


def test_a_failed_commit_acknowledges_nothing(tmp_path):
    """What cannot be made durable is never acknowledged: the batch's callers, and every later
    one, get RunnerError."""
    from perpcore.runner import RunnerError

    async def main():
        store = Store(tmp_path, CFG, sync="group")
        runner = EngineRunner(store.engine)
        fail = [False]

        def hook():
            if fail[0]:
                raise OSError("disk gone")
        runner.commit_hooks.append(hook)
        async with runner:
            await runner.submit(m.CreateAccount(account=1))
            fail[0] = True
            with pytest.raises(RunnerError, match="disk gone"):
                await runner.submit(m.CreateAccount(account=2))
            fail[0] = False
            with pytest.raises(RunnerError):
                await runner.submit(m.CreateAccount(account=3))
            assert isinstance(runner.failed, OSError)
        store.close()
    asyncio.run(main())


def test_the_clock_catches_up_after_a_long_stop():
    """A wall clock further ahead than one command may move time: the runner walks the exchange
    clock there in allowed steps instead of seeing every command refused."""
    day = 24 * 3600 * 10**9
    now = [100 * day]

    async def main():
        ex = Exchange(CFG)
        async with EngineRunner(ex, clock=lambda: now[0]) as runner:
            sub = runner.subscribe()
            await runner.submit(m.CreateAccount(account=1))
            now[0] += 20 * day                          # nearly three weeks later
            events = await runner.submit(m.CreateAccount(account=2))
            assert type(events[0]) is m.AccountCreated and events[0].ts == now[0]
            assert ex.clock == now[0] and ex.seq == 2 + 2       # two AdvanceClock steps
            await runner.stop()
            assert [e.seq async for batch in sub for e in batch
                    if type(e) is m.AccountCreated] == [1, 4]
    asyncio.run(main())
