#!/usr/bin/env bash
# The control API end to end (docs/api.md): a real miosa-broker on a temp
# state dir, driven with miosactl and curl.  Tenants and attribution, secrets
# at every scope and the scope walk (M6; seeds cases 2, 14, 15), rotation
# (M5), immutable attribution (M18), tenant isolation over TCP with API keys
# (M19), no secret value in any answer, log or state file (M1, M7), and
# everything surviving a restart.
. "$(dirname "$0")/lib.sh"

unset MIOSA_URL MIOSA_API_KEY MIOSA_TENANT
PORT=$(free_port)
broker_start
export MIOSA_SOCKET=$SOCK
ok "broker up on $SOCK and 127.0.0.1:$PORT"

VALUES=()
# newval TAG: a fresh, recognisable secret value in $VAL (remembered for the leak checks).
newval() {
	VAL="sk-it-$1-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
	VALUES+=("$VAL")
}

# sset WHAT ARGS...: `secrets set ARGS` with a fresh value on stdin; exit 0 expected.
sset() {
	local what=$1
	shift
	newval set
	printf '%s\n' "$VAL" | ctl secrets set "$@"
	if [ "$CTL_RC" -eq 0 ]; then ok "$what"; else fail "$what" "exit $CTL_RC: $CTL_ERR"; fi
}

# winner SANDBOX ENV: WIN="SCOPE SCOPE_ID NAME VERSION" of the sandbox's binding
# for ENV ("none" if it has none), PH its placeholder -- from `secrets ls`.
winner() {
	ctl secrets ls "$1"
	PH=
	if [ "$CTL_RC" -ne 0 ]; then
		WIN="error: $CTL_ERR"
		return
	fi
	WIN=$(printf '%s\n' "$CTL_OUT" | awk -v e="$2" 'NR > 1 && $1 == e { print $3, $4, $5, $6 }')
	PH=$(printf '%s\n' "$CTL_OUT" | awk -v e="$2" 'NR > 1 && $1 == e { print $2 }')
	[ -n "$WIN" ] || WIN=none
}

# check_winner WHAT SANDBOX ENV "SCOPE SCOPE_ID NAME VERSION"
check_winner() {
	winner "$2" "$3"
	check_eq "$1" "$4" "$WIN"
}

PH_RE='^miosa-tok-[0-9a-f]{32}$'
SBX_RE='^sbx_[0-9a-f]{24}$'

# --- tenants ---------------------------------------------------------------

ctl_ok "tenant create acme" tenant create acme --name "Acme Inc"
ctl_fails "tenant create acme again: 409" 1 "(conflict, HTTP 409)" tenant create acme
ctl_ok "tenant create beta" tenant create beta
ctl_fails "tenant id with upper case: 400" 1 "(invalid_field, HTTP 400)" tenant create Bad
ctl --json tenant ls
check_eq "tenant ls: default, acme, beta" "3" "$(printf '%s' "$CTL_OUT" | jget 'tenants.#')"
ctl --json tenant show acme
check_eq "tenant show: name" "Acme Inc" "$(printf '%s' "$CTL_OUT" | jget name)"

# --- sandboxes with attribution --------------------------------------------

mk_sandbox() {
	ctl sandbox create "$@"
	SBX=$CTL_OUT
	if [ "$CTL_RC" -eq 0 ] && printf '%s' "$SBX" | grep -Eq "$SBX_RE"; then
		ok "sandbox create $*"
	else
		fail "sandbox create $*" "exit $CTL_RC: $CTL_OUT $CTL_ERR"
	fi
}
mk_sandbox --tenant acme --user-id u1 --workspace-id w1 --external-user-id alice --external-workspace-id team-a
A=$SBX
mk_sandbox --tenant acme --user-id u2 --workspace-id w1 --external-user-id bob --external-workspace-id team-a
B=$SBX
mk_sandbox --tenant acme --external-user-id alice
C=$SBX
mk_sandbox --tenant beta --external-user-id alice --external-workspace-id team-a
D=$SBX
ctl --json sandbox create --tenant acme --workspace-id w2 --template debian-12
E=$(printf '%s' "$CTL_OUT" | jget id)
check_match "sandbox create --json: exactly {\"id\"}" '^\{"id":"sbx_[0-9a-f]{24}"\}$' "$(printf '%s' "$CTL_OUT" | tr -d ' \n')"

api GET "/v1/sandboxes/$A"
expect "GET sandbox A" 200 -
check_eq "A: tenant_id" acme "$(printf '%s' "$BODY" | jget tenant_id)"
check_eq "A: user_id" u1 "$(printf '%s' "$BODY" | jget user_id)"
check_eq "A: workspace_id" w1 "$(printf '%s' "$BODY" | jget workspace_id)"
check_eq "A: external_user_id" alice "$(printf '%s' "$BODY" | jget external_user_id)"
check_eq "A: external_workspace_id" team-a "$(printf '%s' "$BODY" | jget external_workspace_id)"
check_eq "A: transport none" none "$(printf '%s' "$BODY" | jget transport.kind)"
check_match "A: created_at is RFC 3339 with microseconds" '^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6}Z$' \
	"$(printf '%s' "$BODY" | jget created_at)"
api GET "/v1/sandboxes/$C"
check_eq "C: external_workspace_id null (case 15)" null "$(printf '%s' "$BODY" | jget external_workspace_id)"
api GET "/v1/sandboxes/$E"
check_eq "E: template" debian-12 "$(printf '%s' "$BODY" | jget template)"

ids_of() { printf '%s' "$1" | "$HTTP_PROBE" jget sandboxes | tr ',' '\n' | grep -o 'sbx_[0-9a-f]*' | sort | tr '\n' ' '; }
ctl --json sandbox ls --tenant acme --external-user-id alice
check_eq "ls acme alice: A and C" "$(printf '%s\n%s\n' "$A" "$C" | sort | tr '\n' ' ')" "$(ids_of "$CTL_OUT")"
ctl --json sandbox ls --external-user-id alice
check_eq "ls alice over the admin socket: every tenant" "$(printf '%s\n%s\n%s\n' "$A" "$C" "$D" | sort | tr '\n' ' ')" "$(ids_of "$CTL_OUT")"
ctl --json sandbox ls --tenant acme --external-workspace-id team-a
check_eq "ls acme team-a: A and B" "$(printf '%s\n%s\n' "$A" "$B" | sort | tr '\n' ' ')" "$(ids_of "$CTL_OUT")"
ctl --json sandbox ls --external-user-id ali
check_eq "external_user_id is strict equality, not a prefix" "0" "$(printf '%s' "$CTL_OUT" | jget 'sandboxes.#')"
ctl sandbox ls --tenant acme
check_eq "ls human table: header + 4 acme sandboxes" 5 "$(printf '%s\n' "$CTL_OUT" | wc -l | tr -d ' ')"

# --- attribution is immutable ----------------------------------------------

api PATCH "/v1/sandboxes/$A" '{"external_user_id":"mallory"}'
expect "PATCH external_user_id: 409" 409 conflict
api PATCH "/v1/sandboxes/$A" '{"external_workspace_id":"team-b"}'
expect "PATCH external_workspace_id: 409" 409 conflict
api PATCH "/v1/sandboxes/$A" '{"user_id":"u9"}'
expect "PATCH user_id: 409" 409 conflict
api PATCH "/v1/sandboxes/$A" '{"workspace_id":"w9"}'
expect "PATCH workspace_id: 409" 409 conflict
api PATCH "/v1/sandboxes/$C" '{"external_workspace_id":"team-a"}'
expect "PATCH setting an unset attribution id: 409" 409 conflict
api PATCH "/v1/sandboxes/$A" '{"vsock_cid":77}'
expect "PATCH transport: 409" 409 conflict
api PATCH "/v1/sandboxes/$A" '{"external_user_id":"alice","user_id":"u1"}'
expect "PATCH with unchanged values: 200" 200 -
api GET "/v1/sandboxes/$A"
check_eq "attribution unchanged after the PATCHes" "alice team-a u1 w1" \
	"$(for f in external_user_id external_workspace_id user_id workspace_id; do printf '%s' "$BODY" | jget $f; done | tr '\n' ' ' | sed 's/ $//')"

# --- secrets at every scope: the scope walk (M6) -----------------------------

sset "tenant-scope secret" --scope tenant --tenant acme openai_t --expose-as OPENAI_API_KEY
check_winner "A: tenant wins alone" "$A" OPENAI_API_KEY "tenant acme openai_t 1"
PT_A=$PH
check_match "A: placeholder format" "$PH_RE" "$PT_A"
winner "$B" OPENAI_API_KEY
PT_B=$PH
check_match "B: placeholder format" "$PH_RE" "$PT_B"
check_ne "a wider-scope secret gets a placeholder per sandbox" "$PT_A" "$PT_B"
check_winner "D (tenant beta) does not see acme's secret" "$D" OPENAI_API_KEY none

sset "workspace-scope secret (w1)" --scope workspace --scope-id w1 --tenant acme openai_w --expose-as OPENAI_API_KEY
check_winner "A: workspace beats tenant" "$A" OPENAI_API_KEY "workspace w1 openai_w 1"
check_winner "E (w2): still tenant" "$E" OPENAI_API_KEY "tenant acme openai_t 1"

sset "external_workspace-scope secret (team-a)" --scope external_workspace --scope-id team-a --tenant acme openai_ew --expose-as OPENAI_API_KEY
check_winner "A: external_workspace beats workspace" "$A" OPENAI_API_KEY "external_workspace team-a openai_ew 1"
check_winner "case 15: C (no external_workspace_id) skips team-a's secret" "$C" OPENAI_API_KEY "tenant acme openai_t 1"

# Case 14: scope=external_user is gated by the tenant setting.
ctl_ok "settings off" tenant settings acme --allow-end-user-scoped-credentials off
check_match "settings shown off" 'allow_end_user_scoped_credentials: +off' "$CTL_OUT"
newval gated
printf '%s\n' "$VAL" | ctl_fails "case 14: external_user secret refused while the setting is off" 1 \
	"(end_user_credentials_disabled, HTTP 403)" \
	secrets set --scope external_user --scope-id alice --tenant acme openai_eu --expose-as OPENAI_API_KEY
api PUT /v1/tenants/acme/secrets/external_user/alice/openai_eu "{\"value\":\"$VAL\",\"expose_as_env\":\"OPENAI_API_KEY\"}"
expect "case 14 over curl: 403 end_user_credentials_disabled" 403 end_user_credentials_disabled
ctl --json secrets ls --scope external_user --scope-id alice --tenant acme
check_eq "nothing stored by the refused set" "0" "$(printf '%s' "$CTL_OUT" | jget 'secrets.#')"
ctl_ok "settings on" tenant settings acme --allow-end-user-scoped-credentials on
ctl --json tenant show acme
check_eq "setting persisted" true "$(printf '%s' "$CTL_OUT" | jget settings.allow_end_user_scoped_credentials)"
sset "external_user-scope secret (alice) once allowed" --scope external_user --scope-id alice --tenant acme openai_eu --expose-as OPENAI_API_KEY
check_winner "A: external_user beats external_workspace" "$A" OPENAI_API_KEY "external_user alice openai_eu 1"
check_winner "C (alice): external_user" "$C" OPENAI_API_KEY "external_user alice openai_eu 1"
check_winner "B (bob): still external_workspace" "$B" OPENAI_API_KEY "external_workspace team-a openai_ew 1"
check_winner "D (alice in beta): nothing from acme" "$D" OPENAI_API_KEY none

sset "user-scope secret (u1)" --scope user --scope-id u1 --tenant acme openai_u --expose-as OPENAI_API_KEY
check_winner "A: user beats external_user" "$A" OPENAI_API_KEY "user u1 openai_u 1"

sset "sandbox-scope secret on A" "$A" openai_s --expose-as OPENAI_API_KEY
PS_A=$(printf '%s\n' "$CTL_OUT" | awk '$1 == "placeholder:" { print $2 }')
check_match "set on a sandbox prints its placeholder" "$PH_RE" "$PS_A"
check_winner "A: sandbox beats everything" "$A" OPENAI_API_KEY "sandbox $A openai_s 1"
check_eq "ls shows the placeholder set returned" "$PS_A" "$PH"
check_winner "B unaffected by A's sandbox secret" "$B" OPENAI_API_KEY "external_workspace team-a openai_ew 1"

# Walk back down: each delete uncovers the next scope.
ctl_ok "rm sandbox secret" secrets rm "$A" openai_s
check_winner "A falls back to user" "$A" OPENAI_API_KEY "user u1 openai_u 1"
ctl_ok "rm user secret" secrets rm --scope user --scope-id u1 --tenant acme openai_u
check_winner "A falls back to external_user" "$A" OPENAI_API_KEY "external_user alice openai_eu 1"
ctl_ok "rm external_user secret" secrets rm --scope external_user --scope-id alice --tenant acme openai_eu
check_winner "A falls back to external_workspace" "$A" OPENAI_API_KEY "external_workspace team-a openai_ew 1"
ctl_ok "rm external_workspace secret" secrets rm --scope external_workspace --scope-id team-a --tenant acme openai_ew
check_winner "A falls back to workspace" "$A" OPENAI_API_KEY "workspace w1 openai_w 1"
ctl_ok "rm workspace secret" secrets rm --scope workspace --scope-id w1 --tenant acme openai_w
check_winner "A falls back to tenant" "$A" OPENAI_API_KEY "tenant acme openai_t 1"
check_eq "A's tenant-binding placeholder is stable" "$PT_A" "$PH"
ctl_fails "rm a deleted secret: 404" 1 "(not_found, HTTP 404)" secrets rm "$A" openai_s

# Case 2: a workspace secret only reaches sandboxes of that workspace.
sset "workspace-scope secret (w2)" --scope workspace --scope-id w2 --tenant acme anthropic_w2 --expose-as ANTHROPIC_API_KEY
check_winner "case 2: A (w1) has no binding for w2's secret" "$A" ANTHROPIC_API_KEY none
check_winner "case 2: E (w2) has it" "$E" ANTHROPIC_API_KEY "workspace w2 anthropic_w2 1"

sset "external_workspace secret for GITHUB_TOKEN" --scope external_workspace --scope-id team-a --tenant acme gh --expose-as GITHUB_TOKEN
check_winner "team-a: A has GITHUB_TOKEN" "$A" GITHUB_TOKEN "external_workspace team-a gh 1"
check_winner "team-a: B has GITHUB_TOKEN" "$B" GITHUB_TOKEN "external_workspace team-a gh 1"
check_winner "case 15: C (no workspace stamp) lacks GITHUB_TOKEN" "$C" GITHUB_TOKEN none
check_winner "D (team-a in beta) lacks acme's GITHUB_TOKEN" "$D" GITHUB_TOKEN none

ctl --json secrets ls "$A"
check_eq "ls --json: two bindings on A" 2 "$(printf '%s' "$CTL_OUT" | jget 'bindings.#')"
check_eq "bindings carry no value field" "" "$(printf '%s' "$CTL_OUT" | jget bindings.0.value)$(printf '%s' "$CTL_OUT" | jget bindings.1.value)"
ctl secrets ls --scope tenant --tenant acme
check_match "scope listing: the tenant secret" '^openai_t +OPENAI_API_KEY +tenant +acme +1 ' "$(printf '%s\n' "$CTL_OUT" | sed -n 2p)"

# --- hosts, cleartext, env names ---------------------------------------------

sset "sandbox secret with hosts" "$A" stripe --expose-as STRIPE_KEY --host api.stripe.com --host '*.stripe.com'
P_STRIPE=$(printf '%s\n' "$CTL_OUT" | awk '$1 == "placeholder:" { print $2 }')
ctl secrets ls "$A"
check_match "ls shows the host patterns" "^STRIPE_KEY +$P_STRIPE +sandbox +$A +stripe +1 +api\.stripe\.com,\*\.stripe\.com$" \
	"$(printf '%s\n' "$CTL_OUT" | grep '^STRIPE_KEY')"
newval badenv
printf '%s\n' "$VAL" | ctl_fails "invalid env name: 400 invalid_field" 1 "(invalid_field, HTTP 400)" \
	secrets set "$A" bad --expose-as 1BAD
check_contains "the message names the field" "expose_as_env" "$CTL_ERR"
newval dupenv
printf '%s\n' "$VAL" | ctl_fails "env name already used at that scope: 409" 1 "(conflict, HTTP 409)" \
	secrets set "$A" stripe2 --expose-as STRIPE_KEY
ctl --json secrets ls --scope tenant --tenant acme
check_eq "allow_cleartext defaults to false" false "$(printf '%s' "$CTL_OUT" | jget secrets.0.allow_cleartext)"

# --- rotation (M5) ----------------------------------------------------------

newval rot
printf '%s\n' "$VAL" | ctl secrets rotate "$A" stripe
check_eq "rotate: exit 0" 0 "$CTL_RC"
check_match "rotate: version 2" '^version: +2$' "$(printf '%s\n' "$CTL_OUT" | grep '^version:')"
check_match "rotate: rotated_at set" '^rotated_at: +[0-9]{4}-' "$(printf '%s\n' "$CTL_OUT" | grep '^rotated_at:')"
check_winner "rotate keeps the placeholder, bumps the version" "$A" STRIPE_KEY "sandbox $A stripe 2"
check_eq "rotate: same placeholder" "$P_STRIPE" "$PH"
newval rot2
printf '%s\n' "$VAL" | ctl secrets rotate --scope tenant --tenant acme openai_t
check_eq "rotate a tenant secret: exit 0" 0 "$CTL_RC"
check_winner "tenant rotation seen by A" "$A" OPENAI_API_KEY "tenant acme openai_t 2"
check_eq "tenant rotation keeps A's placeholder" "$PT_A" "$PH"
winner "$B" OPENAI_API_KEY
check_eq "tenant rotation keeps B's placeholder" "$PT_B" "$PH"
sset "set again = replace" "$A" stripe --expose-as STRIPE_KEY --host api.stripe.com
check_match "replace reported" '^result: +replaced$' "$(printf '%s\n' "$CTL_OUT" | head -n 1)"
check_winner "replace keeps the placeholder, bumps the version" "$A" STRIPE_KEY "sandbox $A stripe 3"
check_eq "replace: same placeholder" "$P_STRIPE" "$PH"
newval rot404
printf '%s\n' "$VAL" | ctl_fails "rotate a missing secret: 404" 1 "(not_found, HTTP 404)" secrets rotate "$A" nope
api POST "/v1/sandboxes/$A/secrets/stripe/rotate" "{\"value\":\"$VAL\"}"
expect "rotate over curl: 200" 200 -
check_eq "rotate over curl: version 4" 4 "$(printf '%s' "$BODY" | jget version)"
check_eq "rotate answer carries the same placeholder" "$P_STRIPE" "$(printf '%s' "$BODY" | jget placeholder)"

# --- API keys and tenant isolation over TCP (M19) ---------------------------

KEY_RE='^msk_live_[A-Za-z0-9_-]{43}$'
ctl apikey create --tenant acme ci-a
KEY_A=$CTL_OUT
check_match "apikey create prints the key" "$KEY_RE" "$KEY_A"
ctl --json apikey create --tenant acme ci-a2
KEY_A2=$(printf '%s' "$CTL_OUT" | jget key)
KEY_A2_ID=$(printf '%s' "$CTL_OUT" | jget id)
check_match "apikey create --json: key" "$KEY_RE" "$KEY_A2"
ctl --json apikey create --tenant beta ci-b
KEY_B=$(printf '%s' "$CTL_OUT" | jget key)
KEY_B_ID=$(printf '%s' "$CTL_OUT" | jget id)
check_match "beta key" "$KEY_RE" "$KEY_B"
ctl apikey ls --tenant acme
check_eq "apikey ls: header + 2 keys" 3 "$(printf '%s\n' "$CTL_OUT" | wc -l | tr -d ' ')"
check_not_contains "apikey ls never shows a key" "$KEY_A" "$CTL_OUT"
check_not_contains "apikey ls never shows a key (2)" "$KEY_A2" "$CTL_OUT"

tapi "" GET /v1/health
expect "TCP health needs no key" 200 -
tapi "" GET /v1/sandboxes
expect "TCP without a key: 401" 401 unauthorized
tapi "garbage" GET /v1/sandboxes
expect "TCP with a malformed key: 401" 401 unauthorized
tapi "msk_live_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA" GET /v1/sandboxes
expect "TCP with an unknown key: 401" 401 unauthorized
_curl GET "http://127.0.0.1:$PORT/v1/sandboxes" "" -H "Authorization: Basic $(printf 'a:b' | base64)"
expect "TCP with Basic auth: 401" 401 unauthorized

tapi "$KEY_A" GET /v1/sandboxes
expect "A's key lists sandboxes" 200 -
check_contains "A's key sees acme's sandbox" "$A" "$BODY"
check_not_contains "A's key never sees beta's sandbox" "$D" "$BODY"
tapi "$KEY_A" GET "/v1/sandboxes/$D"
expect "A's key: beta's sandbox is 404" 404 not_found
MSG_OTHER=${BODY//$D/ID}
tapi "$KEY_A" GET /v1/sandboxes/sbx_000000000000000000000000
expect "A's key: a missing sandbox is 404" 404 not_found
MSG_NONE=${BODY//sbx_000000000000000000000000/ID}
check_eq "another tenant's sandbox is indistinguishable from a missing one" "$MSG_NONE" "$MSG_OTHER"
tapi "$KEY_A" PATCH "/v1/sandboxes/$D" '{"external_user_id":"alice"}'
expect "A's key: PATCH beta's sandbox: 404" 404 not_found
tapi "$KEY_A" DELETE "/v1/sandboxes/$D"
expect "A's key: DELETE beta's sandbox: 404" 404 not_found
api GET "/v1/sandboxes/$D"
expect "beta's sandbox still there" 200 -
tapi "$KEY_A" GET "/v1/sandboxes/$D/secrets"
expect "A's key: beta's sandbox secrets: 404" 404 not_found
newval xt
tapi "$KEY_A" PUT "/v1/sandboxes/$D/secrets/x" "{\"value\":\"$VAL\",\"expose_as_env\":\"X\"}"
expect "A's key: PUT a secret on beta's sandbox: 404" 404 not_found
tapi "$KEY_A" POST "/v1/sandboxes/$D/secrets/x/rotate" "{\"value\":\"$VAL\"}"
expect "A's key: rotate on beta's sandbox: 404" 404 not_found
tapi "$KEY_A" GET /v1/tenants/beta
expect "A's key: GET tenant beta: 404" 404 not_found
tapi "$KEY_A" PATCH /v1/tenants/beta/settings '{"allow_end_user_scoped_credentials":false}'
expect "A's key: PATCH beta's settings: 404" 404 not_found
tapi "$KEY_A" GET /v1/tenants/beta/secrets/tenant/beta
expect "A's key: list beta's secrets: 404" 404 not_found
tapi "$KEY_A" PUT /v1/tenants/beta/secrets/tenant/beta/x "{\"value\":\"$VAL\",\"expose_as_env\":\"X\"}"
expect "A's key: set a beta secret: 404" 404 not_found
tapi "$KEY_A" DELETE /v1/tenants/beta/secrets/tenant/beta/x
expect "A's key: delete a beta secret: 404" 404 not_found
tapi "$KEY_A" GET /v1/tenants/beta/apikeys
expect "A's key: list beta's keys: 404" 404 not_found
tapi "$KEY_A" POST /v1/tenants/beta/apikeys '{"name":"evil"}'
expect "A's key: mint a beta key: 404" 404 not_found
tapi "$KEY_A" DELETE "/v1/tenants/beta/apikeys/$KEY_B_ID"
expect "A's key: revoke beta's key: 404" 404 not_found
tapi "$KEY_A" DELETE "/v1/tenants/acme/apikeys/$KEY_B_ID"
expect "A's key: beta's key id under acme: 404" 404 not_found
tapi "$KEY_A" GET "/v1/sandboxes?tenant_id=beta"
expect "A's key: list with tenant_id=beta: 404" 404 not_found
tapi "$KEY_A" POST /v1/sandboxes '{"tenant_id":"beta"}'
expect "A's key: create in beta: 404" 404 not_found
tapi "$KEY_A" GET /v1/tenants
expect "A's key: tenant list is admin-only: 404" 404 not_found
tapi "$KEY_A" POST /v1/tenants '{"id":"evil"}'
expect "A's key: tenant create is admin-only: 404" 404 not_found
tapi "$KEY_A" GET /v1/tenants/acme
expect "A's key: own tenant" 200 -
tapi "$KEY_A" POST /v1/sandboxes '{"external_user_id":"carol"}'
expect "A's key: create a sandbox" 201 -
check_eq "created in the key's tenant" acme "$(printf '%s' "$BODY" | jget tenant_id)"
tapi "$KEY_A" GET "/v1/sandboxes/$A/secrets"
expect "A's key: own sandbox's bindings" 200 -
tapi "$KEY_B" GET "/v1/sandboxes/$A"
expect "B's key: acme's sandbox is 404" 404 not_found
tapi "$KEY_B" GET /v1/sandboxes
check_contains "B's key sees beta's sandbox" "$D" "$BODY"
check_not_contains "B's key never sees acme's sandboxes" "$A" "$BODY"
tapi "$KEY_B" GET /v1/sandboxes/sbx_000000000000000000000000
expect "beta key still valid after A's attempt to revoke it" 404 not_found

MIOSA_API_KEY=$KEY_A ctl --url "http://127.0.0.1:$PORT" --json sandbox ls
check_eq "miosactl over TCP: exit 0" 0 "$CTL_RC"
check_not_contains "miosactl over TCP: no beta sandbox" "$D" "$CTL_OUT"
MIOSA_API_KEY=$KEY_A ctl_fails "miosactl over TCP: beta's sandbox is 404" 1 "(not_found, HTTP 404)" \
	--url "http://127.0.0.1:$PORT" sandbox show "$D"
MIOSA_API_KEY=$KEY_A MIOSA_TENANT=acme ctl --url "http://127.0.0.1:$PORT" secrets ls --scope tenant
check_eq "miosactl over TCP with MIOSA_TENANT: scope listing" 0 "$CTL_RC"
ctl_fails "miosactl over TCP without a key: 401" 1 "(unauthorized, HTTP 401)" \
	--url "http://127.0.0.1:$PORT" sandbox ls

tapi "$KEY_A2" GET /v1/sandboxes
expect "second acme key works" 200 -
ctl_ok "apikey revoke" apikey revoke --tenant acme "$KEY_A2_ID"
check_match "revoke shows revoked_at" '^revoked_at: +[0-9]{4}-' "$(printf '%s\n' "$CTL_OUT" | grep '^revoked_at:')"
tapi "$KEY_A2" GET /v1/sandboxes
expect "revoked key: 401" 401 unauthorized
ctl_ok "revoking twice is fine" apikey revoke --tenant acme "$KEY_A2_ID"
tapi "$KEY_A" GET /v1/sandboxes
expect "the other acme key still works" 200 -
ctl --json apikey ls --tenant acme
check_match "last_used_at recorded" '^[0-9]{4}-' "$(printf '%s' "$CTL_OUT" | jget apikeys.0.last_used_at)$(printf '%s' "$CTL_OUT" | jget apikeys.1.last_used_at)"

# --- object shapes are the documented ones (docs/api.md, "Objects") -------------

SANDBOX_KEYS="created_at external_user_id external_workspace_id id template tenant_id transport user_id workspace_id"
SECRET_KEYS="allow_cleartext created_at expose_as_env hosts name rotated_at scope scope_id version"
APIKEY_KEYS="created_at id last_used_at name prefix revoked_at tenant_id"
api GET "/v1/sandboxes/$B"
check_eq "sandbox object: documented fields" "$SANDBOX_KEYS" "$(printf '%s' "$BODY" | jkeys .)"
ctl sandbox create --vsock-uds "$T/vm.sock"
api GET "/v1/sandboxes/$CTL_OUT"
check_eq "transport uds: kind and path" "uds $T/vm.sock" "$(printf '%s' "$BODY" | jget transport.kind) $(printf '%s' "$BODY" | jget transport.uds)"
ctl sandbox create --vsock-cid 7
api GET "/v1/sandboxes/$CTL_OUT"
check_eq "transport vsock: kind and cid" "vsock 7" "$(printf '%s' "$BODY" | jget transport.kind) $(printf '%s' "$BODY" | jget transport.cid)"
api GET /v1/tenants/acme
check_eq "tenant object: documented fields" "created_at id name settings" "$(printf '%s' "$BODY" | jkeys .)"
check_eq "tenant settings: documented fields" "allow_end_user_scoped_credentials" "$(printf '%s' "$BODY" | jkeys settings)"
api GET /v1/tenants/acme/secrets/tenant/acme
check_eq "secret object (scope listing): documented fields" "$SECRET_KEYS" "$(printf '%s' "$BODY" | jkeys secrets.0)"
api GET "/v1/sandboxes/$B/secrets"
check_eq "binding object: documented fields + placeholder" "$(printf '%s placeholder' "$SECRET_KEYS" | tr ' ' '\n' | sort | tr '\n' ' ' | sed 's/ $//')" \
	"$(printf '%s' "$BODY" | jkeys bindings.0)"
api GET /v1/tenants/acme/apikeys
check_eq "api key object: documented fields" "$APIKEY_KEYS" "$(printf '%s' "$BODY" | jkeys apikeys.0)"
api POST /v1/tenants/acme/apikeys '{"name":"shape"}'
expect "apikey create: 201" 201 -
KEY_SHAPE=$(printf '%s' "$BODY" | jget key)
check_eq "api key creation answer: + key" "created_at id key last_used_at name prefix revoked_at tenant_id" "$(printf '%s' "$BODY" | jkeys .)"
check_eq "prefix is the key's start" "$(printf '%s' "$BODY" | jget prefix)" "${KEY_SHAPE:0:$(printf '%s' "$BODY" | jget prefix | tr -d '\n' | wc -c)}"
api DELETE "/v1/tenants/acme/apikeys/$(printf '%s' "$BODY" | jget id)"
expect "revoke the shape key" 200 -
api GET /v1/health
check_eq "health object" "status version" "$(printf '%s' "$BODY" | jkeys .)"

# --- nothing leaks ----------------------------------------------------------

leak_checks() {
	local where=$1
	local n_hits=0 v f
	for v in "${VALUES[@]}"; do
		if grep -aqF -- "$v" "$TRANSCRIPT"; then
			fail "$where: value never in an answer or miosactl output" "$v"
			n_hits=$((n_hits + 1))
		fi
		if grep -aqF -- "$v" "$T/broker.log"; then
			fail "$where: value never in the broker log" "$v"
			n_hits=$((n_hits + 1))
		fi
		for f in "$STATE_DIR"/*; do
			[ -f "$f" ] || continue
			if grep -aqF -- "$v" "$f"; then
				fail "$where: value never in $(basename "$f")" "$v"
				n_hits=$((n_hits + 1))
			fi
		done
	done
	[ "$n_hits" -gt 0 ] || ok "$where: none of ${#VALUES[@]} values in answers, miosactl output, the log or $(cd "$STATE_DIR" && ls | tr '\n' ' ')"
	for v in "$KEY_A" "$KEY_A2" "$KEY_B" "$KEY_SHAPE"; do
		if grep -aqF -- "$v" "$T/broker.log" || grep -raqF -- "$v" "$STATE_DIR"; then
			fail "$where: API key stored or logged in clear" "${v:0:16}..."
		else
			ok "$where: API key ${v:0:16}... only hashed"
		fi
	done
}
check_eq "state.db exists" yes "$([ -f "$STATE_DIR/state.db" ] && echo yes || echo no)"
leak_checks "before restart"

# --- restart: everything persists -------------------------------------------

ctl --json sandbox ls
SBX_BEFORE=$(ids_of "$CTL_OUT")
ctl secrets ls "$A"
LS_A_BEFORE=$CTL_OUT
ctl secrets ls "$B"
LS_B_BEFORE=$CTL_OUT
ctl --json apikey ls --tenant acme
KEYS_BEFORE=$(printf '%s' "$CTL_OUT" | "$HTTP_PROBE" jget apikeys | tr ',' '\n' | grep -E '"(id|revoked_at)"' | tr '\n' ' ')
if broker_stop; then ok "broker exits 0 on SIGTERM"; else fail "broker exits 0 on SIGTERM"; fi
check_eq "control socket removed on shutdown" no "$([ -e "$SOCK" ] && echo yes || echo no)"
broker_start
ok "broker restarted on the same state"
ctl --json sandbox ls
check_eq "sandboxes survive a restart" "$SBX_BEFORE" "$(ids_of "$CTL_OUT")"
ctl secrets ls "$A"
check_eq "A's bindings (placeholders, versions) survive" "$LS_A_BEFORE" "$CTL_OUT"
ctl secrets ls "$B"
check_eq "B's bindings survive" "$LS_B_BEFORE" "$CTL_OUT"
ctl --json apikey ls --tenant acme
check_eq "API keys survive" "$KEYS_BEFORE" "$(printf '%s' "$CTL_OUT" | "$HTTP_PROBE" jget apikeys | tr ',' '\n' | grep -E '"(id|revoked_at)"' | tr '\n' ' ')"
tapi "$KEY_A" GET /v1/sandboxes
expect "acme key works after restart" 200 -
tapi "$KEY_A2" GET /v1/sandboxes
expect "revoked key still refused after restart" 401 unauthorized
tapi "$KEY_B" GET "/v1/sandboxes/$D"
expect "beta key works after restart" 200 -
ctl --json tenant show acme
check_eq "tenant settings survive" true "$(printf '%s' "$CTL_OUT" | jget settings.allow_end_user_scoped_credentials)"
newval after
printf '%s\n' "$VAL" | ctl secrets rotate "$A" stripe
check_winner "rotate after restart: same placeholder, next version" "$A" STRIPE_KEY "sandbox $A stripe 5"
check_eq "placeholder stable across restart" "$P_STRIPE" "$PH"

# --- delete ------------------------------------------------------------------

ctl_ok "sandbox rm" sandbox rm "$A"
check_eq "sandbox rm prints nothing" "" "$CTL_OUT"
api GET "/v1/sandboxes/$A"
expect "deleted sandbox: 404" 404 not_found
ctl_fails "secrets ls on a deleted sandbox: 404" 1 "(not_found, HTTP 404)" secrets ls "$A"
ctl_fails "sandbox rm twice: 404" 1 "(not_found, HTTP 404)" sandbox rm "$A"
check_winner "B keeps its bindings" "$B" OPENAI_API_KEY "tenant acme openai_t 2"

leak_checks "after restart"
if broker_alive; then ok "broker still running"; else fail "broker still running"; fi
if broker_stop; then ok "broker exits 0 at the end"; else fail "broker exits 0 at the end"; fi
it_finish
