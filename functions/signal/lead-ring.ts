/**
 * The last N samples of every lead of one monitor, as int16 ADC units at the monitor's storage
 * scale (gain, baseline), addressed by absolute sample index. Int16 keeps the checkpoint small and
 * lets an episode be written to WFDB exactly as it arrived; the detector and feature extractors
 * read the primary lead in mV through `mvView`.
 */
import type { SignalHistory } from './ring.js';

export interface LeadRingState {
  capacity: number;
  end: number;
  startFloor: number;
  leads: Int16Array[];
}

export class LeadRing {
  readonly capacity: number;
  readonly #leads: Int16Array[];
  #end = 0;
  // After a restart, samples before it are invalid even though the ring still holds bytes there.
  #startFloor = 0;

  constructor(leadCount: number, capacity: number) {
    if (!Number.isInteger(capacity) || capacity <= 0) throw new RangeError('capacity must be a positive integer');
    this.capacity = capacity;
    this.#leads = Array.from({ length: leadCount }, () => new Int16Array(capacity));
  }

  get leadCount(): number {
    return this.#leads.length;
  }

  get start(): number {
    return Math.max(0, this.#end - this.capacity, this.#startFloor);
  }

  get end(): number {
    return this.#end;
  }

  /** Appends one frame block (same length for every lead) that directly follows the newest samples. */
  append(leads: readonly Int16Array[]): void {
    const length = leads[0]?.length ?? 0;
    const { capacity } = this;
    this.#leads.forEach((ring, lead) => {
      const source = leads[lead] as Int16Array;
      const skip = Math.max(0, length - capacity);
      for (let i = skip; i < length; i++) ring[(this.#end + i) % capacity] = source[i] as number;
    });
    this.#end += length;
  }

  /** Continues at absolute sample `end` (after a gap), forgetting what came before. */
  restartAt(end: number): void {
    this.#end = end;
    this.#startFloor = end;
  }

  /** Copies lead `lead`, samples [from, to), clipped to what is held. */
  slice(lead: number, from: number, to: number): Int16Array {
    const lo = Math.max(from, this.start);
    const hi = Math.min(to, this.#end);
    const out = new Int16Array(Math.max(0, hi - lo));
    const ring = this.#leads[lead] as Int16Array;
    for (let i = 0; i < out.length; i++) out[i] = ring[(lo + i) % this.capacity] as number;
    return out;
  }

  /** A read-only view of one lead in physical units: (adc - baseline) / gain. It follows the ring as it moves. */
  mvView(lead: number, gain: number, baseline: number): SignalHistory {
    const ring = this.#leads[lead] as Int16Array;
    const bounds = () => ({ start: this.start, end: this.#end });
    const { capacity } = this;
    return {
      get start() { return bounds().start; },
      get end() { return bounds().end; },
      copy(from: number, out: Float32Array): Float32Array {
        const { start, end } = bounds();
        for (let i = 0; i < out.length; i++) {
          const at = from + i;
          out[i] = at >= start && at < end ? ((ring[at % capacity] as number) - baseline) / gain : Number.NaN;
        }
        return out;
      },
    };
  }

  toState(): LeadRingState {
    // Store only the valid part, oldest first, so a checkpoint costs what the ring holds and no more.
    const start = this.start;
    return {
      capacity: this.capacity,
      end: this.#end,
      startFloor: start,
      leads: this.#leads.map((_, lead) => this.slice(lead, start, this.#end)),
    };
  }

  static fromState(state: LeadRingState): LeadRing {
    const ring = new LeadRing(state.leads.length, state.capacity);
    const held = state.leads[0]?.length ?? 0;
    ring.#end = state.end - held;
    ring.#startFloor = state.startFloor;
    ring.append(state.leads);
    return ring;
  }
}
