/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The few kernel API differences between Debian 12's 6.1 and newer kernels,
 * in one place so the rest of the module reads as plain current code.
 */
#ifndef BLKTAP_COMPAT_H
#define BLKTAP_COMPAT_H

#include <linux/version.h>
#include <linux/mm.h>
#include <linux/blk-mq.h>
#include <linux/device.h>

static inline void blktap_zap_range(struct vm_area_struct *vma,
				    unsigned long addr, unsigned long size)
{
#if LINUX_VERSION_CODE < KERNEL_VERSION(6, 3, 0)
	zap_page_range(vma, addr, size);
#else
	zap_page_range_single(vma, addr, size, NULL);
#endif
}

static inline void blktap_vm_flags_set(struct vm_area_struct *vma,
				       unsigned long flags)
{
#if LINUX_VERSION_CODE < KERNEL_VERSION(6, 3, 0)
	vma->vm_flags |= flags;
#else
	vm_flags_set(vma, flags);
#endif
}

static inline void blktap_vm_flags_clear(struct vm_area_struct *vma,
					 unsigned long flags)
{
#if LINUX_VERSION_CODE < KERNEL_VERSION(6, 3, 0)
	vma->vm_flags &= ~flags;
#else
	vm_flags_clear(vma, flags);
#endif
}

static inline struct gendisk *blktap_alloc_disk(struct blk_mq_tag_set *set,
						void *queuedata)
{
#if LINUX_VERSION_CODE < KERNEL_VERSION(6, 9, 0)
	return blk_mq_alloc_disk(set, queuedata);
#else
	return blk_mq_alloc_disk(set, NULL, queuedata);
#endif
}

static inline struct class *blktap_class_create(const char *name)
{
#if LINUX_VERSION_CODE < KERNEL_VERSION(6, 4, 0)
	return class_create(THIS_MODULE, name);
#else
	return class_create(name);
#endif
}

#endif
