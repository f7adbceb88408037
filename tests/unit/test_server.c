/*
 * test_server.c - the parts of the HTTP front end (src/server) that decide on outside input
 * alone, without libmicrohttpd or a vault: the request head's framing (custos_head_add and
 * custos_head_verdict, behind server.c's head_check).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "server/server.h"

#include "custos/banned.h"

/* The verdict for a head given as NULL-terminated name, value pairs; *auth gets the number of
   Authorization headers. */
static enum custos_head_verdict verdict(unsigned *auth, ...)
{
    struct custos_head h;
    const char *k, *v;
    va_list ap;

    memset(&h, 0, sizeof(h));
    va_start(ap, auth);
    while ((k = va_arg(ap, const char *)) != NULL) {
        v = va_arg(ap, const char *);
        custos_head_add(&h, k, v);
    }
    va_end(ap);
    *auth = h.authorization;
    return custos_head_verdict(&h);
}

static void test_head_verdict(void **state)
{
    unsigned a;

    (void)state;
    assert_int_equal(verdict(&a, NULL), CUSTOS_HEAD_OK);
    assert_int_equal(verdict(&a, "Host", "x", "Content-Length", "12", "Authorization", "Bearer t", NULL),
                     CUSTOS_HEAD_OK);
    assert_int_equal(a, 1);
    /* names without case, values as libmicrohttpd hands them */
    assert_int_equal(verdict(&a, "content-LENGTH", "65536", NULL), CUSTOS_HEAD_OK);
    /* over the cap: read and dropped up to the drain limit, unless its client holds it back */
    assert_int_equal(verdict(&a, "Content-Length", "65537", NULL), CUSTOS_HEAD_TOO_BIG_DRAIN);
    assert_int_equal(verdict(&a, "Content-Length", "1048576", NULL), CUSTOS_HEAD_TOO_BIG_DRAIN);
    assert_int_equal(verdict(&a, "Content-Length", "1048577", NULL), CUSTOS_HEAD_TOO_BIG);
    assert_int_equal(verdict(&a, "Content-Length", "65537", "expect", "100-Continue", NULL), CUSTOS_HEAD_TOO_BIG);
    assert_int_equal(verdict(&a, "Expect", "100-continue", "Content-Length", "65536", NULL), CUSTOS_HEAD_OK);
    assert_int_equal(verdict(&a, "Content-Length", "65537", "Expect", "x", NULL), CUSTOS_HEAD_TOO_BIG_DRAIN);
    /* libmicrohttpd answers the first Expect: a 100-continue anywhere holds the body back */
    assert_int_equal(verdict(&a, "Expect", "100-continue", "Expect", "x", "Content-Length", "70000", NULL),
                     CUSTOS_HEAD_TOO_BIG);
    assert_int_equal(verdict(&a, "Content-Length", "18446744073709551616", NULL), CUSTOS_HEAD_TOO_BIG);
    assert_int_equal(verdict(&a, "Content-Length", "0", NULL), CUSTOS_HEAD_OK);
    assert_int_equal(verdict(&a, "Content-Length", "1", "content-length", "1", NULL), CUSTOS_HEAD_LENGTH_REPEATED);
    assert_int_equal(verdict(&a, "Content-Length", "1", "Content-Length", "99999999", NULL),
                     CUSTOS_HEAD_LENGTH_REPEATED);
    assert_int_equal(verdict(&a, "Transfer-Encoding", "chunked", NULL), CUSTOS_HEAD_OK);
    assert_int_equal(verdict(&a, "transfer-encoding", "CHUNKED", NULL), CUSTOS_HEAD_OK);
    assert_int_equal(verdict(&a, "Transfer-Encoding", "chunked", "Content-Length", "5", NULL),
                     CUSTOS_HEAD_LENGTH_AND_ENCODING);
    assert_int_equal(verdict(&a, "Content-Length", "5", "Transfer-Encoding", "gzip", NULL),
                     CUSTOS_HEAD_LENGTH_AND_ENCODING);
    assert_int_equal(verdict(&a, "Transfer-Encoding", "gzip", NULL), CUSTOS_HEAD_ENCODING_UNSUPPORTED);
    assert_int_equal(verdict(&a, "Transfer-Encoding", "gzip, chunked", NULL), CUSTOS_HEAD_ENCODING_UNSUPPORTED);
    assert_int_equal(verdict(&a, "Transfer-Encoding", "chunked", "Transfer-Encoding", "chunked", NULL),
                     CUSTOS_HEAD_ENCODING_UNSUPPORTED);
    assert_int_equal(verdict(&a, "Transfer-Encoding", "", NULL), CUSTOS_HEAD_ENCODING_UNSUPPORTED);
    /* precedence: a repeated length first */
    assert_int_equal(verdict(&a, "Content-Length", "1", "Content-Length", "1", "Transfer-Encoding", "gzip", NULL),
                     CUSTOS_HEAD_LENGTH_REPEATED);
    /* Authorization repeated is counted for the caller, not a framing error */
    assert_int_equal(verdict(&a, "Authorization", "Bearer a", "authorization", "Bearer b", NULL), CUSTOS_HEAD_OK);
    assert_int_equal(a, 2);
    /* names: a token, and not a framing header's name with more after it, which is what
       libmicrohttpd makes of a space before the colon or a folded line (red-team finding) */
    assert_int_equal(verdict(&a, "Content-Length ", "48", NULL), CUSTOS_HEAD_BAD_NAME);
    assert_int_equal(verdict(&a, "Content-Length48", "", NULL), CUSTOS_HEAD_BAD_NAME);
    assert_int_equal(verdict(&a, "transfer-encoding\t", "chunked", "Content-Length", "5", NULL), CUSTOS_HEAD_BAD_NAME);
    assert_int_equal(verdict(&a, "Authorization ", "Bearer x", NULL), CUSTOS_HEAD_BAD_NAME);
    assert_int_equal(verdict(&a, "AuthorizationBearer", "", NULL), CUSTOS_HEAD_BAD_NAME);
    assert_int_equal(verdict(&a, "Authorizations", "x", NULL), CUSTOS_HEAD_BAD_NAME);
    assert_int_equal(verdict(&a, "Content-Lengths", "9999999", NULL), CUSTOS_HEAD_BAD_NAME);
    assert_int_equal(verdict(&a, "X Forwarded", "1", NULL), CUSTOS_HEAD_BAD_NAME);
    assert_int_equal(verdict(&a, "", "1", NULL), CUSTOS_HEAD_BAD_NAME);
    assert_int_equal(verdict(&a, "X\"y", "1", NULL), CUSTOS_HEAD_BAD_NAME);
    assert_int_equal(verdict(&a, "X-Caf\xc3\xa9", "1", NULL), CUSTOS_HEAD_BAD_NAME);
    /* ... first of all: before a repeated length */
    assert_int_equal(verdict(&a, "Content-Length", "1", "Content-Length", "2", "Content-Length :", "3", NULL),
                     CUSTOS_HEAD_BAD_NAME);
    /* Host: never two; one in every HTTP/1.1 request (RFC 9112 3.2) */
    assert_int_equal(verdict(&a, "Host", "x", "host", "y", NULL), CUSTOS_HEAD_HOST);
    {
        struct custos_head h;

        memset(&h, 0, sizeof(h));
        h.http11 = 1;
        custos_head_add(&h, "Content-Length", "2");
        assert_int_equal(custos_head_verdict(&h), CUSTOS_HEAD_HOST);
        custos_head_add(&h, "HOST", "vault.example");
        assert_int_equal(custos_head_verdict(&h), CUSTOS_HEAD_OK);
        h.http11 = 0; /* HTTP/1.0: optional */
        memset(&h, 0, sizeof(h));
        assert_int_equal(custos_head_verdict(&h), CUSTOS_HEAD_OK);
    }
    /* every token character is fine, and names that only look alike */
    assert_int_equal(verdict(&a, "X-!#$%&'*+-.^_`|~09az", "1", "Content-Language", "ko", "Content-Location", "/x",
                             "X-Content-Length", "5", "Authorisation", "x", NULL),
                     CUSTOS_HEAD_OK);
    assert_int_equal(a, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_head_verdict),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
