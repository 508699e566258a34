/** The scheduler: placement policy (YAML) and the deterministic planner. Inventory in Redis and moves come next (issue 4). */
export { SchedulerError } from './errors.js';
export { encodePlacementFields, readInventory, type WorkerPlacementFields } from './inventory.js';
export { LivePlacer, storedDecision, type StoredDecision } from './live.js';
export { readSchedulerEvents, SchedulerLoop, type SchedulerEvent } from './control.js';
export { hostReserve, loadPolicy, PolicySchema, resolvePolicy, type Policy } from './policy.js';
export {
  explain, plan, whatIfInventory,
  type Candidate, type Decision, type HostInfo, type InstanceInfo, type Inventory, type MonitorRequest, type Plan, type VmInfo, type VmState, type WorkerInfo,
} from './placement.js';
