/*
 * tenancy_types — the records of tenancy (tenants, sandboxes, API keys) and
 * their limits.  Types only: tenancy.h (the module) and store.h (the storage
 * seam that persists them) both speak in these records.
 *
 * Strings are NUL-terminated inside fixed buffers; "" means "unset" for the
 * optional ones.  Times are microseconds since the Unix epoch (UTC); 0 means
 * "never" for last_used_at_us and revoked_at_us.
 */
#ifndef MIOSA_TENANCY_TYPES_H
#define MIOSA_TENANCY_TYPES_H

#include <stdbool.h>
#include <stdint.h>

#define TENANCY_TENANT_ID_MAX 64     /* [a-z0-9][a-z0-9_-]{0,63} */
#define TENANCY_NAME_MAX 256         /* tenant and API key names: UTF-8, no controls */
#define TENANCY_ATTR_ID_MAX 256      /* user/workspace/external ids: 0x21..0x7e */
#define TENANCY_OBJECT_ID_HEX 24     /* 96 random bits */
#define TENANCY_OBJECT_ID_LEN 28     /* "sbx_" / "key_" + 24 lowercase hex */
#define TENANCY_SANDBOX_ID_PREFIX "sbx_"
#define TENANCY_API_KEY_ID_PREFIX "key_"
#define TENANCY_TEMPLATE_MAX 1024    /* template (image) name: 0x20..0x7e */
/*
 * A sandbox's hybrid-vsock path: the broker listens on PATH_<port>, and
 * sun_path holds 107 bytes, so 96 leaves room for "_" + any 32-bit port.
 */
#define TENANCY_UDS_MAX 96
#define TENANCY_API_KEY_PREFIX "msk_live_"
#define TENANCY_API_KEY_PREFIX_LEN 9
#define TENANCY_API_KEY_RANDOM_BYTES 32
#define TENANCY_API_KEY_B64_LEN 43   /* base64url, no padding, of 32 bytes */
#define TENANCY_API_KEY_LEN (TENANCY_API_KEY_PREFIX_LEN + TENANCY_API_KEY_B64_LEN)
/* What a listing shows of a key: "msk_live_" + its first 6 characters. */
#define TENANCY_API_KEY_DISPLAY_LEN (TENANCY_API_KEY_PREFIX_LEN + 6)
#define TENANCY_API_KEY_HASH_BYTES 32

/* Caps: every row a caller can make us create is bounded. */
#define TENANCY_TENANTS_MAX 10000
#define TENANCY_SANDBOXES_PER_TENANT_MAX 10000
#define TENANCY_API_KEYS_PER_TENANT_MAX 1000   /* revoked ones included */
#define TENANCY_LIST_MAX 10000                 /* rows in one listing */

struct tenancy_tenant {
	char id[TENANCY_TENANT_ID_MAX + 1];
	char name[TENANCY_NAME_MAX + 1];
	int64_t created_at_us;
	/* M18: gates scope external_user; on for a new tenant. */
	bool allow_end_user_scoped_credentials;
};

/* Persisted as numbers: append, never renumber. */
enum tenancy_transport_kind {
	TENANCY_TRANSPORT_NONE = 0,
	TENANCY_TRANSPORT_UDS = 1,   /* hybrid vsock over Unix sockets (PATH_<port>) */
	TENANCY_TRANSPORT_VSOCK = 2, /* kernel AF_VSOCK, sandbox known by its CID */
};

struct tenancy_transport {
	enum tenancy_transport_kind kind;
	char uds[TENANCY_UDS_MAX + 1]; /* UDS: absolute path; else "" */
	uint32_t cid;                  /* VSOCK: 3..0xfffffffe; else 0 */
};

struct tenancy_sandbox {
	char id[TENANCY_OBJECT_ID_LEN + 1];
	char tenant_id[TENANCY_TENANT_ID_MAX + 1];
	/* Attribution (M18): fixed at creation. */
	char user_id[TENANCY_ATTR_ID_MAX + 1];
	char workspace_id[TENANCY_ATTR_ID_MAX + 1];
	char external_user_id[TENANCY_ATTR_ID_MAX + 1];
	char external_workspace_id[TENANCY_ATTR_ID_MAX + 1];
	char template_name[TENANCY_TEMPLATE_MAX + 1];
	struct tenancy_transport transport;
	int64_t created_at_us;
};

struct tenancy_api_key {
	char id[TENANCY_OBJECT_ID_LEN + 1];
	char tenant_id[TENANCY_TENANT_ID_MAX + 1];
	char name[TENANCY_NAME_MAX + 1];
	char prefix[TENANCY_API_KEY_DISPLAY_LEN + 1];
	int64_t created_at_us;
	int64_t last_used_at_us; /* 0 = never used */
	int64_t revoked_at_us;   /* 0 = live */
};

/* Strict-equality filters of a sandbox listing; NULL = any. */
struct tenancy_sandbox_filter {
	const char *tenant_id;
	const char *external_user_id;
	const char *external_workspace_id;
};

#endif
