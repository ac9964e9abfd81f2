#!/bin/sh
# gen-certs.sh DIR: make a throw-away test PKI in DIR with the openssl CLI.
#
#   ca.pem, ca.key                 test CA (CA:TRUE, keyCertSign)
#   server.pem, server.key         CN localhost; SAN DNS:localhost,
#                                  DNS:mx.ok.test, IP:127.0.0.1; signed by ca
#   wrongname.pem, wrongname.key   SAN DNS:wrong.test only; signed by ca
#   selfsigned.pem, selfsigned.key the same names as server, but self-signed
#
# EC P-256 keys keep it fast.  Keys are mode 0600.  Idempotent: when every
# file is already there nothing is redone; otherwise the whole set is rebuilt
# in a scratch directory and renamed into place, so an interrupted run never
# leaves a half-written file.  POSIX sh (the test harness runs it with
# /bin/sh).
set -eu

if [ $# -ne 1 ]; then
	echo "usage: $0 DIR" >&2
	exit 2
fi
dir=$1
files="ca.pem ca.key server.pem server.key wrongname.pem wrongname.key
selfsigned.pem selfsigned.key"

mkdir -p "$dir"
missing=0
for f in $files; do
	[ -s "$dir/$f" ] || missing=1
done
[ "$missing" -eq 0 ] && exit 0

umask 077
tmp=$(mktemp -d "$dir/.gen-certs.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM
days=3650

key() {
	openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 \
	    -out "$tmp/$1.key" 2>/dev/null
}

# leaf NAME CN SAN: a CA-signed server certificate.
leaf() {
	key "$1"
	openssl req -new -key "$tmp/$1.key" -subj "/CN=$2" \
	    -out "$tmp/$1.csr" 2>/dev/null
	printf '%s\n' \
	    "basicConstraints=critical,CA:FALSE" \
	    "keyUsage=critical,digitalSignature" \
	    "extendedKeyUsage=serverAuth,clientAuth" \
	    "subjectAltName=$3" > "$tmp/$1.ext"
	openssl x509 -req -in "$tmp/$1.csr" -CA "$tmp/ca.pem" \
	    -CAkey "$tmp/ca.key" -set_serial "0x$(openssl rand -hex 8)" \
	    -days "$days" -sha256 -extfile "$tmp/$1.ext" \
	    -out "$tmp/$1.pem" 2>/dev/null
}

key ca
openssl req -x509 -new -key "$tmp/ca.key" -subj "/CN=postern test CA" \
    -days "$days" -sha256 \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -out "$tmp/ca.pem" 2>/dev/null

leaf server localhost "DNS:localhost,DNS:mx.ok.test,IP:127.0.0.1"
leaf wrongname wrong.test "DNS:wrong.test"

key selfsigned
openssl req -x509 -new -key "$tmp/selfsigned.key" -subj "/CN=mx.ok.test" \
    -days "$days" -sha256 \
    -addext "basicConstraints=critical,CA:FALSE" \
    -addext "subjectAltName=DNS:localhost,DNS:mx.ok.test,IP:127.0.0.1" \
    -out "$tmp/selfsigned.pem" 2>/dev/null

chmod 0600 "$tmp"/*.key
chmod 0644 "$tmp"/*.pem
# CA last: the idempotence check above then only passes on a full set.
for f in server.key server.pem wrongname.key wrongname.pem \
    selfsigned.key selfsigned.pem ca.key ca.pem; do
	mv -f "$tmp/$f" "$dir/$f"
done
