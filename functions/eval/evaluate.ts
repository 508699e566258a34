/**
 * `ecgfaas eval`: streams records through the function in 1-second packets, exactly as the
 * platform would, and scores what comes out against the reference annotations: QRS detection
 * beat by beat (bxb rules, see index.ts) and the class of every matched beat.
 */
import { quantile } from 'simple-statistics';
import { aamiClassOfCode, type AamiClass } from '../aami/index.js';
import { runRecord } from '../ecg-function/run-record.js';
import type { BeatClassifierLike } from '../ecg-function/ecg-function.js';
import type { BeatResult } from '../ecg-function/types.js';
import { isBeatCode, readAnnotations, readRecord, type Annotation } from '../wfdb/index.js';
import {
  abnormalRates, addAbnormalTally, addConfusion, classRates, emptyAbnormalTally, emptyConfusion, tallyAbnormal,
  type AbnormalRates, type ClassRates, type Confusion,
} from './classification.js';
import { excludedIntervals, matchBeats, qrsStats, windowSamplesFor, type MatchResult, type QrsStats } from './index.js';

export interface RecordEvaluation {
  record: string;
  qrs: QrsStats;
  /** Reference beats matched by a detection (and so classified). */
  beats: number;
  abnormal: AbnormalRates;
  confusion: Confusion | null;
  episodes: number;
}

export interface EvaluationReport {
  model: { name: string; sha256: string; kind: string; classes: string[] };
  records: string[];
  qrs: QrsStats;
  beats: { n: number; confusion: Confusion | null };
  abnormal: AbnormalRates;
  classes: Record<AamiClass, ClassRates> | null;
  perPacketMs: { p50: number | null; p99: number | null };
  /** Figures per record, in the order given. */
  perRecord: RecordEvaluation[];
  packets: number;
}

export interface EvaluateOptions {
  dataDir: string;
  records: readonly string[];
  classifier: BeatClassifierLike;
  /** Called when a record is done (progress for the CLI). */
  onRecord?: (evaluation: RecordEvaluation) => void;
}

interface ScoredRecord {
  evaluation: RecordEvaluation;
  match: MatchResult;
  confusion: Confusion;
  tally: ReturnType<typeof emptyAbnormalTally>;
  packetMs: number[];
}

async function scoreRecord(dataDir: string, name: string, classifier: BeatClassifierLike): Promise<ScoredRecord> {
  // Read and check everything before streaming, so a bad record fails fast and clearly.
  const record = await readRecord(dataDir, name);
  const annotations = await readAnnotations(dataDir, name);
  const run = await runRecord(record, classifier, { monitorId: `eval-${name}` });
  const references = annotations.filter((a) => isBeatCode(a.code));
  const match = matchBeats(references.map((a) => a.sample), run.beats.map((b) => b.sample), {
    windowSamples: windowSamplesFor(record.header.samplingFrequency),
    excluded: excludedIntervals(annotations),
  });
  const binary = classifier.info.kind === 'binary';
  const confusion = emptyConfusion();
  const tally = emptyAbnormalTally();
  for (const pair of match.pairs) {
    const reference = aamiClassOfCode((references[pair.ref] as Annotation).code);
    if (reference === undefined) continue;
    const beat = run.beats[pair.test] as BeatResult;
    tallyAbnormal(tally, reference !== 'N', beat.abnormal);
    if (!binary && beat.label !== 'abnormal') confusion[reference][beat.label] += 1;
  }
  const beats = tally.truePositive + tally.falsePositive + tally.falseNegative + tally.trueNegative;
  const episodes = run.events.filter((event) => event.type === 'start').length;
  return {
    evaluation: {
      record: name,
      qrs: qrsStats([match]),
      beats,
      abnormal: abnormalRates(tally),
      confusion: binary ? null : confusion,
      episodes,
    },
    match,
    confusion,
    tally,
    packetMs: run.packetMs,
  };
}

export async function evaluateRecords(options: EvaluateOptions): Promise<EvaluationReport> {
  const { classifier } = options;
  const binary = classifier.info.kind === 'binary';
  const scored: ScoredRecord[] = [];
  for (const name of options.records) {
    const result = await scoreRecord(options.dataDir, name, classifier);
    scored.push(result);
    options.onRecord?.(result.evaluation);
  }
  const confusion = scored.reduce((sum, s) => addConfusion(sum, s.confusion), emptyConfusion());
  const tally = scored.reduce((sum, s) => addAbnormalTally(sum, s.tally), emptyAbnormalTally());
  const packetMs = scored.flatMap((s) => s.packetMs);
  const n = scored.reduce((sum, s) => sum + s.evaluation.beats, 0);
  return {
    model: { name: classifier.info.name, sha256: classifier.info.sha256, kind: classifier.info.kind, classes: [...classifier.info.classes] },
    records: scored.map((s) => s.evaluation.record),
    qrs: qrsStats(scored.map((s) => s.match)),
    beats: { n, confusion: binary ? null : confusion },
    abnormal: abnormalRates(tally),
    classes: binary ? null : classRates(confusion),
    perPacketMs: {
      p50: packetMs.length === 0 ? null : quantile(packetMs, 0.5),
      p99: packetMs.length === 0 ? null : quantile(packetMs, 0.99),
    },
    perRecord: scored.map((s) => s.evaluation),
    packets: packetMs.length,
  };
}


