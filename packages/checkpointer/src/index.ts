export { Checkpointer, CHECKPOINTER_DIR, type CheckpointerEvent, type CheckpointerOptions, type CheckpointerStats } from './checkpointer.js';
