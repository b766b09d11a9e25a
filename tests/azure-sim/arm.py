"""Azure Resource Manager plumbing shared by the DataBox and ImportExport
front ends: the request/response objects, ARM error bodies, the headers ARM
puts on every answer, bearer-token checks, api-version checks, paging and
the Location-based long-running-operation (LRO) URLs.

Sources are tagged like the reference READMEs: [rec] recorded traffic,
[spec] OpenAPI file, [doc] Microsoft documentation, [inferred] our choice.
"""

import base64
import datetime
import email.utils
import hashlib
import hmac
import json
import math
import os
import re
import time
import urllib.parse
import uuid

JSON_UTF8 = "application/json; charset=utf-8"
JSON_PLAIN = "application/json"

# Audiences ARM accepts [inferred from the ARM audience error text].
ARM_AUDIENCES = ("https://management.azure.com", "https://management.core.windows.net")

# Key for the fake signatures in Location URLs (per process is enough: a
# restarted simulator accepts old URLs but reports them as unsigned).
_SIGN_KEY = os.urandom(32)


class Request:
    """One HTTP request as the front ends see it."""

    def __init__(self, method, raw_path, headers, body, base, entry):
        self.method = method
        self.raw_path = raw_path
        split = urllib.parse.urlsplit(raw_path)
        self.path = split.path
        self.raw_query = split.query
        self.query = urllib.parse.parse_qs(split.query,
            keep_blank_values=True)
        self.segments = [urllib.parse.unquote(s)
            for s in split.path.split("/") if s != ""]
        self.headers = headers
        self.body = body
        self.base = base
        self.entry = entry
        self.token = None
        self._json = None

    def q(self, name):
        """First value of a query parameter, name matched without case."""
        for key, values in self.query.items():
            if key.lower() == name.lower():
                return values[0]
        return None

    def json(self):
        """The body parsed as a JSON object; raises BadBody."""
        if self._json is None:
            if not self.body:
                raise BadBody("The request content was empty.")
            try:
                value = json.loads(self.body.decode("utf-8"))
            except (UnicodeDecodeError, ValueError) as e:
                raise BadBody("The request content was invalid and could "
                    "not be deserialized: '%s'." % e)
            if not isinstance(value, dict):
                raise BadBody("The request content must be a JSON object.")
            self._json = value
        return self._json

    def warn(self, problems):
        if problems:
            self.entry.setdefault("warnings", []).extend(problems)


class BadBody(Exception):
    pass


class Response:
    """What a front end answers.  action "reset" closes the socket with
    no answer; "hang" sleeps hang_seconds first."""

    def __init__(self, status, body=b"", ctype=None, headers=None):
        self.status = status
        self.body = body
        self.ctype = ctype
        self.headers = list(headers or [])
        self.action = None
        self.hang_seconds = 0
        self.hang_then = "close"


# -- JSON renderings --------------------------------------------------------

def pretty(obj):
    """Job bodies: 2-space indent, CRLF line breaks [rec]."""
    text = json.dumps(obj, indent=2, ensure_ascii=False)
    return text.replace("\n", "\r\n").encode("utf-8")


def compact(obj):
    """Lists, errors, ImportExport bodies: no whitespace [rec]."""
    return json.dumps(obj, separators=(",", ":"),
        ensure_ascii=False).encode("utf-8")


def now_iso():
    """'2025-05-29T21:47:46.5303536+00:00' style [rec]."""
    t = datetime.datetime.now(datetime.timezone.utc)
    return t.strftime("%Y-%m-%dT%H:%M:%S.%f") + "0+00:00"


def now_z():
    """'2020-02-03T01:01:01.1075056Z' style [spec examples, ImportExport]."""
    t = datetime.datetime.now(datetime.timezone.utc)
    return t.strftime("%Y-%m-%dT%H:%M:%S.%f") + "0Z"


def dotnet_time(epoch):
    """'8/21/2018 3:22:00 PM' style used in ARM's token-expiry message."""
    t = datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc)
    hour = t.hour % 12 or 12
    return "%d/%d/%d %d:%02d:%02d %s" % (t.month, t.day, t.year, hour,
        t.minute, t.second, "AM" if t.hour < 12 else "PM")


# -- errors -----------------------------------------------------------------

def error(status, code, message, details=None, target=None, headers=None,
    ctype=JSON_UTF8):
    """ARM error body {"error":{"code","message","target"?,"details"?}}
    [spec ApiError / common-types ErrorResponse, rec 404]."""
    err = {"code": code, "message": message}
    if target is not None:
        err["target"] = target
    if details:
        err["details"] = details
    return Response(status, compact({"error": err}), ctype, headers)


def not_found(kind, name, rg):
    """The recorded gateway 404 [rec]."""
    msg = ("The Resource '%s/%s' under resource group '%s' was not found. "
        "For more details please go to "
        "https://aka.ms/ARMResourceNotFoundFix" % (kind, name, rg))
    return error(404, "ResourceNotFound", msg,
        headers=[("x-ms-failure-cause", "gateway")])


def bad_content(problems, ctype=JSON_UTF8):
    """400 for a body that breaks the spec or a service rule.  The code is
    [inferred]: no recorded DataBox/ImportExport 400 exists."""
    first = problems[0]
    details = [{"code": p["code"], "message": p["message"]}
        for p in problems]
    return error(400, "InvalidRequestContent", first["message"],
        details=details, target=first.get("path") or None, ctype=ctype)


def problem(path, code, message):
    return {"path": path, "code": code, "message": message}


# -- common headers ---------------------------------------------------------

def common_headers(store, req, kind, sub):
    """Headers seen on every ARM answer [rec]: no-cache trio, HSTS,
    nosniff, request ids and the remaining-quota counters.  kind is
    "reads", "writes" or "deletes"."""
    rid = str(uuid.uuid4())
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    h = [("Cache-Control", "no-cache"), ("Pragma", "no-cache"),
        ("Expires", "-1"),
        ("Strict-Transport-Security", "max-age=31536000; includeSubDomains"),
        ("X-Content-Type-Options", "nosniff"),
        ("x-ms-request-id", rid), ("x-ms-correlation-request-id", rid),
        ("x-ms-routing-request-id", "SIMULATOR:%s:%s" % (stamp, rid))]
    if sub is None:
        n = store.remaining("tenant-" + kind, 11999)
        h.append(("x-ms-ratelimit-remaining-tenant-" + kind, str(n)))
        return h
    start = {"reads": 11999, "writes": 1199, "deletes": 14999}[kind]
    gstart = {"reads": 16499, "writes": 11999, "deletes": 11999}[kind]
    n = store.remaining(sub + "-" + kind, start)
    g = store.remaining(sub + "-global-" + kind, gstart)
    h.append(("x-ms-ratelimit-remaining-subscription-" + kind, str(n)))
    h.append(("x-ms-ratelimit-remaining-subscription-global-" + kind, str(g)))
    if kind != "reads":
        tok = req.token or {}
        h.append(("x-ms-operation-identifier",
            "tenantId=%s,objectId=%s/simulator/%s" % (tok.get("tenant", ""),
            tok.get("clientId", ""), uuid.uuid4())))
    return h


def rw_kind(method):
    return {"GET": "reads", "HEAD": "reads", "DELETE": "deletes"}.get(
        method, "writes")


# -- authentication ---------------------------------------------------------

def _challenge(req, store, description):
    tenant = (req.token or {}).get("tenant")
    if tenant is None and store.clients:
        tenant = sorted(store.clients.values(),
            key=lambda c: c["tenant"])[0]["tenant"]
    return ("WWW-Authenticate", 'Bearer authorization_uri="%s/%s", '
        'error="invalid_token", error_description="%s"'
        % (req.base, tenant or "common", description))


def auth_error(req, store, code, message, description):
    """401 with ARM's body and challenge.  The codes AuthenticationFailed,
    InvalidAuthenticationToken, ExpiredAuthenticationToken and
    InvalidAuthenticationTokenAudience are ARM's [inferred from public
    client code; not in the reference recordings]."""
    return error(401, code, message,
        headers=[_challenge(req, store, description)])


def expired_error(req, store, expires_at):
    msg = ("The access token expiry UTC time '%s' is earlier than current "
        "UTC time '%s'." % (dotnet_time(expires_at), dotnet_time(time.time())))
    return auth_error(req, store, "ExpiredAuthenticationToken", msg,
        "The access token has expired.")


def check_auth(store, req):
    """Return None if the request carries a valid, unexpired token for
    ARM, else the 401 to send."""
    value = req.headers.get("Authorization")
    if value is None:
        return auth_error(req, store, "AuthenticationFailed",
            "Authentication failed. The 'Authorization' header is missing.",
            "The authentication failed because of missing "
            "'Authorization' header.")
    scheme, _, token = value.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return auth_error(req, store, "AuthenticationFailed",
            "Authentication failed. The 'Authorization' header is "
            "provided in an invalid format.",
            "The access token is missing or invalid.")
    with store.lock:
        info = store.tokens.get(token.strip())
        if info is not None:
            req.token = dict(info)
    if info is None:
        return auth_error(req, store, "InvalidAuthenticationToken",
            "The access token is invalid.",
            "The access token is missing or invalid.")
    if info["expiresAt"] <= time.time():
        return expired_error(req, store, info["expiresAt"])
    if not is_arm_audience(info["resource"], req.base):
        return auth_error(req, store, "InvalidAuthenticationTokenAudience",
            "The access token has been obtained for wrong audience or "
            "resource '%s'. It should exactly match with one of the "
            "allowed audiences 'https://management.core.windows.net/',"
            "'https://management.core.windows.net',"
            "'https://management.azure.com/','https://management.azure.com'."
            % info["resource"], "The access token is missing or invalid.")
    return None


def is_arm_audience(resource, base):
    r = resource.rstrip("/")
    if r in ARM_AUDIENCES:
        return True
    # The simulator's own URL stands in for management.azure.com when a
    # client derives the scope from ResourceManagerEndpoint= [inferred].
    host = urllib.parse.urlsplit(base).netloc
    for alias in ("127.0.0.1", "localhost"):
        port = host.rpartition(":")[2]
        for scheme in ("http", "https"):
            if r == "%s://%s:%s" % (scheme, alias, port):
                return True
    return False


# -- api-version ------------------------------------------------------------

_API_RE = re.compile(r"^\d{4}-\d{2}-\d{2}(-preview)?$")


def check_api_version(req, allowed, rtype, location=None):
    """400 MissingApiVersionParameter / InvalidApiVersionParameter /
    NoRegisteredProviderFound, in ARM's wording [inferred from public
    reports; the reference found no recorded example]."""
    v = req.q("api-version")
    if v is None or v == "":
        return error(400, "MissingApiVersionParameter",
            "The api-version query parameter (?api-version=) is required "
            "for all requests.")
    supported = ", ".join(allowed)
    if not _API_RE.match(v):
        return error(400, "InvalidApiVersionParameter",
            "The api-version '%s' is invalid. The supported versions are "
            "'%s'." % (v, supported))
    if v not in allowed:
        where = "for location '%s' " % location if location else ""
        return error(400, "NoRegisteredProviderFound",
            "No registered resource provider found %sand API version '%s' "
            "for type '%s'. The supported api-versions are '%s'."
            % (where, v, rtype, supported))
    return None


_UUID_RE = re.compile(r"^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")


def check_subscription(sub):
    """The spec says the subscription id must be a UUID [spec]; the error
    is ARM's InvalidSubscriptionId [inferred]."""
    if _UUID_RE.match(sub):
        return None
    return error(400, "InvalidSubscriptionId",
        "The provided subscription identifier '%s' is malformed or invalid."
        % sub)


_RG_RE = re.compile(r"^[-\w\._\(\)]+$")


def check_resource_group(rg):
    """1-90 characters, ^[-\\w\\._\\(\\)]+$ [spec common-types]."""
    if 1 <= len(rg) <= 90 and _RG_RE.match(rg):
        return None
    return error(400, "InvalidResourceGroupName",
        "Resource group name '%s' is invalid. It must be 1-90 characters "
        "of letters, digits, '-', '_', '.', '(' and ')'." % rg)


# -- paging -----------------------------------------------------------------

def page(req, items, size):
    """Slice items for $skipToken paging; returns (page, nextLink|None).
    The token is opaque to clients [spec x-ms-pageable nextLink]."""
    start = 0
    token = req.q("$skipToken")
    if token:
        try:
            start = int(base64.urlsafe_b64decode(token + "==").decode())
        except (ValueError, UnicodeDecodeError):
            start = len(items)
    size = max(1, int(size))
    chunk = items[start:start + size]
    if start + size >= len(items):
        return chunk, None
    nxt = base64.urlsafe_b64encode(str(start + size).encode()).decode()
    keep = [(k, v[0]) for k, v in req.query.items() if k.lower() not in
        ("$skiptoken",)]
    query = "&".join("%s=%s" % (k, urllib.parse.quote(v, safe=""))
        for k, v in keep)
    link = "%s%s?%s&$skipToken=%s" % (req.base, req.path, query,
        nxt.rstrip("="))
    return chunk, link


# -- LRO Location URLs ------------------------------------------------------

def _b64(n):
    return base64.urlsafe_b64encode(os.urandom(n)).decode().rstrip("=")


def sign(op_id, t, c, s):
    mac = hmac.new(_SIGN_KEY, ("%s|%s|%s|%s" % (op_id, t, c, s)).encode(),
        hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).decode().rstrip("=")


def op_base(req, store):
    """Where operation URLs point: the simulator, or with operationBase
    another host (a hostile Resource Manager)."""
    return store.config.get("operationBase") or req.base


def op_location(req, store, op):
    """A fresh operationResults URL for op.  With longLocation the URL
    carries t/c/s/h like the real ~3.2 KB ones [rec]; t changes on every
    answer, and op["t"] remembers the newest so stale polls can be
    reported."""
    url = ("%s/subscriptions/%s/providers/Microsoft.DataBox/locations/%s/"
        "operationResults/%s?api-version=%s" % (op_base(req, store), op["sub"],
        op["location"], op["id"], op["apiVersion"]))
    if not store.config.get("longLocation", True):
        return url
    ticks = int(time.time() * 10 ** 7) + 621355968000000000
    t = str(ticks + op.get("polls", 0))
    c, s = _b64(1800), _b64(256)
    op["t"] = t
    return url + "&t=%s&c=%s&s=%s&h=%s" % (t, c, s, sign(op["id"], t, c, s))


def check_signature(req, op):
    """Warn (never fail: unrecorded) when a poll URL was altered or is
    not the newest one handed out."""
    t, c, s, h = (req.q(k) for k in ("t", "c", "s", "h"))
    if t is None:
        if op.get("t"):
            req.warn([problem("", "UnsignedLocation",
                "operationResults polled without the t/c/s/h parameters "
                "of the Location header.")])
        return
    if h != sign(op["id"], t, c or "", s or ""):
        req.warn([problem("", "LocationAltered",
            "operationResults URL does not match any Location handed out "
            "(altered or from a previous simulator run).")])
    elif t != op.get("t"):
        req.warn([problem("", "StaleLocation",
            "operationResults polled with an older Location; clients "
            "should always follow the newest one [rec].")])


def retry_after(store):
    """Retry-After on LRO answers: seconds [doc], or with lroRetryAfterDate
    the HTTP-date form RFC 9110 §10.2.3 also allows (the plausible
    alternative; ARM's docs show seconds)."""
    ra = store.config.get("lroRetryAfter")
    if ra is None:
        return []
    if store.config.get("lroRetryAfterDate"):
        # Rounded up to whole seconds, as a date must be.
        when = email.utils.formatdate(math.ceil(time.time()) + int(ra),
            usegmt=True)
        return [("Retry-After", when)]
    return [("Retry-After", str(int(ra)))]
