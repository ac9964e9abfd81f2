#!/usr/bin/python3
# dkimverify.py: verify the DKIM signatures of a message with dkimpy
# (Debian python3-dkim), an implementation independent of libopendkim, so
# that the tests do not grade postern's signatures with the library that made
# them.  The key records come from the command line, never from DNS.
#
# usage: dkimverify.py [--count N] MESSAGE NAME=RECORD...
#   MESSAGE  the signed message as sent (CRLF lines, not dot-stuffed)
#   NAME     "selector._domainkey.domain"; RECORD its TXT data, for example
#            "v=DKIM1; k=ed25519; p=..."
#   --count  verify the first N DKIM-Signature fields (default: all) and fail
#            unless the message has at least N
#
# Prints one line per signature verified:
#   "sig IDX ok|FAIL d=DOMAIN s=SELECTOR a=ALGO c=CANON h=H1:H2:..."
# and exits 0 when every one verified, 1 when one did not, 2 on misuse.
# Needs /usr/bin/python3: dkimpy is Debian's, not pyenv's.
import logging
import sys

import dkim
import dkim.util


def main(argv):
    args = argv[1:]
    count = None
    if len(args) >= 2 and args[0] == "--count":
        count = int(args[1])
        args = args[2:]
    if not args:
        print("usage: dkimverify.py [--count N] MESSAGE NAME=RECORD...",
              file=sys.stderr)
        return 2
    records = {}
    for a in args[1:]:
        name, sep, rec = a.partition("=")
        if not sep:
            print("bad record argument: %r" % a, file=sys.stderr)
            return 2
        records[name.lower().rstrip(".")] = rec.encode("ascii")

    with open(args[0], "rb") as f:
        msg = f.read()

    def dnsfunc(name, timeout=5):
        if isinstance(name, bytes):
            name = name.decode("ascii")
        return records.get(name.lower().rstrip("."), b"")

    headers, _ = dkim.rfc822_parse(msg)
    sigs = [v for (n, v) in headers if n.lower() == b"dkim-signature"]
    if count is None:
        count = len(sigs)
    if count == 0 or len(sigs) < count:
        print("want %d signature(s), the message has %d" % (count, len(sigs)))
        return 1

    log = logging.getLogger("dkimverify")
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING)
    ok = True
    for i in range(count):
        tags = dkim.util.parse_tag_value(sigs[i])
        h = b"".join(tags.get(b"h", b"").split()).decode("ascii", "replace")
        try:
            good = dkim.DKIM(msg, logger=log).verify(idx=i, dnsfunc=dnsfunc)
        except Exception as e:  # dkimpy raises on malformed input
            print("sig %d exception: %s" % (i, e), file=sys.stderr)
            good = False
        ok = ok and good
        print("sig %d %s d=%s s=%s a=%s c=%s h=%s" % (
            i, "ok" if good else "FAIL",
            tags.get(b"d", b"").decode("ascii", "replace"),
            tags.get(b"s", b"").decode("ascii", "replace"),
            tags.get(b"a", b"").decode("ascii", "replace"),
            tags.get(b"c", b"simple/simple").decode("ascii", "replace"),
            h))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
