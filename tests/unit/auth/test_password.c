/*
 * test_password.c - password hashing and policy: an Argon2id known-answer
 * vector of the reference implementation, round trips, rehash on a change of
 * parameters, and the NIST SP 800-63B policy (length in code points after
 * NFKC, the list of common passwords, user and product names, repeats),
 * attacked with case, full-width forms and invalid UTF-8. Few hashes: each
 * costs 64 MiB and runs under ASan in CI.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "auth/password.h"

/* phc-winner-argon2 reference vector: Argon2id v=19, password "password",
 * salt "somesalt", t=2, m=65536 KiB, p=1, 32-byte tag. Sized like a stored
 * hash: libsodium declares its argument as char[crypto_pwhash_STRBYTES]. */
static const char kat_argon2id[CV_PASSWORD_HASH_MAX] =
	"$argon2id$v=19$m=65536,t=2,p=1$c29tZXNhbHQ$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc";
/* The same inputs with Argon2i (from the same reference test suite). */
static const char kat_argon2i[CV_PASSWORD_HASH_MAX] =
	"$argon2i$v=19$m=65536,t=2,p=1$c29tZXNhbHQ$wWKIMhR9lyDFvRz9YTZweHKfbftvj+qf+YFY4NeBbtA";

static void argon2id_known_answer(void **state)
{
	assert_true(sodium_init() >= 0);
	/* libsodium itself, on the raw bytes */
	assert_int_equal(crypto_pwhash_str_verify(kat_argon2id, "password", 8), 0);
	assert_int_not_equal(crypto_pwhash_str_verify(kat_argon2id, "passwore", 8), 0);
	/* and through the wrapper: NFKC leaves ASCII as it is */
	assert_int_equal(cv_password_verify(kat_argon2id, "password"), CV_OK);
}

static void hash_round_trip(void **state)
{
	const cv_password_params_t params = CV_PASSWORD_PARAMS_DEFAULT;
	cv_password_params_t more = params;
	char h[CV_PASSWORD_HASH_MAX];

	/* entered with full-width letters and digits: the same password after NFKC */
	assert_int_equal(cv_password_hash(&params, "ｃｏｒｒｅｃｔ horse 4２", h), CV_OK);
	assert_non_null(strstr(h, "$argon2id$v=19$"));
	assert_null(strstr(h, "horse"));
	assert_int_equal(cv_password_verify(h, "correct horse 42"), CV_OK);
	assert_int_equal(cv_password_verify(h, "ｃｏｒｒｅｃｔ horse 4２"), CV_OK);
	assert_int_equal(cv_password_verify(h, "correct horse 43"), CV_E_DENIED);
	assert_int_equal(cv_password_verify(h, "Correct horse 42"), CV_E_DENIED);
	assert_int_equal(cv_password_verify(h, "correct horse 42\xff"), CV_E_DENIED);
	assert_int_equal(cv_password_verify(NULL, "correct horse 42"), CV_E_DENIED);
	assert_int_equal(cv_password_verify(h, NULL), CV_E_DENIED);
	assert_int_equal(cv_password_verify("$argon2id$v=19$m=65536,t=2,p=1$", "x"), CV_E_DENIED);

	/* rehash when the configured parameters move, not before */
	assert_int_equal(cv_password_needs_rehash(h, &params), 0);
	assert_int_equal(cv_password_needs_rehash(h, NULL), 0);
	more.opslimit++;
	assert_int_equal(cv_password_needs_rehash(h, &more), 1);
	more = params;
	more.memlimit *= 2;
	assert_int_equal(cv_password_needs_rehash(h, &more), 1);
	assert_int_equal(cv_password_needs_rehash(kat_argon2i, &params), 1); /* not Argon2id */
	assert_int_equal(cv_password_needs_rehash(kat_argon2id, &params), 0); /* the same limits */
	assert_int_equal(cv_password_needs_rehash("not a hash", &params), 1);
	assert_int_equal(cv_password_needs_rehash(NULL, &params), 1);
}

static void hash_refuses(void **state)
{
	cv_password_params_t p = CV_PASSWORD_PARAMS_DEFAULT;
	char h[CV_PASSWORD_HASH_MAX];
	char big[CV_PASSWORD_MAX_BYTES + 2];

	assert_int_equal(cv_password_params_check(&p), CV_OK);
	p.opslimit = crypto_pwhash_OPSLIMIT_INTERACTIVE - 1;
	assert_int_equal(cv_password_params_check(&p), CV_E_INVALID);
	assert_int_equal(cv_password_hash(&p, "long enough password", h), CV_E_INVALID);
	assert_string_equal(h, "");
	p.opslimit = crypto_pwhash_OPSLIMIT_INTERACTIVE;
	p.memlimit = crypto_pwhash_MEMLIMIT_INTERACTIVE / 2;
	assert_int_equal(cv_password_hash(&p, "long enough password", h), CV_E_INVALID);
	assert_int_equal(cv_password_params_check(NULL), CV_E_INVALID);
	/* refused before any hashing */
	assert_int_equal(cv_password_hash(NULL, "bad \xc3\x28 utf-8", h), CV_E_INVALID);
	assert_string_equal(h, "");
	memset(big, 'a', sizeof big - 1);
	big[sizeof big - 1] = '\0';
	assert_int_equal(cv_password_hash(NULL, big, h), CV_E_INVALID);
	assert_int_equal(cv_password_verify(kat_argon2id, big), CV_E_DENIED);
}

/* Checks one password, and that the message, if any, does not echo it. */
static cv_rc check(const char *user, const char *pw, char *why, size_t whylen)
{
	cv_rc rc = cv_password_check(NULL, user, pw, why, whylen);
	if (pw && strlen(pw) >= 4)
		assert_null(strstr(why, pw));
	if (rc == CV_OK)
		assert_string_equal(why, "");
	else
		assert_true(strlen(why) > 0);
	return rc;
}

static void policy_length(void **state)
{
	char why[128];
	/* 11 and 12 ASCII characters */
	assert_int_equal(check("alice", "tkq7-vmw2-z", why, sizeof why), CV_E_INVALID);
	assert_non_null(strstr(why, "too short"));
	assert_non_null(strstr(why, "12"));
	assert_int_equal(check("alice", "tkq7-vmw2-zp", why, sizeof why), CV_OK);
	/* counted in code points, not bytes: 11 kana are 33 bytes */
	assert_int_equal(check("alice", "しずかなもりのおくにいる", why, sizeof why), CV_OK);
	assert_int_equal(check("alice", "しずかなもりのおくにい", why, sizeof why), CV_E_INVALID);
	assert_non_null(strstr(why, "too short"));
	assert_int_equal(check("alice", "ζωντανό φως", why, sizeof why), CV_E_INVALID);
	assert_int_equal(check("alice", "ζωντανό φως!", why, sizeof why), CV_OK);
	/* counted after NFKC: "e" + combining acute is one code point then */
	assert_int_equal(check("alice", "cafe\xcc\x81 noir 1", why, sizeof why), CV_E_INVALID);
	assert_int_equal(check("alice", "cafe\xcc\x81 noir 12", why, sizeof why), CV_OK);
	/* spaces count; no composition rules */
	assert_int_equal(check("alice", "my old cat is grey", why, sizeof why), CV_OK);
	assert_int_equal(check("alice", "", why, sizeof why), CV_E_INVALID);
	assert_int_equal(cv_password_check(NULL, "alice", NULL, why, sizeof why), CV_E_INVALID);

	/* at most 256 */
	char pw[300];
	for (size_t i = 0; i < 257; i++)
		pw[i] = (char)('a' + (i * 7) % 26);
	pw[257] = '\0';
	assert_int_equal(check("alice", pw, why, sizeof why), CV_E_INVALID);
	assert_non_null(strstr(why, "too long"));
	pw[256] = '\0';
	assert_int_equal(check("alice", pw, why, sizeof why), CV_OK);
}

static void policy_list(void **state)
{
	char why[128];
	size_t n = 0;
	assert_int_equal(cv_password_list_load(&n), CV_OK);
	assert_true(n >= 29000);
	assert_true(cv_password_list_contains("password"));
	assert_true(cv_password_list_contains("PassWord"));
	assert_true(cv_password_list_contains("ｐａｓｓｗｏｒｄ"));
	assert_false(cv_password_list_contains("tkq7-vmw2-zpx"));
	assert_false(cv_password_list_contains("\xff"));

	const char *hits[] = { "leavemealone", "LeaveMeAlone", "QWERTY123456", "1qaz2wsx3edc",
			       "ＬＥＡＶＥＭＥＡＬＯＮＥ" };
	for (size_t i = 0; i < sizeof hits / sizeof hits[0]; i++) {
		assert_int_equal(check("alice", hits[i], why, sizeof why), CV_E_INVALID);
		assert_string_equal(why, "the password is on a list of common or breached passwords");
	}
	/* a list entry inside a longer password is fine */
	assert_int_equal(check("alice", "leavemealone tomorrow", why, sizeof why), CV_OK);
}

static void policy_names(void **state)
{
	char why[128];
	assert_int_equal(check("alice", "my friend alice123", why, sizeof why), CV_E_INVALID);
	assert_string_equal(why, "the password contains the user name");
	assert_int_equal(check("Alice", "MY FRIEND ALICE123", why, sizeof why), CV_E_INVALID);
	assert_int_equal(check("alice", "my friend ａｌｉｃｅ123", why, sizeof why), CV_E_INVALID);
	assert_int_equal(check("ＡＬＩＣＥ", "my friend alice123", why, sizeof why), CV_E_INVALID);
	/* short user names are not looked for */
	assert_int_equal(check("al", "my friend alice123", why, sizeof why), CV_OK);
	assert_int_equal(check(NULL, "my friend alice123", why, sizeof why), CV_OK);
	assert_int_equal(check("", "my friend alice123", why, sizeof why), CV_OK);
	assert_int_equal(check("al\xff", "my friend alice123", why, sizeof why), CV_E_INVALID);
	assert_non_null(strstr(why, "user name"));

	assert_int_equal(check("alice", "CareVault rocks 2024", why, sizeof why), CV_E_INVALID);
	assert_string_equal(why, "the password contains the name of the product");
	assert_int_equal(check("alice", "ｃａｒｅｖａｕｌｔ rocks 2024", why, sizeof why), CV_E_INVALID);
	assert_int_equal(check("alice", "mycarevault!", why, sizeof why), CV_E_INVALID);
}

static void policy_repeats_and_utf8(void **state)
{
	char why[128];
	assert_int_equal(check("alice", "aaaaaaaaaaaaaaa", why, sizeof why), CV_E_INVALID);
	assert_string_equal(why, "the password is one character repeated");
	assert_int_equal(check("alice", "aAaAaAaAaAaAaA", why, sizeof why), CV_E_INVALID);
	assert_int_equal(check("alice", "ééééééééééééé", why, sizeof why), CV_E_INVALID);
	assert_int_equal(check("alice", "aaaaaaaaaaaaab", why, sizeof why), CV_OK);

	const char *bad[] = { "valid start \xff then", "overlong \xc0\xaf slash!!",
			      "surrogate \xed\xa0\x80 here!", "truncated end \xe2\x82" };
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		assert_int_equal(check("alice", bad[i], why, sizeof why), CV_E_INVALID);
		assert_string_equal(why, "the password is not valid utf-8 text");
	}
}

static void policy_misc(void **state)
{
	char why[128], tiny[8];
	cv_password_policy_t pol = CV_PASSWORD_POLICY_DEFAULT;

	assert_int_equal(cv_password_policy_check(&pol), CV_OK);
	pol.min_chars = 16;
	assert_int_equal(cv_password_check(&pol, "bob", "tkq7-vmw2-zpx", why, sizeof why), CV_E_INVALID);
	assert_non_null(strstr(why, "16"));
	pol.min_chars = 6; /* below NIST's floor */
	assert_int_equal(cv_password_check(&pol, "bob", "tkq7-vmw2-zpx", why, sizeof why), CV_E_INVALID);
	assert_string_equal(why, "the password policy is not valid");
	pol.min_chars = 12;
	pol.max_chars = 32; /* NIST: allow at least 64 */
	assert_int_equal(cv_password_policy_check(&pol), CV_E_INVALID);
	/* why may be NULL or short */
	assert_int_equal(cv_password_check(NULL, "bob", "short", NULL, 0), CV_E_INVALID);
	assert_int_equal(cv_password_check(NULL, "bob", "short", tiny, sizeof tiny), CV_E_INVALID);
	assert_int_equal(strlen(tiny), sizeof tiny - 1);
	assert_int_equal(cv_password_check(NULL, "bob", "tkq7-vmw2-zpx", tiny, sizeof tiny), CV_OK);
	assert_string_equal(tiny, "");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(argon2id_known_answer),
		cmocka_unit_test(hash_round_trip),
		cmocka_unit_test(hash_refuses),
		cmocka_unit_test(policy_length),
		cmocka_unit_test(policy_list),
		cmocka_unit_test(policy_names),
		cmocka_unit_test(policy_repeats_and_utf8),
		cmocka_unit_test(policy_misc),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
