// Bounds shared by gpumesh's job API, Ray's job API and the worker messages that carry jobs (a module of its
// own, so ray-jobs.ts and cluster-messages.ts can both import it without a cycle).

/** The largest working directory a job may upload (compressed). */
export const maxWorkingDirBytes = 8 * 1024 * 1024
export const maxJobEntrypointLength = 4096
