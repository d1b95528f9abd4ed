/*
 * pkcs11.c - the master key in a PKCS#11 token (see pkcs11.h). The module is
 * loaded with dlopen and driven through its function list; the standard
 * header comes from p11-kit (decision 0010). One session, used under the
 * caller's lock (master.c serialises every use).
 */
#include "crypto/pkcs11.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CRYPTOKI_GNU 1 /* the header's lowercase names (ck_*) */
#include <p11-kit/pkcs11.h>
#include <sodium.h>

#define LABEL_DEFAULT "carevault-master"
#define PIN_MAX 256

struct cv_p11 {
	void *dl;
	struct ck_function_list *f;
	ck_session_handle_t session;
	char label[128];
	int initialized;
};

static void id_bytes(uint32_t id, unsigned char out[4])
{
	out[0] = (unsigned char)(id >> 24);
	out[1] = (unsigned char)(id >> 16);
	out[2] = (unsigned char)(id >> 8);
	out[3] = (unsigned char)id;
}

/* Reads the PIN from the file (which only its owner may read) or the environment. */
static cv_rc read_pin(const char *file, char *pin, char *err, size_t errlen)
{
	/* the variable is read once and wiped (out of /proc/PID/environ too); the process keeps it
	 * in guarded memory for the token's later sessions */
	static char *env_pin;
	char *env = getenv("CAREVAULT_PKCS11_PIN");
	if (!file || !file[0]) {
		if (!env_pin && env && env[0] && strlen(env) < PIN_MAX && (env_pin = sodium_malloc(PIN_MAX))) {
			snprintf(env_pin, PIN_MAX, "%s", env);
			memset(env, 'x', strlen(env));
		}
		if (!env_pin) {
			snprintf(err, errlen, "the token's PIN: set pkcs11-pin-file (a 0600 file) or CAREVAULT_PKCS11_PIN");
			return CV_E_INVALID;
		}
		snprintf(pin, PIN_MAX, "%s", env_pin);
		return CV_OK;
	}
	struct stat st;
	int fd = open(file, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0 || fstat(fd, &st) != 0 || (st.st_mode & (S_IRWXG | S_IRWXO))) {
		snprintf(err, errlen, "pkcs11-pin-file %s: %s", file,
			 fd < 0 ? strerror(errno) : "group or others may read it (chmod 600)");
		if (fd >= 0)
			close(fd);
		return CV_E_DENIED;
	}
	ssize_t n = read(fd, pin, PIN_MAX - 1);
	close(fd);
	if (n <= 0) {
		snprintf(err, errlen, "pkcs11-pin-file %s is empty", file);
		return CV_E_INVALID;
	}
	while (n > 0 && (pin[n - 1] == '\n' || pin[n - 1] == '\r'))
		n--;
	pin[n] = '\0';
	return CV_OK;
}

/* The slot of the token labelled `label` (labels are blank-padded to 32). */
static cv_rc find_slot(struct ck_function_list *f, const char *label, ck_slot_id_t *slot, char *err, size_t errlen)
{
	ck_slot_id_t slots[64];
	unsigned long n = 64;
	if (f->C_GetSlotList(1, slots, &n) != CKR_OK) {
		snprintf(err, errlen, "the PKCS#11 module lists no slots");
		return CV_E_CRYPTO;
	}
	size_t want = strlen(label);
	for (unsigned long i = 0; i < n; i++) {
		struct ck_token_info info;
		if (f->C_GetTokenInfo(slots[i], &info) != CKR_OK)
			continue;
		size_t len = sizeof info.label;
		while (len && info.label[len - 1] == ' ')
			len--;
		if (len == want && memcmp(info.label, label, len) == 0) {
			*slot = slots[i];
			return CV_OK;
		}
	}
	snprintf(err, errlen, "no PKCS#11 token is labelled '%s'", label);
	return CV_E_NOTFOUND;
}

static cv_rc load_module(cv_p11_t *t, const char *module, char *err, size_t errlen)
{
	ck_rv_t (*get_list)(struct ck_function_list **);
	t->dl = dlopen(module, RTLD_NOW | RTLD_LOCAL);
	if (!t->dl) {
		snprintf(err, errlen, "cannot load the PKCS#11 module %s", module);
		return CV_E_IO;
	}
	*(void **)&get_list = dlsym(t->dl, "C_GetFunctionList");
	if (!get_list || get_list(&t->f) != CKR_OK || !t->f) {
		snprintf(err, errlen, "%s is not a PKCS#11 module", module);
		return CV_E_CRYPTO;
	}
	struct ck_c_initialize_args args = { .flags = CKF_OS_LOCKING_OK };
	ck_rv_t rv = t->f->C_Initialize(&args);
	if (rv != CKR_OK && rv != CKR_CRYPTOKI_ALREADY_INITIALIZED) {
		snprintf(err, errlen, "the PKCS#11 module did not initialise (0x%lx)", (unsigned long)rv);
		return CV_E_CRYPTO;
	}
	t->initialized = rv == CKR_OK;
	return CV_OK;
}

cv_rc cv_p11_open(const cv_master_cfg_t *cfg, cv_p11_t **out, char *err, size_t errlen)
{
	char pin[PIN_MAX];
	ck_slot_id_t slot;
	if (!cfg->pkcs11_module || !cfg->pkcs11_module[0] || !cfg->pkcs11_token || !cfg->pkcs11_token[0]) {
		snprintf(err, errlen, "master-key-source pkcs11 needs pkcs11-module and pkcs11-token");
		return CV_E_INVALID;
	}
	cv_p11_t *t = calloc(1, sizeof *t);
	if (!t)
		return CV_E_NOMEM;
	snprintf(t->label, sizeof t->label, "%s", cfg->pkcs11_label && cfg->pkcs11_label[0] ? cfg->pkcs11_label : LABEL_DEFAULT);
	cv_rc rc = read_pin(cfg->pkcs11_pin_file, pin, err, errlen);
	if (!rc)
		rc = load_module(t, cfg->pkcs11_module, err, errlen);
	if (!rc)
		rc = find_slot(t->f, cfg->pkcs11_token, &slot, err, errlen);
	if (!rc && t->f->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &t->session) != CKR_OK) {
		snprintf(err, errlen, "cannot open a session with the PKCS#11 token");
		rc = CV_E_CRYPTO;
	}
	if (!rc) {
		ck_rv_t rv = t->f->C_Login(t->session, CKU_USER, (unsigned char *)pin, strlen(pin));
		if (rv != CKR_OK && rv != CKR_USER_ALREADY_LOGGED_IN) {
			snprintf(err, errlen, "the PKCS#11 token refused the PIN");
			rc = CV_E_DENIED;
		}
	}
	cv_crypto_wipe(pin, sizeof pin);
	if (rc) {
		cv_p11_close(t);
		return rc;
	}
	*out = t;
	return CV_OK;
}

void cv_p11_close(cv_p11_t *t)
{
	if (!t)
		return;
	if (t->f && t->session)
		t->f->C_CloseSession(t->session);
	if (t->f && t->initialized)
		t->f->C_Finalize(NULL);
	if (t->dl)
		dlclose(t->dl);
	free(t);
}

/* The key object of version id (0 when there is none). */
static ck_object_handle_t find_key(cv_p11_t *t, uint32_t id)
{
	unsigned char idb[4];
	ck_object_class_t cls = CKO_SECRET_KEY;
	id_bytes(id, idb);
	struct ck_attribute tmpl[3] = { { CKA_CLASS, &cls, sizeof cls }, { CKA_LABEL, t->label, strlen(t->label) },
					{ CKA_ID, idb, sizeof idb } };
	ck_object_handle_t obj = 0;
	unsigned long n = 0;
	if (t->f->C_FindObjectsInit(t->session, tmpl, 3) != CKR_OK)
		return 0;
	if (t->f->C_FindObjects(t->session, &obj, 1, &n) != CKR_OK || n != 1)
		obj = 0;
	t->f->C_FindObjectsFinal(t->session);
	return obj;
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return x < y ? -1 : x > y;
}

cv_rc cv_p11_versions(cv_p11_t *t, uint32_t *ids, size_t max, size_t *n)
{
	ck_object_class_t cls = CKO_SECRET_KEY;
	struct ck_attribute tmpl[2] = { { CKA_CLASS, &cls, sizeof cls }, { CKA_LABEL, t->label, strlen(t->label) } };
	ck_object_handle_t objs[64];
	unsigned long found = 0;
	*n = 0;
	if (t->f->C_FindObjectsInit(t->session, tmpl, 2) != CKR_OK)
		return CV_E_CRYPTO;
	ck_rv_t rv = t->f->C_FindObjects(t->session, objs, 64, &found);
	t->f->C_FindObjectsFinal(t->session);
	if (rv != CKR_OK)
		return CV_E_CRYPTO;
	for (unsigned long i = 0; i < found && *n < max; i++) {
		unsigned char idb[4];
		struct ck_attribute a = { CKA_ID, idb, sizeof idb };
		if (t->f->C_GetAttributeValue(t->session, objs[i], &a, 1) == CKR_OK && a.value_len == 4)
			ids[(*n)++] = (uint32_t)idb[0] << 24 | (uint32_t)idb[1] << 16 | (uint32_t)idb[2] << 8 | idb[3];
	}
	qsort(ids, *n, sizeof *ids, cmp_u32);
	return CV_OK;
}

cv_rc cv_p11_generate(cv_p11_t *t, uint32_t id, char *err, size_t errlen)
{
	unsigned char idb[4], yes = 1, no = 0;
	ck_object_class_t cls = CKO_SECRET_KEY;
	ck_key_type_t type = CKK_AES;
	unsigned long len = 32;
	id_bytes(id, idb);
	if (find_key(t, id)) {
		snprintf(err, errlen, "the token already holds master key version %u", id);
		return CV_E_CONFLICT;
	}
	struct ck_attribute tmpl[] = {
		{ CKA_CLASS, &cls, sizeof cls }, { CKA_KEY_TYPE, &type, sizeof type }, { CKA_VALUE_LEN, &len, sizeof len },
		{ CKA_TOKEN, &yes, 1 }, { CKA_PRIVATE, &yes, 1 }, { CKA_SENSITIVE, &yes, 1 }, { CKA_EXTRACTABLE, &no, 1 },
		{ CKA_ENCRYPT, &yes, 1 }, { CKA_DECRYPT, &yes, 1 }, { CKA_LABEL, t->label, strlen(t->label) },
		{ CKA_ID, idb, sizeof idb },
	};
	struct ck_mechanism mech = { CKM_AES_KEY_GEN, NULL, 0 };
	ck_object_handle_t obj;
	ck_rv_t rv = t->f->C_GenerateKey(t->session, &mech, tmpl, sizeof tmpl / sizeof tmpl[0], &obj);
	if (rv != CKR_OK) {
		snprintf(err, errlen, "the PKCS#11 token could not make an AES-256 key (0x%lx)", (unsigned long)rv);
		return CV_E_CRYPTO;
	}
	return CV_OK;
}

cv_rc cv_p11_destroy(cv_p11_t *t, uint32_t id)
{
	ck_object_handle_t obj = find_key(t, id);
	if (!obj)
		return CV_E_NOTFOUND;
	return t->f->C_DestroyObject(t->session, obj) == CKR_OK ? CV_OK : CV_E_CRYPTO;
}

/* Starts an AES-GCM operation under version id. */
static cv_rc gcm_init(cv_p11_t *t, uint32_t id, int decrypt, const uint8_t nonce[12], const void *ad, size_t adlen,
		      struct ck_gcm_params *p, struct ck_mechanism *m)
{
	ck_object_handle_t obj = find_key(t, id);
	if (!obj)
		return CV_E_CRYPTO;
	*p = (struct ck_gcm_params){ .iv_ptr = (unsigned char *)nonce, .iv_len = 12, .iv_bits = 96,
				     .aad_ptr = (unsigned char *)ad, .aad_len = adlen, .tag_bits = 128 };
	*m = (struct ck_mechanism){ CKM_AES_GCM, p, sizeof *p };
	ck_rv_t rv = decrypt ? t->f->C_DecryptInit(t->session, m, obj) : t->f->C_EncryptInit(t->session, m, obj);
	return rv == CKR_OK ? CV_OK : CV_E_CRYPTO;
}

cv_rc cv_p11_encrypt(cv_p11_t *t, uint32_t id, const uint8_t nonce[12], const void *ad, size_t adlen,
		     const void *pt, size_t ptlen, uint8_t *out)
{
	struct ck_gcm_params p;
	struct ck_mechanism m;
	unsigned long outlen = ptlen + 16;
	cv_rc rc = gcm_init(t, id, 0, nonce, ad, adlen, &p, &m);
	if (!rc && (t->f->C_Encrypt(t->session, (unsigned char *)pt, ptlen, out, &outlen) != CKR_OK || outlen != ptlen + 16))
		rc = CV_E_CRYPTO;
	return rc;
}

cv_rc cv_p11_decrypt(cv_p11_t *t, uint32_t id, const uint8_t nonce[12], const void *ad, size_t adlen,
		     const uint8_t *ct, size_t ctlen, uint8_t *out)
{
	struct ck_gcm_params p;
	struct ck_mechanism m;
	unsigned long outlen = ctlen;
	if (ctlen < 16)
		return CV_E_CRYPTO;
	cv_rc rc = gcm_init(t, id, 1, nonce, ad, adlen, &p, &m);
	if (!rc && (t->f->C_Decrypt(t->session, (unsigned char *)ct, ctlen, out, &outlen) != CKR_OK || outlen != ctlen - 16))
		rc = CV_E_CRYPTO;
	return rc;
}
