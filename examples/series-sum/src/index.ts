// @drover/example-series-sum: the job definitions of the series-sum demo (the app itself is
// dist/main.js, started by the worker). Importing this module starts nothing.
export {
  seriesSumJob, inputKey, outputKey, stateKey, logKey, expectedSum, normalizePrefix,
  LAYOUT, MAIN_JS, SERIES_SUM_MODES, WORKER_LOCAL_ROOT,
  type SeriesSumJobOptions, type SeriesSumMode,
} from './job.js';
export { parseInput, InputError, type SeriesInput, type SeriesOutput, type SeriesRun, type SeriesState } from './app.js';
