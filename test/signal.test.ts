import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { LeadRing } from '../functions/signal/lead-ring.js';

describe('LeadRing', () => {
  it('holds the newest samples of every lead by absolute index, across wrap-around and checkpoints', () => {
    fc.assert(fc.property(fc.array(fc.integer({ min: 1, max: 50 }), { minLength: 1, maxLength: 30 }), fc.integer({ min: 5, max: 64 }), (chunks, capacity) => {
      let ring = new LeadRing(2, capacity);
      let written = 0;
      for (const length of chunks) {
        const lead0 = Int16Array.from({ length }, (_, i) => written + i);
        const lead1 = Int16Array.from({ length }, (_, i) => 5000 - (written + i));
        ring.append([lead0, lead1]);
        written += length;
        ring = LeadRing.fromState(structuredClone(ring.toState()));
      }
      expect(ring.end).toBe(written);
      expect(ring.start).toBe(Math.max(0, written - capacity));
      const held = ring.slice(0, 0, written);
      expect(Array.from(held)).toEqual(Array.from({ length: written - ring.start }, (_, i) => ring.start + i));
      expect(Array.from(ring.slice(1, ring.start, ring.start + 2))).toEqual([5000 - ring.start, 5000 - (ring.start + 1)].slice(0, Math.min(2, written - ring.start)));
    }));
  });

  it('forgets everything before a restart and reads NaN outside what it holds', () => {
    const ring = new LeadRing(1, 10);
    ring.append([Int16Array.from([100, 200, 300])]);
    ring.restartAt(50);
    expect(ring.start).toBe(50);
    ring.append([Int16Array.from([1200, 1400])]);
    const view = ring.mvView(0, 200, 1000);
    expect(Array.from(view.copy(49, new Float32Array(4)))).toEqual([Number.NaN, 1, 2, Number.NaN]);
    expect(Array.from(ring.slice(0, 0, 100))).toEqual([1200, 1400]);
  });
});
