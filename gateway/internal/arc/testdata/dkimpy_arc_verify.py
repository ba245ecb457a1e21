# Verifies the ARC chain of a message with dkimpy (Debian python3-dkim).
# Usage: /usr/bin/python3 dkimpy_arc_verify.py MESSAGE RECORDS_JSON
# RECORDS_JSON maps "selector._domainkey.domain" to a TXT record; no real DNS.
# Prints the chain validation status (none, pass or fail); the reason goes to
# stderr. Exits 3 when the dkim module is missing.
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


cv, results, reason = dkim.arc_verify(message, dnsfunc=dnsfunc)
sys.stderr.write("%s\n" % reason)
print(cv.decode())
