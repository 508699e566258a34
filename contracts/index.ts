export { EcgFaasError, isEcgFaasError } from './errors.js';
export * from './packet.js';
export * from './packet-binary.js';
export * from './invocation.js';
export * from './episode.js';
