// The job-definition check lives with the schema in @drover/protocol (the worker checks SQS message
// bodies with it too); the CLI's commands and tests import it from here.
export { checkJobDefinition, type CheckOptions, type SchemaProblem } from '@drover/protocol/job-check';
