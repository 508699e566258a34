/** Saves a report next to the run's other artefacts (the demo uses reports/<run>/). */
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { formatReport } from './format.js';
import type { LatencyReport } from './latency-report.js';

export async function writeReportFiles(report: LatencyReport, dir: string): Promise<{ json: string; text: string }> {
  await mkdir(dir, { recursive: true });
  const json = path.join(dir, 'report.json');
  const text = path.join(dir, 'report.txt');
  await writeFile(json, `${JSON.stringify(report, null, 2)}\n`);
  await writeFile(text, formatReport(report));
  return { json, text };
}
