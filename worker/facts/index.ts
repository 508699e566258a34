export {
  HYPERVISOR_KINDS,
  classifyHypervisor,
  detectHypervisor,
  gatherHypervisorEvidence,
  hypervisorFlag,
  type DmiEvidence,
  type HypervisorEvidence,
  type HypervisorInfo,
  type HypervisorKind,
} from './hypervisor.js';
export {
  HostFactsSchema,
  HypervisorInfoSchema,
  TRACKED_PACKAGES,
  cgroupFacts,
  collectHostFacts,
  packageVersion,
  type CgroupFacts,
  type HostFacts,
} from './host-facts.js';
export { CpuSampler, cpuDeltaFromProcStat, type CpuDelta, type CpuSample, type CpuSamplerOptions } from './cpu-sampler.js';
export { exists, readOrNull, readTrimmed } from './files.js';
