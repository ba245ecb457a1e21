"""Parses a DSN or notice with Python's email package, an implementation
independent of ours, and prints what a test asserts, as JSON: the top
header, each MIME part's type, the text, the delivery-status blocks (the
per-message fields, then one block per recipient) and the fields of the
attached header."""
import email
import email.parser
import email.policy
import json
import re
import sys


def fields(items):
    """[name, value] pairs, each value unfolded (RFC 5322 §2.2.3)."""
    return [[k, re.sub(r"\r?\n[ \t]", " ", str(v))] for k, v in items]


def blocks(part):
    """The field blocks of a message/delivery-status or
    message/global-delivery-status part, as lists of [name, value]."""
    payload = part.get_payload()
    if part.get_content_type() == "message/delivery-status":
        return [fields(b.items()) for b in payload]
    # Python does not know message/global-delivery-status: it reads it as
    # message/rfc822, whose header is the first block and whose body the
    # others. Parse the rest as delivery-status does.
    first = payload[0]
    out = [fields(first.items())]
    rest = first.get_payload().replace("\r\n", "\n")
    for chunk in rest.split("\n\n"):
        if chunk.strip():
            b = email.parser.HeaderParser(policy=email.policy.compat32).parsestr(chunk)
            out.append(fields(b.items()))
    return out


def header_fields(part):
    if part.get_content_type() == "text/rfc822-headers":
        text = part.get_payload()
        h = email.parser.HeaderParser(policy=email.policy.compat32).parsestr(text)
        return fields(h.items())
    # message/global-headers: read as an embedded message, header only.
    return fields(part.get_payload()[0].items())


def main():
    # Read as UTF-8 text, so that the UTF-8 fields of RFC 6532 read as
    # such; our parts are 7bit or 8bit, never encoded.
    with open(sys.argv[1], "rb") as f:
        msg = email.message_from_string(f.read().decode("utf-8"), policy=email.policy.compat32)
    out = {
        "header": fields(msg.items()),
        "type": msg.get_content_type(),
        "report_type": msg.get_param("report-type"),
        "defects": [type(d).__name__ for d in msg.defects],
        "parts": [],
        "encodings": [],
    }
    if msg.is_multipart():
        for part in msg.get_payload():
            t = part.get_content_type()
            out["parts"].append(t)
            out["encodings"].append(part.get("Content-Transfer-Encoding", ""))
            out["defects"] += [type(d).__name__ for d in part.defects]
            if t == "text/plain":
                out["text"] = part.get_payload()
            elif t.endswith("delivery-status"):
                out["status"] = blocks(part)
            elif t in ("text/rfc822-headers", "message/global-headers"):
                out["original"] = header_fields(part)
    else:
        out["text"] = msg.get_payload()
    json.dump(out, sys.stdout)


main()
