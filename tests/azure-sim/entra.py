"""Microsoft Entra ID v2.0 token endpoint, client-credentials grant only:

  POST /{tenant}/oauth2/v2.0/token   (application/x-www-form-urlencoded)
  GET  /{tenant}/v2.0/.well-known/openid-configuration

Clients (tenant, client id, secret, token lifetime) are registered through
the control API.  Tokens are opaque random strings remembered with their
tenant, client, resource (from the scope) and expiry; arm.check_auth looks
them up.

Response shapes: success and invalid_client/AADSTS7000215 are recorded
[rec entra/]; the other error codes come from Microsoft docs excerpts
(invalid_scope AADSTS70011) or public issue reports (AADSTS90002,
AADSTS700016, AADSTS900144, AADSTS70003, AADSTS7000218, AADSTS7000222)
[inferred].
"""

import base64
import os
import secrets
import time
import urllib.parse
import uuid

import arm

TOKEN_HEADERS = [("Cache-Control", "no-store, no-cache"), ("Pragma", "no-cache"),
    ("Expires", "-1"),
    ("Strict-Transport-Security", "max-age=31536000; includeSubDomains"),
    ("X-Content-Type-Options", "nosniff"),
    ("x-ms-ests-server", "2.1.0 - SIM")]


def route(req):
    """Return the handler for an Entra path, or None."""
    seg = req.segments
    if len(seg) == 4 and seg[1:] == ["oauth2", "v2.0", "token"]:
        return token
    if len(seg) == 4 and seg[1:] == ["v2.0", ".well-known",
        "openid-configuration"]:
        return openid_configuration
    return None


def _error(req, status, error, code, text):
    trace, corr = str(uuid.uuid4()), str(uuid.uuid4())
    stamp = time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime())
    body = {"error": error,
        "error_description": "AADSTS%d: %s\r\nTrace ID: %s\r\nCorrelation "
        "ID: %s\r\nTimestamp: %s" % (code, text, trace, corr, stamp),
        "error_codes": [code], "timestamp": stamp, "trace_id": trace,
        "correlation_id": corr,
        "error_uri": "%s/error?code=%d" % (req.base, code)}
    h = TOKEN_HEADERS + [("x-ms-request-id", trace)]
    return arm.Response(status, arm.compact(body), arm.JSON_UTF8, h)


def _form(req):
    try:
        text = req.body.decode("utf-8")
    except UnicodeDecodeError:
        return None
    form = urllib.parse.parse_qs(text, keep_blank_values=True)
    return {k: v[0] for k, v in form.items()}


def _basic(req):
    """client_secret_basic (RFC 6749 §2.3.1): (id, secret) or None."""
    value = req.headers.get("Authorization") or ""
    scheme, _, data = value.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        raw = base64.b64decode(data.strip()).decode("utf-8")
    except ValueError:
        return None
    cid, _, sec = raw.partition(":")
    return urllib.parse.unquote_plus(cid), urllib.parse.unquote_plus(sec)


def _resource(scope):
    """'https://management.azure.com/.default' -> its resource, or None.
    Exactly one '/.default' scope is allowed for client credentials
    [doc]."""
    parts = scope.split()
    if len(parts) != 1 or not parts[0].endswith("/.default"):
        return None
    res = parts[0][:-len("/.default")]
    return res if res.startswith(("http://", "https://")) else None


def token(store, req):
    if req.method != "POST":
        return _error(req, 400, "invalid_request", 900561,
            "The endpoint only accepts POST requests. Received a %s "
            "request." % req.method)
    tenant = req.segments[0]
    form = _form(req)
    if form is None:
        return _error(req, 400, "invalid_request", 900144,
            "The request body must contain the following parameter: "
            "'grant_type'.")
    basic = _basic(req)
    if basic:
        form.setdefault("client_id", basic[0])
        form.setdefault("client_secret", basic[1])
    for name in ("grant_type", "client_id", "scope"):
        if not form.get(name):
            return _error(req, 400, "invalid_request", 900144,
                "The request body must contain the following parameter: "
                "'%s'." % name)
    if form["grant_type"] != "client_credentials":
        return _error(req, 400, "unsupported_grant_type", 70003,
            "The app requested an unsupported grant type '%s'."
            % form["grant_type"])
    with store.lock:
        known = {c["tenant"] for c in store.clients.values()}
        client = store.clients.get(tenant + "/" + form["client_id"])
    if tenant not in known:
        return _error(req, 400, "invalid_request", 90002,
            "Tenant '%s' not found. Check to make sure you have the "
            "correct tenant ID and are signing into the correct cloud. "
            "Check with your subscription administrator, this may happen "
            "if there are no active subscriptions for the tenant." % tenant)
    if client is None:
        return _error(req, 400, "unauthorized_client", 700016,
            "Application with identifier '%s' was not found in the "
            "directory '%s'. This can happen if the application has not "
            "been installed by the administrator of the tenant or "
            "consented to by any user in the tenant. You may have sent "
            "your authentication request to the wrong tenant."
            % (form["client_id"], tenant))
    if "client_secret" not in form:
        return _error(req, 401, "invalid_client", 7000218,
            "The request body must contain the following parameter: "
            "'client_assertion' or 'client_secret'.")
    if not secrets.compare_digest(form["client_secret"].encode(),
        client["secret"].encode()):
        return _error(req, 401, "invalid_client", 7000215,
            "Invalid client secret is provided.")
    if client.get("secretExpired"):
        return _error(req, 401, "invalid_client", 7000222,
            "The provided client secret keys for app '%s' are expired. "
            "Visit the Azure portal to create new keys for your app."
            % form["client_id"])
    resource = _resource(form["scope"])
    if resource is None:
        return _error(req, 400, "invalid_scope", 70011,
            "The provided request must include a 'scope' input parameter. "
            "The provided value for the input parameter 'scope' is not "
            "valid. The scope %s is not valid." % form["scope"])
    return _issue(store, req, client, resource)


def _issue(store, req, client, resource):
    lifetime = int(client.get("tokenLifetime")
        or store.config["tokenLifetime"])
    tok = base64.urlsafe_b64encode(os.urandom(48)).decode().rstrip("=")
    with store.lock:
        store.tokens[tok] = {"tenant": client["tenant"],
            "clientId": client["clientId"], "resource": resource,
            "issuedAt": time.time(), "expiresAt": time.time() + lifetime}
        store.save()
    body = {"token_type": "Bearer", "expires_in": lifetime,
        "ext_expires_in": lifetime, "access_token": tok}
    h = TOKEN_HEADERS + [("x-ms-request-id", str(uuid.uuid4()))]
    return arm.Response(200, arm.compact(body), arm.JSON_UTF8, h)


def fault_error(req, status, extra):
    """Injected 429/500/503 on the token endpoint, in Entra's error shape
    with the RFC 6749 codes server_error / temporarily_unavailable; the
    AADSTS numbers are [inferred]."""
    if status == 500:
        r = _error(req, status, "server_error", 50000,
            "There was an error issuing a token (simulated).")
    else:
        r = _error(req, status, "temporarily_unavailable", 90033,
            "A transient error has occurred. Please try again (simulated).")
    r.headers += extra
    return r


def openid_configuration(store, req):
    """A trimmed copy of the recorded metadata, pointing at this server
    [rec entra/]."""
    tenant = req.segments[0]
    base = "%s/%s" % (req.base, tenant)
    body = {"token_endpoint": base + "/oauth2/v2.0/token",
        "token_endpoint_auth_methods_supported": ["client_secret_post",
        "private_key_jwt", "client_secret_basic"],
        "jwks_uri": base + "/discovery/v2.0/keys",
        "response_modes_supported": ["query", "fragment", "form_post"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "response_types_supported": ["code", "id_token", "code id_token",
        "id_token token"],
        "scopes_supported": ["openid", "profile", "email", "offline_access"],
        "issuer": base + "/v2.0", "request_uri_parameter_supported": False,
        "authorization_endpoint": base + "/oauth2/v2.0/authorize"}
    h = [("Cache-Control", "max-age=86400, private")] + TOKEN_HEADERS[3:]
    return arm.Response(200, arm.compact(body), arm.JSON_UTF8, h)
