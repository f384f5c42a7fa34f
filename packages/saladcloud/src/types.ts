// The parts of SaladCloud's public API (OpenAPI 0.9.0-alpha.17, shared/reference/saladcloud-public-api.yaml)
// that Drover uses: container groups and their instances. Field names and enums are the spec's.

export const SALADCLOUD_API_URL = 'https://api.salad.com/api/public';
/** Header carrying the API key (the spec's ApiKeyAuth scheme). */
export const API_KEY_HEADER = 'Salad-Api-Key';
/** Content type of an update (UpdateContainerGroup's request body). */
export const MERGE_PATCH = 'application/merge-patch+json';
/** SaladCloud's documented limit: requests per minute per API key. */
export const REQUESTS_PER_MINUTE = 240;

/** ContainerGroupStatus */
export const CONTAINER_GROUP_STATUSES = ['pending', 'running', 'stopped', 'succeeded', 'failed', 'deploying'] as const;
export type ContainerGroupStatus = (typeof CONTAINER_GROUP_STATUSES)[number];

/** ContainerGroupReplicas: 0..500 */
export const MAX_REPLICAS = 500;

/** OrganizationName, ProjectName, ContainerGroupName */
export const NAME_PATTERN = /^[a-z][a-z0-9-]{0,61}[a-z0-9]$/;

/** Where a container group is: the public API addresses a group by organization, project and name. */
export interface ContainerGroupRef {
  organization_name: string;
  project_name: string;
  container_group_name: string;
}

/** ContainerGroupInstanceStatusCount */
export interface InstanceStatusCounts {
  allocating_count: number;
  creating_count: number;
  running_count: number;
  stopping_count: number;
}

/** ContainerGroupState */
export interface ContainerGroupState {
  status: ContainerGroupStatus;
  description?: string | null;
  start_time?: string;
  finish_time?: string;
  instance_status_counts?: InstanceStatusCounts;
}

/** ContainerGroup: the fields Drover reads (the answer has more: container, networking, probes...). */
export interface ContainerGroup {
  id: string;
  name: string;
  organization_name?: string;
  project_name?: string;
  display_name?: string;
  replicas: number;
  current_state: ContainerGroupState;
  pending_change?: boolean;
  version?: number;
  autostart_policy?: boolean;
  [field: string]: unknown;
}

/** ContainerGroupPatch: the fields Drover sends. `null` replicas is the spec's too. */
export interface ContainerGroupPatch {
  replicas?: number | null;
  [field: string]: unknown;
}

/** ContainerGroupInstanceState */
export const INSTANCE_STATES = ['allocating', 'downloading', 'creating', 'running', 'stopping'] as const;
export type ContainerGroupInstanceState = (typeof INSTANCE_STATES)[number];

/** ContainerGroupInstance */
export interface ContainerGroupInstance {
  id: string;
  machine_id: string;
  state: ContainerGroupInstanceState;
  update_time: string;
  version: number;
  deletion_cost?: number;
  ready?: boolean;
  started?: boolean;
  [field: string]: unknown;
}

/** ContainerRestartPolicy */
export const RESTART_POLICIES = ['always', 'on_failure', 'never'] as const;
export type ContainerRestartPolicy = (typeof RESTART_POLICIES)[number];

/** ContainerGroupPriority */
export const PRIORITIES = ['high', 'medium', 'low', 'batch'] as const;
export type ContainerGroupPriority = (typeof PRIORITIES)[number];

/** CreateContainerResourceRequirements: memory in MB, storage in bytes. */
export interface CreateContainerResourceRequirements {
  cpu: number;
  memory: number;
  gpu_classes?: string[];
  shm_size?: number;
  storage_amount?: number;
}

/** Bounds of CreateContainerResourceRequirements and CreateContainer (the spec's minimum/maximum). */
export const LIMITS = {
  cpu: [1, 1024],
  memory: [1024, 1073741824],
  storage_amount: [1073741824, 1125899906842624],
  image: [1, 2048],
  environment_value: [1, 1000],
} as const;

/** CreateContainer: the fields Drover sends (the spec also has logging, image_caching, registry_authentication). */
export interface CreateContainer {
  image: string;
  resources: CreateContainerResourceRequirements;
  command?: string[] | null;
  environment_variables?: Record<string, string>;
  priority?: ContainerGroupPriority | null;
  [field: string]: unknown;
}

/** ContainerGroupPrototype: create_container_group's body; the first five fields are required. */
export interface ContainerGroupPrototype {
  name: string;
  container: CreateContainer;
  replicas: number;
  restart_policy: ContainerRestartPolicy;
  autostart_policy: boolean;
  display_name?: string;
  country_codes?: string[];
  [field: string]: unknown;
}

/** GpuClass: the fields Drover shows. */
export interface GpuClass {
  id: string;
  name: string;
  prices: { priority: ContainerGroupPriority; price: string }[];
  is_high_demand?: boolean;
  [field: string]: unknown;
}

/** ProblemDetails: every error body. */
export interface ProblemDetails {
  type?: string;
  title?: string;
  status?: number;
  detail?: string;
  instance?: string;
}
