export { buildProgram, main } from './cli.js';
// The disk layout rule the device's agent config must match (hash area after the data).
export { hashOffsetBytes, MIB } from './image/layout.js';
