import { MODES } from './harness.js';
import { handWrittenConformance } from './hand-written.js';

// The documented config (a new pod connection per request) on both sides.
handWrittenConformance(MODES[0]);
