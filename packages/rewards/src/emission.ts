import type { RewardPolicy } from './policy.ts'

// The emission schedule: month m emits firstMonth × retain^m (each step rounded down), spread evenly over the
// month's epochs, and nothing once the cap is reached. Integer arithmetic only, so every node of the network
// computes the same emission for the same epoch.

/** What month `month` (0 at genesis) emits in total. */
export function monthlyEmissionUnits(policy: RewardPolicy, month: number): bigint {
  let units = policy.emission.firstMonthUnits
  for (let m = 0; m < month && units > 0n; m += 1) units = (units * policy.emission.monthlyRetainBp) / 10_000n
  return units
}

/**
 * What epoch `epoch` mints into the reward pool, given what all earlier epochs minted: the month's emission
 * pro rata to the epoch's length, cut so the total never passes the cap.
 */
export function epochEmissionUnits(policy: RewardPolicy, epoch: number, emittedBeforeUnits: bigint): bigint {
  const month = Math.floor((epoch * policy.epochLengthMs) / policy.emission.monthMs)
  const scheduled =
    (monthlyEmissionUnits(policy, month) * BigInt(policy.epochLengthMs)) / BigInt(policy.emission.monthMs)
  const left = policy.emission.capUnits - emittedBeforeUnits
  if (left <= 0n) return 0n
  return scheduled < left ? scheduled : left
}
