#!/usr/bin/python3
"""Generate SigV4 test vectors with botocore, independently of skiff's C code.

Usage: tools/gen-sigv4-vectors.py [OUT.json]   (default: tests/data/sigv4-vectors.json)

Each vector describes one request as a server receives it (method, raw path,
raw query, headers, body) together with what botocore computes for it: the
canonical request, the string to sign, the signing key, the signature, and the
Authorization header (or, for presigned URLs, the X-Amz-Signature query
parameter). tests/unit/test-sigv4.c checks skiff against every field.

The clock is pinned so the output is reproducible; rerun after changing the
cases below and commit the result.
"""
import datetime
import hashlib
import hmac
import json
import os
import sys
from unittest import mock
from urllib.parse import urlsplit

import botocore
from botocore.auth import SigV4Auth, SigV4QueryAuth, _host_from_url
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

FIXED_NOW = datetime.datetime(2023, 11, 14, 22, 13, 20)
AKID = "AKIDEXAMPLE"
SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"


def signing_key(secret, date, region, service):
    def h(key, msg):
        return hmac.new(key, msg.encode(), hashlib.sha256).digest()

    k = h(("AWS4" + secret).encode(), date)
    k = h(k, region)
    k = h(k, service)
    return h(k, "aws4_request")


def make(name, method, url, headers=(), body=b"", region="us-east-1", service="ecs",
         presign_expires=None, token=None, note=""):
    creds = Credentials(AKID, SECRET, token)
    req = AWSRequest(method=method, url=url, data=body)
    for k, v in headers:
        req.headers[k] = v  # HTTPHeaders appends: repeated names stay repeated
    with mock.patch("botocore.auth.datetime") as dt:
        dt.datetime.utcnow.return_value = FIXED_NOW
        dt.datetime.strptime = datetime.datetime.strptime
        if presign_expires is None:
            auth = SigV4Auth(creds, service, region)
        else:
            auth = SigV4QueryAuth(creds, service, region, expires=presign_expires)
        auth.add_auth(req)
        # Recompute the intermediate values on the signed request. For the
        # query form, the signature parameter is not part of the canonical
        # request, so strip it first.
        check = AWSRequest(method=req.method, url=req.url, data=req.data, headers=req.headers)
        check.context = req.context
        if presign_expires is not None:
            check.url = req.url.rsplit("&X-Amz-Signature=", 1)[0]
        else:
            del check.headers["Authorization"]
        canonical = auth.canonical_request(check)
        sts = auth.string_to_sign(check, canonical)
        signature = auth.signature(sts, check)
        signed_headers = auth.signed_headers(auth.headers_to_sign(check))
    if presign_expires is None:
        assert req.headers["Authorization"].endswith("Signature=" + signature), name
    else:
        assert req.url.endswith("&X-Amz-Signature=" + signature), name
    parts = urlsplit(req.url)
    # What the server sees on the wire: every header (including the Host the
    # HTTP client adds), the raw path and query.
    wire_headers = [[k, v] for k, v in req.headers.items()]
    if not any(k.lower() == "host" for k, _ in wire_headers):
        wire_headers.insert(0, ["Host", _host_from_url(req.url)])
    amz_date = req.context["timestamp"]
    v = {
        "name": name,
        "note": note,
        "method": method,
        "path": parts.path or "/",
        "query": parts.query or None,
        "headers": wire_headers,
        "body": body.decode(),
        "payload_hash": canonical.rsplit("\n", 1)[1],
        "access_key": AKID,
        "secret": SECRET,
        "region": region,
        "service": service,
        "amz_date": amz_date,
        "signed_headers": signed_headers,
        "canonical_request": canonical,
        "string_to_sign": sts,
        "signing_key": signing_key(SECRET, amz_date[:8], region, service).hex(),
        "signature": signature,
        "presigned": presign_expires is not None,
    }
    if presign_expires is None:
        v["authorization"] = req.headers["Authorization"]
    else:
        v["expires"] = presign_expires
    return v


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.normpath(os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "tests", "data", "sigv4-vectors.json"))
    json_hdr = [("Content-Type", "application/x-amz-json-1.1"),
                ("X-Amz-Target", "AmazonEC2ContainerServiceV20141113.ListClusters")]
    vectors = [
        make("json-post", "POST", "https://ecs.us-east-1.amazonaws.com/", json_hdr,
             b'{"maxResults":10}', note="JSON 1.1 POST /, as botocore sends ECS calls"),
        make("json-post-host-port", "POST", "http://127.0.0.1:8443/",
             [("Content-Type", "application/x-amz-json-1.1"),
              ("X-Amz-Target", "AmazonEC2ContainerServiceV20141113.RunTask"),
              ("User-Agent", "aws-cli/2.15 botocore/1.29")],
             b'{"taskDefinition":"web:1","cluster":"default"}', region="eu-west-1",
             note="host with a non-default port; User-Agent is sent but not signed"),
        make("json-post-empty-body", "POST", "http://localhost:8080/",
             [("Content-Type", "application/x-amz-json-1.1"),
              ("X-Amz-Target", "AmazonEC2ContainerRegistry_V20150921.GetAuthorizationToken")],
             b"", service="ecr", note="empty body hashes to e3b0c442..."),
        make("session-token", "POST", "https://ecs.us-west-2.amazonaws.com/", json_hdr, b"{}",
             region="us-west-2", token="FQoGZXIvYXdzEJr//////////wEaDHNlc3Npb24tdG9rZW4=",
             note="X-Amz-Security-Token is signed"),
        make("header-whitespace-and-repeats", "POST", "http://localhost:8080/",
             [("Content-Type", "application/x-amz-json-1.1"),
              ("X-Amz-Target", "AmazonEC2ContainerServiceV20141113.ListClusters"),
              ("X-Amz-Meta-Spaces", "  a   b \t c  "),
              ("X-Amz-Meta-Dup", "first"),
              ("X-Amz-Meta-Dup", "second")],
             b"{}", note="values trimmed and inner whitespace collapsed; repeats joined with ','"),
        make("unsigned-payload", "POST", "http://localhost:8080/",
             [("Content-Type", "application/x-amz-json-1.1"),
              ("X-Amz-Target", "AmazonEC2ContainerServiceV20141113.ListClusters"),
              ("X-Amz-Content-SHA256", "UNSIGNED-PAYLOAD")],
             b"{}", note="x-amz-content-sha256 replaces the body hash"),
        make("query-reserved", "GET",
             "https://sts.amazonaws.com/?Action=GetCallerIdentity&Version=2011-06-15"
             "&Marker=a%2Fb%3Dc%26d%2Be&Space=x%20y&Tilde=~t&Empty=&Utf8=%E2%9C%93"
             "&Key%20With%20Space=1&Star=%2A",
             region="us-east-1", service="sts",
             note="reserved characters percent-encoded, unreserved left alone, empty value"),
        make("query-repeated-keys", "GET",
             "http://localhost:8080/?b=1&a=2&a=10&a=1&A=0&flag", service="ecs",
             note="sorted by key then value (byte order); a key without '=' signs as 'flag='"),
        make("path-spaces", "GET", "http://localhost:8080/foo%20bar/baz%2Fqux", service="ecs",
             note="non-S3 services double-encode the already encoded path"),
        make("path-normalize", "GET", "http://localhost:8080/a/./b/../c//d/~e%7E/", service="ecs",
             note="dot segments removed, '//' collapsed, trailing slash kept"),
        make("path-utf8", "GET", "http://localhost:8080/%E2%9C%93/x:y@z!", service="ecs",
             note="non-ASCII and sub-delims"),
        make("presigned-get", "GET",
             "https://sts.amazonaws.com/?Action=GetCallerIdentity&Version=2011-06-15",
             service="sts", presign_expires=900, note="presigned query form"),
        make("presigned-with-path", "GET", "http://127.0.0.1:8443/v2/repo%20x/blobs",
             region="eu-central-1", service="ecr", presign_expires=3600,
             note="presigned with an encoded path and host:port"),
    ]
    doc = {
        "generator": "tools/gen-sigv4-vectors.py",
        "botocore": botocore.__version__,
        "now": int((FIXED_NOW - datetime.datetime(1970, 1, 1)).total_seconds()),
        "vectors": vectors,
    }
    with open(out, "w") as f:
        json.dump(doc, f, indent=1, ensure_ascii=True)
        f.write("\n")
    print(f"wrote {len(vectors)} vectors to {out}")


if __name__ == "__main__":
    main()
