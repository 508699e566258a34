export { Gateway, type GatewayOptions } from './gateway.js';
export { buildGatewayApp, BODY_LIMIT_BYTES, type GatewayAppOptions, type GatewayApp } from './app.js';
export { GATEWAY_ERRORS, GatewayError, type GatewayErrorCode } from './errors.js';
export { ResultHub } from './result-hub.js';
export { GatewayMetrics } from './metrics.js';
