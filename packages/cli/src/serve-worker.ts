// Entry of the image service's worker threads (built to lib/serve-worker.js, next to lib/index.js).
import './serve/worker.js';
