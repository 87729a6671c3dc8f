"""The two secrets the kit shares with the gateway: HS256 JWTs it mints for the desk, and the
HMAC signature of what the gateway pushes to it. Standard library only (no PyJWT)."""

import base64
import hashlib
import hmac
import json
import time

HEADER_SIGNATURE = "X-Gateway-Signature"
HEADER_TIMESTAMP = "X-Gateway-Timestamp"
HEADER_DELIVERY = "X-Gateway-Delivery"
MAX_SKEW = 300  # seconds: X-Gateway-Timestamp must be this recent (either way)
TOKEN_TTL = 300  # seconds


def _b64url(raw):
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _compact(obj):
    return json.dumps(obj, separators=(",", ":"), sort_keys=True).encode("utf-8")


def mint_jwt(secret, claims):
    """A compact HS256 JWT of claims signed with secret (str or bytes)."""
    if isinstance(secret, str):
        secret = secret.encode("utf-8")
    signing_input = _b64url(_compact({"alg": "HS256", "typ": "JWT"})) + "." + _b64url(_compact(claims))
    sig = hmac.new(secret, signing_input.encode("ascii"), hashlib.sha256).digest()
    return signing_input + "." + _b64url(sig)


# The claim that binds a token to one WhatsApp session: the gateway lets such a token reach that
# session's routes only (and the sync jobs it follows).
CLAIM_SESSION = "session_id"


def token_claims(user, scopes, issuer="", audience="", now=None, ttl=TOKEN_TTL, session_id=""):
    now = int(time.time() if now is None else now)
    claims = {"sub": user, "iat": now, "exp": now + int(ttl), "scope": " ".join(scopes)}
    if session_id:
        claims[CLAIM_SESSION] = session_id
    if issuer:
        claims["iss"] = issuer
    if audience:
        claims["aud"] = audience
    return claims


def sign(secret, timestamp, body):
    """The X-Gateway-Signature of body sent at timestamp, as the gateway computes it:
    "sha256=" + hex(HMAC-SHA256(secret, timestamp + "." + body))."""
    if isinstance(secret, str):
        secret = secret.encode("utf-8")
    if isinstance(body, str):
        body = body.encode("utf-8")
    mac = hmac.new(secret, str(timestamp).encode("ascii") + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify_signature(secret, timestamp, body, signature, now=None, max_skew=MAX_SKEW):
    """None when the delivery is authentic and recent, else why it is refused (without echoing
    anything it carried)."""
    if not secret:
        return "the signing secret is not configured"
    if not timestamp or not signature:
        return "missing %s or %s" % (HEADER_SIGNATURE, HEADER_TIMESTAMP)
    ts = str(timestamp).strip()
    if not ts.isdigit() or len(ts) > 12:
        return "malformed %s" % HEADER_TIMESTAMP
    now = int(time.time() if now is None else now)
    if abs(now - int(ts)) > max_skew:
        return "stale %s" % HEADER_TIMESTAMP
    expected = sign(secret, ts, body).encode("utf-8")
    if not hmac.compare_digest(expected, str(signature).strip().encode("utf-8")):
        return "bad %s" % HEADER_SIGNATURE
    return None
