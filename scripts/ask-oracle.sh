#!/usr/bin/env bash
# Developer tool: run probe files against real kernels with the oracle of ../shared/oracle
# (built once as /work/oracle-howto.md describes) and store the answers as recordings:
#   scripts/ask-oracle.sh OUTDIR CONFIG PROBE...
# writes OUTDIR/CONFIG/<probe name>.jsonl, one boot per probe file. CONFIG is a recording
# directory name: 6.1-intel 6.12-intel 6.18-intel 6.12-virtio 6.18-virtio 6.12-virtio-no-unsafe-irq
# 6.18-virtio-no-unsafe-irq 6.1-smmuv3 6.12-smmuv3 6.18-smmuv3 6.1-smmuv3-s1 6.18-iommufd.
# Not used by the tests (CI has no oracle); the recordings it writes are.
set -euo pipefail
ORACLE=${ORACLE:-/work/oracle}
Q10=$ORACLE/arm64/build/qemu10/x/usr/bin/qemu-system-aarch64
out=$1; config=$2; shift 2
mkdir -p "$out/$config"
for probe in "$@"; do
  name=$(basename "$probe" .txt)
  case $config in
    6.1-intel) cmd=(env ORACLE_ENV=1 "$ORACLE/x86/run") ;;
    6.12-intel) cmd=(env ORACLE_ENV=1 KVER=6.12.95+deb12-amd64 "$ORACLE/x86/run") ;;
    6.18-intel) cmd=(env ORACLE_ENV=1 KVER=6.18.15+deb13-amd64 "$ORACLE/x86/run") ;;
    6.12-virtio) cmd=(env ORACLE_ENV=1 KVER=6.12.95+deb12-amd64 IOMMU=virtio EXTRA_APPEND=vfio_iommu_type1.allow_unsafe_interrupts=1 "$ORACLE/x86/run") ;;
    6.18-virtio) cmd=(env ORACLE_ENV=1 KVER=6.18.15+deb13-amd64 IOMMU=virtio EXTRA_APPEND=vfio_iommu_type1.allow_unsafe_interrupts=1 "$ORACLE/x86/run") ;;
    6.12-virtio-no-unsafe-irq) cmd=(env ORACLE_ENV=1 KVER=6.12.95+deb12-amd64 IOMMU=virtio "$ORACLE/x86/run") ;;
    6.18-virtio-no-unsafe-irq) cmd=(env ORACLE_ENV=1 KVER=6.18.15+deb13-amd64 IOMMU=virtio "$ORACLE/x86/run") ;;
    6.1-smmuv3) cmd=(env QEMU=$Q10 ORACLE_ENV=1 "$ORACLE/arm64/run") ;;
    6.12-smmuv3) cmd=(env QEMU=$Q10 ORACLE_ENV=1 KVER=6.12.95+deb12-arm64 "$ORACLE/arm64/run") ;;
    6.18-smmuv3) cmd=(env QEMU=$Q10 ORACLE_ENV=1 KVER=6.18.15+deb13-arm64 "$ORACLE/arm64/run") ;;
    6.1-smmuv3-s1) cmd=(env QEMU=$Q10 STAGE=1 ORACLE_ENV=1 "$ORACLE/arm64/run") ;;
    6.18-iommufd) cmd=(env QEMU=$Q10 ORACLE_ENV=1 "$ORACLE/iommufd/run") ;;
    *) echo "unknown config $config" >&2; exit 2 ;;
  esac
  "${cmd[@]}" "$probe" > "$out/$config/$name.jsonl.tmp"
  mv "$out/$config/$name.jsonl.tmp" "$out/$config/$name.jsonl"
  echo "$config/$name: $(grep -c '"seq"' "$out/$config/$name.jsonl") lines"
done
