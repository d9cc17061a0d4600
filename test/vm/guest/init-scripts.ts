// The guest's boot scripts, as text: busybox init's inittab, rcS (mounts, modules, ESP,
// network), rcK (orderly shutdown), udhcpc's lease script, the agent service and its health
// check. PID 1 is busybox init after the initramfs' switch_root; / is read-only (dm-verity),
// /etc, /home and /root are overlays on Data, /var is Data, /logs is Log.
import { MODULE_LIST_PATH } from './kernel-modules.js';

export interface InitScriptOptions {
  /** Partition label of the ESP that holds the grubenv (mounted vfat at `espMountPoint`). */
  espPartlabel: string;
  espMountPoint: string;
}

/** Guest path of the file the factory disk provisions on Data for the first registration. */
export const PROVISIONING_TOKEN_PATH = '/var/lib/abota/provisioning-token';
export const HEALTH_CHECK_PATH = '/usr/lib/abota/health-check';
export const AGENT_LOG_PATH = '/logs/abota-agent.log';

/** Lines the scripts print on the serial console; the VM tests wait for them. */
export const CONSOLE_MARKERS = {
  rcsDone: 'abota-guest: rcS done',
  networkUp: 'abota-guest: network up',
  agentStart: 'abota-guest: agent starting',
  shutdown: 'abota-guest: shutdown',
  /** Followed by "VmHWM: <n> kB" of the agent process. */
  agentPeak: 'abota-guest: agent peak',
} as const;

export const INITTAB = `# busybox init (PID 1 after switch_root). No getty: the console carries the logs.
::sysinit:/etc/init.d/rcS
::respawn:/usr/sbin/dropbear -F -E -R -s -p 22
::respawn:/usr/lib/abota/agent-service
::ctrlaltdel:/bin/busybox reboot
::shutdown:/etc/init.d/rcK
`;

export function rcS(o: InitScriptOptions): string {
  return `#!/bin/sh
# One-time system start: pseudo filesystems, the guest's kernel modules, the ESP (grubenv),
# loopback and DHCP on QEMU's user network. The initramfs mounted /, /var, /logs and overlays.
PATH=/usr/sbin:/usr/bin:/sbin:/bin
export PATH
mounted() { grep -q "^[^ ]* $1 " /proc/mounts; }
[ -e /proc/self ] || mount -t proc proc /proc
mounted /sys || mount -t sysfs sysfs /sys
mounted /dev || mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm
mounted /dev/pts || mount -t devpts -o gid=5,mode=620 devpts /dev/pts
mounted /run || mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs /run
mounted /tmp || mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /tmp
# Modules the initramfs did not load (already loaded ones fail harmlessly).
while read -r module; do insmod "$module" 2>/dev/null; done < /${MODULE_LIST_PATH}
hostname -F /etc/hostname
# The grubenv the agent's GRUB backend edits lives on the ESP, outside both slots (the
# initramfs normally mounted it already).
if mounted ${o.espMountPoint} || mount -t vfat -o rw,noatime,umask=0077 /dev/disk/by-partlabel/${o.espPartlabel} ${o.espMountPoint}; then
  echo "abota-guest: ESP at ${o.espMountPoint}"
else
  echo "abota-guest: ERROR cannot mount the ESP (/dev/disk/by-partlabel/${o.espPartlabel})"
fi
# UEFI variables for the agent's uefi backend (GRUBless disks), read-write; the initramfs
# mounted it already when the firmware is UEFI (and moved it here with /sys).
if [ -d /sys/firmware/efi ] && ! mounted /sys/firmware/efi/efivars; then
  mount -t efivarfs -o rw,nosuid,nodev,noexec efivarfs /sys/firmware/efi/efivars ||
    echo "abota-guest: ERROR cannot mount efivarfs"
fi
mkdir -p /var/lib/abota /logs/abota /etc/dropbear /root/.ssh
chmod 700 /var/lib/abota /root /root/.ssh
ifconfig lo 127.0.0.1 up
ifconfig eth0 up
if udhcpc -i eth0 -s /usr/share/udhcpc/default.script -n -q -t 10 -T 2; then
  echo "${CONSOLE_MARKERS.networkUp}: $(ip -4 addr show eth0 | grep -o 'inet [0-9./]*')"
else
  echo "abota-guest: ERROR no DHCP lease on eth0"
fi
echo "${CONSOLE_MARKERS.rcsDone} at $(cut -d' ' -f1 /proc/uptime) s uptime"
`;
}

export const RCK = `#!/bin/sh
# Orderly shutdown (busybox init runs this before it kills every process): stop the agent so
# it ends at a block boundary, then flush and unmount the writable filesystems.
PATH=/usr/sbin:/usr/bin:/sbin:/bin
echo "${CONSOLE_MARKERS.shutdown} at $(cut -d' ' -f1 /proc/uptime) s uptime"
for pid in $(pidof node); do
  # The agent's peak resident memory of this boot (install included), for the VM tests' report.
  echo "${CONSOLE_MARKERS.agentPeak} $(grep VmHWM /proc/$pid/status | tr -s ' \t' ' ')"
  kill -TERM "$pid"
done
for i in 1 2 3 4 5 6 7 8 9 10; do pidof node >/dev/null || break; sleep 1; done
sync
umount /boot/efi 2>/dev/null
mount -o remount,ro /logs 2>/dev/null
mount -o remount,ro /var 2>/dev/null
`;

export const UDHCPC_SCRIPT = `#!/bin/sh
# udhcpc lease script: configure the address and the default route QEMU's DHCP hands out.
case "$1" in
  deconfig) ifconfig "$interface" 0.0.0.0 ;;
  bound|renew)
    ifconfig "$interface" "$ip" netmask "\${subnet:-255.255.255.0}" up
    while route del default gw 0.0.0.0 dev "$interface" 2>/dev/null; do :; done
    for r in $router; do route add default gw "$r" dev "$interface"; done
    ;;
esac
exit 0
`;

export const AGENT_SERVICE = `#!/bin/sh
# The VM's update service (respawned by init): register once with the token the factory disk
# put on Data, then run the agent daemon. Memory flags as infra/systemd/abota-agent.service.
PATH=/usr/sbin:/usr/bin:/sbin:/bin
export NODE_ENV=production MALLOC_ARENA_MAX=1
export NODE_OPTIONS="--max-semi-space-size=1 --jitless --expose-gc"
umask 077
echo "${CONSOLE_MARKERS.agentStart} at $(cut -d' ' -f1 /proc/uptime) s uptime"
token=${PROVISIONING_TOKEN_PATH}
if [ -s "$token" ]; then
  if abota-agent register --token "$(cat "$token")" --json; then
    rm -f "$token"; sync
  else
    sleep 5; exit 1
  fi
fi
abota-agent run --json 2>&1 | tee -a ${AGENT_LOG_PATH}
sleep 2
`;

export function healthCheck(healthy: boolean): string {
  if (!healthy) {
    return `#!/bin/sh
# This build's health check fails on purpose: a release whose system does not come up.
echo "health check: this build is made to fail its health check"
exit 1
`;
  }
  return `#!/bin/sh
# Healthy = the SSH server runs and eth0 has its DHCP address (waits up to 60 s: the agent may
# start before dropbear). QEMU's restricted user network hands out no default route.
for i in $(seq 1 60); do
  if pidof dropbear >/dev/null && ip -4 addr show eth0 | grep -q 'inet '; then exit 0; fi
  sleep 1
done
pidof dropbear >/dev/null || echo "health check: dropbear is not running"
ip -4 addr show eth0 | grep -q 'inet ' || echo "health check: eth0 has no IPv4 address"
exit 1
`;
}
