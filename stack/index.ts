export { EmbeddedStack, type StackOptions, type StackInfo } from './stack.js';
