/*
 * type1-dma: a device's DMA into your own buffer through VFIO type-1 v2, the way a VMM does it.
 *
 * It opens the container and the group, picks the IOMMU type, maps two pages of its own anonymous
 * memory for DMA (a source the device may read, a destination it may write), opens the device (QEMU's
 * `edu`), turns bus mastering on, has the edu's DMA engine copy source -> edu buffer -> destination
 * through its BAR0 registers (pread/pwrite of the device fd), waits for the device's interrupt on an
 * eventfd (INTx through VFIO_DEVICE_SET_IRQS), and checks that the bytes arrived in its own
 * destination page. Nothing here knows about vfio-nest: it is plain VFIO and runs the same on
 * a machine with an edu bound to vfio-pci.
 *
 * Against the model (from the repository root):
 *
 *   npm run build:preload
 *   gcc -O2 -Wall -o build/type1-dma examples/c/type1-dma.c
 *   npx vfio-nest serve --socket /tmp/vn.sock --config 6.12-intel &
 *   VFIO_NEST_SOCKET=/tmp/vn.sock LD_PRELOAD=$PWD/build/libvfio-nest-preload.so build/type1-dma
 *
 * VFIO_GROUP (default 1) and VFIO_DEVICE (default 0000:00:01.0) name the group and the device; with
 * `--iommu virtio` the edu is 0000:00:02.0 (and type-1 needs
 * `--param vfio_iommu_type1.allow_unsafe_interrupts=1`).
 *
 * SMMUv3 and nesting: with the SMMUv3 host (`vfio-nest serve --iommu smmuv3 --kernel 6.1`, group 0)
 * change IOMMU_TYPE below to 6 (VFIO_TYPE1_NESTING_IOMMU) and nothing else: on 6.1 the mappings become
 * stage 2 (IOVA = IPA) and, with no stage-1 context installed, the device's DMA goes through stage 2
 * only, so the same copy lands in the same buffer.
 *
 * Exit status: 0 the bytes arrived, 1 they did not, 2 a call failed (the message names it).
 * (Built with -Wall -Wextra -O2; plain C11 and the kernel's uapi headers.)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>
#include <linux/vfio.h>

#define IOMMU_TYPE 3 /* VFIO_TYPE1v2_IOMMU; 6 = VFIO_TYPE1_NESTING_IOMMU (see above) */

#define PAGE 4096
#define SRC_IOVA 0x100000ULL /* the edu clamps DMA addresses to 28 bits */
#define DST_IOVA 0x101000ULL
#define LEN 0x800 /* QEMU 7.2's edu aborts on a full 4 KiB transfer (an off-by-one fixed later) */

/* edu registers (QEMU docs/specs/edu.rst) */
#define EDU_ID 0x00
#define EDU_DMA_SRC 0x80
#define EDU_DMA_DST 0x88
#define EDU_DMA_CNT 0x90
#define EDU_DMA_CMD 0x98
#define EDU_BUF 0x40000
#define EDU_IRQ_ACK 0x64
#define EDU_CMD_RUN 1
#define EDU_CMD_TO_RAM 2
#define EDU_CMD_IRQ 4
#define EDU_IRQ_DMA 0x100

static int die(const char *what)
{
	fprintf(stderr, "type1-dma: %s: %s\n", what, strerror(errno));
	exit(2);
}

static int dev = -1;
static uint64_t bar0;

static uint32_t rd32(uint64_t reg)
{
	uint32_t v;
	if (pread(dev, &v, 4, (off_t)(bar0 + reg)) != 4) die("pread BAR0");
	return v;
}

static void wr32(uint64_t reg, uint32_t v)
{
	if (pwrite(dev, &v, 4, (off_t)(bar0 + reg)) != 4) die("pwrite BAR0");
}

/* One edu DMA: start it, wait for the engine to clear RUN. */
static void edu_dma(uint32_t src, uint32_t dst, uint32_t len, uint32_t flags)
{
	wr32(EDU_DMA_SRC, src);
	wr32(EDU_DMA_DST, dst);
	wr32(EDU_DMA_CNT, len);
	wr32(EDU_DMA_CMD, EDU_CMD_RUN | flags);
	for (int i = 0; i < 1000 && (rd32(EDU_DMA_CMD) & EDU_CMD_RUN); i++) usleep(1000);
	if (rd32(EDU_DMA_CMD) & EDU_CMD_RUN) {
		errno = ETIMEDOUT;
		die("edu DMA");
	}
}

int main(void)
{
	const char *gname = getenv("VFIO_GROUP") ? getenv("VFIO_GROUP") : "1";
	const char *dname = getenv("VFIO_DEVICE") ? getenv("VFIO_DEVICE") : "0000:00:01.0";
	char path[64];

	int container = open("/dev/vfio/vfio", O_RDWR | O_CLOEXEC);
	if (container < 0) die("open /dev/vfio/vfio");
	if (ioctl(container, VFIO_GET_API_VERSION) != VFIO_API_VERSION) die("VFIO_GET_API_VERSION");
	if (ioctl(container, VFIO_CHECK_EXTENSION, IOMMU_TYPE) != 1) die("VFIO_CHECK_EXTENSION");

	snprintf(path, sizeof(path), "/dev/vfio/%s", gname);
	int group = open(path, O_RDWR | O_CLOEXEC);
	if (group < 0) die(path);
	struct vfio_group_status gs = { .argsz = sizeof(gs) };
	if (ioctl(group, VFIO_GROUP_GET_STATUS, &gs) < 0) die("VFIO_GROUP_GET_STATUS");
	if (!(gs.flags & VFIO_GROUP_FLAGS_VIABLE)) {
		errno = EBUSY;
		die("group not viable");
	}
	if (ioctl(group, VFIO_GROUP_SET_CONTAINER, &container) < 0) die("VFIO_GROUP_SET_CONTAINER");
	if (ioctl(container, VFIO_SET_IOMMU, IOMMU_TYPE) < 0) die("VFIO_SET_IOMMU");

	struct vfio_iommu_type1_info info = { .argsz = sizeof(info) };
	if (ioctl(container, VFIO_IOMMU_GET_INFO, &info) < 0) die("VFIO_IOMMU_GET_INFO");
	printf("IOMMU page sizes 0x%llx\n", (unsigned long long)info.iova_pgsizes);

	/* Our own memory: a source page the device may read, a destination page it may write. */
	unsigned char *buf = mmap(NULL, 2 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (buf == MAP_FAILED) die("mmap");
	unsigned char *src = buf, *dst = buf + PAGE;
	for (int i = 0; i < PAGE; i++) src[i] = (unsigned char)(i * 7 + 1);
	memset(dst, 0, PAGE);

	struct vfio_iommu_type1_dma_map map = {
		.argsz = sizeof(map),
		.flags = VFIO_DMA_MAP_FLAG_READ,
		.vaddr = (uintptr_t)src,
		.iova = SRC_IOVA,
		.size = PAGE,
	};
	if (ioctl(container, VFIO_IOMMU_MAP_DMA, &map) < 0) die("VFIO_IOMMU_MAP_DMA (source)");
	map.flags = VFIO_DMA_MAP_FLAG_WRITE;
	map.vaddr = (uintptr_t)dst;
	map.iova = DST_IOVA;
	if (ioctl(container, VFIO_IOMMU_MAP_DMA, &map) < 0) die("VFIO_IOMMU_MAP_DMA (destination)");

	dev = ioctl(group, VFIO_GROUP_GET_DEVICE_FD, dname);
	if (dev < 0) die("VFIO_GROUP_GET_DEVICE_FD");
	struct vfio_region_info bar = { .argsz = sizeof(bar), .index = VFIO_PCI_BAR0_REGION_INDEX };
	struct vfio_region_info cfg = { .argsz = sizeof(cfg), .index = VFIO_PCI_CONFIG_REGION_INDEX };
	if (ioctl(dev, VFIO_DEVICE_GET_REGION_INFO, &bar) < 0) die("VFIO_DEVICE_GET_REGION_INFO (BAR0)");
	if (ioctl(dev, VFIO_DEVICE_GET_REGION_INFO, &cfg) < 0) die("VFIO_DEVICE_GET_REGION_INFO (config)");
	bar0 = bar.offset;

	/* PCI command register: memory space and bus master, so the device may DMA. */
	uint16_t cmd;
	if (pread(dev, &cmd, 2, (off_t)(cfg.offset + 4)) != 2) die("pread PCI_COMMAND");
	cmd |= 0x6;
	if (pwrite(dev, &cmd, 2, (off_t)(cfg.offset + 4)) != 2) die("pwrite PCI_COMMAND");

	/* The device's interrupt (INTx) signals an eventfd of ours. */
	int irq = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (irq < 0) die("eventfd");
	union {
		struct vfio_irq_set set;
		unsigned char bytes[sizeof(struct vfio_irq_set) + sizeof(int32_t)];
	} irqs = { .set = {
			   .argsz = sizeof(irqs),
			   .flags = VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER,
			   .index = VFIO_PCI_INTX_IRQ_INDEX,
			   .count = 1,
		   } };
	int32_t efd = irq;
	memcpy(irqs.set.data, &efd, sizeof(efd));
	if (ioctl(dev, VFIO_DEVICE_SET_IRQS, &irqs) < 0) die("VFIO_DEVICE_SET_IRQS");

	printf("edu id 0x%08x\n", rd32(EDU_ID));
	edu_dma((uint32_t)SRC_IOVA, EDU_BUF, LEN, 0); /* RAM(source) -> edu buffer */
	edu_dma(EDU_BUF, (uint32_t)DST_IOVA, LEN, EDU_CMD_TO_RAM | EDU_CMD_IRQ); /* edu buffer -> RAM(destination) */

	struct pollfd pfd = { .fd = irq, .events = POLLIN };
	uint64_t count = 0;
	if (poll(&pfd, 1, 1000) != 1 || read(irq, &count, sizeof(count)) != sizeof(count)) {
		errno = ETIMEDOUT;
		die("waiting for the DMA interrupt");
	}
	wr32(EDU_IRQ_ACK, EDU_IRQ_DMA);
	printf("interrupt: the eventfd counted %llu\n", (unsigned long long)count);

	int ok = memcmp(src, dst, LEN) == 0;
	printf("%s: %d bytes %s our destination buffer at %p\n", ok ? "ok" : "FAILED", LEN,
	       ok ? "copied by the device into" : "did not reach", (void *)dst);

	FILE *st = fopen("/proc/self/status", "r");
	char line[256];
	while (st && fgets(line, sizeof(line), st))
		if (!strncmp(line, "VmLck:", 6)) fputs(line, stdout);
	if (st) fclose(st);

	struct vfio_iommu_type1_dma_unmap unmap = { .argsz = sizeof(unmap), .flags = VFIO_DMA_UNMAP_FLAG_ALL };
	if (ioctl(container, VFIO_IOMMU_UNMAP_DMA, &unmap) < 0) die("VFIO_IOMMU_UNMAP_DMA");
	close(dev);
	close(irq);
	close(group);
	close(container);
	munmap(buf, 2 * PAGE);
	return ok ? 0 : 1;
}
