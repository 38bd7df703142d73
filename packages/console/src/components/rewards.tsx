import type { RewardPayoutView } from '@gpumesh/protocol'
import { formatMilli, formatPpm } from '../format.ts'
import { Badge, DataTable, numeric } from './ui.tsx'

// Epoch rewards per device, each with the measured factors it was computed from (docs/rewards.md):
// score = hardware × hired × bandwidth × uptime; amount = pool emission × score ÷ pool total score.

function Breakdown({ payout }: { payout: RewardPayoutView }) {
  const { factors } = payout
  const gpus = factors.gpus
    .map((gpu) => `${gpu.count}× ${gpu.modelKey} ${formatMilli(gpu.multiplierMilli)}`)
    .join(', ')
  return (
    <div className="breakdown" data-testid="reward-breakdown">
      <span
        className="chip"
        title="hardware multiplier: the GPUs' multipliers summed (or the CPU multiplier)"
      >
        hardware {formatMilli(factors.hardwareMilli)}
        {gpus ? <span className="muted"> ({gpus})</span> : null}
      </span>
      <span className="chip" title="1 + hired bonus × share of the epoch hired by clusters">
        hired {formatMilli(factors.hiredMilli)}{' '}
        <span className="muted">({formatPpm(factors.hiredPpm)} hired)</span>
      </span>
      <span className="chip" title="bandwidth tier multiplier from the last speedtest">
        bandwidth {formatMilli(factors.bandwidthMilli)}{' '}
        <span className="muted">({factors.bandwidthTier ?? 'no tier'})</span>
      </span>
      <span className="chip" title="share of the epoch online">
        uptime {formatPpm(factors.uptimePpm)}
      </span>
      <span className="chip" title="the device's score; its share is the score over the pool's total score">
        score {payout.score} <span className="muted">→ share {payout.share}</span>
      </span>
    </div>
  )
}

export function RewardsTable({
  payouts,
  showDevice = false,
}: {
  payouts: readonly RewardPayoutView[]
  showDevice?: boolean
}) {
  return (
    <DataTable
      columns={[
        'Epoch',
        ...(showDevice ? ['Device'] : []),
        'Pool',
        'Eligible',
        numeric('Amount (GMT)'),
        'Factors',
      ]}
      rows={payouts}
      empty="No rewards yet: a device is paid at the close of each epoch it was eligible in."
    >
      {(payout) => (
        <tr
          key={`${payout.epoch}:${payout.deviceId}:${payout.pool}`}
          data-testid="reward-row"
          data-epoch={payout.epoch}
        >
          <td>#{payout.epoch}</td>
          {showDevice ? <td className="code">{payout.deviceId}</td> : null}
          <td>{payout.pool}</td>
          <td>
            {payout.eligible ? (
              <Badge tone="good">eligible</Badge>
            ) : (
              <>
                <Badge tone="warn">not eligible</Badge>
                <div className="reason">{payout.ineligibleReason ?? payout.ineligibleReasonCode}</div>
              </>
            )}
          </td>
          <td className="numeric" data-testid="reward-amount">
            {payout.amountGmt}
          </td>
          <td>
            <Breakdown payout={payout} />
          </td>
        </tr>
      )}
    </DataTable>
  )
}
