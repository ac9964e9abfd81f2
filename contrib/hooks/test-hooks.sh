#!/bin/sh
#
# test-hooks.sh [BUILDDIR]: tests of the contrib escalation hooks against
# local peers written here in Debian's /usr/bin/python3: an HTTP listener
# that records each request's headers and body, and an SMTP sink that
# records each transaction.  Each hook runs as posternd runs it: the event
# JSON on stdin, POSTERN_EVENT and POSTERN_QUEUE_ID in an environment with
# nothing else of ours (env -i), plus the hook's own settings.  BUILDDIR is
# accepted for the test driver and not needed.  Prints "N passed, M failed"
# and exits 0 when nothing failed.

set -u

here=$(cd "$(dirname "$0")" && pwd)
python=/usr/bin/python3
pass=0
fail=0
pids=

work=$(mktemp -d /tmp/test-hooks.XXXXXX) || exit 1
cleanup() {
	for p in $pids; do
		kill "$p" 2>/dev/null
	done
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

ok() {
	pass=$((pass + 1))
	echo "ok - $1"
}

not_ok() {
	fail=$((fail + 1))
	echo "not ok - $1"
	if [ -n "${2:-}" ] && [ -f "$2" ]; then
		sed 's/^/#   /' "$2"
	fi
}

# check NAME COMMAND...: pass when COMMAND succeeds.
check() {
	name=$1
	shift
	if "$@"; then
		ok "$name"
	else
		not_ok "$name" "$work/err"
	fi
}

# Wait for a server to write its port into FILE.
wait_port() {
	i=0
	while [ ! -s "$1" ] && [ $i -lt 100 ]; do
		sleep 0.05
		i=$((i + 1))
	done
	cat "$1"
}

if [ ! -x "$python" ]; then
	echo "$python is needed"
	echo "0 passed, 1 failed"
	exit 1
fi

# The event: the SPEC 6 shape with an OUT-37 recipient and a Latin-1-ish
# reply already turned into U+FFFD by postern.
cat > "$work/event.json" <<'EOF'
{"event":"failed","queue_id":"4F2A9C1B","message_id":"<m1@example.com>","sender":"a@example.com","recipients":[{"address":"b@example.net","dsn":"5.1.1","reply":"550 5.1.1 no such user","remote":"mx.example.net[192.0.2.10]"},{"address":"\"a\\\"b\nc\"@x","dsn":"4.4.7","reply":"421 caf\ufffd \"timed out\"\r\n","remote":""}],"attempts":3,"queued_at":"2026-11-25T10:00:00Z","failed_at":"2026-11-25T10:03:12Z","hostname":"relay.example.com"}
EOF

# ---- HTTP listener: /ok -> 201, /fail -> 500, /slow -> 201 after 1.5 s,
# /redirect -> 302.  Each request is recorded as req.N.headers/.body.
cat > "$work/httpsink.py" <<'EOF'
import http.server, os, sys, time
out = sys.argv[1]
n = [0]
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        n[0] += 1
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        base = os.path.join(out, "req.%d" % n[0])
        with open(base + ".body", "wb") as f:
            f.write(body)
        with open(base + ".headers", "w") as f:
            f.write("PATH %s\n" % self.path)
            for k, v in self.headers.items():
                f.write("%s: %s\n" % (k, v))
        if self.path == "/slow":
            time.sleep(1.5)
        code = {"/ok": 201, "/slow": 201, "/fail": 500,
                "/redirect": 302}.get(self.path, 404)
        self.send_response(code)
        if code == 302:
            self.send_header("Location", "/ok")
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")
    def log_message(self, *a):
        pass
s = http.server.HTTPServer(("127.0.0.1", 0), H)
with open(os.path.join(out, "http.port.tmp"), "w") as f:
    f.write(str(s.server_address[1]))
os.rename(os.path.join(out, "http.port.tmp"), os.path.join(out, "http.port"))
s.serve_forever()
EOF

# ---- SMTP sink: RCPT to reject@... gets 550; each finished transaction
# is written to smtp.N as "MAIL <...>", "RCPT <...>" lines, then the data.
cat > "$work/smtpsink.py" <<'EOF'
import os, socketserver, sys
out = sys.argv[1]
n = [0]
class H(socketserver.StreamRequestHandler):
    def say(self, line):
        self.wfile.write(line.encode() + b"\r\n")
        self.wfile.flush()
    def handle(self):
        self.say("220 sink ESMTP")
        mail, rcpts = None, []
        while True:
            line = self.rfile.readline()
            if not line:
                return
            cmd = line.decode("utf-8", "replace").rstrip("\r\n")
            verb = cmd[:4].upper()
            if verb in ("EHLO", "HELO"):
                self.say("250-sink\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250 PIPELINING")
            elif verb == "MAIL":
                mail, rcpts = cmd[10:].split(" ")[0], []
                self.say("250 ok")
            elif verb == "RCPT":
                r = cmd[8:]
                if r.lower().startswith("<reject"):
                    self.say("550 5.1.1 no such user")
                else:
                    rcpts.append(r)
                    self.say("250 ok")
            elif verb == "DATA":
                self.say("354 go")
                data = b""
                while True:
                    l = self.rfile.readline()
                    if not l or l == b".\r\n":
                        break
                    data += l
                n[0] += 1
                with open(os.path.join(out, "smtp.%d" % n[0]), "wb") as f:
                    f.write(("MAIL %s\n" % mail).encode())
                    for r in rcpts:
                        f.write(("RCPT %s\n" % r).encode())
                    f.write(data)
                self.say("250 2.0.0 queued")
            elif verb == "QUIT":
                self.say("221 bye")
                return
            else:
                self.say("250 ok")
socketserver.ThreadingTCPServer.allow_reuse_address = True
s = socketserver.ThreadingTCPServer(("127.0.0.1", 0), H)
with open(os.path.join(out, "smtp.port.tmp"), "w") as f:
    f.write(str(s.server_address[1]))
os.rename(os.path.join(out, "smtp.port.tmp"), os.path.join(out, "smtp.port"))
s.serve_forever()
EOF

"$python" "$work/httpsink.py" "$work" &
pids="$pids $!"
"$python" "$work/smtpsink.py" "$work" &
pids="$pids $!"
http_port=$(wait_port "$work/http.port")
smtp_port=$(wait_port "$work/smtp.port")
if [ -z "$http_port" ] || [ -z "$smtp_port" ]; then
	echo "test servers did not start"
	echo "0 passed, 1 failed"
	exit 1
fi
# A port nobody listens on: bind, note, close.
dead_port=$("$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')

# run_hook HOOK [VAR=value...]: run like posternd does, event on stdin.
run_hook() {
	hook=$1
	shift
	env -i PATH=/usr/bin:/bin POSTERN_EVENT=failed \
	    POSTERN_QUEUE_ID=4F2A9C1B "$@" "$here/$hook" \
	    < "$work/event.json" > "$work/out" 2> "$work/err"
}

# case_conf URLPATH TOKEN: write the open-case-http configuration.
case_conf() {
	printf 'url=http://127.0.0.1:%s%s\ntoken=%s\n' "$http_port" "$1" \
	    "$2" > "$work/case.conf"
	chmod 600 "$work/case.conf"
}

last_req() {
	ls "$work" | sed -n 's/^req\.\([0-9]*\)\.body$/\1/p' | sort -n |
	    tail -n 1
}

# ---- open-case-http
case_conf /ok 'tok-3f9a'
run_hook open-case-http POSTERN_CASE_CONFIG="$work/case.conf"
check "open-case-http exits 0 on HTTP 201" [ $? -eq 0 ]
n=$(last_req)
check "open-case-http: body is the input JSON byte for byte" \
    cmp -s "$work/event.json" "$work/req.$n.body"
check "open-case-http: bearer token arrived" \
    grep -qx 'Authorization: Bearer tok-3f9a' "$work/req.$n.headers"
check "open-case-http: JSON content type" \
    grep -qx 'Content-Type: application/json' "$work/req.$n.headers"
check "open-case-http: idempotency key names queue id and event" \
    grep -qx 'Idempotency-Key: postern-4F2A9C1B-failed' \
    "$work/req.$n.headers"

# A token with the characters a curl config quotes.
case_conf /ok 'a"b\c d'
run_hook open-case-http POSTERN_CASE_CONFIG="$work/case.conf"
n=$(last_req)
check "open-case-http: token with quote, backslash, space intact" \
    grep -qx 'Authorization: Bearer a"b\\c d' "$work/req.$n.headers"

# The token never shows on a command line while curl runs.
case_conf /slow 'tok-secret-7c21'
run_hook open-case-http POSTERN_CASE_CONFIG="$work/case.conf" &
bg=$!
sleep 0.7
# Every process's argv, one per line, read in one pass while curl waits.
"$python" -c '
import os
for p in os.listdir("/proc"):
    try:
        with open("/proc/%s/cmdline" % p, "rb") as f:
            print(f.read().replace(b"\0", b" ").decode("utf-8", "replace"))
    except (OSError, ValueError):
        pass' > "$work/cmdlines"
found=0
grep -q 'tok-secret-7c21' "$work/cmdlines" && found=1
seen_curl=0
grep -q '^curl .*/dev/fd/3' "$work/cmdlines" && seen_curl=1
wait $bg
rc=$?
check "open-case-http: slow request still succeeds" [ $rc -eq 0 ]
check "open-case-http: curl was running during the scan" [ $seen_curl -eq 1 ]
check "open-case-http: token not in any argv" [ $found -eq 0 ]

case_conf /fail 'tok'
run_hook open-case-http POSTERN_CASE_CONFIG="$work/case.conf"
rc=$?
check "open-case-http: HTTP 500 exits non-zero" [ $rc -ne 0 ]
check "open-case-http: HTTP 500 is reported on stderr" \
    grep -q 'HTTP 500' "$work/err"

case_conf /redirect 'tok'
run_hook open-case-http POSTERN_CASE_CONFIG="$work/case.conf"
check "open-case-http: a redirect is a failure" [ $? -ne 0 ]

printf 'url=http://127.0.0.1:%s/ok\ntoken=tok\n' "$dead_port" \
    > "$work/case.conf"
run_hook open-case-http POSTERN_CASE_CONFIG="$work/case.conf"
rc=$?
check "open-case-http: connection refused exits non-zero" [ $rc -ne 0 ]
check "open-case-http: curl's error is the first line" \
    grep -q '^curl: (7)' "$work/err"

run_hook open-case-http POSTERN_CASE_CONFIG="$work/missing.conf"
check "open-case-http: missing configuration exits 78" [ $? -eq 78 ]

# ---- mail-support
count_mail() {
	c=0
	for f in "$work"/smtp.[0-9]*; do
		[ -e "$f" ] && c=$((c + 1))
	done
	echo $c
}

run_hook mail-support POSTERN_SUPPORT_ADDRESS=support@example.org \
    POSTERN_SMTP_HOST=127.0.0.1 POSTERN_SMTP_PORT="$smtp_port"
check "mail-support exits 0 when the listener accepts" [ $? -eq 0 ]
m="$work/smtp.$(count_mail)"
check "mail-support: one message arrived" [ "$(count_mail)" -eq 1 ]
check "mail-support: null envelope sender" grep -qx 'MAIL <>' "$m"
check "mail-support: to the support address" \
    grep -qx 'RCPT <support@example.org>' "$m"
check "mail-support: subject names the queue id" \
    grep -q '^Subject: \[postern\] message 4F2A9C1B failed, 2 recipient(s)' \
    "$m"
check "mail-support: Auto-Submitted header" \
    grep -q '^Auto-Submitted: auto-generated' "$m"
check "mail-support: body lists the failed recipient and reply" \
    grep -q '550 5.1.1 no such user' "$m"
check "mail-support: peer control characters escaped in the body" \
    grep -q 'reply: 421 caf.* "timed out"\\x0d\\x0a' "$m"
check "mail-support: no raw bare CR or LF in the message" \
    "$python" -c 'import re, sys; d = open(sys.argv[1], "rb").read(); d = d.split(b"\n", 2)[2]; sys.exit(1 if re.search(rb"\r(?!\n)|(?<!\r)\n", d) else 0)' "$m"

# Settings from the file when the environment has none.
printf 'to=ops@example.org\nhost=127.0.0.1\nport=%s\nfrom=postern@relay.example.com\n' \
    "$smtp_port" > "$work/support.conf"
before=$(count_mail)
run_hook mail-support POSTERN_SUPPORT_CONFIG="$work/support.conf"
check "mail-support: configuration file is read" [ $? -eq 0 ]
m="$work/smtp.$(count_mail)"
check "mail-support: file's to= and from= used" \
    grep -q 'RCPT <ops@example.org>' "$m"
check "mail-support: envelope sender from the file" \
    grep -qx 'MAIL <postern@relay.example.com>' "$m"

run_hook mail-support POSTERN_SUPPORT_ADDRESS=reject@example.org \
    POSTERN_SMTP_PORT="$smtp_port"
rc=$?
check "mail-support: rejected recipient exits non-zero" [ $rc -ne 0 ]
check "mail-support: rejection reported on stderr" \
    grep -q '550' "$work/err"

run_hook mail-support POSTERN_SUPPORT_ADDRESS=support@example.org \
    POSTERN_SMTP_PORT="$dead_port"
check "mail-support: no listener exits non-zero" [ $? -ne 0 ]

run_hook mail-support POSTERN_SUPPORT_CONFIG="$work/missing.conf"
check "mail-support: no support address exits 78" [ $? -eq 78 ]

# An event about a support notice is not mailed again (no loop).
sed 's/"message_id":"<m1@example.com>"/"message_id":"<postern-escalation.4F2A9C1B.failed.1@relay.example.com>"/' \
    "$work/event.json" > "$work/loop.json"
before=$(count_mail)
env -i PATH=/usr/bin:/bin POSTERN_EVENT=failed POSTERN_QUEUE_ID=4F2A9C1B \
    POSTERN_SUPPORT_ADDRESS=support@example.org \
    POSTERN_SMTP_PORT="$smtp_port" "$here/mail-support" \
    < "$work/loop.json" > "$work/out" 2> "$work/err"
rc=$?
check "mail-support: notice about a notice exits 0" [ $rc -eq 0 ]
check "mail-support: and sends nothing" [ "$(count_mail)" -eq "$before" ]

echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
