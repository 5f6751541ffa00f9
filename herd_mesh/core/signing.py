"""The mesh key: how peers prove to each other that they belong, without ever sending the key.

Every peer-to-peer request carries `X-Herd-Auth: t=<unix seconds>,n=<nonce>,s=<hmac>`, an HMAC-SHA256 with the
mesh key over the method, the path with its query, the time, the nonce and the SHA-256 of the body. The callee
accepts it within a replay window of `REPLAY_WINDOW_S` and only once per nonce. Its answer carries an HMAC over
the request's nonce, the status and the answer's body, so a peer without the key cannot pass for a member by
answering pings. Bodies that are streamed (audio uploads passed on) are signed as `UNSIGNED_BODY`; the threat
model in docs/security.md says what that leaves open.

Pure: the clock and the nonce are passed in.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass

AUTH_HEADER = "X-Herd-Auth"
REPLAY_WINDOW_S = 60.0  # a request older or newer than this (clock skew included) is refused
UNSIGNED_BODY = "-"  # the body hash of a streamed body that is not covered
MIN_KEY_CHARS = 16
_AUTH_RE = re.compile(r"^t=(\d{1,12}),n=([0-9a-f]{16,64}),s=([0-9a-f]{64})$")


def valid_key(key: str) -> bool:
    return len(key) >= MIN_KEY_CHARS and key.isascii() and key.isprintable() and " " not in key


def fingerprint(key: str) -> str:
    """A short public name for a key (in TXT records and logs): equal keys, equal fingerprints; never the key."""
    return hashlib.sha256(b"herd-mesh key fingerprint\0" + key.encode()).hexdigest()[:12]


def body_hash(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def _mac(key: str, *parts: str) -> str:
    return hmac.new(key.encode(), "\n".join(parts).encode(), hashlib.sha256).hexdigest()


def request_mac(key: str, method: str, target: str, timestamp: int, nonce: str, body_sha: str) -> str:
    return _mac(key, "request", method.upper(), target, str(timestamp), nonce, body_sha)


def response_mac(key: str, nonce: str, status: int, body_sha: str) -> str:
    return _mac(key, "response", nonce, str(status), body_sha)


def auth_value(key: str, method: str, target: str, timestamp: int, nonce: str, body_sha: str) -> str:
    return f"t={timestamp},n={nonce},s={request_mac(key, method, target, timestamp, nonce, body_sha)}"


@dataclass(frozen=True)
class Claim:
    timestamp: int
    nonce: str
    mac: str


def parse(value: str | None) -> Claim | None:
    match = _AUTH_RE.match(value or "")
    if match is None:
        return None
    return Claim(int(match.group(1)), match.group(2), match.group(3))


def check_request(
    key: str, method: str, target: str, value: str | None, body_sha: str, *, now: float
) -> tuple[Claim | None, str]:
    """(the claim, "") when the request is signed with `key` within the window; else (None, why not).
    The caller still has to refuse a nonce it has seen (`Nonces`)."""
    claim = parse(value)
    if claim is None:
        return None, f"a peer call needs {AUTH_HEADER} (this mesh has a key)"
    if abs(now - claim.timestamp) > REPLAY_WINDOW_S:
        return None, (f"the call is {now - claim.timestamp:+.0f} s off this peer's clock (more than "
                      f"{REPLAY_WINDOW_S:.0f} s): a replay, or the two Macs' clocks differ")  # fmt: skip
    expected = request_mac(key, method, target, claim.timestamp, claim.nonce, body_sha)
    if not hmac.compare_digest(expected, claim.mac):
        return None, "the call is not signed with this mesh's key"
    return claim, ""


def check_response(key: str, nonce: str, status: int, body: bytes, value: str | None) -> bool:
    return bool(value) and hmac.compare_digest(response_mac(key, nonce, status, body_hash(body)), value or "")


class Nonces:
    """Nonces seen within the replay window; a nonce seen twice is a replay. Bounded: the oldest go first."""

    def __init__(self, limit: int = 200_000) -> None:
        self._seen: dict[str, float] = {}
        self._limit = limit

    def first_time(self, nonce: str, *, now: float) -> bool:
        if nonce in self._seen:
            return False
        if len(self._seen) >= self._limit or (
            self._seen and next(iter(self._seen.values())) < now - 2 * REPLAY_WINDOW_S
        ):
            self._expire(now)
        self._seen[nonce] = now
        return True

    def _expire(self, now: float) -> None:
        cutoff = now - 2 * REPLAY_WINDOW_S
        for nonce in [n for n, at in self._seen.items() if at < cutoff]:
            del self._seen[nonce]
        while len(self._seen) >= self._limit:
            del self._seen[next(iter(self._seen))]
