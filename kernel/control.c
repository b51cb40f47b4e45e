// SPDX-License-Identifier: GPL-2.0
/*
 * /dev/blktap-control: allocates and frees taps, and the module's entry
 * points and parameters. A tap is a ring device /dev/blktapN; tapdisk turns
 * it into a disk with BLKTAP_IOCTL_CREATE_DEVICE.
 */
#include <linux/capability.h>
#include <linux/fs.h>
#include <linux/miscdevice.h>
#include <linux/module.h>
#include <linux/slab.h>
#include <linux/uaccess.h>

#include "blktap.h"

static_assert(PAGE_SIZE == BLKTAP_PAGE_SIZE, "the ring ABI assumes 4 KiB pages");
static_assert(sizeof(struct blktap_ring_header) == 64);
static_assert(sizeof(struct blktap_request) == 32 + 8 * BLKTAP_MAX_SEGS);
static_assert(sizeof(struct blktap_response) == 16);

unsigned int blktap_max_taps = 64;
module_param_named(max_taps, blktap_max_taps, uint, 0444);
MODULE_PARM_DESC(max_taps, "Most taps that can exist at once (1..1024, default 64)");

bool blktap_zerocopy_default = true;
module_param_named(zerocopy, blktap_zerocopy_default, bool, 0644);
MODULE_PARM_DESC(zerocopy,
		 "Map request pages into tapdisk (1, default) or copy them (0); for new taps, per tap in sysfs mode");

unsigned int blktap_attach_timeout = 30;
module_param_named(attach_timeout, blktap_attach_timeout, uint, 0644);
MODULE_PARM_DESC(attach_timeout,
		 "Seconds queued I/O waits for a tapdisk to (re)attach before failing with EIO; 0 waits for ever");

DEFINE_MUTEX(blktap_taps_lock);
static struct blktap **blktap_taps;

struct blktap *blktap_lookup(unsigned int minor)
{
	lockdep_assert_held(&blktap_taps_lock);
	if (minor >= blktap_max_taps)
		return NULL;
	return blktap_taps[minor];
}

static int blktap_alloc(void)
{
	struct blktap *tap;
	int minor, err;

	tap = kzalloc(sizeof(*tap), GFP_KERNEL);
	if (!tap)
		return -ENOMEM;
	mutex_init(&tap->lock);
	spin_lock_init(&tap->slock);
	INIT_LIST_HEAD(&tap->pending);
	init_waitqueue_head(&tap->wq);
	INIT_DELAYED_WORK(&tap->timeout_work, blktap_device_timeout_work);
	tap->zerocopy = blktap_zerocopy_default;

	mutex_lock(&blktap_taps_lock);
	for (minor = 0; minor < blktap_max_taps; minor++)
		if (!blktap_taps[minor])
			break;
	if (minor == blktap_max_taps) {
		err = -EMFILE;
		goto out_unlock;
	}
	tap->minor = minor;
	err = blktap_ring_create(tap);
	if (err)
		goto out_unlock;
	blktap_taps[minor] = tap;
	mutex_unlock(&blktap_taps_lock);
	return minor;

out_unlock:
	mutex_unlock(&blktap_taps_lock);
	kfree(tap);
	return err;
}

/* With blktap_taps_lock held and no tapdisk attached. */
static void blktap_release_tap(struct blktap *tap)
{
	mutex_lock(&tap->lock);
	blktap_device_destroy(tap, NULL);
	mutex_unlock(&tap->lock);
	cancel_delayed_work_sync(&tap->timeout_work);
	blktap_taps[tap->minor] = NULL;
	blktap_ring_destroy(tap);
	kfree(tap);
}

static int blktap_free(unsigned int minor)
{
	struct blktap *tap;
	int err = 0;

	mutex_lock(&blktap_taps_lock);
	tap = blktap_lookup(minor);
	if (!tap) {
		err = -ENOENT;
		goto out;
	}
	if (tap->open) {
		/* tapdisk removes its device and closes the ring first */
		err = -EBUSY;
		goto out;
	}
	blktap_release_tap(tap);
out:
	mutex_unlock(&blktap_taps_lock);
	return err;
}

static long blktap_control_ioctl(struct file *file, unsigned int cmd,
				 unsigned long arg)
{
	void __user *uarg = (void __user *)arg;
	struct blktap_ctl_tap ct;
	int ret;

	if (!capable(CAP_SYS_ADMIN))
		return -EPERM;

	switch (cmd) {
	case BLKTAP_CTL_ALLOC:
		if (copy_from_user(&ct, uarg, sizeof(ct)))
			return -EFAULT;
		if (ct.version != BLKTAP_ABI_VERSION)
			return -EPROTO;
		ret = blktap_alloc();
		if (ret < 0)
			return ret;
		ct.minor = ret;
		if (copy_to_user(uarg, &ct, sizeof(ct))) {
			blktap_free(ct.minor);
			return -EFAULT;
		}
		return 0;
	case BLKTAP_CTL_FREE:
		if (copy_from_user(&ct, uarg, sizeof(ct)))
			return -EFAULT;
		if (ct.version != BLKTAP_ABI_VERSION)
			return -EPROTO;
		return blktap_free(ct.minor);
	default:
		return -ENOTTY;
	}
}

static const struct file_operations blktap_control_fops = {
	.owner		= THIS_MODULE,
	.unlocked_ioctl	= blktap_control_ioctl,
	.compat_ioctl	= compat_ptr_ioctl,
	.llseek		= noop_llseek,
};

static struct miscdevice blktap_control = {
	.minor	= MISC_DYNAMIC_MINOR,
	.name	= "blktap-control",
	.fops	= &blktap_control_fops,
	.mode	= 0600,
};

static int __init blktap_init(void)
{
	int err;

	if (blktap_max_taps < 1 || blktap_max_taps > 1024) {
		pr_err("blktap: max_taps=%u is outside 1..1024\n",
		       blktap_max_taps);
		return -EINVAL;
	}
	blktap_taps = kcalloc(blktap_max_taps, sizeof(*blktap_taps),
			      GFP_KERNEL);
	if (!blktap_taps)
		return -ENOMEM;

	err = blktap_device_init();
	if (err)
		goto out_free;
	err = blktap_ring_init();
	if (err)
		goto out_device;
	err = misc_register(&blktap_control);
	if (err)
		goto out_ring;
	pr_info("blktap: ABI %u, %u slots x %u segments, max %u taps\n",
		BLKTAP_ABI_VERSION, BLKTAP_RING_SLOTS, BLKTAP_MAX_SEGS,
		blktap_max_taps);
	return 0;

out_ring:
	blktap_ring_exit();
out_device:
	blktap_device_exit();
out_free:
	kfree(blktap_taps);
	return err;
}

static void __exit blktap_exit(void)
{
	unsigned int minor;

	misc_deregister(&blktap_control);
	/* open files pin the module, so no tapdisk is attached here */
	mutex_lock(&blktap_taps_lock);
	for (minor = 0; minor < blktap_max_taps; minor++)
		if (blktap_taps[minor])
			blktap_release_tap(blktap_taps[minor]);
	mutex_unlock(&blktap_taps_lock);
	blktap_ring_exit();
	blktap_device_exit();
	kfree(blktap_taps);
}

module_init(blktap_init);
module_exit(blktap_exit);
MODULE_DESCRIPTION("blktap: block devices served by a user-space tapdisk through a shared ring");
MODULE_LICENSE("GPL");
