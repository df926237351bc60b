// The regtest Lightning network: binaries from the Go module proxy, a btcd + four-lnd cluster, and a
// control channel for processes that do not own it.
export { ensureLightningBinaries, type LightningBinaries, LightningBuildError } from "./binaries.ts";
export { type Btcd, BtcdRpcError } from "./btcd.ts";
export {
  type NodeName,
  nodeNames,
  type RegtestCluster,
  type RegtestClusterDescription,
  remoteHopFee,
  type StartClusterParams,
  startRegtestCluster,
} from "./cluster.ts";
export { type ClusterControl, ClusterControlError, clusterControl, serveClusterControl } from "./control.ts";
export type { LndCredentials, LndNode } from "./lnd.ts";
export { WaitTimeoutError, waitFor } from "./process.ts";
