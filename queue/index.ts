export { QueueError } from './errors.js';
export { EmbeddedRedis, freePort, type EmbeddedRedisOptions } from './embedded-redis.js';
