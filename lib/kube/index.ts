// Kubernetes access: the API client (client-node's KubeConfig and Watch, one agent) and the informer.
export { KubeApiError, KubeClient } from "./client";
export type { WatchEvent } from "./client";
export { KubeInformer } from "./informer";
export type { InformerChange, InformerOptions, InformerStats, KubeObject } from "./informer";
