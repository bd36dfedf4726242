/*
 * wire — the only code that turns frame payloads into protobuf-c structs.
 *
 * Each wire_decode_*() unpacks one top-level message and validates every
 * field against the limits below in one place, so handlers only ever see
 * valid messages.  Each wire_frame_*() applies the same rules to an outgoing
 * message and writes it as one frame (frame.h), so a peer running this code
 * never rejects what we send.
 *
 * Contract:
 *   - Pure functions: no I/O, no logging, no global state; thread-safe.
 *   - 0 on success, negative errno-style code on failure; *ret_* written only
 *     on success.  A decoded message belongs to the caller, who frees it with
 *     the matching wire_free_*() (NULL accepted).
 *   - On failure *err (if err is not NULL) names the message, the field and
 *     the rule that failed, as static text: it never quotes peer bytes.  Log
 *     it as "%s.%s: %s", err->message, err->field, err->reason.
 *   - Unknown fields are ignored (forward compatibility).
 *
 * Decoding, beyond what protobuf-c checks:
 *   - every string field of every message, known to this schema, must be
 *     valid UTF-8 without NUL bytes (protobuf-c 1.4 checks neither, and its C
 *     strings would silently end at an embedded NUL);
 *   - unpacking may allocate at most WIRE_UNPACK_BUDGET bytes, so a 64 KiB
 *     payload of tiny repeated fields cannot make us allocate megabytes;
 *   - then the per-message rules (limits below).
 *
 * Error codes:
 *   -EMSGSIZE  payload longer than FRAME_MAX_PAYLOAD (decode), or the
 *              message does not fit in one frame (encode);
 *   -EBADMSG   not a valid encoding: protobuf-c refused it, a string is not
 *              UTF-8 or holds NUL, or it needs more than WIRE_UNPACK_BUDGET;
 *   -EINVAL    well-formed, but a field breaks its rule;
 *   -ENOBUFS   encode: buffer too small;
 *   -ENOMEM    out of memory.
 */
#ifndef MIOSA_WIRE_H
#define MIOSA_WIRE_H

#include <stddef.h>
#include <stdint.h>

#include "frame.h"
#include "miosa.pb-c.h"

/* Limits (bytes unless stated).  Peers must stay within them. */
#define WIRE_UNPACK_BUDGET (1u << 20)    /* allocation while unpacking one payload */
#define WIRE_AGENT_VERSION_MAX 64u       /* Hello.agent_version, printable ASCII, non-empty */
#define WIRE_BOOT_ID_SIZE 16u            /* Hello.boot_id, exactly */
#define WIRE_SANDBOX_ID_MAX 64u          /* HelloAck.sandbox_id, [A-Za-z0-9._-], non-empty */
#define WIRE_ENV_MAX 256u                /* entries in HelloAck.env, EnvUpdate.set/.unset, ExecRequest.env */
#define WIRE_ENV_NAME_MAX 128u           /* [A-Za-z_][A-Za-z0-9_]*, no duplicates per message */
#define WIRE_ENV_VALUE_MAX (32u * 1024)  /* EnvVar.value */
#define WIRE_CA_PEM_MAX (16u * 1024)     /* HelloAck.ca_pem, starts with a PEM certificate */
#define WIRE_LISTEN_PORTS_MAX 1024u      /* HelloAck.listen_ports, each 1..65535, distinct */
#define WIRE_MAX_CONNECTIONS_MAX 65535u  /* Limits.max_connections, >= 1 */
#define WIRE_MAX_EXECS_MAX 1024u         /* Limits.max_execs, >= 1 */
#define WIRE_EXEC_OUTPUT_TOTAL_MAX (1u << 30) /* Limits.exec_output_max_bytes, >= 1 */
#define WIRE_ARGV_MAX 256u               /* ExecRequest.argv entries, >= 1, argv[0] non-empty */
#define WIRE_ARG_MAX 4096u               /* each ExecRequest.argv entry */
#define WIRE_CWD_MAX 4095u               /* ExecRequest.cwd: empty or absolute */
#define WIRE_TIMEOUT_MS_MAX (24u * 3600 * 1000) /* ExecRequest.timeout_ms */
#define WIRE_EXEC_CHUNK_MAX (32u * 1024) /* ExecOutput.data */
#define WIRE_START_ERROR_MAX 256u        /* ExecExit.start_error, non-empty */
#define WIRE_SIGNAL_MAX 64u              /* ExecExit.signal, >= 1 (Linux: SIGRTMAX) */
#define WIRE_REASON_MAX 256u             /* OpenResult.reason */
#define WIRE_DNS_MIN 12u                 /* DnsQuery/DnsAnswer.packet: a DNS header */
#define WIRE_DNS_MAX 65535u              /* ... and what a DNS length prefix can carry */
/* Also: the oneof of GuestOpen, HostToGuest, GuestToHost and ExecExit must be
 * set; every exec_id is non-zero; EgressOpen.dst_addr is 4 or 16 bytes and
 * dst_port 1..65535; enums must be one of their named, non-UNSPECIFIED values;
 * placeholders are "miosa-tok-" + 32 lowercase hex digits. */

struct wire_error {
	const char *message; /* e.g. "EnvBinding" */
	const char *field;   /* e.g. "placeholder"; "*" for the whole message */
	const char *reason;  /* e.g. "must be \"miosa-tok-\" + 32 lowercase hex digits" */
};

/* Guest -> host, first frame of every connection (broker side). */
__attribute__((warn_unused_result))
int wire_decode_guest_open(const void *payload, size_t len, Miosa__GuestOpen **ret_msg,
			   struct wire_error *err);
/* Host -> guest on the control stream (agent side). */
__attribute__((warn_unused_result))
int wire_decode_host_to_guest(const void *payload, size_t len, Miosa__HostToGuest **ret_msg,
			      struct wire_error *err);
/* Guest -> host on the control stream after Hello (broker side). */
__attribute__((warn_unused_result))
int wire_decode_guest_to_host(const void *payload, size_t len, Miosa__GuestToHost **ret_msg,
			      struct wire_error *err);
/* Host -> guest, answer to EgressOpen (agent side). */
__attribute__((warn_unused_result))
int wire_decode_open_result(const void *payload, size_t len, Miosa__OpenResult **ret_msg,
			    struct wire_error *err);
/* Host -> guest, answer to DnsQuery (agent side). */
__attribute__((warn_unused_result))
int wire_decode_dns_answer(const void *payload, size_t len, Miosa__DnsAnswer **ret_msg,
			   struct wire_error *err);

void wire_free_guest_open(Miosa__GuestOpen *msg);
void wire_free_host_to_guest(Miosa__HostToGuest *msg);
void wire_free_guest_to_host(Miosa__GuestToHost *msg);
void wire_free_open_result(Miosa__OpenResult *msg);
void wire_free_dns_answer(Miosa__DnsAnswer *msg);

/*
 * The encoding checks every wire_decode_*() starts with, for a codec that
 * states its own size bound and field rules (host/template_file.c):
 * wire_unpack() walks the payload (every string field valid UTF-8 without
 * NUL, no groups, nesting bounded), then unpacks it within
 * WIRE_UNPACK_BUDGET; free the message with
 * protobuf_c_message_free_unpacked(msg, NULL).  wire_check_text() is the walk
 * alone, for an encoder to check what it is about to write.  No length limit
 * here: the caller bounds len.  -EBADMSG / -ENOMEM as above.
 */
__attribute__((warn_unused_result))
int wire_unpack(const ProtobufCMessageDescriptor *desc, const void *payload, size_t len,
		ProtobufCMessage **ret_msg, struct wire_error *err);
__attribute__((warn_unused_result))
int wire_check_text(const ProtobufCMessageDescriptor *desc, const void *payload, size_t len,
		    struct wire_error *err);

/*
 * Validate msg by the same rules as the decoder, then write it as one frame
 * to buf (frame_encode()); *ret_len is the frame size.  buf is unspecified
 * on failure.
 */
__attribute__((warn_unused_result))
int wire_frame_guest_open(const Miosa__GuestOpen *msg, uint8_t *buf, size_t cap,
			  size_t *ret_len, struct wire_error *err);
__attribute__((warn_unused_result))
int wire_frame_host_to_guest(const Miosa__HostToGuest *msg, uint8_t *buf, size_t cap,
			     size_t *ret_len, struct wire_error *err);
__attribute__((warn_unused_result))
int wire_frame_guest_to_host(const Miosa__GuestToHost *msg, uint8_t *buf, size_t cap,
			     size_t *ret_len, struct wire_error *err);
__attribute__((warn_unused_result))
int wire_frame_open_result(const Miosa__OpenResult *msg, uint8_t *buf, size_t cap,
			   size_t *ret_len, struct wire_error *err);
__attribute__((warn_unused_result))
int wire_frame_dns_answer(const Miosa__DnsAnswer *msg, uint8_t *buf, size_t cap,
			  size_t *ret_len, struct wire_error *err);

#endif
