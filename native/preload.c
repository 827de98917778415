/*
 * libvfio-nest-preload.so: runs an unmodified VFIO program against `vfio-nest serve`.
 *
 *   npm run build:preload
 *   VFIO_NEST_SOCKET=/tmp/vn.sock LD_PRELOAD=$PWD/build/libvfio-nest-preload.so ./my-vmm
 *
 * With LD_PRELOAD this library routes open/openat/open64 of /dev/vfio/..., /dev/iommu and
 * /sys/module/{vfio,vfio_iommu_type1}/parameters/... to the server at $VFIO_NEST_SOCKET, and every
 * ioctl, pread/pwrite, read/write, lseek, dup/dup2/dup3/fcntl(F_DUPFD*) and close on the fds those
 * return, and what QEMU reads in sysfs to find a device: readlink of .../iommu_group, opendir of
 * .../vfio-dev and the cdev's "dev" attribute (a snapshot in a memfd). Each such fd is a real fd of
 * this process (a /dev/null reserved for it), so numbers never collide; fstat of a device cdev fd
 * reports the model's char device numbers. Everything else goes to libc untouched. Without
 * VFIO_NEST_SOCKET nothing is routed.
 *
 * The process state the kernel would look at is the model's: setrlimit(RLIMIT_MEMLOCK),
 * setuid/setgid/setgroups and capset go to the model (and, unless the identity is faked, are also
 * applied for real, their real result ignored); getrlimit(RLIMIT_MEMLOCK), getuid & co., capget and
 * reads of /proc/self/status (a synthesized copy: Uid, Gid, CapPrm, CapEff, VmLck, VmPin replaced)
 * show the model's. The first of these calls connects; the server makes one model process per
 * connection, from what HELLO says about us.
 *
 * While it waits for a reply, the library answers the server's callbacks: reads and writes of this
 * process's memory (MAP_DMA's pages, a device's DMA), the mapping around an address
 * (/proc/self/maps), whether a page was ever written (/proc/self/pagemap), a new fd number.
 * munmap/mremap/mmap(MAP_FIXED)/madvise(DONTNEED) of memory the model has seen are told first.
 *
 * Errors are the kernel's: -1 with the model's errno. A server that is gone or silent for
 * $VFIO_NEST_TIMEOUT_MS (default 10000) gives ENODEV, never a hang.
 *
 * Identity (what HELLO sends; default: the real one):
 *   VFIO_NEST_ROOT=1          uid 0, gid 0, every capability (CapEff 000001ffffffffff)
 *   VFIO_NEST_UID, VFIO_NEST_GID, VFIO_NEST_CAPEFF (hex)
 *   VFIO_NEST_MEMLOCK=host    the modelled kernel's default RLIMIT_MEMLOCK; or CUR[:MAX] bytes
 * Any of them makes the identity fake: credential changes are then the model's only.
 *
 * Protocol: docs/serve-protocol.md (the numbers below must match src/server/protocol.ts).
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <linux/capability.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

/* ---------- protocol (src/server/protocol.ts) ---------- */
#define VN_PROTOCOL_VERSION 1
#define VN_HEADER_SIZE 32
#define VN_MAX_FRAME (4 * 1024 * 1024 + VN_HEADER_SIZE)
#define VN_MAX_IOCTL_ARG (1024 * 1024)
#define VN_REQ_HELLO 1
#define VN_REQ_OPEN 2
#define VN_REQ_CLOSE 3
#define VN_REQ_IOCTL 4
#define VN_REQ_PREAD 5
#define VN_REQ_PWRITE 6
#define VN_REQ_READ 7
#define VN_REQ_WRITE 8
#define VN_REQ_LSEEK 9
#define VN_REQ_DUP 10
#define VN_REQ_READLINK 11
#define VN_REQ_LISTDIR 12
#define VN_REQ_SIGNAL 13
#define VN_SIGNAL_FORGET 1
#define VN_REQ_SETRLIMIT 16
#define VN_REQ_SETUID 17
#define VN_REQ_SETGID 18
#define VN_REQ_SETGROUPS 19
#define VN_REQ_CAPSET 20
#define VN_REQ_STATUS 32
#define VN_REQ_MUNMAP 33
#define VN_CB_READ 64
#define VN_CB_WRITE 65
#define VN_CB_VMA 66
#define VN_CB_PAGES 67
#define VN_CB_NEWFD 68
#define VN_CB_FDCHECK 69
#define VN_CB_SIGNAL 70
#define VN_CB_REPLY 79
#define VN_REPLY 128
#define VN_IOCTL_ARG_BYTES 1
#define VN_HELLO_MEMLOCK_HOST 1
#define VN_VMA_ANONYMOUS 1
#define VN_FD_OPEN 1
#define VN_FD_EVENTFD 2
#define VN_STATUS_BLOCK_SIZE 56
#define VN_HELLO_SIZE 48
#define VN_VMA_REPLY_SIZE 32
#define VN_RLIMIT_MEMLOCK 8
#define VN_VFIO_CDEV_MAJOR 253
_Static_assert(VN_RLIMIT_MEMLOCK == RLIMIT_MEMLOCK, "RLIMIT_MEMLOCK is 8 on Linux");

struct vn_hdr {
	uint32_t len;
	uint16_t type;
	uint16_t flags;
	int32_t fd;
	uint32_t num;
	uint64_t a;
	uint64_t b;
};
_Static_assert(sizeof(struct vn_hdr) == VN_HEADER_SIZE, "header layout");

struct vn_status {
	uint32_t uid, euid, gid, egid;
	uint64_t cap_eff, memlock_cur, memlock_max, vm_lck_kb, vm_pin_kb;
};
_Static_assert(sizeof(struct vn_status) == VN_STATUS_BLOCK_SIZE, "status layout");

/* ---------- the real functions ---------- */
#define REAL(name) real_##name
#define DECL_REAL(ret, name, ...) static ret (*real_##name)(__VA_ARGS__)
DECL_REAL(int, open, const char *, int, ...);
DECL_REAL(int, open64, const char *, int, ...);
DECL_REAL(int, openat, int, const char *, int, ...);
DECL_REAL(int, openat64, int, const char *, int, ...);
DECL_REAL(FILE *, fopen, const char *, const char *);
DECL_REAL(FILE *, fopen64, const char *, const char *);
DECL_REAL(int, ioctl, int, unsigned long, ...);
DECL_REAL(int, close, int);
DECL_REAL(int, dup, int);
DECL_REAL(int, dup2, int, int);
DECL_REAL(int, dup3, int, int, int);
DECL_REAL(int, fcntl, int, int, ...);
DECL_REAL(ssize_t, read, int, void *, size_t);
DECL_REAL(ssize_t, write, int, const void *, size_t);
DECL_REAL(ssize_t, pread, int, void *, size_t, off_t);
DECL_REAL(ssize_t, pwrite, int, const void *, size_t, off_t);
DECL_REAL(ssize_t, pread64, int, void *, size_t, off64_t);
DECL_REAL(ssize_t, pwrite64, int, const void *, size_t, off64_t);
DECL_REAL(off_t, lseek, int, off_t, int);
DECL_REAL(off64_t, lseek64, int, off64_t, int);
DECL_REAL(int, setrlimit, __rlimit_resource_t, const struct rlimit *);
DECL_REAL(int, getrlimit, __rlimit_resource_t, struct rlimit *);
DECL_REAL(int, prlimit, pid_t, __rlimit_resource_t, const struct rlimit *, struct rlimit *);
DECL_REAL(int, setuid, uid_t);
DECL_REAL(int, setgid, gid_t);
DECL_REAL(int, setgroups, size_t, const gid_t *);
DECL_REAL(int, capset, cap_user_header_t, const cap_user_data_t);
DECL_REAL(uid_t, getuid, void);
DECL_REAL(uid_t, geteuid, void);
DECL_REAL(gid_t, getgid, void);
DECL_REAL(gid_t, getegid, void);
DECL_REAL(int, munmap, void *, size_t);
DECL_REAL(void *, mmap, void *, size_t, int, int, int, off_t);
DECL_REAL(void *, mmap64, void *, size_t, int, int, int, off64_t);
DECL_REAL(void *, mremap, void *, size_t, size_t, int, ...);
DECL_REAL(int, madvise, void *, size_t, int);
DECL_REAL(ssize_t, readlink, const char *, char *, size_t);
DECL_REAL(ssize_t, readlinkat, int, const char *, char *, size_t);
DECL_REAL(DIR *, opendir, const char *);
DECL_REAL(struct dirent *, readdir, DIR *);
DECL_REAL(struct dirent64 *, readdir64, DIR *);
DECL_REAL(int, closedir, DIR *);
DECL_REAL(int, fstat, int, struct stat *);
DECL_REAL(int, fstat64, int, struct stat64 *);

#define RESOLVE(name) \
	do { \
		if (!real_##name) *(void **)&real_##name = dlsym(RTLD_NEXT, #name); \
	} while (0)

/* ---------- state ---------- */
enum { K_NONE, K_CONTAINER, K_GROUP, K_DEVICE, K_IOMMUFD, K_OTHER, K_STALE };
#define MAX_FDS 65536
static unsigned char fdkind[MAX_FDS]; /* what each real fd is to the model (K_NONE: not ours) */
/* The client's own eventfds the model was handed (CB_FDCHECK said so): their writes are passed on. */
static unsigned char adopted[MAX_FDS];
static int cdevminor[MAX_FDS]; /* a device cdev fd (/dev/vfio/devices/vfioN): N + 1, for fstat; else 0 */
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static int sock = -1;       /* the connection (CLOEXEC, a high number) */
static int memfd = -1;      /* /proc/self/mem, to answer memory callbacks without faulting */
static int connect_failed_reported;
static int have_status;     /* status valid: the model's answer to our last request */
static struct vn_status status;
static int newfd_kind = K_OTHER; /* what a CB_NEWFD fd is (set around an ioctl) */
static int timeout_ms = -1;

/* What the model saw of our memory: ranges it looked up (a munmap there is told first). */
struct range { uint64_t start, end; };
static struct range *known;
static size_t nknown, capknown;

static int is_model(int fd) { return fd >= 0 && fd < MAX_FDS && fdkind[fd] != K_NONE; }

static int timeout(void)
{
	if (timeout_ms < 0) {
		const char *t = getenv("VFIO_NEST_TIMEOUT_MS");
		timeout_ms = t && *t ? atoi(t) : 10000;
		if (timeout_ms <= 0) timeout_ms = 10000;
	}
	return timeout_ms;
}

/* ---------- identity ---------- */
static int faked_identity(void)
{
	return getenv("VFIO_NEST_ROOT") || getenv("VFIO_NEST_UID") || getenv("VFIO_NEST_GID") ||
	       getenv("VFIO_NEST_CAPEFF") || getenv("VFIO_NEST_MEMLOCK");
}

static uint64_t real_cap_eff(void)
{
	struct __user_cap_header_struct h = { .version = _LINUX_CAPABILITY_VERSION_3, .pid = 0 };
	struct __user_cap_data_struct d[2];
	memset(d, 0, sizeof(d));
	if (syscall(SYS_capget, &h, d) != 0) return 0;
	return (uint64_t)d[0].effective | ((uint64_t)d[1].effective << 32);
}

static void hello_identity(uint32_t *id, uint64_t *cap, uint64_t *cur, uint64_t *max, uint32_t *flags)
{
	const char *e;
	id[0] = (uint32_t)syscall(SYS_getuid);
	id[1] = (uint32_t)syscall(SYS_geteuid);
	id[2] = (uint32_t)syscall(SYS_getgid);
	id[3] = (uint32_t)syscall(SYS_getegid);
	*cap = real_cap_eff();
	struct rlimit rl = { 0, 0 };
	syscall(SYS_prlimit64, 0, RLIMIT_MEMLOCK, NULL, &rl);
	*cur = rl.rlim_cur;
	*max = rl.rlim_max;
	*flags = 0;
	if ((e = getenv("VFIO_NEST_ROOT")) && strcmp(e, "0")) {
		id[0] = id[1] = id[2] = id[3] = 0;
		*cap = 0x1ffffffffffULL;
	}
	if ((e = getenv("VFIO_NEST_UID"))) id[0] = id[1] = (uint32_t)strtoul(e, NULL, 0);
	if ((e = getenv("VFIO_NEST_GID"))) id[2] = id[3] = (uint32_t)strtoul(e, NULL, 0);
	if ((e = getenv("VFIO_NEST_CAPEFF"))) *cap = strtoull(e, NULL, 16);
	if ((e = getenv("VFIO_NEST_MEMLOCK"))) {
		if (!strcmp(e, "host")) *flags |= VN_HELLO_MEMLOCK_HOST;
		else {
			char *end;
			*cur = !strncmp(e, "inf", 3) ? RLIM_INFINITY : strtoull(e, &end, 0);
			*max = *cur;
			const char *colon = strchr(e, ':');
			if (colon) *max = !strcmp(colon + 1, "inf") ? RLIM_INFINITY : strtoull(colon + 1, NULL, 0);
		}
	}
}

/* ---------- raw I/O (never through our own wrappers) ---------- */
static int raw_open(const char *path, int flags)
{
	return (int)syscall(SYS_openat, AT_FDCWD, path, flags, 0);
}
static void raw_close(int fd) { syscall(SYS_close, fd); }

/* Moves an internal fd out of the program's way (>= 512), close-on-exec. */
static int park_fd(int fd)
{
	if (fd < 0) return fd;
	int hi = (int)syscall(SYS_fcntl, fd, F_DUPFD_CLOEXEC, 512);
	if (hi >= 0) {
		raw_close(fd);
		return hi;
	}
	return fd;
}

/* Reads a whole small proc file into a malloc'd NUL-terminated buffer. */
static char *slurp(const char *path, size_t *lenp)
{
	int fd = raw_open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) return NULL;
	size_t cap = 65536, len = 0;
	char *b = malloc(cap + 1);
	for (;;) {
		if (!b) break;
		if (len == cap) {
			char *n = realloc(b, 2 * cap + 1);
			if (!n) { free(b); b = NULL; break; }
			b = n;
			cap *= 2;
		}
		long r = syscall(SYS_read, fd, b + len, cap - len);
		if (r < 0 && errno == EINTR) continue;
		if (r <= 0) break;
		len += (size_t)r;
	}
	raw_close(fd);
	if (b) b[len] = 0;
	if (lenp) *lenp = len;
	return b;
}

/* Our own memory, read or written without faulting: /proc/self/mem, else process_vm_*v. */
static pthread_mutex_t memfd_lock = PTHREAD_MUTEX_INITIALIZER;

static ssize_t mem_rw(uint64_t addr, void *buf, size_t len, int write)
{
	if (memfd < 0) {
		pthread_mutex_lock(&memfd_lock);
		if (memfd < 0) memfd = park_fd(raw_open("/proc/self/mem", O_RDWR | O_CLOEXEC));
		pthread_mutex_unlock(&memfd_lock);
	}
	size_t done = 0;
	while (done < len) {
		long r;
		if (memfd >= 0)
			r = syscall(write ? SYS_pwrite64 : SYS_pread64, memfd, (char *)buf + done, len - done,
				    (off_t)(addr + done));
		else {
			struct iovec local = { (char *)buf + done, len - done };
			struct iovec remote = { (void *)(uintptr_t)(addr + done), len - done };
			r = syscall(write ? SYS_process_vm_writev : SYS_process_vm_readv, getpid(), &local, 1,
				    &remote, 1, 0);
		}
		if (r < 0 && errno == EINTR) continue;
		if (r <= 0) break;
		done += (size_t)r;
	}
	return (ssize_t)done;
}

/* ---------- framing ---------- */
static void drop_connection(void)
{
	if (sock >= 0) raw_close(sock);
	sock = -1;
	have_status = 0;
	nknown = 0;
	/* The model process is gone with the connection: its fds are stale, its eventfds not its own. */
	for (int i = 0; i < MAX_FDS; i++)
		if (fdkind[i] != K_NONE) fdkind[i] = K_STALE;
	memset(adopted, 0, sizeof(adopted));
}

static int send_all(const struct vn_hdr *h, const void *data, size_t dlen)
{
	struct iovec iov[2] = { { (void *)h, VN_HEADER_SIZE }, { (void *)data, dlen } };
	int n = dlen ? 2 : 1;
	size_t left = VN_HEADER_SIZE + dlen;
	while (left > 0) {
		struct pollfd p = { sock, POLLOUT, 0 };
		int pr = poll(&p, 1, timeout());
		if (pr < 0 && errno == EINTR) continue;
		if (pr <= 0) return -1;
		struct msghdr m = { .msg_iov = iov, .msg_iovlen = (size_t)n };
		ssize_t r = sendmsg(sock, &m, MSG_NOSIGNAL);
		if (r < 0 && (errno == EINTR || errno == EAGAIN)) continue;
		if (r <= 0) return -1;
		left -= (size_t)r;
		while (r > 0 && n > 0) {
			if ((size_t)r >= iov[0].iov_len) {
				r -= (ssize_t)iov[0].iov_len;
				iov[0] = iov[1];
				n--;
			} else {
				iov[0].iov_base = (char *)iov[0].iov_base + r;
				iov[0].iov_len -= (size_t)r;
				r = 0;
			}
		}
	}
	return 0;
}

static int recv_all(void *buf, size_t len)
{
	size_t got = 0;
	while (got < len) {
		struct pollfd p = { sock, POLLIN, 0 };
		int pr = poll(&p, 1, timeout());
		if (pr < 0 && errno == EINTR) continue;
		if (pr <= 0) return -1;
		ssize_t r = recv(sock, (char *)buf + got, len - got, 0);
		if (r < 0 && (errno == EINTR || errno == EAGAIN)) continue;
		if (r <= 0) return -1;
		got += (size_t)r;
	}
	return 0;
}

static int send_reply(uint32_t num, uint64_t a, const void *data, size_t dlen)
{
	struct vn_hdr h = { .len = (uint32_t)(VN_HEADER_SIZE + dlen), .type = VN_CB_REPLY, .fd = -1, .num = num, .a = a };
	return send_all(&h, data, dlen);
}

static void known_add(uint64_t start, uint64_t end)
{
	for (size_t i = 0; i < nknown; i++)
		if (known[i].start <= start && end <= known[i].end) return;
	if (nknown == capknown) {
		size_t c = capknown ? 2 * capknown : 16;
		struct range *n = realloc(known, c * sizeof(*n));
		if (!n) return;
		known = n;
		capknown = c;
	}
	known[nknown].start = start;
	known[nknown].end = end;
	nknown++;
}

static int known_overlaps(uint64_t start, uint64_t end)
{
	for (size_t i = 0; i < nknown; i++)
		if (known[i].start < end && start < known[i].end) return 1;
	return 0;
}

/* Forgets [start, end): ranges are cut, and split when it falls inside one. */
static void known_remove(uint64_t start, uint64_t end)
{
	for (size_t i = 0; i < nknown; i++) {
		struct range r = known[i];
		if (!(r.start < end && start < r.end)) continue;
		if (r.start < start && end < r.end) {
			known[i].end = start;
			known_add(end, r.end);
		} else if (r.start < start) known[i].end = start;
		else if (end < r.end) known[i].start = end;
		else {
			known[i--] = known[--nknown];
		}
	}
}

/* CB_VMA: the line of /proc/self/maps around addr. */
static int answer_vma(uint64_t addr)
{
	char *maps = slurp("/proc/self/maps", NULL);
	unsigned char out[VN_VMA_REPLY_SIZE];
	memset(out, 0, sizeof(out));
	int found = 0;
	for (char *line = maps; line && *line;) {
		char *nl = strchr(line, '\n');
		if (nl) *nl = 0;
		unsigned long long start, end, off, inode;
		char perms[8] = "", dev[32] = "";
		int pathpos = 0;
		if (sscanf(line, "%llx-%llx %7s %llx %31s %llu %n", &start, &end, perms, &off, dev, &inode,
			   &pathpos) >= 6 &&
		    addr >= start && addr < end) {
			const char *path = pathpos ? line + pathpos : "";
			uint32_t prot = (perms[0] == 'r' ? 1 : 0) | (perms[1] == 'w' ? 2 : 0);
			uint32_t lg2 = 12, flags = 0;
			int huge = strstr(path, "anon_hugepage") != NULL;
			if (huge || (inode && *path == '/')) {
				/* KernelPageSize of this mapping (hugetlbfs files, MAP_HUGETLB). */
				char *smaps = slurp("/proc/self/smaps", NULL);
				char head[40];
				snprintf(head, sizeof(head), "%llx-", start);
				char *p = smaps;
				while (p && (p = strstr(p, head)) && p != smaps && p[-1] != '\n') p++;
				if (p) {
					char *k = strstr(p, "KernelPageSize:");
					unsigned long kb = 0;
					if (k && sscanf(k, "KernelPageSize: %lu kB", &kb) == 1) {
						if (kb == 2048) lg2 = 21;
						else if (kb == 1048576) lg2 = 30;
					}
				}
				free(smaps);
			}
			if (perms[3] == 'p' && (inode == 0 || huge)) flags |= VN_VMA_ANONYMOUS;
			uint64_t s = start, e = end;
			memcpy(out + 0, &s, 8);
			memcpy(out + 8, &e, 8);
			memcpy(out + 16, &prot, 4);
			memcpy(out + 20, &lg2, 4);
			memcpy(out + 24, &flags, 4);
			known_add(start, end);
			found = 1;
			break;
		}
		line = nl ? nl + 1 : NULL;
	}
	free(maps);
	return found ? send_reply(0, 0, out, sizeof(out)) : send_reply(ENOENT, 0, NULL, 0);
}

/* CB_PAGES: per page, 1 when it holds data of its own (not never-touched, not the zero page). */
static int answer_pages(uint64_t addr, uint64_t count)
{
	if (count > 4096) count = 4096;
	unsigned char out[4096];
	int fd = raw_open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	for (uint64_t i = 0; i < count; i++) {
		uint64_t e = 0;
		int ok = fd >= 0 && syscall(SYS_pread64, fd, &e, 8, (off_t)(((addr >> 12) + i) * 8)) == 8;
		int present = (e >> 63) & 1, swapped = (e >> 62) & 1, exclusive = (e >> 56) & 1;
		out[i] = !ok || swapped || (present && exclusive);
	}
	if (fd >= 0) raw_close(fd);
	return send_reply(0, 0, out, (size_t)count);
}

static int answer_callback(const struct vn_hdr *h, unsigned char *data)
{
	switch (h->type) {
	case VN_CB_READ: {
		size_t len = h->b > VN_MAX_FRAME - VN_HEADER_SIZE ? VN_MAX_FRAME - VN_HEADER_SIZE : (size_t)h->b;
		unsigned char *b = malloc(len ? len : 1);
		if (!b) return send_reply(ENOMEM, 0, NULL, 0);
		ssize_t n = mem_rw(h->a, b, len, 0);
		int r = n > 0 ? send_reply(0, 0, b, (size_t)n) : send_reply(EFAULT, 0, NULL, 0);
		free(b);
		return r;
	}
	case VN_CB_WRITE: {
		size_t len = h->len - VN_HEADER_SIZE;
		ssize_t n = mem_rw(h->a, data, len, 1);
		return send_reply((size_t)n == len ? 0 : EFAULT, (uint64_t)n, NULL, 0);
	}
	case VN_CB_VMA:
		return answer_vma(h->a);
	case VN_CB_PAGES:
		return answer_pages(h->a, h->b);
	case VN_CB_NEWFD: {
		int fd = raw_open("/dev/null", O_RDWR | O_CLOEXEC);
		if (fd >= MAX_FDS) {
			raw_close(fd);
			fd = -1;
			errno = EMFILE;
		}
		if (fd < 0) return send_reply((uint32_t)errno, 0, NULL, 0);
		fdkind[fd] = (unsigned char)newfd_kind;
		cdevminor[fd] = 0;
		return send_reply(0, (uint64_t)fd, NULL, 0);
	}
	case VN_CB_FDCHECK: {
		if (syscall(SYS_fcntl, h->fd, F_GETFD) < 0) return send_reply(0, 0, NULL, 0);
		char link[64], target[64];
		snprintf(link, sizeof(link), "/proc/self/fd/%d", h->fd);
		long n = syscall(SYS_readlinkat, AT_FDCWD, link, target, sizeof(target) - 1);
		int efd = n > 0 && (target[n] = 0, !strcmp(target, "anon_inode:[eventfd]"));
		if (efd && h->fd >= 0 && h->fd < MAX_FDS) adopted[h->fd] = 1;
		return send_reply(0, efd ? VN_FD_EVENTFD : VN_FD_OPEN, NULL, 0);
	}
	case VN_CB_SIGNAL: {
		/* The model's device signalled an eventfd of ours (an interrupt): add to the real one. */
		uint64_t v = h->a;
		long r = syscall(SYS_write, h->fd, &v, 8);
		return send_reply(r == 8 ? 0 : (uint32_t)errno, 0, NULL, 0);
	}
	default:
		return -1;
	}
}

/*
 * One request: send it, answer callbacks until the reply. Holds `lock`. Returns 0 with the reply's
 * header in *rh and its data (up to rcap bytes) in rdata, or -1 when the connection failed (then
 * the connection is dropped: the caller says ENODEV).
 */
static int call(struct vn_hdr *h, const void *data, size_t dlen, struct vn_hdr *rh, void *rdata, size_t rcap,
		size_t *rlen)
{
	if (sock < 0) return -1;
	h->len = (uint32_t)(VN_HEADER_SIZE + dlen);
	if (send_all(h, data, dlen) < 0) goto fail;
	for (;;) {
		if (recv_all(rh, VN_HEADER_SIZE) < 0) goto fail;
		if (rh->len < VN_HEADER_SIZE || rh->len > VN_MAX_FRAME) goto fail;
		size_t n = rh->len - VN_HEADER_SIZE;
		unsigned char *d = malloc(n ? n : 1);
		if (!d || (n && recv_all(d, n) < 0)) {
			free(d);
			goto fail;
		}
		if (rh->type == VN_REPLY) {
			if (rdata) memcpy(rdata, d, n < rcap ? n : rcap);
			if (rlen) *rlen = n;
			/* Requests about process state answer with the model's status block. */
			if ((h->type >= VN_REQ_SETRLIMIT && h->type <= VN_REQ_STATUS) || h->type == VN_REQ_HELLO) {
				if (n >= VN_STATUS_BLOCK_SIZE) {
					memcpy(&status, d, VN_STATUS_BLOCK_SIZE);
					have_status = 1;
				}
			}
			free(d);
			return 0;
		}
		int r = answer_callback(rh, d);
		free(d);
		if (r < 0) goto fail;
	}
fail:
	drop_connection();
	return -1;
}

/* Connects (once) and says HELLO. Holds `lock`. 0, or -1 (errno ENODEV). */
static int ensure_connected(void)
{
	if (sock >= 0) return 0;
	const char *path = getenv("VFIO_NEST_SOCKET");
	if (!path || !*path) {
		errno = ENODEV;
		return -1;
	}
	int s = (int)syscall(SYS_socket, AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	strncpy(sa.sun_path, path, sizeof(sa.sun_path) - 1);
	if (s < 0 || connect(s, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		int e = errno;
		if (s >= 0) raw_close(s);
		if (!connect_failed_reported++)
			fprintf(stderr, "vfio-nest-preload: cannot reach the server at %s: %s (VFIO calls fail with ENODEV)\n",
				path, strerror(e));
		errno = ENODEV;
		return -1;
	}
	sock = park_fd(s);
	unsigned char hello[VN_HELLO_SIZE];
	uint32_t id[4], flags, pid = (uint32_t)getpid();
	uint64_t cap, cur, max;
	hello_identity(id, &cap, &cur, &max, &flags);
	memcpy(hello + 0, &pid, 4);
	memcpy(hello + 4, id, 16);
	memcpy(hello + 20, &flags, 4);
	memcpy(hello + 24, &cap, 8);
	memcpy(hello + 32, &cur, 8);
	memcpy(hello + 40, &max, 8);
	struct vn_hdr h = { .type = VN_REQ_HELLO, .fd = -1, .num = VN_PROTOCOL_VERSION }, rh;
	if (call(&h, hello, sizeof(hello), &rh, NULL, 0, NULL) < 0 || rh.num != 0) {
		if (!connect_failed_reported++)
			fprintf(stderr, "vfio-nest-preload: the server at %s refused HELLO\n", path);
		drop_connection();
		errno = ENODEV;
		return -1;
	}
	return 0;
}

/* A request expecting ret/errno; data back into rdata. Takes the lock. Returns ret, or -1 + errno. */
static long request(struct vn_hdr *h, const void *data, size_t dlen, void *rdata, size_t rcap, size_t *rlen,
		    struct vn_hdr *out)
{
	struct vn_hdr rh;
	pthread_mutex_lock(&lock);
	if (ensure_connected() < 0 || call(h, data, dlen, &rh, rdata, rcap, rlen) < 0) {
		pthread_mutex_unlock(&lock);
		errno = ENODEV;
		return -1;
	}
	pthread_mutex_unlock(&lock);
	if (out) *out = rh;
	if (rh.num) {
		errno = (int)rh.num;
		return -1;
	}
	return (long)(int64_t)rh.a;
}

/* ---------- paths ---------- */
static int routed_kind(const char *path)
{
	if (!path || !getenv("VFIO_NEST_SOCKET")) return K_NONE;
	if (!strcmp(path, "/dev/vfio/vfio")) return K_CONTAINER;
	if (!strncmp(path, "/dev/vfio/devices/", 18)) return K_DEVICE;
	if (!strncmp(path, "/dev/vfio/", 10)) return K_GROUP;
	if (!strcmp(path, "/dev/iommu")) return K_IOMMUFD;
	if (!strncmp(path, "/sys/module/vfio/parameters/", 28) ||
	    !strncmp(path, "/sys/module/vfio_iommu_type1/parameters/", 40))
		return K_OTHER;
	return K_NONE;
}

static int is_status_path(const char *path)
{
	if (!path || !getenv("VFIO_NEST_SOCKET")) return 0;
	if (!strcmp(path, "/proc/self/status") || !strcmp(path, "/proc/thread-self/status")) return 1;
	char mine[64];
	snprintf(mine, sizeof(mine), "/proc/%d/status", (int)getpid());
	return !strcmp(path, mine);
}

/* A memfd holding `n` bytes, read from its start: a file the program reads as it would the real one.
 * -1 (errno set) if it cannot be made or filled. */
static int memfd_of(const char *name, const void *buf, size_t n, int flags)
{
	int fd = (int)syscall(SYS_memfd_create, name, (flags & O_CLOEXEC) ? MFD_CLOEXEC : 0);
	if (fd < 0) return -1;
	if (syscall(SYS_pwrite64, fd, buf, n, 0) != (long)n) {
		int e = errno;
		raw_close(fd);
		errno = e;
		return -1;
	}
	return fd;
}

/* /proc/self/status with the model's Uid, Gid, CapPrm, CapEff, VmLck, VmPin: a memfd, or -1. */
static int status_file(int flags)
{
	struct vn_hdr h = { .type = VN_REQ_STATUS, .fd = -1 };
	if (request(&h, NULL, 0, NULL, 0, NULL, NULL) < 0) return -1;
	char *real = slurp("/proc/self/status", NULL);
	if (!real) return -1;
	size_t cap = strlen(real) + 1024, n = 0;
	char *out = malloc(cap);
	if (!out) {
		free(real);
		return -1;
	}
	for (char *line = real; *line;) {
		char *nl = strchr(line, '\n');
		size_t len = nl ? (size_t)(nl - line) + 1 : strlen(line);
		char rep[128];
		int m = -1;
		if (!strncmp(line, "Uid:", 4))
			m = snprintf(rep, sizeof(rep), "Uid:\t%u\t%u\t%u\t%u\n", status.uid, status.euid, status.euid, status.euid);
		else if (!strncmp(line, "Gid:", 4))
			m = snprintf(rep, sizeof(rep), "Gid:\t%u\t%u\t%u\t%u\n", status.gid, status.egid, status.egid, status.egid);
		else if (!strncmp(line, "CapPrm:", 7) || !strncmp(line, "CapEff:", 7))
			m = snprintf(rep, sizeof(rep), "%.7s\t%016llx\n", line, (unsigned long long)status.cap_eff);
		else if (!strncmp(line, "VmLck:", 6))
			m = snprintf(rep, sizeof(rep), "VmLck:\t%8llu kB\n", (unsigned long long)status.vm_lck_kb);
		else if (!strncmp(line, "VmPin:", 6))
			m = snprintf(rep, sizeof(rep), "VmPin:\t%8llu kB\n", (unsigned long long)status.vm_pin_kb);
		if (m >= 0) {
			memcpy(out + n, rep, (size_t)m);
			n += (size_t)m;
		} else {
			memcpy(out + n, line, len);
			n += len;
		}
		line += len;
	}
	free(real);
	int fd = memfd_of("vfio-nest-status", out, n, flags);
	free(out);
	return fd;
}

/* ---------- open ---------- */
static int model_open(const char *path, int flags, int kind)
{
	RESOLVE(openat);
	int fd = REAL(openat)(AT_FDCWD, "/dev/null", O_RDWR | (flags & O_CLOEXEC));
	if (fd < 0) return -1;
	if (fd >= MAX_FDS) {
		REAL(close) ? REAL(close)(fd) : (void)raw_close(fd);
		errno = EMFILE;
		return -1;
	}
	struct vn_hdr h = { .type = VN_REQ_OPEN, .fd = fd, .num = (uint32_t)flags };
	long r = request(&h, path, strlen(path) + 1, NULL, 0, NULL, NULL);
	if (r < 0) {
		int e = errno;
		raw_close(fd);
		errno = e;
		return -1;
	}
	fdkind[fd] = (unsigned char)kind;
	cdevminor[fd] = kind == K_DEVICE ? (int)strtoul(path + 22, NULL, 10) + 1 : 0; /* /dev/vfio/devices/vfioN */
	return fd;
}

/* ---------- readlink ---------- */
/* /sys/bus/pci/devices/<name><suffix> with a server to ask: the model answers for its devices (and
 * says ENOENT for others). */
static int pci_dev_path(const char *path, const char *suf)
{
	if (!path || !getenv("VFIO_NEST_SOCKET")) return 0;
	const char *pre = "/sys/bus/pci/devices/";
	size_t n = strlen(path), lp = strlen(pre), ls = strlen(suf);
	return n > lp + ls && !strncmp(path, pre, lp) && !strcmp(path + n - ls, suf) &&
	       !memchr(path + lp, '/', n - lp - ls);
}

/* .../iommu_group: the model's group for its device (QEMU's vfio-pci looks its group up there). */
static int routed_link(const char *path) { return pci_dev_path(path, "/iommu_group"); }

static ssize_t model_readlink(const char *path, char *buf, size_t len)
{
	char target[256];
	size_t got = 0;
	struct vn_hdr h = { .type = VN_REQ_READLINK, .fd = -1 };
	long r = request(&h, path, strlen(path) + 1, target, sizeof(target), &got, NULL);
	if (r < 0) return -1;
	if (got > sizeof(target)) got = sizeof(target);
	if (got > len) got = len; /* readlink truncates, without a NUL */
	memcpy(buf, target, got);
	return (ssize_t)got;
}

ssize_t readlink(const char *path, char *buf, size_t len)
{
	if (routed_link(path)) return model_readlink(path, buf, len);
	RESOLVE(readlink);
	return REAL(readlink)(path, buf, len);
}

ssize_t readlinkat(int dirfd, const char *path, char *buf, size_t len)
{
	if (path[0] == '/' && routed_link(path)) return model_readlink(path, buf, len);
	RESOLVE(readlinkat);
	return REAL(readlinkat)(dirfd, path, buf, len);
}

/* ---------- directories ---------- */
/* /sys/bus/pci/devices/<name>/vfio-dev: the model's cdev name for its device (QEMU's iommufd backend
 * lists it to find /dev/vfio/devices/vfioN). A listing is a DIR of our own: readdir and closedir tell
 * it from glibc's by the magic at its start. */
#define VN_DIR_MAGIC 0x766e6469u
struct vn_dir {
	uint32_t magic;
	int count, next;
	char names[512];
	struct dirent ent;
	struct dirent64 ent64;
};

/* No trailing '/': the path goes to the server as written. */
static int routed_dir(const char *path) { return pci_dev_path(path, "/vfio-dev"); }

static struct vn_dir *ours(DIR *d) { return d && ((struct vn_dir *)d)->magic == VN_DIR_MAGIC ? (struct vn_dir *)d : NULL; }

DIR *opendir(const char *path)
{
	if (routed_dir(path)) {
		struct vn_dir *d = calloc(1, sizeof(*d));
		if (!d) return NULL;
		size_t got = 0;
		struct vn_hdr h = { .type = VN_REQ_LISTDIR, .fd = -1 };
		long r = request(&h, path, strlen(path) + 1, d->names, sizeof(d->names) - 1, &got, NULL);
		if (r < 0) {
			int e = errno;
			free(d);
			errno = e;
			return NULL;
		}
		d->magic = VN_DIR_MAGIC;
		d->count = (int)r;
		return (DIR *)d;
	}
	RESOLVE(opendir);
	return REAL(opendir)(path);
}

/* The next name of one of our listings, or NULL at the end. */
static const char *dir_next(struct vn_dir *d)
{
	if (d->next >= d->count) return NULL;
	const char *p = d->names;
	for (int i = 0; i < d->next; i++) p += strlen(p) + 1;
	d->next++;
	return p;
}

struct dirent *readdir(DIR *dir)
{
	struct vn_dir *d = ours(dir);
	if (d) {
		const char *name = dir_next(d);
		if (!name) return NULL;
		memset(&d->ent, 0, sizeof(d->ent));
		snprintf(d->ent.d_name, sizeof(d->ent.d_name), "%.255s", name);
		d->ent.d_type = DT_DIR;
		d->ent.d_ino = (ino_t)d->next;
		return &d->ent;
	}
	RESOLVE(readdir);
	return REAL(readdir)(dir);
}

struct dirent64 *readdir64(DIR *dir)
{
	struct vn_dir *d = ours(dir);
	if (d) {
		const char *name = dir_next(d);
		if (!name) return NULL;
		memset(&d->ent64, 0, sizeof(d->ent64));
		snprintf(d->ent64.d_name, sizeof(d->ent64.d_name), "%.255s", name);
		d->ent64.d_type = DT_DIR;
		d->ent64.d_ino = (ino64_t)d->next;
		return &d->ent64;
	}
	RESOLVE(readdir64);
	return REAL(readdir64)(dir);
}

int closedir(DIR *dir)
{
	struct vn_dir *d = ours(dir);
	if (d) {
		d->magic = 0;
		free(d);
		return 0;
	}
	RESOLVE(closedir);
	return REAL(closedir)(dir);
}

/* ---------- fstat ---------- */
/* A device cdev fd is a character device with the model's numbers (the /dev/null we reserved is
 * not): QEMU's open_cdev compares them with the cdev's sysfs "dev". Other fds stay as they are. */
int fstat(int fd, struct stat *st)
{
	RESOLVE(fstat);
	int r = REAL(fstat)(fd, st);
	if (r == 0 && is_model(fd) && cdevminor[fd]) {
		st->st_mode = S_IFCHR | 0600;
		st->st_rdev = makedev(VN_VFIO_CDEV_MAJOR, cdevminor[fd] - 1);
	}
	return r;
}

int fstat64(int fd, struct stat64 *st)
{
	RESOLVE(fstat64);
	int r = REAL(fstat64)(fd, st);
	if (r == 0 && is_model(fd) && cdevminor[fd]) {
		st->st_mode = S_IFCHR | 0600;
		st->st_rdev = makedev(VN_VFIO_CDEV_MAJOR, cdevminor[fd] - 1);
	}
	return r;
}

/* A device cdev's "major:minor" attribute (QEMU's iommufd backend checks the cdev it opens against
 * it). Read through stdio, whose reads do not come through read(), so it is opened as a snapshot: a
 * memfd holding what the model's file says. */
static int attr_path(const char *path)
{
	if (!path || !getenv("VFIO_NEST_SOCKET")) return 0;
	size_t n = strlen(path);
	if (n < 4 || strcmp(path + n - 4, "/dev")) return 0;
	return (!strncmp(path, "/sys/bus/pci/devices/", 21) && strstr(path, "/vfio-dev/vfio")) ||
	       !strncmp(path, "/sys/class/vfio-dev/vfio", 24);
}

static ssize_t model_rw(int type, int fd, void *buf, size_t count, uint64_t off);
static void forget_fd(int fd);

static int snapshot_open(const char *path, int flags)
{
	char text[256];
	int mfd = model_open(path, O_RDONLY, K_OTHER);
	if (mfd < 0) return -1;
	ssize_t n = model_rw(VN_REQ_PREAD, mfd, text, sizeof(text), 0);
	int e = errno;
	forget_fd(mfd);
	raw_close(mfd);
	if (n < 0) {
		errno = e;
		return -1;
	}
	return memfd_of("vfio-nest-sysfs", text, (size_t)n, flags);
}

/* 1 when the call was ours (result in *ret). */
static int maybe_open(const char *path, int flags, int *ret)
{
	if (attr_path(path)) {
		*ret = snapshot_open(path, flags);
		return 1;
	}
	int kind = routed_kind(path);
	if (kind != K_NONE) {
		*ret = model_open(path, flags, kind);
		return 1;
	}
	if (is_status_path(path) && (flags & O_ACCMODE) == O_RDONLY) {
		int fd = status_file(flags);
		if (fd >= 0) {
			*ret = fd;
			return 1;
		}
	}
	return 0;
}

#define OPEN_MODE(flags) \
	mode_t mode = 0; \
	if ((flags) & (O_CREAT | __O_TMPFILE)) { \
		va_list ap; \
		va_start(ap, flags); \
		mode = va_arg(ap, mode_t); \
		va_end(ap); \
	}

int open(const char *path, int flags, ...)
{
	OPEN_MODE(flags);
	int r;
	if (maybe_open(path, flags, &r)) return r;
	RESOLVE(open);
	return REAL(open)(path, flags, mode);
}

int open64(const char *path, int flags, ...)
{
	OPEN_MODE(flags);
	int r;
	if (maybe_open(path, flags, &r)) return r;
	RESOLVE(open64);
	return REAL(open64)(path, flags, mode);
}

int openat(int dirfd, const char *path, int flags, ...)
{
	OPEN_MODE(flags);
	int r;
	if (path[0] == '/' && maybe_open(path, flags, &r)) return r;
	RESOLVE(openat);
	return REAL(openat)(dirfd, path, flags, mode);
}

int openat64(int dirfd, const char *path, int flags, ...)
{
	OPEN_MODE(flags);
	int r;
	if (path[0] == '/' && maybe_open(path, flags, &r)) return r;
	RESOLVE(openat64);
	return REAL(openat64)(dirfd, path, flags, mode);
}

int __open_2(const char *path, int flags) { return open(path, flags); }
int __open64_2(const char *path, int flags) { return open64(path, flags); }
int __openat_2(int dirfd, const char *path, int flags) { return openat(dirfd, path, flags); }

/* fopen: /proc/self/status and a model device's sysfs attributes are ours, as memfd snapshots
 * (stdio reads through libc-internal calls we do not see). */
static FILE *maybe_fopen(const char *path, const char *mode, int *ours)
{
	*ours = 0;
	if (!mode || mode[0] != 'r' || strchr(mode, '+')) return NULL;
	int fd;
	if (attr_path(path)) {
		*ours = 1;
		fd = snapshot_open(path, strchr(mode, 'e') ? O_CLOEXEC : 0);
		if (fd < 0) return NULL;
	} else {
		if (!is_status_path(path)) return NULL;
		fd = status_file(strchr(mode, 'e') ? O_CLOEXEC : 0);
		if (fd < 0) return NULL; /* no server: the real file */
	}
	*ours = 1;
	FILE *f = fdopen(fd, mode);
	if (!f) raw_close(fd);
	return f;
}

FILE *fopen(const char *path, const char *mode)
{
	int ours;
	FILE *f = maybe_fopen(path, mode, &ours);
	if (ours) return f;
	RESOLVE(fopen);
	return REAL(fopen)(path, mode);
}

FILE *fopen64(const char *path, const char *mode)
{
	int ours;
	FILE *f = maybe_fopen(path, mode, &ours);
	if (ours) return f;
	RESOLVE(fopen64);
	return REAL(fopen64)(path, mode);
}

/* ---------- ioctl ---------- */
enum { A_VALUE, A_INT32, A_STRING, A_ARGSZ };

/* How the kernel takes the argument (VFIO ioctls are _IO(';', 100 + n): the fd kind decides). */
static int arg_kind(int kind, unsigned long req)
{
	if (((req >> 8) & 0xff) != ';') return A_VALUE;
	unsigned nr = req & 0xff;
	switch (kind) {
	case K_CONTAINER: /* GET_API_VERSION, CHECK_EXTENSION, SET_IOMMU, IOMMU_ENABLE/DISABLE */
		return (nr >= 100 && nr <= 102) || nr == 115 || nr == 116 ? A_VALUE : A_ARGSZ;
	case K_GROUP:
		return nr == 104 ? A_INT32 : nr == 105 ? A_VALUE : nr == 106 ? A_STRING : A_ARGSZ;
	case K_DEVICE: /* DEVICE_RESET */
		return nr == 111 ? A_VALUE : A_ARGSZ;
	case K_IOMMUFD:
		return A_ARGSZ;
	default:
		return A_VALUE;
	}
}

static int model_ioctl(int fd, unsigned long req, void *arg)
{
	if (fdkind[fd] == K_STALE) {
		errno = ENODEV;
		return -1;
	}
	int how = arg_kind(fdkind[fd], req);
	struct vn_hdr h = { .type = VN_REQ_IOCTL, .fd = fd, .num = (uint32_t)req, .a = (uint64_t)(uintptr_t)arg };
	unsigned char small[64];
	unsigned char *buf = small;
	size_t len = 0;
	uint64_t addr = (uint64_t)(uintptr_t)arg;
	if (how != A_VALUE) {
		h.flags = VN_IOCTL_ARG_BYTES;
		if (how == A_INT32) len = (size_t)(mem_rw(addr, small, 4, 0) == 4 ? 4 : 0);
		else if (how == A_STRING) {
			buf = malloc(4096);
			if (!buf) return errno = ENOMEM, -1;
			while (len < 4096 && mem_rw(addr + len, buf + len, 1, 0) == 1 && buf[len] != 0) len++;
			if (len < 4096 && buf[len] == 0) len++; /* the NUL */
		} else {
			uint32_t argsz = 0;
			size_t want = 64;
			if (mem_rw(addr, &argsz, 4, 0) == 4 && argsz > want) want = argsz;
			if (want > VN_MAX_IOCTL_ARG) want = VN_MAX_IOCTL_ARG;
			if (want > sizeof(small)) buf = malloc(want);
			if (!buf) return errno = ENOMEM, -1;
			ssize_t n = mem_rw(addr, buf, want, 0);
			len = n > 0 ? (size_t)n : 0;
		}
	}
	size_t cap = len > 0 ? len : 1;
	unsigned char *back = malloc(cap);
	if (!back) {
		if (buf != small) free(buf);
		return errno = ENOMEM, -1;
	}
	size_t blen = 0;
	struct vn_hdr rh;
	newfd_kind = fdkind[fd] == K_GROUP ? K_DEVICE : K_OTHER;
	long r = request(&h, buf, len, back, cap, &blen, &rh);
	int e = errno;
	if (r >= -1 && blen > 0 && h.flags && rh.b + blen <= len) mem_rw(addr + rh.b, back, blen, 1);
	free(back);
	if (buf != small) free(buf);
	errno = e;
	return (int)r;
}

int ioctl(int fd, unsigned long req, ...)
{
	va_list ap;
	va_start(ap, req);
	void *arg = va_arg(ap, void *);
	va_end(ap);
	if (is_model(fd)) return model_ioctl(fd, req, arg);
	RESOLVE(ioctl);
	return REAL(ioctl)(fd, req, arg);
}

/* ---------- close, dup ---------- */
/* Tells the server a client fd is gone (no-op for stale fds or without a connection). */
static void forget_fd(int fd)
{
	if (fdkind[fd] != K_STALE && sock >= 0) {
		struct vn_hdr h = { .type = VN_REQ_CLOSE, .fd = fd }, rh;
		pthread_mutex_lock(&lock);
		call(&h, NULL, 0, &rh, NULL, 0, NULL);
		pthread_mutex_unlock(&lock);
	}
	fdkind[fd] = K_NONE;
	cdevminor[fd] = 0;
}

/*
 * A write of 8 bytes to an eventfd the model holds: the model's waiters on it (vfio's INTx unmask
 * virqfd, an ioeventfd) run as the kernel's would when the program signals it. `forget`: the fd
 * is being closed, so the number no longer names that eventfd.
 */
static void tell_eventfd(int fd, uint64_t value, int forget)
{
	if (fd < 0 || fd >= MAX_FDS || !adopted[fd]) return;
	if (forget) adopted[fd] = 0;
	if (sock < 0) return;
	struct vn_hdr h = { .type = VN_REQ_SIGNAL, .fd = fd, .num = forget ? VN_SIGNAL_FORGET : 0, .a = value };
	int e = errno;
	request(&h, NULL, 0, NULL, 0, NULL, NULL);
	errno = e;
}

int close(int fd)
{
	RESOLVE(close);
	if (is_model(fd)) {
		forget_fd(fd);
		REAL(close)(fd);
		return 0;
	}
	tell_eventfd(fd, 0, 1);
	return REAL(close)(fd);
}

/* After a real dup of model fd `old` to `to`: the server maps `to` to the same file. */
static int after_dup(int old, int to)
{
	if (to < 0) return to;
	if (to >= MAX_FDS) {
		RESOLVE(close);
		REAL(close)(to);
		errno = EMFILE;
		return -1;
	}
	if (fdkind[old] == K_STALE) {
		fdkind[to] = K_STALE;
		return to;
	}
	struct vn_hdr h = { .type = VN_REQ_DUP, .fd = old, .a = (uint64_t)to };
	if (request(&h, NULL, 0, NULL, 0, NULL, NULL) < 0) {
		fdkind[to] = K_STALE;
		return to;
	}
	fdkind[to] = fdkind[old];
	cdevminor[to] = cdevminor[old];
	return to;
}

int dup(int fd)
{
	RESOLVE(dup);
	int r = REAL(dup)(fd);
	return is_model(fd) && r >= 0 ? after_dup(fd, r) : r;
}

static int dup_to(int old, int to, int flags, int three)
{
	RESOLVE(dup2);
	RESOLVE(dup3);
	int r = three ? REAL(dup3)(old, to, flags) : REAL(dup2)(old, to);
	if (r < 0 || old == to) return r;
	tell_eventfd(to, 0, 1); /* dup2 closed it: the number no longer names that eventfd */
	if (!is_model(old) && !is_model(to)) return r;
	if (is_model(to)) forget_fd(to);
	return is_model(old) ? after_dup(old, r) : r;
}

int dup2(int old, int to) { return dup_to(old, to, 0, 0); }
int dup3(int old, int to, int flags) { return dup_to(old, to, flags, 1); }

static int do_fcntl(int fd, int cmd, va_list ap, int (*real)(int, int, ...))
{
	/* Every fcntl command takes at most one argument, an int or a pointer. */
	void *arg = va_arg(ap, void *);
	int r = real(fd, cmd, arg);
	if (r >= 0 && (cmd == F_DUPFD || cmd == F_DUPFD_CLOEXEC) && is_model(fd)) return after_dup(fd, r);
	return r;
}

int fcntl(int fd, int cmd, ...)
{
	RESOLVE(fcntl);
	va_list ap;
	va_start(ap, cmd);
	int r = do_fcntl(fd, cmd, ap, REAL(fcntl));
	va_end(ap);
	return r;
}

int fcntl64(int fd, int cmd, ...)
{
	static int (*real64)(int, int, ...);
	if (!real64) *(void **)&real64 = dlsym(RTLD_NEXT, "fcntl64");
	RESOLVE(fcntl);
	va_list ap;
	va_start(ap, cmd);
	int r = do_fcntl(fd, cmd, ap, real64 ? real64 : REAL(fcntl));
	va_end(ap);
	return r;
}

/* ---------- read, write, pread, pwrite, lseek ---------- */
static ssize_t model_rw(int type, int fd, void *buf, size_t count, uint64_t off)
{
	if (fdkind[fd] == K_STALE) {
		errno = ENODEV;
		return -1;
	}
	size_t done = 0;
	do {
		size_t n = count - done;
		if (n > VN_MAX_IOCTL_ARG) n = VN_MAX_IOCTL_ARG;
		struct vn_hdr h = { .type = (uint16_t)type, .fd = fd, .a = off + done, .b = n };
		int reading = type == VN_REQ_PREAD || type == VN_REQ_READ;
		long r = request(&h, reading ? NULL : (char *)buf + done, reading ? 0 : n, reading ? (char *)buf + done : NULL,
				 reading ? n : 0, NULL, NULL);
		if (r < 0) return done ? (ssize_t)done : -1;
		done += (size_t)r;
		if ((size_t)r < n) break;
	} while (done < count);
	return (ssize_t)done;
}

ssize_t read(int fd, void *buf, size_t count)
{
	if (is_model(fd)) return model_rw(VN_REQ_READ, fd, buf, count, 0);
	RESOLVE(read);
	return REAL(read)(fd, buf, count);
}

ssize_t write(int fd, const void *buf, size_t count)
{
	if (is_model(fd)) return model_rw(VN_REQ_WRITE, fd, (void *)buf, count, 0);
	RESOLVE(write);
	ssize_t r = REAL(write)(fd, buf, count);
	if (r == 8 && fd >= 0 && fd < MAX_FDS && adopted[fd]) {
		uint64_t v;
		memcpy(&v, buf, 8);
		tell_eventfd(fd, v, 0);
	}
	return r;
}

/* glibc's eventfd_write calls its internal write, which no preload sees. */
int eventfd_write(int fd, eventfd_t value)
{
	if (syscall(SYS_write, fd, &value, sizeof(value)) != (long)sizeof(value)) return -1;
	tell_eventfd(fd, value, 0);
	return 0;
}

ssize_t pread(int fd, void *buf, size_t count, off_t off)
{
	if (is_model(fd)) return model_rw(VN_REQ_PREAD, fd, buf, count, (uint64_t)off);
	RESOLVE(pread);
	return REAL(pread)(fd, buf, count, off);
}

ssize_t pwrite(int fd, const void *buf, size_t count, off_t off)
{
	if (is_model(fd)) return model_rw(VN_REQ_PWRITE, fd, (void *)buf, count, (uint64_t)off);
	RESOLVE(pwrite);
	return REAL(pwrite)(fd, buf, count, off);
}

ssize_t pread64(int fd, void *buf, size_t count, off64_t off)
{
	if (is_model(fd)) return model_rw(VN_REQ_PREAD, fd, buf, count, (uint64_t)off);
	RESOLVE(pread64);
	return REAL(pread64)(fd, buf, count, off);
}

ssize_t pwrite64(int fd, const void *buf, size_t count, off64_t off)
{
	if (is_model(fd)) return model_rw(VN_REQ_PWRITE, fd, (void *)buf, count, (uint64_t)off);
	RESOLVE(pwrite64);
	return REAL(pwrite64)(fd, buf, count, off);
}

/* _FORTIFY_SOURCE variants */
ssize_t __read_chk(int fd, void *buf, size_t count, size_t buflen)
{
	(void)buflen;
	return read(fd, buf, count);
}
ssize_t __pread_chk(int fd, void *buf, size_t count, off_t off, size_t buflen)
{
	(void)buflen;
	return pread(fd, buf, count, off);
}
ssize_t __pread64_chk(int fd, void *buf, size_t count, off64_t off, size_t buflen)
{
	(void)buflen;
	return pread64(fd, buf, count, off);
}

static off64_t model_lseek(int fd, off64_t off, int whence)
{
	if (fdkind[fd] == K_STALE) {
		errno = ENODEV;
		return -1;
	}
	struct vn_hdr h = { .type = VN_REQ_LSEEK, .fd = fd, .num = (uint32_t)whence, .a = (uint64_t)off };
	return request(&h, NULL, 0, NULL, 0, NULL, NULL);
}

off_t lseek(int fd, off_t off, int whence)
{
	if (is_model(fd)) return model_lseek(fd, off, whence);
	RESOLVE(lseek);
	return REAL(lseek)(fd, off, whence);
}

off64_t lseek64(int fd, off64_t off, int whence)
{
	if (is_model(fd)) return model_lseek(fd, off, whence);
	RESOLVE(lseek64);
	return REAL(lseek64)(fd, off, whence);
}

/* ---------- process state ---------- */
static int routing(void) { return getenv("VFIO_NEST_SOCKET") != NULL; }

/* A credential request: the model's answer; applied for real too unless the identity is faked. */
static int cred_request(int type, uint64_t a, const void *data, size_t dlen)
{
	struct vn_hdr h = { .type = (uint16_t)type, .fd = -1, .a = a };
	return (int)request(&h, data, dlen, NULL, 0, NULL, NULL);
}

int setrlimit(__rlimit_resource_t res, const struct rlimit *rl)
{
	RESOLVE(setrlimit);
	if (!routing() || res != RLIMIT_MEMLOCK) return REAL(setrlimit)(res, rl);
	struct vn_hdr h = { .type = VN_REQ_SETRLIMIT, .fd = -1, .num = VN_RLIMIT_MEMLOCK, .a = rl->rlim_cur, .b = rl->rlim_max };
	int r = (int)request(&h, NULL, 0, NULL, 0, NULL, NULL);
	int e = errno;
	if (r == 0 && !faked_identity()) REAL(setrlimit)(res, rl);
	errno = e;
	return r;
}

int setrlimit64(__rlimit_resource_t res, const struct rlimit64 *rl)
{
	return setrlimit(res, (const struct rlimit *)rl);
}

/* The model's RLIMIT_MEMLOCK; 0, or -1 when it cannot be asked (then the real one is used). */
static int model_memlock(struct rlimit *out)
{
	struct vn_hdr h = { .type = VN_REQ_STATUS, .fd = -1 };
	if (request(&h, NULL, 0, NULL, 0, NULL, NULL) < 0) return -1;
	out->rlim_cur = status.memlock_cur;
	out->rlim_max = status.memlock_max;
	return 0;
}

int getrlimit(__rlimit_resource_t res, struct rlimit *rl)
{
	RESOLVE(getrlimit);
	if (routing() && res == RLIMIT_MEMLOCK && model_memlock(rl) == 0) return 0;
	return REAL(getrlimit)(res, rl);
}

int getrlimit64(__rlimit_resource_t res, struct rlimit64 *rl) { return getrlimit(res, (struct rlimit *)rl); }

int prlimit(pid_t pid, __rlimit_resource_t res, const struct rlimit *nl, struct rlimit *ol)
{
	RESOLVE(prlimit);
	if (!routing() || res != RLIMIT_MEMLOCK || (pid != 0 && pid != getpid())) return REAL(prlimit)(pid, res, nl, ol);
	struct rlimit old;
	if (model_memlock(&old) < 0) return REAL(prlimit)(pid, res, nl, ol);
	if (nl && setrlimit(res, nl) < 0) return -1;
	if (ol) *ol = old;
	return 0;
}

int prlimit64(pid_t pid, __rlimit_resource_t res, const struct rlimit64 *nl, struct rlimit64 *ol)
{
	return prlimit(pid, res, (const struct rlimit *)nl, (struct rlimit *)ol);
}

int setuid(uid_t uid)
{
	RESOLVE(setuid);
	if (!routing()) return REAL(setuid)(uid);
	int r = cred_request(VN_REQ_SETUID, uid, NULL, 0), e = errno;
	if (r == 0 && !faked_identity()) REAL(setuid)(uid);
	errno = e;
	return r;
}

int setgid(gid_t gid)
{
	RESOLVE(setgid);
	if (!routing()) return REAL(setgid)(gid);
	int r = cred_request(VN_REQ_SETGID, gid, NULL, 0), e = errno;
	if (r == 0 && !faked_identity()) REAL(setgid)(gid);
	errno = e;
	return r;
}

int setgroups(size_t n, const gid_t *list)
{
	RESOLVE(setgroups);
	if (!routing()) return REAL(setgroups)(n, list);
	if (n > 65536) return errno = EINVAL, -1;
	uint32_t *g = malloc(n * 4 + 4);
	if (!g) return errno = ENOMEM, -1;
	for (size_t i = 0; i < n; i++) g[i] = list[i];
	int r = cred_request(VN_REQ_SETGROUPS, n, g, n * 4), e = errno;
	free(g);
	if (r == 0 && !faked_identity()) REAL(setgroups)(n, list);
	errno = e;
	return r;
}

int capset(cap_user_header_t hdr, const cap_user_data_t data)
{
	RESOLVE(capset);
	if (!routing() || !hdr || !data || hdr->version != _LINUX_CAPABILITY_VERSION_3 || (hdr->pid && hdr->pid != getpid()))
		return REAL(capset)(hdr, data);
	uint64_t eff = (uint64_t)data[0].effective | ((uint64_t)data[1].effective << 32);
	int r = cred_request(VN_REQ_CAPSET, eff, NULL, 0), e = errno;
	if (r == 0 && !faked_identity()) REAL(capset)(hdr, data);
	errno = e;
	return r;
}

/* The model's credentials once connected (the last status block), else the real/faked ones. */
static int model_ids(uint32_t id[4])
{
	if (!routing()) return 0;
	pthread_mutex_lock(&lock);
	int ok = sock >= 0 && have_status;
	if (ok) {
		id[0] = status.uid;
		id[1] = status.euid;
		id[2] = status.gid;
		id[3] = status.egid;
	}
	pthread_mutex_unlock(&lock);
	if (ok) return 1;
	if (!faked_identity()) return 0;
	uint64_t cap, cur, max;
	uint32_t flags;
	hello_identity(id, &cap, &cur, &max, &flags);
	return 1;
}

uid_t getuid(void)
{
	uint32_t id[4];
	if (model_ids(id)) return id[0];
	RESOLVE(getuid);
	return REAL(getuid)();
}
uid_t geteuid(void)
{
	uint32_t id[4];
	if (model_ids(id)) return id[1];
	RESOLVE(geteuid);
	return REAL(geteuid)();
}
gid_t getgid(void)
{
	uint32_t id[4];
	if (model_ids(id)) return id[2];
	RESOLVE(getgid);
	return REAL(getgid)();
}
gid_t getegid(void)
{
	uint32_t id[4];
	if (model_ids(id)) return id[3];
	RESOLVE(getegid);
	return REAL(getegid)();
}

int capget(cap_user_header_t hdr, cap_user_data_t data)
{
	if (routing() && hdr && data && hdr->version == _LINUX_CAPABILITY_VERSION_3 && (!hdr->pid || hdr->pid == getpid())) {
		struct vn_hdr h = { .type = VN_REQ_STATUS, .fd = -1 };
		if (request(&h, NULL, 0, NULL, 0, NULL, NULL) == 0) {
			memset(data, 0, 2 * sizeof(*data));
			data[0].effective = data[0].permitted = (uint32_t)status.cap_eff;
			data[1].effective = data[1].permitted = (uint32_t)(status.cap_eff >> 32);
			return 0;
		}
	}
	return (int)syscall(SYS_capget, hdr, data);
}

/* ---------- memory the model has seen ---------- */
/* The program is about to unmap (or replace) [addr, addr+len): the model drops it first. */
static void tell_unmap(void *addr, size_t len)
{
	if (!routing() || len == 0) return;
	uint64_t start = (uint64_t)(uintptr_t)addr & ~4095ULL;
	uint64_t end = ((uint64_t)(uintptr_t)addr + len + 4095) & ~4095ULL;
	pthread_mutex_lock(&lock);
	if (sock >= 0 && known_overlaps(start, end)) {
		struct vn_hdr h = { .type = VN_REQ_MUNMAP, .fd = -1, .a = start, .b = end - start }, rh;
		call(&h, NULL, 0, &rh, NULL, 0, NULL);
		known_remove(start, end);
	}
	pthread_mutex_unlock(&lock);
}

int munmap(void *addr, size_t len)
{
	RESOLVE(munmap);
	tell_unmap(addr, len);
	return REAL(munmap)(addr, len);
}

void *mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
	RESOLVE(mmap);
	if (flags & (MAP_FIXED | MAP_FIXED_NOREPLACE)) tell_unmap(addr, len);
	if (is_model(fd)) {
		/* Device regions cannot be mapped into this process: VMMs fall back to pread/pwrite. */
		errno = ENODEV;
		return MAP_FAILED;
	}
	return REAL(mmap)(addr, len, prot, flags, fd, off);
}

void *mmap64(void *addr, size_t len, int prot, int flags, int fd, off64_t off)
{
	RESOLVE(mmap64);
	if (flags & (MAP_FIXED | MAP_FIXED_NOREPLACE)) tell_unmap(addr, len);
	if (is_model(fd)) {
		errno = ENODEV;
		return MAP_FAILED;
	}
	return REAL(mmap64)(addr, len, prot, flags, fd, off);
}

void *mremap(void *old, size_t oldlen, size_t newlen, int flags, ...)
{
	RESOLVE(mremap);
	void *to = NULL;
	if (flags & MREMAP_FIXED) {
		va_list ap;
		va_start(ap, flags);
		to = va_arg(ap, void *);
		va_end(ap);
		tell_unmap(to, newlen);
	}
	tell_unmap(old, oldlen);
	return (flags & MREMAP_FIXED) ? REAL(mremap)(old, oldlen, newlen, flags, to) : REAL(mremap)(old, oldlen, newlen, flags);
}

int madvise(void *addr, size_t len, int advice)
{
	RESOLVE(madvise);
	if (advice == MADV_DONTNEED || advice == MADV_FREE || advice == MADV_REMOVE) tell_unmap(addr, len);
	return REAL(madvise)(addr, len, advice);
}

/* ---------- fork ---------- */
static void before_fork(void)
{
	pthread_mutex_lock(&lock);
	pthread_mutex_lock(&memfd_lock);
}
static void after_fork_parent(void)
{
	pthread_mutex_unlock(&memfd_lock);
	pthread_mutex_unlock(&lock);
}
static void after_fork_child(void)
{
	/* The connection and the model process are the parent's: the child's VFIO fds are stale
	 * (ENODEV); a new open connects again, as a new model process. */
	if (sock >= 0) raw_close(sock);
	sock = -1;
	if (memfd >= 0) raw_close(memfd); /* it is the parent's memory */
	memfd = -1;
	have_status = 0;
	nknown = 0;
	for (int i = 0; i < MAX_FDS; i++)
		if (fdkind[i] != K_NONE) fdkind[i] = K_STALE;
	memset(adopted, 0, sizeof(adopted));
	pthread_mutex_unlock(&memfd_lock);
	pthread_mutex_unlock(&lock);
}

__attribute__((constructor)) static void vfio_nest_init(void)
{
	pthread_atfork(before_fork, after_fork_parent, after_fork_child);
}
