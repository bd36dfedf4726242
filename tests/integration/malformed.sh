#!/usr/bin/env bash
# Malformed control API requests (docs/api.md, "Errors"): each one gets the
# documented status and error code, never a 500, never a crash, and a
# smuggled request is never executed.  curl for well-formed HTTP carrying bad
# content; http_probe for bytes curl would not send.
. "$(dirname "$0")/lib.sh"

unset MIOSA_URL MIOSA_API_KEY MIOSA_TENANT
PORT=$(free_port)
broker_start
export MIOSA_SOCKET=$SOCK
N_500=0

# After every request: count 5xx answers (a malformed request is the
# client's fault; the broker never fails on one).
note_status() {
	case "$STATUS" in 5??) N_500=$((N_500 + 1)) ;; esac
}

# raw WHAT STATUS CODE [BYTES]: send BYTES (or stdin) verbatim over the
# control socket and read one answer with the strict codec.
raw() {
	local what=$1 st=$2 code=$3
	if [ $# -ge 4 ]; then
		printf '%s' "$4" | "$HTTP_PROBE" send --unix "$SOCK" >"$T/raw.out" 2>&1 || true
	else
		"$HTTP_PROBE" send --unix "$SOCK" >"$T/raw.out" 2>&1 || true
	fi
	STATUS=$(head -n 1 "$T/raw.out" | cut -d' ' -f1)
	CODE=$(head -n 1 "$T/raw.out" | cut -d' ' -f2)
	BODY=$(sed -n 's/^body //p' "$T/raw.out")
	printf '%s\n' "$BODY" >>"$TRANSCRIPT"
	note_status
	expect "$what" "$st" "$code"
}

# bad WHAT STATUS CODE METHOD PATH [JSON]: curl over the control socket.
bad() {
	local what=$1 st=$2 code=$3
	api "$4" "$5" "${6-}"
	note_status
	expect "$what" "$st" "$code"
}

ctl sandbox create --tenant default --external-user-id alice
S=$CTL_OUT
check_match "a sandbox to aim at" '^sbx_[0-9a-f]{24}$' "$S"
SEC=/v1/sandboxes/$S/secrets/k
long() { head -c "$1" /dev/zero | tr '\0' "${2:-a}"; }

# --- JSON ------------------------------------------------------------------

bad "truncated JSON" 400 invalid_json POST /v1/sandboxes '{'
bad "JSON array instead of an object" 400 invalid_json POST /v1/sandboxes '[]'
bad "JSON null" 400 invalid_json POST /v1/sandboxes 'null'
bad "trailing data after the object" 400 invalid_json POST /v1/sandboxes '{} {}'
bad "invalid UTF-8 in a string" 400 invalid_json POST /v1/sandboxes $'{"template":"\xff\xfe"}'
bad "lone surrogate escape" 400 'invalid_json|invalid_field' POST /v1/sandboxes '{"template":"\ud800"}'
bad "duplicate keys" 400 'invalid_json|invalid_field' POST /v1/sandboxes '{"template":"a","template":"b"}'
bad "whitespace-only body" 400 invalid_json POST /v1/tenants ' '
_curl POST "http://localhost/v1/tenants" "" --unix-socket "$SOCK" -H 'Content-Type: application/json' --data-binary ''
note_status
expect "empty body (Content-Length: 0)" 400 'invalid_json|invalid_field'

# --- fields ------------------------------------------------------------------

bad "wrong type: external_user_id number" 400 invalid_field POST /v1/sandboxes '{"external_user_id":5}'
bad "unknown field" 400 invalid_field POST /v1/sandboxes '{"bogus":"x"}'
bad "vsock_cid negative" 400 invalid_field POST /v1/sandboxes '{"vsock_cid":-1}'
bad "vsock_cid as a string" 400 invalid_field POST /v1/sandboxes '{"vsock_cid":"3"}'
bad "attribution id over 256 bytes" 400 invalid_field POST /v1/sandboxes "{\"external_user_id\":\"$(long 257)\"}"
bad "empty attribution id" 400 invalid_field POST /v1/sandboxes '{"external_user_id":""}'
bad "control character in an attribution id" 400 invalid_field POST /v1/sandboxes '{"external_user_id":"a\u0001b"}'
bad "tenant id not [a-z0-9][a-z0-9_-]*" 400 invalid_field POST /v1/tenants '{"id":"Bad Tenant"}'
bad "tenant id over 64 bytes" 400 invalid_field POST /v1/tenants "{\"id\":\"$(long 65)\"}"
bad "tenant name of the wrong type" 400 invalid_field POST /v1/tenants '{"id":"okid","name":5}'
bad "settings: non-boolean" 400 invalid_field PATCH /v1/tenants/default/settings '{"allow_end_user_scoped_credentials":"yes"}'
bad "settings: unknown field" 400 invalid_field PATCH /v1/tenants/default/settings '{"allow_everything":true}'
bad "apikey without a name" 400 invalid_field POST /v1/tenants/default/apikeys '{}'

# --- secrets -------------------------------------------------------------------

V=sk-malformed-canary-7c1e
bad "invalid env name (leading digit)" 400 invalid_field PUT "$SEC" "{\"value\":\"$V\",\"expose_as_env\":\"1BAD\"}"
bad "invalid env name (dash)" 400 invalid_field PUT "$SEC" "{\"value\":\"$V\",\"expose_as_env\":\"BAD-NAME\"}"
bad "env name over 128 bytes" 400 invalid_field PUT "$SEC" "{\"value\":\"$V\",\"expose_as_env\":\"$(long 129 A)\"}"
bad "value with a newline" 400 invalid_field PUT "$SEC" "{\"value\":\"$V\\nX\",\"expose_as_env\":\"K\"}"
bad "value with a CR" 400 invalid_field PUT "$SEC" "{\"value\":\"$V\\rX\",\"expose_as_env\":\"K\"}"
bad "value with a NUL" 400 'invalid_field|invalid_json' PUT "$SEC" "{\"value\":\"$V\\u0000X\",\"expose_as_env\":\"K\"}"
bad "empty value" 400 invalid_field PUT "$SEC" '{"value":"","expose_as_env":"K"}'
bad "value of the wrong type" 400 invalid_field PUT "$SEC" '{"value":12345,"expose_as_env":"K"}'
bad "value missing" 400 invalid_field PUT "$SEC" '{"expose_as_env":"K"}'
bad "expose_as_env missing" 400 invalid_field PUT "$SEC" "{\"value\":\"$V\"}"
bad "hosts not an array" 400 invalid_field PUT "$SEC" "{\"value\":\"$V\",\"expose_as_env\":\"K\",\"hosts\":\"a.com\"}"
bad "invalid host pattern" 400 invalid_field PUT "$SEC" "{\"value\":\"$V\",\"expose_as_env\":\"K\",\"hosts\":[\"exa mple.com\"]}"
bad "33 host patterns" 400 invalid_field PUT "$SEC" "{\"value\":\"$V\",\"expose_as_env\":\"K\",\"hosts\":[$(for i in $(seq 33); do printf '"h%d.example.com",' "$i"; done | sed 's/,$//')]}"
bad "allow_cleartext not a boolean" 400 invalid_field PUT "$SEC" "{\"value\":\"$V\",\"expose_as_env\":\"K\",\"allow_cleartext\":\"yes\"}"
bad "unknown field in a secret" 400 invalid_field PUT "$SEC" "{\"value\":\"$V\",\"expose_as_env\":\"K\",\"scope\":\"tenant\"}"
bad "secret name with a space" 400 invalid_field PUT "/v1/sandboxes/$S/secrets/bad%20name" "{\"value\":\"$V\",\"expose_as_env\":\"K\"}"
bad "rotate with an extra field" 400 invalid_field POST "/v1/sandboxes/$S/secrets/k/rotate" "{\"value\":\"$V\",\"version\":2}"
bad "bad scope name" 400 invalid_field GET /v1/tenants/default/secrets/galaxy/x
bad "sandbox scope on the tenant route" '400|404' 'invalid_field|not_found' PUT /v1/tenants/default/secrets/sandbox/x/n "{\"value\":\"$V\",\"expose_as_env\":\"K\"}"
bad "tenant scope with another scope id" '400|404' 'invalid_field|not_found' PUT /v1/tenants/default/secrets/tenant/other/n "{\"value\":\"$V\",\"expose_as_env\":\"K\"}"
bad "secret on a missing sandbox" 404 not_found PUT /v1/sandboxes/sbx_000000000000000000000000/secrets/k "{\"value\":\"$V\",\"expose_as_env\":\"K\"}"
bad "secret value over 16384 bytes" 413 payload_too_large PUT "$SEC" "{\"value\":\"$(long 16385 v)\",\"expose_as_env\":\"K\"}"

# --- paths and routes --------------------------------------------------------

bad "unknown route" 404 not_found GET /v1/nope
bad "unknown API version" 404 not_found GET /v2/sandboxes
bad "root" 404 not_found GET /
bad "percent-encoded NUL in a tenant id" 400 "invalid_field|bad_request" GET /v1/tenants/de%00fault
bad "encoded slashes in a sandbox id" '400|404' 'invalid_field|not_found' GET '/v1/sandboxes/sbx%2F..%2Fx'
bad "dot segments" '400|404' 'bad_request|invalid_field|not_found' GET '/v1/sandboxes/../tenants'
bad "wrong method on a collection" 405 method_not_allowed DELETE /v1/sandboxes
ALLOW=$(header_value Allow)
check_match "405 lists GET in Allow" '(^|[ ,])GET([ ,]|$)' "$ALLOW"
check_match "405 lists POST in Allow" '(^|[ ,])POST([ ,]|$)' "$ALLOW"
bad "wrong method on health" 405 method_not_allowed PUT /v1/health '{}'
check_match "health's Allow is GET" '^GET( *, *HEAD)?$' "$(header_value Allow)"
bad "POST on a sandbox" 405 method_not_allowed POST "/v1/sandboxes/$S" '{}'
ALLOW=$(header_value Allow)
for m in GET PATCH DELETE; do
	check_match "sandbox Allow has $m" "(^|[ ,])$m([ ,]|\$)" "$ALLOW"
done

# --- bodies and media types ---------------------------------------------------

CT_HEADER='Content-Type:' _curl POST "http://localhost/v1/sandboxes" '{}' --unix-socket "$SOCK"
note_status
expect "no Content-Type" 415 unsupported_media_type
CT_HEADER='Content-Type: text/plain' _curl POST "http://localhost/v1/sandboxes" '{}' --unix-socket "$SOCK"
note_status
expect "Content-Type text/plain" 415 unsupported_media_type
_curl POST "http://localhost/v1/sandboxes" '{}' --unix-socket "$SOCK" -H 'Transfer-Encoding: chunked'
note_status
expect "chunked request body" 411 length_required
api POST /v1/sandboxes "{\"template\":\"$(long 70000)\"}"
note_status
expect "body over 64 KiB" 413 payload_too_large

# --- HTTP framing: bytes curl would not send -----------------------------------

raw "Content-Length with Transfer-Encoding (CL.TE)" 400 bad_request \
	$'POST /v1/tenants HTTP/1.1\r\nHost: l\r\nContent-Type: application/json\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n'
raw "Transfer-Encoding with Content-Length (TE.CL)" 400 bad_request \
	$'POST /v1/tenants HTTP/1.1\r\nHost: l\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n'
SMUGGLED=$'POST /v1/tenants HTTP/1.1\r\nHost: l\r\nContent-Type: application/json\r\nContent-Length: 16\r\n\r\n{"id":"smuggle"}'
raw "smuggling head with a request in its body" 400 bad_request \
	"$(printf 'POST /v1/tenants HTTP/1.1\r\nHost: l\r\nContent-Type: application/json\r\nContent-Length: %d\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n%s' $((5 + ${#SMUGGLED})) "$SMUGGLED")"
api GET /v1/tenants/smuggle
expect "the smuggled request was never executed" 404 not_found
raw "two Content-Length lines" 400 bad_request \
	$'POST /v1/tenants HTTP/1.1\r\nHost: l\r\nContent-Type: application/json\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\n{}'
raw "Content-Length list" 400 bad_request \
	$'POST /v1/tenants HTTP/1.1\r\nHost: l\r\nContent-Type: application/json\r\nContent-Length: 2, 2\r\n\r\n{}'
raw "Content-Length with a sign" 400 bad_request \
	$'POST /v1/tenants HTTP/1.1\r\nHost: l\r\nContent-Type: application/json\r\nContent-Length: +2\r\n\r\n{}'
raw "chunked request body (raw)" 411 length_required \
	$'POST /v1/tenants HTTP/1.1\r\nHost: l\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n'
raw "Transfer-Encoding in HTTP/1.0" 400 bad_request \
	$'POST /v1/tenants HTTP/1.0\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n'
raw "bare LF line endings" 400 bad_request $'GET /v1/health HTTP/1.1\nHost: l\n\n'
raw "bare CR inside a field" 400 bad_request $'GET /v1/health HTTP/1.1\r\nHost: l\r\nX-A: a\rb\r\n\r\n'
raw "obs-fold" 400 bad_request $'GET /v1/health HTTP/1.1\r\nHost: l\r\nX-A: 1\r\n  folded\r\n\r\n'
raw "space before the colon" 400 bad_request $'GET /v1/health HTTP/1.1\r\nHost : l\r\n\r\n'
raw "missing Host" 400 bad_request $'GET /v1/health HTTP/1.1\r\n\r\n'
raw "two Host lines" 400 bad_request $'GET /v1/health HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n'
printf 'GET /v1/health HTTP/1.1\r\nHost: l\r\nX-A: a\0b\r\n\r\n' | raw "NUL byte in a field" 400 bad_request
raw "leading empty line" 400 bad_request $'\r\nGET /v1/health HTTP/1.1\r\nHost: l\r\n\r\n'
raw "two spaces in the request line" 400 bad_request $'GET  /v1/health HTTP/1.1\r\nHost: l\r\n\r\n'
raw "absolute-form target whose host differs from Host" 400 bad_request \
	$'GET http://evil.example/v1/health HTTP/1.1\r\nHost: l\r\n\r\n'
raw "bad percent-encoding in the path" 400 bad_request $'GET /v1/sandboxes/%zz HTTP/1.1\r\nHost: l\r\n\r\n'
raw "bad percent-encoding in the query" 400 bad_request $'GET /v1/sandboxes?external_user_id=%G1 HTTP/1.1\r\nHost: l\r\n\r\n'
raw "fragment in the target" 400 bad_request $'GET /v1/health#x HTTP/1.1\r\nHost: l\r\n\r\n'
raw "head over the limit" 431 headers_too_large \
	"$(printf 'GET /v1/health HTTP/1.1\r\nHost: l\r\nX-Big: %s\r\n\r\n' "$(long 20000)")"
raw "too many header lines" 431 headers_too_large \
	"$(printf 'GET /v1/health HTTP/1.1\r\nHost: l\r\n'; for i in $(seq 200); do printf 'X-%d: v\r\n' "$i"; done; printf '\r\n')"
raw "request line over the limit" '414|431' 'uri_too_long|headers_too_large' \
	"$(printf 'GET /v1/%s HTTP/1.1\r\nHost: l\r\n\r\n' "$(long 9000)")"
raw "lower-case method is another method" 405 method_not_allowed $'get /v1/health HTTP/1.1\r\nHost: l\r\n\r\n'

# --- TCP: API keys -------------------------------------------------------------

tcp_bad() {
	local what=$1
	shift
	_curl GET "http://127.0.0.1:$PORT/v1/sandboxes" "" "$@"
	note_status
	expect "$what" 401 unauthorized
}
tcp_bad "TCP without Authorization"
tcp_bad "TCP with an empty bearer" -H 'Authorization: Bearer '
tcp_bad "TCP with a short msk_live_ key" -H 'Authorization: Bearer msk_live_x'
tcp_bad "TCP with a well-formed unknown key" -H "Authorization: Bearer msk_live_$(long 43 Q)"
tcp_bad "TCP with Basic credentials" -H "Authorization: Basic $(printf 'admin:admin' | base64)"
_curl GET "http://127.0.0.1:$PORT/v1/sandboxes?api_key=msk_live_$(long 43 Q)" ""
note_status
expect "TCP with the key in the query string" 401 unauthorized
_curl GET "http://127.0.0.1:$PORT/v1/nope" ""
note_status
expect "TCP unknown route without a key: 401 before routing" 401 unauthorized
ctl apikey create malformed-test
KEY=$CTL_OUT
_curl GET "http://127.0.0.1:$PORT/v1/sandboxes" "" -H "Authorization: Bearer $KEY" -H "Authorization: Bearer msk_live_$(long 43 Q)"
note_status
expect "TCP with two Authorization lines is refused" '400|401' 'bad_request|unauthorized'
_curl GET "http://127.0.0.1:$PORT/v1/sandboxes" "" -H "Authorization: Bearer $KEY"
note_status
expect "TCP with the key: 200 (control)" 200 -

# --- afterwards ---------------------------------------------------------------

check_eq "no 5xx answer to any malformed request" 0 "$N_500"
if broker_alive; then ok "broker survived"; else fail "broker survived"; fi
api GET /v1/health
expect "broker still answers" 200 -
check_not_contains "the canary value never came back" "$V" "$(cat "$TRANSCRIPT")"
if grep -aqF "$V" "$T/broker.log"; then fail "the canary value is not in the broker log"; else ok "the canary value is not in the broker log"; fi
if broker_stop; then ok "broker exits 0"; else fail "broker exits 0"; fi
it_finish
