// The initramfs's /init (busybox sh) and the inbound firewall it loads. The script's contract
// with GRUB is the kernel command line (docs/image.md "Kernel command line"); it never mounts a
// RootFS partition except through the dm-verity device, and any failure reboots (so GRUB's try
// counter moves on to the other slot).

/** nftables ruleset loaded before switch_root: established/related, loopback and TCP 22 in. */
export const FIREWALL_NFT = `# abota: inbound closed except SSH; outbound open (the agent only connects out).
table inet abota_filter {
  chain input {
    type filter hook input priority filter; policy drop;
    ct state established,related accept
    iifname "lo" accept
    tcp dport 22 accept
  }
}
`;

/** Directories overlaid read-write with upper dirs on Data (/var/.abota/overlays/<dir>). */
export const OVERLAY_DIRS = ['etc', 'home', 'root'];

export const INIT_SCRIPT = `#!/bin/busybox sh
# abota initramfs: dm-verity root of slot abota.slot, Data at /var, Log at /logs, ESP at
# /boot/efi, overlays for ${OVERLAY_DIRS.map((d) => `/${d}`).join(' ')}, firewall, switch_root.
/bin/busybox --install -s /bin
export PATH=/bin:/sbin
mount -t devtmpfs devtmpfs /dev
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs /run
exec </dev/console >/dev/console 2>&1

log() { echo "abota-init: $*"; }
fail() {
  log "FATAL: $*; rebooting"
  sleep 1
  echo b >/proc/sysrq-trigger
  reboot -f
}

for m in $(cat /lib/modules/load.order); do
  insmod "/lib/modules/$m" 2>/dev/null || grep -q "^$(basename "$m" .ko | tr - _) " /proc/modules || fail "insmod $m failed"
done

SLOT= ROOTHASH= SALT= DATABLOCKS= HASHOFFSET= FSTYPE= HASHALG=sha256 INIT=/sbin/init
for arg in $(cat /proc/cmdline); do
  case "$arg" in
    abota.slot=*) SLOT=\${arg#*=} ;;
    abota.roothash=*) ROOTHASH=\${arg#*=} ;;
    abota.salt=*) SALT=\${arg#*=} ;;
    abota.datablocks=*) DATABLOCKS=\${arg#*=} ;;
    abota.hashoffset=*) HASHOFFSET=\${arg#*=} ;;
    abota.hashalg=*) HASHALG=\${arg#*=} ;;
    abota.fstype=*) FSTYPE=\${arg#*=} ;;
    abota.init=*) INIT=\${arg#*=} ;;
  esac
done
case "$SLOT" in A|B|efi) ;; *) fail "abota.slot=$SLOT: expected A, B or efi" ;; esac
for v in ROOTHASH SALT DATABLOCKS HASHOFFSET FSTYPE; do
  eval "[ -n \\"\\$$v\\" ]" || fail "kernel command line lacks abota.$(echo $v | tr A-Z a-z)"
done

# Partitions by GPT name, as udev's /dev/disk/by-partlabel would show them.
mkdir -p /dev/disk/by-partlabel
tries=0
WANT=$SLOT
[ "$SLOT" = efi ] && WANT=A
while :; do
  for u in /sys/class/block/*/uevent; do
    PARTNAME= DEVNAME=
    . "$u" 2>/dev/null
    [ -n "$PARTNAME" ] && ln -sf "../../$DEVNAME" "/dev/disk/by-partlabel/$PARTNAME"
  done
  [ -e "/dev/disk/by-partlabel/RootFS$WANT" ] && [ -e /dev/disk/by-partlabel/Data ] && break
  tries=$((tries + 1))
  [ $tries -gt 100 ] && fail "no partitions RootFS$SLOT and Data after 10 s"
  sleep 0.1
done
# A unified kernel image (UKI) is the same file in BootEFIA and BootEFIB, so its signed command
# line says abota.slot=efi: the slot is where the firmware (or systemd-boot) loaded it from,
# which systemd-stub exports as LoaderDevicePartUUID (and systemd-boot as LoaderEntrySelected).
if [ -d /sys/firmware/efi ]; then
  mount -t efivarfs efivarfs /sys/firmware/efi/efivars 2>/dev/null || log "efivarfs not mounted"
fi
LOADER=/sys/firmware/efi/efivars/%s-4a67b082-0a4c-41cf-b6c7-440b29bb8c4f
efivar_text() { [ -e "$(printf "$LOADER" "$1")" ] && tail -c +5 "$(printf "$LOADER" "$1")" | tr -d '\\000'; }
# The unique GUID of GPT entry $2 of disk $1 (entries at LBA 2, 128 bytes each), as EFI prints it.
gpt_guid() {
  set -- $(dd if="$1" bs=1 skip=$((1024 + ($2 - 1) * 128 + 16)) count=16 2>/dev/null | od -An -tx1)
  echo "$4$3$2$1-$6$5-$8$7-$9\${10}-\${11}\${12}\${13}\${14}\${15}\${16}" | tr a-f A-F
}
if [ "$SLOT" = efi ]; then
  UUID=$(efivar_text LoaderDevicePartUUID | tr a-f A-F)
  [ -n "$UUID" ] || fail "abota.slot=efi but no LoaderDevicePartUUID (not booted through systemd-stub?)"
  for u in /sys/class/block/*/uevent; do
    PARTNAME= DEVNAME= PARTN=
    . "$u" 2>/dev/null
    [ -n "$PARTN" ] || continue
    disk=$(basename "$(readlink -f "/sys/class/block/$DEVNAME/..")")
    [ "$(gpt_guid "/dev/$disk" "$PARTN")" = "$UUID" ] || continue
    case "$PARTNAME" in
      BootEFIA) SLOT=A ;;
      BootEFIB) SLOT=B ;;
      # systemd-boot's entry ids are the file names in lower case (abota-b+0-1.efi).
      ESP) SLOT=$(efivar_text LoaderEntrySelected | sed -n 's/^abota-\\([aAbB]\\)[+.].*/\\1/p' | tr ab AB) ;;
    esac
  done
  log "booted from partition $UUID: slot $SLOT"
fi
case "$SLOT" in A|B) ;; *) fail "abota.slot=$SLOT: expected A or B" ;; esac
# abota.hashoffset=layout: the disk layout's rule (docs/image.md "Hash area"): the last 1/64 of
# RootFS<slot>, at least 1 MiB, whole MiB.
if [ "$HASHOFFSET" = layout ]; then
  HASHOFFSET=
  for u in /sys/class/block/*/uevent; do
    PARTNAME= DEVNAME=
    . "$u" 2>/dev/null
    [ "$PARTNAME" = "RootFS$SLOT" ] || continue
    P=$(($(cat "/sys/class/block/$DEVNAME/size") * 512))
    R=$(((P / 64 + 1048575) / 1048576 * 1048576))
    [ $R -lt 1048576 ] && R=1048576
    HASHOFFSET=$((P - R))
  done
fi
ROOTDEV=$(readlink -f "/dev/disk/by-partlabel/RootFS$SLOT")
# The command line with the slot and hash offset resolved (the same as /proc/cmdline on a GRUB
# boot): what the agent reads (kernelCmdlinePath) to know the booted slot.
mkdir -p /run/abota
sed -e "s/abota\\.slot=efi/abota.slot=$SLOT/" -e "s/abota\\.hashoffset=layout/abota.hashoffset=$HASHOFFSET/" /proc/cmdline >/run/abota/cmdline

# dm-verity: the superblock is at HASHOFFSET, the tree one 4096-byte block after it.
HASHSTART=$((HASHOFFSET / 4096 + 1))
TABLE="0 $((DATABLOCKS * 8)) verity 1 $ROOTDEV $ROOTDEV 4096 4096 $DATABLOCKS $HASHSTART $HASHALG $ROOTHASH $SALT 1 restart_on_corruption"
dmsetup create --readonly --noudevsync abota-root --table "$TABLE" || fail "dm-verity setup of RootFS$SLOT failed"
[ -b /dev/mapper/abota-root ] || dmsetup mknodes abota-root
# The table as the kernel holds it, for the booted system to check (/run moves to the new root).
mkdir -p /run/abota
dmsetup table abota-root >/run/abota/root.table
mkdir -p /newroot
mount -t "$FSTYPE" -o ro /dev/mapper/abota-root /newroot || fail "mounting the verity root of slot $SLOT failed"
log "slot $SLOT: / is dm-verity $ROOTHASH ($FSTYPE, read-only)"

mount -t ext4 -o rw,nodev,nosuid /dev/disk/by-partlabel/Data /newroot/var || fail "mounting Data at /var failed"
if [ -e /dev/disk/by-partlabel/Log ]; then
  mount -t ext4 -o rw,nodev,nosuid,noexec /dev/disk/by-partlabel/Log /newroot/logs || log "Log not mounted"
fi
ESP=$(for u in /sys/class/block/*/uevent; do PARTNAME= DEVNAME= PARTN=; . "$u"; [ "$PARTNAME" = ESP ] && echo "$DEVNAME"; done)
[ -n "$ESP" ] && mount -t vfat -o rw,nodev,nosuid,noexec,umask=0077 "/dev/$ESP" /newroot/boot/efi || log "ESP not mounted"
for d in ${OVERLAY_DIRS.join(' ')}; do
  o=/newroot/var/.abota/overlays/$d
  mkdir -p "$o/upper" "$o/work"
  mount -t overlay overlay -o "lowerdir=/newroot/$d,upperdir=$o/upper,workdir=$o/work" "/newroot/$d" || fail "overlay /$d failed"
done

nft -f /etc/abota/firewall.nft || fail "loading the firewall failed"

for m in dev proc sys run; do mount --move "/$m" "/newroot/$m" || fail "moving /$m failed"; done
exec switch_root /newroot "$INIT"
`;
