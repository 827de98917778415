/*
 * The interposer's less travelled paths, one "name=value" line each (test/server/interposer.test.ts):
 * dup/dup2/dup3/fcntl(F_DUPFD_CLOEXEC) on VFIO fds, dup2 over a VFIO fd, fork (the child's inherited
 * fds are stale, its own open is a new process), the process state (getrlimit/setrlimit, setuid,
 * getuid, capget, /proc/self/status through open+read), sysfs module parameters through
 * open/read/write, munmap of pinned memory, and mmap of a device region.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <linux/vfio.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

/* glibc has no prototype for capget (libcap's header has one); the interposer defines the symbol. */
extern int capget(cap_user_header_t hdr, cap_user_data_t data);

static void show(const char *name, long r) { printf("%s=%ld%s%s\n", name, r, r < 0 ? " " : "", r < 0 ? strerrorname_np(errno) : ""); }

static long status_kb(const char *key)
{
	int fd = open("/proc/self/status", O_RDONLY);
	char buf[8192];
	ssize_t n = fd >= 0 ? read(fd, buf, sizeof(buf) - 1) : -1;
	if (fd >= 0) close(fd);
	if (n <= 0) return -1;
	buf[n] = 0;
	char *p = strstr(buf, key);
	return p ? strtol(p + strlen(key) + 1, NULL, 10) : -1;
}

int main(void)
{
	int c = open("/dev/vfio/vfio", O_RDWR);
	int d1 = dup(c);
	int d2 = fcntl(c, F_DUPFD_CLOEXEC, 100);
	show("dup_ge_100", d2 >= 100);
	close(c);
	show("dup_api", ioctl(d1, VFIO_GET_API_VERSION));
	show("fcntl_dup_api", ioctl(d2, VFIO_GET_API_VERSION));
	int g = open("/dev/vfio/1", O_RDWR);
	show("group", g >= 0);
	/* dup2 of /dev/null over the group fd closes the group: it can be opened again */
	int nul = open("/dev/null", O_RDONLY);
	dup2(nul, g);
	show("group_after_dup2", ioctl(g, VFIO_GROUP_GET_STATUS, &(struct vfio_group_status){ .argsz = 8 }));
	int g2 = open("/dev/vfio/1", O_RDWR);
	show("group_reopen", g2 >= 0);
	int g3 = dup3(g2, 200, O_CLOEXEC);
	show("dup3", g3);
	close(g2);
	show("set_container_dup3", ioctl(g3, VFIO_GROUP_SET_CONTAINER, &d1));
	show("set_iommu", ioctl(d2, VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU));

	/* pinned memory the program unmaps: the mapping stays, the charge too */
	char *m = mmap(NULL, 0x4000, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	struct vfio_iommu_type1_dma_map map = { .argsz = sizeof(map), .flags = 3, .vaddr = (uintptr_t)m, .iova = 0x100000, .size = 0x4000 };
	show("map", ioctl(d1, VFIO_IOMMU_MAP_DMA, &map));
	show("vmlck_mapped", status_kb("VmLck:"));
	show("munmap", munmap(m, 0x4000));
	show("vmlck_unmapped", status_kb("VmLck:"));
	map.vaddr = (uintptr_t)m; /* now nothing is mapped there */
	map.iova = 0x200000;
	show("map_unmapped", ioctl(d1, VFIO_IOMMU_MAP_DMA, &map));
	struct vfio_iommu_type1_dma_unmap un = { .argsz = sizeof(un), .flags = VFIO_DMA_UNMAP_FLAG_ALL };
	show("unmap_all", ioctl(d1, VFIO_IOMMU_UNMAP_DMA, &un));
	show("unmapped_size", (long)un.size);
	show("vmlck_after", status_kb("VmLck:"));

	/* a device region cannot be mapped into the program */
	int dev = ioctl(g3, VFIO_GROUP_GET_DEVICE_FD, "0000:00:01.0");
	show("device", dev >= 0);
	show("mmap_bar", mmap(NULL, 4096, PROT_READ, MAP_SHARED, dev, 0) == MAP_FAILED ? -1 : 0);

	/* read(2) on the device fd follows its file position; it has no llseek (y9-fd-syscalls) */
	uint32_t reg = 0;
	show("dev_read", read(dev, &reg, 4));
	printf("dev_id=0x%x\n", reg);
	show("dev_read_next", read(dev, &reg, 4));
	printf("dev_live=0x%x\n", reg);
	show("dev_lseek", lseek(dev, 0, SEEK_SET));

	/* an ioeventfd on the liveness register: the program's own eventfd writes reach the model */
	int efd = eventfd(0, EFD_CLOEXEC);
	struct vfio_device_ioeventfd ie = {
		.argsz = sizeof(ie), .flags = VFIO_DEVICE_IOEVENTFD_32, .offset = 4, .data = 0x12345678, .fd = efd
	};
	show("ioeventfd", ioctl(dev, VFIO_DEVICE_IOEVENTFD, &ie));
	uint64_t one = 1;
	show("efd_write", write(efd, &one, 8));
	pread(dev, &reg, 4, 4);
	printf("live_after_write=0x%x\n", reg);
	reg = 0xffffffff;
	show("live_pwrite", pwrite(dev, &reg, 4, 4));
	pread(dev, &reg, 4, 4);
	printf("live_after_pwrite=0x%x\n", reg);
	show("efd_eventfd_write", eventfd_write(efd, 1));
	pread(dev, &reg, 4, 4);
	printf("live_after_eventfd_write=0x%x\n", reg);

	/* fork: the child's inherited fds are stale; its own open is a new process (the group is busy) */
	fflush(stdout);
	pid_t pid = fork();
	if (pid == 0) {
		show("child_inherited", ioctl(d1, VFIO_GET_API_VERSION));
		show("child_close", close(d1));
		int cc = open("/dev/vfio/vfio", O_RDWR);
		show("child_open", cc >= 0);
		show("child_group", open("/dev/vfio/1", O_RDWR));
		fflush(stdout);
		_exit(0);
	}
	waitpid(pid, NULL, 0);
	show("parent_after_fork", ioctl(d1, VFIO_GET_API_VERSION));

	/* module parameters through open/read/write */
	int p = open("/sys/module/vfio_iommu_type1/parameters/dma_entry_limit", O_RDWR);
	char v[32] = "";
	show("param_read", read(p, v, sizeof(v) - 1));
	printf("param=%s", v);
	show("param_lseek", lseek(p, 0, SEEK_SET));
	show("param_write", write(p, "100\n", 4));
	close(p);

	/* the device's group, where a VMM looks it up (QEMU's vfio-pci host=) */
	char link[256] = "";
	ssize_t ln = readlink("/sys/bus/pci/devices/0000:00:01.0/iommu_group", link, sizeof(link) - 1);
	show("readlink", ln);
	printf("link=%s\n", ln > 0 ? link : "");
	show("readlinkat_short", readlinkat(AT_FDCWD, "/sys/bus/pci/devices/0000:00:01.0/iommu_group", link, 8));
	show("readlink_other", readlink("/sys/bus/pci/devices/0000:00:09.0/iommu_group", link, sizeof(link)));
	show("readlink_real", readlink("/proc/self/exe", link, sizeof(link)) > 0);

	/* the process state is the model's */
	struct rlimit rl = { 0x10000, 0x10000 };
	show("setrlimit", setrlimit(RLIMIT_MEMLOCK, &rl));
	getrlimit(RLIMIT_MEMLOCK, &rl);
	show("memlock_cur", (long)rl.rlim_cur);
	show("setuid", setuid(1000));
	show("getuid", getuid());
	show("geteuid", geteuid());
	struct __user_cap_header_struct h = { _LINUX_CAPABILITY_VERSION_3, 0 };
	struct __user_cap_data_struct cd[2];
	show("capget", syscall(SYS_capget, &h, cd) == 0 ? 0 : -1); /* the raw syscall: real */
	show("capget_libc", capget(&h, cd));
	show("cap_eff", cd[0].effective);
	rl.rlim_max = 0x20000;
	show("raise_max", setrlimit(RLIMIT_MEMLOCK, &rl));
	return 0;
}
