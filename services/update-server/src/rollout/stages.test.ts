import { describe, expect, it } from 'vitest';
import { inRolloutPercent } from './bucket.js';
import type { StageSpec } from './model.js';
import { chooseOffer, type OfferCandidate } from './offer.js';
import { measureProgress, type StageProgress, totalProgress } from './progress.js';
import { evaluateStage } from './stages.js';

const t0 = new Date('2026-11-25T12:00:00Z');
const after = (seconds: number) => new Date(t0.getTime() + seconds * 1000);

/** A stage cohort with the given outcome counts (helper for threshold tables). */
function cohort(
  stage: number,
  o: { targeted: number; committed?: number; failed?: number; inFlight?: number },
): StageProgress {
  const committed = o.committed ?? 0;
  const failures = o.failed ?? 0;
  const inFlight = o.inFlight ?? 0;
  return {
    stage,
    percent: 0,
    bucketLimit: 0,
    targeted: o.targeted,
    counts: { committed, failed: failures, installing: inFlight },
    committed,
    failures,
    outcomes: committed + failures,
    inFlight,
    notOffered: o.targeted - committed - failures - inFlight,
    unfetchedFailures: 0,
  };
}

const three: StageSpec[] = [
  { percent: 1, minBakeSeconds: 3600, minCommitted: 5, maxFailurePercent: 10, minSample: 5 },
  { percent: 10, minBakeSeconds: 3600, minCommitted: 20, maxFailurePercent: 10, minSample: 5 },
  { percent: 100 },
];

describe('evaluateStage thresholds', () => {
  it('waits for the bake time even when healthy, then advances with the numbers it used', () => {
    const progress = [
      cohort(0, { targeted: 10, committed: 10 }),
      cohort(1, { targeted: 90 }),
      cohort(2, { targeted: 900 }),
    ];
    const baking = evaluateStage({
      stages: three,
      currentStage: 0,
      stageStartedAt: t0,
      progress,
      now: after(3599),
    });
    expect(baking).toMatchObject({ action: 'wait', notBefore: after(3600) });
    expect(baking.reason).toMatch(/baking stage 1\/3 \(1%\): 3599s of 3600s/);
    const baked = evaluateStage({
      stages: three,
      currentStage: 0,
      stageStartedAt: t0,
      progress,
      now: after(3600),
    });
    expect(baked).toMatchObject({ action: 'advance', toStage: 1 });
    expect(baked.numbers).toMatchObject({
      committed: 10,
      failures: 0,
      failurePercent: 0,
      bakedSeconds: 3600,
      stageCommitted: 10,
    });
  });

  it('needs minCommitted committed devices in the stage, capped by what the stage targets', () => {
    const few = [cohort(0, { targeted: 10, committed: 4, inFlight: 6 })];
    const d = evaluateStage({
      stages: three,
      currentStage: 0,
      stageStartedAt: t0,
      progress: few,
      now: after(9999),
    });
    expect(d.action).toBe('wait');
    expect(d.reason).toMatch(/needs 1 more committed device/);
    // Only 3 devices in this stage: 3 committed is enough even though minCommitted is 5.
    const small = [cohort(0, { targeted: 3, committed: 3 })];
    const stages: StageSpec[] = [{ ...three[0], percent: 1, minSample: 3 } as StageSpec, { percent: 100 }];
    expect(
      evaluateStage({ stages, currentStage: 0, stageStartedAt: t0, progress: small, now: after(3600) })
        .action,
    ).toBe('advance');
    // A stage with no devices at all does not block the rollout forever.
    const empty = [cohort(0, { targeted: 0 })];
    expect(
      evaluateStage({ stages, currentStage: 0, stageStartedAt: t0, progress: empty, now: after(3600) })
        .action,
    ).toBe('advance');
  });

  it('pauses only above the threshold and only once the minimum sample is reached', () => {
    const at = (committed: number, failed: number) =>
      evaluateStage({
        stages: three,
        currentStage: 0,
        stageStartedAt: t0,
        progress: [cohort(0, { targeted: 100, committed, failed })],
        now: after(10),
      });
    expect(at(1, 3).action).toBe('wait'); // 4 outcomes < minSample 5: not judged yet
    expect(at(9, 1).action).toBe('wait'); // exactly 10 % is not above 10 %
    const paused = at(8, 2);
    expect(paused.action).toBe('pause');
    expect(paused.reason).toBe(
      'failure rate 20% (2 of 10 devices failed or rolled back) exceeds 10% at stage 1/3 (1%)',
    );
    expect(paused.numbers).toMatchObject({
      failures: 2,
      outcomes: 10,
      failurePercent: 20,
      maxFailurePercent: 10,
    });
    // Failures are judged before the bake time: a bad canary pauses at once.
    expect(paused.numbers.bakedSeconds).toBe(10);
  });

  it('judges the failure rate over every stage so far, not only the current cohort', () => {
    const progress = [
      cohort(0, { targeted: 10, committed: 6, failed: 4 }),
      cohort(1, { targeted: 90, committed: 10 }),
    ];
    const d = evaluateStage({ stages: three, currentStage: 1, stageStartedAt: t0, progress, now: after(1) });
    expect(d).toMatchObject({ action: 'pause', numbers: { failures: 4, outcomes: 20, failurePercent: 20 } });
  });

  it('completes the last stage only when every targeted device has an outcome', () => {
    const stages: StageSpec[] = [{ percent: 100 }];
    const pending = evaluateStage({
      stages,
      currentStage: 0,
      stageStartedAt: t0,
      progress: [cohort(0, { targeted: 10, committed: 8, inFlight: 1 })],
      now: after(1),
    });
    expect(pending.action).toBe('wait');
    expect(pending.reason).toMatch(/waits for 2 device\(s\) to finish \(1 installing, 1 not yet offered\)/);
    const done = evaluateStage({
      stages,
      currentStage: 0,
      stageStartedAt: t0,
      progress: [cohort(0, { targeted: 10, committed: 10 })],
      now: after(1),
    });
    expect(done.action).toBe('complete');
    // Finished, but a device failed: an operator decides, the rollout does not read "completed".
    const failed = evaluateStage({
      stages,
      currentStage: 0,
      stageStartedAt: t0,
      progress: [cohort(0, { targeted: 10, committed: 9, failed: 1 })],
      now: after(1),
    });
    expect(failed).toMatchObject({
      action: 'pause',
      reason: expect.stringMatching(
        /^every targeted device finished but 1 of 10 failed or rolled back \(10%\)/,
      ),
    });
  });
});

describe('a whole rollout, pure (injected clock, simulated devices)', () => {
  const devices = Array.from({ length: 3000 }, (_, i) => ({
    id: `device-${i}`,
    product: 'p',
    hardware: 'hw',
    tags: [] as string[],
    currentVersion: '1.0.0' as string | null,
  }));

  function run(failing: (id: string) => boolean) {
    const rollout: OfferCandidate = {
      rolloutId: 'rollout-1',
      kind: 'normal',
      state: 'active',
      product: 'p',
      selector: {},
      allowDowngrade: false,
      releaseVersion: '2.0.0',
      releaseCompatible: ['hw'],
      stages: three,
      currentStage: 0,
      startedAt: t0,
      maintenanceWindow: null,
    };
    const members = new Map<string, string>();
    let clock = 0;
    let stageStartedAt = t0;
    const log: string[] = [];
    for (let round = 0; round < 20 && rollout.state === 'active'; round++) {
      for (const d of devices) {
        const offer = chooseOffer(d, [rollout], members, after(clock));
        if (offer === undefined) continue;
        const ok = !failing(d.id);
        members.set(d.id, ok ? 'committed' : 'failed');
        if (ok) d.currentVersion = '2.0.0';
      }
      clock += 1800;
      const decision = evaluateStage({
        stages: rollout.stages,
        currentStage: rollout.currentStage,
        stageStartedAt,
        progress: measureProgress(rollout, devices, members),
        now: after(clock),
      });
      log.push(decision.action);
      if (decision.action === 'advance') {
        rollout.currentStage = decision.toStage;
        stageStartedAt = after(clock);
      } else if (decision.action === 'pause') rollout.state = 'paused';
      else if (decision.action === 'complete') rollout.state = 'completed';
    }
    return { rollout, members, log };
  }

  it('goes 1 % → 10 % → 100 % once each stage baked, and completes with every device updated', () => {
    for (const d of devices) d.currentVersion = '1.0.0';
    const { rollout, members, log } = run(() => false);
    expect(rollout.state).toBe('completed');
    expect(log).toEqual(['wait', 'advance', 'wait', 'advance', 'complete']);
    expect(members.size).toBe(devices.length);
    // The first stage's cohort is exactly the 1 % bucket range.
    const canaries = devices.filter((d) => inRolloutPercent('rollout-1', d.id, 1)).length;
    expect(canaries).toBeGreaterThan(15);
    expect(canaries).toBeLessThan(50);
  });

  it('pauses at the first stage when a quarter of the canaries fail, offering nothing beyond 1 %', () => {
    for (const d of devices) d.currentVersion = '1.0.0';
    const { rollout, members } = run((id) => Number(id.split('-')[1]) % 4 === 0);
    expect(rollout.state).toBe('paused');
    expect(rollout.currentStage).toBe(0);
    const total = totalProgress(measureProgress(rollout, devices, members));
    expect(total.outcomes).toBe(members.size);
    expect([...members.keys()].every((id) => inRolloutPercent('rollout-1', id, 1))).toBe(true);
  });
});
