/** The scheduler: placement policy (YAML), the deterministic planner, the inventory in Redis, live placement, moves, and the control loop. */
export { SchedulerError } from './errors.js';
export { DRIVER_LIVE_MS, encodePlacementFields, liveDrivers, pendingVms, readInventory, type PendingVm, type WorkerPlacementFields } from './inventory.js';
export { LivePlacer, pinMonitors, storedDecision, type StoredDecision } from './live.js';
export { SchedulerLoop } from './control.js';
export { appendSchedulerEvents, readSchedulerEvents, type SchedulerEvent, type SchedulerEventType } from './events.js';
export { moveMonitors, type MoveOutcome, type MoveRequest, type RouteChange } from './moves.js';
export { hostReserve, loadPolicy, PolicySchema, resolvePolicy, type Policy } from './policy.js';
export {
  explain, plan, whatIfInventory,
  type Candidate, type Decision, type HostInfo, type InstanceInfo, type Inventory, type MonitorRequest, type Plan, type VmInfo, type VmState, type WorkerInfo,
} from './placement.js';
