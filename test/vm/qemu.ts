// The QEMU harness of the real-VM tests and the demo: one x86_64 q35 VM with OVMF (its own
// copy of OVMF_VARS), TCG (KVM only when asked: ABOTA_VM_ACCEL=kvm), the disk on virtio, the
// serial console on a unix socket (read and written by the test) and logged to a file, and
// user-mode networking with restrict=on: no route out, only the forwards named here, all on
// 127.0.0.1. Every wait has a timeout; `stop()` kills QEMU (tests call it in afterEach/afterAll).
import { type ChildProcess, spawn } from 'node:child_process';
import { copyFile } from 'node:fs/promises';
import { createServer, connect, type Socket } from 'node:net';
import { join } from 'node:path';

export const OVMF_CODE = '/usr/share/OVMF/OVMF_CODE_4M.fd';
export const OVMF_VARS = '/usr/share/OVMF/OVMF_VARS_4M.fd';
/** OVMF built with Secure Boot (and SMM, so the varstore is only writable by the firmware). */
export const OVMF_CODE_SECURE_BOOT = '/usr/share/OVMF/OVMF_CODE_4M.secboot.fd';
/** The address the guest uses for the host's update server (a guestfwd; docs/image.md). */
export const GUEST_SERVER_ADDRESS = { host: '10.0.2.100', port: 8080 };

export interface VmOptions {
  /** Raw or qcow2 disk image (written to: it is the VM's disk). */
  disk: string;
  /** Directory for the VARS copy, the serial socket and log. */
  dir: string;
  memoryMiB?: number;
  /** Host port (127.0.0.1) forwarded to guest port 22, and any other guest ports by name. */
  hostForwards?: { hostPort: number; guestPort: number }[];
  /** Host port on 127.0.0.1 the guest reaches at GUEST_SERVER_ADDRESS (one nc per connection). */
  serverPort?: number;
  /** Reboots stay in this QEMU (GRUB counts tries) unless false: a reboot then ends QEMU. */
  allowReboot?: boolean;
  /**
   * The VM's own OVMF varstore (e.g. from `abota image disk --ovmf-vars`), used in place and
   * kept across boots like a machine's NVRAM; default: a fresh copy of OVMF_VARS in `dir`.
   */
  vars?: string;
  /** Secure Boot firmware (OVMF_CODE_4M.secboot.fd) on q35 with SMM: enforced when `vars` enrols keys. */
  secureBoot?: boolean;
}

/** A free TCP port on 127.0.0.1 (closed again before returning: QEMU binds it). */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => resolve(typeof address === 'object' && address !== null ? address.port : 0));
    });
  });
}

/** A kernel log line on the serial console: "[    2.971213] ...". */
const KERNEL_LOG_LINE = /^\[\s*\d+\.\d+\] .*(?:\n|$)/gm;

export class Vm {
  readonly serialLog: string;
  readonly startedAt = performance.now();
  #child: ChildProcess;
  #console: Socket | undefined;
  #output = '';
  #waiters = new Set<() => void>();
  #exited: Promise<number | null>;
  #commands = 0;

  private constructor(child: ChildProcess, serialLog: string) {
    this.#child = child;
    this.serialLog = serialLog;
    this.#exited = new Promise((resolve) => child.once('exit', (code) => resolve(code)));
    child.stderr?.on('data', (d: Buffer) => this.#append(`[qemu] ${d.toString('utf8')}`));
  }

  static async start(o: VmOptions): Promise<Vm> {
    const vars = o.vars ?? join(o.dir, 'OVMF_VARS.fd');
    if (o.vars === undefined) await copyFile(OVMF_VARS, vars);
    const socket = join(o.dir, 'serial.sock');
    const serialLog = join(o.dir, 'serial.log');
    const forwards = (o.hostForwards ?? []).map(
      (f) => `,hostfwd=tcp:127.0.0.1:${f.hostPort}-:${f.guestPort}`,
    );
    const guestfwd =
      o.serverPort === undefined
        ? ''
        : `,guestfwd=tcp:${GUEST_SERVER_ADDRESS.host}:${GUEST_SERVER_ADDRESS.port}-cmd:busybox nc 127.0.0.1 ${o.serverPort}`;
    const accel = process.env['ABOTA_VM_ACCEL'] === 'kvm' ? 'kvm' : 'tcg';
    const args = [
      '-machine',
      o.secureBoot === true ? 'q35,smm=on' : 'q35',
      ...(o.secureBoot === true ? ['-global', 'driver=cfi.pflash01,property=secure,value=on'] : []),
      '-accel',
      accel,
      '-m',
      String(o.memoryMiB ?? 512),
      '-smp',
      '1',
      '-display',
      'none',
      '-monitor',
      'none',
      '-nodefaults',
      '-drive',
      `if=pflash,format=raw,readonly=on,file=${o.secureBoot === true ? OVMF_CODE_SECURE_BOOT : OVMF_CODE}`,
      '-drive',
      `if=pflash,format=raw,file=${vars}`,
      '-drive',
      `if=virtio,format=${o.disk.endsWith('.qcow2') ? 'qcow2' : 'raw'},file=${o.disk}`,
      '-netdev',
      `user,id=n0,restrict=on${forwards.join('')}${guestfwd}`,
      '-device',
      'virtio-net-pci,netdev=n0',
      '-chardev',
      `socket,id=s0,path=${socket},server=on,wait=on,logfile=${serialLog}`,
      '-serial',
      'chardev:s0',
      ...(o.allowReboot === false ? ['-no-reboot'] : []),
    ];
    const child = spawn('qemu-system-x86_64', args, { stdio: ['ignore', 'ignore', 'pipe'] });
    // Never outlive the test process, even when it dies without running afterEach.
    const kill = (): void => {
      child.kill('SIGKILL');
    };
    process.once('exit', kill);
    child.once('exit', () => process.off('exit', kill));
    const vm = new Vm(child, serialLog);
    // wait=on: QEMU starts the guest once the console is connected, so no output is lost.
    vm.#console = await vm.#connect(socket);
    return vm;
  }

  async #connect(path: string): Promise<Socket> {
    for (let i = 0; i < 200; i++) {
      const s = await new Promise<Socket | undefined>((resolve) => {
        const c = connect(path);
        c.once('connect', () => resolve(c));
        c.once('error', () => resolve(undefined));
      });
      if (s !== undefined) {
        s.on('data', (d: Buffer) => this.#append(d.toString('latin1')));
        s.on('error', () => undefined);
        return s;
      }
      if (this.#child.exitCode !== null) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`QEMU did not open its serial console ${path}: ${this.#output.slice(-2000)}`);
  }

  #append(text: string): void {
    this.#output += text;
    for (const w of this.#waiters) w();
  }

  /** Everything the console printed so far (with QEMU's stderr). */
  get output(): string {
    return this.#output;
  }

  /** Position in the output to wait after (e.g. before a reboot). */
  mark(): number {
    return this.#output.length;
  }

  /** Wait until `pattern` appears after position `from`; the match, or an error with the log tail. */
  async waitFor(pattern: RegExp, timeoutMs: number, from = 0): Promise<RegExpExecArray> {
    const find = (): RegExpExecArray | null => pattern.exec(this.#output.slice(from));
    return new Promise((resolve, reject) => {
      const check = (): void => {
        const m = find();
        if (m !== null) {
          done();
          resolve(m);
        } else if (this.#child.exitCode !== null || this.#child.signalCode !== null) {
          done();
          reject(
            new Error(`QEMU exited before ${pattern} appeared; console tail:\n${this.#output.slice(-3000)}`),
          );
        }
      };
      const timer = setTimeout(() => {
        done();
        reject(
          new Error(
            `timeout (${timeoutMs} ms) waiting for ${pattern}; console tail:\n${this.#output.slice(-3000)}`,
          ),
        );
      }, timeoutMs);
      const done = (): void => {
        clearTimeout(timer);
        this.#waiters.delete(check);
        this.#child.off('exit', check);
      };
      this.#waiters.add(check);
      this.#child.on('exit', check);
      check();
    });
  }

  /** Type `text` on the console. */
  write(text: string): void {
    this.#console?.write(text);
  }

  /**
   * Run a shell command on the guest's console shell and return what it printed and its exit
   * status. Markers are written quoted so the echoed command line never matches them.
   */
  async run(command: string, timeoutMs = 30_000): Promise<{ output: string; status: number }> {
    const n = ++this.#commands;
    const from = this.mark();
    this.write(`echo "@@AB""OTA-${n}-BEGIN@@"; ${command}; echo "@@AB""OTA-${n}-END $?@@"\n`);
    const m = await this.waitFor(
      new RegExp(`@@ABOTA-${n}-BEGIN@@\\r?\\n([\\s\\S]*?)@@ABOTA-${n}-END (\\d+)@@`),
      timeoutMs,
      from,
    );
    // The console also carries the kernel's own messages (e.g. "IPv6: ADDRCONF ... link becomes
    // ready" a few seconds into boot), which can land between the markers: drop those lines.
    const output = (m[1] ?? '').replace(/\r/g, '').replace(KERNEL_LOG_LINE, '');
    return { output, status: Number(m[2]) };
  }

  /** Kill QEMU (SIGKILL if it does not stop within 2 s) and wait for it. */
  async stop(): Promise<void> {
    this.#console?.destroy();
    if (this.#child.exitCode === null && this.#child.signalCode === null) {
      this.#child.kill('SIGTERM');
      const t = setTimeout(() => this.#child.kill('SIGKILL'), 2000);
      await this.#exited;
      clearTimeout(t);
    }
  }

  /** Wait for QEMU to exit by itself (e.g. after a poweroff with allowReboot false). */
  async waitExit(timeoutMs: number): Promise<number | null> {
    return Promise.race([
      this.#exited,
      new Promise<never>((_, reject) => setTimeout(() => reject(new Error('QEMU did not exit')), timeoutMs)),
    ]);
  }
}
