// `abota rollout` without a server: flag parsing, stage building, the status view, and the
// errors a person gets before any request is made. The commands against a real update server
// are tested in test/e2e/rollout-cli.test.ts (repository root).
import { createServer, type AddressInfo } from 'node:net';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { runCli } from '../test-support/run-cli.js';
import { API_KEY_ENV, SERVER_ENV } from '../server-api/client.js';
import { buildStages, formatSeconds, parseDurationSeconds, parseWindow, renderStatus } from './rollout.js';
import type { RolloutStatusDocument } from './rollout-client.js';

const abota = runCli;

const saved = { key: process.env[API_KEY_ENV], server: process.env[SERVER_ENV] };
beforeEach(() => {
  delete process.env[API_KEY_ENV];
  delete process.env[SERVER_ENV];
});
afterEach(() => {
  if (saved.key === undefined) delete process.env[API_KEY_ENV];
  else process.env[API_KEY_ENV] = saved.key;
  if (saved.server === undefined) delete process.env[SERVER_ENV];
  else process.env[SERVER_ENV] = saved.server;
});

/** A loopback port with nothing listening (bound, then released). */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((ok) => server.listen(0, '127.0.0.1', ok));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((ok) => server.close(() => ok()));
  return port;
}

describe('abota rollout flags', () => {
  it('parses durations and builds stages with the shared thresholds, or verbatim from --stages-json', () => {
    expect(parseDurationSeconds('--bake', '90')).toBe(90);
    expect(parseDurationSeconds('--bake', '15m')).toBe(900);
    expect(parseDurationSeconds('--bake', '1d')).toBe(86_400);
    expect(() => parseDurationSeconds('--bake', '1 week')).toThrow(/--bake "1 week" is not a duration/);
    expect(buildStages({ stages: '1,10,100', bake: '2h', maxFailure: '5%', maxConcurrent: '50' })).toEqual([
      { percent: 1, minBakeSeconds: 7200, maxFailurePercent: 5, maxConcurrent: 50 },
      { percent: 10, minBakeSeconds: 7200, maxFailurePercent: 5, maxConcurrent: 50 },
      { percent: 100, minBakeSeconds: 7200, maxFailurePercent: 5, maxConcurrent: 50 },
    ]);
    expect(buildStages({ stages: '', stagesJson: '[{"percent":5}]' })).toEqual([{ percent: 5 }]);
    expect(() => buildStages({ stages: '1,x' })).toThrow(/--stages "x" is not a number/);
    expect(() => buildStages({ stages: '1', minSample: '0' })).toThrow(/--min-sample must be at least 1/);
    expect(() => buildStages({ stages: '', stagesJson: '{' })).toThrow(/--stages-json is not JSON/);
  });

  it("turns --health-bake into each stage's bakeMinutes (whole minutes; 0 = off)", () => {
    expect(buildStages({ stages: '1,100', healthBake: '30m' })).toEqual([
      { percent: 1, bakeMinutes: 30 },
      { percent: 100, bakeMinutes: 30 },
    ]);
    expect(buildStages({ stages: '100', healthBake: '0' })).toEqual([{ percent: 100 }]);
    expect(() => buildStages({ stages: '100', healthBake: '90s' })).toThrow(
      /--health-bake must be whole minutes/,
    );
  });

  it('parses maintenance windows', () => {
    expect(parseWindow('02:00-04:00', 'device-local', '1,2')).toEqual({
      timezone: 'device-local',
      start: '02:00',
      end: '04:00',
      days: [1, 2],
    });
    expect(() => parseWindow('2-4', 'utc', undefined)).toThrow(/--window "2-4" is not HH:MM-HH:MM/);
    expect(() => parseWindow('02:00-04:00', 'local', undefined)).toThrow(
      /--window-tz must be utc or device-local/,
    );
  });

  it('says what is missing before talking to any server: API key, server, release, rollback target', async () => {
    const noServer = await abota('rollout', 'list');
    expect(noServer.code).toBe(2);
    expect(noServer.stderr).toBe(
      'abota: ERR_USAGE: no update server: pass --server <url> or set ABOTA_SERVER\n',
    );
    const noKey = await abota('rollout', 'list', '--server', 'http://127.0.0.1:9');
    expect(noKey.code).toBe(2);
    expect(noKey.stderr).toMatch(/ERR_API_KEY_MISSING: no API key: set ABOTA_API_KEY/);
    process.env[API_KEY_ENV] = 'abk_test';
    const badUrl = await abota('rollout', 'list', '--server', 'ftp://x', '--json');
    expect(JSON.parse(badUrl.stdout)).toMatchObject({ ok: false, error: { code: 'ERR_USAGE' } });
    const noRelease = await abota('rollout', 'create', '--server', 'http://127.0.0.1:9', '--product', 'p');
    expect(noRelease.stderr).toMatch(/give --release <id>, or --product <id> with --version <version>/);
    const noTarget = await abota('rollout', 'rollback', 'r1', '--server', 'http://127.0.0.1:9');
    expect(noTarget.stderr).toMatch(/give exactly one of --to-release <id> or --to-version <version>/);
    const port = await closedPort();
    const down = await abota('rollout', 'list', '--server', `http://127.0.0.1:${port}`);
    expect(down.code).toBe(1);
    // Each retry is told on stderr with its delay, then the failure.
    expect(down.stderr).toMatch(/: ECONNREFUSED; retrying in \d+\.\d s \(try 2 of 5\)\n/);
    expect(down.stderr).toMatch(
      /^abota: ERR_SERVER_UNREACHABLE: GET \/v1\/admin\/rollouts\?limit=1000 to http:\/\/127\.0\.0\.1:\d+: ECONNREFUSED/m,
    );
  });
});

describe('the status view', () => {
  it('shows each stage with its phase, counts and failure rate, then the overall line and the next action', () => {
    const doc: RolloutStatusDocument = {
      rollout: {
        id: '7d0f6c1e-0000-4000-8000-000000000001',
        releaseId: '7d0f6c1e-0000-4000-8000-000000000002',
        releaseVersion: '1.2.0',
        product: 'eflow-vm',
        name: 'eflow-vm 1.2.0',
        kind: 'normal',
        selector: {},
        state: 'paused',
        stateReason: 'failure rate 40% (2 of 5 devices failed or rolled back) exceeds 10% at stage 1/3 (1%)',
        allowDowngrade: false,
        stages: [{ percent: 1 }, { percent: 10 }, { percent: 100 }],
        currentStage: 0,
        maintenanceWindow: null,
        startedAt: '2026-11-25T12:00:00.000Z',
        stageStartedAt: '2026-11-25T12:00:00.000Z',
        createdAt: '2026-11-25T12:00:00.000Z',
        updatedAt: '2026-11-25T12:05:00.000Z',
        createdBy: 'apikey:7d0f6c1e-0000-4000-8000-000000000003',
        lateJoiners: false,
        autoRollback: { toReleaseId: '7d0f6c1e-0000-4000-8000-000000000004', toVersion: '1.1.0' },
        approval: { required: true, approvedBy: null, approvedAt: null },
      },
      status: {
        state: 'paused',
        stateReason: 'failure rate 40% (2 of 5 devices failed or rolled back) exceeds 10% at stage 1/3 (1%)',
        currentStage: 0,
        stageCount: 3,
        timeInStageSeconds: 3725,
        overall: {
          targeted: 500,
          counts: {},
          committed: 3,
          failures: 2,
          inFlight: 1,
          notOffered: 494,
          failurePercent: 40,
        },
        stages: [
          {
            stage: 0,
            percent: 1,
            minBakeSeconds: 3600,
            minCommitted: 0,
            minSample: 1,
            maxConcurrent: null,
            phase: 'current',
            targeted: 6,
            counts: { committed: 3, failed: 1, 'rolled-back': 1, downloading: 1 },
            committed: 3,
            failures: 2,
            inFlight: 1,
            notOffered: 0,
            failurePercent: 40,
            maxFailurePercent: 10,
          },
          {
            stage: 1,
            percent: 10,
            minBakeSeconds: 3600,
            minCommitted: 0,
            minSample: 1,
            maxConcurrent: null,
            phase: 'pending',
            targeted: 44,
            counts: {},
            committed: 0,
            failures: 0,
            inFlight: 0,
            notOffered: 44,
            failurePercent: 0,
            maxFailurePercent: 10,
          },
        ],
        next: { action: 'none', reason: 'paused (…): resume it, abort it or roll it back', notBefore: null },
      },
      at: '2026-11-25T13:02:05.000Z',
    };
    const text = renderStatus(doc);
    expect(text).toContain('state    paused at stage 1/3 (1%): failure rate 40%');
    expect(text).toContain('(1h02m in stage)');
    expect(text).toContain(
      'policy   auto-rollback to 1.1.0; late joiners frozen at start; approval AWAITING (another operator or admin key: abota rollout approve)',
    );
    expect(text).toMatch(/> 1\s+1%\s+1h00m\s+6\s+0\s+1\s+3\s+2\s+40%\s+10%/);
    expect(text).toMatch(/ {2}2\s+10%\s+1h00m\s+44\s+0\s+0\s+0\s+0\s+0%\s+10%/);
    expect(text).toContain(
      'overall  500 targeted, 3 committed, 2 failed or rolled back (40%), 1 in progress, 494 not offered yet',
    );
    expect(text).toContain('next     paused (…): resume it, abort it or roll it back');
    expect(formatSeconds(59)).toBe('59s');
    expect(formatSeconds(90_000)).toBe('1d01h');
  });
});
