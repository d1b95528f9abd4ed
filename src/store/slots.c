/*
 * slots.c - take and give back one of n resources.
 */
#include "store/slots.h"

#include <string.h>

void cv_slots_init(cv_slots_t *s, unsigned n)
{
	pthread_mutex_init(&s->mu, NULL);
	pthread_cond_init(&s->cond, NULL);
	s->n = n < 1 ? 1 : n > CV_SLOTS_MAX ? CV_SLOTS_MAX : n;
	memset(s->busy, 0, sizeof s->busy);
}

void cv_slots_release(cv_slots_t *s)
{
	pthread_mutex_destroy(&s->mu);
	pthread_cond_destroy(&s->cond);
}

unsigned cv_slots_take(cv_slots_t *s)
{
	pthread_mutex_lock(&s->mu);
	for (;;) {
		for (unsigned i = 0; i < s->n; i++) {
			if (!s->busy[i]) {
				s->busy[i] = 1;
				pthread_mutex_unlock(&s->mu);
				return i;
			}
		}
		pthread_cond_wait(&s->cond, &s->mu);
	}
}

void cv_slots_give(cv_slots_t *s, unsigned i)
{
	pthread_mutex_lock(&s->mu);
	s->busy[i] = 0;
	pthread_cond_signal(&s->cond);
	pthread_mutex_unlock(&s->mu);
}
