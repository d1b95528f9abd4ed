/*
 * fuzz_audit.c - the checkpoint line parser (verification reads the exported
 * checkpoint file, which lives outside the server and may have been
 * tampered with): never crashes nor reads past the length it is given; a
 * line it accepts has positive numbers, and the line made from it again
 * parses to the same checkpoint.
 */
#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "audit/audit.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void assert_same(const cv_store_checkpoint_t *a, const cv_store_checkpoint_t *b)
{
	assert(a->pos == b->pos);
	assert(a->at_us == b->at_us);
	assert(memcmp(a->hash, b->hash, sizeof a->hash) == 0);
	assert(memcmp(a->key, b->key, sizeof a->key) == 0);
	assert(memcmp(a->sig, b->sig, sizeof a->sig) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* the bytes as given, not NUL-terminated: the parser must keep to size */
	cv_store_checkpoint_t c, again;
	if (cv_audit_checkpoint_parse((const char *)data, size, &c) != CV_OK)
		return 0;
	assert(c.pos > 0 && c.at_us > 0);
	cv_buf_t line;
	cv_buf_init(&line, 4096);
	assert(cv_audit_checkpoint_line(&c, &line) == CV_OK);
	assert(cv_audit_checkpoint_parse(line.data, line.len, &again) == CV_OK);
	assert_same(&c, &again);
	/* and the signed message of both is one */
	char m1[160], m2[160];
	cv_audit_checkpoint_message(&c, m1);
	cv_audit_checkpoint_message(&again, m2);
	assert(strcmp(m1, m2) == 0);
	cv_buf_release(&line);
	return 0;
}
