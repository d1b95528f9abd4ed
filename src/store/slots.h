/*
 * slots.h - a bounded set of interchangeable resources (a back end's read
 * connections): take a free one (waiting while all are busy), give it back.
 * Private to store/.
 */
#ifndef CV_STORE_SLOTS_H
#define CV_STORE_SLOTS_H

#include <pthread.h>

#define CV_SLOTS_MAX 64

typedef struct cv_slots {
	pthread_mutex_t mu;             /* guards busy */
	pthread_cond_t cond;            /* a slot was given back */
	unsigned n;                     /* slots in use, at most CV_SLOTS_MAX */
	unsigned char busy[CV_SLOTS_MAX];
} cv_slots_t;

/* Prepares n slots (clamped to 1..CV_SLOTS_MAX), all free. */
void cv_slots_init(cv_slots_t *s, unsigned n);

/* Destroys the lock and condition. */
void cv_slots_release(cv_slots_t *s);

/* The index of a free slot, now taken; waits while none is free. */
unsigned cv_slots_take(cv_slots_t *s);

/* Gives slot i back. */
void cv_slots_give(cv_slots_t *s, unsigned i);

#endif
