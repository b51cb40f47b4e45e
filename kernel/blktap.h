/* SPDX-License-Identifier: GPL-2.0 */
/*
 * blktap.ko internals: one struct blktap per tap (ring device /dev/blktapN
 * plus, once tapdisk asks, block device /dev/tapdevN), shared by the files
 * of the module.
 *
 * Locking: tap->lock (mutex) serialises the ring (publishing requests,
 * consuming responses) and the block device's creation and removal; it is
 * taken before mmap_lock. tap->slock (spinlock) protects the slots, the
 * pending list and tap->vma; it is the only lock queue_rq, the VMA
 * callbacks and the timeout work take.
 */
#ifndef BLKTAP_H
#define BLKTAP_H

#include <linux/blk-mq.h>
#include <linux/cdev.h>
#include <linux/list.h>
#include <linux/mm.h>
#include <linux/mutex.h>
#include <linux/sched.h>
#include <linux/spinlock.h>
#include <linux/wait.h>
#include <linux/workqueue.h>
#include <blktap/ioctl.h>

#include "logic.h"

enum blktap_slot_state {
	BLKTAP_SLOT_FREE,
	BLKTAP_SLOT_PENDING,	/* queued by blk-mq, not on the ring */
	BLKTAP_SLOT_PUBLISHED,	/* on the ring, owned by tapdisk */
	BLKTAP_SLOT_BUSY,	/* being published or completed */
};

/* What a window page's PTE holds. */
enum blktap_map {
	BLKTAP_MAP_NONE,
	BLKTAP_MAP_BOUNCE,	/* the slot's bounce page, left mapped */
	BLKTAP_MAP_ZC,		/* a page of the request, zapped on completion */
};

struct blktap_slot {
	struct list_head node;		/* on tap->pending */
	struct request *rq;
	enum blktap_slot_state state;
	u64 seq;
	u64 id;				/* id of the current publication */
	u16 nr_segs;
	bool packed;			/* too many bvecs: data copied, packed */
	bool has_zc;			/* some window page maps a request page */
	blk_status_t status;		/* of the answer, for the completion */
	u8 map[BLKTAP_MAX_SEGS];	/* enum blktap_map per window page */
	u8 bounced[BLKTAP_MAX_SEGS];	/* segment i was copied */
	u8 precopied[BLKTAP_MAX_SEGS];	/* copied in queue_rq already */
	struct page *bounce[BLKTAP_MAX_SEGS];
};

struct blktap_stats {
	atomic64_t pages_mapped;	/* request pages inserted zero-copy */
	atomic64_t pages_copied;	/* request pages copied via bounce pages */
	atomic64_t bad_responses;	/* protocol errors from user space */
	atomic64_t requeued;		/* published requests replayed after detach */
	atomic64_t timed_out;		/* failed: no tapdisk within the timeout */
};

struct blktap {
	int minor;
	struct device *dev;		/* /sys/class/blktap/blktapN */

	struct mutex lock;
	spinlock_t slock;

	/* ring */
	struct blktap_sring *sring;	/* vmalloc_user, BLKTAP_RING_SIZE */
	u32 req_prod;			/* private copies of the ring indices */
	u32 rsp_cons;
	struct blktap_slot *slots;	/* BLKTAP_RING_SLOTS, index == blk-mq tag */
	struct list_head pending;
	wait_queue_head_t wq;
	bool zerocopy;

	/* the tapdisk: file open, and its mapping */
	bool open;			/* under blktap_taps_lock */
	pid_t pid;
	struct vm_area_struct *vma;	/* under slock; stable under its mmap_lock */

	/* block device */
	struct gendisk *disk;
	struct blk_mq_tag_set tag_set;
	struct blktap_device_params params;
	bool dying;			/* fail new requests: device going away */
	bool failfast;			/* fail new requests: no tapdisk in time */
	struct delayed_work timeout_work;

	struct blktap_stats stats;
};

/* control.c */
extern unsigned int blktap_max_taps;
extern bool blktap_zerocopy_default;
extern unsigned int blktap_attach_timeout;
extern struct mutex blktap_taps_lock;
struct blktap *blktap_lookup(unsigned int minor);

/* ring.c */
int blktap_ring_init(void);
void blktap_ring_exit(void);
int blktap_ring_create(struct blktap *tap);
void blktap_ring_destroy(struct blktap *tap);

/* request.c */
int blktap_ring_consume(struct blktap *tap, struct vm_area_struct *vma);
int blktap_ring_publish(struct blktap *tap, struct vm_area_struct *vma);
void blktap_slot_finish(struct blktap *tap, struct vm_area_struct *vma,
			struct blktap_slot *slot, blk_status_t status);
void blktap_complete_rq(struct request *rq);
void blktap_precopy(struct blktap *tap, struct blktap_slot *slot,
		    struct request *rq);
void blktap_slots_free_bounce(struct blktap *tap);

/* device.c */
int blktap_device_init(void);
void blktap_device_exit(void);
int blktap_device_create(struct blktap *tap,
			 const struct blktap_device_params *params);
int blktap_device_destroy(struct blktap *tap, struct vm_area_struct *vma);
void blktap_device_detached(struct blktap *tap);
void blktap_device_timeout_work(struct work_struct *work);

/* sysfs.c */
extern const struct attribute_group *blktap_sysfs_groups[];

#endif
