export { WarmWorker, storageEpisodeId, type WarmWorkerOptions, type WorkerStats } from './warm-worker.js';
export { FunctionStates, type WarmFunction } from './function-states.js';
export * from './facts/index.js';
