export { SignalRing, ArraySignal, type SignalHistory, type SignalRingState } from './ring.js';
