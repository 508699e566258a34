/**
 * What a model says about false detections: inserts a fake beat at the midpoint of every 20th RR
 * interval of each DS1 record (roughly where a T wave or noise would trigger a detector) and
 * tabulates the predicted classes of the fake beats. Indicative only: the real beats around them
 * are training data of the final model.
 *
 *   npx tsx experiments/models/false-beats.ts <mitdb dir> models/default.onnx
 */
import { aamiClassOfCode } from '../../functions/aami/index.js';
import { DS1_RECORDS } from '../../functions/datasets.js';
import { loadLead } from '../../functions/features/dataset.js';
import { featuresOfSignal } from '../../functions/features/index.js';
import { BeatClassifier } from '../../functions/model/index.js';
import { ArraySignal } from '../../functions/signal/ring.js';
import { readAnnotations } from '../../functions/wfdb/index.js';

const [dataDir = process.env.ECGFAAS_MITDB, file = 'models/default.onnx'] = process.argv.slice(2);
if (!dataDir) throw new Error('usage: false-beats.ts <mitdb dir> <model.onnx>');
const classifier = await BeatClassifier.load(file);
const counts = new Array<number>(classifier.info.classes.length).fill(0);
let fakes = 0;
for (const record of DS1_RECORDS) {
  const { signal, sampleRate } = await loadLead(dataDir, record);
  const beats = (await readAnnotations(dataDir, record)).filter((a) => aamiClassOfCode(a.code) !== undefined).map((a) => a.sample);
  const fake = new Set<number>();
  for (let i = 10; i + 1 < beats.length; i += 20) fake.add(Math.round(((beats[i] as number) + (beats[i + 1] as number)) / 2));
  const all = [...beats, ...fake].sort((a, b) => a - b);
  const feats = featuresOfSignal(classifier.info.featureSet, new ArraySignal(signal), all, sampleRate).filter((f) => fake.has(f.sample));
  const probs = await classifier.classify(feats.map((f) => f.features));
  for (const p of probs) {
    let best = 0;
    for (let k = 1; k < p.length; k++) if ((p[k] as number) > (p[best] as number)) best = k;
    counts[best]! += 1;
  }
  fakes += probs.length;
}
console.log(`${file}: ${fakes} fake beats predicted as ${classifier.info.classes.map((c, k) => `${c} ${counts[k]} (${((100 * (counts[k] as number)) / fakes).toFixed(1)} %)`).join(', ')}`);
await classifier.close();
