/* log.c - JSON-lines logger. The level and fd are set at start-up, before threads. */
#include "core/log.h"

#include <stdatomic.h>
#include <unistd.h>

#include "core/buf.h"
#include "core/time.h"

static _Atomic int log_level = CV_LOG_INFO;
static _Atomic int log_fd = 2;

void cv_log_set_level(cv_log_level lvl)
{
	log_level = (int)lvl;
}

void cv_log_set_fd(int fd)
{
	log_fd = fd;
}

static const char *level_name(cv_log_level lvl)
{
	switch (lvl) {
	case CV_LOG_DEBUG: return "debug";
	case CV_LOG_INFO: return "info";
	case CV_LOG_WARN: return "warn";
	case CV_LOG_ERROR: return "error";
	}
	return "info";
}

static void put_str(cv_buf_t *b, const char *key, const char *val)
{
	cv_buf_puts(b, ",\"");
	cv_buf_json_escape(b, key);
	cv_buf_puts(b, "\":\"");
	cv_buf_json_escape(b, val ? val : "");
	cv_buf_puts(b, "\"");
}

void cv_log(cv_log_level lvl, const char *event, const cv_log_field_t *fields, int nfields)
{
	if ((int)lvl < log_level)
		return;
	char ts[40];
	cv_time_format_instant(cv_time_now_us(), ts, sizeof ts);
	cv_buf_t b;
	cv_buf_init(&b, 16384);
	cv_buf_printf(&b, "{\"ts\":\"%s\",\"level\":\"%s\"", ts, level_name(lvl));
	put_str(&b, "event", event);
	for (int i = 0; i < nfields; i++) {
		if (fields[i].kind == CV_LF_INT) {
			cv_buf_puts(&b, ",\"");
			cv_buf_json_escape(&b, fields[i].key);
			cv_buf_printf(&b, "\":%lld", (long long)fields[i].i);
		} else {
			put_str(&b, fields[i].key, fields[i].s);
		}
	}
	cv_buf_puts(&b, "}\n");
	if (b.data) {
		ssize_t w = write(log_fd, b.data, b.len);
		(void)w;
	}
	cv_buf_release(&b);
}

void cv_log_msg(cv_log_level lvl, const char *event, const char *msg)
{
	cv_log_field_t f = CV_LS("msg", msg);
	cv_log(lvl, event, &f, 1);
}
