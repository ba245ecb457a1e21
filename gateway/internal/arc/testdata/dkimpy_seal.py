# Seals a message with dkimpy's arc_sign (Debian python3-dkim), for the
# tests: an ARC implementation independent of ours.
# Usage: /usr/bin/python3 dkimpy_seal.py MESSAGE KEY_PEM SELECTOR DOMAIN SRV_ID
# The message must carry an Authentication-Results field of SRV_ID. Prints
# the ARC set (ARC-Seal, ARC-Message-Signature, ARC-Authentication-Results),
# CRLF-terminated, to go on top of the message. Exits 3 when the dkim module
# is missing.
import sys

try:
    import dkim
except ImportError:
    sys.stderr.write("python3-dkim is not installed\n")
    sys.exit(3)

message_file, key_file, selector, domain, srv_id = sys.argv[1:6]
with open(message_file, "rb") as f:
    message = f.read()
with open(key_file, "rb") as f:
    key = f.read()
fields = dkim.arc_sign(message, selector.encode(), domain.encode(), key, srv_id.encode())
sys.stdout.buffer.write(b"".join(fields))
