// Kubernetes as the coordinator's source of truth: the sync, the pure reading and writing of objects, the
// bounded write queue.
export { KubeSync, NODEPOOLS_PATH } from "./kube-sync";
export type { KubeSyncOptions, RegisteredLabels } from "./kube-sync";
export { EventReason, HOSTS_CONFIGMAP, RAVEN_CFG } from "./objects";
export type { RavenCfg } from "./objects";
export { WriteQueue } from "./write-queue";
