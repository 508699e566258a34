import Table from 'cli-table3';
import type { Command } from 'commander';
import { AAMI_CLASSES } from '../../functions/aami/index.js';
import { evaluateRecords, type EvaluationReport } from '../../functions/eval/evaluate.js';
import { printJson, requireDirectory, resolveRecords, withClassifier } from '../common.js';

interface EvalFlags {
  data: string;
  records?: string;
  model?: string;
  json?: boolean;
}

// No colour codes: the table is read in terminals, logs and docs alike.
const PLAIN = { head: [] as string[], border: [] as string[] };
const pct = (value: number | null): string => (value === null ? '-' : `${(value * 100).toFixed(2)}`);

export function registerEval(program: Command): void {
  program
    .command('eval')
    .description('Stream MIT-BIH-format records through the function in 1-second packets and score beats and classes against the reference annotations.')
    .requiredOption('--data <dir>', 'directory of WFDB records (.hea, .dat, .atr)')
    .option('--records <list>', 'comma-separated record names (DS1 and PACED stand for those sets); default: every record in --data')
    .option('--model <path>', 'ONNX model file, or a shipped model name (default, paper)', undefined)
    .option('--json', 'print one JSON object on stdout')
    .action(async (flags: EvalFlags) => {
      const dataDir = requireDirectory(flags.data, '--data');
      const records = await resolveRecords(dataDir, flags.records);
      const report = await withClassifier(flags.model, (classifier) => evaluateRecords({
        dataDir,
        records,
        classifier,
        onRecord: (r) => {
          if (!flags.json) process.stderr.write(`  ${r.record}: QRS Se ${pct(r.qrs.se)} +P ${pct(r.qrs.ppv)}, abnormal Se ${pct(r.abnormal.se)} +P ${pct(r.abnormal.ppv)}\n`);
        },
      }));
      if (flags.json) printJson(report);
      else process.stdout.write(formatReport(report));
    });
}

export function formatReport(report: EvaluationReport): string {
  const lines: string[] = [];
  lines.push(`model ${report.model.name} (${report.model.kind}) sha256 ${report.model.sha256.slice(0, 16)}…, ${report.records.length} records, ${report.packets} packets`);
  const perRecord = new Table({ style: PLAIN, head: ['record', 'TP', 'FP', 'FN', 'QRS Se %', 'QRS +P %', 'beats', 'abn Se %', 'abn +P %', 'episodes'] });
  for (const r of report.perRecord) {
    perRecord.push([r.record, r.qrs.tp, r.qrs.fp, r.qrs.fn, pct(r.qrs.se), pct(r.qrs.ppv), r.beats, pct(r.abnormal.se), pct(r.abnormal.ppv), r.episodes]);
  }
  const q = report.qrs;
  perRecord.push(['gross', q.tp, q.fp, q.fn, pct(q.se), pct(q.ppv), report.beats.n, pct(report.abnormal.se), pct(report.abnormal.ppv), '']);
  lines.push(perRecord.toString());
  lines.push(`abnormal (any class but N): Se ${pct(report.abnormal.se)} %  +P ${pct(report.abnormal.ppv)} %  accuracy ${pct(report.abnormal.acc)} %`);
  if (report.beats.confusion !== null && report.classes !== null) {
    const confusion = new Table({ style: PLAIN, head: ['reference \\ predicted', ...AAMI_CLASSES, 'Se %', '+P %'] });
    for (const reference of AAMI_CLASSES) {
      const row = report.beats.confusion[reference];
      confusion.push([reference, ...AAMI_CLASSES.map((p) => row[p]), pct(report.classes[reference].se), pct(report.classes[reference].ppv)]);
    }
    lines.push(confusion.toString());
  }
  const ms = (value: number | null) => (value === null ? '-' : `${(value * 1000).toFixed(1)} µs`);
  lines.push(`per packet (detection + classification + episode logic): p50 ${ms(report.perPacketMs.p50)}, p99 ${ms(report.perPacketMs.p99)} (this run, JIT warm-up included; warmed-up figures: docs/BENCHMARKS.md)`);
  return `${lines.join('\n')}\n`;
}
