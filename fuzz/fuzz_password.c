/*
 * fuzz_password.c - the password policy on arbitrary bytes: the input is
 * split at its first NUL into a user name and a password (no NUL: no user
 * name). cv_password_check never crashes, always leaves a terminated message
 * (empty exactly when it accepts) that is one of its fixed messages, so never
 * echoes the input, and refuses whatever is not valid UTF-8. No Argon2id here: far too slow.
 */
#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <unistr.h>

#include "auth/password.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const messages[] = {
	"a password is required",
	"the password is too long: use at most 256 characters",
	"the password is too short: use at least 12 characters",
	"the password is not valid utf-8 text",
	"the password is one character repeated",
	"the password contains the name of the product",
	"the password contains the user name",
	"the user name is too long",
	"the user name is not valid utf-8 text",
	"the password is on a list of common or breached passwords",
	"out of memory while checking the password",
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *buf = malloc(size + 1);
	char why[160];
	if (!buf)
		return 0;
	memcpy(buf, data, size);
	buf[size] = '\0';

	const char *user = NULL, *pw = buf;
	size_t nul = strlen(buf);
	if (nul < size) {
		user = buf;
		pw = buf + nul + 1;
	}
	memset(why, 'x', sizeof why);
	cv_rc rc = cv_password_check(NULL, user, pw, why, sizeof why);
	assert(rc == CV_OK || rc == CV_E_INVALID || rc == CV_E_NOMEM);
	assert(memchr(why, '\0', sizeof why) != NULL);
	assert((rc == CV_OK) == (why[0] == '\0'));
	/* the message is one of a fixed set: nothing of the input is echoed */
	if (rc != CV_OK) {
		int known = 0;
		for (size_t i = 0; i < sizeof messages / sizeof messages[0]; i++)
			known |= strcmp(why, messages[i]) == 0;
		assert(known);
	}
	size_t pwlen = strlen(pw);
	if (rc == CV_OK)
		assert(pwlen <= CV_PASSWORD_MAX_BYTES && u8_check((const uint8_t *)pw, pwlen) == NULL);
	/* the list lookup agrees with the policy on what it refuses */
	if (rc == CV_OK)
		assert(!cv_password_list_contains(pw));
	free(buf);
	return 0;
}
