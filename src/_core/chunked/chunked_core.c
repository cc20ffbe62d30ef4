/*
 * aws-chunked decoding in C: see chunked_core.h for the contract.
 *
 * The grammar and its leniencies follow rs3gw/_core/chunked_ref.py exactly (the tests compare
 * the two on random and corrupted streams): header line "hex-size[;ext...]" ended by LF with an
 * optional CR, chunk data followed by exactly CRLF, a zero-size chunk, then trailer lines that the
 * caller parses.
 */
#include "chunked_core.h"

#include <stdio.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/params.h>

/* SHA-256 of the empty string: the "previous payload" field of every chunk string-to-sign. */
static const char STS_MIDDLE[] =
    "\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\n";

static EVP_MD *g_sha256;
static EVP_MAC *g_hmac;

int ck_global_init(void)
{
    /* Fetched once: an implicit fetch on every EVP_DigestInit would cost a lock per chunk. */
    if (g_sha256 == NULL)
        g_sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
    if (g_hmac == NULL)
        g_hmac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    return g_sha256 != NULL && g_hmac != NULL ? 0 : CK_ERR_CRYPTO;
}

int ck_init(ck_decoder *d, int is_signed, uint64_t max_chunk_bytes, const unsigned char *key,
            size_t key_len, const unsigned char *sts_prefix, size_t sts_prefix_len,
            const unsigned char *seed, size_t seed_len)
{
    memset(d, 0, sizeof *d);
    d->state = CK_HEADER;
    d->is_signed = is_signed;
    d->max_chunk_bytes = max_chunk_bytes;
    d->sts_prefix = sts_prefix;
    d->sts_prefix_len = sts_prefix_len;
    d->seed = seed;
    d->seed_len = seed_len;
    if (!is_signed)
        return 0;
    char digest[] = "SHA256";
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
        OSSL_PARAM_construct_end(),
    };
    static const unsigned char no_key[1];
    d->sha = EVP_MD_CTX_new();
    d->hmac = EVP_MAC_CTX_new(g_hmac);
    if (d->sha == NULL || d->hmac == NULL ||
        !EVP_MAC_init(d->hmac, key_len ? key : no_key, key_len, params))
        return CK_ERR_CRYPTO;
    return 0;
}

void ck_free(ck_decoder *d)
{
    EVP_MD_CTX_free(d->sha);
    EVP_MAC_CTX_free(d->hmac);
    d->sha = NULL;
    d->hmac = NULL;
}

const char *ck_prev_signature(const ck_decoder *d, size_t *len)
{
    if (d->have_prev) {
        *len = CK_SIG_HEX;
        return d->prev;
    }
    *len = d->seed_len;
    return (const char *)d->seed;
}

static void to_hex(const unsigned char *in, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
}

static int hex_value(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c |= 0x20;
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* Python's bytes.strip() set, so "  5 ;..." parses as the reference does. */
static int is_space(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

static void strip(const unsigned char **s, size_t *n)
{
    while (*n && is_space(**s)) {
        (*s)++;
        (*n)--;
    }
    while (*n && is_space((*s)[*n - 1]))
        (*n)--;
}

/* Finish the chunk's SHA-256 and check its HMAC against the chunk-signature. */
static int verify_chunk(ck_decoder *d)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int md_len = 0;
    size_t mac_len = 0;
    char expected[CK_SIG_HEX];
    size_t prev_len;
    const char *prev = ck_prev_signature(d, &prev_len);

    if (!EVP_DigestFinal_ex(d->sha, md, &md_len) || md_len != CK_SIG_HEX / 2)
        return CK_ERR_CRYPTO;
    to_hex(md, md_len, d->chunk_sha_hex);
    /* A NULL key re-initialises the MAC with the key given in ck_init. */
    if (!EVP_MAC_init(d->hmac, NULL, 0, NULL) ||
        !EVP_MAC_update(d->hmac, d->sts_prefix, d->sts_prefix_len) ||
        !EVP_MAC_update(d->hmac, (const unsigned char *)prev, prev_len) ||
        !EVP_MAC_update(d->hmac, (const unsigned char *)STS_MIDDLE, sizeof STS_MIDDLE - 1) ||
        !EVP_MAC_update(d->hmac, (const unsigned char *)d->chunk_sha_hex, CK_SIG_HEX) ||
        !EVP_MAC_final(d->hmac, md, &mac_len, sizeof md) || mac_len != CK_SIG_HEX / 2)
        return CK_ERR_CRYPTO;
    to_hex(md, mac_len, expected);
    if (CRYPTO_memcmp(expected, d->provided, CK_SIG_HEX) != 0)
        return CK_ERR_SIGNATURE;
    memcpy(d->prev, expected, CK_SIG_HEX);
    d->have_prev = 1;
    return 0;
}

/* One chunk header line, without its LF and trailing CR. */
static int chunk_header(ck_decoder *d, const unsigned char *line, size_t n)
{
    const unsigned char *semi = memchr(line, ';', n);
    const unsigned char *size_text = line;
    size_t size_len = semi ? (size_t)(semi - line) : n;
    strip(&size_text, &size_len);
    if (size_len < 1 || size_len > 16)
        return CK_ERR_SIZE;
    uint64_t size = 0;
    for (size_t i = 0; i < size_len; i++) {
        int v = hex_value(size_text[i]);
        if (v < 0)
            return CK_ERR_SIZE;
        size = size << 4 | (uint64_t)v;
    }
    if (size > d->max_chunk_bytes) {
        d->bad_size = size;
        return CK_ERR_TOO_BIG;
    }
    if (d->is_signed) {
        /* Extensions are ";key=value" pairs; the last chunk-signature wins, as in the twin. */
        const unsigned char *sig = NULL;
        size_t sig_len = 0;
        const unsigned char *ext = semi ? semi + 1 : line + n;
        const unsigned char *end = line + n;
        while (semi) {
            const unsigned char *next = memchr(ext, ';', (size_t)(end - ext));
            const unsigned char *seg_end = next ? next : end;
            const unsigned char *eq = memchr(ext, '=', (size_t)(seg_end - ext));
            const unsigned char *key = ext;
            size_t key_len = (size_t)((eq ? eq : seg_end) - ext);
            strip(&key, &key_len);
            if (key_len == 15 && memcmp(key, "chunk-signature", 15) == 0) {
                sig = eq ? eq + 1 : seg_end;
                sig_len = (size_t)(seg_end - sig);
                strip(&sig, &sig_len);
            }
            if (!next)
                break;
            ext = next + 1;
        }
        if (sig_len != CK_SIG_HEX)
            return CK_ERR_NO_SIGNATURE;
        for (size_t i = 0; i < CK_SIG_HEX; i++) {
            if (hex_value(sig[i]) < 0)
                return CK_ERR_NO_SIGNATURE;
            d->provided[i] = (char)(sig[i] >= 'A' && sig[i] <= 'F' ? sig[i] | 0x20 : sig[i]);
        }
        if (!EVP_DigestInit_ex2(d->sha, g_sha256, NULL))
            return CK_ERR_CRYPTO;
    }
    if (size == 0) {
        if (d->is_signed) {
            int rc = verify_chunk(d);
            if (rc < 0)
                return rc;
        }
        d->state = CK_TRAILER;
    } else {
        d->remaining = size;
        d->state = CK_DATA;
    }
    return 0;
}

/*
 * Header or trailer state: take bytes up to and including one LF. Returns 0 with *pos advanced
 * (line incomplete, or a header line handled), CK_TRAILER_LINE, or an error.
 */
static int take_line(ck_decoder *d, const unsigned char *p, size_t n, size_t *pos)
{
    size_t room = CK_LINE_BYTES_MAX - d->line_len;
    size_t avail = n - *pos;
    /* Look at one byte more than fits: no LF there means the line is over the limit. */
    size_t look = avail < room + 1 ? avail : room + 1;
    const unsigned char *start = p + *pos;
    const unsigned char *lf = memchr(start, '\n', look);
    if (lf == NULL) {
        if (look > room)
            return CK_ERR_LINE_TOO_LONG;
        memcpy(d->line + d->line_len, start, look);
        d->line_len += look;
        *pos = n;
        return 0;
    }
    size_t idx = (size_t)(lf - start);
    const unsigned char *line;
    size_t len;
    if (d->line_len) {
        memcpy(d->line + d->line_len, start, idx); /* idx <= room: fits */
        line = d->line;
        len = d->line_len + idx;
        d->line_len = 0;
    } else {
        line = start; /* whole line in the input: parse it in place */
        len = idx;
    }
    *pos += idx + 1;
    /* A bare LF is accepted as well as CRLF: the framing stays unambiguous either way. */
    if (len && line[len - 1] == '\r')
        len--;
    if (d->state == CK_HEADER)
        return chunk_header(d, line, len);
    d->tline = line;
    d->tline_len = len;
    return CK_TRAILER_LINE;
}

int ck_feed(ck_decoder *d, const unsigned char *p, size_t n, size_t *consumed, ck_span *spans,
            size_t max_spans, size_t *nspans)
{
    size_t pos = 0, ns = 0;
    int rc = CK_OK;
    while (pos < n) {
        switch (d->state) {
        case CK_DATA: {
            if (ns == max_spans) {
                rc = CK_SPANS_FULL;
                goto out;
            }
            size_t take = n - pos < d->remaining ? n - pos : (size_t)d->remaining;
            if (d->is_signed && !EVP_DigestUpdate(d->sha, p + pos, take)) {
                rc = CK_ERR_CRYPTO;
                goto out;
            }
            spans[ns].offset = pos;
            spans[ns].length = take;
            ns++;
            pos += take;
            d->remaining -= take;
            d->decoded_bytes += take;
            if (d->remaining == 0) {
                if (d->is_signed && (rc = verify_chunk(d)) < 0)
                    goto out;
                d->state = CK_DATA_CRLF;
            }
            break;
        }
        case CK_DATA_CRLF:
            while (d->crlf_matched < 2 && pos < n) {
                if (p[pos] != (d->crlf_matched == 0 ? '\r' : '\n')) {
                    rc = CK_ERR_CRLF;
                    goto out;
                }
                d->crlf_matched++;
                pos++;
            }
            if (d->crlf_matched == 2) {
                d->crlf_matched = 0;
                d->state = CK_HEADER;
            }
            break;
        case CK_DONE:
            /* Only stray line ends may follow the end of the body. */
            for (; pos < n; pos++) {
                if (p[pos] != '\r' && p[pos] != '\n') {
                    rc = CK_ERR_AFTER_END;
                    goto out;
                }
            }
            break;
        default: /* CK_HEADER, CK_TRAILER */
            rc = take_line(d, p, n, &pos);
            if (rc != 0)
                goto out;
            break;
        }
    }
out:
    *consumed = pos;
    *nspans = ns;
    return rc;
}

void ck_crypto_error(char *buf, size_t len)
{
    unsigned long e = ERR_get_error();
    if (e == 0)
        snprintf(buf, len, "unknown libcrypto error");
    else
        ERR_error_string_n(e, buf, len);
    ERR_clear_error();
}
