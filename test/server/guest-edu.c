/*
 * Runs inside a QEMU guest as its init's program (test/server/qemu.test.ts): finds the edu
 * (1234:11e8) that QEMU's vfio-pci gives the guest, turns bus mastering on through sysfs, and has it
 * copy a page of guest RAM into its buffer and back into another page by DMA. With vfio-nest behind
 * QEMU, each DMA goes through the model's IOMMU to the guest RAM QEMU mapped with MAP_DMA.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static int readhex(const char *dir, const char *file, unsigned *v)
{
	char p[300], b[32] = "";
	snprintf(p, sizeof(p), "%s/%s", dir, file);
	int fd = open(p, O_RDONLY);
	if (fd < 0) return -1;
	int n = read(fd, b, sizeof(b) - 1);
	close(fd);
	if (n <= 0) return -1;
	*v = (unsigned)strtoul(b, NULL, 16);
	return 0;
}

static uint64_t phys(void *va)
{
	int pm = open("/proc/self/pagemap", O_RDONLY);
	uint64_t e = 0;
	pread(pm, &e, 8, ((uintptr_t)va / 4096) * 8);
	close(pm);
	return (e >> 63) ? (e & ((1ULL << 55) - 1)) * 4096 : 0;
}

int main(void)
{
	char dev[300] = "";
	DIR *d = opendir("/sys/bus/pci/devices");
	struct dirent *e;
	while (d && (e = readdir(d))) {
		char p[300];
		unsigned v, id;
		snprintf(p, sizeof(p), "/sys/bus/pci/devices/%s", e->d_name);
		if (!readhex(p, "vendor", &v) && !readhex(p, "device", &id) && v == 0x1234 && id == 0x11e8) strcpy(dev, p);
	}
	if (!dev[0]) { printf("GUEST: no edu\n"); return 1; }
	char p[300];
	snprintf(p, sizeof(p), "%s/config", dev);
	int cfg = open(p, O_RDWR);
	uint16_t cmd = 0;
	pread(cfg, &cmd, 2, 4);
	cmd |= 6; /* memory space, bus master */
	pwrite(cfg, &cmd, 2, 4);
	snprintf(p, sizeof(p), "%s/resource0", dev);
	int r0 = open(p, O_RDWR | O_SYNC);
	volatile uint32_t *regs = mmap(NULL, 1 << 20, PROT_READ | PROT_WRITE, MAP_SHARED, r0, 0);
	if (regs == MAP_FAILED) { printf("GUEST: mmap resource0 failed\n"); return 1; }
	printf("GUEST: edu at %s id 0x%08x\n", dev + 21, regs[0]);
	uint8_t *buf = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_LOCKED | MAP_POPULATE, -1, 0);
	for (int i = 0; i < 4096; i++) buf[i] = (uint8_t)(i * 7 + 3);
	memset(buf + 4096, 0, 4096);
	uint64_t a = phys(buf), b = phys(buf + 4096);
	printf("GUEST: pages at 0x%llx and 0x%llx\n", (unsigned long long)a, (unsigned long long)b);
	/* RAM -> the edu's buffer (0x40000), then back into the second page */
	regs[0x80 / 4] = (uint32_t)a; regs[0x84 / 4] = 0;
	regs[0x88 / 4] = 0x40000; regs[0x8c / 4] = 0;
	regs[0x90 / 4] = 4096; regs[0x94 / 4] = 0;
	regs[0x98 / 4] = 1;
	while (regs[0x98 / 4] & 1) ;
	regs[0x80 / 4] = 0x40000;
	regs[0x88 / 4] = (uint32_t)b;
	regs[0x98 / 4] = 1 | 2;
	while (regs[0x98 / 4] & 1) ;
	int ok = !memcmp(buf, buf + 4096, 4096);
	printf("GUEST: DMA round trip %s\n", ok ? "ok: 4096 bytes" : "MISMATCH");

	/* With uio_pci_generic bound (the init loads it when it is there): the edu's interrupt, raised
	 * through its register, reaches the guest as INTx (model -> QEMU's eventfd -> the guest's IRQ). */
	int uio = open("/dev/uio0", O_RDWR);
	if (uio >= 0) {
		uint32_t on = 1, count = 0;
		write(uio, &on, 4); /* unmask */
		regs[0x60 / 4] = 1; /* raise */
		struct pollfd p = { .fd = uio, .events = POLLIN };
		if (poll(&p, 1, 5000) == 1 && read(uio, &count, 4) == 4)
			printf("GUEST: interrupt %u, edu status 0x%x\n", count, regs[0x24 / 4]);
		else
			printf("GUEST: no interrupt\n");
		regs[0x64 / 4] = 1; /* acknowledge */
	}
	return ok ? 0 : 1;
}
