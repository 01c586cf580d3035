import { MODES } from './harness.js';
import { generatedConformance } from './generated.js';

// The documented config (a new pod connection per request) on both sides.
generatedConformance(MODES[0]);
