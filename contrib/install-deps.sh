#!/bin/sh
# Install the Debian 12 packages postern needs.
#   contrib/install-deps.sh          build and run
#   contrib/install-deps.sh --test   also everything the test suite uses
set -e
BUILD="autoconf automake libtool pkg-config make gcc libevent-dev libssl-dev
 libc-ares-dev libspf2-dev libopendkim-dev libconfig-dev libjansson-dev
 libcrypt-dev zlib1g-dev libcriterion-dev openssl ca-certificates"
TEST="dnsmasq-base swaks python3 python3-dkim python3-dnspython
 python3-prometheus-client iproute2 mandoc strace procps curl"
PKGS="$BUILD"
[ "$1" = "--test" ] && PKGS="$BUILD $TEST"
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
# shellcheck disable=SC2086
$SUDO apt-get install -y -q --no-install-recommends $PKGS
