import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import fc from 'fast-check';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EmbeddedRedis, RedisClock, freePort, mergeEstimate, offsetFromSamples } from '../queue/index.js';

describe('offsetFromSamples (pure)', () => {
  it('uses the sample with the smallest round trip', () => {
    const estimate = offsetFromSamples([
      { t0: 1000, t1: 1010, serverMs: 1105 }, // rtt 10
      { t0: 2000, t1: 2002, serverMs: 2101.5 }, // rtt 2: the one
      { t0: 3000, t1: 3006, serverMs: 3090 }, // rtt 6
    ]);
    // offset = server - (t0 + t1) / 2 = 100.5, uncertainty = rtt / 2 = 1, each plus half a
    // microsecond for TIME's truncation to whole microseconds.
    expect(estimate.offsetMs).toBeCloseTo(100.5005, 9);
    expect(estimate.uncertaintyMs).toBeCloseTo(1.0005, 9);
    expect(estimate.roundTripMs).toBe(2);
    expect(estimate.samples).toBe(3);
    expect(estimate.at).toBe(2001);
  });

  it('handles a negative offset (local clock ahead of the server)', () => {
    const estimate = offsetFromSamples([{ t0: 50_000, t1: 50_004, serverMs: 49_000 }]);
    expect(estimate.offsetMs).toBeCloseTo(-1002 + 0.0005, 9);
    expect(estimate.uncertaintyMs).toBeCloseTo(2.0005, 9);
  });

  it('rejects no samples and samples that end before they start', () => {
    expect(() => offsetFromSamples([])).toThrow(expect.objectContaining({ code: 'CLOCK_SAMPLE' }));
    expect(() => offsetFromSamples([{ t0: 10, t1: 9, serverMs: 10 }])).toThrow(expect.objectContaining({ code: 'CLOCK_SAMPLE' }));
    expect(() => offsetFromSamples([{ t0: 10, t1: Number.NaN, serverMs: 10 }])).toThrow(expect.objectContaining({ code: 'CLOCK_SAMPLE' }));
  });

  it('always brackets the true offset when the server read falls inside the round trip', () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.record({ t0: fc.double({ min: 0, max: 1e6, noNaN: true }), rtt: fc.double({ min: 0, max: 100, noNaN: true }), at: fc.double({ min: 0, max: 1, noNaN: true }) }),
          { minLength: 1, maxLength: 10 },
        ),
        fc.double({ min: -1e5, max: 1e5, noNaN: true }),
        (raw, trueOffset) => {
          // The server reads its clock at a fraction `at` through the round trip, truncated to µs.
          const samples = raw.map(({ t0, rtt, at }) => ({ t0, t1: t0 + rtt, serverMs: Math.floor((t0 + at * rtt + trueOffset) * 1000) / 1000 }));
          const estimate = offsetFromSamples(samples);
          expect(Math.abs(estimate.offsetMs - trueOffset)).toBeLessThanOrEqual(estimate.uncertaintyMs + 1e-6);
        },
      ),
    );
  });
});

describe('mergeEstimate (pure)', () => {
  it('adopts the first estimate as is', () => {
    expect(mergeEstimate(null, { offsetMs: 5, uncertaintyMs: 1, at: 0 }, 500)).toEqual({ offsetMs: 5, uncertaintyMs: 1, at: 0, stepped: false });
  });

  it('narrows to the overlap of consistent estimates', () => {
    // [9, 11] ∩ [9.5, 11.5] = [9.5, 11]
    expect(mergeEstimate({ offsetMs: 10, uncertaintyMs: 1, at: 0 }, { offsetMs: 10.5, uncertaintyMs: 1, at: 1000 }, 0)).toEqual({
      offsetMs: 10.25,
      uncertaintyMs: 0.75,
      at: 1000,
      stepped: false,
    });
    // 10 s at 500 ppm widens the old interval by 5 ms, so the new one decides.
    expect(mergeEstimate({ offsetMs: 10, uncertaintyMs: 1, at: 0 }, { offsetMs: 10.5, uncertaintyMs: 1, at: 10_000 }, 500)).toMatchObject({
      offsetMs: 10.5,
      uncertaintyMs: 1,
    });
  });

  it('steps when the old estimate is disproven', () => {
    // The old interval widened by 1000 ms × 500 ppm = [-1.5, 1.5] cannot contain [99, 101].
    expect(mergeEstimate({ offsetMs: 0, uncertaintyMs: 1, at: 0 }, { offsetMs: 100, uncertaintyMs: 1, at: 1000 }, 500)).toEqual({
      offsetMs: 100,
      uncertaintyMs: 1,
      at: 1000,
      stepped: true,
    });
  });

  it('never leaves the new interval, and moves at most the widened old uncertainty unless it steps', () => {
    const state = fc.record({ offsetMs: fc.double({ min: -1e4, max: 1e4, noNaN: true }), uncertaintyMs: fc.double({ min: 0.001, max: 100, noNaN: true }) });
    fc.assert(
      fc.property(state, state, fc.double({ min: 0, max: 1e6, noNaN: true }), fc.double({ min: 0, max: 1000, noNaN: true }), (old, next, dt, ppm) => {
        const merged = mergeEstimate({ ...old, at: 0 }, { ...next, at: dt }, ppm);
        const eps = 1e-9 * (1 + Math.abs(old.offsetMs) + Math.abs(next.offsetMs));
        expect(Math.abs(merged.offsetMs - next.offsetMs)).toBeLessThanOrEqual(next.uncertaintyMs + eps);
        expect(merged.uncertaintyMs).toBeLessThanOrEqual(next.uncertaintyMs + eps);
        if (!merged.stepped) expect(Math.abs(merged.offsetMs - old.offsetMs)).toBeLessThanOrEqual(old.uncertaintyMs + dt * ppm * 1e-6 + eps);
      }),
    );
  });
});

describe('RedisClock against a real redis-server', () => {
  let directory: string;
  let server: EmbeddedRedis;
  let client: Redis;

  beforeAll(async () => {
    directory = await mkdtemp(path.join(tmpdir(), 'ecgfaas-clock-'));
    server = new EmbeddedRedis({ directory });
    const url = await server.start();
    client = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0 });
    await client.connect();
  });
  afterAll(async () => {
    client?.disconnect();
    await server?.close();
    await rm(directory, { recursive: true, force: true });
  });

  const timeCalls = async (): Promise<number> => Number(/cmdstat_time:calls=(\d+)/.exec(await client.info('commandstats'))?.[1] ?? 0);

  it('estimates a small offset and tracks the server clock', async () => {
    const clock = new RedisClock(client, { samples: 8, refreshMs: 100 });
    expect(() => clock.now()).toThrow(expect.objectContaining({ code: 'CLOCK_NOT_STARTED' }));
    const callsBefore = await timeCalls();
    await Promise.all([clock.start(), clock.start()]);
    expect((await timeCalls()) - callsBefore).toBe(8);

    // Same machine, same clock: only the round-trip error remains.
    expect(Math.abs(clock.offsetMs)).toBeLessThan(50);
    expect(clock.uncertaintyMs).toBeGreaterThan(0);
    expect(clock.uncertaintyMs).toBeLessThan(50);

    for (let i = 0; i < 5; i++) {
      const before = clock.now();
      const [seconds, micros] = (await client.time()).map(Number);
      const after = clock.now();
      const serverMs = seconds! * 1000 + micros! / 1000;
      const slack = clock.uncertaintyMs + 3;
      expect(serverMs).toBeGreaterThanOrEqual(before - slack);
      expect(serverMs).toBeLessThanOrEqual(after + slack);
    }

    const measured = await clock.estimate();
    expect(measured.samples).toBe(8);
    expect(measured.roundTripMs).toBeGreaterThan(0);
    // Epoch milliseconds carry ~0.25 µs of double precision, hence the loose digits.
    expect(measured.uncertaintyMs).toBeCloseTo(measured.roundTripMs / 2 + 0.0005, 3);

    // The unref'd timer refreshes in the background...
    const callsAtRefresh = await timeCalls();
    await sleep(450);
    expect((await timeCalls()) - callsAtRefresh).toBeGreaterThanOrEqual(16);
    expect(clock.lastError).toBeNull();
    expect(clock.steps).toBe(0); // one clock on both ends: estimates never contradict

    // ...until close, which leaves the caller's connection open.
    await Promise.all([clock.close(), clock.close()]);
    await clock.close();
    const callsAtClose = await timeCalls();
    await sleep(300);
    expect(await timeCalls()).toBe(callsAtClose + 0);
    expect(await client.ping()).toBe('PONG');
    expect(typeof clock.now()).toBe('number'); // the last estimate still serves
    await expect(clock.start()).rejects.toMatchObject({ code: 'CLOCK_CLOSED' });
  });

  it('fails to start with CLOCK_SYNC when Redis is unreachable, and may be retried', async () => {
    const port = await freePort();
    const dead = new Redis(port, '127.0.0.1', { lazyConnect: true, maxRetriesPerRequest: 0, enableOfflineQueue: false, retryStrategy: () => null });
    const clock = new RedisClock(dead, { samples: 2, timeoutMs: 500 });
    await expect(clock.start()).rejects.toMatchObject({ code: 'CLOCK_SYNC' });
    await expect(clock.start()).rejects.toMatchObject({ code: 'CLOCK_SYNC' });
    await clock.close();
    dead.disconnect();
  });

  it('keeps the last estimate and reports the error when Redis goes away', async () => {
    const own = new EmbeddedRedis({ directory: path.join(directory, 'second') });
    const url = await own.start();
    const redis = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0, enableOfflineQueue: false, retryStrategy: () => null });
    redis.on('error', () => {}); // the kill below makes the socket error; that is the point
    await redis.connect();
    const clock = new RedisClock(redis, { samples: 2, refreshMs: 50, timeoutMs: 500 });
    await clock.start();
    const offset = clock.offsetMs;
    await own.kill();
    await sleep(300);
    expect(clock.lastError).toMatchObject({ code: 'CLOCK_SYNC' });
    expect(clock.offsetMs).toBe(offset);
    expect(Number.isFinite(clock.now())).toBe(true);
    await clock.close();
    redis.disconnect();
  });
});
