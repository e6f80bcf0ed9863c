#!/bin/sh
# Regenerates the signed-zone fixtures of resolve::dnssec's tests, with signers other than
# ours: ldns 1.8.3 (apt-get install ldnsutils) and BIND 9.18 (apt-get install bind9-utils).
# Usage: make-fixtures.sh OUTDIR. Signatures are valid from 2024-01-01 to 2040-01-01; new
# keys are made on every run (only the public halves are kept).
set -eu
OUT=$(realpath "$1"); mkdir -p "$OUT"; W=$(mktemp -d); cd "$W"
cat > zone <<'ZONE'
$ORIGIN example.test.
$TTL 300
@        IN SOA  ns admin 1 3600 600 86400 60
@        IN NS   ns
@        IN NS   NS2.Example.TEST.
ns       IN A    127.0.0.1
ns2      IN A    127.0.0.3
www      IN A    192.0.2.1
www      IN A    192.0.2.2
www      IN TXT  "hello"
b.c      IN A    192.0.2.3
*.wild   IN A    192.0.2.9
*.wild   IN TXT  "wild"
alias    IN CNAME www
mail     IN MX   10 MX.Example.Test.
sub      IN NS   ns.sub
ns.sub   IN A    127.0.0.2
sec      IN NS   ns.sub
sec      IN DS   12345 13 2 0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF
ZONE
U=""; for t in A NS SOA CNAME MX TXT DS DNSKEY RRSIG NSEC NSEC3 NSEC3PARAM; do U="$U -u $t"; done
K15=$(ldns-keygen -a ED25519 -k example.test)
K13=$(ldns-keygen -a ECDSAP256SHA256 -k example.test)
# ldns, NSEC, Ed25519.
ldns-signzone -i 20240101000000 -e 20400101000000 -f nsec.signed zone "$K15"
ldns-read-zone $U nsec.signed > "$OUT/ldns-nsec-15.zone"; cp "$K15.ds" "$OUT/ldns-nsec-15.ds"
# ldns, NSEC3 with salt, 5 iterations and opt-out, ECDSA P-256.
ldns-signzone -n -t 5 -s beef -p -i 20240101000000 -e 20400101000000 -f nsec3.signed zone "$K13"
ldns-read-zone $U nsec3.signed > "$OUT/ldns-nsec3-optout-13.zone"; cp "$K13.ds" "$OUT/ldns-nsec3-optout-13.ds"
# BIND, NSEC3 without salt, 0 iterations (RFC 9276), ECDSA P-256.
KB=$(dnssec-keygen -q -a ECDSAP256SHA256 -f KSK example.test)
cat zone "$KB.key" > bind.zone
dnssec-signzone -q -o example.test. -3 - -H 0 -s 20240101000000 -e 20400101000000 -z -f bind.signed bind.zone "$KB" >/dev/null
ldns-read-zone $U bind.signed > "$OUT/bind-nsec3-13.zone"; dnssec-dsfromkey -2 "$KB.key" > "$OUT/bind-nsec3-13.ds"
rm -rf "$W"
