#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets (fuzz/seeds/<target>/), from the cases of the
hostile-input table (tests/adversary/table.rs): valid and hostile tokens signed with the fuzz
targets' secret, so libFuzzer starts from inputs that reach every stage of the verifier.

    python3 fuzz/seeds/generate.py    # deterministic: same files every run
"""
import base64, hashlib, hmac, json, os

SECRET = b"fuzz-secret-that-is-at-least-32-bytes-long"
ORG = "5d3c1b2a-4e6f-4a8b-9c0d-1e2f3a4b5c6d"
NOW = 1_800_000_000
HERE = os.path.dirname(os.path.abspath(__file__))


def b64(data):
    if isinstance(data, str):
        data = data.encode()
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def sign(header, payload, secret=SECRET):
    message = f"{b64(header)}.{b64(payload)}"
    sig = hmac.new(secret, message.encode(), hashlib.sha256).digest()
    return f"{message}.{b64(sig)}"


def claims(**over):
    c = {"sub": "0f9e8d7c-6b5a-4c3d-8e1f-2a3b4c5d6e7f", "aud": "authenticated",
         "exp": NOW + 3600, "iat": NOW - 10, "role": "authenticated",
         "app_metadata": {"org_id": ORG}, "org_id": ORG}
    c.update(over)
    return json.dumps(c, separators=(",", ":"))


def raw_claims(key, raw):
    c = json.loads(claims())
    c.pop(key, None)
    text = json.dumps(c, separators=(",", ":"))
    return text[:-1] + f',"{key}":{raw}}}'


HS = '{"alg":"HS256","typ":"JWT"}'
payloads = {
    "valid": claims(),
    "exp-string": claims(exp=str(NOW + 3600)),
    "exp-float": raw_claims("exp", f"{NOW + 3600}.5"),
    "exp-huge": raw_claims("exp", "1e300"),
    "exp-out-of-range": raw_claims("exp", "1e400"),
    "exp-negative": raw_claims("exp", "-1"),
    "exp-null": raw_claims("exp", "null"),
    "dup-role": claims()[:-1] + ',"role":"service_role"}',
    "dup-org": claims()[:-1] + ',"org_id":"00000000-0000-4000-8000-000000000001"}',
    "dup-sub": claims()[:-1] + ',"sub":"other"}',
    "nul-sub": claims(sub="a\u0000b"),
    "nul-escaped-backslash": claims(path="C:\\u0000"),
    "role-service": claims(role="service_role"),
    "org-nil": claims(app_metadata={"org_id": "00000000-0000-0000-0000-000000000000"}),
    "org-traversal": claims(app_metadata={"org_id": "../../etc/passwd"}),
    "aud-array": claims(aud=["other", "authenticated"]),
    "not-object": '"just a string"',
    "array": "[1,2,3]",
    "nested-jwt": sign(HS, claims()),
}
headers = {
    "hs256": HS,
    "none": '{"alg":"none","typ":"JWT"}',
    "NoNe": '{"alg":"NoNe"}',
    "dup-alg": '{"alg":"HS256","alg":"none"}',
    "crit": '{"alg":"HS256","crit":["exp"],"exp":1}',
    "enc": '{"alg":"HS256","enc":"A256GCM"}',
    "cty-jwt": '{"alg":"HS256","cty":"JWT"}',
    "jku": '{"alg":"RS256","jku":"http://127.0.0.1:9/jwks.json"}',
    "jwk": '{"alg":"RS256","jwk":{"kty":"RSA","n":"AQAB","e":"AQAB"}}',
    "kid-traversal": '{"alg":"HS256","kid":"../../../../etc/passwd"}',
    "kid-sql": '{"alg":"HS256","kid":"\' OR \'1\'=\'1\' --"}',
    "kid-long": json.dumps({"alg": "HS256", "kid": "k" * 700}),
    "no-alg": '{"typ":"JWT"}',
}


def write(target, name, data):
    d = os.path.join(HERE, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


for name, payload in payloads.items():
    write("signed_claims", name, payload)

# authenticate: the first half of the input is the Authorization value, the second the Cookie.
def auth_seed(name, value, cookie=""):
    value = value.encode() if isinstance(value, str) else value
    cookie = cookie.encode() if isinstance(cookie, str) else cookie
    cookie = cookie.ljust(len(value), b" ")[: len(value)]
    write("authenticate", name, value + cookie)

valid = sign(HS, claims())
for hname, header in headers.items():
    auth_seed(f"header-{hname}", "Bearer " + sign(header, claims()))
    auth_seed(f"unsigned-{hname}", "Bearer " + f"{b64(header)}.{b64(claims())}.")
for pname, payload in payloads.items():
    auth_seed(f"claims-{pname}", "Bearer " + sign(HS, payload))
parts = valid.split(".")
for name, value in {
    "valid": f"Bearer {valid}",
    "lowercase": f"bearer {valid}",
    "spaces": f"Bearer    {valid}   ",
    "tab-after-scheme": f"Bearer\t{valid}",
    "two-tokens": f"Bearer {valid} {valid}",
    "comma": f"Bearer {valid}, Bearer {valid}",
    "quoted": f'Bearer "{valid}"',
    "basic": "Basic dXNlcjpwYXNzd29yZA==",
    "padding": f"Bearer {parts[0]}==.{parts[1]}.{parts[2]}",
    "signature-padding": f"Bearer {valid}=",
    "standard-alphabet": "Bearer " + valid.replace("-", "+").replace("_", "/"),
    "empty-segments": "Bearer ..",
    "two-segments": f"Bearer {parts[0]}.{parts[1]}",
    "four-segments": f"Bearer {valid}.{parts[2]}",
    "jwe": "Bearer " + ".".join(b64(p) for p in ['{"alg":"RSA-OAEP","enc":"A256GCM"}', "k", "iv", "ct", "tag"]),
    "latin1": (f"Bearer {valid}").encode() + b"\xe9",
    "non-utf8": b"Bearer \xff\xfe\xfd.e30.e30",
    "oversized": "Bearer " + "a" * 9000,
}.items():
    auth_seed(f"auth-{name}", value)
# No Authorization header (NUL bytes are not a header value), only the opted-in cookie.
for name, cookie in {"cookie-only": f"tok={valid}", "cookie-twice": f"tok={valid}; tok={valid}"}.items():
    auth_seed(name, b"\0" * len(cookie), cookie)
