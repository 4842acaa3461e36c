"""perpcore.ledger: balances, venue buckets, transfer ids and the audit that catches any unit
created or lost."""
import re
from pathlib import Path

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from perpcore._ledger import CashTable, move, realise
from perpcore.ledger import AuditError, Ledger

ASSETS = ["USD", "BTC"]


def ledger_with_flows():
    led = Ledger(ASSETS)
    led.open(1)
    led.open(2)
    led.deposit(1, "USD", 1_000, 7, now=10)
    led.deposit(2, "BTC", 50, 0, now=10)
    led.withdraw(1, "USD", 300, 8, now=20)
    # a fee: account to the fee account; an insurance payment from the venue's capital
    move(led.balances[1], led.venue["fee_account"], "USD", 5)
    led.deposit_venue("insurance_fund", "USD", 40)
    return led


def test_audit_balances_when_money_only_moves():
    audit = ledger_with_flows().audit({"USD": 0}, {"USD": 0}, {"USD": 0}).check()
    usd = audit["USD"]
    assert (usd.accounts, usd.fee_account, usd.insurance_fund) == (695, 5, 40)
    assert (usd.deposits, usd.withdrawals, usd.difference) == (1_040, 300, 0)
    assert audit["BTC"].accounts == 50 and audit.ok


def test_audit_names_the_asset_a_unit_was_created_in():
    led = ledger_with_flows()
    led.balances[2]["BTC"] += 1
    audit = led.audit({}, {}, {})
    assert not audit.ok and audit["USD"].ok and audit["BTC"].difference == 1
    with pytest.raises(AuditError, match="BTC: held 51"):
        audit.check()


def test_audit_counts_the_open_entry_value_and_checks_loans_against_the_pool():
    led = ledger_with_flows()
    # a realised gain of 10 paid while the counterparty's matching loss sits in its open position
    led.balances[1]["USD"] += 10
    assert not led.audit({"USD": 0}, {}, {}).ok
    assert led.audit({"USD": -10}, {}, {}).ok
    assert not led.audit({"USD": -10}, {"USD": 3}, {"USD": 2}).ok


def test_transfer_ids_are_remembered_per_account():
    led = ledger_with_flows()
    assert led.seen(1, 7, 20) and led.seen(1, 8, 20)
    assert not led.seen(2, 7, 20) and not led.seen(1, 0, 20) and not led.seen(2, 0, 20)


def test_state_round_trip_gives_the_rows_afresh_in_account_order():
    led = ledger_with_flows()
    other = Ledger(ASSETS)
    other.open(99)                  # an account the state does not have is gone after it
    other.open(2)
    other.from_state(led.to_state(20))
    assert other.to_state(20) == led.to_state(20)
    assert 99 not in other.balances and list(other.balances) == sorted(led.balances)
    assert [other.cash.row(a) for a in sorted(led.balances)] == list(range(len(led.balances)))
    assert other.balances[1]["USD"] == 695


def test_two_views_of_one_account_are_one_holder():
    led = ledger_with_flows()
    before = led.balances[1]["USD"]
    assert move(led.balances[1], led.balances[1], "USD", 5) == before
    assert led.balances[1]["USD"] == before and led.balances[1] == led.balances[1]


def test_a_move_is_what_one_holder_loses_and_the_other_gains():
    a, b = {"USD": 10, "BTC": 1}, {"USD": 0, "BTC": 0}
    assert move(a, b, "USD", 7) == 7 and (a, b) == ({"USD": 3, "BTC": 1}, {"USD": 7, "BTC": 0})
    assert move(a, b, "USD", -2) == 5 and (a["USD"], b["USD"]) == (5, 5)     # the other way
    assert realise(a, "BTC", -1) == 0 and a["BTC"] == 0
    with pytest.raises(KeyError):
        move(a, b, "ETH", 1)


# a write to a balance dict: one of the holders' names, subscripted, then assigned or updated
MONEY_WRITE = re.compile(r"\b(cash|balances|fund|fees|funding|insurance|pool|platform|venue|"
                         r"transit)(\[[^\]\n]*\])+\s*([-+*/]?=)(?!=)")
ROOT = Path(__file__).resolve().parent.parent


def test_only_the_ledger_writes_a_balance():
    """One writer of money: outside perpcore.ledger (the deposits and withdrawals that bring money
    in and out) and perpcore._ledger (move, realise and an Accrual's take), no code assigns to a
    balance; funding, fees, liquidation, the fund and loans all call them."""
    # the engine's modules (the gateway's read model keeps copies of what events report)
    sources = sorted((ROOT / "perpcore").glob("*.py")) + sorted((ROOT / "ext").rglob("*.pyx"))
    assert len(sources) > 20
    writes = [f"{path.relative_to(ROOT)}:{n}: {line.strip()}"
              for path in sources if path.name not in ("ledger.py", "_ledger.pyx")
              for n, line in enumerate(path.read_text().splitlines(), 1)
              if MONEY_WRITE.search(line.split("#")[0])]
    assert writes == []
    # the check sees a write where there is one
    assert MONEY_WRITE.search("acc.cash[self.settle] -= fee")
    assert MONEY_WRITE.search("self.ledger.balances[account][asset] += amount")
    assert not MONEY_WRITE.search("self._fund_seen[asset] = balance")


INT64 = (-2**63, 2**63 - 1)
balances = st.one_of(st.integers(*INT64), st.sampled_from([INT64[0], INT64[1], 0, -1, 1]))
amounts = st.one_of(st.integers(-2**64, 2**64), st.integers(*INT64),
                    st.sampled_from([0, 1, -1, INT64[0], INT64[1], 2**63]))


@given(a=balances, b=balances, bucket=st.integers(-2**70, 2**70), amount=amounts,
       kinds=st.sampled_from(["cash-cash", "cash-dict", "dict-cash"]))
def test_a_move_is_exact_or_refused_with_nothing_written(a, b, bucket, amount, kinds):
    """Against plain Python ints: an account's balance stays in int64 (its cell in C) or the move
    is refused (OverflowError) before either holder changes; a venue bucket (a dict) is unbounded."""
    led = Ledger(ASSETS)
    led.open(1)
    led.open(2)
    led.balances[1]["USD"], led.balances[2]["USD"] = a, b
    venue = {"USD": bucket, "BTC": 0}
    source, target = {"cash-cash": (led.balances[1], led.balances[2]),
                      "cash-dict": (led.balances[1], venue),
                      "dict-cash": (venue, led.balances[2])}[kinds]
    before = (source["USD"], target["USD"])
    left, result = before[0] - amount, before[1] + amount
    fits = all(INT64[0] <= v <= INT64[1] for v, h in ((left, source), (result, target))
               if h is not venue)
    if fits:
        assert move(source, target, "USD", amount) == result
        assert (source["USD"], target["USD"]) == (left, result)
    else:
        with pytest.raises(OverflowError):
            move(source, target, "USD", amount)
        assert (source["USD"], target["USD"]) == before


@given(a=balances, amount=amounts)
def test_realised_pnl_is_exact_or_refused_with_nothing_written(a, amount):
    led = Ledger(ASSETS)
    led.open(1)
    cash = led.balances[1]
    cash["USD"] = a
    if INT64[0] <= a + amount <= INT64[1]:
        assert realise(cash, "USD", amount) == a + amount == cash["USD"]
    else:
        with pytest.raises(OverflowError):
            realise(cash, "USD", amount)
        assert cash["USD"] == a


ids = st.one_of(st.integers(*INT64), st.sampled_from([0, 1, -1, INT64[0], INT64[1]]))


@given(first=ids, run=st.integers(0, 40), strays=st.lists(ids, max_size=4),
       probes=st.lists(ids, max_size=8))
@example(first=INT64[1], run=1, strays=[INT64[0]], probes=[])     # no wrapping past int64
def test_an_account_is_found_by_its_number_in_sequence_or_by_the_table(first, run, strays,
                                                                        probes):
    """Accounts opened in sequence (first, first + 1, ...) are found by arithmetic, without the
    table; one opened out of sequence ends that for good, and every account, before or after it,
    is still found at its row. Against a dict: no number outside the register names a row."""
    run = min(run, INT64[1] - first + 1)
    table, model = CashTable(ASSETS), {}
    for account in [first + r for r in range(run)] + strays:
        assert table.open(account) == model.setdefault(account, len(model))
    opened = list(model)
    start = opened[0] if opened else 0
    assert table.sequential == (bool(opened) and opened == list(range(start, start + len(opened))))
    near = [first - 1, first + run, first + run + 1, *probes]
    for account in opened + [a for a in near if INT64[0] <= a <= INT64[1]]:
        if account in model:
            assert table.row(account) == model[account]
            assert table.account(model[account]) == account
        else:
            with pytest.raises(KeyError):
                table.row(account)
    table.clear()
    assert not table.sequential
    for account in opened:
        with pytest.raises(KeyError):
            table.row(account)


def test_fees_accrue_in_c_and_reach_the_fee_account_in_one_move():
    """An order's fees are taken from each account's cell as its fills settle and moved into the
    fee account once (perpcore._ledger.Accrual): the sum in transit is exact, signed (a maker
    rebate is negative), and a balance that would leave int64 is refused with nothing written."""
    from perpcore._ledger import Accrual
    led = Ledger(ASSETS)
    led.open(1)
    led.open(2)
    led.balances[1]["USD"], led.balances[2]["USD"] = 100, -2**63 + 5
    fees = led.venue["fee_account"]
    accrual = Accrual(fees, "USD")
    accrual.take_from(led.balances[1], 30)
    accrual.take_from(led.balances[1], -4)      # a rebate
    assert (led.balances[1]["USD"], accrual.amount, fees["USD"]) == (74, 26, 0)
    with pytest.raises(OverflowError):
        accrual.take_from(led.balances[2], 6)   # -2**63 + 5 - 6 leaves int64
    assert (led.balances[2]["USD"], accrual.amount) == (-2**63 + 5, 26)
    accrual.flush()
    assert (accrual.amount, fees["USD"]) == (0, 26)
    # what would pass int64 in transit goes to the bucket first
    accrual.take_from(led.balances[1], 2**62)
    accrual.take_from(led.balances[1], 2**62)
    assert accrual.amount == 2**62 and fees["USD"] == 26 + 2**62
    accrual.flush()
    assert fees["USD"] == 26 + 2**63 and led.balances[1]["USD"] == 74 - 2**63


def test_no_fee_stays_in_transit_between_commands():
    from perpcore import Exchange, default_config, workloads
    ex = Exchange(default_config())
    wl = workloads.standard(3_000, accounts=50)
    setup = workloads.account_setup(50, deposit="1000000")
    setup += workloads.to_messages(wl.setup, symbol=workloads.SYMBOL, ts0=1_000_000, ts_step=0)
    fees_in_events = 0
    for cmd in setup + workloads.to_messages(wl.cmds, wl.kinds, symbol=workloads.SYMBOL):
        events = ex.submit(cmd)
        fees_in_events += sum(e.fee for e in events if type(e).__name__ == "PositionChanged")
        assert ex.margin.fee_income.amount == 0
    assert fees_in_events > 0 and ex.margin.fees["USD"] == fees_in_events
    ex.audit().check()
