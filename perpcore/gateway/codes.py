"""perpcore's reject codes as Binance USDⓈ-M error codes and messages.

A refusal reaches a client as Binance would send it (HTTP 400, `{"code": -4014, "msg": ...}`),
so that a client library maps it to the same typed error it would get from Binance. The table is
the documentation (README, "Serving"): perpcore's reason follows Binance's message after "; ".
"""
from __future__ import annotations

from perpcore.messages import RejectCode as R

# RejectCode -> (Binance code, Binance message)
BINANCE_ERRORS: dict[R, tuple[int, str]] = {
    R.MALFORMED: (-1102, "A mandatory parameter was not sent, was empty/null, or malformed."),
    R.UNKNOWN_COMMAND: (-1100, "Illegal characters found in a parameter."),
    R.UNKNOWN_SYMBOL: (-1121, "Invalid symbol."),
    R.UNKNOWN_ACCOUNT: (-2015, "Invalid API-key, IP, or permissions for action."),
    R.UNKNOWN_ASSET: (-1130, "Data sent for parameter 'asset' is not valid."),
    R.INVALID_PRICE: (-4001, "Price less than 0."),
    R.PRICE_NOT_TICK_MULTIPLE: (-4014, "Price not increased by tick size."),
    R.PRICE_OUT_OF_RANGE: (-4002, "Price greater than max price."),
    R.INVALID_QTY: (-4003, "Quantity less than or equal to zero."),
    R.QTY_NOT_LOT_MULTIPLE: (-4023, "Quantity not increased by step size."),
    R.QTY_TOO_LARGE: (-4005, "Quantity greater than max quantity."),
    R.BELOW_MIN_NOTIONAL: (-4164, "Order's notional must be no smaller than the minimum."),
    R.INVALID_AMOUNT: (-1130, "Data sent for parameter 'amount' is not valid."),
    R.AMOUNT_TOO_LARGE: (-1130, "Data sent for parameter 'amount' is not valid."),
    R.DUPLICATE_CLIENT_ORDER_ID: (-4116, "ClientOrderId is duplicated."),
    R.UNKNOWN_ORDER: (-2013, "Order does not exist."),
    R.STALE_TIMESTAMP: (-1021, "Timestamp for this request is outside of the recvWindow."),
    R.TIME_STEP_TOO_LARGE: (-1021, "Timestamp for this request is outside of the recvWindow."),
    R.INSUFFICIENT_MARGIN: (-2019, "Margin is insufficient."),
    R.NOT_ELIGIBLE: (-2010, "NEW_ORDER_REJECTED"),
    R.REDUCE_ONLY_WOULD_INCREASE: (-2022, "ReduceOnly Order is rejected."),
    R.ACCOUNT_IN_LIQUIDATION: (-2010, "NEW_ORDER_REJECTED"),
    R.LEVERAGE_NOT_ALLOWED: (-4028, "Leverage is not valid."),
    R.PRICE_OUTSIDE_BAND: (-4016, "Limit price can't be higher or lower than the band."),
    R.RISK_LIMIT_EXCEEDED: (-2027, "Exceeded the maximum allowable position at current "
                                   "leverage."),
    R.POST_ONLY_WOULD_TAKE: (-5022, "Due to the order could not be executed as maker, the Post "
                                    "Only order will be rejected."),
    R.FOK_UNFILLABLE: (-5021, "Due to the order could not be filled immediately, the FOK order "
                              "has been rejected."),
    R.NO_LIQUIDITY: (-2020, "Unable to fill."),
    R.WOULD_TRIGGER_IMMEDIATELY: (-2021, "Order would immediately trigger."),
    R.NO_REFERENCE_PRICE: (-2010, "NEW_ORDER_REJECTED"),
    R.DUPLICATE_ACCOUNT: (-1130, "Data sent for parameter 'account' is not valid."),
    R.DUPLICATE_TRANSFER: (-1130, "Data sent for parameter 'transferId' is not valid."),
    R.INSUFFICIENT_BALANCE: (-2018, "Balance is insufficient."),
    R.WITHDRAWAL_BREAKS_MARGIN: (-2019, "Margin is insufficient."),
    R.LOAN_LIMIT_EXCEEDED: (-2018, "Balance is insufficient."),
    R.SEQUENCE_REPLAYED: (-1001, "Internal error; unable to process your request."),
    R.SEQUENCE_GAP: (-1001, "Internal error; unable to process your request."),
    R.ENGINE_HALTED: (-1001, "Internal error; unable to process your request."),
    R.CONCURRENT_SUBMIT: (-1001, "Internal error; unable to process your request."),
}

# the gateway's own refusals (before any command reaches the engine)
UNKNOWN = -1000
TOO_MANY_REQUESTS = -1003
INVALID_TIMESTAMP = -1021
INVALID_SIGNATURE = -1022
MANDATORY_PARAM = -1102
INVALID_PARAM = -1130
INVALID_TIF = -1115
INVALID_ORDER_TYPE = -1116
INVALID_SIDE = -1117
INVALID_SYMBOL = -1121
CANCEL_REJECTED = -2011
NO_SUCH_ORDER = -2013
BAD_API_KEY_FMT = -2014
REJECTED_MBX_KEY = -2015
INVALID_CLIENT_ORDER_ID = -4015
INVALID_LISTEN_KEY = -1125


def binance_error(code: R, reason: str) -> tuple[int, str]:
    """(Binance code, message) for a perpcore refusal; the reason follows the message."""
    number, text = BINANCE_ERRORS.get(code, (UNKNOWN, "An unknown error occurred."))
    return number, f"{text} ({code.name}: {reason})"
