# Checks a message the way a destination would, with Debian's dkimpy
# (python3-dkim), an implementation independent of ours: every DKIM
# signature, top one first, and the ARC chain.
# Usage: /usr/bin/python3 check.py MESSAGE RECORDS_JSON
# RECORDS_JSON maps "selector._domainkey.domain" (a final dot or not) to a TXT
# record; no real DNS. Prints {"dkim": [true, ...], "arc": "pass", "reason": "..."}.
# Exits 3 when the dkim module is missing.
import json
import sys

try:
    import dkim
except ImportError:
    sys.stderr.write("python3-dkim is not installed\n")
    sys.exit(3)

with open(sys.argv[1], "rb") as f:
    message = f.read()
with open(sys.argv[2]) as f:
    records = {name.rstrip("."): txt for name, txt in (json.load(f) or {}).items()}


def dnsfunc(name, timeout=5):
    if isinstance(name, bytes):
        name = name.decode()
    return records.get(name.rstrip("."), "").encode()


def verified(i):
    try:
        return bool(dkim.DKIM(message).verify(idx=i, dnsfunc=dnsfunc))
    except dkim.DKIMException as e:
        # Some failures (a body hash mismatch) raise instead of returning False.
        sys.stderr.write("signature %d: %s\n" % (i, e))
        return False


count = sum(1 for k, _ in dkim.DKIM(message).headers if k.lower() == b"dkim-signature")
cv, _, reason = dkim.arc_verify(message, dnsfunc=dnsfunc)
print(json.dumps({"dkim": [verified(i) for i in range(count)], "arc": cv.decode(), "reason": reason}))
