/*
 * fuzz_time.c - the FHIR date/time parser (used for _since and friends):
 * never crashes; what it accepts formats back to an instant it accepts again.
 * The range parser (search values of any precision) gives ranges with lo <= hi,
 * and whatever cv_time_parse accepts it accepts too, starting at the same instant.
 */
#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/time.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int64_t floor_ms(int64_t us)
{
	return us / 1000 - (us % 1000 < 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s = malloc(size + 1);
	if (!s)
		return 0;
	memcpy(s, data, size);
	s[size] = '\0';
	int64_t us, again;
	if (cv_time_parse(s, &us) == CV_OK) {
		char buf[40];
		cv_time_format_instant(us, buf, sizeof buf);
		if (buf[0])
			assert(cv_time_parse(buf, &again) == CV_OK && floor_ms(again) == floor_ms(us));
	}
	int64_t lo, hi;
	if (cv_time_range(s, &lo, &hi, NULL) == CV_OK)
		assert(lo <= hi);
	free(s);
	return 0;
}
