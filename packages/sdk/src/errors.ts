/** The server answered with an error: carries its status and `{error, message}`. */
export class DroverApiError extends Error {
  constructor(
    readonly status: number,
    readonly error: string,
    message: string,
    readonly index?: number,
  ) {
    super(message);
    this.name = 'DroverApiError';
  }
}

/** The server could not be reached (refused, reset, timed out) after the retries allowed. */
export class DroverNetworkError extends Error {
  constructor(
    message: string,
    override readonly cause?: unknown,
  ) {
    super(message);
    this.name = 'DroverNetworkError';
  }
}
