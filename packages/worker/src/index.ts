export { ImdsClient, DEFAULT_IMDS_URL, type ImdsLog, type ImdsOptions } from './imds.js';
