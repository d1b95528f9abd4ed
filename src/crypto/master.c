/*
 * master.c - where the master key lives (crypto.h, "the master key";
 * decision 0010). Three sources behind one small interface:
 *   file    DATA/master.key (0600): 32 raw bytes (version 0), or, once
 *           rotated, a text file of versions ("key <id> <hex>" lines, the
 *           last one current);
 *   env     $CAREVAULT_MASTER_KEY, 64 hex digits (version 0), wiped from
 *           the process's environment once read;
 *   pkcs11  AES-256 key objects in a token, one per version (pkcs11.c).
 * A master key is a cv_key_t whose seal and open come here: sealing uses the
 * current version, opening the version the blob names, and a version this
 * process does not hold yet (another process rotated) makes it read the
 * source again once.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "core/io.h"
#include "crypto/keysrc.h"
#include "crypto/pkcs11.h"

#define VERSIONS_MAX 64
#define FILE_MAGIC "carevault master key file 2\n"
#define FILE_MAX (64 + VERSIONS_MAX * 80)
#define NONCE 12
#define TAG 16

enum { SRC_FILE, SRC_ENV, SRC_PKCS11 };

struct cv_keysrc {
	_Atomic int refs;
	pthread_mutex_t mu;
	int kind;
	char path[4096];               /* file */
	char retired[4096];            /* file: a retired-versions file read with it ("" none) */
	uint32_t ids[VERSIONS_MAX];    /* ascending; the last is current */
	cv_key_t *keys[VERSIONS_MAX];  /* file, env: the versions' keys (id = version) */
	size_t n;
	cv_p11_t *tok;                 /* pkcs11 */
};

/* ---- the key file ---------------------------------------------------------- */

static void free_versions(struct cv_keysrc *s)
{
	for (size_t i = 0; i < s->n; i++)
		cv_key_free(s->keys[i]);
	s->n = 0;
}

static cv_rc add_version(struct cv_keysrc *s, uint32_t id, const uint8_t raw[CV_KEY_BYTES])
{
	if (s->n == VERSIONS_MAX || (s->n && s->ids[s->n - 1] >= id))
		return CV_E_INVALID;
	cv_rc rc = cv_crypto_key_from_bytes(raw, id, &s->keys[s->n]);
	if (!rc)
		s->ids[s->n++] = id;
	return rc;
}

/* Parses the versioned text form. */
static cv_rc parse_versions(struct cv_keysrc *s, char *text)
{
	if (strncmp(text, FILE_MAGIC, strlen(FILE_MAGIC)) != 0)
		return CV_E_INVALID;
	cv_rc rc = CV_OK;
	char *save = NULL;
	for (char *line = strtok_r(text + strlen(FILE_MAGIC), "\n", &save); !rc && line; line = strtok_r(NULL, "\n", &save)) {
		uint8_t raw[CV_KEY_BYTES];
		char *end = NULL;
		if (strncmp(line, "key ", 4) != 0)
			return CV_E_INVALID;
		errno = 0;
		unsigned long id = strtoul(line + 4, &end, 10);
		if (errno || end == line + 4 || *end != ' ' || id > UINT32_MAX || strlen(end + 1) != 2 * CV_KEY_BYTES ||
		    cv_crypto_unhex(end + 1, raw, CV_KEY_BYTES))
			return CV_E_INVALID;
		rc = add_version(s, (uint32_t)id, raw);
		sodium_memzero(raw, sizeof raw);
	}
	return !rc && s->n == 0 ? CV_E_INVALID : rc;
}

/* Reads the key file's versions (replacing those held). */
static cv_rc read_file(struct cv_keysrc *s, char *err, size_t errlen)
{
	struct stat st;
	char *buf = sodium_malloc(FILE_MAX + 1);
	if (!buf)
		return CV_E_NOMEM;
	cv_rc rc = CV_OK;
	int fd = open(s->path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	ssize_t n = -1;
	if (fd < 0) {
		snprintf(err, errlen, "cannot open master key %s: %s (run 'carevault init' first)", s->path, strerror(errno));
		rc = CV_E_IO;
	} else if (fstat(fd, &st) || !S_ISREG(st.st_mode)) {
		snprintf(err, errlen, "master key %s is not a regular file", s->path);
		rc = CV_E_IO;
	} else if (st.st_mode & (S_IRWXG | S_IRWXO)) {
		snprintf(err, errlen, "master key %s is accessible by group or others (mode %03o): run 'chmod 600 %s'",
			 s->path, (unsigned)(st.st_mode & 0777), s->path);
		rc = CV_E_DENIED;
	} else if ((n = read(fd, buf, FILE_MAX + 1)) < 0 || n > FILE_MAX) {
		snprintf(err, errlen, "cannot read master key %s", s->path);
		rc = CV_E_IO;
	}
	if (fd >= 0)
		close(fd);
	if (!rc) {
		buf[n] = '\0';
		free_versions(s);
		rc = n == CV_KEY_BYTES ? add_version(s, 0, (const uint8_t *)buf) : parse_versions(s, buf);
		if (rc) {
			free_versions(s);
			snprintf(err, errlen, "master key %s must hold exactly %d bytes (or versions written by "
				 "carevault keys rotate-master)", s->path, CV_KEY_BYTES);
			rc = CV_E_CRYPTO;
		}
	}
	sodium_free(buf);
	return rc;
}

/* Makes path hold exactly text (0600): a new file beside it, fsynced,
 * renamed over it, and the directory fsynced. */
static cv_rc replace_file(const char *path, const char *text, size_t len, char *err, size_t errlen)
{
	char tmp[4200], dir[4096];
	snprintf(tmp, sizeof tmp, "%s.new", path);
	snprintf(dir, sizeof dir, "%s", path);
	char *slash = strrchr(dir, '/');
	if (slash)
		*slash = '\0';
	else
		snprintf(dir, sizeof dir, ".");
	unlink(tmp);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
	cv_rc rc = fd < 0 ? CV_E_IO : cv_write_all(fd, text, len);
	if (!rc && fsync(fd) != 0)
		rc = CV_E_IO;
	if (fd >= 0)
		close(fd);
	if (!rc && rename(tmp, path) != 0)
		rc = CV_E_IO;
	int dfd = rc ? -1 : open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd >= 0) {
		fsync(dfd);
		close(dfd);
	}
	if (rc) {
		unlink(tmp);
		snprintf(err, errlen, "cannot write %s: %s", path, strerror(errno));
	}
	return rc;
}

/* The versioned text of keys[from..to) (in guarded memory; the caller frees). */
static char *versions_text(struct cv_keysrc *s, size_t from, size_t to, const uint8_t *extra_raw, uint32_t extra_id,
			   size_t *len)
{
	char *text = sodium_malloc(FILE_MAX);
	if (!text)
		return NULL;
	size_t n = (size_t)snprintf(text, FILE_MAX, "%s", FILE_MAGIC);
	for (size_t i = from; i <= to && n < FILE_MAX; i++) {
		uint8_t raw[CV_KEY_BYTES];
		char hex[2 * CV_KEY_BYTES + 1];
		uint32_t id;
		if (i == to) {
			if (!extra_raw)
				break;
			memcpy(raw, extra_raw, CV_KEY_BYTES);
			id = extra_id;
		} else {
			cv_crypto_key_bytes(s->keys[i], raw);
			id = s->ids[i];
		}
		cv_crypto_hex(raw, CV_KEY_BYTES, hex);
		n += (size_t)snprintf(text + n, FILE_MAX - n, "key %u %s\n", id, hex);
		sodium_memzero(raw, sizeof raw);
		sodium_memzero(hex, sizeof hex);
	}
	*len = n;
	return text;
}

/* ---- the sources ------------------------------------------------------------ */

static cv_rc read_env(struct cv_keysrc *s, const char *name, char *err, size_t errlen)
{
	uint8_t raw[CV_KEY_BYTES];
	char *v = getenv(name);
	if (!v || strlen(v) != 2 * CV_KEY_BYTES || cv_crypto_unhex(v, raw, CV_KEY_BYTES)) {
		snprintf(err, errlen, "$%s must hold the master key as 64 hex digits", name);
		return CV_E_INVALID;
	}
	memset(v, 'x', strlen(v)); /* out of /proc/PID/environ too: the process's copy is that memory */
	cv_rc rc = add_version(s, 0, raw);
	sodium_memzero(raw, sizeof raw);
	return rc;
}

static cv_rc read_token(struct cv_keysrc *s, char *err, size_t errlen)
{
	cv_rc rc = cv_p11_versions(s->tok, s->ids, VERSIONS_MAX, &s->n);
	if (!rc && s->n == 0) {
		snprintf(err, errlen, "the PKCS#11 token holds no master key (run 'carevault init' with "
			 "--master-key-source pkcs11)");
		rc = CV_E_NOTFOUND;
	}
	return rc;
}

/* Reads the source again (another process may have rotated). */
static struct cv_keysrc *src_new(int kind);
static cv_rc merge_versions(struct cv_keysrc *into, const struct cv_keysrc *from, size_t skip);

/* The key file, and the retired versions with it when configured. */
static cv_rc read_files(struct cv_keysrc *s, char *err, size_t errlen)
{
	cv_rc rc = read_file(s, err, errlen);
	if (rc || !s->retired[0])
		return rc;
	struct cv_keysrc *t = src_new(SRC_FILE);
	if (!t)
		return CV_E_NOMEM;
	snprintf(t->path, sizeof t->path, "%s", s->retired);
	rc = read_file(t, err, errlen);
	if (!rc)
		rc = merge_versions(s, t, SIZE_MAX);
	cv_keysrc_release(t);
	return rc;
}

static cv_rc reload(struct cv_keysrc *s)
{
	char err[256];
	if (s->kind == SRC_FILE)
		return read_files(s, err, sizeof err);
	if (s->kind == SRC_PKCS11)
		return read_token(s, err, sizeof err);
	return CV_E_NOTFOUND;
}

static struct cv_keysrc *src_new(int kind)
{
	struct cv_keysrc *s = calloc(1, sizeof *s);
	if (s) {
		s->kind = kind;
		atomic_init(&s->refs, 1);
		pthread_mutex_init(&s->mu, NULL);
	}
	return s;
}

void cv_keysrc_ref(struct cv_keysrc *src)
{
	atomic_fetch_add(&src->refs, 1);
}

void cv_keysrc_release(struct cv_keysrc *src)
{
	if (atomic_fetch_sub(&src->refs, 1) != 1)
		return;
	free_versions(src);
	cv_p11_close(src->tok);
	pthread_mutex_destroy(&src->mu);
	free(src);
}

static int kind_of(const char *source)
{
	return !source || !source[0] || strcmp(source, "file") == 0 ? SRC_FILE
	       : strcmp(source, "env") == 0				   ? SRC_ENV
	       : strcmp(source, "pkcs11") == 0			   ? SRC_PKCS11
									   : -1;
}

cv_rc cv_master_load(const cv_master_cfg_t *cfg, cv_key_t **out, char *err, size_t errlen)
{
	int kind = kind_of(cfg->source);
	if (kind < 0) {
		snprintf(err, errlen, "master-key-source must be file, env or pkcs11");
		return CV_E_INVALID;
	}
	struct cv_keysrc *s = src_new(kind);
	if (!s)
		return CV_E_NOMEM;
	cv_rc rc;
	if (kind == SRC_FILE) {
		snprintf(s->path, sizeof s->path, "%s", cfg->file ? cfg->file : "");
		snprintf(s->retired, sizeof s->retired, "%s", cfg->retired_file ? cfg->retired_file : "");
		rc = read_files(s, err, errlen);
	} else if (kind == SRC_ENV) {
		rc = read_env(s, cfg->env && cfg->env[0] ? cfg->env : CV_MASTER_ENV, err, errlen);
	} else {
		rc = cv_p11_open(cfg, &s->tok, err, errlen);
		if (!rc)
			rc = read_token(s, err, errlen);
	}
	if (rc) {
		cv_keysrc_release(s);
		return rc;
	}
	return cv_crypto_key_from_src(s, out);
}

cv_rc cv_master_create(const cv_master_cfg_t *cfg, char *err, size_t errlen)
{
	int kind = kind_of(cfg->source);
	if (kind == SRC_ENV)
		return CV_OK; /* it is the operator's to set */
	if (kind == SRC_PKCS11) {
		cv_p11_t *t = NULL;
		uint32_t ids[VERSIONS_MAX];
		size_t n = 0;
		cv_rc rc = cv_p11_open(cfg, &t, err, errlen);
		if (!rc)
			rc = cv_p11_versions(t, ids, VERSIONS_MAX, &n);
		if (!rc && n == 0)
			rc = cv_p11_generate(t, 0, err, errlen);
		cv_p11_close(t);
		return rc;
	}
	if (kind < 0) {
		snprintf(err, errlen, "master-key-source must be file, env or pkcs11");
		return CV_E_INVALID;
	}
	uint8_t k[CV_KEY_BYTES];
	cv_rc rc = CV_OK;
	int fd = open(cfg->file, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0) {
		snprintf(err, errlen, "cannot create master key %s: %s", cfg->file, strerror(errno));
		return CV_E_IO;
	}
	randombytes_buf(k, sizeof k);
	if (cv_write_all(fd, k, sizeof k) || fsync(fd)) {
		snprintf(err, errlen, "cannot write master key %s: %s", cfg->file, strerror(errno));
		rc = CV_E_IO;
	}
	sodium_memzero(k, sizeof k);
	close(fd);
	return rc;
}

/* ---- sealing and opening --------------------------------------------------- */

static size_t find(const struct cv_keysrc *s, uint32_t id)
{
	for (size_t i = 0; i < s->n; i++)
		if (s->ids[i] == id)
			return i;
	return SIZE_MAX;
}

static cv_rc token_seal(struct cv_keysrc *s, uint32_t id, const void *ad, size_t adlen, const void *pt, size_t ptlen,
			cv_buf_t *out)
{
	uint8_t *blob = NULL;
	size_t start = out->len;
	cv_rc rc = cv_buf_extend(out, CV_SEAL_OVERHEAD + ptlen, (void **)&blob);
	if (rc)
		return rc;
	blob[0] = 'C';
	blob[1] = 'V';
	blob[2] = 1;
	blob[3] = (uint8_t)(id >> 24);
	blob[4] = (uint8_t)(id >> 16);
	blob[5] = (uint8_t)(id >> 8);
	blob[6] = (uint8_t)id;
	randombytes_buf(blob + 7, NONCE);
	rc = cv_p11_encrypt(s->tok, id, blob + 7, ad, adlen, pt, ptlen, blob + 7 + NONCE);
	if (rc)
		cv_buf_truncate(out, start);
	return rc;
}

static cv_rc token_open(struct cv_keysrc *s, uint32_t id, const void *ad, size_t adlen, const uint8_t *blob, size_t len,
			cv_buf_t *out)
{
	uint8_t *pt = NULL;
	size_t start = out->len, ctlen = len - 7 - NONCE;
	cv_rc rc = cv_buf_extend(out, ctlen, (void **)&pt);
	if (rc)
		return rc;
	rc = cv_p11_decrypt(s->tok, id, blob + 7, ad, adlen, blob + 7 + NONCE, ctlen, pt);
	if (rc) {
		sodium_memzero(pt, ctlen);
		cv_buf_truncate(out, start);
	} else {
		sodium_memzero(pt + ctlen - TAG, TAG);
		cv_buf_truncate(out, start + ctlen - TAG);
	}
	return rc;
}

cv_rc cv_keysrc_seal(struct cv_keysrc *s, const void *ad, size_t adlen, const void *pt, size_t ptlen, cv_buf_t *out)
{
	pthread_mutex_lock(&s->mu);
	cv_rc rc = s->n == 0 ? CV_E_CRYPTO
		   : s->kind == SRC_PKCS11 ? token_seal(s, s->ids[s->n - 1], ad, adlen, pt, ptlen, out)
					   : cv_crypto_seal(s->keys[s->n - 1], ad, adlen, pt, ptlen, out);
	pthread_mutex_unlock(&s->mu);
	return rc;
}

cv_rc cv_keysrc_open(struct cv_keysrc *s, const void *ad, size_t adlen, const uint8_t *blob, size_t len, cv_buf_t *out)
{
	uint32_t id;
	if (cv_crypto_blob_key_id(blob, len, &id))
		return CV_E_CRYPTO;
	pthread_mutex_lock(&s->mu);
	size_t i = find(s, id);
	if (i == SIZE_MAX && reload(s) == CV_OK)
		i = find(s, id);
	cv_rc rc = i == SIZE_MAX ? CV_E_CRYPTO
		   : s->kind == SRC_PKCS11 ? token_open(s, id, ad, adlen, blob, len, out)
					   : cv_crypto_open(s->keys[i], ad, adlen, blob, len, out);
	pthread_mutex_unlock(&s->mu);
	return rc;
}

/* ---- versions (rotation) ------------------------------------------------------ */

static struct cv_keysrc *src_of(const cv_key_t *m)
{
	return cv_crypto_key_src(m);
}

uint32_t cv_master_current(const cv_key_t *m)
{
	struct cv_keysrc *s = src_of(m);
	if (!s)
		return cv_key_id(m);
	pthread_mutex_lock(&s->mu);
	uint32_t id = s->n ? s->ids[s->n - 1] : 0;
	pthread_mutex_unlock(&s->mu);
	return id;
}

cv_rc cv_master_refresh(cv_key_t *m)
{
	struct cv_keysrc *s = src_of(m);
	if (!s || s->kind == SRC_ENV)
		return CV_OK;
	pthread_mutex_lock(&s->mu);
	cv_rc rc = reload(s);
	pthread_mutex_unlock(&s->mu);
	return rc;
}

size_t cv_master_versions(const cv_key_t *m, uint32_t *ids, size_t max)
{
	struct cv_keysrc *s = src_of(m);
	size_t n = 0;
	if (!s)
		return 0;
	pthread_mutex_lock(&s->mu);
	for (; n < s->n && n < max; n++)
		ids[n] = s->ids[n];
	pthread_mutex_unlock(&s->mu);
	return n;
}

cv_rc cv_master_add_version(cv_key_t *m, uint32_t *id, char *err, size_t errlen)
{
	struct cv_keysrc *s = src_of(m);
	if (!s || s->kind == SRC_ENV) {
		snprintf(err, errlen, "a master key from the environment cannot be rotated by carevault: move it to "
			 "a key file or a PKCS#11 token first");
		return CV_E_UNSUPPORTED;
	}
	pthread_mutex_lock(&s->mu);
	cv_rc rc = reload(s);
	if (!rc && s->n == VERSIONS_MAX)
		rc = CV_E_LIMIT;
	uint32_t next = s->n ? s->ids[s->n - 1] + 1 : 0;
	if (!rc && s->kind == SRC_PKCS11) {
		rc = cv_p11_generate(s->tok, next, err, errlen);
	} else if (!rc) {
		uint8_t raw[CV_KEY_BYTES];
		size_t len = 0;
		randombytes_buf(raw, sizeof raw);
		char *text = versions_text(s, 0, s->n, raw, next, &len);
		rc = text ? replace_file(s->path, text, len, err, errlen) : CV_E_NOMEM;
		sodium_memzero(raw, sizeof raw);
		if (text)
			sodium_free(text);
	}
	if (!rc)
		rc = reload(s);
	pthread_mutex_unlock(&s->mu);
	if (!rc)
		*id = next;
	return rc;
}

/* Adds to `into` every version of `from` it does not hold, keeping the
 * versions in ascending order (from's keys are copied). */
static cv_rc merge_versions(struct cv_keysrc *into, const struct cv_keysrc *from, size_t skip)
{
	uint32_t ids[VERSIONS_MAX];
	cv_key_t *keys[VERSIONS_MAX];
	bool copied[VERSIONS_MAX] = { false };
	size_t n = 0, i = 0, j = 0;
	cv_rc rc = CV_OK;
	while (!rc && (i < into->n || j < from->n)) {
		if (j == skip || (j < from->n && i < into->n && from->ids[j] == into->ids[i])) {
			j++; /* the version kept, or one held already */
			continue;
		}
		bool take_into = j >= from->n || (i < into->n && into->ids[i] < from->ids[j]);
		if (n == VERSIONS_MAX) {
			rc = CV_E_LIMIT;
			break;
		}
		ids[n] = take_into ? into->ids[i] : from->ids[j];
		if (take_into)
			keys[n++] = into->keys[i++];
		else if ((rc = cv_crypto_key_dup(from->keys[j++], &keys[n])) == CV_OK)
			copied[n++] = true;
	}
	if (rc) {
		for (size_t k = 0; k < n; k++) /* the copies made here (into's own stay into's) */
			if (copied[k])
				cv_key_free(keys[k]);
		return rc;
	}
	memcpy(into->ids, ids, n * sizeof *ids);
	memcpy(into->keys, keys, n * sizeof *keys);
	into->n = n;
	return CV_OK;
}

/* Moves the versions other than keep into the retired key file (0600): what
 * it held, merged with them, written anew (a rerun after a crash adds
 * nothing twice). */
static cv_rc keep_retired(struct cv_keysrc *s, size_t keep, const char *retired, char *err, size_t errlen)
{
	struct cv_keysrc *t = src_new(SRC_FILE);
	if (!t)
		return CV_E_NOMEM;
	snprintf(t->path, sizeof t->path, "%s", retired);
	cv_rc rc = access(retired, F_OK) == 0 ? read_file(t, err, errlen) : CV_OK;
	if (!rc)
		rc = merge_versions(t, s, keep);
	size_t len = 0;
	char *text = rc || t->n == 0 ? NULL : versions_text(t, 0, t->n, NULL, 0, &len);
	if (!rc && t->n && !text)
		rc = CV_E_NOMEM;
	if (!rc && text)
		rc = replace_file(retired, text, len, err, errlen);
	if (text)
		sodium_free(text);
	cv_keysrc_release(t);
	return rc;
}

cv_rc cv_master_retire(cv_key_t *m, uint32_t keep, const char *retired, char *err, size_t errlen)
{
	struct cv_keysrc *s = src_of(m);
	if (!s || s->kind == SRC_ENV)
		return CV_E_UNSUPPORTED;
	pthread_mutex_lock(&s->mu);
	cv_rc rc = reload(s);
	size_t k = rc ? SIZE_MAX : find(s, keep);
	if (!rc && k == SIZE_MAX) {
		snprintf(err, errlen, "the master key source does not hold version %u", keep);
		rc = CV_E_NOTFOUND;
	}
	if (!rc && s->kind == SRC_PKCS11) {
		for (size_t i = 0; !rc && i < s->n && !retired; i++) /* retired NULL: destroy the old versions */
			if (i != k)
				rc = cv_p11_destroy(s->tok, s->ids[i]);
	} else if (!rc) {
		if (retired)
			rc = keep_retired(s, k, retired, err, errlen);
		size_t len = 0;
		char *text = rc ? NULL : versions_text(s, k, k + 1, NULL, 0, &len);
		if (!rc)
			rc = text ? replace_file(s->path, text, len, err, errlen) : CV_E_NOMEM;
		if (text)
			sodium_free(text);
	}
	if (!rc)
		rc = reload(s);
	pthread_mutex_unlock(&s->mu);
	return rc;
}

const char *cv_master_source(const cv_key_t *m)
{
	struct cv_keysrc *s = src_of(m);
	return !s ? "key" : s->kind == SRC_FILE ? "file" : s->kind == SRC_ENV ? "env" : "pkcs11";
}
