// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * tapctl: the test VM's user-space side of blktap.ko, independent of
 * tapdisk. One static binary with small subcommands:
 *
 *   alloc | free N                 /dev/blktap-control
 *   serve N FILE [opts]            a ring server backed by FILE
 *       -c       create /dev/tapdevN first (size of FILE)
 *       -d US    sleep US microseconds per request (for kill tests)
 *       -r       on SIGTERM remove the device before exiting
 *       -e       evil: send malformed responses, then die holding I/O
 *       -f SECS  fuzz: garbage responses and indices around correct
 *                answers for SECS seconds, then die (SIGALRM) holding I/O
 *       -p       probe: try to write into write-request pages, report
 *       -R       create the device read-only
 *   abi N                          ioctl/mmap argument checks
 *   dio DEV                        O_DIRECT pattern write/read/verify
 *   pread DEV OFF LEN              one O_DIRECT read (exit 0 or 1)
 *   zeroout DEV OFF LEN            BLKZEROOUT (write-zeroes requests)
 *   bench DEV MODE BS QD SECS      O_DIRECT libaio load (MODE: read, write,
 *                                  randread, randwrite); prints MiB/s, IOPS
 *   loop-dio LOOPDEV               turn on direct I/O of a loop device
 *   exit CODE                      isa-debug-exit: power off with CODE
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/io.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>
#include <libaio.h>
#include <linux/loop.h>

#include <blktap/ioctl.h>

#define barrier()	__asm__ __volatile__("" ::: "memory")
#define rmb()		__atomic_thread_fence(__ATOMIC_ACQUIRE)
#define wmb()		__atomic_thread_fence(__ATOMIC_RELEASE)

static void die(const char *what)
{
	fprintf(stderr, "tapctl: %s: %s\n", what, strerror(errno));
	exit(1);
}

static int ctl_open(void)
{
	int fd = open("/dev/blktap-control", O_RDWR);

	if (fd < 0)
		die("open /dev/blktap-control");
	return fd;
}

static int cmd_alloc(void)
{
	struct blktap_ctl_tap ct = { .version = BLKTAP_ABI_VERSION };
	int fd = ctl_open();

	if (ioctl(fd, BLKTAP_CTL_ALLOC, &ct) < 0)
		die("BLKTAP_CTL_ALLOC");
	printf("%u\n", ct.minor);
	return 0;
}

static int cmd_free(unsigned int minor)
{
	struct blktap_ctl_tap ct = { .version = BLKTAP_ABI_VERSION,
				     .minor = minor };
	int fd = ctl_open();

	if (ioctl(fd, BLKTAP_CTL_FREE, &ct) < 0)
		die("BLKTAP_CTL_FREE");
	return 0;
}

static int ring_open(unsigned int minor)
{
	char path[64];
	int fd;

	snprintf(path, sizeof(path), "/dev/blktap%u", minor);
	fd = open(path, O_RDWR);
	if (fd < 0)
		die(path);
	return fd;
}

/* --- the ring server ---------------------------------------------------- */

static volatile sig_atomic_t stop;
static sigjmp_buf probe_jmp;

static void on_term(int sig)
{
	(void)sig;
	stop = 1;
}

static void on_segv(int sig)
{
	(void)sig;
	siglongjmp(probe_jmp, 1);
}

struct server {
	int fd, img;
	uint8_t *map;
	struct blktap_sring *sring;
	uint32_t req_cons, rsp_prod;
	unsigned int delay_us;
	int evil, probe;
	unsigned int fuzz;
	unsigned int seed;
	uint64_t ids[BLKTAP_RING_SLOTS];	/* ids seen per slot, for fuzzing */
	unsigned long served, ro_faults, rw_ok;
};

static uint8_t *seg_addr(struct server *s, const struct blktap_request *req,
			 unsigned int i)
{
	return s->map + BLKTAP_DATA_OFFSET +
	       (uint64_t)req->slot * BLKTAP_SLOT_SIZE +
	       (uint64_t)req->seg[i].page * BLKTAP_PAGE_SIZE + req->seg[i].offset;
}

static void probe_write(struct server *s, volatile uint8_t *p)
{
	if (sigsetjmp(probe_jmp, 1) == 0) {
		uint8_t v = *p;

		*p = v;		/* same value: harmless if it is allowed */
		s->rw_ok++;
	} else {
		s->ro_faults++;
	}
}

static int do_rw(struct server *s, const struct blktap_request *req)
{
	uint64_t off = req->sector * BLKTAP_SECTOR_SIZE, total = 0;
	struct iovec iov[BLKTAP_MAX_SEGS];
	unsigned int i;
	ssize_t n;

	if (req->nr_segs == 0 || req->nr_segs > BLKTAP_MAX_SEGS ||
	    req->slot >= BLKTAP_RING_SLOTS)
		return -EINVAL;
	for (i = 0; i < req->nr_segs; i++) {
		if (req->seg[i].page >= BLKTAP_MAX_SEGS ||
		    req->seg[i].offset + req->seg[i].length > BLKTAP_PAGE_SIZE)
			return -EINVAL;
		iov[i].iov_base = seg_addr(s, req, i);
		iov[i].iov_len = req->seg[i].length;
		total += req->seg[i].length;
	}
	if (total != (uint64_t)req->nr_sectors * BLKTAP_SECTOR_SIZE)
		return -EINVAL;
	if (req->op == BLKTAP_OP_WRITE && s->probe)
		probe_write(s, iov[0].iov_base);
	if (req->op == BLKTAP_OP_READ)
		n = preadv(s->img, iov, req->nr_segs, off);
	else
		n = pwritev(s->img, iov, req->nr_segs, off);
	if (n < 0)
		return -errno;
	if ((uint64_t)n != total)
		return -EIO;
	if (req->op == BLKTAP_OP_WRITE && (req->flags & BLKTAP_REQ_FUA) &&
	    fdatasync(s->img) < 0)
		return -errno;
	return 0;
}

static int do_request(struct server *s, const struct blktap_request *req)
{
	uint64_t off = req->sector * BLKTAP_SECTOR_SIZE;
	uint64_t len = (uint64_t)req->nr_sectors * BLKTAP_SECTOR_SIZE;

	switch (req->op) {
	case BLKTAP_OP_READ:
	case BLKTAP_OP_WRITE:
		return do_rw(s, req);
	case BLKTAP_OP_FLUSH:
		return fdatasync(s->img) < 0 ? -errno : 0;
	case BLKTAP_OP_DISCARD:
	case BLKTAP_OP_WRITE_ZEROES:
		if (fallocate(s->img, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
			      off, len) < 0)
			return -errno;
		return 0;
	default:
		return -EOPNOTSUPP;
	}
}

static void respond(struct server *s, uint64_t id, int32_t status)
{
	struct blktap_response *rsp =
		&s->sring->rsp[BLKTAP_RING_INDEX(s->rsp_prod)];

	rsp->id = id;
	rsp->status = status;
	s->rsp_prod++;
}

static void push(struct server *s)
{
	wmb();
	__atomic_store_n(&s->sring->hdr.rsp_prod, s->rsp_prod, __ATOMIC_RELEASE);
}

/*
 * Evil: for the first request, garbage around a correct response; for the
 * second, a positive status; for the fourth, a wild rsp_prod, then exit
 * while holding it.
 */
static int evil_request(struct server *s, const struct blktap_request *req)
{
	int err = do_request(s, req);

	switch (s->served) {
	case 0:
		respond(s, req->id | 0xff, 0);		/* unknown slot */
		respond(s, req->id + 0x100, 0);		/* wrong sequence */
		respond(s, req->id, err);
		respond(s, req->id, err);		/* duplicate */
		return 1;
	case 1:
		respond(s, req->id, 5);			/* positive status */
		return 1;
	case 3:
		s->rsp_prod += 1000;
		push(s);
		ioctl(s->fd, BLKTAP_IOCTL_KICK);
		fprintf(stderr, "tapctl: evil: exiting with a request held\n");
		_exit(0);
	}
	return 0;
}

/*
 * Fuzz: random ids (some of them ids the kernel really used, some with a
 * live slot but another sequence), random statuses, now and then a wild
 * rsp_prod; then the true answer, most of the time.
 */
static int fuzz_request(struct server *s, const struct blktap_request *req)
{
	unsigned int i, n = rand_r(&s->seed) % 4;
	int err;

	s->ids[req->slot % BLKTAP_RING_SLOTS] = req->id;
	for (i = 0; i < n; i++) {
		uint64_t id;

		switch (rand_r(&s->seed) % 4) {
		case 0:
			id = ((uint64_t)rand_r(&s->seed) << 32) | rand_r(&s->seed);
			break;
		case 1:
			id = s->ids[rand_r(&s->seed) % BLKTAP_RING_SLOTS];
			break;
		case 2:
			id = req->id + ((uint64_t)(rand_r(&s->seed) % 5 + 1) << 8);
			break;
		default:
			id = req->id - 0x100;
			break;
		}
		respond(s, id, (int32_t)rand_r(&s->seed) - RAND_MAX / 2);
	}
	if (rand_r(&s->seed) % 16 == 0) {
		/* a wild producer: the kernel must skip, not trust, it */
		s->rsp_prod += rand_r(&s->seed);
		push(s);
		ioctl(s->fd, BLKTAP_IOCTL_KICK);
	}
	if (rand_r(&s->seed) % 8 == 0)
		return 1;		/* never answered: replayed later */
	err = do_request(s, req);
	respond(s, req->id, rand_r(&s->seed) % 8 ? err : -EIO);
	return 1;
}

static void serve_batch(struct server *s)
{
	struct blktap_request req;
	uint32_t prod;
	int err;

	prod = __atomic_load_n(&s->sring->hdr.req_prod, __ATOMIC_ACQUIRE);
	rmb();
	while (s->req_cons != prod) {
		/* the entry may be reused once answered: copy it first */
		memcpy(&req, &s->sring->req[BLKTAP_RING_INDEX(s->req_cons)],
		       sizeof(req));
		s->req_cons++;
		s->sring->hdr.req_cons = s->req_cons;
		if (s->delay_us)
			usleep(s->delay_us);
		if ((s->fuzz && fuzz_request(s, &req)) ||
		    (s->evil && evil_request(s, &req))) {
			s->served++;
			continue;
		}
		err = do_request(s, &req);
		if (err)
			fprintf(stderr, "tapctl: op %u sector %llu: %s\n",
				req.op, (unsigned long long)req.sector,
				strerror(-err));
		respond(s, req.id, err);
		s->served++;
	}
	push(s);
}

static int cmd_serve(int argc, char **argv)
{
	struct server s = { 0 };
	struct blktap_info info = { .version = BLKTAP_ABI_VERSION };
	int create = 0, remove_on_exit = 0, readonly = 0, opt, n;
	struct sigaction sa = { 0 };
	struct pollfd pfd;
	struct stat st;

	optind = 2;
	while ((opt = getopt(argc, argv, "cd:repRf:")) != -1) {
		switch (opt) {
		case 'c': create = 1; break;
		case 'd': s.delay_us = atoi(optarg); break;
		case 'r': remove_on_exit = 1; break;
		case 'e': s.evil = 1; break;
		case 'p': s.probe = 1; break;
		case 'R': readonly = 1; break;
		case 'f': s.fuzz = atoi(optarg); s.seed = getpid(); break;
		default: return 2;
		}
	}
	if (argc - optind != 2)
		return 2;
	/* before the ring is mapped: a SIGTERM once the pid shows must not kill */
	sa.sa_handler = on_term;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sa.sa_handler = on_segv;
	sa.sa_flags = SA_NODEFER;
	sigaction(SIGSEGV, &sa, NULL);
	sigaction(SIGBUS, &sa, NULL);

	s.fd = ring_open(atoi(argv[optind]));
	s.img = open(argv[optind + 1], O_RDWR);
	if (s.img < 0 || fstat(s.img, &st) < 0)
		die(argv[optind + 1]);
	if (ioctl(s.fd, BLKTAP_IOCTL_INFO, &info) < 0)
		die("BLKTAP_IOCTL_INFO");
	if (info.mmap_size != BLKTAP_MMAP_SIZE ||
	    info.data_offset != BLKTAP_DATA_OFFSET ||
	    info.nr_slots != BLKTAP_RING_SLOTS) {
		fprintf(stderr, "tapctl: ring geometry mismatch\n");
		return 1;
	}
	s.map = mmap(NULL, info.mmap_size, PROT_READ | PROT_WRITE, MAP_SHARED,
		     s.fd, 0);
	if (s.map == MAP_FAILED)
		die("mmap");
	s.sring = (struct blktap_sring *)s.map;
	if (s.sring->hdr.magic != BLKTAP_RING_MAGIC ||
	    s.sring->hdr.version != BLKTAP_ABI_VERSION) {
		fprintf(stderr, "tapctl: bad ring header\n");
		return 1;
	}
	if (create) {
		struct blktap_device_params p = {
			.version = BLKTAP_ABI_VERSION,
			.features = BLKTAP_FEAT_FLUSH | BLKTAP_FEAT_FUA |
				    BLKTAP_FEAT_DISCARD |
				    BLKTAP_FEAT_WRITE_ZEROES,
			.sectors = st.st_size / BLKTAP_SECTOR_SIZE,
			.logical_block_size = 512,
			.physical_block_size = 4096,
		};

		if (readonly)
			p.features |= BLKTAP_FEAT_READONLY;
		if (ioctl(s.fd, BLKTAP_IOCTL_CREATE_DEVICE, &p) < 0)
			die("BLKTAP_IOCTL_CREATE_DEVICE");
	}

	if (s.fuzz)
		alarm(s.fuzz);
	printf("tapctl: serving blktap%u\n", info.minor);
	fflush(stdout);
	pfd.fd = s.fd;
	pfd.events = POLLIN;
	while (!stop) {
		n = ioctl(s.fd, BLKTAP_IOCTL_KICK);
		if (n < 0)
			die("BLKTAP_IOCTL_KICK");
		serve_batch(&s);
		if (n > 0)
			continue;
		/* answers pushed, nothing new: consume them, then wait */
		if (poll(&pfd, 1, 200) < 0 && errno != EINTR)
			die("poll");
	}
	ioctl(s.fd, BLKTAP_IOCTL_KICK);
	if (remove_on_exit && ioctl(s.fd, BLKTAP_IOCTL_REMOVE_DEVICE) < 0)
		die("BLKTAP_IOCTL_REMOVE_DEVICE");
	printf("tapctl: served %lu requests, probe: %lu read-only faults, %lu writable\n",
	       s.served, s.ro_faults, s.rw_ok);
	return 0;
}

/* --- checks ------------------------------------------------------------- */

static int expect_errno(const char *what, int ret, int err)
{
	if (ret == -1 && errno == err)
		return 0;
	fprintf(stderr, "tapctl: abi: %s: got %d (%s), want %s\n", what, ret,
		ret < 0 ? strerror(errno) : "success", strerror(err));
	return 1;
}

static int cmd_abi(unsigned int minor)
{
	struct blktap_device_params p = { .version = BLKTAP_ABI_VERSION,
					  .sectors = 8,
					  .logical_block_size = 512 };
	struct blktap_info info = { .version = 99 };
	int fd = ring_open(minor), bad = 0;
	char path[64];
	void *m;

	bad += expect_errno("INFO v99", ioctl(fd, BLKTAP_IOCTL_INFO, &info),
			    EPROTO);
	p.logical_block_size = 1000;
	bad += expect_errno("CREATE lbs 1000",
			    ioctl(fd, BLKTAP_IOCTL_CREATE_DEVICE, &p), EINVAL);
	p.logical_block_size = 512;
	p.features = 1u << 30;
	bad += expect_errno("CREATE bad feature",
			    ioctl(fd, BLKTAP_IOCTL_CREATE_DEVICE, &p), EINVAL);
	p.features = 0;
	p.__reserved[2] = 1;
	bad += expect_errno("CREATE reserved",
			    ioctl(fd, BLKTAP_IOCTL_CREATE_DEVICE, &p), EINVAL);
	bad += expect_errno("KICK unmapped", ioctl(fd, BLKTAP_IOCTL_KICK),
			    ENXIO);
	m = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	bad += expect_errno("mmap short", m == MAP_FAILED ? -1 : 0, EINVAL);
	m = mmap(NULL, BLKTAP_MMAP_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE,
		 fd, 0);
	bad += expect_errno("mmap private", m == MAP_FAILED ? -1 : 0, EINVAL);
	snprintf(path, sizeof(path), "/dev/blktap%u", minor);
	bad += expect_errno("second open", open(path, O_RDWR), EBUSY);
	bad += expect_errno("bogus ioctl", ioctl(fd, _IO(0xb7, 0x7f)), ENOTTY);
	m = mmap(NULL, BLKTAP_MMAP_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED,
		 fd, 0);
	if (m == MAP_FAILED) {
		fprintf(stderr, "tapctl: abi: mmap: %s\n", strerror(errno));
		bad++;
	} else {
		void *m2 = mmap(NULL, BLKTAP_MMAP_SIZE, PROT_READ | PROT_WRITE,
				MAP_SHARED, fd, 0);

		bad += expect_errno("second mmap",
				    m2 == MAP_FAILED ? -1 : 0, EBUSY);
		/* no device yet: kick works and publishes nothing */
		if (ioctl(fd, BLKTAP_IOCTL_KICK) != 0) {
			fprintf(stderr, "tapctl: abi: kick on idle ring\n");
			bad++;
		}
		bad += expect_errno("partial munmap",
				    munmap((char *)m + 4096, 4096), EINVAL);
		m2 = mmap(NULL, BLKTAP_MMAP_SIZE, PROT_NONE,
			  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		bad += expect_errno("mremap move",
				    mremap(m, BLKTAP_MMAP_SIZE, BLKTAP_MMAP_SIZE,
					   MREMAP_MAYMOVE | MREMAP_FIXED, m2) ==
				    MAP_FAILED ? -1 : 0, EINVAL);
		if (ioctl(fd, BLKTAP_IOCTL_KICK) != 0) {
			fprintf(stderr, "tapctl: abi: kick after refused mremap\n");
			bad++;
		}
		munmap(m, BLKTAP_MMAP_SIZE);
	}
	close(fd);
	printf("tapctl: abi: %s\n", bad ? "FAIL" : "ok");
	return bad ? 1 : 0;
}

/*
 * O_DIRECT from anonymous memory (the copy fallback), with buffers at
 * several page offsets and sizes up to and beyond one slot.
 */
static int cmd_dio(const char *dev)
{
	static const size_t sizes[] = { 512, 4096, 8192 + 512, 65536,
					512 * 1024, 1024 * 1024 + 4096 };
	static const size_t shifts[] = { 0, 512, 3584 };
	size_t si, hi, i, len;
	uint8_t *wbuf, *rbuf;
	off_t off = 1 << 20;
	int fd, bad = 0;

	fd = open(dev, O_RDWR | O_DIRECT);
	if (fd < 0)
		die(dev);
	if (posix_memalign((void **)&wbuf, 4096, 2 << 20) ||
	    posix_memalign((void **)&rbuf, 4096, 2 << 20))
		die("posix_memalign");
	for (si = 0; si < sizeof(sizes) / sizeof(sizes[0]); si++) {
		for (hi = 0; hi < sizeof(shifts) / sizeof(shifts[0]); hi++) {
			uint8_t *w = wbuf + shifts[hi], *r = rbuf + shifts[hi];

			len = sizes[si];
			for (i = 0; i < len; i++)
				w[i] = (uint8_t)(i * 7 + si * 31 + hi);
			memset(r, 0xee, len);
			if (pwrite(fd, w, len, off) != (ssize_t)len)
				die("dio pwrite");
			if (pread(fd, r, len, off) != (ssize_t)len)
				die("dio pread");
			if (memcmp(w, r, len)) {
				fprintf(stderr, "tapctl: dio: mismatch, %zu bytes at buffer offset %zu\n",
					len, shifts[hi]);
				bad++;
			}
			off += 2 << 20;
		}
	}
	close(fd);
	printf("tapctl: dio: %s\n", bad ? "FAIL" : "ok");
	return bad ? 1 : 0;
}

static int cmd_pread(const char *dev, off_t off, size_t len)
{
	void *buf;
	int fd = open(dev, O_RDONLY | O_DIRECT);

	if (fd < 0)
		die(dev);
	if (posix_memalign(&buf, 4096, len))
		die("posix_memalign");
	if (pread(fd, buf, len, off) != (ssize_t)len) {
		fprintf(stderr, "tapctl: pread %s: %s\n", dev, strerror(errno));
		return 1;
	}
	return 0;
}

static int cmd_zeroout(const char *dev, uint64_t off, uint64_t len)
{
	uint64_t range[2] = { off, len };
	int fd = open(dev, O_WRONLY);

	if (fd < 0)
		die(dev);
	if (ioctl(fd, _IO(0x12, 127), range) < 0)	/* BLKZEROOUT */
		die("BLKZEROOUT");
	return 0;
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* A small fio: one file, one job, a fixed queue depth, O_DIRECT. */
static int cmd_bench(const char *dev, const char *mode, size_t bs, int qd,
		     double secs)
{
	int write = !strcmp(mode, "write") || !strcmp(mode, "randwrite");
	int rnd = !strncmp(mode, "rand", 4);
	struct iocb *iocbs, **ptrs;
	struct io_event ev[64];
	uint64_t size, blocks, seq = 0, done = 0;
	double t0, t;
	io_context_t ctx = 0;
	unsigned int seed = 1;
	int fd, i, n, inflight;
	struct stat st;
	char *buf;

	if (qd < 1 || qd > 64)
		return 2;
	fd = open(dev, (write ? O_WRONLY : O_RDONLY) | O_DIRECT);
	if (fd < 0)
		die(dev);
	if (fstat(fd, &st) < 0)
		die(dev);
	size = st.st_size;
	if (S_ISBLK(st.st_mode) &&
	    ioctl(fd, _IOR(0x12, 114, size_t), &size) < 0)	/* BLKGETSIZE64 */
		die("BLKGETSIZE64");
	blocks = size / bs;
	iocbs = calloc(qd, sizeof(*iocbs));
	ptrs = calloc(qd, sizeof(*ptrs));
	if (!iocbs || !ptrs || posix_memalign((void **)&buf, 4096, bs * qd))
		die("alloc");
	memset(buf, 0x5a, bs * qd);
	if (io_setup(qd, &ctx) < 0)
		die("io_setup");
	for (i = 0; i < qd; i++) {
		uint64_t blk = rnd ? (uint64_t)rand_r(&seed) % blocks
				   : seq++ % blocks;

		if (write)
			io_prep_pwrite(&iocbs[i], fd, buf + i * bs, bs, blk * bs);
		else
			io_prep_pread(&iocbs[i], fd, buf + i * bs, bs, blk * bs);
		ptrs[i] = &iocbs[i];
	}
	t0 = now();
	if (io_submit(ctx, qd, ptrs) != qd)
		die("io_submit");
	inflight = qd;
	while (inflight) {
		n = io_getevents(ctx, 1, 64, ev, NULL);
		if (n < 0) {
			errno = -n;
			die("io_getevents");
		}
		t = now();
		for (i = 0; i < n; i++) {
			struct iocb *cb = ev[i].obj;
			uint64_t blk = rnd ? (uint64_t)rand_r(&seed) % blocks
					   : seq++ % blocks;

			if ((long)ev[i].res != (long)bs) {
				fprintf(stderr, "tapctl: bench: I/O result %ld\n",
					(long)ev[i].res);
				return 1;
			}
			done++;
			inflight--;
			if (t - t0 >= secs)
				continue;
			cb->u.c.offset = blk * bs;
			if (io_submit(ctx, 1, &cb) != 1)
				die("io_submit");
			inflight++;
		}
	}
	t = now() - t0;
	printf("bench: %s %s bs=%zu qd=%d: %.1f MiB/s %.0f IOPS\n", dev, mode,
	       bs, qd, done * bs / t / 1048576, done / t);
	io_destroy(ctx);
	close(fd);
	free(buf);
	free(ptrs);
	free(iocbs);
	return 0;
}

static int cmd_loop_dio(const char *dev)
{
	int fd = open(dev, O_RDWR);

	if (fd < 0)
		die(dev);
	if (ioctl(fd, LOOP_SET_DIRECT_IO, 1UL) < 0)
		die("LOOP_SET_DIRECT_IO");
	return 0;
}

static int cmd_exit(int code)
{
	if (ioperm(0xf4, 1, 1) < 0)
		die("ioperm");
	outb(code, 0xf4);
	return 1;	/* not reached with -device isa-debug-exit */
}

int main(int argc, char **argv)
{
	const char *cmd = argc > 1 ? argv[1] : "";

	if (!strcmp(cmd, "alloc"))
		return cmd_alloc();
	if (!strcmp(cmd, "free") && argc == 3)
		return cmd_free(atoi(argv[2]));
	if (!strcmp(cmd, "serve"))
		return cmd_serve(argc, argv);
	if (!strcmp(cmd, "abi") && argc == 3)
		return cmd_abi(atoi(argv[2]));
	if (!strcmp(cmd, "dio") && argc == 3)
		return cmd_dio(argv[2]);
	if (!strcmp(cmd, "pread") && argc == 5)
		return cmd_pread(argv[2], atoll(argv[3]), atoll(argv[4]));
	if (!strcmp(cmd, "zeroout") && argc == 5)
		return cmd_zeroout(argv[2], atoll(argv[3]), atoll(argv[4]));
	if (!strcmp(cmd, "bench") && argc == 7)
		return cmd_bench(argv[2], argv[3], atoll(argv[4]), atoi(argv[5]),
				 atof(argv[6]));
	if (!strcmp(cmd, "loop-dio") && argc == 3)
		return cmd_loop_dio(argv[2]);
	if (!strcmp(cmd, "exit") && argc == 3)
		return cmd_exit(atoi(argv[2]));
	fprintf(stderr, "usage: tapctl alloc | free N | serve N FILE [-c] [-d US] [-r] [-e] [-p] | abi N | dio DEV | pread DEV OFF LEN | exit CODE\n");
	return 2;
}
