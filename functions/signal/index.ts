export { SignalRing, ArraySignal, type SignalHistory, type SignalRingState } from './ring.js';
export { LeadRing, type LeadRingState } from './lead-ring.js';
