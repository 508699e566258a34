export { QueueError } from './errors.js';
export { EmbeddedRedis, freePort, type EmbeddedRedisOptions } from './embedded-redis.js';
export { RedisClock, offsetFromSamples, mergeEstimate, type ClockSample, type ClockEstimate, type ClockState, type RedisClockOptions } from './clock.js';
export { connectRedis } from './connect.js';
