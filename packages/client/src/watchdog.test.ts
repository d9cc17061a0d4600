// The watchdog against real time and, where systemd-notify exists, a real NOTIFY_SOCKET: a unix
// datagram socket bound by a small python3 receiver (Node has no unix datagram sockets), which
// also closes the barrier fd systemd-notify sends, as the service manager does.
import { type ChildProcess, spawn } from 'node:child_process';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { describeWithTool, makeTempDir } from '@abota/testkit';
import { afterEach, describe, expect, it } from 'vitest';
import { systemdNotify, Watchdog } from './watchdog.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const cleanup: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f();
});

describe('Watchdog', () => {
  it('is enabled only by NOTIFY_SOCKET + WATCHDOG_USEC, for this process', () => {
    expect(Watchdog.fromEnv({})).toBeUndefined();
    expect(Watchdog.fromEnv({ WATCHDOG_USEC: '600000000' })).toBeUndefined();
    expect(Watchdog.fromEnv({ NOTIFY_SOCKET: '/run/x', WATCHDOG_USEC: 'soon' })).toBeUndefined();
    expect(
      Watchdog.fromEnv({ NOTIFY_SOCKET: '/run/x', WATCHDOG_USEC: '600000000', WATCHDOG_PID: '1' }),
    ).toBeUndefined();
    const w = Watchdog.fromEnv({
      NOTIFY_SOCKET: '/run/x',
      WATCHDOG_USEC: '600000000',
      WATCHDOG_PID: String(process.pid),
    });
    expect(w?.beatEveryMs).toBe(150_000);
  });

  it('pings while the loop beats and goes quiet once the loop has been silent for an interval', async () => {
    let pings = 0;
    const w = new Watchdog({ intervalMs: 200, notify: async () => void pings++ });
    w.start();
    cleanup.push(() => w.stop());
    for (let i = 0; i < 6; i++) {
      w.beat();
      await sleep(50);
    }
    const whileBeating = pings;
    expect(whileBeating).toBeGreaterThanOrEqual(3); // at start, then every 100 ms
    await sleep(250); // the loop is stuck: no beat for longer than the interval
    const quietFrom = pings;
    await sleep(400);
    expect(pings).toBe(quietFrom);
    expect(pings - whileBeating).toBeLessThanOrEqual(2);
  });
});

describeWithTool('systemd-notify', 'systemd', 'systemd-notify WATCHDOG=1 to a real NOTIFY_SOCKET', () => {
  describeWithTool('python3', 'python3', 'with a python3 datagram receiver', () => {
    it('delivers WATCHDOG=1 to the socket in NOTIFY_SOCKET', async () => {
      const dir = await makeTempDir('abota-notify-');
      cleanup.push(() => rm(dir, { recursive: true, force: true }));
      const socket = join(dir, 'notify');
      const receiver: ChildProcess = spawn('python3', ['-c', RECEIVER, socket], {
        stdio: ['ignore', 'pipe', 'inherit'],
      });
      cleanup.push(() => void receiver.kill());
      let out = '';
      receiver.stdout!.on('data', (c: Buffer) => {
        out += c.toString();
      });
      for (let i = 0; i < 100 && !out.includes('ready'); i++) await sleep(20);
      const saved = process.env['NOTIFY_SOCKET'];
      process.env['NOTIFY_SOCKET'] = socket;
      try {
        await systemdNotify();
      } finally {
        if (saved === undefined) delete process.env['NOTIFY_SOCKET'];
        else process.env['NOTIFY_SOCKET'] = saved;
      }
      for (let i = 0; i < 50 && !out.includes('WATCHDOG=1'); i++) await sleep(20);
      expect(out.split('\n')).toContain('WATCHDOG=1');
    });
  });
});

const RECEIVER = `
import array, os, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
print("ready", flush=True)
while True:
    msg, anc, _, _ = s.recvmsg(4096, socket.CMSG_SPACE(64))
    for level, kind, data in anc:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds = array.array("i")
            fds.frombytes(data[: len(data) - len(data) % fds.itemsize])
            for fd in fds:
                os.close(fd)
    print(msg.decode(), flush=True)
`;
