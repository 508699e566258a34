export {
  buildReport, type LatencyGroup, type LatencyMetric, type LatencyReport, type LatencyStats, type MeanP99, type ReportOptions,
} from './latency-report.js';
export { formatReport, LATENCY_COLUMNS } from './format.js';
export { writeReportFiles } from './files.js';
export { moveLatencies, type MoveLatency, type ReportEvent, type WindowStats } from './moves.js';
