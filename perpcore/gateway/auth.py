"""API keys, request signatures and rate limits of the gateway.

Keys are Binance-style: an API key (sent as `X-MBX-APIKEY`) names one account and its
permissions; its secret signs every private request with HMAC-SHA256 over the exact query string
and body as they were sent. The key file is replaced atomically at each change.
"""
from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import time
from pathlib import Path
from urllib.parse import unquote_plus

import msgspec

PERMISSIONS = ("trade", "read")


class ApiKey(msgspec.Struct):
    """A trading key: the account it acts for, what it may do, and its secret."""
    key: str
    secret: str
    account: int
    permissions: tuple[str, ...] = PERMISSIONS


class KeyStore:
    """The trading keys, kept in `path` (JSON; None: in memory only)."""

    def __init__(self, path: str | os.PathLike | None = None):
        self.path = Path(path) if path is not None else None
        self._keys: dict[str, ApiKey] = {}
        if self.path is not None and self.path.exists():
            for k in msgspec.json.decode(self.path.read_bytes(), type=list[ApiKey]):
                self._keys[k.key] = k

    def create(self, account: int, permissions=PERMISSIONS) -> ApiKey:
        """A new key for `account`, saved before it is returned."""
        key = ApiKey(secrets.token_hex(32), secrets.token_hex(32), account, tuple(permissions))
        self._keys[key.key] = key
        self._save()
        return key

    def add(self, key: ApiKey) -> None:
        """Registers a key made elsewhere (tests, a demo venue)."""
        self._keys[key.key] = key
        self._save()

    def get(self, key: str) -> ApiKey | None:
        """The key's record, None for an unknown key."""
        return self._keys.get(key)

    def _save(self) -> None:
        if self.path is None:
            return
        tmp = self.path.with_suffix(".tmp")
        with open(tmp, "wb") as f:
            f.write(msgspec.json.encode(list(self._keys.values())))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)


def signed_payload(query: str, body: str) -> tuple[str, str | None, dict]:
    """(what was signed, the signature, the parameters): Binance signs the query string followed
    by the body, each as sent, without the `signature` parameter itself. One pass over both."""
    signature = None
    parts, params = [], {}
    for text in (query, body):
        kept = []
        for item in text.split("&") if text else ():
            name, _, value = item.partition("=")
            if "%" in item or "+" in item:
                name, value = unquote_plus(name), unquote_plus(value)
            if name == "signature":
                signature = value
            else:
                kept.append(item)
                params[name] = value
        parts.append("&".join(kept))
    return "".join(parts), signature, params


def signature_ok(secret: str, payload: str, signature: str) -> bool:
    """HMAC-SHA256 of payload under secret equals the hex signature (constant-time compare)."""
    expected = hmac.new(secret.encode(), payload.encode(), hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, signature.lower())


class TokenBucket:
    """A bucket of `capacity` request weight refilled at `rate` per second: a request of weight
    w passes if w tokens are left. `clock` is monotonic seconds."""
    __slots__ = ("capacity", "rate", "tokens", "stamp", "clock")

    def __init__(self, capacity: float, rate: float, clock=time.monotonic):
        self.capacity, self.rate, self.clock = capacity, rate, clock
        self.tokens, self.stamp = capacity, clock()

    def take(self, weight: float) -> bool:
        """Takes `weight` tokens if there are that many (refilled for the time since)."""
        now = self.clock()
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens < weight:
            return False
        self.tokens -= weight
        return True

    @property
    def used(self) -> int:
        """The weight used of the capacity (Binance's X-MBX-USED-WEIGHT-1M)."""
        return int(self.capacity - self.tokens)


class RateLimiter:
    """One TokenBucket per key (an API key, or a client address for public requests): `weight`
    per minute, Binance's REQUEST_WEIGHT limit."""

    def __init__(self, weight_per_minute: int = 2400, clock=time.monotonic):
        self.limit = weight_per_minute
        self.clock = clock
        self._buckets: dict[str, TokenBucket] = {}

    def take(self, who: str, weight: int) -> TokenBucket | None:
        """The bucket if the request may pass, None if it is over the limit."""
        bucket = self._buckets.get(who)
        if bucket is None:
            bucket = self._buckets[who] = TokenBucket(self.limit, self.limit / 60, self.clock)
        return bucket if bucket.take(weight) else None
