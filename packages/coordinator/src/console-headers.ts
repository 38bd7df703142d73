import type { FastifyInstance } from 'fastify'

// Security headers. Every reply gets the ones that cost an API client nothing (no MIME sniffing, no referrer
// sent on); the console's pages and files (every path outside /v1/) also get a Content-Security-Policy that
// lets the page load only its own scripts, styles and API, and be framed by nobody. The policy fits the
// console Vite builds (packages/console): one module script and one stylesheet from /assets, no inline
// script, the icon a data: URI, fetches to this origin. docs/security.md explains each directive.

export const contentSecurityPolicy = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "font-src 'self'",
  "connect-src 'self'",
  "manifest-src 'self'",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join('; ')

/** On every reply, API included. */
export const commonSecurityHeaders = {
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
} as const

/** On the console's replies (paths outside /v1/), besides the common ones. */
export const consoleSecurityHeaders = {
  'content-security-policy': contentSecurityPolicy,
  // For browsers older than CSP's frame-ancestors.
  'x-frame-options': 'DENY',
} as const

/**
 * Over HTTPS only: browsers ignore it from an origin they do not trust (plain HTTP to an address other than
 * localhost, as a console reached across a LAN is) and log an error on every page.
 */
export const secureConsoleHeaders = { 'cross-origin-opener-policy': 'same-origin' } as const

const isApiPath = (url: string) => url === '/v1' || url.startsWith('/v1/') || url.startsWith('/v1?')

export function registerSecurityHeaders(app: FastifyInstance): void {
  app.addHook('onSend', async (request, reply, payload) => {
    void reply.headers(commonSecurityHeaders)
    if (!isApiPath(request.url)) {
      void reply.headers(consoleSecurityHeaders)
      if (request.protocol === 'https') void reply.headers(secureConsoleHeaders)
    }
    return payload
  })
}
