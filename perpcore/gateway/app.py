"""`perpcore serve`: a subset of Binance USDⓈ-M Futures' REST API answered from the engine.

Each request handler runs on the aiohttp event loop and talks to the engine only through the
EngineRunner: commands with `await runner.submit(...)` (answered once durable), queries with
`await runner.query(...)` (on the engine thread). The read models (orders, fills, trades) are
updated by the runner's listener before a command's caller is answered, so a client's next
request sees its own order. Prices and quantities cross the edge as decimal strings, converted
exactly by the instrument specs (a price between ticks is refused, never rounded).
"""
from __future__ import annotations

import secrets
import time
from decimal import Decimal, InvalidOperation
from urllib.parse import parse_qsl

import msgspec
from aiohttp import web

from perpcore import messages as m
from perpcore import named
from perpcore.config import DECIMAL, RATE_SCALE, VenueConfig, rate_to_decimal
from perpcore.gateway import codes
from perpcore.gateway.auth import ApiKey, KeyStore, RateLimiter, signature_ok, signed_payload
from perpcore.gateway.readmodel import CLIENT_ID, OPEN, PARTIAL, Order, ReadModel
from perpcore.gateway.streams import Streams
from perpcore.runner import EngineRunner, RunnerError

_encode = msgspec.json.encode
MAX_RECV_WINDOW = 60_000
FAR_FUTURE_MS = 4133404800000         # Binance's deliveryDate of a perpetual
SIDES = {"BUY": m.Side.BUY, "SELL": m.Side.SELL}
TIFS = {"GTC": m.TimeInForce.GTC, "IOC": m.TimeInForce.IOC, "FOK": m.TimeInForce.FOK,
        "GTX": m.TimeInForce.POST_ONLY}
TIF_NAMES = {v: k for k, v in TIFS.items()}
LIMIT, MARKET = m.OrderType.LIMIT, m.OrderType.MARKET
TYPES = {"LIMIT": (LIMIT, m.TriggerKind.NONE), "MARKET": (MARKET, m.TriggerKind.NONE),
         "STOP": (LIMIT, m.TriggerKind.STOP), "STOP_MARKET": (MARKET, m.TriggerKind.STOP),
         "TAKE_PROFIT": (LIMIT, m.TriggerKind.TAKE_PROFIT),
         "TAKE_PROFIT_MARKET": (MARKET, m.TriggerKind.TAKE_PROFIT)}
WORKING = {"CONTRACT_PRICE": m.TriggerSource.LAST, "MARK_PRICE": m.TriggerSource.MARK}
WORKING_NAMES = {v: k for k, v in WORKING.items()}
DEPTH_LIMITS = (5, 10, 20, 50, 100, 500, 1000)


class ApiError(Exception):
    """A Binance-style error answer: HTTP status, Binance code, message."""

    def __init__(self, status: int, code: int, msg: str):
        super().__init__(msg)
        self.status, self.code, self.msg = status, code, msg


def _bad(code: int, msg: str) -> ApiError:
    return ApiError(400, code, msg)


def _ms(ns: int) -> int:
    return ns // 1_000_000


def _text(d: Decimal) -> str:
    return format(d, "f")


def _rate(r: int) -> str:
    return _text(rate_to_decimal(r))


def _refused(events: list) -> None:
    """Raises the Binance error of a refused command (its only event is an OrderRejected)."""
    if events and type(events[0]) is m.OrderRejected:
        code, msg = codes.binance_error(events[0].code, events[0].reason)
        raise _bad(code, msg)


class Gateway:
    """The Binance-compatible REST side of a venue: routes, authentication, rate limits.

    `runner` drives the engine; `keys` holds the trading keys; `read_model` is fed by the
    runner's listener (Gateway registers it); `admin_token` authorises the admin routes (sent as
    `X-PERPCORE-ADMIN`), which no trading key can reach. `weight_per_minute` is each API key's
    (and each client address's, for public routes) request-weight budget."""

    def __init__(self, runner: EngineRunner, config: VenueConfig, keys: KeyStore,
                 read_model: ReadModel, admin_token: str, weight_per_minute: int = 2400,
                 wall_ms=lambda: time.time_ns() // 1_000_000):
        self.runner = runner
        self.config = config
        self.keys = keys
        self.model = read_model
        self.admin_token = admin_token
        self.limiter = RateLimiter(weight_per_minute)
        self.wall_ms = wall_ms
        self.specs = {}                 # Binance symbol -> InstrumentSpec
        self.ids = {}                   # engine symbol -> Binance symbol
        for symbol, spec in sorted(config.instruments.items()):
            sid = f"{spec.base}{spec.settle}"
            self.specs[sid], self.ids[symbol] = spec, sid
        runner.listeners.append(read_model.apply)         # first: the streams read it
        self.streams = Streams(self)
        runner.commit_hooks.append(read_model.client_ids.sync)

    # ---- the application ---------------------------------------------------------------------

    def app(self) -> web.Application:
        """The aiohttp application with every route."""
        app = web.Application()
        r = app.router
        public = [("GET", "/fapi/v1/ping", self._ping, 1),
                  ("GET", "/fapi/v1/time", self._time, 1),
                  ("GET", "/fapi/v1/exchangeInfo", self._exchange_info, 1),
                  ("GET", "/fapi/v1/depth", self._depth, 5),
                  ("GET", "/fapi/v1/trades", self._trades, 5),
                  ("GET", "/fapi/v1/aggTrades", self._agg_trades, 20),
                  ("GET", "/fapi/v1/premiumIndex", self._premium_index, 1),
                  ("GET", "/fapi/v1/fundingRate", self._funding_rate, 1)]
        signed = [("POST", "/fapi/v1/order", self._new_order, 1, "trade"),
                  ("GET", "/fapi/v1/order", self._get_order, 1, "read"),
                  ("DELETE", "/fapi/v1/order", self._cancel_order, 1, "trade"),
                  ("PUT", "/fapi/v1/order", self._amend_order, 1, "trade"),
                  ("GET", "/fapi/v1/openOrders", self._open_orders, 1, "read"),
                  ("POST", "/fapi/v1/algoOrder", self._new_algo_order, 1, "trade"),
                  ("GET", "/fapi/v1/algoOrder", self._get_algo_order, 1, "read"),
                  ("DELETE", "/fapi/v1/algoOrder", self._cancel_algo_order, 1, "trade"),
                  ("GET", "/fapi/v1/openAlgoOrders", self._open_algo_orders, 1, "read"),
                  ("GET", "/fapi/v1/allOrders", self._all_orders, 5, "read"),
                  ("DELETE", "/fapi/v1/allOpenOrders", self._cancel_all, 1, "trade"),
                  ("POST", "/fapi/v1/leverage", self._leverage, 1, "trade"),
                  ("GET", "/fapi/v1/leverageBracket", self._leverage_bracket, 1, "read"),
                  ("GET", "/fapi/v1/userTrades", self._user_trades, 5, "read"),
                  ("GET", "/fapi/v2/account", self._account, 5, "read"),
                  ("GET", "/fapi/v3/account", self._account, 5, "read"),
                  ("GET", "/fapi/v2/balance", self._balance, 5, "read"),
                  ("GET", "/fapi/v3/balance", self._balance, 5, "read"),
                  ("GET", "/fapi/v2/positionRisk", self._position_risk, 5, "read"),
                  ("GET", "/fapi/v3/positionRisk", self._position_risk, 5, "read"),
                  ("GET", "/fapi/v1/positionSide/dual", self._position_mode, 1, "read"),
                  ("GET", "/fapi/v1/multiAssetsMargin", self._multi_assets, 1, "read")]
        admin = [("POST", "/admin/v1/account", self._admin_account),
                 ("POST", "/admin/v1/apiKey", self._admin_key),
                 ("POST", "/admin/v1/deposit", self._admin_deposit),
                 ("POST", "/admin/v1/withdraw", self._admin_withdraw),
                 ("POST", "/admin/v1/indexPrice", self._admin_index),
                 ("POST", "/admin/v1/insurance", self._admin_insurance),
                 ("POST", "/admin/v1/command", self._admin_command, True),
                 ("GET", "/admin/v1/schema", self._admin_schema),
                 ("GET", "/admin/v1/stateHash", self._admin_state_hash),
                 ("GET", "/admin/v1/stats", self._admin_stats)]
        for method, path, handler, weight in public:
            r.add_route(method, path, self._public(handler, weight))
        for method, path, handler, weight, permission in signed:
            r.add_route(method, path, self._signed(handler, weight, permission))
        for method, path, handler, *raw in admin:
            r.add_route(method, path, self._admin(handler, bool(raw)))
        for method in ("POST", "PUT", "DELETE"):
            r.add_route(method, "/fapi/v1/listenKey", self._keyed(self._listen_key, 1))
        self.streams.routes(app)
        return app

    # ---- request plumbing --------------------------------------------------------------------

    @staticmethod
    def _reply(data, status: int = 200, headers=None) -> web.Response:
        return web.Response(body=_encode(data), status=status, headers=headers,
                            content_type="application/json")

    def _limit(self, who: str, weight: int) -> dict:
        bucket = self.limiter.take(who, weight)
        if bucket is None:
            raise ApiError(429, codes.TOO_MANY_REQUESTS,
                           f"Too many requests; current limit is {self.limiter.limit} request "
                           f"weight per minute. Please use the websocket for live updates to "
                           f"avoid polling the API.")
        return {"X-MBX-USED-WEIGHT-1M": str(bucket.used)}

    def _public(self, handler, weight: int):
        async def serve(request: web.Request) -> web.Response:
            try:
                headers = self._limit(f"ip:{request.remote}", weight)
                return self._reply(await handler(dict(request.query)), headers=headers)
            except ApiError as e:
                return self._reply({"code": e.code, "msg": e.msg}, e.status)
            except RunnerError as e:
                return self._reply({"code": -1001, "msg": f"Internal error: {e}"}, 503)
        return serve

    def _signed(self, handler, weight: int, permission: str):
        async def serve(request: web.Request) -> web.Response:
            try:
                api_key = request.headers.get("X-MBX-APIKEY", "")
                # a bucket per known key; made-up keys share their address's
                headers = self._limit(f"key:{api_key}" if self.keys.get(api_key) is not None
                                      else f"ip:{request.remote}", weight)
                key, params = await self._authenticate(request, api_key, permission)
                return self._reply(await handler(key, params), headers=headers)
            except ApiError as e:
                return self._reply({"code": e.code, "msg": e.msg}, e.status)
            except RunnerError as e:
                return self._reply({"code": -1001, "msg": f"Internal error: {e}"}, 503)
        return serve

    def _keyed(self, handler, weight: int):
        """A route that takes the API key without a signature (Binance's listenKey)."""
        async def serve(request: web.Request) -> web.Response:
            try:
                api_key = request.headers.get("X-MBX-APIKEY", "")
                key = self.keys.get(api_key)
                headers = self._limit(f"key:{api_key}" if key is not None
                                      else f"ip:{request.remote}", weight)
                if key is None:
                    raise ApiError(401, codes.REJECTED_MBX_KEY,
                                   "Invalid API-key, IP, or permissions for action.")
                body = await request.text() if request.can_read_body else ""
                params = dict(parse_qsl(request.query_string))
                params.update(parse_qsl(body))
                return self._reply(await handler(request.method, key, params), headers=headers)
            except ApiError as e:
                return self._reply({"code": e.code, "msg": e.msg}, e.status)
        return serve

    async def _authenticate(self, request: web.Request, api_key: str,
                            permission: str) -> tuple[ApiKey, dict]:
        """The key and the parameters of a signed request, or the Binance error why not."""
        if not api_key:
            raise ApiError(401, codes.BAD_API_KEY_FMT, "API-key format invalid.")
        key = self.keys.get(api_key)
        if key is None or permission not in key.permissions:
            raise ApiError(401, codes.REJECTED_MBX_KEY,
                           "Invalid API-key, IP, or permissions for action.")
        query = request.raw_path.partition("?")[2]
        body = await request.text() if request.can_read_body else ""
        payload, signature, params = signed_payload(query, body)
        if signature is None:
            raise _bad(codes.MANDATORY_PARAM, "Mandatory parameter 'signature' was not sent, "
                                              "was empty/null, or malformed.")
        timestamp = self._int(params, "timestamp")
        window = self._int(params, "recvWindow", 5000)
        if not 0 < window <= MAX_RECV_WINDOW:
            raise _bad(codes.INVALID_PARAM, "recvWindow must be between 1 and 60000.")
        now = self.wall_ms()
        if timestamp >= now + 1000 or now - timestamp > window:
            raise _bad(codes.INVALID_TIMESTAMP,
                       "Timestamp for this request is outside of the recvWindow.")
        if not signature_ok(key.secret, payload, signature):
            raise _bad(codes.INVALID_SIGNATURE, "Signature for this request is not valid.")
        return key, params

    def _admin(self, handler, raw: bool = False):
        """An admin route: its handler takes the JSON body decoded (or, `raw`, its bytes)."""
        async def serve(request: web.Request) -> web.Response:
            try:
                token = request.headers.get("X-PERPCORE-ADMIN", "")
                if not secrets.compare_digest(token.encode(), self.admin_token.encode()):
                    raise ApiError(401, codes.REJECTED_MBX_KEY,
                                   "Invalid admin token: the admin side takes no trading key.")
                body = await request.read() if request.can_read_body else b""
                if raw:
                    return self._reply(await handler(body))
                try:
                    data = msgspec.json.decode(body) if body else {}
                except msgspec.DecodeError as e:
                    raise _bad(codes.INVALID_PARAM, f"the body is not JSON: {e}") from e
                return self._reply(await handler(data))
            except ApiError as e:
                return self._reply({"code": e.code, "msg": e.msg}, e.status)
            except RunnerError as e:
                return self._reply({"code": -1001, "msg": f"Internal error: {e}"}, 503)
        return serve

    # ---- parameters --------------------------------------------------------------------------

    @staticmethod
    def _required(params: dict, name: str) -> str:
        value = params.get(name)
        if value is None or value == "":
            raise _bad(codes.MANDATORY_PARAM,
                       f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed.")
        return value

    def _int(self, params: dict, name: str, default: int | None = None) -> int:
        value = params.get(name)
        if value is None and default is not None:
            return default
        text = self._required(params, name)
        if not text.isdigit() or len(text) > 18:
            raise _bad(codes.INVALID_PARAM, f"Data sent for parameter '{name}' is not valid.")
        return int(text)

    def _spec(self, params: dict, required: bool = True):
        sid = params.get("symbol")
        if sid is None and not required:
            return None
        spec = self.specs.get(self._required(params, "symbol"))
        if spec is None:
            raise _bad(codes.INVALID_SYMBOL, "Invalid symbol.")
        return spec

    @staticmethod
    def _decimal(params: dict, name: str, convert) -> int:
        text = Gateway._required(params, name)
        try:
            d = Decimal(text)
        except InvalidOperation:
            raise _bad(codes.INVALID_PARAM,
                       f"Data sent for parameter '{name}' is not valid.") from None
        if not d.is_finite():
            raise _bad(codes.INVALID_PARAM, f"Data sent for parameter '{name}' is not valid.")
        if d <= 0:
            code, msg = codes.BINANCE_ERRORS[m.RejectCode.INVALID_PRICE if name == "price"
                                             else m.RejectCode.INVALID_QTY]
            raise _bad(code, msg)
        try:
            return convert(d)
        except ValueError:
            code, msg = codes.BINANCE_ERRORS[m.RejectCode.PRICE_NOT_TICK_MULTIPLE
                                             if name == "price" else
                                             m.RejectCode.QTY_NOT_LOT_MULTIPLE]
            raise _bad(code, msg) from None

    @staticmethod
    def _choice(params: dict, name: str, table: dict, code: int, default=None):
        value = params.get(name)
        if value is None and default is not None:
            return default
        try:
            return table[Gateway._required(params, name)]
        except KeyError:
            raise _bad(code, f"Invalid {name}.") from None

    def _limit_param(self, params: dict, default: int, most: int) -> int:
        n = self._int(params, "limit", default)
        if not 0 < n <= most:
            raise _bad(codes.INVALID_PARAM, "Data sent for parameter 'limit' is not valid.")
        return n

    # ---- public routes -----------------------------------------------------------------------

    async def _ping(self, params: dict):
        return {}

    async def _time(self, params: dict):
        return {"serverTime": self.wall_ms()}

    async def _exchange_info(self, params: dict):
        symbols = []
        for sid, spec in self.specs.items():
            tick, lot = spec.tick_size, spec.lot_size
            symbols.append({
                "symbol": sid, "pair": sid, "contractType": "PERPETUAL",
                "deliveryDate": FAR_FUTURE_MS, "onboardDate": 1, "status": "TRADING",
                "maintMarginPercent": _text(DECIMAL.divide(spec.tiers[0].maintenance_rate, 10**6)),
                "requiredMarginPercent": _text(DECIMAL.divide(100, spec.tiers[0].max_leverage)),
                "baseAsset": spec.base, "quoteAsset": spec.settle, "marginAsset": spec.settle,
                "pricePrecision": max(0, -tick.as_tuple().exponent),
                "quantityPrecision": max(0, -lot.as_tuple().exponent),
                "baseAssetPrecision": 8, "quotePrecision": 8,
                "underlyingType": "COIN", "underlyingSubType": [], "triggerProtect": "0.0500",
                "liquidationFee": _rate(spec.liquidation_fee),
                "marketTakeBound": _rate(spec.market_protection),
                "filters": [
                    {"filterType": "PRICE_FILTER", "tickSize": _text(tick * spec.price_step),
                     "minPrice": _text(tick * spec.price_step),
                     "maxPrice": _text(spec.from_ticks(spec.max_price))},
                    {"filterType": "LOT_SIZE", "stepSize": _text(lot * spec.qty_step),
                     "minQty": _text(lot * spec.qty_step),
                     "maxQty": _text(spec.from_lots(spec.max_qty))},
                    {"filterType": "MARKET_LOT_SIZE", "stepSize": _text(lot * spec.qty_step),
                     "minQty": _text(lot * spec.qty_step),
                     "maxQty": _text(spec.from_lots(spec.max_qty))},
                    {"filterType": "MIN_NOTIONAL", "notional": _text(spec.min_notional)},
                ],
                "orderTypes": list(TYPES), "timeInForce": list(TIFS),
            })
        return {"timezone": "UTC", "serverTime": self.wall_ms(), "futuresType": "U_MARGINED",
                "rateLimits": [{"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE",
                                "intervalNum": 1, "limit": self.limiter.limit}],
                "exchangeFilters": [],
                "assets": [{"asset": a, "marginAvailable": True, "autoAssetExchange": "0"}
                           for a in sorted(self.config.assets)],
                "symbols": symbols}

    async def _depth(self, params: dict):
        spec = self._spec(params)
        limit = self._int(params, "limit", 500)
        if limit not in DEPTH_LIMITS:
            raise _bad(codes.INVALID_PARAM, "Data sent for parameter 'limit' is not valid.")
        seq, clock, (bids, asks) = await self.runner.query(
            lambda ex: (ex.seq, ex.clock, ex.book(spec.symbol).depth(limit)))
        level = lambda p, q: [_text(spec.from_ticks(p)), _text(spec.from_lots(q))]  # noqa: E731
        return {"lastUpdateId": seq, "E": _ms(clock), "T": _ms(clock),
                "bids": [level(p, q) for p, q, _ in bids],
                "asks": [level(p, q) for p, q, _ in asks]}

    async def _trades(self, params: dict):
        spec = self._spec(params)
        limit = self._limit_param(params, 500, 1000)
        recent = list(self.model.trades.get(spec.symbol, ()))[-limit:]
        return [{"id": t.id, "price": _text(spec.from_ticks(t.price)),
                 "qty": _text(spec.from_lots(t.qty)),
                 "quoteQty": _text(spec.from_ticks(t.price) * spec.from_lots(t.qty)),
                 "time": _ms(t.time), "isBuyerMaker": t.buyer_maker} for t in recent]

    async def _agg_trades(self, params: dict):
        """Each trade is its own aggregate (a taker order's fills at one price are separate
        trades here, as each has its own maker)."""
        spec = self._spec(params)
        limit = self._limit_param(params, 500, 1000)
        recent = list(self.model.trades.get(spec.symbol, ()))[-limit:]
        return [{"a": t.id, "p": _text(spec.from_ticks(t.price)),
                 "q": _text(spec.from_lots(t.qty)), "f": t.id, "l": t.id,
                 "T": _ms(t.time), "m": t.buyer_maker} for t in recent]

    async def _premium_index(self, params: dict):
        spec = self._spec(params, required=False)
        specs = [spec] if spec is not None else list(self.specs.values())

        def read(ex):
            return ex.clock, [(s, ex.mark_price(s.symbol), ex.index_price(s.symbol),
                               ex.funding_rate(s.symbol)) for s in specs]
        clock, rows = await self.runner.query(read)
        out = []
        for s, mark, index, rate in rows:
            out.append({"symbol": self.ids[s.symbol],
                        "markPrice": _text(s.from_ticks(mark or 0)),
                        "indexPrice": _text(s.from_ticks(index or 0)),
                        "estimatedSettlePrice": _text(s.from_ticks(mark or 0)),
                        "lastFundingRate": _rate(rate),
                        "interestRate": _rate(s.pricing.scaled(s.pricing.interest_rate)),
                        "nextFundingTime": _ms(self.model.next_funding.get(s.symbol, 0)),
                        "time": _ms(clock)})
        return out[0] if spec is not None else out

    async def _funding_rate(self, params: dict):
        spec = self._spec(params, required=False)
        limit = self._limit_param(params, 100, 1000)
        out = []
        for s in [spec] if spec is not None else list(self.specs.values()):
            for ts, rate, mark in self.model.funding.get(s.symbol, ()):
                out.append({"symbol": self.ids[s.symbol], "fundingRate": _rate(rate),
                            "fundingTime": _ms(ts), "markPrice": _text(s.from_ticks(mark))})
        out.sort(key=lambda x: x["fundingTime"])
        return out[-limit:]

    # ---- orders ------------------------------------------------------------------------------

    def _order_json(self, order: Order) -> dict:
        spec = self.config.instruments[order.symbol]
        avg = (spec.from_ticks(order.value) / order.filled) if order.filled else Decimal(0)
        kind = order.kind
        return {"orderId": order.order_id, "symbol": self.ids[order.symbol],
                "status": order.status, "clientOrderId": order.client_id,
                "price": _text(spec.from_ticks(order.price)
                               if order.order_type == m.OrderType.LIMIT else Decimal(0)),
                "avgPrice": _text(avg), "origQty": _text(spec.from_lots(order.qty)),
                "executedQty": _text(spec.from_lots(order.filled)),
                "cumQty": _text(spec.from_lots(order.filled)),
                "cumQuote": _text(spec.from_ticks(order.value) * spec.lot_size),
                "timeInForce": TIF_NAMES[order.tif], "type": kind, "origType": kind,
                "reduceOnly": order.reduce_only, "closePosition": False,
                "side": "BUY" if order.side == m.Side.BUY else "SELL", "positionSide": "BOTH",
                "stopPrice": _text(spec.from_ticks(order.stop_price)),
                "workingType": WORKING_NAMES[order.trigger_by], "priceProtect": False,
                "priceMatch": "NONE", "selfTradePreventionMode": "NONE", "goodTillDate": 0,
                "time": _ms(order.time), "updateTime": _ms(order.update_time)}

    async def _new_order(self, key: ApiKey, params: dict):
        return self._order_json(await self._place(key, params))

    async def _place(self, key: ApiKey, params: dict) -> Order:
        """Places an order from Binance parameters; the order as the command left it."""
        spec = self._spec(params)
        side = self._choice(params, "side", SIDES, codes.INVALID_SIDE)
        kind, trigger = self._choice(params, "type", TYPES, codes.INVALID_ORDER_TYPE)
        qty = self._decimal(params, "quantity", spec.to_lots)
        stop, working = 0, m.TriggerSource.LAST
        if trigger != m.TriggerKind.NONE:
            stop = self._decimal(params, "stopPrice", spec.to_ticks)
            working = self._choice(params, "workingType", WORKING, codes.INVALID_PARAM,
                                   m.TriggerSource.LAST)
        if params.get("positionSide", "BOTH") != "BOTH":
            raise _bad(-4061, "Order's position side does not match user's setting.")
        reduce_only = params.get("reduceOnly", "false").lower()
        if reduce_only not in ("true", "false"):
            raise _bad(codes.INVALID_PARAM, "Data sent for parameter 'reduceOnly' is not valid.")
        if kind == LIMIT:
            price = self._decimal(params, "price", spec.to_ticks)
            tif = self._choice(params, "timeInForce", TIFS, codes.INVALID_TIF,
                               m.TimeInForce.GTC if trigger else None)
        else:
            if "price" in params:
                raise _bad(-1106, "Parameter 'price' sent when not required.")
            # a waiting conditional market order is good till cancelled; it fills as IOC
            price, tif = 0, m.TimeInForce.GTC if trigger else m.TimeInForce.IOC
        client = params.get("newClientOrderId")
        number = 0
        if client is not None:
            if not CLIENT_ID.match(client):
                raise _bad(codes.INVALID_CLIENT_ORDER_ID, "Client order id is not valid.")
            number = self.model.client_ids.remember(key.account, client)
        cmd = m.PlaceOrder(account=key.account, symbol=spec.symbol, side=side, qty=qty,
                           price=price, order_type=kind, tif=tif, client_order_id=number,
                           reduce_only=reduce_only == "true", trigger=trigger,
                           trigger_price=stop, trigger_by=working)
        events = await self.runner.submit(cmd)
        _refused(events)
        for ev in events:
            if type(ev) is m.OrderAccepted or type(ev) is m.TriggerOrderAccepted:
                order = self.model.orders[ev.order_id]
                order.reduce_only = cmd.reduce_only
                return order
        raise ApiError(500, codes.UNKNOWN, "An unknown error occurred.")

    # ---- conditional orders: Binance's algo order API ----------------------------------------

    def _algo_json(self, order: Order) -> dict:
        spec = self.config.instruments[order.symbol]
        status = ("TRIGGERED" if order.triggered else
                  "NEW" if order.status in (OPEN, PARTIAL) else order.status)
        return {"algoId": order.order_id, "clientAlgoId": order.client_id,
                "algoType": "CONDITIONAL", "orderType": order.kind,
                "symbol": self.ids[order.symbol],
                "side": "BUY" if order.side == m.Side.BUY else "SELL", "positionSide": "BOTH",
                "timeInForce": TIF_NAMES[order.tif], "quantity": _text(spec.from_lots(order.qty)),
                "algoStatus": status, "triggerPrice": _text(spec.from_ticks(order.stop_price)),
                "price": _text(spec.from_ticks(order.price)
                               if order.order_type == LIMIT else Decimal(0)),
                "actualOrderId": str(order.order_id) if order.triggered else "",
                "workingType": WORKING_NAMES[order.trigger_by], "priceMatch": "NONE",
                "selfTradePreventionMode": "NONE", "closePosition": False,
                "priceProtect": False, "reduceOnly": order.reduce_only,
                "createTime": _ms(order.time), "updateTime": _ms(order.update_time),
                "triggerTime": _ms(order.update_time) if order.triggered else 0,
                "goodTillDate": 0}

    async def _new_algo_order(self, key: ApiKey, params: dict):
        if params.get("algoType") != "CONDITIONAL":
            raise _bad(codes.INVALID_PARAM, "Data sent for parameter 'algoType' is not valid.")
        if TYPES.get(params.get("type"), (None, m.TriggerKind.NONE))[1] == m.TriggerKind.NONE:
            raise _bad(codes.INVALID_ORDER_TYPE, "Invalid type.")
        params["stopPrice"] = self._required(params, "triggerPrice")
        if "clientAlgoId" in params:
            params["newClientOrderId"] = params.pop("clientAlgoId")
        return self._algo_json(await self._place(key, params))

    def _find_algo(self, key: ApiKey, params: dict, code: int, msg: str) -> Order:
        if "algoId" in params:
            order = self.model.find(key.account, order_id=self._int(params, "algoId"))
        elif "clientAlgoId" in params:
            order = self.model.find(key.account, client_id=params["clientAlgoId"])
        else:
            raise _bad(codes.MANDATORY_PARAM, "Either algoId or clientAlgoId must be sent.")
        if order is None or not order.stop_price:
            raise _bad(code, msg)
        return order

    async def _get_algo_order(self, key: ApiKey, params: dict):
        return self._algo_json(self._find_algo(key, params, codes.NO_SUCH_ORDER,
                                               "Order does not exist."))

    async def _cancel_algo_order(self, key: ApiKey, params: dict):
        order = self._find_algo(key, params, codes.CANCEL_REJECTED, "Unknown order sent.")
        if not order.waiting:
            raise _bad(codes.CANCEL_REJECTED, "Unknown order sent.")
        _refused(await self.runner.submit(m.CancelOrder(account=key.account, symbol=order.symbol,
                                                        order_id=order.order_id)))
        return self._algo_json(order)

    async def _open_algo_orders(self, key: ApiKey, params: dict):
        spec = self._spec(params, required=False)
        return [self._algo_json(o) for o in self.model.open.get(key.account, {}).values()
                if o.waiting and (spec is None or o.symbol == spec.symbol)]

    def _find(self, key: ApiKey, params: dict, code: int, msg: str) -> Order:
        spec = self._spec(params)
        if "orderId" in params:
            order = self.model.find(key.account, order_id=self._int(params, "orderId"))
        elif "origClientOrderId" in params:
            order = self.model.find(key.account, client_id=params["origClientOrderId"])
        else:
            raise _bad(codes.MANDATORY_PARAM,
                       "Either orderId or origClientOrderId must be sent.")
        if order is None or order.symbol != spec.symbol:
            raise _bad(code, msg)
        return order

    async def _get_order(self, key: ApiKey, params: dict):
        return self._order_json(self._find(key, params, codes.NO_SUCH_ORDER,
                                           "Order does not exist."))

    async def _cancel_order(self, key: ApiKey, params: dict):
        order = self._find(key, params, codes.CANCEL_REJECTED, "Unknown order sent.")
        events = await self.runner.submit(m.CancelOrder(account=key.account, symbol=order.symbol,
                                                        order_id=order.order_id))
        if events and type(events[0]) is m.OrderRejected:
            raise _bad(codes.CANCEL_REJECTED, "Unknown order sent.")
        return self._order_json(order)

    async def _amend_order(self, key: ApiKey, params: dict):
        """Binance's modify order: a new price and total quantity (a smaller quantity at the
        same price keeps the order's place in the queue)."""
        order = self._find(key, params, codes.NO_SUCH_ORDER, "Order does not exist.")
        spec = self.config.instruments[order.symbol]
        if self._choice(params, "side", SIDES, codes.INVALID_SIDE) != order.side:
            raise _bad(-4068, "Side of the modified order must be the same as the original.")
        qty = self._decimal(params, "quantity", spec.to_lots)
        price = self._decimal(params, "price", spec.to_ticks)
        _refused(await self.runner.submit(m.AmendOrder(account=key.account, symbol=order.symbol,
                                                       order_id=order.order_id, price=price,
                                                       qty=qty)))
        return self._order_json(order)

    async def _open_orders(self, key: ApiKey, params: dict):
        spec = self._spec(params, required=False)
        return [self._order_json(o) for o in self.model.open.get(key.account, {}).values()
                if not o.waiting and (spec is None or o.symbol == spec.symbol)]

    async def _all_orders(self, key: ApiKey, params: dict):
        spec = self._spec(params)
        limit = self._limit_param(params, 500, 1000)
        mine = [o for o in self.model.orders.values()
                if o.account == key.account and o.symbol == spec.symbol]
        return [self._order_json(o) for o in mine[-limit:]]

    async def _cancel_all(self, key: ApiKey, params: dict):
        spec = self._spec(params)
        _refused(await self.runner.submit(m.CancelAll(account=key.account, symbol=spec.symbol)))
        return {"code": 200, "msg": "The operation of cancel all open order is done."}

    async def _user_trades(self, key: ApiKey, params: dict):
        spec = self._spec(params)
        limit = self._limit_param(params, 500, 1000)
        settle = self.config.assets[spec.settle]
        fills = [f for f in self.model.fills.get(key.account, ()) if f.symbol == spec.symbol]
        return [{"symbol": self.ids[f.symbol], "id": f.id, "orderId": f.order_id,
                 "side": "BUY" if f.side == m.Side.BUY else "SELL",
                 "price": _text(spec.from_ticks(f.price)), "qty": _text(spec.from_lots(f.qty)),
                 "quoteQty": _text(spec.from_ticks(f.price) * spec.from_lots(f.qty)),
                 "realizedPnl": _text(settle.from_units(f.realised_pnl)),
                 "commission": _text(settle.from_units(f.fee)), "commissionAsset": spec.settle,
                 "time": _ms(f.time), "positionSide": "BOTH", "maker": f.maker,
                 "buyer": f.side == m.Side.BUY} for f in fills[-limit:]]

    # ---- leverage and accounts ---------------------------------------------------------------

    async def _leverage(self, key: ApiKey, params: dict):
        spec = self._spec(params)
        leverage = self._int(params, "leverage")
        events = await self.runner.submit(m.SetLeverage(account=key.account, symbol=spec.symbol,
                                                        leverage=leverage))
        _refused(events)
        ev = events[0]
        return {"leverage": ev.leverage, "symbol": self.ids[spec.symbol],
                "maxNotionalValue": _text(self.config.assets[spec.settle]
                                          .from_units(ev.max_notional))}

    async def _leverage_bracket(self, key: ApiKey, params: dict):
        spec = self._spec(params, required=False)
        out = []
        for s in [spec] if spec is not None else list(self.specs.values()):
            brackets, floor, prev_rate, cum = [], Decimal(0), 0, Decimal(0)
            for i, tier in enumerate(s.tiers, 1):
                # Binance's maintenance amount: keeps the requirement continuous across tiers
                cum += floor * (tier.maintenance_rate - prev_rate) / RATE_SCALE
                brackets.append({"bracket": i, "initialLeverage": tier.max_leverage,
                                 "notionalCap": int(tier.max_notional),
                                 "notionalFloor": int(floor),
                                 "maintMarginRatio": float(Decimal(tier.maintenance_rate)
                                                           / RATE_SCALE),
                                 "cum": float(cum)})
                floor, prev_rate = tier.max_notional, tier.maintenance_rate
            out.append({"symbol": self.ids[s.symbol], "brackets": brackets})
        return out

    async def _view(self, key: ApiKey):
        try:
            return await self.runner.query(lambda ex: (ex.clock, ex.account(key.account)))
        except KeyError:
            raise ApiError(401, codes.REJECTED_MBX_KEY,
                           "Invalid API-key, IP, or permissions for action.") from None

    def _assets(self, clock: int, view) -> list[dict]:
        settle = self.config.settlement_asset
        updated = _ms(self.model.updated.get(view.account, clock)) or 1
        out = []
        for name, spec in sorted(self.config.assets.items()):
            wallet = view.balances.get(name, 0)
            upnl = view.unrealised_pnl if name == settle else 0
            im = view.initial_margin if name == settle else 0
            mm = view.maintenance_margin if name == settle else 0
            f = spec.from_units
            out.append({"asset": name, "walletBalance": _text(f(wallet)),
                        "unrealizedProfit": _text(f(upnl)),
                        "marginBalance": _text(f(wallet + upnl)), "maintMargin": _text(f(mm)),
                        "initialMargin": _text(f(im)), "positionInitialMargin": _text(f(im)),
                        "openOrderInitialMargin": "0", "crossWalletBalance": _text(f(wallet)),
                        "crossUnPnl": _text(f(upnl)),
                        "availableBalance": _text(f(view.available.get(name, 0))),
                        "maxWithdrawAmount": _text(f(view.available.get(name, 0))),
                        "marginAvailable": True, "updateTime": updated})
        return out

    def _positions(self, clock: int, view) -> list[dict]:
        settle = self.config.assets[self.config.settlement_asset]
        f = settle.from_units
        out = []
        for p in view.positions:
            spec = self.config.instruments[p.symbol]
            out.append({"symbol": self.ids[p.symbol], "positionSide": "BOTH",
                        "positionAmt": _text(spec.from_lots(p.size)),
                        "entryPrice": _text(p.entry_price),
                        "breakEvenPrice": _text(p.entry_price),
                        "markPrice": _text(spec.from_ticks(p.mark_price or 0)),
                        "unRealizedProfit": _text(f(p.unrealised_pnl)),
                        "unrealizedProfit": _text(f(p.unrealised_pnl)),
                        "liquidationPrice": _text(spec.from_ticks(p.liquidation_price or 0)),
                        "leverage": str(p.leverage), "isolated": False, "marginType": "cross",
                        "isolatedMargin": "0", "isolatedWallet": "0",
                        "notional": _text(f(p.notional if p.size > 0 else -p.notional)),
                        "initialMargin": _text(f(p.initial_margin)),
                        "positionInitialMargin": _text(f(p.initial_margin)),
                        "openOrderInitialMargin": _text(f(p.order_margin)),
                        "maintMargin": _text(f(p.maintenance_margin)),
                        "marginAsset": spec.settle, "adl": 0, "bidNotional": "0",
                        "askNotional": "0", "updateTime": _ms(clock)})
        return out

    async def _account(self, key: ApiKey, params: dict):
        clock, view = await self._view(key)
        f = self.config.assets[self.config.settlement_asset].from_units
        available = view.equity - view.initial_margin
        return {"totalInitialMargin": _text(f(view.initial_margin)),
                "totalMaintMargin": _text(f(view.maintenance_margin)),
                "totalWalletBalance": _text(f(view.equity - view.unrealised_pnl)),
                "totalUnrealizedProfit": _text(f(view.unrealised_pnl)),
                "totalMarginBalance": _text(f(view.equity)),
                "totalPositionInitialMargin": _text(f(view.initial_margin)),
                "totalOpenOrderInitialMargin": "0",
                "totalCrossWalletBalance": _text(f(view.equity - view.unrealised_pnl)),
                "totalCrossUnPnl": _text(f(view.unrealised_pnl)),
                "availableBalance": _text(f(max(available, 0))),
                "maxWithdrawAmount": _text(f(view.available.get(self.config.settlement_asset,
                                                                0))),
                "canTrade": True, "canDeposit": True, "canWithdraw": True,
                "multiAssetsMargin": True, "updateTime": 0,
                "assets": self._assets(clock, view), "positions": self._positions(clock, view)}

    async def _balance(self, key: ApiKey, params: dict):
        clock, view = await self._view(key)
        return [{"accountAlias": "perpcore", "asset": a["asset"],
                 "balance": a["walletBalance"], "crossWalletBalance": a["crossWalletBalance"],
                 "crossUnPnl": a["crossUnPnl"], "availableBalance": a["availableBalance"],
                 "maxWithdrawAmount": a["maxWithdrawAmount"], "marginAvailable": True,
                 "updateTime": a["updateTime"]} for a in self._assets(clock, view)]

    async def _position_risk(self, key: ApiKey, params: dict):
        spec = self._spec(params, required=False)
        clock, view = await self._view(key)
        return [p for p in self._positions(clock, view)
                if spec is None or p["symbol"] == self.ids[spec.symbol]]

    async def _position_mode(self, key: ApiKey, params: dict):
        return {"dualSidePosition": False}

    async def _multi_assets(self, key: ApiKey, params: dict):
        return {"multiAssetsMargin": True}

    async def _listen_key(self, method: str, key: ApiKey, params: dict):
        """POST: a new listen key for the key's account; PUT (keepalive) and DELETE: accepted
        for a key of the same account."""
        if method == "POST":
            return {"listenKey": self.streams.new_listen_key(key.account)}
        listen = params.get("listenKey")
        if listen is not None and self.streams.listen_keys.get(listen) != key.account:
            raise _bad(codes.INVALID_LISTEN_KEY, "This listenKey does not exist.")
        if method == "DELETE" and listen is not None:
            del self.streams.listen_keys[listen]
        return {}

    # ---- admin -------------------------------------------------------------------------------

    async def _admin_submit(self, cmd: m.Command) -> list:
        events = await self.runner.submit(cmd)
        _refused(events)
        return events

    @staticmethod
    def _field(data: dict, name: str, kind: type, default=None):
        value = data.get(name, default) if isinstance(data, dict) else None
        if value is None or type(value) is not kind:
            raise _bad(codes.MANDATORY_PARAM, f"'{name}' ({kind.__name__}) is required.")
        return value

    def _amount(self, data: dict, asset: str) -> int:
        spec = self.config.assets.get(asset)
        if spec is None:
            raise _bad(codes.INVALID_PARAM, f"Unknown asset {asset!r}.")
        try:
            return spec.to_units(self._field(data, "amount", str))
        except (ValueError, ArithmeticError) as e:
            raise _bad(codes.INVALID_PARAM, f"amount: {e}") from e

    async def _admin_account(self, data: dict):
        professional = self._field(data, "professional", bool, True)
        account = data.get("account") if isinstance(data, dict) else None
        if account is None:
            account = await self.runner.query(lambda ex: max(ex.accounts(), default=0) + 1)
        events = await self._admin_submit(m.CreateAccount(account=account,
                                                          professional=professional))
        return named.to_builtins(events[0])

    async def _admin_key(self, data: dict):
        account = self._field(data, "account", int)
        if account not in await self.runner.query(lambda ex: set(ex.accounts())):
            raise _bad(codes.INVALID_PARAM, f"No account {account}.")
        permissions = data.get("permissions", ["trade", "read"])
        if not isinstance(permissions, list) or not set(permissions) <= {"trade", "read"}:
            raise _bad(codes.INVALID_PARAM, "permissions: a list of 'trade' and 'read'.")
        key = self.keys.create(account, permissions)
        return {"apiKey": key.key, "secretKey": key.secret, "account": account,
                "permissions": list(key.permissions)}

    async def _transfer(self, data: dict, command) -> dict:
        asset = self._field(data, "asset", str)
        cmd = command(account=self._field(data, "account", int), asset=asset,
                      amount=self._amount(data, asset),
                      transfer_id=self._field(data, "transferId", int, 0))
        return named.to_builtins((await self._admin_submit(cmd))[0])

    async def _admin_deposit(self, data: dict):
        return await self._transfer(data, m.Deposit)

    async def _admin_withdraw(self, data: dict):
        return await self._transfer(data, m.Withdraw)

    async def _admin_index(self, data: dict):
        symbol = self._field(data, "symbol", str)
        spec = self.specs.get(symbol) or self.config.instruments.get(symbol)
        if spec is None:
            raise _bad(codes.INVALID_SYMBOL, "Invalid symbol.")
        try:
            price = spec.to_ticks(self._field(data, "price", str))
        except (ValueError, ArithmeticError) as e:
            raise _bad(codes.INVALID_PARAM, f"price: {e}") from e
        events = await self._admin_submit(m.SetIndexPrice(
            source=self._field(data, "source", str, "admin"), symbol=spec.symbol, price=price))
        return [named.to_builtins(ev) for ev in events]

    async def _admin_insurance(self, data: dict):
        asset = self._field(data, "asset", str)
        events = await self._admin_submit(m.FundInsurance(asset=asset,
                                                          amount=self._amount(data, asset)))
        return [named.to_builtins(ev) for ev in events]

    async def _admin_command(self, body: bytes):
        """Any command as named JSON (perpcore.named); its events as named JSON."""
        try:
            cmd = named.decode_command(body)
        except (msgspec.ValidationError, msgspec.DecodeError) as e:
            raise _bad(codes.INVALID_PARAM, f"not a command: {e}") from e
        return [named.to_builtins(ev) for ev in await self.runner.submit(cmd)]

    async def _admin_schema(self, data):
        return {"commands": named.command_schema(), "events": named.event_schema()}

    async def _admin_state_hash(self, data):
        seq, digest = await self.runner.query(lambda ex: (ex.seq, ex.state_hash()))
        return {"seq": seq, "stateHash": digest}

    async def _admin_stats(self, data):
        """The runner's counters: commands applied and journal commits (batches)."""
        return {"commands": self.runner.commands, "batches": self.runner.batches}
