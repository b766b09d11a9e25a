"""A tiny Azure Blob Storage client (Python 3 standard library only) for
the simulated datacenter and the tests: SharedKey signing, path-style
endpoints as Azurite serves them (https://127.0.0.1:PORT/devstoreaccount1),
HTTPS with a private CA.

  c = BlobClient(endpoint, account, key, ca=None)
  c.create_container(name)              True if made, False if it existed
  c.put_block(container, name, block_id, data, md5=None)
  c.put_block_list(container, name, ids, content_md5=None)
  c.put_blob(container, name, data, content_type=None)
  c.block_list(container, name)         committed [(id, size)] (Get Block List)
  c.exists(container, name)             Get Blob Properties, True/False
  c.properties(container, name)         dict of the answer's headers
  c.list(container, prefix=None)        [{name, length, contentMD5, etag,...}]
  c.get(container, name) / c.get_url(url)   the blob's bytes
  c.url(container, name)                absolute URL of a blob

Errors raise BlobError (status, code, message).  One keep-alive
connection per client, reopened after a failure; not thread-safe.
"""

import base64
import hashlib
import hmac
import http.client
import ssl
import time
import urllib.parse
import xml.etree.ElementTree as ET

VERSION = "2021-12-02"
_SIGNED = ("Content-Encoding", "Content-Language", "Content-Length",
    "Content-MD5", "Content-Type", "Date", "If-Modified-Since", "If-Match",
    "If-None-Match", "If-Unmodified-Since", "Range")


class BlobError(Exception):
    def __init__(self, status, code, message):
        super().__init__("%s %s: %s" % (status, code, message))
        self.status = status
        self.code = code
        self.message = message


def b64md5(data):
    return base64.b64encode(hashlib.md5(data).digest()).decode()


class BlobClient:
    def __init__(self, endpoint, account, key, ca=None, timeout=30):
        u = urllib.parse.urlsplit(endpoint.rstrip("/"))
        if u.scheme not in ("http", "https") or not u.hostname:
            raise ValueError("blob endpoint must be an http(s) URL: %r"
                % endpoint)
        self.endpoint = endpoint.rstrip("/")
        self.scheme, self.host, self.port = u.scheme, u.hostname, u.port
        self.base = u.path  # "/devstoreaccount1" path-style, or ""
        self.account = account
        self.key = base64.b64decode(key)
        self.ca = ca
        self.timeout = timeout
        self.conn = None

    # -- transport --------------------------------------------------------

    def _connect(self):
        if self.scheme == "https":
            ctx = ssl.create_default_context(cafile=self.ca)
            return http.client.HTTPSConnection(self.host, self.port,
                timeout=self.timeout, context=ctx)
        return http.client.HTTPConnection(self.host, self.port,
            timeout=self.timeout)

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def _path(self, container=None, name=None):
        p = self.base
        if container is not None:
            p += "/" + urllib.parse.quote(container, safe="$")
        if name is not None:
            p += "/" + urllib.parse.quote(name, safe="/")
        return p or "/"

    def _sign(self, method, path, query, headers):
        h = {k.lower(): v for k, v in headers.items()}
        parts = [method]
        for name in _SIGNED:
            v = str(h.get(name.lower(), ""))
            if name == "Content-Length" and v == "0":
                v = ""
            parts.append(v)
        canon = "".join("%s:%s\n" % (k, str(h[k]).strip())
            for k in sorted(h) if k.startswith("x-ms-"))
        res = "/%s%s" % (self.account, path)
        for k in sorted(query, key=str.lower):
            res += "\n%s:%s" % (k.lower(), query[k])
        text = "\n".join(parts) + "\n" + canon + res
        mac = hmac.new(self.key, text.encode("utf-8"), hashlib.sha256)
        return "SharedKey %s:%s" % (self.account,
            base64.b64encode(mac.digest()).decode())

    def request(self, method, path, query=None, body=b"", headers=None,
        ok=(200, 201, 202, 204)):
        """One signed request; returns (status, headers dict lower-case,
        body bytes) or raises BlobError."""
        query = dict(query or {})
        headers = dict(headers or {})
        headers["x-ms-date"] = time.strftime("%a, %d %b %Y %H:%M:%S GMT",
            time.gmtime())
        headers["x-ms-version"] = VERSION
        headers["Content-Length"] = str(len(body))
        headers["Authorization"] = self._sign(method, path, query, headers)
        url = path
        if query:
            url += "?" + urllib.parse.urlencode(query,
                quote_via=urllib.parse.quote)
        status, rh, data = self._send(method, url, body, headers)
        if status not in ok:
            raise _error(status, rh, data)
        return status, rh, data

    def _send(self, method, url, body, headers):
        for attempt in (0, 1):
            reused = self.conn is not None
            if self.conn is None:
                self.conn = self._connect()
            try:
                self.conn.request(method, url, body=body, headers=headers)
                r = self.conn.getresponse()
                data = r.read()
                rh = {k.lower(): v for k, v in r.getheaders()}
                if rh.get("connection", "").lower() == "close":
                    self.close()
                return r.status, rh, data
            except (http.client.HTTPException, OSError):
                self.close()
                if attempt or not reused:
                    raise
        raise AssertionError("unreachable")

    # -- operations -------------------------------------------------------

    def url(self, container, name):
        return "%s://%s%s%s" % (self.scheme, self.host,
            ":%d" % self.port if self.port else "", self._path(container,
            name))

    def create_container(self, container):
        try:
            self.request("PUT", self._path(container),
                {"restype": "container"})
            return True
        except BlobError as e:
            if e.code == "ContainerAlreadyExists":
                return False
            raise

    def put_block(self, container, name, block_id, data, md5=None):
        h = {"Content-MD5": md5 or b64md5(data)}
        self.request("PUT", self._path(container, name),
            {"comp": "block", "blockid": block_id}, data, h)

    def put_block_list(self, container, name, ids, content_md5=None,
        content_type="application/octet-stream"):
        xml = "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<BlockList>" + \
            "".join("<Latest>%s</Latest>" % i for i in ids) + \
            "</BlockList>"
        h = {"Content-Type": "application/xml",
            "x-ms-blob-content-type": content_type}
        if content_md5:
            h["x-ms-blob-content-md5"] = content_md5
        self.request("PUT", self._path(container, name),
            {"comp": "blocklist"}, xml.encode(), h)

    def put_blob(self, container, name, data,
        content_type="application/octet-stream"):
        self.request("PUT", self._path(container, name), None, data,
            {"x-ms-blob-type": "BlockBlob", "Content-Type": content_type,
            "Content-MD5": b64md5(data)})

    def properties(self, container, name):
        _, rh, _ = self.request("HEAD", self._path(container, name))
        return rh

    def block_list(self, container, name):
        _, _, data = self.request("GET", self._path(container, name),
            {"comp": "blocklist", "blocklisttype": "committed"})
        root = ET.fromstring(data)
        return [(b.findtext("Name"), int(b.findtext("Size")))
            for b in root.iter("Block")]

    def exists(self, container, name):
        try:
            self.properties(container, name)
            return True
        except BlobError as e:
            if e.status == 404:
                return False
            raise

    def list(self, container, prefix=None):
        out, marker = [], None
        while True:
            q = {"restype": "container", "comp": "list"}
            if prefix:
                q["prefix"] = prefix
            if marker:
                q["marker"] = marker
            _, _, data = self.request("GET", self._path(container), q)
            root = ET.fromstring(data)
            for b in root.iter("Blob"):
                props = b.find("Properties")
                get = (lambda k: props.findtext(k)) if props is not None \
                    else (lambda k: None)
                out.append({"name": b.findtext("Name"),
                    "length": int(get("Content-Length") or 0),
                    "contentMD5": get("Content-MD5") or None,
                    "etag": get("Etag"), "blobType": get("BlobType"),
                    "contentType": get("Content-Type")})
            marker = root.findtext("NextMarker")
            if not marker:
                return out

    def get(self, container, name):
        return self.request("GET", self._path(container, name))[2]

    def get_url(self, url):
        """GET an absolute blob URL of this account (signed with the
        key; a query string in it is kept and signed too)."""
        u = urllib.parse.urlsplit(url)
        query = dict(urllib.parse.parse_qsl(u.query, keep_blank_values=True))
        return self.request("GET", u.path, query)[2]


def _error(status, headers, data):
    code = headers.get("x-ms-error-code") or ""
    msg = ""
    if data:
        try:
            root = ET.fromstring(data)
            code = root.findtext("Code") or code
            msg = (root.findtext("Message") or "").split("\n")[0]
        except ET.ParseError:
            msg = data[:200].decode("utf-8", "replace")
    return BlobError(status, code or "HTTP%d" % status, msg)
