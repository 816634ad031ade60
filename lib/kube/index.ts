// Kubernetes access: the API client (client-node's KubeConfig and Watch, one agent) and the informer.
export { KubeApiError, KubeClient } from "./client";
export type { WatchEvent } from "./client";
export { KubeInformer, isKubeObject, isRecord } from "./informer";
export type { InformerChange, InformerOptions, InformerStats, KubeObject } from "./informer";
export { EXTRA_CIDRS_ANNOTATION, GATEWAYS_PATH, NODES_PATH, candidacyOf, fetchNode, readNode, stringMap } from "./node";
export type { KubeNode } from "./node";
