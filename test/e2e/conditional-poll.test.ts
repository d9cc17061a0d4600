// Conditional polls end to end (issue #16): the real agent against the real update server
// (PGlite, real HTTP). After a no-update answer the agent polls with If-None-Match, the server
// answers 304 while nothing changed, and a rollout that starts
// meanwhile reaches the device through the same conditional poll as a full 200 offer.
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createFleet, type Fleet } from '../fixtures/fleet.js';

let fleet: Fleet;

beforeAll(async () => {
  fleet = await createFleet();
  await fleet.buildRelease({ version: '2.0.0', securityVersion: 2 });
  await fleet.push('2.0.0');
}, 180_000);

afterAll(async () => {
  await fleet?.close();
});

it('polls with If-None-Match after no-update, takes the 304 as no-update, and gets a new rollout as a 200 offer', async () => {
  const { vm, deviceId } = await fleet.newVm('conditional');
  const polls: { ifNoneMatch: string | null; status: number; etag: string | null }[] = [];
  const recording: typeof fetch = async (input, init) => {
    const res = await fetch(input, init);
    const url = typeof input === 'string' ? input : input instanceof URL ? input.href : input.url;
    if (url.endsWith('/v1/device/poll')) {
      polls.push({
        ifNoneMatch: new Headers(init?.headers).get('if-none-match'),
        status: res.status,
        etag: res.headers.get('etag'),
      });
    }
    return res;
  };
  const agent = await vm.openAgent({ fetch: recording });
  await agent.afterBoot(); // the running A is confirmed
  expect(await agent.checkOnce()).toMatchObject({ status: 'no-update' });
  expect(await agent.checkOnce()).toMatchObject({ status: 'no-update' });
  const noUpdate = polls[0]?.etag;
  expect(noUpdate).toMatch(/^"nu-/);
  expect(polls.slice(0, 2)).toEqual([
    { ifNoneMatch: null, status: 200, etag: noUpdate },
    { ifNoneMatch: noUpdate, status: 304, etag: noUpdate },
  ]);

  await fleet.server.createRollout(fleet.releaseIds.get('2.0.0')!, { deviceIds: [deviceId] });
  expect(await agent.checkOnce()).toMatchObject({ status: 'installed', version: '2.0.0' });
  expect(polls[2]).toMatchObject({ ifNoneMatch: noUpdate, status: 200 });
  expect(polls[2]?.etag).toMatch(/^"up-/);
});
