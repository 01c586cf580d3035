import { MODES } from './harness.js';
import { handWrittenConformance } from './hand-written.js';

// Upstream keep-alive (UPSTREAM_KEEPALIVE) on both sides: pod connections reused.
handWrittenConformance(MODES[1]);
