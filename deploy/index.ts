/** Deploy drivers: processes on this host (`local`), VMs as cgroup-confined groups of workers, and scale-out; libvirt guests: `./libvirt`. */
export { CgroupError, CpuGroup, detectCgroups, type CgroupVersion, type GroupLimits } from './cgroups.js';
export { CLI_ENTRY, declareWorkerDead, LocalProcess, type LocalProcessOptions } from './local.js';
export { listVms, LocalVmDriver, readVm, vmCgroupName, vmControl, VmError, type DeployDriver, type LocalVmDriverOptions, type VmRecord, type VmSpec } from './vms.js';
export { ScaleOutService, type ScaleOutServiceOptions } from './scale-out.js';
