/*
 * env — the environment of every process the agent starts.
 *
 * A child's environment is built in layers, later layers winning on equal
 * names:
 *   1. the clean base: PATH, HOME=/root, LANG=C.UTF-8 (nothing is inherited
 *      from the agent's own environment);
 *   2. the exec request's extra variables (ExecRequest.env);
 *   3. the CA-bundle variables, once the sandbox CA is installed:
 *      SSL_CERT_FILE, REQUESTS_CA_BUNDLE, CURL_CA_BUNDLE -> the bundle
 *      (system roots + sandbox CA; these replace the default store) and
 *      NODE_EXTRA_CA_CERTS -> the sandbox CA alone (Node adds it to its own);
 *   4. the placeholder bindings (name -> "miosa-tok-...").
 * So an exec request may change PATH or HOME but can neither replace a
 * placeholder (M2: the variable always holds the opaque placeholder) nor
 * point a process away from the sandbox CA.  Decision recorded in
 * docs/guest.md.
 *
 * Contract:
 *   - No I/O except env_write_profile(); no logging; loop thread only.
 *   - 0 / negative errno; ret_* written on success only; updates are
 *     all-or-nothing (-ENOMEM or -E2BIG leave the bindings as they were).
 *   - Binding names and placeholders are expected valid (proto/wire.c has
 *     checked them); EnvVar names too.  At most ENV_BINDINGS_MAX bindings.
 */
#ifndef MIOSA_ENV_H
#define MIOSA_ENV_H

#include <stddef.h>

#include "miosa.pb-c.h"

#define ENV_BINDINGS_MAX 1024u
#define ENV_BASE_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#define ENV_PROFILE_PATH "/etc/profile.d/miosa.sh"

struct env;

__attribute__((warn_unused_result))
int env_new(struct env **ret_env);
void env_free(struct env *env);

/* Replaces every binding (HelloAck.env). */
__attribute__((warn_unused_result))
int env_set_bindings(struct env *env, Miosa__EnvBinding *const *bindings, size_t n);

/* Applies EnvUpdate: unset names first, then set (insert or replace). */
__attribute__((warn_unused_result))
int env_apply_update(struct env *env, const Miosa__EnvUpdate *update);

/* The CA-bundle variables' targets; NULL, NULL removes them. */
__attribute__((warn_unused_result))
int env_set_trust(struct env *env, const char *bundle_path, const char *ca_path);

size_t env_binding_count(const struct env *env);

/*
 * A NULL-terminated "NAME=value" array for execve(), layered as above, each
 * name once.  Free with env_strv_free().
 */
__attribute__((warn_unused_result))
int env_build(const struct env *env, Miosa__EnvVar *const *extra, size_t n_extra,
	      char ***ret_envp);
void env_strv_free(char **strv);

/*
 * Writes a POSIX sh fragment exporting layers 3 and 4 (for login shells via
 * /etc/profile.d) to path, replacing it atomically (temp file + rename in
 * the same directory), mode 0644.
 */
__attribute__((warn_unused_result))
int env_write_profile(const struct env *env, const char *path);

#endif
