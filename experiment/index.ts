/** Experiments: the reference paper's tables as specs, run on this host or on KVM and Xen hosts, with statistics and figures. */
export { ExperimentError } from './errors.js';
export {
  APPROACHES, ExperimentSpecSchema, IDLE_STATES, loadSpec, METRICS, resolveSpec, ROMAN, validateSpec,
  type Approach, type ExperimentSpec, type IdleState, type Metric, type ResolvedExperiment, type ResolvedRow, type RowSpec,
} from './spec.js';
export { runExperiment, samplesOf, type ExperimentResult, type GuestOptions, type RunExperimentOptions, type Skipped } from './runner.js';
export { compareRows, summariseRow, type Comparison, type RowRuns, type RowSummary, type Sample } from './analysis.js';
export { approachSupport, type Support } from './capabilities.js';
export { formatMarkdown, resultJson } from './format.js';
export { renderFigures, type Figures } from './figures.js';
