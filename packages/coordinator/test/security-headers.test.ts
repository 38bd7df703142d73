import assert from 'node:assert/strict'
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import type { Coordinator } from '@gpumesh/coordinator'
import { startTestCoordinator, storeBackends } from '@gpumesh/testing'
import { contentSecurityPolicy } from '../src/console-headers.ts'

// Issue 22 finding 9: the console was served with no security headers. Headers are no store behaviour, so
// this runs on the embedded store only.

const consoleSource = new URL('../../console/index.html', import.meta.url)

describe('security headers', () => {
  const consoleDir = mkdtempSync(join(tmpdir(), 'gpumesh-console-'))
  let coordinator: Coordinator
  let cleanup: () => Promise<void>

  before(async () => {
    mkdirSync(join(consoleDir, 'assets'))
    writeFileSync(
      join(consoleDir, 'index.html'),
      '<!doctype html><html><head><script type="module" src="/assets/app.js"></script></head><body></body></html>',
    )
    writeFileSync(join(consoleDir, 'assets', 'app.js'), 'export {}\n')
    const opened = await storeBackends[0]!.open()
    coordinator = await startTestCoordinator(opened.store, { consoleDir, runBackgroundLoops: false })
    cleanup = opened.cleanup
  })
  after(async () => {
    await coordinator?.stop()
    await cleanup?.()
    rmSync(consoleDir, { recursive: true, force: true })
  })

  const get = (url: string) => coordinator.app.inject({ method: 'GET', url })

  it('finding 9: serves the console (page, deep link, assets) with CSP, no framing, nosniff, no referrer', async () => {
    for (const url of ['/', '/clusters/cls_1?tab=logs', '/assets/app.js']) {
      const response = await get(url)
      assert.equal(response.statusCode, 200, url)
      assert.equal(response.headers['content-security-policy'], contentSecurityPolicy, url)
      assert.equal(response.headers['x-frame-options'], 'DENY', url)
      assert.equal(response.headers['x-content-type-options'], 'nosniff', url)
      assert.equal(response.headers['referrer-policy'], 'no-referrer', url)
      // Plain HTTP: a browser would ignore it from a LAN address and log an error on every page.
      assert.equal(response.headers['cross-origin-opener-policy'], undefined, url)
    }
    const policy = new Map(
      contentSecurityPolicy.split('; ').map((directive) => {
        const [name, ...sources] = directive.split(' ')
        return [name!, sources]
      }),
    )
    assert.deepEqual(policy.get('script-src'), ["'self'"], 'no inline or foreign scripts')
    assert.deepEqual(policy.get('frame-ancestors'), ["'none'"])
    assert.deepEqual(policy.get('default-src'), ["'none'"])
  })

  it('finding 9: API replies carry nosniff and no-referrer, and no console policy', async () => {
    for (const url of ['/v1/health', '/v1/no-such-route']) {
      const response = await get(url)
      assert.equal(response.headers['x-content-type-options'], 'nosniff', url)
      assert.equal(response.headers['referrer-policy'], 'no-referrer', url)
      assert.equal(response.headers['content-security-policy'], undefined, url)
    }
  })

  it("finding 9: the console's page fits the policy: no inline script, handler or style, nothing from elsewhere", () => {
    const html = readFileSync(consoleSource, 'utf8')
    const scripts = [...html.matchAll(/<script\b([^>]*)>([\s\S]*?)<\/script>/g)]
    assert.ok(scripts.length >= 1)
    for (const [, attributes, body] of scripts) {
      assert.match(attributes!, /\bsrc="\/[^/]/, 'a script from this origin')
      assert.equal(body!.trim(), '', 'no inline script')
    }
    assert.doesNotMatch(html, /<style\b|\son[a-z]+=|\sstyle=/i, 'no inline style or event handler')
    for (const [, url] of html.matchAll(/\b(?:src|href)="([^"]+)"/g))
      assert.ok(url!.startsWith('/') || url!.startsWith('data:'), `${url} is not from this origin`)
  })
})
