import type { Clock } from '@gpumesh/core'
import { ErrorReply, LedgerVerificationView } from '@gpumesh/protocol'
import type { Store } from '@gpumesh/store'
import { authenticate, requireRole } from '../principal.ts'
import type { App } from '../routes.ts'

// The ledger as an operator sees it. Renters' and suppliers' statements come with billing.

export function registerLedgerRoutes(
  app: App,
  components: { readonly store: Store; readonly clock: Clock },
): void {
  const { store, clock } = components
  app.get(
    '/v1/ledger/verify',
    {
      schema: {
        tags: ['ledger'],
        summary: 'Recompute every balance from the transfers and compare with the stored totals (operators)',
        security: [{ apiKey: [] }],
        response: { 200: LedgerVerificationView, 401: ErrorReply, 403: ErrorReply },
      },
    },
    async (request) => {
      requireRole(await authenticate(request, store, clock), 'operator')
      const startedAt = performance.now()
      const verification = await store.ledger.verify()
      return {
        ...verification,
        mismatched: [...verification.mismatched],
        overdrawn: [...verification.overdrawn],
        postedSum: verification.postedSum.toString(),
        pendingSum: verification.pendingSum.toString(),
        tookMs: Math.round(performance.now() - startedAt),
      }
    },
  )
}
