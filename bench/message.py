#!/usr/bin/python3
"""Writes the message the load benchmark sends, for smtp-source -F.

usage: message.py SIZE KEY.pem OUT

The message is what a sending domain's mail looks like after a mailing
list: DKIM-signed by source.test (selector "bench", RSA) and carrying an
ARC set (i=1) from lists.source.test, so that Sluice's full chain has real
signatures to verify. It is SIZE bytes on the wire, give or take a line.

dkimpy signs it (Debian: python3-dkim python3-authres), an implementation
independent of Sluice's own. smtp-source appends CRLF to each line of the
file, so the signatures are made over CRLF and the file is written with LF.
"""

import sys
import time

import dkim

SELECTOR = b"bench"
DOMAIN = b"source.test"
SIGNED = [b"from", b"to", b"subject", b"date", b"message-id"]


def message(size):
    header = (
        b"From: Alice <a@source.test>\r\n"
        b"To: <x@bench.test>\r\n"
        b"Subject: Sluice load benchmark\r\n"
        + b"Date: " + time.strftime("%a, %d %b %Y %H:%M:%S +0000", time.gmtime()).encode() + b"\r\n"
        b"Message-ID: <bench@source.test>\r\n"
        b"MIME-Version: 1.0\r\n"
        b"Content-Type: text/plain; charset=us-ascii\r\n"
    )
    line = (b"The quick brown fox jumps over the lazy dog, again and again. 0123456789" + b"\r\n")
    body = b""
    # Headers added below (signatures, ARC set) take about 1,800 bytes.
    while len(header) + 2 + len(body) + 1800 < size:
        body += line
    return header + b"\r\n" + body


def main():
    size, keyfile, out = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    key = open(keyfile, "rb").read()
    msg = message(size)
    sig = dkim.sign(msg, SELECTOR, DOMAIN, key, include_headers=SIGNED,
                    canonicalize=(b"relaxed", b"relaxed"))
    msg = b"Authentication-Results: lists.source.test; dkim=pass header.d=source.test\r\n" + sig + msg
    arc = dkim.arc_sign(msg, SELECTOR, DOMAIN, key, b"lists.source.test", include_headers=SIGNED)
    msg = b"".join(arc) + msg
    with open(out, "wb") as f:
        f.write(msg.replace(b"\r\n", b"\n"))


if __name__ == "__main__":
    main()
