/*
 * fuzz_backup.c - the record parser of backups (store/backup.c), which reads
 * what a restore is given: any input parses or is refused, never crashes;
 * what it accepts serialises back to the same bytes (nothing read twice or
 * skipped); and a whole backup file made of the input is refused, never
 * crashes, without the right key (the header and chunk readers).
 */
#include <assert.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sodium.h>

#include "store/store.h"

int LLVMFuzzerInitialize(int *argc, char **argv[]);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static cv_key_t *master;
static char path[64];

int LLVMFuzzerInitialize(int *argc, char **argv[])
{
	(void)argc;
	(void)argv;
	uint8_t raw[CV_KEY_BYTES];
	if (sodium_init() < 0)
		return -1;
	memset(raw, 3, sizeof raw);
	snprintf(path, sizeof path, "/tmp/cv-fuzz-backup-%d", (int)getpid());
	return cv_crypto_key_from_bytes(raw, 0, &master) == CV_OK ? 0 : -1;
}

static void records(const uint8_t *data, size_t size)
{
	cv_pool_t pool;
	cv_pool_init(&pool, 0);
	size_t at = 0;
	while (at < size) {
		cv_store_rec_t rec;
		size_t used = 0;
		if (cv_store_rec_parse(data + at, size - at, &pool, &rec, &used) != CV_OK)
			break;
		assert(used >= 1 && used <= size - at);
		if (data[at] != 100) { /* END is internal to backup.c */
			cv_buf_t again;
			cv_buf_init(&again, size + 64);
			assert(cv_store_rec_write(&rec, &again) == CV_OK);
			assert(again.len == used && memcmp(again.data, data + at, used) == 0);
			cv_buf_release(&again);
		}
		at += used;
	}
	cv_pool_release(&pool);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	records(data, size);
	/* as a backup file: "carevault backup 1\n" then the input */
	FILE *f = fopen(path, "wb");
	if (!f)
		return 0;
	fputs("carevault backup 1\n", f);
	fwrite(data, 1, size, f);
	fclose(f);
	cv_store_backup_info_t info;
	char err[256];
	assert(cv_store_backup_verify(path, master, NULL, NULL, &info, err, sizeof err) != CV_OK);
	unlink(path);
	return 0;
}
