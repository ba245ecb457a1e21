# Signs messages with dkimpy (Debian python3-dkim; Ed25519 needs python3-nacl),
# for the verification tests: an implementation independent of ours.
# Usage: /usr/bin/python3 dkimpy_sign.py JOBS_JSON
# JOBS_JSON is a list of {"message", "key" (file paths), "selector", "domain",
# "canon" ("relaxed/simple"), "algorithm", "length" (l= tag), "all_headers"
# (sign every field, Received too)}. Prints a JSON list with the
# DKIM-Signature field for each job, CRLF-terminated.
# Exits 3 when the dkim module is missing.
import json
import sys

try:
    import dkim
except ImportError:
    sys.stderr.write("python3-dkim is not installed\n")
    sys.exit(3)

with open(sys.argv[1]) as f:
    jobs = json.load(f)

out = []
for job in jobs:
    with open(job["message"], "rb") as f:
        message = f.read()
    with open(job["key"], "rb") as f:
        key = f.read().strip()
    header, body = job["canon"].encode().split(b"/")
    d = dkim.DKIM(message)
    include = None
    if job.get("all_headers"):
        d.should_not_sign.discard(b"received")
        include = d.all_sign_headers()
    sig = d.sign(job["selector"].encode(), job["domain"].encode(), key,
                 signature_algorithm=job["algorithm"].encode(),
                 canonicalize=(header, body), include_headers=include,
                 length=job.get("length", False))
    out.append(sig.decode())

json.dump(out, sys.stdout)
