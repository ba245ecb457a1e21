# Verifies every DKIM-Signature in a message with dkimpy (Debian python3-dkim).
# Usage: /usr/bin/python3 dkimpy_verify.py MESSAGE RECORDS_JSON
# RECORDS_JSON maps "selector._domainkey.domain" to a TXT record; no real DNS.
# Prints "<index> <True|False>" per signature, top one first; reasons go to stderr.
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
    records = json.load(f)


def dnsfunc(name, timeout=5):
    return records.get(name.decode().rstrip("."), "").encode()


count = sum(1 for k, _ in dkim.DKIM(message).headers if k.lower() == b"dkim-signature")
for i in range(count):
    try:
        ok = dkim.DKIM(message).verify(idx=i, dnsfunc=dnsfunc)
    except dkim.DKIMException as e:
        # Some failures (a body hash mismatch) raise instead of returning False.
        sys.stderr.write("signature %d: %s\n" % (i, e))
        ok = False
    print(i, ok)
