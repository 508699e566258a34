/**
 * The last N samples of one lead, addressed by absolute sample index (sample 0 is the monitor's
 * first sample). The function keeps 10 s of signal in it; feature extractors read beat windows
 * from it, and offline training reads the same windows through `ArraySignal`, so streaming and
 * training compute features from the same code.
 */
export interface SignalHistory {
  /** Absolute index of the oldest sample still held. */
  readonly start: number;
  /** One past the absolute index of the newest sample. */
  readonly end: number;
  /** Copies samples [from, from + out.length) into `out`; indices outside [start, end) read as NaN. */
  copy(from: number, out: Float32Array): Float32Array;
}

export interface SignalRingState {
  capacity: number;
  end: number;
  data: Float32Array;
}

export class SignalRing implements SignalHistory {
  readonly capacity: number;
  #data: Float32Array;
  #end = 0;
  // After restartAt, samples before the restart point are not valid even if the ring still holds them.
  #startFloor = 0;

  constructor(capacity: number) {
    if (!Number.isInteger(capacity) || capacity <= 0) throw new RangeError('capacity must be a positive integer');
    this.capacity = capacity;
    this.#data = new Float32Array(capacity);
  }

  get start(): number {
    return Math.max(0, this.#end - this.capacity, this.#startFloor);
  }

  get end(): number {
    return this.#end;
  }

  /** Appends samples that follow directly on the newest one. */
  append(samples: ArrayLike<number>): void {
    const { capacity } = this;
    let offset = 0;
    let count = samples.length;
    if (count > capacity) {
      offset = count - capacity;
      this.#end += offset;
      count = capacity;
    }
    for (let i = 0; i < count; i++) this.#data[(this.#end + i) % capacity] = samples[offset + i] as number;
    this.#end += count;
  }

  /** Moves the write position to `end` (after a gap), forgetting everything held. */
  restartAt(end: number): void {
    this.#data.fill(0);
    this.#end = end;
    this.#startFloor = end;
  }

  copy(from: number, out: Float32Array): Float32Array {
    const lo = this.start;
    const hi = this.#end;
    for (let i = 0; i < out.length; i++) {
      const at = from + i;
      out[i] = at >= lo && at < hi ? (this.#data[at % this.capacity] as number) : Number.NaN;
    }
    return out;
  }

  /** The held samples, oldest first (valid ones only). */
  toArray(): Float32Array {
    const lo = this.start;
    return this.copy(lo, new Float32Array(this.#end - lo));
  }

  toState(): SignalRingState & { startFloor: number } {
    return { capacity: this.capacity, end: this.#end, data: this.#data.slice(), startFloor: this.#startFloor };
  }

  static fromState(state: SignalRingState & { startFloor: number }): SignalRing {
    const ring = new SignalRing(state.capacity);
    ring.#data.set(state.data);
    ring.#end = state.end;
    ring.#startFloor = state.startFloor;
    return ring;
  }
}

/** A whole recording as a SignalHistory, for offline feature extraction and training. */
export class ArraySignal implements SignalHistory {
  readonly start = 0;
  readonly end: number;
  readonly #data: Float32Array;

  constructor(data: Float32Array) {
    this.#data = data;
    this.end = data.length;
  }

  copy(from: number, out: Float32Array): Float32Array {
    for (let i = 0; i < out.length; i++) {
      const at = from + i;
      out[i] = at >= 0 && at < this.end ? (this.#data[at] as number) : Number.NaN;
    }
    return out;
  }
}
