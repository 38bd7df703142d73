export * from './coordinator.ts'
export * from './offers/offer-index.ts'
export * from './credentials.ts'
export * from './signatures.ts'
export * from './device-request-auth.ts'
export { registerSpeedtestRoutes, type SpeedtestComponents } from './speedtest/routes.ts'
export { directoryArtifactStore, type ArtifactStore } from './models/artifact-store.ts'
export { s3ArtifactStore, type S3ArtifactStoreInit } from './models/s3-artifact-store.ts'
export * from './mesh/rendezvous.ts'
export * from './ledger/chain/rpc.ts'
export * from './ledger/chain/chain-settlement.ts'
export { loadVaultKey } from './ledger/chain/vault-key.ts'
export { OfferFeed } from './offers/offer-feed.ts'
export {
  ClusterController,
  type ClusterControllerComponents,
  type ClusterLinks,
} from './clusters/controller.ts'
export {
  buildClusterControl,
  type ClusterControl,
  type ClusterControlComponents,
  type ClusterControlSettings,
} from './clusters/wiring.ts'
export { routeRuleOf, routeRules, routesWithoutAccessRule, type RouteAccess } from './route-access.ts'
export { defaultFailedAuthLimits, type FailedAuthLimits } from './principal.ts'
