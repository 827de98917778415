/*
 * The VFIO device cdev through the interposer, as QEMU's iommufd backend finds and checks it (run by
 * test/server/interposer.test.ts against a 6.18-iommufd host): the PCI device's vfio-dev directory
 * lists the cdev, its "dev" attribute gives major:minor (through read(2) and through stdio), the
 * cdev fd is a character device with those numbers, and it binds to an iommufd.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#define DEV "/sys/bus/pci/devices/0000:00:01.0"

/* VFIO_DEVICE_BIND_IOMMUFD (6.6 uapi; older <linux/vfio.h> lack it) */
struct bind_iommufd {
	uint32_t argsz, flags;
	int32_t iommufd;
	uint32_t out_devid;
};
#define BIND_IOMMUFD _IO(';', 100 + 18)

int main(void)
{
	DIR *d = opendir(DEV "/vfio-dev");
	struct dirent *e;
	int n = 0;
	while (d && (e = readdir(d))) printf("entry%d=%s\n", n++, e->d_name);
	printf("entries=%d\n", n);
	if (d) closedir(d);
	printf("opendir_other=%s\n", opendir("/sys/bus/pci/devices/0000:00:09.0/vfio-dev") ? "ok" : strerrorname_np(errno));

	char b[32] = "";
	int fd = open(DEV "/vfio-dev/vfio0/dev", O_RDONLY);
	ssize_t r = fd >= 0 ? read(fd, b, sizeof(b) - 1) : -1;
	b[strcspn(b, "\n")] = 0;
	printf("dev_read=%zd %s\n", r, b);
	if (fd >= 0) close(fd);
	char c[32] = "";
	FILE *f = fopen("/sys/class/vfio-dev/vfio0/dev", "r");
	if (f && fgets(c, sizeof(c), f)) c[strcspn(c, "\n")] = 0;
	if (f) fclose(f);
	printf("dev_stdio=%s\n", c);

	int cdev = open("/dev/vfio/devices/vfio0", O_RDWR);
	struct stat st;
	fstat(cdev, &st);
	printf("cdev=%s %u:%u\n", S_ISCHR(st.st_mode) ? "chr" : "other", major(st.st_rdev), minor(st.st_rdev));
	int iommufd = open("/dev/iommu", O_RDWR);
	fstat(iommufd, &st);
	printf("iommufd=%u:%u\n", major(st.st_rdev), minor(st.st_rdev)); /* the reserved /dev/null's */
	struct bind_iommufd bind = { .argsz = sizeof(bind), .iommufd = iommufd };
	printf("bind=%d\n", ioctl(cdev, BIND_IOMMUFD, &bind));
	return 0;
}
