// The pure parts of the automatic rollback policy: which pauses trigger it, and which releases
// devices can be returned to.
import { describe, expect, it } from 'vitest';
import { crossedFailureThreshold, rollbackTargetProblem } from './auto-rollback.js';
import { evaluateStage } from './stages.js';

const now = new Date('2026-12-07T12:00:00Z');
const progress = (p: { committed: number; failures: number; targeted: number }) => [
  {
    stage: 0,
    percent: 100,
    bucketLimit: 10_000,
    targeted: p.targeted,
    counts: {},
    committed: p.committed,
    failures: p.failures,
    outcomes: p.committed + p.failures,
    inFlight: p.targeted - p.committed - p.failures,
    unfetchedFailures: 0,
    notOffered: 0,
  },
];

describe('crossedFailureThreshold', () => {
  it('is true for the failure-threshold pause only, not for the pause at the end of the last stage', () => {
    const stages = [{ percent: 100, maxFailurePercent: 10, minSample: 4 }];
    const over = evaluateStage({
      stages,
      currentStage: 0,
      stageStartedAt: now,
      progress: progress({ committed: 3, failures: 1, targeted: 10 }),
      now,
    });
    expect(over.action).toBe('pause');
    expect(crossedFailureThreshold(over.numbers)).toBe(true);
    // Below the minimum sample nothing is judged yet.
    const early = evaluateStage({
      stages,
      currentStage: 0,
      stageStartedAt: now,
      progress: progress({ committed: 1, failures: 1, targeted: 10 }),
      now,
    });
    expect(crossedFailureThreshold(early.numbers)).toBe(false);
    // Last stage done with 1 failure of 20 (5 % ≤ 10 %): paused for an operator, not rolled back.
    const end = evaluateStage({
      stages,
      currentStage: 0,
      stageStartedAt: now,
      progress: progress({ committed: 19, failures: 1, targeted: 20 }),
      now,
    });
    expect(end.action).toBe('pause');
    expect(crossedFailureThreshold(end.numbers)).toBe(false);
  });
});

describe('rollbackTargetProblem', () => {
  const from = { id: 'b', version: '2.0.0', securityVersion: 2 };
  const target = {
    id: 'a',
    version: '1.0.0',
    yanked: false,
    expires: new Date(now.getTime() + 86_400_000),
    securityVersion: 2,
  };
  it('accepts an earlier offerable release at or above the security floor, and says why not otherwise', () => {
    expect(rollbackTargetProblem(target, from, now)).toBeUndefined();
    expect(rollbackTargetProblem({ ...target, id: 'b' }, from, now)).toMatch(
      /is the release being rolled out/,
    );
    expect(rollbackTargetProblem({ ...target, yanked: true }, from, now)).toMatch(/is yanked/);
    expect(rollbackTargetProblem({ ...target, expires: now }, from, now)).toMatch(/expired/);
    expect(rollbackTargetProblem({ ...target, securityVersion: 1 }, from, now)).toMatch(
      /securityVersion 1, below 2\.0\.0's 2/,
    );
  });
});
