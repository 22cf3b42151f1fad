/* AWS Signature Version 4: parsing, verification and signing.
 *
 * Verification follows the published algorithm: canonical request →
 * string to sign → HMAC chain from the secret. It accepts the Authorization
 * header form and the presigned query form (X-Amz-Signature). Errors carry
 * the AWS error type a client expects (MissingAuthenticationTokenException,
 * IncompleteSignatureException, InvalidSignatureException, ...). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include "basic/err.h"

#define SIGV4_MAX_SKEW_SEC (15 * 60)

typedef struct sigv4_header {
    const char *name; /* any case */
    const char *value;
} sigv4_header;

typedef struct sigv4_request {
    const char *method;
    const char *path;  /* as sent on the wire, still percent-encoded */
    const char *query; /* raw query without '?', or NULL */
    const sigv4_header *headers;
    size_t nheaders;
    const char *payload_hash; /* lower-case hex SHA-256 of the body */
} sigv4_request;

typedef struct sigv4_auth {
    char access_key[129];
    char date[9]; /* YYYYMMDD from the credential scope */
    char region[64];
    char service[64];
    char amz_date[17]; /* YYYYMMDDTHHMMSSZ */
    char signature[65];
    char *signed_headers; /* "host;x-amz-date", owned */
    bool presigned;
    long expires; /* presigned only */
} sigv4_auth;

void sigv4_auth_done(sigv4_auth *a);

/* Extracts the signature parameters. Missing auth → MissingAuthenticationTokenException;
 * malformed → IncompleteSignatureException. */
int sigv4_parse(const sigv4_request *req, sigv4_auth *ret, sk_err *err);

/* Checks the signature with the given secret, and the clock skew (or the
 * presigned expiry) against now. */
int sigv4_verify(const sigv4_request *req, const sigv4_auth *auth, const char *secret, time_t now,
                 sk_err *err);

/* The canonical request and string to sign (exposed for tests and error messages). */
char *sigv4_canonical_request(const sigv4_request *req, const char *signed_headers);
char *sigv4_string_to_sign(const char *amz_date, const char *scope, const char *canonical);
void sigv4_signing_key(const char *secret, const char *date, const char *region,
                       const char *service, unsigned char out[32]);

/* Client side: computes the Authorization header value for a request that
 * already carries host and x-amz-date headers (and any other headers listed in
 * signed_headers, which must be sorted, lower-case and ';'-separated). */
char *sigv4_authorization(const sigv4_request *req, const char *access_key, const char *secret,
                          const char *region, const char *service, const char *amz_date,
                          const char *signed_headers);
