#!/bin/bash
# fakemx-selftest.sh BUILDDIR: drive tests/support/fakemx with swaks (and raw
# bash /dev/tcp sessions) and check what it records: the .eml/.json pair of
# each accepted message, transcript.log, plaintext-mail.log, stats.json and
# the fault rules.  Each instance gets its own temp DIR and a kernel-chosen
# port (--port-file), so runs may overlap.  Prints one line per check and
# "N passed, M failed"; exits 0 only when nothing failed (77 = skipped,
# when swaks or the binary is missing).
set -u

# Under "make check" (automake TESTS) there is no argument: the build dir
# comes from POSTERN_BUILDDIR, which AM_TESTS_ENVIRONMENT exports.
builddir=${1:-${POSTERN_BUILDDIR:?usage: $0 BUILDDIR}}
fakemx=${FAKEMX:-$builddir/tests/support/fakemx}
here=$(cd "$(dirname "$0")" && pwd)

if ! command -v swaks >/dev/null 2>&1; then
	echo "swaks not installed: skipped"
	exit 77
fi
if [ ! -x "$fakemx" ]; then
	echo "$fakemx not built: skipped"
	exit 77
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/fakemx-selftest.XXXXXX")
pids=()
cleanup() {
	local p
	for p in "${pids[@]}"; do
		kill -TERM "$p" 2>/dev/null
	done
	wait 2>/dev/null
	if [ "${KEEP:-0}" = 1 ] || [ "$failed" -ne 0 ]; then
		echo "kept $tmp"
	else
		rm -rf "$tmp"
	fi
}
passed=0
failed=0
trap cleanup EXIT

ok() { passed=$((passed + 1)); echo "ok - $1"; }
nok() { failed=$((failed + 1)); echo "FAIL - $1"; }
# check DESCRIPTION COMMAND...: one assertion.
check() {
	local desc=$1
	shift
	if "$@"; then ok "$desc"; else nok "$desc"; fi
}
# has FILE FIXED-STRING / hasnt FILE FIXED-STRING
has() { [ -f "$1" ] && grep -qF -- "$2" "$1"; }
hasnt() { ! has "$1" "$2"; }
# stat_is DIR KEY VALUE: a counter in DIR/stats.json
stat_is() { grep -qE "\"$2\": $3[,}]" "$1/stats.json"; }
json_ok() {
	if [ -x /usr/bin/python3 ]; then
		/usr/bin/python3 -c 'import json,sys; json.load(open(sys.argv[1]))' "$1"
	else
		[ -s "$1" ]
	fi
}

# Certificates: the project's gen-certs.sh, else a throw-away self-signed one.
certs=$tmp/certs
if [ -f "$here/gen-certs.sh" ]; then
	sh "$here/gen-certs.sh" "$certs" || { echo "gen-certs.sh failed"; exit 1; }
else
	mkdir -p "$certs"
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
	    -keyout "$certs/server.key" -out "$certs/server.pem" -days 2 \
	    -subj /CN=localhost -addext subjectAltName=DNS:localhost \
	    2>/dev/null || { echo "openssl failed"; exit 1; }
fi

# start NAME ARGS...: run fakemx on 127.0.0.1:0 with DIR=$tmp/NAME; sets
# $dir, $port and $pid.  Waits for DIR/ready.
start() {
	local name=$1 i
	shift
	dir=$tmp/$name
	"$fakemx" --listen 127.0.0.1:0 --dir "$dir" --port-file "$dir.port" \
	    "$@" >"$dir.stderr" 2>&1 &
	pid=$!
	pids+=("$pid")
	for i in $(seq 100); do
		[ -f "$dir/ready" ] && break
		sleep 0.05
	done
	port=$(head -n1 "$dir.port" 2>/dev/null)
	[ -f "$dir/ready" ] && [ -n "$port" ]
}

# stop: SIGTERM the last started fakemx; it must exit 0 with no sanitizer
# report on stderr.
stop() {
	local rv
	kill -TERM "$pid" 2>/dev/null
	wait "$pid"
	rv=$?
	check "$(basename "$dir"): exits 0 on SIGTERM" test "$rv" -eq 0
	check "$(basename "$dir"): no sanitizer report" \
	    eval '! grep -qE "Sanitizer|runtime error" "$dir.stderr"'
}

# raw PRINTF-INPUT [SECONDS]: one raw session; prints what the server said.
raw() {
	exec 3<>"/dev/tcp/127.0.0.1/$port" || return 1
	printf "$1" >&3
	timeout "${2:-3}" cat <&3 2>/dev/null
	exec 3<&- 3>&-
}

sw() {
	timeout 30 swaks --server 127.0.0.1 --port "$port" \
	    --from sender@example.test "$@" >>"$dir.swaks" 2>&1
}

# 1. A plain message, recorded byte for byte.
check "plain: fakemx starts and writes ready and the port file" \
    start plain --cert "$certs/server.pem" --key "$certs/server.key" \
    --hostname mx.ok.test
body=$(printf 'line one\n.leading dot\nlast line')
check "plain: swaks gets 250" sw --to rcpt@ok.test --body "$body" \
    --header "Subject: plain test"
m=$dir/msgs/000001
check "plain: 000001.eml and 000001.json exist" test -f "$m.eml" -a -f "$m.json"
check "plain: .json parses" json_ok "$m.json"
check "plain: .eml keeps the dot-stuffing" has "$m.eml" "..leading dot"
check "plain: .eml has the header" has "$m.eml" "Subject: plain test"
check "plain: .eml ends in CRLF, terminator excluded" \
    eval '[ "$(tail -c 2 "$m.eml" | od -An -tx1)" = " 0d 0a" ] &&
    [ "$(tail -c 3 "$m.eml" | od -An -tx1)" != " 2e 0d 0a" ]'
check "plain: size is the .eml size" \
    has "$m.json" "\"size\": $(wc -c <"$m.eml"),"
check "plain: mail_from" has "$m.json" '"mail_from": "sender@example.test"'
check "plain: rcpt_to" has "$m.json" '"rcpt_to": ["rcpt@ok.test"]'
check "plain: tls false" has "$m.json" '"tls": false, "tls_version": null'
check "plain: ehlo recorded, helo_used false" \
    has "$m.json" '"helo_used": false'
check "plain: connection 1" has "$m.json" '"connection": 1,'
check "plain: plaintext-mail.log has the MAIL FROM" \
    has "$dir/plaintext-mail.log" "MAIL FROM:<sender@example.test>"
check "plain: transcript has C: and S: lines" \
    has "$dir/transcript.log" "1 C: MAIL FROM:<sender@example.test>"
check "plain: transcript has the 250" \
    has "$dir/transcript.log" "1 S: 250 2.0.0 Ok: queued as 000001"

# 2. STARTTLS, with SNI.
check "starttls: swaks --tls gets 250" sw --to tls@ok.test --tls \
    --tls-sni mx.ok.test
m=$dir/msgs/000002
check "starttls: message recorded" test -f "$m.eml" -a -f "$m.json"
check "starttls: tls true" has "$m.json" '"tls": true'
check "starttls: tls_version" has "$m.json" '"tls_version": "TLSv1.'
check "starttls: sni" has "$m.json" '"sni": "mx.ok.test"'
check "starttls: no plaintext MAIL for the TLS session" \
    hasnt "$dir/plaintext-mail.log" "connection=2 "
check "starttls: STARTTLS advertised" \
    has "$dir/transcript.log" "2 S: 250-STARTTLS"

# 3. HELO fallback is recorded.
out=$(raw 'HELO old.example\r\nMAIL FROM:<h@x>\r\nRCPT TO:<r@x>\r\nDATA\r\n'\
'Subject: h\r\n\r\nbody\r\n.\r\nQUIT\r\n')
m=$dir/msgs/000003
check "helo: pipelined session gets 250 and 221" \
    eval '[[ "$out" == *"250 2.0.0 Ok: queued as 000003"*"221 2.0.0"* ]]'
check "helo: helo_used true" has "$m.json" '"helo_used": true'
check "helo: ehlo holds the HELO name" has "$m.json" '"ehlo": "old.example"'
check "helo: body recorded exactly" \
    cmp -s "$m.eml" <(printf 'Subject: h\r\n\r\nbody\r\n')

# 4. Bounds and hostile input.
long=$(head -c 5000 /dev/zero | tr '\0' A)
out=$(raw "EHLO x\r\n$long\r\nNOOP\r\n")
check "bounds: a 5000-byte line gets 500 and the connection closes" \
    eval '[[ "$out" == *"500 5.5.2 Line too long"* && "$out" != *"2.0.0 Ok"* ]]'
out=$(raw 'EHLO x\r\nNOOP\nQUIT\r\n')
check "bounds: a bare LF inside a command line is refused" \
    eval '[[ "$out" == *"500 5.5.2"* ]]'
out=$(raw 'EHLO x\r\nSTARTTLS\r\nMAIL FROM:<smuggled@x>\r\n' 2)
check "bounds: STARTTLS discards commands pipelined after it" \
    has "$dir/transcript.log" "pipelined after STARTTLS"
check "bounds: ... and never runs them" \
    hasnt "$dir/plaintext-mail.log" "smuggled@x"
check "bounds: transcript escapes control bytes" \
    has "$dir/transcript.log" 'NOOP\x0aQUIT'
stop
check "plain: ready removed at exit" test ! -e "$dir/ready"
check "plain: stats connections_current 0" stat_is "$dir" connections_current 0
check "plain: stats messages 3" stat_is "$dir" messages 3
check "plain: stats tls_sessions 1" stat_is "$dir" tls_sessions 1
check "plain: stats quit counted" stat_is "$dir" quit 3
check "plain: stats connections_max >= 1" \
    eval '! stat_is "$dir" connections_max 0'

# 5. Rules: one recipient refused; 451 once, then 250.
check "rules: start" start rules --rule 'rcpt=bad@x:550 5.1.1 no' \
    --rule 'dot:451 4.3.0 later:1'
sw --to good@x,bad@x
check "rules: first message gets the 451 at the dot" \
    has "$dir/transcript.log" "1 S: 451 4.3.0 later"
check "rules: bad@x gets 550" has "$dir/transcript.log" "1 S: 550 5.1.1 no"
check "rules: nothing recorded after a 451" test ! -e "$dir/msgs/000001.json"
check "rules: second attempt gets 250" sw --to good@x,bad@x
check "rules: second attempt recorded" test -f "$dir/msgs/000001.json"
check "rules: only the accepted recipient is recorded" \
    has "$dir/msgs/000001.json" '"rcpt_to": ["good@x"]'
check "rules: bad@x refused again (the rule has no count)" \
    has "$dir/transcript.log" "2 S: 550 5.1.1 no"
check "rules: stats messages 1" stat_is "$dir" messages 1
check "rules: stats connections_total 2" stat_is "$dir" connections_total 2
check "rules: stats rset 0" stat_is "$dir" rset 0
stop

# 6. Faults: drop mid-DATA, greeting stall, 421 at RCPT, inject.
check "faults: start" start faults --rule 'data:drop-after=100:1' \
    --rule 'greeting:stall=1:1' --rule 'rcpt=x421@x:421' \
    --cert "$certs/server.pem" --key "$certs/server.key" \
    --rule 'starttls:inject:1'
t0=$(date +%s%3N)
out=$(raw 'QUIT\r\n')
t1=$(date +%s%3N)
check "faults: the greeting stalls for 1 s" test $((t1 - t0)) -ge 900
check "faults: ... then the session goes on" \
    eval '[[ "$out" == "220 "*"221 "* ]]'
big=$(head -c 2000 /dev/zero | tr '\0' x)
sw --to a@x --body "$big"
check "faults: drop-after closes mid-DATA" \
    has "$dir/transcript.log" "drop after 100 bytes"
check "faults: nothing recorded for the dropped message" \
    test ! -e "$dir/msgs/000001.eml"
check "faults: no temp file left behind" \
    test -z "$(ls -A "$dir/msgs")"
out=$(raw 'EHLO x\r\nMAIL FROM:<a@x>\r\nRCPT TO:<x421@x>\r\nNOOP\r\n')
check "faults: 421 at RCPT closes the session" \
    eval '[[ "$out" == *"421 4.3.2"* && "$out" != *"250 2.0.0 Ok"* ]]'
out=$(raw 'EHLO x\r\nSTARTTLS\r\n' 1)
flat=$(printf '%s' "$out" | tr '\r\n' '|#')
check "faults: inject sends 220 and an extra line in one go" \
    eval '[[ "$flat" == *"220 ready|#250-injected|"* ]]'
check "faults: the next message goes through" sw --to a@x
check "faults: ... and is recorded" test -f "$dir/msgs/000001.json"
stop

# 7. Greeting 554: only QUIT is served.
check "554: start" start reject --rule 'greeting:554 5.3.2 no service'
out=$(raw 'EHLO x\r\nQUIT\r\n')
check "554: greeting, 503 to EHLO, 221 to QUIT" \
    eval '[[ "$out" == "554 5.3.2 no service"*"503 5.5.1"*"221 2.0.0"* ]]'
stop

# 8. AUTH: offered only inside TLS; credentials in clear are recorded.
check "auth: start" start auth --auth user:secret \
    --cert "$certs/server.pem" --key "$certs/server.key"
check "auth: AUTH PLAIN inside TLS gets 235 and 250" \
    sw --to a@x --tls -a PLAIN -au user -ap secret
m=$dir/msgs/000001
check "auth: auth_user recorded" has "$m.json" '"auth_user": "user"'
check "auth: auth_plaintext false" has "$m.json" '"auth_plaintext": false'
check "auth: AUTH not advertised before TLS" \
    eval '[ "$(grep -c "250-AUTH" "$dir/transcript.log")" = 1 ]'
check "auth: credentials are masked in the transcript" \
    hasnt "$dir/transcript.log" "$(printf '\0user\0secret' | base64)"
cred=$(printf '\0user\0secret' | base64)
out=$(raw "EHLO x\r\nAUTH PLAIN $cred\r\nMAIL FROM:<p@x>\r\nRCPT TO:<r@x>\r\n"\
'DATA\r\n\r\nx\r\n.\r\nQUIT\r\n')
m=$dir/msgs/000002
check "auth: AUTH in plaintext is still served (and caught)" \
    eval '[[ "$out" == *"235 2.7.0"* ]]'
check "auth: auth_plaintext true" has "$m.json" '"auth_plaintext": true'
check "auth: stats auth_plaintext 1" stat_is "$dir" auth_plaintext 1
stop

# 9. Implicit TLS (smarthost on 465 style) and EHLO capabilities.
check "implicit: start" start implicit --implicit-tls --no-pipelining \
    --no-8bitmime --size 1000 --cert "$certs/server.pem" \
    --key "$certs/server.key"
check "implicit: swaks --tls-on-connect gets 250" sw --to a@x --tlsc
m=$dir/msgs/000001
check "implicit: tls true" has "$m.json" '"tls": true'
check "implicit: STARTTLS not advertised" \
    hasnt "$dir/transcript.log" "250-STARTTLS"
check "implicit: PIPELINING and 8BITMIME withheld" \
    eval '! has "$dir/transcript.log" PIPELINING && ! has "$dir/transcript.log" 8BITMIME'
check "implicit: SIZE advertised" has "$dir/transcript.log" "250-SIZE 1000"
check "implicit: a message over SIZE gets 552" \
    eval '! sw --to a@x --tlsc --body "$big"'
check "implicit: ... with 5.3.4" has "$dir/transcript.log" "552 5.3.4"
stop

# 10. --max-conns: the connection above the limit gets 421.
check "maxconns: start" start maxconns --max-conns 1
exec 4<>"/dev/tcp/127.0.0.1/$port"
read -r -t 3 greet <&4
out=$(raw 'QUIT\r\n')
check "maxconns: first connection greeted" eval '[[ "$greet" == 220* ]]'
check "maxconns: second connection refused with 421" \
    eval '[[ "$out" == "421 4.7.0"* ]]'
exec 4<&- 4>&-
sleep 0.2
check "maxconns: stats connections_max 2" stat_is "$dir" connections_max 2
check "maxconns: stats connections_refused 1" \
    stat_is "$dir" connections_refused 1
stop

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
