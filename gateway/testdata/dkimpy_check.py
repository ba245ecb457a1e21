# Checks a message the way a destination would, with Debian's dkimpy (an
# implementation independent of ours): every DKIM signature and the ARC
# chain. Reads the message on stdin and a JSON object of TXT records
# ({"sel._domainkey.domain.": "v=DKIM1; ..."}) from the file in argv[1].
# Prints one JSON object: {"dkim": [true, false, ...], "arc": "pass"}.
import json
import sys

import dkim

records = json.load(open(sys.argv[1]))


def dnsfunc(name, timeout=5):
    if isinstance(name, bytes):
        name = name.decode()
    value = records.get(name) or records.get(name + ".")
    return value.encode() if value else None


msg = sys.stdin.buffer.read()
d = dkim.DKIM(msg)
sigs = [v for (k, v) in d.headers if k.lower() == b"dkim-signature"]
results = [bool(d.verify(idx=i, dnsfunc=dnsfunc)) for i in range(len(sigs))]
cv, _, reason = dkim.arc_verify(msg, dnsfunc=dnsfunc)
print(json.dumps({"dkim": results, "arc": cv.decode(), "reason": reason}))
