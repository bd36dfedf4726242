#!/usr/bin/env bash
# The per-sandbox CA end to end (issue 5, "TLS interception"; DESIGN.md
# "Command-line contract": `miosactl sandbox ca SANDBOX`): a real
# miosa-broker, miosactl, curl and openssl.  The CA is made with the sandbox,
# is an ECDSA P-256 CA certificate openssl accepts, stays the same across a
# restart, is visible only to its tenant, goes with the sandbox, and its
# private key is in no answer, no log and not in clear in state.db.
. "$(dirname "$0")/lib.sh"

command -v openssl >/dev/null || { echo "openssl is required" >&2; exit 1; }

unset MIOSA_URL MIOSA_API_KEY MIOSA_TENANT
PORT=$(free_port)
broker_start
export MIOSA_SOCKET=$SOCK
ok "broker up on $SOCK and 127.0.0.1:$PORT"

ctl_ok "tenant create acme" tenant create acme
ctl_ok "tenant create beta" tenant create beta
ctl_ok "sandbox create (acme)" sandbox create --tenant acme
A=$CTL_OUT
ctl_ok "sandbox create (beta)" sandbox create --tenant beta
B=$CTL_OUT

# --- the certificate, as openssl sees it --------------------------------------

"$MIOSACTL" sandbox ca "$A" >"$T/a.pem" 2>"$T/ctl.err" || fail "sandbox ca > file" "$(cat "$T/ctl.err")"
cat "$T/a.pem" >>"$TRANSCRIPT"
check_eq "sandbox ca: first line" "-----BEGIN CERTIFICATE-----" "$(head -n 1 "$T/a.pem")"
check_eq "sandbox ca: last line" "-----END CERTIFICATE-----" "$(tail -n 1 "$T/a.pem")"
check_eq "sandbox ca: one certificate, nothing else" 1 "$(grep -c -- '-----BEGIN' "$T/a.pem")"
if openssl x509 -in "$T/a.pem" | cmp -s - "$T/a.pem"; then
	ok "sandbox ca: byte for byte the PEM openssl writes (final newline included)"
else
	fail "sandbox ca: byte for byte the PEM openssl writes" "$(od -c "$T/a.pem" | tail -n 3)"
fi
TEXT=$(openssl x509 -in "$T/a.pem" -noout -text 2>&1) || fail "openssl x509 parses the PEM" "$TEXT"
check_match "basicConstraints CA:TRUE" 'CA:TRUE' "$TEXT"
check_match "basicConstraints is critical" 'Basic Constraints: critical' "$TEXT"
check_match "key is EC" 'Public Key Algorithm: id-ecPublicKey' "$TEXT"
check_match "curve is P-256" 'NIST CURVE: P-256|ASN1 OID: prime256v1' "$TEXT"
check_match "signed with ecdsa-with-SHA256" 'Signature Algorithm: ecdsa-with-SHA256' "$TEXT"
check_match "Certificate Sign key usage" 'Certificate Sign' "$TEXT"
check_match "subject names the sandbox" "CN ?= ?miosa sandbox CA $A" "$TEXT"
VERIFY=$(openssl verify -CAfile "$T/a.pem" "$T/a.pem" 2>&1) || true
check_eq "self-signature verifies" "$T/a.pem: OK" "$VERIFY"

# --- the JSON answer ------------------------------------------------------------

ctl_ok "sandbox ca --json" --json sandbox ca "$A"
JSON=$CTL_OUT
check_eq "--json: keys" "certificate_pem not_after not_before sandbox_id sha256_fingerprint" \
	"$(printf '%s' "$JSON" | jkeys .)"
check_eq "--json: sandbox_id" "$A" "$(printf '%s' "$JSON" | jget sandbox_id)"
check_eq "--json: certificate_pem is the plain output" "$(cat "$T/a.pem")" \
	"$(printf '%s' "$JSON" | jget certificate_pem)"
FP=$(openssl x509 -in "$T/a.pem" -noout -fingerprint -sha256 | sed 's/^.*=//')
check_eq "--json: sha256_fingerprint is openssl's" "$FP" "$(printf '%s' "$JSON" | jget sha256_fingerprint)"
NB=$(date -u -d "$(openssl x509 -in "$T/a.pem" -noout -startdate | sed 's/^notBefore=//')" +%Y-%m-%dT%H:%M:%S)
check_eq "--json: not_before is the certificate's" "$NB.000000Z" "$(printf '%s' "$JSON" | jget not_before)"
NA=$(date -u -d "$(openssl x509 -in "$T/a.pem" -noout -enddate | sed 's/^notAfter=//')" +%Y-%m-%dT%H:%M:%S)
check_eq "--json: not_after is the certificate's" "$NA.000000Z" "$(printf '%s' "$JSON" | jget not_after)"

api GET "/v1/sandboxes/$A/ca"
expect "GET /ca over the socket: 200" 200 -
check_eq "Content-Type is JSON" "application/json" "$(header_value Content-Type | cut -d';' -f1)"
api POST "/v1/sandboxes/$A/ca" '{}'
expect "POST /ca: 405" 405 method_not_allowed
check_eq "405 Allow: GET" "GET" "$(header_value Allow)"

"$MIOSACTL" sandbox ca "$B" >"$T/b.pem" 2>>"$T/ctl.err" || fail "sandbox ca B"
cat "$T/b.pem" >>"$TRANSCRIPT"
check_ne "each sandbox has its own CA" "$(cat "$T/a.pem")" "$(cat "$T/b.pem")"

# --- tenants: a key sees its own sandboxes' CAs only -------------------------

ctl apikey create --tenant acme ci-a
KEY_A=$CTL_OUT
tapi "$KEY_A" GET "/v1/sandboxes/$A/ca"
expect "acme key: own sandbox's CA" 200 -
tapi "$KEY_A" GET "/v1/sandboxes/$B/ca"
expect "acme key: beta's sandbox CA is 404" 404 not_found
tapi "" GET "/v1/sandboxes/$A/ca"
expect "no key: 401" 401 unauthorized
MIOSA_API_KEY=$KEY_A ctl --url "http://127.0.0.1:$PORT" sandbox ca "$A"
check_eq "miosactl --url: same PEM" "$(cat "$T/a.pem")" "$CTL_OUT"
MIOSA_API_KEY=$KEY_A ctl --url "http://127.0.0.1:$PORT" sandbox ca "$B"
check_eq "miosactl --url, other tenant: exit 1" 1 "$CTL_RC"
check_contains "miosactl --url, other tenant: 404" "(not_found, HTTP 404)" "$CTL_ERR"
ctl_fails "sandbox ca of an unknown sandbox: 404" 1 "(not_found, HTTP 404)" \
	sandbox ca sbx_000000000000000000000000
ctl_fails "sandbox ca of a malformed id: 400" 1 "(invalid_field, HTTP 400)" sandbox ca nope
ctl_fails "sandbox ca without SANDBOX: usage" 2 "missing argument" sandbox ca
ctl_ok "sandbox ca --help" sandbox ca --help
check_contains "--help names the command" "sandbox ca SANDBOX" "$CTL_OUT"

# --- restart: the same CA ------------------------------------------------------

if broker_stop; then ok "broker exits 0 on SIGTERM"; else fail "broker exits 0 on SIGTERM"; fi
broker_start
ok "broker restarted on the same state"
ctl_ok "sandbox ca after restart" sandbox ca "$A"
check_eq "PEM identical after a restart" "$(cat "$T/a.pem")" "$CTL_OUT"
ctl --json sandbox ca "$A"
check_eq "fingerprint identical after a restart" "$FP" "$(printf '%s' "$CTL_OUT" | jget sha256_fingerprint)"

# --- the private key is nowhere in clear -----------------------------------------

check_not_contains "no answer holds a private key" "PRIVATE KEY" "$(cat "$TRANSCRIPT")"
check_not_contains "the log holds no private key" "PRIVATE KEY" "$(cat "$T/broker.log")"
if broker_stop; then ok "broker exits 0"; else fail "broker exits 0"; fi
# Closed: everything is checkpointed into state.db.
DB=$STATE_DIR/state.db
if grep -aqF "$(sed -n 2p "$T/a.pem")" "$DB"; then ok "state.db holds the certificate"; else fail "state.db holds the certificate"; fi
if grep -aq "PRIVATE KEY" "$DB"; then fail "state.db holds a PEM private key"; else ok "no PEM private key in state.db"; fi
# The key is stored as sealed PKCS#8 DER; in clear that DER would carry the
# id-ecPublicKey and prime256v1 OIDs as raw bytes.  The certificate is kept
# as PEM (base64), so raw OID bytes in the file could only be a key.
HEX=$(od -An -v -tx1 "$DB" | tr -d ' \n')
check_not_contains "no clear EC key DER in state.db (id-ecPublicKey)" "06072a8648ce3d0201" "$HEX"
check_not_contains "no clear EC key DER in state.db (prime256v1)" "06082a8648ce3d030107" "$HEX"

# --- deleted with the sandbox -----------------------------------------------------

broker_start
ctl_ok "sandbox rm" sandbox rm "$A"
ctl_fails "sandbox ca of a deleted sandbox: 404" 1 "(not_found, HTTP 404)" sandbox ca "$A"
ctl_ok "the other sandbox keeps its CA" sandbox ca "$B"
check_eq "B's CA unchanged" "$(cat "$T/b.pem")" "$CTL_OUT"
if broker_stop; then ok "broker exits 0 at the end"; else fail "broker exits 0 at the end"; fi
if grep -aqF "$(sed -n 2p "$T/a.pem")" "$STATE_DIR/state.db"; then
	fail "deleted sandbox's certificate still in state.db"
else
	ok "deleted sandbox's certificate gone from state.db (secure_delete)"
fi
it_finish
