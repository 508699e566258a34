/** The report as text tables laid out like the paper's (Approach, Mean, Min, Max, SD, % failure), plus percentiles. */
import Table from 'cli-table3';
import type { HypervisorKind } from '../contracts/invocation.js';
import type { LatencyGroup, LatencyReport, LatencyStats, MeanP99 } from './latency-report.js';

// No colour codes: the tables are read in terminals, logs and saved report files alike.
const PLAIN = { head: [] as string[], border: [] as string[] };
// No rule between rows: compact like the paper's tables.
const COMPACT = { mid: '', 'left-mid': '', 'mid-mid': '', 'right-mid': '' };

const HYPERVISOR_LABELS: Record<HypervisorKind, string> = {
  none: 'bare metal',
  kvm: 'KVM',
  qemu: 'QEMU (TCG)',
  'xen-pv': 'Xen PV',
  'xen-hvm': 'Xen HVM',
  other: 'other',
};

export const LATENCY_COLUMNS = ['Mean', 'Min', 'Max', 'SD', '% failure', 'p50', 'p95', 'p99', 'n'] as const;

const ms = (value: number | null): string => (value === null ? '-' : value.toFixed(2));
const pct = (value: number | null): string => (value === null ? '-' : value.toFixed(2));
const meanP99 = (value: MeanP99): string => (value.mean === null ? '-' : `${ms(value.mean)} / ${ms(value.p99)}`);

function latencyCells(s: LatencyStats): string[] {
  return [ms(s.mean), ms(s.min), ms(s.max), ms(s.sd), pct(s.failurePct), ms(s.p50), ms(s.p95), ms(s.p99), String(s.n)];
}

function label(group: LatencyGroup): string {
  return group.hypervisor === undefined ? group.key : HYPERVISOR_LABELS[group.hypervisor];
}

export function formatReport(report: LatencyReport): string {
  const lines: string[] = [];
  const r = report.records;
  lines.push(`run ${report.runId ?? '(several runs)'}: ${report.metricDescription}; failure = later than ${report.deadlineMs} ms${report.metric === 'roundTrip' ? ' or no answer' : ''}`);
  lines.push(`records: ${r.processed} processed, ${r.duplicate} duplicate, ${r.late} late${r.other > 0 ? `, ${r.other} other` : ''} (only processed ones are timed)`);
  if (report.roundTrips !== null) {
    const t = report.roundTrips;
    lines.push(`round trips: ${t.given} from the client, ${t.matched} matched to records, ${t.unattributed} without a record (overall only), ${t.processedWithoutRoundTrip} records without a round trip (left out)`);
  }
  lines.push('');

  lines.push(`Response times (ms), ${report.metric === 'roundTrip' ? 'round trip' : 'service time'}, by hypervisor and function instances per worker`);
  const main = new Table({ style: PLAIN, chars: COMPACT, head: ['Approach', 'Collocated', ...LATENCY_COLUMNS] });
  for (const group of report.byHypervisorCollocated) main.push([label(group), String(group.collocated ?? '-'), ...latencyCells(group)]);
  for (const group of report.byHypervisor) main.push([`${label(group)} (all)`, '*', ...latencyCells(group)]);
  main.push(['overall', '*', ...latencyCells(report.overall)]);
  lines.push(main.toString());
  lines.push('');

  lines.push('Where the time goes (ms, mean / p99), from the workers\' records');
  const parts = new Table({ style: PLAIN, chars: COMPACT, head: ['Approach', 'Collocated', 'queue wait', 'compute', 'storage write', 'service time'] });
  for (const group of report.byHypervisorCollocated) {
    parts.push([label(group), String(group.collocated ?? '-'), meanP99(group.queueWaitMs), meanP99(group.computeMs), meanP99(group.storageWriteMs), meanP99(group.serviceTimeMs)]);
  }
  lines.push(parts.toString());
  lines.push('');

  lines.push('By worker');
  const workers = new Table({ style: PLAIN, chars: COMPACT, head: ['Worker', 'VM', 'Hypervisor', ...LATENCY_COLUMNS] });
  for (const group of report.byWorker) workers.push([group.key, group.vm ?? '-', group.hypervisor === undefined ? '-' : HYPERVISOR_LABELS[group.hypervisor], ...latencyCells(group)]);
  lines.push(workers.toString());
  if (report.events.length > 0) {
    const origin = report.window?.firstReceivedAt ?? report.events[0]?.at ?? 0;
    lines.push('');
    lines.push('Scheduler events (s from the first packet)');
    for (const event of report.events) {
      const subject = event.monitor !== undefined ? `${event.monitor}${event.fromVm || event.toVm ? ` ${event.fromVm ?? '?'} → ${event.toVm ?? '?'}` : ''}` : event.vm ?? '';
      lines.push(`  +${((event.at - origin) / 1000).toFixed(1)} ${event.type} ${subject}: ${event.reason}`);
    }
  }
  if (report.moves.length > 0) {
    lines.push('');
    lines.push('Moves: the moved monitor\'s service time (ms) in the 30 s before the move, during its handover, and in the 30 s after it');
    const head = ['Monitor', 'From → to', 'Handover s', 'before p50/p95/max', 'miss', 'during n/max', 'miss', 'after p50/p95/max', 'miss'];
    const moves = new Table({ style: PLAIN, chars: COMPACT, head });
    const trio = (w: { p50: number | null; p95: number | null; max: number | null }) => [w.p50, w.p95, w.max].map((v) => (v === null ? '-' : String(Math.round(v)))).join('/');
    for (const move of report.moves) {
      moves.push([
        move.monitor, `${move.fromVm ?? '?'} → ${move.toVm ?? '?'}`, move.handoverMs === null ? '-' : (move.handoverMs / 1000).toFixed(1),
        trio(move.before), `${move.before.misses}/${move.before.n}`, `${move.during.n}/${move.during.max === null ? '-' : Math.round(move.during.max)}`,
        `${move.during.misses}/${move.during.n}`, trio(move.after), `${move.after.misses}/${move.after.n}`,
      ]);
    }
    lines.push(moves.toString());
  }
  return `${lines.join('\n')}\n`;
}
