/*
 * import.c - `carevault import`: bulk loading of FHIR transaction Bundles
 * and NDJSON files straight into a data directory's store.
 *
 * Each Bundle file is one transaction, exactly as POST /fhir would run it
 * (validation, urn:uuid references, indexing, sealing). NDJSON files go in
 * chunks of CHUNK_LINES resources, each chunk one transaction; a line that is
 * not a valid resource is rejected alone, with its line number and why.
 * Every transaction commits together with a marker in the store's meta
 * ("import.<SHA-256 of the file>[.<chunk>]"), so an interrupted import run
 * again skips exactly what was committed: nothing twice, nothing lost.
 * Progress goes to stderr: a bar on a terminal, plain lines otherwise.
 * Nothing from the data (names, ids, values) is ever printed.
 */
#define _GNU_SOURCE
#include "cli/cli.h"

#include <dirent.h>
#include <pthread.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/config.h"
#include "core/log.h"
#include "core/time.h"
#include "crypto/crypto.h"
#include "fhir/fhir.h"
#include "model/json.h"
#include "model/model.h"
#include "store/store.h"

#define CHUNK_LINES 1000
#define FILES_MAX 100000
#define REJECTS_SHOWN 200
#define WORKERS 2 /* files imported at once: one prepares while another commits */

static volatile sig_atomic_t interrupted;

static void on_signal(int sig)
{
	(void)sig;
	interrupted = 1;
}

typedef struct importer {
	cv_config_t cfg;
	cv_key_t *master;
	cv_model_t *model;
	cv_store_t *store;
	cv_fhir_t fhir;
	int fhir_ready;
	char **files;
	size_t nfiles;
	uint64_t total_bytes, done_bytes;
	uint64_t resources, skipped_files, rejected;
	int64_t started_us, last_print_us;
	int tty;
	cv_buf_t rejects;          /* the rejection lines shown in the summary */
	size_t nrejects;
	pthread_mutex_t mu;        /* guards the counters, progress and rejects */
	size_t next;               /* the next file to take */
} importer_t;

static void usage(FILE *out)
{
	fprintf(out,
		"usage: carevault import --data DIR [--store URL] [--config FILE] FILE|FOLDER...\n\n"
		"Loads FHIR R4 data into the store of data directory DIR:\n"
		"  *.json    a Bundle of type transaction (Synthea's output, for example), as one transaction\n"
		"  *.ndjson  one resource per line (FHIR bulk data), in transactions of %d lines;\n"
		"            a resource with an id is written with that id (PUT), one without gets a new id\n"
		"Folders are read recursively, files in name order. Every resource is validated, indexed\n"
		"and encrypted as the API would do it. Each transaction is committed with a marker, so an\n"
		"import that was interrupted (Ctrl-C, a crash) can be run again: what was committed is\n"
		"skipped, nothing is loaded twice. Rejected entries are listed at the end with the reason.\n"
		"The server may keep running meanwhile. Progress goes to stderr.\n", CHUNK_LINES);
}

/* ---- files -------------------------------------------------------------- */

static int has_suffix(const char *s, const char *suffix)
{
	size_t n = strlen(s), k = strlen(suffix);
	return n >= k && strcmp(s + n - k, suffix) == 0;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static int add_file(importer_t *im, const char *path, uint64_t size)
{
	if (im->nfiles >= FILES_MAX)
		return -1;
	if (!(im->files[im->nfiles] = strdup(path)))
		return -1;
	im->nfiles++;
	im->total_bytes += size;
	return 0;
}

static int collect(importer_t *im, const char *path, int depth)
{
	struct stat st;
	if (stat(path, &st) != 0) {
		fprintf(stderr, "carevault import: %s: %s\n", path, strerror(errno));
		return -1;
	}
	if (S_ISREG(st.st_mode))
		return add_file(im, path, (uint64_t)st.st_size);
	if (!S_ISDIR(st.st_mode) || depth > 16)
		return 0;
	DIR *d = opendir(path);
	if (!d) {
		fprintf(stderr, "carevault import: %s: %s\n", path, strerror(errno));
		return -1;
	}
	size_t first = im->nfiles;
	struct dirent *de;
	int rc = 0;
	while (!rc && (de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		char *child = NULL;
		if (asprintf(&child, "%s/%s", path, de->d_name) < 0)
			rc = -1;
		else if (stat(child, &st) == 0 && (S_ISDIR(st.st_mode) || has_suffix(child, ".json") ||
						   has_suffix(child, ".ndjson")))
			rc = collect(im, child, depth + 1);
		free(child);
	}
	closedir(d);
	qsort(im->files + first, im->nfiles - first, sizeof *im->files, cmp_str);
	return rc;
}

static int read_file(const char *path, cv_buf_t *out)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return -1;
	char chunk[65536];
	size_t n;
	int rc = 0;
	while (!rc && (n = fread(chunk, 1, sizeof chunk, f)) > 0)
		rc = cv_buf_append(out, chunk, n) ? -1 : 0;
	if (ferror(f))
		rc = -1;
	fclose(f);
	return rc;
}

static int file_hash(const char *path, char hex[65])
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return -1;
	cv_sha256_t h;
	uint8_t sum[32];
	char chunk[65536];
	size_t n;
	cv_sha256_init(&h);
	while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
		cv_sha256_update(&h, chunk, n);
	int bad = ferror(f);
	fclose(f);
	cv_sha256_final(&h, sum);
	cv_crypto_hex(sum, sizeof sum, hex);
	return bad ? -1 : 0;
}

/* ---- progress ------------------------------------------------------------- */

static void progress_locked(importer_t *im, int force)
{
	int64_t now = cv_time_mono_us();
	if (!force && now - im->last_print_us < (im->tty ? 200000 : 5000000))
		return;
	im->last_print_us = now;
	double secs = (double)(now - im->started_us) / 1e6;
	double rate = secs > 0 ? (double)im->resources / secs : 0;
	double brate = secs > 0 ? (double)im->done_bytes / secs : 0;
	double left = brate > 0 ? (double)(im->total_bytes - im->done_bytes) / brate : 0;
	unsigned pct = im->total_bytes ? (unsigned)(im->done_bytes * 100 / im->total_bytes) : 100;
	if (im->tty) {
		char bar[31];
		memset(bar, '#', pct * 30 / 100);
		memset(bar + pct * 30 / 100, '.', 30 - pct * 30 / 100);
		bar[30] = '\0';
		fprintf(stderr, "\r[%s] %3u%%  %llu resources  %.0f/s  ETA %d:%02d   ", bar, pct,
			(unsigned long long)im->resources, rate, (int)left / 60, (int)left % 60);
	} else {
		fprintf(stderr, "import: %u%% %llu resources %.0f/s eta %ds\n", pct,
			(unsigned long long)im->resources, rate, (int)left);
	}
}

static void progress(importer_t *im, int force)
{
	pthread_mutex_lock(&im->mu);
	progress_locked(im, force);
	pthread_mutex_unlock(&im->mu);
}

/* Adds to a counter of im (resources, bytes, skipped). */
static void count(importer_t *im, uint64_t *counter, uint64_t n)
{
	pthread_mutex_lock(&im->mu);
	*counter += n;
	pthread_mutex_unlock(&im->mu);
}

static void reject(importer_t *im, const char *file, const char *where, const char *why)
{
	pthread_mutex_lock(&im->mu);
	im->rejected++;
	if (im->nrejects++ < REJECTS_SHOWN)
		cv_buf_printf(&im->rejects, "  %s%s%s: %s\n", file, where ? " " : "", where ? where : "", why);
	pthread_mutex_unlock(&im->mu);
}

/* The reasons (diagnostics) of an OperationOutcome body, joined. */
static void outcome_reasons(const char *body, size_t len, char *out, size_t outlen)
{
	json_object *o = json_tokener_parse(body);
	json_object *issues = NULL;
	out[0] = '\0';
	(void)len;
	if (o && json_object_object_get_ex(o, "issue", &issues)) {
		size_t used = 0;
		for (size_t i = 0; i < json_object_array_length(issues) && used + 1 < outlen; i++) {
			json_object *d = NULL;
			json_object_object_get_ex(json_object_array_get_idx(issues, i), "diagnostics", &d);
			int n = snprintf(out + used, outlen - used, "%s%s", i ? "; " : "", d ? json_object_get_string(d) : "");
			used += n > 0 ? (size_t)n : 0;
		}
	}
	if (!out[0])
		snprintf(out, outlen, "rejected");
	json_object_put(o);
}

/* ---- transactions ---------------------------------------------------------- */

/* Already committed by an earlier run? */
static int done_before(importer_t *im, const char *marker)
{
	cv_buf_t v;
	cv_buf_init(&v, 256);
	cv_rc rc = cv_store_meta_get(im->store, marker, &v);
	cv_buf_release(&v);
	return rc == CV_OK;
}

/* Runs one transaction with its marker; returns the resources it wrote, or -1 after rejecting. */
static long run(importer_t *im, const char *file, const char *where, const char *body, size_t len, const char *marker)
{
	cv_pool_t pool;
	cv_pool_init(&pool, 1u << 30);
	cv_buf_t out;
	cv_buf_init(&out, 256u << 20);
	unsigned status = 0;
	char when[32];
	snprintf(when, sizeof when, "%lld", (long long)cv_time_now_us());
	cv_store_write_t mark = { .op = CV_STORE_PUT_META, .name = marker, .body = (const uint8_t *)when,
				  .body_len = strlen(when) };
	long wrote = -1;
	cv_rc rc = cv_fhir_transaction_sync(&im->fhir, body, len, &mark, &pool, &status, &out);
	if (rc) {
		reject(im, file, where, cv_rc_str(rc));
	} else if (status != 200) {
		char why[1024];
		outcome_reasons(out.data ? out.data : "", out.len, why, sizeof why);
		reject(im, file, where, why);
	} else {
		/* count the entries of the transaction-response */
		wrote = 0;
		for (const char *p = out.data; p && (p = strstr(p, "\"response\":{")); p++)
			wrote++;
	}
	cv_buf_release(&out);
	cv_pool_release(&pool);
	return wrote;
}

static void import_bundle(importer_t *im, const char *path, const char *hash)
{
	char marker[128];
	snprintf(marker, sizeof marker, "import.%s", hash);
	if (done_before(im, marker)) {
		count(im, &im->skipped_files, 1);
		return;
	}
	cv_buf_t body;
	cv_buf_init(&body, (size_t)im->cfg.max_body);
	if (read_file(path, &body)) {
		reject(im, path, NULL, "cannot be read, or is larger than max-body");
	} else {
		long n = run(im, path, NULL, body.data ? body.data : "", body.len, marker);
		if (n > 0)
			count(im, &im->resources, (uint64_t)n);
	}
	cv_buf_release(&body);
}

/* Appends one NDJSON line to a transaction being built; 0 if it was rejected. */
static int ndjson_entry(importer_t *im, const char *path, size_t lineno, const char *line, size_t len, cv_buf_t *tx,
			size_t *entries)
{
	cv_pool_t pool;
	cv_pool_init(&pool, 256u << 20);
	json_object *obj = NULL;
	const char *err = NULL;
	char where[32];
	snprintf(where, sizeof where, "line %zu", lineno);
	int ok = 0;
	cv_rc rc = cv_json_parse(line, len, &im->fhir.limits, &pool, &obj, &err);
	json_object *rt = NULL, *id = NULL;
	if (rc) {
		reject(im, path, where, "not valid JSON");
	} else if (!json_object_is_type(obj, json_type_object) || !json_object_object_get_ex(obj, "resourceType", &rt) ||
		   !cv_model_is_resource(im->model, json_object_get_string(rt))) {
		reject(im, path, where, "not a FHIR resource (no known resourceType)");
	} else {
		cv_outcome_t oo;
		cv_outcome_init(&oo, &pool, 4);
		if (cv_model_validate(im->model, obj, &oo) != CV_OK) {
			cv_buf_t why;
			cv_buf_init(&why, 4096);
			cv_outcome_to_json(&oo, &why);
			char reasons[1024];
			outcome_reasons(why.data ? why.data : "", why.len, reasons, sizeof reasons);
			reject(im, path, where, reasons);
			cv_buf_release(&why);
		} else {
			const char *type = json_object_get_string(rt);
			int with_id = json_object_object_get_ex(obj, "id", &id) &&
				      json_object_is_type(id, json_type_string) && cv_fhir_valid_id(json_object_get_string(id));
			rc = cv_buf_printf(tx, "%s{\"resource\":", *entries ? "," : "");
			if (!rc)
				rc = cv_buf_append(tx, line, len);
			if (!rc && with_id)
				rc = cv_buf_printf(tx, ",\"request\":{\"method\":\"PUT\",\"url\":\"%s/%s\"}}", type,
						   json_object_get_string(id));
			else if (!rc)
				rc = cv_buf_printf(tx, ",\"request\":{\"method\":\"POST\",\"url\":\"%s\"}}", type);
			ok = !rc;
			if (rc)
				reject(im, path, where, "too large for one transaction");
			*entries += ok;
		}
	}
	json_object_put(obj);
	cv_pool_release(&pool);
	return ok;
}

static void ndjson_chunk(importer_t *im, const char *path, const char *hash, size_t chunk, size_t first_line,
			 size_t last_line, cv_buf_t *tx, size_t entries)
{
	char marker[160], where[64];
	snprintf(marker, sizeof marker, "import.%s.%zu", hash, chunk);
	snprintf(where, sizeof where, "lines %zu to %zu", first_line, last_line);
	if (entries && !done_before(im, marker)) {
		cv_buf_puts(tx, "]}");
		long n = run(im, path, where, tx->data, tx->len, marker);
		if (n > 0)
			count(im, &im->resources, (uint64_t)n);
	}
	cv_buf_reset(tx);
	cv_buf_puts(tx, "{\"resourceType\":\"Bundle\",\"type\":\"transaction\",\"entry\":[");
}

static void import_ndjson(importer_t *im, const char *path, const char *hash)
{
	FILE *f = fopen(path, "rb");
	if (!f) {
		reject(im, path, NULL, "cannot be read");
		return;
	}
	cv_buf_t tx;
	cv_buf_init(&tx, 1u << 30);
	cv_buf_puts(&tx, "{\"resourceType\":\"Bundle\",\"type\":\"transaction\",\"entry\":[");
	char *line = NULL;
	size_t cap = 0, lineno = 0, entries = 0, chunk = 0, first = 1;
	ssize_t len;
	char marker[160];
	snprintf(marker, sizeof marker, "import.%s.%zu", hash, chunk);
	int skip = done_before(im, marker);
	while (!interrupted && (len = getline(&line, &cap, f)) >= 0) {
		lineno++;
		count(im, &im->done_bytes, (uint64_t)len);
		while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
			len--;
		if (len > 0 && !skip)
			ndjson_entry(im, path, lineno, line, (size_t)len, &tx, &entries);
		if (lineno % CHUNK_LINES == 0) {
			if (!skip)
				ndjson_chunk(im, path, hash, chunk, first, lineno, &tx, entries);
			else
				count(im, &im->skipped_files, 1);
			chunk++;
			entries = 0;
			first = lineno + 1;
			snprintf(marker, sizeof marker, "import.%s.%zu", hash, chunk);
			skip = done_before(im, marker);
			progress(im, 0);
		}
	}
	if (!interrupted && !skip)
		ndjson_chunk(im, path, hash, chunk, first, lineno, &tx, entries);
	else if (!interrupted && lineno >= first)
		count(im, &im->skipped_files, 1);
	free(line);
	fclose(f);
	cv_buf_release(&tx);
}

/* ---- the command ------------------------------------------------------------ */

static void import_one(importer_t *im, const char *path)
{
	char hash[65];
	struct stat st;
	if (file_hash(path, hash) || stat(path, &st)) {
		reject(im, path, NULL, "cannot be read");
		return;
	}
	if (has_suffix(path, ".ndjson")) {
		import_ndjson(im, path, hash);
	} else {
		import_bundle(im, path, hash);
		count(im, &im->done_bytes, (uint64_t)st.st_size);
	}
	progress(im, 0);
}

/* Takes files one by one until none is left (or Ctrl-C). */
static void *worker(void *arg)
{
	importer_t *im = arg;
	for (;;) {
		pthread_mutex_lock(&im->mu);
		size_t i = im->next++;
		pthread_mutex_unlock(&im->mu);
		if (i >= im->nfiles || interrupted)
			return NULL;
		import_one(im, im->files[i]);
	}
}

static int open_all(importer_t *im, char *err, size_t errlen)
{
	cv_rc rc = cv_crypto_init(err, errlen);
	if (!rc)
		rc = cv_cli_master_load(&im->cfg, &im->master, err, errlen);
	if (!rc && (rc = cv_model_new(&im->model)))
		snprintf(err, errlen, "cannot load the FHIR model: %s", cv_rc_str(rc));
	if (!rc)
		rc = cv_store_open(im->cfg.data_dir, im->cfg.store_url, 2, im->master, &im->store, err, errlen);
	if (!rc && (rc = cv_fhir_init(&im->fhir, im->store, im->model, &im->cfg)))
		snprintf(err, errlen, "cannot prepare the FHIR layer: %s", cv_rc_str(rc));
	im->fhir_ready = !rc;
	if (!rc && (rc = cv_fhir_reindex(&im->fhir, NULL, NULL)))
		snprintf(err, errlen, "cannot bring the search index up to date: %s", cv_rc_str(rc));
	cv_store_write_t bulk = { .op = CV_STORE_BULK };
	if (!rc)
		cv_store_write_sync(im->store, &bulk); /* speed only: failing it is harmless */
	return rc ? -1 : 0;
}

static void close_all(importer_t *im)
{
	if (im->fhir_ready)
		cv_fhir_release(&im->fhir);
	cv_store_close(im->store);
	cv_model_free(im->model);
	cv_key_free(im->master);
	for (size_t i = 0; i < im->nfiles; i++)
		free(im->files[i]);
	free(im->files);
	cv_buf_release(&im->rejects);
	pthread_mutex_destroy(&im->mu);
}

static int parse_args(importer_t *im, int argc, char **argv, char *err, size_t errlen)
{
	cv_config_defaults(&im->cfg);
	if (cv_config_load_env(&im->cfg, err, errlen))
		return -1;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if ((strcmp(a, "--data") == 0 || strcmp(a, "--store") == 0 || strcmp(a, "--config") == 0) && i + 1 < argc) {
			cv_rc rc = strcmp(a, "--config") == 0 ? cv_config_load_file(&im->cfg, argv[++i], err, errlen)
							       : cv_config_set(&im->cfg, a + 2, argv[++i], err, errlen);
			if (rc)
				return -1;
		} else if (strncmp(a, "--", 2) == 0) {
			snprintf(err, errlen, "unknown option %s (see carevault import --help)", a);
			return -1;
		} else if (collect(im, a, 0)) {
			snprintf(err, errlen, "cannot read %s", a);
			return -1;
		}
	}
	cv_config_finish(&im->cfg);
	if (!im->nfiles) {
		snprintf(err, errlen, "no .json or .ndjson files given");
		return -1;
	}
	return 0;
}

static void summary(importer_t *im)
{
	double secs = (double)(cv_time_mono_us() - im->started_us) / 1e6;
	if (im->tty)
		fputc('\n', stderr);
	printf("imported %llu resources from %zu files in %.1f s (%.0f resources/s)%s\n",
	       (unsigned long long)im->resources, im->nfiles, secs, secs > 0 ? (double)im->resources / secs : 0.0,
	       interrupted ? " - interrupted: run the same command again to continue" : "");
	if (im->skipped_files)
		printf("skipped %llu files (or chunks) imported before\n", (unsigned long long)im->skipped_files);
	if (im->rejected) {
		printf("rejected %llu (a Bundle is one transaction: it is rejected whole):\n",
		       (unsigned long long)im->rejected);
		fputs(im->rejects.data ? im->rejects.data : "", stdout);
		if (im->nrejects > REJECTS_SHOWN)
			printf("  ... and %zu more\n", im->nrejects - REJECTS_SHOWN);
	}
}

int cv_cli_import(int argc, char **argv)
{
	importer_t im;
	char err[512] = "";
	memset(&im, 0, sizeof im);
	pthread_mutex_init(&im.mu, NULL);
	for (int i = 1; i < argc; i++)
		if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
			usage(stdout);
			return 0;
		}
	cv_buf_init(&im.rejects, 1u << 20);
	im.files = calloc(FILES_MAX, sizeof *im.files);
	if (!im.files || parse_args(&im, argc, argv, err, sizeof err)) {
		fprintf(stderr, "carevault import: %s\n", err[0] ? err : "out of memory");
		close_all(&im);
		return 2;
	}
	cv_log_set_level(CV_LOG_WARN);
	if (open_all(&im, err, sizeof err)) {
		fprintf(stderr, "carevault import: %s\n", err);
		close_all(&im);
		return 1;
	}
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	im.tty = isatty(STDERR_FILENO);
	im.started_us = cv_time_mono_us();
	pthread_t workers[WORKERS];
	size_t started = 0;
	for (size_t i = 0; i < WORKERS; i++)
		started += pthread_create(&workers[started], NULL, worker, &im) == 0;
	if (!started)
		worker(&im);
	for (size_t i = 0; i < started; i++)
		pthread_join(workers[i], NULL);
	progress(&im, 1);
	summary(&im);
	int code = interrupted ? 130 : im.rejected ? 1 : 0;
	close_all(&im);
	return code;
}
