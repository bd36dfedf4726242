#!/usr/bin/env bash
# Templates (MISSION M15; docs/cli.md "Templates", docs/api.md "Templates"):
# a real miosa-broker, miosactl and curl.  Sandbox A in observe mode gets two
# allowed hosts and a secret, then lockdown; `template save A img.qcow2`
# writes img.qcow2.policy.pb (0644, no secret, no placeholder); `sandbox
# create --template img.qcow2` starts in enforce mode with the same
# allowlist; `network observe` fixes it.  Corrupt, truncated and newer-version
# files are refused with the documented messages and no sandbox is made; the
# API refuses a bad "policy" object without making a sandbox either.
. "$(dirname "$0")/lib.sh"

unset MIOSA_URL MIOSA_API_KEY MIOSA_TENANT
PORT=$(free_port)
broker_start
export MIOSA_SOCKET=$SOCK
ok "broker up"

IMG_DIR=$T/images
mkdir -p "$IMG_DIR"
IMG=$IMG_DIR/img.qcow2
PB=$IMG.policy.pb

sandbox_count() {
	ctl --json sandbox ls
	printf '%s' "$CTL_OUT" | jget 'sandboxes.#'
}

# ---- sandbox A: observe, two hosts, a secret, lockdown --------------------
ctl sandbox create
A=$CTL_OUT
check_match "sandbox A created" '^sbx_' "$A"
ctl --json network status "$A"
check_eq "A starts in observe mode" "observe" "$(printf '%s' "$CTL_OUT" | jget mode)"
ctl_ok "allow api.openai.com" network allow "$A" api.openai.com
ctl_ok "allow *.npmjs.com:443" network allow "$A" '*.npmjs.com' --port 443
SECRET="sk-template-test-$$-$RANDOM$RANDOM"
printf '%s\n' "$SECRET" | ctl secrets set "$A" openai --expose-as OPENAI_API_KEY
check_eq "secret set on A" 0 "$CTL_RC"
ctl --json secrets ls "$A"
PLACEHOLDER=$(printf '%s' "$CTL_OUT" | jget 'bindings.0.placeholder')
check_match "A has a placeholder" '^miosa-tok-' "$PLACEHOLDER"
ctl_ok "lockdown A" network lockdown "$A"
ctl --json network status "$A"
check_eq "A is in enforce mode" "enforce" "$(printf '%s' "$CTL_OUT" | jget mode)"

# ---- the API route ------------------------------------------------------
api GET "/v1/sandboxes/$A/template"
expect "GET template is 200" 200 -
check_eq "template route: mode" "enforce" "$(printf '%s' "$BODY" | jget mode)"
check_eq "template route: two entries" "2" "$(printf '%s' "$BODY" | jget 'allowlist.#')"
check_eq "template route: sandbox id" "$A" "$(printf '%s' "$BODY" | jget sandbox_id)"
api GET "/v1/sandboxes/sbx_000000000000000000000000/template"
expect "GET template of an unknown sandbox is 404" 404 not_found

# ---- template save ----------------------------------------------------------
ctl_ok "template save (the image need not exist)" template save "$A" "$IMG"
check_contains "save names the file" "$PB" "$CTL_OUT"
check_contains "save prints the mode" "enforce" "$CTL_OUT"
check_contains "save prints an entry" "api.openai.com" "$CTL_OUT"
if [ -f "$PB" ]; then ok "policy file written beside the image"; else fail "policy file written beside the image" "no $PB"; fi
check_eq "policy file is 0644" "644" "$(stat -c %a "$PB")"
check_eq "no temporary file left" "img.qcow2.policy.pb" "$(ls -A "$IMG_DIR")"
if grep -qaF -- "$SECRET" "$PB"; then fail "file holds no secret value"; else ok "file holds no secret value"; fi
if grep -qaF -- "miosa-tok-" "$PB"; then fail "file holds no placeholder"; else ok "file holds no placeholder"; fi
check_eq "file starts with the magic" "894d50540d0a1a0a" "$(head -c 8 "$PB" | od -An -tx1 | tr -d ' \n')"

ctl_ok "template show" template show "$IMG"
check_contains "show: mode" "enforce" "$CTL_OUT"
check_contains "show: source sandbox" "$A" "$CTL_OUT"
check_contains "show: wildcard entry" "*.npmjs.com" "$CTL_OUT"
check_contains "show: listen ports" "80,443" "$CTL_OUT"
ctl --json template show "$IMG"
check_eq "show --json: version" "1" "$(printf '%s' "$CTL_OUT" | jget format_version)"
check_eq "show --json: mode" "enforce" "$(printf '%s' "$CTL_OUT" | jget mode)"
check_eq "show --json: entries" "2" "$(printf '%s' "$CTL_OUT" | jget 'allowlist.#')"
check_eq "show --json: source" "$A" "$(printf '%s' "$CTL_OUT" | jget source_sandbox_id)"
check_match "show --json: created_at" '^20[0-9]{2}-' "$(printf '%s' "$CTL_OUT" | jget created_at)"

# ---- sandbox create --template ----------------------------------------------
ctl sandbox create --template "$IMG"
B=$CTL_OUT
check_match "sandbox B created from the template" '^sbx_' "$B"
ctl --json network status "$B"
STATUS_B=$CTL_OUT
check_eq "B starts in enforce mode" "enforce" "$(printf '%s' "$STATUS_B" | jget mode)"
check_eq "B has the two entries" "2" "$(printf '%s' "$STATUS_B" | jget 'allowlist.#')"
ENTRIES_B=$(printf '%s' "$STATUS_B" | jget allowlist | tr -d ' \n')
check_contains "B allows api.openai.com (any port)" '"pattern":"api.openai.com","port":null' "$ENTRIES_B"
check_contains "B allows *.npmjs.com:443" '"pattern":"*.npmjs.com","port":443' "$ENTRIES_B"
ctl --json sandbox show "$B"
check_eq "B records its template" "$IMG" "$(printf '%s' "$CTL_OUT" | jget template)"
ctl --json secrets ls "$B"
check_not_contains "B got no secret of A" "openai" "$CTL_OUT"
ctl_ok "network observe right after creation" network observe "$B"
ctl --json network status "$B"
check_eq "B is in observe mode" "observe" "$(printf '%s' "$CTL_OUT" | jget mode)"
check_eq "B keeps the allowlist" "2" "$(printf '%s' "$CTL_OUT" | jget 'allowlist.#')"

# No policy file: the default policy (a template name that is not a path).
ctl sandbox create --template debian-12
C=$CTL_OUT
check_match "create with a template name without a file" '^sbx_' "$C"
ctl --json network status "$C"
check_eq "no file: observe mode" "observe" "$(printf '%s' "$CTL_OUT" | jget mode)"

# ---- refused files: no sandbox is created -----------------------------------
BEFORE=$(sandbox_count)

cp "$PB" "$T/good.pb"
# A flipped byte in the payload (offset 60): the checksum catches it.
cp "$T/good.pb" "$PB"
printf '\xff' | dd of="$PB" bs=1 seek=60 conv=notrunc status=none
ctl_fails "corrupt file: show refused" 1 "$PB: checksum mismatch: the file is corrupt" template show "$IMG"
ctl_fails "corrupt file: create refused" 1 "$PB: checksum mismatch: the file is corrupt; no sandbox created" sandbox create --template "$IMG"

head -c 40 "$T/good.pb" >"$PB"
ctl_fails "truncated file: create refused" 1 "$PB: truncated" sandbox create --template "$IMG"
head -c 70 "$T/good.pb" >"$PB"
ctl_fails "file cut in the payload: create refused" 1 "$PB: truncated" sandbox create --template "$IMG"

# Format version 2 in the header (checked before the checksum).
cp "$T/good.pb" "$PB"
printf '\x00\x00\x00\x02' | dd of="$PB" bs=1 seek=8 conv=notrunc status=none
ctl_fails "newer version: show refused" 1 "$PB: format version 2 is newer than this miosactl supports (1)" template show "$IMG"
ctl_fails "newer version: create refused" 1 "$PB: format version 2 is newer than this miosactl supports (1)" sandbox create --template "$IMG"

printf 'mode: enforce\n' >"$PB"
ctl_fails "not a template: refused" 1 "$PB: not a miosa policy template (bad magic)" sandbox create --template "$IMG"

check_eq "no sandbox was created by a refused file" "$BEFORE" "$(sandbox_count)"

# ---- the API side validates the policy object too ---------------------------
api POST /v1/sandboxes '{"policy": {"mode": "enforce", "allowlist": [{"pattern": "*foo.com"}]}}'
expect "API: invalid pattern in policy is 400" 400 invalid_field
check_contains "API: message quotes the pattern" "*foo.com" "$BODY"
api POST /v1/sandboxes '{"policy": {"mode": "strict", "allowlist": []}}'
expect "API: unknown mode is 400" 400 invalid_field
api POST /v1/sandboxes '{"policy": {"mode": "enforce", "allowlist": [], "listen_ports": [8080]}}'
expect "API: a listen port the gateway does not serve is 400" 400 invalid_field
api POST /v1/sandboxes '{"policy": {"mode": "enforce", "allowlist": [{"pattern": "a.com", "port": 0}]}}'
expect "API: port 0 is 400 (null means any)" 400 invalid_field
api POST /v1/sandboxes '{"policy": {"mode": "enforce", "allowlist": [{"pattern": "a.com", "extra": 1}]}}'
expect "API: unknown entry field is 400" 400 invalid_field
check_eq "no sandbox was created by a refused policy" "$BEFORE" "$(sandbox_count)"
api POST /v1/sandboxes '{"policy": {"mode": "enforce", "allowlist": [{"pattern": "Example.COM", "port": 8443}], "listen_ports": [443]}}'
expect "API: a valid policy creates the sandbox" 201 -
D=$(printf '%s' "$BODY" | jget id)
ctl --json network status "$D"
check_eq "API-made sandbox is in enforce mode" "enforce" "$(printf '%s' "$CTL_OUT" | jget mode)"
check_eq "API-made sandbox has the normalized entry" "example.com" "$(printf '%s' "$CTL_OUT" | jget 'allowlist.0.pattern')"

# Saving over an existing file replaces it atomically.
cp "$T/good.pb" "$PB"
ctl_ok "save again over the file" template save "$D" "$IMG"
ctl --json template show "$IMG"
check_eq "the file now holds D's policy" "$D" "$(printf '%s' "$CTL_OUT" | jget source_sandbox_id)"
check_eq "still one file in the image directory" "img.qcow2.policy.pb" "$(ls -A "$IMG_DIR")"
ctl_fails "save into a missing directory fails" 1 "$T/nodir/x.qcow2.policy.pb" template save "$D" "$T/nodir/x.qcow2"

# ---- a remote broker (--url, API key): the CLI reads and writes the file ----
ctl apikey create --tenant default tpl-ci
KEY=$CTL_OUT
check_match "API key for the TCP listener" '^msk_live_' "$KEY"
URL="http://127.0.0.1:$PORT"
REMOTE_IMG=$T/remote/r.img
mkdir -p "$T/remote"
MIOSA_API_KEY=$KEY ctl --url "$URL" template save "$A" "$REMOTE_IMG"
check_eq "template save over --url" 0 "$CTL_RC"
MIOSA_API_KEY=$KEY ctl --url "$URL" sandbox create --template "$REMOTE_IMG"
E=$CTL_OUT
check_match "sandbox create --template over --url" '^sbx_' "$E"
ctl --json network status "$E"
check_eq "remote-made sandbox is in enforce mode" "enforce" "$(printf '%s' "$CTL_OUT" | jget mode)"
check_eq "remote-made sandbox has both entries" "2" "$(printf '%s' "$CTL_OUT" | jget 'allowlist.#')"
ctl tenant create other
ctl apikey create --tenant other tpl-other
OTHER_KEY=$CTL_OUT
MIOSA_API_KEY=$OTHER_KEY ctl_fails "another tenant's key cannot save A's template" 1 "not_found" \
	--url "$URL" template save "$A" "$T/remote/stolen.img"
if [ -e "$T/remote/stolen.img.policy.pb" ]; then fail "no file for a refused save"; else ok "no file for a refused save"; fi

check_not_contains "no secret value in any output" "$SECRET" "$(cat "$TRANSCRIPT")"
it_finish
