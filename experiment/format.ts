/**
 * An experiment's result as people read it: the paper's numbers and ours side by side (Markdown,
 * also what `experiment run` prints on a terminal), and as one JSON object (--json; the runs' raw
 * samples left out).
 */
import type { ExperimentResult } from './runner.js';

const fixed = (value: number | null | undefined, digits = 2) => (value === null || value === undefined || !Number.isFinite(value) ? '–' : value.toFixed(digits));
const interval = (ci: [number, number] | null) => (ci === null ? '–' : `[${fixed(ci[0])}, ${fixed(ci[1])}]`);
const pValue = (p: number | null) => (p === null ? '–' : p < 0.001 ? '<0.001' : p.toFixed(3));

/** The object `experiment run --json` prints: every documented key, no raw samples. */
export function resultJson(result: ExperimentResult): Omit<ExperimentResult, 'samples'> {
  const { samples: _samples, ...rest } = result;
  return rest;
}

export function formatMarkdown(result: ExperimentResult, options: { figures?: { density: string; cdf: string }; command?: string } = {}): string {
  const lines: string[] = [];
  const metricName = { compute: 'time in the function', roundTrip: 'round trip', write: 'storage write of abnormal data' }[result.metric] ?? result.metric;
  lines.push(`### Table ${result.paperTable}: ${result.title}`, '');
  if (options.command !== undefined) lines.push(`Command: \`${options.command}\``, '');
  lines.push(`Metric: ${metricName} (ms). ${result.repeatsPlanned} repeats of ${result.durationS} s measured (after ${result.warmupS} s of warm-up) per row; `
    + `deadline ${fixed(result.deadlineMs, 1)} ms; CPU per packet ${fixed(result.costMs)} ms (${result.iterations} loop iterations, calibrated on the host).`, '');
  lines.push(`Scaling: ${result.scalingRule}`, '');
  lines.push(`The paper (${result.paper.source}):`, '');
  const hasFailure = result.paper.rows.some((row) => row.failurePct !== undefined && row.failurePct !== null) || result.metric === 'roundTrip';
  lines.push(`| Approach | Mean | Min | Max | SD${hasFailure ? ' | % failure' : ''} |`, `|---|---:|---:|---:|---:|${hasFailure ? '---:|' : ''}`);
  for (const row of result.paper.rows) {
    lines.push(`| ${row.row} | ${fixed(row.mean)} | ${fixed(row.min)} | ${fixed(row.max)} | ${fixed(row.sd, 3)}${hasFailure ? ` | ${fixed(row.failurePct ?? null)}` : ''} |`);
  }
  const machine = result.machine;
  lines.push('', `Ours (${machine.cpus} CPUs, ${machine.cpuModel}, ${Math.round(machine.memoryMb / 1024)} GiB; Linux ${machine.kernel ?? '?'}, cgroups ${machine.cgroups ?? 'none'}; Node ${machine.node}; ${result.startedAt.slice(0, 10)}):`, '');
  lines.push('| Row | Approach | Hypervisor detected | n | Mean [95 % CI] | Min | Max | SD | p50 | p99 [95 % CI] | % failure | Bimodal (BC) |',
    '|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|');
  for (const row of result.rows) {
    const m = row.metricMs;
    lines.push(`| ${row.label} | ${row.approach}${row.paperRow !== null ? ` (paper: ${row.paperRow})` : ''} | ${row.hypervisor} | ${row.n} | ${fixed(m.mean)} ${interval(m.meanCi95)} | ${fixed(m.min)} | ${fixed(m.max)} | ${fixed(m.sd, 3)} | ${fixed(m.p50)} | ${fixed(m.p99)} ${interval(m.p99Ci95)} | ${fixed(row.failurePct)} | ${row.bimodal ? 'yes' : 'no'} (${fixed(row.bimodalityCoefficient, 3)}) |`);
  }
  lines.push('', 'Each run (mean / p99 ms, % failure):', '');
  for (const row of result.rows) {
    lines.push(`- ${row.label}: ${(row.perRun ?? []).map((run) => `${fixed(run.mean, 1)} / ${fixed(run.p99, 1)}, ${fixed(run.failurePct)} %`).join('; ')}`);
  }
  if (result.skipped.length > 0) {
    lines.push('', 'Skipped on this host:', '');
    for (const skip of result.skipped) lines.push(`- ${skip.row} (${skip.approach}): ${skip.reason}`);
  }
  if (result.comparisons.length > 0) {
    lines.push('', 'Comparisons (metric; permutation test on block means, Holm-adjusted across the pairs; effect: Cliff\'s delta of block means):', '');
    lines.push('| A | B | mean A − B (ms) | p | p (Holm) | effect | p on run means |', '|---|---|---:|---:|---:|---:|---:|');
    for (const comparison of result.comparisons) {
      lines.push(`| ${comparison.a} | ${comparison.b} | ${fixed(comparison.meanDiffMs)} | ${pValue(comparison.p)} | ${pValue(comparison.pAdjusted)} | ${fixed(comparison.effect, 3)} | ${pValue(comparison.pRuns)} |`);
    }
  }
  if (result.notes.length > 0) {
    lines.push('', 'Notes:', '');
    for (const note of result.notes) lines.push(`- ${note}`);
  }
  if (options.figures !== undefined) {
    lines.push('', `![Density of the ${metricName} per row](${options.figures.density})`, '', `![CDF of the ${metricName} per row](${options.figures.cdf})`);
  }
  lines.push('', `Runs: ${result.runs.join(', ') || 'none'}.`, '');
  return `${lines.join('\n')}\n`;
}
