export { ImdsClient, DEFAULT_IMDS_URL, type ImdsLog, type ImdsOptions } from './imds.js';
export { PathNotAllowedError, resolveLocalPath, type LocalPathRoots } from './paths.js';
export { compileGlob, type PathMatcher } from './glob.js';
export { StateFile, type StateFileOptions, type StateJob, type StateJobStatus, type StateSnapshot } from './state-file.js';
