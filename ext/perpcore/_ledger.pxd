# The contract of ext/perpcore/_ledger.pyx (the extension perpcore._ledger): the one writer of money.
# Every balance the venue holds (an account's, perpcore.ledger's venue buckets) is a dict of asset
# -> minor units; outside the ledger's own external flows (deposits and withdrawals, in
# perpcore.ledger), money only ever changes through these two functions, which the layers call
# from C and from Python alike (tests/test_ledger.py checks that no other code writes a balance).

# amount of asset from one holder's balances to another's (negative: the other way round)
cpdef object move(dict source, dict target, str asset, amount)
# profit (> 0) or loss (< 0) realised on closing a position, into the account's balances: its
# counterpart is the open positions' entry value, perpcore.ledger's open_entry_value
cpdef object realise(dict cash, str asset, amount)
