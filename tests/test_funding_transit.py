"""Funding intervals in transit (perpcore.funding's model) against the plain reference model, the
whole settlement at the funding time (the all-at-once pass perpcore.pricing keeps for what cannot
be spread): the same per-account amounts, zero-sum, the audit balanced after every command, every
query and every decision (pre-trade, withdrawal) the same while payments are in transit, the same
state once settled, and a snapshot taken in transit restoring to the same continuation. Then a
scenario: a payer that funding puts under maintenance, its payment a few commands after the
funding time, refused what it could no longer carry meanwhile and liquidated in the command in
which its payment moves."""
from unittest import mock

import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from perpcore import Exchange, default_config
from perpcore import messages as m
from perpcore import pricing as pricing_module
from perpcore.messages import FundReason, LiquidationReason, Side

from liquidation_venue import of, usd

BTC, ETH = "BTC-PERP", "ETH-PERP"
INTERVAL = 8 * 3600 * 10**9
PRICES = {BTC: 650_000, ETH: 35_000}
MAKER = 1_000
FUNDING = (m.FundingPaid, m.FundingSettled)


def config(interest: int, per_command: int):
    """BitMEX's mark on indices that never go stale, no premium sample: every settlement pays
    `interest` (RATE_SCALE per 8 h, longs paying when > 0) at the index; a funding interval in
    transit visits `per_command` accounts a command."""
    cfg = default_config()
    return msgspec.structs.replace(cfg, limits=msgspec.structs.replace(
        cfg.limits, funding_accounts_per_command=per_command), instruments={
        s: msgspec.structs.replace(spec, pricing=msgspec.structs.replace(
            spec.pricing, mark_method="bitmex", interest_rate=interest, index_stale_ns=10**18,
            funding_clamp=max(spec.pricing.funding_clamp, abs(interest)), funding_cap=10**6))
        for s, spec in cfg.instruments.items()})


def all_at_once():
    """The reference: perpcore.pricing settles every interval at its funding time."""
    return mock.patch.object(pricing_module, "_SPREADABLE", 0)


def apart(events: list) -> tuple[list, list]:
    """(the funding's events, the rest), the fund's record of funding remainders among the first."""
    funding = [e for e in events if type(e) in FUNDING or type(e) is m.InsuranceFundChanged
               and e.reason == FundReason.FUNDING]
    return funding, [e for e in events if e not in funding]


def trade(account: int, symbol: str, side: Side, qty: int) -> list:
    """The maker rests qty at the index, the account takes it."""
    price = PRICES[symbol]
    other = Side.SELL if side == Side.BUY else Side.BUY
    return [m.PlaceOrder(account=MAKER, symbol=symbol, side=other, qty=qty, price=price),
            m.PlaceOrder(account=account, symbol=symbol, side=side, qty=qty, price=price,
                         tif=m.TimeInForce.IOC)]


def commands_of(step) -> list:
    kind, account, symbol, side, amount = step
    if kind == "deposit":
        return [m.Deposit(account=account, asset="USD", amount=amount * 10**6)]
    if kind == "withdraw":      # often more than the account may take: refused alike
        return [m.Withdraw(account=account, asset="USD", amount=amount * 10**8)]
    if kind == "trade":
        return trade(account, symbol, side, amount)
    if kind == "order":         # far from the index, often beyond the margin: refused alike
        price = PRICES[symbol] * (8 if side == Side.SELL else 1) // 4
        return [m.PlaceOrder(account=account, symbol=symbol, side=side, qty=amount * 300,
                             price=price), m.CancelAll(account=account, symbol=symbol)]
    return [m.AdvanceClock(ts=INTERVAL)]        # time does not move: only the sweep runs


accounts_st = st.integers(1, 9)
symbols_st = st.sampled_from([BTC, ETH])
sides_st = st.sampled_from([Side.BUY, Side.SELL])
step_st = st.tuples(st.sampled_from(["deposit", "withdraw", "trade", "order", "noop", "noop"]),
                    accounts_st, symbols_st, sides_st, st.integers(1, 40))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(interest=st.integers(-300_000, 300_000).filter(bool), per_command=st.integers(1, 4),
       deposits=st.lists(st.integers(2_000, 20_000), min_size=9, max_size=9),
       positions=st.lists(st.tuples(accounts_st, symbols_st, sides_st, st.integers(1, 60)),
                          min_size=1, max_size=12),
       steps=st.lists(step_st, max_size=25), snapshot_at=st.integers(0, 25))
def test_an_interval_in_transit_is_the_settlement_at_the_funding_time(
        interest, per_command, deposits, positions, steps, snapshot_at):
    cfg = config(interest, per_command)
    spread, ref = Exchange(cfg), Exchange(cfg)
    setup = [m.CreateAccount(account=MAKER),
             m.Deposit(account=MAKER, asset="USD", amount=10**14)]
    for account, deposit in enumerate(deposits, start=1):
        setup += [m.CreateAccount(account=account),
                  m.Deposit(account=account, asset="USD", amount=deposit * 10**6)]
    setup += [m.SetIndexPrice(source="x", symbol=s, price=p) for s, p in PRICES.items()]
    for account, symbol, side, qty in positions:
        setup += trade(account, symbol, side, qty)
    for cmd in setup:
        assert spread.submit(cmd) == ref.submit(cmd)
    paid = {"spread": [], "ref": []}
    restored = None
    commands = [m.AdvanceClock(ts=INTERVAL)] + [c for s in steps for c in commands_of(s)]
    for i, cmd in enumerate(commands):
        if i == snapshot_at and spread.margin.in_transit:
            restored = Exchange.restore(cfg, spread.snapshot())
            assert restored.state_hash() == spread.state_hash()
        events = spread.submit(cmd)
        with all_at_once():
            reference = ref.submit(cmd)
        if restored is not None:
            assert restored.submit(cmd) == events
        # every decision and every query as if the funding were settled
        funding, rest = apart(events)
        ref_funding, ref_rest = apart(reference)
        assert rest == ref_rest
        paid["spread"] += funding
        paid["ref"] += ref_funding
        spread.audit().check()
        for account in [MAKER, *range(1, 10)]:
            assert spread.account(account) == ref.account(account)
    while spread.margin.in_transit:         # the rest of the sweep
        events = spread.submit(m.AdvanceClock(ts=INTERVAL))
        assert not apart(events)[1]
        paid["spread"] += events
        spread.audit().check()
    # the same amounts per account and symbol, zero-sum with the fund's remainder
    for side in paid.values():
        amounts = {}
        for e in of(side, m.FundingPaid):
            key = (e.account, e.symbol)
            assert key not in amounts       # one payment per position and interval
            amounts[key] = e.amount
        settled = sorted((e.symbol, e.positions, e.paid, e.received, e.insurance)
                         for e in of(side, m.FundingSettled))
        assert sum(amounts.values()) + sum(s[-1] for s in settled) == 0
        side[:] = [amounts, settled]
    assert paid["spread"] == paid["ref"]
    assert spread.margin.ledger.venue["funding_transit"]["USD"] == 0
    assert spread.state_hash() == ref.state_hash()


def test_a_payer_funding_puts_under_maintenance_is_liquidated_when_its_payment_moves():
    """TRADER (account 9) long 1 BTC at 65,000 with 5,276.83 USD, the index at 60,000: 0.30 USD
    above maintenance. Funding of 0.01% takes 6.00 USD from it. Two accounts a command: the
    payers' pass reaches it in the second command after the funding time, and until then every
    check sees it as if it had paid."""
    trader, maker, rich, bidder = 9, 2, 3, 4
    ex = Exchange(config(10_000, 2))
    for account, amount in ((trader, usd("5276.83")), (maker, usd(10**6)), (rich, usd(10**5)),
                            (bidder, usd(10**6))):
        ex.submit(m.CreateAccount(account=account))
        ex.submit(m.Deposit(account=account, asset="USD", amount=amount))
    ex.submit(m.SetIndexPrice(source="x", symbol=BTC, price=650000))
    for long, short, qty in ((trader, maker, 1000), (rich, maker, 100)):
        ex.submit(m.PlaceOrder(account=short, symbol=BTC, side=Side.SELL, qty=qty, price=650000))
        ex.submit(m.PlaceOrder(account=long, symbol=BTC, side=Side.BUY, qty=qty, price=650000,
                               tif=m.TimeInForce.IOC))
    ex.submit(m.PlaceOrder(account=bidder, symbol=BTC, side=Side.BUY, qty=1000, price=599000))
    ex.submit(m.SetIndexPrice(source="x", symbol=BTC, price=600000))
    assert (ex.account(trader).equity, ex.account(trader).maintenance_margin) == \
        (usd("250.33"), usd("250.03"))
    # the funding time: accounts 2 and 3 visited, RICH pays; the trader's payment is in transit
    events = ex.submit(m.AdvanceClock(ts=INTERVAL))
    assert [(e.account, e.amount) for e in of(events, m.FundingPaid)] == [(rich, -usd("0.6"))]
    assert not of(events, m.LiquidationStarted)
    # queries and checks see it as if it had paid: 244.33 USD of equity, under maintenance
    view = ex.account(trader)
    assert (view.equity, view.balances["USD"], view.liquidatable) == \
        (usd("244.33"), usd("5276.83") - usd("32.5") - usd(6), True)
    assert view.available["USD"] == 0
    refused = ex.submit(m.Withdraw(account=trader, asset="USD", amount=usd(1)))
    assert refused[0].code == m.RejectCode.WITHDRAWAL_BREAKS_MARGIN
    refused = ex.submit(m.PlaceOrder(account=trader, symbol=BTC, side=Side.BUY, qty=1,
                                     price=600000))
    assert refused[0].code == m.RejectCode.INSUFFICIENT_MARGIN
    assert ex.margin.ledger.balances[trader]["USD"] == usd("5276.83") - usd("32.5")  # unmoved
    # the next command visits accounts 4 and 9: the trader pays and is liquidated at once
    events = ex.submit(m.AdvanceClock(ts=INTERVAL))
    assert [(e.account, e.amount) for e in of(events, m.FundingPaid)] == [(trader, -usd(6))]
    assert of(events, m.LiquidationStarted) == [m.LiquidationStarted(
        events[0].seq, INTERVAL, trader, usd("244.33"), usd("250.03"),
        LiquidationReason.MAINTENANCE)]
    assert events.index(of(events, m.FundingPaid)[0]) < \
        events.index(of(events, m.LiquidationStarted)[0])
    # then the receivers: the maker gets 6.60 USD, and the interval is complete
    events = []
    while ex.margin.in_transit:
        events += ex.submit(m.AdvanceClock(ts=INTERVAL))
    assert [(e.account, e.amount) for e in of(events, m.FundingPaid)] == [(maker, usd("6.6"))]
    assert of(events, m.FundingSettled) == [m.FundingSettled(        # in the last command
        ex.seq, INTERVAL, BTC, 10_000, 600000, 3, usd("6.6"), usd("6.6"), 0)]
    assert not any(ex.margin.liquidatable(a) for a in (trader, maker, rich, bidder))
    ex.audit().check()


def test_a_next_funding_time_completes_the_interval_in_transit():
    """A clock jump over two funding times, one account a command: the second completes the
    first before it begins; the same payments as the reference, each interval's in order."""
    cfg = config(10_000, 1)
    spread, ref = Exchange(cfg), Exchange(cfg)
    setup = [m.CreateAccount(account=MAKER), m.Deposit(account=MAKER, asset="USD",
                                                       amount=10**14)]
    for account in (1, 2, 3):
        setup += [m.CreateAccount(account=account),
                  m.Deposit(account=account, asset="USD", amount=10**12)]
    setup.append(m.SetIndexPrice(source="x", symbol=BTC, price=PRICES[BTC]))
    for account, side in ((1, Side.BUY), (2, Side.SELL), (3, Side.BUY)):
        setup += trade(account, BTC, side, 100)
    for cmd in setup:
        spread.submit(cmd)
        ref.submit(cmd)
    events = spread.submit(m.AdvanceClock(ts=2 * INTERVAL))
    with all_at_once():
        reference = ref.submit(m.AdvanceClock(ts=2 * INTERVAL))
    # the first interval's payments and totals (the rest of them at the second funding time)
    assert figures(events)[:5] == figures(reference)[:5]
    assert [e.ts for e in events if type(e) in FUNDING][1:5] == [2 * INTERVAL] * 4
    # the second interval has only begun (the command's one account was the first's): all of
    # it in transit, the views as the reference's
    assert figures(events)[5:] == [] and spread.margin.in_transit == 1
    assert [spread.account(a) for a in (1, 2, 3)] == [ref.account(a) for a in (1, 2, 3)]


def figures(events: list) -> list[tuple]:
    """The funding events without their seq and ts."""
    return [(type(e).__name__, *msgspec.structs.astuple(e)[2:]) for e in events
            if type(e) in FUNDING]


def test_a_loan_conversion_repays_from_the_settled_cash():
    """Account 3, long ETH (a payer, its payment in transit, one account a command) and borrowing
    USD against 1 BTC, most of the loan withdrawn: BTC falls past the liquidation LTV, and the
    conversion, which repays from cash first, runs on the cash as if funding were settled (its
    payment moves first, in that command): the same repayment and sale as the reference's."""
    cfg = config(300_000, 1)
    spread, ref = Exchange(cfg), Exchange(cfg)
    btc = cfg.assets["BTC"]
    setup = [m.CreateAccount(account=MAKER), m.Deposit(account=MAKER, asset="USD",
                                                       amount=10**14)]
    for account in (1, 2, 3):
        setup += [m.CreateAccount(account=account),
                  m.Deposit(account=account, asset="USD", amount=usd(5_000))]
    setup += [m.SetIndexPrice(source="x", symbol=s, price=p) for s, p in PRICES.items()]
    setup += trade(1, ETH, Side.BUY, 1_000) + trade(2, ETH, Side.SELL, 2_000)
    setup += trade(3, ETH, Side.BUY, 1_000)
    setup += [m.Deposit(account=3, asset="BTC", amount=btc.to_units("1")),
              m.Borrow(account=3, asset="USD", amount=usd(30_000)),
              m.Withdraw(account=3, asset="USD", amount=usd(33_000))]
    for cmd in setup:
        assert not of(spread.submit(cmd), m.OrderRejected)
        ref.submit(cmd)
    for cmd in (m.AdvanceClock(ts=INTERVAL),
                m.SetIndexPrice(source="x", symbol=BTC, price=350_000, ts=INTERVAL)):
        events = spread.submit(cmd)
        with all_at_once():
            reference = ref.submit(cmd)
        assert apart(events)[1] == apart(reference)[1]
        assert [spread.account(a) for a in (1, 2, 3)] == [ref.account(a) for a in (1, 2, 3)]
    # the conversion's command: account 3's payment first, then the repayment from its cash
    kinds = [type(e) for e in events if e.__class__ in (m.FundingPaid, m.Repaid)]
    assert kinds == [m.FundingPaid, m.Repaid] and of(events, m.FundingPaid)[0].account == 3
    assert of(events, m.CollateralConverted)
    spread.audit().check()
