#!/usr/bin/env bash
# miosactl on its own, against http_probe's stand-in server: the exact
# request bytes it sends (paths, percent-encoding, bodies, headers), how it
# takes secret values (stdin, --value-file, one trailing newline stripped,
# empty/oversize/invalid refused, never echoed), what it prints, and its
# exit codes (0 ok, 1 API/connection/input error, 2 usage).
. "$(dirname "$0")/lib.sh"

FAKE=$T/fake.sock
CAPTURE=$T/capture
unset MIOSA_SOCKET MIOSA_URL MIOSA_API_KEY MIOSA_TENANT

# serve [http_probe serve options]: one connection on $FAKE (or --tcp 0).
serve() {
	rm -f "$T/ready" "$CAPTURE"
	: >"$CAPTURE"
	if [ "${1-}" = --tcp ]; then
		"$HTTP_PROBE" serve --capture "$CAPTURE" --ready "$T/ready" "$@" &
	else
		"$HTTP_PROBE" serve --unix "$FAKE" --capture "$CAPTURE" --ready "$T/ready" "$@" &
	fi
	SERVE_PID=$!
	wait_until 10 "the stand-in server" test -s "$T/ready"
	FAKE_PORT=$(cat "$T/ready")
}

# serve_done: the stand-in must have served its connection and exited.
serve_done() {
	local deadline=$(($(date +%s) + 10))
	while kill -0 "$SERVE_PID" 2>/dev/null; do
		if [ "$(date +%s)" -ge "$deadline" ]; then
			kill "$SERVE_PID" 2>/dev/null || true
			break
		fi
		sleep 0.05
	done
	wait "$SERVE_PID" 2>/dev/null || true
	SERVE_PID=
}

req_line() { head -n 1 "$CAPTURE" | tr -d '\r'; }
req_header() { awk -v n="$1" 'BEGIN{IGNORECASE=1} /^\r$/{exit} index(tolower($0), tolower(n) ":")==1{sub(/^[^:]*: */,""); sub(/\r$/,""); print; exit}' "$CAPTURE"; }
req_body() { awk 'f && /^--END--$/{exit} f{print} /^\r$/{f=1}' "$CAPTURE"; }

sctl() { ctl --socket "$FAKE" "$@"; }

# --- secret values: stdin, exactly one trailing newline stripped -----------

serve --status 201 --body '{"name":"openai","expose_as_env":"OPENAI_API_KEY","scope":"sandbox","scope_id":"sbx_1","version":1,"placeholder":"miosa-tok-00112233445566778899aabbccddeeff","hosts":[],"allow_cleartext":false}'
printf 'sk-test-AAA111\n' | sctl secrets set sbx_1 openai --expose-as OPENAI_API_KEY
serve_done
check_eq "set: exit 0" 0 "$CTL_RC"
check_eq "set: request line" "PUT /v1/sandboxes/sbx_1/secrets/openai HTTP/1.1" "$(req_line)"
check_eq "set: content type" "application/json" "$(req_header Content-Type)"
check_eq "set: value sent without its newline" "sk-test-AAA111" "$(req_body | jget value)"
check_eq "set: expose_as_env" "OPENAI_API_KEY" "$(req_body | jget expose_as_env)"
check_eq "set: allow_cleartext false by default" "false" "$(req_body | jget allow_cleartext)"
check_eq "set: no hosts field without --host" "" "$(req_body | jget hosts)"
check_eq "set: no Authorization over the Unix socket" "" "$(req_header Authorization)"
check_eq "set: Connection: close" "close" "$(req_header Connection)"
check_match "set: human output says created" '^result: +created$' "$CTL_OUT"
check_match "set: human output shows the placeholder" 'placeholder: +miosa-tok-0011' "$CTL_OUT"
check_not_contains "set: value not on stdout" "sk-test-AAA111" "$CTL_OUT"
check_not_contains "set: value not on stderr" "sk-test-AAA111" "$CTL_ERR"

serve --status 200 --body '{"name":"n","version":2}'
printf 'crlf-value\r\n' | MIOSA_API_KEY=msk_live_should_not_be_sent sctl secrets set sbx_1 n --expose-as E \
	--host api.example.com --host '*.example.org' --allow-cleartext
serve_done
check_eq "CRLF stripped" "crlf-value" "$(req_body | jget value)"
check_eq "hosts in order" '["api.example.com","*.example.org"]' "$(req_body | jget hosts)"
check_eq "--allow-cleartext" "true" "$(req_body | jget allow_cleartext)"
check_eq "MIOSA_API_KEY never sent over the Unix socket" "" "$(req_header Authorization)"
check_match "200 is reported as replaced" '^result: +replaced$' "$CTL_OUT"

serve
printf 'two\n\n' | sctl secrets set sbx_1 n --expose-as E
serve_done
check_contains "only one trailing newline stripped" '"value":"two\n"' "$(req_body)"

serve
printf 'no-newline' | sctl secrets set sbx_1 n --expose-as E
serve_done
check_eq "value without newline kept whole" "no-newline" "$(req_body | jget value)"

serve
printf 'tab\tinside  and spaces \n' | sctl secrets set sbx_1 n --expose-as E
serve_done
check_contains "inner whitespace kept" '"value":"tab\tinside  and spaces "' "$(req_body)"

printf 'file-value-XYZ\r\n' >"$T/value.txt"
serve
sctl secrets set sbx_1 n --expose-as E --value-file "$T/value.txt" </dev/null
serve_done
check_eq "--value-file, CRLF stripped" "file-value-XYZ" "$(req_body | jget value)"

head -c 16384 /dev/zero | tr '\0' 'v' >"$T/max.txt"
printf '\n' >>"$T/max.txt"
serve
sctl secrets set sbx_1 n --expose-as E --value-file "$T/max.txt"
serve_done
check_eq "16384-byte value accepted" 16384 "$(req_body | jget value | tr -d '\n' | wc -c | tr -d ' ')"

# A terminal on stdin: one line read with echo off, after a prompt on stderr.
# (util-linux script(1) gives miosactl a pty; the value is typed only once the
# prompt is visible, so the terminal's echo setting is what is tested.)
if command -v script >/dev/null 2>&1; then
	serve --status 201 --body '{"name":"n","version":1}'
	mkfifo "$T/tty.in"
	script -qefc "'$MIOSACTL' --socket '$FAKE' secrets set sbx_1 n --expose-as E" "$T/typescript" \
		<"$T/tty.in" >/dev/null 2>&1 &
	TTY_PID=$!
	exec 7>"$T/tty.in"
	if wait_until 10 "the hidden-input prompt" grep -q "input is hidden" "$T/typescript"; then
		printf 'tty-typed-value-9\n' >&7
	fi
	exec 7>&-
	TTY_RC=0
	wait "$TTY_PID" || TTY_RC=$?
	serve_done
	check_eq "tty: exit 0" 0 "$TTY_RC"
	check_eq "tty: the line typed is the value" "tty-typed-value-9" "$(req_body | jget value)"
	check_contains "tty: prompt names the secret" "Value for secret n (input is hidden):" "$(cat "$T/typescript")"
	if grep -aqF tty-typed-value-9 "$T/typescript"; then
		fail "tty: the value is not echoed"
	else
		ok "tty: the value is not echoed"
	fi
else
	echo "skip - tty input (no script(1))"
fi

# Refusals happen before any connection: no stand-in is listening.
printf '' | ctl_fails "empty stdin refused" 1 "refusing an empty secret value" \
	--socket "$FAKE" secrets set sbx_1 n --expose-as E
printf '\n' | ctl_fails "newline-only value refused" 1 "refusing an empty secret value" \
	--socket "$FAKE" secrets set sbx_1 n --expose-as E
printf '\r\n' | ctl_fails "CRLF-only value refused" 1 "refusing an empty secret value" \
	--socket "$FAKE" secrets set sbx_1 n --expose-as E
head -c 16385 /dev/zero | tr '\0' 'v' | ctl_fails "16385-byte value refused" 1 "over 16384 bytes" \
	--socket "$FAKE" secrets set sbx_1 n --expose-as E
printf 'bad\377utf8' | ctl_fails "invalid UTF-8 refused" 1 "not valid UTF-8" \
	--socket "$FAKE" secrets set sbx_1 n --expose-as E
ctl_fails "missing --value-file" 1 "cannot open" \
	--socket "$FAKE" secrets set sbx_1 n --expose-as E --value-file "$T/nope"
printf 'sk-test-ARGV\n' | ctl_fails "value as an extra argument is a usage error" 2 "never from the command line" \
	--socket "$FAKE" secrets set sbx_1 n sk-test-ARGV --expose-as E
check_not_contains "usage error does not echo stdin" "sk-test-ARGV" "$CTL_ERR$CTL_OUT"
ctl_fails "--value=... is unknown, and not echoed" 2 "unknown option --value (the value is read" \
	--socket "$FAKE" secrets set sbx_1 n --expose-as E --value=sk-test-ARGV
check_not_contains "--value=... not echoed" "sk-test-ARGV" "$CTL_ERR$CTL_OUT"
ctl_fails "abbreviated long options are refused" 2 "unknown option --expose" \
	--socket "$FAKE" secrets set sbx_1 n --expose E </dev/null
ctl_fails "an option's value may look like an option" 1 "cannot connect" \
	--socket "$T/none.sock" sandbox ls --tenant --json

# --- rotate, scopes and paths ----------------------------------------------

serve --body '{"name":"n","version":3}'
printf 'rotated-1\n' | sctl secrets rotate sbx_1 n
serve_done
check_eq "rotate: request line" "POST /v1/sandboxes/sbx_1/secrets/n/rotate HTTP/1.1" "$(req_line)"
check_eq "rotate: body is only the value" '{"value":"rotated-1"}' "$(req_body)"

serve --status 201 --body '{}'
printf 'v\n' | sctl secrets set --scope external_user --scope-id 'alice@example.com' \
	--tenant acme key/1 --expose-as K
serve_done
check_eq "scope path percent-encoded" \
	"PUT /v1/tenants/acme/secrets/external_user/alice%40example.com/key%2F1 HTTP/1.1" "$(req_line)"

serve --status 201 --body '{}'
printf 'v\n' | MIOSA_TENANT=beta sctl secrets set --scope tenant NAME --expose-as K
serve_done
check_eq "--scope tenant defaults scope id to MIOSA_TENANT" \
	"PUT /v1/tenants/beta/secrets/tenant/beta/NAME HTTP/1.1" "$(req_line)"

serve --status 201 --body '{}'
printf 'v\n' | sctl secrets set --scope tenant --scope-id gamma NAME --expose-as K
serve_done
check_eq "--scope tenant: --tenant defaults to --scope-id" \
	"PUT /v1/tenants/gamma/secrets/tenant/gamma/NAME HTTP/1.1" "$(req_line)"

serve --body '{"secrets":[{"name":"a","expose_as_env":"A","scope":"workspace","scope_id":"w 1","version":2,"hosts":["x.example"],"rotated_at":null}]}'
sctl secrets ls --scope workspace --scope-id 'w 1'
serve_done
check_eq "ls scope: request" "GET /v1/tenants/default/secrets/workspace/w%201 HTTP/1.1" "$(req_line)"
check_match "ls scope: table header" '^NAME +ENV +SCOPE +SCOPE_ID +VERSION +HOSTS +ROTATED$' "$(printf '%s\n' "$CTL_OUT" | head -n 1)"
check_match "ls scope: row" '^a +A +workspace +w 1 +2 +x\.example +-$' "$(printf '%s\n' "$CTL_OUT" | sed -n 2p)"

serve --body '{"bindings":[{"name":"openai","expose_as_env":"OPENAI_API_KEY","placeholder":"miosa-tok-aa","scope":"tenant","scope_id":"acme","version":1,"hosts":[]}]}'
sctl secrets ls sbx_1
serve_done
check_eq "ls sandbox: request" "GET /v1/sandboxes/sbx_1/secrets HTTP/1.1" "$(req_line)"
check_match "ls sandbox: header" '^ENV +PLACEHOLDER +SCOPE +SCOPE_ID +NAME +VERSION +HOSTS$' "$(printf '%s\n' "$CTL_OUT" | head -n 1)"
check_match "ls sandbox: winner row" '^OPENAI_API_KEY +miosa-tok-aa +tenant +acme +openai +1 +-$' "$(printf '%s\n' "$CTL_OUT" | sed -n 2p)"

serve --status 204 --body ''
sctl secrets rm --scope user --scope-id u1 --tenant acme n
serve_done
check_eq "rm scope: request" "DELETE /v1/tenants/acme/secrets/user/u1/n HTTP/1.1" "$(req_line)"
check_eq "rm: prints nothing" "" "$CTL_OUT"
check_eq "rm: exit 0" 0 "$CTL_RC"

ctl_fails "bad scope is a usage error" 2 "unknown scope 'galaxy'" \
	--socket "$FAKE" secrets ls --scope galaxy --scope-id x
ctl_fails "--scope-id without --scope" 2 "need --scope" --socket "$FAKE" secrets ls sbx_1 --scope-id x
ctl_fails "--scope user without --scope-id" 2 "needs --scope-id" --socket "$FAKE" secrets ls --scope user
ctl_fails "--scope tenant with a different --scope-id" 2 "must equal --tenant" \
	--socket "$FAKE" secrets ls --scope tenant --scope-id a --tenant b
ctl_fails "set without --expose-as" 2 "--expose-as ENV is required" --socket "$FAKE" secrets set sbx_1 n </dev/null

# --- sandboxes -------------------------------------------------------------

SBX='{"id":"sbx_0123456789abcdef01234567","tenant_id":"default","user_id":null,"workspace_id":null,"external_user_id":"alice","external_workspace_id":"team-a","template":null,"transport":{"kind":"uds","uds":"/run/x.sock"},"created_at":"2026-01-01T00:00:00.000000Z"}'
serve --status 201 --body "$SBX"
sctl sandbox create --external-user-id alice --external-workspace-id team-a --vsock-uds /run/x.sock --tenant acme
serve_done
check_eq "create: request" "POST /v1/sandboxes HTTP/1.1" "$(req_line)"
check_eq "create: body" '{"tenant_id":"acme","external_user_id":"alice","external_workspace_id":"team-a","vsock_uds":"/run/x.sock"}' "$(req_body)"
check_eq "create: prints the id" "sbx_0123456789abcdef01234567" "$CTL_OUT"

serve --status 201 --body "$SBX"
sctl --json sandbox create --vsock-cid 42
serve_done
check_eq "create --vsock-cid: integer" '{"vsock_cid":42}' "$(req_body)"
check_eq "create --json prints {\"id\"} only" '{"id":"sbx_0123456789abcdef01234567"}' "$(printf '%s' "$CTL_OUT" | tr -d ' \n')"

serve --status 201 --body "$SBX"
MIOSA_TENANT=acme sctl sandbox create
serve_done
check_eq "create: MIOSA_TENANT is the default tenant" '{"tenant_id":"acme"}' "$(req_body)"

serve --body '{"sandboxes":[]}'
MIOSA_TENANT=acme sctl sandbox ls
serve_done
check_eq "ls: MIOSA_TENANT filters" "GET /v1/sandboxes?tenant_id=acme HTTP/1.1" "$(req_line)"

serve --body '{"sandboxes":[]}'
sctl sandbox ls
serve_done
check_eq "ls: no tenant filter by default" "GET /v1/sandboxes HTTP/1.1" "$(req_line)"

ctl_fails "--vsock-uds with --vsock-cid" 2 "exclude each other" --socket "$FAKE" sandbox create --vsock-uds a --vsock-cid 3
ctl_fails "--vsock-cid not a number" 2 "--vsock-cid" --socket "$FAKE" sandbox create --vsock-cid 3x

serve --body "$SBX"
sctl sandbox show sbx_0123456789abcdef01234567
serve_done
check_match "show: transport in one word" 'transport: +uds:/run/x\.sock' "$CTL_OUT"
check_match "show: null as -" 'template: +-' "$CTL_OUT"

serve --body "{\"sandboxes\":[$SBX]}"
sctl sandbox ls --external-user-id 'alice@example.com' --external-workspace-id 'a&b=c'
serve_done
check_eq "ls: query encoded" \
	"GET /v1/sandboxes?external_user_id=alice%40example.com&external_workspace_id=a%26b%3Dc HTTP/1.1" "$(req_line)"
check_match "ls: table" '^ID +TENANT +USER +WORKSPACE +EXTERNAL_USER +EXTERNAL_WORKSPACE +TEMPLATE +TRANSPORT +CREATED$' \
	"$(printf '%s\n' "$CTL_OUT" | head -n 1)"

serve --body "{\"sandboxes\":[$SBX]}"
sctl sandbox ls --json
serve_done
check_eq "--json after the command: the API's JSON" "alice" "$(printf '%s' "$CTL_OUT" | jget sandboxes.0.external_user_id)"
check_match "--json is indented with sorted keys" '^\{$' "$(printf '%s\n' "$CTL_OUT" | head -n 1)"

# --- API errors, connection errors, malformed answers ----------------------

serve --status 404 --body '{"error":"not_found","message":"no sandbox sbx_x"}'
sctl sandbox show sbx_x
serve_done
check_eq "API error: exit 1" 1 "$CTL_RC"
check_eq "API error: format" "miosactl: no sandbox sbx_x (not_found, HTTP 404)" "$CTL_ERR"
check_eq "API error: nothing on stdout" "" "$CTL_OUT"

serve --status 403 --body '{"error":"x\u001b[31m","message":"evil \u001b]0;title\u0007 text"}'
sctl tenant show
serve_done
check_eq "terminal escapes from the peer are neutralised" "miosactl: evil ?]0;title? text (x?[31m, HTTP 403)" "$CTL_ERR"

serve --status 502 --body 'not json'
sctl tenant ls
serve_done
check_eq "non-JSON error: exit 1" 1 "$CTL_RC"
check_contains "non-JSON error: status named" "HTTP 502" "$CTL_ERR"

serve --status 200 --body '{"a":1,"a":2}'
sctl tenant ls
serve_done
check_eq "duplicate keys in an answer refused" 1 "$CTL_RC"

printf 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n{}' >"$T/raw"
serve --raw "$T/raw"
sctl tenant ls
serve_done
check_eq "smuggling-shaped answer refused" 1 "$CTL_RC"
check_contains "smuggling-shaped answer: reason" "malformed HTTP answer" "$CTL_ERR"

printf 'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{"ten\r\na\r\nants":[]}\n\r\n0\r\n\r\n' >"$T/raw"
serve --raw "$T/raw"
sctl tenant ls
serve_done
check_eq "chunked answer decoded" "0 ID  NAME  END_USER_CREDENTIALS  CREATED" "$CTL_RC $CTL_OUT"

{
	printf 'HTTP/1.1 200 OK\r\nContent-Length: 4194305\r\n\r\n'
	head -c 4194305 /dev/zero
} >"$T/raw"
serve --raw "$T/raw"
sctl tenant ls
serve_done
check_eq "answer over 4 MiB refused" 1 "$CTL_RC"
check_contains "answer over 4 MiB: reason" "over 4194304 bytes" "$CTL_ERR"

printf 'HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n{}' >"$T/raw"
serve --raw "$T/raw"
sctl tenant ls
serve_done
check_eq "truncated answer refused" 1 "$CTL_RC"

serve --hang
sctl --timeout 1 tenant ls
serve_done
check_eq "timeout: exit 1" 1 "$CTL_RC"
check_contains "timeout: says so" "no answer from control socket $FAKE within 1 s" "$CTL_ERR"

ctl_fails "no socket: exit 1 naming it" 1 "cannot connect to control socket $T/none.sock" \
	--socket "$T/none.sock" tenant ls
ctl_fails "closed TCP port: exit 1 naming the URL" 1 "cannot connect to http://127.0.0.1:1" \
	--url http://127.0.0.1:1 tenant ls

# --- TCP: the API key goes in Authorization --------------------------------

serve --tcp 0 --body '{"tenants":[]}'
MIOSA_API_KEY=msk_live_testkey ctl --url "http://127.0.0.1:$FAKE_PORT" tenant ls
serve_done
check_eq "TCP: bearer sent" "Bearer msk_live_testkey" "$(req_header Authorization)"
check_eq "TCP: Host is the URL's authority" "127.0.0.1:$FAKE_PORT" "$(req_header Host)"
check_not_contains "TCP: key never printed" "msk_live_testkey" "$CTL_OUT$CTL_ERR"

serve --tcp 0 --body '{"tenants":[]}'
MIOSA_URL="http://127.0.0.1:$FAKE_PORT/" MIOSA_API_KEY=msk_live_k2 ctl tenant ls
serve_done
check_eq "MIOSA_URL honoured (trailing slash allowed)" "Bearer msk_live_k2" "$(req_header Authorization)"

MIOSA_API_KEY=$'msk_live_bad\r\nX-Injected: 1' ctl_fails "API key with CR/LF refused" 1 "cannot carry" \
	--url http://127.0.0.1:1 tenant ls

# --- usage and help ---------------------------------------------------------

ctl_fails "no command" 2 "missing COMMAND"
ctl_fails "unknown command" 2 "unknown command 'frobnicate'" frobnicate
ctl_fails "unknown verb" 2 "unknown command 'sandbox launch'" sandbox launch
ctl_fails "unknown option" 2 "unknown option --bogus" --socket "$FAKE" sandbox ls --bogus
ctl_fails "missing option value" 2 "--tenant needs a value" --socket "$FAKE" sandbox ls --tenant
ctl_fails "empty option value" 2 "needs a non-empty value" --socket "$FAKE" sandbox ls --tenant ''
ctl_fails "option value not UTF-8" 2 "not valid UTF-8" --socket "$FAKE" sandbox ls --tenant $'\xff'
ctl_fails "argument not UTF-8" 2 "not valid UTF-8" --socket "$FAKE" sandbox show $'sbx\xfe'
ctl_fails "missing positional" 2 "missing argument" --socket "$FAKE" sandbox show
ctl_fails "extra positional" 2 "too many arguments" --socket "$FAKE" sandbox show a b
ctl_fails "--socket with --url" 2 "exclude each other" --socket a --url http://h:1 tenant ls
MIOSA_SOCKET=/x MIOSA_URL=http://h:1 ctl_fails "MIOSA_SOCKET with MIOSA_URL" 2 "both set" tenant ls
ctl_fails "https refused (no TLS)" 2 "no TLS" --url https://h:1 tenant ls
ctl_fails "URL with a path refused" 2 "no path" --url http://h:1/v1 tenant ls
ctl_fails "URL with userinfo refused" 2 "no user information" --url http://u:p@h:1 tenant ls
ctl_fails "bad port refused" 2 "port must be" --url http://h:70000 tenant ls
ctl_fails "settings on|off only" 2 "takes on or off" --socket "$FAKE" tenant settings --allow-end-user-scoped-credentials yes
ctl_fails "--timeout range" 2 "--timeout" --timeout 0 tenant ls

ctl --help
check_eq "--help exits 0" 0 "$CTL_RC"
for cmd in "sandbox create" "sandbox show" "sandbox ls" "sandbox rm" "secrets set" "secrets ls" \
	"secrets rotate" "secrets rm" "apikey create" "apikey ls" "apikey revoke" "tenant create" \
	"tenant ls" "tenant show" "tenant settings" "health"; do
	# shellcheck disable=SC2086
	ctl $cmd --help
	if [ "$CTL_RC" -eq 0 ] && printf '%s' "$CTL_OUT" | grep -q "^Usage: miosactl $cmd"; then
		ok "$cmd --help"
	else
		fail "$cmd --help" "exit $CTL_RC: $(printf '%s' "$CTL_OUT$CTL_ERR" | head -n 2)"
	fi
	check_contains "$cmd listed in miosactl --help" "$cmd" "$("$MIOSACTL" --help)"
done
ctl secrets --help
check_eq "group --help exits 0" 0 "$CTL_RC"
ctl --version
check_match "--version" '^miosactl [0-9]+\.[0-9]+\.[0-9]+$' "$CTL_OUT"

# --- apikey, tenant ---------------------------------------------------------

serve --status 201 --body '{"id":"key_1","tenant_id":"acme","name":"ci","prefix":"msk_live_abcd","key":"msk_live_abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQ","created_at":"t"}'
sctl apikey create --tenant acme ci
serve_done
check_eq "apikey create: request" "POST /v1/tenants/acme/apikeys HTTP/1.1" "$(req_line)"
check_eq "apikey create: body" '{"name":"ci"}' "$(req_body)"
check_eq "apikey create: the key alone on stdout" "msk_live_abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQ" "$CTL_OUT"
check_contains "apikey create: note on stderr" "shown only this once" "$CTL_ERR"

serve --body '{"id":"key_1","revoked_at":"t"}'
sctl apikey revoke key_1
serve_done
check_eq "apikey revoke: request" "DELETE /v1/tenants/default/apikeys/key_1 HTTP/1.1" "$(req_line)"

serve --body '{"id":"acme","settings":{"allow_end_user_scoped_credentials":false}}'
sctl tenant settings acme --allow-end-user-scoped-credentials off
serve_done
check_eq "settings: request" "PATCH /v1/tenants/acme/settings HTTP/1.1" "$(req_line)"
check_eq "settings: body" '{"allow_end_user_scoped_credentials":false}' "$(req_body)"
check_match "settings: shown as on/off" '^allow_end_user_scoped_credentials: +off$' "$CTL_OUT"

serve --status 201 --body '{"id":"acme","name":"Acme Inc","settings":{"allow_end_user_scoped_credentials":true}}'
sctl tenant create acme --name 'Acme Inc'
serve_done
check_eq "tenant create: body" '{"id":"acme","name":"Acme Inc"}' "$(req_body)"

serve --body '{"status":"ok","version":"0.1.0"}'
sctl health
serve_done
check_eq "health: request" "GET /v1/health HTTP/1.1" "$(req_line)"
check_match "health: output" 'status: +ok' "$CTL_OUT"

# No value used above ever reached miosactl's output.
for v in sk-test-AAA111 crlf-value file-value-XYZ rotated-1 sk-test-ARGV tty-typed-value-9; do
	if grep -aqF -- "$v" "$TRANSCRIPT"; then
		fail "value $v never printed" "found in miosactl's output"
	else
		ok "value $v never printed"
	fi
done

it_finish
