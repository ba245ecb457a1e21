# The submission service as a mail client sees it, with Python's smtplib:
# TestSubmissionWithPython (submission_test.go) runs it against the real
# sluice binary. Each check prints "PASS name" or "FAIL name: what
# happened"; the exit status is 1 if any failed.
# Usage: /usr/bin/python3 submission.py SETUP_JSON
# SETUP_JSON: {"starttls": "ip:port", "implicit": "ip:port", "user": ...,
# "password": ..., "sender": the address the user may send as,
# "forbidden": one it may not, "to": a recipient the destination takes,
# "refused": one it refuses, "refusal": the destination's text for it,
# "max_failures": [submission] max_failures_per_ip, "throttled_source": a
# loopback address of its own for the throttling check}.
import base64
import json
import smtplib
import ssl
import sys
from email.message import EmailMessage

with open(sys.argv[1]) as f:
    setup = json.load(f)

# The test's certificate is self-signed; what is checked here is the
# service, not the certificate.
context = ssl.create_default_context()
context.check_hostname = False
context.verify_mode = ssl.CERT_NONE

failed = []


def check(name, ok, detail=""):
    if ok:
        print("PASS " + name)
    else:
        print("FAIL %s: %s" % (name, detail))
        failed.append(name)


def hostport(addr):
    host, port = addr.rsplit(":", 1)
    return host, int(port)


def starttls(source=None):
    host, port = hostport(setup["starttls"])
    s = smtplib.SMTP(host, port, timeout=60, source_address=(source, 0) if source else None)
    s.ehlo("laptop.example")
    s.starttls(context=context)
    s.ehlo("laptop.example")
    return s


def implicit():
    host, port = hostport(setup["implicit"])
    s = smtplib.SMTP_SSL(host, port, timeout=60, context=context)
    s.ehlo("laptop.example")
    return s


def message(subject, sender=None, to=None):
    m = EmailMessage()
    m["From"] = sender or setup["sender"]
    m["To"] = to or setup["to"]
    m["Subject"] = subject
    m.set_content("Sent with Python's smtplib through Sluice's submission service.\n")
    return m


def auth_plain(s, user, password):
    # One AUTH PLAIN exchange: smtplib's login() would try each mechanism
    # offered in turn, and each try counts as a failure.
    return s.auth("PLAIN", lambda challenge=None: "\0%s\0%s" % (user, password), initial_response_ok=True)


plain = base64.b64encode(("\0%s\0%s" % (setup["user"], setup["password"])).encode()).decode()

# AUTH success over STARTTLS (587), and a message through it.
try:
    s = starttls()
    code, _ = s.login(setup["user"], setup["password"])
    check("auth success on the STARTTLS port: 235", code == 235, code)
    refused = s.sendmail(setup["sender"], [setup["to"]], message("smtplib over STARTTLS").as_bytes())
    check("the message is accepted", refused == {}, refused)
    s.quit()
except Exception as e:
    check("auth success on the STARTTLS port", False, repr(e))

# AUTH failure: a wrong password is 535 5.7.8.
try:
    s = starttls()
    try:
        auth_plain(s, setup["user"], "not-the-password")
        check("a wrong password is refused", False, "accepted")
    except smtplib.SMTPAuthenticationError as e:
        check("a wrong password: SMTPAuthenticationError 535 5.7.8",
              e.smtp_code == 535 and e.smtp_error.startswith(b"5.7.8"), (e.smtp_code, e.smtp_error))
    s.quit()
except Exception as e:
    check("a wrong password is refused", False, repr(e))

# Clear text: no AUTH offered before STARTTLS, AUTH refused with 538
# 5.7.11 and MAIL with 530 5.7.0.
try:
    host, port = hostport(setup["starttls"])
    s = smtplib.SMTP(host, port, timeout=60)
    s.ehlo("laptop.example")
    check("no AUTH offered before STARTTLS", not s.has_extn("auth"), s.esmtp_features)
    code, msg = s.docmd("AUTH", "PLAIN " + plain)
    check("AUTH in clear text: 538 5.7.11", code == 538 and msg.startswith(b"5.7.11"), (code, msg))
    code, msg = s.mail(setup["sender"])
    check("MAIL in clear text: 530 5.7.0", code == 530 and msg.startswith(b"5.7.0"), (code, msg))
    s.quit()
except Exception as e:
    check("clear text is refused", False, repr(e))

# Implicit TLS (465): login and send.
try:
    s = implicit()
    code, _ = s.login(setup["user"], setup["password"])
    check("auth success on the implicit TLS port: 235", code == 235, code)
    refused = s.sendmail(setup["sender"], [setup["to"]], message("smtplib over implicit TLS").as_bytes())
    check("the message over implicit TLS is accepted", refused == {}, refused)
    s.quit()
except Exception as e:
    check("auth success on the implicit TLS port", False, repr(e))

# MAIL before AUTH, over TLS: 530 5.7.0.
try:
    s = starttls()
    code, msg = s.mail(setup["sender"])
    check("MAIL without a login: 530 5.7.0", code == 530 and msg.startswith(b"5.7.0"), (code, msg))
    s.quit()
except Exception as e:
    check("MAIL without a login", False, repr(e))

# A forbidden sender, in the envelope and in From: 553 5.7.1.
want = ("5.7.1 <%s> may not send as <%s>" % (setup["user"], setup["forbidden"])).encode()
try:
    s = starttls()
    s.login(setup["user"], setup["password"])
    try:
        s.sendmail(setup["forbidden"], [setup["to"]], message("forbidden envelope", sender=setup["forbidden"]).as_bytes())
        check("a forbidden envelope sender is refused", False, "accepted")
    except smtplib.SMTPSenderRefused as e:
        check("a forbidden envelope sender: SMTPSenderRefused 553 5.7.1",
              e.smtp_code == 553 and e.smtp_error == want, (e.smtp_code, e.smtp_error))
    s.rset()
    try:
        s.sendmail(setup["sender"], [setup["to"]], message("forbidden From", sender=setup["forbidden"]).as_bytes())
        check("a forbidden From is refused", False, "accepted")
    except smtplib.SMTPDataError as e:
        check("a forbidden From: SMTPDataError 553 5.7.1",
              e.smtp_code == 553 and e.smtp_error == want, (e.smtp_code, e.smtp_error))
    s.quit()
except Exception as e:
    check("forbidden senders are refused", False, repr(e))

# The destination's reply in session: it refuses one recipient, and the
# client sees its reply, while the other recipient gets the message.
try:
    s = starttls()
    s.login(setup["user"], setup["password"])
    to = [setup["to"], setup["refused"]]
    refused = s.sendmail(setup["sender"], to, message("one refused", to=", ".join(to)).as_bytes())
    got = refused.get(setup["refused"])
    check("the destination's refusal of a recipient reaches the client: 550 " + setup["refusal"],
          got is not None and got[0] == 550 and got[1] == setup["refusal"].encode() and len(refused) == 1, refused)
    s.quit()
except Exception as e:
    check("the destination's reply in session", False, repr(e))

# Throttling: after max_failures failed logins from one address, further
# logins from it wait, with 454 4.7.0, the right password included.
try:
    s = starttls(setup["throttled_source"])
    codes = []
    for _ in range(setup["max_failures"]):
        try:
            auth_plain(s, setup["user"], "guess")
            codes.append(235)
        except smtplib.SMTPAuthenticationError as e:
            codes.append(e.smtp_code)
    check("the first %d failures are 535" % setup["max_failures"], codes == [535] * setup["max_failures"], codes)
    try:
        auth_plain(s, setup["user"], setup["password"])
        check("a login after the failures is throttled", False, "accepted")
    except smtplib.SMTPAuthenticationError as e:
        check("a login after the failures, with the right password: 454 4.7.0",
              e.smtp_code == 454 and e.smtp_error.startswith(b"4.7.0"), (e.smtp_code, e.smtp_error))
    s.quit()
except Exception as e:
    check("throttling", False, repr(e))

# Another address is not throttled by those failures.
try:
    s = starttls()
    code, _ = auth_plain(s, setup["user"], setup["password"])
    check("another client address still logs in: 235", code == 235, code)
    s.quit()
except Exception as e:
    check("another client address still logs in", False, repr(e))

sys.exit(1 if failed else 0)
