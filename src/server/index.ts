export { type ClientChannel, ClientMemory } from './client-memory.ts';
export * from './protocol.ts';
export { type ServeOptions, startServer, type VfioNestServer } from './server.ts';
export { EPROTO, Session } from './session.ts';
