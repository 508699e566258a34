// Worker threads do not inherit the tsx loader the CLI registered: register it here, then load the TypeScript.
import { register } from 'tsx/esm/api';

register();
await import('./storage-thread.ts');
