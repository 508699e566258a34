export { EcgFaasError, isEcgFaasError } from './errors.js';
