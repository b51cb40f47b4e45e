// SPDX-License-Identifier: GPL-2.0
/*
 * /sys/class/blktap/blktapN: what a tap is doing, for tap-ctl and for
 * people. mode is writable (zerocopy or copy) so both can be measured on
 * one tap; the change applies to requests published afterwards.
 */
#include <linux/device.h>
#include <linux/sysfs.h>

#include "blktap.h"

static ssize_t name_show(struct device *dev, struct device_attribute *attr,
			 char *buf)
{
	struct blktap *tap = dev_get_drvdata(dev);
	ssize_t ret;

	mutex_lock(&tap->lock);
	ret = sysfs_emit(buf, "%s\n", tap->disk ? tap->disk->disk_name : "");
	mutex_unlock(&tap->lock);
	return ret;
}
static DEVICE_ATTR_RO(name);

static ssize_t pid_show(struct device *dev, struct device_attribute *attr,
			char *buf)
{
	struct blktap *tap = dev_get_drvdata(dev);
	pid_t pid;

	spin_lock_irq(&tap->slock);
	pid = tap->vma ? tap->pid : 0;
	spin_unlock_irq(&tap->slock);
	return sysfs_emit(buf, "%d\n", pid);
}
static DEVICE_ATTR_RO(pid);

/* "<pending> <published>": queued for tapdisk, held by tapdisk. */
static ssize_t requests_show(struct device *dev, struct device_attribute *attr,
			     char *buf)
{
	struct blktap *tap = dev_get_drvdata(dev);
	unsigned int i, pending = 0, published = 0;

	spin_lock_irq(&tap->slock);
	for (i = 0; i < BLKTAP_RING_SLOTS; i++) {
		if (tap->slots[i].state == BLKTAP_SLOT_PENDING)
			pending++;
		else if (tap->slots[i].state != BLKTAP_SLOT_FREE)
			published++;
	}
	spin_unlock_irq(&tap->slock);
	return sysfs_emit(buf, "%u %u\n", pending, published);
}
static DEVICE_ATTR_RO(requests);

static ssize_t mode_show(struct device *dev, struct device_attribute *attr,
			 char *buf)
{
	struct blktap *tap = dev_get_drvdata(dev);

	return sysfs_emit(buf, "%s\n",
			  READ_ONCE(tap->zerocopy) ? "zerocopy" : "copy");
}

static ssize_t mode_store(struct device *dev, struct device_attribute *attr,
			  const char *buf, size_t count)
{
	struct blktap *tap = dev_get_drvdata(dev);

	if (sysfs_streq(buf, "zerocopy"))
		WRITE_ONCE(tap->zerocopy, true);
	else if (sysfs_streq(buf, "copy"))
		WRITE_ONCE(tap->zerocopy, false);
	else
		return -EINVAL;
	return count;
}
static DEVICE_ATTR_RW(mode);

#define BLKTAP_STAT_ATTR(field)						\
static ssize_t field##_show(struct device *dev,				\
			    struct device_attribute *attr, char *buf)	\
{									\
	struct blktap *tap = dev_get_drvdata(dev);			\
									\
	return sysfs_emit(buf, "%lld\n",				\
			  atomic64_read(&tap->stats.field));		\
}									\
static DEVICE_ATTR_RO(field)

BLKTAP_STAT_ATTR(pages_mapped);
BLKTAP_STAT_ATTR(pages_copied);
BLKTAP_STAT_ATTR(bad_responses);
BLKTAP_STAT_ATTR(requeued);
BLKTAP_STAT_ATTR(timed_out);

static struct attribute *blktap_attrs[] = {
	&dev_attr_name.attr,
	&dev_attr_pid.attr,
	&dev_attr_requests.attr,
	&dev_attr_mode.attr,
	&dev_attr_pages_mapped.attr,
	&dev_attr_pages_copied.attr,
	&dev_attr_bad_responses.attr,
	&dev_attr_requeued.attr,
	&dev_attr_timed_out.attr,
	NULL,
};

static const struct attribute_group blktap_group = {
	.attrs = blktap_attrs,
};

const struct attribute_group *blktap_sysfs_groups[] = {
	&blktap_group,
	NULL,
};
