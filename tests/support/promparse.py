#!/usr/bin/python3
# promparse.py: an independent check of postern's Prometheus text exposition.
#
# Usage: /usr/bin/python3 promparse.py [FILE]   (stdin when FILE is absent)
#
# Parses the text with prometheus_client's own parser (Debian package
# python3-prometheus-client), then checks what that lenient parser lets
# through: every family has a TYPE and a HELP, counters end in _total, no
# sample (name and labels) appears twice, histogram buckets are cumulative
# and end in le="+Inf" equal to _count.  On success prints one JSON object
# per sample: {"family","type","name","labels","value"}, and exits 0; on
# any failure prints the reason on stderr and exits 1.
import json
import math
import re
import sys

from prometheus_client.parser import text_string_to_metric_families


def fail(msg):
    print("promparse: " + msg, file=sys.stderr)
    sys.exit(1)


def main():
    if len(sys.argv) > 1:
        with open(sys.argv[1], "rb") as f:
            raw = f.read()
    else:
        raw = sys.stdin.buffer.read()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        fail("not UTF-8: %s" % e)
    if not text.endswith("\n"):
        fail("exposition does not end with a newline")

    # The parser accepts samples without a TYPE line (type "unknown") and
    # says nothing of HELP; check those from the raw lines.
    helps, types = {}, {}
    for line in text.split("\n"):
        m = re.match(r"^# (HELP|TYPE) (\S+) (.*)$", line)
        if m is None:
            continue
        d = helps if m.group(1) == "HELP" else types
        if m.group(2) in d:
            fail("%s for %s given twice" % (m.group(1), m.group(2)))
        d[m.group(2)] = m.group(3)

    try:
        families = list(text_string_to_metric_families(text))
    except Exception as e:  # the parser raises ValueError and others
        fail("parser rejected the text: %r" % (e,))

    seen = set()
    out = []
    for fam in families:
        if fam.type == "unknown":
            fail("family %s has no TYPE" % fam.name)
        # prometheus_client strips _total from a counter family's name.
        tname = fam.name + "_total" if fam.type == "counter" else fam.name
        if tname not in types:
            fail("family %s: no TYPE line under its own name" % tname)
        if not helps.get(tname):
            fail("family %s has no HELP" % tname)
        buckets = {}
        for s in fam.samples:
            key = (s.name, tuple(sorted(s.labels.items())))
            if key in seen:
                fail("duplicate sample %s %s" % (s.name, s.labels))
            seen.add(key)
            if fam.type == "counter":
                if not s.name.endswith("_total"):
                    fail("counter sample %s lacks _total" % s.name)
                if s.value < 0 or math.isnan(s.value):
                    fail("counter %s has value %r" % (s.name, s.value))
            if fam.type == "histogram" and s.name.endswith("_bucket"):
                rest = tuple(sorted((k, v) for k, v in s.labels.items()
                                    if k != "le"))
                buckets.setdefault(rest, []).append(
                    (float(s.labels["le"]), s.value))
            out.append({"family": fam.name, "type": fam.type,
                        "name": s.name, "labels": s.labels,
                        "value": s.value})
        if fam.type == "histogram":
            if not buckets:
                fail("histogram %s has no buckets" % fam.name)
            for rest, bl in buckets.items():
                les = [le for le, _ in bl]
                if les != sorted(les) or les[-1] != math.inf:
                    fail("histogram %s: buckets not ascending to +Inf"
                         % fam.name)
                vals = [v for _, v in bl]
                if vals != sorted(vals):
                    fail("histogram %s: buckets not cumulative" % fam.name)
                count = [s.value for s in fam.samples
                         if s.name == fam.name + "_count" and
                         tuple(sorted(s.labels.items())) == rest]
                if len(count) != 1 or count[0] != vals[-1]:
                    fail("histogram %s: +Inf bucket %r != _count %r"
                         % (fam.name, vals[-1], count))
    for name in types:
        if not any(f.name == name or f.name + "_total" == name
                   for f in families):
            fail("TYPE %s without samples" % name)
    for o in out:
        print(json.dumps(o, sort_keys=True))


main()
