import { useCallback, useEffect, useRef, useState, type DependencyList } from 'react'

// (A .tsx file, though it has no JSX: it uses the DOM, and the root tsconfig checks every src/**/*.ts without
// DOM types.)
//
// Loading data for a page: the last answer stays on screen while a reload runs, and an answer that arrives
// after the page moved on (deps changed, unmounted) is dropped.

export type Resource<T> = {
  readonly data: T | undefined
  readonly error: unknown
  readonly loading: boolean
  reload(): void
  /** Replace the data with a fresher copy a mutation answered (no round trip). */
  set(data: T): void
}

type ResourceState<T> = { data: T | undefined; error: unknown; loading: boolean }

export function useResource<T>(load: () => Promise<T>, deps: DependencyList): Resource<T> {
  const [state, setState] = useState<ResourceState<T>>({ data: undefined, error: undefined, loading: true })
  const [version, setVersion] = useState(0)
  useEffect(() => {
    let stale = false
    setState((previous) => ({ ...previous, loading: true }))
    load().then(
      (data) => {
        if (!stale) setState({ data, error: undefined, loading: false })
      },
      (error: unknown) => {
        if (!stale) setState((previous) => ({ data: previous.data, error, loading: false }))
      },
    )
    return () => {
      stale = true
    }
    // `load` is a fresh closure each render; `deps` says when it means something new.
  }, [...deps, version])
  const reload = useCallback(() => setVersion((current) => current + 1), [])
  const set = useCallback((data: T) => setState({ data, error: undefined, loading: false }), [])
  return { ...state, reload, set }
}

/** Calls `callback` every `intervalMs` while the page is visible; null pauses it. */
export function useInterval(callback: () => void, intervalMs: number | null): void {
  const latest = useRef(callback)
  useEffect(() => {
    latest.current = callback
  })
  useEffect(() => {
    if (intervalMs === null) return
    const timer = setInterval(() => {
      if (document.visibilityState === 'visible') latest.current()
    }, intervalMs)
    return () => clearInterval(timer)
  }, [intervalMs])
}

/** The current time, refreshed every `intervalMs` (for "served for" and "ago" figures). */
export function useNowMs(intervalMs = 1000): number {
  const [nowMs, setNowMs] = useState(() => Date.now())
  useEffect(() => {
    const timer = setInterval(() => setNowMs(Date.now()), intervalMs)
    return () => clearInterval(timer)
  }, [intervalMs])
  return nowMs
}

/** Waits between retries of a live-update loop. */
export function pause(durationMs: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, durationMs))
}

/** The browser tab's title for a page. */
export function useTitle(title: string): void {
  useEffect(() => {
    document.title = title ? `${title} · gpumesh` : 'gpumesh'
  }, [title])
}
