# The one writer of money: see perpcore._ledger.pxd, and perpcore.ledger for the holders and the
# audit. Amounts are Python ints (balances are bounded by the venue's money limit, not by int64 here).


cpdef object move(dict source, dict target, str asset, amount):
    """Moves amount of asset from source to target: what one loses the other gains, so no move can
    create or destroy money. Returns the target's new balance."""
    source[asset] = source[asset] - amount
    balance = target[asset] + amount
    target[asset] = balance
    return balance


cpdef object realise(dict cash, str asset, amount):
    """Realised PnL into an account's balances; returns the new balance."""
    balance = cash[asset] + amount
    cash[asset] = balance
    return balance
