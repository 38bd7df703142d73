import type { PriceFactorView } from '@gpumesh/protocol'

/** How a price is made: each factor in the order it applied, with the price after it. */
export function PriceFactorList({
  factors,
  testId,
}: {
  factors: readonly PriceFactorView[]
  testId: string
}) {
  return (
    <ol className="factors">
      {factors.map((factor, index) => (
        <li key={`${factor.factor}:${index}`} data-testid={testId} data-factor={factor.factor}>
          <strong>{factor.factor}</strong>
          {factor.multiplier ? <span> ×{factor.multiplier}</span> : null} → ${factor.priceAfterUsd}
          <span className="muted"> {factor.detail}</span>
        </li>
      ))}
    </ol>
  )
}
