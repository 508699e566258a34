export { WfdbError } from './errors.js';
export { parseHeader, formatHeader, SUPPORTED_FORMATS, type RecordHeader, type SignalSpec } from './header.js';
export { decodeSamples, encodeSamples, signalChecksum, bytesForSamples } from './signals.js';
export {
  parseAnnotations, encodeAnnotations, annotation, isBeatCode, mnemonicOf,
  ANNOTATION_MNEMONICS, CODE_OF_MNEMONIC, type Annotation,
} from './annotations.js';
export {
  readHeader, readRecord, readAnnotations, writeRecord, writeAnnotations, encodeRecord, toPhysical,
  type WfdbRecord, type WriteRecordInput, type WriteSignal, type ReadRecordOptions,
} from './record.js';
export { excerptRecord, type ExcerptOptions } from './excerpt.js';
