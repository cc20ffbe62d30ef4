/*
 * aws-chunked framing state machine with the chunk-signature chain (SHA-256 of each chunk's
 * data, HMAC-SHA256 chained from a seed signature), over OpenSSL 3 libcrypto.
 *
 * Plain C, no Python: the caller (chunked.pyx) owns buffers and turns return codes into
 * exceptions. Nothing here blocks or allocates after ck_init, so ck_feed may run without the GIL
 * as long as no other thread touches the same decoder.
 */
#ifndef RS3GW_CHUNKED_CORE_H
#define RS3GW_CHUNKED_CORE_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>

#define CK_LINE_BYTES_MAX 4096
#define CK_SIG_HEX 64

enum ck_state { CK_HEADER, CK_DATA, CK_DATA_CRLF, CK_TRAILER, CK_DONE };

/* ck_feed results: >= 0 means "keep going", < 0 is an error that ends the stream. */
enum ck_rc {
    CK_OK = 0,            /* all input consumed */
    CK_SPANS_FULL = 1,    /* span array full: emit them and call again with the rest */
    CK_TRAILER_LINE = 2,  /* a complete trailer line is in line/line_len: handle, call again */
    CK_ERR_SIZE = -1,          /* chunk size is not 1..16 hex digits */
    CK_ERR_TOO_BIG = -2,       /* chunk size over max_chunk_bytes (size in bad_size) */
    CK_ERR_NO_SIGNATURE = -3,  /* signed mode, no 64-hex chunk-signature extension */
    CK_ERR_SIGNATURE = -4,     /* chunk signature mismatch (details in provided/chunk_sha_hex) */
    CK_ERR_CRLF = -5,          /* chunk data not followed by CRLF */
    CK_ERR_LINE_TOO_LONG = -6, /* header/trailer line over CK_LINE_BYTES_MAX */
    CK_ERR_AFTER_END = -7,     /* non-CRLF bytes after the end of the body */
    CK_ERR_CRYPTO = -8,        /* libcrypto failed (out of memory, provider missing) */
};

/* A decoded payload piece: [offset, offset + length) of the buffer given to ck_feed. */
typedef struct {
    size_t offset;
    size_t length;
} ck_span;

typedef struct {
    int state;
    int is_signed;
    int crlf_matched;
    uint64_t remaining;      /* data bytes left in the current chunk */
    uint64_t max_chunk_bytes;
    uint64_t bad_size;       /* the declared size, for CK_ERR_TOO_BIG */
    uint64_t decoded_bytes;

    /* A partial header/trailer line carried between calls; bounded by CK_LINE_BYTES_MAX. */
    size_t line_len;
    unsigned char line[CK_LINE_BYTES_MAX];
    /* After CK_TRAILER_LINE: the line (LF and one CR removed). Points into `line` or the input;
     * valid until the next ck_feed call. */
    const unsigned char *tline;
    size_t tline_len;

    /* Signature chain. sts_prefix ("...PAYLOAD\n<date>\n<scope>\n") and seed are owned by the
     * caller and must outlive the decoder. prev is the seed until the first chunk verifies. */
    const unsigned char *sts_prefix;
    size_t sts_prefix_len;
    const unsigned char *seed;
    size_t seed_len;
    int have_prev;
    char prev[CK_SIG_HEX];
    char provided[CK_SIG_HEX];      /* current chunk's chunk-signature, lower case */
    char chunk_sha_hex[CK_SIG_HEX]; /* SHA-256 of the last chunk checked */
    EVP_MD_CTX *sha;
    EVP_MAC_CTX *hmac;
} ck_decoder;

/* Once per process: fetch the SHA-256 and HMAC implementations. 0 on success. */
int ck_global_init(void);

/* 0 on success, CK_ERR_CRYPTO otherwise (then ck_free still must be called). */
int ck_init(ck_decoder *d, int is_signed, uint64_t max_chunk_bytes, const unsigned char *key,
            size_t key_len, const unsigned char *sts_prefix, size_t sts_prefix_len,
            const unsigned char *seed, size_t seed_len);
void ck_free(ck_decoder *d);

/* Decode p[0:n). *consumed is how far it got; spans[0:*nspans) are the payload pieces found. */
int ck_feed(ck_decoder *d, const unsigned char *p, size_t n, size_t *consumed, ck_span *spans,
            size_t max_spans, size_t *nspans);

/* The signature the next chunk chains from (the seed until one chunk has verified). */
const char *ck_prev_signature(const ck_decoder *d, size_t *len);

/* After CK_ERR_CRYPTO: the first queued libcrypto error as text (queue cleared). */
void ck_crypto_error(char *buf, size_t len);

#endif
