// SPDX-License-Identifier: GPL-2.0
/*
 * /dev/blktapN: the ring device tapdisk opens. It maps the ring and the
 * data area, polls for new requests and drives the ring with ioctls. The
 * mapping is the attachment: when it goes away (munmap, exit, kill -9) the
 * requests tapdisk held are queued again for the next tapdisk.
 */
#include <linux/fs.h>
#include <linux/module.h>
#include <linux/pagemap.h>
#include <linux/poll.h>
#include <linux/sched/mm.h>
#include <linux/slab.h>
#include <linux/uaccess.h>
#include <linux/vmalloc.h>

#include "blktap.h"
#include "compat.h"

static dev_t blktap_ring_devt;
static struct cdev blktap_ring_cdev;
static struct class *blktap_class;

static void blktap_ring_reset(struct blktap *tap)
{
	struct blktap_ring_header *hdr = &tap->sring->hdr;

	memset(tap->sring, 0, sizeof(*tap->sring));
	hdr->magic = BLKTAP_RING_MAGIC;
	hdr->version = BLKTAP_ABI_VERSION;
	hdr->nr_slots = BLKTAP_RING_SLOTS;
	hdr->max_segs = BLKTAP_MAX_SEGS;
	tap->req_prod = 0;
	tap->rsp_cons = 0;
}

static void blktap_vma_close(struct vm_area_struct *vma)
{
	struct blktap *tap = vma->vm_private_data;
	struct blktap_slot *slot;
	unsigned int i;

	/* The PTEs are gone already; what tapdisk held is replayed later. */
	spin_lock_irq(&tap->slock);
	if (tap->vma != vma) {
		/* the copy a refused mremap() made and now unmaps */
		spin_unlock_irq(&tap->slock);
		return;
	}
	for (i = 0; i < BLKTAP_RING_SLOTS; i++) {
		slot = &tap->slots[i];
		memset(slot->map, BLKTAP_MAP_NONE, sizeof(slot->map));
		slot->has_zc = false;
		if (slot->state != BLKTAP_SLOT_PUBLISHED)
			continue;
		/* copy again: the bounce pages were the dead tapdisk's to touch */
		memset(slot->precopied, 0, sizeof(slot->precopied));
		slot->state = BLKTAP_SLOT_PENDING;
		list_add(&slot->node, &tap->pending);
		atomic64_inc(&tap->stats.requeued);
	}
	tap->vma = NULL;
	spin_unlock_irq(&tap->slock);
	blktap_device_detached(tap);
}

static vm_fault_t blktap_vma_fault(struct vm_fault *vmf)
{
	/* Only pages of published requests are there to touch. */
	return VM_FAULT_SIGBUS;
}

/*
 * page_mkwrite makes the mapping write-notify, so every page inserted after
 * mmap starts read-only and the first write lands here: bounce pages become
 * writable, the request pages of a write (zero-copy) stay read-only.
 */
static vm_fault_t blktap_vma_mkwrite(struct vm_fault *vmf)
{
	struct vm_area_struct *vma = vmf->vma;
	struct blktap *tap = vma->vm_private_data;
	unsigned long off = vmf->address - vma->vm_start;
	u32 page;

	if (off >= BLKTAP_DATA_OFFSET) {
		page = (off - BLKTAP_DATA_OFFSET) >> PAGE_SHIFT;
		if (READ_ONCE(tap->slots[page / BLKTAP_MAX_SEGS]
			      .map[page % BLKTAP_MAX_SEGS]) != BLKTAP_MAP_BOUNCE)
			return VM_FAULT_SIGBUS;
	}
	lock_page(vmf->page);
	return VM_FAULT_LOCKED;
}

static int blktap_vma_may_split(struct vm_area_struct *vma, unsigned long addr)
{
	return -EINVAL;
}

/* The kernel tracks the mapping by its VMA: it must not move. */
static int blktap_vma_mremap(struct vm_area_struct *vma)
{
	return -EINVAL;
}

static const struct vm_operations_struct blktap_vm_ops = {
	.close		= blktap_vma_close,
	.fault		= blktap_vma_fault,
	.page_mkwrite	= blktap_vma_mkwrite,
	.may_split	= blktap_vma_may_split,
	.mremap		= blktap_vma_mremap,
};

static int blktap_ring_mmap(struct file *file, struct vm_area_struct *vma)
{
	struct blktap *tap = file->private_data;
	unsigned long addr;
	unsigned int i;
	int err;

	if (vma->vm_pgoff != 0 ||
	    vma->vm_end - vma->vm_start != BLKTAP_MMAP_SIZE ||
	    !(vma->vm_flags & VM_SHARED))
		return -EINVAL;

	/* one mapping, one tapdisk: claim the tap before setting up */
	spin_lock_irq(&tap->slock);
	if (tap->vma) {
		spin_unlock_irq(&tap->slock);
		return -EBUSY;
	}
	tap->vma = vma;
	spin_unlock_irq(&tap->slock);

	/* vm_insert_page() in the ioctls wants VM_MIXEDMAP set up front. */
	blktap_vm_flags_set(vma, VM_MIXEDMAP | VM_DONTEXPAND | VM_DONTDUMP |
			    VM_DONTCOPY);
	vma->vm_ops = &blktap_vm_ops;
	vma->vm_private_data = tap;

	blktap_ring_reset(tap);
	for (i = 0; i < BLKTAP_RING_PAGES; i++) {
		addr = vma->vm_start + i * PAGE_SIZE;
		err = vm_insert_page(vma, addr,
				     vmalloc_to_page((void *)tap->sring +
						     i * PAGE_SIZE));
		if (err)
			goto out_unclaim;	/* mmap_region() zaps the VMA */
	}

	spin_lock_irq(&tap->slock);
	tap->pid = task_tgid_nr(current);
	tap->failfast = false;
	spin_unlock_irq(&tap->slock);
	cancel_delayed_work(&tap->timeout_work);
	wake_up_interruptible(&tap->wq);
	return 0;

out_unclaim:
	spin_lock_irq(&tap->slock);
	tap->vma = NULL;
	spin_unlock_irq(&tap->slock);
	return err;
}

static int blktap_ring_open(struct inode *inode, struct file *file)
{
	struct blktap *tap;
	int err = 0;

	mutex_lock(&blktap_taps_lock);
	tap = blktap_lookup(iminor(inode));
	if (!tap) {
		err = -ENXIO;
		goto out;
	}
	if (tap->open) {
		err = -EBUSY;
		goto out;
	}
	tap->open = true;
	file->private_data = tap;
out:
	mutex_unlock(&blktap_taps_lock);
	return err;
}

static int blktap_ring_release(struct inode *inode, struct file *file)
{
	struct blktap *tap = file->private_data;

	mutex_lock(&blktap_taps_lock);
	tap->open = false;
	mutex_unlock(&blktap_taps_lock);
	return 0;
}

static __poll_t blktap_ring_poll(struct file *file, poll_table *wait)
{
	struct blktap *tap = file->private_data;
	__poll_t mask = 0;

	poll_wait(file, &tap->wq, wait);
	spin_lock_irq(&tap->slock);
	if (tap->vma && !list_empty(&tap->pending))
		mask |= EPOLLIN | EPOLLRDNORM;
	spin_unlock_irq(&tap->slock);
	return mask;
}

/*
 * The caller's own mapping of the ring, with its mmap_lock read-held; NULL
 * if the caller is not the attached tapdisk.
 */
static struct vm_area_struct *blktap_ring_lock_vma(struct blktap *tap)
{
	struct mm_struct *mm = current->mm;
	struct vm_area_struct *vma;

	if (!mm)
		return NULL;
	mmap_read_lock(mm);
	spin_lock_irq(&tap->slock);
	vma = tap->vma;
	if (vma && vma->vm_mm != mm)
		vma = NULL;
	spin_unlock_irq(&tap->slock);
	if (!vma)
		mmap_read_unlock(mm);
	return vma;
}

static long blktap_ring_kick(struct blktap *tap)
{
	struct vm_area_struct *vma;
	unsigned int noio;
	int ret;

	/*
	 * Memory for bounce pages and page tables must not wait for writeback
	 * to a tapdev: that writeback waits for this very call.
	 */
	noio = memalloc_noio_save();
	mutex_lock(&tap->lock);
	vma = blktap_ring_lock_vma(tap);
	if (!vma) {
		ret = -ENXIO;
		goto out;
	}
	blktap_ring_consume(tap, vma);
	ret = blktap_ring_publish(tap, vma);
	mmap_read_unlock(vma->vm_mm);
out:
	mutex_unlock(&tap->lock);
	memalloc_noio_restore(noio);
	return ret;
}

static long blktap_ring_remove(struct blktap *tap)
{
	struct vm_area_struct *vma;
	bool attached;
	int ret;

	mutex_lock(&tap->lock);
	vma = blktap_ring_lock_vma(tap);
	if (!vma) {
		spin_lock_irq(&tap->slock);
		attached = tap->vma;
		spin_unlock_irq(&tap->slock);
		/* only the attached tapdisk can unmap what it holds */
		if (attached) {
			ret = -EBUSY;
			goto out;
		}
	}
	ret = blktap_device_destroy(tap, vma);
	if (vma)
		mmap_read_unlock(vma->vm_mm);
out:
	mutex_unlock(&tap->lock);
	return ret;
}

static void blktap_ring_info(struct blktap *tap, struct blktap_info *info)
{
	memset(info, 0, sizeof(*info));
	info->version = BLKTAP_ABI_VERSION;
	info->minor = tap->minor;
	info->nr_slots = BLKTAP_RING_SLOTS;
	info->max_segs = BLKTAP_MAX_SEGS;
	info->page_size = BLKTAP_PAGE_SIZE;
	info->ring_size = BLKTAP_RING_SIZE;
	info->data_offset = BLKTAP_DATA_OFFSET;
	info->mmap_size = BLKTAP_MMAP_SIZE;
	mutex_lock(&tap->lock);
	if (tap->disk) {
		info->flags |= BLKTAP_INFO_DEVICE;
		info->params = tap->params;
	}
	if (READ_ONCE(tap->zerocopy))
		info->flags |= BLKTAP_INFO_ZEROCOPY;
	mutex_unlock(&tap->lock);
}

static long blktap_ring_ioctl(struct file *file, unsigned int cmd,
			      unsigned long arg)
{
	struct blktap *tap = file->private_data;
	void __user *uarg = (void __user *)arg;
	struct blktap_device_params params;
	struct blktap_info info;
	int ret;

	switch (cmd) {
	case BLKTAP_IOCTL_KICK:
		return blktap_ring_kick(tap);
	case BLKTAP_IOCTL_CREATE_DEVICE:
		if (copy_from_user(&params, uarg, sizeof(params)))
			return -EFAULT;
		mutex_lock(&tap->lock);
		ret = blktap_device_create(tap, &params);
		mutex_unlock(&tap->lock);
		return ret;
	case BLKTAP_IOCTL_REMOVE_DEVICE:
		return blktap_ring_remove(tap);
	case BLKTAP_IOCTL_INFO:
		if (copy_from_user(&info, uarg, sizeof(info.version)))
			return -EFAULT;
		if (info.version != BLKTAP_ABI_VERSION)
			return -EPROTO;
		blktap_ring_info(tap, &info);
		if (copy_to_user(uarg, &info, sizeof(info)))
			return -EFAULT;
		return 0;
	default:
		return -ENOTTY;
	}
}

static const struct file_operations blktap_ring_fops = {
	.owner		= THIS_MODULE,
	.open		= blktap_ring_open,
	.release	= blktap_ring_release,
	.mmap		= blktap_ring_mmap,
	.poll		= blktap_ring_poll,
	.unlocked_ioctl	= blktap_ring_ioctl,
	.compat_ioctl	= compat_ptr_ioctl,
	.llseek		= noop_llseek,
};

int blktap_ring_create(struct blktap *tap)
{
	int err;

	tap->sring = vmalloc_user(BLKTAP_RING_SIZE);
	if (!tap->sring)
		return -ENOMEM;
	blktap_ring_reset(tap);
	tap->slots = kvcalloc(BLKTAP_RING_SLOTS, sizeof(*tap->slots),
			      GFP_KERNEL);
	if (!tap->slots) {
		err = -ENOMEM;
		goto out_ring;
	}
	tap->dev = device_create_with_groups(blktap_class, NULL,
					     MKDEV(MAJOR(blktap_ring_devt),
						   tap->minor),
					     tap, blktap_sysfs_groups,
					     "blktap%d", tap->minor);
	if (IS_ERR(tap->dev)) {
		err = PTR_ERR(tap->dev);
		goto out_slots;
	}
	return 0;

out_slots:
	kvfree(tap->slots);
out_ring:
	vfree(tap->sring);
	return err;
}

void blktap_ring_destroy(struct blktap *tap)
{
	device_destroy(blktap_class, MKDEV(MAJOR(blktap_ring_devt),
					   tap->minor));
	blktap_slots_free_bounce(tap);
	kvfree(tap->slots);
	vfree(tap->sring);
}

int blktap_ring_init(void)
{
	int err;

	err = alloc_chrdev_region(&blktap_ring_devt, 0, blktap_max_taps,
				  "blktap");
	if (err)
		return err;
	cdev_init(&blktap_ring_cdev, &blktap_ring_fops);
	blktap_ring_cdev.owner = THIS_MODULE;
	err = cdev_add(&blktap_ring_cdev, blktap_ring_devt, blktap_max_taps);
	if (err)
		goto out_region;
	blktap_class = blktap_class_create("blktap");
	if (IS_ERR(blktap_class)) {
		err = PTR_ERR(blktap_class);
		goto out_cdev;
	}
	return 0;

out_cdev:
	cdev_del(&blktap_ring_cdev);
out_region:
	unregister_chrdev_region(blktap_ring_devt, blktap_max_taps);
	return err;
}

void blktap_ring_exit(void)
{
	class_destroy(blktap_class);
	cdev_del(&blktap_ring_cdev);
	unregister_chrdev_region(blktap_ring_devt, blktap_max_taps);
}
